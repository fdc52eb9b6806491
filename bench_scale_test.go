//go:build linux

package meshcache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metrics "github.com/hashicorp/go-metrics"
	"golang.org/x/sys/unix"
)

// Growth with N (issue 11, part 4): the figures of BenchmarkScale for
// clusters of 3, 10, 25 and 50 nodes in this process. Each table of
//
//	go test -run '^$' -bench 'Scale' -benchtime 1000x -count 5 -timeout 60m . > scale.txt
//	benchstat -col /nodes scale.txt
//
// is one figure, with a column per cluster size.

// scaleSizes are the cluster sizes of BenchmarkScale.
var scaleSizes = []int{3, 10, 25, 50}

const (
	// scaleSettle is how long a new cluster rests before the rest window:
	// longer than memberlist takes to stop retransmitting the joins.
	scaleSettle = 2 * time.Second
	// scaleWindow is how long the figures at rest are measured.
	scaleWindow = 5 * time.Second
	// scaleJoinWait bounds the settling of a new cluster: a member that
	// the gossip of a join missed learns of the joiner from a push/pull
	// only, every 15 s to 30 s (local timings; 30 s above 32 members).
	scaleJoinWait = 2 * time.Minute
	// scaleWait bounds the calls of one sub-benchmark.
	scaleWait = 5 * time.Minute
	// scaleWriters is the concurrency of the concurrent-writes figures.
	scaleWriters = 16
)

// BenchmarkScale measures how a cluster's costs grow with its size, for
// each of scaleSizes (nodes=N): N nodes in this process, joined to n0, with
// local gossip timings, group "g" with 1 KiB values and the hot cache off.
//
// op=cluster starts a new cluster for each measurement (each -count) and
// reports join-ms, the time from starting the first node (one after the
// other, each joining n0) until every node is ready and routes over N
// members, and settle-ms, the part of it after the last node started.
// Then, after scaleSettle, over scaleWindow at rest:
//
//   - gossip-B/s/node: the bytes memberlist sends (UDP and TCP, its
//     go-metrics counters), summed over the nodes, divided by N;
//   - rpc-B/s/node and rpc-segs/s/node: the bytes and data segments sent
//     on the transport's connections, both ends, divided by N (the kernel's
//     TCP_INFO of every connection open throughout): the lease heartbeats
//     and their answers;
//   - rest-cpu-ms/s/node: the process's CPU time, divided by N.
//
// Then, after a GC, what the cluster added to the process, divided by N:
// heap-KiB/node, stack-KiB/node and goroutines/node.
//
// The figures per op are measured on one more cluster per size, from n0:
//
//   - op=remotehit: Get of keys other nodes own and hold, one caller:
//     p50-µs, p99-µs and cpu-µs/op;
//   - op=invalidate/writers=W: Invalidate by W concurrent callers (1 and
//     scaleWriters): ops/s, the calls' p50-µs and p99-µs, cpu-µs/op, and
//     cpu-µs/member, the CPU time per write and member written to (N-1);
//     partial-writes, the writes that returned ErrPartialInvalidation
//     (counted, not failed: at 50 nodes on 2 cores, n0 may lose its lease
//     while the writes starve the heartbeats of CPU).
//
// Every sub-benchmark also reports the membership events during its run
// (in all, not per op), summed over the nodes: ring-changes and
// failed-members (memberlist declared a member failed). Both are 0 on a
// machine with CPU to spare; when the process saturates the cores, the
// local profile's probes (200 ms timeout) fail and live members are
// declared failed and come back, and the writes that meet the changes take
// extra rounds (write.go).
//
// The CPU figures are the whole process's: both ends of every exchange,
// and the cluster's work at rest (heartbeats, gossip), which grows with N.
// The net-cpu figures subtract the rate at rest, measured on the same
// cluster before the ops.
//
// 50 nodes on 2 cores are CPU-bound: give -benchtime a count (1000x), not
// a duration.
func BenchmarkScale(b *testing.B) {
	sink := installGossipSink(b)
	for _, size := range scaleSizes {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) { benchmarkScale(b, size, sink) })
	}
}

func benchmarkScale(b *testing.B, size int, sink *gossipSink) {
	// A new cluster for each measurement of its own figures (-count).
	b.Run("op=cluster", func(b *testing.B) { benchScaleCluster(b, size, sink) })

	// One cluster for the figures per op; the CPU rate at rest for the
	// net figures.
	settleMemberlist(10 * time.Second)
	c := startScaleCluster(b, size)
	time.Sleep(scaleSettle)
	rest := measureRest(b, sink, size)

	keys := remoteKeys(b, c.nodes, c.gs, 64)
	b.Run("op=remotehit", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
		defer cancel()
		e0 := c.events.snapshot()
		lat := make([]time.Duration, 0, 1<<14)
		i := 0
		cpu0 := cpuTime(b)
		for b.Loop() {
			t0 := time.Now()
			v, err := c.gs[0].Get(ctx, keys[i%len(keys)])
			lat = append(lat, time.Since(t0))
			if err != nil || len(v) != 1024 {
				b.Fatalf("Get(%q) = %d bytes, %v; want 1024 bytes", keys[i%len(keys)], len(v), err)
			}
			i++
		}
		cpu := cpuTime(b) - cpu0
		reportCPU(b, cpu0)
		b.ReportMetric((cpu.Seconds()-rest.cpu*b.Elapsed().Seconds())*1e6/float64(b.N), "net-cpu-µs/op")
		reportLatency(b, lat)
		c.events.report(b, e0)
		checkNoFallback(b, c.gs[0])
	})

	for _, writers := range []int{1, scaleWriters} {
		b.Run(fmt.Sprintf("op=invalidate/writers=%d", writers), func(b *testing.B) {
			e0 := c.events.snapshot()
			benchWriters(b, c.gs[0], writers, size-1, rest.cpu)
			c.events.report(b, e0)
		})
	}
}

