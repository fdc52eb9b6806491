package meshcache

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestSetIfAbsentOverCachedNotFound(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin(), WithNegativeTTL(time.Hour))
	ctx := t.Context()
	if _, err := g.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if ok, _ := g.Expire(ctx, "missing", time.Minute); ok {
		t.Errorf("Expire of a cached not-found = true, want false")
	}
	if ok, err := g.SetIfAbsent(ctx, "missing", Item{Value: []byte("v")}); !ok || err != nil {
		t.Fatalf("SetIfAbsent over a cached not-found = %v, %v; want true", ok, err)
	}
	if v := mustGet(t, g, "missing"); v != "v" {
		t.Fatalf("Get = %q, want %q", v, "v")
	}
}

func TestSetPeekSetIfAbsent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o)
		ctx := context.Background()
		val := []byte("set")
		if err := g.Set(ctx, "k", Item{Value: val, TTL: time.Minute, Tags: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
		val[0] = 'X' // the group keeps its own copy
		time.Sleep(time.Second)
		e, ok, err := g.Peek(ctx, "k")
		if err != nil || !ok {
			t.Fatalf("Peek = %v, %v", ok, err)
		}
		if string(e.Value) != "set" || e.TTL != 59*time.Second || e.Age != time.Second || len(e.Tags) != 1 || e.Tags[0] != "t" {
			t.Errorf("Peek = %+v, want value set, TTL 59s, age 1s, tags [t]", e)
		}
		if v := mustGet(t, g, "k"); v != "set" || o.calls.Load() != 0 {
			t.Errorf("Get after Set = %q with %d loads, want %q and none", v, o.calls.Load(), "set")
		}
		if _, ok, _ := g.Peek(ctx, "other"); ok || o.calls.Load() != 0 {
			t.Errorf("Peek of an absent key found it or loaded it")
		}
		if ok, err := g.SetIfAbsent(ctx, "k", Item{Value: []byte("new")}); ok || err != nil {
			t.Errorf("SetIfAbsent on a cached key = %v, %v; want false", ok, err)
		}
		if ok, err := g.SetIfAbsent(ctx, "k2", Item{Value: []byte("new")}); !ok || err != nil {
			t.Errorf("SetIfAbsent on an absent key = %v, %v; want true", ok, err)
		}
		if v := mustGet(t, g, "k2"); v != "new" {
			t.Errorf("Get after SetIfAbsent = %q", v)
		}
		if err := g.InvalidateTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := g.Peek(ctx, "k"); ok {
			t.Errorf("a Set entry survived the invalidation of its tag")
		}
	})
}
