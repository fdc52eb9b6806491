// Package local is one node's storage for one group: a byte-bounded main
// cache for the keys this node owns, a byte-bounded hot cache for copies of
// keys other nodes own, TTL expiry, and the fences (key tombstones, tag
// generations, clears) that keep a load or fetch which started before an
// invalidation from storing its now stale result.
//
// The package does no I/O and starts at most one goroutine (the sweeper,
// stopped by [Store.Close]). All methods of [Store] are safe for concurrent
// use.
//
// # Tiers
//
// A [Store] holds two independent caches, selected by a [Tier]: [Main] and
// [Hot]. Each has its own byte bound, LRU order, fences and statistics.
// Read and write methods take exactly one tier; invalidation methods take a
// bit set ([Both] for both).
//
// # Fences
//
// The store keeps a monotonic sequence ([Store.Seq]). A load or fetch reads
// it before it starts and passes the value to [Store.Add] as since. Each of
// [Store.Invalidate], [Store.InvalidateTags] and [Store.Clear] advances the
// sequence once and records the new value: a tombstone per key, a generation
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
// Tombstones and tag generations are kept for Config.TombstoneTTL, which
// must outlive the longest load or fetch; see [Config] for when tag
// generations are pruned.
//
// # Cost and memory
//
// Each entry is charged len(key)+len(value)+sum(len(tags))+[EntryOverhead]
// bytes against its tier's bound. Key and value are copied into one
// allocation, and the per-entry bookkeeping is packed into 32 bytes, so that
// an untagged entry costs about 125 to 150 bytes of heap beyond its key and
// value (the spread comes from the load of the LRU's map and from rounding
// the key+value allocation up to a size class).
package local
