package ring

import (
	"fmt"
	"math"
	"strconv"
)

// Defaults used for zero fields of [Config]. They match consistent's own.
const (
	DefaultPartitions        = 271
	DefaultReplicationFactor = 20
	DefaultLoadFactor        = 1.25
)

// Limits that [Config.Validate] enforces. They keep [New] fast enough to run
// on every membership change; real clusters need far less.
const (
	MaxPartitions        = 1 << 16
	MaxReplicationFactor = 1 << 10
)

// Limits that [New] enforces on the members together with the Config. New
// builds consistent's hash circle member by member, and consistent sorts the
// whole circle after each one: a cheap pass when few points were added
// (ReplicationFactor up to about 4), a full sort otherwise. Its cost
// therefore grows like members × virtual nodes × min(ReplicationFactor, 32);
// without these limits valid settings made New take seconds and gigabytes.
// At the limits New takes about 100ms on one busy core, and a few
// milliseconds with the default settings and a few dozen members. The
// default settings (271 partitions, replication 20) fit their maximum of 271
// members; for larger clusters lower ReplicationFactor (bounded loads keep
// every member within LoadFactor of its fair share anyway).
const (
	// MaxVirtualNodes bounds members × ReplicationFactor: the points on
	// the hash circle.
	MaxVirtualNodes = 1 << 16
	// MaxPlacementWork bounds members × virtual nodes ×
	// min(ReplicationFactor, 32), the cost estimate of placement. For
	// example it allows 289 members with replication 20, 1448 with
	// replication 4, 5792 with replication 1, 64 with 256 and 32 with
	// 1024.
	MaxPlacementWork = 1 << 25
)

// placementWork is the cost estimate that MaxPlacementWork bounds. members
// and replication are at most MaxPartitions and MaxReplicationFactor, so
// the product fits an int64.
func placementWork(members, replication int) int64 {
	return int64(members) * int64(members) * int64(replication) * int64(min(replication, 32))
}

// scheme names the placement algorithm, as part of the fingerprint: key hash
// (xxhash64 of the key, modulo the partition count), partition placement
// (consistent v1.0.0's replica keys and bounded loads) and the encoding of
// member names given to consistent (see memberToken). Bump it whenever any of
// these changes the owner of some key, such as a consistent upgrade that
// changes how replicas are placed; TestPlacementIsPinned fails when that
// happens.
const scheme = "ring1"

// hasherName names the hash function, as part of the fingerprint.
const hasherName = "xxhash64"

// Config holds the settings of a [Ring]. The zero value is valid and means
// the defaults. Every node of a cluster must use the same settings; compare
// [Config.Fingerprint] to check.
type Config struct {
	// Partitions is the number of partitions that keys hash into; the owner
	// of a key is the owner of its partition. A prime spreads keys best. If
	// zero, DefaultPartitions (271). It must not be negative or more than
	// MaxPartitions, and a ring cannot have more members than partitions.
	Partitions int

	// ReplicationFactor is the number of virtual nodes per member on the
	// hash circle. More gives a smoother distribution and a slower New. If
	// zero, DefaultReplicationFactor (20). It must not be negative or more
	// than MaxReplicationFactor.
	ReplicationFactor int

	// LoadFactor bounds the partitions a member may own, as a multiple of
	// the average Partitions/members (rounded up). If zero,
	// DefaultLoadFactor (1.25). It must be finite and greater than 1.
	LoadFactor float64
}

// Validate reports whether c is usable by [New], treating zero fields as their
// defaults. Errors wrap [ErrInvalidConfig]. It does not modify c. New also
// checks c against the member count, which Validate cannot know.
func (c Config) Validate() error {
	switch {
	case c.Partitions < 0:
		return fmt.Errorf("%w: partitions %d is negative", ErrInvalidConfig, c.Partitions)
	case c.Partitions > MaxPartitions:
		return fmt.Errorf("%w: partitions %d is more than %d", ErrInvalidConfig, c.Partitions, MaxPartitions)
	case c.ReplicationFactor < 0:
		return fmt.Errorf("%w: replication factor %d is negative", ErrInvalidConfig, c.ReplicationFactor)
	case c.ReplicationFactor > MaxReplicationFactor:
		return fmt.Errorf("%w: replication factor %d is more than %d", ErrInvalidConfig, c.ReplicationFactor, MaxReplicationFactor)
	case math.IsNaN(c.LoadFactor) || math.IsInf(c.LoadFactor, 0):
		return fmt.Errorf("%w: load factor %v is not finite", ErrInvalidConfig, c.LoadFactor)
	case c.LoadFactor != 0 && c.LoadFactor <= 1:
		return fmt.Errorf("%w: load factor %v must be greater than 1", ErrInvalidConfig, c.LoadFactor)
	}
	return nil
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.LoadFactor == 0 {
		c.LoadFactor = DefaultLoadFactor
	}
	return c
}

// Fingerprint returns a short string that identifies the placement settings:
// the placement scheme, the hash function, and c's fields with defaults
// filled in, for example "ring1:xxhash64:p271:r20:lf1.25". Two processes
// whose fingerprints are equal place every key on the same member given the
// same members; nodes should refuse a peer whose fingerprint differs. The
// zero Config and one with the default values spelled out have the same
// fingerprint. The string is stable across processes and releases unless the
// placement itself changes. Fingerprint does not validate c.
func (c Config) Fingerprint() string {
	c = c.withDefaults()
	return scheme + ":" + hasherName +
		":p" + strconv.Itoa(c.Partitions) +
		":r" + strconv.Itoa(c.ReplicationFactor) +
		":lf" + strconv.FormatFloat(c.LoadFactor, 'g', -1, 64)
}

// checkRoom reports whether consistent can place c.Partitions partitions on
// members members (members > 0, c validated and defaulted) quickly enough
// (MaxVirtualNodes, MaxPlacementWork) and without its "not enough room to
// distribute partitions" panic.
//
// consistent lets each member own at most ceil(avg*LoadFactor) partitions and
// panics when the members' total is below the partition count. v1.0.0
// computes avg = partitions/members in floating point; earlier releases used
// integer division, which gives 0 (and a panic) as soon as members outnumber
// partitions. Both are checked, with the same float operations as consistent,
// so a change of release in either direction cannot make New panic. With
// members <= partitions and LoadFactor > 1 both conditions always hold;
// checking them exactly costs nothing and does not rest on that argument.
func checkRoom(members int, c Config) error {
	vnodes := members * c.ReplicationFactor // at most 1<<26: no overflow
	if vnodes > MaxVirtualNodes {
		return fmt.Errorf("%w: %d members × replication factor %d = %d virtual nodes, more than %d; lower ReplicationFactor",
			ErrInvalidConfig, members, c.ReplicationFactor, vnodes, MaxVirtualNodes)
	}
	if work := placementWork(members, c.ReplicationFactor); work > MaxPlacementWork {
		return fmt.Errorf("%w: %d members with replication factor %d: placement work %d is more than %d; lower ReplicationFactor",
			ErrInvalidConfig, members, c.ReplicationFactor, work, MaxPlacementWork)
	}
	if members > c.Partitions {
		return fmt.Errorf("%w: %d members but only %d partitions; raise Partitions", ErrInvalidConfig, members, c.Partitions)
	}
	p, m := float64(c.Partitions), float64(members)
	for _, avg := range []float64{p / m, float64(c.Partitions / members)} {
		if m*math.Ceil(avg*c.LoadFactor) < p {
			return fmt.Errorf("%w: %d partitions do not fit on %d members with load factor %v", ErrInvalidConfig, c.Partitions, members, c.LoadFactor)
		}
	}
	return nil
}
