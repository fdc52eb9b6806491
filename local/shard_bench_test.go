//go:build unix

package local

import (
	"fmt"
	"math/rand/v2"
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
//     quarter of them, so that every Add evicts.
//
// The sub-benchmark name gives the number of shards. Gets do not copy the
// value (the root does, which adds the same to both). Besides the time, it
// reports the CPU time (user and system) of the process per operation,
// which is steadier than the time on a shared machine and also shows lock
// contention: a goroutine that spins or parks on a lock burns CPU.
func BenchmarkSharding(b *testing.B) {
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
			b.Run(fmt.Sprintf("%s/shards=%d", mix.name, shards), func(b *testing.B) {
				b.ReportAllocs()
				start := cpuTime(b)
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
			})
			s.Close()
		}
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
