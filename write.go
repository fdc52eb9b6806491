package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// An InvalidateError reports a write (Invalidate, InvalidateTags, Set,
// SetMany, SetIfAbsent, Expire, Clear) that some alive members did not
// acknowledge in time. It wraps [ErrPartialInvalidation]. The change was
// applied on every other member and queued on gossip for the ones named
// here; until they apply it they may serve what the write replaced. A group
// with a second level ([WithL2]) that did not take the write names it "l2":
// until a write of the key succeeds, a load may find the old value there.
type InvalidateError struct {
	Op      string   // "invalidate", "invalidate-tags", "set", ...
	Group   string   // the group written to; empty for every group ([Node.InvalidateTags])
	Unacked []string // the members that did not acknowledge, sorted
	Causes  []error  // why, in the order of Unacked
}

func (e *InvalidateError) Error() string {
	var b strings.Builder
	where := "group " + e.Group
	if e.Group == "" {
		where = "every group"
	}
	fmt.Fprintf(&b, "meshcache: %s in %s not acknowledged by %d member(s): ", e.Op, where, len(e.Unacked))
	for i, name := range e.Unacked {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(name)
		if i < len(e.Causes) && e.Causes[i] != nil {
			b.WriteString(" (")
			b.WriteString(e.Causes[i].Error())
			b.WriteString(")")
		}
	}
	return b.String()
}

// Unwrap returns [ErrPartialInvalidation]. The causes are in the text only:
// a member's timeout is not the caller's.
func (e *InvalidateError) Unwrap() error { return ErrPartialInvalidation }

// Refresh loads key now, stores the result over any cached value, and
// returns it. Loads of key that were in flight are fenced: they can no longer
// overwrite the refreshed value.
func (g *Group) Refresh(ctx context.Context, key string) ([]byte, error) {
	return g.Get(ctx, key, ForceRefresh())
}

// Set stores item under key, replacing any cached value, and fences loads of
// key that were in flight: once Set returns nil, no Get on any node returns
// a value loaded before it. In a cluster the key's owner stores the value
// and every member drops its copies (see [Group.Invalidate] for the
// errors). A zero item.TTL means the group's default, [NoExpiry] no
// expiry; jitter does not apply. An item with NoStore set only invalidates
// key.
func (g *Group) Set(ctx context.Context, key string, item Item) error {
	_, err := g.set(ctx, transport.OpSet, key, item)
	return err
}

// SetIfAbsent stores item under key only when the key's owner has no value
// cached for it, and reports whether it did. Like [Group.Set], a stored
// value fences the loads of key in flight and drops every member's copies.
func (g *Group) SetIfAbsent(ctx context.Context, key string, item Item) (bool, error) {
	return g.set(ctx, transport.OpSetIfAbsent, key, item)
}

// SetMany stores each item of items under its key, as [Group.Set] does,
// in one write: each key's owner stores its items, and every member drops
// its copies of the keys and fences their loads in flight, in the same two
// phases however many keys and owners there are. Once SetMany returns nil,
// no Get on any node returns a value of any of the keys loaded before it.
//
// A bad key or item fails the call before anything is written, with the
// errors of Set; an empty items writes nothing. A member that does not
// acknowledge makes SetMany return an [*InvalidateError] (see
// [Group.Invalidate]). Items with NoStore set only invalidate their keys:
// in a second write, beside the first, when other items are stored; the
// members that either write missed are named in one *InvalidateError. The
// write goes to each member in one message: a SetMany larger than the peer
// transport's frame limit ([Config.MaxFrameBytes]) is acknowledged by no
// member.
func (g *Group) SetMany(ctx context.Context, items map[string]Item) error {
	const op = "set-many"
	if err := g.checkClosed(op); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(items)) // the first bad key is reported, whatever the map's order
	set := make([]transport.SetItem, 0, len(keys))
	var drop []string
	for _, k := range keys {
		if err := g.checkKey(op, k); err != nil {
			return err
		}
		it := items[k]
		if err := g.checkSetItem(k, it); err != nil {
			g.log.Warn("meshcache: rejected call", "op", op, "key", k, "err", err)
			return err
		}
		if it.NoStore {
			drop = append(drop, k)
			continue
		}
		set = append(set, transport.SetItem{Key: k, Value: it.Value, TTL: it.TTL, Tags: it.Tags})
	}
	var err, derr error
	var wg sync.WaitGroup
	if len(drop) > 0 {
		// Beside the Set, not after it: both have ctx's whole time.
		wg.Go(func() { _, derr = g.write(ctx, transport.WriteRequest{Op: transport.OpInvalidate, Keys: drop}) })
	}
	if len(set) > 0 {
		_, err = g.write(ctx, transport.WriteRequest{Op: transport.OpSet, Items: set})
	}
	wg.Wait()
	return joinUnacked(err, derr)
}

