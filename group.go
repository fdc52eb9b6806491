package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshcache/meshcache/l2"
	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
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

// Get returns the value of key: from this node's cache, or else by loading
// it once for all concurrent callers. It returns an error wrapping
// [ErrNotFound] when the loader says the key has no value, the loader's error
// when it fails, or ctx's error when ctx ends first (the load goes on for the
// other callers and is cached).
func (g *Group) Get(ctx context.Context, key string, opts ...CallOption) ([]byte, error) {
	if err := g.checkKey("get", key); err != nil {
		return nil, err
	}
	var cc callConfig
	if len(opts) > 0 {
		cc = callOptions(opts)
	}
	if g.node.tracing.on(ctx) {
		return g.getTraced(ctx, key, cc)
	}
	return g.get(ctx, key, cc)
}

// getTraced is get in a span of its own (see tracing.go).
func (g *Group) getTraced(ctx context.Context, key string, cc callConfig) ([]byte, error) {
	ctx, span := g.node.tracing.start(ctx, "meshcache.Get", trace.SpanKindInternal, attrGroup.String(g.name))
	var src Source
	caller := cc.source
	cc.source = &src
	v, err := g.get(ctx, key, cc)
	if caller != nil {
		*caller = src
	}
	span.SetAttributes(attrSource.String(src.String()))
	end(span, err)
	return v, err
}

// get is Get, once its options are read.
func (g *Group) get(ctx context.Context, key string, cc callConfig) ([]byte, error) {
	if cc.bypass || g.cfg.passthrough || !g.node.serving() {
		// Without its lease the node loads for its callers directly: it
		// may have missed writes, so it neither serves nor fills its caches.
		v, err := g.loadUncached(ctx, key)
		cc.report(SourceLoad, err)
		return v, err
	}
	if cc.refresh {
		if err := g.fenceRefresh(ctx, []string{key}); err != nil {
			return nil, err
		}
	} else if v, err, src := g.lookup(key); src != SourceNone {
		cc.report(src, err)
		return v, err
	} else if v, ok := g.serveStale(ctx, key, &cc, true, nil); ok {
		return v, nil
	}
	g.stats.misses.Add(1)
	owner, standIn := g.node.routeGet(key)
	r := g.waitFlight(ctx, key, g.startFlightTo(ctx, key, owner, standIn))
	if r.err != nil {
		if v, ok := g.serveStale(ctx, key, &cc, false, r.err); ok {
			return v, nil
		}
		if errors.Is(r.err, ErrNotFound) {
			g.dropExpired(key)
		}
	} else if r.src == SourceStale {
		g.stats.staleServed.Add(1) // the owner answered stale
	}
	cc.report(r.src, r.err)
	if r.err != nil {
		return nil, r.err
	}
	return bytes.Clone(r.value), nil
}

// report tells a caller that asked with [ReportSource] where its value came
// from.
func (cc *callConfig) report(src Source, err error) {
	if cc.source != nil {
		if err != nil && !errors.Is(err, ErrNotFound) {
			src = SourceNone
		}
		*cc.source = src
	}
}

// lookup returns a copy of key's cached value, or the error of a cached
// not-found, and the tier it came from: SourceHit or SourceHot, or
// SourceNone on a miss. It counts the hit.
func (g *Group) lookup(key string) (v []byte, err error, src Source) {
	return g.cached(key, local.All, true)
}

