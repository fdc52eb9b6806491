package local

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestGetStale: an expired entry is kept for StaleFor, reported absent by
// Get and returned by GetStale, until StaleFor after its expiry; what a
// write removed is never returned.
func TestGetStale(t *testing.T) {
	for _, tier := range []Tier{Main, Hot} {
		t.Run(tier.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newTestStore(t, Config{StaleFor: time.Minute})
				add := func(key string, tags ...string) {
					if !s.Add(tier, Put{Key: key, Value: []byte("v-" + key), Tags: tags, TTL: 10 * time.Second, Since: s.Seq()}) {
						t.Fatalf("Add(%q) refused", key)
					}
				}
				for _, k := range []string{"k", "inval", "tagged", "cleared", "expired", "replaced", "late"} {
					add(k, "tag:"+k)
				}
				if _, ok := s.GetStale(tier, "k"); ok {
					t.Error("GetStale of a live entry = present, want absent (Get serves it)")
				}
				s.Expire(tier, "expired", 5*time.Second)
				time.Sleep(10 * time.Second)
				if _, ok := s.Get(tier, "k"); ok {
					t.Error("Get after expiry = present, want absent")
				}
				e, ok := s.GetStale(tier, "k")
				if !ok || string(e.Value) != "v-k" || e.Expires.After(time.Now()) {
					t.Errorf("GetStale after expiry = %q, %v (expires %v), want the stale value", e.Value, ok, e.Expires)
				}
				s.Invalidate(tier, "inval")
				s.InvalidateTags(tier, "tag:tagged")
				add("replaced") // fresh again
				for key, want := range map[string]bool{"inval": false, "tagged": false, "expired": false, "replaced": false, "late": true} {
					if _, ok := s.GetStale(tier, key); ok != want {
						t.Errorf("GetStale(%q) = %v, want %v", key, ok, want)
					}
				}
				if _, ok := s.Get(tier, "replaced"); !ok {
					t.Error("Get of the replaced entry = absent, want present")
				}
				s.Clear(tier)
				if _, ok := s.GetStale(tier, "cleared"); ok {
					t.Error("GetStale after Clear = present, want absent")
				}
				add("late")
				time.Sleep(10 * time.Second)
				s.Sweep() // keeps what is within StaleFor
				if _, ok := s.GetStale(tier, "late"); !ok {
					t.Error("GetStale after a sweep within StaleFor = absent, want present")
				}
				time.Sleep(time.Minute)
				if _, ok := s.GetStale(tier, "late"); ok {
					t.Error("GetStale past StaleFor = present, want absent")
				}
			})
		})
	}
}

// TestNoStaleByDefault: without StaleFor an expired entry is gone.
func TestNoStaleByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestStore(t, Config{})
		s.Add(Main, Put{Key: "k", Value: []byte("v"), TTL: time.Second})
		time.Sleep(time.Second)
		if _, ok := s.GetStale(Main, "k"); ok {
			t.Error("GetStale without StaleFor = present")
		}
		if st := s.Stats(); st.Items != 1 {
			// Not read yet: still counted until read or swept.
			t.Logf("items %d", st.Items)
		}
		s.Get(Main, "k")
		if st := s.Stats(); st.Items != 0 || st.Expirations != 1 {
			t.Errorf("after Get: items %d, expirations %d, want 0, 1", st.Items, st.Expirations)
		}
	})
}

// TestStandInFenced: the stand-in tier is fenced and written like the
// others when a write names it.
func TestStandInFenced(t *testing.T) {
	s := newTestStore(t, Config{})
	add := func(key string) {
		if !s.Add(StandIn, Put{Key: key, Value: []byte("v"), Tags: []string{"tag:" + key}, TTL: time.Minute, Since: s.Seq()}) {
			t.Fatalf("Add(StandIn, %q) refused", key)
		}
	}
	for _, k := range []string{"a", "b", "c"} {
		add(k)
	}
	since := s.Seq()
	s.Invalidate(All, "a")
	s.InvalidateTags(All, "tag:b")
	for key, want := range map[string]bool{"a": false, "b": false, "c": true} {
		if _, ok := s.Get(StandIn, key); ok != want {
			t.Errorf("Get(StandIn, %q) = %v, want %v", key, ok, want)
		}
	}
	if s.Add(StandIn, Put{Key: "a", Value: []byte("old"), TTL: time.Minute, Since: since}) {
		t.Error("Add(StandIn) of a load older than the invalidation was stored")
	}
	s.Clear(All)
	if _, ok := s.Get(StandIn, "c"); ok {
		t.Error("Get(StandIn) after Clear(All) = present")
	}
	if st := s.Stats(); st.StandInItems != 0 {
		t.Errorf("StandInItems = %d, want 0", st.StandInItems)
	}
}
