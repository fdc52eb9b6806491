package local

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Config configures a [Store]. The zero value is usable.
type Config struct {
	// MainBytes is the byte bound of Main. If zero (or negative), 64 MiB.
	MainBytes int64
	// HotBytes is the byte bound of Hot. If zero, MainBytes/8. If negative,
	// Hot is disabled: Add to Hot returns false and Get from Hot misses.
	HotBytes int64
	// TombstoneTTL is how long the fences of invalidated keys (up to a
	// second longer) and, see [Store.Sweep], tag generations are kept. If
	// zero (or negative), 2 minutes. It must outlive the longest load or
	// fetch: a load that started before an invalidation and finishes more
	// than TombstoneTTL later may store its stale result.
	TombstoneTTL time.Duration
	// KeyFenceRecords is the size of each tier's key-fence table (see
	// [Store.Invalidate]): its number of 16-byte records, rounded up to a
	// power of two and to at least 4 per shard, at most 1<<24. If zero (or
	// negative), one record per 2 KiB of the tier's bound, at least 256 and
	// at most 1<<20: 0.8% of the bound, between 4 KiB and 16 MiB per tier
	// (640 KiB for a store with the default bounds). A shard's part of the
	// table is allocated at its first invalidation. A larger table refuses
	// fewer Adds needlessly; see Store.Invalidate.
	KeyFenceRecords int
	// SweepInterval is the period of the background sweep of expired and
	// stale entries and old tag generations. If zero, 30 seconds. If
	// negative, no sweeper goroutine runs; expired entries are then only
	// dropped when read or evicted, and tag generations only by
	// [Store.Sweep].
	SweepInterval time.Duration
	// StandInBytes is the byte bound of StandIn. If zero, HotBytes (when
	// Hot is disabled, StandIn is too). If negative, StandIn is disabled.
	StandInBytes int64
	// MainItems bounds the number of entries of Main beside MainBytes:
	// storing evicts least recently used entries until both bounds hold.
	// Like the byte bound it is one count for the whole tier, not split
	// across shards (see tier.go). If zero (or negative), only MainBytes
	// bounds Main.
	MainItems int
	// HotItems bounds the number of entries of Hot as MainItems does
	// Main's. If zero (or negative), only HotBytes bounds Hot.
	HotItems int
	// StandInItems bounds the number of entries of StandIn. If zero,
	// HotItems. If negative, only StandInBytes bounds StandIn.
	StandInItems int
	// StaleFor is how long an entry is kept after its TTL ran out, for
	// [Store.GetStale], in Main and Hot (not StandIn): Get reports it absent, but it stays
	// (counted in Items and Bytes, not refreshed in the LRU order, so it is
	// evicted before the entries being read) until StaleFor after its
	// expiry, unless an invalidation, a tag generation, a Clear or a
	// replacement removes it first. An entry whose TTL was set by
	// [Store.Expire] is never kept. If zero, expired entries are not kept.
	StaleFor time.Duration
	// Now is the clock. If nil, time.Now. The store measures time as the
	// difference from its value at New, so with time.Now it uses the
	// monotonic clock and wall clock jumps do not affect TTLs.
	Now func() time.Time
}

// Default configuration values.
const (
	DefaultMainBytes     = 64 << 20
	DefaultTombstoneTTL  = 2 * time.Minute
	DefaultSweepInterval = 30 * time.Second
)

// Store is one node's storage for one group: a [Main] and a [Hot] cache.
// All methods are safe for concurrent use. A Store must not be copied.
// After [Store.Close] it keeps working, without the sweeper.
type Store struct {
	seq     atomic.Uint64 // fence sequence; advanced by invalidations
	main    *tier
	hot     *tier // nil when Hot is disabled
	standin *tier // nil when StandIn is disabled
	now     func() time.Time
	epoch   time.Time // now() at New; the store clock counts nanoseconds from it
	tombTTL int64     // nanoseconds

	// hookAdd, if set (by tests, before use), runs inside Add between the
	// lock-free fence checks and taking the shard lock.
	hookAdd func()

	closeOnce sync.Once
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
}

// New returns a store for cfg, filling in defaults. It starts the sweeper
// goroutine unless cfg.SweepInterval is negative; [Store.Close] stops it.
func New(cfg Config) *Store {
	return newStore(cfg, 0)
}

