package meshcache

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/ring"
)

// Suspects and stand-ins (DESIGN.md, "Failure semantics": the owner is
// silent).
//
// A peer that did not answer a request (nothing at all for FetchTimeout,
// or a refused connection) is suspect on this node: the Gets of its keys
// no longer wait for it. The lease heartbeats probe every member every
// heartbeat period; the first answer from a suspect takes it back, and
// otherwise the suspicion ends after suspectFor (then the next request
// tries the peer again); a failed heartbeat renews it. Either way the
// stand-in tiers are dropped when a suspicion ends.
//
// While the owner of a key is suspect, one stand-in loads it for the
// fleet: the key's owner in the ring without the suspects. Every node that
// suspects the same members derives the same stand-in, and it is also who
// owns the key once the suspects are declared dead. The stand-in keeps what
// it loaded in its stand-in tier (local.StandIn): written by phase 1 of
// every write like the main cache, served to peers like the main cache,
// kept at most the hot TTL, and dropped when a suspect answers again.

// suspectFor is how long a peer stays suspect without answering, in
// FetchTimeouts.
const suspectFor = 10

// suspects is a node's set of suspect peers.
type suspects struct {
	mu    sync.Mutex           // guards until
	until map[string]time.Time // suspect name -> end of its suspicion
	count atomic.Int32         // len(until): the read path's fast check
	// alt caches the ring without the suspects, for one ring and one set.
	alt atomic.Pointer[altRing]
}

// altRing is the ring cur without the members in names.
type altRing struct {
	cur   *ring.Ring
	names string // the suspects, sorted, joined by NUL
	r     *ring.Ring
}

// suspect makes name suspect on this node for suspectFor FetchTimeouts.
func (n *Node) suspect(name string) {
	s := &n.suspects
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = make(map[string]time.Time)
	}
	if _, ok := s.until[name]; !ok {
		n.log.Warn("meshcache: peer did not answer; its keys go to stand-ins", "peer", name)
	}
	s.until[name] = time.Now().Add(suspectFor * n.ccfg.fetchTimeout)
	s.count.Store(int32(len(s.until)))
}

// unsuspect takes name back after it answered. If it was suspect, every
// group drops its stand-in tier: the owner serves its keys again.
func (n *Node) unsuspect(name string) {
	s := &n.suspects
	if s.count.Load() == 0 {
		return
	}
	s.mu.Lock()
	_, was := s.until[name]
	delete(s.until, name)
	s.count.Store(int32(len(s.until)))
	s.mu.Unlock()
	if was {
		n.log.Info("meshcache: peer answers again; dropping what stood in for it", "peer", name)
		n.dropStandIns()
	}
}

// suspectNames returns the current suspects, sorted, dropping those whose
// suspicion ended.
func (n *Node) suspectNames() []string {
	s := &n.suspects
	if s.count.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	now := time.Now()
	var names []string
	ended := false
	for name, until := range s.until {
		if now.After(until) {
			delete(s.until, name)
			ended = true
			continue
		}
		names = append(names, name)
	}
	s.count.Store(int32(len(s.until)))
	s.mu.Unlock()
	if ended {
		// The owner gets its keys back: what stood in for it goes.
		n.dropStandIns()
	}
	slices.Sort(names)
	return names
}

// dropStandIns empties every group's stand-in tier.
func (n *Node) dropStandIns() {
	for _, g := range n.Groups() {
		g.store.Clear(local.StandIn)
	}
}

// stillSuspect renews the suspicion of name if it is suspect: a heartbeat
// to it failed.
func (n *Node) stillSuspect(name string) {
	s := &n.suspects
	if s.count.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.until[name]; ok {
		s.until[name] = time.Now().Add(suspectFor * n.ccfg.fetchTimeout)
	}
}

// isSuspect reports whether name is suspect on this node.
func (n *Node) isSuspect(name string) bool {
	return n.suspects.count.Load() > 0 && slices.Contains(n.suspectNames(), name)
}

// routeGet is route for a Get: the key's owner, or, while the owner is
// suspect, its stand-in (standIn set; p nil when the stand-in is this
// node).
func (n *Node) routeGet(key string) (p *peer, standIn bool) {
	rs := n.ring.Load()
	if rs == nil {
		return nil, false
	}
	owner := rs.cur.Owner(key)
	if owner == n.name {
		return nil, false
	}
	p = rs.peers[owner]
	if p == nil || n.suspects.count.Load() == 0 {
		return p, false
	}
	names := n.suspectNames()
	if !slices.Contains(names, owner) {
		return p, false
	}
	alt := n.altRing(rs, names)
	if alt == nil {
		return p, false
	}
	switch sub := alt.Owner(key); {
	case sub == n.name:
		return nil, true
	case rs.peers[sub] != nil:
		return rs.peers[sub], true
	}
	return p, false
}

// altRing returns rs's ring without names (the suspects), or nil when it
// cannot be built.
func (n *Node) altRing(rs *ringState, names []string) *ring.Ring {
	joined := strings.Join(names, "\x00")
	if a := n.suspects.alt.Load(); a != nil && a.cur == rs.cur && a.names == joined {
		return a.r
	}
	r := n.ringExcept(rs.cur.Members(), names...)
	if r == nil {
		return nil
	}
	n.suspects.alt.Store(&altRing{cur: rs.cur, names: joined, r: r})
	return r
}
