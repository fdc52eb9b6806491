package local

import "math"

// Key fences. An invalidation of a key must refuse, for TombstoneTTL, every
// Add of that key whose since is older than the invalidation. A map of
// tombstones (key -> sequence) does that exactly but grows with the number
// of distinct keys invalidated per TombstoneTTL: half a million writes of
// keys a node does not hold would keep about 150 MiB there. Instead each
// shard of a tier keeps a fixed table of fence records, allocated at the
// shard's first invalidation, that never grows:
//
//   - The key's hash picks a bucket of 4 records (64 bytes, one cache line).
//   - A record is the newest sequence and store-clock second recorded in it
//     and the fingerprint (32 bits of the hash) of the one key it holds, or
//     mixedKeys when it holds several.
//   - An invalidation updates the record with the key's fingerprint, else
//     takes an idle one (empty, or older than TombstoneTTL), else merges into
//     the bucket's mixed record, else turns the oldest record into the mixed
//     one. Every update keeps the larger sequence and the later second.
//   - Add of a key is refused when its bucket has a live record (younger
//     than TombstoneTTL) newer than since that is the key's or mixed.
//
// A key's invalidation is therefore always in its own record or in the mixed
// one, with a sequence and time at least as new: Add is refused whenever a
// tombstone would have refused it (never under-fenced). The table can only
// over-fence, refusing an Add that a tombstone would not have (the entry is
// then loaded again by the next Get), in two ways:
//
//   - The bucket overflowed (more than 4 keys with live records) and its
//     mixed record is newer than since. For a load, whose since is recent,
//     that takes an invalidation of another key of the bucket while the load
//     ran: about (invalidations per second x load time / buckets). For an Add
//     with the oldest possible since (a hand-off, a hand-over: "any live
//     fence refuses"), it takes an overflowed bucket: with n keys
//     invalidated per TombstoneTTL in b buckets, about P(Poisson(n/b) > 4),
//     under 1% while n/b stays under 1.25 (10,000 keys per TombstoneTTL for
//     the 8,192 buckets of a default Main), 5% at n/b = 2.
//   - Two keys of a bucket share a fingerprint (about 2^-31 per pair).
//
// Sequences are never pruned; records simply stop counting once older than
// TombstoneTTL, which the time is kept for: an Add with an old since (a
// hand-off) must not be refused by invalidations that every load in flight
// has outlived. Times are in whole seconds rounded up, so a record lives up
// to a second longer than TombstoneTTL.
//
// The records of a shard are guarded by its lock, which Invalidate holds
// while it records and removes the entry and Add holds while it checks and
// inserts, as for tombstones.

// fenceRecord is one record of a key-fence bucket: 16 bytes.
type fenceRecord struct {
	seq uint64 // newest invalidation recorded here; 0: empty
	at  uint32 // store-clock second (rounded up) of the latest one
	fp  uint32 // fingerprint of the one key recorded here, or mixedKeys
}

// fenceBucket is the records a key may be recorded in.
type fenceBucket [bucketRecords]fenceRecord

const (
	bucketRecords = 4
	// mixedKeys is the fingerprint of a record that holds several keys.
	// Keys' fingerprints are odd.
	mixedKeys = 0

	// Default size of a tier's key-fence table: one record per
	// fenceBoundPerRecord bytes of the tier's bound, within
	// [minFenceRecords, maxFenceRecords]. Configured sizes are capped at
	// maxConfigFenceRecords.
	fenceBoundPerRecord   = 2 << 10
	minFenceRecords       = 256
	maxFenceRecords       = 1 << 20
	maxConfigFenceRecords = 1 << 24
)

// fenceBuckets returns the number of key-fence buckets per shard (a power of
// two) of a tier with the given bound and number of shards, for
// [Config.KeyFenceRecords] records (0: by bound).
func fenceBuckets(bound int64, nshards, records int) int {
	if records <= 0 {
		records = int(min(max(bound/fenceBoundPerRecord, minFenceRecords), maxFenceRecords))
	}
	records = min(records, maxConfigFenceRecords)
	n := bucketRecords * nshards // at least one bucket per shard
	for n < records {
		n *= 2
	}
	return n / bucketRecords / nshards
}

