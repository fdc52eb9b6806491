package meshcache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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
// load and storing values encoded by c. load is called as a [Loader] is (see
// its concurrency rules); an item whose value c cannot encode fails that
// load with an error wrapping [codec.ErrEncode]. Give [WithTypedBatchLoader]
// among opts to load keys in batches. It fails as [NewGroup] does, and with
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
	// bindTyped comes last: it sees the batch loader the options chose.
	opts = append(opts[:len(opts):len(opts)], bindTyped(c))
	g, err := NewGroup(n, name, l, opts...)
	if err != nil {
		return nil, err
	}
	return &TypedGroup[V]{g: g, c: c}, nil
}

// WithTypedBatchLoader is [WithBatchLoader] for [NewTypedGroup]: GetMany and
// Warm (and the batch window, see [WithBatchWindow]) load missing keys with
// one call of load, whose values are encoded with the group's codec. It is
// an option of NewTypedGroup only: [NewGroup] fails with [ErrInvalidOption]
// when given it, and so does a NewTypedGroup whose values are not V. A nil
// load fails with [ErrNilLoader].
//
// load is called as a [BatchLoader] is: with distinct keys this node is to
// load (as their owner, a stand-in or a fallback); with a context that ends
// with the group's load timeout (see [WithLoadTimeout]), or sooner with the
// GetMany or peer request it serves; and concurrently with itself and with
// the group's single-key loader, for keys that may overlap theirs (a batch
// does not join the flights of single loads). It must be safe for
// concurrent use, must not modify keys, and must not call [runtime.Goexit].
//
// A key absent from the returned map has no value ([ErrNotFound]); keys not
// asked for are ignored. An error fails every key of the batch, and so does
// an item whose value the codec cannot encode: the error wraps
// [ErrLoadFailed] and names the key, and on the node that loaded it also
// wraps [codec.ErrEncode] (a peer gets its text). The map and the items'
// Tags belong to meshcache after the call.
func WithTypedBatchLoader[V any](load func(ctx context.Context, keys []string) (map[string]TypedItem[V], error)) GroupOption {
	return func(c *groupConfig) {
		if load == nil {
			c.fail("meshcache: WithTypedBatchLoader(nil): %w", ErrNilLoader)
			return
		}
		c.batch = typedBatch[V](load)
		// Taken back by bindTyped: it stays in the options of NewGroup.
		c.errs = append(c.errs, errTypedBatchUntyped)
	}
}

// errTypedBatchUntyped is the error of a [WithTypedBatchLoader] given to
// [NewGroup]; [NewTypedGroup] removes it.
var errTypedBatchUntyped = fmt.Errorf("meshcache: WithTypedBatchLoader outside NewTypedGroup: %w", ErrInvalidOption)

// typedBatch is the load function of [WithTypedBatchLoader] until
// [NewTypedGroup] binds it to its codec. It is a [BatchLoader] only to sit
// in groupConfig.batch: a group that has it unbound was refused.
type typedBatch[V any] func(ctx context.Context, keys []string) (map[string]TypedItem[V], error)

func (typedBatch[V]) LoadMany(context.Context, []string) (map[string]Item, error) {
	return nil, errTypedBatchUntyped
}

// valueType returns the name of V, for the error of a mismatched group.
func (typedBatch[V]) valueType() reflect.Type { return reflect.TypeFor[V]() }

// bindTyped is the last option of [NewTypedGroup]: it withdraws the errors
// of [WithTypedBatchLoader] and binds its load function to c, or fails when
// the function's values are not V.
func bindTyped[V any](c codec.Codec[V]) GroupOption {
	return func(cfg *groupConfig) {
		errs := cfg.errs[:0:0]
		for _, err := range cfg.errs {
			if err != errTypedBatchUntyped {
				errs = append(errs, err)
			}
		}
		cfg.errs = errs
		switch b := cfg.batch.(type) {
		case typedBatch[V]:
			cfg.batch = boundBatch[V]{load: b, c: c}
		case interface{ valueType() reflect.Type }:
			cfg.fail("meshcache: WithTypedBatchLoader of %v values in a typed group of %v values: %w", b.valueType(), reflect.TypeFor[V](), ErrInvalidOption)
		}
	}
}

