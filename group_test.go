package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(settledMain{m})
}

// settledMain runs the tests, then waits (bounded) for memberlist's own
// goroutines to notice their shutdown: some (probes, stream handlers)
// outlive Shutdown by up to a probe interval or a TCP timeout. goleak then
// reports anything still running.
type settledMain struct{ m *testing.M }

func (s settledMain) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("hashicorp/memberlist")) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return code
}

// newTestNode returns a node closed when the test ends.
func newTestNode(t testing.TB) *Node {
	t.Helper()
	n, err := NewNode(Config{NodeName: "test"})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// origin is a fake database: each key has a version, bumped by writes; its
// loader returns the version as the value and counts its calls.
type origin struct {
	mu       sync.Mutex
	versions map[string]int
	tags     func(key string) []string
	calls    atomic.Int64
	// gate, if not nil, is received from before the first load returns;
	// later loads return at once.
	gate chan struct{}
	// entered, if not nil, is sent to once a load has read the version.
	entered chan string
	// down makes every load fail (a database outage).
	down atomic.Bool
}

// errDown is the origin's error while it is down.
var errDown = errors.New("origin down")

func newOrigin() *origin { return &origin{versions: make(map[string]int)} }

func (o *origin) bump(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.versions[key]++
	return o.versions[key]
}

func (o *origin) Load(ctx context.Context, key string) (Item, error) {
	call := o.calls.Add(1)
	o.mu.Lock()
	v, ok := o.versions[key]
	o.mu.Unlock()
	if o.entered != nil {
		o.entered <- key // the version is read: the load is in flight
	}
	if o.gate != nil && call == 1 {
		select {
		case <-o.gate:
		case <-ctx.Done():
			return Item{}, ctx.Err()
		}
	}
	if o.down.Load() {
		return Item{}, errDown
	}
	if !ok && key == "missing" {
		return Item{}, ErrNotFound
	}
	it := Item{Value: []byte(strconv.Itoa(v))}
	if o.tags != nil {
		it.Tags = o.tags(key)
	}
	return it, nil
}

func mustGroup(t testing.TB, n *Node, name string, l Loader, opts ...GroupOption) *Group {
	t.Helper()
	g, err := NewGroup(n, name, l, append([]GroupOption{WithJitter(0)}, opts...)...)
	if err != nil {
		t.Fatalf("NewGroup(%q): %v", name, err)
	}
	return g
}

// get returns the value of key, or the error's text: for goroutines other
// than the test's, which must not call t.Fatal.
func get(ctx context.Context, g *Group, key string) string {
	v, err := g.Get(ctx, key)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(v)
}

func mustGet(t testing.TB, g *Group, key string, opts ...CallOption) string {
	t.Helper()
	v, err := g.Get(context.Background(), key, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v)
}

func TestGetConcurrentLoadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		o.gate = make(chan struct{})
		g := mustGroup(t, newTestNode(t), "g", o)
		const callers = 20
		var wg sync.WaitGroup
		vals := make([]string, callers)
		for i := range callers {
			wg.Go(func() {
				v, err := g.Get(context.Background(), "k")
				if err != nil {
					t.Errorf("Get: %v", err)
				}
				vals[i] = string(v)
			})
		}
		synctest.Wait() // every caller waits on the one flight
		close(o.gate)
		wg.Wait()
		if got := o.calls.Load(); got != 1 {
			t.Errorf("loader calls = %d, want 1", got)
		}
		for i, v := range vals {
			if v != "0" {
				t.Errorf("caller %d got %q, want %q", i, v, "0")
			}
		}
		// A Get after the flight ended hits the stored value.
		if v := mustGet(t, g, "k"); v != "0" {
			t.Errorf("Get after load = %q, want %q", v, "0")
		}
		st := g.Stats()
		if st.Loads != 1 || st.LoadsDeduplicated != callers-1 || st.Hits != 1 || st.Misses != callers {
			t.Errorf("Stats = %+v, want 1 load, %d deduplicated, 1 hit, %d misses", st, callers-1, callers)
		}
	})
}

func TestGetOnceperTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithTTL(time.Minute))
		for range 5 {
			mustGet(t, g, "k")
			time.Sleep(10 * time.Second)
		}
		if got := o.calls.Load(); got != 1 {
			t.Fatalf("loader calls within one TTL = %d, want 1", got)
		}
		time.Sleep(time.Minute)
		mustGet(t, g, "k")
		if got := o.calls.Load(); got != 2 {
			t.Fatalf("loader calls after the TTL = %d, want 2", got)
		}
	})
}

func TestGetReturnsCopy(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin())
	v, _ := g.Get(t.Context(), "k")
	v[0] = 'X'
	if got := mustGet(t, g, "k"); got != "0" {
		t.Fatalf("Get after modifying a returned value = %q, want %q", got, "0")
	}
}

func TestSharedLoadOwnContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var loadCtx context.Context
		gate := make(chan struct{})
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			loadCtx = ctx
			<-gate
			return Item{Value: []byte("v")}, ctx.Err()
		})
		g := mustGroup(t, newTestNode(t), "g", l, WithLoadTimeout(time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		errA := make(chan error, 1)
		go func() {
			_, err := g.Get(ctx, "k")
			errA <- err
		}()
		deadlineCtx, cancelB := context.WithTimeout(context.Background(), time.Second)
		defer cancelB()
		errB := make(chan error, 1)
		go func() {
			_, err := g.Get(deadlineCtx, "k")
			errB <- err
		}()
		resC := make(chan string, 1)
		go func() { resC <- get(context.Background(), g, "k") }()
		synctest.Wait()

		cancel()
		if err := <-errA; !errors.Is(err, context.Canceled) {
			t.Errorf("Get with a cancelled context = %v, want context.Canceled", err)
		}
		if err := <-errB; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get past its deadline = %v, want context.DeadlineExceeded", err)
		}
		if err := loadCtx.Err(); err != nil {
			t.Errorf("the load's context ended with its callers': %v", err)
		}
		if d, ok := loadCtx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Errorf("load deadline = %v, %v; want the group's load timeout", d, ok)
		}
		close(gate)
		if v := <-resC; v != "v" {
			t.Errorf("remaining caller got %q, want %q", v, "v")
		}
	})
}

func TestLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			<-ctx.Done()
			return Item{}, ctx.Err()
		})
		g := mustGroup(t, newTestNode(t), "g", l, WithLoadTimeout(time.Second))
		start := time.Now()
		_, err := g.Get(context.Background(), "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("load ended after %v, want the 1s load timeout", d)
		}
		if st := g.Stats(); st.LoadErrors != 1 {
			t.Errorf("LoadErrors = %d, want 1", st.LoadErrors)
		}
	})
}

func TestLoaderPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		gate := make(chan struct{})
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			if calls.Add(1) == 1 {
				<-gate
				panic("boom")
			}
			return Item{Value: []byte("ok")}, nil
		})
		g := mustGroup(t, newTestNode(t), "g", l)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := g.Get(context.Background(), "k")
				errs <- err
			}()
		}
		synctest.Wait()
		close(gate)
		for range 3 {
			if err := <-errs; !errors.Is(err, ErrLoaderPanic) {
				t.Errorf("waiter got %v, want ErrLoaderPanic", err)
			}
		}
		if v := mustGet(t, g, "k"); v != "ok" {
			t.Errorf("Get after a panic = %q, want %q", v, "ok")
		}
	})
}

func TestLoaderErrorNotCached(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("db down")
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		calls.Add(1)
		return Item{}, boom
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithNegativeTTL(time.Hour))
	for range 2 {
		if _, err := g.Get(t.Context(), "k"); !errors.Is(err, boom) {
			t.Fatalf("Get = %v, want the loader's error", err)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("loader calls = %d, want 2 (errors are not cached)", calls.Load())
	}
}

func TestTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			if key == "short" {
				return Item{Value: []byte(key), TTL: time.Second}, nil
			}
			return Item{Value: []byte(key)}, nil
		})
		g := mustGroup(t, newTestNode(t), "g", l, WithTTL(time.Minute))
		mustGet(t, g, "short")
		mustGet(t, g, "default")
		peekTTL := func(key string) (time.Duration, bool) {
			e, ok, err := g.Peek(context.Background(), key)
			if err != nil {
				t.Fatalf("Peek(%q): %v", key, err)
			}
			return e.TTL, ok
		}
		if ttl, _ := peekTTL("short"); ttl != time.Second {
			t.Errorf("TTL of an item with its own TTL = %v, want 1s", ttl)
		}
		if ttl, _ := peekTTL("default"); ttl != time.Minute {
			t.Errorf("TTL of an item with the group default = %v, want 1m", ttl)
		}
		time.Sleep(time.Second)
		if _, ok := peekTTL("short"); ok {
			t.Errorf("Peek found an expired entry")
		}
		if ok, err := g.Expire(context.Background(), "default", time.Hour); !ok || err != nil {
			t.Errorf("Expire = %v, %v; want true, nil", ok, err)
		}
		if ttl, _ := peekTTL("default"); ttl != time.Hour {
			t.Errorf("TTL after Expire = %v, want 1h", ttl)
		}
		if ok, _ := g.Expire(context.Background(), "absent", time.Hour); ok {
			t.Errorf("Expire of an absent key = true")
		}
		if st := g.Stats(); st.Expirations == 0 {
			t.Errorf("Expirations = 0 after an entry expired")
		}
	})
}

func TestJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := NewGroup(newTestNode(t), "g", newOrigin(), WithTTL(100*time.Second), WithJitter(0.5))
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[time.Duration]bool{}
		for i := range 50 {
			key := strconv.Itoa(i)
			mustGet(t, g, key)
			e, _, _ := g.Peek(context.Background(), key)
			if e.TTL > 100*time.Second || e.TTL <= 50*time.Second {
				t.Errorf("TTL with jitter 0.5 = %v, want in (50s, 100s]", e.TTL)
			}
			distinct[e.TTL] = true
		}
		if len(distinct) < 10 {
			t.Errorf("jitter gave %d distinct TTLs in 50 loads", len(distinct))
		}
	})
}

func TestEvictionByBytes(t *testing.T) {
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: make([]byte, 1000)}, nil
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithMainBytes(10_000))
	for i := range 30 {
		mustGet(t, g, strconv.Itoa(i))
		mustGet(t, g, "0") // keep 0 recently used
	}
	st := g.Stats()
	if st.Bytes > 10_000 || st.Evictions == 0 {
		t.Errorf("Stats = %+v, want Bytes <= 10000 and some evictions", st)
	}
	if _, ok, _ := g.Peek(t.Context(), "0"); !ok {
		t.Errorf("the most recently used key was evicted")
	}
	if _, ok, _ := g.Peek(t.Context(), "1"); ok {
		t.Errorf("the least recently used key was kept")
	}
}

func TestNoStoreAndStoreIf(t *testing.T) {
	var calls atomic.Int64
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		calls.Add(1)
		return Item{Value: []byte(key), NoStore: key == "nostore"}, nil
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithStoreIf(func(key string, it Item) bool { return key != "skip" }))
	for _, key := range []string{"nostore", "skip", "keep"} {
		for range 2 {
			if v := mustGet(t, g, key); v != key {
				t.Fatalf("Get(%q) = %q", key, v)
			}
		}
	}
	if got := calls.Load(); got != 5 {
		t.Fatalf("loader calls = %d, want 5 (2 nostore + 2 skip + 1 keep)", got)
	}
}

func TestNegativeTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithNegativeTTL(time.Second))
		for range 3 {
			if _, err := g.Get(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
			}
		}
		if o.calls.Load() != 1 {
			t.Fatalf("loader calls = %d, want 1 (not-found cached)", o.calls.Load())
		}
		if st := g.Stats(); st.NegativeHits != 2 {
			t.Fatalf("NegativeHits = %d, want 2", st.NegativeHits)
		}
		time.Sleep(time.Second)
		g.Get(context.Background(), "missing")
		if o.calls.Load() != 2 {
			t.Fatalf("loader calls after the negative TTL = %d, want 2", o.calls.Load())
		}
		// Without the option, not-found is not cached.
		g2 := mustGroup(t, g.node, "g2", o)
		g2.Get(context.Background(), "missing")
		g2.Get(context.Background(), "missing")
		if o.calls.Load() != 4 {
			t.Fatalf("loader calls without negative caching = %d, want 4", o.calls.Load())
		}
	})
}

func TestValidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithValidate(func(e Entry) bool { return e.Age < 10*time.Second }))
		mustGet(t, g, "k")
		time.Sleep(5 * time.Second)
		mustGet(t, g, "k")
		if o.calls.Load() != 1 {
			t.Fatalf("loader calls for a valid entry = %d, want 1", o.calls.Load())
		}
		time.Sleep(5 * time.Second)
		mustGet(t, g, "k")
		if o.calls.Load() != 2 {
			t.Fatalf("loader calls for an entry the validator rejects = %d, want 2", o.calls.Load())
		}
	})
}

func TestBypassRefreshPassthrough(t *testing.T) {
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o)
	mustGet(t, g, "k")
	o.bump("k")
	if v := mustGet(t, g, "k"); v != "0" {
		t.Fatalf("cached Get = %q, want %q", v, "0")
	}
	if v := mustGet(t, g, "k", Bypass()); v != "1" {
		t.Fatalf("Get with Bypass = %q, want %q", v, "1")
	}
	if v := mustGet(t, g, "k"); v != "0" {
		t.Fatalf("Bypass wrote the cache: Get = %q, want %q", v, "0")
	}
	if v := mustGet(t, g, "k", ForceRefresh()); v != "1" {
		t.Fatalf("Get with ForceRefresh = %q, want %q", v, "1")
	}
	o.bump("k")
	if v, err := g.Refresh(t.Context(), "k"); err != nil || string(v) != "2" {
		t.Fatalf("Refresh = %q, %v; want %q", v, err, "2")
	}
	if v := mustGet(t, g, "k"); v != "2" {
		t.Fatalf("Get after Refresh = %q, want %q", v, "2")
	}
	calls := o.calls.Load()
	p := mustGroup(t, g.node, "p", o, WithPassthrough())
	mustGet(t, p, "k")
	mustGet(t, p, "k")
	if got := o.calls.Load() - calls; got != 2 {
		t.Fatalf("passthrough loader calls = %d, want 2", got)
	}
	if st := p.Stats(); st.Items != 0 {
		t.Fatalf("passthrough stored %d items", st.Items)
	}
}

func TestSetPeekSetIfAbsent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o)
		ctx := context.Background()
		val := []byte("set")
		if err := g.Set(ctx, "k", Item{Value: val, TTL: time.Minute, Tags: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
		val[0] = 'X' // the group keeps its own copy
		time.Sleep(time.Second)
		e, ok, err := g.Peek(ctx, "k")
		if err != nil || !ok {
			t.Fatalf("Peek = %v, %v", ok, err)
		}
		if string(e.Value) != "set" || e.TTL != 59*time.Second || e.Age != time.Second || len(e.Tags) != 1 || e.Tags[0] != "t" {
			t.Errorf("Peek = %+v, want value set, TTL 59s, age 1s, tags [t]", e)
		}
		if v := mustGet(t, g, "k"); v != "set" || o.calls.Load() != 0 {
			t.Errorf("Get after Set = %q with %d loads, want %q and none", v, o.calls.Load(), "set")
		}
		if _, ok, _ := g.Peek(ctx, "other"); ok || o.calls.Load() != 0 {
			t.Errorf("Peek of an absent key found it or loaded it")
		}
		if ok, err := g.SetIfAbsent(ctx, "k", Item{Value: []byte("new")}); ok || err != nil {
			t.Errorf("SetIfAbsent on a cached key = %v, %v; want false", ok, err)
		}
		if ok, err := g.SetIfAbsent(ctx, "k2", Item{Value: []byte("new")}); !ok || err != nil {
			t.Errorf("SetIfAbsent on an absent key = %v, %v; want true", ok, err)
		}
		if v := mustGet(t, g, "k2"); v != "new" {
			t.Errorf("Get after SetIfAbsent = %q", v)
		}
		if err := g.InvalidateTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := g.Peek(ctx, "k"); ok {
			t.Errorf("a Set entry survived the invalidation of its tag")
		}
	})
}

