package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/meshcache/meshcache/l2"
	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// GetMany returns the values of keys. Keys served from the cache cost no
// load; the others are loaded: with one LoadMany call for all of them when
// the group has a [BatchLoader], else with one shared flight per key, all in
// parallel.
//
// Keys that have no value are absent from the map. When some keys fail, the
// map still holds the others, and the error joins the failures (each wraps
// its key); when ctx ends first, the error wraps ctx's error. Duplicate keys
// are loaded once. The map and its values belong to the caller.
func (g *Group) GetMany(ctx context.Context, keys []string, opts ...CallOption) (map[string][]byte, error) {
	var cc callConfig
	if len(opts) > 0 {
		cc = callOptions(opts)
	}
	out := make(map[string][]byte, len(keys))
	err := g.getMany(ctx, "get-many", keys, cc, out)
	return out, err
}

// Warm loads the keys that are not cached yet, batched as in
// [Group.GetMany], so that later Gets hit. Keys that have no value are not
// an error.
func (g *Group) Warm(ctx context.Context, keys ...string) error {
	return g.getMany(ctx, "warm", keys, callConfig{}, nil)
}

// getMany fills out (if not nil) with the values of keys.
func (g *Group) getMany(ctx context.Context, op string, keys []string, cc callConfig, out map[string][]byte) error {
	if err := g.checkClosed(op); err != nil {
		return err
	}
	for _, k := range keys {
		if err := g.checkKey(op, k); err != nil {
			return err
		}
	}
	cached := !cc.bypass && !g.cfg.passthrough.Load() && g.node.serving()
	seen := make(map[string]bool, len(keys))
	var missing []string
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if cached && !cc.refresh {
			if v, src, err := g.lookup(k); src != SourceNone {
				if err == nil && out != nil {
					out[k] = v
				}
				continue
			}
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return nil
	}
	if cc.refresh && cached {
		if err := g.fenceRefresh(ctx, missing); err != nil {
			return err
		}
	}
	g.stats.misses.Add(uint64(len(missing)))
	var results map[string]flightResult
	if cached {
		results = g.routeMany(ctx, missing)
	} else {
		results = g.loadManyUncached(ctx, missing)
	}
	var errs []error
	for _, k := range missing {
		r := results[k]
		switch {
		case r.err == nil:
			if out != nil {
				out[k] = bytes.Clone(r.value)
			}
		case errors.Is(r.err, ErrNotFound):
		case ctx.Err() != nil:
			// The caller gave up: one error, not one per key.
			return errors.Join(append(errs, ctxErr(ctx, op, k))...)
		default:
			errs = append(errs, r.err)
		}
	}
	return errors.Join(errs...)
}

// routeMany gets keys from their owners: one request per owner (in
// parallel), and this node's own keys loaded here. The values in the
// result may be shared with the cache.
func (g *Group) routeMany(ctx context.Context, keys []string) map[string]flightResult {
	var mine, standIn []string
	remote := make(map[*peer][]string)
	for _, k := range keys {
		switch p, si := g.node.routeGet(k); {
		case p != nil:
			remote[p] = append(remote[p], k)
		case si:
			standIn = append(standIn, k) // this node stands in for a suspect owner
		default:
			mine = append(mine, k)
		}
	}
	if len(remote) == 0 && len(standIn) == 0 {
		return g.loadMissing(ctx, mine, local.Main)
	}
	parts := make(chan map[string]flightResult, len(remote))
	for p, ks := range remote {
		if !g.node.goLoad(func() { parts <- g.fetchMany(ctx, p, ks) }) {
			parts <- failAll(ks, ErrClosed)
		}
	}
	results := make(map[string]flightResult, len(keys))
	if len(mine) > 0 {
		maps.Copy(results, g.loadMissing(ctx, mine, local.Main))
	}
	if len(standIn) > 0 {
		maps.Copy(results, g.loadMissing(ctx, standIn, local.StandIn))
	}
	for range remote {
		maps.Copy(results, <-parts)
	}
	return results
}

