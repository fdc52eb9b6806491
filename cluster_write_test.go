package meshcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcache/meshcache/local"
)

// Tests of the cluster's write path (issue 3, behaviour 3: a write reaches
// every member, partial acknowledgement, cut-off, a 3-node fence stress
// test) and of membership changes (behaviour 5: re-routing on join and
// leave, hand-off).

// wtNodeIndex returns the index in nodes of the node named name, or -1.
func wtNodeIndex(nodes []*Node, name string) int {
	return slices.IndexFunc(nodes, func(n *Node) bool { return n.Name() == name })
}

// wtWarm gets key on its owner, then on every other node, and checks
// that the owner holds it in its main cache and every other node a hot copy.
func wtWarm(t testing.TB, nodes []*Node, gs []*Group, key, want string) {
	t.Helper()
	owner := wtNodeIndex(nodes, nodes[0].Owner(key))
	if owner < 0 {
		t.Fatalf("key %q is owned by %q, not a test node", key, nodes[0].Owner(key))
	}
	order := []int{owner}
	for i := range nodes {
		if i != owner {
			order = append(order, i)
		}
	}
	for _, i := range order {
		if got := mustGet(t, gs[i], key); got != want {
			t.Fatalf("%s: warm Get(%q) = %q, want %q", nodes[i].Name(), key, got, want)
		}
	}
	for i, g := range gs {
		tier, what := local.Hot, "hot copy"
		if i == owner {
			tier, what = local.Main, "main entry"
		}
		if e, ok := g.store.Get(tier, key); !ok || string(e.Value) != want {
			t.Fatalf("%s: after warming, no %s of %q = %q", nodes[i].Name(), what, key, want)
		}
	}
}

// wtGetAll checks that a Get of key on every node returns want.
func wtGetAll(t testing.TB, nodes []*Node, gs []*Group, key, want string) {
	t.Helper()
	for i, g := range gs {
		if got := get(t.Context(), g, key); got != want {
			t.Errorf("%s: Get(%q) = %q, want %q", nodes[i].Name(), key, got, want)
		}
	}
}

