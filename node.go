package meshcache

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshcache/meshcache/peers"
	"github.com/meshcache/meshcache/transport"
)

// Config configures a [Node]. The zero value is a valid standalone node.
// [NewNode] copies it; the caller may reuse it afterwards.
type Config struct {
	// NodeName names this node; it must be unique in a cluster. If empty,
	// the host name followed by a random suffix.
	NodeName string

	// Logger receives the node's logs. If nil, [slog.Default].
	Logger *slog.Logger

	// BindAddr is the gossip (memberlist) listen address, host:port; port 0
	// picks a free one. If empty, the node runs standalone: no gossip, no
	// peer transport, every key is its own, and the fields below are
	// ignored.
	BindAddr string
	// AdvertiseAddr is the gossip host:port other members should use, when
	// it differs from the bound one (NAT, containers). Port 0 means the
	// bound port. Its host is also advertised for RPCAddr when that listens
	// on every interface.
	AdvertiseAddr string
	// RPCAddr is the peer transport listen address, host:port; port 0
	// picks a free one. If empty, BindAddr's host with port 0.
	RPCAddr string
	// Join lists the gossip addresses of any live members. Joining retries
	// with backoff until JoinTimeout; NewNode fails with [ErrJoin] if no
	// seed answered. If empty, the node starts a cluster of its own.
	Join []string
	// JoinTimeout bounds the initial join. If zero, 10s.
	JoinTimeout time.Duration
	// SecretKey encrypts and authenticates gossip (AES, 16, 24 or 32
	// bytes). Nodes without the same key cannot join. Required with TLS.
	SecretKey []byte
	// TLS, when set, secures the peer transport with mutual TLS: it must
	// hold this node's certificate and the cluster's CA pool as both RootCAs
	// and ClientCAs (peers are verified against that pool only, never the
	// system roots; a config without them is refused with
	// [ErrInvalidOption]). Gossip carries membership and writes, so it must
	// be secured too: with TLS, a config without SecretKey is refused with
	// [ErrInvalidOption]. Members must all use TLS or none: a node that
	// differs is refused at join with [ErrIncompatible].
	TLS *tls.Config
	// Partitions is the number of ring partitions; if zero, 271. Members
	// must agree on it (and on LoadFactor): a node with other settings is
	// refused at join with [ErrIncompatible].
	Partitions int
	// LoadFactor bounds a member's partitions to LoadFactor times the mean;
	// if zero, 1.25.
	LoadFactor float64
	// GossipProfile selects the gossip timing preset; the zero value is
	// [GossipLAN]. Tests and local demos use [GossipLocal].
	GossipProfile GossipProfile
	// MaxFrameBytes bounds one message on the peer transport, both ways:
	// larger frames are refused without reading them, and the connection
	// closed (failing the other requests on it, which then fall back). It
	// must exceed the largest value plus about a kilobyte, and should be
	// the same on every member. If zero, the transport's default (see
	// transport.DefaultMaxFrameBytes).
	MaxFrameBytes int
	// WriteTimeout bounds the fan-out of a write (Invalidate, Set, ...)
	// whose context has no deadline. If zero, [DefaultWriteTimeout].
	WriteTimeout time.Duration
	// DisableHandoff stops a new owner from asking a key's previous owner
	// before loading it after a membership change (see the package doc).
	DisableHandoff bool
	// FetchTimeout bounds how long a request waits on a peer that has sent
	// nothing at all (no answer, no other frame) since the request was
	// sent; a live peer that loads slowly keeps its connection visibly
	// alive (the transport pings it) and is waited for. After it the peer
	// is suspect on this node (see the package doc, "Failure semantics"):
	// its keys go to a stand-in until it answers again. If zero,
	// [DefaultFetchTimeout]; negative is invalid.
	FetchTimeout time.Duration
	// HandOverTimeout bounds the hand-over in [Node.Close]: before it leaves,
	// a node offers the entries it owns to the members that own them next,
	// so that a rolling restart reloads almost nothing. If zero,
	// [DefaultHandOverTimeout]; negative: no hand-over.
	HandOverTimeout time.Duration
	// HandOverBytes bounds the bytes (keys, values, tags) a node hands
	// over in Close. If zero, [DefaultHandOverBytes]; negative: no
	// hand-over.
	HandOverBytes int64
	// SnapshotDir, if set, is a directory where Close writes the node's
	// cached entries and from which NewNode restores them when the node is
	// alone once its join settled (it starts a new cluster, or runs
	// standalone); a node that joins a running cluster discards its
	// snapshot. See "Restarts and storage" in the README. Each node needs a
	// directory of its own. If empty, no snapshot.
	SnapshotDir string
	// MinorityServes lets a member keep serving from its caches when it
	// reaches only a minority of the cluster: its lease then needs answers
	// from a majority of the members it sees alive, not of the membership
	// last agreed by a majority. Of 5 members, the 2 that survive the crash
	// of 3 keep their caches instead of loading every key directly; but 2
	// members cut off together also keep serving, and may serve values
	// that the other 3 members' writes removed, and their own writes
	// complete without the others. Leave it false unless availability
	// matters more than the read-your-invalidation guarantee.
	MinorityServes bool
	// OnUnknownGroup, if set, is called when a peer asks this node for a
	// value of (Get, GetMany) or stores a value in (Set) a group this node
	// has not created. It may create the group with [NewGroup] and return
	// it, or return an error, which the peer sees as an unknown group (it
	// then loads the key itself, or reports the Set not acknowledged).
	// Services that create all their groups at start do not need it; those
	// that create groups on first use do, so that a key's owner can serve
	// them. It runs on the peer transport's goroutines, concurrently; it
	// should bound how many groups it creates (any peer can name one).
	OnUnknownGroup func(n *Node, name string) (*Group, error)
	// TracerProvider makes the node's spans (see "Tracing" in the package
	// doc). If nil, the global provider (otel.GetTracerProvider), as
	// OpenTelemetry's conventions for libraries say: without an SDK
	// installed, spans cost nothing.
	TracerProvider trace.TracerProvider
	// Propagator carries the trace context to peers, in requests. If nil,
	// W3C trace context (propagation.TraceContext).
	Propagator propagation.TextMapPropagator
}