// cached is lookup in tiers (Main, then Hot), counting the hit only when
// count is set.
func (g *Group) cached(key string, tiers local.Tier, count bool) (v []byte, err error, src Source) {
	if !g.node.serving() {
		return nil, nil, SourceNone
	}
	tier, src := local.Main, SourceHit
	e, ok := g.store.Get(tier, key)
	if !ok && tiers&local.StandIn != 0 && !g.store.Empty(local.StandIn) {
		tier = local.StandIn // served like the main cache
		e, ok = g.store.Get(tier, key)
	}
	if !ok {
		tier, src = local.Hot, SourceHot
		if tiers&local.Hot == 0 {
			return nil, nil, SourceNone
		}
		if e, ok = g.store.Get(tier, key); !ok {
			return nil, nil, SourceNone
		}
	}
	if g.cfg.validate != nil && !e.Negative && !g.cfg.validate(g.entry(key, e)) {
		g.store.Remove(tier, key)
		return nil, nil, SourceNone
	}
	switch {
	case !count:
	case e.Negative:
		g.stats.negativeHits.Add(1)
	case tier == local.Hot:
		g.stats.hotHits.Add(1)
	default:
		g.stats.hits.Add(1)
	}
	if e.Negative {
		return nil, g.notFound(key), src
	}
	return bytes.Clone(e.Value), nil, src
}

func (g *Group) entry(key string, e local.Entry) Entry {
	now := time.Now()
	var ttl time.Duration
	if !e.Expires.IsZero() {
		ttl = max(e.Expires.Sub(now), 0)
	}
	return Entry{Key: key, Value: e.Value, Tags: e.Tags, Age: max(now.Sub(e.Filled), 0), TTL: ttl}
}

// flightResult is what a flight hands its waiters. value is shared by all of
// them (and possibly by the cache): each waiter copies it.
type flightResult struct {
	value []byte
	err   error
	src   Source
}

type flight struct {
	c      *call
	leader bool // this caller started the flight
}

// Flight kinds. A node serving a peer only joins load flights, never fetch
// flights: a forwarded request is never forwarded again, even when two
// nodes disagree on the ring.
const (
	loadFlight    = 'l' // this node loads the key (it owns it)
	fetchFlight   = 'f' // this node fetches the key from its owner
	standInFlight = 's' // this node loads the key for its unreachable owner
)

// startFlight joins the flight of key, or starts one: a load when owner is
// nil (this node owns key), else a fetch from owner. A flight runs on a
// goroutine of its own, so that every caller, the leader too, can stop
// waiting when its ctx ends.
func (g *Group) startFlight(ctx context.Context, key string, owner *peer) flight {
	return g.startFlightTo(ctx, key, owner, false)
}

// startFlightTo is startFlight that, with standIn set and owner nil, loads
// key here as the stand-in of its unreachable owner, into the stand-in tier
// (see standin.go).
func (g *Group) startFlightTo(ctx context.Context, key string, owner *peer, standIn bool) flight {
	kind := byte(loadFlight)
	switch {
	case owner != nil:
		kind = fetchFlight
	case standIn:
		kind = standInFlight
	}
	id := g.flightID(kind, key)
	c, leader := g.flights.join(id)
	if leader {
		go g.runFlight(ctx, id, c, owner)
	}
	return flight{c: c, leader: leader}
}

// runFlight runs the flight c and hands its result to its waiters, also
// when the loader panics or calls runtime.Goexit.
func (g *Group) runFlight(ctx context.Context, id flightID, c *call, owner *peer) {
	key := id.key
	var r flightResult
	returned := false
	defer func() {
		if p := recover(); p != nil {
			r = flightResult{err: g.panicked(fmt.Sprintf("key %q", key), p)}
		} else if !returned {
			g.log.Error("meshcache: loader called runtime.Goexit", "key", key)
			r = flightResult{err: fmt.Errorf("meshcache: load %q in group %s: loader called runtime.Goexit: %w", key, g.name, ErrLoadFailed)}
		}
		g.flights.finish(id, c, r)
	}()
	// Checked again: the flight of another caller that missed may have
	// stored its value and ended between this caller's miss and join;
	// without this check the key would load twice. A load flight may serve
	// peers: it never answers from a hot copy.
	tiers, tier := local.All, local.Main
	switch {
	case id.kind == standInFlight:
		tiers, tier = local.StandIn, local.StandIn
	case owner == nil:
		tiers = local.Main
	}
	if v, err, src := g.cached(key, tiers, false); src != SourceNone {
		r = flightResult{value: v, err: err, src: src}
	} else if owner == nil {
		v, err := g.loadAndStore(ctx, key, tier)
		r = flightResult{value: v, err: err, src: SourceLoad}
	} else {
		v, src, err := g.fetch(ctx, key, owner)
		r = flightResult{value: v, err: err, src: src}
	}
	returned = true
}

