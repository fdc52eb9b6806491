package meshcache

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshcache/meshcache/codec"
	"github.com/meshcache/meshcache/local"
)

// Tests of the API of issue 13: NoExpiry, SetMany and SetPassthrough. The
// fence stress tests run SetMany and NoExpiry too (fence_test.go).

// ttlLoader loads through o and gives every item the TTL ttl.
func ttlLoader(o *origin, ttl time.Duration) Loader {
	return LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		it, err := o.Load(ctx, key)
		it.TTL = ttl
		return it, err
	})
}

// peek returns key's entry in g, failing t if Peek fails.
func peek(t testing.TB, g *Group, key string) (Entry, bool) {
	t.Helper()
	e, ok, err := g.Peek(context.Background(), key)
	if err != nil {
		t.Fatalf("%s: Peek(%q): %v", g.node.Name(), key, err)
	}
	return e, ok
}

// TestNoExpiry: an item whose TTL is NoExpiry, loaded or Set, never
// expires (nor gets jitter), and Expire(NoExpiry) removes an expiry; Peek
// reports such entries with TTL 0. Other negative TTLs are refused.
func TestNoExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		o := newOrigin()
		ttls := map[string]time.Duration{"forever": NoExpiry, "short": time.Second, "bad": -time.Second}
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			it, err := o.Load(ctx, key)
			it.TTL = ttls[key]
			return it, err
		})
		// Jitter on, and expired entries kept for stale answers.
		g, err := NewGroup(newTestNode(t), "g", l, WithTTL(time.Minute), WithJitter(0.5), WithStaleIfError(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"forever", "short", "default"} {
			mustGet(t, g, k)
		}
		if err := g.Set(ctx, "set", Item{Value: []byte("s"), TTL: NoExpiry}); err != nil {
			t.Fatalf("Set with NoExpiry: %v", err)
		}
		if ok, err := g.Expire(ctx, "short", NoExpiry); !ok || err != nil {
			t.Fatalf("Expire(short, NoExpiry) = %v, %v; want true, nil", ok, err)
		}
		for _, k := range []string{"forever", "set", "short"} {
			if e, ok := peek(t, g, k); !ok || e.TTL != 0 {
				t.Errorf("Peek(%s) = %+v, %v; want TTL 0 (no expiry)", k, e, ok)
			}
		}
		if e, _ := peek(t, g, "default"); e.TTL <= 30*time.Second || e.TTL > time.Minute {
			t.Errorf("Peek(default).TTL = %v, want the group's minute less jitter", e.TTL)
		}

		// default expired 30 to 60 seconds ago: within its stale window.
		time.Sleep(90 * time.Second)
		o.down.Store(true) // a Get that loads now fails, or is answered stale
		for k, want := range map[string]string{"forever": "0", "set": "s", "short": "0"} {
			if v, src := getSrc(g, k); v != want || src != SourceHit {
				t.Errorf("Get(%s) past the group's TTL = %q from %v, want %q from the cache", k, v, src, want)
			}
		}
		if v, src := getSrc(g, "default"); v != "0" || src != SourceStale {
			t.Errorf("Get(default) past its TTL = %q from %v, want the stale 0", v, src)
		}
		o.down.Store(false)
		if got := o.calls.Load(); got != 4 {
			t.Errorf("loader calls = %d, want 4 (3 loads, 1 failed reload of default)", got)
		}
		time.Sleep(24 * time.Hour)
		for _, k := range []string{"forever", "set", "short"} {
			if _, ok := peek(t, g, k); !ok {
				t.Errorf("Peek(%s) a day later found nothing", k)
			}
		}

		// Expire gives an entry without expiry a TTL again.
		if ok, err := g.Expire(ctx, "forever", time.Second); !ok || err != nil {
			t.Fatalf("Expire(forever, 1s) = %v, %v", ok, err)
		}
		time.Sleep(time.Second)
		if _, ok := peek(t, g, "forever"); ok {
			t.Error("Peek found forever a second after Expire(forever, 1s)")
		}

		// Other negative TTLs are errors: from a loader, nothing is cached.
		errs := g.Stats().LoadErrors
		if _, err := g.Get(ctx, "bad"); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("Get of a loaded item with TTL -1s = %v, want ErrInvalidTTL", err)
		}
		if _, ok := peek(t, g, "bad"); ok {
			t.Error("an item with TTL -1s was cached")
		}
		if got := g.Stats().LoadErrors - errs; got != 1 {
			t.Errorf("LoadErrors grew by %d, want 1", got)
		}
		for name, err := range map[string]error{
			"Set -2ns":    g.Set(ctx, "k", Item{TTL: NoExpiry - 1}),
			"Expire -2ns": func() error { _, err := g.Expire(ctx, "set", NoExpiry-1); return err }(),
			"Expire 0":    func() error { _, err := g.Expire(ctx, "set", 0); return err }(),
			"SetMany -1s": g.SetMany(ctx, map[string]Item{"k": {TTL: -time.Second}}),
		} {
			if !errors.Is(err, ErrInvalidTTL) {
				t.Errorf("%s = %v, want ErrInvalidTTL", name, err)
			}
		}
	})
}

