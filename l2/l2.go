// Package l2 defines the shared second level a meshcache group can keep
// under its owners: a store every node of a fleet reads and writes (Redis, a
// database table), consulted by a key's owner after its own cache and before
// its loader, so that a key whose owner changed or restarted is found there
// rather than loaded again.
//
// The package holds the contract only; [github.com/meshcache/meshcache/l2/redisl2]
// implements it on Redis. A store must keep meshcache's guarantee (after a
// write returns nil, no later Get on any node sees an older value), which
// asks two things of it beside storing bytes:
//
//   - Versions. [Store.Get] returns a [Version] for every key, found or not,
//     and [Store.Set] stores an item only if no [Store.Delete] of its key,
//     [Store.InvalidateTags] or [Store.Clear] of its group happened since
//     that Get. A load that read the store before a write and finished
//     after it cannot put back what the write removed.
//   - Generations. Invalidating a tag costs O(1) whatever the number of
//     entries that carry it: a Get checks the generations an entry was
//     stored under against the current ones, as meshcache's local caches
//     do.
//
// Every method takes a context first and is safe for concurrent use. Errors
// wrap [ErrUnavailable] (the store could not be reached or did not answer
// in time) or [ErrCorrupt] (it answered something this package cannot
// read), so that callers can tell an outage from bad data.
package l2

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable reports a store that could not be reached, refused the
// request, or did not answer before the context ended.
var ErrUnavailable = errors.New("l2: store unavailable")

// ErrCorrupt reports data in the store that cannot be read: a malformed
// entry or an answer of an unexpected shape.
var ErrCorrupt = errors.New("l2: corrupt data in store")

// VersionTTL is how long a store must remember a key's version after a
// Delete (and a group's after InvalidateTags or Clear). A caller must not
// Set with a Version older than this: meshcache skips the write of a load
// that ran longer than half of it.
const VersionTTL = 24 * time.Hour

// A Version is what a [Store.Get] saw of a key and of its group: the
// condition under which [Store.Set] stores the key. Its fields mean nothing
// outside the store that returned it.
type Version struct {
	Key   uint64 // bumped by every Delete of the key
	Group uint64 // bumped by every InvalidateTags and Clear of the group
}

// A Result is what [Store.Get] found for one key.
type Result struct {
	Found   bool
	Value   []byte        // when Found
	TTL     time.Duration // when Found: the time left before it expires
	Tags    []string      // when Found
	Version Version       // found or not: the condition for a Set of the key
}

// An Item is what [Store.Set] stores for one key.
type Item struct {
	Key   string
	Value []byte
	TTL   time.Duration // positive
	Tags  []string
	// Version is the one Get returned for Key; the item is stored only
	// if the key and its group are still at it.
	Version Version
}

// A Store is a second level shared by the nodes of a fleet. Group names and
// keys are meshcache's (at most 512 bytes each, not empty); a store keeps
// groups apart.
type Store interface {
	// Get returns one Result per key, in order. An entry that expired,
	// carries a tag invalidated since it was stored, or was stored before
	// its group's last Clear is not found.
	Get(ctx context.Context, group string, keys ...string) ([]Result, error)
	// Set stores each item whose version still holds (see [Item]) and
	// returns how many it stored. An item whose version no longer holds is
	// not an error.
	Set(ctx context.Context, group string, items ...Item) (stored int, err error)
	// Delete removes keys and bumps their versions.
	Delete(ctx context.Context, group string, keys ...string) error
	// InvalidateTags makes every entry of group that carries one of tags
	// not found, in O(1) per tag, and bumps the group's version.
	InvalidateTags(ctx context.Context, group string, tags ...string) error
	// Clear makes every entry of group not found, in O(1), and bumps the
	// group's version.
	Clear(ctx context.Context, group string) error
}
