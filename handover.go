package meshcache

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/ring"
	"github.com/meshcache/meshcache/transport"
)

// Hand-over on graceful leave (DESIGN.md, "Warm through restarts").
//
// Close offers the entries this node owns to the members that own them
// once it has left (the ring without it), before it leaves: a rolling
// restart then reloads almost nothing, since every value stays in memory
// somewhere in the cluster. The receiver stores an entry only if it owns
// the key in its own ring without the sender, and behind the oldest fence
// there is, as a hand-off does: a live tombstone of the key (rarely, of a
// key sharing its fence bucket: see package local) or generation
// of one of its tags (a write the sender may not have seen when it read the
// entry) refuses it, and so does a clear of the group younger than the
// tombstone lifetime. A write during the hand-over reaches the receiver
// like any write, before the entry (then the fence refuses it) or after it
// (then the write removes it). A node without its lease hands nothing over:
// it may hold what a write removed.

// Hand-over bounds, when the Config leaves them zero.
const (
	DefaultHandOverTimeout = 2 * time.Second
	DefaultHandOverBytes   = 256 << 20
	// handOverBatchBytes bounds one hand-over request, well under the
	// transport's default frame limit.
	handOverBatchBytes = 1 << 20
)

// handOverBatch is one request's worth of a group's entries for a peer.
type handOverBatch struct {
	group string
	items []transport.SetItem
	bytes int
}

