package meshcache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestWriteFencesLoadInFlight runs, for each kind of write, the interleaving
// the fences exist for:
//
//	Get A: miss, starts a load, reads version 0 from the origin, waits
//	writer: origin -> version 1, then the write returns
//	Get B: starts after the write returned: must not join A's flight
//	load A finishes last, with version 0: must not be stored
//
// so every Get that starts after the write sees version 1 (or the Set value).
func TestWriteFencesLoadInFlight(t *testing.T) {
	writes := []struct {
		name  string
		write func(ctx context.Context, g *Group) error
		want  string // what Gets after the write return
		loads int64  // loader calls in all
	}{
		{"Invalidate", func(ctx context.Context, g *Group) error { return g.Invalidate(ctx, "k") }, "1", 2},
		{"InvalidateTags", func(ctx context.Context, g *Group) error { return g.InvalidateTags(ctx, "tag") }, "1", 2},
		{"Node.InvalidateTags", func(ctx context.Context, g *Group) error { return g.node.InvalidateTags(ctx, "tag") }, "1", 2},
		{"Clear", func(ctx context.Context, g *Group) error { return g.Clear(ctx) }, "1", 2},
		{"Set", func(ctx context.Context, g *Group) error { return g.Set(ctx, "k", Item{Value: []byte("set")}) }, "set", 1},
		{"Set NoExpiry", func(ctx context.Context, g *Group) error {
			return g.Set(ctx, "k", Item{Value: []byte("set"), TTL: NoExpiry})
		}, "set", 1},
		{"SetMany", func(ctx context.Context, g *Group) error {
			return g.SetMany(ctx, map[string]Item{"j": {Value: []byte("j")}, "k": {Value: []byte("set")}})
		}, "set", 1},
		{"Refresh", func(ctx context.Context, g *Group) error { _, err := g.Refresh(ctx, "k"); return err }, "1", 2},
		{"ForceRefresh in GetMany", func(ctx context.Context, g *Group) error {
			_, err := g.GetMany(ctx, []string{"k"}, ForceRefresh())
			return err
		}, "1", 2},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := newOrigin()
				o.tags = func(string) []string { return []string{"tag"} }
				o.gate = make(chan struct{}) // holds the first load only
				o.entered = make(chan string, 4)
				g := mustGroup(t, newTestNode(t), "g", o)
				// Joining the older flight would block on the gate: bound
				// the waits (fake time) so that the test fails instead.
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()

				resA := make(chan string, 1)
				go func() { resA <- get(ctx, g, "k") }()
				<-o.entered // A's load read version 0
				o.bump("k")
				if err := w.write(ctx, g); err != nil {
					t.Fatalf("%s: %v", w.name, err)
				}
				if b := get(ctx, g, "k"); b != w.want {
					t.Errorf("Get B (started after the write) = %q, want %q", b, w.want)
				}
				close(o.gate)
				if a := <-resA; a != "0" {
					t.Errorf("Get A (started before the write) = %q, want %q", a, "0")
				}
				if c := get(ctx, g, "k"); c != w.want {
					t.Errorf("Get after the older load finished = %q, want %q: the fenced load was stored", c, w.want)
				}
				if got := o.calls.Load(); got != w.loads {
					t.Errorf("loader calls = %d, want %d", got, w.loads)
				}
			})
		})
	}
}

// TestFenceStress runs random concurrent Gets, Sets, SetManys, Invalidates,
// InvalidateTags and Clears against a versioned origin and checks the
// guarantee after every write: no Get that starts after a write returned
// sees a value older than that write.
func TestFenceStress(t *testing.T) {
	const (
		readers = 8
		writers = 3
		reads   = 2500
		writes  = 400
	)
	if testing.Short() {
		t.Skip("stress test")
	}
	for _, mode := range stressModes {
		t.Run(mode.name, func(t *testing.T) { fenceStressOneNode(t, mode, readers, writers, reads, writes) })
	}
}

