package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	cached := !cc.bypass && !g.cfg.passthrough
	seen := make(map[string]bool, len(keys))
	var missing []string
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if cc.refresh {
			g.fenceKeys([]string{k})
		} else if cached {
			if v, err, ok := g.lookup(k); ok {
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
	g.stats.misses.Add(uint64(len(missing)))
	if g.cfg.batch != nil {
		return g.loadBatch(ctx, missing, cached, out)
	}
	if !cached {
		return g.loadEachUncached(ctx, missing, out)
	}
	flights := make([]flight, len(missing))
	for i, k := range missing {
		flights[i] = g.startFlight(ctx, k)
	}
	var errs []error
	for i, k := range missing {
		r := g.waitFlight(ctx, k, flights[i])
		if r.err != nil && ctx.Err() != nil {
			errs = append(errs, r.err) // the caller gave up: one error, not one per key
			break
		}
		switch {
		case r.err == nil:
			if out != nil {
				out[k] = bytes.Clone(r.value)
			}
		case errors.Is(r.err, ErrNotFound):
		default:
			errs = append(errs, r.err)
		}
	}
	return errors.Join(errs...)
}

func (g *Group) loadEachUncached(ctx context.Context, keys []string, out map[string][]byte) error {
	var errs []error
	for _, k := range keys {
		v, err := g.loadUncached(ctx, k)
		switch {
		case err == nil:
			if out != nil {
				out[k] = v
			}
		case errors.Is(err, ErrNotFound):
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loadBatch loads keys with one call of the group's BatchLoader and, when
// store is set, stores the results behind the same fence as a single load.
// A batch serves one caller: it does not join or start flights.
func (g *Group) loadBatch(ctx context.Context, keys []string, store bool, out map[string][]byte) error {
	if !g.node.startLoad() {
		return ErrClosed
	}
	defer g.node.loads.Done()
	since := g.store.Seq()
	lctx, cancel := g.loadContext(ctx)
	defer cancel()
	g.stats.batchLoads.Add(1)
	g.stats.loads.Add(uint64(len(keys)))
	items, err := g.callBatchLoader(lctx, keys)
	if err != nil {
		g.stats.loadErrors.Add(uint64(len(keys)))
		return fmt.Errorf("meshcache: load %d keys in group %s: %w", len(keys), g.name, err)
	}
	var errs []error
	for _, k := range keys {
		it, ok := items[k]
		if !ok {
			if store {
				g.loadFailed(lctx, k, since, ErrNotFound)
			}
			continue
		}
		if err := g.checkItem(k, it); err != nil {
			g.stats.loadErrors.Add(1)
			errs = append(errs, err)
			continue
		}
		if store {
			g.storeLoaded(lctx, k, it, since)
		}
		if out != nil {
			// The value may be cached: the caller gets a copy.
			out[k] = bytes.Clone(it.Value)
		}
	}
	return errors.Join(errs...)
}

func (g *Group) callBatchLoader(ctx context.Context, keys []string) (items map[string]Item, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = g.panicked(fmt.Sprintf("batch of %d keys", len(keys)), p)
		}
	}()
	return g.cfg.batch.LoadMany(ctx, keys)
}
