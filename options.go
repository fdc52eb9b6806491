package meshcache

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/meshcache/meshcache/l2"
)

// Defaults for groups, used where an option is not given.
const (
	// MaxKeyLen is the longest key, tag or group name, in bytes.
	MaxKeyLen = 512

	DefaultTTL         = 10 * time.Minute
	DefaultMainBytes   = 64 << 20
	DefaultHotTTL      = time.Minute
	DefaultLoadTimeout = 30 * time.Second
	// MaxLoadTimeout is the longest load timeout: fences live a minute
	// longer than it, so it bounds the memory tag invalidations keep (key
	// fences are a fixed table, see package local).
	MaxLoadTimeout       = time.Hour
	DefaultJitter        = 0.05
	DefaultMaxValueBytes = 4 << 20
	// DefaultL2Timeout bounds each read of a second level ([WithL2]).
	DefaultL2Timeout = 100 * time.Millisecond
)

// A GroupOption configures a [Group] in [NewGroup]. An option given an
// out-of-range value makes NewGroup return an error wrapping
// [ErrInvalidOption] or [ErrInvalidTTL].
type GroupOption func(*groupConfig)

type groupConfig struct {
	ttl           time.Duration
	mainBytes     int64
	hotBytes      int64 // 0: mainBytes/8
	maxItems      int   // WithMaxItems; 0: no count bound
	hotTTL        time.Duration
	hotAdmission  bool // WithHotAdmission(true)
	batch         BatchLoader
	loadTimeout   time.Duration
	negativeTTL   time.Duration
	jitter        float64
	maxValueBytes int
	maxValueSet   bool // WithMaxValueBytes was given
	validate      func(Entry) bool
	storeIf       func(key string, it Item) bool
	// passthrough is WithPassthrough's switch, which Group.SetPassthrough
	// flips at run time: a pointer, so that the config stays a value
	// (defaultGroupConfig allocates it; NewFunc's zero config may not).
	passthrough *atomic.Bool
	// staleIfError and staleWhileRevalidate are the stale windows after an
	// entry's TTL (WithStaleIfError, WithStaleWhileRevalidate).
	staleIfError         time.Duration
	staleWhileRevalidate time.Duration
	// l2 is the shared second level (WithL2), l2Timeout the bound of each
	// read of it.
	l2        l2.Store
	l2Timeout time.Duration
	// funcTags is FuncTags' function, a func(A, V) []string for NewFunc.
	funcTags any
	// batchWindow and maxBatch configure the batch window (batchwindow.go).
	batchWindow time.Duration
	maxBatch    int
	errs        []error
}

// staleFor is how long entries are kept after their TTL: the longer of the
// two stale windows.
func (c *groupConfig) staleFor() time.Duration {
	return max(c.staleIfError, c.staleWhileRevalidate)
}

func defaultGroupConfig() groupConfig {
	return groupConfig{
		ttl:           DefaultTTL,
		mainBytes:     DefaultMainBytes,
		hotTTL:        DefaultHotTTL,
		loadTimeout:   DefaultLoadTimeout,
		jitter:        DefaultJitter,
		maxValueBytes: DefaultMaxValueBytes,
		l2Timeout:     DefaultL2Timeout,
		maxBatch:      DefaultMaxBatch,
		passthrough:   new(atomic.Bool),
	}
}

func (c *groupConfig) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func positive(c *groupConfig, name string, d time.Duration) bool {
	if d <= 0 {
		c.fail("meshcache: %s(%v): %w", name, d, ErrInvalidTTL)
		return false
	}
	return true
}

// WithTTL sets the default time to live of loaded values, used when the
// loader's [Item.TTL] is zero. It must be positive: a value that should not
// expire says so itself ([NoExpiry]). If not given, [DefaultTTL].
func WithTTL(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithTTL", d) {
			c.ttl = d
		}
	}
}

// WithMainBytes bounds the bytes (keys, values, tags and a fixed per-entry
// overhead) of the entries this node owns. It must be positive. If not given,
// [DefaultMainBytes].
func WithMainBytes(n int64) GroupOption {
	return func(c *groupConfig) {
		if n <= 0 {
			c.fail("meshcache: WithMainBytes(%d): %w", n, ErrInvalidOption)
			return
		}
		c.mainBytes = n
	}
}

// WithHotBytes bounds the bytes of the hot cache: copies of values that other
// nodes own. Zero or negative turns the hot cache off. If not given, an
// eighth of the main bytes.
func WithHotBytes(n int64) GroupOption {
	return func(c *groupConfig) {
		if n <= 0 {
			n = -1
		}
		c.hotBytes = n
	}
}

