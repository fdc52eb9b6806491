package peers

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Errors returned by this package. Each is returned wrapped with details;
// test with errors.Is.
var (
	// ErrIncompatible: a member's fingerprint or peers protocol differs
	// from ours, or its metadata cannot be decoded. [Join] wraps it (with
	// ErrJoin) when the seeds' cluster is incompatible.
	ErrIncompatible = errors.New("peers: incompatible member")
	// ErrInvalidKey: [Config.SecretKey] is not 16, 24 or 32 bytes.
	ErrInvalidKey = errors.New("peers: invalid secret key")
	// ErrPayloadTooLarge: [Cluster.Broadcast] got more than
	// [Cluster.MaxPayload] bytes.
	ErrPayloadTooLarge = errors.New("peers: payload too large")
	// ErrJoin: [Join] could not join any seed before its context or
	// [Config.JoinTimeout] ended, or the seeds refused it.
	ErrJoin = errors.New("peers: join failed")
	// ErrClosed: the Cluster was closed, or has left (Broadcast).
	ErrClosed = errors.New("peers: cluster closed")
	// ErrInvalidConfig: a [Config] field is malformed.
	ErrInvalidConfig = errors.New("peers: invalid config")

	// errMeta: node metadata that cannot be decoded. Always returned
	// wrapped together with ErrIncompatible.
	errMeta = errors.New("peers: malformed node metadata")
)

const (
	// Join retry backoff.
	joinBackoffMin = 100 * time.Millisecond
	joinBackoffMax = 2 * time.Second
	// defaultLeaveTimeout applies to Leave when its context has no deadline.
	defaultLeaveTimeout = 5 * time.Second
)

// Cluster is this node's membership in a gossip cluster. Create it with
// [Join]; stop it with [Cluster.Close]. All methods are safe for concurrent
// use.
type Cluster struct {
	s          *settings
	ml         *memberlist.Memberlist
	log        *slog.Logger
	gossipAddr string
	maxPayload int

	events   *eventQueue
	view     *memberView              // owned by runEvents
	snapshot atomic.Pointer[[]Member] // latest list, sorted; never modified
	alive    atomic.Int64             // len(*snapshot), for the transmit queue
	cutOffs  atomic.Int64             // cut-offs detected (for tests and logs)
	refutes  atomic.Int64             // refutes seen in memberlist's log (for tests)
	bc       broadcaster
	refusals refusals
	lost     lostSet        // failed members to reconnect to
	tr       *joinTransport // bounds and aborts join attempts

	// ctx ends when Close starts: it stops the rejoin goroutine and aborts
	// a join attempt in flight.
	ctx    context.Context
	cancel context.CancelFunc

	// mlMu serializes memberlist Leave and Shutdown, since memberlist
	// panics on Leave after Shutdown. It is never held across a Join.
	mlMu   sync.Mutex // guards mlShut
	mlShut bool

	leaveMu sync.Mutex  // serializes Leave calls
	leaving atomic.Bool // NodeMeta advertises the leaving flag

	mu     sync.Mutex // guards left, killed and closed
	left   bool
	killed bool
	closed bool

	closeOnce sync.Once
	done      chan struct{} // closed by Close: stops the goroutines
	wg        sync.WaitGroup
}

