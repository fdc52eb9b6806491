package meshcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshcache/meshcache/internal/redistest"
	"github.com/meshcache/meshcache/l2"
	"github.com/meshcache/meshcache/l2/redisl2"
)

// testL2 is a second level on a real redis-server started for the test.
type testL2 struct {
	*redisl2.Store
	srv *redistest.Server
}

func newTestL2(t testing.TB) testL2 {
	t.Helper()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return testL2{redisl2.New(c, "meshcache-test:"), srv}
}

// TestL2ServesAnotherNode: what one node loaded, another node (here a
// second standalone node on the same Redis, as a key's next owner would)
// finds in L2 instead of loading it.
func TestL2ServesAnotherNode(t *testing.T) {
	s := newTestL2(t)
	o := newOrigin()
	o.tags = func(string) []string { return []string{"tag"} }
	a := mustGroup(t, newTestNode(t), "g", o, WithL2(s), WithTTL(time.Minute))
	b := mustGroup(t, newTestNode(t), "g", o, WithL2(s))
	if v := mustGet(t, a, "k"); v != "0" {
		t.Fatalf("Get on a = %q", v)
	}
	if v := mustGet(t, b, "k"); v != "0" {
		t.Fatalf("Get on b = %q", v)
	}
	if got := o.calls.Load(); got != 1 {
		t.Fatalf("loader calls = %d, want 1: b did not find a's value in L2", got)
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.L2Misses != 1 || sa.L2Stores != 1 || sb.L2Hits != 1 || sb.Loads != 0 {
		t.Errorf("stats: a %+v, b %+v", sa, sb)
	}
	e, ok, err := b.Peek(context.Background(), "k")
	if err != nil || !ok {
		t.Fatalf("Peek on b: %v %v", ok, err)
	}
	if e.TTL <= 0 || e.TTL > time.Minute || !slices.Equal(e.Tags, []string{"tag"}) {
		t.Errorf("entry from L2: TTL %v, tags %q; want a's TTL and tags", e.TTL, e.Tags)
	}
	// The tag travelled with it: InvalidateTags through b reaches L2.
	o.bump("k")
	if err := b.InvalidateTags(context.Background(), "tag"); err != nil {
		t.Fatal(err)
	}
	c := mustGroup(t, newTestNode(t), "g", o, WithL2(s))
	if v := mustGet(t, c, "k"); v != "1" {
		t.Errorf("Get on a third node after InvalidateTags = %q, want 1", v)
	}
}

// TestL2WritesReachIt: after each kind of write returns, a node that did not
// see the write (it has nothing cached) finds nothing older in L2.
func TestL2WritesReachIt(t *testing.T) {
	writes := []struct {
		name  string
		write func(ctx context.Context, g *Group) error
	}{
		{"Invalidate", func(ctx context.Context, g *Group) error { return g.Invalidate(ctx, "k") }},
		{"InvalidateTags", func(ctx context.Context, g *Group) error { return g.InvalidateTags(ctx, "tag") }},
		{"Clear", func(ctx context.Context, g *Group) error { return g.Clear(ctx) }},
		{"Set", func(ctx context.Context, g *Group) error { return g.Set(ctx, "k", Item{Value: []byte("1")}) }},
		{"SetIfAbsent", func(ctx context.Context, g *Group) error {
			_, err := g.SetIfAbsent(ctx, "k", Item{Value: []byte("1")})
			return err
		}},
		{"Expire", func(ctx context.Context, g *Group) error { _, err := g.Expire(ctx, "k", time.Hour); return err }},
		{"Refresh", func(ctx context.Context, g *Group) error { _, err := g.Refresh(ctx, "k"); return err }},
	}
	s := newTestL2(t)
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			ctx := context.Background()
			o := newOrigin()
			o.tags = func(string) []string { return []string{"tag"} }
			group := "g-" + w.name
			a := mustGroup(t, newTestNode(t), group, o, WithL2(s))
			if v := mustGet(t, a, "k"); v != "0" {
				t.Fatalf("Get = %q", v)
			}
			o.bump("k")
			if err := w.write(ctx, a); err != nil {
				t.Fatalf("%s: %v", w.name, err)
			}
			b := mustGroup(t, newTestNode(t), group, o, WithL2(s))
			if v := mustGet(t, b, "k"); v != "1" {
				t.Errorf("Get on another node after %s = %q, want 1: L2 kept the old value", w.name, v)
			}
		})
	}
}

