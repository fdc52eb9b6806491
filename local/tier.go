package local

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Sharding. A tier is split into shards by key hash, each with its own lock
// and LRU. The bounds, bytes and entries, are global per tier (atomic
// counts), not split across shards, so an entry up to the whole byte bound
// fits and the count bound needs no rounding. When the tier is over a
// bound, an Add first evicts the least recently used entries of its own
// shard (keys hash uniformly, so each shard's LRU tail approximates the
// tier's), then, if its shard holds nothing else, those of the other shards
// in turn. LRU order is therefore exact within a shard and approximate
// across shards. A tier has at most maxShards shards, at least
// shardMinBytes of byte bound and, when it has a count bound, at least
// shardMinItems of it per shard, so a small tier has one shard and exact
// LRU order. Shards bound how long a sweep or a Range holds one lock, and
// so how long it keeps readers waiting (BENCHMARKS.md, "Sharding in local").
const (
	maxShards     = 64
	shardMinBytes = 64 << 10
	shardMinItems = 64
)

// shardCount returns the number of shards (a power of two) for a byte
// bound and a count bound (<= 0: none).
func shardCount(bound int64, items int) int {
	n := maxShards
	for n > 1 && (bound/int64(n) < shardMinBytes || (items > 0 && items/n < shardMinItems)) {
		n /= 2
	}
	return n
}

// shard is one lock's worth of a tier.
type shard struct {
	mu     sync.Mutex                   // guards lru, bytes, fences
	lru    *simplelru.LRU[uint64, item] // keyed by the key's hash; item.key() tells colliding keys apart
	bytes  int64                        // sum of the costs of the entries in lru
	fences []fenceBucket                // key fences of the shard's keys (see keyfence.go); nil until the first invalidation
	_      [16]byte                     // keeps neighbouring shards' locks on separate cache lines
}

// tier is one of a store's caches.
type tier struct {
	bound    int64  // bytes
	maxItems int64  // entries; math.MaxInt64 for no count bound
	staleFor int64  // Config.StaleFor, nanoseconds
	mask     uint64 // len(shards)-1
	shards   []shard
	fenceLen int // key-fence buckets per shard, allocated at its first invalidation

	gens     tagGens       // tag generations
	clearSeq atomic.Uint64 // sequence of the newest Clear; entries with an older Seq are absent

	bytes       atomic.Int64 // sum of shard bytes
	items       atomic.Int64 // number of entries
	evictions   atomic.Uint64
	expirations atomic.Uint64
	victim      atomic.Uint64 // rotates the first shard evictOthers tries
}

// newTier returns a tier of the given byte bound, count bound (<= 0: none)
// and number of shards (a power of two) with fenceRecords key-fence records
// (0: by bound).
func newTier(bound int64, items, nshards, fenceRecords int) *tier {
	maxItems := int64(math.MaxInt64)
	if items > 0 {
		maxItems = int64(items)
	}
	tr := &tier{
		bound:    bound,
		maxItems: maxItems,
		mask:     uint64(nshards - 1),
		shards:   make([]shard, nshards),
		fenceLen: fenceBuckets(bound, nshards, fenceRecords),
	}
	for i := range tr.shards {
		tr.shards[i].lru = newLRU()
	}
	tr.gens.init()
	return tr
}

// newLRU returns an unbounded LRU: the tier enforces its bounds.
func newLRU() *simplelru.LRU[uint64, item] {
	l, err := simplelru.NewLRU[uint64, item](math.MaxInt, nil)
	if err != nil { // only for a non-positive size
		panic("local: " + err.Error())
	}
	return l
}

func (tr *tier) shard(h uint64) *shard { return &tr.shards[h&tr.mask] }

// over reports whether the tier holds more bytes or entries than its bounds.
func (tr *tier) over() bool {
	return tr.bytes.Load() > tr.bound || tr.items.Load() > tr.maxItems
}

// cause says why an entry left the cache, for the counters.
type cause uint8

const (
	dropped cause = iota // replaced, removed, invalidated or cleared: not counted
	evicted
	expired
)

// state is what a stored entry is worth to a reader.
type state uint8