// Join starts this node's gossip listener on [Config.BindAddr], joins the
// seeds in [Config.Join] (retrying with backoff until ctx ends or
// [Config.JoinTimeout] passes; with no seeds it starts alone) and returns
// once joined and once [Config.OnChange] has been called with the members
// known then.
//
// Seeds are tried one at a time, in order, until one answers; ctx is checked
// before each. A seed's dial is capped at 1s, 3s or 10s (ProfileLocal, LAN,
// WAN) and its push/pull exchange is aborted (its connection closed) as soon
// as ctx or JoinTimeout ends, so Join returns promptly after that. The one
// step that cannot be interrupted is memberlist resolving a seed given as a
// host name, bounded by the system resolver's timeout.
//
// Errors wrap ErrInvalidConfig, ErrInvalidKey, or ErrJoin (plus
// ErrIncompatible when this node refused to merge with a seed's cluster
// because its fingerprint differs, and the context's error when it ended).
// A seed that is unreachable or refuses the connection is retried; only a
// refusal during this node's own exchange with a seed is final.
// On error nothing keeps running.
func Join(ctx context.Context, cfg Config) (*Cluster, error) {
	s, err := validate(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		s:      s,
		log:    s.Logger.With("node", s.Name),
		events: newEventQueue(),
		view:   newMemberView(s.Name, s.boot),
		done:   make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.bc.seen = make(map[msgID]struct{})
	if s.OnMessage != nil {
		c.bc.inbox = make(chan []byte, inboxSize)
	}
	empty := []Member{}
	c.snapshot.Store(&empty)

	mlLog := log.New(&logBridge{log: c.log, onRefute: c.refuted}, "", 0)
	mc := s.memberlistConfig()
	mc.Logger = mlLog
	mc.Delegate = gossipDelegate{c}
	mc.Events = eventDelegate{c}
	mc.Alive = admission{c}
	mc.Merge = admission{c}
	transport, err := newTransport(s, mlLog)
	if err != nil {
		c.cancel()
		return nil, err
	}
	mc.BindPort = transport.GetAutoBindPort()
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = mc.BindPort
	}
	c.tr = newJoinTransport(transport, s.dialCap)
	mc.Transport = c.tr
	if s.wrapTransport != nil {
		mc.Transport = s.wrapTransport(c.tr)
	}
	if s.tweak != nil {
		s.tweak(mc)
	}
	c.bc.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return max(int(c.alive.Load()), 1) },
		RetransmitMult: max(mc.RetransmitMult, minRetransmitMult),
	}
	c.maxPayload = mc.UDPBufferSize - gossipOverhead - envelopeHeader
	if len(mc.SecretKey) > 0 {
		c.maxPayload -= encryptOverhead
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		c.cancel()
		return nil, fmt.Errorf("peers: start memberlist on %s:%d: %w", s.bindIP, mc.BindPort, err)
	}
	c.ml = ml
	c.gossipAddr = ml.LocalNode().Address()
	c.wg.Go(c.runEvents)
	if c.bc.inbox != nil {
		c.wg.Go(c.runMessages)
	}
	if len(s.Join) > 0 {
		if err := c.joinSeeds(ctx); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	c.wg.Go(c.runRejoin)
	if err := c.barrier(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	c.log.Info("peers: running", "gossip", c.gossipAddr, "members", len(c.Members()))
	return c, nil
}

// newTransport binds memberlist's TCP and UDP listeners on the same port. With
// port 0 the UDP port may already be taken when TCP got it; it retries then.
func newTransport(s *settings, logger *log.Logger) (*memberlist.NetTransport, error) {
	var err error
	for range bindRetries {
		var t *memberlist.NetTransport
		t, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{s.bindIP},
			BindPort:  s.bindPort,
			Logger:    logger,
		})
		if err == nil {
			return t, nil
		}
		if s.bindPort != 0 || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("peers: listen on %s:%d: %w", s.bindIP, s.bindPort, err)
}

// joinSeeds tries the seeds one at a time, in rounds with backoff between
// them, until one answers, this node refuses a seed's cluster, or ctx or
// JoinTimeout ends.
func (c *Cluster) joinSeeds(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.s.JoinTimeout)
	defer cancel()
	backoff := joinBackoffMin
	var last error
	for round := 1; ; round++ {
		for _, seed := range c.s.Join {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%w: seeds %v: %w (last error: %v)", ErrJoin, c.s.Join, err, last)
			}
			n, refused, err := c.joinOnce(ctx, seed)
			if refused != nil {
				return fmt.Errorf("%w: seed %s: %w", ErrJoin, seed, refused)
			}
			if err == nil {
				c.log.Info("peers: joined", "seed", seed, "answered", n, "rounds", round)
				return nil
			}
			last = err
			c.log.Debug("peers: join attempt failed", "seed", seed, "round", round, "err", err)
		}
		// Full jitter in [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// barrier waits until the event goroutine has handled every event queued
// before the call (so OnChange has seen them).
func (c *Cluster) barrier(ctx context.Context) error {
	done := make(chan struct{})
	c.events.push(event{kind: evBarrier, done: done})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
}

// refuted is called by the log bridge (under memberlist's node lock) when
// this node refuted an accusation.
func (c *Cluster) refuted() {
	c.refutes.Add(1)
	c.events.push(event{kind: evCutOff, reason: "another member declared this node suspect or dead"})
}

// LocalName returns this node's name.
func (c *Cluster) LocalName() string { return c.s.Name }

// GossipName returns the name memberlist knows this node by: its name, "#"
// and its incarnation in hex. It is for tests and logs that deal with
// memberlist directly.
func (c *Cluster) GossipName() string { return c.s.mlName }

// Incarnation returns this node's incarnation: a new one for every [Join],
// larger than the ones before it (see [Member.Incarnation]).
func (c *Cluster) Incarnation() uint64 { return c.s.boot }