// A stressMode is a configuration of the fence stress tests: each feature
// that stores or serves values runs them with itself turned on.
type stressMode struct {
	name string
	opts []GroupOption
	// failEvery makes every failEvery-th load fail (0: none), so that
	// stale values are served.
	failEvery int64
	// churn: a member leaves (handing over) and another joins while the
	// cluster stress test runs.
	churn bool
	// standIn: two members keep suspecting the third, so its keys are
	// loaded and served by stand-ins while the cluster stress test runs.
	standIn bool
	// l2: the group has a second level on a real Redis (WithL2).
	l2 bool
	// window: loads go through a batch window (WithBatchWindow).
	window bool
	// writersPerNode runs that many writers on each node of the cluster
	// stress test (0: one), so that their requests to a member share
	// frames (write lanes).
	writersPerNode int
	// nodeTags: half of the tag invalidations are writes to every group
	// (Node.InvalidateTags).
	nodeTags bool
	// noExpiry: loaded and written items never expire (NoExpiry), and
	// Expire(NoExpiry) runs among the writes.
	noExpiry bool
}

// groupOptions returns the mode's options, with a second level on a Redis
// started for t in the l2 mode, and s's batch loader in the window mode.
func (m stressMode) groupOptions(t testing.TB, s *fenceStress) []GroupOption {
	opts := slices.Clone(m.opts)
	if m.l2 {
		opts = append(opts, WithL2(newTestL2(t)))
	}
	if m.window {
		opts = append(opts, WithBatchWindow(200*time.Microsecond), WithBatchLoader(BatchLoaderFunc(
			func(ctx context.Context, keys []string) (map[string]Item, error) {
				items := make(map[string]Item, len(keys))
				for _, k := range keys {
					it, err := s.Load(ctx, k)
					if err != nil {
						return nil, err
					}
					items[k] = it
				}
				return items, nil
			})))
	}
	return opts
}

// checkNodeTags fails t when the mode's writes to every group did not run.
func (m stressMode) checkNodeTags(t testing.TB, s *fenceStress) {
	if m.nodeTags && s.nodeTagWrites.Load() == 0 {
		t.Fatal("the mode made no write to every group (Node.InvalidateTags)")
	}
}

// checkL2 fails t when the l2 mode did not use its second level.
func (m stressMode) checkL2(t testing.TB, st Stats) {
	if m.l2 && (st.L2Hits == 0 || st.L2Stores == 0) {
		t.Fatalf("the l2 mode found or stored nothing in L2: %+v", st)
	}
}

var stressModes = []stressMode{
	{name: "plain", nodeTags: true},
	// Entries expire within a few reads, and one load in 4 fails: stale
	// answers (before and after failed loads) and background refreshes
	// race with the writes.
	{name: "stale", opts: []GroupOption{WithTTL(2 * time.Millisecond), WithHotTTL(2 * time.Millisecond),
		WithStaleIfError(time.Minute), WithStaleWhileRevalidate(3 * time.Millisecond)}, failEvery: 4},
	// A second level on a real Redis, under caches that hold a few entries
	// each: keys evicted here are found in L2, loads write back to it, and
	// writes delete from it while loads are in flight.
	// Node.InvalidateTags reaches the second level too.
	{name: "l2", l2: true, nodeTags: true, opts: []GroupOption{WithMainBytes(3 * 200), WithHotBytes(3 * 200)}},
	// Loads of distinct keys go in batches (WithBatchWindow), the owner's
	// for its peers too.
	{name: "window", window: true},
	// Nothing expires at the owners; hot copies of values without expiry
	// still expire within a few reads.
	{name: "noexpiry", noExpiry: true, opts: []GroupOption{WithHotTTL(20 * time.Millisecond)}},
}

func fenceStressOneNode(t *testing.T, mode stressMode, readers, writers, reads, writes int) {
	s := newFenceStress(t)
	s.failEvery = mode.failEvery
	s.nodeTags = mode.nodeTags
	s.noExpiry = mode.noExpiry
	g := mustGroup(t, newTestNode(t), "g", s, mode.groupOptions(t, s)...)
	ctx := t.Context()
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for range reads {
				if !s.read(ctx, g) {
					return
				}
			}
		})
	}
	for range writers {
		wg.Go(func() {
			for range writes {
				s.write(ctx, g)
			}
		})
	}
	wg.Wait()
	if n := s.violations.Load(); n > 0 {
		t.Fatalf("%d Gets saw a value older than a write that had returned", n)
	}
	st := g.Stats()
	t.Logf("stats: %s", fmt.Sprintf("%+v", st))
	if st.Loads == 0 || st.Hits == 0 {
		t.Fatalf("the stress test exercised nothing: %+v", st)
	}
	if mode.failEvery > 0 && st.StaleServed == 0 {
		t.Fatalf("the stale mode served nothing stale: %+v", st)
	}
	mode.checkL2(t, st)
	mode.checkWindow(t, st)
	mode.checkNodeTags(t, s)
	mode.checkWrites(t, s)
}

