package meshcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// A writeScope is what a write applies to on this node: one group (a
// *Group), or every group (*allGroups, nodewrite.go).
type writeScope interface {
	// apply applies one phase of a checked write here and returns the
	// number of entries it applied to.
	apply(req transport.WriteRequest, phase transport.Phase) int
	// l2Write applies the write to the second level, before any member
	// applies it (see secondlevel.go).
	l2Write(ctx context.Context, req transport.WriteRequest, timeout time.Duration) error
	// l2Unreached returns an error when a group with a second level that
	// the write applies to was not reached by l2Write; reported lists the
	// groups with one that members have (WriteResponse.L2Groups).
	l2Unreached(reported map[string]bool) error
	// writeLog is the logger of the write's messages.
	writeLog() *slog.Logger
}

// A single group's write reaches its second level in l2Write, or fails.
func (g *Group) l2Unreached(map[string]bool) error { return nil }

func (g *Group) writeLog() *slog.Logger { return g.log }

// write runs req on every alive member in two phases (DESIGN.md, "The write
// and invalidation path"): first every member applies it to what it serves
// (main cache, load fences), then every member drops its copies (hot cache,
// fetch fences). It returns the number of entries the write applied to,
// summed over the members.
func (g *Group) write(ctx context.Context, req transport.WriteRequest) (int, error) {
	req.Group = g.name
	return g.node.write(ctx, req, g)
}

// write runs req, whose Group is set (empty: every group), on every alive
// member as [Group.write] describes; s applies it on this node.
func (n *Node) write(ctx context.Context, req transport.WriteRequest, s writeScope) (_ int, err error) {
	if n.tracing.on(ctx) {
		var span trace.Span
		ctx, span = n.tracing.start(ctx, "meshcache.write", trace.SpanKindInternal, attrGroup.String(req.Group), attrOp.String(req.Op.String()))
		defer func() { end(span, err) }()
	}
	if n.ring.Load() == nil {
		// The second level first (see secondlevel.go).
		l2err := s.l2Write(ctx, req, DefaultWriteTimeout)
		applied := s.apply(req, transport.PhaseServing)
		if req.Op != transport.OpSetIfAbsent || applied > 0 {
			applied += s.apply(req, transport.PhaseCopies)
		}
		if l2err == nil {
			l2err = s.l2Unreached(nil)
		}
		if l2err != nil {
			return applied, &InvalidateError{Op: req.Op.String(), Group: req.Group, Unacked: []string{l2Member}, Causes: []error{l2err}}
		}
		return applied, nil
	}
	n.stats.writes.Add(1)
	req.Origin, req.ID = n.name, rand.Uint64()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.ccfg.writeTimeout)
		defer cancel()
	}
	// The second level first, once for the fleet, before any member
	// applies the write (see secondlevel.go). A failure is reported with
	// the members'; the members' caches are invalidated anyway.
	l2err := s.l2Write(ctx, req, n.ccfg.writeTimeout)
	start := n.ring.Load()
	req.View = start.view
	w := newWriteRun(n, start)
	defer w.close()
	regains := n.leaseRegains()
	applied := 0
	// A member that joined (or came back at a new address) while the
	// phases ran, or that another member sees and this node does not, may
	// have started a load before this write: it gets the write too, and
	// then every member drops its copies again, since they may have
	// fetched from it before its phase 1. Bounded: a cluster that keeps
	// changing gets gossip.
	rounds := 0
	for round := range 3 {
		rs := start // round 0 writes to the view whose digest req carries
		if round > 0 {
			rs = n.ring.Load()
		}
		targets := w.newTargets(rs)
		if round > 0 && len(targets) == 0 {
			break
		}
		rounds++
		w.all = append(w.all, targets...)
		applied += n.phases(ctx, req, s, targets, w, round)
	}
	failed := w.result()
	if len(failed) == 0 {
		failed = w.settle(ctx)
	}
	if len(failed) == 0 && (!n.leased() || n.leaseRegains() != regains) {
		// Checked last: the lease must have held throughout the write.
		failed = w.noQuorum()
	}
	if l2err == nil {
		l2err = s.l2Unreached(w.l2Groups)
	}
	if l2err != nil {
		if failed == nil {
			failed = make(map[string]error)
		}
		failed[l2Member] = l2err
	}
	if len(failed) == 0 {
		return applied, nil
	}
	n.stats.writesPartial.Add(1)
	e := &InvalidateError{Op: req.Op.String(), Group: req.Group}
	for name := range failed {
		e.Unacked = append(e.Unacked, name)
	}
	slices.Sort(e.Unacked)
	for _, name := range e.Unacked {
		e.Causes = append(e.Causes, failed[name])
	}
	s.writeLog().Warn("meshcache: write not acknowledged by every member; queued on gossip", "op", req.Op, "unacked", e.Unacked)
	if rounds > 1 {
		// A member that failed a later round may have acknowledged an
		// earlier one: under the same id it would ignore the gossip copy.
		req.ID = rand.Uint64()
	}
	n.gossip(req, s.writeLog())
	return applied, e
}