// joinUnacked returns one error for two writes of one call: nil if both
// succeeded, else an [*InvalidateError] naming the members that either did
// not acknowledge (a's cause first). a and b are nil or *InvalidateError,
// as write returns them.
func joinUnacked(a, b error) error {
	ea, okA := errors.AsType[*InvalidateError](a)
	eb, okB := errors.AsType[*InvalidateError](b)
	switch {
	case b == nil:
		return a
	case a == nil:
		return b
	case !okA || !okB:
		return errors.Join(a, b)
	}
	out := &InvalidateError{Op: ea.Op, Group: ea.Group}
	causes := make(map[string]error, len(ea.Unacked)+len(eb.Unacked))
	for _, e := range [...]*InvalidateError{eb, ea} { // ea last: its causes win
		for i, name := range e.Unacked {
			if i < len(e.Causes) {
				causes[name] = e.Causes[i]
			} else if _, ok := causes[name]; !ok {
				causes[name] = nil
			}
		}
	}
	out.Unacked = slices.Sorted(maps.Keys(causes))
	for _, name := range out.Unacked {
		out.Causes = append(out.Causes, causes[name])
	}
	return out
}

// set is Set (op OpSet) and SetIfAbsent (op OpSetIfAbsent).
func (g *Group) set(ctx context.Context, op transport.Op, key string, item Item) (bool, error) {
	if err := g.checkKey(op.String(), key); err != nil {
		return false, err
	}
	if err := g.checkSetItem(key, item); err != nil {
		g.log.Warn("meshcache: rejected call", "op", op, "key", key, "err", err)
		return false, err
	}
	if item.NoStore {
		return false, g.Invalidate(ctx, key)
	}
	applied, err := g.write(ctx, transport.WriteRequest{
		Op:    op,
		Items: []transport.SetItem{{Key: key, Value: item.Value, TTL: item.TTL, Tags: item.Tags}},
	})
	return applied > 0, err
}

// storeSet applies a checked item of a write op (OpSet or OpSetIfAbsent)
// on this node: the owner stores it, every node fences the key. It reports
// whether the value was stored.
func (g *Group) storeSet(op transport.Op, it transport.SetItem) bool {
	ifAbsent := op == transport.OpSetIfAbsent
	if g.node.route(it.Key) != nil {
		if !ifAbsent {
			g.fenceKeys([]string{it.Key})
		}
		return false
	}
	if ifAbsent {
		if e, ok := g.store.Get(local.Main, it.Key); ok && !e.Negative {
			return false
		}
	}
	seq := g.fenceKeys([]string{it.Key})
	ttl := it.TTL // NoExpiry stays negative: no expiry in the store
	if ttl == 0 {
		ttl = g.cfg.ttl
	}
	value, tags := bytes.Clone(it.Value), cleanTags(it.Tags)
	if value == nil {
		value = []byte{}
	}
	if ifAbsent {
		return g.store.AddIfAbsent(local.Main, local.Put{Key: it.Key, Value: value, Tags: tags, TTL: ttl, Since: seq})
	}
	g.store.Add(local.Main, local.Put{Key: it.Key, Value: value, Tags: tags, TTL: ttl, Since: seq})
	return true
}

// fenceKeys drops keys from both caches, fences the loads and fetches of
// keys in flight, and makes later callers start new flights. It returns the
// fence's sequence: a load that notes it (or later) is not fenced.
func (g *Group) fenceKeys(keys []string) uint64 {
	seq, _ := g.store.Invalidate(local.All, keys...)
	g.forget(keys)
	return seq
}

// fenceRefresh fences keys before a forced refresh: on every member, so
// that the refreshed value replaces every copy. A refresh that some members
// did not acknowledge goes on (they get the invalidation by gossip).
func (g *Group) fenceRefresh(ctx context.Context, keys []string) error {
	if g.node.cluster == nil {
		// The second level first, as a write does; one that failed is
		// skipped by reads for a while (see l2Failed).
		g.l2Write(ctx, transport.WriteRequest{Op: transport.OpInvalidate, Keys: keys}, DefaultWriteTimeout)
		g.fenceKeys(keys)
		return nil
	}
	err := g.Invalidate(ctx, keys...)
	if errors.Is(err, ErrPartialInvalidation) {
		g.log.Warn("meshcache: refresh went on without every member's acknowledgement", "err", err)
		return nil
	}
	return err
}