// TestNoExpiryBounded: entries without expiry are evicted by the byte
// bound like any.
func TestNoExpiryBounded(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin(), WithMainBytes(10_000))
	for i := range 30 {
		if err := g.Set(t.Context(), strconv.Itoa(i), Item{Value: make([]byte, 1000), TTL: NoExpiry}); err != nil {
			t.Fatal(err)
		}
	}
	if st := g.Stats(); st.Bytes > 10_000 || st.Evictions == 0 {
		t.Errorf("Stats = %+v, want Bytes <= 10000 and some evictions", st)
	}
	if _, ok := peek(t, g, "29"); !ok {
		t.Error("the last entry Set is not cached")
	}
	if _, ok := peek(t, g, "0"); ok {
		t.Error("the first entry Set outlived the byte bound")
	}
}

// TestNoExpiryCopies: where a node keeps values of keys it does not own
// (its hot cache: fetched copies and fallback loads; its stand-in tier) a
// value without expiry lasts the hot TTL, and so does one restored from a
// snapshot into the hot cache; the main cache keeps it without expiry.
func TestNoExpiryCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := mustGroup(t, newTestNode(t), "g", newOrigin(), WithHotTTL(time.Minute))
		ctx := context.Background()
		expires := func(tier local.Tier, key string) time.Duration {
			t.Helper()
			e, ok := g.store.Get(tier, key)
			if !ok {
				t.Fatalf("%v: %s not stored", tier, key)
			}
			if e.Expires.IsZero() {
				return 0
			}
			return time.Until(e.Expires)
		}
		item := Item{Value: []byte("v"), TTL: NoExpiry}
		for _, tier := range []local.Tier{local.Main, local.Hot, local.StandIn} {
			if _, ok := g.storeLoaded(ctx, tier.String(), item, g.store.Seq(), tier); !ok {
				t.Fatalf("storeLoaded into %v refused the item", tier)
			}
		}
		if d := expires(local.Main, "main"); d != 0 {
			t.Errorf("main: loaded without expiry, expires in %v, want never", d)
		}
		for _, tier := range []local.Tier{local.Hot, local.StandIn} {
			if d := expires(tier, tier.String()); d != time.Minute {
				t.Errorf("%v: loaded without expiry, expires in %v, want the hot TTL 1m", tier, d)
			}
		}
		// Expire(NoExpiry) on this node's tiers.
		if err := g.Set(ctx, "stand-in", Item{Value: []byte("v")}); err != nil { // the main tier, for Expire
			t.Fatal(err)
		}
		g.storeLoaded(ctx, "stand-in", item, g.store.Seq(), local.StandIn)
		if ok, err := g.Expire(ctx, "stand-in", NoExpiry); !ok || err != nil {
			t.Fatalf("Expire(NoExpiry) = %v, %v", ok, err)
		}
		if d := expires(local.Main, "stand-in"); d != 0 {
			t.Errorf("main: after Expire(NoExpiry), expires in %v, want never", d)
		}
		if d := expires(local.StandIn, "stand-in"); d != time.Minute {
			t.Errorf("stand-in: after Expire(NoExpiry), expires in %v, want the hot TTL 1m", d)
		}
		// A snapshot's entries without expiry.
		g.restore([]snapshotEntry{
			{Key: "snap-main", Value: []byte("m")},
			{Key: "snap-hot", Value: []byte("h"), Hot: true},
		}, g.store.Seq())
		if d := expires(local.Main, "snap-main"); d != 0 {
			t.Errorf("restored into main without expiry: expires in %v, want never", d)
		}
		if d := expires(local.Hot, "snap-hot"); d != time.Minute {
			t.Errorf("restored into hot without expiry: expires in %v, want the hot TTL 1m", d)
		}
	})
}

