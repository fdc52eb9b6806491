package local

import (
	"fmt"
	"testing"
)

// fenceOp is an invalidation, applied to a store holding (or about to hold)
// the entry "key" tagged "tag" and "t2".
type fenceOp struct {
	name string
	do   func(s *Store, tier Tier)
	// hits reports whether the op concerns the entry when the entry lives in tier.
	hits func(tier Tier) bool
}

func other(t Tier) Tier {
	if t == Main {
		return Hot
	}
	return Main
}

var fenceOps = []fenceOp{
	{"Invalidate(key)", func(s *Store, t Tier) { s.Invalidate(t, "key") }, yes},
	{"Invalidate(Both, key)", func(s *Store, t Tier) { s.Invalidate(Both, "key") }, yes},
	{"Invalidate(x, key, y)", func(s *Store, t Tier) { s.Invalidate(t, "x", "key", "y") }, yes},
	{"InvalidateTags(tag)", func(s *Store, t Tier) { s.InvalidateTags(t, "tag") }, yes},
	{"InvalidateTags(Both, t2)", func(s *Store, t Tier) { s.InvalidateTags(Both, "t2") }, yes},
	{"InvalidateTags(x, tag)", func(s *Store, t Tier) { s.InvalidateTags(t, "x", "tag") }, yes},
	{"Clear", func(s *Store, t Tier) { s.Clear(t) }, yes},
	{"Clear(Both)", func(s *Store, t Tier) { s.Clear(Both) }, yes},
	{"Invalidate(other key)", func(s *Store, t Tier) { s.Invalidate(Both, "key2") }, no},
	{"InvalidateTags(other tag)", func(s *Store, t Tier) { s.InvalidateTags(Both, "tag2") }, no},
	{"Invalidate(other tier)", func(s *Store, t Tier) { s.Invalidate(other(t), "key") }, no},
	{"InvalidateTags(other tier)", func(s *Store, t Tier) { s.InvalidateTags(other(t), "tag") }, no},
	{"Clear(other tier)", func(s *Store, t Tier) { s.Clear(other(t)) }, no},
}

func yes(Tier) bool { return true }
func no(Tier) bool  { return false }

// An interleaving of: since := Seq(); Add(since); op.
type interleaving struct {
	name string
	// fenced: since was taken before op started, so the entry must be
	// refused or absent once op returned.
	fenced bool
	// refused: Add must return false.
	refused bool
	run     func(s *Store, tier Tier, op func()) (added bool)
}

func addEntry(s *Store, tier Tier, since uint64) bool {
	return s.Add(tier, Put{Key: "key", Value: []byte("old"), Tags: []string{"tag", "t2"}, Since: since})
}

var interleavings = []interleaving{
	{"since, op, Add", true, true, func(s *Store, tier Tier, op func()) bool {
		since := s.Seq()
		op()
		return addEntry(s, tier, since)
	}},
	{"since, Add, op", true, false, func(s *Store, tier Tier, op func()) bool {
		since := s.Seq()
		added := addEntry(s, tier, since)
		op()
		return added
	}},
	{"since, Add checks, op, Add inserts", true, false, func(s *Store, tier Tier, op func()) bool {
		since := s.Seq()
		s.hookAdd = op
		defer func() { s.hookAdd = nil }()
		return addEntry(s, tier, since)
	}},
	{"op, since, Add", false, false, func(s *Store, tier Tier, op func()) bool {
		op()
		since := s.Seq()
		return addEntry(s, tier, since)
	}},
	{"op, since, op again, Add", true, true, func(s *Store, tier Tier, op func()) bool {
		op()
		since := s.Seq()
		op()
		return addEntry(s, tier, since)
	}},
}

func TestFenceInterleavings(t *testing.T) {
	for _, tier := range []Tier{Main, Hot} {
		for _, op := range fenceOps {
			for _, il := range interleavings {
				t.Run(fmt.Sprintf("%v/%s/%s", tier, op.name, il.name), func(t *testing.T) {
					s := newTestStore(t, Config{})
					// A neighbour that no op concerns must survive.
					s.Add(tier, Put{Key: "bystander", Value: []byte("b"), Tags: []string{"btag"}, Since: s.Seq()})
					added := il.run(s, tier, func() { op.do(s, tier) })
					_, present := s.Get(tier, "key")
					fenced := il.fenced && op.hits(tier)
					if fenced && present {
						t.Errorf("entry present after %s; want refused or absent (Add returned %v)", op.name, added)
					}
					if fenced && il.refused && added {
						t.Errorf("Add returned true, want false (fenced)")
					}
					if !fenced && (!added || !present) {
						t.Errorf("Add = %v, present = %v; want stored and present", added, present)
					}
					if _, ok := s.Get(tier, "bystander"); !ok && op.name != "Clear" && op.name != "Clear(Both)" {
						t.Errorf("bystander entry absent after %s", op.name)
					}
					// A load that starts now stores normally.
					if !addEntry(s, tier, s.Seq()) {
						t.Errorf("Add with a fresh since = false, want true")
					}
					if _, ok := s.Get(tier, "key"); !ok {
						t.Errorf("entry added with a fresh since is absent")
					}
				})
			}
		}
	}
}

