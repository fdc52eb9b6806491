package ring

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// names returns n member names in the style of host:port addresses.
func names(n int) []string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("10.0.%d.%d:7946", i/256, i%256)
	}
	return ms
}

// keys returns n distinct keys.
func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("users/%d", i)
	}
	return ks
}

func mustNew(t testing.TB, members []string, cfg Config) *Ring {
	t.Helper()
	r, err := New(members, cfg)
	if err != nil {
		t.Fatalf("New(%d members, %+v) error: %v", len(members), cfg, err)
	}
	return r
}

func TestOwnerDeterministic(t *testing.T) {
	ms := []string{"c:1", "a:1", "b:1", "d:1", "e:1"}
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	r1 := mustNew(t, ms, Config{})
	r2 := mustNew(t, rev, Config{})
	for _, k := range keys(10000) {
		o := r1.Owner(k)
		if !r1.Has(o) {
			t.Fatalf("Owner(%q) = %q, not a member", k, o)
		}
		if again := r1.Owner(k); again != o {
			t.Errorf("Owner(%q) = %q then %q", k, o, again)
		}
		if got := r2.Owner(k); got != o {
			t.Errorf("Owner(%q) = %q with reversed members, want %q", k, got, o)
		}
	}
	if !slices.Equal(r1.PartitionOwners(), r2.PartitionOwners()) {
		t.Errorf("PartitionOwners differ between member orders")
	}
}

// TestOwnerAgreesWithConsistent builds consistent directly, the way the
// package documents it (xxhash64 hasher, member tokens), and checks that
// Owner's partition arithmetic matches LocateKey for every key.
func TestOwnerAgreesWithConsistent(t *testing.T) {
	for _, tt := range []struct {
		members int
		cfg     Config
	}{
		{1, Config{}},
		{3, Config{}},
		{7, Config{Partitions: 1009, ReplicationFactor: 5, LoadFactor: 1.1}},
		{13, Config{Partitions: 13, ReplicationFactor: 1, LoadFactor: 1.01}},
		{50, Config{Partitions: 271, ReplicationFactor: 40, LoadFactor: 3}},
	} {
		t.Run(fmt.Sprintf("%d/%+v", tt.members, tt.cfg), func(t *testing.T) {
			ms := names(tt.members)
			r := mustNew(t, ms, tt.cfg)
			cfg := r.Config()
			cms := make([]consistent.Member, len(ms))
			for i, m := range ms {
				cms[i] = member{name: m, token: memberToken(m)}
			}
			c := consistent.New(cms, consistent.Config{
				Hasher:            xxHasher{},
				PartitionCount:    cfg.Partitions,
				ReplicationFactor: cfg.ReplicationFactor,
				Load:              cfg.LoadFactor,
			})
			for _, k := range keys(5000) {
				want := c.LocateKey([]byte(k)).(member).name
				if got := r.Owner(k); got != want {
					t.Fatalf("Owner(%q) = %q, want %q (consistent.LocateKey)", k, got, want)
				}
				if got, want := r.Partition(k), c.FindPartitionID([]byte(k)); got != want {
					t.Fatalf("Partition(%q) = %d, want %d (consistent.FindPartitionID)", k, got, want)
				}
			}
		})
	}
}

func TestDistributionBounded(t *testing.T) {
	for _, tt := range []struct {
		members int
		cfg     Config
	}{
		{1, Config{}},
		{2, Config{}},
		{3, Config{}},
		{5, Config{}},
		{10, Config{}},
		{10, Config{LoadFactor: 1.05}},
		{16, Config{Partitions: 1021, ReplicationFactor: 50}},
	} {
		t.Run(fmt.Sprintf("%d/%+v", tt.members, tt.cfg), func(t *testing.T) {
			r := mustNew(t, names(tt.members), tt.cfg)
			cfg := r.Config()
			bound := int(math.Ceil(float64(cfg.Partitions) / float64(tt.members) * cfg.LoadFactor))
			d := r.Distribution()
			if len(d) != tt.members {
				t.Errorf("Distribution has %d members, want %d", len(d), tt.members)
			}
			total := 0
			for m, n := range d {
				total += n
				if n == 0 || n > bound {
					t.Errorf("Distribution()[%q] = %d, want 1..%d", m, n, bound)
				}
			}
			if total != cfg.Partitions {
				t.Errorf("Distribution total = %d, want %d", total, cfg.Partitions)
			}
		})
	}
}