// errUnreached is the cause reported for a member that another member
// counts alive and that this write did not reach.
var errUnreached = errors.New("meshcache: counted alive by another member, not reached")

// errDeparted is the cause reported for a member that left this node's
// view while a write ran but that other members still count alive.
var errDeparted = errors.New("meshcache: left this node's view during the write, still alive to other members")

// A writeRun is the state of one write's fan-out.
type writeRun struct {
	n     *Node
	start *ringState
	// sent holds the members written to, by name and address: a member
	// that restarted at a new address is another target.
	sent map[string]bool
	all  []*peer // every target so far, for phase 2

	mu sync.Mutex // guards the fields below (fanOut's goroutines)
	// failed holds the targets (by targetKey) that did not acknowledge,
	// and why, and failedInc their incarnations.
	failed    map[string]error
	failedInc map[string]uint64
	// acked holds the targets (by targetKey) that acknowledged a phase and
	// failed none, with their incarnations.
	acked map[string]uint64
	// reported holds the members that acknowledging members count alive
	// (their views, when they differ from the writer's).
	reported map[string]transport.Member
	// seen holds the names some acknowledging member counts alive.
	seen map[string]bool
	// departed holds the members that left this node's ring mid-write,
	// with their incarnations.
	departed map[string]uint64
	// extra holds the peers made for reported members: cancelled at the end.
	extra []*peer
	// l2Groups holds the groups with a second level that acknowledging
	// members have (a write to every group only).
	l2Groups map[string]bool
	// settleUntil is when the leases of the members that the acknowledging
	// members (or this node) answered recently and no longer count alive
	// have run out for sure, and settleWho the last of them.
	settleUntil time.Time
	settleWho   string
}

// settle waits until no member that left the view may still hold a lease
// (see Node.departedLease), or ctx ends: then that member is reported as not
// acknowledging.
func (w *writeRun) settle(ctx context.Context) map[string]error {
	if d, who := w.n.departedLease(); d > 0 {
		w.mu.Lock()
		w.extendSettleLocked(time.Now().Add(d), who)
		w.mu.Unlock()
	}
	w.mu.Lock()
	until, who := w.settleUntil, w.settleWho
	w.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
	case <-w.n.closing.Done():
	}
	return map[string]error{who: fmt.Errorf("meshcache: left the view recently and may still hold its lease: %w", context.DeadlineExceeded)}
}

func (w *writeRun) extendSettleLocked(until time.Time, who string) {
	if until.After(w.settleUntil) {
		w.settleUntil, w.settleWho = until, who
	}
}

func newWriteRun(n *Node, start *ringState) *writeRun {
	return &writeRun{
		n:         n,
		start:     start,
		sent:      make(map[string]bool),
		failed:    make(map[string]error),
		failedInc: make(map[string]uint64),
		acked:     make(map[string]uint64),
		reported:  make(map[string]transport.Member),
		seen:      make(map[string]bool),
		departed:  make(map[string]uint64),
	}
}

// close cancels the requests to the peers made for reported members.
func (w *writeRun) close() {
	for _, p := range w.extra {
		p.cancel()
	}
}

// newTargets returns the members not written to yet, sorted by name: the
// peers of rs, and the members that acknowledging members reported.
func (w *writeRun) newTargets(rs *ringState) []*peer {
	var targets []*peer
	add := func(p *peer) {
		k := targetKey(p)
		if !w.sent[k] {
			w.sent[k] = true
			targets = append(targets, p)
		}
	}
	for _, p := range rs.peers {
		add(p)
	}
	w.mu.Lock()
	reported := slices.Collect(maps.Values(w.reported))
	w.mu.Unlock()
	for _, m := range reported {
		if m.Name == w.n.name || m.RPCAddr == "" {
			continue
		}
		if p := rs.peers[m.Name]; p != nil && p.addr == m.RPCAddr && p.inc >= m.Incarnation {
			continue
		}
		p := &peer{name: m.Name, addr: m.RPCAddr, inc: m.Incarnation}
		if w.sent[targetKey(p)] {
			continue
		}
		p.ctx, p.cancel = context.WithCancel(w.n.closing)
		w.extra = append(w.extra, p)
		add(p)
	}
	slices.SortFunc(targets, func(a, b *peer) int { return strings.Compare(a.name, b.name) })
	return targets
}

