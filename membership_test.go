package meshcache

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshcache/meshcache/peers"
	"github.com/meshcache/meshcache/transport"
)

// crash stops n as a crash would, as far as the others can tell: no gossip,
// no leave, no peer transport. The Node is closed when the test ends.
func crash(n *Node) {
	n.cluster.Kill()
	n.server.Close()
}

// TestClusterRestartSameName: a member that crashes and restarts at once
// under the same name (new ports) is a member again within seconds,
// everywhere, and writes reach it. Without an incarnation per process,
// memberlist refuses the new address ("conflicting address") until the old
// one is declared dead and reclaimed: 15-40 s.
func TestClusterRestartSameName(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	crash(nodes[2])
	start := time.Now()
	n2 := startNode(t, testClusterConfig("n2", nodes[0].GossipAddr()))
	g2, err := NewGroup(n2, "g", o)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every member routes to the new n2 and it is ready", func() bool {
		for _, n := range nodes[:2] {
			rs := n.ring.Load()
			if p := rs.peers["n2"]; p == nil || p.addr != n2.RPCAddr() {
				return false
			}
		}
		return n2.IsReady()
	})
	t.Logf("the restarted n2 was a member everywhere and ready after %v", time.Since(start).Round(time.Millisecond))

	// A write through an old member reaches the new process.
	key := keyOwnedBy(t, nodes[0], "n2", "k")
	if v := mustGet(t, gs[0], key); v != "0" {
		t.Fatalf("Get(%s) = %q, want 0", key, v)
	}
	o.bump(key)
	if err := gs[0].Invalidate(context.Background(), key); err != nil {
		t.Fatalf("Invalidate through n0 after the restart: %v", err)
	}
	if v := mustGet(t, g2, key); v != "1" {
		t.Errorf("new n2: Get(%s) = %q after the invalidation, want 1", key, v)
	}
}

// TestClusterCutOffStopsServing: a member the others declared dead (its
// gossip stopped, as when cut off) stops serving from its caches before they
// complete writes without it, loads for its callers directly, reports not
// ready, and reports its own writes incomplete (no quorum). Without the
// lease it would serve what it cached, both its own keys and hot copies,
// until their TTL.
func TestClusterCutOffStopsServing(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	own := keyOwnedBy(t, nodes[2], "n2", "own")
	hot := keyOwnedBy(t, nodes[2], "n1", "hot")
	for _, k := range []string{own, hot} {
		mustGet(t, gs[2], k)
		if _, src := getSource(t, gs[2], k); src != SourceHit && src != SourceHot {
			t.Fatalf("n2: Get(%s) from %v, want a cached answer", k, src)
		}
	}
	nodes[2].cluster.Kill() // cut off from gossip; its peer transport still answers
	waitFor(t, 20*time.Second, "n0 and n1 drop n2", func() bool {
		return nodes[0].Stats().Members == 2 && nodes[1].Stats().Members == 2
	})
	for _, k := range []string{own, hot} {
		o.bump(k)
	}
	if err := gs[0].Invalidate(context.Background(), own, hot); err != nil {
		t.Fatalf("Invalidate through n0 without n2: %v", err)
	}
	for _, k := range []string{own, hot} {
		if v, src := getSource(t, gs[2], k); v != "1" {
			t.Errorf("cut-off n2: Get(%s) = %q from %v after the others' invalidation, want 1", k, v, src)
		}
	}
	if nodes[2].IsReady() {
		t.Error("cut-off n2 is ready")
	}
	err := gs[2].Invalidate(context.Background(), own)
	var ie *InvalidateError
	if !errors.As(err, &ie) || !slices.ContainsFunc(ie.Causes, func(e error) bool { return errors.Is(e, ErrNoQuorum) }) {
		t.Errorf("Invalidate through the cut-off n2 = %v, want an InvalidateError with ErrNoQuorum", err)
	}
	if !nodes[0].IsReady() || !nodes[1].IsReady() {
		t.Error("the majority lost its lease")
	}
}

// TestClusterWriteReachesWhatOthersSee: a writer whose view lacks a member
// that the others see alive still reaches it, through the others' answers.
// Without the view digest, the member keeps its hot copy after the write
// returned nil.
func TestClusterWriteReachesWhatOthersSee(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	key := keyOwnedBy(t, nodes[0], "n0", "k")
	mustGet(t, gs[2], key) // n2 holds a hot copy
	if _, src := getSource(t, gs[2], key); src != SourceHot {
		t.Fatalf("n2: Get(%s) from %v, want hot", key, src)
	}
	// n0's view loses n2, as while gossip disagrees.
	var without []peers.Member
	for _, m := range nodes[0].cluster.Members() {
		if m.Name != "n2" {
			without = append(without, m)
		}
	}
	nodes[0].onChange(without)
	if nodes[0].Stats().Members != 2 {
		t.Fatalf("n0 routes over %d members, want 2", nodes[0].Stats().Members)
	}
	o.bump(key)
	if err := gs[0].Invalidate(context.Background(), key); err != nil {
		t.Fatalf("Invalidate through n0: %v", err)
	}
	if v, src := getSource(t, gs[2], key); v != "1" {
		t.Errorf("n2: Get(%s) = %q from %v after the invalidation, want 1", key, v, src)
	}
}

