package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// testLogger discards logs unless MESHCACHE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MESHCACHE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// clusterConfig returns the config of test node i joining seeds.
func testClusterConfig(name string, seeds ...string) Config {
	return Config{
		NodeName:      name,
		Logger:        testLogger(),
		BindAddr:      "127.0.0.1:0",
		RPCAddr:       "127.0.0.1:0",
		Join:          seeds,
		JoinTimeout:   10 * time.Second,
		GossipProfile: GossipLocal,
	}
}

// startNode starts a node from cfg, closed when the test ends.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatalf("NewNode(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startCluster starts size nodes named n0, n1, ... joined to n0, and waits
// until every node is ready and lists every other.
func startCluster(t testing.TB, size int, tweak func(*Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, size)
	for i := range nodes {
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].GossipAddr()}
		}
		cfg := testClusterConfig(fmt.Sprintf("n%d", i), seeds...)
		if tweak != nil {
			tweak(&cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	waitMembers(t, nodes, size)
	return nodes
}

// waitMembers waits until every node is ready and routes over size members.
func waitMembers(t testing.TB, nodes []*Node, size int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		select {
		case <-n.Ready():
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%s not ready", n.Name())
		}
		for n.Stats().Members != size {
			if time.Now().After(deadline) {
				t.Fatalf("%s routes over %d members, want %d", n.Name(), n.Stats().Members, size)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// sumStats adds up the counters and sizes of gs that the cluster tests and
// benchmarks report.
func sumStats(gs []*Group) Stats {
	var t Stats
	for _, g := range gs {
		s := g.Stats()
		t.Loads += s.Loads
		t.BatchLoads += s.BatchLoads
		t.Hits += s.Hits
		t.HotHits += s.HotHits
		t.PeerFetches += s.PeerFetches
		t.Fallbacks += s.Fallbacks
		t.Handoffs += s.Handoffs
		t.StaleServed += s.StaleServed
		t.Revalidations += s.Revalidations
		t.L2Hits += s.L2Hits
		t.L2Stores += s.L2Stores
		t.Bytes += s.Bytes
		t.HotBytes += s.HotBytes
	}
	return t
}

// newClusterGroups creates group name on every node with its own loader.
func newClusterGroups(t testing.TB, nodes []*Node, name string, l Loader, opts ...GroupOption) []*Group {
	t.Helper()
	gs := make([]*Group, len(nodes))
	for i, n := range nodes {
		g, err := NewGroup(n, name, l, opts...)
		if err != nil {
			t.Fatal(err)
		}
		gs[i] = g
	}
	return gs
}

// keyOwnedBy returns the first key prefix+N that node n routes to owner.
func keyOwnedBy(t testing.TB, n *Node, owner, prefix string) string {
	t.Helper()
	for i := range 10000 {
		if k := fmt.Sprintf("%s%d", prefix, i); n.Owner(k) == owner {
			return k
		}
	}
	t.Fatalf("no key %s* owned by %s", prefix, owner)
	return ""
}

// A response over the configured frame limit is refused by the asking node,
// which falls back to loading the key itself.
func TestClusterFrameLimit(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.MaxFrameBytes = 4096 })
	big := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: bytes.Repeat([]byte("x"), 10000)}, nil
	})
	gs := newClusterGroups(t, nodes, "g", big)
	key := keyOwnedBy(t, nodes[0], "n1", "k")
	if v, src := getSource(t, gs[0], key); len(v) != 10000 || src != SourceFallback {
		t.Fatalf("Get(%s) on n0 = %d bytes from %v, want 10000 from fallback", key, len(v), src)
	}
	if s := gs[0].Stats(); s.Fallbacks != 1 || s.PeerErrors != 1 {
		t.Errorf("n0 Stats: Fallbacks %d, PeerErrors %d, want 1 and 1", s.Fallbacks, s.PeerErrors)
	}
	if _, err := NewNode(Config{BindAddr: "127.0.0.1:0", MaxFrameBytes: -1}); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("NewNode(MaxFrameBytes -1) = %v, want ErrInvalidOption", err)
	}
}

// A Set that one member does not acknowledge goes to it by gossip, as an
// invalidation; the members that acknowledged it ignore that copy, so the
// owner keeps the value it stored.
func TestClusterPartialSetKeepsStoredValue(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	gs := newClusterGroups(t, nodes, "g", newOrigin())
	key := keyOwnedBy(t, nodes[0], "n1", "k")
	nodes[2].server.Close() // n2 stays in the ring but cannot acknowledge
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ie *InvalidateError
	if err := gs[0].Set(ctx, key, Item{Value: []byte("set")}); !errors.As(err, &ie) || len(ie.Unacked) != 1 || ie.Unacked[0] != "n2" {
		t.Fatalf("Set = %v, want an InvalidateError naming n2", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for nodes[2].Stats().GossipApplied == 0 {
		if time.Now().After(deadline) {
			t.Fatal("n2 never applied the gossip copy of the Set")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the same broadcast reaches n1 too
	if e, ok, _ := gs[1].Peek(context.Background(), key); !ok || string(e.Value) != "set" {
		t.Errorf("owner n1: Peek(%s) = %q, %v after the gossip copy, want %q", key, e.Value, ok, "set")
	}
	if got := nodes[1].Stats().GossipApplied; got != 0 {
		t.Errorf("owner n1 applied %d gossip writes, want 0 (it acknowledged the Set)", got)
	}
}

// A node whose lease ran out (as after SIGSTOP and SIGCONT: the heartbeats
// stopped) loads for its callers directly, and flushes its caches before it
// serves from them again.
func TestClusterLeaseLapseFlushesBeforeServing(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	ctx := context.Background()
	mine := keyOwnedBy(t, nodes[0], "n0", "m")
	theirs := keyOwnedBy(t, nodes[0], "n1", "t")
	for _, k := range []string{mine, theirs} {
		if v := get(ctx, gs[0], k); v != "0" {
			t.Fatalf("Get(%s) = %q, want %q", k, v, "0")
		}
	}
	// A node that keeps running keeps its lease: still hits after longer
	// than a lease.
	lease := nodes[0].lease.timings.lease
	time.Sleep(lease + lease/2)
	if _, src := getSource(t, gs[0], mine); src != SourceHit {
		t.Fatalf("Get(%s) %v after running for %v, want a hit (no flush while the lease holds)", mine, src, lease*3/2)
	}
	o.bump(mine)
	o.bump(theirs)
	// The lease runs out, as when the process stood still.
	nodes[0].lease.untilMono.Store(0)
	nodes[0].lease.untilWall.Store(0)
	if v := get(ctx, gs[0], mine); v != "1" {
		t.Errorf("Get(%s) of its own key after the lease ran out = %q, want %q (reloaded)", mine, v, "1")
	}
	waitFor(t, 5*time.Second, "the lease renewed", func() bool { return nodes[0].IsReady() })
	if v := get(ctx, gs[0], mine); v != "1" {
		t.Errorf("Get(%s) of its own key after the lease was renewed = %q, want %q", mine, v, "1")
	}
	before := gs[0].Stats().PeerFetches
	get(ctx, gs[0], theirs)
	if got := gs[0].Stats().PeerFetches; got != before+1 {
		t.Errorf("PeerFetches after a pause = %d, want %d (the hot copy was flushed and fetched again)", got, before+1)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
