package meshcache

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// tagOf tags the keys of the Node.InvalidateTags tests: "t..." keys carry
// tag "t", the others tag "u".
func tagOf(key string) []string {
	if strings.HasPrefix(key, "t") {
		return []string{"t"}
	}
	return []string{"u"}
}

// TestNodeInvalidateTags: one write drops the tagged entries of every
// group of the node, and only those.
func TestNodeInvalidateTags(t *testing.T) {
	n := newTestNode(t)
	o := newOrigin()
	o.tags = tagOf
	var gs []*Group
	for _, name := range []string{"a", "b", "c"} {
		gs = append(gs, mustGroup(t, n, name, o))
	}
	keys := []string{"t1", "t2", "u1"}
	for _, g := range gs {
		for _, k := range keys {
			if v := mustGet(t, g, k); v != "0" {
				t.Fatalf("%s: Get(%s) = %q, want 0", g.name, k, v)
			}
		}
	}
	for _, k := range keys {
		o.bump(k)
	}
	calls := o.calls.Load()
	if err := n.InvalidateTags(t.Context(), "t"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	for _, g := range gs {
		for _, k := range keys {
			want := "1"
			if k == "u1" {
				want = "0" // not tagged "t": still cached
			}
			if v := mustGet(t, g, k); v != want {
				t.Errorf("%s: Get(%s) after InvalidateTags(t) = %q, want %q", g.name, k, v, want)
			}
		}
	}
	if got := o.calls.Load() - calls; got != 6 {
		t.Errorf("loads after InvalidateTags = %d, want 6 (two keys in three groups)", got)
	}

	if err := n.InvalidateTags(t.Context()); err != nil {
		t.Errorf("InvalidateTags() = %v, want nil", err)
	}
	if err := n.InvalidateTags(t.Context(), "t", ""); !errors.Is(err, ErrInvalidTag) {
		t.Errorf("InvalidateTags(empty tag) = %v, want ErrInvalidTag", err)
	}
	n.Close()
	if err := n.InvalidateTags(t.Context(), "t"); !errors.Is(err, ErrClosed) {
		t.Errorf("InvalidateTags after Close = %v, want ErrClosed", err)
	}
}

// TestNodeInvalidateTagsPendingSnapshot: the entries a snapshot keeps for a
// group not created yet lose the tagged ones, so NewGroup never adopts what
// the write removed.
func TestNodeInvalidateTagsPendingSnapshot(t *testing.T) {
	n := newTestNode(t)
	n.mu.Lock()
	n.pending = pendingSnapshot{"late": {
		{Key: "t1", Value: []byte("old"), Tags: []string{"t"}},
		{Key: "u1", Value: []byte("kept"), Tags: []string{"u"}},
	}}
	n.mu.Unlock()
	if err := n.InvalidateTags(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	g := mustGroup(t, n, "late", newOrigin())
	if e, ok, _ := g.Peek(t.Context(), "t1"); ok {
		t.Errorf("Peek(t1) = %q: the group adopted a snapshot entry the write removed", e.Value)
	}
	if e, ok, _ := g.Peek(t.Context(), "u1"); !ok || string(e.Value) != "kept" {
		t.Errorf("Peek(u1) = %q, %v, want the snapshot's %q", e.Value, ok, "kept")
	}
}

// TestNodeInvalidateTagsL2: the write bumps the tag in the second level of
// the node's groups that have one, so a load after it does not find the old
// value there.
func TestNodeInvalidateTagsL2(t *testing.T) {
	s := newTestL2(t)
	n := newTestNode(t)
	o := newOrigin()
	o.tags = tagOf
	g := mustGroup(t, n, "withl2", o, WithL2(s), WithTTL(time.Minute))
	mustGroup(t, n, "plain", o)
	if v := mustGet(t, g, "t1"); v != "0" {
		t.Fatalf("Get = %q", v)
	}
	waitFor(t, 5*time.Second, "the write-back to L2", func() bool { return g.Stats().L2Stores > 0 })
	o.bump("t1")
	if err := n.InvalidateTags(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, g, "t1"); v != "1" {
		t.Errorf("Get after InvalidateTags = %q, want 1 (the second level kept the old value)", v)
	}
}

// TestDelete: Delete reports whether a value was cached, and a cached
// not-found is not one.
func TestDelete(t *testing.T) {
	n := newTestNode(t)
	o := newOrigin()
	g := mustGroup(t, n, "g", o, WithNegativeTTL(time.Minute))
	ctx := t.Context()
	mustGet(t, g, "k")
	if existed, err := g.Delete(ctx, "k"); err != nil || !existed {
		t.Errorf("Delete(cached) = %v, %v, want true", existed, err)
	}
	if existed, err := g.Delete(ctx, "k"); err != nil || existed {
		t.Errorf("Delete(deleted) = %v, %v, want false", existed, err)
	}
	o.bump("k")
	if v := mustGet(t, g, "k"); v != "1" {
		t.Errorf("Get after Delete = %q, want 1", v)
	}
	if _, err := g.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
	if e, ok := g.store.Get(local.Main, "missing"); !ok || !e.Negative {
		t.Fatalf("no cached not-found for missing")
	}
	if existed, err := g.Delete(ctx, "missing"); err != nil || existed {
		t.Errorf("Delete(cached not-found) = %v, %v, want false", existed, err)
	}
	if _, ok := g.store.Get(local.Main, "missing"); ok {
		t.Errorf("Delete left the cached not-found")
	}
	if existed, err := g.Delete(ctx, "never"); err != nil || existed {
		t.Errorf("Delete(never cached) = %v, %v, want false", existed, err)
	}
	if _, err := g.Delete(ctx, ""); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Delete(\"\") = %v, want ErrEmptyKey", err)
	}
}

// TestClusterDelete: Delete reports true when some member held a value of
// the key (the owner's main entry, a hot copy, a stand-in value) and false
// when none did, a cached not-found counting as none; from any member.
func TestClusterDelete(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		if strings.HasPrefix(key, "missing") {
			return Item{}, ErrNotFound
		}
		return o.Load(ctx, key)
	})
	gs := newClusterGroups(t, nodes, "g", l, WithNegativeTTL(time.Minute))
	ctx := t.Context()
	key := keyOwnedBy(t, nodes[0], "n1", "k")
	deleteFrom := func(writer int, want bool, what string) {
		t.Helper()
		existed, err := gs[writer].Delete(ctx, key)
		if err != nil || existed != want {
			t.Errorf("%s: Delete(%s) with %s = %v, %v, want %v", nodes[writer].Name(), key, what, existed, err, want)
		}
		for i, g := range gs {
			for _, tier := range [...]local.Tier{local.Main, local.Hot, local.StandIn} {
				if _, ok := g.store.Get(tier, key); ok {
					t.Errorf("%s: %s still holds %s after Delete", nodes[i].Name(), tier, key)
				}
			}
		}
	}
	// The owner's main entry, asked from another member.
	mustGet(t, gs[1], key)
	deleteFrom(0, true, "the owner's main entry")
	deleteFrom(2, false, "nothing cached")
	// Hot copies only: the owner no longer has it.
	wtWarm(t, nodes, gs, key, "0")
	gs[1].store.Remove(local.Main, key)
	deleteFrom(1, true, "hot copies only")
	// A stand-in value on a non-owner.
	gs[2].store.Add(local.StandIn, local.Put{Key: key, Value: []byte("v"), TTL: time.Minute, Since: gs[2].store.Seq()})
	deleteFrom(0, true, "a stand-in value")
	// A cached not-found on the owner (and wherever the Gets cached it).
	missing := keyOwnedBy(t, nodes[0], "n1", "missing")
	key = missing
	for _, g := range gs {
		if _, err := g.Get(ctx, missing); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: Get(%s) = %v, want ErrNotFound", g.node.Name(), missing, err)
		}
	}
	if e, ok := gs[1].store.Get(local.Main, missing); !ok || !e.Negative {
		t.Fatalf("the owner cached no not-found for %s", missing)
	}
	deleteFrom(2, false, "a cached not-found")
}