// fenceSecond returns the store-clock second at or after now.
func fenceSecond(now int64) uint32 {
	if now <= 0 {
		return 0
	}
	return uint32(min((now-1)/1e9+1, math.MaxUint32))
}

// liveAfter reports whether a record of second at is younger than cutoff
// (store clock, nanoseconds).
func liveAfter(at uint32, cutoff int64) bool { return int64(at)*1e9 > cutoff }

// fingerprint returns the fingerprint of a key's hash. The shard and the
// bucket are chosen by the low 32 bits (see fenceBucketLocked), so the high
// ones tell apart the keys of a bucket.
func fingerprint(h uint64) uint32 { return uint32(h>>32) | 1 }

// fenceBucketLocked returns the bucket of the key hashing to h in sh, or nil
// if sh has recorded no invalidation yet.
func (sh *shard) fenceBucketLocked(h uint64) *fenceBucket {
	if sh.fences == nil {
		return nil
	}
	// Bits 0-5 chose the shard; 8 and up (at most 18 bits) the bucket.
	return &sh.fences[(h>>8)&uint64(len(sh.fences)-1)]
}

// fenceLocked records an invalidation at seq, at store-clock time now, of
// the key hashing to h. Records older than cutoff (now-TombstoneTTL) are
// idle and may be reused. buckets is the shard's table size, allocated now
// if it was not yet.
func (sh *shard) fenceLocked(h, seq uint64, now, cutoff int64, buckets int) {
	if sh.fences == nil {
		sh.fences = make([]fenceBucket, buckets)
	}
	sh.fenceBucketLocked(h).record(fingerprint(h), seq, fenceSecond(now), cutoff)
}

// fencedLocked reports whether an invalidation of the key hashing to h newer
// than since, and recorded after cutoff (now-TombstoneTTL), may exist.
func (sh *shard) fencedLocked(h, since uint64, cutoff int64) bool {
	b := sh.fenceBucketLocked(h)
	return b != nil && b.fenced(fingerprint(h), since, cutoff)
}

// record records an invalidation of the key with fingerprint fp at seq and
// second at. See the Key fences comment above.
func (b *fenceBucket) record(fp uint32, seq uint64, at uint32, cutoff int64) {
	idle, mixed, oldest := -1, -1, 0
	for i := range b {
		r := &b[i]
		live := r.seq != 0 && liveAfter(r.at, cutoff)
		switch {
		case r.fp == fp && r.seq != 0:
			if live {
				r.merge(seq, at)
			} else {
				*r = fenceRecord{seq: seq, at: at, fp: fp}
			}
			return
		case !live:
			if idle < 0 {
				idle = i
			}
		case r.fp == mixedKeys:
			mixed = i
		case r.at < b[oldest].at || (r.at == b[oldest].at && r.seq < b[oldest].seq):
			oldest = i
		}
	}
	switch {
	case idle >= 0:
		b[idle] = fenceRecord{seq: seq, at: at, fp: fp}
	case mixed >= 0:
		b[mixed].merge(seq, at)
	default:
		b[oldest].fp = mixedKeys
		b[oldest].merge(seq, at)
	}
}

// merge raises r to seq and at.
func (r *fenceRecord) merge(seq uint64, at uint32) {
	r.seq = max(r.seq, seq)
	r.at = max(r.at, at)
}

// fenced reports whether b has a record newer than since, younger than
// cutoff, that is the record of fp or the mixed one.
func (b *fenceBucket) fenced(fp uint32, since uint64, cutoff int64) bool {
	for i := range b {
		r := &b[i]
		if r.seq > since && (r.fp == fp || r.fp == mixedKeys) && liveAfter(r.at, cutoff) {
			return true
		}
	}
	return false
}