// TestNoExpirySnapshot: an entry without expiry goes through a snapshot
// file and comes back without expiry.
func TestNoExpirySnapshot(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{NodeName: "solo", SnapshotDir: dir, Logger: testLogger()}
	n1, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g1 := mustGroup(t, n1, "g", newOrigin(), WithTTL(time.Hour))
	if err := g1.Set(t.Context(), "forever", Item{Value: []byte("f"), TTL: NoExpiry}); err != nil {
		t.Fatal(err)
	}
	n1.Close()
	n2, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	g2 := mustGroup(t, n2, "g", newOrigin(), WithTTL(time.Hour))
	if e, ok := peek(t, g2, "forever"); !ok || string(e.Value) != "f" || e.TTL != 0 {
		t.Errorf("restored Peek(forever) = %+v, %v; want f without expiry", e, ok)
	}
}

// TestSetMany on one node: every item stored with its TTL and tags, one
// write; NoStore items invalidated; nothing written when an item is bad or
// the map empty.
func TestSetMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithTTL(time.Hour))
		for _, k := range []string{"a", "drop"} {
			mustGet(t, g, k)
		}
		seq := g.store.Seq()
		if err := g.SetMany(ctx, nil); err != nil {
			t.Errorf("SetMany(nil) = %v", err)
		}
		if err := g.SetMany(ctx, map[string]Item{}); err != nil {
			t.Errorf("SetMany(empty) = %v", err)
		}
		long := strings.Repeat("x", MaxKeyLen+1)
		for name, tt := range map[string]struct {
			bad  map[string]Item
			want error
		}{
			"empty key":   {map[string]Item{"": {}}, ErrEmptyKey},
			"long key":    {map[string]Item{long: {}}, ErrKeyTooLong},
			"bad TTL":     {map[string]Item{"b": {TTL: -time.Minute}}, ErrInvalidTTL},
			"large value": {map[string]Item{"b": {Value: make([]byte, DefaultMaxValueBytes+1)}}, ErrValueTooLarge},
			"long tag":    {map[string]Item{"b": {Tags: []string{long}}}, ErrInvalidTag},
		} {
			items := map[string]Item{"a": {Value: []byte("never")}, "c": {Value: []byte("never")}}
			for k, it := range tt.bad {
				items[k] = it
			}
			if err := g.SetMany(ctx, items); !errors.Is(err, tt.want) {
				t.Errorf("SetMany with a %s = %v, want %v", name, err, tt.want)
			}
		}
		if g.store.Seq() != seq {
			t.Error("an empty or refused SetMany wrote")
		}
		if v := mustGet(t, g, "a"); v != "0" {
			t.Errorf("Get(a) after refused SetManys = %q, want 0", v)
		}

		items := map[string]Item{
			"a":    {Value: []byte("A"), TTL: time.Minute, Tags: []string{"t"}},
			"b":    {Value: []byte("B"), TTL: NoExpiry},
			"c":    {Value: []byte("C")},
			"drop": {Value: []byte("D"), NoStore: true},
		}
		if err := g.SetMany(ctx, items); err != nil {
			t.Fatalf("SetMany: %v", err)
		}
		items["a"].Value[0] = 'X' // the group keeps its own copies
		for k, want := range map[string]struct {
			value string
			ttl   time.Duration
		}{"a": {"A", time.Minute}, "b": {"B", 0}, "c": {"C", time.Hour}} {
			if e, ok := peek(t, g, k); !ok || string(e.Value) != want.value || e.TTL != want.ttl {
				t.Errorf("Peek(%s) = %+v, %v; want %q with TTL %v", k, e, ok, want.value, want.ttl)
			}
		}
		if _, ok := peek(t, g, "drop"); ok {
			t.Error("a NoStore item's key is still cached")
		}
		calls := o.calls.Load()
		for k, want := range map[string]string{"a": "A", "b": "B", "c": "C"} {
			if v := mustGet(t, g, k); v != want {
				t.Errorf("Get(%s) = %q, want %q", k, v, want)
			}
		}
		if got := o.calls.Load() - calls; got != 0 {
			t.Errorf("Gets after SetMany loaded %d times, want 0", got)
		}
		if err := g.InvalidateTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if _, ok := peek(t, g, "a"); ok {
			t.Error("a SetMany entry survived the invalidation of its tag")
		}
		g.node.Close()
		if err := g.SetMany(ctx, map[string]Item{"a": {}}); !errors.Is(err, ErrClosed) {
			t.Errorf("SetMany on a closed node = %v, want ErrClosed", err)
		}
	})
}

