package local

import (
	"fmt"
	"sync"
	"testing"
)

// TestCountAndByteBounds checks that whichever bound is tighter holds.
func TestCountAndByteBounds(t *testing.T) {
	// Each entry: 2-byte key, 8-byte value: cost 10+EntryOverhead.
	const cost = 10 + EntryOverhead
	tests := []struct {
		name      string
		cfg       Config
		big       bool // add an entry costing three small ones last
		wantItems int64
	}{
		{"count binds", Config{MainBytes: 10 * cost, MainItems: 4}, false, 4},
		{"bytes bind", Config{MainBytes: 4 * cost, MainItems: 10}, false, 4},
		{"equal", Config{MainBytes: 4 * cost, MainItems: 4}, false, 4},
		{"big entry: bytes bind", Config{MainBytes: 4 * cost, MainItems: 4}, true, 2},
		{"big entry: count binds", Config{MainBytes: 10 * cost, MainItems: 2}, true, 2},
		{"no count bound", Config{MainBytes: 10 * cost}, false, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, tc.cfg)
			for i := range 20 {
				if !s.Add(Main, Put{Key: fmt.Sprintf("%02d", i), Value: []byte("12345678")}) {
					t.Fatalf("Add(%02d) = false", i)
				}
			}
			if tc.big && !s.Add(Main, Put{Key: "bb", Value: make([]byte, 3*cost-EntryOverhead-2)}) {
				t.Fatalf("Add(bb) = false")
			}
			st := s.Stats()
			if st.Items != tc.wantItems {
				t.Errorf("Items = %d, want %d", st.Items, tc.wantItems)
			}
			if st.Bytes > tc.cfg.MainBytes {
				t.Errorf("Bytes = %d, over the bound %d", st.Bytes, tc.cfg.MainBytes)
			}
			adds := int64(20)
			if tc.big {
				adds++
			}
			if got := uint64(adds - st.Items); st.Evictions != got {
				t.Errorf("Evictions = %d, want %d (adds - items)", st.Evictions, got)
			}
			// The newest entries are the ones kept.
			last := "19"
			if tc.big {
				last = "bb"
			}
			if _, ok := s.Get(Main, last); !ok {
				t.Errorf("the newest entry %q was evicted", last)
			}
		})
	}
}

// TestCountBoundPerTier checks that each tier has its own count bound, that
// StandIn takes Hot's unless given its own, and that a negative one is no
// bound.
func TestCountBoundPerTier(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want [3]int64 // Main, Hot, StandIn items after 50 Adds to each
	}{
		{"stand-in takes hot's", Config{MainItems: 10, HotItems: 3}, [3]int64{10, 3, 3}},
		{"stand-in's own", Config{MainItems: 10, HotItems: 3, StandInItems: 5}, [3]int64{10, 3, 5}},
		{"stand-in unbounded", Config{MainItems: 10, HotItems: 3, StandInItems: -1}, [3]int64{10, 3, 50}},
		{"only main", Config{MainItems: 10}, [3]int64{10, 50, 50}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, tc.cfg)
			for _, tier := range []Tier{Main, Hot, StandIn} {
				for i := range 50 {
					s.Add(tier, Put{Key: fmt.Sprint("k", i), Value: []byte("v")})
				}
			}
			st := s.Stats()
			if got := [3]int64{st.Items, st.HotItems, st.StandInItems}; got != tc.want {
				t.Errorf("Items, HotItems, StandInItems = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCountBoundAcrossShards checks that the count bound is one count for
// the whole tier, held after every Add, with the newest entries kept.
func TestCountBoundAcrossShards(t *testing.T) {
	const bound = 1000
	s := newStore(Config{MainItems: bound, SweepInterval: -1}, 16)
	defer s.Close()
	for i := range 5000 {
		if !s.Add(Main, Put{Key: fmt.Sprint("key-", i), Value: []byte("v")}) {
			t.Fatalf("Add(key-%d) = false", i)
		}
		if n := s.Stats().Items; n > bound {
			t.Fatalf("after Add(key-%d): Items = %d, over the bound %d", i, n, bound)
		}
	}
	st := s.Stats()
	if st.Items != bound || st.Evictions != 5000-bound {
		t.Errorf("Items, Evictions = %d, %d, want %d, %d", st.Items, st.Evictions, bound, 5000-bound)
	}
	for i := 4990; i < 5000; i++ {
		if _, ok := s.Get(Main, fmt.Sprint("key-", i)); !ok {
			t.Errorf("recent key-%d was evicted", i)
		}
	}
}

// TestCountBoundConcurrent adds from several goroutines into a count-bound
// tier of several shards and checks the bound once they are done.
func TestCountBoundConcurrent(t *testing.T) {
	const bound = 256
	s := newStore(Config{MainItems: bound, SweepInterval: -1}, 4)
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				s.Add(Main, Put{Key: fmt.Sprint(w, "-", i), Value: []byte("v"), Since: s.Seq()})
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Items > bound || st.Items < bound-4 || st.Evictions != uint64(8000-st.Items) {
		t.Errorf("Items, Evictions = %d, %d, want about %d, 8000 - Items", st.Items, st.Evictions, bound)
	}
}

// TestCountEvictionKeepsFences checks that evictions by count neither drop
// key fences nor act as fences.
func TestCountEvictionKeepsFences(t *testing.T) {
	s := newTestStore(t, Config{MainItems: 2})
	since := s.Seq()
	s.Add(Main, Put{Key: "fenced", Value: []byte("v"), Since: since})
	s.Add(Main, Put{Key: "evicted", Value: []byte("v"), Since: since})
	s.Invalidate(Main, "fenced")
	for i := range 10 { // evicts "evicted" and fills the tier with others
		s.Add(Main, Put{Key: fmt.Sprint("other-", i), Value: []byte("v"), Since: s.Seq()})
	}
	if _, ok := s.Get(Main, "evicted"); ok {
		t.Fatalf(`"evicted" is still stored`)
	}
	if s.Add(Main, Put{Key: "fenced", Value: []byte("stale"), Since: since}) {
		t.Errorf("Add of an invalidated key with a since older than the invalidation = true after count evictions, want false")
	}
	if !s.Add(Main, Put{Key: "evicted", Value: []byte("v"), Since: since}) {
		t.Errorf("Add of an evicted key with an old since = false, want true (an eviction is no fence)")
	}
	if !s.Add(Main, Put{Key: "fenced", Value: []byte("new"), Since: s.Seq()}) {
		t.Errorf("Add of an invalidated key with a fresh since = false, want true")
	}
	if st := s.Stats(); st.Items != 2 {
		t.Errorf("Items = %d, want 2", st.Items)
	}
}
