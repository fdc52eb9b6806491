//go:build unix

package local

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSharding compares tiers split into shards (the 64 New picks for
// their bound) with tiers of one shard (one lock, exact LRU order), under
// GOMAXPROCS goroutines (run with -cpu) each doing random Gets and Adds of
// 100-byte values:
//
//   - get: Gets only over 16,384 keys, every one a hit;
//   - get90add10: 9 Gets for each Add over 16,384 keys, the Adds replacing
//     stored keys;
//   - add-evict: Adds only of 65,536 keys into a Main of 4 MiB that holds a
//     quarter of them, so that every Add evicts;
//   - sweep-1M: a sweep (as [Store.Sweep]) of a Main of 1,048,576 live
//     entries, reporting the longest it held one lock (maxhold-µs).
//
// The sub-benchmark name gives the number of shards. Gets do not copy the
// value (the root does, which adds the same to both). Besides the time, it
// reports per operation the CPU time (user and system) of the process,
// which is steadier than the time on a shared machine, and from the mutex
// profile (which the benchmark turns on) how often a goroutine found a
// lock of the store held (contended/kop: per 1,000 operations) and how
// long goroutines waited for them (lockwait-ns/op). The wait counts the
// time a lock holder was descheduled, which on a loaded machine dwarfs the
// rest; the count does not.
func BenchmarkSharding(b *testing.B) {
	defer runtime.SetMutexProfileFraction(runtime.SetMutexProfileFraction(1))
	value := make([]byte, 100)
	for _, mix := range []struct {
		name     string
		keys     int
		bytes    int64
		addEvery int // 0: no Adds; 1: only Adds
	}{
		{"get", 16 * benchKeys, DefaultMainBytes, 0},
		{"get90add10", 16 * benchKeys, DefaultMainBytes, 10},
		{"add-evict", 64 * benchKeys, 4 << 20, 1},
	} {
		keys := makeBenchKeys(mix.keys)
		for _, shards := range []int{1, shardCount(mix.bytes, 0)} {
			s := newStore(Config{MainBytes: mix.bytes, SweepInterval: -1}, shards)
			for _, k := range keys {
				s.Add(Main, Put{Key: k, Value: value})
			}
			runtime.GC() // the previous store's garbage
			b.Run(fmt.Sprintf("%s/shards=%d", mix.name, shards), func(b *testing.B) {
				b.ReportAllocs()
				start := cpuTime(b)
				waits, wait := lockWaits(b)
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						k := keys[rand.IntN(len(keys))]
						if mix.addEvery > 0 && i%mix.addEvery == 0 {
							s.Add(Main, Put{Key: k, Value: value, Since: s.Seq()})
						} else if _, ok := s.Get(Main, k); !ok && mix.addEvery != 1 {
							b.Errorf("Get(%q) missed", k)
							return
						}
					}
				})
				b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
				waits2, wait2 := lockWaits(b)
				b.ReportMetric(float64(waits2-waits)*1000/float64(b.N), "contended/kop")
				b.ReportMetric(float64(wait2-wait)/float64(b.N), "lockwait-ns/op")
			})
			s.Close()
		}
	}
	// A sweep visits every entry, one shard lock at a time: the longest it
	// holds one is the longest a Get of that tier may wait for it. The
	// entries are read once in random order first, as a cache's traffic
	// would, so that the LRU order is not the order of their allocation
	// (walking memory in order, the one-shard sweep would be 4 times as
	// fast as it is after traffic).
	keys := makeBenchKeys(1 << 20)
	for _, shards := range []int{1, shardCount(DefaultMainBytes, 0)} {
		s := newStore(Config{MainBytes: 1 << 30, SweepInterval: -1}, shards)
		for _, k := range keys {
			s.Add(Main, Put{Key: k, Value: value, TTL: time.Hour})
		}
		for _, i := range rand.Perm(len(keys)) {
			s.Get(Main, keys[i])
		}
		runtime.GC()
		b.Run(fmt.Sprintf("sweep-1M/shards=%d", shards), func(b *testing.B) {
			var held time.Duration // sum over iterations of the longest hold
			for b.Loop() {
				var longest time.Duration
				for i := range s.main.shards {
					t0 := time.Now()
					s.main.sweepShard(&s.main.shards[i], s.nanos())
					longest = max(longest, time.Since(t0))
				}
				held += longest
			}
			b.ReportMetric(float64(held.Microseconds())/float64(b.N), "maxhold-µs")
		})
		s.Close()
	}
}

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// lockWaits returns how many times, and how long, goroutines have waited so
// far for sync locks that code of this package released, from the mutex
// profile (each contended Unlock records the delay it caused).
func lockWaits(b *testing.B) (int64, time.Duration) {
	n, _ := runtime.MutexProfile(nil)
	recs := make([]runtime.BlockProfileRecord, n+64)
	n, ok := runtime.MutexProfile(recs)
	if !ok {
		b.Fatalf("mutex profile grew by over 64 records")
	}
	var count, cycles int64
	for _, r := range recs[:n] {
		if unlockedHere(r.Stack()) {
			count += r.Count
			cycles += r.Cycles
		}
	}
	return count, time.Duration(float64(cycles) / cyclesPerSecond(b) * 1e9)
}

// unlockedHere reports whether stack is that of a sync.Mutex or
// sync.RWMutex Unlock called by this package (not a runtime-internal lock,
// which the profile also records).
func unlockedHere(stack []uintptr) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, "sync.(*") && strings.Contains(f.Function, "Unlock") {
			caller, _ := frames.Next()
			return strings.HasPrefix(caller.Function, localPkg)
		}
		if !more {
			return false
		}
	}
}

// localPkg prefixes the names of this package's functions.
var localPkg = reflect.TypeFor[Store]().PkgPath() + "."

// cyclesPerSecond returns the rate of the mutex profile's cycle counts, as
// its text form states it.
func cyclesPerSecond(b *testing.B) float64 {
	var buf bytes.Buffer
	if err := pprof.Lookup("mutex").WriteTo(&buf, 1); err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(buf.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cycles/second="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 {
				b.Fatalf("mutex profile: cycles/second=%q", v)
			}
			return f
		}
	}
	b.Fatalf("mutex profile without cycles/second")
	return 0
}
