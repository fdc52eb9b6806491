package local

import (
	"bytes"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestGetDoesNotAllocate(t *testing.T) {
	s := newTestStore(t, Config{})
	s.Add(Main, Put{Key: "plain", Value: make([]byte, 1024)})
	s.Add(Main, Put{Key: "rich", Value: make([]byte, 1024), Tags: []string{"a", "b"}, TTL: time.Hour, Negative: true})
	s.InvalidateTags(Main, "c")
	for _, key := range []string{"plain", "rich", "missing"} {
		allocs := testing.AllocsPerRun(100, func() {
			s.Get(Main, key)
		})
		if allocs != 0 {
			t.Errorf("Get(Main, %q) allocates %v times, want 0", key, allocs)
		}
	}
}

func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocates about 60 MB; skipped in -short and -race runs")
	}
	const n = 250_000
	per := heapPerEntry(makeBenchKeys(n), 100)
	t.Logf("heap per entry beyond key and value: %.1f bytes (%d entries)", per, n)
	// The target is 150 (BENCHMARKS.md reports the measured number); the test
	// guards against regressions with some room for map-growth effects.
	if per >= 175 {
		t.Errorf("heap per entry = %.1f bytes, want < 175", per)
	}
}

func TestItemSize(t *testing.T) {
	// 32 bytes keep simplelru's list element in the 96-byte size class.
	if got := unsafe.Sizeof(item{}); got != 32 {
		t.Errorf("unsafe.Sizeof(item{}) = %d, want 32", got)
	}
}

func TestFenceSizes(t *testing.T) {
	// A shard keeps its lock on a cache line of its own; a key-fence
	// bucket is one cache line of 16-byte records.
	if got := unsafe.Sizeof(shard{}); got != 64 {
		t.Errorf("unsafe.Sizeof(shard{}) = %d, want 64", got)
	}
	if got := unsafe.Sizeof(fenceRecord{}); got != 16 {
		t.Errorf("unsafe.Sizeof(fenceRecord{}) = %d, want 16", got)
	}
	if got := unsafe.Sizeof(fenceBucket{}); got != 64 {
		t.Errorf("unsafe.Sizeof(fenceBucket{}) = %d, want 64", got)
	}
}

func TestItemPacking(t *testing.T) {
	long := strings.Repeat("k", 300)
	tests := []struct {
		key      string
		value    []byte
		tags     []string
		negative bool
	}{
		{"", nil, nil, false},
		{"", []byte{}, nil, true},
		{"k", nil, []string{"t"}, true},
		{long, []byte(long + long), nil, false},
		{"k", make([]byte, 20000), []string{"a", "b"}, false},
	}
	for _, tc := range tests {
		it := newItem(&Put{Key: tc.key, Value: tc.value, Tags: tc.tags, Negative: tc.negative, Since: 1 << 61}, -5, 9)
		if it.key() != tc.key || !bytes.Equal(it.value(), tc.value) || (it.value() == nil) != (tc.value == nil) {
			t.Errorf("newItem(%.10q, %d bytes): key %.10q, value %d bytes (nil %v)", tc.key, len(tc.value), it.key(), len(it.value()), it.value() == nil)
		}
		if !slices.Equal(it.tagList(), tc.tags) || it.negative() != tc.negative {
			t.Errorf("newItem(%.10q): tags %q negative %v, want %q %v", tc.key, it.tagList(), it.negative(), tc.tags, tc.negative)
		}
		if it.seq() != 1<<61 || it.filled != -5 || it.expires != 9 {
			t.Errorf("newItem(%.10q): seq, filled, expires = %d, %d, %d", tc.key, it.seq(), it.filled, it.expires)
		}
		if got, want := it.cost(), entryCost(tc.key, tc.value, tc.tags); got != want {
			t.Errorf("newItem(%.10q).cost() = %d, want %d", tc.key, got, want)
		}
	}
}

func TestHotDisabled(t *testing.T) {
	s := newTestStore(t, Config{HotBytes: -1})
	s.Add(Main, Put{Key: "k", Value: []byte("v"), Tags: []string{"t"}})
	if _, n := s.Invalidate(Hot, "k"); n != 0 {
		t.Errorf("Invalidate(Hot) with Hot disabled removed %d, want 0", n)
	}
	s.InvalidateTags(Both, "x")
	s.Clear(Hot)
	if s.Remove(Hot, "k") || s.Expire(Hot, "k", time.Second) {
		t.Errorf("Remove or Expire on a disabled Hot reported an entry")
	}
	s.Sweep()
	if _, ok := s.Get(Main, "k"); !ok {
		t.Errorf("Main entry gone after operations on a disabled Hot")
	}
	if st := s.Stats(); st.HotItems != 0 || st.Items != 1 {
		t.Errorf("Stats() = %+v, want Items 1, HotItems 0", st)
	}
}

// TestKeyFenceMemory measures the heap a store retains after 500,000
// invalidations of distinct keys that were never cached (what a node keeps
// for the writes of keys it does not hold), store included. With a
// tombstone per key it was 154 MiB; it takes a tenth of a second.
func TestKeyFenceMemory(t *testing.T) {
	const n = 500_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New(Config{SweepInterval: -1})
	defer s.Close()
	runtime.GC()
	var empty runtime.MemStats
	runtime.ReadMemStats(&empty)
	for i := range n {
		s.Invalidate(All, "never-cached:"+strconv.Itoa(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	grown := int64(after.HeapAlloc) - int64(empty.HeapAlloc)
	t.Logf("heap retained after %d invalidations: %.2f MiB (store included; %.2f MiB of it grown by the invalidations, %.1f B each)",
		n, float64(retained)/(1<<20), float64(grown)/(1<<20), float64(grown)/n)
	if retained >= 16<<20 {
		t.Errorf("heap retained = %.2f MiB, want < 16 MiB", float64(retained)/(1<<20))
	}
}
