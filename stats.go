package meshcache

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
		Evictions:         ls.Evictions + ls.HotEvictions,
		Expirations:       ls.Expirations + ls.HotExpirations,
		Items:             ls.Items,
		Bytes:             ls.Bytes,
		HotItems:          ls.HotItems,
		HotBytes:          ls.HotBytes,
	}
}
