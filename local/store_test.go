package local

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTestStore returns a store without sweeper and with one shard per tier
// (exact LRU order), closed at the end of the test.
func newTestStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = -1
	}
	s := newStore(cfg, 1)
	t.Cleanup(s.Close)
	return s
}

// wantKeys checks which of keys are present in tier t (Get, so it touches them).
func (s *Store) wantKeys(t *testing.T, tr Tier, keys []string, want []bool) {
	t.Helper()
	for i, k := range keys {
		if _, ok := s.Get(tr, k); ok != want[i] {
			t.Errorf("Get(%v, %q) ok = %v, want %v", tr, k, ok, want[i])
		}
	}
}

func TestAddGet(t *testing.T) {
	tests := []struct {
		name     string
		value    []byte
		tags     []string
		ttl      time.Duration
		negative bool
	}{
		{"plain", []byte("hello"), nil, 0, false},
		{"tagged", []byte("v"), []string{"org:acme", "kind:user"}, 0, false},
		{"ttl", []byte("v"), nil, time.Minute, false},
		{"negative", nil, nil, 10 * time.Second, true},
		{"empty value", []byte{}, nil, 0, false},
		{"nil value", nil, nil, 0, false},
	}
	for _, tier := range []Tier{Main, Hot} {
		for _, tc := range tests {
			t.Run(tier.String()+"/"+tc.name, func(t *testing.T) {
				now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
				s := newTestStore(t, Config{Now: func() time.Time { return now }})
				key := "key-" + tc.name
				if !s.Add(tier, Put{Key: key, Value: bytes.Clone(tc.value), Tags: slices.Clone(tc.tags), TTL: tc.ttl, Negative: tc.negative, Since: 7}) {
					t.Fatalf("Add(%v, %q) = false, want true", tier, key)
				}
				other := Main
				if tier == Main {
					other = Hot
				}
				if _, ok := s.Get(other, key); ok {
					t.Errorf("Get(%v, %q) found an entry added to %v", other, key, tier)
				}
				e, ok := s.Get(tier, key)
				if !ok {
					t.Fatalf("Get(%v, %q) = absent, want present", tier, key)
				}
				if !bytes.Equal(e.Value, tc.value) || (e.Value == nil) != (tc.value == nil) {
					t.Errorf("Value = %#v, want %#v", e.Value, tc.value)
				}
				if cap(e.Value) != len(e.Value) {
					t.Errorf("cap(Value) = %d, want %d", cap(e.Value), len(e.Value))
				}
				if !slices.Equal(e.Tags, tc.tags) {
					t.Errorf("Tags = %q, want %q", e.Tags, tc.tags)
				}
				if e.Negative != tc.negative {
					t.Errorf("Negative = %v, want %v", e.Negative, tc.negative)
				}
				if !e.Filled.Equal(now) {
					t.Errorf("Filled = %v, want %v", e.Filled, now)
				}
				wantExp := time.Time{}
				if tc.ttl > 0 {
					wantExp = now.Add(tc.ttl)
				}
				if !e.Expires.Equal(wantExp) {
					t.Errorf("Expires = %v, want %v", e.Expires, wantExp)
				}
				if e.Seq != 7 {
					t.Errorf("Seq = %d, want 7 (the since passed to Add)", e.Seq)
				}
			})
		}
	}
}

func TestAddCopiesKeyAndValue(t *testing.T) {
	s := newTestStore(t, Config{})
	key := []byte("key")
	value := []byte("value")
	s.Add(Main, Put{Key: string(key), Value: value})
	value[0] = 'X'
	e, ok := s.Get(Main, "key")
	if !ok || string(e.Value) != "value" {
		t.Errorf("Get(Main, %q) = %q, %v; want %q, true", "key", e.Value, ok, "value")
	}
}

func TestReplace(t *testing.T) {
	s := newTestStore(t, Config{})
	s.Add(Main, Put{Key: "k", Value: []byte("one"), Tags: []string{"a"}})
	s.Add(Main, Put{Key: "k", Value: []byte("two!")})
	e, ok := s.Get(Main, "k")
	if !ok || string(e.Value) != "two!" || e.Tags != nil {
		t.Errorf("Get(Main, %q) = %q %q %v, want %q [] true", "k", e.Value, e.Tags, ok, "two!")
	}
	st := s.Stats()
	if want := int64(1 + 4 + EntryOverhead); st.Items != 1 || st.Bytes != want {
		t.Errorf("Stats() Items, Bytes = %d, %d, want 1, %d", st.Items, st.Bytes, want)
	}
}

