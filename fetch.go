package meshcache

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// handoffTimeout bounds how long a new owner waits for a previous owner's
// answer before loading the key itself.
const handoffTimeout = time.Second

// peerContext returns a context for a request to p: ctx's values and
// deadline, ended also when p leaves the ring.
func peerContext(ctx context.Context, p *peer) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// fetch asks key's owner for its value and keeps it in the hot cache,
// behind the same fence as a load. It is called by the leader of a fetch
// flight. A transport failure, or an owner that cannot serve (unknown
// group, overloaded, other protocol), falls back to loading the key here
// into the hot cache only; a not-found or a loader error at the owner is
// the callers' answer.
func (g *Group) fetch(ctx context.Context, key string, owner *peer) ([]byte, Source, error) {
	if !g.node.startLoad() {
		return nil, SourceNone, ErrClosed
	}
	defer g.node.loads.Done()
	v, src, reached, err := g.fetchFrom(ctx, key, owner)
	if reached {
		return v, src, err
	}
	return g.fetchElsewhere(ctx, key, owner, err)
}

// fetchElsewhere is the rest of fetch when owner could not be reached or
// could not serve (err says why): the key's stand-in or this node loads it.
func (g *Group) fetchElsewhere(ctx context.Context, key string, owner *peer, err error) ([]byte, Source, error) {
	// The owner could not be reached: while it is suspect, its stand-in
	// (the same member for every node that suspects it) loads the key for
	// the fleet. Only when the stand-in cannot be reached either, or there
	// is none, is the key loaded here into the hot cache.
	if unreachable(err) && owner.ctx.Err() == nil {
		g.node.suspect(owner.name)
	}
	switch alt, standIn := g.node.routeGet(key); {
	case standIn && alt == nil:
		// The stand-in flight, shared with the peers that ask this node.
		g.stats.fallbacks.Add(1)
		// Waited under the flight's own context, not the caller's: this
		// runs in a fetch flight whose other waiters must not get the
		// leader's ctx error (the stand-in load is bounded by the load
		// timeout).
		r := g.waitFlight(context.WithoutCancel(ctx), key, g.startFlightTo(ctx, key, nil, true))
		return r.value, SourceFallback, r.err
	case standIn && alt != owner:
		if v, src, reached, err := g.fetchFrom(ctx, key, alt); reached {
			return v, src, err
		}
	}
	g.stats.fallbacks.Add(1)
	v, err := g.loadAndStore(ctx, key, local.Hot)
	return v, SourceFallback, err
}

// unreachable reports whether err says that a peer did not answer at all:
// silent for FetchTimeout, or its connection refused or broken. A peer that
// answered, even with an error, is not suspect.
func unreachable(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, transport.ErrPeerSilent) || errors.As(err, &opErr)
}

// fetchFrom asks p for key and keeps the answer in the hot cache, behind
// the same fence as a load. reached is false when p could not be reached
// or could not serve (unknown group, overloaded, other protocol): the
// caller falls back, and err says why. A not-found or a loader error at p
// is the callers' answer, with reached set.
func (g *Group) fetchFrom(ctx context.Context, key string, p *peer) (v []byte, src Source, reached bool, err error) {
	since := g.store.Seq()
	g.stats.peerFetches.Add(1)
	req := transport.GetRequest{Group: g.name, Key: key}
	if g.node.tracing.on(ctx) {
		// ctx gives the trace only: the request runs under p.ctx.
		var span trace.Span
		ctx, span = g.node.tracing.start(ctx, "meshcache.fetch", trace.SpanKindClient, attrGroup.String(g.name), attrPeer.String(p.name))
		defer func() { end(span, err) }()
		req.Trace = g.node.tracing.inject(ctx)
	}
	// The request runs under p.ctx, which ends when p leaves or this node
	// closes, bounded by the load timeout with the transport's pooled
	// timer: no context to allocate per fetch.
	start := time.Now()
	resp, err := g.node.client.GetWithin(p.ctx, p.addr, req, g.cfg.loadTimeout)
	return g.fetched(key, p, since, start, resp, err)
}

