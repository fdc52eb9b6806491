package meshcache

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/meshcache/meshcache/local"
	"go.opentelemetry.io/otel/trace"
)

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
	if cc.bypass || g.cfg.passthrough.Load() || !g.node.serving() {
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
	} else if v, src, err := g.lookup(key); src != SourceNone {
		cc.report(src, err)
		return v, err
	} else if v, ok := g.serveStaleBefore(key, &cc); ok {
		return v, nil
	}
	g.stats.misses.Add(1)
	owner, standIn := g.node.routeGet(key)
	var (
		r     flightResult
		owned bool // r.value is this caller's alone
	)
	if owner != nil && !g.node.tracing.on(ctx) {
		r, owned = g.fetchShared(ctx, key, owner) // no flight goroutine
	} else {
		r = g.waitFlight(ctx, key, g.startFlightTo(ctx, key, owner, standIn))
	}
	if r.err != nil {
		if v, ok := g.serveStaleAfter(ctx, key, &cc, r.err); ok {
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
	if owned {
		return r.value, nil
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
func (g *Group) lookup(key string) (v []byte, src Source, err error) {
	v, src, err = g.cached(key, local.All)
	switch {
	case src == SourceNone:
	case err != nil:
		g.stats.negativeHits.Add(1)
	case src == SourceHot:
		g.stats.hotHits.Add(1)
	default:
		g.stats.hits.Add(1)
	}
	return v, src, err
}

// cached is lookup in tiers (Main or StandIn, then Hot) without counting
// the hit.
func (g *Group) cached(key string, tiers local.Tier) (v []byte, src Source, err error) {
	if !g.node.serving() {
		return nil, SourceNone, nil
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
			return nil, SourceNone, nil
		}
		if e, ok = g.store.Get(tier, key); !ok {
			return nil, SourceNone, nil
		}
	}
	if g.cfg.validate != nil && !e.Negative && !g.cfg.validate(g.entry(key, e)) {
		g.store.Remove(tier, key)
		return nil, SourceNone, nil
	}
	if e.Negative {
		return nil, src, g.notFound(key)
	}
	return bytes.Clone(e.Value), src, nil
}

func (g *Group) entry(key string, e local.Entry) Entry {
	now := time.Now()
	var ttl time.Duration
	if !e.Expires.IsZero() {
		ttl = max(e.Expires.Sub(now), 0)
	}
	return Entry{Key: key, Value: e.Value, Tags: e.Tags, Age: max(now.Sub(e.Filled), 0), TTL: ttl}
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
