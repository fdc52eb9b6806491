package meshcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/peers"
	"github.com/meshcache/meshcache/ring"
	"github.com/meshcache/meshcache/transport"
)

// GossipConfig selects memberlist's timing preset for a node's gossip.
type GossipConfig uint8

// Gossip timing presets.
const (
	// GossipLAN is memberlist's LAN preset: probes every second, failure
	// detection in a few seconds. The zero value.
	GossipLAN GossipConfig = iota
	// GossipLocal is memberlist's local preset: fast timings for clusters on
	// one host (tests, demos).
	GossipLocal
	// GossipWAN is memberlist's WAN preset: slow, tolerant timings.
	GossipWAN
)

// String returns "lan", "local", "wan" or "gossip(N)".
func (c GossipConfig) String() string {
	switch c {
	case GossipLAN:
		return "lan"
	case GossipLocal:
		return "local"
	case GossipWAN:
		return "wan"
	}
	return "gossip(" + strconv.Itoa(int(c)) + ")"
}

func (c GossipConfig) profile() (peers.Profile, time.Duration, error) {
	switch c {
	case GossipLAN:
		return peers.ProfileLAN, time.Second, nil
	case GossipLocal:
		return peers.ProfileLocal, 200 * time.Millisecond, nil
	case GossipWAN:
		return peers.ProfileWAN, 5 * time.Second, nil
	}
	return 0, 0, fmt.Errorf("meshcache: GossipConfig %v: %w", c, ErrInvalidOption)
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name       string
	GossipAddr string // host:port of its gossip (memberlist) listener
	RPCAddr    string // host:port of its peer transport
	State      MemberState
}

// MemberState is a member's liveness as this node sees it.
type MemberState uint8

// Member states. [Node.Members] lists the members that are alive.
const (
	MemberAlive MemberState = iota
	MemberSuspect
	MemberDead
	MemberLeft
)

// String returns "alive", "suspect", "dead", "left" or "state(N)".
func (s MemberState) String() string { return peers.State(s).String() }

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

// clusterConfig is the part of Config a clustered node keeps.
type clusterConfig struct {
	ring            ring.Config
	settle          time.Duration
	writeTimeout    time.Duration
	fetchTimeout    time.Duration
	handOverTimeout time.Duration
	handOverBytes   int64
	disableHandoff  bool
	lease           leaseTimings
}

// fingerprint names what members must agree on: the root's wire protocol,
// the ring's settings, and whether the peer transport uses TLS. A member
// without TLS cannot talk to one with it, and must not own keys of a
// cluster that uses TLS: the others would fall back on all of them.
// Without TLS the fingerprint is what it was before TLS took part, so
// that such clusters can upgrade one node at a time.
func fingerprint(rc ring.Config, secure bool) string {
	fp := "meshcache/" + strconv.Itoa(int(transport.ProtocolVersion)) + "/" + rc.Fingerprint()
	if secure {
		fp += "/tls"
	}
	return fp
}