// TestJoinUnacked: the two writes of a SetMany with NoStore items report
// one InvalidateError, each member once.
func TestJoinUnacked(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	a := &InvalidateError{Op: "set", Group: "g", Unacked: []string{"n1", "n3"}, Causes: []error{errA, errA}}
	b := &InvalidateError{Op: "invalidate", Group: "g", Unacked: []string{"n2", "n3"}, Causes: []error{errB, errB}}
	if err := joinUnacked(nil, nil); err != nil {
		t.Errorf("joinUnacked(nil, nil) = %v", err)
	}
	if err := joinUnacked(a, nil); err != a {
		t.Errorf("joinUnacked(a, nil) = %v, want a", err)
	}
	if err := joinUnacked(nil, b); err != b {
		t.Errorf("joinUnacked(nil, b) = %v, want b", err)
	}
	err := joinUnacked(a, b)
	ie, ok := errors.AsType[*InvalidateError](err)
	if !ok || !errors.Is(err, ErrPartialInvalidation) {
		t.Fatalf("joinUnacked(a, b) = %v, want an *InvalidateError", err)
	}
	want := []string{"n1", "n2", "n3"}
	causes := []error{errA, errB, errA}
	if ie.Op != "set" || strings.Join(ie.Unacked, ",") != strings.Join(want, ",") || len(ie.Causes) != 3 {
		t.Fatalf("joinUnacked(a, b) = %+v, want set's error naming %v", ie, want)
	}
	for i := range causes {
		if ie.Causes[i] != causes[i] {
			t.Errorf("cause of %s = %v, want %v", want[i], ie.Causes[i], causes[i])
		}
	}
}