// DefaultFetchTimeout is [Config.FetchTimeout] when it is zero.
const DefaultFetchTimeout = time.Second

// DefaultWriteTimeout bounds the fan-out of a write whose context has no
// deadline (see [Config.WriteTimeout]).
const DefaultWriteTimeout = 5 * time.Second

// A Node is one member of a cache cluster: it holds the groups of this
// process. Create it with [NewNode] and stop it with [Node.Close]. Many nodes
// can run in one process (there is no package-level state). All methods are
// safe for concurrent use.
type Node struct {
	name    string
	log     *slog.Logger
	baseLog *slog.Logger // Config.Logger, without the node's name

	// closing is cancelled by Close; every load runs under a context that
	// ends with it, so Close does not wait out the load timeouts.
	closing context.Context
	cancel  context.CancelFunc
	closed  atomic.Bool

	mu sync.Mutex // guards groups, loadsClosed and every loads.Add
	// groups holds the node's groups by name.
	groups map[string]*Group
	// pending holds the entries restored from a snapshot for groups not
	// created yet (snapshot.go).
	pending pendingSnapshot
	// missed records writes applied here to groups not created yet
	// (handover.go).
	missed missedWrites
	// loadsClosed is set by Close before it waits on loads: no load starts
	// after it is set, so loads.Add never races with loads.Wait.
	loadsClosed bool
	loads       sync.WaitGroup

	// The cluster; all nil for a standalone node.
	cluster *peers.Cluster
	server  *transport.Server
	client  *transport.Client
	ccfg    clusterConfig
	// acked holds the writes (origin, id) this node applied both phases of
	// at a writer's request: their gossip copy, meant for the members that
	// did not acknowledge, is not applied again here.
	acked *lru.Cache[writeKey, struct{}]
	// unknownGroup is Config.OnUnknownGroup.
	unknownGroup func(n *Node, name string) (*Group, error)
	// ring is the routing snapshot: nil while standalone or before the
	// first membership event. ringMu serialises its writers.
	ring    atomic.Pointer[ringState]
	ringMu  sync.Mutex
	changed atomic.Int64 // unix nanos of the last ring change
	ready   chan struct{}
	// lease says whether this node may serve from its caches (lease.go);
	// nil on a standalone node, which always may. Set, like inc, before the
	// peer transport starts.
	lease *lease
	// inc is this process's incarnation in the cluster (peers.Member).
	inc uint64
	// suspects are the peers that did not answer (standin.go).
	suspects suspects
	// handOverHook, if set (by tests, before Close), runs between reading
	// the entries to hand over and sending them.
	handOverHook func()
	// snapshotDir is Config.SnapshotDir.
	snapshotDir string
	wg          sync.WaitGroup // background goroutines: the settle watcher and the lease
	// lanes carry the write requests to each member (writelane.go).
	lanes writeLanes
	// tracing makes the node's spans (tracing.go).
	tracing tracing

	stats nodeCounters
}

