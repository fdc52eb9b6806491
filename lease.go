package meshcache

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/meshcache/meshcache/transport"
)

// The lease.
//
// The others complete a write without a member once they no longer count
// it alive: memberlist declared it dead, or never accepted the process
// that now runs under its name. A member that does not hear from the
// cluster cannot know whether that happened, so it serves from its caches
// only while it holds a lease: within the last [leaseTimings.lease], a
// quorum of the cluster answered its heartbeat saying "you, this
// incarnation, are an alive member". The lease is shorter than the
// quickest failure detection of the gossip profile, so a member is always
// out of its lease before any other member can declare it dead and write
// without it:
//
//	t0  X sends a heartbeat; Y answers "member" (Y heard X at t0 or later)
//	t0+ X is cut off (or paused, or crashes)
//	    Y's memberlist suspects X at the earliest at t0, and declares it
//	    dead SuspicionMult*ProbeInterval later at the earliest:
//	    t0 + 3s (local), t0 + 4s (LAN), t0 + 30s (WAN), more above 10 members
//	    X's lease from Y's answer ends at t0 + 1.5s (local), t0 + 2s (LAN),
//	    t0 + 15s (WAN): half of that, leaving room for a suspicion that
//	    started just before t0 and for gossip delays.
//
// The quorum is a majority of the base: the membership last agreed by a
// majority of itself. A node that holds the lease sets its base to the
// alive members (those that answered at least once), so the base shrinks
// by graceful leaves and by deaths only on a side that still reaches a
// majority of the old base. A minority cut off from the others keeps its
// old base and cannot hold the lease: memberlist is symmetric, and it
// would otherwise count itself a majority of what it still sees. A node
// that starts a new cluster has a base of itself; a joining node takes the
// base of a member that holds the lease and counts it a member.
//
// A node without the lease loads for its callers directly (nothing is
// stored), refuses peers' reads (they fall back), reports not ready, and
// reports its own writes incomplete. When it gets the lease back it
// flushes its caches and fences the loads in flight before serving from
// them again: it may have missed writes meanwhile. This covers a process
// that was paused (SIGSTOP, a frozen VM): its lease ran out while it stood
// still.

// leaseTimings are the heartbeat period and lease length of a gossip
// profile (see the arithmetic above).
type leaseTimings struct {
	every, lease time.Duration
}

var leaseProfiles = map[GossipProfile]leaseTimings{
	GossipLocal: {every: 250 * time.Millisecond, lease: 1500 * time.Millisecond},
	GossipLAN:   {every: 500 * time.Millisecond, lease: 2 * time.Second},
	GossipWAN:   {every: 2500 * time.Millisecond, lease: 15 * time.Second},
}

// lease is a node's lease state. The read path only loads its atomics.
type lease struct {
	timings  leaseTimings
	minority bool // Config.MinorityServes: the quorum counts the view, not the base
	epoch    time.Time
	// The lease ends at untilMono (nanoseconds of the monotonic clock since
	// epoch) or at untilWall (Unix nanoseconds), whichever comes first: the
	// monotonic clock may stand still while the machine sleeps, the wall
	// clock may jump.
	untilMono atomic.Int64
	untilWall atomic.Int64
	// regains counts the times the lease was regained: a write that saw it
	// change did not hold the lease throughout.
	regains atomic.Uint64
	// left: the node is leaving; it sends no more heartbeats.
	left atomic.Bool
	// beatMu is held by a heartbeat round and by leaveLease, so that no
	// heartbeat goes out after the leaving one.
	beatMu sync.Mutex

	mu sync.Mutex // guards the fields below
	// base is the quorum base, sorted; nil until known (a joining node).
	base       []string
	baseDigest uint64
	// held: the node has held the lease before.
	held bool
	// acks maps a member to the send time of the newest heartbeat it
	// answered with "member".
	acks map[string]time.Time
	// gone holds the member processes that said they leave (a closing node
	// serves nothing), with when: a write counts them acknowledged.
	gone map[memberKey]time.Time
	// answered maps each member incarnation this node answered "member" to,
	// to the time of the newest answer: once this node no longer counts it
	// alive, it may hold a lease from that answer for up to the lease
	// length (see departedLease).
	answered map[memberKey]time.Time
}

