package meshcache

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshcache/meshcache/local"
)

// keyOwnedWithAlt returns a key owned by owner whose owner in the ring
// without owner is alt.
func keyOwnedWithAlt(t *testing.T, n *Node, owner, alt string) string {
	t.Helper()
	rs := n.ring.Load()
	ar := n.altRing(rs, []string{owner})
	for i := range 10000 {
		k := "k" + strconv.Itoa(i)
		if rs.cur.Owner(k) == owner && ar.Owner(k) == alt {
			return k
		}
	}
	t.Fatalf("no key owned by %s with stand-in %s", owner, alt)
	return ""
}

// TestStandInSetDropsIt: a Set that returned nil leaves nothing a stand-in
// loaded before it (phase 1 fences the stand-in tier on every member).
func TestStandInSetDropsIt(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	k := keyOwnedWithAlt(t, nodes[0], "n2", "n1")
	nodes[0].suspect("n2")
	if v := mustGet(t, gs[0], k); v != "0" {
		t.Fatalf("Get = %q, want 0", v)
	}
	if gs[1].store.Empty(local.StandIn) {
		t.Fatal("n1 holds nothing in its stand-in tier")
	}
	o.bump(k) // the application writes the database, then Sets the cache
	if err := gs[0].Set(context.Background(), k, Item{Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, gs[1], k); v != "new" {
		t.Errorf("after Set returned nil, Get at n1 = %q, want new", v)
	}
	// A stand-in loads from the database (a Set value lives at the owner
	// only): anything but what the Set replaced.
	nodes[0].suspect("n2")
	if v := mustGet(t, gs[0], k); v == "0" {
		t.Errorf("after Set returned nil, Get at n0 (suspecting n2) = %q, the value the Set replaced", v)
	}
}

// TestStandInFlightForgotten: a request that starts after an Invalidate
// returned never joins a stand-in load that started before it.
func TestStandInFlightForgotten(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	o.gate = make(chan struct{})
	o.entered = make(chan string, 10)
	gs := newClusterGroups(t, nodes, "g", o)
	k := keyOwnedWithAlt(t, nodes[0], "n2", "n1")
	ctx := context.Background()
	first := make(chan string, 1)
	go func() {
		v, _ := gs[1].serve(ctx, k) // a peer asks n1 as the stand-in
		first <- string(v.Value)
	}()
	<-o.entered
	o.bump(k)
	if err := gs[0].Invalidate(ctx, k); err != nil {
		t.Fatal(err)
	}
	second := make(chan string, 1)
	go func() {
		v, err := gs[1].serve(ctx, k) // starts after Invalidate returned
		if err != nil {
			second <- err.Error()
			return
		}
		second <- string(v.Value)
	}()
	time.Sleep(100 * time.Millisecond)
	close(o.gate)
	<-first
	if v := <-second; v != "1" {
		t.Errorf("serve started after Invalidate returned nil = %q, want 1", v)
	}
}

// silence points n's route to member at a listener that accepts
// connections and never answers (a paused process). The ring state is
// replaced, not modified: readers see one or the other.
func silence(t *testing.T, n *Node, member string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	old := n.ring.Load()
	next := *old
	next.peers = maps.Clone(old.peers)
	p := *old.peers[member]
	p.addr = ln.Addr().String()
	next.peers[member] = &p
	n.ring.Store(&next)
}

// TestStandInWaitersOwnContext: when the owner is silent and this node
// stands in, a caller that gives up does not fail the callers that share
// its fetch.
func TestStandInWaitersOwnContext(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.FetchTimeout = 300 * time.Millisecond })
	o := newOrigin()
	o.gate = make(chan struct{})
	gs := newClusterGroups(t, nodes, "g", o)
	k := keyOwnedWithAlt(t, nodes[0], "n2", "n0")
	silence(t, nodes[0], "n2")
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	leader := make(chan string, 1)
	go func() { leader <- get(short, gs[0], k) }()
	time.Sleep(50 * time.Millisecond) // joins the fetch, before n2 is found silent
	other := make(chan string, 1)
	go func() { other <- get(context.Background(), gs[0], k) }()
	time.Sleep(800 * time.Millisecond)
	close(o.gate)
	<-leader
	if v := <-other; v != "0" {
		t.Errorf("the other caller (no deadline) = %q, want 0", v)
	}
}

// notFoundAfter answers the first load, then not-found.
type notFoundAfter struct{ calls atomic.Int64 }

func (l *notFoundAfter) Load(ctx context.Context, key string) (Item, error) {
	if l.calls.Add(1) == 1 {
		return Item{Value: []byte("v")}, nil
	}
	return Item{}, ErrNotFound
}

// TestStaleWhileRevalidateNotFound: once a refresh finds the key gone, its
// expired value is not served any more.
func TestStaleWhileRevalidateNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &notFoundAfter{}
		g := mustGroup(t, newTestNode(t), "g", l, WithTTL(10*time.Second), WithStaleWhileRevalidate(time.Minute))
		get(context.Background(), g, "k")
		time.Sleep(11 * time.Second)
		if v, src := getSrc(g, "k"); v != "v" || src != SourceStale {
			t.Errorf("first Get past the TTL = %q from %v, want the stale v", v, src)
		}
		synctest.Wait() // the refresh: not found
		for range 3 {
			if _, err := g.Get(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after the refresh found the key gone = %v, want ErrNotFound", err)
			}
		}
	})
}

// TestGetManyStandIn: GetMany of a crashed owner's keys, from both
// survivors, loads each key about once: the first call finds the owner
// unreachable and suspects it, the next go to the stand-ins.
func TestGetManyStandIn(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	o := newOrigin()
	gs := newClusterGroups(t, nodes, "g", o)
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		if k := "m" + strconv.Itoa(i); nodes[0].Owner(k) == "n2" {
			keys = append(keys, k)
		}
	}
	crash(nodes[2])
	nodes[0].suspect("n2")
	nodes[1].suspect("n2")
	for _, g := range gs[:2] {
		got, err := g.GetMany(context.Background(), keys)
		if err != nil || len(got) != len(keys) {
			t.Fatalf("GetMany = %d values, %v; want %d", len(got), err, len(keys))
		}
	}
	if loads := o.calls.Load(); loads != int64(len(keys)) {
		t.Errorf("loads = %d for %d keys read by GetMany on both survivors, want %d (one stand-in each)", loads, len(keys), len(keys))
	}
}
