// Package local is one node's storage for one group: a main cache for the
// keys this node owns and a hot cache for copies of keys other nodes own,
// each bounded by bytes and optionally by entries, TTL expiry, and the
// fences (key fences, tag generations, clears) that keep a load or fetch
// which started before an invalidation from storing its now stale result.
//
// The package does no I/O and starts at most one goroutine (the sweeper,
// stopped by [Store.Close]). All methods of [Store] are safe for concurrent
// use.
//
// # Tiers
//
// A [Store] holds independent caches, selected by a [Tier]: [Main], [Hot]
// and [StandIn]. Each has its own byte bound, optional count bound
// ([Config.MainItems]), LRU order, fences and statistics.
// Read and write methods take exactly one tier; invalidation methods take a
// bit set ([Both] for both).
//
// # Fences
//
// The store keeps a monotonic sequence ([Store.Seq]). A load or fetch reads
// it before it starts and passes the value to [Store.Add] as since. Each of
// [Store.Invalidate], [Store.InvalidateTags] and [Store.Clear] advances the
// sequence once and records the new value: a key fence per key, a generation
// per tag, or a clear mark per tier. Add refuses an entry when a record newer
// than its since applies, and [Store.Get] treats an entry as absent when a tag
// generation or clear mark is newer than the entry's Seq. That read-side check
// closes the race where Add checks the fences, then an invalidation runs, then
// Add inserts. The rule, for any interleaving:
//
//   - since taken before an invalidation call started: after the call
//     returns, Add(.., since) is refused or its entry reads as absent;
//   - since taken after the call returned: Add stores normally.
//
// Key fences and tag generations count for Config.TombstoneTTL, which must
// outlive the longest load or fetch: an Add whose since is older than that
// (a hand-off passes the oldest since there is, meaning "refuse if any live
// fence applies") is not refused by invalidations every load has outlived.
// Tag generations are then pruned (see [Store.Sweep]). Key fences are not
// kept per key but in a fixed table per tier, which never under-fences and
// may over-fence: when more than 4 keys of one of its 64-byte buckets were
// invalidated within TombstoneTTL, an Add of any key of that bucket is
// refused too when its since is older than the newest invalidation that
// found the bucket full (the value is not stored: merely a later miss). See
// [Store.Invalidate].
//
// # Cost and memory
//
// Each entry is charged len(key)+len(value)+sum(len(tags))+[EntryOverhead]
// bytes against its tier's bound. Key and value are copied into one
// allocation, and the per-entry bookkeeping is packed into 32 bytes, so that
// an untagged entry costs about 125 to 150 bytes of heap beyond its key and
// value (the spread comes from the load of the LRU's map and from rounding
// the key+value allocation up to a size class).
//
// Fences are not charged to the bounds. Key fences take a fixed table per
// tier whatever the number of keys invalidated: 16 bytes per 2 KiB of the
// tier's bound (0.8%; [Config.KeyFenceRecords]), at least 4 KiB and at most
// 16 MiB per tier, allocated shard by shard at their first invalidation:
// 640 KiB for a store with the default bounds (64 MiB Main, 8 MiB Hot and
// StandIn). Tag generations keep a map entry per tag invalidated within
// TombstoneTTL (until the next sweep), in each tier.
package local
