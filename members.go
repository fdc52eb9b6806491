package meshcache

import "github.com/meshcache/meshcache/peers"

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name       string
	GossipAddr string // host:port of its gossip (memberlist) listener
	RPCAddr    string // host:port of its peer transport
	State      MemberState
}

// MemberState is a member's liveness as this node sees it.
type MemberState uint8

// String returns "alive", "suspect", "dead", "left" or "state(N)".
func (s MemberState) String() string { return peers.State(s).String() }

// Owner returns the name of the member owning key in this node's current
// view of the ring: this node's own name when it runs standalone.
func (n *Node) Owner(key string) string {
	rs := n.ring.Load()
	if rs == nil {
		return n.name
	}
	if o := rs.cur.Owner(key); o != "" {
		return o
	}
	return n.name
}

// Members returns the alive members, this node included, sorted by name.
// A standalone node lists itself.
func (n *Node) Members() []Member {
	if n.cluster == nil {
		return []Member{{Name: n.name, RPCAddr: "", State: MemberAlive}}
	}
	ms := n.cluster.Members()
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Name: m.Name, GossipAddr: m.GossipAddr, RPCAddr: m.RPCAddr, State: MemberState(m.State)}
	}
	return out
}

// Ready returns a channel closed once the node has joined its cluster, its
// ring has settled (no membership change for a moment) and it holds its
// lease (see [Node.IsReady]), or once the node closed. A standalone node is
// ready at once.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// IsReady reports whether the node is ready now: Ready has closed, the node
// is not closed, and it holds its lease, that is, it knows that the
// cluster's writes still reach it (see "Membership and restarts" in the
// package doc). Unlike Ready, it can go false again: while a node is cut
// off from a majority of the cluster, or was paused for longer than its
// lease, it serves callers by loading directly and reports false.
func (n *Node) IsReady() bool {
	return n.isReady() && !n.closed.Load() && n.leased()
}

// GossipAddr returns the bound gossip address (host:port), or "" for a
// standalone node.
func (n *Node) GossipAddr() string {
	if n.cluster == nil {
		return ""
	}
	return n.cluster.GossipAddr()
}

// RPCAddr returns the bound peer transport address (host:port), or "" for
// a standalone node.
func (n *Node) RPCAddr() string {
	if n.server == nil {
		return ""
	}
	return n.server.Addr()
}

// Partitions returns, for each member, how many of the ring's partitions
// it owns. A standalone node has no ring: it maps its own name to 0.
func (n *Node) Partitions() map[string]int {
	rs := n.ring.Load()
	if rs == nil {
		return map[string]int{n.name: 0}
	}
	return rs.cur.Distribution()
}

// PartitionOwners returns the owner of each partition of the ring, indexed
// by partition, or nil for a standalone node.
func (n *Node) PartitionOwners() []string {
	rs := n.ring.Load()
	if rs == nil {
		return nil
	}
	return rs.cur.PartitionOwners()
}

// Member states. [Node.Members] lists the members that are alive.
const (
	MemberAlive MemberState = iota
	MemberSuspect
	MemberDead
	MemberLeft
)
