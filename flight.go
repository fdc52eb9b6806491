package meshcache

import (
	"context"
	"fmt"
	"sync"

	"github.com/meshcache/meshcache/local"
)

// flightID names a flight: its kind, the group's epoch when it started,
// and its key. A struct key (instead of one string of the three) costs no
// allocation per lookup.
type flightID struct {
	kind  byte
	epoch uint64
	key   string
}

// A call is one flight. Its leader sets res, then closes done; waiters read
// res only after done is closed.
type call struct {
	done chan struct{}
	res  flightResult
}

// flightTable shares one call among the concurrent callers of a flightID,
// like x/sync/singleflight's DoChan but without its per-call channel,
// result boxing and string key: two allocations per flight, not eight.
type flightTable struct {
	mu sync.Mutex // guards m
	m  map[flightID]*call
}

// join returns id's call in flight and false, or a new call and true: the
// caller leads it and must call finish exactly once.
func (t *flightTable) join(id flightID) (*call, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.m[id]; c != nil {
		return c, false
	}
	if t.m == nil {
		t.m = make(map[flightID]*call)
	}
	c := &call{done: make(chan struct{})}
	t.m[id] = c
	return c, true
}

// finish hands r to c's waiters and lets later callers of id start a new
// call.
func (t *flightTable) finish(id flightID, c *call, r flightResult) {
	t.mu.Lock()
	if t.m[id] == c {
		delete(t.m, id)
	}
	t.mu.Unlock()
	c.res = r
	close(c.done)
}

// forget makes later callers of id start a new call; the one in flight
// still answers its waiters.
func (t *flightTable) forget(id flightID) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
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
	if leader && !g.node.goLoad(func() { g.runFlight(ctx, id, c, owner) }) {
		g.flights.finish(id, c, flightResult{err: ErrClosed})
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
	if v, src, err := g.cached(key, tiers); src != SourceNone {
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
		return flightResult{err: ctxErr(ctx, "get", key)}
	}
}

// ctxErr is the error of a call whose ctx ended: it wraps ctx.Err() and, if
// ctx was cancelled with a cause, the cause too.
func ctxErr(ctx context.Context, op, key string) error {
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