// TestSetPassthrough: while passthrough is on, Gets load for their callers
// and the cache is neither read nor filled; writes still apply, so that
// when it is off again the cache serves what it kept, never what a write
// removed or replaced meanwhile.
func TestSetPassthrough(t *testing.T) {
	ctx := t.Context()
	o := newOrigin()
	o.tags = func(key string) []string { return []string{"tag:" + key} }
	g := mustGroup(t, newTestNode(t), "g", o)
	keys := []string{"kept", "set", "inval", "tagged"}
	for _, k := range keys {
		mustGet(t, g, k)
		o.bump(k) // version 1 at the origin, 0 cached
	}
	items := g.Stats().Items

	g.SetPassthrough(true)
	calls := o.calls.Load()
	if v := mustGet(t, g, "kept"); v != "1" {
		t.Errorf("Get(kept) with passthrough = %q, want the loader's 1", v)
	}
	if got, err := g.GetMany(ctx, []string{"kept", "set"}); err != nil || string(got["kept"]) != "1" || string(got["set"]) != "1" {
		t.Errorf("GetMany with passthrough = %q, %v; want the loader's 1s", got, err)
	}
	if got := o.calls.Load() - calls; got != 3 {
		t.Errorf("loader calls with passthrough = %d, want 3", got)
	}
	if e, ok := peek(t, g, "kept"); !ok || string(e.Value) != "0" || g.Stats().Items != items {
		t.Errorf("passthrough changed the cache: Peek(kept) = %q, %v; items %d, want %d", e.Value, ok, g.Stats().Items, items)
	}
	if err := g.Set(ctx, "set", Item{Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if err := g.Invalidate(ctx, "inval"); err != nil {
		t.Fatal(err)
	}
	if err := g.InvalidateTags(ctx, "tag:tagged"); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, g, "set"); v != "1" {
		t.Errorf("Get(set) with passthrough after a Set = %q, want the loader's 1", v)
	}

	g.SetPassthrough(false)
	// kept: no write touched it, the cache serves it again.
	for k, want := range map[string]string{"kept": "0", "set": "new", "inval": "1", "tagged": "1"} {
		if v := mustGet(t, g, k); v != want {
			t.Errorf("Get(%s) after passthrough = %q, want %q", k, v, want)
		}
	}
	g.SetPassthrough(true)
	if err := g.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	g.SetPassthrough(false)
	if v := mustGet(t, g, "kept"); v != "1" {
		t.Errorf("Get(kept) after a Clear while passthrough was on = %q, want 1", v)
	}

	// WithPassthrough, then turned off: caching starts.
	p := mustGroup(t, g.node, "p", o, WithPassthrough())
	calls = o.calls.Load()
	mustGet(t, p, "k")
	mustGet(t, p, "k")
	p.SetPassthrough(false)
	mustGet(t, p, "k")
	mustGet(t, p, "k")
	if got := o.calls.Load() - calls; got != 3 {
		t.Errorf("loader calls: 2 with WithPassthrough, then 1 without = %d, want 3", got)
	}
	// NewFunc reads its options into a config of its own.
	f, err := NewFunc(g.node, "f", codec.String(), codec.String(), func(ctx context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	}, WithPassthrough())
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Call(ctx, "x"); err != nil || v != "X" {
		t.Errorf("Call with WithPassthrough = %q, %v", v, err)
	}
}

// TestSetPassthroughUnderLoad flips passthrough while readers and writers
// run: no Get that starts after a write returned sees an older value.
func TestSetPassthroughUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	s := newFenceStress(t)
	g := mustGroup(t, newTestNode(t), "g", s)
	ctx := t.Context()
	var wg sync.WaitGroup
	done := make(chan struct{})
	var flips int
	wg.Go(func() {
		for on := true; ; on = !on {
			select {
			case <-done:
				g.SetPassthrough(false)
				return
			case <-time.After(time.Millisecond):
			}
			g.SetPassthrough(on)
			flips++
		}
	})
	var work sync.WaitGroup
	for range 6 {
		work.Go(func() {
			for range 1500 {
				if !s.read(ctx, g) {
					return
				}
			}
		})
	}
	for range 2 {
		work.Go(func() {
			for range 250 {
				s.write(ctx, g)
			}
		})
	}
	work.Wait()
	close(done)
	wg.Wait()
	if n := s.violations.Load(); n > 0 {
		t.Fatalf("%d Gets saw a value older than a write that had returned", n)
	}
	st := g.Stats()
	t.Logf("%d flips; stats %+v", flips, st)
	if flips < 2 || st.Hits == 0 || st.Loads == 0 {
		t.Fatalf("the test exercised too little: %d flips, %+v", flips, st)
	}
}