// TestClusterDeletePartial: when a member does not acknowledge, Delete
// returns the InvalidateError and what the others held.
func TestClusterDeletePartial(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	gs := newClusterGroups(t, nodes, "g", newOrigin())
	key := keyOwnedBy(t, nodes[0], "n1", "k")
	mustGet(t, gs[1], key)
	nodes[2].server.Close() // n2 stays in the ring but cannot acknowledge
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	existed, err := gs[0].Delete(ctx, key)
	var ie *InvalidateError
	if !errors.As(err, &ie) || !slices.Equal(ie.Unacked, []string{"n2"}) || !existed {
		t.Errorf("Delete = %v, %v, want true (the owner held it) and an InvalidateError naming n2", existed, err)
	}
}

// nodeTagsCluster starts three nodes: group "all" on each (loaded by
// allOrigin), group "bc" on n1 and n2 only (loaded by bcOrigin), with keys
// tagged by tagOf.
func nodeTagsCluster(t *testing.T, allOrigin, bcOrigin *origin, bcOpts ...GroupOption) (nodes []*Node, all, bc []*Group) {
	t.Helper()
	nodes = startCluster(t, 3, nil)
	allOrigin.tags, bcOrigin.tags = tagOf, tagOf
	all = newClusterGroups(t, nodes, "all", allOrigin)
	bc = newClusterGroups(t, nodes[1:], "bc", bcOrigin, bcOpts...)
	return nodes, all, bc
}