// WithHotTTL caps how long a hot copy of another node's value is kept. It must
// be positive. If not given, [DefaultHotTTL].
func WithHotTTL(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithHotTTL", d) {
			c.hotTTL = d
		}
	}
}

// WithHotAdmission(true) copies a value fetched from its owner (by Get or
// GetMany) into the hot cache only when its key was fetched before within a
// recent window, instead of at every fetch: a key read once, as most keys
// of a long-tailed workload are, then costs no copy and evicts no hotter
// key, and a key read
// again is copied at its second fetch (its third Get is a hot hit). The
// window is at least as many fetches as the hot cache holds entries of any
// size (one fetch per 128 bytes of [WithHotBytes]), and the policy's memory
// is fixed: 0.8% of the hot bytes. [Stats.HotSkipped] counts the values
// not copied. If not given, or false, every fetched value is copied.
func WithHotAdmission(on bool) GroupOption {
	return func(c *groupConfig) { c.hotAdmission = on }
}

// WithBatchLoader makes [Group.GetMany] and [Group.Warm] load missing keys
// with one LoadMany call instead of one Load call per key.
func WithBatchLoader(b BatchLoader) GroupOption {
	return func(c *groupConfig) {
		if f, ok := b.(BatchLoaderFunc); b == nil || ok && f == nil {
			c.fail("meshcache: WithBatchLoader(nil): %w", ErrNilLoader)
			return
		}
		c.batch = b
	}
}

// WithBatchWindow gathers loads into batches, as a DataLoader does: a
// window opens at a miss that this node loads (as a key's owner, a
// stand-in or a fallback, for its callers or a peer's), and the loads of
// other keys that miss within d join it; when d has passed, or
// [WithMaxBatch] keys joined, one LoadMany call of the group's
// [BatchLoader] (which the option requires) loads them all. Each caller
// gets its own key's item, or not-found if the batch's map lacks the key,
// or the batch's error. Each key keeps its flight (concurrent Gets of one
// key share one place in the batch) and its fence: a write after a key's
// load began refuses what the batch returns for it. A load waits up to d
// longer; d must be positive.
func WithBatchWindow(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithBatchWindow", d) {
			c.batchWindow = d
		}
	}
}

// WithMaxBatch closes a batch window ([WithBatchWindow]) early once n keys
// joined it (default [DefaultMaxBatch]). n must be positive.
func WithMaxBatch(n int) GroupOption {
	return func(c *groupConfig) {
		if n <= 0 {
			c.fail("meshcache: WithMaxBatch(%d): %w", n, ErrInvalidOption)
			return
		}
		c.maxBatch = n
	}
}

// WithLoadTimeout bounds every load: the loader's context ends after d,
// whatever the callers' contexts say, and a value the loader returns after
// that is handed to its callers but not cached. d must be positive and at
// most [MaxLoadTimeout]. If not given, [DefaultLoadTimeout].
func WithLoadTimeout(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if d > MaxLoadTimeout {
			c.fail("meshcache: WithLoadTimeout(%v) over %v: %w", d, MaxLoadTimeout, ErrInvalidOption)
			return
		}
		if positive(c, "WithLoadTimeout", d) {
			c.loadTimeout = d
		}
	}
}

// WithNegativeTTL caches a loader's [ErrNotFound] for d, so that a missing
// key does not reach the loader on every Get. It must be positive. If not
// given, not-found results are not cached. A cached not-found has no tags:
// [Group.InvalidateTags] does not drop it, [Group.Invalidate] and
// [Group.Set] do.
func WithNegativeTTL(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithNegativeTTL", d) {
			c.negativeTTL = d
		}
	}
}

// WithJitter shortens every TTL by a random fraction in [0, f), so that keys
// loaded together do not expire together. f must be in [0, 1). If not given,
// [DefaultJitter]; 0 turns jitter off.
func WithJitter(f float64) GroupOption {
	return func(c *groupConfig) {
		if !(f >= 0 && f < 1) {
			c.fail("meshcache: WithJitter(%v): %w", f, ErrInvalidOption)
			return
		}
		c.jitter = f
	}
}

// WithMaxValueBytes sets the largest value the group stores or returns from a
// load; larger values fail with [ErrValueTooLarge]. It must be positive and
// at most half the main bytes (see [WithMainBytes]), so that a value that is
// accepted can also be cached. If not given, [DefaultMaxValueBytes] or half
// the main bytes, whichever is smaller.
func WithMaxValueBytes(n int) GroupOption {
	return func(c *groupConfig) {
		if n <= 0 {
			c.fail("meshcache: WithMaxValueBytes(%d): %w", n, ErrInvalidOption)
			return
		}
		c.maxValueBytes = n
		c.maxValueSet = true
	}
}