// TestLeaseQuorum checks the quorum arithmetic: a majority of the base,
// this node counting when it is in it.
func TestLeaseQuorum(t *testing.T) {
	now := time.Now()
	const L = time.Second
	tests := []struct {
		name  string
		base  []string
		acks  map[string]time.Duration // member -> age of its answer
		valid bool
	}{
		{"alone", []string{"self"}, nil, true},
		{"3 of 5", []string{"a", "b", "c", "d", "self"}, map[string]time.Duration{"a": 0, "b": 0}, true},
		{"2 of 5", []string{"a", "b", "c", "d", "self"}, map[string]time.Duration{"a": 0}, false},
		{"3 of 5, one answer too old", []string{"a", "b", "c", "d", "self"}, map[string]time.Duration{"a": 0, "b": 2 * L}, false},
		{"1 of 2", []string{"a", "self"}, nil, false},
		{"2 of 2", []string{"a", "self"}, map[string]time.Duration{"a": L / 2}, true},
		{"not in the base", []string{"a", "b", "c"}, map[string]time.Duration{"a": 0, "b": 0}, true},
		{"not in the base, 1 of 3", []string{"a", "b", "c"}, map[string]time.Duration{"a": 0}, false},
		{"answers from outside the base", []string{"a", "b", "c", "self"}, map[string]time.Duration{"x": 0, "y": 0, "a": 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLease(leaseTimings{every: L / 4, lease: L}, false)
			for m, age := range tt.acks {
				l.acks[m] = now.Add(-age)
			}
			end := l.quorumEndLocked(tt.base, "self", now)
			if got := end.After(now); got != tt.valid {
				t.Errorf("valid = %v (end %v from now), want %v", got, end.Sub(now), tt.valid)
			}
		})
	}
}

