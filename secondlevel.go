package meshcache

import (
	"context"
	"time"

	"github.com/meshcache/meshcache/l2"
	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// The second level ([WithL2]) and the guarantee.
//
// Reads: a load notes its fence (since) before it reads L2, so a write whose
// phase 1 reaches this node after that refuses what the load stores here,
// whether it came from L2 or from the loader.
//
// Writes: the writer deletes from L2 (bumping versions) before phase 1, so
// a load that notes its fence after phase 1 reaches it reads L2 after the
// delete. What a load read from L2 before the delete, it cannot store here.
//
// Write-backs: a load writes what its loader returned to L2 only under the
// version its L2 read saw; a write that began since bumped it, and L2
// refuses the value. Without that condition a load that read the database
// before a write could put the old value into L2 after the write's delete,
// where the next load (here, or at the key's next owner) would find it.

// l2Member is the name an [*InvalidateError] gives the second level when a
// write could not delete from it.
const l2Member = "l2"

// l2Backoff is how long reads skip the second level after it failed.
const l2Backoff = time.Second

// l2Read reads keys from the group's second level. ok is false when the
// group has none, reads skip it after a failure, or the read failed: the
// caller loads as if L2 did not exist.
func (g *Group) l2Read(ctx context.Context, keys []string) (rs []l2.Result, ok bool) {
	s := g.cfg.l2
	if s == nil {
		return nil, false
	}
	if time.Now().UnixNano() < g.l2SkipUntil.Load() {
		g.stats.l2Bypassed.Add(uint64(len(keys)))
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.l2Timeout)
	defer cancel()
	rs, err := s.Get(ctx, g.name, keys...)
	if err == nil && len(rs) != len(keys) {
		err = l2.ErrCorrupt
	}
	if err != nil {
		g.l2Failed("read", err)
		return nil, false
	}
	for _, r := range rs {
		if r.Found {
			g.stats.l2Hits.Add(1)
		} else {
			g.stats.l2Misses.Add(1)
		}
	}
	return rs, true
}

// l2Failed counts and logs a failed call to the second level, and makes
// reads skip it for l2Backoff (so the log says it at most once per
// backoff).
func (g *Group) l2Failed(op string, err error) {
	g.stats.l2Errors.Add(1)
	until := time.Now().Add(l2Backoff).UnixNano()
	if prev := g.l2SkipUntil.Load(); prev < time.Now().UnixNano() && g.l2SkipUntil.CompareAndSwap(prev, until) {
		g.log.Warn("meshcache: second level failed; reads skip it for a while", "op", op, "skip", l2Backoff, "err", err)
	}
}

// l2Found stores what the second level had for key in tier, behind the
// fence since, and returns its value. ok is false when the entry cannot be
// stored (too large, a bad tag): then the key is loaded.
func (g *Group) l2Found(ctx context.Context, key string, r l2.Result, since uint64, tier local.Tier) ([]byte, bool) {
	it := Item{Value: r.Value, TTL: r.TTL, Tags: r.Tags}
	if r.TTL <= 0 || g.checkItem(key, it) != nil {
		return nil, false
	}
	if ctx.Err() == nil {
		g.store.Add(tier, local.Put{Key: key, Value: it.Value, Tags: cleanTags(it.Tags), TTL: g.tierTTL(tier, it.TTL), Since: since})
	}
	return it.Value, true
}

// l2WriteBack writes loaded items to the second level, each under the
// version its read saw. A failure is counted, not returned: the values are
// cached here, and the next load of a key L2 lacks asks the loader.
func (g *Group) l2WriteBack(ctx context.Context, items []l2.Item) {
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.l2Timeout)
	defer cancel()
	n, err := g.cfg.l2.Set(ctx, g.name, items...)
	if err != nil {
		g.l2Failed("write-back", err)
		return
	}
	g.stats.l2Stores.Add(uint64(n))
}

// l2Write applies a write to the second level, before any member applies
// it: keys are deleted (a Set or Expire too: the next load writes the value
// back), tags and clears bump generations in L2, once for the fleet. It
// takes at most a quarter of the write's time (ctx's deadline, or timeout
// when ctx has none): an L2 that hangs must leave the phases the time to
// reach every member, so that the write fails for L2 alone.
func (g *Group) l2Write(ctx context.Context, req transport.WriteRequest, timeout time.Duration) error {
	s := g.cfg.l2
	if s == nil {
		return nil
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout/4)
	defer cancel()
	var err error
	switch req.Op {
	case transport.OpInvalidate, transport.OpExpire:
		err = s.Delete(ctx, g.name, req.Keys...)
	case transport.OpSet, transport.OpSetIfAbsent:
		err = s.Delete(ctx, g.name, itemKeys(req.Items)...)
	case transport.OpInvalidateTags:
		err = s.InvalidateTags(ctx, g.name, req.Tags...)
	case transport.OpClear:
		err = s.Clear(ctx, g.name)
	}
	if err != nil {
		g.l2Failed(req.Op.String(), err)
	}
	return err
}
