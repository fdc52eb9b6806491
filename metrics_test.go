package meshcache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// metricsPerGroup is the number of series a group adds: 3 hit tiers, 12
// other counters, 2 item and 2 byte tiers, 2 histograms, 2 stale events, 5
// second-level results.
const (
	metricsPerGroup = 3 + 12 + 2 + 2 + 2 + 2 + 5
	metricsPerNode  = 8
)

func TestCollectorLint(t *testing.T) {
	n := newTestNode(t)
	g := mustGroup(t, n, "users", newOrigin())
	ctx := context.Background()
	for range 2 {
		if _, err := g.Get(ctx, "k"); err != nil {
			t.Fatalf("Get(k): %v", err)
		}
	}
	problems, err := testutil.CollectAndLint(n.Collector())
	if err != nil {
		t.Fatalf("CollectAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestCollectorCounts(t *testing.T) {
	n := newTestNode(t)
	c := n.Collector()
	if got := testutil.CollectAndCount(c); got != metricsPerNode {
		t.Errorf("CollectAndCount() with no group = %d, want %d", got, metricsPerNode)
	}
	mustGroup(t, n, "users", newOrigin())
	mustGroup(t, n, "pages", newOrigin())
	if got, want := testutil.CollectAndCount(c), metricsPerNode+2*metricsPerGroup; got != want {
		t.Errorf("CollectAndCount() with two groups = %d, want %d", got, want)
	}
	if got := testutil.CollectAndCount(c, "meshcache_hits_total"); got != 6 {
		t.Errorf("CollectAndCount(meshcache_hits_total) = %d, want 6 (3 tiers, 2 groups)", got)
	}
	// A registry accepts it and gathers it without error.
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("Gather: %v", err)
	}
}

func TestCollectorValues(t *testing.T) {
	n := newTestNode(t)
	g := mustGroup(t, n, "users", newOrigin())
	ctx := context.Background()
	for _, key := range []string{"a", "a", "a", "b"} {
		if _, err := g.Get(ctx, key); err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
	}
	if _, err := g.Get(ctx, "missing"); err == nil {
		t.Fatalf("Get(missing): no error")
	}
	want := `
# HELP meshcache_hits_total Gets served from the cache, by tier: main (keys this node owns), hot (copies of other nodes' keys), negative (cached not-found).
# TYPE meshcache_hits_total counter
meshcache_hits_total{group="users",node="test",tier="hot"} 0
meshcache_hits_total{group="users",node="test",tier="main"} 2
meshcache_hits_total{group="users",node="test",tier="negative"} 0
# HELP meshcache_loads_total Keys loaded by this node's loader or batch loader.
# TYPE meshcache_loads_total counter
meshcache_loads_total{group="users",node="test"} 3
# HELP meshcache_misses_total Gets (and keys of GetMany) that found nothing cached.
# TYPE meshcache_misses_total counter
meshcache_misses_total{group="users",node="test"} 3
# HELP meshcache_cached_items Entries cached, by tier: main (keys this node owns) or hot (copies of other nodes' keys).
# TYPE meshcache_cached_items gauge
meshcache_cached_items{group="users",node="test",tier="hot"} 0
meshcache_cached_items{group="users",node="test",tier="main"} 2
# HELP meshcache_members Alive members this node routes over, itself included.
# TYPE meshcache_members gauge
meshcache_members{node="test"} 1
`
	names := []string{"meshcache_hits_total", "meshcache_loads_total", "meshcache_misses_total", "meshcache_cached_items", "meshcache_members"}
	if err := testutil.CollectAndCompare(n.Collector(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Three loads were observed in the load latency histogram.
	if got := histogramOf(t, n.Collector(), "meshcache_load_duration_seconds").GetSampleCount(); got != 3 {
		t.Errorf("meshcache_load_duration_seconds count = %d, want 3", got)
	}
}

// histogramOf collects c and returns the one histogram named name.
func histogramOf(t *testing.T, c prometheus.Collector, name string) *dto.Histogram {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("Register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no single histogram %s gathered", name)
	return nil
}

func TestConstHistogramCumulative(t *testing.T) {
	var h Histogram
	h.Counts[0] = 1                    // <= 100µs
	h.Counts[3] = 2                    // <= 1ms
	h.Counts[len(latencyBounds)-1] = 1 // <= 10s
	h.Counts[len(latencyBounds)] = 4   // over 10s
	h.Count = 7                        // a snapshot taken mid-observation: the buckets win
	h.Sum = 90 * time.Second
	desc := prometheus.NewDesc("test_seconds", "test", nil, nil)
	var m dto.Metric
	if err := constHistogram(desc, h).Write(&m); err != nil {
		t.Fatalf("Write: %v", err)
	}
	hist := m.GetHistogram()
	if got := hist.GetSampleCount(); got != 8 {
		t.Errorf("sample count = %d, want 8 (the sum of the buckets)", got)
	}
	if got := hist.GetSampleSum(); got != 90 {
		t.Errorf("sample sum = %v, want 90 (seconds)", got)
	}
	buckets := hist.GetBucket()
	if len(buckets) != len(latencyBounds) {
		t.Fatalf("%d buckets, want %d", len(buckets), len(latencyBounds))
	}
	wantCum := func(i int) uint64 {
		switch {
		case i < 3:
			return 1
		case i < len(latencyBounds)-1:
			return 3
		}
		return 4
	}
	for i, b := range buckets {
		if got, want := b.GetUpperBound(), latencyBounds[i].Seconds(); got != want {
			t.Errorf("bucket %d upper bound = %v, want %v", i, got, want)
		}
		if got := b.GetCumulativeCount(); got != wantCum(i) {
			t.Errorf("bucket %d (le %v) cumulative count = %d, want %d", i, b.GetUpperBound(), got, wantCum(i))
		}
	}
}

func TestCollectorLabelsNotUTF8(t *testing.T) {
	n := newTestNode(t)
	mustGroup(t, n, "bad\xff", newOrigin())
	mustGroup(t, n, "bad\xfe", newOrigin()) // the same label value once made valid
	c := n.Collector()
	if got, want := testutil.CollectAndCount(c), metricsPerNode+metricsPerGroup; got != want {
		t.Errorf("CollectAndCount() = %d, want %d (one of the two groups)", got, want)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("Gather: %v", err)
	}
}

func TestCollectorClusterWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	nodes := startCluster(t, 2, nil)
	gs := newClusterGroups(t, nodes, "g", newOrigin())
	if err := gs[0].Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate(k): %v", err)
	}
	c := nodes[0].Collector()
	want := `
# HELP meshcache_members Alive members this node routes over, itself included.
# TYPE meshcache_members gauge
meshcache_members{node="n0"} 2
# HELP meshcache_writes_total Writes (Invalidate, Set, ...) this node fanned out.
# TYPE meshcache_writes_total counter
meshcache_writes_total{node="n0"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "meshcache_members", "meshcache_writes_total"); err != nil {
		t.Error(err)
	}
	ns := nodes[0].Stats()
	if ns.WriteRequests == 0 || ns.WriteAcks != ns.WriteRequests {
		t.Fatalf("Stats() = %+v: want acknowledged write requests", ns)
	}
	for name, want := range map[string]uint64{"meshcache_write_requests_total": ns.WriteRequests, "meshcache_write_acks_total": ns.WriteAcks} {
		if got := testutil.ToFloat64(singleMetric(c, name)); got != float64(want) {
			t.Errorf("%s = %v, want %d", name, got, want)
		}
	}
}

// singleMetric is a collector of c's metrics named name only.
func singleMetric(c prometheus.Collector, name string) prometheus.Collector {
	return filtered{c, name}
}

type filtered struct {
	c    prometheus.Collector
	name string
}

func (f filtered) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f filtered) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() {
		f.c.Collect(all)
		close(all)
	}()
	for m := range all {
		if strings.Contains(m.Desc().String(), `fqName: "`+f.name+`"`) {
			ch <- m
		}
	}
}
