package local

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// genStripes is the number of independently locked parts of a tier's tag
// generations. Readers take a stripe's read lock; bumps and pruning its
// write lock.
const genStripes = 16

// tagGens maps each invalidated tag to its generation: the sequence of the
// newest InvalidateTags of that tag. An entry carrying the tag with an older
// Seq is stale.
//
// Pruning. A generation g of tag T bumped at store-clock time tb may be
// dropped once no entry that is stale because of it can exist or be stored:
//
//  1. No Add with since < g can arrive after tb+TombstoneTTL: such a load or
//     fetch started before the bump, and loads are shorter than TombstoneTTL
//     (the documented requirement on [Config.TombstoneTTL]).
//  2. A sweep ([Store.Sweep]) that starts at T0 removes every stale entry
//     it finds, in every shard. An entry inserted after T0 has since >=
//     every generation bumped at or before T0-TombstoneTTL (by point 1:
//     its load started less than TombstoneTTL before the insert, so after
//     the bump, and read Seq after the bump advanced it).
//
// So once a sweep that started at T0 has finished, generations bumped at or
// before T0-TombstoneTTL can no longer make any entry stale and are dropped.
// The rule relies on the store clock following real time (it does with
// time.Now: the store clock is monotonic). This holds for entries without expiry too, so
// generations never pile up. A tag bumped again after the cutoff keeps its
// newer generation. Without a sweeper (negative SweepInterval) generations
// are only pruned by explicit [Store.Sweep] calls.
type tagGens struct {
	n       atomic.Int64 // number of tags with a generation; 0 lets readers skip the lookup
	stripes [genStripes]genStripe
}

type genStripe struct {
	mu sync.RWMutex   // guards m
	m  map[string]gen // tag -> generation
	_  [32]byte       // keeps neighbouring stripes' locks on separate cache lines
}

type gen struct {
	seq uint64 // sequence of the newest bump
	at  int64  // store clock of that bump
}

func (g *tagGens) init() {
	for i := range g.stripes {
		g.stripes[i].m = make(map[string]gen)
	}
}

func (g *tagGens) stripe(tag string) *genStripe {
	return &g.stripes[xxhash.Sum64String(tag)%genStripes]
}

// newer reports whether any of tags has a generation newer than seq.
func (g *tagGens) newer(tags []string, seq uint64) bool {
	if g.n.Load() == 0 {
		return false
	}
	for _, tag := range tags {
		st := g.stripe(tag)
		st.mu.RLock()
		gn, ok := st.m[tag]
		st.mu.RUnlock()
		if ok && gn.seq > seq {
			return true
		}
	}
	return false
}

// bump sets tag's generation to seq unless it is already newer.
func (g *tagGens) bump(tag string, seq uint64, now int64) {
	st := g.stripe(tag)
	st.mu.Lock()
	old, ok := st.m[tag]
	if !ok {
		st.m[strings.Clone(tag)] = gen{seq: seq, at: now}
		g.n.Add(1)
	} else if old.seq < seq {
		st.m[tag] = gen{seq: seq, at: now}
	}
	st.mu.Unlock()
}

// prune drops the generations bumped at or before cutoff. See tagGens for
// when that is sound.
func (g *tagGens) prune(cutoff int64) {
	for i := range g.stripes {
		st := &g.stripes[i]
		st.mu.Lock()
		for tag, gn := range st.m {
			if gn.at <= cutoff {
				delete(st.m, tag)
				g.n.Add(-1)
			}
		}
		st.mu.Unlock()
	}
}

// count returns the number of tags with a generation.
func (g *tagGens) count() int { return int(g.n.Load()) }

// Invalidate advances the sequence once, fences every key in every tier of
// t at the new sequence, removes their entries, and returns the new sequence
// and how many live entries were removed (in Main when t includes Main, else
// in Hot). The count is exact: it comes from the entries, not the fences.
//
// A key's fence refuses Add(.., since) of the key in its tier, for
// [Config.TombstoneTTL], when since is older than the fence. The fence is
// recorded and the entry removed under the key's shard lock, which Add holds
// while it checks fences and inserts, so an Add cannot slip its entry in
// between.
//
// Fences are kept in a fixed table per tier ([Config.KeyFenceRecords]: 16
// bytes per 2 KiB of the tier's bound by default), not one record per key,
// so their memory does not depend on how many keys are invalidated; the
// table is exact until more than 4 keys of one of its buckets were
// invalidated within TombstoneTTL, and then over-fences, never under-fences:
// an Add of another key of that bucket is refused too when its since is
// older than the newest such invalidation. For a load that means another
// key of its bucket was invalidated while it ran; a refused Add is merely
// not cached. Invalidate does not allocate, except for a shard's table at
// its first invalidation.
func (s *Store) Invalidate(t Tier, keys ...string) (seq uint64, removed int) {
	seq = s.seq.Add(1)
	now := s.nanos()
	cutoff := now - s.tombTTL
	counted := Main
	if t&Main == 0 {
		counted = Hot
	}
	for _, tt := range [...]Tier{Main, Hot, StandIn} {
		tr := s.tier(t & tt)
		if tr == nil {
			continue
		}
		for _, key := range keys {
			if tr.invalidate(key, xxhash.Sum64String(key), seq, now, cutoff) && tt == counted {
				removed++
			}
		}
	}
	return seq, removed
}

// invalidate fences key at seq (recorded at store-clock time now; fences
// older than cutoff are idle) and removes its entry, reporting whether the
// entry was live.
func (tr *tier) invalidate(key string, h uint64, seq uint64, now, cutoff int64) (wasLive bool) {
	sh := tr.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.fenceLocked(h, seq, now, cutoff, tr.fenceLen)
	it, ok := sh.lru.Peek(h)
	if !ok || it.key() != key {
		return false
	}
	st := tr.stateLocked(&it, now)
	tr.removeLocked(sh, h, &it, causeOf(st))
	return st == live
}

// InvalidateTags advances the sequence once and sets the generation of each
// tag in every tier of t to it: every entry carrying one of the tags whose
// Seq is older is from then on absent, and Add refuses such entries. It is
// O(1) per tag and scans no entries; stale entries are dropped when read or
// swept. It returns the new sequence.
func (s *Store) InvalidateTags(t Tier, tags ...string) uint64 {
	seq := s.seq.Add(1)
	now := s.nanos()
	for _, tt := range [...]Tier{Main, Hot, StandIn} {
		if tr := s.tier(t & tt); tr != nil {
			for _, tag := range tags {
				tr.gens.bump(tag, seq, now)
			}
		}
	}
	return seq
}

// Clear advances the sequence once and makes every entry of every tier of t
// with an older Seq absent; Add refuses entries with an older since. The
// entries are dropped at once (O(number of shards)); they are not counted as
// evictions or expirations. Key fences and tag generations stay. It returns
// the new sequence.
func (s *Store) Clear(t Tier) uint64 {
	seq := s.seq.Add(1)
	for _, tt := range [...]Tier{Main, Hot, StandIn} {
		if tr := s.tier(t & tt); tr != nil {
			maxStore(&tr.clearSeq, seq)
			tr.clear()
		}
	}
	return seq
}