func TestTierArgument(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		tier Tier
		want bool
	}{
		{"main", Config{}, Main, true},
		{"hot", Config{}, Hot, true},
		{"both", Config{}, Both, false},
		{"none", Config{}, 0, false},
		{"stand-in", Config{}, StandIn, true},
		{"all", Config{}, All, false},
		{"unknown bit", Config{}, 8, false},
		{"hot disabled", Config{HotBytes: -1}, Hot, false},
		{"stand-in disabled with hot", Config{HotBytes: -1}, StandIn, false},
		{"stand-in disabled", Config{StandInBytes: -1}, StandIn, false},
		{"main with hot disabled", Config{HotBytes: -1}, Main, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, tc.cfg)
			if got := s.Add(tc.tier, Put{Key: "k", Value: []byte("v")}); got != tc.want {
				t.Errorf("Add(%v) = %v, want %v", tc.tier, got, tc.want)
			}
			if _, got := s.Get(tc.tier, "k"); got != tc.want {
				t.Errorf("Get(%v) ok = %v, want %v", tc.tier, got, tc.want)
			}
		})
	}
}

func TestAddTooBig(t *testing.T) {
	const bound = 1000
	tests := []struct {
		name  string
		key   string
		value int
		tags  []string
		want  bool
	}{
		{"exactly the bound", "k", bound - 1 - EntryOverhead, nil, true},
		{"one byte over", "k", bound - EntryOverhead, nil, false},
		{"tags count", "k", bound - 1 - EntryOverhead - 3, []string{"abcd"}, false},
		{"tags fit", "k", bound - 1 - EntryOverhead - 4, []string{"abcd"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, Config{MainBytes: bound, HotBytes: bound})
			for _, tier := range []Tier{Main, Hot} {
				got := s.Add(tier, Put{Key: tc.key, Value: make([]byte, tc.value), Tags: tc.tags})
				if got != tc.want {
					t.Errorf("Add(%v, %d-byte value) = %v, want %v", tier, tc.value, got, tc.want)
				}
			}
		})
	}
}

func TestAddIfAbsent(t *testing.T) {
	s := newTestStore(t, Config{})
	if !s.AddIfAbsent(Main, Put{Key: "k", Value: []byte("1")}) {
		t.Fatalf("AddIfAbsent on empty store = false, want true")
	}
	if s.AddIfAbsent(Main, Put{Key: "k", Value: []byte("2")}) {
		t.Errorf("AddIfAbsent over a live entry = true, want false")
	}
	if e, _ := s.Get(Main, "k"); string(e.Value) != "1" {
		t.Errorf("Get after refused AddIfAbsent = %q, want %q", e.Value, "1")
	}
	if !s.AddIfAbsent(Hot, Put{Key: "k", Value: []byte("h")}) {
		t.Errorf("AddIfAbsent(Hot) with the key only in Main = false, want true")
	}
	// A stale entry does not count as present.
	s.Add(Main, Put{Key: "t", Value: []byte("old"), Tags: []string{"tag"}, Since: s.Seq()})
	s.InvalidateTags(Main, "tag")
	if !s.AddIfAbsent(Main, Put{Key: "t", Value: []byte("new"), Tags: []string{"tag"}, Since: s.Seq()}) {
		t.Errorf("AddIfAbsent over a stale entry = false, want true")
	}
	if e, ok := s.Get(Main, "t"); !ok || string(e.Value) != "new" {
		t.Errorf("Get(Main, %q) = %q, %v, want %q, true", "t", e.Value, ok, "new")
	}
	// Fences apply.
	since := s.Seq()
	s.Invalidate(Main, "f")
	if s.AddIfAbsent(Main, Put{Key: "f", Value: []byte("v"), Since: since}) {
		t.Errorf("AddIfAbsent with since before Invalidate = true, want false")
	}
}

func TestRemove(t *testing.T) {
	s := newTestStore(t, Config{})
	s.Add(Main, Put{Key: "k", Value: []byte("v")})
	s.Add(Hot, Put{Key: "k", Value: []byte("v")})
	if !s.Remove(Main, "k") {
		t.Errorf("Remove(Main, %q) = false, want true", "k")
	}
	if s.Remove(Main, "k") {
		t.Errorf("second Remove(Main, %q) = true, want false", "k")
	}
	if _, ok := s.Get(Hot, "k"); !ok {
		t.Errorf("Remove(Main) removed the Hot entry")
	}
	// No tombstone: an old since still stores.
	if !s.Add(Main, Put{Key: "k", Value: []byte("v")}) {
		t.Errorf("Add after Remove = false, want true (Remove leaves no tombstone)")
	}
	if !s.Remove(Both, "k") {
		t.Errorf("Remove(Both, %q) = false, want true", "k")
	}
	if st := s.Stats(); st.Items != 0 || st.HotItems != 0 || st.Bytes != 0 || st.HotBytes != 0 {
		t.Errorf("Stats() after removing all = %+v, want zero counts", st)
	}
}

