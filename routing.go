package meshcache

import (
	"context"
	"slices"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/peers"
	"github.com/meshcache/meshcache/ring"
	"github.com/meshcache/meshcache/transport"
)

// A peer is another alive member this node routes keys to. Its ctx ends
// when the member leaves the ring or this node closes, so requests in
// flight to it give up at once instead of waiting out their timeouts.
type peer struct {
	name, addr string
	inc        uint64 // the member's incarnation (see peers.Member)
	ctx        context.Context
	cancel     context.CancelFunc
}

// ringState is an immutable routing snapshot, swapped atomically on every
// membership change: the read path takes no lock.
type ringState struct {
	cur   *ring.Ring
	prev  *ring.Ring // the ring before the last change of members, for hand-off
	peers map[string]*peer
	// members are the alive members, this node included, sorted by name;
	// view is their digest (see viewDigest), carried by writes.
	members []transport.Member
	view    uint64
}

// route returns the peer owning key, or nil when this node owns it (or
// runs standalone).
func (n *Node) route(key string) *peer {
	rs := n.ring.Load()
	if rs == nil {
		return nil
	}
	owner := rs.cur.Owner(key)
	if owner == n.name {
		return nil
	}
	return rs.peers[owner]
}

// onChange rebuilds the routing snapshot from the alive members. peers
// calls it in order from one goroutine.
func (n *Node) onChange(members []peers.Member) {
	n.ringMu.Lock()
	defer n.ringMu.Unlock()
	old := n.ring.Load()
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	next := &ringState{peers: make(map[string]*peer, len(members))}
	next.members = make([]transport.Member, len(members))
	for i, m := range members {
		next.members[i] = transport.Member{Name: m.Name, RPCAddr: m.RPCAddr, Incarnation: m.Incarnation}
	}
	next.view = viewDigest(next.members)
	switch {
	case old != nil && slices.Equal(old.cur.Members(), names):
		next.cur, next.prev = old.cur, old.prev // an address changed, not the members
	default:
		r, err := ring.New(names, n.ccfg.ring)
		if err != nil {
			n.log.Error("meshcache: cannot build the ring for the new members; routing with the previous one", "members", len(names), "err", err)
			if old == nil {
				return
			}
			next.cur, next.prev = old.cur, old.prev
			break
		}
		next.cur = r
		switch {
		case !n.isReady():
			// This node is still joining: it hears of the members one by
			// one, so its own earlier snapshots are partial views that no
			// one routed by. Before it joined, the cluster routed by the
			// ring of the others.
			next.prev = n.ringWithout(names)
		case old != nil:
			next.prev = old.cur
		}
		n.log.Info("meshcache: ring changed", "members", len(names))
	}
	for _, m := range members {
		if m.Name == n.name || m.RPCAddr == "" {
			continue
		}
		if old != nil {
			if p := old.peers[m.Name]; p != nil && p.addr == m.RPCAddr && p.inc == m.Incarnation {
				next.peers[m.Name] = p
				continue
			}
		}
		ctx, cancel := context.WithCancel(n.closing)
		next.peers[m.Name] = &peer{name: m.Name, addr: m.RPCAddr, inc: m.Incarnation, ctx: ctx, cancel: cancel}
	}
	n.ring.Store(next)
	n.changed.Store(time.Now().UnixNano())
	if old != nil {
		for name, p := range old.peers {
			if next.peers[name] != p {
				p.cancel()
				n.client.Forget(p.addr)
			}
		}
	}
}

// isReady reports whether n.ready is closed.
func (n *Node) isReady() bool {
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

// ringWithout returns the ring of names without this node, or nil when
// that leaves no member or the ring cannot be built.
func (n *Node) ringWithout(names []string) *ring.Ring {
	return n.ringExcept(names, n.name)
}

// ringExcept returns the ring of names without those in drop, or nil when
// that leaves no member or the ring cannot be built.
func (n *Node) ringExcept(names []string, drop ...string) *ring.Ring {
	others := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return slices.Contains(drop, s) })
	if len(others) == 0 {
		return nil
	}
	r, err := ring.New(others, n.ccfg.ring)
	if err != nil {
		return nil
	}
	return r
}

// settle closes n.ready once membership has not changed for a settle
// period (bounded: a cluster that keeps changing is ready after 20
// periods anyway) and the node holds its lease.
func (n *Node) settle() {
	period := n.ccfg.settle
	deadline := time.Now().Add(20 * period)
	t := time.NewTicker(period / 4)
	defer t.Stop()
	for {
		select {
		case <-n.closing.Done():
			return
		case now := <-t.C:
			quiet := now.Sub(time.Unix(0, n.changed.Load())) >= period
			if (quiet || now.After(deadline)) && n.ring.Load() != nil && n.leased() {
				close(n.ready)
				n.log.Info("meshcache: node ready", "members", n.ring.Load().cur.Len(),
					"gossip", n.GossipAddr(), "rpc", n.RPCAddr())
				return
			}
		}
	}
}

// onCutOff flushes every group: this node may have missed invalidations
// while it could not reach its peers. The hot copies may be stale, and so
// may the main cache: while the others took this node for dead, they sent
// their invalidations to the members left, and another node owned (and
// reloaded) this node's keys.
func (n *Node) onCutOff() {
	n.log.Warn("meshcache: this node was cut off from the cluster; flushing its caches")
	n.flush()
}

// flush drops every group's entries, both tiers, and fences what is in
// flight.
func (n *Node) flush() {
	for _, g := range n.Groups() {
		g.cleared(g.store.Clear(local.All))
		g.epoch.Add(1)
	}
}