// fetchMany asks owner for keys in one request and keeps the values in the
// hot cache. Keys the owner cannot serve (it is unreachable, or failed
// other than by its loader) are loaded here into the hot cache.
func (g *Group) fetchMany(ctx context.Context, owner *peer, keys []string) map[string]flightResult {
	if !g.node.startLoad() {
		return failAll(keys, ErrClosed)
	}
	defer g.node.loads.Done()
	results := make(map[string]flightResult, len(keys))
	since := g.store.Seq()
	fctx, cancel := g.loadContext(ctx)
	defer cancel()
	fctx, cancelPeer := peerContext(fctx, owner)
	defer cancelPeer()
	g.stats.peerFetches.Add(uint64(len(keys)))
	start := time.Now()
	resp, err := g.node.client.GetMany(fctx, owner.addr, transport.GetManyRequest{Group: g.name, Keys: keys})
	g.stats.fetchLatency.observe(time.Since(start))
	if err != nil {
		if ctx.Err() != nil {
			for _, k := range keys {
				results[k] = flightResult{err: ctxErr(ctx, "get-many", k)}
			}
			return results
		}
		g.stats.peerErrors.Add(1)
		g.stats.fallbacks.Add(uint64(len(keys)))
		g.log.Debug("meshcache: owner unreachable; loading here", "keys", len(keys), "owner", owner.name, "err", err)
		if unreachable(err) && owner.ctx.Err() == nil {
			g.node.suspect(owner.name) // the next calls go to its stand-ins
		}
		return g.loadMissing(ctx, keys, local.Hot)
	}
	asked := make(map[string]bool, len(keys))
	for _, k := range keys {
		asked[k] = true
	}
	for _, r := range resp.Results {
		if _, done := results[r.Key]; done || !asked[r.Key] {
			continue // not asked, or answered twice: ignore
		}
		err := r.Err
		if err == nil {
			err = g.checkFetched(r.Key, r.Value)
		}
		if err == nil {
			if r.TTL > 0 && fctx.Err() == nil && g.admitHot(r.Key) {
				g.store.Add(local.Hot, local.Put{Key: r.Key, Value: r.Value.Value, Tags: r.Tags, TTL: min(r.TTL, g.cfg.hotTTL), Since: since})
			}
			results[r.Key] = flightResult{value: r.Value.Value}
			continue
		}
		if err := g.ownerError(fctx, r.Key, owner, since, err); err != nil {
			results[r.Key] = flightResult{err: err}
		}
	}
	var retry []string
	for _, k := range keys {
		if _, ok := results[k]; !ok {
			retry = append(retry, k)
		}
	}
	if len(retry) > 0 {
		g.stats.fallbacks.Add(uint64(len(retry)))
		maps.Copy(results, g.loadMissing(ctx, retry, local.Hot))
	}
	return results
}

// maxFallbackLoads bounds the loads a GetMany runs at once when it falls
// back for an owner it could not reach.
const maxFallbackLoads = 16

// loadMissing loads keys here and stores them in tier: with one call of the
// batch loader if the group has one, else with one flight per key (load
// flights for Main; for a Hot fallback, plain loads in parallel). When ctx
// ends first, the keys not loaded yet get ctx's error.
func (g *Group) loadMissing(ctx context.Context, keys []string, tier local.Tier) map[string]flightResult {
	if g.cfg.batch != nil {
		return g.loadBatch(ctx, keys, true, tier)
	}
	results := make(map[string]flightResult, len(keys))
	if tier == local.Main || tier == local.StandIn {
		flights := make([]flight, len(keys))
		for i, k := range keys {
			flights[i] = g.startFlightTo(ctx, k, nil, tier == local.StandIn)
		}
		for i, k := range keys {
			results[k] = g.waitFlight(ctx, k, flights[i])
		}
		return results
	}
	type keyResult struct {
		key string
		flightResult
	}
	ch := make(chan keyResult, len(keys))
	sem := make(chan struct{}, maxFallbackLoads)
	spawn := func() {
		for _, k := range keys {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return // the caller gave up: load no more
			}
			if !g.node.goLoad(func() {
				defer func() { <-sem }()
				v, err := g.loadAndStore(ctx, k, tier)
				ch <- keyResult{k, flightResult{value: v, err: err}}
			}) {
				<-sem
				ch <- keyResult{k, flightResult{err: ErrClosed}}
			}
		}
	}
	if !g.node.goLoad(spawn) {
		return failAll(keys, ErrClosed)
	}
	for range keys {
		select {
		case r := <-ch:
			results[r.key] = r.flightResult
		case <-ctx.Done():
			for _, k := range keys {
				if _, ok := results[k]; !ok {
					results[k] = flightResult{err: ctxErr(ctx, "get-many", k)}
				}
			}
			return results
		}
	}
	return results
}

