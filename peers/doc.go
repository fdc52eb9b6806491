// Package peers is meshcache's membership layer: it finds the other nodes of a
// cluster by gossip (hashicorp/memberlist), tells the caller who is alive, and
// carries small best-effort broadcasts between them.
//
// None of memberlist's types appear in this package's API: callers see
// [Cluster], [Member] values and plain callbacks.
//
// # Joining
//
// [Join] binds the gossip port, joins the seeds (retrying with backoff until
// the context or [Config.JoinTimeout] ends) and returns a running [Cluster].
// Every node advertises a small versioned metadata record carrying its RPC
// address, the peers protocol version and the caller's fingerprint (ring
// settings and protocol version of the root package). A node whose
// fingerprint differs, or whose metadata cannot be decoded, is refused in both
// directions: the joining side's [Join] fails with an error wrapping
// [ErrIncompatible], and the existing members never list it.
//
// # Reconnection
//
// memberlist never contacts a member again once it declared it dead and its
// gossip-to-the-dead window passed, so a healed network partition would stay
// split forever. Every 2s, 15s or 60s (ProfileLocal, LAN, WAN), whatever the
// number of alive members, a goroutine of the [Cluster] joins again the
// seeds that are not alive members and the last known addresses of the
// members that failed (not left) within the reconnect window: 30s, 5 minutes
// or 30 minutes, at most 64 members, only members this node had accepted
// and seen alive. These joins are push/pulls like the first, so the
// fingerprint refusal applies; a failed member whose address now refuses
// us is dropped from the list. Join attempts dial with a short timeout (1s,
// 3s, 10s) and are aborted when the Cluster closes.
//
// # Membership events
//
// memberlist calls its event hooks while holding its own locks, so this
// package only records each event there and hands it to one goroutine owned
// by the [Cluster]. That goroutine keeps the member list and calls
// [Config.OnChange] and [Config.OnCutOff] in order, never concurrently, and
// never while a lock of this package or of memberlist is held.
//
// memberlist tells a graceful leave from a failure only in its internal
// state: the node its leave hook receives says alive in both cases. So
// [Cluster.Leave] first sets a leaving flag in this node's metadata and
// spreads it (memberlist's UpdateNode, waiting at most half of the leave's
// time for the gossip to go out), then leaves. A member whose last metadata
// carries the flag when memberlist drops it has left: it is not retried by
// the reconnect goroutine nor counted for cut-off detection. A member that
// missed the update (rare: it gossips like the leave message itself, just
// before it) treats the leaving node as failed, which only costs a few
// reconnect attempts. A killed or unreachable member never sets the flag.
//
// memberlist spreads membership changes (alive, suspect and dead messages)
// by gossip: each node sends a change to RetransmitMult*ceil(log10(N+1))
// random peers and relays what it learns the same way; what gossip missed
// waits for a periodic push/pull (every 15s to 60s depending on the
// profile). This package raises RetransmitMult to at least 8 in every
// profile (memberlist's presets have 2 or 4, and with 2 a fourth node
// joining stayed unknown to one of the three others for up to 30s in about
// 1 join in 10), so that every member learns a change within a few gossip
// rounds.
//
// # Broadcasts
//
// [Cluster.Broadcast] queues a payload on memberlist's transmit-limited queue;
// it is piggybacked on gossip packets. memberlist does not relay user
// messages, so every receiver relays a payload it has not seen before once
// (again transmit-limited), which spreads it epidemically like memberlist's
// own alive and dead messages. A payload carries a hop count, so it stops
// being relayed after a few hops even where its id was forgotten. The
// retransmit multiplier is at least 8, so up to 9 members every node sends
// each payload 8 times, to peers picked at random in each gossip round (all
// of them up to 4 members). Receivers drop duplicates by message id and
// deliver each payload to [Config.OnMessage] from one goroutine. Delivery is
// best effort: it is meant as the fallback path for invalidations, never the
// primary one.
//
// # Restarts
//
// memberlist knows a node by name and refuses a known name at a new address
// ("conflicting address") until the old one was declared dead and
// forgotten, tens of seconds; a process that crashed and restarted at once
// under the same name would be kept out that long, and worse, let in by some
// members and refused by others. So every [Join] picks a new incarnation
// (start time in microseconds, plus random bits) and memberlist knows the
// node as Name#incarnation: to memberlist a restart is a new member. The
// view this package keeps (and [Cluster.Members], [Config.OnChange]) has one
// member per name, the newest incarnation memberlist reports alive; the old
// process stays alive to memberlist until its failure is detected, and its
// failure then changes nothing. Incarnations are ordered by start time, so a
// restart on another machine needs clocks closer than the time a restart
// takes. A node never replaces itself with another process of its name.
//
// # Cut-off detection
//
// A node that was cut off from its peers may hold hot copies that were
// invalidated while it could not be reached. [Config.OnCutOff] tells the
// caller to flush them. It fires when
//
//   - another member declared this node suspect or dead and this node had to
//     refute it (memberlist has no hook for refutes; this package recognises
//     the warning memberlist logs when it refutes, see logbridge.go), or
//   - a member that this node had seen fail comes back alive as the same
//     process (same boot id in its metadata): this node was cut off from it,
//     which includes the case where every peer became unreachable and contact
//     came back. A member that restarted (new boot id) or left gracefully does
//     not count.
//
// Both signals err on the side of firing: flushing a hot cache is always
// safe, missing a flush is not.
//
// # Concurrency
//
// All methods of [Cluster] are safe for concurrent use. Callbacks must not call
// [Cluster.Leave] or [Cluster.Close] (those wait for the callback goroutines).
package peers