// targetKey names a target of a write: a member's process at an address.
// The same process may be a target twice, under two incarnations (this
// node's view and another member's): a write applies twice harmlessly.
func targetKey(p *peer) string {
	return p.name + "\x00" + p.addr + "\x00" + strconv.FormatUint(p.inc, 16)
}

// ackedLocked reports whether a target of that name, at incarnation inc or
// a newer one, acknowledged: a newer process of a name stands for the older
// ones (the others no longer count those as members), never the reverse.
// The caller holds w.mu.
func (w *writeRun) ackedLocked(name string, inc uint64) bool {
	for k, ackedInc := range w.acked {
		if n, _, _ := strings.Cut(k, "\x00"); n == name && ackedInc >= inc {
			return true
		}
	}
	return false
}

// done records p's answer to one phase.
func (w *writeRun) done(p *peer, resp transport.WriteResponse, err error) {
	k := targetKey(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		if _, failed := w.failed[k]; !failed {
			w.acked[k] = p.inc
		}
		if resp.Settle > 0 && resp.SettleMember != "" {
			w.extendSettleLocked(time.Now().Add(resp.Settle), resp.SettleMember)
		}
		for _, name := range resp.L2Groups {
			if w.l2Groups == nil {
				w.l2Groups = make(map[string]bool)
			}
			w.l2Groups[name] = true
		}
		if resp.Members == nil {
			// Its view is the one this write started with.
			for _, m := range w.start.members {
				w.seen[m.Name] = true
			}
		}
		for _, m := range resp.Members {
			w.seen[m.Name] = true
			if old, ok := w.reported[m.Name]; !ok || m.Incarnation > old.Incarnation {
				w.reported[m.Name] = m
			}
		}
	case p.ctx.Err() != nil && !w.n.closed.Load():
		// The member left this node's ring while we waited (not: this
		// node is closing, which cancels every peer). Whether that counts
		// as acknowledged depends on the others (see result).
		w.departed[p.name] = p.inc
	default:
		w.failed[k], w.failedInc[k] = err, p.inc
		delete(w.acked, k)
	}
}

// skip reports whether p failed already: it gets no further phase.
func (w *writeRun) skip(p *peer) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.failed[targetKey(p)]
	return ok
}

// result returns the members that did not acknowledge the write, and why:
// the targets that failed (unless a newer or the same incarnation of that
// name acknowledged at another address), and every member that an
// acknowledging member counts alive (its view, or the writer's when it
// answered with none) and that no target of its name acknowledged:
// reported too late for a round of its own, or gone from this node's view
// during the write while the others still counted it.
func (w *writeRun) result() map[string]error {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]error)
	for k, err := range w.failed {
		name, _, _ := strings.Cut(k, "\x00")
		if !w.ackedLocked(name, w.failedInc[k]) && !w.n.hasLeft(name, w.failedInc[k]) {
			out[name] = err
		}
	}
	for name := range w.seen {
		if _, ok := out[name]; ok || name == w.n.name {
			continue
		}
		inc := w.reported[name].Incarnation // 0 when only the writer's view listed it
		if w.ackedLocked(name, inc) {
			continue
		}
		// A member that said it leaves serves nothing any more.
		if dinc, ok := w.departed[name]; ok {
			if !w.n.hasLeft(name, dinc) {
				out[name] = errDeparted
			}
		} else if !w.n.hasLeft(name, inc) {
			out[name] = errUnreached
		}
	}
	return out
}

// noQuorum returns the members to report when this node did not hold its
// lease throughout the write: every member of its quorum base that did not
// acknowledge (the write may not have reached members that it no longer
// sees), or itself.
func (w *writeRun) noQuorum() map[string]error {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]error)
	if w.n.lease != nil {
		base, _ := w.n.lease.baseInfo()
		for _, name := range base {
			if name != w.n.name && !w.ackedLocked(name, 0) {
				out[name] = ErrNoQuorum
			}
		}
	}
	if len(out) == 0 {
		out[w.n.name] = ErrNoQuorum
	}
	return out
}

