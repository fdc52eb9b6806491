package meshcache

import (
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a group's counters, from [Group.Stats]. Counters
// count since the group was created.
type Stats struct {
	Hits              uint64 // Gets served from the main cache (keys this node owns)
	HotHits           uint64 // Gets served from the hot cache (copies of other nodes' keys)
	NegativeHits      uint64 // Gets served a cached not-found
	Misses            uint64 // Gets (and keys of GetMany) that found nothing cached
	Loads             uint64 // keys loaded by this node's loader or batch loader
	BatchLoads        uint64 // calls of the batch loader
	LoadErrors        uint64 // loads that failed (not counting not-found)
	LoadsDeduplicated uint64 // Gets that shared a load another Get started
	Evictions         uint64 // entries dropped to stay within the byte bounds
	Expirations       uint64 // entries dropped because their TTL ran out

	PeerFetches uint64 // keys asked of their owners (Get misses of keys other nodes own, GetMany keys)
	PeerErrors  uint64 // requests to owners that failed (unreachable, timed out, could not serve)
	Fallbacks   uint64 // keys loaded here because their owner could not serve them
	Handoffs    uint64 // keys this node took over from their previous owner instead of loading them
	PeerServed  uint64 // keys other nodes asked this node for (as their owner)
	HotSkipped  uint64 // values fetched from owners not copied into the hot cache (see WithHotAdmission)

	StaleServed   uint64 // Gets answered with an expired value (WithStaleIfError, WithStaleWhileRevalidate)
	Revalidations uint64 // background refreshes started (WithStaleWhileRevalidate)

	// The second level (WithL2): keys found in it instead of loading them,
	// keys it did not have, failed or timed-out calls to it (reads, write-
	// backs, deletes of writes), reads skipped after a failure, and loaded
	// values written back to it.
	L2Hits, L2Misses, L2Errors, L2Bypassed, L2Stores uint64

	// LoadLatency is the time loader calls took (one observation per Load
	// or LoadMany call); FetchLatency the time requests to owners took.
	LoadLatency, FetchLatency Histogram

	Items    int64 // entries in the main cache
	Bytes    int64 // bytes of the main cache
	HotItems int64 // entries in the hot cache
	HotBytes int64 // bytes of the hot cache
}

// HitRate returns the fraction of lookups served from the cache (hits, hot
// hits and negative hits over those plus misses), or 0 before any lookup.
func (s Stats) HitRate() float64 {
	hits := s.Hits + s.HotHits + s.NegativeHits
	if total := hits + s.Misses; total > 0 {
		return float64(hits) / float64(total)
	}
	return 0
}

// Stats returns a snapshot of the group's counters. It is safe to call at
// any time, also after the node closed.
func (g *Group) Stats() Stats {
	ls := g.store.Stats()
	return Stats{
		Hits:              g.stats.hits.Load(),
		HotHits:           g.stats.hotHits.Load(),
		NegativeHits:      g.stats.negativeHits.Load(),
		Misses:            g.stats.misses.Load(),
		Loads:             g.stats.loads.Load(),
		BatchLoads:        g.stats.batchLoads.Load(),
		LoadErrors:        g.stats.loadErrors.Load(),
		LoadsDeduplicated: g.stats.deduplicated.Load(),
		PeerFetches:       g.stats.peerFetches.Load(),
		PeerErrors:        g.stats.peerErrors.Load(),
		Fallbacks:         g.stats.fallbacks.Load(),
		Handoffs:          g.stats.handoffs.Load(),
		PeerServed:        g.stats.peerServed.Load(),
		HotSkipped:        g.stats.hotSkipped.Load(),
		StaleServed:       g.stats.staleServed.Load(),
		Revalidations:     g.stats.revalidations.Load(),
		L2Hits:            g.stats.l2Hits.Load(),
		L2Misses:          g.stats.l2Misses.Load(),
		L2Errors:          g.stats.l2Errors.Load(),
		L2Bypassed:        g.stats.l2Bypassed.Load(),
		L2Stores:          g.stats.l2Stores.Load(),
		LoadLatency:       g.stats.loadLatency.snapshot(),
		FetchLatency:      g.stats.fetchLatency.snapshot(),
		Evictions:         ls.Evictions + ls.HotEvictions,
		Expirations:       ls.Expirations + ls.HotExpirations,
		Items:             ls.Items,
		Bytes:             ls.Bytes,
		HotItems:          ls.HotItems,
		HotBytes:          ls.HotBytes,
	}
}

// LatencyBounds returns the upper bounds of the buckets of a [Histogram]:
// from 100µs to 10s, about three per decade. The slice is the caller's.
func LatencyBounds() []time.Duration { return slices.Clone(latencyBounds[:]) }

// latencyBounds are the buckets' upper bounds (see [LatencyBounds]).
var latencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Histogram is a snapshot of a latency distribution.
type Histogram struct {
	// Counts[i] is the number of observations at most LatencyBounds()[i] (and
	// above the bound before it); the last element counts the rest.
	Counts [len(latencyBounds) + 1]uint64
	Count  uint64        // observations
	Sum    time.Duration // their total
}

// histogram counts latencies into latencyBounds without locks.
type histogram struct {
	counts [len(latencyBounds) + 1]atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
	h.count.Add(1)
}

func (h *histogram) snapshot() Histogram {
	var s Histogram
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Count = h.count.Load()
	s.Sum = time.Duration(h.sum.Load())
	return s
}
