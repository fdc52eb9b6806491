package meshcache

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/meshcache/meshcache/local"
)

// A Group is a named cache with one loader: a namespace of keys. Create it
// with [NewGroup]. All methods are safe for concurrent use.
//
// Values returned by a Group belong to the caller: changing them does not
// change the cache. A value a [Loader] returns belongs to the Group after
// the call; [Group.Set] copies its value, so the caller keeps it.
type Group struct {
	node   *Node
	name   string
	loader Loader
	cfg    groupConfig
	store  *local.Store
	log    *slog.Logger

	// flights shares one load among the concurrent callers of a key. Flight
	// keys carry epoch, and Invalidate and Set Forget the key, so that a Get
	// that starts after an invalidation never joins a flight that started
	// before it (see flightID).
	flights flightTable
	// epoch is bumped by InvalidateTags and Clear, which cannot know which
	// flights carry the tags: every flight older than the bump becomes
	// unreachable for new callers, and the fences drop its result.
	epoch atomic.Uint64
	// failures holds, for the stale options, when a key's load last failed
	// (Unix nanoseconds), so that its loads are spaced (see staleRetry).
	failures *lru.Cache[string, int64]

	// window gathers loads into batches (WithBatchWindow); nil: none.
	window *loadWindow
	// hotAdmit decides which fetched values get a hot copy; nil copies
	// every one (no WithHotAdmission(true), or the hot cache is off).
	hotAdmit *admitter

	// l2SkipUntil is when reads of the second level resume after a
	// failure (Unix nanoseconds; see l2Backoff).
	l2SkipUntil atomic.Int64

	stats counters
	// lastClear is the last clear of the main cache, for hand-off.
	lastClear atomic.Pointer[clearMark]
	// missedWrite is when this node last applied a write of the group to
	// nothing, before the group existed here (Unix nanoseconds; 0: never),
	// for hand-over (see Node.noteMissedWrite).
	missedWrite atomic.Int64
}

// clearMark records a clear of a group's main cache: its fence sequence
// and when it happened.
type clearMark struct {
	seq uint64
	at  time.Time
}

// cleared records a clear of the main cache at seq.
func (g *Group) cleared(seq uint64) {
	g.lastClear.Store(&clearMark{seq: seq, at: time.Now()})
}

// tombstoneTTL is how long the group's fences live: longer than any load.
func (g *Group) tombstoneTTL() time.Duration { return g.cfg.loadTimeout + time.Minute }

type counters struct {
	hits, hotHits, misses, negativeHits atomic.Uint64
	loads, batchLoads, loadErrors       atomic.Uint64
	deduplicated                        atomic.Uint64
	peerFetches, peerErrors, fallbacks  atomic.Uint64
	handoffs, peerServed                atomic.Uint64
	staleServed, revalidations          atomic.Uint64
	hotSkipped                          atomic.Uint64
	l2Hits, l2Misses, l2Errors          atomic.Uint64
	l2Bypassed, l2Stores                atomic.Uint64
	loadLatency, fetchLatency           histogram
}

// NewGroup creates the group name on node n, loading missing keys with l.
// It fails with [ErrNilLoader], [ErrInvalidName], [ErrGroupExists],
// [ErrClosed], or an error from an option ([ErrInvalidTTL],
// [ErrInvalidOption]).
func NewGroup(n *Node, name string, l Loader, opts ...GroupOption) (*Group, error) {
	if n == nil {
		return nil, fmt.Errorf("meshcache: NewGroup(%q) with a nil node: %w", name, ErrInvalidOption)
	}
	if err := newGroupErr(name, l, opts); err != nil {
		n.log.Warn("meshcache: rejected group", "group", name, "err", err)
		return nil, err
	}
	cfg := defaultGroupConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.maxValueSet {
		cfg.maxValueBytes = int(min(int64(cfg.maxValueBytes), cfg.mainBytes/2))
	}
	hot := cfg.hotBytes
	if hot == 0 {
		hot = max(cfg.mainBytes/8, 1)
	}
	g := &Group{
		node:   n,
		name:   name,
		loader: l,
		cfg:    cfg,
		log:    n.log.With("group", name),
		store: local.New(local.Config{
			MainBytes: cfg.mainBytes,
			HotBytes:  hot,
			MainItems: cfg.maxItems,
			HotItems:  cfg.hotItems(hot),
			// A tombstone must outlive every load that started before it.
			TombstoneTTL: cfg.loadTimeout + time.Minute, // see tombstoneTTL
			StaleFor:     cfg.staleFor(),
		}),
	}
	g.failures, _ = lru.New[string, int64](maxFailures)
	if cfg.hotAdmission && hot > 0 {
		g.hotAdmit = newAdmitter(hot)
	}
	if cfg.batchWindow > 0 {
		g.window = &loadWindow{g: g, d: cfg.batchWindow, max: cfg.maxBatch}
	}
	// Snapshot entries go in behind every write applied once the group is
	// visible: they are older than all of them.
	since := g.store.Seq()
	restored, err := n.addGroup(g)
	if err != nil {
		g.store.Close()
		n.log.Warn("meshcache: rejected group", "group", name, "err", err)
		return nil, err
	}
	g.restore(restored, since)
	return g, nil
}

func newGroupErr(name string, l Loader, opts []GroupOption) error {
	if name == "" || len(name) > MaxKeyLen {
		return fmt.Errorf("meshcache: group name of %d bytes: %w", len(name), ErrInvalidName)
	}
	if l == nil {
		return fmt.Errorf("meshcache: group %q: %w", name, ErrNilLoader)
	}
	if f, ok := l.(LoaderFunc); ok && f == nil {
		return fmt.Errorf("meshcache: group %q: %w", name, ErrNilLoader)
	}
	cfg := defaultGroupConfig()
	for _, o := range opts {
		if o == nil {
			return fmt.Errorf("meshcache: group %q: nil option: %w", name, ErrInvalidOption)
		}
		o(&cfg)
	}
	if cfg.batchWindow > 0 && cfg.batch == nil {
		cfg.fail("meshcache: WithBatchWindow without WithBatchLoader: %w", ErrInvalidOption)
	}
	if cfg.maxValueSet && int64(cfg.maxValueBytes) > cfg.mainBytes/2 {
		cfg.fail("meshcache: WithMaxValueBytes(%d) over half of the main bytes (%d): such values could never be cached: %w",
			cfg.maxValueBytes, cfg.mainBytes, ErrInvalidOption)
	}
	return errors.Join(cfg.errs...)
}

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Flight kinds. A node serving a peer only joins load flights, never fetch
// flights: a forwarded request is never forwarded again, even when two
// nodes disagree on the ring.
const (
	loadFlight    = 'l' // this node loads the key (it owns it)
	fetchFlight   = 'f' // this node fetches the key from its owner
	standInFlight = 's' // this node loads the key for its unreachable owner
)
