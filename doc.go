// Package meshcache turns the instances of a horizontally scaled service into
// one shared cache.
//
// Every instance embeds a [Node]. Nodes find each other by gossip
// (hashicorp/memberlist) and agree on an owner for each key through a
// consistent-hash ring. A [Group] is a named cache with a [Loader]: on a miss,
// the key's owner runs the loader once for the whole fleet, its value is
// cached with a TTL and tags, and invalidations ([Group.Invalidate],
// [Group.InvalidateTags], [Group.Set], [Group.Clear]) reach every member
// before they return and are fenced against loads and fetches in flight, so
// that once they return no Get started later on any node sees an older value.
//
//	node, err := meshcache.NewNode(meshcache.Config{
//		BindAddr: "10.0.0.5:7946",           // gossip
//		RPCAddr:  "10.0.0.5:7947",           // peer transport
//		Join:     []string{"10.0.0.4:7946"}, // any live member
//	})
//	if err != nil { ... }
//	defer node.Close()
//	users, err := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(loadUser),
//		meshcache.WithTTL(10*time.Minute))
//	v, err := users.Get(ctx, "42")
//	err = users.InvalidateTags(ctx, "org:acme")
//
// A Config without BindAddr makes a standalone node: every key is its own.
//
// # The read path
//
// [Group.Get] looks in the node's main cache (keys it owns), then in its hot
// cache (copies of keys other nodes own). On a miss it finds the key's owner
// on the ring. The owner loads the key through a per-key single flight; any
// other node asks the owner over the peer transport (one hop: the owner
// answers from its main cache or by loading, never by asking another node)
// and keeps the answer in its hot cache for at most the owner's remaining
// TTL and the group's hot TTL ([WithHotTTL]). A flight releases its waiters
// only once the value is stored, so a Get that starts after a load finished
// never loads again. A load runs under its own context with the group's
// load timeout ([WithLoadTimeout]): a caller that gives up does not fail the
// others. A loader that panics becomes an error ([ErrLoaderPanic]) for every
// waiter.
//
// A Get never fails because a peer died: when the owner cannot be reached
// (or cannot serve the group), the node loads the key itself and keeps it in
// its hot cache only (Stats.Fallbacks). A not-found or a loader error at the
// owner is the caller's answer ([ErrNotFound], [ErrLoadFailed]), not a
// reason to load again.
//
// # Writes
//
// Writes run in two phases on every alive member: first each applies the
// change to what it serves (its main cache; the owner of a Set key stores the
// value), then each drops its hot copies. A write returns nil once every
// member acknowledged both phases; otherwise an [*InvalidateError] naming
// the members that did not (errors.Is [ErrPartialInvalidation]), and the
// change is queued on gossip for them. Views of the membership differ for a
// while (gossip is eventual), so a write never trusts the writer's view
// alone: it carries a digest of it, a member whose view differs answers with
// its own, and the writer reaches the members it lacked too. A write does
// not return nil before a member that the others stopped counting alive is
// out of its lease (below), and a node without its lease reports its own
// writes incomplete ([ErrNoQuorum]).
//
// # Membership
//
// Joins, leaves and failures rebuild the ring as a new immutable snapshot,
// swapped atomically: routing takes no lock. [Node.Close] leaves gracefully,
// so peers re-route at once. After a change, a new owner that misses a key
// first asks the key's previous owner (hand-off), unless the key or one of
// its tags was invalidated since, so a join does not reload the keys that
// moved. Members must agree on the ring settings and protocol version: a
// node that does not is refused at join ([ErrIncompatible]).
//
// A member is a process, not a name: every process start is a new
// incarnation, so a process that crashes and restarts at once under the
// same name (a StatefulSet pod, a unit with Restart=always) is a member
// again within a second; the newest incarnation of a name wins and the old
// one is failed like any dead member.
//
// # The lease
//
// A node serves from its caches only while it knows that writes still reach
// it: it holds a lease, renewed by heartbeats over the peer transport (every
// 250 ms, 500 ms or 2.5 s with [GossipLocal], [GossipLAN], [GossipWAN]), for
// as long as a majority of the cluster answered within the lease (1.5 s, 2 s,
// 15 s): half of the quickest failure detection of the gossip preset, so a
// node is out of its lease before any other member can declare it dead and
// complete writes without it. The majority is of the quorum base, the
// membership last agreed by a majority of itself: it shrinks with graceful
// leaves, and with deaths only on a side that still reaches a majority of
// it. So of 5 members, the 3 that survive the crash of 2 keep serving, and 2
// cut off together stop. A node that starts a cluster (no Join) is a quorum
// of itself; a joining node takes the base of a member that holds the lease.
//
// Without the lease (cut off from a majority, paused by SIGSTOP or a frozen
// VM for longer than the lease, or restarted and not yet accepted by the
// others) a node loads for its callers directly and stores nothing, refuses
// its peers' reads (they load the key themselves), reports its writes
// incomplete, and [Node.IsReady] is false. When it gets the lease back it
// flushes its caches, fencing the loads in flight, before serving from them.
// A crash of a majority (3 of 5) leaves the others serving uncached until
// members come back; [Config.MinorityServes] trades the guarantee for
// availability in that case.
//
// # Failure semantics
//
// A cache may serve an old value only when the application said it may,
// never a value that a write removed, and must not multiply the load on a
// database in trouble. [WithStaleIfError] serves an expired value when its
// load fails (retried about once a second per key at its owner);
// [WithStaleWhileRevalidate] serves it at once while one background
// refresh runs ([SourceStale]). A peer that sends nothing at all for
// [Config.FetchTimeout] (paused, dead, cut off) is suspect on the node that
// waited: its keys are loaded by one stand-in, the key's owner in the ring
// without the suspects, which keeps them in a tier of its own (written by
// every write, kept at most the hot TTL, dropped when the owner answers a
// heartbeat again). A loader panic is [ErrLoaderPanic] on every node; stacks
// stay in the owner's log. See the README, "When things fail".
//
// # Restarts
//
// [Node.Close] hands the entries the node owns over to their next owners
// ([Config.HandOverTimeout], [Config.HandOverBytes]); a joining node takes
// keys over from their previous owner. With [Config.SnapshotDir], Close
// also writes a snapshot that a node starting a new cluster restores. See
// the README, "Restarts and storage".
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
