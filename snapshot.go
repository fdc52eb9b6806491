package meshcache

import (
	"os"
	"slices"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// Snapshots for a cold cluster (DESIGN.md, "Warm through restarts").
//
// With Config.SnapshotDir set, Close writes every group's entries (main and
// hot: value, absolute expiry, tags) to a file under it, atomically and
// with a checksum (snapshot_file.go), unless the node does not hold its
// lease (it may have missed writes). NewNode reads the file back, before
// the node can acknowledge any write, and keeps its entries if, and only
// if, the node is alone once its join settled: it runs standalone, starts a
// new cluster (no Join), or its Join found no member but itself (for
// example a DNS name that resolves to its own address). A node that joins a
// running cluster discards its snapshot: the others may have written while
// it was down, and those writes did not reach its file. So in a cold start
// only the first node's snapshot is used; the others join it and get its
// keys by hand-off as ownership moves to them.
//
// Entries whose expiry passed are not restored. The restored entries wait
// for their group: NewGroup adopts them, behind the fences of every write
// the node acknowledged meanwhile (a write to a group not created yet
// drops the entries it touches from the pending set). A file that is
// missing, torn, truncated, corrupt, of another version or larger than
// maxSnapshotBytes is ignored, with a warning: nothing of it is kept. Within
// a group, what fits the group's byte bounds is kept (the LRU evicts the
// rest).

// maxSnapshotBytes bounds the snapshot file NewNode reads.
const maxSnapshotBytes = 4 << 30

// pendingSnapshot holds restored entries by group, until NewGroup adopts
// them. Guarded by Node.mu.
type pendingSnapshot map[string][]snapshotEntry

// loadSnapshot reads cfg.SnapshotDir into n.pending. Called by NewNode
// before the peer transport starts.
func (n *Node) loadSnapshot(dir string) {
	groups, err := readSnapshotFile(dir, maxSnapshotBytes)
	if err != nil {
		n.log.Warn("meshcache: ignoring the snapshot", "dir", dir, "err", err)
		return
	}
	if len(groups) == 0 {
		return
	}
	now := time.Now()
	p := make(pendingSnapshot, len(groups))
	entries := 0
	for _, g := range groups {
		live := slices.DeleteFunc(g.Entries, func(e snapshotEntry) bool {
			return !e.Expires.IsZero() && !e.Expires.After(now)
		})
		if len(live) > 0 {
			p[g.Name] = live
			entries += len(live)
		}
	}
	n.mu.Lock()
	n.pending = p
	n.mu.Unlock()
	n.log.Info("meshcache: snapshot read", "groups", len(p), "entries", entries)
}

// keepSnapshot keeps the pending entries only if the node is alone once
// its join settled; else it discards them.
func (n *Node) keepSnapshot() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending == nil || n.cluster == nil {
		return
	}
	if members := n.cluster.Members(); len(members) != 1 {
		n.log.Info("meshcache: joined a running cluster; discarding the snapshot (it may have missed writes)", "members", len(members))
		n.pending = nil
	}
}

// adoptSnapshot takes the pending entries of group name, if any. The
// caller holds n.mu.
func (n *Node) adoptSnapshotLocked(name string) []snapshotEntry {
	es := n.pending[name]
	delete(n.pending, name)
	return es
}

// restore stores entries in g behind since, the group's sequence before
// it became visible: a write applied since refuses what it touched.
func (g *Group) restore(entries []snapshotEntry, since uint64) {
	if len(entries) == 0 {
		return
	}
	now := time.Now()
	stored := 0
	for _, e := range entries {
		var ttl time.Duration
		if !e.Expires.IsZero() {
			if ttl = e.Expires.Sub(now); ttl <= 0 {
				continue
			}
		}
		tier := local.Main
		if e.Hot {
			tier, ttl = local.Hot, g.tierTTL(local.Hot, ttl) // no expiry: the hot TTL
		}
		if g.checkSetItem(e.Key, Item{Value: e.Value, TTL: ttl, Tags: e.Tags}) != nil {
			continue
		}
		if g.store.Add(tier, local.Put{Key: e.Key, Value: e.Value, Tags: cleanTags(e.Tags), TTL: ttl, Since: since}) {
			stored++
		}
	}
	g.log.Info("meshcache: restored from the snapshot", "entries", stored, "of", len(entries))
}

// pendingWrite applies a write to the pending entries of a group not
// created yet: it drops every entry the write touches, so that NewGroup
// never adopts what a write the node acknowledged removed.
func (n *Node) pendingWrite(req transport.WriteRequest) {
	n.mu.Lock()
	defer n.mu.Unlock()
	es, ok := n.pending[req.Group]
	if !ok {
		return
	}
	var keys []string
	switch req.Op {
	case transport.OpClear:
		delete(n.pending, req.Group)
		return
	case transport.OpSet, transport.OpSetIfAbsent:
		keys = itemKeys(req.Items)
	default:
		keys = req.Keys
	}
	n.pending[req.Group] = slices.DeleteFunc(es, func(e snapshotEntry) bool {
		if slices.Contains(keys, e.Key) {
			return true
		}
		for _, t := range req.Tags {
			if slices.Contains(e.Tags, t) {
				return true
			}
		}
		return false
	})
}

// saveSnapshot writes every group's live entries (main and hot) to dir.
// Close calls it once nothing loads any more, if the node held its lease
// when Close started (one without it may have missed writes; leaving takes
// the lease with it, so it is checked first).
func (n *Node) saveSnapshot(dir string) {
	var groups []snapshotGroup
	entries := 0
	for _, g := range n.Groups() {
		sg := snapshotGroup{Name: g.name}
		for _, t := range [...]local.Tier{local.Main, local.Hot} {
			g.store.Range(t, func(key string, e local.Entry) bool {
				if !e.Negative {
					sg.Entries = append(sg.Entries, snapshotEntry{Key: key, Value: e.Value, Tags: e.Tags, Expires: e.Expires, Hot: t == local.Hot})
				}
				return true
			})
		}
		entries += len(sg.Entries)
		groups = append(groups, sg)
	}
	start := time.Now()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		n.log.Error("meshcache: cannot create the snapshot directory", "dir", dir, "err", err)
		return
	}
	if err := writeSnapshotFile(dir, groups); err != nil {
		n.log.Error("meshcache: cannot write the snapshot", "dir", dir, "err", err)
		return
	}
	n.log.Info("meshcache: snapshot written", "dir", dir, "groups", len(groups), "entries", entries, "took", time.Since(start).Round(time.Millisecond))
}