// loadManyUncached loads keys for one caller and stores nothing ([Bypass],
// [WithPassthrough]).
func (g *Group) loadManyUncached(ctx context.Context, keys []string) map[string]flightResult {
	if g.cfg.batch != nil {
		return g.loadBatch(ctx, keys, false, local.Main)
	}
	results := make(map[string]flightResult, len(keys))
	for _, k := range keys {
		v, err := g.loadUncached(ctx, k)
		results[k] = flightResult{value: v, err: err}
	}
	return results
}

// loadBatch loads keys with one call of the group's BatchLoader and, when
// store is set, stores the results in tier behind the same fence as a
// single load. A batch serves one caller: it does not join or start
// flights. Keys the loader did not return are not found.
func (g *Group) loadBatch(ctx context.Context, keys []string, store bool, tier local.Tier) map[string]flightResult {
	results := make(map[string]flightResult, len(keys))
	fail := func(err error) map[string]flightResult {
		maps.Copy(results, failAll(keys, err))
		return results
	}
	if !g.node.startLoad() {
		return fail(ErrClosed)
	}
	defer g.node.loads.Done()
	since := g.store.Seq()
	lctx, cancel := g.loadContext(ctx)
	defer cancel()
	var versions map[string]l2.Version // what the second level saw, for the write-back
	if store {
		if rs, ok := g.l2Read(lctx, keys); ok {
			versions = make(map[string]l2.Version, len(keys))
			var rest []string
			for i, k := range keys {
				if rs[i].Found {
					if v, ok := g.l2Found(lctx, k, rs[i], since, tier); ok {
						results[k] = flightResult{value: v}
						continue
					}
				}
				versions[k] = rs[i].Version
				rest = append(rest, k)
			}
			if keys = rest; len(keys) == 0 {
				return results
			}
		}
	}
	g.stats.batchLoads.Add(1)
	g.stats.loads.Add(uint64(len(keys)))
	start := time.Now()
	items, err := g.callBatchLoader(lctx, keys)
	g.stats.loadLatency.observe(time.Since(start))
	if err != nil {
		g.stats.loadErrors.Add(uint64(len(keys)))
		return fail(&loadFailure{what: fmt.Sprintf("load %d keys in group %s", len(keys), g.name), cause: err})
	}
	var back []l2.Item
	for _, k := range keys {
		it, ok := items[k]
		if !ok {
			if store {
				g.storeNotFound(lctx, k, since, tier)
			}
			results[k] = flightResult{err: g.notFound(k)}
			continue
		}
		if err := g.checkItem(k, it); err != nil {
			g.stats.loadErrors.Add(1)
			results[k] = flightResult{err: err}
			continue
		}
		if store {
			ttl, ok := g.storeLoaded(lctx, k, it, since, tier)
			if version, known := versions[k]; ok && known {
				back = append(back, l2.Item{Key: k, Value: it.Value, TTL: ttl, Tags: it.Tags, Version: version})
			}
		}
		results[k] = flightResult{value: it.Value}
	}
	g.l2WriteBack(lctx, back)
	return results
}

func (g *Group) callBatchLoader(ctx context.Context, keys []string) (items map[string]Item, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = g.panicked(fmt.Sprintf("batch of %d keys", len(keys)), p)
		}
	}()
	return g.cfg.batch.LoadMany(ctx, keys)
}

// failAll is the result of a batch that failed as a whole: err for every key.
func failAll(keys []string, err error) map[string]flightResult {
	results := make(map[string]flightResult, len(keys))
	for _, k := range keys {
		results[k] = flightResult{err: err}
	}
	return results
}
