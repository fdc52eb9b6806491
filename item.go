package meshcache

import (
	"context"
	"time"
)

// NoExpiry, as an [Item.TTL] (from a [Loader], or for [Group.Set] and
// [Group.SetMany]), caches a value that never expires; as the TTL of
// [Group.Expire], it removes the expiry of a cached value. Such an entry
// stays until a write removes it or the group's byte bounds evict it (see
// [WithMainBytes]), and [Group.Peek] reports its TTL as zero. Only the
// key's owner keeps it without expiry: a node that keeps a value of a key
// it does not own (a hot copy fetched from the owner, a fallback load, a
// stand-in's load) keeps it at most the hot TTL ([WithHotTTL]), as any.
// Jitter ([WithJitter]) does not apply to it, and the stale options never
// serve it stale: it never expires. A second level ([WithL2]) keeps it for
// the group's TTL ([WithTTL]).
const NoExpiry time.Duration = -1

// Item is what a [Loader] returns for a key, and what [Group.Set] stores.
type Item struct {
	// Value is the cached value. A loader's item belongs to meshcache once
	// returned: the loader must not modify the slice afterwards. Set and
	// SetMany copy it.
	Value []byte

	// TTL is how long the value stays cached. If zero, the group's default
	// (see [WithTTL]); if [NoExpiry], the value does not expire. Any other
	// negative TTL is an error wrapping [ErrInvalidTTL]: Set and SetMany
	// return it, and a load that returns it fails with it (nothing is
	// cached).
	TTL time.Duration

	// Tags name groups of entries that [Group.InvalidateTags] drops together,
	// for example "org:acme". Empty tags are ignored.
	Tags []string

	// NoStore returns the value to the caller without caching it: a
	// loader decides per key whether its result is worth caching.
	NoStore bool
}

// A Loader loads the value of a key on a cache miss. It returns [ErrNotFound]
// (possibly wrapped) when the key has no value.
//
// Concurrent Gets of a key on a node share one Load call, made with a context
// of its own (the group's load timeout), not the context of any one caller:
// callers that give up do not cancel a load others wait for. Load is not a
// per-key lock, though: a Get that starts after an invalidation of the key
// does not join a load that started before it, so two Loads of one key can
// overlap; [Bypass] and batch loads run beside them too. A Loader must be
// safe for concurrent use. A Load that panics fails the Gets waiting on it
// with [ErrLoaderPanic]; one that calls [runtime.Goexit] (t.FailNow in a
// test), with [ErrLoadFailed].
type Loader interface {
	Load(ctx context.Context, key string) (Item, error)
}

// LoaderFunc adapts a function to a [Loader].
type LoaderFunc func(ctx context.Context, key string) (Item, error)

// Load calls f(ctx, key).
func (f LoaderFunc) Load(ctx context.Context, key string) (Item, error) { return f(ctx, key) }

// A BatchLoader loads many keys in one call (a DataLoader). A key absent from
// the returned map has no value ([ErrNotFound]). An error fails every key of
// the batch. It is used by [Group.GetMany] and [Group.Warm] when the group has
// one (see [WithBatchLoader]); the map belongs to meshcache after the call.
//
// LoadMany is called with a context of its own (the group's load timeout),
// concurrently with other LoadMany and Load calls, for batches that may
// share keys: a BatchLoader must be safe for concurrent use. A LoadMany that
// panics fails every key of its batch with [ErrLoaderPanic].
type BatchLoader interface {
	LoadMany(ctx context.Context, keys []string) (map[string]Item, error)
}

// BatchLoaderFunc adapts a function to a [BatchLoader].
type BatchLoaderFunc func(ctx context.Context, keys []string) (map[string]Item, error)

// LoadMany calls f(ctx, keys).
func (f BatchLoaderFunc) LoadMany(ctx context.Context, keys []string) (map[string]Item, error) {
	return f(ctx, keys)
}

// Entry describes a cached value, as returned by [Group.Peek] and passed to
// the predicate of [WithValidate].
type Entry struct {
	Key   string
	Value []byte
	Tags  []string
	// Age is how long ago the value was stored.
	Age time.Duration
	// TTL is the remaining time to live; zero if the entry never expires.
	TTL time.Duration
}
