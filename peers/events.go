package peers

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// eventKind says what an event reports.
type eventKind uint8

const (
	evJoin    eventKind = iota // a member became alive
	evUpdate                   // a member's metadata changed
	evLeave                    // a member died or left
	evCutOff                   // this node refuted an accusation
	evBarrier                  // no change: closes done once reached
)

// event is one membership change, copied out of memberlist while it holds its
// locks, to be applied by [Cluster.runEvents].
type event struct {
	kind   eventKind
	name   string        // the node's name, without its incarnation
	inc    uint64        // its incarnation (see incarnationName)
	addr   string        // gossip host:port
	meta   meta          // evJoin, evUpdate: decoded metadata
	err    error         // evJoin, evUpdate: metadata refused
	left   bool          // evLeave: it announced a graceful leave (else it failed)
	reason string        // evCutOff
	done   chan struct{} // evBarrier
}

// eventQueue hands events from memberlist's goroutines to the one goroutine
// that applies them. push never blocks (memberlist calls it under its node
// lock); the queue is unbounded but only grows with membership changes.
type eventQueue struct {
	mu    sync.Mutex // guards items
	items []event
	wake  chan struct{} // capacity 1: "items is not empty"
}

func newEventQueue() *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1)}
}

func (q *eventQueue) push(ev event) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns every queued event, oldest first, and empties the queue.
func (q *eventQueue) take() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

// eventDelegate implements memberlist.EventDelegate. memberlist calls it
// serially, while holding its node lock: it only copies and queues.
type eventDelegate struct{ c *Cluster }

var _ memberlist.EventDelegate = eventDelegate{}

func (d eventDelegate) NotifyJoin(n *memberlist.Node)   { d.c.events.push(d.c.nodeEvent(evJoin, n)) }
func (d eventDelegate) NotifyLeave(n *memberlist.Node)  { d.c.events.push(d.c.nodeEvent(evLeave, n)) }
func (d eventDelegate) NotifyUpdate(n *memberlist.Node) { d.c.events.push(d.c.nodeEvent(evUpdate, n)) }

// nodeEvent copies what the view needs out of n (memberlist may reuse it).
//
// For NotifyLeave, n.State is no use: memberlist keeps a member's state in
// its internal record and the Node it passes always says alive, whether the
// member left or failed. A leaving member sets the leaving flag in its
// metadata before it leaves (see [Cluster.leaveMemberlist]), and n.Meta is
// the last metadata this node got from it.
func (c *Cluster) nodeEvent(kind eventKind, n *memberlist.Node) event {
	ev := event{kind: kind, addr: n.Address()}
	var ok bool
	if ev.name, ev.inc, ok = splitIncarnation(n.Name); !ok {
		ev.name = n.Name
	}
	if kind != evLeave {
		_, ev.meta, ev.err = checkNode(n.Name, n.Meta, c.s.Fingerprint)
	} else if m, err := decodeMeta(n.Meta); err == nil {
		ev.left = m.Leaving
	}
	return ev
}

// maxFailed bounds how many failed members the view remembers for cut-off
// detection.
const maxFailed = 1024

// memberView is the membership as seen by the event goroutine: one member
// per name, the newest incarnation memberlist reports alive (memberlist
// knows each incarnation as a member of its own, see incarnationName). It
// is owned by that goroutine and not safe for concurrent use.
type memberView struct {
	self    string
	selfInc uint64
	members map[string]Member
	// shadowed holds, by name, the alive incarnations that a newer one of
	// the same name hides: when the newer one goes, the newest of these
	// comes back (an incarnation is newer by its start time, and a clock
	// may step back).
	shadowed map[string]map[uint64]Member
	// failed maps each member this node saw fail (not leave) to the
	// incarnation it had. If the same incarnation comes back, the member
	// did not restart: this node was cut off from it.
	failed map[string]uint64
}

func newMemberView(self string, selfInc uint64) *memberView {
	return &memberView{
		self:     self,
		selfInc:  selfInc,
		members:  make(map[string]Member),
		shadowed: make(map[string]map[uint64]Member),
		failed:   make(map[string]uint64),
	}
}