// NewNode validates cfg and starts a node.
func NewNode(cfg Config) (*Node, error) {
	name := cfg.NodeName
	if name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "node"
		}
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = host + "-" + hex.EncodeToString(b[:])
	}
	if len(name) > MaxKeyLen {
		return nil, fmt.Errorf("meshcache: NodeName of %d bytes: %w", len(name), ErrInvalidOption)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		name:    name,
		log:     log.With("node", name),
		baseLog: log,
		tracing: newTracing(cfg),
		closing: ctx,
		cancel:  cancel,
		groups:  make(map[string]*Group),
		ready:   make(chan struct{}),
	}
	if n.snapshotDir = cfg.SnapshotDir; n.snapshotDir != "" {
		n.loadSnapshot(n.snapshotDir) // before anything can acknowledge a write
	}
	if cfg.BindAddr == "" {
		close(n.ready)
		return n, nil
	}
	n.unknownGroup = cfg.OnUnknownGroup
	n.acked, _ = lru.New[writeKey, struct{}](ackedWrites)
	if err := n.startCluster(cfg); err != nil {
		cancel()
		n.log.Error("meshcache: cannot start the node", "err", err)
		return nil, err
	}
	n.keepSnapshot()
	if n.hasPending() {
		// The restored entries are adopted by NewGroup once the node holds
		// its lease: its first lease would flush them. Alone, it is its own
		// quorum: one renewal, here, gives it the lease.
		n.renewLease()
	}
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Group returns the node's group of that name, if there is one.
func (n *Node) Group(name string) (*Group, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	g, ok := n.groups[name]
	return g, ok
}

// Groups returns the node's groups, in no particular order.
func (n *Node) Groups() []*Group {
	n.mu.Lock()
	defer n.mu.Unlock()
	gs := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		gs = append(gs, g)
	}
	return gs
}

// Close stops the node: it offers the entries it owns to the members that
// own them next (bounded by [Config.HandOverTimeout] and
// [Config.HandOverBytes]), leaves its cluster gracefully (peers re-route
// its keys at once), stops serving peers, cancels and waits for the loads in
// flight, stops the groups' background work, and every later call on the
// node or its groups returns [ErrClosed]. Close is idempotent: later calls
// return nil.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Whether the snapshot may be written is decided now: leaving takes
	// the lease with it.
	snapshot := n.snapshotDir != "" && n.leased()
	n.handOver()
	n.leaveLease()
	n.closeCluster()
	n.cancel()
	n.stopPeers()
	n.wg.Wait()
	if n.cluster != nil && !n.isReady() {
		close(n.ready) // nobody waits forever on a node that closed first
	}
	n.mu.Lock()
	n.loadsClosed = true
	groups := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		groups = append(groups, g)
	}
	n.mu.Unlock()
	n.loads.Wait()
	if snapshot {
		n.saveSnapshot(n.snapshotDir)
	} else if n.snapshotDir != "" {
		n.log.Warn("meshcache: no snapshot: this node did not hold its lease (it may have missed writes)")
	}
	if n.client != nil {
		n.client.Close()
	}
	n.lanes.close()
	for _, g := range groups {
		g.store.Close()
	}
	return nil
}

