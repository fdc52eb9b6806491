//go:build linux

package meshcache

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Memory that tracks the data (issue 11, part 3): a Zipf workload over a
// 3-node cluster in one process, with a byte budget per group, reporting
// what is cached next to what the process holds:
//
//	go test -run '^$' -bench 'MemoryZipf' -count 6 . > mem.txt
//	benchstat -col /hot mem.txt    # the admission policy, off and on
//	benchstat -col /limit mem.txt  # GOMEMLIMIT
//
// Each sub-benchmark runs the workload once, in a child process of its own
// (the test binary, run again with zipfChildEnv set), because a process's
// peak RSS (VmHWM) cannot be reset: each figure is that of a fresh
// process. Run it with the default -benchtime: the parent ignores b.N, and
// its ns/op, B/op and allocs/op are the child's, per Get of the measured
// part.
//
// limit=off runs at the default GOGC alone (GOMEMLIMIT=off); limit=1.5x
// and limit=2x set GOMEMLIMIT to 1.5 and 2 times the configured cache
// bytes of the three nodes (3 × (main + hot)), as an embedder would.
// hot=all copies every value fetched from an owner into the hot cache (the
// default); hot=admit only a value fetched the second time within the
// admission window (WithHotAdmission(true)).
//
// To profile one configuration, run its child directly:
//
//	MESHCACHE_ZIPF_CHILD=1 go test -run '^$' -bench 'MemoryZipf/hot=all/limit=off$' -benchtime 1x -memprofile mem.out .
//	go tool pprof -sample_index=alloc_space -top mem.out
//
// Metrics: ops/s (16 callers spread over the 3 nodes); cached-MiB (Bytes +
// HotBytes of every node's group: what the byte bounds count) and hot-MiB
// (its hot part); base-MiB (live heap with the cluster up, before any
// Get); live-MiB (live heap after a GC at the end); maxRSS-MiB (the
// process's VmHWM: all three nodes) and maxRSS/cached; rssFile-MiB (the
// part of RSS at the end that maps files, the binary's code mostly, which
// GOMEMLIMIT does not count); cpu-µs/op (CPU time of the process, both
// ends of every request, per Get: steadier than ops/s on a shared
// machine); hit-% (main and hot hits over Gets) and hot-hit-%;
// fetches/op and loads/op (requests to owners and loader calls per Get);
// GCs/Mop (collections per million Gets).
func BenchmarkMemoryZipf(b *testing.B) {
	for _, hot := range []string{"all", "admit"} {
		b.Run("hot="+hot, func(b *testing.B) {
			for _, limit := range []string{"off", "1.5x", "2x"} {
				b.Run("limit="+limit, func(b *testing.B) {
					cfg := zipfConfig{admit: hot == "admit"}
					if limit != "off" {
						f, err := strconv.ParseFloat(strings.TrimSuffix(limit, "x"), 64)
						if err != nil {
							b.Fatal(err)
						}
						cfg.limit = int64(f * float64(zipfCacheBytes()))
					}
					if os.Getenv(zipfChildEnv) != "" {
						runZipf(b, cfg)
						return
					}
					runZipfChild(b, cfg)
				})
			}
		})
	}
}

const (
	// zipfChildEnv makes BenchmarkMemoryZipf run the workload in this
	// process instead of in a child.
	zipfChildEnv = "MESHCACHE_ZIPF_CHILD"
	// zipfOpsEnv overrides zipfOps.
	zipfOpsEnv = "MESHCACHE_ZIPF_OPS"
	// zipfHeapProfileEnv names a file for an in-use heap profile taken at
	// the end of the measured part (allocations are then sampled
	// throughout, not only in the measured part).
	zipfHeapProfileEnv = "MESHCACHE_ZIPF_HEAPPROFILE"

	zipfKeys      = 200_000 // distinct keys, about 240 MiB of entries in all
	zipfS         = 1.1     // the Zipf exponent
	zipfMainBytes = 32 << 20
	zipfHotBytes  = zipfMainBytes / 8 // the default proportion
	// zipfOps is the number of Gets measured, after the warm-up.
	zipfOps = 500_000
	// zipfWarmOps is the number of Gets of the warm-up, after the main
	// caches were filled (see runZipf).
	zipfWarmOps = 200_000
)

type zipfConfig struct {
	admit bool  // WithHotAdmission(true)
	limit int64 // GOMEMLIMIT, or 0 for none
}

// zipfCacheBytes is the configured cache bytes of the whole cluster.
func zipfCacheBytes() int64 { return 3 * (zipfMainBytes + zipfHotBytes) }