func TestGetMany(t *testing.T) {
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o)
	mustGet(t, g, "a")
	got, err := g.GetMany(t.Context(), []string{"a", "b", "c", "b", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got["a"]) != "0" || string(got["b"]) != "0" || string(got["c"]) != "0" {
		t.Fatalf("GetMany = %q, want a, b, c", got)
	}
	if o.calls.Load() != 4 {
		t.Fatalf("loader calls = %d, want 4 (a, then b, c, missing once each)", o.calls.Load())
	}
}

func TestGetManyBatchLoader(t *testing.T) {
	var batches [][]string
	var mu sync.Mutex
	b := BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]Item, error) {
		mu.Lock()
		batches = append(batches, keys)
		mu.Unlock()
		m := map[string]Item{}
		for _, k := range keys {
			if k != "missing" {
				m[k] = Item{Value: []byte("b" + k)}
			}
		}
		return m, nil
	})
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o, WithBatchLoader(b), WithNegativeTTL(time.Minute))
	mustGet(t, g, "a") // through the single loader
	got, err := g.GetMany(t.Context(), []string{"a", "b", "c", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got["a"]) != "0" || string(got["b"]) != "bb" || string(got["c"]) != "bc" {
		t.Fatalf("GetMany = %q", got)
	}
	if len(batches) != 1 || len(batches[0]) != 3 {
		t.Fatalf("batches = %q, want one batch of b, c, missing", batches)
	}
	if err := g.Warm(t.Context(), "b", "c", "d", "missing"); err != nil {
		t.Fatal(err)
	}
	if len(batches) != 2 || fmt.Sprint(batches[1]) != "[d]" {
		t.Fatalf("Warm batches = %q, want a second batch of [d] only", batches)
	}
	if _, ok, _ := g.Peek(t.Context(), "d"); !ok {
		t.Fatalf("Warm did not cache d")
	}
	if st := g.Stats(); st.BatchLoads != 2 || st.Loads != 5 {
		t.Fatalf("Stats = %+v, want 2 batch loads and 5 loads", st)
	}
}

func TestWarmWithoutBatchLoader(t *testing.T) {
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o)
	if err := g.Warm(t.Context(), "a", "b", "missing"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, g, "a")
	mustGet(t, g, "b")
	if o.calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want 3", o.calls.Load())
	}
}

func TestBadInput(t *testing.T) {
	n := newTestNode(t)
	g := mustGroup(t, n, "g", newOrigin())
	long := string(make([]byte, MaxKeyLen+1))
	ctx := t.Context()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"empty key", func() error { _, err := g.Get(ctx, ""); return err }(), ErrEmptyKey},
		{"long key", func() error { _, err := g.Get(ctx, long); return err }(), ErrKeyTooLong},
		{"long key in GetMany", func() error { _, err := g.GetMany(ctx, []string{"a", long}); return err }(), ErrKeyTooLong},
		{"empty key in Invalidate", g.Invalidate(ctx, "a", ""), ErrEmptyKey},
		{"empty tag", g.InvalidateTags(ctx, ""), ErrInvalidTag},
		{"value too large", g.Set(ctx, "k", Item{Value: make([]byte, DefaultMaxValueBytes+1)}), ErrValueTooLarge},
		{"negative TTL in Set", g.Set(ctx, "k", Item{TTL: -time.Second}), ErrInvalidTTL}, // -1 is NoExpiry
		{"zero TTL in Expire", func() error { _, err := g.Expire(ctx, "k", 0); return err }(), ErrInvalidTTL},
		{"nil loader", func() error { _, err := NewGroup(n, "x", nil); return err }(), ErrNilLoader},
		{"nil LoaderFunc", func() error { _, err := NewGroup(n, "x", LoaderFunc(nil)); return err }(), ErrNilLoader},
		{"duplicate group", func() error { _, err := NewGroup(n, "g", newOrigin()); return err }(), ErrGroupExists},
		{"empty group name", func() error { _, err := NewGroup(n, "", newOrigin()); return err }(), ErrInvalidName},
		{"zero TTL", func() error { _, err := NewGroup(n, "x", newOrigin(), WithTTL(0)); return err }(), ErrInvalidTTL},
		{"negative load timeout", func() error { _, err := NewGroup(n, "x", newOrigin(), WithLoadTimeout(-1)); return err }(), ErrInvalidTTL},
		{"jitter 1", func() error { _, err := NewGroup(n, "x", newOrigin(), WithJitter(1)); return err }(), ErrInvalidOption},
		{"nil batch loader", func() error { _, err := NewGroup(n, "x", newOrigin(), WithBatchLoader(nil)); return err }(), ErrNilLoader},
		{"zero main bytes", func() error { _, err := NewGroup(n, "x", newOrigin(), WithMainBytes(0)); return err }(), ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
	big := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: make([]byte, 11)}, nil
	})
	gb := mustGroup(t, n, "big", big, WithMaxValueBytes(10))
	if _, err := gb.Get(ctx, "k"); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("Get of a loaded value over the limit = %v, want ErrValueTooLarge", err)
	}
	if _, ok := n.Group("x"); ok {
		t.Errorf("a rejected group was registered")
	}
}