// waitFlight waits for f's result or for ctx to end, whichever comes first.
func (g *Group) waitFlight(ctx context.Context, key string, f flight) flightResult {
	select {
	case <-f.c.done:
		if !f.leader {
			g.stats.deduplicated.Add(1)
		}
		return f.c.res
	case <-ctx.Done():
		return flightResult{err: ctxErr("get", key, ctx)}
	}
}

// ctxErr is the error of a call whose ctx ended: it wraps ctx.Err() and, if
// ctx was cancelled with a cause, the cause too.
func ctxErr(op, key string, ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause != nil && cause != err {
		return fmt.Errorf("meshcache: %s %q: %w: %w", op, key, err, cause)
	}
	return fmt.Errorf("meshcache: %s %q: %w", op, key, err)
}

// flightID names key's flight of a kind in the current epoch.
func (g *Group) flightID(kind byte, key string) flightID {
	return flightID{kind: kind, epoch: g.epoch.Load(), key: key}
}

// forget makes later callers of keys start new flights of both kinds.
func (g *Group) forget(keys []string) {
	for _, k := range keys {
		g.flights.forget(g.flightID(loadFlight, k))
		g.flights.forget(g.flightID(fetchFlight, k))
		g.flights.forget(g.flightID(standInFlight, k))
	}
}

// loadAndStore runs the loader for key under a context of its own and stores
// the result in tier (Main when this node owns key, Hot for a fallback),
// unless an invalidation fenced it while it ran. It is called by the leader
// of a flight, so the value is stored before any waiter is released: a Get
// that starts after the flight ended finds it cached. A load into Main
// first asks the key's previous owner, if it changed (hand-off).
func (g *Group) loadAndStore(ctx context.Context, key string, tier local.Tier) (_ []byte, err error) {
	if !g.node.startLoad() {
		return nil, ErrClosed
	}
	defer g.node.loads.Done()
	// The fence: since is noted before the loader reads anything, so any
	// invalidation that starts after this point makes Add refuse the value.
	since := g.store.Seq()
	ctx, cancel := g.loadContext(context.WithoutCancel(ctx))
	defer cancel()
	if tier == local.Main {
		if v, ok := g.handoff(ctx, key); ok {
			return v, nil
		}
	}
	if g.node.tracing.on(ctx) {
		var span trace.Span
		ctx, span = g.node.tracing.start(ctx, "meshcache.load", trace.SpanKindInternal, attrGroup.String(g.name))
		defer func() { end(span, err) }()
	}
	var version *l2.Version // what the second level saw, for the write-back
	if rs, ok := g.l2Read(ctx, []string{key}); ok {
		if rs[0].Found {
			if v, ok := g.l2Found(ctx, key, rs[0], since, tier); ok {
				return v, nil
			}
		}
		version = &rs[0].Version
	}
	g.stats.loads.Add(1)
	var it Item
	if g.window != nil {
		it, err = g.window.load(ctx, key) // the batch observes its latency
	} else {
		start := time.Now()
		it, err = g.callLoader(ctx, key)
		g.stats.loadLatency.observe(time.Since(start))
	}
	if err != nil {
		return nil, g.loadFailed(ctx, key, since, err, tier)
	}
	if err := g.checkItem(key, it); err != nil {
		g.stats.loadErrors.Add(1)
		return nil, err
	}
	if ttl, ok := g.storeLoaded(ctx, key, it, since, tier); ok && version != nil {
		g.l2WriteBack(ctx, []l2.Item{{Key: key, Value: it.Value, TTL: ttl, Tags: it.Tags, Version: *version}})
	}
	return it.Value, nil
}