// WithValidate checks every cached entry before it is returned; an entry for
// which valid returns false is dropped and loaded again.
// valid runs on the Get path: it must be fast, safe for concurrent use, and
// must neither modify nor keep the entry's Value and Tags.
func WithValidate(valid func(Entry) bool) GroupOption {
	return func(c *groupConfig) {
		if valid == nil {
			c.fail("meshcache: WithValidate(nil): %w", ErrInvalidOption)
			return
		}
		c.validate = valid
	}
}

// WithStoreIf caches a loaded item only when keep returns true; others are
// returned to their callers without being cached. It is
// the group-wide form of [Item.NoStore].
func WithStoreIf(keep func(key string, it Item) bool) GroupOption {
	return func(c *groupConfig) {
		if keep == nil {
			c.fail("meshcache: WithStoreIf(nil): %w", ErrInvalidOption)
			return
		}
		c.storeIf = keep
	}
}

// WithStaleIfError keeps an entry for d after its TTL ran out, and serves
// it when a Get of the key needs a load and the load fails: a loader error,
// a load timeout, or an owner that cannot be reached and a fallback load
// that fails. The Get then returns the old value with a nil error
// ([SourceStale], counted in [Stats.StaleServed]). A not-found is an
// answer, not a failure: it is returned, never masked. While a key is
// served stale its load is retried at most about once a second (at its
// owner, for the whole fleet); the first success replaces the old value
// everywhere as usual.
//
// Only an entry that expired is served stale: one that a write removed
// (Invalidate, InvalidateTags, Set, Clear) or whose TTL was set by
// [Group.Expire] is gone. The owner serves its stale entry to peers when
// its own load fails; a node whose owner cannot be reached and whose
// fallback load fails serves its own hot copy, whose stale window starts at
// its own expiry (at most the hot TTL after it was fetched). Like every
// answer from a cache, a stale one needs the node's lease (see
// [Node.IsReady]). Kept entries count against the group's byte bounds and
// are evicted before the entries being read. d must be positive.
func WithStaleIfError(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithStaleIfError", d) {
			c.staleIfError = d
		}
	}
}

// WithStaleWhileRevalidate serves an entry for d after its TTL ran out at
// once ([SourceStale]) and starts one background refresh of the key: a load
// at its owner, shared by the fleet (a node that does not own the key asks
// the owner, which loads it once), so that a key read continuously never
// makes a caller wait for a load. The refresh is an ordinary load, fenced
// like any: a write during it wins. [Stats.Revalidations] counts the
// refreshes started. After d the next Get loads as usual (or, with
// [WithStaleIfError], serves stale if that load fails). d must be positive.
func WithStaleWhileRevalidate(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithStaleWhileRevalidate", d) {
			c.staleWhileRevalidate = d
		}
	}
}

// WithL2 puts s under the group's owners as a shared second level (see
// package [l2]). A node that loads a key (its owner, a stand-in, a fallback)
// reads s after its own cache and before the loader, and writes what the
// loader returned to s (not a not-found, nor an item the group does not
// store). Every write (Invalidate, InvalidateTags, Set, SetIfAbsent,
// Expire, Clear, Refresh) first deletes from s, once, on the node that
// writes, before any member applies it (within a quarter of the write's
// time): a write s did not take is reported in its [*InvalidateError] under
// the member name "l2", after the members' caches were invalidated as
// usual. A value a load wrote to s after a write
// began is refused by s (l2 versions), so the guarantee holds with s on.
//
// A slow or failing s never fails a Get: a read that errs or takes longer
// than [WithL2Timeout] counts in [Stats.L2Errors] and goes to the loader,
// and reads skip s for a second after ([Stats.L2Bypassed]). Give every
// node the same s for a group: a node without it would not delete from it.
func WithL2(s l2.Store) GroupOption {
	return func(c *groupConfig) {
		if s == nil {
			c.fail("meshcache: WithL2(nil): %w", ErrInvalidOption)
			return
		}
		c.l2 = s
	}
}

// WithL2Timeout bounds each read (and write-back) of the group's second
// level (default [DefaultL2Timeout]). A write's delete from it takes at most
// a quarter of the write's own deadline instead. d must be positive.
func WithL2Timeout(d time.Duration) GroupOption {
	return func(c *groupConfig) {
		if positive(c, "WithL2Timeout", d) {
			c.l2Timeout = d
		}
	}
}

// WithPassthrough turns caching off: every Get calls the loader and nothing is
// stored. Meant for tests, and for turning a cache off by configuration.
// [Group.SetPassthrough] turns it on and off at run time, where the details
// are.
func WithPassthrough() GroupOption {
	return func(c *groupConfig) {
		if c.passthrough == nil {
			c.passthrough = new(atomic.Bool)
		}
		c.passthrough.Store(true)
	}
}