func TestInvalidateResult(t *testing.T) {
	tests := []struct {
		name        string
		tier        Tier
		keys        []string
		wantRemoved int
		wantMain    bool // "a" still in Main afterwards
		wantHot     bool // "a" still in Hot afterwards
	}{
		{"main", Main, []string{"a", "b", "missing"}, 2, false, true},
		{"hot", Hot, []string{"a", "b"}, 1, true, false},
		{"both counts main", Both, []string{"a", "b", "c"}, 2, false, false},
		{"none", Main, nil, 0, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, Config{})
			s.Add(Main, Put{Key: "a", Value: []byte("v")})
			s.Add(Main, Put{Key: "b", Value: []byte("v")})
			s.Add(Main, Put{Key: "c", Value: []byte("v"), Tags: []string{"tag"}})
			s.Add(Hot, Put{Key: "a", Value: []byte("v")})
			s.InvalidateTags(Main, "tag") // "c" is stale: not counted as removed
			before := s.Seq()
			seq, removed := s.Invalidate(tc.tier, tc.keys...)
			if seq != before+1 || s.Seq() != seq {
				t.Errorf("Invalidate seq = %d (Seq() %d), want %d", seq, s.Seq(), before+1)
			}
			if removed != tc.wantRemoved {
				t.Errorf("Invalidate(%v, %q) removed = %d, want %d", tc.tier, tc.keys, removed, tc.wantRemoved)
			}
			s.wantKeys(t, Main, []string{"a"}, []bool{tc.wantMain})
			s.wantKeys(t, Hot, []string{"a"}, []bool{tc.wantHot})
		})
	}
}

func TestSequenceAdvancesOnce(t *testing.T) {
	s := newTestStore(t, Config{})
	calls := []struct {
		name string
		do   func() uint64
	}{
		{"Invalidate", func() uint64 { seq, _ := s.Invalidate(Both, "a", "b", "c"); return seq }},
		{"InvalidateTags", func() uint64 { return s.InvalidateTags(Both, "a", "b", "c") }},
		{"Clear", func() uint64 { return s.Clear(Both) }},
		{"Invalidate none", func() uint64 { seq, _ := s.Invalidate(Main); return seq }},
	}
	for _, c := range calls {
		before := s.Seq()
		if got := c.do(); got != before+1 || s.Seq() != got {
			t.Errorf("%s returned %d, Seq() = %d, want both %d", c.name, got, s.Seq(), before+1)
		}
	}
}

func TestClearDropsEntries(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 10 {
		s.Add(Main, Put{Key: fmt.Sprint(i), Value: []byte("v")})
		s.Add(Hot, Put{Key: fmt.Sprint(i), Value: []byte("v")})
	}
	s.Clear(Main)
	if st := s.Stats(); st.Items != 0 || st.Bytes != 0 || st.HotItems != 10 {
		t.Errorf("Stats() after Clear(Main) = %+v, want Items 0, Bytes 0, HotItems 10", st)
	}
	if st := s.Stats(); st.Evictions != 0 || st.Expirations != 0 {
		t.Errorf("Clear counted evictions or expirations: %+v", st)
	}
}

func TestNewestFenceWins(t *testing.T) {
	// Concurrent invalidations can record their sequences out of order; the
	// newest must stay.
	s := newTestStore(t, Config{})
	sh := s.main.shard(0)
	sh.mu.Lock()
	sh.fenceLocked(0, 6, 0, -1, s.main.fenceLen)
	sh.fenceLocked(0, 5, 0, -1, s.main.fenceLen)
	fenced5, fenced6 := sh.fencedLocked(0, 5, -1), sh.fencedLocked(0, 6, -1)
	sh.mu.Unlock()
	if !fenced5 || fenced6 {
		t.Errorf("key fence after 6 then 5: fences since 5 %v, since 6 %v; want true, false", fenced5, fenced6)
	}
	s.main.gens.bump("t", 6, 0)
	s.main.gens.bump("t", 5, 0)
	if !s.main.gens.newer([]string{"t"}, 5) {
		t.Errorf("tag generation after bumps 6 then 5 is not newer than 5")
	}
	maxStore(&s.main.clearSeq, 6)
	maxStore(&s.main.clearSeq, 5)
	if got := s.main.clearSeq.Load(); got != 6 {
		t.Errorf("clear mark after 6 then 5 = %d, want 6", got)
	}
}