// loadContext returns the context a load runs under: parent's values, the
// group's load timeout, and cancelled when the node closes.
func (g *Group) loadContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, g.cfg.loadTimeout)
	stop := context.AfterFunc(g.node.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// callLoader calls the loader, turning a panic into an error wrapping
// [ErrLoaderPanic] so that a panicking loader never wedges a key or kills
// the node.
func (g *Group) callLoader(ctx context.Context, key string) (it Item, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = g.panicked(fmt.Sprintf("key %q", key), p)
		}
	}()
	return g.loader.Load(ctx, key)
}

// panicked logs a panic recovered while loading what, with its value and
// stack, and returns the error every waiter gets. The error carries
// neither: the value may hold secrets, and the error may travel to peers
// and on to the callers' users. The log is the only place to find them.
func (g *Group) panicked(what string, p any) error {
	g.log.Error("meshcache: load panicked", "what", what, "panic", p, "stack", string(debug.Stack()))
	return fmt.Errorf("%w: group %s, %s (the panic and its stack are in the node's log)", ErrLoaderPanic, g.name, what)
}

// loadFailed counts a failed load, caches a not-found when the group asks for
// it, and returns the error for the callers.
func (g *Group) loadFailed(ctx context.Context, key string, since uint64, err error, tier local.Tier) error {
	if errors.Is(err, ErrNotFound) {
		g.storeNotFound(ctx, key, since, tier)
		return g.notFound(key)
	}
	g.stats.loadErrors.Add(1)
	return g.loadError(key, err)
}

// storeNotFound caches key's not-found in tier when the group asks for it.
func (g *Group) storeNotFound(ctx context.Context, key string, since uint64, tier local.Tier) {
	if g.cfg.negativeTTL > 0 && ctx.Err() == nil {
		g.store.Add(tier, key, nil, nil, g.tierTTL(tier, g.cfg.negativeTTL), true, since)
	}
}

// tierTTL caps ttl at the hot TTL for the hot tier.
func (g *Group) tierTTL(tier local.Tier, ttl time.Duration) time.Duration {
	if tier == local.Hot || tier == local.StandIn {
		return min(ttl, g.cfg.hotTTL)
	}
	return ttl
}

// loadError wraps a loader's error for the callers. A peer that asked for
// key gets err's text only (see wireError).
func (g *Group) loadError(key string, err error) error {
	return &loadFailure{what: fmt.Sprintf("load %q in group %s", key, g.name), cause: err}
}

func (g *Group) notFound(key string) error {
	return fmt.Errorf("meshcache: %s %q: %w", g.name, key, ErrNotFound)
}

// checkItem reports a loaded item that cannot be stored.
func (g *Group) checkItem(key string, it Item) error {
	if len(it.Value) > g.cfg.maxValueBytes {
		err := fmt.Errorf("meshcache: load %q in group %s: value of %d bytes over %d: %w",
			key, g.name, len(it.Value), g.cfg.maxValueBytes, ErrValueTooLarge)
		g.log.Warn("meshcache: loader returned a value too large", "key", key, "err", err)
		return err
	}
	for _, t := range it.Tags {
		if len(t) > MaxKeyLen {
			err := fmt.Errorf("meshcache: load %q in group %s: tag of %d bytes: %w", key, g.name, len(t), ErrInvalidTag)
			g.log.Warn("meshcache: loader returned a bad tag", "key", key, "err", err)
			return err
		}
	}
	return nil
}

