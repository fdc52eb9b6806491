package meshcache

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// TestSnapshotRestore: a standalone node writes its entries on Close and a
// new one restores them before it acknowledges any write; a write it
// acknowledged before the group existed, and entries that expired, are not
// restored; a corrupt file is ignored.
func TestSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	o := newOrigin()
	o.tags = func(key string) []string { return []string{"tag:" + key} }
	n1, err := NewNode(Config{NodeName: "solo", SnapshotDir: dir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	g1 := mustGroup(t, n1, "g", o, WithTTL(time.Hour))
	for i := range 5 {
		mustGet(t, g1, "k"+strconv.Itoa(i))
	}
	if err := g1.Set(context.Background(), "short", Item{Value: []byte("s"), TTL: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	n1.Close()
	time.Sleep(100 * time.Millisecond) // "short" expires

	n2, err := NewNode(Config{NodeName: "solo", SnapshotDir: dir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	// Acknowledged before the group exists: they apply to the restored
	// entries.
	h := handler{n2}
	for _, req := range []transport.WriteRequest{
		{Group: "g", Op: transport.OpInvalidate, Phase: transport.PhaseServing, Keys: []string{"k0"}},
		{Group: "g", Op: transport.OpInvalidateTags, Phase: transport.PhaseServing, Tags: []string{"tag:k1"}},
	} {
		if _, err := h.Write(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	calls := o.calls.Load()
	g2 := mustGroup(t, n2, "g", o, WithTTL(time.Hour))
	for key, want := range map[string]bool{"k0": false, "k1": false, "k2": true, "k3": true, "k4": true, "short": false} {
		if _, ok, _ := g2.Peek(context.Background(), key); ok != want {
			t.Errorf("restored Peek(%s) = %v, want %v", key, ok, want)
		}
	}
	mustGet(t, g2, "k2")
	if o.calls.Load() != calls {
		t.Error("a restored key was loaded again")
	}

	// A corrupt file: ignored, no error.
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), []byte("not a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	n3, err := NewNode(Config{NodeName: "solo", SnapshotDir: dir, Logger: testLogger()})
	if err != nil {
		t.Fatalf("NewNode with a corrupt snapshot: %v", err)
	}
	defer n3.Close()
	g3 := mustGroup(t, n3, "g", o)
	if _, ok, _ := g3.Peek(context.Background(), "k2"); ok {
		t.Error("an entry came back from a corrupt snapshot")
	}
}

// TestSnapshotOnlyAlone: a node that starts a cluster restores its
// snapshot; one that joins a running cluster discards it.
func TestSnapshotOnlyAlone(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	o := newOrigin()
	// A cluster of two warms every key, then stops.
	var keys []string
	for i := range 20 {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	func() {
		a := startNode(t, withSnapshot(testClusterConfig("a"), dirs[0]))
		b := startNode(t, withSnapshot(testClusterConfig("b", a.GossipAddr()), dirs[1]))
		waitMembers(t, []*Node{a, b}, 2)
		gs := newClusterGroups(t, []*Node{a, b}, "g", o, WithTTL(time.Hour))
		for _, k := range keys {
			mustGet(t, gs[0], k)
			mustGet(t, gs[1], k)
		}
		// b writes its snapshot only while it holds its lease (a slow
		// machine may have let it lapse for a moment).
		waitFor(t, 10*time.Second, "b holds its lease", b.IsReady)
		b.Close()
		a.Close()
	}()
	// b's snapshot: b starts a new cluster alone, restores.
	b := startNode(t, withSnapshot(testClusterConfig("b"), dirs[1]))
	gb := mustGroup(t, b, "g", o, WithTTL(time.Hour))
	restored := gb.Stats().Items + gb.Stats().HotItems
	if restored == 0 {
		t.Error("b started a new cluster and restored nothing")
	}
	// a's snapshot: a joins b's running cluster, discards.
	a := startNode(t, withSnapshot(testClusterConfig("a", b.GossipAddr()), dirs[0]))
	ga := mustGroup(t, a, "g", o, WithTTL(time.Hour))
	if st := ga.Stats(); st.Items+st.HotItems != 0 {
		t.Errorf("a joined a running cluster and restored %d entries, want 0", st.Items+st.HotItems)
	}
	t.Logf("b restored %d entries; a restored none", restored)
}

func withSnapshot(c Config, dir string) Config {
	c.SnapshotDir = dir
	return c
}

// TestSnapshotFenceStress runs the fence stress test on one node that is
// restarted from its snapshot between rounds; between NewNode and NewGroup
// the node acknowledges writes to the group not created yet (as a peer's
// would reach it). No Get sees a value older than a write that returned.
func TestSnapshotFenceStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	dir := t.TempDir()
	s := newFenceStress(t)
	newNode := func() *Node {
		n, err := NewNode(Config{NodeName: "solo", SnapshotDir: dir, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := newNode()
	restored := int64(0)
	for range 5 {
		g := mustGroup(t, n, "g", s, WithTTL(time.Hour))
		restored += g.Stats().Items
		ctx := t.Context()
		stop := time.Now().Add(300 * time.Millisecond)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if !s.read(ctx, g) {
						return
					}
				}
			})
		}
		wg.Go(func() {
			for time.Now().Before(stop) {
				s.write(ctx, g)
			}
		})
		wg.Wait()
		n.Close()
		n = newNode()
		// Writes acknowledged before the group exists: Invalidates of
		// random keys, raising their floors as a returned write does.
		for range 3 {
			i := rand.IntN(stressKeys)
			s.writeKeys([]int{i}, func([]int) error {
				_, err := handler{n}.Write(ctx, transport.WriteRequest{Group: "g", Op: transport.OpInvalidate, Phase: transport.PhaseServing, Keys: []string{stressKey(i)}})
				return err
			})
		}
	}
	n.Close()
	if v := s.violations.Load(); v > 0 {
		t.Fatalf("%d Gets saw a value older than a write that had returned", v)
	}
	if restored == 0 {
		t.Fatal("nothing was ever restored from the snapshot")
	}
	t.Logf("%d reads; %d entries restored over the rounds", s.reads.Load(), restored)
}
