package meshcache

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	since := g.store.Seq()
	g.stats.peerFetches.Add(1)
	// The request runs under owner.ctx, which ends when the owner leaves or
	// this node closes, bounded by the load timeout with the transport's
	// pooled timer: no context to allocate per fetch.
	start := time.Now()
	resp, err := g.node.client.GetWithin(owner.ctx, owner.addr, transport.GetRequest{Group: g.name, Key: key}, g.cfg.loadTimeout)
	elapsed := time.Since(start)
	g.stats.fetchLatency.observe(elapsed)
	if err == nil {
		err = g.checkFetched(key, resp.Value)
	}
	// A fetch that outlived the load timeout stores nothing (the fences'
	// rule, see storeLoaded).
	inTime := elapsed < g.cfg.loadTimeout && owner.ctx.Err() == nil
	if err == nil {
		if resp.TTL > 0 && inTime {
			g.store.Add(local.Hot, key, resp.Value.Value, resp.Tags, min(resp.TTL, g.cfg.hotTTL), false, since)
		}
		return resp.Value.Value, SourcePeer, nil
	}
	if err := g.ownerError(owner.ctx, key, owner, since, err); err != nil {
		return nil, SourcePeer, err
	}
	v, err := g.loadAndStore(ctx, key, local.Hot)
	return v, SourceFallback, err
}

// ownerError returns the callers' error for an owner's answer err to a
// request for key: a not-found (cached in the hot tier when the group
// caches them) or a loader error. It returns nil for a failure to reach or
// use the owner, which the caller falls back on, counting it.
func (g *Group) ownerError(ctx context.Context, key string, owner *peer, since uint64, err error) error {
	switch {
	case errors.Is(err, transport.ErrNotFound):
		g.storeNotFound(ctx, key, since, local.Hot)
		return g.notFound(key)
	case errors.Is(err, transport.ErrLoader):
		return fmt.Errorf("meshcache: load %q in group %s at %s: %w: %w", key, g.name, owner.name, ErrLoadFailed, err)
	}
	g.stats.peerErrors.Add(1)
	g.stats.fallbacks.Add(1)
	g.log.Debug("meshcache: owner unreachable; loading here", "key", key, "owner", owner.name, "err", err)
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
// oldest possible fence: it is dropped when the key has a live tombstone,
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
	if p == nil {
		return nil, false // it was us, or it is gone
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
	if err != nil || !resp.Found || resp.TTL <= 0 || g.checkFetched(key, resp.Value) != nil || ctx.Err() != nil {
		return nil, false
	}
	if !g.store.Add(local.Main, key, resp.Value.Value, resp.Tags, min(resp.TTL, g.cfg.ttl), false, since) {
		return nil, false
	}
	g.stats.handoffs.Add(1)
	return resp.Value.Value, true
}