// storeLoaded stores a loaded item unless it asks not to be, or an
// invalidation since since fenced it, or the load outlived its context.
//
// The last rule keeps the fences sound: tombstones and tag generations live
// a minute longer than the load timeout, so a load that returns before its
// context ended still finds every fence recorded after it started. A loader
// that ignores its context and returns later could find them expired (key
// fences) or pruned (tag generations):
//
//	t=0     load starts (since = 0), reads version 0
//	t=1s    Invalidate records tombstone 1 and returns
//	t=load timeout + 1m   the tombstone has expired
//	later   the load returns version 0: it must not be stored
//
// ctx is the load's context (see loadContext). storeLoaded returns the TTL
// the item was given, and whether the item may be cached at all (stored
// here or not): then a second level may keep it for that TTL.
func (g *Group) storeLoaded(ctx context.Context, key string, it Item, since uint64, tier local.Tier) (time.Duration, bool) {
	if ctx.Err() != nil {
		g.log.Warn("meshcache: loader returned after its context ended; value not cached", "key", key)
		return 0, false
	}
	if it.NoStore || (g.cfg.storeIf != nil && !g.cfg.storeIf(key, it)) {
		return 0, false
	}
	ttl := it.TTL
	if ttl <= 0 {
		ttl = g.cfg.ttl
	}
	if f := g.cfg.jitter; f > 0 {
		ttl -= time.Duration(rand.Float64() * f * float64(ttl))
	}
	g.store.Add(tier, key, it.Value, cleanTags(it.Tags), g.tierTTL(tier, ttl), false, since)
	return ttl, true
}

// cleanTags returns a copy of tags without empty ones, or nil.
func cleanTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// loadUncached calls the loader for one caller, under the caller's context,
// and stores nothing ([Bypass], [WithPassthrough]).
func (g *Group) loadUncached(ctx context.Context, key string) ([]byte, error) {
	if !g.node.startLoad() {
		return nil, ErrClosed
	}
	defer g.node.loads.Done()
	ctx, cancel := g.loadContext(ctx)
	defer cancel()
	g.stats.loads.Add(1)
	it, err := g.callLoader(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, g.notFound(key)
		}
		g.stats.loadErrors.Add(1)
		return nil, g.loadError(key, err)
	}
	if err := g.checkItem(key, it); err != nil {
		g.stats.loadErrors.Add(1)
		return nil, err
	}
	return it.Value, nil
}

// Refresh loads key now, stores the result over any cached value, and
// returns it. Loads of key that were in flight are fenced: they can no longer
// overwrite the refreshed value.
func (g *Group) Refresh(ctx context.Context, key string) ([]byte, error) {
	return g.Get(ctx, key, ForceRefresh())
}

// Peek returns what is cached for key, without loading it. ok is false when
// nothing (or a cached not-found) is. Peek does not apply [WithValidate]: it
// shows the entry as stored.
func (g *Group) Peek(ctx context.Context, key string) (e Entry, ok bool, err error) {
	if err := g.checkKey("peek", key); err != nil {
		return Entry{}, false, err
	}
	if !g.node.serving() {
		return Entry{}, false, nil // nothing this node holds can be trusted now
	}
	le, ok := g.store.Get(local.Main, key)
	if !ok {
		le, ok = g.store.Get(local.Hot, key)
	}
	if !ok || le.Negative {
		return Entry{}, false, nil
	}
	e = g.entry(key, le)
	e.Value = bytes.Clone(e.Value)
	e.Tags = append([]string(nil), e.Tags...)
	return e, true, nil
}

// Set stores item under key, replacing any cached value, and fences loads of
// key that were in flight: once Set returns nil, no Get on any node returns
// a value loaded before it. In a cluster the key's owner stores the value
// and every member drops its copies (see [Group.Invalidate] for the
// errors). A zero item.TTL means the group's default; jitter does not
// apply. An item with NoStore set only invalidates key.
func (g *Group) Set(ctx context.Context, key string, item Item) error {
	_, err := g.set(ctx, key, item, false)
	return err
}

// SetIfAbsent stores item under key only when the key's owner has no value
// cached for it, and reports whether it did. Like [Group.Set], a stored
// value fences the loads of key in flight and drops every member's copies.
func (g *Group) SetIfAbsent(ctx context.Context, key string, item Item) (bool, error) {
	return g.set(ctx, key, item, true)
}