// checkWrites fails t when the stress ran no SetMany, or the noexpiry mode
// no Expire.
func (m stressMode) checkWrites(t testing.TB, s *fenceStress) {
	t.Logf("writes: %d SetMany, %d Expire(NoExpiry)", s.writes[4].Load(), s.writes[5].Load())
	if s.writes[4].Load() == 0 || m.noExpiry && s.writes[5].Load() == 0 {
		t.Fatalf("the stress test ran no SetMany, or no Expire in the noexpiry mode: %d, %d", s.writes[4].Load(), s.writes[5].Load())
	}
}

// checkWindow fails t when the window mode batched nothing.
func (m stressMode) checkWindow(t testing.TB, st Stats) {
	if m.window && st.BatchLoads == 0 {
		t.Fatalf("the window mode made no batch: %+v", st)
	}
}

// Keys and tags of a fenceStress.
const (
	stressKeys = 8
	stressTags = 4
)

// fenceStress is a versioned origin for stress tests of the guarantee: its
// Load returns a key's current version (staying in flight for a random
// while), write bumps versions and writes them through a group, and read
// checks that a Get that started after a write returned sees at least the
// version that write left.
type fenceStress struct {
	t          testing.TB
	mu         sync.Mutex // guards versions
	versions   [stressKeys]int
	keyLocks   [stressKeys]sync.Mutex // serialize writes of one key: concurrent Sets of one key have no order to check
	floor      [stressKeys]atomic.Int64
	violations atomic.Int64
	reads      atomic.Int64
	failEvery  int64 // every failEvery-th load fails (0: none)
	// keysOnly: writes are Sets and Invalidates of the first half of the
	// keys only (no tags, no Clear), so that the other half stays cached
	// and a member leaving hands it over (any write within the tombstone
	// lifetime refuses a hand-over of what it touched).
	keysOnly bool
	// noExpiry: loaded and written items have the TTL NoExpiry, and some
	// writes are Expire(NoExpiry).
	noExpiry bool
	loads    atomic.Int64    // loads, for failEvery
	failed   atomic.Int64    // Gets that failed because a load failed
	writes   [6]atomic.Int64 // Set, Invalidate, InvalidateTags, Clear, SetMany, Expire

	// nodeTags: half of the tag invalidations go to every group
	// (Node.InvalidateTags), counted in nodeTagWrites.
	nodeTags      bool
	nodeTagWrites atomic.Int64
}

func newFenceStress(t testing.TB) *fenceStress { return &fenceStress{t: t} }

func stressKey(i int) string { return "k" + strconv.Itoa(i) }
func stressTag(i int) string { return "t" + strconv.Itoa(i%stressTags) }

func (s *fenceStress) Load(ctx context.Context, key string) (Item, error) {
	i, _ := strconv.Atoi(key[1:])
	s.mu.Lock()
	v := s.versions[i]
	s.mu.Unlock()
	// Stay in flight while writes happen and other Gets arrive.
	time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
	if s.failEvery > 0 && s.loads.Add(1)%s.failEvery == 0 {
		return Item{}, errDown
	}
	return Item{Value: []byte(strconv.Itoa(v)), TTL: s.ttl(), Tags: []string{stressTag(i)}}, nil
}

// ttl is the TTL of the items s loads and writes.
func (s *fenceStress) ttl() time.Duration {
	if s.noExpiry {
		return NoExpiry
	}
	return 0
}

func (s *fenceStress) bump(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions[i]++
	return s.versions[i]
}

// read Gets a random key through g (now and then with ForceRefresh) and
// counts a violation if it is older than the key's floor when it started.
// It returns false if the Get failed.
func (s *fenceStress) read(ctx context.Context, g *Group) bool {
	i := rand.IntN(stressKeys)
	atStart := s.floor[i].Load()
	var opts []CallOption
	if rand.IntN(50) == 0 && !(s.keysOnly && i >= stressKeys/2) { // a refresh fences like a write
		opts = append(opts, ForceRefresh())
	}
	v, err := g.Get(ctx, stressKey(i), opts...)
	if err != nil && s.failEvery > 0 && errors.Is(err, ErrLoadFailed) {
		s.failed.Add(1) // nothing stale to serve
		return true
	}
	if err != nil {
		s.t.Errorf("%s: Get: %v", g.node.Name(), err)
		return false
	}
	s.reads.Add(1)
	if got, _ := strconv.Atoi(string(v)); int64(got) < atStart {
		if s.violations.Add(1) <= 5 {
			s.t.Errorf("%s: Get(%s) = version %d after a write of version %d returned", g.node.Name(), stressKey(i), got, atStart)
		}
	}
	return true
}