// TestClusterSetMany: one SetMany of keys owned by three members is one
// write; each owner stores its items, every member drops its copies, and
// every node then reads the new values. With a member that does not
// answer, it returns an InvalidateError naming it, and the owners that
// answered keep what they stored.
func TestClusterSetMany(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	ctx := t.Context()
	keys := []string{keyOwnedBy(t, nodes[0], "n0", "a"), keyOwnedBy(t, nodes[0], "n1", "b"), keyOwnedBy(t, nodes[0], "n2", "c")}
	for _, g := range gs {
		for _, k := range keys {
			mustGet(t, g, k) // the owner's main cache, the others' hot copies
		}
	}
	items := map[string]Item{
		keys[0]: {Value: []byte("A"), TTL: time.Minute},
		keys[1]: {Value: []byte("B"), TTL: NoExpiry, Tags: []string{"t"}},
		keys[2]: {Value: []byte("C")},
	}
	writes := nodes[1].Stats().Writes
	if err := gs[1].SetMany(ctx, items); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	if got := nodes[1].Stats().Writes - writes; got != 1 {
		t.Errorf("SetMany fanned out %d writes, want 1", got)
	}
	calls := o.calls.Load()
	for i, g := range gs {
		for k, it := range items {
			owner := nodes[0].Owner(k) == nodes[i].Name()
			e, inMain := g.store.Get(local.Main, k)
			if inMain != owner || owner && !bytes.Equal(e.Value, it.Value) {
				t.Errorf("%s: %s in the main cache = %q, %v; want it there only at its owner", nodes[i].Name(), k, e.Value, inMain)
			}
			if _, hot := g.store.Get(local.Hot, k); hot {
				t.Errorf("%s: a hot copy of %s survived the SetMany", nodes[i].Name(), k)
			}
			if v := mustGet(t, g, k); v != string(it.Value) {
				t.Errorf("%s: Get(%s) = %q, want %q", nodes[i].Name(), k, v, it.Value)
			}
		}
	}
	if got := o.calls.Load() - calls; got != 0 {
		t.Errorf("Gets after SetMany loaded %d times, want 0", got)
	}
	if e, _ := peek(t, gs[1], keys[1]); e.TTL != 0 {
		t.Errorf("owner n1: Peek(%s).TTL = %v, want 0 (NoExpiry)", keys[1], e.TTL)
	}
	if e, _ := peek(t, gs[0], keys[0]); e.TTL <= 0 || e.TTL > time.Minute {
		t.Errorf("owner n0: Peek(%s).TTL = %v, want at most a minute", keys[0], e.TTL)
	}

	// NoStore: that key is invalidated everywhere, in a second write.
	writes = nodes[0].Stats().Writes
	if err := gs[0].SetMany(ctx, map[string]Item{keys[0]: {NoStore: true}, keys[2]: {Value: []byte("C2")}}); err != nil {
		t.Fatalf("SetMany with a NoStore item: %v", err)
	}
	if got := nodes[0].Stats().Writes - writes; got != 2 {
		t.Errorf("SetMany with a NoStore item fanned out %d writes, want 2", got)
	}
	for i, g := range gs {
		if _, ok := peek(t, g, keys[0]); ok {
			t.Errorf("%s: the NoStore item's key is still cached", nodes[i].Name())
		}
		if v := mustGet(t, g, keys[2]); v != "C2" {
			t.Errorf("%s: Get(%s) = %q, want C2", nodes[i].Name(), keys[2], v)
		}
	}

	// A member that does not acknowledge; both writes name it once.
	nodes[2].server.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := gs[0].SetMany(wctx, map[string]Item{keys[0]: {Value: []byte("A3")}, keys[1]: {Value: []byte("B3")}, keys[2]: {NoStore: true}})
	ie, ok := errors.AsType[*InvalidateError](err)
	if !ok || len(ie.Unacked) != 1 || ie.Unacked[0] != "n2" {
		t.Fatalf("SetMany with n2 not answering = %v, want an InvalidateError naming n2", err)
	}
	for i, want := range map[int]string{0: "A3", 1: "B3"} {
		if e, ok := peek(t, gs[i], keys[i]); !ok || string(e.Value) != want {
			t.Errorf("owner %s: Peek(%s) = %q, %v; want %q", nodes[i].Name(), keys[i], e.Value, ok, want)
		}
	}
}

