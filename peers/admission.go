package peers

import (
	"fmt"
	"strconv"
	"strings"
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
	if n.Name == a.c.s.mlName {
		return nil // about us: memberlist itself refutes impostors
	}
	_, _, err := checkNode(n.Name, n.Meta, a.c.s.Fingerprint)
	return err
}

// NotifyMerge cancels a join push/pull if any live member of the remote side
// is incompatible, and records why for the join attempt that caused it.
func (a admission) NotifyMerge(nodes []*memberlist.Node) error {
	for _, n := range nodes {
		if n.Name == a.c.s.mlName || n.State == memberlist.StateDead || n.State == memberlist.StateLeft {
			continue
		}
		if _, _, err := checkNode(n.Name, n.Meta, a.c.s.Fingerprint); err != nil {
			a.c.log.Warn("peers: refused to merge with an incompatible cluster", "err", err)
			return a.c.refusals.record(err)
		}
	}
	return nil
}

// refusalTag marks a refusal in the error text memberlist returns.
const refusalTag = "peers-refusal#"

// maxRefusals bounds the refusals remembered for attribution.
const maxRefusals = 64

// refusals lets a join attempt tell that the merge delegate refused its own
// push/pull (a real incompatibility: permanent, wraps ErrIncompatible) from
// an unreachable seed (retried).
//
// The merge delegate also runs for other nodes' joins of this node, which
// may happen during our attempt, so a node-wide "something was refused"
// would turn an unrelated refusal into a failed join. Instead every refusal
// gets an id that goes into the error returned to memberlist. memberlist
// flattens delegate errors into text (which also loses errors.Is), but it
// keeps that text in the error its Join returns: the attempt finds the id
// there and gets back the original error. Refusals made for other nodes'
// joins end in those nodes' errors, never in ours.
type refusals struct {
	mu   sync.Mutex // guards next and errs
	next uint64
	errs map[uint64]error // the last maxRefusals refusals by id
}

// record remembers err and returns it tagged with its id.
func (r *refusals) record(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = make(map[uint64]error)
	}
	r.next++
	id := r.next
	r.errs[id] = err
	delete(r.errs, id-maxRefusals)
	return fmt.Errorf("%w (%s%d)", err, refusalTag, id)
}

// find returns the refusal whose tag appears in joinErr, or nil.
func (r *refusals) find(joinErr error) error {
	if joinErr == nil {
		return nil
	}
	msg := joinErr.Error()
	i := strings.Index(msg, refusalTag)
	if i < 0 {
		return nil
	}
	digits := msg[i+len(refusalTag):]
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	id, err := strconv.ParseUint(digits[:n], 10, 64)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[id]
}
