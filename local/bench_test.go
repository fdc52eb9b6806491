package local

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

const (
	benchKeys      = 1024
	benchValueSize = 1024
)

// sink keeps the copies alive so the compiler cannot drop them.
var sink []byte

func makeBenchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%08d", i)
	}
	return keys
}

// copyValue is what the root does with a hit before handing it to a user.
func copyValue(v []byte) []byte {
	c := make([]byte, len(v))
	copy(c, v)
	return c
}

// BenchmarkGetHit measures a Main hit of a 1 KiB value plus the root's copy.
func BenchmarkGetHit(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
		tags []string
	}{
		{"plain", 0, nil},
		{"ttl+tag", time.Hour, []string{"org:acme"}},
	} {
		s := New(Config{SweepInterval: -1})
		keys := makeBenchKeys(benchKeys)
		for _, k := range keys {
			s.Add(Main, Put{Key: k, Value: make([]byte, benchValueSize), Tags: bc.tags, TTL: bc.ttl})
		}
		if bc.tags != nil {
			s.InvalidateTags(Main, "org:other") // generations exist: the lookup runs
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e, ok := s.Get(Main, keys[i%benchKeys])
				if !ok {
					b.Fatal("miss")
				}
				sink = copyValue(e.Value)
				i++
			}
		})
		b.Run(bc.name+"/nocopy", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.Get(Main, keys[i%benchKeys]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				var local []byte
				for pb.Next() {
					e, ok := s.Get(Main, keys[i%benchKeys])
					if !ok {
						b.Error("miss")
						return
					}
					local = copyValue(e.Value)
					i++
				}
				runtime.KeepAlive(local)
			})
		})
		s.Close()
	}
}

// BenchmarkBareLRUGetHit is the baseline for BenchmarkGetHit: golang-lru/v2's
// thread-safe Cache, same keys, value size and copy.
func BenchmarkBareLRUGetHit(b *testing.B) {
	c, err := lru.New[string, []byte](2 * benchKeys)
	if err != nil {
		b.Fatal(err)
	}
	keys := makeBenchKeys(benchKeys)
	for _, k := range keys {
		c.Add(k, make([]byte, benchValueSize))
	}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v, ok := c.Get(keys[i%benchKeys])
			if !ok {
				b.Fatal("miss")
			}
			sink = copyValue(v)
			i++
		}
	})
	b.Run("plain/nocopy", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := c.Get(keys[i%benchKeys]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("plain/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			var local []byte
			for pb.Next() {
				v, ok := c.Get(keys[i%benchKeys])
				if !ok {
					b.Error("miss")
					return
				}
				local = copyValue(v)
				i++
			}
			runtime.KeepAlive(local)
		})
	})
}

// BenchmarkAdd measures storing a 1 KiB value into a full Main (each Add
// evicts).
func BenchmarkAdd(b *testing.B) {
	s := New(Config{MainBytes: 1 << 20, SweepInterval: -1})
	defer s.Close()
	keys := makeBenchKeys(16 * benchKeys)
	value := make([]byte, benchValueSize)
	tags := []string{"org:acme"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Add(Main, Put{Key: keys[i%len(keys)], Value: value, Tags: tags, TTL: time.Hour, Since: s.Seq()})
		i++
	}
}

// BenchmarkInvalidateTags shows that a tag invalidation costs the same
// whatever the number of entries carrying the tag.
func BenchmarkInvalidateTags(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint("entries=", n), func(b *testing.B) {
			s := New(Config{MainBytes: 1 << 30, SweepInterval: -1})
			defer s.Close()
			tags := []string{"org:acme"}
			for _, k := range makeBenchKeys(n) {
				s.Add(Main, Put{Key: k, Value: make([]byte, 16), Tags: tags})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s.InvalidateTags(Main, "org:acme")
			}
		})
	}
}

// BenchmarkMemoryPerEntry reports the heap an entry costs beyond its key and
// value bytes, for 1,000,000 entries with 12-byte keys and 100-byte values.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 1_000_000
	keys := makeBenchKeys(n)
	var perEntry float64
	for b.Loop() {
		perEntry = heapPerEntry(keys, 100)
	}
	b.ReportMetric(perEntry, "heap-B/entry")
	b.ReportMetric(0, "ns/op")
}

// heapPerEntry stores one 100-byte-value entry per key in a fresh store and
// returns the store's heap growth per entry minus len(key)+len(value).
func heapPerEntry(keys []string, valueSize int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New(Config{MainBytes: 1 << 40, SweepInterval: -1})
	var payload int64
	for _, k := range keys {
		s.Add(Main, Put{Key: k, Value: make([]byte, valueSize), TTL: time.Hour})
		payload += int64(len(k) + valueSize)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := s.Stats().Items; got != int64(len(keys)) {
		panic(fmt.Sprintf("stored %d of %d entries", got, len(keys)))
	}
	runtime.KeepAlive(s)
	s.Close()
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)-payload) / float64(len(keys))
}

// BenchmarkInvalidate measures Invalidate(All) of one key, what every node
// does for each key a write names. "absent": the key is cached nowhere (the
// common case: a node holds few of the keys written), cycling through 2^20
// distinct keys. "present": the key is cached in Main, stored again (Add)
// before each Invalidate, so the number includes an Add.
func BenchmarkInvalidate(b *testing.B) {
	keys := makeBenchKeys(1 << 20)
	value := make([]byte, 100)
	b.Run("absent", func(b *testing.B) {
		s := New(Config{SweepInterval: -1})
		defer s.Close()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s.Invalidate(All, keys[i%len(keys)])
			i++
		}
	})
	b.Run("present", func(b *testing.B) {
		s := New(Config{SweepInterval: -1})
		defer s.Close()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := keys[i%benchKeys]
			s.Add(Main, Put{Key: k, Value: value, Since: s.Seq()})
			if _, n := s.Invalidate(All, k); n != 1 {
				b.Fatalf("Invalidate removed %d entries, want 1", n)
			}
			i++
		}
	})
}

// BenchmarkAddFenced measures Add of a 1 KiB value into a full Main, as
// BenchmarkAdd, while the fences of 500,000 invalidated keys are kept
// ("invalidated=0": none). "stored": the added keys were not invalidated;
// "refused": they were, after the Add's since, so every Add is refused.
func BenchmarkAddFenced(b *testing.B) {
	keys := makeBenchKeys(16 * benchKeys)
	value := make([]byte, benchValueSize)
	for _, n := range []int{0, 500_000} {
		s := New(Config{MainBytes: 1 << 20, SweepInterval: -1})
		for i := range n {
			s.Invalidate(All, fmt.Sprint("other:", i))
		}
		b.Run(fmt.Sprint("invalidated=", n, "/stored"), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !s.Add(Main, Put{Key: keys[i%len(keys)], Value: value, TTL: time.Hour, Since: s.Seq()}) {
					b.Fatal("Add refused")
				}
				i++
			}
		})
		since := s.Seq()
		s.Invalidate(Main, keys...)
		b.Run(fmt.Sprint("invalidated=", n, "/refused"), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if s.Add(Main, Put{Key: keys[i%len(keys)], Value: value, TTL: time.Hour, Since: since}) {
					b.Fatal("Add stored")
				}
				i++
			}
		})
		s.Close()
	}
}