// phases runs one round of req: phase 1 on targets (and, in round 0, on
// this node, through s), then phase 2 on every member written so far and on
// this node, and returns the entries applied to. Members that fail are
// recorded in w and skipped afterwards.
func (n *Node) phases(ctx context.Context, req transport.WriteRequest, s writeScope, targets []*peer, w *writeRun, round int) int {
	applied := 0
	for _, phase := range [...]transport.Phase{transport.PhaseServing, transport.PhaseCopies} {
		if phase == transport.PhaseCopies && req.Op == transport.OpSetIfAbsent && applied == 0 {
			break // this round stored nothing: there is nothing to drop
		}
		local, to := round == 0, targets
		if phase == transport.PhaseCopies {
			local, to = true, w.all
		}
		req.Phase = phase
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if phase == transport.PhaseServing {
			// Half of the time for each phase, so that one member that
			// does not answer leaves time for the second phase elsewhere.
			d, _ := ctx.Deadline()
			pctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(d)/2))
		}
		var span trace.Span
		if n.tracing.on(pctx) {
			pctx, span = n.tracing.start(pctx, "meshcache.write.phase", trace.SpanKindClient,
				attrPhase.Int(int(phase)), attribute.Int("meshcache.members", len(to)))
			req.Trace = n.tracing.inject(pctx)
		}
		if local {
			applied += s.apply(req, phase)
		}
		applied += n.fanOut(pctx, to, req, w)
		if span != nil {
			span.End()
		}
		cancel()
	}
	return applied
}

