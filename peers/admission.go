package peers

import (
	"sync"

	"github.com/hashicorp/memberlist"
)

// admission implements memberlist's AliveDelegate and MergeDelegate: it
// refuses members whose metadata is undecodable or whose fingerprint or
// protocol differs from ours.
//
// Both hooks are needed. The merge delegate runs on both sides of a join's
// push/pull, before any state is merged, so neither the joiner nor the seed
// learns about the other; it makes the joiner's [Join] fail. The alive
// delegate filters every alive message, so an incompatible member cannot slip
// in later through gossip relayed by a third node.
type admission struct{ c *Cluster }

var (
	_ memberlist.AliveDelegate = admission{}
	_ memberlist.MergeDelegate = admission{}
)

// NotifyAlive refuses an alive message about an incompatible member.
// memberlist logs the returned error at Warn.
func (a admission) NotifyAlive(n *memberlist.Node) error {
	if n.Name == a.c.s.Name {
		return nil // about us: memberlist itself refutes impostors
	}
	_, err := checkMeta(n.Name, n.Meta, a.c.s.Fingerprint)
	return err
}

// NotifyMerge cancels a join push/pull if any live member of the remote side
// is incompatible, and records why for [Join]'s error.
func (a admission) NotifyMerge(nodes []*memberlist.Node) error {
	for _, n := range nodes {
		if n.Name == a.c.s.Name || n.State == memberlist.StateDead || n.State == memberlist.StateLeft {
			continue
		}
		if _, err := checkMeta(n.Name, n.Meta, a.c.s.Fingerprint); err != nil {
			a.c.refusals.record(err)
			a.c.log.Warn("peers: refused to merge with an incompatible cluster", "err", err)
			return err
		}
	}
	return nil
}

// refusals remembers the last merge the admission delegate refused, so that
// [Join] can tell an incompatible cluster (permanent, wraps ErrIncompatible)
// from an unreachable seed (retried). memberlist flattens delegate errors
// into strings, which would lose errors.Is.
type refusals struct {
	mu   sync.Mutex // guards n and last
	n    uint64
	last error
}

func (r *refusals) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.last = err
}

// mark returns a token for since.
func (r *refusals) mark() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// since returns the last refusal recorded after mark, or nil.
func (r *refusals) since(mark uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n > mark {
		return r.last
	}
	return nil
}
