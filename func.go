package meshcache

import (
	"context"
	"fmt"
	"time"

	"github.com/meshcache/meshcache/codec"
)

// A Func is a function memoized for the whole fleet: a call with an argument
// runs the function once, on the node that owns that argument, and every
// node's later calls with an equal argument get the cached result until it
// expires or is invalidated. It is a group ([Func.Group]) whose keys are the
// encoded arguments and whose loader decodes the key and calls the
// function. All methods are safe for concurrent use.
//
// The argument codec must be deterministic: equal arguments must encode to
// equal bytes, or equal calls miss each other's results. [codec.JSON] is
// (struct fields in declaration order, map keys sorted), as are
// [codec.String], [codec.Bytes] and [codec.Proto] (it marshals
// deterministically); [codec.Gob] is not for a type with maps (it writes
// them in Go's random map order). The encoded
// argument is the key: it must not be empty, and longer than [MaxKeyLen]
// bytes it fails with [ErrKeyTooLong] (a hash would be shorter, but the
// owner could not decode it to call the function).
type Func[A, V any] struct {
	t    *TypedGroup[V]
	args codec.Codec[A]
}

// NewFunc memoizes fn on node n as the group name: every node of the fleet
// that calls NewFunc with the same name, codecs and function shares the
// results. opts configure the group (TTL, bounds, stale answers...); tag
// results with [FuncTags]. It fails as [NewGroup] does, and with
// [ErrNilLoader] for a nil codec or function.
func NewFunc[A, V any](n *Node, name string, args codec.Codec[A], vals codec.Codec[V], fn func(context.Context, A) (V, error), opts ...GroupOption) (*Func[A, V], error) {
	if args == nil || vals == nil || fn == nil {
		return nil, fmt.Errorf("meshcache: func %q without a codec or function: %w", name, ErrNilLoader)
	}
	var cfg groupConfig
	for _, o := range opts {
		o(&cfg)
	}
	var tags func(A, V) []string
	if cfg.funcTags != nil {
		var ok bool
		if tags, ok = cfg.funcTags.(func(A, V) []string); !ok {
			return nil, fmt.Errorf("meshcache: func %q: FuncTags for another argument or value type (%T): %w", name, cfg.funcTags, ErrInvalidOption)
		}
	}
	load := func(ctx context.Context, key string) (TypedItem[V], error) {
		a, err := args.Unmarshal([]byte(key))
		if err != nil {
			return TypedItem[V]{}, fmt.Errorf("meshcache: func %s: decode the argument: %w", name, err)
		}
		v, err := fn(ctx, a)
		if err != nil {
			return TypedItem[V]{}, err
		}
		it := TypedItem[V]{Value: v}
		if tags != nil {
			it.Tags = tags(a, v)
		}
		return it, nil
	}
	t, err := NewTypedGroup(n, name, vals, load, opts...)
	if err != nil {
		return nil, err
	}
	return &Func[A, V]{t: t, args: args}, nil
}

// FuncTags tags the results of a [Func] (see [Group.InvalidateTags]): tags
// receives the argument and the function's result. A and V must be the
// Func's types, or NewFunc fails with [ErrInvalidOption]; other groups
// ignore the option.
func FuncTags[A, V any](tags func(A, V) []string) GroupOption {
	return func(c *groupConfig) { c.funcTags = tags }
}

// Key returns the key of the call with a: the encoded argument. It fails
// with the codec's error, or with [ErrEmptyKey] or [ErrKeyTooLong].
func (f *Func[A, V]) Key(a A) (string, error) {
	b, err := f.args.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("meshcache: func %s: encode the argument: %w", f.t.g.name, err)
	}
	key := string(b)
	if err := f.t.g.checkKey("call", key); err != nil {
		return "", err
	}
	return key, nil
}

// Call returns fn(ctx, a): cached, or computed once for the fleet by the
// node that owns a, or by this one if that node cannot be reached. Errors
// are those of [Group.Get], the function's (not cached: the next call runs
// it again; return [ErrNotFound] for a result to cache as missing with
// [WithNegativeTTL]), or the codecs'.
func (f *Func[A, V]) Call(ctx context.Context, a A) (V, error) {
	key, err := f.Key(a)
	if err != nil {
		var zero V
		return zero, err
	}
	return f.t.Get(ctx, key)
}

// Refresh runs the function for a now and caches the result over any
// cached one, fleet-wide (see [Group.Refresh]).
func (f *Func[A, V]) Refresh(ctx context.Context, a A) (V, error) {
	key, err := f.Key(a)
	if err != nil {
		var zero V
		return zero, err
	}
	return f.t.Refresh(ctx, key)
}

// Invalidate removes the cached result of the call with a on every node,
// as [Group.Invalidate] does: once it returned nil, no later call on any
// node returns a result computed before Invalidate began.
func (f *Func[A, V]) Invalidate(ctx context.Context, a A) error {
	key, err := f.Key(a)
	if err != nil {
		return err
	}
	return f.t.Invalidate(ctx, key)
}

// Set caches v as the result of the call with a, on every node, for ttl (0:
// the group's TTL), as [Group.Set] does.
func (f *Func[A, V]) Set(ctx context.Context, a A, v V, ttl time.Duration) error {
	key, err := f.Key(a)
	if err != nil {
		return err
	}
	return f.t.Set(ctx, key, TypedItem[V]{Value: v, TTL: ttl})
}

// InvalidateTags removes every cached result tagged with one of tags (see
// [FuncTags]), fleet-wide.
func (f *Func[A, V]) InvalidateTags(ctx context.Context, tags ...string) error {
	return f.t.InvalidateTags(ctx, tags...)
}

// Group returns the group underneath, for what Func does not wrap (Peek,
// Stats, Clear, Expire with a key from [Func.Key]).
func (f *Func[A, V]) Group() *Group { return f.t.g }