// handOver offers the entries this node owns to their next owners,
// bounded by the hand-over timeout and bytes. Close calls it before
// leaving.
func (n *Node) handOver() {
	timeout, budget := n.ccfg.handOverTimeout, n.ccfg.handOverBytes
	rs := n.ring.Load()
	if n.cluster == nil || rs == nil || timeout <= 0 || budget <= 0 || !n.leased() {
		return
	}
	next := n.ringWithout(rs.cur.Members())
	if next == nil {
		return // no one to hand over to
	}
	start := time.Now()
	queues := make(map[*peer][]*handOverBatch)
	entries := 0
	for _, g := range n.Groups() {
		open := make(map[*peer]*handOverBatch)
		g.store.Range(local.Main, func(key string, e local.Entry) bool {
			if e.Negative {
				return true
			}
			var ttl time.Duration
			if !e.Expires.IsZero() {
				if ttl = time.Until(e.Expires); ttl <= 0 {
					return true
				}
			}
			if rs.cur.Owner(key) != n.name {
				return true // not ours (an earlier hand-over's, whose owner is back)
			}
			p := rs.peers[next.Owner(key)]
			if p == nil {
				return true
			}
			cost := len(key) + len(e.Value)
			for _, t := range e.Tags {
				cost += len(t)
			}
			if budget -= int64(cost); budget < 0 {
				return false
			}
			b := open[p]
			if b == nil || b.bytes+cost > handOverBatchBytes {
				b = &handOverBatch{group: g.name}
				open[p] = b
				queues[p] = append(queues[p], b)
			}
			b.items = append(b.items, transport.SetItem{Key: key, Value: e.Value, TTL: ttl, Tags: e.Tags})
			b.bytes += cost
			entries++
			return true
		})
		if budget < 0 {
			n.log.Warn("meshcache: hand-over stopped at its byte bound", "bytes", n.ccfg.handOverBytes)
			break
		}
	}
	if entries == 0 {
		return
	}
	if n.handOverHook != nil {
		n.handOverHook()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		mu     sync.Mutex
		stored int
		wg     sync.WaitGroup
	)
	for p, batches := range queues {
		wg.Go(func() {
			for _, b := range batches {
				resp, err := n.client.HandOver(ctx, p.addr, transport.HandOverRequest{Group: b.group, From: n.name, Items: b.items})
				if err != nil {
					n.log.Debug("meshcache: hand-over to a member failed", "member", p.name, "err", err)
					return
				}
				mu.Lock()
				stored += resp.Stored
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n.log.Info("meshcache: handed over the entries this node owns", "offered", entries, "stored", stored,
		"members", len(queues), "took", time.Since(start).Round(time.Millisecond))
}

// HandOver stores the entries a leaving member offers that this node owns
// once that member has left (see handOver for the fences).
func (h handler) HandOver(ctx context.Context, req transport.HandOverRequest) (transport.HandOverResponse, error) {
	n := h.n
	if n.closed.Load() {
		return transport.HandOverResponse{}, transport.ErrClosed
	}
	rs := n.ring.Load()
	if rs == nil || !n.serving() || len(req.Items) == 0 {
		return transport.HandOverResponse{}, nil
	}
	g, err := n.groupFor(req.Group)
	if err != nil {
		return transport.HandOverResponse{}, err
	}
	if at := g.missedWrite.Load(); at != 0 && time.Since(time.Unix(0, at)) < g.tombstoneTTL() {
		// A write reached this node before the group existed here, and
		// removed nothing: no fence here records it, and the sender may
		// have read its entries before that write.
		return transport.HandOverResponse{}, nil
	}
	// The oldest fence, as for a hand-off: any live tombstone or tag
	// generation refuses an entry, and a clear younger than the tombstone
	// lifetime refuses them all.
	var since uint64
	if c := g.lastClear.Load(); c != nil {
		if time.Since(c.at) < g.tombstoneTTL() {
			return transport.HandOverResponse{}, nil
		}
		since = c.seq
	}
	after := handOverRing(n, rs, req.From)
	if after == nil {
		return transport.HandOverResponse{}, nil
	}
	stored := 0
	for _, it := range req.Items {
		if it.Key == "" || len(it.Key) > MaxKeyLen || it.TTL < 0 || after.Owner(it.Key) != n.name {
			continue
		}
		if g.checkSetItem(it.Key, Item{Value: it.Value, TTL: it.TTL, Tags: it.Tags}) != nil {
			continue
		}
		ttl := it.TTL
		if ttl > 0 {
			ttl = min(ttl, g.cfg.ttl)
		}
		if g.store.Add(local.Main, local.Put{Key: it.Key, Value: it.Value, Tags: cleanTags(it.Tags), TTL: ttl, Since: since}) {
			stored++
		}
	}
	g.stats.handoffs.Add(uint64(stored))
	return transport.HandOverResponse{Stored: stored}, nil
}

// handOverRing returns the ring of rs's members without from (the leaving
// member), or nil.
func handOverRing(n *Node, rs *ringState, from string) *ring.Ring {
	members := rs.cur.Members()
	if !slices.Contains(members, from) {
		return rs.cur // it has left already
	}
	return n.ringExcept(members, from)
}

// missedWrites records the writes a node applied to groups it had not
// created (to nothing), so that a group created soon afterwards refuses
// hand-overs for a tombstone lifetime: the leaving member may have read
// its entries before such a write, and no fence of the new group refuses
// them. Guarded by Node.mu.
type missedWrites struct {
	byGroup map[string]int64 // Unix nanoseconds of the last write
	all     int64            // the last write to every group
}

// missedWritesKept bounds the groups recorded; older records go first.
const missedWritesKept = 1024

// noteMissedWrite records a write of group ("" for every group) that
// this node is applying, and returns the group if it exists now, to apply
// the write to it. Recording before looking the group up, under the lock
// that adds groups, leaves no gap: a group added afterwards sees the
// record, and one added before is returned.
func (n *Node) noteMissedWrite(group string) (*Group, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := &n.missed
	if group == "" {
		m.all = time.Now().UnixNano()
		return nil, false
	}
	if g, ok := n.groups[group]; ok {
		return g, true
	}
	now := time.Now().UnixNano()
	if m.byGroup == nil {
		m.byGroup = make(map[string]int64)
	}
	if len(m.byGroup) >= missedWritesKept {
		oldest, at := "", int64(math.MaxInt64)
		for name, t := range m.byGroup {
			if t < at {
				oldest, at = name, t
			}
		}
		delete(m.byGroup, oldest)
	}
	m.byGroup[group] = now
	return nil, false
}

// lastLocked returns when a write last reached group before it existed
// (0: never). The caller holds Node.mu.
func (m *missedWrites) lastLocked(group string) int64 {
	return max(m.byGroup[group], m.all)
}