// goneLocked records that the member process k said it leaves,
// forgetting records older than a minute.
func (l *lease) goneLocked(k memberKey, now time.Time) {
	if l.gone == nil {
		l.gone = make(map[memberKey]time.Time)
	}
	for m, at := range l.gone {
		if now.Sub(at) > time.Minute {
			delete(l.gone, m)
		}
	}
	l.gone[k] = now
}

// hasLeft reports whether the process of name at incarnation inc said it
// leaves, within the last minute: it is closing and serves nothing, so a
// write need not reach it. Another process under that name is not covered.
func (n *Node) hasLeft(name string, inc uint64) bool {
	l := n.lease
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.gone[memberKey{name, inc}]
	return ok && time.Since(at) <= time.Minute
}

// memberKey is a member's process: its name and incarnation.
type memberKey struct {
	name string
	inc  uint64
}

func newLease(t leaseTimings, minority bool) *lease {
	return &lease{
		timings: t, minority: minority, epoch: time.Now(),
		acks: make(map[string]time.Time), answered: make(map[memberKey]time.Time),
	}
}

// valid reports whether the lease holds at now.
func (l *lease) valid(now time.Time) bool {
	return int64(now.Sub(l.epoch)) < l.untilMono.Load() && now.UnixNano() < l.untilWall.Load()
}

// set stores a lease that ends at end (in the past: no lease). The caller
// holds l.mu.
func (l *lease) set(end time.Time) {
	if end.IsZero() {
		l.untilWall.Store(0)
		l.untilMono.Store(0)
		return
	}
	l.untilWall.Store(end.UnixNano())
	l.untilMono.Store(int64(end.Sub(l.epoch))) // monotonic: end and epoch both carry a reading
}

// digest returns a digest of sorted names.
func digest(names []string) uint64 {
	d := xxhash.New()
	for _, n := range names {
		_, _ = d.WriteString(n)
		_, _ = d.Write([]byte{0})
	}
	return d.Sum64() | 1 // never 0: 0 means "unknown"
}

// baseInfo returns the base and its digest (nil, 0 while unknown).
func (l *lease) baseInfo() ([]string, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.base, l.baseDigest
}

func (l *lease) setBaseLocked(names []string) {
	slices.Sort(names)
	names = slices.Compact(names)
	l.base, l.baseDigest = names, digest(names)
}

// serving reports whether this node may serve from its caches now: it
// holds its lease (a standalone node always does).
func (n *Node) serving() bool {
	return n.lease == nil || n.lease.valid(time.Now())
}

// leaseRegains returns how many times the lease was regained (0 on a
// standalone node).
func (n *Node) leaseRegains() uint64 {
	if n.lease == nil {
		return 0
	}
	return n.lease.regains.Load()
}

// leased is serving, for the places that ask about the lease rather than
// about serving.
func (n *Node) leased() bool { return n.serving() }

// cachesEmpty reports whether no group holds an entry.
func (n *Node) cachesEmpty() bool {
	for _, g := range n.Groups() {
		if st := g.store.Stats(); st.Items+st.HotItems+st.StandInItems > 0 {
			return false
		}
	}
	return true
}

