package meshcache

import (
	"fmt"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// checkWrite reports a write from a peer that a local call would have
// refused.
func (g *Group) checkWrite(req transport.WriteRequest) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("meshcache: %s in group %s: %w: %s", req.Op, g.name, transport.ErrBadRequest, fmt.Sprintf(format, args...))
	}
	if !req.Op.Valid() || !req.Phase.Valid() {
		return bad("undefined op or phase")
	}
	for _, k := range req.Keys {
		if k == "" || len(k) > MaxKeyLen {
			return bad("key of %d bytes", len(k))
		}
	}
	for _, t := range req.Tags {
		if err := checkTag(t); err != nil {
			return bad("%v", err)
		}
	}
	for _, it := range req.Items {
		if it.Key == "" || len(it.Key) > MaxKeyLen {
			return bad("key of %d bytes", len(it.Key))
		}
		if err := g.checkSetItem(it.Key, Item{Value: it.Value, TTL: it.TTL, Tags: it.Tags}); err != nil {
			return bad("%v", err)
		}
	}
	if req.Op == transport.OpExpire && req.TTL <= 0 && req.TTL != NoExpiry {
		return bad("TTL %v", req.TTL)
	}
	return nil
}

// checkItem reports a loaded item that cannot be stored.
func (g *Group) checkItem(key string, it Item) error {
	if !validTTL(it.TTL) {
		err := fmt.Errorf("meshcache: load %q in group %s: TTL %v: %w", key, g.name, it.TTL, ErrInvalidTTL)
		g.log.Warn("meshcache: loader returned a bad TTL", "key", key, "err", err)
		return err
	}
	if len(it.Value) > g.cfg.maxValueBytes {
		err := fmt.Errorf("meshcache: load %q in group %s: value of %d bytes over %d: %w",
			key, g.name, len(it.Value), g.cfg.maxValueBytes, ErrValueTooLarge)
		g.log.Warn("meshcache: loader returned a value too large", "key", key, "err", err)
		return err
	}
	for _, t := range it.Tags {
		if len(t) > MaxKeyLen {
			err := fmt.Errorf("meshcache: load %q in group %s: tag of %d bytes: %w", key, g.name, len(t), ErrInvalidTag)
			g.log.Warn("meshcache: loader returned a bad tag", "key", key, "err", err)
			return err
		}
	}
	return nil
}

func (g *Group) checkSetItem(key string, item Item) error {
	if !validTTL(item.TTL) {
		return fmt.Errorf("meshcache: set %q: TTL %v: %w", key, item.TTL, ErrInvalidTTL)
	}
	if len(item.Value) > g.cfg.maxValueBytes {
		return fmt.Errorf("meshcache: set %q: value of %d bytes over %d: %w",
			key, len(item.Value), g.cfg.maxValueBytes, ErrValueTooLarge)
	}
	for _, t := range item.Tags {
		if len(t) > MaxKeyLen {
			return fmt.Errorf("meshcache: set %q: tag of %d bytes: %w", key, len(t), ErrInvalidTag)
		}
	}
	return nil
}

// validTTL reports whether ttl is an [Item.TTL]: zero (the group's
// default), positive, or [NoExpiry].
func validTTL(ttl time.Duration) bool { return ttl >= 0 || ttl == NoExpiry }

func checkTag(t string) error {
	if t == "" || len(t) > MaxKeyLen {
		return fmt.Errorf("meshcache: invalidate tag of %d bytes: %w", len(t), ErrInvalidTag)
	}
	return nil
}

func (g *Group) checkClosed(op string) error {
	if g.node.closed.Load() {
		return fmt.Errorf("meshcache: %s in group %s: %w", op, g.name, ErrClosed)
	}
	return nil
}

// checkKey reports a closed node or a bad key, logging the latter.
func (g *Group) checkKey(op, key string) error {
	if err := g.checkClosed(op); err != nil {
		return err
	}
	if key != "" && len(key) <= MaxKeyLen {
		return nil
	}
	err := fmt.Errorf("meshcache: %s in group %s: %w", op, g.name, ErrEmptyKey)
	if key != "" {
		err = fmt.Errorf("meshcache: %s in group %s: key of %d bytes over %d: %w", op, g.name, len(key), MaxKeyLen, ErrKeyTooLong)
	}
	g.log.Warn("meshcache: rejected call", "op", op, "err", err)
	return err
}