// newStore is New with a fixed number of shards per tier (a power of two;
// 0: by bound, see shardCount).
func newStore(cfg Config, shards int) *Store {
	if cfg.MainBytes <= 0 {
		cfg.MainBytes = DefaultMainBytes
	}
	if cfg.HotBytes == 0 {
		cfg.HotBytes = cfg.MainBytes / 8
	}
	if cfg.TombstoneTTL <= 0 {
		cfg.TombstoneTTL = DefaultTombstoneTTL
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StandInItems == 0 {
		cfg.StandInItems = cfg.HotItems
	}
	makeTier := func(bound int64, items int) *tier {
		n := shards
		if n <= 0 {
			n = shardCount(bound, items)
		}
		return newTier(bound, items, n, cfg.KeyFenceRecords)
	}
	s := &Store{
		main:    makeTier(cfg.MainBytes, cfg.MainItems),
		now:     cfg.Now,
		epoch:   cfg.Now(),
		tombTTL: int64(cfg.TombstoneTTL),
		done:    make(chan struct{}),
	}
	if cfg.HotBytes > 0 {
		s.hot = makeTier(cfg.HotBytes, cfg.HotItems)
	}
	if cfg.StandInBytes == 0 {
		cfg.StandInBytes = cfg.HotBytes
	}
	if cfg.StandInBytes > 0 {
		s.standin = makeTier(cfg.StandInBytes, cfg.StandInItems)
	}
	if cfg.StaleFor > 0 {
		s.main.staleFor = int64(cfg.StaleFor)
		if s.hot != nil {
			s.hot.staleFor = int64(cfg.StaleFor)
		}
		// Not StandIn: nothing reads it stale.
	}
	if cfg.SweepInterval > 0 {
		s.wg.Go(func() { s.sweepLoop(cfg.SweepInterval) })
	}
	return s
}

// Close stops the sweeper and waits for it. It is idempotent. The store
// stays usable.
func (s *Store) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.wg.Wait()
}

// nanos returns the store clock: nanoseconds since New.
func (s *Store) nanos() int64 { return int64(s.now().Sub(s.epoch)) }

// timeAt converts a store-clock reading back to a time.
func (s *Store) timeAt(n int64) time.Time { return s.epoch.Add(time.Duration(n)) }

// tier returns the cache t selects, or nil unless t is exactly Main, Hot or
// StandIn (and that one is enabled).
func (s *Store) tier(t Tier) *tier {
	switch t {
	case Main:
		return s.main
	case Hot:
		return s.hot
	case StandIn:
		return s.standin
	}
	return nil
}

// Empty reports whether tier t (exactly one of Main, Hot or StandIn) holds
// no entry; a disabled tier is empty. It takes no lock.
func (s *Store) Empty(t Tier) bool {
	tr := s.tier(t)
	return tr == nil || tr.items.Load() == 0
}

// Seq returns the current fence sequence. A load or fetch calls Seq before
// it starts and passes the result to [Store.Add] as since.
func (s *Store) Seq() uint64 { return s.seq.Load() }

// Get returns the live entry for key in tier t (exactly one of Main or Hot;
// otherwise it reports absent). An expired entry (counted in Expirations),
// or one made stale by a tag generation or a Clear newer than its Seq, is
// removed and reported as absent. Get marks the entry recently used. It does
// not allocate. The returned Value and Tags are shared with the store and
// must not be modified.
func (s *Store) Get(t Tier, key string) (Entry, bool) {
	tr := s.tier(t)
	if tr == nil {
		return Entry{}, false
	}
	h := xxhash.Sum64String(key)
	sh := tr.shard(h)
	sh.mu.Lock()
	it, ok := sh.lru.Get(h)
	if !ok {
		sh.mu.Unlock()
		return Entry{}, false
	}
	v := it.view()
	if v.key() != key {
		sh.mu.Unlock()
		return Entry{}, false
	}
	if now := s.nanos(); it.expires != never && now >= it.expires {
		if !tr.keepsLocked(&it, now) {
			tr.removeLocked(sh, h, &it, expired)
		}
		sh.mu.Unlock()
		return Entry{}, false
	}
	if tr.staleLocked(&it) {
		tr.removeLocked(sh, h, &it, dropped)
		sh.mu.Unlock()
		return Entry{}, false
	}
	sh.mu.Unlock()
	return s.entryOf(&it, v), true
}

// entryOf returns the Entry of it, whose buffer v decodes.
func (s *Store) entryOf(it *item, v kvView) Entry {
	e := Entry{
		Value:    v.value(),
		Tags:     it.tagList(),
		Negative: v.flags&flagNegative != 0,
		Filled:   s.timeAt(it.filled),
		Seq:      it.seq(),
	}
	if it.expires != never {
		e.Expires = s.timeAt(it.expires)
	}
	return e
}