func TestAddMemberMovesAboutAQuarter(t *testing.T) {
	ms := names(4)
	before := mustNew(t, ms[:3], Config{})
	after := mustNew(t, ms, Config{})
	ks := keys(10000)
	moved, toNew := 0, 0
	for _, k := range ks {
		if b, a := before.Owner(k), after.Owner(k); a != b {
			moved++
			if a == ms[3] {
				toNew++
			}
		}
	}
	frac := float64(moved) / float64(len(ks))
	t.Logf("moved %d of %d keys (%.1f%%), %d to the new member", moved, len(ks), 100*frac, toNew)
	if frac < 0.10 || frac > 0.45 {
		t.Errorf("adding a 4th member moved %.1f%% of keys, want 10%%..45%%", 100*frac)
	}
	if toNew == 0 {
		t.Errorf("adding a 4th member moved no key to it")
	}
}

// TestNewInvalid lists configurations that consistent.New panics on, or that
// would make it loop on a huge partition count, and checks that New returns
// the right error instead. TestConsistentPanics shows the panics are real.
func TestNewInvalid(t *testing.T) {
	for _, tt := range []struct {
		name    string
		members []string
		cfg     Config
		want    error
	}{
		{"negative partitions", names(3), Config{Partitions: -1}, ErrInvalidConfig},
		{"too many partitions", names(3), Config{Partitions: MaxPartitions + 1}, ErrInvalidConfig},
		{"negative replication", names(3), Config{ReplicationFactor: -1}, ErrInvalidConfig},
		{"too much replication", names(3), Config{ReplicationFactor: MaxReplicationFactor + 1}, ErrInvalidConfig},
		{"load below 1", names(3), Config{LoadFactor: 0.5}, ErrInvalidConfig},
		{"load exactly 1", names(3), Config{LoadFactor: 1}, ErrInvalidConfig},
		{"negative load", names(3), Config{LoadFactor: -2}, ErrInvalidConfig},
		{"NaN load", names(3), Config{LoadFactor: math.NaN()}, ErrInvalidConfig},
		{"infinite load", names(3), Config{LoadFactor: math.Inf(1)}, ErrInvalidConfig},
		{"more members than partitions", names(8), Config{Partitions: 7}, ErrInvalidConfig},
		{"more members than default partitions", names(272), Config{}, ErrInvalidConfig},
		{"too many virtual nodes", names(65), Config{Partitions: 1024, ReplicationFactor: 1024}, ErrInvalidConfig},
		{"too much placement work", names(300), Config{Partitions: 1024}, ErrInvalidConfig},
		{"512 members replication 256", names(512), Config{Partitions: MaxPartitions, ReplicationFactor: 256, LoadFactor: 1.0000001}, ErrInvalidConfig},
		{"64 members replication 1024", names(64), Config{Partitions: MaxPartitions, ReplicationFactor: 1024, LoadFactor: 1.0000001}, ErrInvalidConfig},
		{"6000 members replication 1", names(6000), Config{Partitions: MaxPartitions, ReplicationFactor: 1}, ErrInvalidConfig},
		{"empty name", []string{"a", ""}, Config{}, ErrInvalidMember},
		{"duplicate name", []string{"a", "b", "a"}, Config{}, ErrInvalidMember},
		{"invalid config wins over members", []string{"", ""}, Config{Partitions: -5}, ErrInvalidConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r *Ring
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("New panicked: %v", p)
					}
				}()
				r, err = New(tt.members, tt.cfg)
			}()
			if !errors.Is(err, tt.want) || r != nil {
				t.Errorf("New(%d members, %+v) = %v, %v, want nil, %v", len(tt.members), tt.cfg, r, err, tt.want)
			}
		})
	}
}

// TestConsistentPanics shows that the guards in New are needed: consistent.New
// panics on these settings, which TestNewInvalid feeds to New. If a consistent
// release stops panicking, the guards stay harmless and the case can go.
func TestConsistentPanics(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  consistent.Config
	}{
		{"load below 1", consistent.Config{Hasher: xxHasher{}, Load: 0.5}},
		{"NaN load", consistent.Config{Hasher: xxHasher{}, Load: math.NaN()}},
		{"negative replication", consistent.Config{Hasher: xxHasher{}, ReplicationFactor: -1}},
		{"nil hasher", consistent.Config{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			panicked := func() (p any) {
				defer func() { p = recover() }()
				consistent.New([]consistent.Member{member{token: "a"}, member{token: "b"}}, tt.cfg)
				return nil
			}()
			if panicked == nil {
				t.Errorf("consistent.New(%+v) did not panic; if a new release fixed this, drop the case", tt.cfg)
			}
			t.Logf("consistent.New panics: %v", panicked)
		})
	}
}

// collidingHasher puts every virtual node at the same point, so that one
// member takes all of them and consistent runs out of room: the last-resort
// recover in place must turn that panic into an error.
type collidingHasher struct{}

func (collidingHasher) Sum64([]byte) uint64 { return 42 }

