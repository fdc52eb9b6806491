package meshcache

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector over the node's counters
// ([Node.Stats]) and those of all its groups ([Group.Stats]), the groups
// created after the call included. It reads the snapshots at scrape time
// and keeps no state of its own, so it can be registered with any number
// of registries; it is safe for concurrent use, also after the node closed.
//
// Every metric is named meshcache_..., counters end in _total, and each
// carries the label node (the node's name); per-group metrics also carry
// group. Hits and cache sizes carry tier: main (keys this node owns), hot
// (copies of other nodes' keys) and, for hits, negative (cached
// not-found). Latencies are histograms in seconds over [LatencyBounds].
// Label values that are not valid UTF-8 have the bad bytes replaced by
// U+FFFD; of two groups whose names then agree, only one is reported.
func (n *Node) Collector() prometheus.Collector {
	return newCollector(n)
}

// collector implements prometheus.Collector for a node.
type collector struct {
	n *Node

	// per group
	hits, misses, loads, loadErrors, batchLoads, deduplicated *prometheus.Desc
	peerFetches, peerErrors, fallbacks, handoffs, peerServed  *prometheus.Desc
	evictions, expirations, items, bytes                      *prometheus.Desc
	loadLatency, fetchLatency                                 *prometheus.Desc
	stale, l2                                                 *prometheus.Desc

	// per node
	members, writes, writesPartial, writeRequests, writeAcks *prometheus.Desc
	gossipSent, gossipApplied, peerRequests                  *prometheus.Desc
}

func newCollector(n *Node) *collector {
	node := prometheus.Labels{"node": labelValue(n.Name())}
	group := []string{"group"}
	tier := []string{"group", "tier"}
	desc := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("meshcache_"+name, help, labels, node)
	}
	return &collector{
		n: n,

		hits:         desc("hits_total", "Gets served from the cache, by tier: main (keys this node owns), hot (copies of other nodes' keys), negative (cached not-found).", tier),
		misses:       desc("misses_total", "Gets (and keys of GetMany) that found nothing cached.", group),
		loads:        desc("loads_total", "Keys loaded by this node's loader or batch loader.", group),
		loadErrors:   desc("load_errors_total", "Loads that failed (not counting not-found).", group),
		batchLoads:   desc("batch_loads_total", "Calls of the batch loader.", group),
		deduplicated: desc("loads_deduplicated_total", "Gets that shared a load another Get started.", group),
		peerFetches:  desc("peer_fetches_total", "Keys asked of their owners.", group),
		peerErrors:   desc("peer_errors_total", "Requests to owners that failed (unreachable, timed out, could not serve).", group),
		fallbacks:    desc("fallbacks_total", "Keys loaded here because their owner could not serve them.", group),
		handoffs:     desc("handoffs_total", "Keys taken over from their previous owner instead of loading them.", group),
		peerServed:   desc("peer_served_total", "Keys other nodes asked this node for, as their owner.", group),
		evictions:    desc("evictions_total", "Entries dropped to stay within the byte bounds.", group),
		expirations:  desc("expirations_total", "Entries dropped because their TTL ran out.", group),
		items:        desc("cached_items", "Entries cached, by tier: main (keys this node owns) or hot (copies of other nodes' keys).", tier),
		bytes:        desc("cached_bytes", "Bytes cached (keys, values, tags and per-entry overhead), by tier: main or hot.", tier),
		loadLatency:  desc("load_duration_seconds", "Time loader calls took (one observation per Load or LoadMany call).", group),
		fetchLatency: desc("fetch_duration_seconds", "Time requests to owners took.", group),
		stale:        desc("stale_total", "Stale answers (served) and background refreshes (revalidations), by event.", []string{"group", "event"}),
		l2:           desc("l2_total", "Calls of the second level, by result: hit, miss, error (failed or timed out), bypassed (read skipped after a failure), stored (values written back).", []string{"group", "result"}),

		members:       desc("members", "Alive members this node routes over, itself included.", nil),
		writes:        desc("writes_total", "Writes (Invalidate, Set, ...) this node fanned out.", nil),
		writesPartial: desc("writes_partial_total", "Writes some member did not acknowledge in time.", nil),
		writeRequests: desc("write_requests_total", "Write (invalidation) requests sent to members, one per member and phase.", nil),
		writeAcks:     desc("write_acks_total", "Write (invalidation) requests members acknowledged.", nil),
		gossipSent:    desc("gossip_sent_total", "Writes queued on gossip for members that did not acknowledge.", nil),
		gossipApplied: desc("gossip_applied_total", "Writes received by gossip and applied here.", nil),
		peerRequests:  desc("peer_requests_total", "Requests served to peers (get, get-many, peek).", nil),
	}
}

