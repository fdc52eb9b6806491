package local

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// fakeClock is a store clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestFenceBuckets(t *testing.T) {
	tests := []struct {
		bound            int64
		shards, records  int
		want             int // buckets per shard
		wantTableRecords int
	}{
		{DefaultMainBytes, 64, 0, 128, 32768},   // 512 KiB
		{DefaultMainBytes / 8, 64, 0, 16, 4096}, // 64 KiB
		{64 << 10, 1, 0, 64, minFenceRecords},   // the floor
		{1, 1, 0, 64, minFenceRecords},          // the floor
		{4 << 30, 64, 0, 4096, maxFenceRecords}, // the cap
		{DefaultMainBytes, 64, 4, 1, 256},       // at least a bucket per shard
		{DefaultMainBytes, 1, 1000, 256, 1024},  // rounded up to a power of two
		{DefaultMainBytes, 1, 1 << 30, 1 << 22, maxConfigFenceRecords},
	}
	for _, tc := range tests {
		got := fenceBuckets(tc.bound, tc.shards, tc.records)
		if got != tc.want || got*tc.shards*bucketRecords != tc.wantTableRecords {
			t.Errorf("fenceBuckets(%d, %d, %d) = %d (%d records), want %d (%d records)",
				tc.bound, tc.shards, tc.records, got, got*tc.shards*bucketRecords, tc.want, tc.wantTableRecords)
		}
	}
}

func TestFenceSecond(t *testing.T) {
	for now, want := range map[int64]uint32{
		-5: 0, 0: 0, 1: 1, 1e9 - 1: 1, 1e9: 1, 1e9 + 1: 2, math.MaxInt64: math.MaxUint32,
	} {
		if got := fenceSecond(now); got != want {
			t.Errorf("fenceSecond(%d) = %d, want %d", now, got, want)
		}
	}
}

// TestKeyFenceOverflow fills the one bucket of a store with 4 records: the
// fences stay exact up to 4 keys, over-fence the other keys once a fifth
// key is invalidated, and are exact again once those records are older than
// TombstoneTTL.
func TestKeyFenceOverflow(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newTestStore(t, Config{KeyFenceRecords: 4, TombstoneTTL: time.Minute, Now: clock.now})
	if n := len(s.main.shards) * s.main.fenceLen; n != 1 {
		t.Fatalf("Main has %d key-fence buckets, want 1", n)
	}
	add := func(key string, since uint64) bool {
		return s.Add(Main, Put{Key: key, Value: []byte("v"), Since: since})
	}
	wantAdds := func(when string, keys []string, since uint64, want bool) {
		t.Helper()
		for _, k := range keys {
			if got := add(k, since); got != want {
				t.Errorf("%s: Add(%q, since %d) = %v, want %v", when, k, since, got, want)
			}
		}
	}
	since := s.Seq()
	invalidated := []string{"a", "b", "c", "d"}
	for _, k := range invalidated {
		s.Invalidate(Main, k)
	}
	wantAdds("4 keys invalidated", invalidated, since, false)
	wantAdds("4 keys invalidated", []string{"x", "y"}, since, true)

	clock.advance(10 * time.Second)
	s.Invalidate(Main, "e") // a fifth key: the bucket overflows
	invalidated = append(invalidated, "e")
	wantAdds("5 keys invalidated", invalidated, since, false)
	wantAdds("5 keys invalidated", []string{"x", "y"}, since, false) // over-fenced
	wantAdds("5 keys invalidated, fresh since", []string{"x", "y"}, s.Seq(), true)
	wantAdds("5 keys invalidated, fresh since", invalidated, s.Seq(), true)

	// The mixed record keeps the newest sequence of what it holds: the
	// keys recorded before it stay fenced for a since between them.
	mid := s.Seq()
	s.Invalidate(Main, "a")
	wantAdds("a invalidated again", []string{"a"}, mid, false)

	// Past TombstoneTTL of the records (plus the rounding to a second),
	// nothing fences an old since; new records are exact again.
	clock.advance(time.Minute + 11*time.Second)
	wantAdds("after TombstoneTTL", append(invalidated, "x"), since, true)
	since = s.Seq()
	s.Invalidate(Main, "f")
	wantAdds("one key invalidated after TombstoneTTL", []string{"f"}, since, false)
	wantAdds("one key invalidated after TombstoneTTL", []string{"a", "x"}, since, true)
}

