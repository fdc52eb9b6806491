package meshcache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/meshcache/meshcache/l2"
	"github.com/meshcache/meshcache/local"
	"go.opentelemetry.io/otel/trace"
)

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
		g.store.Add(tier, local.Put{Key: key, TTL: g.tierTTL(tier, g.cfg.negativeTTL), Negative: true, Since: since})
	}
}

// wireNoExpiry is the TTL of a value without expiry on the wire (in a
// transport.Value): the longest duration, so that a receiver bounding it
// (min with its hot TTL) needs no special case. A zero TTL there means "not
// cached at the owner, do not cache" (see serve), a negative one a stale
// answer (staleTTL).
const wireNoExpiry = time.Duration(math.MaxInt64)

// tierTTL caps ttl at the hot TTL for the hot and stand-in tiers, where a
// value without expiry (ttl zero or negative, as [NoExpiry]) gets the hot
// TTL too. The main tier keeps ttl: the store takes zero or negative for
// no expiry.
func (g *Group) tierTTL(tier local.Tier, ttl time.Duration) time.Duration {
	if tier == local.Hot || tier == local.StandIn {
		if ttl <= 0 {
			return g.cfg.hotTTL
		}
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
// the item was given (the group's TTL for one that does not expire), and
// whether the item may be cached at all (stored here or not): then a second
// level may keep it for that TTL.
func (g *Group) storeLoaded(ctx context.Context, key string, it Item, since uint64, tier local.Tier) (time.Duration, bool) {
	if ctx.Err() != nil {
		g.log.Warn("meshcache: loader returned after its context ended; value not cached", "key", key)
		return 0, false
	}
	if it.NoStore || (g.cfg.storeIf != nil && !g.cfg.storeIf(key, it)) {
		return 0, false
	}
	ttl := it.TTL // checked (checkItem): zero, positive or NoExpiry
	if ttl == 0 {
		ttl = g.cfg.ttl
	}
	if f := g.cfg.jitter; f > 0 && ttl > 0 {
		ttl -= time.Duration(rand.Float64() * f * float64(ttl))
	}
	g.store.Add(tier, local.Put{Key: key, Value: it.Value, Tags: cleanTags(it.Tags), TTL: g.tierTTL(tier, ttl), Since: since})
	if ttl == NoExpiry {
		return g.cfg.ttl, true // a second level's items expire (l2.Item)
	}
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
