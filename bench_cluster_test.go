//go:build unix

package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Cluster benchmarks (issue 3, "Speed"): real nodes in one process, gossip
// on 127.0.0.1 with local timings, 1 KiB values. Compare the impls with
//
//	go test -run '^$' -bench 'RemoteHit|GetMany100|Invalidate$' -benchmem -count 6 . > bench_cluster.txt
//	benchstat -col /impl bench_cluster.txt

const (
	// benchCallers is the number of concurrent callers of the parallel
	// benchmarks.
	benchCallers = 16
	// benchReqLen is the size of the bare TCP baseline's request: about a
	// Get request frame for a short group and key.
	benchReqLen = 40
	// benchKeysPerCaller is how many keys of its own each parallel caller
	// cycles through, so that callers never share a fetch flight.
	benchKeysPerCaller = 8
)

// benchCluster starts size nodes with group "g" on each, its loader
// returning a 1 KiB value, and the hot cache off so that every Get of a key
// another node owns crosses the network.
func benchCluster(b *testing.B, size int) ([]*Node, []*Group) {
	b.Helper()
	nodes := startCluster(b, size, nil)
	val := value1K()
	load := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: bytes.Clone(val)}, nil
	})
	return nodes, newClusterGroups(b, nodes, "g", load, WithHotBytes(-1))
}

// remoteKeys returns n keys that nodes[0] routes to another node, each
// loaded once by its owner so that it sits in the owner's main cache.
func remoteKeys(b *testing.B, nodes []*Node, gs []*Group, n int) []string {
	b.Helper()
	ctx := context.Background()
	byName := make(map[string]*Group, len(nodes))
	for i, nd := range nodes {
		byName[nd.Name()] = gs[i]
	}
	keys := make([]string, 0, n)
	for i := 0; len(keys) < n; i++ {
		if i > 100*n {
			b.Fatalf("found %d keys owned by other nodes in %d tries", len(keys), i)
		}
		key := fmt.Sprintf("user:%08d", i)
		owner := nodes[0].Owner(key)
		if owner == nodes[0].Name() {
			continue
		}
		if _, err := byName[owner].Get(ctx, key); err != nil {
			b.Fatalf("%s: Get(%q): %v", owner, key, err)
		}
		keys = append(keys, key)
	}
	return keys
}

// checkNoFallback fails b when g loaded anything itself: every Get must
// have been served by the keys' owners.
func checkNoFallback(b *testing.B, g *Group) {
	b.Helper()
	if s := g.Stats(); s.Fallbacks != 0 || s.Loads != 0 || s.HotHits != 0 {
		b.Fatalf("caller stats: %d fallbacks, %d loads, %d hot hits; want 0 (every Get a remote hit)",
			s.Fallbacks, s.Loads, s.HotHits)
	}
}

// reportLatency reports the 50th and 99th percentiles of lat in µs.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(pct(0.50).Seconds()*1e6, "p50-µs")
	b.ReportMetric(pct(0.99).Seconds()*1e6, "p99-µs")
}

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per op since start (a cpuTime), of both
// ends as they run in this process. On a shared machine it is steadier
// than sec/op, which also counts the time other jobs hold the cores.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric((cpuTime(b)-start).Seconds()*1e6/float64(b.N), "cpu-µs/op")
	}
}

// reportOpsPerSec reports the throughput of a parallel benchmark.
func reportOpsPerSec(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// setCallers makes RunParallel run benchCallers goroutines in all
// (SetParallelism multiplies by GOMAXPROCS).
func setCallers(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism(max(1, (benchCallers+procs-1)/procs))
}

// echoServer is the bare TCP baseline: for every benchReqLen bytes it reads
// on a connection it writes a 1 KiB response, no framing or encoding.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns []net.Conn
}