// benchScaleCluster starts a cluster of size nodes and reports the
// figures of op=cluster (see BenchmarkScale), once per measurement: the
// benchmark loop is empty, only there so that the testing package runs
// the function once per -count (b.Loop) and not again for b.N.
func benchScaleCluster(b *testing.B, size int, sink *gossipSink) {
	settleMemberlist(10 * time.Second) // the nodes of the cluster before
	base := scaleMemory()
	c := startScaleCluster(b, size)
	time.Sleep(scaleSettle)
	e0 := c.events.snapshot()
	rest := measureRest(b, sink, size)
	mem := scaleMemory()
	for b.Loop() {
	}
	b.ReportMetric(0, "ns/op") // nothing runs per op
	b.ReportMetric(float64((c.start + c.settle).Milliseconds()), "join-ms")
	b.ReportMetric(float64(c.settle.Milliseconds()), "settle-ms")
	c.events.report(b, e0)
	b.ReportMetric(rest.gossipBytes, "gossip-B/s/node")
	b.ReportMetric(rest.rpcBytes, "rpc-B/s/node")
	b.ReportMetric(rest.rpcSegs, "rpc-segs/s/node")
	b.ReportMetric(rest.cpu*1e3/float64(size), "rest-cpu-ms/s/node")
	b.ReportMetric(float64(mem.heap-base.heap)/1024/float64(size), "heap-KiB/node")
	b.ReportMetric(float64(mem.stack-base.stack)/1024/float64(size), "stack-KiB/node")
	b.ReportMetric(float64(mem.goroutines-base.goroutines)/float64(size), "goroutines/node")
}

// scaleCluster is a cluster of BenchmarkScale.
type scaleCluster struct {
	nodes []*Node
	gs    []*Group // group "g" of each node
	// start is how long the nodes took to start, one after the other,
	// and settle how long they took then until every node was ready and
	// routed over every member.
	start, settle time.Duration
	events        *clusterEvents // of every node
}

// startScaleCluster is benchCluster (nodes n0, n1, ... joining n0, group
// "g" with a 1 KiB value and the hot cache off) that times the start and
// counts membership events. It waits up to scaleJoinWait to settle, where
// startCluster gives up after 20 s (which 50 nodes sometimes need, see
// scaleJoinWait). The nodes close together when b ends.
func startScaleCluster(b *testing.B, size int) *scaleCluster {
	b.Helper()
	c := &scaleCluster{nodes: make([]*Node, size), events: &clusterEvents{}}
	logger := slog.New(c.events.handler(testLogger().Handler()))
	t0 := time.Now()
	for i := range c.nodes {
		var seeds []string
		if i > 0 {
			seeds = []string{c.nodes[0].GossipAddr()}
		}
		cfg := testClusterConfig(fmt.Sprintf("n%d", i), seeds...)
		cfg.Logger = logger
		c.nodes[i] = startNode(b, cfg)
	}
	closeTogether(b, c.nodes)
	c.start = time.Since(t0)
	deadline := time.Now().Add(scaleJoinWait)
	for _, n := range c.nodes {
		select {
		case <-n.Ready():
		case <-time.After(time.Until(deadline)):
			b.Fatalf("%s not ready %v after the last node started", n.Name(), scaleJoinWait)
		}
		for n.Stats().Members != size {
			if time.Now().After(deadline) {
				b.Fatalf("%s routes over %d members %v after the last node started, want %d", n.Name(), n.Stats().Members, scaleJoinWait, size)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.settle = time.Since(t0) - c.start
	val := value1K()
	load := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: bytes.Clone(val)}, nil
	})
	c.gs = newClusterGroups(b, c.nodes, "g", load, WithHotBytes(-1))
	return c
}

// clusterEvents counts the membership events the nodes of a cluster log:
// on a loaded machine memberlist may declare live members failed (its
// probes time out), and every node's ring changes twice (out, back in).
type clusterEvents struct {
	ringChanges atomic.Int64 // "meshcache: ring changed", summed over the nodes
	failed      atomic.Int64 // memberlist "Marking ... as failed"
}

// handler returns a slog.Handler that counts e's events and passes every
// record on to next.
func (e *clusterEvents) handler(next slog.Handler) slog.Handler {
	return eventHandler{e: e, next: next}
}

type eventHandler struct {
	e    *clusterEvents
	next slog.Handler
}