// TestClusterWriteReachesEveryNode warms a key on three nodes (the owner's
// main cache, hot copies on the others), changes the origin, writes from
// each node in turn (the owner once, a non-owner twice), and checks that a
// Get on every node returns the new value at once: no waiting for TTLs or
// gossip.
func TestClusterWriteReachesEveryNode(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	type writeCase struct {
		name string
		// prepare runs after warming and the origin bump, before the write.
		prepare func(t *testing.T, owner *Group, key string)
		write   func(ctx context.Context, g *Group, key string) error
		want    string // what every node's Get returns after the write
		loads   int64  // loader calls in all, warming included
	}
	cases := []writeCase{
		{name: "Invalidate", want: "1", loads: 2,
			write: func(ctx context.Context, g *Group, key string) error { return g.Invalidate(ctx, key) }},
		{name: "InvalidateTags", want: "1", loads: 2,
			write: func(ctx context.Context, g *Group, key string) error { return g.InvalidateTags(ctx, "tag:"+key) }},
		{name: "Clear", want: "1", loads: 2,
			write: func(ctx context.Context, g *Group, _ string) error { return g.Clear(ctx) }},
		{name: "Set", want: "set", loads: 1,
			write: func(ctx context.Context, g *Group, key string) error {
				return g.Set(ctx, key, Item{Value: []byte("set")})
			}},
		{name: "SetIfAbsent/absent at owner", want: "set", loads: 1,
			// The owner lost its entry (evicted, say) while the others
			// still hold hot copies: the owner stores the value, and
			// phase two must drop the copies.
			prepare: func(t *testing.T, owner *Group, key string) {
				if !owner.store.Remove(local.Main, key) {
					t.Fatalf("owner held no main entry for %q", key)
				}
			},
			write: func(ctx context.Context, g *Group, key string) error {
				stored, err := g.SetIfAbsent(ctx, key, Item{Value: []byte("set")})
				if err == nil && !stored {
					err = errors.New("SetIfAbsent = false, want true: the owner had no value")
				}
				return err
			}},
		{name: "SetIfAbsent/present at owner", want: "0", loads: 1,
			write: func(ctx context.Context, g *Group, key string) error {
				stored, err := g.SetIfAbsent(ctx, key, Item{Value: []byte("set")})
				if err == nil && stored {
					err = errors.New("SetIfAbsent = true, want false: the owner had a value")
				}
				return err
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for w := range nodes {
				t.Run("from "+nodes[w].Name(), func(t *testing.T) {
					o := newOrigin()
					o.tags = func(key string) []string { return []string{"tag:" + key} }
					gs := newClusterGroups(t, nodes, fmt.Sprintf("%s-%d", c.name, w), o)
					const key = "k"
					wtWarm(t, nodes, gs, key, "0")
					o.bump(key)
					if c.prepare != nil {
						c.prepare(t, gs[wtNodeIndex(nodes, nodes[0].Owner(key))], key)
					}
					if err := c.write(t.Context(), gs[w], key); err != nil {
						t.Fatalf("%s from %s: %v", c.name, nodes[w].Name(), err)
					}
					wtGetAll(t, nodes, gs, key, c.want)
					if got := o.calls.Load(); got != c.loads {
						t.Errorf("loader calls = %d, want %d", got, c.loads)
					}
				})
			}
		})
	}

	// Expire shortens the TTL of the owner's entry and of every hot copy:
	// all of them report the new TTL at once, and once it has passed every
	// node returns the new value.
	t.Run("Expire", func(t *testing.T) {
		o := newOrigin()
		gs := newClusterGroups(t, nodes, "Expire", o)
		const key, ttl = "k", 300 * time.Millisecond
		wtWarm(t, nodes, gs, key, "0")
		o.bump(key)
		ok, err := gs[1].Expire(t.Context(), key, ttl)
		if err != nil || !ok {
			t.Fatalf("Expire(%q, %v) = %v, %v, want true, nil", key, ttl, ok, err)
		}
		// Every member applied it before Expire returned: the owner's
		// entry has the new TTL, the copies are gone.
		expired := time.Now().Add(ttl)
		for i, g := range gs {
			e, ok, err := g.Peek(t.Context(), key)
			if err != nil || (ok && e.TTL > ttl) {
				t.Errorf("%s: Peek(%q) = TTL %v, %v, %v, want TTL <= %v or no copy", nodes[i].Name(), key, e.TTL, ok, err, ttl)
			}
		}
		time.Sleep(time.Until(expired)) // the TTL itself is under test
		wtGetAll(t, nodes, gs, key, "1")
	})
}

