package local

import "time"

// sweepLoop runs Sweep every interval until Close.
func (s *Store) sweepLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep drops expired and stale entries in every tier, then the tag
// generations that can no longer make any entry stale (see tagGens). Key
// fences need no sweeping: they live in a fixed table and stop counting
// after TombstoneTTL (see [Store.Invalidate]). The sweeper calls it every
// SweepInterval; call it yourself when the sweeper is disabled. It visits
// every entry, holding one shard lock at a time. Safe for concurrent use.
func (s *Store) Sweep() {
	// Generations bumped at or before cutoff are pruned after the pass:
	// every entry stored from now on has a since at least as new as them.
	cutoff := s.nanos() - s.tombTTL
	for _, tr := range [...]*tier{s.main, s.hot, s.standin} {
		if tr == nil {
			continue
		}
		for i := range tr.shards {
			tr.sweepShard(&tr.shards[i], s.nanos())
		}
		tr.gens.prune(cutoff)
	}
}

// sweepShard drops sh's entries that are expired or stale at now.
func (tr *tier) sweepShard(sh *shard, now int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, h := range sh.lru.Keys() {
		it, ok := sh.lru.Peek(h)
		if !ok {
			continue
		}
		if st := tr.stateLocked(&it, now); st != live && st != lapsed {
			tr.removeLocked(sh, h, &it, causeOf(st))
		}
	}
}