// apply applies ev. It reports whether the member list changed, and a
// non-empty reason if ev shows that this node was cut off.
func (v *memberView) apply(ev event) (changed bool, cutOff string) {
	switch ev.kind {
	case evCutOff:
		return false, ev.reason
	case evLeave:
		old, ok := v.members[ev.name]
		if !ok || old.Incarnation != ev.inc {
			// An incarnation that a newer one of the same name replaced.
			v.unshadow(ev.name, ev.inc)
			return false, ""
		}
		delete(v.members, ev.name)
		if m, ok := v.newestShadow(ev.name); ok {
			// An older process of that name is still alive: it is the
			// member now.
			v.unshadow(ev.name, m.Incarnation)
			v.members[ev.name] = m
			return true, ""
		}
		switch {
		case ev.name == v.self:
		case ev.left:
			delete(v.failed, ev.name)
		default:
			v.rememberFailed(ev.name, old.Incarnation)
		}
		return true, ""
	case evJoin, evUpdate:
		old, had := v.members[ev.name]
		if ev.err != nil {
			// Unreachable while the alive delegate filters; be safe.
			v.unshadow(ev.name, ev.inc)
			if had && old.Incarnation == ev.inc {
				delete(v.members, ev.name)
				return true, ""
			}
			return false, ""
		}
		rec := Member{Name: ev.name, GossipAddr: ev.addr, RPCAddr: ev.meta.RPCAddr, State: StateAlive, Incarnation: ev.inc}
		switch {
		case ev.name == v.self && ev.inc != v.selfInc:
			// Another process under our name: this one stays itself.
			return false, ""
		case had && ev.inc < old.Incarnation:
			// An older process of that name, still alive to memberlist
			// until its failure is detected: the newer one replaced it.
			v.shadow(rec)
			return false, ""
		case had && ev.inc > old.Incarnation:
			v.shadow(old)
		}
		if ev.kind == evJoin && ev.name != v.self {
			if inc, ok := v.failed[ev.name]; ok {
				delete(v.failed, ev.name)
				if inc == ev.inc {
					cutOff = fmt.Sprintf("member %q came back after failing", ev.name)
				}
			}
		}
		v.members[ev.name] = rec
		return !had || old != rec, cutOff
	}
	return false, ""
}

// shadow records m as an alive incarnation hidden by a newer one (bounded
// like failed).
func (v *memberView) shadow(m Member) {
	s := v.shadowed[m.Name]
	if s == nil {
		if len(v.shadowed) >= maxFailed {
			return
		}
		s = make(map[uint64]Member)
		v.shadowed[m.Name] = s
	}
	if len(s) < 8 {
		s[m.Incarnation] = m
	}
}

// unshadow forgets incarnation inc of name.
func (v *memberView) unshadow(name string, inc uint64) {
	if s := v.shadowed[name]; s != nil {
		delete(s, inc)
		if len(s) == 0 {
			delete(v.shadowed, name)
		}
	}
}

// newestShadow returns the newest hidden incarnation of name.
func (v *memberView) newestShadow(name string) (Member, bool) {
	var best Member
	found := false
	for inc, m := range v.shadowed[name] {
		if !found || inc > best.Incarnation {
			best, found = m, true
		}
	}
	return best, found
}

// rememberFailed records a failed member, evicting an arbitrary old
// entry when full.
func (v *memberView) rememberFailed(name string, inc uint64) {
	if _, ok := v.failed[name]; !ok && len(v.failed) >= maxFailed {
		for k := range v.failed {
			delete(v.failed, k)
			break
		}
	}
	v.failed[name] = inc
}

// list returns the members sorted by name.
func (v *memberView) list() []Member {
	out := make([]Member, 0, len(v.members))
	for _, m := range v.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// runEvents is the goroutine that applies membership events and calls
// OnChange and OnCutOff. It stops when c.done closes.
func (c *Cluster) runEvents() {
	for {
		select {
		case <-c.done:
			return
		case <-c.events.wake:
		}
		for _, ev := range c.events.take() {
			select {
			case <-c.done:
				return
			default:
			}
			c.handleEvent(ev)
		}
	}
}

// handleEvent applies one event and runs the callbacks it calls for.
func (c *Cluster) handleEvent(ev event) {
	if ev.kind == evBarrier {
		close(ev.done)
		return
	}
	if ev.err != nil {
		c.log.Warn("peers: ignoring member with incompatible metadata", "member", ev.name, "err", ev.err)
	}
	changed, cutOff := c.view.apply(ev)
	if ev.name != c.s.Name {
		switch {
		case ev.kind == evLeave && changed && !ev.left:
			// A member of ours failed: retry it for a while (reconnect.go).
			c.lost.add(ev.name, ev.addr, time.Now())
		case ev.kind == evLeave || (ev.kind == evJoin && ev.err == nil):
			c.lost.remove(ev.name)
		}
	}
	if changed {
		list := c.view.list()
		c.snapshot.Store(&list)
		c.alive.Store(int64(len(list)))
		c.log.Debug("peers: membership changed", "event", ev.kind.String(), "member", ev.name, "alive", len(list))
		if c.s.OnChange != nil {
			c.s.OnChange(slices.Clone(list))
		}
	}
	if cutOff != "" {
		c.cutOffs.Add(1)
		c.log.Warn("peers: this node was cut off from the cluster", "reason", cutOff)
		if c.s.OnCutOff != nil {
			c.s.OnCutOff()
		}
	}
}

func (k eventKind) String() string {
	switch k {
	case evJoin:
		return "join"
	case evUpdate:
		return "update"
	case evLeave:
		return "leave"
	case evCutOff:
		return "cut-off"
	case evBarrier:
		return "barrier"
	default:
		return "unknown"
	}
}
