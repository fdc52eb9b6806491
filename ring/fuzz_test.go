package ring

import (
	"errors"
	"math"
	"testing"
)

// FuzzNew checks New on arbitrary settings and member counts: it never
// panics, it fails exactly when an independent statement of the rules says
// it must, with ErrInvalidConfig, and a ring it returns places every
// partition on a member within the load bound. The seed corpus is in
// testdata/fuzz/FuzzNew/; run it longer with
//
//	go test -run=^$ -fuzz=FuzzNew -fuzztime=60s ./ring/
func FuzzNew(f *testing.F) {
	f.Add(271, 20, 1.25, 3)
	f.Fuzz(func(t *testing.T, partitions, replication int, load float64, members int) {
		cfg := Config{Partitions: partitions, ReplicationFactor: replication, LoadFactor: load}
		verr := cfg.Validate()

		n := members % 1000
		if n < 0 {
			n = -n
		}
		if verr == nil {
			// Keep each run fast: consistent sorts all virtual nodes
			// once per member.
			r := cfg.withDefaults().ReplicationFactor
			if n*r > 50_000 {
				n = 50_000 / r
			}
		}

		p, r, l := partitions, replication, load
		if p == 0 {
			p = DefaultPartitions
		}
		if r == 0 {
			r = DefaultReplicationFactor
		}
		if l == 0 {
			l = DefaultLoadFactor
		}
		configOK := p > 0 && p <= MaxPartitions && r > 0 && r <= MaxReplicationFactor &&
			!math.IsNaN(l) && !math.IsInf(l, 0) && l > 1
		if (verr == nil) != configOK {
			t.Fatalf("%+v.Validate() = %v, want ok=%v", cfg, verr, configOK)
		}
		wantOK := configOK && n <= p && n*r <= MaxVirtualNodes && placementWork(n, r) <= MaxPlacementWork

		ring, err := New(names(n), cfg)
		if !wantOK {
			if !errors.Is(err, ErrInvalidConfig) || ring != nil {
				t.Fatalf("New(%d members, %+v) = %v, %v, want nil, ErrInvalidConfig", n, cfg, ring, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("New(%d members, %+v) error: %v", n, cfg, err)
		}
		if ring.Len() != n {
			t.Fatalf("Len() = %d, want %d", ring.Len(), n)
		}
		if n == 0 {
			if got := ring.Owner("k"); got != "" {
				t.Fatalf("empty ring Owner(%q) = %q, want %q", "k", got, "")
			}
			return
		}
		bound := int(math.Ceil(float64(p) / float64(n) * l))
		total := 0
		for m, c := range ring.Distribution() {
			if c > bound {
				t.Fatalf("member %q owns %d partitions, more than the bound %d", m, c, bound)
			}
			total += c
		}
		if total != p {
			t.Fatalf("members own %d partitions in all, want %d", total, p)
		}
		if o := ring.Owner("k"); !ring.Has(o) {
			t.Fatalf("Owner(%q) = %q, not a member", "k", o)
		}
	})
}