// TestKeyFenceNeverUnderFences checks the key-fence tables against exact
// tombstones (key -> newest sequence and time, the previous design) on
// random invalidations and Adds: an Add that a tombstone refuses is always
// refused. With a table large enough for the keys, the fences are also
// exact but for the rounding of their time up to a second.
func TestKeyFenceNeverUnderFences(t *testing.T) {
	const (
		keys = 64
		ttl  = 10 * time.Second
		ops  = 20_000
	)
	tests := []struct {
		records, shards int
		exact           bool
	}{
		{4, 1, false},
		{16, 1, false},
		{64, 4, false},
		{4096, 1, true},
		{4096, 4, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("records=%d/shards=%d", tc.records, tc.shards), func(t *testing.T) {
			clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			start := clock.t
			s := newStore(Config{KeyFenceRecords: tc.records, TombstoneTTL: ttl, SweepInterval: -1, Now: clock.now}, tc.shards)
			defer s.Close()
			type tomb struct {
				seq uint64
				at  time.Duration
			}
			var tombs [2][keys]tomb // Main, Hot
			seqs := []uint64{0}
			r := rand.New(rand.NewPCG(uint64(tc.records), uint64(tc.shards)))
			var adds, refused, overFenced, collided int
			for range ops {
				clock.advance(time.Duration(r.IntN(int(200 * time.Millisecond))))
				now := clock.t.Sub(start)
				if r.IntN(3) == 0 {
					tier := []Tier{Main, Hot, Both}[r.IntN(3)]
					ks := []int{r.IntN(keys), r.IntN(keys)}
					seq, _ := s.Invalidate(tier, fmt.Sprint("key-", ks[0]), fmt.Sprint("key-", ks[1]))
					for ti, tt := range []Tier{Main, Hot} {
						if tier&tt != 0 {
							for _, k := range ks {
								tombs[ti][k] = tomb{seq, now}
							}
						}
					}
					seqs = append(seqs, seq)
					continue
				}
				ti, k := r.IntN(2), r.IntN(keys)
				since := seqs[len(seqs)-1-r.IntN(min(len(seqs), 40))]
				got := s.Add([]Tier{Main, Hot}[ti], Put{Key: fmt.Sprint("key-", k), Value: []byte("v"), Since: since})
				tb := tombs[ti][k]
				fenced := tb.seq > since && tb.at > now-ttl
				fencedLoose := tb.seq > since && tb.at > now-ttl-time.Second
				adds++
				switch {
				case fenced && got:
					t.Fatalf("Add(key-%d, since %d) stored at %v; the key was invalidated at %d at %v", k, since, now, tb.seq, tb.at)
				case !got:
					refused++
					if !fenced {
						overFenced++
					}
					if !fencedLoose {
						collided++
					}
					if tc.exact && !fencedLoose {
						t.Fatalf("Add(key-%d, since %d) refused at %v; the key was last invalidated at %d at %v", k, since, now, tb.seq, tb.at)
					}
				}
			}
			t.Logf("%d Adds, %d refused, %d of them not by a tombstone: %d by the rounding of time, %d by other keys' invalidations",
				adds, refused, overFenced, overFenced-collided, collided)
			if refused == overFenced {
				t.Errorf("no Add was refused by its key's fence; the test exercised nothing")
			}
			if !tc.exact && collided == 0 {
				t.Errorf("no Add was refused by another key's invalidation; the test did not fill the table")
			}
		})
	}
}