func (h eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h eventHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Message == "meshcache: ring changed":
		h.e.ringChanges.Add(1)
	case strings.HasPrefix(r.Message, "memberlist: Marking ") && strings.Contains(r.Message, " as failed"):
		h.e.failed.Add(1)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return eventHandler{e: h.e, next: h.next.WithAttrs(as)}
}

func (h eventHandler) WithGroup(name string) slog.Handler {
	return eventHandler{e: h.e, next: h.next.WithGroup(name)}
}

// eventCounts is a snapshot of a clusterEvents.
type eventCounts struct{ ringChanges, failed int64 }

func (e *clusterEvents) snapshot() eventCounts {
	return eventCounts{ringChanges: e.ringChanges.Load(), failed: e.failed.Load()}
}

// report reports the events since e0, over the whole run of b (not per
// op): on a cluster at rest, both are 0.
func (e *clusterEvents) report(b *testing.B, e0 eventCounts) {
	e1 := e.snapshot()
	b.ReportMetric(float64(e1.ringChanges-e0.ringChanges), "ring-changes")
	b.ReportMetric(float64(e1.failed-e0.failed), "failed-members")
}

// restFigures are a cluster's costs at rest, per second.
type restFigures struct {
	gossipBytes float64 // memberlist bytes sent, per node
	rpcBytes    float64 // transport bytes sent, per node
	rpcSegs     float64 // transport data segments sent, per node
	cpu         float64 // CPU seconds of the process
}

// measureRest measures the costs of a cluster of size nodes over
// scaleWindow while nothing else runs.
func measureRest(b *testing.B, sink *gossipSink, size int) restFigures {
	g0 := sink.sent()
	tcp0 := tcpSent()
	cpu0 := cpuTime(b)
	t0 := time.Now()
	time.Sleep(scaleWindow)
	g1 := sink.sent()
	tcp1 := tcpSent()
	cpu1 := cpuTime(b)
	secs := time.Since(t0).Seconds()

	// Only the connections open throughout: the transport's, which stay
	// open, not memberlist's push/pull streams (counted by the sink).
	var rpcBytes, rpcSegs uint64
	for sock, c1 := range tcp1 {
		if c0, ok := tcp0[sock]; ok {
			rpcBytes += c1.bytes - c0.bytes
			rpcSegs += c1.segs - c0.segs
		}
	}
	perNode := secs * float64(size)
	return restFigures{
		gossipBytes: float64(g1-g0) / perNode,
		rpcBytes:    float64(rpcBytes) / perNode,
		rpcSegs:     float64(rpcSegs) / perNode,
		cpu:         (cpu1 - cpu0).Seconds() / secs,
	}
}

// gossipSink is a go-metrics sink that counts the bytes memberlist sends
// (its memberlist.udp.sent and memberlist.tcp.sent counters) for every
// memberlist of the process: memberlist has no byte counter of its own,
// and the nodes of one process share the loopback interface.
type gossipSink struct {
	metrics.BlackholeSink
	bytes atomic.Int64
}

// installGossipSink makes a gossipSink go-metrics' global sink until b
// ends (no runtime metrics, hence no goroutine).
func installGossipSink(b *testing.B) *gossipSink {
	b.Helper()
	s := &gossipSink{}
	if _, err := metrics.NewGlobal(&metrics.Config{FilterDefault: true}, s); err != nil {
		b.Fatalf("go-metrics: %v", err)
	}
	b.Cleanup(metrics.Shutdown) // back to the default, a black hole
	return s
}

func (s *gossipSink) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	if len(key) == 3 && key[0] == "memberlist" && key[2] == "sent" && (key[1] == "udp" || key[1] == "tcp") {
		s.bytes.Add(int64(val))
	}
}

func (s *gossipSink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }

func (s *gossipSink) sent() int64 { return s.bytes.Load() }

// tcpCount is what one TCP socket has sent.
type tcpCount struct{ bytes, segs uint64 }

// tcpSent returns, for each TCP socket of this process (by its
// "socket:[inode]" name), the bytes and data segments it has sent
// (TCP_INFO). A socket closed meanwhile is left out.
func tcpSent() map[string]tcpCount {
	m := make(map[string]tcpCount)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return m
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			continue // not TCP
		}
		m[link] = tcpCount{bytes: info.Bytes_sent, segs: uint64(info.Data_segs_out)}
	}
	return m
}

// memFigures is the process's memory after a GC.
type memFigures struct {
	heap, stack int64 // bytes of live heap objects, of goroutine stacks
	goroutines  int64
}

func scaleMemory() memFigures {
	runtime.GC()
	runtime.GC() // finalizers of the first
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memFigures{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse), goroutines: int64(runtime.NumGoroutine())}
}

// settleMemberlist waits, at most d, until no goroutine of a closed
// memberlist is left (some outlive Shutdown by up to a probe interval or a
// TCP timeout; see internal/leaktest), so that they do not count as the next
// cluster's.
func settleMemberlist(d time.Duration) {
	buf := make([]byte, 1<<22)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("hashicorp/memberlist")) {
			return
		}
	}
}