// Expire sets the remaining time to live of key's cached value to ttl on
// every member; ttl must be positive, or [NoExpiry], which removes the
// value's expiry. Copies elsewhere (hot, stand-in) keep at most the hot
// TTL. It reports whether a value was cached on some member.
func (g *Group) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := g.checkKey("expire", key); err != nil {
		return false, err
	}
	if ttl <= 0 && ttl != NoExpiry {
		err := fmt.Errorf("meshcache: expire %q: TTL %v: %w", key, ttl, ErrInvalidTTL)
		g.log.Warn("meshcache: rejected call", "op", "expire", "key", key, "err", err)
		return false, err
	}
	applied, err := g.write(ctx, transport.WriteRequest{Op: transport.OpExpire, Keys: []string{key}, TTL: ttl})
	return applied > 0, err
}

// expire applies Expire to this node's tier.
func (g *Group) expire(tier local.Tier, key string, ttl time.Duration) bool {
	if e, ok := g.store.Get(tier, key); ok && e.Negative {
		return false // a cached not-found is not a value
	}
	if ttl == NoExpiry && tier == local.Main && g.node.route(key) != nil {
		ttl = g.cfg.hotTTL // only the key's owner keeps a value without expiry
	}
	return g.store.Expire(tier, key, g.tierTTL(tier, ttl))
}

// Invalidate drops keys from the cache of every member. Once it returns
// nil, no Get that starts afterwards on any node returns a value loaded
// before the call.
//
// When some alive member does not acknowledge in time (ctx's deadline, or
// [Config.WriteTimeout] when ctx has none), Invalidate returns an
// [*InvalidateError] naming them, which wraps [ErrPartialInvalidation]; the
// change is then also queued on gossip for them. The same holds for
// [Group.InvalidateTags], [Group.Set], [Group.SetMany], [Group.SetIfAbsent],
// [Group.Expire] and [Group.Clear].
func (g *Group) Invalidate(ctx context.Context, keys ...string) error {
	if err := g.checkClosed("invalidate"); err != nil {
		return err
	}
	for _, k := range keys {
		if err := g.checkKey("invalidate", k); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := g.write(ctx, transport.WriteRequest{Op: transport.OpInvalidate, Keys: keys})
	return err
}

// InvalidateTags drops every entry that carries one of tags, on every
// member, in time independent of how many entries do. Once it returns nil,
// no Get that starts afterwards on any node returns a value loaded before
// the call. Errors are as for [Group.Invalidate].
func (g *Group) InvalidateTags(ctx context.Context, tags ...string) error {
	if err := g.checkClosed("invalidate-tags"); err != nil {
		return err
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			g.log.Warn("meshcache: rejected call", "op", "invalidate-tags", "err", err)
			return err
		}
	}
	if len(tags) == 0 {
		return nil
	}
	_, err := g.write(ctx, transport.WriteRequest{Op: transport.OpInvalidateTags, Tags: tags})
	return err
}

// Clear drops every entry of the group on every member. Once it returns
// nil, no Get that starts afterwards on any node returns a value loaded
// before the call. Errors are as for [Group.Invalidate].
func (g *Group) Clear(ctx context.Context) error {
	if err := g.checkClosed("clear"); err != nil {
		return err
	}
	_, err := g.write(ctx, transport.WriteRequest{Op: transport.OpClear})
	return err
}

// Delete drops key from the cache of every member, as [Group.Invalidate]
// does (the same guarantee, and the same errors), and reports whether some
// member held a value of key: a live value in its main cache, its stand-in
// tier or its hot cache (a copy fetched from the owner). A cached
// not-found ([WithNegativeTTL]) is not a value, nor is an expired entry
// kept for [WithStaleIfError]; the second level ([WithL2]) is not asked
// (Delete removes the key there too). When some members do not acknowledge
// (an [*InvalidateError]), existed reports what this node and the members
// that answered held.
func (g *Group) Delete(ctx context.Context, key string) (existed bool, err error) {
	if err := g.checkKey("delete", key); err != nil {
		return false, err
	}
	applied, err := g.write(ctx, transport.WriteRequest{Op: transport.OpInvalidate, Keys: []string{key}, CountHeld: true})
	return applied > 0, err
}

// held counts the keys of which tier t (some of Main, StandIn and Hot)
// holds a live value on this node: a cached not-found is not one. It is
// Applied for a write with CountHeld.
func (g *Group) held(t local.Tier, keys []string) int {
	n := 0
	for _, k := range keys {
		for _, tt := range [...]local.Tier{local.Main, local.StandIn, local.Hot} {
			if t&tt == 0 || g.store.Empty(tt) {
				continue
			}
			if e, ok := g.store.Get(tt, k); ok && !e.Negative {
				n++
				break
			}
		}
	}
	return n
}
