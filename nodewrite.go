package meshcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// Writes to every group: [Node.InvalidateTags].
//
// On the wire such a write is a WriteRequest with an empty Group (no group
// has that name: NewGroup refuses it), which every member applies to each
// group it has, whether or not the writer has it too: one write, with the
// fan-out, the acknowledgements, the lease and view checks and the gossip
// fallback of any other (phases.go). A member applies it on the
// transport's read loop, like a write to a group it has: it only bumps tag
// generations, and creates no group.
//
// Fences. A member applies each phase to every group it has when the
// request arrives. A group it creates afterwards cannot hold a load that
// started before the write: its loads start once it exists. The entries a
// snapshot keeps for a group not created yet are filtered first, then the
// groups are listed: a group that adopts its entries in between is among
// them (addGroup adopts under the lock that lists the groups, and restores
// them behind the sequence it had before it became visible, so the write
// refuses what it removed).
//
// The second level. Members never call a second level while they apply a
// write: that runs on the read loop, where waiting on Redis would stall
// every request of the connection, and a member that bumped it after it
// answered phase 1 would come too late (another member could already load
// the old entries from it). So the writer bumps the tags in the second level
// of each of its own groups that has one, before phase 1, as for a write to
// one group. A group with a second level that only other members have is
// out of its reach: members name their groups with a second level in their
// answers (WriteResponse.L2Groups), and the writer reports those it did not
// reach as "l2" in an [*InvalidateError], instead of returning nil while
// their second level still holds the tagged entries.

// InvalidateTags drops every entry that carries one of tags, in every group,
// on every member: also in the groups that other members have and this node
// has not. It is one write (one request per member and phase), and takes
// time independent of how many groups and entries there are. Once it
// returns nil, no Get that starts afterwards on any node, in any group,
// returns a value loaded before the call: loads in flight for the tags are
// fenced in every group, as [Group.InvalidateTags] fences them in one.
//
// A group with a second level ([WithL2]) is reached there only if it exists
// on this node: create such groups on the nodes that call InvalidateTags
// (or call [Group.InvalidateTags] on them). One that a member has and this
// node has not makes InvalidateTags return an [*InvalidateError] naming
// "l2", since loads may still find the tagged entries there.
//
// Errors are as for [Group.Invalidate]; the [*InvalidateError]'s Group is
// empty.
func (n *Node) InvalidateTags(ctx context.Context, tags ...string) error {
	if n.closed.Load() {
		return fmt.Errorf("meshcache: invalidate-tags in every group: %w", ErrClosed)
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			n.log.Warn("meshcache: rejected call", "op", "invalidate-tags", "err", err)
			return err
		}
	}
	if len(tags) == 0 {
		return nil
	}
	_, err := n.write(ctx, transport.WriteRequest{Op: transport.OpInvalidateTags, Tags: tags}, &allGroups{n: n})
	return err
}

// allGroups is the [writeScope] of a write to every group, on the writer.
// One write uses it, from the write's goroutine.
type allGroups struct {
	n *Node
	// l2Reached holds the groups whose second level l2Write reached (or
	// failed to: that failure is reported on its own).
	l2Reached map[string]bool
}

func (a *allGroups) apply(req transport.WriteRequest, phase transport.Phase) int {
	applied, _ := a.n.applyAllGroups(req, phase)
	return applied
}

// l2Write applies req to the second level of each of this node's groups
// that has one, at once: each call takes at most a quarter of the write's
// time, as for a write to one group.
func (a *allGroups) l2Write(ctx context.Context, req transport.WriteRequest, timeout time.Duration) error {
	var gs []*Group
	for _, g := range a.n.Groups() {
		if g.cfg.l2 != nil {
			gs = append(gs, g)
		}
	}
	a.l2Reached = make(map[string]bool, len(gs))
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		a.l2Reached[g.name] = true
		wg.Go(func() {
			if err := g.l2Write(ctx, req, timeout); err != nil {
				errs[i] = fmt.Errorf("group %s: %w", g.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// errL2Unreached is the cause reported as "l2" when a group with a second
// level exists on members but not on the writer of a write to every group.
var errL2Unreached = errors.New("meshcache: a group with a second level that this node has not (or created during the write): its second level was not written")

// l2Unreached reports the groups with a second level that l2Write did not
// reach: those the members named (reported), and those created here since.
func (a *allGroups) l2Unreached(reported map[string]bool) error {
	var missed []string
	for name := range reported {
		if !a.l2Reached[name] {
			missed = append(missed, name)
		}
	}
	for _, g := range a.n.Groups() {
		if g.cfg.l2 != nil && !a.l2Reached[g.name] && !reported[g.name] {
			missed = append(missed, g.name)
		}
	}
	if len(missed) == 0 {
		return nil
	}
	slices.Sort(missed)
	return fmt.Errorf("%w: %q", errL2Unreached, missed)
}

func (a *allGroups) writeLog() *slog.Logger { return a.n.log }

// checkAllGroupsWrite reports a write to every group from a peer that
// this node does not apply: only tag invalidations and clears (the gossip
// form of a tag invalidation too large for gossip) go to every group.
func checkAllGroupsWrite(req transport.WriteRequest) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("meshcache: %s in every group: %w: %s", req.Op, transport.ErrBadRequest, fmt.Sprintf(format, args...))
	}
	if req.Op != transport.OpInvalidateTags && req.Op != transport.OpClear {
		return bad("not a write to every group")
	}
	if !req.Phase.Valid() {
		return bad("undefined phase")
	}
	for _, t := range req.Tags {
		if err := checkTag(t); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// applyAllGroups applies phase of a checked write to every group this node
// has (both phases in order when phase is 0), and to the entries a snapshot
// keeps for groups not created yet. It returns the entries applied to and
// the groups that have a second level. It never blocks: members call it on
// the transport's read loop.
func (n *Node) applyAllGroups(req transport.WriteRequest, phase transport.Phase) (applied int, l2Groups []string) {
	if phase != transport.PhaseCopies {
		// The pending entries first, then the groups: see the top of this
		// file.
		for _, name := range n.pendingGroups() {
			r := req
			r.Group = name
			n.pendingWrite(r)
		}
	}
	req.Phase = phase
	n.noteMissedWrite("") // for the groups created afterwards: see missedWrites
	for _, g := range n.Groups() {
		applied += g.applyPhases(req)
		if g.cfg.l2 != nil {
			l2Groups = append(l2Groups, g.name)
		}
	}
	slices.Sort(l2Groups)
	return applied, l2Groups
}

// pendingGroups returns the names of the groups a snapshot keeps entries
// for (see snapshot.go).
func (n *Node) pendingGroups() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	names := make([]string, 0, len(n.pending))
	for name := range n.pending {
		names = append(names, name)
	}
	return names
}

// applyAllGroups applies a peer's write to every group.
func (h handler) applyAllGroups(req transport.WriteRequest) (transport.WriteResponse, error) {
	if err := checkAllGroupsWrite(req); err != nil {
		h.n.log.Warn("meshcache: refused a peer's write", "origin", req.Origin, "err", err)
		return transport.WriteResponse{}, err
	}
	applied, l2Groups := h.n.applyAllGroups(req, req.Phase)
	if req.Phase == transport.PhaseCopies && req.ID != 0 {
		h.n.acked.Add(writeKey{req.Origin, req.ID}, struct{}{})
	}
	resp := h.n.writeResponse(req, applied)
	resp.L2Groups = l2Groups
	return resp, nil
}