// fetched handles p's answer (resp or err) to a request for key sent at
// start, with the fence since taken before: see fetchFrom.
func (g *Group) fetched(key string, p *peer, since uint64, start time.Time, resp transport.GetResponse, err error) (v []byte, src Source, reached bool, _ error) {
	elapsed := time.Since(start)
	g.stats.fetchLatency.observe(elapsed)
	if err == nil {
		err = g.checkFetched(key, resp.Value)
	}
	// A fetch that outlived the load timeout stores nothing (the fences'
	// rule, see storeLoaded).
	inTime := elapsed < g.cfg.loadTimeout && p.ctx.Err() == nil
	if err == nil && resp.TTL < 0 {
		// p answered a stale value (its load failed, or it is
		// revalidating): the callers get it, nothing is stored.
		return resp.Value.Value, SourceStale, true, nil
	}
	if err == nil {
		if resp.TTL > 0 && inTime && g.admitHot(key) {
			g.store.Add(local.Hot, local.Put{Key: key, Value: resp.Value.Value, Tags: resp.Tags, TTL: min(resp.TTL, g.cfg.hotTTL), Since: since})
		}
		return resp.Value.Value, SourcePeer, true, nil
	}
	if oerr := g.ownerError(p.ctx, key, p, since, err); oerr != nil {
		return nil, SourcePeer, true, oerr
	}
	return nil, SourceNone, false, err
}

// admitHot reports whether a value of key fetched from its owner is to be
// copied into the hot cache (see [WithHotAdmission]), counting the values
// that are not. Skipping a copy is always safe: the next Get fetches again.
func (g *Group) admitHot(key string) bool {
	if g.hotAdmit == nil || g.hotAdmit.admit(key) {
		return true
	}
	g.stats.hotSkipped.Add(1)
	return false
}

// admitter is the hot cache's admission policy: a value fetched from its
// owner is copied at the key's second fetch within a window of recent
// fetches, not at its first. A key read once (most of the keys of a
// long-tailed workload) then costs no copy and evicts no hotter key; a key
// read often is copied at its second fetch, and again at once after an
// eviction while it is remembered.
//
// It remembers keys as two bits each in a fixed bit array, indexed by the
// key's hash, and clears the array after window first fetches: its memory
// does not grow with the number of keys or the rate of fetches. With
// window an eighth of the bits, at most a quarter of them are set, so at
// most about one first fetch in 20 finds both its bits set by other keys
// and is copied, as it would be without the policy. It is safe for concurrent
// use; a clear racing with a fetch may forget or keep that one key.
type admitter struct {
	bits   []atomic.Uint64
	mask   uint64 // of a bit index
	window int64  // first fetches between clears
	seen   atomic.Int64
}

// Bounds of an admitter's bit array: 512 bytes to 16 MiB.
const (
	minAdmitBits = 1 << 12
	maxAdmitBits = 1 << 27
)

// newAdmitter returns the admitter of a hot cache bounded to hotBytes: one
// bit per 16 bytes of the bound, a power of two within the bounds (0.8% of
// the bound, 64 KiB for the default 8 MiB). The window, an eighth of the
// bits (one first fetch per 128 bytes of the bound), is then at least as
// many fetches as the hot cache holds entries of any size (each is charged
// [local.EntryOverhead] bytes and more): a key is copied when it comes back
// before the hot cache could have been filled since its first fetch.
func newAdmitter(hotBytes int64) *admitter {
	n := uint64(min(max(hotBytes/16, minAdmitBits), maxAdmitBits))
	n = 1 << bits.Len64(n-1) // rounded up to a power of two
	return &admitter{bits: make([]atomic.Uint64, n/64), mask: n - 1, window: int64(n / 8)}
}

// admit reports whether key was fetched before within the window, and
// remembers this fetch.
func (a *admitter) admit(key string) bool {
	h := xxhash.Sum64String(key)
	i, j := h&a.mask, (h>>32)&a.mask
	wi, bi := &a.bits[i/64], uint64(1)<<(i%64)
	wj, bj := &a.bits[j/64], uint64(1)<<(j%64)
	if wi.Load()&bi != 0 && wj.Load()&bj != 0 {
		return true
	}
	wi.Or(bi)
	wj.Or(bj)
	if a.seen.Add(1) == a.window {
		for k := range a.bits {
			a.bits[k].Store(0)
		}
		a.seen.Store(0)
	}
	return false
}