func TestPlaceRecoversPanic(t *testing.T) {
	cfg := Config{}.withDefaults()
	owners, err := place(names(3), cfg, collidingHasher{})
	if !errors.Is(err, ErrInvalidConfig) || owners != nil {
		t.Fatalf("place with colliding hasher = %d owners, %v, want nil, ErrInvalidConfig", len(owners), err)
	}
	if !strings.Contains(err.Error(), "not enough room") {
		t.Errorf("error %q does not carry the panic message", err)
	}
}

// TestReplicaKeysDistinct checks members whose names collide under the
// replica key format of consistent before v1.0.0 ("name"+"index"): through
// memberToken, their virtual nodes are distinct under both that format and
// v1.0.0's ("index:name"), and each member owns partitions.
func TestReplicaKeysDistinct(t *testing.T) {
	ms := []string{"host:794", "host:7941", "node1", "node11", "node", "1", "11", "a:1", "a:11", "5:abcde"}
	if "host:794"+"10" != "host:7941"+"0" {
		t.Fatal("test premise: raw names collide in the old format")
	}
	for _, format := range []func(tok string, i int) string{
		func(tok string, i int) string { return tok + strconv.Itoa(i) },
		func(tok string, i int) string { return strconv.Itoa(i) + ":" + tok },
	} {
		seen := map[string]string{}
		for _, m := range ms {
			for i := range MaxReplicationFactor {
				k := format(memberToken(m), i)
				if other, ok := seen[k]; ok && other != m {
					t.Fatalf("virtual node %q shared by %q and %q", k, other, m)
				}
				seen[k] = m
			}
		}
	}
	for _, pair := range [][]string{{"host:794", "host:7941"}, ms} {
		r := mustNew(t, pair, Config{LoadFactor: 1e6, ReplicationFactor: 11})
		for m, n := range r.Distribution() {
			if n == 0 {
				t.Errorf("member %q owns no partitions in ring of %q", m, pair)
			}
		}
	}
}

