package meshcache

import (
	"errors"
	"fmt"

	"github.com/meshcache/meshcache/transport"
)

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
	// loader panicked, on this node or at the key's owner (such an error
	// also wraps [ErrLoadFailed]). The panic value and stack are in the log
	// of the node where the loader ran, never in the error: the value may
	// hold secrets.
	ErrLoaderPanic = errors.New("meshcache: loader panicked")

	// ErrLoadFailed is wrapped by the error of a Get whose load failed, on
	// this node or at the key's owner: errors.Is(err, ErrLoadFailed) works
	// across nodes. A local loader's own error is wrapped too; an owner's
	// loader error arrives as text, cut to 256 bytes
	// ([transport.MaxErrorMessage]).
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
	// their ring settings ([Config.Partitions], [Config.LoadFactor]),
	// protocol versions or transport security (one uses [Config.TLS], the
	// other not) differ.
	ErrIncompatible = errors.New("meshcache: incompatible cluster")
)

// loadFailure is the error of a load that failed, here or at the key's
// owner: it wraps [ErrLoadFailed], [ErrLoaderPanic] when the loader
// panicked at the owner, and cause. Its text is that of
// fmt.Errorf("meshcache: %s: %w: %w", what, ErrLoadFailed, cause).
type loadFailure struct {
	what     string // `load "k" in group users`, or `... at n1`
	panicked bool   // at the owner; a local panic is in cause
	cause    error  // the loader's error, or the owner's answer
}

func (e *loadFailure) Error() string {
	return "meshcache: " + e.what + ": " + ErrLoadFailed.Error() + ": " + e.cause.Error()
}

func (e *loadFailure) Unwrap() []error {
	if e.panicked {
		return []error{ErrLoadFailed, ErrLoaderPanic, e.cause}
	}
	return []error{ErrLoadFailed, e.cause}
}

// ownerLoadError is the callers' error for key when its owner answered
// that its loader failed (err wraps [transport.ErrLoader]): it wraps
// [ErrLoadFailed], [ErrLoaderPanic] when the loader panicked there, and
// err, which holds the owner's message.
func (g *Group) ownerLoadError(key, owner string, err error) error {
	return &loadFailure{
		what:     fmt.Sprintf("load %q in group %s at %s", key, g.name, owner),
		panicked: errors.Is(err, transport.ErrLoaderPanic),
		cause:    err,
	}
}
