package ring

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Errors returned by [New] and [Config.Validate]. They are wrapped with
// details, so test for them with [errors.Is].
var (
	// ErrInvalidConfig means the Config, or the Config together with the
	// number of members, cannot produce a ring: a negative or too large
	// field, a load factor not above 1, more members than partitions, or
	// more members and virtual nodes than [MaxVirtualNodes] and
	// [MaxPlacementWork] allow.
	ErrInvalidConfig = errors.New("ring: invalid config")

	// ErrInvalidMember means a member name is empty or appears twice.
	ErrInvalidMember = errors.New("ring: invalid member")
)

// Ring is an immutable assignment of partitions, and so of keys, to members.
// Build one with [New]; it never changes afterwards, so all methods are safe
// for concurrent use without locks. A nil *Ring behaves as an empty ring with
// the default Config.
type Ring struct {
	cfg     Config   // defaults filled in
	members []string // sorted, unique, non-empty
	owners  []string // owners[p] is the owner of partition p; nil if no members
}

// New builds a ring of members with the settings in cfg.
//
// Member names must be non-empty and unique; their order does not matter.
// An empty (or nil) members gives an empty ring whose Owner returns "". New
// copies members and never modifies it or cfg.
//
// New returns an error wrapping [ErrInvalidConfig] if cfg fails
// [Config.Validate] or the members do not fit (more members than partitions,
// or beyond [MaxVirtualNodes] or [MaxPlacementWork]),
// and one wrapping [ErrInvalidMember] for an empty or duplicate name. It never
// panics: the checks cover every case in which consistent panics, and a panic
// from consistent that gets past them anyway is recovered and returned as
// ErrInvalidConfig.
//
// New does all the hashing and placement up front (roughly partitions ×
// log(members × replication) steps), so that [Ring.Owner] is a table lookup.
func New(members []string, cfg Config) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	names := slices.Clone(members)
	slices.Sort(names)
	for i, name := range names {
		if name == "" {
			return nil, fmt.Errorf("%w: empty name", ErrInvalidMember)
		}
		if i > 0 && name == names[i-1] {
			return nil, fmt.Errorf("%w: duplicate name %q", ErrInvalidMember, name)
		}
	}
	r := &Ring{cfg: cfg, members: names}
	if len(names) == 0 {
		return r, nil
	}
	if err := checkRoom(len(names), cfg); err != nil {
		return nil, err
	}
	owners, err := place(names, cfg, xxHasher{})
	if err != nil {
		return nil, err
	}
	r.owners = owners
	return r, nil
}

// Owner returns the member that owns key, or "" if the ring is empty. It does
// not allocate and takes no lock.
//
// The partition of a key is xxhash64(key) modulo Partitions, the same
// computation as consistent's FindPartitionID, so Owner agrees with
// consistent's LocateKey for the same members and settings.
func (r *Ring) Owner(key string) string {
	if r == nil || len(r.owners) == 0 {
		return ""
	}
	return r.owners[xxhash.Sum64String(key)%uint64(len(r.owners))]
}

// Partition returns the partition of key, in [0, Partitions). It is the
// index into [Ring.PartitionOwners] and does not depend on the members.
func (r *Ring) Partition(key string) int {
	return int(xxhash.Sum64String(key) % uint64(r.Config().Partitions))
}

// Members returns the member names in sorted order. The caller owns the slice.
func (r *Ring) Members() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.members)
}

// Has reports whether name is a member of the ring.
func (r *Ring) Has(name string) bool {
	if r == nil {
		return false
	}
	_, ok := slices.BinarySearch(r.members, name)
	return ok
}

// Len returns the number of members.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.members)
}

// Config returns the settings of the ring, with defaults filled in.
func (r *Ring) Config() Config {
	if r == nil {
		return Config{}.withDefaults()
	}
	return r.cfg
}

// Fingerprint returns [Config.Fingerprint] of the ring's settings. Members do
// not take part: two rings with the same settings have the same fingerprint.
func (r *Ring) Fingerprint() string {
	return r.Config().Fingerprint()
}

// Distribution returns the number of partitions each member owns, for status
// pages. Every member appears, with 0 if it owns none; the counts add up to
// Partitions unless the ring is empty. The caller owns the map.
func (r *Ring) Distribution() map[string]int {
	d := make(map[string]int, r.Len())
	if r == nil {
		return d
	}
	for _, m := range r.members {
		d[m] = 0
	}
	for _, o := range r.owners {
		d[o]++
	}
	return d
}

// PartitionOwners returns the owner of every partition, indexed by partition
// id (see [Ring.Partition]). For an empty ring every entry is "". The caller
// owns the slice.
func (r *Ring) PartitionOwners() []string {
	if r == nil || len(r.owners) == 0 {
		return make([]string, r.Config().Partitions)
	}
	return slices.Clone(r.owners)
}

// xxHasher is the consistent.Hasher of every ring: xxhash64, the same
// function Owner applies to keys.
type xxHasher struct{}

func (xxHasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// member is what the ring gives consistent for one member name. consistent
// hashes String() followed or preceded by a replica index to place virtual
// nodes, and before v1.0.0 it built "name"+"index", so that "host:794"+"10"
// and "host:7941"+"0" were the same virtual node. String is therefore a
// prefix-free encoding of the name (its length, a colon, the name): no token
// is a prefix of another, so token+index and index+":"+token are both
// unambiguous and distinct members never share a virtual node, whichever way
// consistent joins the parts.
type member struct {
	name  string
	token string
}

func (m member) String() string { return m.token }

// memberToken returns the string consistent sees for a member name.
func memberToken(name string) string {
	return strconv.Itoa(len(name)) + ":" + name
}

// place computes the owner of every partition with consistent. names must be
// sorted, unique and fit cfg (checkRoom); the result is a pure function of
// names, cfg and h. The consistent instance is discarded afterwards, so it is
// never mutated after it is built and never shared.
func place(names []string, cfg Config, h consistent.Hasher) (owners []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			owners, err = nil, fmt.Errorf("%w: placing %d partitions on %d members: %v", ErrInvalidConfig, cfg.Partitions, len(names), p)
		}
	}()
	ms := make([]consistent.Member, len(names))
	for i, name := range names {
		ms[i] = member{name: name, token: memberToken(name)}
	}
	c := consistent.New(ms, consistent.Config{
		Hasher:            h,
		PartitionCount:    cfg.Partitions,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              cfg.LoadFactor,
	})
	owners = make([]string, cfg.Partitions)
	for p := range owners {
		m := c.GetPartitionOwner(p)
		if m == nil {
			return nil, fmt.Errorf("%w: partition %d has no owner", ErrInvalidConfig, p)
		}
		mm, ok := m.(member)
		if !ok {
			return nil, fmt.Errorf("%w: partition %d placed on unknown member %v", ErrInvalidConfig, p, m)
		}
		owners[p] = mm.name
	}
	return owners, nil
}