// write runs one random write through g, paced so that loads are in flight
// when it runs: a Set, a SetMany, an Invalidate, an InvalidateTags or a
// Clear (in the noExpiry mode, also an Expire(NoExpiry)).
func (s *fenceStress) write(ctx context.Context, g *Group) {
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	if s.noExpiry && rand.IntN(8) == 0 {
		// It changes no value: no version to bump, no floor to raise.
		if _, err := g.Expire(ctx, stressKey(rand.IntN(stressKeys)), NoExpiry); err != nil {
			s.t.Errorf("write: %v", err)
		}
		s.writes[5].Add(1)
		return
	}
	if s.keysOnly {
		i := rand.IntN(stressKeys / 2)
		switch rand.IntN(4) {
		case 0:
			s.writeKeys([]int{i}, func(vs []int) error {
				return g.Set(ctx, stressKey(i), Item{Value: []byte(strconv.Itoa(vs[0])), TTL: s.ttl(), Tags: []string{stressTag(i)}})
			})
			s.writes[0].Add(1)
		case 1:
			s.setMany(ctx, g, stressKeys/2)
		default:
			s.writeKeys([]int{i}, func([]int) error { return g.Invalidate(ctx, stressKey(i)) })
			s.writes[1].Add(1)
		}
		return
	}
	switch op := rand.IntN(10); {
	case op < 2:
		i := rand.IntN(stressKeys)
		s.writeKeys([]int{i}, func(vs []int) error {
			return g.Set(ctx, stressKey(i), Item{Value: []byte(strconv.Itoa(vs[0])), TTL: s.ttl(), Tags: []string{stressTag(i)}})
		})
		s.writes[0].Add(1)
	case op < 4:
		s.setMany(ctx, g, stressKeys)
	case op < 7:
		i := rand.IntN(stressKeys)
		s.writeKeys([]int{i}, func([]int) error { return g.Invalidate(ctx, stressKey(i)) })
		s.writes[1].Add(1)
	case op < 9:
		tag := rand.IntN(stressTags)
		var idx []int
		for i := range stressKeys {
			if i%stressTags == tag {
				idx = append(idx, i)
			}
		}
		if s.nodeTags && rand.IntN(2) == 0 {
			s.writeKeys(idx, func([]int) error { return g.node.InvalidateTags(ctx, stressTag(tag)) })
			s.nodeTagWrites.Add(1)
		} else {
			s.writeKeys(idx, func([]int) error { return g.InvalidateTags(ctx, stressTag(tag)) })
		}
		s.writes[2].Add(1)
	default:
		idx := make([]int, stressKeys)
		for i := range idx {
			idx[i] = i
		}
		s.writeKeys(idx, func([]int) error { return g.Clear(ctx) })
		s.writes[3].Add(1)
	}
}

// setMany writes two or three of the first n keys (in a cluster, mostly
// owned by different members) with one SetMany.
func (s *fenceStress) setMany(ctx context.Context, g *Group, n int) {
	idx := rand.Perm(n)[:2+rand.IntN(2)]
	slices.Sort(idx) // writeKeys locks in this order
	s.writeKeys(idx, func(vs []int) error {
		items := make(map[string]Item, len(idx))
		for j, i := range idx {
			items[stressKey(i)] = Item{Value: []byte(strconv.Itoa(vs[j])), TTL: s.ttl(), Tags: []string{stressTag(i)}}
		}
		return g.SetMany(ctx, items)
	})
	s.writes[4].Add(1)
}

// writeKeys locks the keys in order, bumps their versions, runs write and
// raises their floors once it returned nil.
func (s *fenceStress) writeKeys(idx []int, write func(vs []int) error) {
	for _, i := range idx {
		s.keyLocks[i].Lock()
	}
	defer func() {
		for _, i := range idx {
			s.keyLocks[i].Unlock()
		}
	}()
	vs := make([]int, len(idx))
	for j, i := range idx {
		vs[j] = s.bump(i)
	}
	if err := write(vs); err != nil {
		s.t.Errorf("write: %v", err)
		return
	}
	for j, i := range idx {
		s.floor[i].Store(int64(vs[j]))
	}
}
