package meshcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshcache/meshcache/codec"
)

// TypedItem is the typed form of [Item]: what a typed loader returns and
// [TypedGroup.Set] stores.
type TypedItem[V any] struct {
	Value   V
	TTL     time.Duration
	Tags    []string
	NoStore bool
}

// TypedEntry is the typed form of [Entry], returned by [TypedGroup.Peek].
type TypedEntry[V any] struct {
	Key      string
	Value    V
	Tags     []string
	Age, TTL time.Duration
}

// A TypedGroup is a [Group] whose values are V, converted to and from bytes
// by a [codec.Codec]. It has the methods of Group, taking and returning V.
// All methods are safe for concurrent use.
type TypedGroup[V any] struct {
	g *Group
	c codec.Codec[V]
}

// NewTypedGroup creates the group name on node n, loading missing keys with
// load and storing values encoded by c. It fails as [NewGroup] does, and with
// [ErrNilLoader] for a nil codec or load function.
func NewTypedGroup[V any](n *Node, name string, c codec.Codec[V], load func(ctx context.Context, key string) (TypedItem[V], error), opts ...GroupOption) (*TypedGroup[V], error) {
	if c == nil || load == nil {
		return nil, fmt.Errorf("meshcache: typed group %q without a codec or loader: %w", name, ErrNilLoader)
	}
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		ti, err := load(ctx, key)
		if err != nil {
			return Item{}, err
		}
		return typedToItem(c, ti)
	})
	g, err := NewGroup(n, name, l, opts...)
	if err != nil {
		return nil, err
	}
	return &TypedGroup[V]{g: g, c: c}, nil
}

func typedToItem[V any](c codec.Codec[V], ti TypedItem[V]) (Item, error) {
	b, err := c.Marshal(ti.Value)
	if err != nil {
		return Item{}, fmt.Errorf("meshcache: encode value: %w", err)
	}
	return Item{Value: b, TTL: ti.TTL, Tags: ti.Tags, NoStore: ti.NoStore}, nil
}

// Group returns the untyped group underneath.
func (t *TypedGroup[V]) Group() *Group { return t.g }

// Name returns the group's name.
func (t *TypedGroup[V]) Name() string { return t.g.name }

// Stats returns a snapshot of the group's counters.
func (t *TypedGroup[V]) Stats() Stats { return t.g.Stats() }

func (t *TypedGroup[V]) decode(key string, b []byte) (V, error) {
	v, err := t.c.Unmarshal(b)
	if err != nil {
		var zero V
		return zero, fmt.Errorf("meshcache: decode %q in group %s: %w", key, t.g.name, err)
	}
	return v, nil
}

// Get is [Group.Get], decoding the value.
func (t *TypedGroup[V]) Get(ctx context.Context, key string, opts ...CallOption) (V, error) {
	b, err := t.g.Get(ctx, key, opts...)
	if err != nil {
		var zero V
		return zero, err
	}
	return t.decode(key, b)
}

// GetMany is [Group.GetMany], decoding the values. A value that does not
// decode is left out and its error joined to the result's.
func (t *TypedGroup[V]) GetMany(ctx context.Context, keys []string, opts ...CallOption) (map[string]V, error) {
	raw, err := t.g.GetMany(ctx, keys, opts...)
	out := make(map[string]V, len(raw))
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for k, b := range raw {
		v, err := t.decode(k, b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[k] = v
	}
	return out, errors.Join(errs...)
}

// Peek is [Group.Peek], decoding the value.
func (t *TypedGroup[V]) Peek(ctx context.Context, key string) (TypedEntry[V], bool, error) {
	e, ok, err := t.g.Peek(ctx, key)
	if err != nil || !ok {
		return TypedEntry[V]{}, ok, err
	}
	v, err := t.decode(key, e.Value)
	if err != nil {
		return TypedEntry[V]{}, false, err
	}
	return TypedEntry[V]{Key: key, Value: v, Tags: e.Tags, Age: e.Age, TTL: e.TTL}, true, nil
}

// Set is [Group.Set], encoding the value.
func (t *TypedGroup[V]) Set(ctx context.Context, key string, ti TypedItem[V]) error {
	it, err := typedToItem(t.c, ti)
	if err != nil {
		return err
	}
	return t.g.Set(ctx, key, it)
}

// SetIfAbsent is [Group.SetIfAbsent], encoding the value.
func (t *TypedGroup[V]) SetIfAbsent(ctx context.Context, key string, ti TypedItem[V]) (bool, error) {
	it, err := typedToItem(t.c, ti)
	if err != nil {
		return false, err
	}
	return t.g.SetIfAbsent(ctx, key, it)
}

// Refresh is [Group.Refresh], decoding the value.
func (t *TypedGroup[V]) Refresh(ctx context.Context, key string) (V, error) {
	return t.Get(ctx, key, ForceRefresh())
}

// Expire is [Group.Expire].
func (t *TypedGroup[V]) Expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return t.g.Expire(ctx, key, ttl)
}

// Invalidate is [Group.Invalidate].
func (t *TypedGroup[V]) Invalidate(ctx context.Context, keys ...string) error {
	return t.g.Invalidate(ctx, keys...)
}

// InvalidateTags is [Group.InvalidateTags].
func (t *TypedGroup[V]) InvalidateTags(ctx context.Context, tags ...string) error {
	return t.g.InvalidateTags(ctx, tags...)
}

// Clear is [Group.Clear].
func (t *TypedGroup[V]) Clear(ctx context.Context) error { return t.g.Clear(ctx) }

// Warm is [Group.Warm].
func (t *TypedGroup[V]) Warm(ctx context.Context, keys ...string) error {
	return t.g.Warm(ctx, keys...)
}