// TestClusterNodeInvalidateTags: n0 drops the tagged entries of every
// member's groups, also of group "bc" that only n1 and n2 have; entries
// with other tags stay.
func TestClusterNodeInvalidateTags(t *testing.T) {
	o, allOrigin := newOrigin(), newOrigin()
	nodes, all, bc := nodeTagsCluster(t, allOrigin, o)
	// Keys of "bc" owned by n1 and n2 (a Get on the other fetches it), and
	// a "u" key that stays.
	keys := []string{keyOwnedBy(t, nodes[0], "n1", "t"), keyOwnedBy(t, nodes[0], "n2", "t"), keyOwnedBy(t, nodes[0], "n1", "u")}
	for _, g := range bc {
		for _, k := range keys {
			mustGet(t, g, k)
		}
	}
	shared := keyOwnedBy(t, nodes[0], "n0", "t")
	wtWarm(t, nodes, all, shared, "0")
	for _, k := range keys {
		o.bump(k)
	}
	allOrigin.bump(shared)
	if err := nodes[0].InvalidateTags(t.Context(), "t"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	for _, g := range bc {
		for _, k := range keys {
			want := "1"
			if k == keys[2] {
				want = "0"
			}
			if v := mustGet(t, g, k); v != want {
				t.Errorf("%s: bc Get(%s) = %q, want %q", g.node.Name(), k, v, want)
			}
		}
	}
	wtGetAll(t, nodes, all, shared, "1")
}

// TestClusterNodeInvalidateTagsFencesLoad: a load of a tagged key in flight
// on n1 (in group "bc", which n0 does not have) when n0's InvalidateTags
// runs is fenced: a Get after the write loads again, and the old load's
// value is not stored.
func TestClusterNodeInvalidateTagsFencesLoad(t *testing.T) {
	o := newOrigin()
	o.gate = make(chan struct{})      // holds the first load
	o.entered = make(chan string, 64) // every load sends: room for all of them
	nodes, _, bc := nodeTagsCluster(t, newOrigin(), o)
	key := keyOwnedBy(t, nodes[0], "n1", "t")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resA := make(chan string, 1)
	go func() { resA <- get(ctx, bc[0], key) }()
	<-o.entered // A's load read version 0
	o.bump(key)
	if err := nodes[0].InvalidateTags(ctx, "t"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	if v := get(ctx, bc[0], key); v != "1" {
		t.Errorf("n1: Get after the write = %q, want 1", v)
	}
	if v := get(ctx, bc[1], key); v != "1" {
		t.Errorf("n2: Get after the write = %q, want 1", v)
	}
	close(o.gate)
	if a := <-resA; a != "0" {
		t.Errorf("Get A (started before the write) = %q, want 0", a)
	}
	for i, g := range bc {
		if v := get(ctx, g, key); v != "1" {
			t.Errorf("%s: Get after the fenced load finished = %q, want 1: its value was stored", nodes[i+1].Name(), v)
		}
	}
}

// TestClusterNodeInvalidateTagsGossip: a member that does not acknowledge
// is named in the InvalidateError and applies the write to every group
// when the gossip copy reaches it.
func TestClusterNodeInvalidateTagsGossip(t *testing.T) {
	o := newOrigin()
	nodes, _, bc := nodeTagsCluster(t, newOrigin(), o)
	key := keyOwnedBy(t, nodes[0], "n2", "t")
	mustGet(t, bc[1], key)
	nodes[2].server.Close() // n2 stays in the ring but cannot acknowledge
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	var ie *InvalidateError
	err := nodes[0].InvalidateTags(ctx, "t")
	if !errors.As(err, &ie) || !slices.Equal(ie.Unacked, []string{"n2"}) || ie.Group != "" {
		t.Fatalf("InvalidateTags = %v, want an InvalidateError naming n2, for every group", err)
	}
	if want := "invalidate-tags in every group not acknowledged by 1 member(s): n2"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	waitFor(t, 10*time.Second, "n2 applied the gossip copy", func() bool { return nodes[2].Stats().GossipApplied > 0 })
	if _, ok := bc[1].store.Get(local.Main, key); ok {
		t.Errorf("n2 still holds %s after the gossip copy", key)
	}
}

// TestClusterNodeInvalidateTagsL2: a group with a second level that only
// other members have is out of the writer's reach: the write says so
// ("l2"); once the writer has the group too, it reaches it.
func TestClusterNodeInvalidateTagsL2(t *testing.T) {
	s := newTestL2(t)
	o := newOrigin()
	nodes, _, _ := nodeTagsCluster(t, newOrigin(), o, WithL2(s))
	var ie *InvalidateError
	err := nodes[0].InvalidateTags(t.Context(), "t")
	if !errors.As(err, &ie) || !slices.Equal(ie.Unacked, []string{l2Member}) || !errors.Is(ie.Causes[0], errL2Unreached) ||
		!strings.Contains(ie.Causes[0].Error(), `"bc"`) {
		t.Fatalf("InvalidateTags with bc's L2 only on members = %v, want an InvalidateError naming l2 for group bc", err)
	}
	mustGroup(t, nodes[0], "bc", o, WithL2(s))
	if err := nodes[0].InvalidateTags(t.Context(), "t"); err != nil {
		t.Errorf("InvalidateTags with bc on the writer too = %v, want nil", err)
	}
	if err := nodes[1].InvalidateTags(t.Context(), "t"); err != nil {
		t.Errorf("InvalidateTags from n1 = %v, want nil", err)
	}
}

// TestAllGroupsWriteRefused: a peer's write to every group is only a tag
// invalidation or a clear, with valid tags.
func TestAllGroupsWriteRefused(t *testing.T) {
	h := handler{newTestNode(t)}
	for _, req := range []transport.WriteRequest{
		{Op: transport.OpInvalidate, Phase: transport.PhaseServing, Keys: []string{"k"}},
		{Op: transport.OpSet, Phase: transport.PhaseServing, Items: []transport.SetItem{{Key: "k"}}},
		{Op: transport.OpInvalidateTags, Phase: transport.PhaseServing, Tags: []string{""}},
	} {
		if _, err := h.Write(t.Context(), req); !errors.Is(err, transport.ErrBadRequest) {
			t.Errorf("Write(%v to every group) = %v, want ErrBadRequest", req.Op, err)
		}
	}
	if _, err := h.Write(t.Context(), transport.WriteRequest{Op: transport.OpClear, Phase: transport.PhaseServing}); err != nil {
		t.Errorf("Write(clear of every group) = %v, want nil", err)
	}
}
