package meshcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestGetManyEmptyValue(t *testing.T) {
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) { return Item{}, nil })
	g := mustGroup(t, newTestNode(t), "g", l)
	for _, round := range []string{"miss", "hit"} {
		got, err := g.GetMany(t.Context(), []string{"k"})
		if v, ok := got["k"]; err != nil || !ok || len(v) != 0 {
			t.Errorf("GetMany on a %s of an empty value = %q, %v; want the key with an empty value", round, got, err)
		}
	}
}

func TestBatchLoaderPanic(t *testing.T) {
	b := BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]Item, error) { panic("batch bug") })
	g := mustGroup(t, newTestNode(t), "g", newOrigin(), WithBatchLoader(b))
	if _, err := g.GetMany(t.Context(), []string{"a", "b"}); !errors.Is(err, ErrLoaderPanic) {
		t.Fatalf("GetMany with a panicking batch loader = %v, want ErrLoaderPanic", err)
	}
	if v := mustGet(t, g, "a"); v != "0" { // the single loader still works
		t.Fatalf("Get after the batch panic = %q", v)
	}
}

func TestGetMany(t *testing.T) {
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o)
	mustGet(t, g, "a")
	got, err := g.GetMany(t.Context(), []string{"a", "b", "c", "b", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got["a"]) != "0" || string(got["b"]) != "0" || string(got["c"]) != "0" {
		t.Fatalf("GetMany = %q, want a, b, c", got)
	}
	if o.calls.Load() != 4 {
		t.Fatalf("loader calls = %d, want 4 (a, then b, c, missing once each)", o.calls.Load())
	}
}

func TestGetManyBatchLoader(t *testing.T) {
	var batches [][]string
	var mu sync.Mutex
	b := BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]Item, error) {
		mu.Lock()
		batches = append(batches, keys)
		mu.Unlock()
		m := map[string]Item{}
		for _, k := range keys {
			if k != "missing" {
				m[k] = Item{Value: []byte("b" + k)}
			}
		}
		return m, nil
	})
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o, WithBatchLoader(b), WithNegativeTTL(time.Minute))
	mustGet(t, g, "a") // through the single loader
	got, err := g.GetMany(t.Context(), []string{"a", "b", "c", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got["a"]) != "0" || string(got["b"]) != "bb" || string(got["c"]) != "bc" {
		t.Fatalf("GetMany = %q", got)
	}
	if len(batches) != 1 || len(batches[0]) != 3 {
		t.Fatalf("batches = %q, want one batch of b, c, missing", batches)
	}
	if err := g.Warm(t.Context(), "b", "c", "d", "missing"); err != nil {
		t.Fatal(err)
	}
	if len(batches) != 2 || fmt.Sprint(batches[1]) != "[d]" {
		t.Fatalf("Warm batches = %q, want a second batch of [d] only", batches)
	}
	if _, ok, _ := g.Peek(t.Context(), "d"); !ok {
		t.Fatalf("Warm did not cache d")
	}
	if st := g.Stats(); st.BatchLoads != 2 || st.Loads != 5 {
		t.Fatalf("Stats = %+v, want 2 batch loads and 5 loads", st)
	}
}

func TestWarmWithoutBatchLoader(t *testing.T) {
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o)
	if err := g.Warm(t.Context(), "a", "b", "missing"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, g, "a")
	mustGet(t, g, "b")
	if o.calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want 3", o.calls.Load())
	}
}
