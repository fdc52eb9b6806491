package local

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestTTLExpiry(t *testing.T) {
	for _, tier := range []Tier{Main, Hot} {
		t.Run(tier.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newTestStore(t, Config{})
				start := time.Now()
				s.Add(tier, Put{Key: "k", Value: []byte("v"), TTL: 10 * time.Second})
				s.Add(tier, Put{Key: "forever", Value: []byte("v")})
				time.Sleep(10*time.Second - time.Nanosecond)
				e, ok := s.Get(tier, "k")
				if !ok {
					t.Fatalf("Get just before expiry = absent, want present")
				}
				if want := start.Add(10 * time.Second); !e.Expires.Equal(want) {
					t.Errorf("Expires = %v, want %v", e.Expires, want)
				}
				if !e.Filled.Equal(start) {
					t.Errorf("Filled = %v, want %v", e.Filled, start)
				}
				time.Sleep(time.Nanosecond)
				if _, ok := s.Get(tier, "k"); ok {
					t.Errorf("Get at expiry = present, want absent")
				}
				time.Sleep(time.Hour)
				if _, ok := s.Get(tier, "forever"); !ok {
					t.Errorf("entry without TTL expired")
				}
				st := s.Stats()
				items, exp := st.Items, st.Expirations
				if tier == Hot {
					items, exp = st.HotItems, st.HotExpirations
				}
				if items != 1 || exp != 1 {
					t.Errorf("Stats() items, expirations = %d, %d, want 1, 1", items, exp)
				}
			})
		})
	}
}

func TestExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStore(t, Config{})
		s.Add(Main, Put{Key: "k", Value: []byte("v"), TTL: 10 * time.Second})
		s.Add(Hot, Put{Key: "k", Value: []byte("v"), TTL: 10 * time.Second})
		time.Sleep(5 * time.Second)
		if !s.Expire(Main, "k", 20*time.Second) {
			t.Fatalf("Expire(Main, %q) = false, want true", "k")
		}
		time.Sleep(19 * time.Second) // 24s: Main expires at 25s, Hot did at 10s
		s.wantKeys(t, Main, []string{"k"}, []bool{true})
		s.wantKeys(t, Hot, []string{"k"}, []bool{false})
		if s.Expire(Hot, "k", time.Minute) {
			t.Errorf("Expire of an expired entry = true, want false")
		}
		if !s.Expire(Both, "k", 0) {
			t.Errorf("Expire(Both, %q, 0) = false, want true", "k")
		}
		time.Sleep(24 * time.Hour)
		e, ok := s.Get(Main, "k")
		if !ok || !e.Expires.IsZero() {
			t.Errorf("Get after Expire(0) = %v, expires %v; want present, never", ok, e.Expires)
		}
		if s.Expire(Main, "missing", time.Second) {
			t.Errorf("Expire of a missing key = true, want false")
		}
		s.InvalidateTags(Main, "x")
		s.Add(Main, Put{Key: "tagged", Value: []byte("v"), Tags: []string{"x"}})
		if s.Expire(Main, "tagged", time.Second) {
			t.Errorf("Expire of a stale entry = true, want false")
		}
	})
}

func TestSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{SweepInterval: 10 * time.Second, TombstoneTTL: time.Minute})
		defer s.Close()
		for i := range 100 {
			ttl := time.Second
			if i%2 == 0 {
				ttl = time.Hour
			}
			s.Add(Main, Put{Key: fmt.Sprint(i), Value: []byte("v"), TTL: ttl})
			s.Add(Hot, Put{Key: fmt.Sprint(i), Value: []byte("v"), TTL: ttl})
		}
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		st := s.Stats()
		want := Stats{
			Items: 50, HotItems: 50, Expirations: 50, HotExpirations: 50,
			Bytes: st.Bytes, HotBytes: st.HotBytes,
		}
		if st != want {
			t.Errorf("Stats() after a sweep = %+v, want %+v", st, want)
		}
	})
}

func TestTombstoneExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{SweepInterval: 10 * time.Second, TombstoneTTL: time.Minute})
		defer s.Close()
		since := s.Seq()
		s.Invalidate(Both, "k")
		time.Sleep(50 * time.Second)
		synctest.Wait()
		if s.Add(Main, Put{Key: "k", Value: []byte("v"), Since: since}) {
			t.Errorf("Add with since before Invalidate, 50s later = true, want false")
		}
		if n := tombCount(s); n != 2 {
			t.Errorf("tombstones before TombstoneTTL = %d, want 2", n)
		}
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		if n := tombCount(s); n != 0 {
			t.Errorf("tombstones after TombstoneTTL and a sweep = %d, want 0", n)
		}
		// Past TombstoneTTL a load is assumed finished; the fence is gone.
		if !s.Add(Main, Put{Key: "k", Value: []byte("v"), Since: since}) {
			t.Errorf("Add after the tombstone expired = false, want true")
		}
	})
}

func TestTombstoneExpiryWithoutSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStore(t, Config{TombstoneTTL: time.Minute})
		since := s.Seq()
		s.Invalidate(Main, "k")
		time.Sleep(time.Minute - time.Nanosecond)
		if s.Add(Main, Put{Key: "k", Value: []byte("v"), Since: since}) {
			t.Errorf("Add within TombstoneTTL = true, want false")
		}
		time.Sleep(time.Nanosecond)
		if !s.Add(Main, Put{Key: "k", Value: []byte("v"), Since: since}) {
			t.Errorf("Add after TombstoneTTL = false, want true")
		}
		if n := tombCount(s); n != 0 {
			t.Errorf("live key fences after TombstoneTTL = %d, want 0", n)
		}
	})
}

func TestTagGenerationPruning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{SweepInterval: 10 * time.Second, TombstoneTTL: time.Minute})
		defer s.Close()
		// Entries without expiry: the rule must not depend on TTLs.
		s.Add(Main, Put{Key: "old", Value: []byte("v"), Tags: []string{"a"}, Since: s.Seq()})
		s.Add(Hot, Put{Key: "old", Value: []byte("v"), Tags: []string{"a"}, Since: s.Seq()})
		s.InvalidateTags(Both, "a", "b")
		s.Add(Main, Put{Key: "new", Value: []byte("v"), Tags: []string{"a"}, Since: s.Seq()})
		if n := s.main.gens.count(); n != 2 {
			t.Fatalf("generations in Main = %d, want 2", n)
		}
		time.Sleep(30*time.Second + time.Millisecond)
		synctest.Wait()
		// The sweep dropped the stale entries but keeps the generations
		// while a load from before the bump may still finish.
		if st := s.Stats(); st.Items != 1 || st.HotItems != 0 {
			t.Errorf("Stats() Items, HotItems = %d, %d, want 1, 0", st.Items, st.HotItems)
		}
		if n := s.main.gens.count(); n != 2 {
			t.Errorf("generations before TombstoneTTL = %d, want 2", n)
		}
		s.InvalidateTags(Main, "b") // re-bumped: b's generation restarts
		time.Sleep(40 * time.Second)
		synctest.Wait() // sweep at 70s: cutoff 10s
		if n := s.main.gens.count(); n != 1 {
			t.Errorf("Main generations after TombstoneTTL = %d, want 1 (b, re-bumped)", n)
		}
		if n := s.hot.gens.count(); n != 0 {
			t.Errorf("Hot generations after TombstoneTTL = %d, want 0", n)
		}
		if _, ok := s.Get(Main, "new"); !ok {
			t.Errorf("entry added after the bump is absent")
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := s.main.gens.count(); n != 0 {
			t.Errorf("Main generations long after the last bump = %d, want 0", n)
		}
	})
}

func TestSweepDropsStale(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 20 {
		tags := []string{"even"}
		if i%2 == 1 {
			tags = []string{"odd"}
		}
		s.Add(Main, Put{Key: fmt.Sprint(i), Value: []byte("v"), Tags: tags, Since: s.Seq()})
	}
	s.InvalidateTags(Main, "odd")
	s.Sweep()
	if st := s.Stats(); st.Items != 10 {
		t.Errorf("Items after InvalidateTags and Sweep = %d, want 10", st.Items)
	}
}

// tombCount returns the number of live key-fence records of Main and Hot.
func tombCount(s *Store) int {
	n := 0
	cutoff := s.nanos() - s.tombTTL
	for _, tr := range []*tier{s.main, s.hot} {
		for i := range tr.shards {
			sh := &tr.shards[i]
			sh.mu.Lock()
			for _, b := range sh.fences {
				for _, r := range b {
					if r.seq != 0 && liveAfter(r.at, cutoff) {
						n++
					}
				}
			}
			sh.mu.Unlock()
		}
	}
	return n
}