// Put is what [Store.Add] and [Store.AddIfAbsent] store: an entry and the
// fence sequence its load or fetch started at. The store copies Key and
// Value and keeps Tags: the caller must not modify Tags afterwards.
type Put struct {
	Key   string
	Value []byte
	Tags  []string
	// TTL is how long the entry lives. Zero or negative: it never expires.
	TTL time.Duration
	// Negative marks a cached "not found" (Value is then usually nil).
	Negative bool
	// Since is the value [Store.Seq] returned before the load or fetch
	// started. Fences newer than it refuse the Put; the stored Entry's Seq
	// is Since.
	Since uint64
}

// Add stores p in tier t (exactly one of Main, Hot or StandIn) unless a
// fence applies: an invalidation ([Store.Invalidate]) of p.Key in t newer
// than p.Since and younger than TombstoneTTL (rarely, of another key: see
// Invalidate), a generation of any of p.Tags in t newer than p.Since, or a
// Clear of t newer than p.Since. The stored Entry's Seq is p.Since (not the
// current sequence) and Filled is now. Add replaces a previous entry for
// p.Key. It returns false when fenced, when t is not exactly one enabled
// tier, or when the entry alone costs more than the tier's byte bound (or
// its key is 1 GiB or longer, or its value 4 GiB or longer). Storing evicts
// least recently used entries of the tier until it is within its bounds
// (see [EntryOverhead] for what an entry costs, [Config.MainItems] for the
// count bound). It does not allocate beyond the entry it stores.
//
// An entry that Add stored may be evicted at any time afterwards, and may
// read as absent if an invalidation ran concurrently with Add.
func (s *Store) Add(t Tier, p Put) bool {
	return s.add(t, &p, replace)
}

// AddIfAbsent is [Store.Add] that stores only when no live entry for
// p.Key exists in t. It returns whether it stored.
func (s *Store) AddIfAbsent(t Tier, p Put) bool {
	return s.add(t, &p, ifAbsent)
}

// addMode says what add does with a live entry already stored for the key.
type addMode uint8

const (
	replace  addMode = iota // replace it
	ifAbsent                // keep it and refuse the Put
)

func (s *Store) add(t Tier, p *Put, mode addMode) bool {
	tr := s.tier(t)
	if tr == nil || len(p.Key) > maxKeyLen || uint64(len(p.Value)) > maxValueLen {
		return false
	}
	cost := entryCost(p.Key, p.Value, p.Tags)
	if cost > tr.bound {
		return false
	}
	// Lock-free fences first. A bump or Clear can still run between these
	// checks and the insert below:
	//
	//	load:  since := Seq()               // 7
	//	Add:   gens["org"] = none: passes
	//	inval: InvalidateTags("org")        // seq 8, gens["org"] = 8, returns
	//	Add:   inserts the entry, Seq 7
	//	Get:   gens["org"] 8 > 7: stale, removed, reported absent
	//
	// The read-side check in Get closes it; the checks here only keep
	// refused entries from being stored at all.
	if tr.clearSeq.Load() > p.Since || tr.gens.newer(p.Tags, p.Since) {
		return false
	}
	if s.hookAdd != nil {
		s.hookAdd()
	}
	now := s.nanos()
	it := newItem(p, now, expiry(now, p.TTL))
	h := xxhash.Sum64String(p.Key)
	sh := tr.shard(h)
	sh.mu.Lock()
	// Key fences are checked under the shard lock that Invalidate takes to
	// record them and remove the entry, so Invalidate runs either wholly
	// before this check (refused) or after the insert (entry removed).
	if sh.fencedLocked(h, p.Since, now-s.tombTTL) {
		sh.mu.Unlock()
		return false
	}
	if mode == ifAbsent {
		if old, ok := sh.lru.Peek(h); ok && old.key() == p.Key {
			st := tr.stateLocked(&old, now)
			if st == live {
				sh.mu.Unlock()
				return false
			}
			tr.removeLocked(sh, h, &old, causeOf(st))
		}
	}
	tr.insertLocked(sh, h, p.Key, it, cost)
	sh.mu.Unlock()
	if tr.over() {
		tr.evictOthers(sh)
	}
	return true
}

// Remove drops key's entry in every tier of t without fencing the key (used
// when a validate predicate rejects an entry). It reports whether a live
// entry was removed.
func (s *Store) Remove(t Tier, key string) bool {
	return s.updateLive(t, key, func(*item, int64) bool { return false })
}

// Expire sets the remaining TTL of key's live entry in every tier of t to
// ttl (<= 0: no expiry) and marks it recently used; once that TTL runs out
// the entry is gone, never kept for [Store.GetStale]. It reports whether a
// live entry was found. An expired entry kept for GetStale is removed.
func (s *Store) Expire(t Tier, key string, ttl time.Duration) bool {
	return s.updateLive(t, key, func(it *item, now int64) bool {
		it.expires = expiry(now, ttl)
		it.seqBits |= noStaleBit
		return true
	})
}

