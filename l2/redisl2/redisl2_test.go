package redisl2_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshcache/meshcache/internal/redistest"
	"github.com/meshcache/meshcache/l2"
	"github.com/meshcache/meshcache/l2/redisl2"
)

func newStore(t *testing.T) (*redisl2.Store, *redis.Client, *redistest.Server) {
	t.Helper()
	return newStoreB(t)
}

func newStoreB(t testing.TB) (*redisl2.Store, *redis.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return redisl2.New(c, "test:"), c, srv
}

func get1(t *testing.T, s *redisl2.Store, group, key string) l2.Result {
	t.Helper()
	rs, err := s.Get(context.Background(), group, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if len(rs) != 1 {
		t.Fatalf("Get(%q): %d results", key, len(rs))
	}
	return rs[0]
}

func set1(t *testing.T, s *redisl2.Store, group string, it l2.Item) bool {
	t.Helper()
	n, err := s.Set(context.Background(), group, it)
	if err != nil {
		t.Fatalf("Set(%q): %v", it.Key, err)
	}
	return n == 1
}

func TestGetSet(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	keys := []string{"a", "b}{x", "\x00bin\xff", "empty"}
	rs, err := s.Get(ctx, "g", keys...)
	if err != nil {
		t.Fatal(err)
	}
	var items []l2.Item
	for i, r := range rs {
		if r.Found {
			t.Fatalf("%q found in an empty store", keys[i])
		}
		v := []byte("value of " + keys[i])
		if keys[i] == "empty" {
			v = []byte{}
		}
		items = append(items, l2.Item{Key: keys[i], Value: v, TTL: time.Minute, Tags: []string{"t1", "t" + keys[i]}, Version: r.Version})
	}
	n, err := s.Set(ctx, "g", items...)
	if err != nil || n != len(items) {
		t.Fatalf("Set: %d, %v; want %d", n, err, len(items))
	}
	rs, err = s.Get(ctx, "g", keys...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		it := items[i]
		if !r.Found || !bytes.Equal(r.Value, it.Value) {
			t.Errorf("%q: found %v value %q; want %q", it.Key, r.Found, r.Value, it.Value)
		}
		if r.TTL <= 0 || r.TTL > time.Minute {
			t.Errorf("%q: TTL %v", it.Key, r.TTL)
		}
		slices.Sort(r.Tags)
		if want := slices.Sorted(slices.Values(it.Tags)); !slices.Equal(r.Tags, want) {
			t.Errorf("%q: tags %q; want %q", it.Key, r.Tags, want)
		}
	}
	// Groups are apart.
	if r := get1(t, s, "other", "a"); r.Found {
		t.Error("key a found in another group")
	}
}

func TestDeleteFencesSet(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	r := get1(t, s, "g", "k")
	if err := s.Delete(ctx, "g", "k"); err != nil {
		t.Fatal(err)
	}
	// A load that read before the Delete cannot store after it.
	if set1(t, s, "g", l2.Item{Key: "k", Value: []byte("old"), TTL: time.Minute, Version: r.Version}) {
		t.Fatal("a Set with a version from before a Delete was stored")
	}
	r = get1(t, s, "g", "k")
	if r.Found {
		t.Fatal("found after a refused Set")
	}
	if !set1(t, s, "g", l2.Item{Key: "k", Value: []byte("new"), TTL: time.Minute, Version: r.Version}) {
		t.Fatal("a Set with the current version was refused")
	}
	if err := s.Delete(ctx, "g", "k", "unknown"); err != nil {
		t.Fatal(err)
	}
	if r := get1(t, s, "g", "k"); r.Found {
		t.Fatal("found after Delete")
	}
}

func TestInvalidateTags(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for _, k := range []string{"red", "blue", "none"} {
		r := get1(t, s, "g", k)
		var tags []string
		if k != "none" {
			tags = []string{k, "color"}
		}
		if !set1(t, s, "g", l2.Item{Key: k, Value: []byte(k), TTL: time.Minute, Tags: tags, Version: r.Version}) {
			t.Fatalf("Set(%q) refused", k)
		}
	}
	before := get1(t, s, "g", "late")
	if err := s.InvalidateTags(ctx, "g", "red"); err != nil {
		t.Fatal(err)
	}
	if get1(t, s, "g", "red").Found {
		t.Error("red found after its tag was invalidated")
	}
	if !get1(t, s, "g", "blue").Found || !get1(t, s, "g", "none").Found {
		t.Error("entries without the tag were lost")
	}
	// Any tag invalidation of the group fences a Set read before it: the
	// item's tags were not known when it was read.
	if set1(t, s, "g", l2.Item{Key: "late", Value: []byte("x"), TTL: time.Minute, Tags: []string{"red"}, Version: before.Version}) {
		t.Error("a Set read before InvalidateTags was stored")
	}
	// Stored after the invalidation, under the new generation: found.
	r := get1(t, s, "g", "red")
	if !set1(t, s, "g", l2.Item{Key: "red", Value: []byte("red2"), TTL: time.Minute, Tags: []string{"red"}, Version: r.Version}) {
		t.Fatal("Set after InvalidateTags refused")
	}
	if r := get1(t, s, "g", "red"); !r.Found || string(r.Value) != "red2" {
		t.Errorf("red after a new Set: %v %q", r.Found, r.Value)
	}
	// Another group's tags are its own.
	if err := s.InvalidateTags(ctx, "other", "blue"); err != nil {
		t.Fatal(err)
	}
	if !get1(t, s, "g", "blue").Found {
		t.Error("another group's tag invalidated blue")
	}
}

func TestClear(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	r := get1(t, s, "g", "k")
	set1(t, s, "g", l2.Item{Key: "k", Value: []byte("v"), TTL: time.Minute, Version: r.Version})
	r2 := get1(t, s, "other", "k")
	set1(t, s, "other", l2.Item{Key: "k", Value: []byte("v"), TTL: time.Minute, Version: r2.Version})
	before := get1(t, s, "g", "k2")
	if err := s.Clear(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if get1(t, s, "g", "k").Found {
		t.Error("found after Clear")
	}
	if !get1(t, s, "other", "k").Found {
		t.Error("Clear of g cleared another group")
	}
	if set1(t, s, "g", l2.Item{Key: "k2", Value: []byte("x"), TTL: time.Minute, Version: before.Version}) {
		t.Error("a Set read before Clear was stored")
	}
	r = get1(t, s, "g", "k")
	if !set1(t, s, "g", l2.Item{Key: "k", Value: []byte("v2"), TTL: time.Minute, Version: r.Version}) || !get1(t, s, "g", "k").Found {
		t.Error("a Set after Clear was not found")
	}
}

func TestExpiry(t *testing.T) {
	s, _, _ := newStore(t)
	r := get1(t, s, "g", "k")
	if set1(t, s, "g", l2.Item{Key: "short", Value: []byte("v"), TTL: time.Microsecond, Version: r.Version}) {
		t.Error("an item with a TTL under a millisecond was stored")
	}
	set1(t, s, "g", l2.Item{Key: "k", Value: []byte("v"), TTL: 30 * time.Millisecond, Version: r.Version})
	deadline := time.Now().Add(5 * time.Second)
	for get1(t, s, "g", "k").Found {
		if time.Now().After(deadline) {
			t.Fatal("entry with a 30ms TTL still found after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestErrorsClassified(t *testing.T) {
	s, c, srv := newStore(t)
	ctx := context.Background()

	// Data this package did not write.
	if err := c.Set(ctx, "test:{g}:v:bad", "not a number", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "g", "bad"); !errors.Is(err, l2.ErrCorrupt) {
		t.Errorf("Get of a key with a bad version: %v; want ErrCorrupt", err)
	}
	if err := c.Set(ctx, "test:{g}:e:str", "a string, not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "g", "str"); !errors.Is(err, l2.ErrCorrupt) {
		t.Errorf("Get of an entry of the wrong type: %v; want ErrCorrupt", err)
	}
	if v1, v2 := get1(t, s, "g", "fine").Version, get1(t, s, "g", "fine").Version; v1 != v2 {
		t.Error("versions of one key differ between two Gets")
	}

	// A paused server: the caller's deadline bounds the call.
	srv.Pause()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := s.Get(short, "g", "k")
	cancel()
	srv.Resume()
	if !errors.Is(err, l2.ErrUnavailable) {
		t.Errorf("Get from a paused server: %v; want ErrUnavailable", err)
	}

	// A stopped server.
	srv.Stop()
	checks := map[string]error{}
	_, checks["get"] = s.Get(ctx, "g", "k")
	_, checks["set"] = s.Set(ctx, "g", l2.Item{Key: "k", Value: []byte("v"), TTL: time.Minute})
	checks["delete"] = s.Delete(ctx, "g", "k")
	checks["tags"] = s.InvalidateTags(ctx, "g", "t")
	checks["clear"] = s.Clear(ctx, "g")
	for op, err := range checks {
		if !errors.Is(err, l2.ErrUnavailable) {
			t.Errorf("%s on a stopped server: %v; want ErrUnavailable", op, err)
		}
	}
}