// TestWriteRunResult: which members a write reports as not acknowledged.
func TestWriteRunResult(t *testing.T) {
	n := &Node{name: "n0"} // no lease: as if held
	start := &ringState{members: []transport.Member{{Name: "n0"}, {Name: "n1"}, {Name: "n2"}}}
	p := func(name, addr string) *peer { return &peer{name: name, addr: addr, ctx: context.Background()} }
	pinc := func(name, addr string, inc uint64) *peer {
		return &peer{name: name, addr: addr, inc: inc, ctx: context.Background()}
	}
	departedCtx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := &peer{name: "n2", addr: "a2", ctx: departedCtx}
	failure := errors.New("refused")
	tests := []struct {
		name string
		run  func(w *writeRun)
		want []string
	}{
		{"all acked", func(w *writeRun) {
			w.done(p("n1", "a1"), transport.WriteResponse{}, nil)
			w.done(p("n2", "a2"), transport.WriteResponse{}, nil)
		}, nil},
		{"one failed", func(w *writeRun) {
			w.done(p("n1", "a1"), transport.WriteResponse{}, nil)
			w.done(p("n2", "a2"), transport.WriteResponse{}, failure)
		}, []string{"n2"}},
		{"old address failed, new incarnation acked", func(w *writeRun) {
			w.done(p("n1", "a1"), transport.WriteResponse{}, nil)
			w.done(pinc("n2", "old", 5), transport.WriteResponse{}, failure)
			w.done(pinc("n2", "new", 9), transport.WriteResponse{}, nil)
		}, nil},
		{"new incarnation failed, old acked", func(w *writeRun) {
			w.done(p("n1", "a1"), transport.WriteResponse{}, nil)
			w.done(pinc("n2", "new", 9), transport.WriteResponse{}, failure)
			w.done(pinc("n2", "old", 5), transport.WriteResponse{}, nil)
		}, []string{"n2"}},
		{"a member another member sees, never written", func(w *writeRun) {
			w.done(p("n1", "a1"), transport.WriteResponse{Members: []transport.Member{{Name: "n0"}, {Name: "n1"}, {Name: "n2"}, {Name: "n3", RPCAddr: "a3", Incarnation: 4}}}, nil)
			w.done(p("n2", "a2"), transport.WriteResponse{}, nil)
		}, []string{"n3"}},
		{"a member another member sees at a newer incarnation", func(w *writeRun) {
			w.done(p("n1", "a1"), transport.WriteResponse{Members: []transport.Member{{Name: "n0"}, {Name: "n1"}, {Name: "n2", Incarnation: 9}}}, nil)
			w.done(pinc("n2", "a2", 5), transport.WriteResponse{}, nil)
		}, []string{"n2"}},
		{"departed, still seen by a member whose view is the writer's", func(w *writeRun) {
			w.done(gone, transport.WriteResponse{}, failure)
			w.done(p("n1", "a1"), transport.WriteResponse{}, nil)
		}, []string{"n2"}},
		{"departed, gone for the others too", func(w *writeRun) {
			w.done(gone, transport.WriteResponse{}, failure)
			w.done(p("n1", "a1"), transport.WriteResponse{Members: []transport.Member{{Name: "n0"}, {Name: "n1"}}}, nil)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWriteRun(n, start)
			tt.run(w)
			got := slices.Sorted(maps.Keys(w.result()))
			if !slices.Equal(got, tt.want) {
				t.Errorf("unacknowledged = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClusterMajorityCrash: when 2 of 3 members crash, the survivor holds no
// lease (it cannot tell the crash from a partition): it loads directly and
// is not ready. With MinorityServes it gets its lease back and caches.
func TestClusterMajorityCrash(t *testing.T) {
	for _, minority := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "MinorityServes"}[minority], func(t *testing.T) {
			t.Parallel()
			nodes := startCluster(t, 3, func(c *Config) { c.MinorityServes = minority })
			o := newOrigin()
			gs := newClusterGroups(t, nodes, "g", o)
			key := keyOwnedBy(t, nodes[0], "n0", "k")
			mustGet(t, gs[0], key)
			crash(nodes[1])
			crash(nodes[2])
			// Without a third member to confirm a suspicion, memberlist
			// waits up to 6x its suspicion timeout: about 20 s here.
			waitFor(t, 45*time.Second, "n0 drops the crashed members", func() bool { return nodes[0].Stats().Members == 1 })
			// Past any lease the crashed members' answers gave. With
			// MinorityServes the lease lapsed while the crashed members were
			// suspected and still counted, and came back (with a flush)
			// once they were dropped: the first Get loads again.
			time.Sleep(nodes[0].lease.timings.lease)
			mustGet(t, gs[0], key)
			_, src := getSource(t, gs[0], key)
			if ready := nodes[0].IsReady(); ready != minority {
				t.Errorf("survivor IsReady = %v, want %v", ready, minority)
			}
			want := SourceLoad
			if minority {
				want = SourceHit
			}
			if src != want {
				t.Errorf("survivor: Get(%s) from %v, want %v", key, src, want)
			}
		})
	}
}

// TestClusterDeadOwnerStandIn: while a crashed owner is not yet declared
// dead, its keys are loaded by one stand-in for the fleet, not by every
// node (each would fall back on its own: 2 loads a key here).
func TestClusterDeadOwnerStandIn(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		if k := "k" + strconv.Itoa(i); nodes[0].Owner(k) == "n2" {
			keys = append(keys, k)
		}
	}
	crash(nodes[2])
	var wg sync.WaitGroup
	for _, g := range gs[:2] {
		wg.Go(func() {
			for _, k := range keys {
				if v := mustGet(t, g, k); v != "0" {
					t.Errorf("Get(%s) = %q, want 0", k, v)
				}
			}
		})
	}
	wg.Wait()
	loads := o.calls.Load()
	t.Logf("%d keys of the crashed owner, read from both survivors: %d loads", len(keys), loads)
	if loads > int64(len(keys))*6/5 {
		t.Errorf("loads = %d for %d keys, want at most 1.2 a key", loads, len(keys))
	}
	// Every key is served from the stand-in's tier or a copy: reading them
	// again loads nothing.
	for _, g := range gs[:2] {
		for _, k := range keys {
			mustGet(t, g, k)
		}
	}
	if again := o.calls.Load(); again != loads {
		t.Errorf("loads after reading again = %d, want %d", again, loads)
	}
}

// TestClusterHandOver: a node that closes hands the entries it owns to
// their next owners, which then serve them without loading; an entry that
// a write removed is not resurrected.
func TestClusterHandOver(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	var keys []string
	for i := 0; len(keys) < 30; i++ {
		if k := "h" + strconv.Itoa(i); nodes[0].Owner(k) == "n2" {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		mustGet(t, gs[2], k)
	}
	loads := o.calls.Load()
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n0 and n1 drop n2", func() bool {
		return nodes[0].Stats().Members == 2 && nodes[1].Stats().Members == 2
	})
	for _, g := range gs[:2] {
		for _, k := range keys {
			if v := mustGet(t, g, k); v != "0" {
				t.Errorf("Get(%s) = %q, want 0", k, v)
			}
		}
	}
	if got := o.calls.Load() - loads; got != 0 {
		t.Errorf("loads after the hand-over = %d, want 0", got)
	}
	if st := gs[0].Stats().Handoffs + gs[1].Stats().Handoffs; st != uint64(len(keys)) {
		t.Errorf("entries handed over = %d, want %d", st, len(keys))
	}
}

// TestHandOverFenced: a handed-over entry is refused where a write removed
// the key (or one of its tags) since: the sender may have read it before
// the write reached it.
func TestHandOverFenced(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	o := newOrigin()
	o.tags = func(key string) []string { return []string{"tag:" + key} }
	gs := newClusterGroups(t, nodes, "g", o)
	var keys []string
	for i := 0; len(keys) < 3; i++ {
		if k := "f" + strconv.Itoa(i); nodes[0].Owner(k) == "n1" {
			keys = append(keys, k)
		}
	}
	ctx := context.Background()
	if err := gs[0].Invalidate(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if err := gs[0].InvalidateTags(ctx, "tag:"+keys[1]); err != nil {
		t.Fatal(err)
	}
	var items []transport.SetItem
	for _, k := range keys {
		items = append(items, transport.SetItem{Key: k, Value: []byte("old"), TTL: time.Minute, Tags: []string{"tag:" + k}})
	}
	resp, err := handler{nodes[0]}.HandOver(ctx, transport.HandOverRequest{Group: "g", From: "n1", Items: items})
	if err != nil || resp.Stored != 1 {
		t.Fatalf("HandOver = %+v, %v, want 1 stored (the key no write touched)", resp, err)
	}
	for i, k := range keys {
		_, ok, _ := gs[0].Peek(ctx, k)
		if want := i == 2; ok != want {
			t.Errorf("Peek(%s) after the hand-over = %v, want %v", k, ok, want)
		}
	}
}

// TestWriteRunGracefulLeave: a member that said it leaves (it is closing
// and serves nothing) counts as acknowledged when it departs mid-write;
// another process under its name does not.
func TestWriteRunGracefulLeave(t *testing.T) {
	n := &Node{name: "n0", lease: newLease(leaseProfiles[GossipLocal], false)}
	start := &ringState{members: []transport.Member{{Name: "n0"}, {Name: "n1"}, {Name: "n2", Incarnation: 5}}}
	departedCtx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		leftInc uint64
		want    []string
	}{{5, nil}, {6, []string{"n2"}}} {
		n.lease.mu.Lock()
		n.lease.gone = nil
		n.lease.goneLocked(memberKey{"n2", tc.leftInc}, time.Now())
		n.lease.mu.Unlock()
		w := newWriteRun(n, start)
		w.done(&peer{name: "n2", addr: "a2", inc: 5, ctx: departedCtx}, transport.WriteResponse{}, errors.New("gone"))
		w.done(&peer{name: "n1", addr: "a1", ctx: context.Background()}, transport.WriteResponse{}, nil)
		if got := slices.Sorted(maps.Keys(w.result())); !slices.Equal(got, tc.want) {
			t.Errorf("n2#5 departed, n2#%d said it leaves: unacknowledged = %v, want %v", tc.leftInc, got, tc.want)
		}
	}
}

// Regression (review): a member without the group applies a tag
// invalidation to nothing; if it creates the group right afterwards, a
// hand-over from a member that read its entries before that write must
// not store them, since no fence of the new group records the write.
func TestHandOverRefusedAfterMissedWrite(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	ctx := t.Context()
	g1 := mustGroup(t, nodes[1], "g", newOrigin()) // n0 has no group g yet
	if err := g1.InvalidateTags(ctx, "tag:a"); err != nil {
		t.Fatal(err)
	}
	g0 := mustGroup(t, nodes[0], "g", newOrigin())
	items := []transport.SetItem{{Key: "a", Value: []byte("old"), TTL: time.Minute, Tags: []string{"tag:a"}}}
	resp, err := handler{nodes[0]}.HandOver(ctx, transport.HandOverRequest{Group: "g", From: "n1", Items: items})
	if err != nil || resp.Stored != 0 {
		t.Fatalf("HandOver after a write the group missed = %+v, %v; want nothing stored", resp, err)
	}
	if _, ok, _ := g0.Peek(ctx, "a"); ok {
		t.Error("the handed-over entry was stored")
	}
}