// runLease renews the lease every heartbeat period until the node closes.
func (n *Node) runLease() {
	t := time.NewTicker(n.lease.timings.every)
	defer t.Stop()
	for {
		n.renewLease()
		select {
		case <-n.closing.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat is one member's answer to a lease heartbeat.
type heartbeat struct {
	p    *peer
	resp transport.LeaseResponse
	err  error
}

// renewLease sends a heartbeat to every alive member, then recomputes the
// lease and the base from the answers.
func (n *Node) renewLease() {
	l := n.lease
	l.beatMu.Lock()
	defer l.beatMu.Unlock()
	rs := n.ring.Load()
	if rs == nil || l.left.Load() {
		return
	}
	_, baseDigest := l.baseInfo()
	sent := time.Now()
	ctx, cancel := context.WithTimeout(n.closing, l.timings.every)
	beats := make([]heartbeat, 0, len(rs.peers))
	for _, p := range rs.peers {
		beats = append(beats, heartbeat{p: p})
	}
	var wg sync.WaitGroup
	for i := range beats {
		wg.Go(func() {
			b := &beats[i]
			b.resp, b.err = n.client.Lease(ctx, b.p.addr, transport.LeaseRequest{
				From: n.name, Incarnation: n.inc, Base: baseDigest,
			})
		})
	}
	wg.Wait()
	cancel()
	if n.closing.Err() != nil {
		return
	}

	for _, b := range beats {
		if b.err == nil {
			n.unsuspect(b.p.name) // it answers: its keys are its own again
		} else {
			n.stillSuspect(b.p.name)
		}
	}
	l.mu.Lock()
	for _, b := range beats {
		if b.err != nil || !b.resp.Member || b.resp.Incarnation != b.p.inc {
			continue
		}
		l.acks[b.p.name] = sent
		if l.base == nil && b.resp.Leased && len(b.resp.BaseNames) > 0 {
			// A joining node takes the base of a member that holds the
			// lease and counts it.
			l.setBaseLocked(slices.Clone(b.resp.BaseNames))
			n.log.Info("meshcache: quorum base adopted", "from", b.p.name, "members", len(l.base))
		}
	}
	view := rs.cur.Members()
	quorumOf := l.base
	if l.minority {
		quorumOf = view
	}
	var end time.Time
	if quorumOf != nil {
		end = l.quorumEndLocked(quorumOf, n.name, sent)
	}
	now := time.Now()
	if !end.After(now) {
		l.set(end) // no quorum: the lease is out, even one this node alone gave
		l.pruneLocked(view, now)
		l.mu.Unlock()
		return
	}
	if !l.valid(now) {
		// The lease is regained: the node may have missed writes while it
		// had none. Nothing is served while the lease is out, so the
		// caches are flushed, and the loads in flight fenced, before the
		// new lease is stored. A node that gets its first lease has
		// started no load (none starts without the lease): it flushes only
		// what writes stored meanwhile, and when there is nothing it
		// skips the flush, which would hold its hand-offs back. The flush
		// runs without l.mu: heartbeats and writes keep being answered.
		first := !l.held
		l.held = true
		l.mu.Unlock()
		if !first || !n.cachesEmpty() {
			n.log.Info("meshcache: lease acquired; flushing the caches before serving from them", "first", first)
			n.flush()
		}
		l.regains.Add(1)
		l.mu.Lock()
	}
	// Holding the lease over the old base: the base becomes the members of
	// the old base still in the view (a slow answer does not drop one),
	// plus the members of the view that answered within the lease, plus
	// this node; the lease stored is the shorter of the two bases'.
	next := []string{n.name}
	for _, m := range view {
		inBase := slices.Contains(l.base, m)
		if m != n.name && (inBase || now.Sub(l.acks[m]) < l.timings.lease) {
			next = append(next, m)
		}
	}
	slices.Sort(next)
	if d := digest(next); d != l.baseDigest && !l.minority {
		n.log.Info("meshcache: quorum base changed", "from", len(l.base), "to", len(next))
		l.base, l.baseDigest = next, d
		if e := l.quorumEndLocked(next, n.name, sent); e.Before(end) {
			end = e
		}
	}
	l.set(end)
	l.pruneLocked(view, now)
	l.mu.Unlock()
}

// pruneLocked forgets the answers of members that left the view longer
// than a lease ago.
func (l *lease) pruneLocked(view []string, now time.Time) {
	for m, at := range l.acks {
		if !slices.Contains(view, m) && now.Sub(at) >= l.timings.lease {
			delete(l.acks, m)
		}
	}
}

// quorumEndLocked returns when the lease over base ends: the send time of
// the heartbeat that the quorum-th most recent member of base answered
// (this node counting as an answer at selfAt), plus the lease length; the
// zero Time without a quorum.
func (l *lease) quorumEndLocked(base []string, self string, selfAt time.Time) time.Time {
	need := len(base)/2 + 1
	times := make([]time.Time, 0, len(base))
	for _, m := range base {
		if m == self {
			times = append(times, selfAt)
		} else if t, ok := l.acks[m]; ok {
			times = append(times, t)
		}
	}
	if len(times) < need {
		return time.Time{}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[need-1].Add(l.timings.lease)
}

// Lease answers a member's lease heartbeat. The ring is read under l.mu,
// as departedLease reads it: an answer "member" is recorded before a ring
// without the member can be seen by departedLease, so a writer that this
// node tells about the departure waits for that answer too.
func (h handler) Lease(ctx context.Context, req transport.LeaseRequest) (transport.LeaseResponse, error) {
	n := h.n
	if n.closed.Load() {
		return transport.LeaseResponse{}, transport.ErrClosed
	}
	l := n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	resp := transport.LeaseResponse{Incarnation: n.inc, Leased: l.valid(now)}
	k := memberKey{req.From, req.Incarnation}
	switch rs := n.ring.Load(); {
	case req.Leaving:
		delete(l.answered, k)
		l.goneLocked(k, now)
	case rs != nil:
		if p := rs.peers[req.From]; p != nil && p.inc == req.Incarnation {
			resp.Member = true
			l.answered[k] = now
		}
	}
	resp.Base = l.baseDigest
	if l.baseDigest != req.Base && l.base != nil {
		resp.BaseNames = l.base
	}
	return resp, nil
}

// departedLease returns how long a member incarnation that this node
// answered "member" to, and that it no longer counts alive, may still hold
// a lease from that answer, and that member: the longest such wait.
//
// A write that completes without a member must not return before that
// member's lease ran out: it may be cut off from gossip while its
// heartbeats still reach the others (the lease's timing argument assumes
// that both fail together), or the others may have dropped it for another
// reason.
func (n *Node) departedLease() (time.Duration, string) {
	l := n.lease
	if l == nil {
		return 0, ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rs := n.ring.Load()
	now := time.Now()
	var wait time.Duration
	var who string
	for k, at := range l.answered {
		left := at.Add(l.timings.lease).Sub(now)
		if left <= 0 {
			delete(l.answered, k)
			continue
		}
		if rs != nil {
			if p := rs.peers[k.name]; p != nil && p.inc == k.inc {
				continue // still a member: writes reach it
			}
		}
		if left > wait {
			wait, who = left, k.name
		}
	}
	return wait, who
}

// leaveLease stops the heartbeats and tells the members that this node
// leaves, so that they do not wait for its lease in their writes (see
// departedLease). Bounded by one heartbeat period, after a round in flight.
func (n *Node) leaveLease() {
	l := n.lease
	if l == nil {
		return
	}
	l.left.Store(true)
	l.beatMu.Lock()
	defer l.beatMu.Unlock()
	rs := n.ring.Load()
	if rs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timings.every)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range rs.peers {
		wg.Go(func() {
			_, _ = n.client.Lease(ctx, p.addr, transport.LeaseRequest{From: n.name, Incarnation: n.inc, Leaving: true})
		})
	}
	wg.Wait()
}

// viewDigest returns the digest of members' names and incarnations: what a
// write carries so that a member whose view differs answers with its own.
func viewDigest(members []transport.Member) uint64 {
	d := xxhash.New()
	var b [8]byte
	for _, m := range members {
		_, _ = d.WriteString(m.Name)
		for i := range 8 {
			b[i] = byte(m.Incarnation >> (8 * i))
		}
		_, _ = d.Write(b[:])
	}
	return d.Sum64() | 1
}