// TestClusterWritePartial makes one member unable to acknowledge (its peer
// transport is closed, its gossip still runs): a write then fails with an
// *InvalidateError naming exactly that member, the members that did
// acknowledge serve the new value at once, and the change reaches the
// silent member's own main cache by gossip. Gossip only drops (a Set or an
// Expire replayed late could undo newer writes), so every write ends with
// the key gone from the silent member.
func TestClusterWritePartial(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	cut := nodes[2]
	type partialCase struct {
		name  string
		write func(ctx context.Context, g *Group, key string) error
		want  string // what the acknowledging nodes return
	}
	cases := []partialCase{
		{name: "Invalidate", want: "1",
			write: func(ctx context.Context, g *Group, key string) error { return g.Invalidate(ctx, key) }},
		{name: "InvalidateTags", want: "1",
			write: func(ctx context.Context, g *Group, key string) error { return g.InvalidateTags(ctx, "tag:"+key) }},
		{name: "Clear", want: "1",
			write: func(ctx context.Context, g *Group, _ string) error { return g.Clear(ctx) }},
		// Only the owner stores a Set value; it is unreachable, so the
		// others load the key themselves (in a real application the origin
		// holds what was Set).
		{name: "Set", want: "1",
			write: func(ctx context.Context, g *Group, key string) error {
				return g.Set(ctx, key, Item{Value: []byte("set")})
			}},
		// Phase 2 of an Expire drops the copies (so that a fetch in flight
		// cannot keep the old TTL): the acknowledging nodes, whose owner is
		// unreachable, load the key themselves.
		{name: "Expire", want: "1",
			write: func(ctx context.Context, g *Group, key string) error {
				_, err := g.Expire(ctx, key, time.Minute)
				return err
			}},
	}
	// Warm every case's key, owned by the member about to go silent, while
	// its transport still serves.
	origins := make([]*origin, len(cases))
	groups := make([][]*Group, len(cases))
	keys := make([]string, len(cases))
	for i, c := range cases {
		origins[i] = newOrigin()
		origins[i].tags = func(key string) []string { return []string{"tag:" + key} }
		groups[i] = newClusterGroups(t, nodes, "partial-"+c.name, origins[i])
		keys[i] = keyOwnedBy(t, nodes[0], cut.Name(), "k")
		wtWarm(t, nodes, groups[i], keys[i], "0")
	}
	if err := cut.server.Close(); err != nil {
		t.Fatalf("closing %s's transport: %v", cut.Name(), err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gs, key := groups[i], keys[i]
			origins[i].bump(key)
			sent := nodes[0].Stats().GossipSent
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			err := c.write(ctx, gs[0], key)
			cancel()
			var ie *InvalidateError
			switch {
			case !errors.As(err, &ie):
				t.Fatalf("%s = %v, want an *InvalidateError", c.name, err)
			case !slices.Equal(ie.Unacked, []string{cut.Name()}):
				t.Errorf("InvalidateError.Unacked = %v, want [%s]", ie.Unacked, cut.Name())
			case !errors.Is(err, ErrPartialInvalidation):
				t.Errorf("errors.Is(%v, ErrPartialInvalidation) = false", err)
			}
			if got := nodes[0].Stats().GossipSent; got != sent+1 {
				t.Errorf("GossipSent = %d, want %d", got, sent+1)
			}
			// The members that acknowledged serve the change at once (the
			// owner is unreachable: they load it themselves).
			wtGetAll(t, nodes[:2], gs[:2], key, c.want)
			// The silent member applies it from gossip.
			deadline := time.Now().Add(10 * time.Second)
			for {
				e, ok, err := gs[2].Peek(t.Context(), key)
				if err != nil {
					t.Fatalf("%s: Peek(%q): %v", cut.Name(), key, err)
				}
				if !ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: Peek(%q) = %q, true after 10s: the gossiped %s never arrived", cut.Name(), key, e.Value, c.name)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// wtSuspectPacket is a memberlist gossip packet (hashicorp/memberlist v0.7.0,
// net.go) that accuses node of being suspect: message type suspectMsg (3)
// and the msgpack map of memberlist's suspect struct. The incarnation is
// high enough to beat the node's own, so it has to refute.
func wtSuspectPacket(node, from string) []byte {
	const suspectMsg = 3
	b := []byte{suspectMsg, 0x83} // a map of three fields
	str := func(s string) {
		b = append(b, 0xa0|byte(len(s))) // fixstr: under 32 bytes
		b = append(b, s...)
	}
	str("Incarnation")
	b = append(b, 0xce) // uint32
	b = binary.BigEndian.AppendUint32(b, 1<<20)
	str("Node")
	str(node)
	str("From")
	str(from)
	return b
}

// TestClusterCutOffFlushes checks that a node that learns it was cut off
// flushes both its caches: once by calling the hook directly, once for real
// (a forged suspicion that the node has to refute, as after a one-way
// partition; peers reports the refute through Config.OnCutOff, which the
// node wires to the same hook).
func TestClusterCutOffFlushes(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	// A key owned by each node, warmed everywhere: every node holds a main
	// entry and two hot copies.
	var keys []string
	for _, n := range nodes {
		k := keyOwnedBy(t, nodes[0], n.Name(), "k")
		keys = append(keys, k)
		wtWarm(t, nodes, gs, k, "0")
	}
	flushed := func(i int) bool {
		st := gs[i].Stats()
		return st.Items == 0 && st.HotItems == 0
	}
	// check checks that node i holds none of the keys, and that it loads the
	// key it owns anew: the origin changed and no invalidation said so.
	check := func(t *testing.T, i int) {
		t.Helper()
		for _, k := range keys {
			if _, ok, _ := gs[i].Peek(t.Context(), k); ok {
				t.Errorf("%s: Peek(%q) found it after the cut-off", nodes[i].Name(), k)
			}
		}
		k := keys[i]
		if got, want := get(t.Context(), gs[i], k), strconv.Itoa(wtVersion(o, k)); got != want {
			t.Errorf("%s: Get(%q) = %q, want %q", nodes[i].Name(), k, got, want)
		}
	}
	for _, k := range keys {
		o.bump(k)
	}

	t.Run("direct", func(t *testing.T) {
		const victim = 0
		if flushed(victim) {
			t.Fatalf("%s holds nothing before the cut-off", nodes[victim].Name())
		}
		nodes[victim].onCutOff()
		if !flushed(victim) {
			t.Errorf("%s: after onCutOff, stats %+v, want no entries", nodes[victim].Name(), gs[victim].Stats())
		}
		check(t, victim)
	})

	t.Run("refute", func(t *testing.T) {
		const victim = 1
		if flushed(victim) {
			t.Fatalf("%s holds nothing before the cut-off", nodes[victim].Name())
		}
		conn, err := net.Dial("udp", nodes[victim].GossipAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		pkt := wtSuspectPacket(nodes[victim].cluster.GossipName(), nodes[0].cluster.GossipName())
		deadline := time.Now().Add(10 * time.Second)
		for !flushed(victim) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never flushed after a suspicion it had to refute: stats %+v", nodes[victim].Name(), gs[victim].Stats())
			}
			// UDP may drop a packet: resend until the flush shows.
			if _, err := conn.Write(pkt); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		check(t, victim)
		// The refute kept the node in the cluster.
		for _, n := range nodes {
			if got := n.Stats().Members; got != 3 {
				t.Errorf("%s routes over %d members after the refute, want 3", n.Name(), got)
			}
		}
	})
}

// wtVersion returns key's current version at o.
func wtVersion(o *origin, key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.versions[key]
}

// TestClusterFenceStress is TestFenceStress on a 3-node cluster: readers on
// every node Get random keys while writers on every node run random Sets,
// Invalidates, InvalidateTags and Clears against a versioned origin shared
// by all the nodes' loaders (which stay in flight for a random while, so
// loads and fetches overlap the writes). After each write returns nil the
// written keys' version floor is raised: a Get that starts afterwards, on
// any node, must not return an older version.
func TestClusterFenceStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	const (
		readersPerNode = 3
		reads          = 1500 // per reader, at most
		writes         = 250  // per writer (one per node), at most
		budget         = 6 * time.Second
	)
	for _, mode := range stressModes {
		t.Run(mode.name, func(t *testing.T) { clusterFenceStress(t, mode, readersPerNode, reads, writes, budget) })
	}
	// The stand-in tier: n0 and n1 suspect n2 throughout (it answers, so
	// each heartbeat takes it back: they suspect it again at once).
	t.Run("standin", func(t *testing.T) {
		clusterFenceStress(t, stressMode{name: "standin", standIn: true}, readersPerNode, reads, writes, budget)
	})
	// Several writers per node: their requests to each member share
	// frames (group commits, writelane.go).
	t.Run("batch", func(t *testing.T) {
		clusterFenceStress(t, stressMode{name: "batch", writersPerNode: 4}, readersPerNode, reads, writes, budget)
	})
	// Membership changes while it runs: a fourth node closes (handing its
	// entries over) and a fifth joins (taking keys over by hand-off).
	t.Run("churn", func(t *testing.T) {
		// Reads and writes go on for the whole budget, so that both changes
		// happen under load.
		clusterFenceStress(t, stressMode{name: "churn", churn: true}, readersPerNode, 1<<30, 1<<30, budget)
	})
}

func clusterFenceStress(t *testing.T, mode stressMode, readersPerNode, reads, writes int, budget time.Duration) {
	s := newFenceStress(t)
	s.failEvery = mode.failEvery
	s.nodeTags = mode.nodeTags
	s.keysOnly = mode.churn
	s.noExpiry = mode.noExpiry
	size := 3
	if mode.churn {
		size = 4
	}
	nodes := startCluster(t, size, nil)
	opts := append([]GroupOption{WithJitter(0)}, mode.groupOptions(t, s)...)
	gs := newClusterGroups(t, nodes, "stress", s, opts...)
	ctx := t.Context()
	stop := time.Now().Add(budget)

	var wg sync.WaitGroup
	var standInItems atomic.Int64 // the most any stand-in tier held
	if mode.standIn {
		wg.Go(func() {
			for time.Now().Before(stop) {
				for i, n := range nodes[:2] {
					n.suspect("n2")
					if items := gs[i].store.Stats().StandInItems; items > standInItems.Load() {
						standInItems.Store(items)
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	if mode.churn {
		// The member that leaves is the one (not the seed) owning the most
		// keys that no write touches: those are what it hands over.
		li := 1
		owned := func(n *Node) int {
			c := 0
			for i := stressKeys / 2; i < stressKeys; i++ {
				if nodes[0].Owner(stressKey(i)) == n.Name() {
					c++
				}
			}
			return c
		}
		for i := 2; i < len(nodes); i++ {
			if owned(nodes[i]) > owned(nodes[li]) {
				li = i
			}
		}
		leaving := nodes[li]
		// Writes go on between reading the entries and handing them over:
		// only the receivers' fences keep what they removed out.
		leaving.handOverHook = func() { time.Sleep(200 * time.Millisecond) }
		nodes = slices.Delete(slices.Clone(nodes), li, li+1) // the workers use the nodes that stay
		gs = slices.Delete(slices.Clone(gs), li, li+1)
		wg.Go(func() {
			time.Sleep(budget / 3)
			leaving.Close()
			time.Sleep(budget / 3)
			// The joiner is a member before its code creates the group:
			// OnUnknownGroup creates it for the writes that reach it first
			// (a Set to a member without the group is not acknowledged).
			cfg := testClusterConfig("n4", nodes[0].GossipAddr())
			cfg.OnUnknownGroup = func(n *Node, name string) (*Group, error) { return NewGroup(n, name, s, opts...) }
			joined := startNode(t, cfg)
			if _, err := NewGroup(joined, "stress", s, opts...); err != nil && !errors.Is(err, ErrGroupExists) {
				t.Errorf("NewGroup on the joiner: %v", err)
			}
		})
	}
	for _, g := range gs {
		for range readersPerNode {
			wg.Go(func() {
				for r := 0; r < reads && time.Now().Before(stop); r++ {
					if !s.read(ctx, g) {
						return
					}
				}
			})
		}
		for range max(1, mode.writersPerNode) {
			wg.Go(func() {
				for w := 0; w < writes && time.Now().Before(stop); w++ {
					s.write(ctx, g)
				}
			})
		}
	}
	wg.Wait()
	sum := sumStats(gs)
	t.Logf("%d reads, writes: %d Set, %d Invalidate, %d InvalidateTags, %d Clear; loads %d, hits %d, hot hits %d, peer fetches %d, fallbacks %d, stale %d, revalidations %d, failed %d",
		s.reads.Load(), s.writes[0].Load(), s.writes[1].Load(), s.writes[2].Load(), s.writes[3].Load(),
		sum.Loads, sum.Hits, sum.HotHits, sum.PeerFetches, sum.Fallbacks, sum.StaleServed, sum.Revalidations, s.failed.Load())
	if n := s.violations.Load(); n > 0 {
		t.Fatalf("%d Gets saw a value older than a write that had returned", n)
	}
	if sum.Loads == 0 || sum.PeerFetches == 0 || s.writes[0].Load() == 0 {
		t.Fatalf("the stress test exercised too little: %+v", sum)
	}
	if mode.failEvery == 0 && (sum.Hits == 0 || sum.HotHits == 0) {
		t.Fatalf("the stress test exercised too little: %+v", sum)
	}
	if mode.standIn {
		t.Logf("stand-in tiers held up to %d entries", standInItems.Load())
		if standInItems.Load() == 0 {
			t.Fatal("the stand-in mode loaded nothing into a stand-in tier")
		}
	}
	if mode.churn {
		t.Logf("hand-overs and hand-offs received by the members that stayed: %d", sum.Handoffs)
		if sum.Handoffs == 0 {
			t.Fatal("the churn mode handed nothing over")
		}
	}
	if mode.failEvery > 0 && sum.StaleServed == 0 {
		t.Fatalf("the stale mode served nothing stale: %+v", sum)
	}
	t.Logf("L2 hits %d, stores %d", sum.L2Hits, sum.L2Stores)
	mode.checkL2(t, sum)
	mode.checkWindow(t, sum)
	t.Logf("writes to every group (Node.InvalidateTags): %d", s.nodeTagWrites.Load())
	mode.checkNodeTags(t, s)
	mode.checkWrites(t, s)
	var batches uint64
	for _, n := range nodes {
		batches += n.Stats().WriteBatches
	}
	t.Logf("frames carrying several writes: %d", batches)
	if mode.writersPerNode > 1 && batches == 0 {
		t.Fatal("the batch mode sent no frame with several writes")
	}
}

// wtOwners returns each key's owner in n's current ring.
func wtOwners(n *Node, keys []string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = n.Owner(k)
	}
	return m
}

// wtKeys returns n keys "prefix0", "prefix1", ...
func wtKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// wtJoin starts node name joining nodes[0], with tweak applied to its
// config, and waits until all the nodes route over all of them.
func wtJoin(t *testing.T, nodes []*Node, name string, tweak func(*Config)) []*Node {
	t.Helper()
	cfg := testClusterConfig(name, nodes[0].GossipAddr())
	if tweak != nil {
		tweak(&cfg)
	}
	start := time.Now()
	all := append(slices.Clone(nodes), startNode(t, cfg))
	t.Logf("join: %s saw by each node after %v", name, wtWaitMembers(t, all, len(all), start))
	waitMembers(t, all, len(all))
	return all
}

// wtWaitMembers waits (bounded) until every node routes over size members,
// and returns when each did, since start.
func wtWaitMembers(t *testing.T, nodes []*Node, size int, start time.Time) []time.Duration {
	t.Helper()
	at := make([]time.Duration, len(nodes))
	deadline := time.Now().Add(20 * time.Second)
	for done := 0; done < len(nodes); {
		done = 0
		for i, n := range nodes {
			if at[i] == 0 && n.Stats().Members == size {
				at[i] = time.Since(start).Round(time.Millisecond)
			}
			if at[i] != 0 {
				done++
			}
		}
		if time.Now().After(deadline) {
			var views []string
			for _, n := range nodes {
				var names []string
				for _, m := range n.Members() {
					names = append(names, m.Name)
				}
				views = append(views, fmt.Sprintf("%s: gossip %v, ring %v", n.Name(), names, n.ring.Load().cur.Members()))
			}
			t.Fatalf("after 20s, %d members seen by each node after %v (0: never); views: %q", size, at, views)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return at
}

// TestClusterMembershipReroutes checks that a node joining re-routes some
// keys to it on every node (a new ring snapshot is swapped in; the old one
// is left as it was and kept for hand-off), and that a node closing
// re-routes its keys at once: the survivors drop it on its graceful leave,
// without waiting for failure detection, and route around it.
func TestClusterMembershipReroutes(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	keys := wtKeys("k", 300)
	before := wtOwners(nodes[0], keys)
	old := make([]*ringState, len(nodes))
	for i, n := range nodes {
		old[i] = n.ring.Load()
		if got := wtOwners(n, keys); !maps.Equal(got, before) {
			t.Fatalf("%s and %s disagree on owners before the join", n.Name(), nodes[0].Name())
		}
	}

	all := wtJoin(t, nodes, "n3", nil)
	after := wtOwners(all[0], keys)
	toNew := 0
	for _, k := range keys {
		if after[k] == "n3" {
			toNew++
		}
	}
	t.Logf("join: %d of %d keys moved to n3", toNew, len(keys))
	if toNew == 0 {
		t.Errorf("no key moved to the new node")
	}
	for i, n := range all {
		if got := wtOwners(n, keys); !maps.Equal(got, after) {
			t.Errorf("%s and %s disagree on owners after the join", n.Name(), all[0].Name())
		}
		rs := n.ring.Load()
		if i == len(nodes) {
			// The new node's previous ring is the one the cluster routed by
			// before it joined (hand-off asks those owners), not a partial
			// view from the middle of its join.
			if rs.prev == nil {
				t.Fatalf("%s: no previous ring", n.Name())
			}
			for _, k := range keys {
				if got := rs.prev.Owner(k); got != before[k] {
					t.Fatalf("%s: previous ring: Owner(%q) = %q, want %q (the owner before the join)", n.Name(), k, got, before[k])
				}
			}
			continue
		}
		if rs == old[i] || rs.cur == old[i].cur {
			t.Errorf("%s: the ring snapshot was not replaced", n.Name())
		}
		if rs.prev != old[i].cur {
			t.Errorf("%s: the previous ring is not the one before the join", n.Name())
		}
		for _, k := range keys {
			if got := old[i].cur.Owner(k); got != before[k] {
				t.Fatalf("%s: the old ring snapshot changed: Owner(%q) = %q, was %q", n.Name(), k, got, before[k])
			}
		}
	}

	// The new node closes: the survivors drop it on its leave. Failure
	// detection would take at least memberlist's suspicion timeout (3s with
	// the local preset); a leave takes a gossip round trip. Close returns
	// once memberlist has sent the leave to some members, so those drop it
	// at once; memberlist's gossip is probabilistic, so a member may learn
	// of it only from the others' gossip or a push/pull: that one gets a
	// bounded wait.
	var errs, fallbacks [3]uint64
	gs := newClusterGroups(t, nodes, "g", newOrigin())
	for i, g := range gs {
		errs[i], fallbacks[i] = g.Stats().PeerErrors, g.Stats().Fallbacks
	}
	start := time.Now()
	if err := all[3].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dropped := wtWaitMembers(t, nodes, 3, start)
	t.Logf("leave: the survivors dropped n3 %v after Close began", dropped)
	if first := slices.Min(dropped); first > 2500*time.Millisecond {
		t.Errorf("the first survivor dropped n3 %v after Close began: the leave was not gossiped", first)
	}
	for _, n := range nodes {
		if got := wtOwners(n, keys); !maps.Equal(got, before) {
			t.Errorf("%s: owners after the leave differ from those before the join", n.Name())
		}
	}
	// Every key is served on every survivor without a request to the node
	// that left.
	for i, g := range gs {
		for _, k := range keys {
			if _, err := g.Get(t.Context(), k); err != nil {
				t.Fatalf("%s: Get(%q): %v", nodes[i].Name(), k, err)
			}
		}
		if st := g.Stats(); st.PeerErrors != errs[i] || st.Fallbacks != fallbacks[i] {
			t.Errorf("%s: PeerErrors %d -> %d, Fallbacks %d -> %d: a request went to the node that left",
				nodes[i].Name(), errs[i], st.PeerErrors, fallbacks[i], st.Fallbacks)
		}
	}
}

// TestClusterHandoff warms 300 keys on a 3-node cluster (each loaded once,
// on its owner), joins a 4th node, and Gets every key on every node: with
// hand-off the keys the new node took over come from their previous owners;
// without it they are loaded again. It also checks that a hand-off is
// skipped for a key with a live tombstone or tag generation on the new
// owner (the previous owner may not have seen that invalidation yet).
func TestClusterHandoff(t *testing.T) {
	const nkeys = 300
	keys := wtKeys("k", nkeys)
	type result struct {
		moved, toNew int    // keys whose owner changed; of those, moved to the new node
		loads        int64  // loader calls after the join
		handoffs     uint64 // hand-offs, summed over the nodes
	}
	run := func(t *testing.T, disable bool) result {
		tweak := func(c *Config) { c.DisableHandoff = disable }
		nodes := startCluster(t, 3, tweak)
		o := newOrigin()
		gs := newClusterGroups(t, nodes, "h", o)
		before := wtOwners(nodes[0], keys)
		for _, k := range keys {
			mustGet(t, gs[wtNodeIndex(nodes, before[k])], k)
		}
		if got := o.calls.Load(); got != nkeys {
			t.Fatalf("warming: %d loader calls, want %d", got, nkeys)
		}
		// A second group, warmed the same way, for the fence checks.
		fo := newOrigin()
		fo.tags = func(key string) []string { return []string{"tag:" + key} }
		fgs := newClusterGroups(t, nodes, "fences", fo)
		fkeys := wtKeys("f", 60)
		fbefore := wtOwners(nodes[0], fkeys)
		for _, k := range fkeys {
			mustGet(t, fgs[wtNodeIndex(nodes, fbefore[k])], k)
		}

		nodes = wtJoin(t, nodes, "n3", tweak)
		// Nobody Gets before the new node has its groups: no peer meets an
		// unknown group.
		gs = append(gs, newClusterGroups(t, nodes[3:], "h", o)...)
		fgs = append(fgs, newClusterGroups(t, nodes[3:], "fences", fo)...)
		if !disable {
			t.Run("fences", func(t *testing.T) { wtCheckHandoffFences(t, nodes, fgs, fo, fkeys, fbefore) })
		}

		var r result
		for _, k := range keys {
			if o := nodes[0].Owner(k); o != before[k] {
				r.moved++
				if o == "n3" {
					r.toNew++
				}
			}
		}
		for i, g := range gs {
			for _, k := range keys {
				if got := mustGet(t, g, k); got != "0" {
					t.Errorf("%s: Get(%q) = %q, want %q", nodes[i].Name(), k, got, "0")
				}
			}
			r.handoffs += g.Stats().Handoffs
		}
		r.loads = o.calls.Load() - nkeys
		return r
	}
	var with, without result
	t.Run("handoff", func(t *testing.T) { with = run(t, false) })
	t.Run("no handoff", func(t *testing.T) { without = run(t, true) })
	t.Logf("4th node joins a warm 3-node cluster, %d keys, Get of every key on every node: "+
		"with hand-off %d loads (%d hand-offs), without %d loads; %d keys changed owner, %d to the new node",
		nkeys, with.loads, with.handoffs, without.loads, with.moved, with.toNew)
	if t.Failed() {
		return
	}
	if with.handoffs == 0 {
		t.Errorf("with hand-off: no hand-off happened")
	}
	if without.handoffs != 0 {
		t.Errorf("with DisableHandoff: %d hand-offs, want 0", without.handoffs)
	}
	if with.loads >= without.loads {
		t.Errorf("loads after the join: %d with hand-off, %d without: want fewer with hand-off", with.loads, without.loads)
	}
}

// wtCheckHandoffFences takes keys the new node nodes[3] took over, whose
// previous owners (before) still hold them, and checks that the new owner
// hands a key off only when no invalidation of it (or of its tag) is live
// on the new owner: the previous owner may not have seen it yet.
func wtCheckHandoffFences(t *testing.T, nodes []*Node, gs []*Group, o *origin, keys []string, before map[string]string) {
	var moved []string
	for _, k := range keys {
		if nodes[0].Owner(k) == nodes[3].Name() {
			moved = append(moved, k)
		}
	}
	g3 := gs[3]
	cases := []struct {
		name    string
		fence   func(t *testing.T, key string)
		handoff bool // whether the new owner takes the previous owner's copy
	}{
		{name: "tombstone on the new owner only", fence: func(t *testing.T, key string) {
			o.bump(key)
			g3.store.Invalidate(local.Both, key)
		}},
		{name: "tag generation on the new owner only", fence: func(t *testing.T, key string) {
			o.bump(key)
			g3.store.InvalidateTags(local.Both, "tag:"+key)
		}},
		{name: "Invalidate right after the join", fence: func(t *testing.T, key string) {
			o.bump(key)
			if err := gs[0].Invalidate(t.Context(), key); err != nil {
				t.Fatalf("Invalidate(%q): %v", key, err)
			}
		}},
		{name: "no invalidation", fence: func(*testing.T, string) {}, handoff: true},
	}
	if len(moved) < len(cases) {
		t.Fatalf("only %d of %d keys moved to the new node", len(moved), len(keys))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := moved[i]
			prev := gs[wtNodeIndex(nodes, before[key])]
			if e, ok := prev.store.Get(local.Main, key); !ok || string(e.Value) != "0" {
				t.Fatalf("the previous owner %s does not hold %q", before[key], key)
			}
			c.fence(t, key)
			loads, handoffs := o.calls.Load(), g3.Stats().Handoffs
			want, wantLoads, wantHandoffs := "1", loads+1, handoffs
			if c.handoff {
				want, wantLoads, wantHandoffs = "0", loads, handoffs+1
			}
			if got := mustGet(t, g3, key); got != want {
				t.Errorf("new owner: Get(%q) = %q, want %q", key, got, want)
			}
			if got := o.calls.Load(); got != wantLoads {
				t.Errorf("loader calls = %d, want %d", got, wantLoads)
			}
			if got := g3.Stats().Handoffs; got != wantHandoffs {
				t.Errorf("hand-offs = %d, want %d", got, wantHandoffs)
			}
		})
	}
}