// TestL2LateWriteBackRefused runs the race a local fence does not cover:
//
//	Get A: misses here and in L2, the loader reads version 0, waits
//	writer: origin -> version 1, Invalidate returns (deletes from L2)
//	load A finishes: its value must not reach L2
//	a node with nothing cached: must load version 1, not find 0 in L2
func TestL2LateWriteBackRefused(t *testing.T) {
	s := newTestL2(t)
	for _, group := range []string{"single", "batch"} {
		t.Run(group, func(t *testing.T) {
			ctx := context.Background()
			o := newOrigin()
			o.gate = make(chan struct{})
			o.entered = make(chan string, 4)
			var opts []GroupOption
			if group == "batch" {
				opts = append(opts, WithBatchLoader(batchOf(o)))
			}
			a := mustGroup(t, newTestNode(t), group, o, append(opts, WithL2(s))...)
			res := make(chan string, 1)
			go func() {
				if group == "batch" {
					m, err := a.GetMany(ctx, []string{"k"})
					res <- fmt.Sprint(string(m["k"]), err)
					return
				}
				res <- get(ctx, a, "k")
			}()
			<-o.entered
			o.bump("k")
			if err := a.Invalidate(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			close(o.gate)
			<-res
			b := mustGroup(t, newTestNode(t), group, o, WithL2(s))
			if v := mustGet(t, b, "k"); v != "1" {
				t.Errorf("Get on a node with nothing cached = %q, want 1: a load that began before the write stored its value in L2 after it", v)
			}
		})
	}
}

// batchOf turns an origin into a batch loader.
func batchOf(o *origin) BatchLoader {
	return BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]Item, error) {
		m := make(map[string]Item, len(keys))
		for _, k := range keys {
			it, err := o.Load(ctx, k)
			if err != nil {
				return nil, err
			}
			m[k] = it
		}
		return m, nil
	})
}

