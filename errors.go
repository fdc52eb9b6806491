package meshcache

import "errors"

// Errors returned by meshcache. Each works with [errors.Is], also when it was
// wrapped with more context. Their texts are part of the API.
var (
	// ErrNotFound is what a [Loader] returns to say that a key has no value.
	// [Group.Get] returns it (wrapped) for such keys, and for keys whose
	// not-found result is cached (see [WithNegativeTTL]).
	ErrNotFound = errors.New("meshcache: not found")

	// ErrClosed is returned by every call on a [Node], or a [Group] of it,
	// after [Node.Close].
	ErrClosed = errors.New("meshcache: node closed")

	// ErrEmptyKey is returned for an empty key.
	ErrEmptyKey = errors.New("meshcache: empty key")

	// ErrKeyTooLong is returned for a key longer than [MaxKeyLen] bytes.
	ErrKeyTooLong = errors.New("meshcache: key too long")

	// ErrValueTooLarge is returned when a value to store (from Set, or from the
	// loader) is larger than the group's limit (see [WithMaxValueBytes]).
	ErrValueTooLarge = errors.New("meshcache: value too large")

	// ErrGroupExists is returned by [NewGroup] when the node already has a
	// group of that name.
	ErrGroupExists = errors.New("meshcache: group already exists")

	// ErrNilLoader is returned by [NewGroup] when the loader is nil.
	ErrNilLoader = errors.New("meshcache: nil loader")

	// ErrInvalidTTL is returned where a positive duration is required and
	// the one given is zero or negative.
	ErrInvalidTTL = errors.New("meshcache: invalid TTL")

	// ErrInvalidName is returned by [NewGroup] for an empty group name or one
	// longer than [MaxKeyLen] bytes.
	ErrInvalidName = errors.New("meshcache: invalid group name")

	// ErrInvalidTag is returned for an empty tag or one longer than
	// [MaxKeyLen] bytes.
	ErrInvalidTag = errors.New("meshcache: invalid tag")

	// ErrInvalidOption is returned by [NewGroup] and [NewNode] for an option
	// or config field outside its documented range.
	ErrInvalidOption = errors.New("meshcache: invalid option")

	// ErrLoaderPanic is returned to every caller waiting on a load whose
	// loader panicked. The panic value and stack are in the error text and
	// in the node's log.
	ErrLoaderPanic = errors.New("meshcache: loader panicked")

	// ErrLoadFailed is wrapped by the error of a Get whose load failed, on
	// this node or at the key's owner: errors.Is(err, ErrLoadFailed) works
	// across nodes. A local loader's own error is wrapped too; an owner's
	// error arrives as text.
	ErrLoadFailed = errors.New("meshcache: load failed")

	// ErrPartialInvalidation is wrapped by the [*InvalidateError] of a write
	// (Invalidate, InvalidateTags, Set, Clear, ...) that some alive members
	// did not acknowledge in time.
	ErrPartialInvalidation = errors.New("meshcache: invalidation not acknowledged by every member")

	// ErrNoQuorum is a cause in the [*InvalidateError] of a write issued by
	// a node that does not hold its lease: it has not heard recently from
	// a majority of the cluster, so the write may not have reached members
	// it no longer sees (see [Node.IsReady]).
	ErrNoQuorum = errors.New("meshcache: no quorum: this node has not heard from a majority of the cluster")

	// ErrJoin is returned by [NewNode] when the node cannot join the
	// cluster: no seed answered within [Config.JoinTimeout], or the members
	// refused it (different ring settings or protocol version, or a
	// different gossip key).
	ErrJoin = errors.New("meshcache: cannot join the cluster")

	// ErrIncompatible is wrapped (with [ErrJoin]) by the error of [NewNode]
	// when the cluster refused the node, or the node the cluster, because
	// their ring settings ([Config.Partitions], [Config.LoadFactor]) or
	// protocol versions differ.
	ErrIncompatible = errors.New("meshcache: incompatible cluster")
)