// TestClusterSetManyFrameLimit: a SetMany over the peer transport's frame
// limit is acknowledged by no member; a Get of its keys there does not
// return the values it replaced.
func TestClusterSetManyFrameLimit(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.MaxFrameBytes = 4096 })
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	ctx := t.Context()
	keys := []string{keyOwnedBy(t, nodes[0], "n0", "a"), keyOwnedBy(t, nodes[0], "n1", "b")}
	for _, g := range gs {
		for _, k := range keys {
			mustGet(t, g, k)
		}
	}
	for _, k := range keys {
		o.bump(k)
	}
	items := map[string]Item{keys[0]: {Value: make([]byte, 3000)}, keys[1]: {Value: make([]byte, 3000)}}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := gs[0].SetMany(wctx, items)
	if ie, ok := errors.AsType[*InvalidateError](err); !ok || len(ie.Unacked) != 1 || ie.Unacked[0] != "n1" {
		t.Fatalf("SetMany over the frame limit = %v, want an InvalidateError naming n1", err)
	}
	// n1 gets the write by gossip, as a drop of the keys (or a Clear).
	waitFor(t, 10*time.Second, "n1 applies the write by gossip", func() bool { return nodes[1].Stats().GossipApplied > 0 })
	for i, g := range gs {
		for _, k := range keys {
			if v := mustGet(t, g, k); v == "0" {
				t.Errorf("%s: Get(%s) = the value the SetMany replaced", nodes[i].Name(), k)
			}
		}
	}
}