func TestClosed(t *testing.T) {
	n, err := NewNode(Config{})
	if err != nil {
		t.Fatal(err)
	}
	g := mustGroup(t, n, "g", newOrigin())
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	ctx := t.Context()
	calls := map[string]error{
		"Get":                func() error { _, err := g.Get(ctx, "k"); return err }(),
		"GetMany":            func() error { _, err := g.GetMany(ctx, []string{"k"}); return err }(),
		"Peek":               func() error { _, _, err := g.Peek(ctx, "k"); return err }(),
		"Set":                g.Set(ctx, "k", Item{}),
		"SetIfAbsent":        func() error { _, err := g.SetIfAbsent(ctx, "k", Item{}); return err }(),
		"Expire":             func() error { _, err := g.Expire(ctx, "k", time.Second); return err }(),
		"Invalidate":         g.Invalidate(ctx, "k"),
		"InvalidateTags":     g.InvalidateTags(ctx, "t"),
		"Clear":              g.Clear(ctx),
		"Refresh":            func() error { _, err := g.Refresh(ctx, "k"); return err }(),
		"Warm":               g.Warm(ctx, "k"),
		"Warm no keys":       g.Warm(ctx),
		"GetMany no keys":    func() error { _, err := g.GetMany(ctx, nil); return err }(),
		"Invalidate no keys": g.Invalidate(ctx),
		"NewGroup":           func() error { _, err := NewGroup(n, "h", newOrigin()); return err }(),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestCloseCancelsLoads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := NewNode(Config{})
		started := make(chan struct{})
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			close(started)
			<-ctx.Done()
			return Item{}, ctx.Err()
		})
		g := mustGroup(t, n, "g", l)
		errc := make(chan error, 1)
		go func() {
			_, err := g.Get(context.Background(), "k")
			errc <- err
		}()
		<-started
		n.Close() // returns only once the load has ended
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Get during Close = %v, want the load cancelled", err)
		}
	})
}

func TestKey(t *testing.T) {
	tests := []struct {
		parts []any
		want  string
	}{
		{[]any{"a:b", "c"}, `a\:b:c`},
		{[]any{"a", "b:c"}, `a:b\:c`},
		{[]any{`a\`, "b"}, `a\\:b`},
		{[]any{"user", 42, int64(-1), uint(7), 1.5, true, []byte("x")}, "user:42:-1:7:1.5:true:x"},
		{[]any{time.Second}, "1s"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := Key(tt.parts...); got != tt.want {
			t.Errorf("Key(%v) = %q, want %q", tt.parts, got, tt.want)
		}
	}
	if Key("a:b", "c") == Key("a", "b:c") || Key(`a\`, ":b") == Key(`a\:`, "b") {
		t.Errorf("Key is ambiguous")
	}
}