// SetPassthrough turns caching off on this node (on is true, as
// [WithPassthrough] does) or back on. It takes effect for the calls that
// start afterwards and may be called at any time, concurrently with any
// other method.
//
// While it is on, this node's Get, GetMany and Warm read nothing from the
// group's caches and store nothing in them: every call runs the loader for
// its caller alone (as [Bypass]). Everything else goes on as usual: writes
// ([Group.Set], [Group.Invalidate] and the others) apply on every member,
// this one included, fences and all; the node answers its peers as their
// keys' owner, from its main cache or by loading (and caching) as always;
// [Group.Peek] shows what is cached. So the entries cached before, or for
// peers meanwhile, are kept current by the writes, and when passthrough
// is turned off again they are served as before: never one that a write
// removed or replaced while it was on.
func (g *Group) SetPassthrough(on bool) { g.cfg.passthrough.Store(on) }

// A CallOption changes one call of [Group.Get] or [Group.GetMany].
type CallOption func(*callConfig)

type callConfig struct {
	bypass  bool
	refresh bool
	source  *Source
}

// callOptions applies opts. It is a function of its own because the config
// escapes to the heap through the option calls: Get calls it only when it has
// options, so a plain Get allocates nothing but the caller's copy.
func callOptions(opts []CallOption) callConfig {
	var cc callConfig
	for _, o := range opts {
		if o != nil {
			o(&cc)
		}
	}
	return cc
}

// Bypass calls the loader directly, neither reading nor writing the cache.
func Bypass() CallOption { return func(c *callConfig) { c.bypass = true } }

// ForceRefresh ignores a cached value, loads the key and stores the result.
// See [Group.Refresh].
func ForceRefresh() CallOption { return func(c *callConfig) { c.refresh = true } }

// Source tells where a Get's value came from (see [ReportSource]).
type Source uint8

// Where a value came from.
const (
	SourceNone     Source = iota // the Get failed before it found a value
	SourceHit                    // this node's main cache (a key it owns)
	SourceHot                    // this node's hot cache (a copy of another owner's value)
	SourcePeer                   // fetched from the key's owner
	SourceLoad                   // loaded by this node's loader (this node owns the key), or handed off by its previous owner
	SourceFallback               // loaded here because the owner could not be reached
	SourceStale                  // an expired value, under WithStaleIfError or WithStaleWhileRevalidate
)

// String returns "none", "hit", "hot", "peer", "load", "fallback", "stale"
// or "source(N)".
func (s Source) String() string {
	switch s {
	case SourceNone:
		return "none"
	case SourceHit:
		return "hit"
	case SourceHot:
		return "hot"
	case SourcePeer:
		return "peer"
	case SourceLoad:
		return "load"
	case SourceFallback:
		return "fallback"
	case SourceStale:
		return "stale"
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// ReportSource makes [Group.Get] store in *s where its value came from.
// Callers that shared a flight all get the flight's source. A Get with
// [Bypass] reports SourceLoad. It has no effect on GetMany.
func ReportSource(s *Source) CallOption { return func(c *callConfig) { c.source = s } }

// WithMaxItems bounds the number of entries of the main cache, beside
// [WithMainBytes]: storing an entry evicts the least recently used ones
// until both bounds hold. n must be positive. The hot cache (and the
// stand-in cache) gets the share of n that its bytes are of the main bytes,
// rounded up: n/8 by default, as [WithHotBytes] defaults to an eighth of
// the main bytes. So a node holds at most n entries it owns plus about n/8
// copies of other nodes' entries. The count is kept for the whole cache,
// not split across its shards, so there is no rounding. If not given, only
// the bytes bound the caches.
func WithMaxItems(n int) GroupOption {
	return func(c *groupConfig) {
		if n <= 0 {
			c.fail("meshcache: WithMaxItems(%d): %w", n, ErrInvalidOption)
			return
		}
		c.maxItems = n
	}
}

// hotItems returns the count bound of the hot cache of hotBytes (> 0) for
// a group whose main cache is bounded by c.maxItems and c.mainBytes: the
// same share of maxItems as hotBytes is of mainBytes, rounded up, at least
// 1 and at most 1<<30. It returns 0 (no count bound) when c.maxItems is.
func (c *groupConfig) hotItems(hotBytes int64) int {
	if c.maxItems <= 0 || hotBytes <= 0 {
		return 0
	}
	share := float64(c.maxItems) * float64(hotBytes) / float64(c.mainBytes)
	if share >= 1<<30 {
		return 1 << 30
	}
	n := int(share)
	if float64(n) < share {
		n++
	}
	return max(n, 1)
}