func TestEmptyRing(t *testing.T) {
	for _, tt := range []struct {
		name string
		ring func() *Ring
	}{
		{"nil members", func() *Ring { return mustNew(t, nil, Config{}) }},
		{"empty members", func() *Ring { return mustNew(t, []string{}, Config{Partitions: 7}) }},
		{"nil ring", func() *Ring { return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.ring()
			if got := r.Owner("k"); got != "" {
				t.Errorf("Owner(%q) = %q, want %q", "k", got, "")
			}
			if r.Len() != 0 || len(r.Members()) != 0 || len(r.Distribution()) != 0 || r.Has("") {
				t.Errorf("empty ring: Len %d, Members %q, Distribution %v", r.Len(), r.Members(), r.Distribution())
			}
			po := r.PartitionOwners()
			if len(po) != r.Config().Partitions || slices.ContainsFunc(po, func(s string) bool { return s != "" }) {
				t.Errorf("PartitionOwners() = %q, want %d empty strings", po, r.Config().Partitions)
			}
			if p := r.Partition("k"); p < 0 || p >= r.Config().Partitions {
				t.Errorf("Partition(%q) = %d, out of range", "k", p)
			}
		})
	}
	if got, want := (*Ring)(nil).Config(), (Config{}).withDefaults(); got != want {
		t.Errorf("nil Ring Config() = %+v, want %+v", got, want)
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	in := []string{"b", "a", "c"}
	r := mustNew(t, in, Config{Partitions: 31})
	in[0] = "zzz"
	if got, want := r.Members(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Members() = %q, want %q (sorted, independent of the input slice)", got, want)
	}
	m := r.Members()
	m[0] = "x"
	po := r.PartitionOwners()
	po[0] = "x"
	d := r.Distribution()
	d["a"] = 1000
	if r.Members()[0] != "a" || r.PartitionOwners()[0] == "x" || r.Distribution()["a"] == 1000 {
		t.Errorf("changing returned slices or maps changed the ring")
	}
	if len(po) != 31 {
		t.Errorf("len(PartitionOwners()) = %d, want 31", len(po))
	}
	for _, k := range keys(100) {
		if got, want := r.Owner(k), r.PartitionOwners()[r.Partition(k)]; got != want {
			t.Errorf("Owner(%q) = %q, want PartitionOwners()[Partition] = %q", k, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	def := Config{Partitions: 271, ReplicationFactor: 20, LoadFactor: 1.25}
	for _, tt := range []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, def},
		{"explicit", Config{Partitions: 7, ReplicationFactor: 3, LoadFactor: 2}, Config{Partitions: 7, ReplicationFactor: 3, LoadFactor: 2}},
		{"partial", Config{Partitions: 1009}, Config{Partitions: 1009, ReplicationFactor: 20, LoadFactor: 1.25}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.in.Validate(); err != nil {
				t.Fatalf("%+v.Validate() = %v, want nil", tt.in, err)
			}
			r := mustNew(t, names(3), tt.in)
			if got := r.Config(); got != tt.want {
				t.Errorf("Config() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	if got, want := (Config{}).Fingerprint(), "ring1:xxhash64:p271:r20:lf1.25"; got != want {
		t.Errorf("Config{}.Fingerprint() = %q, want %q (changing it splits mixed-version clusters)", got, want)
	}
	a := mustNew(t, names(3), Config{})
	b := mustNew(t, names(5), Config{Partitions: 271, ReplicationFactor: 20, LoadFactor: 1.25})
	if a.Fingerprint() != b.Fingerprint() {
		t.Errorf("Fingerprint() = %q and %q for the same settings", a.Fingerprint(), b.Fingerprint())
	}
	seen := map[string]Config{}
	for _, c := range []Config{
		{}, {Partitions: 272}, {ReplicationFactor: 21}, {LoadFactor: 1.26},
		{Partitions: 27, ReplicationFactor: 120}, {Partitions: 271, ReplicationFactor: 20, LoadFactor: 1.250000001},
	} {
		fp := c.Fingerprint()
		if prev, ok := seen[fp]; ok {
			t.Errorf("Fingerprint() = %q for both %+v and %+v", fp, prev, c)
		}
		seen[fp] = c
	}
}

// TestPlacementIsPinned fails when the owner of some key changes for fixed
// members and settings: a dependency upgrade or a code change that does that
// must bump scheme (and so the fingerprint), or nodes of different versions
// would route keys differently while accepting each other.
func TestPlacementIsPinned(t *testing.T) {
	r := mustNew(t, []string{"a:1", "b:1", "c:1"}, Config{})
	got := fmt.Sprintf("%016x", xxhash.Sum64String(strings.Join(r.PartitionOwners(), "\n")))
	if got != pinnedPlacement {
		t.Errorf("placement of a:1 b:1 c:1 with default settings changed: hash %s, want %s; "+
			"bump scheme in config.go and update pinnedPlacement", got, pinnedPlacement)
	}
	// A few owners in plain sight, for whoever has to update the hash.
	for _, k := range []string{"users/1", "users/2", "users/3", "users/42"} {
		t.Logf("Owner(%q) = %q", k, r.Owner(k))
	}
}

const pinnedPlacement = "3472d49ca31104a4"

func TestOwnerAllocs(t *testing.T) {
	r := mustNew(t, names(5), Config{})
	var sink string
	if n := testing.AllocsPerRun(1000, func() { sink = r.Owner("users/42") }); n != 0 {
		t.Errorf("Owner allocates %v times per call, want 0", n)
	}
	_ = sink
}

func TestConcurrentOwner(t *testing.T) {
	r := mustNew(t, names(5), Config{})
	want := make(map[string]string)
	ks := keys(500)
	for _, k := range ks {
		want[k] = r.Owner(k)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, k := range ks {
				if got := r.Owner(k); got != want[k] {
					t.Errorf("Owner(%q) = %q, want %q", k, got, want[k])
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkOwner(b *testing.B) {
	r := mustNew(b, names(16), Config{})
	ks := keys(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = r.Owner(ks[i&1023])
		i++
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{3, 16, 64} {
		b.Run(fmt.Sprint(n, "members"), func(b *testing.B) {
			ms := names(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(ms, Config{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNewAtLimits builds the largest rings of several shapes that the
// limits allow (and the default settings at their member maximum): they must
// be accepted. How long they take is logged, not asserted (shared machines).
func TestNewAtLimits(t *testing.T) {
	for _, tt := range []struct {
		members int
		cfg     Config
	}{
		{271, Config{}},
		{289, Config{Partitions: 1024, ReplicationFactor: 20}},
		{1448, Config{Partitions: MaxPartitions, ReplicationFactor: 4, LoadFactor: 1.0000001}},
		{64, Config{Partitions: MaxPartitions, ReplicationFactor: 256, LoadFactor: 1.0000001}},
		{32, Config{Partitions: MaxPartitions, ReplicationFactor: MaxReplicationFactor}},
	} {
		t.Run(fmt.Sprintf("%d members %+v", tt.members, tt.cfg), func(t *testing.T) {
			r := tt.cfg.withDefaults().ReplicationFactor
			if w := placementWork(tt.members, r); w > MaxPlacementWork || tt.members*r > MaxVirtualNodes {
				t.Fatalf("case is beyond the limits (work %d)", w)
			}
			if w := placementWork(tt.members+1, r); w <= MaxPlacementWork && (tt.members+1)*r <= MaxVirtualNodes && tt.members+1 <= tt.cfg.withDefaults().Partitions {
				t.Fatalf("case is not at the limit: %d members fit too", tt.members+1)
			}
			start := time.Now()
			mustNew(t, names(tt.members), tt.cfg)
			t.Logf("New took %v", time.Since(start))
		})
	}
}