// Describe sends every descriptor the collector uses.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.hits, c.misses, c.loads, c.loadErrors, c.batchLoads, c.deduplicated,
		c.peerFetches, c.peerErrors, c.fallbacks, c.handoffs, c.peerServed,
		c.evictions, c.expirations, c.items, c.bytes, c.loadLatency, c.fetchLatency, c.stale, c.l2,
		c.members, c.writes, c.writesPartial, c.writeRequests, c.writeAcks,
		c.gossipSent, c.gossipApplied, c.peerRequests,
	} {
		ch <- d
	}
}

// Collect sends the node's and its groups' current counters.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ns := c.n.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.members, float64(ns.Members))
	counter(c.writes, ns.Writes)
	counter(c.writesPartial, ns.WritesPartial)
	counter(c.writeRequests, ns.WriteRequests)
	counter(c.writeAcks, ns.WriteAcks)
	counter(c.gossipSent, ns.GossipSent)
	counter(c.gossipApplied, ns.GossipApplied)
	counter(c.peerRequests, ns.PeerRequests)

	seen := make(map[string]bool)
	for _, g := range c.n.Groups() {
		name := labelValue(g.Name())
		if seen[name] {
			continue // two names that differ only in bytes that are not UTF-8
		}
		seen[name] = true
		s := g.Stats()
		counter(c.hits, s.Hits, name, "main")
		counter(c.hits, s.HotHits, name, "hot")
		counter(c.hits, s.NegativeHits, name, "negative")
		counter(c.misses, s.Misses, name)
		counter(c.loads, s.Loads, name)
		counter(c.loadErrors, s.LoadErrors, name)
		counter(c.batchLoads, s.BatchLoads, name)
		counter(c.deduplicated, s.LoadsDeduplicated, name)
		counter(c.peerFetches, s.PeerFetches, name)
		counter(c.peerErrors, s.PeerErrors, name)
		counter(c.fallbacks, s.Fallbacks, name)
		counter(c.handoffs, s.Handoffs, name)
		counter(c.peerServed, s.PeerServed, name)
		counter(c.evictions, s.Evictions, name)
		counter(c.expirations, s.Expirations, name)
		gauge(c.items, float64(s.Items), name, "main")
		gauge(c.items, float64(s.HotItems), name, "hot")
		gauge(c.bytes, float64(s.Bytes), name, "main")
		gauge(c.bytes, float64(s.HotBytes), name, "hot")
		counter(c.stale, s.StaleServed, name, "served")
		counter(c.stale, s.Revalidations, name, "revalidations")
		counter(c.l2, s.L2Hits, name, "hit")
		counter(c.l2, s.L2Misses, name, "miss")
		counter(c.l2, s.L2Errors, name, "error")
		counter(c.l2, s.L2Bypassed, name, "bypassed")
		counter(c.l2, s.L2Stores, name, "stored")
		ch <- constHistogram(c.loadLatency, s.LoadLatency, name)
		ch <- constHistogram(c.fetchLatency, s.FetchLatency, name)
	}
}

// constHistogram turns a [Histogram] (counts per bucket) into a Prometheus
// histogram (cumulative counts per upper bound, in seconds). The count is
// the sum of the buckets, so the two agree even when the snapshot was
// taken while observations were being added.
func constHistogram(d *prometheus.Desc, h Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBounds))
	var cum uint64
	for i, bound := range latencyBounds {
		cum += h.Counts[i]
		buckets[bound.Seconds()] = cum
	}
	count := cum + h.Counts[len(latencyBounds)]
	return prometheus.MustNewConstHistogram(d, count, h.Sum.Seconds(), buckets, labels...)
}

// labelValue makes s a valid label value: Prometheus wants UTF-8, and
// group and node names are arbitrary bytes.
func labelValue(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
