package meshcache

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// gatedLoader answers key with "key@node" once release is closed; entered
// gets a value each time a load starts.
type gatedLoader struct {
	node    string
	entered chan struct{}
	release chan struct{}
}

func (l *gatedLoader) Load(ctx context.Context, key string) (Item, error) {
	select {
	case l.entered <- struct{}{}:
	default:
	}
	select {
	case <-l.release:
	case <-ctx.Done():
		return Item{}, ctx.Err()
	}
	return Item{Value: []byte(key + "@" + l.node)}, nil
}

// awaitValue returns the next value from ch, failing t if none comes
// within 10s.
func awaitValue[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
	}
	t.Fatalf("timed out waiting for %s", what)
	var zero T
	return zero
}

// flightJoined reports whether a caller other than the leader joined key's
// fetch flight in g.
func flightJoined(g *Group, key string) bool {
	t := &g.flights
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.m[g.flightID(fetchFlight, key)]
	return c != nil && c.joined
}

// TestFetchFlightOnLeaderGoroutine checks the fetch flight that its leader
// runs on its own goroutine (leadFetch): a leader whose ctx ends returns at
// once and the flight goes on for its waiters, which get the owner's value
// (cached hot, as a flight's goroutine would have done); and a leader
// whose flight another caller joined hands out a copy of its own.
func TestFetchFlightOnLeaderGoroutine(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	owner, reader := 1, 0
	ls := make([]*gatedLoader, len(nodes))
	gs := make([]*Group, len(nodes))
	for i, n := range nodes {
		ls[i] = &gatedLoader{node: n.Name(), entered: make(chan struct{}, 1), release: make(chan struct{})}
		gs[i] = mustGroup(t, n, "lead", ls[i])
	}
	g := gs[reader]
	type result struct {
		v   []byte
		err error
	}
	// start runs a Get of key on the reader under ctx, once joined (if
	// given) has happened.
	start := func(ctx context.Context, key string) <-chan result {
		out := make(chan result, 1)
		go func() {
			v, err := g.Get(ctx, key)
			out <- result{v, err}
		}()
		return out
	}
	joined := func(key string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !flightJoined(g, key) {
			if time.Now().After(deadline) {
				t.Fatalf("no caller joined the fetch flight of %q within 10s", key)
			}
			time.Sleep(time.Millisecond)
		}
	}

	t.Run("leader leaves", func(t *testing.T) {
		key := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "leave")
		lctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		leader := start(lctx, key)
		awaitValue(t, ls[owner].entered, "the owner to start loading")
		waiter := start(context.Background(), key)
		joined(key)
		cancel()
		if r := awaitValue(t, leader, "the leader to return"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("leader's Get(%q) with its ctx cancelled = %q, %v; want context.Canceled", key, r.v, r.err)
		}
		close(ls[owner].release)
		want := key + "@" + nodes[owner].Name()
		if r := awaitValue(t, waiter, "the waiter to return"); r.err != nil || string(r.v) != want {
			t.Fatalf("waiter's Get(%q) = %q, %v; want %q", key, r.v, r.err, want)
		}
		if e, ok, err := g.Peek(context.Background(), key); err != nil || !ok || string(e.Value) != want {
			t.Errorf("Peek(%q) on the reader = %q, %v, %v; want the hot copy %q", key, e.Value, ok, err, want)
		}
		if s := g.Stats(); s.PeerFetches != 1 || s.Fallbacks != 0 {
			t.Errorf("reader's PeerFetches, Fallbacks = %d, %d; want 1, 0", s.PeerFetches, s.Fallbacks)
		}
	})

	t.Run("shared value is copied", func(t *testing.T) {
		ls[owner].release = make(chan struct{})
		key := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "share")
		leader := start(context.Background(), key)
		awaitValue(t, ls[owner].entered, "the owner to start loading")
		waiter := start(context.Background(), key)
		joined(key)
		close(ls[owner].release)
		want := key + "@" + nodes[owner].Name()
		a := awaitValue(t, leader, "the leader to return")
		if a.err != nil || string(a.v) != want {
			t.Fatalf("leader's Get(%q) = %q, %v; want %q", key, a.v, a.err, want)
		}
		// The leader owns its slice: overwriting it while the waiter may still
		// be copying the flight's value (a race under -race if they share
		// it) leaves the waiter's as it was.
		for i := range a.v {
			a.v[i] = 'x'
		}
		b := awaitValue(t, waiter, "the waiter to return")
		if b.err != nil || !bytes.Equal(b.v, []byte(want)) {
			t.Errorf("waiter's Get(%q) = %q, %v; want %q", key, b.v, b.err, want)
		}
	})
}