// fanOut sends req to every target that has not failed yet, through their
// write lanes (writelane.go), and waits for their answers, ctx's end, or
// the targets leaving.
func (n *Node) fanOut(ctx context.Context, targets []*peer, req transport.WriteRequest, w *writeRun) int {
	out := make(chan laneResult, len(targets))
	var sent []*laneWrite
	for _, p := range targets {
		if w.skip(p) {
			continue
		}
		n.stats.writeRequests.Add(1)
		lw := &laneWrite{ctx: ctx, p: p, req: req, out: out}
		sent = append(sent, lw)
		n.lanes.send(n, lw)
	}
	if len(sent) == 0 {
		return 0
	}
	// A write that ends, or a member that leaves, stops the wait for it.
	stops := make([]func() bool, 0, len(sent)+1)
	stops = append(stops, context.AfterFunc(ctx, func() {
		for _, lw := range sent {
			lw.finish(transport.WriteResponse{}, fmt.Errorf("transport: write to %s: %w: %w", lw.p.addr, transport.ErrUnavailable, ctx.Err()))
		}
	}))
	for _, lw := range sent {
		p := lw.p
		stops = append(stops, context.AfterFunc(p.ctx, func() {
			lw.finish(transport.WriteResponse{}, fmt.Errorf("transport: write to %s: %w: the member left", p.addr, transport.ErrUnavailable))
		}))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	applied := 0
	for range sent {
		r := <-out
		if r.err == nil {
			n.stats.writeAcks.Add(1)
			applied += r.resp.Applied
		}
		w.done(r.p, r.resp, r.err)
	}
	return applied
}

// gossip queues req on the gossip broadcast, both phases at once, for the
// members that did not acknowledge it. Gossip reaches every member, maybe
// late, after newer writes: so it only ever drops (see dropOnly), and a
// message too large for gossip becomes a clear of the group (of every
// group, for a write to every group).
func (n *Node) gossip(req transport.WriteRequest, log *slog.Logger) {
	req.Phase = 0
	req = dropOnly(req)
	b, err := transport.EncodeWrite(req)
	if err == nil && len(b) > n.cluster.MaxPayload() {
		req.Op, req.Keys, req.Tags = transport.OpClear, nil, nil
		b, err = transport.EncodeWrite(req)
	}
	if err == nil {
		err = n.cluster.Broadcast(b)
	}
	if err != nil {
		log.Error("meshcache: cannot queue a write on gossip", "op", req.Op, "err", err)
		return
	}
	n.stats.gossipSent.Add(1)
}

// onMessage applies a write another member queued on gossip. peers calls
// it from one goroutine.
//
// Only a current member's writes apply: its origin must be in this node's
// ring. Anyone holding the gossip key can put a payload on gossip, also a
// process the members refused at join (other ring settings or transport
// security) and never route to; its writes (a Clear) are dropped. A write
// whose origin left the ring before its payload arrived is dropped too: it
// was reported unacknowledged to its caller ([*InvalidateError]), as
// gossip is only ever a fallback.
func (n *Node) onMessage(payload []byte) {
	req, err := transport.DecodeWrite(payload)
	if err != nil {
		n.log.Warn("meshcache: dropping a gossip message", "err", err)
		return
	}
	if req.Origin == n.name || n.acked.Contains(writeKey{req.Origin, req.ID}) {
		return // this node applied the write itself
	}
	if rs := n.ring.Load(); rs == nil || rs.peers[req.Origin] == nil {
		n.log.Warn("meshcache: dropping a gossip write from a non-member", "origin", req.Origin, "op", req.Op, "group", req.Group)
		return
	}
	if req.Group == "" {
		if err := checkAllGroupsWrite(req); err != nil {
			n.log.Warn("meshcache: dropping a gossip write", "origin", req.Origin, "err", err)
			return
		}
		n.applyAllGroups(req, req.Phase)
		n.stats.gossipApplied.Add(1)
		return
	}
	g, ok := n.noteMissedWrite(req.Group)
	if !ok {
		n.pendingWrite(dropOnly(req)) // a snapshot may be waiting for it
		return
	}
	if err := g.checkWrite(req); err != nil {
		g.log.Warn("meshcache: dropping a gossip write", "origin", req.Origin, "err", err)
		return
	}
	g.applyPhases(dropOnly(req))
	n.stats.gossipApplied.Add(1)
}

// dropOnly turns a Set, SetIfAbsent or Expire into an invalidation of its
// keys. A write that arrives by gossip may arrive after newer writes of the
// same keys: replaying a value or a TTL then would undo them, dropping
// never does.
func dropOnly(req transport.WriteRequest) transport.WriteRequest {
	switch req.Op {
	case transport.OpSet, transport.OpSetIfAbsent:
		req.Op, req.Items, req.Keys = transport.OpInvalidate, nil, itemKeys(req.Items)
	case transport.OpExpire:
		req.Op, req.TTL = transport.OpInvalidate, 0
	}
	return req
}

// itemKeys returns the keys of items.
func itemKeys(items []transport.SetItem) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

// applyPhases applies req's phase, or both in order when it has none.
func (g *Group) applyPhases(req transport.WriteRequest) int {
	if req.Phase != 0 {
		return g.apply(req, req.Phase)
	}
	return g.apply(req, transport.PhaseServing) + g.apply(req, transport.PhaseCopies)
}

// apply applies one phase of a checked write to this node and returns the
// number of entries it applied to. Phase one changes what this node serves
// to others (both tiers, load fences; the owner of a Set key stores it);
// phase two drops the hot copies again and fences the fetches that started
// between the phases.
func (g *Group) apply(req transport.WriteRequest, phase transport.Phase) int {
	tier := local.Hot
	if phase == transport.PhaseServing {
		tier = local.All // what it serves (main, stand-in) and its copies
	}
	switch req.Op {
	case transport.OpInvalidate:
		// Held values are counted in phase 1 only (it covers every tier):
		// a copy fetched between the phases holds a value loaded after
		// the write began.
		held := 0
		if req.CountHeld && phase == transport.PhaseServing {
			held = g.held(tier, req.Keys)
		}
		_, removed := g.store.Invalidate(tier, req.Keys...)
		g.forget(req.Keys)
		if req.CountHeld {
			return held
		}
		return removed
	case transport.OpInvalidateTags:
		g.store.InvalidateTags(tier, req.Tags...)
		g.epoch.Add(1)
	case transport.OpClear:
		seq := g.store.Clear(tier)
		if tier&local.Main != 0 {
			g.cleared(seq)
		}
		g.epoch.Add(1)
	case transport.OpSet, transport.OpSetIfAbsent:
		if phase == transport.PhaseServing {
			stored := 0
			for _, it := range req.Items {
				if g.storeSet(req.Op, it) {
					stored++
				}
			}
			return stored
		}
		// What a non-owner loaded as a stand-in, or fetched, before the
		// value was stored goes too (SetIfAbsent does not fence non-owners
		// in phase 1: the owner may keep its value).
		keys := itemKeys(req.Items)
		g.store.Invalidate(local.Hot|local.StandIn, keys...)
		g.forget(keys)
	case transport.OpExpire:
		if phase != transport.PhaseServing {
			// Copies are dropped, not given the new TTL: a fetch in flight
			// that started before the Expire is fenced by the tombstone
			// and cannot store the old TTL.
			g.store.Invalidate(local.Hot, req.Keys...)
			g.forget(req.Keys)
			return 0
		}
		expired := 0
		for _, k := range req.Keys {
			// Each tier on its own: a stand-in value keeps at most the
			// hot TTL.
			main := g.expire(local.Main, k, req.TTL)
			standIn := g.expire(local.StandIn, k, req.TTL)
			if main || standIn {
				expired++
			}
		}
		return expired
	}
	return 0
}
