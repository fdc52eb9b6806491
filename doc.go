// Package meshcache turns the instances of a horizontally scaled service into
// one shared cache.
//
// Every instance embeds a [Node]. A [Group] is a named cache with a [Loader]:
// on a miss, the loader runs once for all concurrent callers of a key, its
// value is cached with a TTL and tags, and invalidations ([Group.Invalidate],
// [Group.InvalidateTags], [Group.Set], [Group.Clear]) are fenced against loads
// in flight, so that once they return no later Get sees an older value.
//
//	node, err := meshcache.NewNode(meshcache.Config{})
//	if err != nil { ... }
//	defer node.Close()
//	users, err := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(loadUser),
//		meshcache.WithTTL(10*time.Minute))
//	v, err := users.Get(ctx, "42")
//	err = users.InvalidateTags(ctx, "org:acme")
//
// # The read path
//
// [Group.Get] looks in the node's main cache (keys it owns), then in its hot
// cache (copies of keys other nodes own), and on a miss loads the key through
// a per-key single flight. A flight releases its waiters only once the value
// is stored, so a Get that starts after a load finished never loads again. A
// load runs under its own context with the group's load timeout
// ([WithLoadTimeout]): a caller that gives up does not fail the others. A
// loader that panics becomes an error ([ErrLoaderPanic]) for every waiter.
//
// # Fences
//
// Each group keeps a monotonic sequence. A load notes it before it starts;
// an invalidation advances it and records a tombstone (per key) or a
// generation (per tag, or for the whole group). A finished load is stored
// only if nothing newer than its start applies to its key or tags, and a
// read checks an entry's tags against their generations, so invalidating a
// tag costs the same however many entries carry it.
//
// # Typed values
//
// [TypedGroup] wraps a Group with a [codec.Codec], so that callers get a V
// instead of bytes.
package meshcache
