package meshcache

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// Stale answers (WithStaleIfError, WithStaleWhileRevalidate).
//
// The store keeps an entry for the longer of the two windows after its TTL
// ran out ([local.Config.StaleFor]); Get reports it absent, GetStale returns
// it while no write removed it: an invalidation, a tag generation, a Clear,
// a replacement or an Expire each remove it, so a stale answer is never a
// value that a write removed, and the fences are those of any entry.
//
// A key's owner decides for the fleet: a node that does not own the key
// asks the owner, which answers a stale value with a negative TTL (see
// staleTTL); the asker returns it without storing it. Only a node whose
// owner cannot be reached and whose fallback load fails serves its own hot
// copy stale.

// staleRetry is how often, at most, a key served stale after a failed load
// is loaded again on one node: at its owner, that is about once for the
// fleet.
const staleRetry = time.Second

// staleTTL is the TTL of a stale value on the wire: negative, so that the
// asker knows it is stale and does not store it.
const staleTTL = -time.Nanosecond

// maxFailures bounds the keys whose last failed load a group remembers.
const maxFailures = 4096

// staleEntry returns key's expired entry kept for the stale options (main
// cache first, then, with hot set, the hot cache: a node answers peers only
// from its main cache) and how long ago it expired.
func (g *Group) staleEntry(key string, hot bool) (local.Entry, time.Duration, bool) {
	if g.cfg.staleFor() == 0 {
		return local.Entry{}, 0, false
	}
	e, ok := g.store.GetStale(local.Main, key)
	if !ok && hot {
		e, ok = g.store.GetStale(local.Hot, key)
	}
	if !ok {
		return local.Entry{}, 0, false
	}
	if e.Negative {
		return local.Entry{}, 0, false
	}
	return e, max(time.Since(e.Expires), 0), true
}

// staleBeforeLoad returns a stale value of key to answer at once, before
// any load: within the stale-while-revalidate window (starting a background
// refresh), or within the stale-if-error window while the key's last load
// failed less than staleRetry ago. The value is shared with the store.
func (g *Group) staleBeforeLoad(key string, hot bool) ([]byte, bool) {
	e, lapse, ok := g.staleEntry(key, hot)
	if !ok {
		return nil, false
	}
	switch {
	case lapse < g.cfg.staleWhileRevalidate:
		if !g.recentlyFailed(key) {
			g.revalidate(key)
		}
	case lapse < g.cfg.staleIfError && g.recentlyFailed(key):
	default:
		return nil, false
	}
	return e.Value, true
}

// staleAfterError returns a stale value of key to answer instead of err,
// the error of its load: within the stale-if-error window, when err is a
// failure (not a not-found, not the caller giving up). It records the
// failure, which spaces the next loads of the key. The value is shared
// with the store.
func (g *Group) staleAfterError(ctx context.Context, key string, err error, hot bool) ([]byte, bool) {
	if g.cfg.staleIfError == 0 || err == nil || errors.Is(err, ErrNotFound) || ctx.Err() != nil {
		return nil, false
	}
	g.failed(key)
	e, lapse, ok := g.staleEntry(key, hot)
	if !ok || lapse >= g.cfg.staleIfError {
		return nil, false
	}
	return e.Value, true
}

// failed records that a load of key failed now.
func (g *Group) failed(key string) {
	g.failures.Add(key, time.Now().UnixNano())
}

// recentlyFailed reports whether a load of key failed less than staleRetry
// ago.
func (g *Group) recentlyFailed(key string) bool {
	at, ok := g.failures.Peek(key)
	return ok && time.Since(time.Unix(0, at)) < staleRetry
}

// revalidate starts one background refresh of key, unless one is in
// flight: a load here if this node owns the key, else a fetch from its
// owner (which loads it once for the fleet). A failed refresh is recorded
// like any failed load. The refresh runs under the group's load timeout and
// ends with the node.
func (g *Group) revalidate(key string) {
	n := g.node
	if !n.startLoad() {
		return
	}
	f := g.startFlight(context.Background(), key, n.route(key))
	if !f.leader {
		n.loads.Done()
		return
	}
	g.stats.revalidations.Add(1)
	go func() {
		defer n.loads.Done()
		select {
		case <-f.c.done:
			g.revalidated(key, f.c.res)
		case <-n.closing.Done():
		}
	}()
}

// revalidated handles the end of a background refresh of key. A failure is
// recorded, which spaces the next ones. A not-found means the key is gone:
// its expired entry must not be served any more. A refresh that stored
// nothing (NoStore, WithStoreIf, or the owner answered stale because it is
// refreshing itself) is spaced like a failure, so that a key read
// continuously does not send a request per Get.
func (g *Group) revalidated(key string, r flightResult) {
	switch {
	case errors.Is(r.err, ErrNotFound):
		g.dropExpired(key)
	case r.err != nil, r.src == SourceStale:
		g.failed(key)
	default:
		if _, src, _ := g.cached(key, local.All); src == SourceNone {
			g.failed(key)
		}
	}
}

// dropExpired removes key's expired entries kept for the stale options
// after its loader said it has no value: a not-found is an answer, never
// masked by a stale value. A cached not-found (WithNegativeTTL) already
// replaced them.
func (g *Group) dropExpired(key string) {
	if g.cfg.staleFor() > 0 && g.cfg.negativeTTL == 0 {
		g.store.Remove(local.All, key)
	}
}

// serveStaleBefore is the part of Get that serves a stale value before a
// load (stale-while-revalidate, or a key whose last load failed). It
// reports whether it answered.
func (g *Group) serveStaleBefore(key string, cc *callConfig) ([]byte, bool) {
	v, ok := g.staleBeforeLoad(key, true)
	return g.servedStale(v, ok, cc)
}

// serveStaleAfter is the part of Get that serves a stale value after the
// load failed with err. It reports whether it answered.
func (g *Group) serveStaleAfter(ctx context.Context, key string, cc *callConfig, err error) ([]byte, bool) {
	v, ok := g.staleAfterError(ctx, key, err, true)
	return g.servedStale(v, ok, cc)
}

// servedStale counts and reports a stale answer v, if ok, and returns the
// caller's copy.
func (g *Group) servedStale(v []byte, ok bool, cc *callConfig) ([]byte, bool) {
	if !ok {
		return nil, false
	}
	g.stats.staleServed.Add(1)
	cc.report(SourceStale, nil)
	return bytes.Clone(v), true
}

// staleWire is a stale value as the owner sends it to a peer.
func staleWire(v []byte) transport.Value {
	return transport.Value{Value: v, TTL: staleTTL}
}