// hasPending reports whether snapshot entries wait for their groups.
func (n *Node) hasPending() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pending) > 0
}

// startLoad registers a load with the node, so that Close waits for it. It
// returns false once the node is closing; otherwise the caller must call
// n.loads.Done when the load is over.
func (n *Node) startLoad() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.loadsClosed {
		return false
	}
	n.loads.Add(1)
	return true
}

// goLoad runs f on a goroutine registered as a load before it starts, so
// that Close waits for it. Once the node is closing it runs nothing and
// returns false.
func (n *Node) goLoad(f func()) bool {
	if !n.startLoad() {
		return false
	}
	go func() {
		defer n.loads.Done()
		f()
	}()
	return true
}

// addGroup makes g visible, and returns the entries a snapshot restored
// for it (see snapshot.go).
func (n *Node) addGroup(g *Group) ([]snapshotEntry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.loadsClosed {
		return nil, ErrClosed
	}
	if _, ok := n.groups[g.name]; ok {
		return nil, fmt.Errorf("meshcache: group %q: %w", g.name, ErrGroupExists)
	}
	n.groups[g.name] = g
	if at := n.missed.lastLocked(g.name); at != 0 {
		g.missedWrite.Store(at)
	}
	return n.adoptSnapshotLocked(g.name), nil
}

// nodeCounters count the node's cluster traffic, for [Node.Stats].
type nodeCounters struct {
	writes        atomic.Uint64 // writes this node fanned out
	writesPartial atomic.Uint64 // of those, writes some member did not acknowledge
	writeRequests atomic.Uint64 // write requests sent to peers (one per member and phase)
	writeAcks     atomic.Uint64 // of those, acknowledged
	writeBatches  atomic.Uint64 // frames that carried several write requests to one member
	gossipSent    atomic.Uint64 // writes queued on gossip for unacknowledged members
	gossipApplied atomic.Uint64 // writes received by gossip and applied
	peerRequests  atomic.Uint64 // Get, GetMany and Peek requests served to peers
}

// NodeStats is a snapshot of a node's cluster counters, from [Node.Stats].
type NodeStats struct {
	Members       int    // alive members, this node included
	Writes        uint64 // writes (Invalidate, Set, ...) this node fanned out
	WritesPartial uint64 // of those, writes some member did not acknowledge
	WriteRequests uint64 // write requests sent to members, one per member and phase
	WriteAcks     uint64 // of those, acknowledged
	WriteBatches  uint64 // frames that carried several write requests to one member (group commits)
	GossipSent    uint64 // writes queued on gossip for members that did not acknowledge
	GossipApplied uint64 // writes received by gossip and applied here
	PeerRequests  uint64 // requests served to peers (get, get-many, peek)
}

// Stats returns a snapshot of the node's cluster counters.
func (n *Node) Stats() NodeStats {
	members := 1
	if rs := n.ring.Load(); rs != nil {
		members = rs.cur.Len()
	}
	return NodeStats{
		Members:       members,
		Writes:        n.stats.writes.Load(),
		WritesPartial: n.stats.writesPartial.Load(),
		WriteRequests: n.stats.writeRequests.Load(),
		WriteAcks:     n.stats.writeAcks.Load(),
		WriteBatches:  n.stats.writeBatches.Load(),
		GossipSent:    n.stats.gossipSent.Load(),
		GossipApplied: n.stats.gossipApplied.Load(),
		PeerRequests:  n.stats.peerRequests.Load(),
	}
}

// writeKey names one write: its origin and id.
type writeKey struct {
	origin string
	id     uint64
}

// ackedWrites bounds Node.acked: more than the writes gossip can still be
// carrying.
const ackedWrites = 4096