// TestClusterNoExpiry: a value without expiry, loaded or Set, is kept
// without expiry by its owner (Expire across the wire both ways), hot
// copies of it last the hot TTL, and it keeps no expiry when its key
// changes owner: handed over by a member that leaves, handed off to one
// that joins.
func TestClusterNoExpiry(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	opts := []GroupOption{WithTTL(time.Hour), WithHotTTL(time.Minute)}
	gs := newClusterGroups(t, nodes, "g", ttlLoader(o, NoExpiry), opts...)
	ctx := t.Context()
	copyTTL := func(g *Group, key string) {
		t.Helper()
		if e, ok := peek(t, g, key); !ok || e.TTL <= 0 || e.TTL > time.Minute {
			t.Errorf("%s: hot copy of %s = %+v, %v; want one that lasts at most the hot TTL", g.node.Name(), key, e, ok)
		}
	}
	noExpiry := func(g *Group, key, want string) {
		t.Helper()
		if e, ok := peek(t, g, key); !ok || string(e.Value) != want || e.TTL != 0 {
			t.Errorf("%s: Peek(%s) = %+v, %v; want %q without expiry", g.node.Name(), key, e, ok, want)
		}
	}

	// Loaded at its owner, n1; fetched by n0 (Get) and n2 (GetMany).
	k := keyOwnedBy(t, nodes[0], "n1", "k")
	if _, src := getSource(t, gs[0], k); src != SourcePeer {
		t.Fatalf("Get(%s) on n0 from %v, want the peer", k, src)
	}
	if _, err := gs[2].GetMany(ctx, []string{k}); err != nil {
		t.Fatal(err)
	}
	noExpiry(gs[1], k, "0")
	copyTTL(gs[0], k)
	copyTTL(gs[2], k)

	// Set from a non-owner; Expire from another.
	s := keyOwnedBy(t, nodes[0], "n2", "s")
	if err := gs[0].Set(ctx, s, Item{Value: []byte("s"), TTL: NoExpiry}); err != nil {
		t.Fatal(err)
	}
	noExpiry(gs[2], s, "s")
	mustGet(t, gs[1], s)
	copyTTL(gs[1], s)
	if ok, err := gs[0].Expire(ctx, s, time.Minute); !ok || err != nil {
		t.Fatalf("Expire(%s, 1m) = %v, %v", s, ok, err)
	}
	if e, _ := peek(t, gs[2], s); e.TTL <= 0 || e.TTL > time.Minute {
		t.Errorf("owner n2: TTL after Expire(1m) = %v", e.TTL)
	}
	if _, ok := peek(t, gs[1], s); ok {
		t.Error("n1: the hot copy survived Expire")
	}
	if ok, err := gs[1].Expire(ctx, s, NoExpiry); !ok || err != nil {
		t.Fatalf("Expire(%s, NoExpiry) = %v, %v", s, ok, err)
	}
	noExpiry(gs[2], s, "s")

	// n2 leaves: it hands l over to l's next owner (not s: a member
	// refuses a hand-over of a key written within the tombstone lifetime).
	l := keyOwnedBy(t, nodes[0], "n2", "l")
	mustGet(t, gs[2], l)
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	nodes, gs = nodes[:2], gs[:2]
	waitFor(t, 10*time.Second, "n0 and n1 drop n2", func() bool {
		return nodes[0].Stats().Members == 2 && nodes[1].Stats().Members == 2
	})
	next := gs[wtNodeIndex(nodes, nodes[0].Owner(l))]
	noExpiry(next, l, "0")

	// n3 joins: the keys it takes over are handed off to it.
	var hkeys []string
	for i := range 60 {
		hk := "h" + strconv.Itoa(i)
		mustGet(t, gs[wtNodeIndex(nodes, nodes[0].Owner(hk))], hk)
		hkeys = append(hkeys, hk)
	}
	nodes = wtJoin(t, nodes, "n3", nil)
	g3 := newClusterGroups(t, nodes[len(nodes)-1:], "g", ttlLoader(o, NoExpiry), opts...)[0]
	calls := o.calls.Load()
	moved := 0
	for _, hk := range hkeys {
		if nodes[0].Owner(hk) != "n3" {
			continue
		}
		moved++
		mustGet(t, g3, hk)
		noExpiry(g3, hk, "0")
	}
	if moved == 0 {
		t.Fatal("no key moved to n3")
	}
	if got, handoffs := o.calls.Load()-calls, g3.Stats().Handoffs; got != 0 || handoffs != uint64(moved) {
		t.Errorf("n3 took %d keys over with %d loads and %d hand-offs, want no load", moved, got, handoffs)
	}
}

// Regression (review): Expire(NoExpiry) removes the expiry only where the
// key's owner keeps it. A member that holds the key in its main cache
// without owning it (a former owner) keeps it at most the hot TTL.
func TestClusterExpireNoExpiryNonOwner(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	gs := newClusterGroups(t, nodes, "g", newOrigin(), WithTTL(time.Hour), WithHotTTL(time.Minute))
	key := keyOwnedBy(t, nodes[0], nodes[1].Name(), "k")
	mustGet(t, gs[1], key) // the owner's copy
	if !gs[0].store.Add(local.Main, local.Put{Key: key, Value: []byte("0"), TTL: time.Hour, Since: gs[0].store.Seq()}) {
		t.Fatal("could not plant a former owner's entry")
	}
	if ok, err := gs[0].Expire(t.Context(), key, NoExpiry); err != nil || !ok {
		t.Fatalf("Expire(NoExpiry) = %v, %v", ok, err)
	}
	if e, ok := gs[1].store.Get(local.Main, key); !ok || !e.Expires.IsZero() {
		t.Errorf("owner's entry after Expire(NoExpiry): %v, expires %v; want no expiry", ok, e.Expires)
	}
	e, ok := gs[0].store.Get(local.Main, key)
	if !ok {
		t.Fatal("the non-owner's main entry is gone")
	}
	if e.Expires.IsZero() || time.Until(e.Expires) > time.Minute {
		t.Errorf("non-owner's entry expires %v (in %v); want within the hot TTL", e.Expires, time.Until(e.Expires))
	}
}