// GossipAddr returns the host:port other members use to reach this node's
// gossip listener (the advertised address).
func (c *Cluster) GossipAddr() string { return c.gossipAddr }

// Members returns the alive members, self included, sorted by name: the list
// most recently passed to [Config.OnChange] (or about to be). The slice is
// the caller's. It returns nil after [Cluster.Close].
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil
	}
	return slices.Clone(*c.snapshot.Load())
}

// active reports whether the node has neither left, been closed nor killed.
func (c *Cluster) active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.left && !c.closed && !c.killed
}

// Leave leaves the cluster gracefully: it announces in this node's metadata
// that it is leaving (so that peers record a leave, not a failure), then
// broadcasts memberlist's leave message, and waits until both were sent or
// ctx ends (ctx's deadline, 5s if it has none, shared by both). Peers drop
// the node at once instead of waiting for failure detection. The node keeps
// its listeners until [Cluster.Close]; it cannot rejoin, and once memberlist
// marks it left it drops out of its own [Cluster.Members] (OnChange reports
// that too).
// Calling Leave again returns nil; after Close it returns ErrClosed.
func (c *Cluster) Leave(ctx context.Context) error {
	c.mu.Lock()
	closed := c.closed || c.killed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return c.leave(ctx)
}

// leave is Leave without the closed check, for Close.
func (c *Cluster) leave(ctx context.Context) error {
	c.leaveMu.Lock()
	defer c.leaveMu.Unlock()
	c.mu.Lock()
	skip := c.left || c.killed
	c.left = true
	c.mu.Unlock()
	if skip {
		return nil
	}
	timeout := defaultLeaveTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond) // 0 would wait forever
	}
	res := make(chan error, 1)
	c.wg.Go(func() {
		c.mlMu.Lock()
		defer c.mlMu.Unlock()
		if c.mlShut {
			res <- ErrClosed
			return
		}
		res <- c.leaveMemberlist(timeout)
	})
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("peers: leave: %w", err)
		}
		c.log.Info("peers: left the cluster")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("peers: leave: %w", ctx.Err())
	}
}

// leaveMemberlist announces the leave in this node's metadata, then leaves
// memberlist, both within timeout. The caller holds mlMu.
//
// memberlist marks a member that sent its own dead message "left", but only
// in its internal state: the node its NotifyLeave hook gets says alive either
// way, so the other members cannot tell a leave from a failure by that hook.
// The metadata update (an alive message with a higher incarnation) goes out
// by the same gossip before the dead message, so the others know the member
// is leaving when memberlist reports it gone (events.go). The update gets at
// most half of timeout; if it runs out, memberlist's leave still goes ahead
// and members the update missed treat this node as failed.
func (c *Cluster) leaveMemberlist(timeout time.Duration) error {
	start := time.Now()
	c.leaving.Store(true)
	if err := c.ml.UpdateNode(timeout / 2); err != nil {
		c.log.Debug("peers: announcing the leave", "err", err)
	}
	return c.ml.Leave(max(timeout-time.Since(start), time.Millisecond))
}

// Close leaves the cluster if it has not left yet (waiting at most about a
// second or a few, depending on the profile), shuts memberlist down and waits
// for every goroutine this package started, including one running a
// callback. It is idempotent and always returns nil. Callbacks must not call
// it.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel() // stops reconnecting, aborts a join attempt in flight
		ctx, cancel := context.WithTimeout(context.Background(), c.s.leaveOnClose)
		if err := c.leave(ctx); err != nil {
			c.log.Warn("peers: leaving on close", "err", err)
		}
		cancel()
		c.shutdownMemberlist()
		close(c.done)
		c.wg.Wait()
		c.log.Info("peers: closed")
	})
	return nil
}

// shutdownMemberlist stops memberlist once.
func (c *Cluster) shutdownMemberlist() {
	c.mlMu.Lock()
	defer c.mlMu.Unlock()
	if c.mlShut {
		return
	}
	c.mlShut = true
	if err := c.ml.Shutdown(); err != nil {
		c.log.Warn("peers: memberlist shutdown", "err", err)
	}
}

// Kill stops gossip without leaving, as a crash would: the other members
// must detect the failure. It is meant for failure tests and chaos drills.
// The Cluster's goroutines keep running until [Cluster.Close], which must
// still be called (it does not leave after Kill).
func (c *Cluster) Kill() { c.kill() }

// kill is Kill.
func (c *Cluster) kill() {
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	c.shutdownMemberlist()
}