// TestL2GetManyUsesIt: GetMany finds in L2 what another node loaded, in one
// read for all the keys, and loads only the rest.
func TestL2GetManyUsesIt(t *testing.T) {
	s := newTestL2(t)
	o := newOrigin()
	a := mustGroup(t, newTestNode(t), "g", o, WithL2(s), WithBatchLoader(batchOf(o)))
	b := mustGroup(t, newTestNode(t), "g", o, WithL2(s), WithBatchLoader(batchOf(o)))
	ctx := context.Background()
	if _, err := a.GetMany(ctx, []string{"k1", "k2"}); err != nil {
		t.Fatal(err)
	}
	m, err := b.GetMany(ctx, []string{"k1", "k2", "k3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 {
		t.Fatalf("GetMany = %q", m)
	}
	if got := o.calls.Load(); got != 3 {
		t.Errorf("loader calls = %d, want 3 (k1, k2 once, then k3)", got)
	}
	if st := b.Stats(); st.L2Hits != 2 || st.L2Misses != 1 || st.L2Stores != 1 {
		t.Errorf("b's stats: %+v", st)
	}
}

// TestL2Down: a paused, then a stopped, Redis fails no Get (reads go to the
// loader, then skip L2 for a while), and makes writes report "l2".
func TestL2Down(t *testing.T) {
	s := newTestL2(t)
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o, WithL2(s), WithL2Timeout(50*time.Millisecond))
	ctx := context.Background()
	mustGet(t, g, "warm")

	s.srv.Pause()
	if v := mustGet(t, g, "a"); v != "0" {
		t.Fatalf("Get with L2 paused = %q", v)
	}
	mustGet(t, g, "b") // within the backoff: L2 is not asked
	st := g.Stats()
	if st.L2Errors == 0 || st.L2Bypassed == 0 || st.Loads != 3 {
		t.Errorf("stats with L2 paused: %+v; want errors, bypassed reads and 3 loads", st)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := g.Invalidate(wctx, "warm")
	cancel()
	var ie *InvalidateError
	if !errors.As(err, &ie) || !errors.Is(err, ErrPartialInvalidation) || !slices.Equal(ie.Unacked, []string{"l2"}) || !errors.Is(ie.Causes[0], l2.ErrUnavailable) {
		t.Fatalf("Invalidate with L2 paused: %v; want an *InvalidateError naming l2", err)
	}
	// The members' caches were invalidated all the same.
	if _, ok, _ := g.Peek(ctx, "warm"); ok {
		t.Error("warm still cached after an Invalidate L2 did not take")
	}
	s.srv.Resume()

	s.srv.Stop()
	for i := range 3 {
		if _, err := g.Get(ctx, "stopped"+strconv.Itoa(i)); err != nil {
			t.Fatalf("Get with L2 stopped: %v", err)
		}
	}
	if err := g.Clear(ctx); !errors.As(err, &ie) || ie.Unacked[0] != "l2" {
		t.Errorf("Clear with L2 stopped: %v", err)
	}
}

// TestWithL2Options checks the options' bad input.
func TestWithL2Options(t *testing.T) {
	n := newTestNode(t)
	if _, err := NewGroup(n, "a", newOrigin(), WithL2(nil)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithL2(nil): %v", err)
	}
	if _, err := NewGroup(n, "b", newOrigin(), WithL2Timeout(0)); !errors.Is(err, ErrInvalidTTL) {
		t.Errorf("WithL2Timeout(0): %v", err)
	}
}

// BenchmarkL2 measures, on one node with a real Redis on 127.0.0.1 and
// 1 KiB values: a Get that finds its key in L2 (src=l2: the main cache
// holds two entries of the 1024 read in turn, so every Get misses it); one
// that reads L2, loads from a loader that returns at once and writes the
// value back (src=load: every key new); and a hit (src=hit).
//
//	go test -run '^$' -bench BenchmarkL2 -count 6 . | benchstat -col /src -
func BenchmarkL2(b *testing.B) {
	s := newTestL2(b)
	val := value1K()
	loader := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: val}, nil
	})
	ctx := context.Background()
	const keys = 1024
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
	}
	n := newTestNode(b)
	warm := mustGroup(b, n, "l2", loader, WithL2(s))
	for _, k := range names {
		warm.Get(ctx, k)
	}
	runs := 0 // b.Run runs each case -count times
	for _, src := range []string{"hit", "l2", "load"} {
		b.Run("src="+src, func(b *testing.B) {
			runs++
			var g *Group
			switch src {
			case "hit":
				g = warm
			case "l2":
				// Another node: a group of the same name, on the same L2.
				g = mustGroup(b, newTestNode(b), "l2", loader, WithL2(s), WithMainBytes(2600), WithMaxValueBytes(1024))
			case "load":
				g = mustGroup(b, newTestNode(b), "load", loader, WithL2(s))
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				k := names[i%keys]
				if src == "load" {
					k = "new-" + strconv.Itoa(runs) + "-" + strconv.Itoa(i)
				}
				if _, err := g.Get(ctx, k); err != nil {
					b.Fatal(err)
				}
			}
			if st := g.Stats(); src == "l2" && st.Loads > 0 {
				b.Fatalf("the l2 case loaded: %+v", st)
			}
		})
	}
}

// TestClusterL2HungWrite: with Redis hung (SIGSTOP), a write fails for L2
// alone: its delete takes a quarter of the write's time, and the phases
// reach every member in the rest, so no member, the writer included, keeps
// serving the old value.
func TestClusterL2HungWrite(t *testing.T) {
	s := newTestL2(t)
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o, WithL2(s), WithJitter(0))
	key := keyOwnedBy(t, nodes[0], "n1", "k")
	for _, g := range gs {
		if v := mustGet(t, g, key); v != "0" {
			t.Fatalf("%s: Get = %q", g.node.Name(), v)
		}
	}
	if _, src := getSrc(gs[0], key); src != SourceHot {
		t.Fatalf("n0 answered from %v, want a hot copy", src)
	}
	s.srv.Pause()
	defer s.srv.Resume()
	o.bump(key)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := gs[0].Invalidate(ctx, key)
	cancel()
	var ie *InvalidateError
	if !errors.As(err, &ie) || !slices.Equal(ie.Unacked, []string{"l2"}) {
		t.Fatalf("Invalidate with Redis hung: %v; want an *InvalidateError naming l2 alone", err)
	}
	for _, g := range gs {
		if v := mustGet(t, g, key); v != "1" {
			t.Errorf("%s: Get after the write = %q, want 1", g.node.Name(), v)
		}
	}
}