// GetStale returns key's entry in tier t (exactly one of Main or Hot) if it
// expired less than [Config.StaleFor] ago and nothing removed it since: no
// invalidation, tag generation or Clear newer than it (such an entry is
// removed), no replacement, no [Store.Expire]. A live entry is not
// returned: call [Store.Get] first. GetStale does not mark the entry
// recently used and does not allocate; the returned Value and Tags are
// shared with the store.
func (s *Store) GetStale(t Tier, key string) (Entry, bool) {
	tr := s.tier(t)
	if tr == nil || tr.staleFor == 0 {
		return Entry{}, false
	}
	h := xxhash.Sum64String(key)
	sh := tr.shard(h)
	sh.mu.Lock()
	it, ok := sh.lru.Peek(h)
	if !ok || it.key() != key {
		sh.mu.Unlock()
		return Entry{}, false
	}
	switch tr.stateLocked(&it, s.nanos()) {
	case lapsed:
	case live:
		sh.mu.Unlock()
		return Entry{}, false
	default:
		st := tr.stateLocked(&it, s.nanos())
		tr.removeLocked(sh, h, &it, causeOf(st))
		sh.mu.Unlock()
		return Entry{}, false
	}
	sh.mu.Unlock()
	return s.entryOf(&it, it.view()), true
}

// updateLive finds key's entry in every tier of t. A stale or expired entry
// is dropped. A live one is passed to update under its shard's lock: if
// update returns true the changed entry is kept (and marked recently used),
// else it is dropped. It reports whether a live entry was found.
func (s *Store) updateLive(t Tier, key string, update func(it *item, now int64) (keep bool)) bool {
	h := xxhash.Sum64String(key)
	found := false
	for _, tt := range [...]Tier{Main, Hot, StandIn} {
		tr := s.tier(t & tt)
		if tr == nil {
			continue
		}
		sh := tr.shard(h)
		sh.mu.Lock()
		if it, ok := sh.lru.Peek(h); ok && it.key() == key {
			now := s.nanos()
			st := tr.stateLocked(&it, now)
			found = found || st == live
			if st == live && update(&it, now) {
				sh.lru.Add(h, it) // same key: updates in place, no eviction
			} else {
				tr.removeLocked(sh, h, &it, causeOf(st))
			}
		}
		sh.mu.Unlock()
	}
	return found
}

// Stats is a snapshot of a store's counters. Items and Bytes include
// entries that are expired or stale but not yet dropped.
type Stats struct {
	Items, Bytes, HotItems, HotBytes int64
	StandInItems, StandInBytes       int64
	// Evictions count entries dropped to make room (LRU), Expirations
	// entries dropped because their TTL ran out (on read, Add, or sweep).
	// Invalidated, cleared, replaced and removed entries count in neither.
	Evictions, HotEvictions, Expirations, HotExpirations uint64
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Items:       s.main.items.Load(),
		Bytes:       s.main.bytes.Load(),
		Evictions:   s.main.evictions.Load(),
		Expirations: s.main.expirations.Load(),
	}
	if s.hot != nil {
		st.HotItems = s.hot.items.Load()
		st.HotBytes = s.hot.bytes.Load()
		st.HotEvictions = s.hot.evictions.Load()
		st.HotExpirations = s.hot.expirations.Load()
	}
	if s.standin != nil {
		st.StandInItems = s.standin.items.Load()
		st.StandInBytes = s.standin.bytes.Load()
	}
	return st
}

// Range calls fn with the key and entry of every live entry of tier t
// (exactly one of Main, Hot or StandIn), in no particular order, until fn
// returns false. It collects one shard's entries under that shard's lock
// and calls fn without any lock, so fn may call the store; entries added,
// changed or removed meanwhile may or may not be seen. The Value and Tags
// of each Entry are shared with the store.
func (s *Store) Range(t Tier, fn func(key string, e Entry) bool) {
	tr := s.tier(t)
	if tr == nil {
		return
	}
	type kv struct {
		key string
		e   Entry
	}
	var batch []kv
	for i := range tr.shards {
		sh := &tr.shards[i]
		batch = batch[:0]
		sh.mu.Lock()
		now := s.nanos()
		for _, h := range sh.lru.Keys() {
			it, ok := sh.lru.Peek(h)
			if !ok || tr.stateLocked(&it, now) != live {
				continue
			}
			v := it.view()
			batch = append(batch, kv{v.key(), s.entryOf(&it, v)})
		}
		sh.mu.Unlock()
		for _, x := range batch {
			if !fn(x.key, x.e) {
				return
			}
		}
	}
}