func (g *Group) set(ctx context.Context, key string, item Item, ifAbsent bool) (bool, error) {
	op := transport.OpSet
	if ifAbsent {
		op = transport.OpSetIfAbsent
	}
	if err := g.checkKey(op.String(), key); err != nil {
		return false, err
	}
	if err := g.checkSetItem(key, item); err != nil {
		g.log.Warn("meshcache: rejected call", "op", op, "key", key, "err", err)
		return false, err
	}
	if item.NoStore {
		return false, g.Invalidate(ctx, key)
	}
	applied, err := g.write(ctx, transport.WriteRequest{
		Op:    op,
		Items: []transport.SetItem{{Key: key, Value: item.Value, TTL: item.TTL, Tags: item.Tags}},
	})
	return applied > 0, err
}

// storeSet applies a checked Set item on this node: the owner stores it,
// every node fences the key. It reports whether the value was stored.
func (g *Group) storeSet(it transport.SetItem, ifAbsent bool) bool {
	if g.node.route(it.Key) != nil {
		if !ifAbsent {
			g.fenceKeys([]string{it.Key})
		}
		return false
	}
	if ifAbsent {
		if e, ok := g.store.Get(local.Main, it.Key); ok && !e.Negative {
			return false
		}
	}
	seq := g.fenceKeys([]string{it.Key})
	ttl := it.TTL
	if ttl == 0 {
		ttl = g.cfg.ttl
	}
	value, tags := bytes.Clone(it.Value), cleanTags(it.Tags)
	if value == nil {
		value = []byte{}
	}
	if ifAbsent {
		return g.store.AddIfAbsent(local.Main, it.Key, value, tags, ttl, false, seq)
	}
	g.store.Add(local.Main, it.Key, value, tags, ttl, false, seq)
	return true
}

func (g *Group) checkSetItem(key string, item Item) error {
	if item.TTL < 0 {
		return fmt.Errorf("meshcache: set %q: TTL %v: %w", key, item.TTL, ErrInvalidTTL)
	}
	if len(item.Value) > g.cfg.maxValueBytes {
		return fmt.Errorf("meshcache: set %q: value of %d bytes over %d: %w",
			key, len(item.Value), g.cfg.maxValueBytes, ErrValueTooLarge)
	}
	for _, t := range item.Tags {
		if len(t) > MaxKeyLen {
			return fmt.Errorf("meshcache: set %q: tag of %d bytes: %w", key, len(t), ErrInvalidTag)
		}
	}
	return nil
}

// fenceKeys drops keys from both caches, fences the loads and fetches of
// keys in flight, and makes later callers start new flights. It returns the
// fence's sequence: a load that notes it (or later) is not fenced.
func (g *Group) fenceKeys(keys []string) uint64 {
	seq, _ := g.store.Invalidate(local.All, keys...)
	g.forget(keys)
	return seq
}

// fenceRefresh fences keys before a forced refresh: on every member, so
// that the refreshed value replaces every copy. A refresh that some members
// did not acknowledge goes on (they get the invalidation by gossip).
func (g *Group) fenceRefresh(ctx context.Context, keys []string) error {
	if g.node.cluster == nil {
		// The second level first, as a write does; one that failed is
		// skipped by reads for a while (see l2Failed).
		g.l2Write(ctx, transport.WriteRequest{Op: transport.OpInvalidate, Keys: keys}, DefaultWriteTimeout)
		g.fenceKeys(keys)
		return nil
	}
	err := g.Invalidate(ctx, keys...)
	if errors.Is(err, ErrPartialInvalidation) {
		g.log.Warn("meshcache: refresh went on without every member's acknowledgement", "err", err)
		return nil
	}
	return err
}