// startCluster starts the peer transport and joins the cluster. On error
// it stops what it started.
func (n *Node) startCluster(cfg Config) (err error) {
	profile, settle, err := cfg.GossipConfig.profile()
	if err != nil {
		return err
	}
	timings := leaseProfiles[cfg.GossipConfig]

	rc := ring.Config{Partitions: cfg.Partitions, LoadFactor: cfg.LoadFactor}
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("meshcache: ring settings: %w: %w", ErrInvalidOption, err)
	}
	if cfg.FetchTimeout < 0 {
		return fmt.Errorf("meshcache: FetchTimeout %v: %w", cfg.FetchTimeout, ErrInvalidOption)
	}
	if cfg.WriteTimeout < 0 {
		return fmt.Errorf("meshcache: WriteTimeout %v: %w", cfg.WriteTimeout, ErrInvalidOption)
	}
	if cfg.TLS != nil && len(cfg.SecretKey) == 0 {
		return fmt.Errorf("meshcache: TLS without SecretKey: %w: gossip carries membership and writes, "+
			"so a cluster that secures its peer transport must encrypt and authenticate its gossip too", ErrInvalidOption)
	}
	n.ccfg = clusterConfig{
		ring:            rc,
		settle:          settle,
		writeTimeout:    cfg.WriteTimeout,
		fetchTimeout:    cmp.Or(cfg.FetchTimeout, DefaultFetchTimeout),
		handOverTimeout: cmp.Or(cfg.HandOverTimeout, DefaultHandOverTimeout),
		handOverBytes:   cmp.Or(cfg.HandOverBytes, DefaultHandOverBytes),
		disableHandoff:  cfg.DisableHandoff,
		lease:           timings,
	}
	if n.ccfg.writeTimeout == 0 {
		n.ccfg.writeTimeout = DefaultWriteTimeout
	}
	rpcAddr := cfg.RPCAddr
	if rpcAddr == "" {
		host, _, err := net.SplitHostPort(cfg.BindAddr)
		if err != nil {
			return fmt.Errorf("meshcache: BindAddr %q: %w: %w", cfg.BindAddr, ErrInvalidOption, err)
		}
		rpcAddr = net.JoinHostPort(host, "0")
	}
	if cfg.MaxFrameBytes < 0 {
		return fmt.Errorf("meshcache: MaxFrameBytes %d: %w", cfg.MaxFrameBytes, ErrInvalidOption)
	}
	// The handlers use the lease and the incarnation: both exist before
	// the server starts. A node that starts a new cluster is its own base.
	if n.inc, err = peers.NewIncarnation(); err != nil {
		return err
	}
	n.lease = newLease(timings, cfg.MinorityServes)
	if len(cfg.Join) == 0 {
		n.lease.mu.Lock()
		n.lease.setBaseLocked([]string{n.name})
		n.lease.mu.Unlock()
	}
	n.server, err = transport.NewServer(transport.ServerConfig{
		Addr:          rpcAddr,
		TLS:           cfg.TLS,
		MaxFrameBytes: cfg.MaxFrameBytes,
		Logger:        n.log,
	}, handler{n})
	if err != nil {
		return fmt.Errorf("meshcache: peer transport: %w: %w", ErrInvalidOption, err)
	}
	ccfg := transport.ClientConfig{TLS: cfg.TLS, MaxFrameBytes: cfg.MaxFrameBytes, Logger: n.log, SilenceTimeout: n.ccfg.fetchTimeout}
	if err := ccfg.Validate(); err != nil {
		n.server.Close()
		return fmt.Errorf("meshcache: peer transport: %w: %w", ErrInvalidOption, err)
	}
	n.client = transport.NewClient(ccfg)
	defer func() {
		if err != nil {
			n.server.Close()
			n.client.Close()
		}
	}()
	advertised, err := advertiseRPC(n.server.Addr(), cfg.AdvertiseAddr)
	if err != nil {
		return err
	}
	n.cluster, err = peers.Join(context.Background(), peers.Config{
		Name:          n.name,
		BindAddr:      cfg.BindAddr,
		AdvertiseAddr: cfg.AdvertiseAddr,
		RPCAddr:       advertised,
		Fingerprint:   fingerprint(rc, cfg.TLS != nil),
		Join:          cfg.Join,
		JoinTimeout:   cfg.JoinTimeout,
		Incarnation:   n.inc,
		SecretKey:     cfg.SecretKey,
		Profile:       profile,
		Logger:        n.baseLog, // peers adds the node's name itself
		OnChange:      n.onChange,
		OnMessage:     n.onMessage,
		OnCutOff:      n.onCutOff,
	})
	if err != nil {
		switch {
		case errors.Is(err, peers.ErrIncompatible):
			return fmt.Errorf("meshcache: join: %w: %w: %w", ErrJoin, ErrIncompatible, err)
		case errors.Is(err, peers.ErrJoin):
			return fmt.Errorf("meshcache: join: %w: %w", ErrJoin, err)
		}
		return fmt.Errorf("meshcache: join: %w: %w", ErrInvalidOption, err)
	}
	if members := n.cluster.Members(); len(cfg.Join) > 0 && len(members) == 1 {
		// Its seeds led back to itself (a name that resolves to its own
		// address): it starts a new cluster, and is its own base.
		n.lease.mu.Lock()
		if n.lease.base == nil {
			n.lease.setBaseLocked([]string{n.name})
		}
		n.lease.mu.Unlock()
	}
	n.wg.Go(n.runLease)
	n.wg.Go(n.settle)
	return nil
}

// advertiseRPC returns the RPC address to tell peers: the bound one, with
// an unspecified host (0.0.0.0, ::) replaced by the host of advertise or
// else by a private IP of this machine.
func advertiseRPC(bound, advertise string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", fmt.Errorf("meshcache: RPC address %q: %w", bound, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return bound, nil
	}
	if advertise != "" {
		if h, _, err := net.SplitHostPort(advertise); err == nil && h != "" {
			return net.JoinHostPort(h, port), nil
		}
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("meshcache: RPCAddr %q listens on every interface and no private IP was found; set AdvertiseAddr: %w", bound, ErrInvalidOption)
	}
	return net.JoinHostPort(ip, port), nil
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

// stopPeers cancels the requests in flight to every peer.
func (n *Node) stopPeers() {
	n.ringMu.Lock()
	defer n.ringMu.Unlock()
	if rs := n.ring.Load(); rs != nil {
		for _, p := range rs.peers {
			p.cancel()
		}
	}
}

// leaveTimeout bounds how long Close waits for the leave to spread.
const leaveTimeout = 3 * time.Second

// closeCluster leaves the cluster, then stops the transport.
func (n *Node) closeCluster() {
	if n.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	if err := n.cluster.Leave(ctx); err != nil {
		n.log.Warn("meshcache: leaving the cluster", "err", err)
	}
	cancel()
	n.cluster.Close()
	n.server.Close()
}