func TestHashCollision(t *testing.T) {
	s := newTestStore(t, Config{})
	tr := s.main
	// Store two different keys under one hash, as a collision would.
	const h = 42
	put := func(key string) {
		sh := tr.shard(h)
		sh.mu.Lock()
		it := newItem(&Put{Key: key, Value: []byte(key)}, 0, never)
		tr.insertLocked(sh, h, key, it, it.cost())
		sh.mu.Unlock()
	}
	get := func(key string) (string, bool) {
		sh := tr.shard(h)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		it, ok := sh.lru.Get(h)
		if !ok || it.key() != key {
			return "", false
		}
		return string(it.value()), true
	}
	put("a")
	put("b")
	if _, ok := get("a"); ok {
		t.Errorf("key a still readable after b took its hash")
	}
	if v, ok := get("b"); !ok || v != "b" {
		t.Errorf("get(b) = %q, %v, want %q, true", v, ok, "b")
	}
	if st := s.Stats(); st.Items != 1 || st.Evictions != 1 {
		t.Errorf("Stats() Items, Evictions = %d, %d, want 1, 1", st.Items, st.Evictions)
	}
}

func TestStats(t *testing.T) {
	s := newTestStore(t, Config{MainBytes: 3 * (EntryOverhead + 3), HotBytes: 10000})
	for i := range 5 {
		s.Add(Main, Put{Key: fmt.Sprint("m", i), Value: []byte("v")})
	}
	s.Add(Hot, Put{Key: "h1", Value: []byte("vv"), Tags: []string{"t"}})
	s.Add(Hot, Put{Key: "h2", Negative: true})
	want := Stats{
		Items:     3,
		Bytes:     3 * (EntryOverhead + 3),
		HotItems:  2,
		HotBytes:  (EntryOverhead + 2 + 2 + 1) + (EntryOverhead + 2),
		Evictions: 2,
	}
	if got := s.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := New(Config{SweepInterval: time.Millisecond})
	s.Close()
	s.Close()
	if !s.Add(Main, Put{Key: "k", Value: []byte("v")}) {
		t.Errorf("Add after Close = false, want true")
	}
}

func TestShardCount(t *testing.T) {
	tests := []struct {
		bound int64
		items int
		want  int
	}{
		{1, 0, 1},
		{shardMinBytes, 0, 1},
		{2*shardMinBytes - 1, 0, 1},
		{2 * shardMinBytes, 0, 2},
		{DefaultMainBytes, 0, maxShards},
		{DefaultMainBytes / 8, 0, maxShards},
		{1 << 20, 0, 16},
		{DefaultMainBytes, 1, 1},
		{DefaultMainBytes, 2*shardMinItems - 1, 1},
		{DefaultMainBytes, 2 * shardMinItems, 2},
		{DefaultMainBytes, 1000, 8},
		{DefaultMainBytes, 1 << 30, maxShards},
		{1 << 20, 1 << 30, 16},
	}
	for _, tc := range tests {
		if got := shardCount(tc.bound, tc.items); got != tc.want {
			t.Errorf("shardCount(%d, %d) = %d, want %d", tc.bound, tc.items, got, tc.want)
		}
	}
}

func TestTierString(t *testing.T) {
	for tier, want := range map[Tier]string{Main: "main", Hot: "hot", Both: "both", 8: "tier(8)"} {
		if got := tier.String(); got != want {
			t.Errorf("Tier(%d).String() = %q, want %q", uint8(tier), got, want)
		}
	}
}

func TestRange(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 100 {
		s.Add(Main, Put{Key: "k" + strconv.Itoa(i), Value: []byte("v"), TTL: time.Minute, Since: s.Seq()})
	}
	s.Add(Main, Put{Key: "gone", Value: []byte("v"), Tags: []string{"t"}, TTL: time.Minute, Since: s.Seq()})
	s.InvalidateTags(Main, "t")
	s.Add(Hot, Put{Key: "hot", Value: []byte("v"), TTL: time.Minute, Since: s.Seq()})
	seen := make(map[string]bool)
	s.Range(Main, func(key string, e Entry) bool {
		if string(e.Value) != "v" {
			t.Errorf("Range: %q = %q", key, e.Value)
		}
		seen[key] = true
		return true
	})
	if len(seen) != 100 || seen["gone"] || seen["hot"] {
		t.Errorf("Range(Main) saw %d keys (gone %v, hot %v), want the 100 live main ones", len(seen), seen["gone"], seen["hot"])
	}
	n := 0
	s.Range(Main, func(string, Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Errorf("Range stopped after %d, want 10", n)
	}
}
