package local

import (
	"fmt"
	"testing"
)

// TestEvictionLRUOrder checks the order of evictions from a tier that holds
// three entries, bounded by bytes or by count.
func TestEvictionLRUOrder(t *testing.T) {
	// Each entry: 1-byte key, 9-byte value: cost 10+EntryOverhead.
	const cost = 10 + EntryOverhead
	bounds := []struct {
		name string
		cfg  Config
	}{
		{"bytes", Config{MainBytes: 3 * cost, HotBytes: 3*cost + cost/2}},
		{"items", Config{MainItems: 3, HotItems: 3}},
	}
	tests := []struct {
		name      string
		ops       []string // "+k": Add k; "k": Get k
		wantKeys  []bool   // for a..e
		evictions uint64
	}{
		{"fills without eviction", []string{"+a", "+b", "+c"}, []bool{true, true, true, false, false}, 0},
		{"oldest goes first", []string{"+a", "+b", "+c", "+d"}, []bool{false, true, true, true, false}, 1},
		{"get refreshes", []string{"+a", "+b", "+c", "a", "+d"}, []bool{true, false, true, true, false}, 1},
		{"replace refreshes", []string{"+a", "+b", "+c", "+a", "+d", "+e"}, []bool{true, false, false, true, true}, 2},
		{"two evictions", []string{"+a", "+b", "+c", "+d", "+e"}, []bool{false, false, true, true, true}, 2},
	}
	for _, bound := range bounds {
		for _, tier := range []Tier{Main, Hot} {
			for _, tc := range tests {
				t.Run(bound.name+"/"+tier.String()+"/"+tc.name, func(t *testing.T) {
					s := newTestStore(t, bound.cfg)
					for _, op := range tc.ops {
						if op[0] == '+' {
							if !s.Add(tier, Put{Key: op[1:], Value: []byte("123456789")}) {
								t.Fatalf("Add(%q) = false", op[1:])
							}
						} else {
							s.Get(tier, op)
						}
					}
					st := s.Stats()
					items, bytes, ev := st.Items, st.Bytes, st.Evictions
					if tier == Hot {
						items, bytes, ev = st.HotItems, st.HotBytes, st.HotEvictions
					}
					if ev != tc.evictions {
						t.Errorf("evictions = %d, want %d", ev, tc.evictions)
					}
					n := int64(0)
					for _, w := range tc.wantKeys {
						if w {
							n++
						}
					}
					if items != n || bytes != n*cost {
						t.Errorf("items, bytes = %d, %d, want %d, %d", items, bytes, n, n*cost)
					}
					s.wantKeys(t, tier, []string{"a", "b", "c", "d", "e"}, tc.wantKeys)
				})
			}
		}
	}
}

func TestEvictionBigEntry(t *testing.T) {
	const cost = 10 + EntryOverhead
	s := newTestStore(t, Config{MainBytes: 4 * cost})
	for _, k := range []string{"a", "b", "c", "d"} {
		s.Add(Main, Put{Key: k, Value: []byte("123456789")})
	}
	s.Get(Main, "a")
	// Needs the room of two and a half small entries: evicts b, c, d.
	if !s.Add(Main, Put{Key: "big", Value: make([]byte, 3*cost-EntryOverhead-3-20)}) {
		t.Fatalf("Add(big) = false, want true")
	}
	s.wantKeys(t, Main, []string{"a", "b", "c", "d", "big"}, []bool{true, false, false, false, true})
	if st := s.Stats(); st.Bytes > 4*cost || st.Evictions != 3 {
		t.Errorf("Stats() Bytes, Evictions = %d, %d, want <= %d, 3", st.Bytes, st.Evictions, 4*cost)
	}
}

func TestEvictionAcrossShards(t *testing.T) {
	const bound = 64 * 1024
	s := newStore(Config{MainBytes: bound, SweepInterval: -1}, 16)
	defer s.Close()
	value := make([]byte, 100)
	for i := range 5000 {
		if !s.Add(Main, Put{Key: fmt.Sprint("key-", i), Value: value}) {
			t.Fatalf("Add(key-%d) = false", i)
		}
		if b := s.Stats().Bytes; b > bound {
			t.Fatalf("after Add(key-%d): Bytes = %d, over the bound %d", i, b, bound)
		}
	}
	st := s.Stats()
	cost := int64(len("key-1234") + 100 + EntryOverhead)
	if st.Bytes < bound-2*cost {
		t.Errorf("Bytes = %d, want close to the bound %d", st.Bytes, bound)
	}
	if got := uint64(5000 - st.Items); st.Evictions != got {
		t.Errorf("Evictions = %d, want %d (adds - items)", st.Evictions, got)
	}
	// The most recent entries survive.
	for i := 4990; i < 5000; i++ {
		if _, ok := s.Get(Main, fmt.Sprint("key-", i)); !ok {
			t.Errorf("recent key-%d was evicted", i)
		}
	}
	// An entry bigger than a shard's share but within the bound evicts from
	// other shards.
	if !s.Add(Main, Put{Key: "huge", Value: make([]byte, bound/2)}) {
		t.Fatalf("Add(huge) = false, want true")
	}
	if b := s.Stats().Bytes; b > bound {
		t.Errorf("after Add(huge): Bytes = %d, over the bound %d", b, bound)
	}
	if _, ok := s.Get(Main, "huge"); !ok {
		t.Errorf("huge entry evicted itself")
	}
}