const (
	live state = iota
	stale
	gone   // expired
	lapsed // expired, but kept for GetStale (Config.StaleFor)
)

// stateLocked classifies it at store-clock time now.
func (tr *tier) stateLocked(it *item, now int64) state {
	if now >= it.expires {
		if tr.keepsLocked(it, now) {
			if tr.staleLocked(it) {
				return stale
			}
			return lapsed
		}
		return gone
	}
	if tr.staleLocked(it) {
		return stale
	}
	return live
}

// staleLocked reports whether a Clear or a generation of one of it's tags is
// newer than it. Untagged entries do not touch the generations.
func (tr *tier) staleLocked(it *item) bool {
	seq := it.seq()
	if tr.clearSeq.Load() > seq {
		return true
	}
	return it.seqBits&taggedBit != 0 && tr.gens.newer(it.tagList(), seq)
}

// keepsLocked reports whether the expired entry it is still kept at now
// for GetStale: within StaleFor of its expiry, and its TTL was not set by
// Expire.
func (tr *tier) keepsLocked(it *item, now int64) bool {
	return tr.staleFor > 0 && it.seqBits&noStaleBit == 0 && it.expires != never && now-it.expires < tr.staleFor
}

// causeOf maps a state to the counter its removal goes to.
func causeOf(st state) cause {
	if st == gone || st == lapsed {
		return expired
	}
	return dropped
}

// removeLocked removes the entry it, stored in sh under h, and accounts for it.
func (tr *tier) removeLocked(sh *shard, h uint64, it *item, c cause) {
	sh.lru.Remove(h)
	cost := it.cost()
	sh.bytes -= cost
	tr.bytes.Add(-cost)
	tr.items.Add(-1)
	switch c {
	case evicted:
		tr.evictions.Add(1)
	case expired:
		tr.expirations.Add(1)
	}
}

// evictOldestLocked evicts sh's least recently used entry.
func (tr *tier) evictOldestLocked(sh *shard) {
	h, it, ok := sh.lru.GetOldest()
	if ok {
		tr.removeLocked(sh, h, &it, evicted)
	}
}

// insertLocked stores it (of the given cost) under h in sh, replacing what
// sh holds under h (the same key, or in the rare case of a hash collision
// another key, which counts as evicted), then evicts sh's least recently
// used entries while the tier is over a bound and sh holds anything else.
func (tr *tier) insertLocked(sh *shard, h uint64, key string, it item, cost int64) {
	if old, ok := sh.lru.Peek(h); ok {
		c := dropped
		if old.key() != key {
			c = evicted
		}
		tr.removeLocked(sh, h, &old, c)
	}
	sh.lru.Add(h, it)
	sh.bytes += cost
	tr.bytes.Add(cost)
	tr.items.Add(1)
	for tr.over() && sh.lru.Len() > 1 {
		tr.evictOldestLocked(sh)
	}
}

// evictOthers evicts least recently used entries of shards other than own,
// one shard at a time, until the tier is within its bounds. It locks one
// shard at a time and must be called without any shard lock held.
func (tr *tier) evictOthers(own *shard) {
	start := tr.victim.Add(1)
	for i := range uint64(len(tr.shards)) {
		if !tr.over() {
			return
		}
		sh := &tr.shards[(start+i)&tr.mask]
		if sh == own {
			continue
		}
		sh.mu.Lock()
		for tr.over() && sh.lru.Len() > 0 {
			tr.evictOldestLocked(sh)
		}
		sh.mu.Unlock()
	}
}

// clear drops every entry of the tier (their Seq is older than the Clear
// that calls this, or they are fresh enough that dropping them is merely a
// miss). Key fences stay.
func (tr *tier) clear() {
	for i := range tr.shards {
		sh := &tr.shards[i]
		sh.mu.Lock()
		if n := sh.lru.Len(); n > 0 {
			tr.items.Add(-int64(n))
			tr.bytes.Add(-sh.bytes)
			sh.bytes = 0
			sh.lru = newLRU()
		}
		sh.mu.Unlock()
	}
}

// maxStore raises v to x if x is larger.
func maxStore(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if old >= x || v.CompareAndSwap(old, x) {
			return
		}
	}
}