// runZipfChild runs b's configuration in a child process and reports the
// child's metrics as its own.
func runZipfChild(b *testing.B, cfg zipfConfig) {
	names := strings.Split(b.Name(), "/")
	pattern := make([]string, len(names))
	for i, n := range names {
		pattern[i] = "^" + regexp.QuoteMeta(n) + "$"
	}
	cmd := exec.CommandContext(b.Context(), os.Args[0],
		"-test.run=^$", "-test.bench="+strings.Join(pattern, "/"),
		"-test.benchtime=1x", "-test.benchmem", "-test.count=1")
	limit := "off"
	if cfg.limit > 0 {
		limit = strconv.FormatInt(cfg.limit, 10)
	}
	cmd.Env = append(os.Environ(), zipfChildEnv+"=1", "GOMEMLIMIT="+limit)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	b.ReportAllocs()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], names[0]+"/") {
			continue
		}
		// name, iterations, then value-unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				b.Fatalf("child metric %q: %v", f[i], err)
			}
			b.ReportMetric(v, f[i+1])
		}
		return
	}
	b.Fatalf("no result line in the child's output:\n%s\n%s", out, stderr.Bytes())
}

// runZipf runs the workload in this process and reports its metrics.
func runZipf(b *testing.B, cfg zipfConfig) {
	if cfg.limit > 0 && debug.SetMemoryLimit(-1) == math.MaxInt64 {
		// Run directly, not by runZipfChild: set what GOMEMLIMIT would.
		debug.SetMemoryLimit(cfg.limit)
	}
	// Sample allocations for -memprofile in the measured part only (the
	// cleanup, registered first, runs after the nodes closed).
	heapProfile := os.Getenv(zipfHeapProfileEnv)
	profileRate := runtime.MemProfileRate
	if heapProfile == "" {
		runtime.MemProfileRate = 0
	}
	b.Cleanup(func() { runtime.MemProfileRate = profileRate })
	// A steady state, long after the last membership change: no hand-off
	// (a load would first ask the key's previous owner, for a TTL after the
	// cluster formed).
	nodes := startCluster(b, 3, func(c *Config) { c.DisableHandoff = true })
	val := value1K()
	load := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: bytes.Clone(val)}, nil
	})
	opts := []GroupOption{WithMainBytes(zipfMainBytes), WithHotBytes(zipfHotBytes)}
	if cfg.admit {
		opts = append(opts, WithHotAdmission(true))
	}
	gs := newClusterGroups(b, nodes, "zipf", load, opts...)
	ops := int64(zipfOps)
	if s := os.Getenv(zipfOpsEnv); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number", zipfOpsEnv, s)
		}
		ops = n
	}
	base := liveHeap()

	// Warm up: load the keys in order of popularity, each on its owner,
	// until every main cache is full (a steady state is about the most
	// popular keys that fit), then run the workload for a while so that
	// the hot caches and the LRU orders settle.
	byName := make(map[string]*Group, len(nodes))
	for i, n := range nodes {
		byName[n.Name()] = gs[i]
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		if i == zipfKeys {
			b.Fatalf("main caches not full after loading every key")
		}
		if i%1024 == 0 {
			full := true
			for _, g := range gs {
				full = full && g.Stats().Bytes >= zipfMainBytes*95/100
			}
			if full {
				break
			}
		}
		key := zipfKey(uint64(i))
		if _, err := byName[nodes[0].Owner(key)].Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
	var seed atomic.Uint64
	zipfGets(b, gs, zipfWarmOps, &seed)

	runtime.MemProfileRate = profileRate
	before := sumStats(gs)
	m0 := readMetrics()
	cpu0 := cpuTime(b)
	start := time.Now()
	zipfGets(b, gs, ops, &seed)
	elapsed := time.Since(start)
	cpu := cpuTime(b) - cpu0
	if heapProfile == "" {
		runtime.MemProfileRate = 0
	}
	m1 := readMetrics()
	after := sumStats(gs)
	live := liveHeap()
	hwm := procStatus(b, "VmHWM")
	rssFile := procStatus(b, "RssFile")
	if heapProfile != "" {
		writeHeapProfile(b, heapProfile)
	}
	gets := float64(ops)
	hits := float64(after.Hits - before.Hits)
	hotHits := float64(after.HotHits - before.HotHits)
	cached := float64(after.Bytes + after.HotBytes)
	b.ReportMetric(elapsed.Seconds()*1e9/gets, "ns/op")
	b.ReportMetric(float64(m1.allocBytes-m0.allocBytes)/gets, "B/op")
	b.ReportMetric(float64(m1.allocs-m0.allocs)/gets, "allocs/op")
	b.ReportMetric(gets/elapsed.Seconds(), "ops/s")
	b.ReportMetric(cpu.Seconds()*1e6/gets, "cpu-µs/op")
	b.ReportMetric(cached/(1<<20), "cached-MiB")
	b.ReportMetric(float64(after.HotBytes)/(1<<20), "hot-MiB")
	b.ReportMetric(float64(base)/(1<<20), "base-MiB")
	b.ReportMetric(float64(live)/(1<<20), "live-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "maxRSS-MiB")
	b.ReportMetric(float64(hwm)/cached, "maxRSS/cached")
	b.ReportMetric(float64(rssFile)/(1<<20), "rssFile-MiB")
	b.ReportMetric(100*(hits+hotHits)/gets, "hit-%")
	b.ReportMetric(100*hotHits/gets, "hot-hit-%")
	b.ReportMetric(float64(after.PeerFetches-before.PeerFetches)/gets, "fetches/op")
	b.ReportMetric(float64(after.Loads-before.Loads)/gets, "loads/op")
	b.ReportMetric(float64(m1.gcs-m0.gcs)*1e6/gets, "GCs/Mop")
}

// zipfKey returns the key of popularity rank i (0 is the most popular). It
// is built for each Get, as a service builds it from a request, so that
// no table of key names adds to the live heap (16 bytes of garbage per
// Get instead).
func zipfKey(i uint64) string { return "zipf:" + strconv.FormatUint(i, 10) }

// zipfGets runs n Gets of Zipf-distributed keys from benchCallers
// goroutines, spread over the groups.
func zipfGets(b *testing.B, gs []*Group, n int64, seed *atomic.Uint64) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := range benchCallers {
		g := gs[c%len(gs)]
		r := rand.New(rand.NewPCG(seed.Add(1), 11))
		z := rand.NewZipf(r, zipfS, 1, zipfKeys-1)
		wg.Go(func() {
			for next.Add(1) <= n {
				key := zipfKey(z.Uint64())
				if v, err := g.Get(ctx, key); err != nil || len(v) != 1024 {
					b.Errorf("Get(%q) = %d bytes, %v; want 1024 bytes", key, len(v), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

type memMetrics struct{ allocBytes, allocs, gcs uint64 }

// readMetrics reads the cumulative allocation and GC counts.
func readMetrics() memMetrics {
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/allocs:objects"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(s)
	return memMetrics{s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()}
}

// liveHeap returns the heap marked live by a full GC.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// writeHeapProfile writes the in-use heap profile to path.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// procStatus returns a "kB" field of /proc/self/status, in bytes.
func procStatus(b *testing.B, field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("%s: %v", field, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// The hot cache's admission policy (WithHotAdmission). These tests sit
// here, next to the benchmark that measures the policy.

func TestAdmitter(t *testing.T) {
	a := newAdmitter(8 << 20)
	if got := len(a.bits) * 8; got != 64<<10 {
		t.Errorf("bit array of %d bytes for 8 MiB of hot bytes, want 64 KiB", got)
	}
	if a.admit("k") {
		t.Fatal("first fetch of k admitted")
	}
	if !a.admit("k") {
		t.Fatal("second fetch of k not admitted")
	}
	// Other keys' first fetches are rarely taken for second ones.
	admitted := 0
	for i := range a.window - 2 {
		if a.admit("other" + strconv.FormatInt(i, 10)) {
			admitted++
		}
	}
	if admitted > int(a.window)/20 {
		t.Errorf("%d of %d first fetches admitted, want at most 5%%", admitted, a.window-2)
	}
	// After window first fetches, k is forgotten.
	for i := 0; a.seen.Load() != 0; i++ {
		a.admit("more" + strconv.Itoa(i))
	}
	if a.admit("k") {
		t.Error("k admitted after the window was cleared")
	}
	if !a.admit("k") {
		t.Error("k not admitted at its second fetch after the clear")
	}

	for _, tc := range []struct {
		hotBytes int64
		bytes    int
	}{
		{1, minAdmitBits / 8},
		{3 << 20, 32 << 10}, // 196,608 bits rounded up to 2^18
	} {
		if got := len(newAdmitter(tc.hotBytes).bits) * 8; got != tc.bytes {
			t.Errorf("newAdmitter(%d): %d bytes, want %d", tc.hotBytes, got, tc.bytes)
		}
	}
}

// With admission, a fetched value is copied into the hot cache at its
// key's second fetch, and a copy is fenced by writes like any.
func TestClusterHotAdmission(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o, WithHotAdmission(true))
	key := keyOwnedBy(t, nodes[0], nodes[1].Name(), "k")
	for i, want := range []Source{SourcePeer, SourcePeer, SourceHot} {
		if v, src := getSource(t, gs[0], key); v != "0" || src != want {
			t.Fatalf("Get %d of %q = %q from %v, want %q from %v", i+1, key, v, src, "0", want)
		}
	}
	if st := gs[0].Stats(); st.HotSkipped != 1 || st.PeerFetches != 2 || st.HotItems != 1 {
		t.Fatalf("HotSkipped, PeerFetches, HotItems = %d, %d, %d; want 1, 2, 1", st.HotSkipped, st.PeerFetches, st.HotItems)
	}
	o.bump(key)
	if err := gs[1].Invalidate(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	// The key is remembered: its next fetch is copied at once.
	for i, want := range []Source{SourcePeer, SourceHot} {
		if v, src := getSource(t, gs[0], key); v != "1" || src != want {
			t.Fatalf("Get %d after Invalidate = %q from %v, want %q from %v", i+1, v, src, "1", want)
		}
	}
}

// TestClusterFenceStressHotAdmission is the cluster fence stress test
// (cluster_write_test.go) with the admission policy on: hot copies are
// made at second fetches, behind the same fences.
func TestClusterFenceStressHotAdmission(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	mode := stressMode{name: "admit", opts: []GroupOption{WithHotAdmission(true)}}
	clusterFenceStress(t, mode, 3, 1500, 250, 6*time.Second)
}