// startEchoServer starts an echo server on 127.0.0.1:0, stopped (its
// goroutines ended) when b ends.
func startEchoServer(b *testing.B) *echoServer {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &echoServer{ln: ln}
	resp := value1K()
	s.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			s.wg.Go(func() {
				req := make([]byte, benchReqLen)
				for {
					if _, err := io.ReadFull(nc, req); err != nil {
						return
					}
					if _, err := nc.Write(resp); err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, nc := range s.conns {
			nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// tcpClient is one persistent connection to an echoServer.
type tcpClient struct {
	nc        net.Conn
	req, resp []byte
}

func (s *echoServer) dial() (*tcpClient, error) {
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	return &tcpClient{nc: nc, req: make([]byte, benchReqLen), resp: make([]byte, 1024)}, nil
}

// roundTrip writes a request and reads the whole response.
func (c *tcpClient) roundTrip() error {
	if _, err := c.nc.Write(c.req); err != nil {
		return err
	}
	_, err := io.ReadFull(c.nc, c.resp)
	return err
}

// BenchmarkRemoteHit measures a Get, on a node with its hot cache off, of a
// 1 KiB value another node owns and has cached (impl=meshcache), next to
// one bare TCP round trip of the same sizes on a persistent connection
// (impl=tcp), sequentially. It reports the 50th and 99th percentile
// latencies.
func BenchmarkRemoteHit(b *testing.B) {
	nodes, gs := benchCluster(b, 3)
	keys := remoteKeys(b, nodes, gs, 64)
	echo := startEchoServer(b)
	ctx := context.Background()

	b.Run("impl=meshcache", func(b *testing.B) {
		b.ReportAllocs()
		lat := make([]time.Duration, 0, 1<<17)
		i := 0
		cpu0 := cpuTime(b)
		for b.Loop() {
			start := time.Now()
			v, err := gs[0].Get(ctx, keys[i%len(keys)])
			lat = append(lat, time.Since(start))
			if err != nil || len(v) != 1024 {
				b.Fatalf("Get(%q) = %d bytes, %v; want 1024 bytes", keys[i%len(keys)], len(v), err)
			}
			i++
		}
		reportCPU(b, cpu0)
		reportLatency(b, lat)
		checkNoFallback(b, gs[0])
	})
	b.Run("impl=tcp", func(b *testing.B) {
		c, err := echo.dial()
		if err != nil {
			b.Fatal(err)
		}
		defer c.nc.Close()
		b.ReportAllocs()
		lat := make([]time.Duration, 0, 1<<17)
		cpu0 := cpuTime(b)
		for b.Loop() {
			start := time.Now()
			err := c.roundTrip()
			lat = append(lat, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
		reportLatency(b, lat)
	})
}

// BenchmarkRemoteHitParallel is BenchmarkRemoteHit with benchCallers
// concurrent callers, each on keys of its own (so that no two share a
// fetch flight) and, for impl=tcp, a connection of its own. It reports
// ops/s.
func BenchmarkRemoteHitParallel(b *testing.B) {
	nodes, gs := benchCluster(b, 3)
	keys := remoteKeys(b, nodes, gs, 2*benchCallers*benchKeysPerCaller)
	echo := startEchoServer(b)
	ctx := context.Background()

	b.Run("impl=meshcache", func(b *testing.B) {
		b.ReportAllocs()
		setCallers(b)
		var next atomic.Int64
		cpu0 := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			first := int(next.Add(1)-1) * benchKeysPerCaller % len(keys)
			mine := keys[first : first+benchKeysPerCaller]
			i := 0
			for pb.Next() {
				v, err := gs[0].Get(ctx, mine[i%len(mine)])
				if err != nil || len(v) != 1024 {
					b.Errorf("Get(%q) = %d bytes, %v; want 1024 bytes", mine[i%len(mine)], len(v), err)
					return
				}
				i++
			}
		})
		reportCPU(b, cpu0)
		reportOpsPerSec(b)
		checkNoFallback(b, gs[0])
	})
	b.Run("impl=tcp", func(b *testing.B) {
		b.ReportAllocs()
		setCallers(b)
		cpu0 := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			c, err := echo.dial()
			if err != nil {
				b.Error(err)
				return
			}
			defer c.nc.Close()
			for pb.Next() {
				if err := c.roundTrip(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportCPU(b, cpu0)
		reportOpsPerSec(b)
	})
}

// BenchmarkGetMany100 measures GetMany of 100 keys spread over the owners of
// a 3-node cluster, all cached by their owners, from a node with its hot
// cache off: its own keys are main-cache hits, the others one request per
// owner.
func BenchmarkGetMany100(b *testing.B) {
	_, gs := benchCluster(b, 3)
	ctx := context.Background()
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("item:%04d", i)
	}
	if _, err := gs[0].GetMany(ctx, keys); err != nil {
		b.Fatalf("warming GetMany: %v", err)
	}
	loads := gs[0].Stats().Loads
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		m, err := gs[0].GetMany(ctx, keys)
		if err != nil || len(m) != len(keys) {
			b.Fatalf("GetMany = %d values, %v; want %d", len(m), err, len(keys))
		}
	}
	reportCPU(b, cpu0)
	if s := gs[0].Stats(); s.Loads != loads || s.Fallbacks != 0 {
		b.Fatalf("caller loaded %d keys (%d fallbacks) after warming; want 0", s.Loads-loads, s.Fallbacks)
	}
}

// BenchmarkInvalidate measures how long Invalidate of one key takes to
// return (both phases acknowledged by every member) in clusters of 3 and 5
// nodes, with the 50th and 99th percentile latencies.
func BenchmarkInvalidate(b *testing.B) {
	for _, size := range []int{3, 5} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			_, gs := benchCluster(b, size)
			ctx := context.Background()
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = fmt.Sprintf("item:%04d", i)
			}
			benchWriteLatency(b, gs[0], keys, "Invalidate", func(key string) error { return gs[0].Invalidate(ctx, key) })
		})
	}
}

// benchWriteLatency times write of each of keys in turn, from g's node,
// after g has fetched them all (so that every member holds something to
// drop), and reports CPU and latency percentiles.
func benchWriteLatency(b *testing.B, g *Group, keys []string, name string, write func(key string) error) {
	if _, err := g.GetMany(context.Background(), keys); err != nil {
		b.Fatalf("warming GetMany: %v", err)
	}
	b.ReportAllocs()
	lat := make([]time.Duration, 0, 1<<16)
	i := 0
	cpu0 := cpuTime(b)
	for b.Loop() {
		key := keys[i%len(keys)]
		start := time.Now()
		err := write(key)
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatalf("%s(%q): %v", name, key, err)
		}
		i++
	}
	reportCPU(b, cpu0)
	reportLatency(b, lat)
}