// ownerError returns the callers' error for an owner's answer err to a
// request for key: a not-found (cached in the hot tier when the group
// caches them) or a loader error. It returns nil for a failure to reach or
// use the owner, which the caller falls back on (and counts, in Fallbacks,
// when it loads the key itself).
func (g *Group) ownerError(ctx context.Context, key string, owner *peer, since uint64, err error) error {
	switch {
	case errors.Is(err, transport.ErrNotFound):
		g.storeNotFound(ctx, key, since, local.Hot)
		return g.notFound(key)
	case errors.Is(err, transport.ErrLoader):
		return g.ownerLoadError(key, owner.name, err)
	}
	g.stats.peerErrors.Add(1)
	g.log.Debug("meshcache: owner unreachable", "key", key, "owner", owner.name, "err", err)
	return nil
}

// checkFetched reports a value from a peer that this group could not have
// stored itself.
func (g *Group) checkFetched(key string, v transport.Value) error {
	if len(v.Value) > g.cfg.maxValueBytes {
		return fmt.Errorf("meshcache: fetch %q: value of %d bytes over %d: %w", key, len(v.Value), g.cfg.maxValueBytes, transport.ErrBadRequest)
	}
	for _, t := range v.Tags {
		if err := checkTag(t); err != nil {
			return fmt.Errorf("meshcache: fetch %q: %w: %w", key, transport.ErrBadRequest, err)
		}
	}
	return nil
}

// handoff asks key's previous owner for it, when the last membership change
// made this node its owner (within the group's TTL of that change), and
// stores what it gets in the main cache. The value is stored with the
// oldest possible fence: it is dropped when the key has a live tombstone
// (rarely, a key sharing its fence bucket does),
// or one of its tags a live generation, here (the previous owner may not
// have seen that invalidation yet), and hand-off is skipped while a clear
// of the group is younger than the tombstone lifetime.
func (g *Group) handoff(ctx context.Context, key string) ([]byte, bool) {
	n := g.node
	rs := n.ring.Load()
	if rs == nil || rs.prev == nil || n.ccfg.disableHandoff || rs.cur.Owner(key) != n.name {
		return nil, false
	}
	if time.Since(time.Unix(0, n.changed.Load())) > g.cfg.ttl {
		return nil, false // whatever the previous owner held has expired since
	}
	p := rs.peers[rs.prev.Owner(key)]
	if p == nil || n.isSuspect(p.name) {
		return nil, false // it was us, it is gone, or it does not answer
	}
	// The fence: the oldest possible, so that any live tombstone or tag
	// generation drops the value; but a clear is never pruned, so after one
	// the fence is the clear, once every record older than it has expired.
	var since uint64
	if c := g.lastClear.Load(); c != nil {
		if time.Since(c.at) < g.tombstoneTTL() {
			return nil, false
		}
		since = c.seq
	}
	hctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	hctx, cancelPeer := peerContext(hctx, p)
	defer cancelPeer()
	resp, err := n.client.Peek(hctx, p.addr, transport.PeekRequest{Group: g.name, Key: key})
	if err != nil && unreachable(err) && p.ctx.Err() == nil {
		n.suspect(p.name)
	}
	switch {
	case resp.TTL == wireNoExpiry:
		resp.TTL = NoExpiry // none at the previous owner, none here (min keeps it)
	case resp.TTL <= 0:
		return nil, false // not to be cached, or a stale answer
	}
	if err != nil || !resp.Found || g.checkFetched(key, resp.Value) != nil || ctx.Err() != nil {
		return nil, false
	}
	if !g.store.Add(local.Main, local.Put{Key: key, Value: resp.Value.Value, Tags: resp.Tags, TTL: min(resp.TTL, g.cfg.ttl), Since: since}) {
		return nil, false
	}
	g.stats.handoffs.Add(1)
	return resp.Value.Value, true
}
