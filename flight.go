package meshcache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
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
	done   chan struct{}
	res    flightResult
	joined bool // a caller other than the leader joined; guarded by the table's mu
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
		c.joined = true
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
// call. It reports whether any caller joined c: if none did, nobody but
// the leader ever sees r.
func (t *flightTable) finish(id flightID, c *call, r flightResult) (joined bool) {
	t.mu.Lock()
	if t.m[id] == c {
		delete(t.m, id)
	}
	joined = c.joined // final: c can no longer be joined (forget removed it, or this did)
	t.mu.Unlock()
	c.res = r
	close(c.done)
	return joined
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
// waiting when its ctx ends. (A Get leads a fetch flight on its own
// goroutine instead, with the same promise: see leadFetch.)
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
	g.settle(id, c, func() flightResult {
		key := id.key
		// Checked again: the flight of another caller that missed may have
		// stored its value and ended between this caller's miss and join;
		// without this check the key would load twice. A load flight may
		// serve peers: it never answers from a hot copy.
		tiers, tier := local.All, local.Main
		switch {
		case id.kind == standInFlight:
			tiers, tier = local.StandIn, local.StandIn
		case owner == nil:
			tiers = local.Main
		}
		if v, src, err := g.cached(key, tiers); src != SourceNone {
			return flightResult{value: v, err: err, src: src}
		}
		if owner == nil {
			v, err := g.loadAndStore(ctx, key, tier)
			return flightResult{value: v, err: err, src: SourceLoad}
		}
		v, src, err := g.fetch(ctx, key, owner)
		return flightResult{value: v, err: err, src: src}
	})
}

// settle hands the result of f to the waiters of the flight c, also when f
// panics or calls runtime.Goexit.
func (g *Group) settle(id flightID, c *call, f func() flightResult) {
	var r flightResult
	returned := false
	defer func() {
		if p := recover(); p != nil {
			r = flightResult{err: g.panicked(fmt.Sprintf("key %q", id.key), p)}
		} else if !returned {
			r = g.goexited(id.key)
		}
		g.flights.finish(id, c, r)
	}()
	r = f()
	returned = true
}

// goexited is the result of a flight whose goroutine ended in
// runtime.Goexit (called by the loader, or a validate function).
func (g *Group) goexited(key string) flightResult {
	g.log.Error("meshcache: loader called runtime.Goexit", "key", key)
	return flightResult{err: fmt.Errorf("meshcache: load %q in group %s: loader called runtime.Goexit: %w", key, g.name, ErrLoadFailed)}
}

// fetchShared returns key's value from owner for a Get: the caller joins
// the fetch flight of key in progress, or leads a new one on its own
// goroutine (see leadFetch). owned reports that the value is the caller's
// alone, a copy nobody else holds: it need not be copied again.
func (g *Group) fetchShared(ctx context.Context, key string, owner *peer) (r flightResult, owned bool) {
	id := g.flightID(fetchFlight, key)
	c, leader := g.flights.join(id)
	if !leader {
		return g.waitFlight(ctx, key, flight{c: c}), false
	}
	return g.leadFetch(ctx, id, c, owner)
}

// leadFetch runs the fetch flight c, which the caller leads, on the
// caller's goroutine: a remote hit needs no flight goroutine and no
// hand-off to and from one.
//
// A flight has a goroutine of its own so that every caller, the leader
// too, can stop waiting when its ctx ends, while the flight goes on for
// the others. A fetch keeps that promise without one: it is a request to
// the owner bounded by the owner's context and the load timeout, not by
// the leader's ctx, and the leader waits for the answer or its ctx,
// whichever comes first (transport.Client.GetOrLeave). When its ctx ends
// first, the leader returns its ctx error and a goroutine takes the
// request over and finishes the flight, as the flight's goroutine would
// have. When the owner cannot serve, the rest (a stand-in, or a load
// here, as long as a load) also runs on a goroutine, which the leader
// waits for like any waiter. The waiters see no difference, and the fence
// is the same: since is taken before the request is sent.
//
// Traced Gets take the flight goroutine (startFlight), whose fetch has a
// span.
func (g *Group) leadFetch(ctx context.Context, id flightID, c *call, owner *peer) (r flightResult, owned bool) {
	key := id.key
	handed := false  // a goroutine finishes the flight (and ends the load)
	loading := false // a load of the node's, which this function ends
	returned := false
	defer func() {
		if handed {
			return
		}
		if loading {
			g.node.loads.Done()
		}
		if p := recover(); p != nil { // a validate function, or a logger, panicked
			r = flightResult{err: g.panicked(fmt.Sprintf("key %q", key), p)}
		} else if !returned {
			r = g.goexited(key)
		}
		owned = !g.flights.finish(id, c, r) && r.err == nil
	}()
	// Checked again, as in runFlight.
	if v, src, err := g.cached(key, local.All); src != SourceNone {
		r, returned = flightResult{value: v, err: err, src: src}, true
		return r, false
	}
	if !g.node.startLoad() {
		r, returned = flightResult{err: ErrClosed}, true
		return r, false
	}
	// From here on this flight is a load of the node's (Close waits for
	// it), until the end of the goroutine that finishes it, if any.
	loading = true
	since := g.store.Seq()
	g.stats.peerFetches.Add(1)
	start := time.Now()
	req := transport.GetRequest{Group: g.name, Key: key}
	resp, pending, err := g.node.client.GetOrLeave(owner.ctx, owner.addr, req, g.cfg.loadTimeout, ctx.Done())
	if pending != nil {
		handed = true
		g.finishFetch(ctx, id, c, owner, since, start, pending)
		return flightResult{err: ctxErr(ctx, "get", key)}, false
	}
	v, src, reached, err := g.fetched(key, owner, since, start, resp, err)
	if !reached {
		handed = true
		g.fetchElsewhereFor(ctx, id, c, owner, err)
		return g.waitFlight(ctx, key, flight{c: c, leader: true}), false
	}
	r, returned = flightResult{value: v, err: err, src: src}, true
	return r, false
}

// finishFetch finishes the fetch flight c on a goroutine, once the answer
// to its request comes, for a leader that stopped waiting. The flight is
// a load of the node's already: the goroutine ends it.
func (g *Group) finishFetch(ctx context.Context, id flightID, c *call, owner *peer, since uint64, start time.Time, pending *transport.PendingGet) {
	go func() {
		defer g.node.loads.Done()
		g.settle(id, c, func() flightResult {
			resp, err := pending.Wait(owner.ctx)
			v, src, reached, err := g.fetched(id.key, owner, since, start, resp, err)
			if !reached {
				v, src, err = g.fetchElsewhere(ctx, id.key, owner, err)
			}
			return flightResult{value: v, err: err, src: src}
		})
	}()
}

// fetchElsewhereFor finishes the fetch flight c on a goroutine with
// fetchElsewhere, for a leader whose request owner could not serve (err).
// The flight is a load of the node's already: the goroutine ends it.
func (g *Group) fetchElsewhereFor(ctx context.Context, id flightID, c *call, owner *peer, err error) {
	go func() {
		defer g.node.loads.Done()
		g.settle(id, c, func() flightResult {
			v, src, err := g.fetchElsewhere(ctx, id.key, owner, err)
			return flightResult{value: v, err: err, src: src}
		})
	}()
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
