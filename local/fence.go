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

// Invalidate advances the sequence once, records a tombstone at the new
// sequence for every key in every tier of t, removes their entries, and
// returns the new sequence and how many live entries were removed (in Main
// when t includes Main, else in Hot).
//
// A tombstone fences Add for its key in its tier: Add(.., since) with since
// older than the tombstone is refused for [Config.TombstoneTTL]. The
// tombstone is written and the entry removed under the key's shard lock,
// which Add holds while it checks tombstones and inserts, so an Add cannot
// slip its entry in between. A tombstone costs about len(key)+64 bytes until
// it is pruned, not charged to the tier's bound.
func (s *Store) Invalidate(t Tier, keys ...string) (seq uint64, removed int) {
	seq = s.seq.Add(1)
	now := s.nanos()
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
			if tr.invalidate(key, xxhash.Sum64String(key), seq, now) && tt == counted {
				removed++
			}
		}
	}
	return seq, removed
}

// invalidate records key's tombstone at seq and removes its entry,
// reporting whether the entry was live.
func (tr *tier) invalidate(key string, h uint64, seq uint64, now int64) (wasLive bool) {
	sh := tr.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.tombstoneLocked(strings.Clone(key), seq, now)
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
// evictions or expirations. Tombstones and tag generations stay. It returns
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