// BenchmarkConcurrentWrites measures the throughput of Invalidate from one
// node, with 1 writer and with 16 concurrent writers, in clusters of 3 and
// 10 nodes (in this process): how well concurrent writes share the fan-out.
//
//	go test -run '^$' -bench 'ConcurrentWrites' -count 6 . > writes.txt
//	benchstat -col /writers writes.txt
func BenchmarkConcurrentWrites(b *testing.B) {
	for _, size := range []int{3, 10} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) {
			_, gs := benchCluster(b, size)
			for _, writers := range []int{1, 16} {
				b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
					benchWriters(b, gs[0], writers, size-1, 0)
				})
			}
		})
	}
}

// benchWriters runs b.N Invalidates through g from writers concurrent
// callers and reports their throughput, latencies and CPU time, also per
// member written to; restCPU is the process's CPU rate at rest (seconds
// per second).
func benchWriters(b *testing.B, g *Group, writers, members int, restCPU float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprintf("item:%04d", i)
	}
	lats := make([][]time.Duration, writers)
	var next, partial atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/writers+1)
			defer func() { lats[w] = lat }()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				key := keys[i%int64(len(keys))]
				t0 := time.Now()
				err := g.Invalidate(ctx, key)
				lat = append(lat, time.Since(t0))
				if errors.Is(err, ErrPartialInvalidation) {
					partial.Add(1) // reported: see BenchmarkScale
				} else if err != nil {
					b.Errorf("Invalidate(%q): %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	reportOpsPerSec(b)
	b.ReportMetric(float64(partial.Load()), "partial-writes")
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	reportLatency(b, all)
	perOp := cpu.Seconds() * 1e6 / float64(b.N)
	netPerOp := (cpu.Seconds() - restCPU*b.Elapsed().Seconds()) * 1e6 / float64(b.N)
	b.ReportMetric(perOp, "cpu-µs/op")
	b.ReportMetric(netPerOp, "net-cpu-µs/op")
	if members > 0 {
		b.ReportMetric(perOp/float64(members), "cpu-µs/member")
		b.ReportMetric(netPerOp/float64(members), "net-cpu-µs/member")
	}
}