// Expire sets the remaining time to live of key's cached value to ttl, which
// must be positive, on every member (hot copies keep at most the hot TTL).
// It reports whether a value was cached on some member.
func (g *Group) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := g.checkKey("expire", key); err != nil {
		return false, err
	}
	if ttl <= 0 {
		err := fmt.Errorf("meshcache: expire %q: TTL %v: %w", key, ttl, ErrInvalidTTL)
		g.log.Warn("meshcache: rejected call", "op", "expire", "key", key, "err", err)
		return false, err
	}
	applied, err := g.write(ctx, transport.WriteRequest{Op: transport.OpExpire, Keys: []string{key}, TTL: ttl})
	return applied > 0, err
}

// expire applies Expire to this node's tier.
func (g *Group) expire(tier local.Tier, key string, ttl time.Duration) bool {
	if e, ok := g.store.Get(tier, key); ok && e.Negative {
		return false // a cached not-found is not a value
	}
	return g.store.Expire(tier, key, g.tierTTL(tier, ttl))
}

// Invalidate drops keys from the cache of every member. Once it returns
// nil, no Get that starts afterwards on any node returns a value loaded
// before the call.
//
// When some alive member does not acknowledge in time (ctx's deadline, or
// [Config.WriteTimeout] when ctx has none), Invalidate returns an
// [*InvalidateError] naming them, which wraps [ErrPartialInvalidation]; the
// change is then also queued on gossip for them. The same holds for
// [Group.InvalidateTags], [Group.Set], [Group.SetIfAbsent], [Group.Expire]
// and [Group.Clear].
func (g *Group) Invalidate(ctx context.Context, keys ...string) error {
	if err := g.checkClosed("invalidate"); err != nil {
		return err
	}
	for _, k := range keys {
		if err := g.checkKey("invalidate", k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := g.write(ctx, transport.WriteRequest{Op: transport.OpInvalidate, Keys: keys})
	return err
}

// InvalidateTags drops every entry that carries one of tags, on every
// member, in time independent of how many entries do. Once it returns nil,
// no Get that starts afterwards on any node returns a value loaded before
// the call. Errors are as for [Group.Invalidate].
func (g *Group) InvalidateTags(ctx context.Context, tags ...string) error {
	if err := g.checkClosed("invalidate-tags"); err != nil {
		return err
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			g.log.Warn("meshcache: rejected call", "op", "invalidate-tags", "err", err)
			return err
		}
	}
	if len(tags) == 0 {
		return nil
	}
	_, err := g.write(ctx, transport.WriteRequest{Op: transport.OpInvalidateTags, Tags: tags})
	return err
}

func checkTag(t string) error {
	if t == "" || len(t) > MaxKeyLen {
		return fmt.Errorf("meshcache: invalidate tag of %d bytes: %w", len(t), ErrInvalidTag)
	}
	return nil
}

// Clear drops every entry of the group on every member. Once it returns
// nil, no Get that starts afterwards on any node returns a value loaded
// before the call. Errors are as for [Group.Invalidate].
func (g *Group) Clear(ctx context.Context) error {
	if err := g.checkClosed("clear"); err != nil {
		return err
	}
	_, err := g.write(ctx, transport.WriteRequest{Op: transport.OpClear})
	return err
}

func (g *Group) checkClosed(op string) error {
	if g.node.closed.Load() {
		return fmt.Errorf("meshcache: %s in group %s: %w", op, g.name, ErrClosed)
	}
	return nil
}

// checkKey reports a closed node or a bad key, logging the latter.
func (g *Group) checkKey(op, key string) error {
	if err := g.checkClosed(op); err != nil {
		return err
	}
	if key != "" && len(key) <= MaxKeyLen {
		return nil
	}
	err := fmt.Errorf("meshcache: %s in group %s: %w", op, g.name, ErrEmptyKey)
	if key != "" {
		err = fmt.Errorf("meshcache: %s in group %s: key of %d bytes over %d: %w", op, g.name, len(key), MaxKeyLen, ErrKeyTooLong)
	}
	g.log.Warn("meshcache: rejected call", "op", op, "err", err)
	return err
}
