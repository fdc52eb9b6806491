package meshcache

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// getSrc is a Get that reports the value (or the error text) and source.
func getSrc(g *Group, key string) (string, Source) {
	var src Source
	v, err := g.Get(context.Background(), key, ReportSource(&src))
	if err != nil {
		return "error: " + err.Error(), src
	}
	return string(v), src
}

// TestStaleIfError: past its TTL, a key whose load fails is served stale
// for the window, its loads spaced to one a second; what a write removed,
// a not-found, and a key past the window are not.
func TestStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		o.tags = func(key string) []string { return []string{"tag:" + key} }
		g := mustGroup(t, newTestNode(t), "g", o, WithTTL(10*time.Second), WithStaleIfError(time.Minute))
		keys := []string{"k", "inval", "tagged", "expired", "set", "late"}
		for _, k := range keys {
			get(context.Background(), g, k)
		}
		g.Expire(context.Background(), "expired", 5*time.Second)
		time.Sleep(10 * time.Second)
		o.down.Store(true)
		calls := o.calls.Load()
		if v, src := getSrc(g, "k"); v != "0" || src != SourceStale {
			t.Errorf("Get(k) with the origin down = %q from %v, want the stale 0", v, src)
		}
		// More Gets within a second: served stale without loading.
		for range 5 {
			if v, src := getSrc(g, "k"); v != "0" || src != SourceStale {
				t.Errorf("Get(k) again = %q from %v, want the stale 0", v, src)
			}
		}
		if got := o.calls.Load() - calls; got != 1 {
			t.Errorf("loads of k within a second of a failure = %d, want 1", got)
		}
		time.Sleep(staleRetry)
		getSrc(g, "k")
		if got := o.calls.Load() - calls; got != 2 {
			t.Errorf("loads of k after a second = %d, want 2", got)
		}
		if err := g.Invalidate(context.Background(), "inval"); err != nil {
			t.Fatal(err)
		}
		if err := g.InvalidateTags(context.Background(), "tag:tagged"); err != nil {
			t.Fatal(err)
		}
		if err := g.Set(context.Background(), "set", Item{Value: []byte("new"), TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"inval", "tagged", "expired", "missing"} {
			if v, src := getSrc(g, k); src == SourceStale || v == "0" {
				t.Errorf("Get(%s) with the origin down = %q from %v, want an error", k, v, src)
			}
		}
		if v, _ := getSrc(g, "set"); v != "new" {
			t.Errorf("Get(set) = %q, want the Set value", v)
		}
		time.Sleep(time.Second)
		if v, src := getSrc(g, "set"); v != "new" || src != SourceStale {
			t.Errorf("Get(set) past its TTL = %q from %v, want the stale Set value", v, src)
		}
		time.Sleep(time.Minute)
		if v, src := getSrc(g, "late"); src == SourceStale {
			t.Errorf("Get(late) past the stale window = %q from %v, want an error", v, src)
		}
		o.down.Store(false)
		time.Sleep(staleRetry)
		o.bump("k")
		if v, src := getSrc(g, "k"); v != "1" || src != SourceLoad {
			t.Errorf("Get(k) after the outage = %q from %v, want 1 loaded", v, src)
		}
		if st := g.Stats(); st.StaleServed != 8 {
			t.Errorf("StaleServed = %d, want 8", st.StaleServed)
		}
	})
}

// TestStaleWhileRevalidate: past its TTL a key is served stale at once and
// refreshed once in the background.
func TestStaleWhileRevalidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithTTL(10*time.Second), WithStaleWhileRevalidate(time.Minute))
		get(context.Background(), g, "k")
		time.Sleep(10 * time.Second)
		o.bump("k")
		// The refresh may finish at once (the loader does not wait): one
		// Get is sure to be stale, the next ones stale or refreshed.
		if v, src := getSrc(g, "k"); v != "0" || src != SourceStale {
			t.Errorf("Get(k) past its TTL = %q from %v, want the stale 0 at once", v, src)
		}
		for range 2 {
			if v, src := getSrc(g, "k"); !(v == "0" && src == SourceStale) && v != "1" {
				t.Errorf("Get(k) during the refresh = %q from %v, want the stale 0 or the new 1", v, src)
			}
		}
		synctest.Wait() // the refresh
		if v, src := getSrc(g, "k"); v != "1" || src != SourceHit {
			t.Errorf("Get(k) after the refresh = %q from %v, want 1 from the cache", v, src)
		}
		// A Get that saw the expired entry just before the refresh stored
		// may start a second refresh, which finds the value cached: the
		// loads are what counts.
		if st := g.Stats(); st.Revalidations == 0 || st.StaleServed == 0 || o.calls.Load() != 2 {
			t.Errorf("Revalidations %d, StaleServed %d, loads %d; want > 0, > 0, 2", st.Revalidations, st.StaleServed, o.calls.Load())
		}
		// An invalidation during a refresh wins.
		time.Sleep(10 * time.Second)
		o.gate = make(chan struct{})
		o.calls.Store(0)
		if v, _ := getSrc(g, "k"); v != "1" {
			t.Errorf("Get(k) = %q, want the stale 1", v)
		}
		o.bump("k")
		if err := g.Invalidate(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
		close(o.gate)
		synctest.Wait()
		if v, src := getSrc(g, "k"); v != "2" {
			t.Errorf("Get(k) after an invalidation during the refresh = %q from %v, want 2", v, src)
		}
	})
}

// TestClusterStaleFromOwner: the owner serves its stale entry to peers when
// its load fails, and loads at most once a second for the fleet.
func TestClusterStaleFromOwner(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o, WithTTL(time.Second), WithHotTTL(time.Second), WithStaleIfError(time.Minute))
	key := keyOwnedBy(t, nodes[0], "n0", "k")
	for _, g := range gs {
		mustGet(t, g, key)
	}
	time.Sleep(1500 * time.Millisecond)
	o.down.Store(true)
	calls := o.calls.Load()
	for round := range 3 {
		for i, g := range gs {
			if v, src := getSrc(g, key); v != "0" || src != SourceStale {
				t.Errorf("round %d, n%d: Get = %q from %v, want the stale 0", round, i, v, src)
			}
		}
	}
	if got := o.calls.Load() - calls; got > 2 {
		t.Errorf("loads during the outage = %d, want at most 2 (one a second, at the owner)", got)
	}
}

// TestClusterStaleWhileRevalidate: past the TTL every node answers stale at
// once, and the owner refreshes the key once for the fleet.
func TestClusterStaleWhileRevalidate(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o, WithTTL(300*time.Millisecond), WithHotTTL(300*time.Millisecond), WithStaleWhileRevalidate(time.Minute))
	key := keyOwnedBy(t, nodes[0], "n0", "k")
	for _, g := range gs {
		mustGet(t, g, key)
	}
	time.Sleep(400 * time.Millisecond)
	o.bump(key)
	calls := o.calls.Load()
	for i, g := range gs {
		if v, src := getSrc(g, key); v != "0" || src != SourceStale {
			t.Errorf("n%d: Get past the TTL = %q from %v, want the stale 0 at once", i, v, src)
		}
	}
	waitFor(t, 10*time.Second, "every node serves the refreshed value", func() bool {
		for _, g := range gs {
			if v, _ := getSrc(g, key); v != "1" {
				return false
			}
		}
		return true
	})
	if got := o.calls.Load() - calls; got != 1 {
		t.Errorf("loads for the refresh = %d, want 1 (at the owner, for the fleet)", got)
	}
}