// boundBatch is a [WithTypedBatchLoader] function bound to its group's codec.
type boundBatch[V any] struct {
	load typedBatch[V]
	c    codec.Codec[V]
}

// LoadMany calls the load function and encodes the items of keys. An item
// that does not encode fails the batch: a [BatchLoader] cannot fail one key.
func (b boundBatch[V]) LoadMany(ctx context.Context, keys []string) (map[string]Item, error) {
	tis, err := b.load(ctx, keys)
	if err != nil {
		return nil, err
	}
	items := make(map[string]Item, len(tis))
	for _, k := range keys {
		ti, ok := tis[k]
		if !ok {
			continue
		}
		it, err := typedToItem(b.c, ti)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		items[k] = it
	}
	return items, nil
}

// typedToItem encodes ti. Its error wraps [codec.ErrEncode], even when the
// codec's error did not.
func typedToItem[V any](c codec.Codec[V], ti TypedItem[V]) (Item, error) {
	b, err := c.Marshal(ti.Value)
	if err != nil {
		return Item{}, fmt.Errorf("encode the value: %w", codecError(codec.ErrEncode, err))
	}
	return Item{Value: b, TTL: ti.TTL, Tags: ti.Tags, NoStore: ti.NoStore}, nil
}

// codecError returns err wrapping sentinel ([codec.ErrEncode] or
// [codec.ErrDecode]): a codec of the user's may not wrap it.
func codecError(sentinel, err error) error {
	if errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
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
		return zero, fmt.Errorf("meshcache: decode %q in group %s: %w", key, t.g.name, codecError(codec.ErrDecode, err))
	}
	return v, nil
}

// Get is [Group.Get], decoding the value. A value the codec cannot decode
// fails with an error wrapping [codec.ErrDecode] that names the key; the
// value stays cached until it expires or is invalidated.
func (t *TypedGroup[V]) Get(ctx context.Context, key string, opts ...CallOption) (V, error) {
	b, err := t.g.Get(ctx, key, opts...)
	if err != nil {
		var zero V
		return zero, err
	}
	return t.decode(key, b)
}

// GetMany is [Group.GetMany], decoding the values. A value that does not
// decode is left out and its error (as in [TypedGroup.Get]) joined to the
// result's.
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

// Peek is [Group.Peek], decoding the value. A value that does not decode
// fails as in [TypedGroup.Get], with ok false.
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

// Set is [Group.Set], encoding the value. A value the codec cannot encode
// fails with an error wrapping [codec.ErrEncode], and nothing is written.
func (t *TypedGroup[V]) Set(ctx context.Context, key string, ti TypedItem[V]) error {
	it, err := typedToItem(t.c, ti)
	if err != nil {
		return fmt.Errorf("meshcache: set %q in group %s: %w", key, t.g.name, err)
	}
	return t.g.Set(ctx, key, it)
}

// SetIfAbsent is [Group.SetIfAbsent], encoding the value. A value the codec
// cannot encode fails as in [TypedGroup.Set].
func (t *TypedGroup[V]) SetIfAbsent(ctx context.Context, key string, ti TypedItem[V]) (bool, error) {
	it, err := typedToItem(t.c, ti)
	if err != nil {
		return false, fmt.Errorf("meshcache: set-if-absent %q in group %s: %w", key, t.g.name, err)
	}
	return t.g.SetIfAbsent(ctx, key, it)
}

// SetMany is [Group.SetMany], encoding the values. A value the codec cannot
// encode fails the call, naming its key, before anything is written.
func (t *TypedGroup[V]) SetMany(ctx context.Context, items map[string]TypedItem[V]) error {
	its := make(map[string]Item, len(items))
	for k, ti := range items {
		it, err := typedToItem(t.c, ti)
		if err != nil {
			return fmt.Errorf("meshcache: set-many %q in group %s: %w", k, t.g.name, err)
		}
		its[k] = it
	}
	return t.g.SetMany(ctx, its)
}

// Delete is [Group.Delete].
func (t *TypedGroup[V]) Delete(ctx context.Context, key string) (existed bool, err error) {
	return t.g.Delete(ctx, key)
}

// Refresh is [Group.Refresh], decoding the value as [TypedGroup.Get] does.
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
