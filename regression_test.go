package meshcache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Regression tests for bugs a review found in the single-node core.

func TestOverrunningLoadNotStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		slow := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			it, err := o.Load(ctx, key)
			time.Sleep(3 * time.Minute) // ignores ctx: outlives the tombstones
			return it, err
		})
		g := mustGroup(t, newTestNode(t), "g", slow, WithLoadTimeout(time.Second))
		ctx := context.Background()
		res := make(chan string, 1)
		go func() { res <- get(ctx, g, "k") }()
		synctest.Wait() // the load read version 0
		o.bump("k")
		if err := g.Invalidate(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if v := <-res; v != "0" {
			t.Fatalf("Get = %q, want the late value %q", v, "0")
		}
		if _, ok, _ := g.Peek(ctx, "k"); ok {
			t.Fatalf("a value returned after the load timeout was cached")
		}
	})
}

func TestFlightPanicOutsideLoader(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin(),
		WithStoreIf(func(string, Item) bool { panic("predicate bug") }))
	if _, err := g.Get(t.Context(), "k"); !errors.Is(err, ErrLoaderPanic) {
		t.Fatalf("Get with a panicking predicate = %v, want ErrLoaderPanic", err)
	}
}

func TestNilCallOption(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin())
	if _, err := g.Get(t.Context(), "k", nil); err != nil {
		t.Fatalf("Get with a nil option: %v", err)
	}
	if _, err := g.GetMany(t.Context(), []string{"k"}, nil, Bypass()); err != nil {
		t.Fatalf("GetMany with a nil option: %v", err)
	}
}

func TestCloseWaitsForBypassLoads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := NewNode(Config{})
		ended := false
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			<-ctx.Done()
			time.Sleep(time.Second) // cleaning up
			ended = true
			return Item{}, ctx.Err()
		})
		g := mustGroup(t, n, "g", l)
		errc := make(chan error, 1)
		go func() {
			_, err := g.Get(context.Background(), "k", Bypass())
			errc <- err
		}()
		synctest.Wait()
		n.Close()
		if !ended {
			t.Errorf("Close returned while a Bypass load was running")
		}
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Bypass Get during Close = %v, want context.Canceled", err)
		}
	})
}

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

func TestGetContextCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		o.gate = make(chan struct{})
		defer close(o.gate)
		g := mustGroup(t, newTestNode(t), "g", o)
		cause := errors.New("client went away")
		ctx, cancel := context.WithCancelCause(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := g.Get(ctx, "k")
			errc <- err
		}()
		synctest.Wait()
		cancel(cause)
		err := <-errc
		if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
			t.Fatalf("Get = %v, want both context.Canceled and the cause", err)
		}
	})
}

func TestOptionBounds(t *testing.T) {
	n := newTestNode(t)
	tests := []struct {
		name string
		opts []GroupOption
		want error
	}{
		{"load timeout over the maximum", []GroupOption{WithLoadTimeout(MaxLoadTimeout + 1)}, ErrInvalidOption},
		{"max value over half the main bytes", []GroupOption{WithMainBytes(1000), WithMaxValueBytes(600)}, ErrInvalidOption},
		{"nil BatchLoaderFunc", []GroupOption{WithBatchLoader(BatchLoaderFunc(nil))}, ErrNilLoader},
		{"nil option", []GroupOption{nil}, ErrInvalidOption},
		{"nil validate", []GroupOption{WithValidate(nil)}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewGroup(n, "x", newOrigin(), tt.opts...); !errors.Is(err, tt.want) {
				t.Errorf("NewGroup = %v, want %v", err, tt.want)
			}
		})
	}
	// Without WithMaxValueBytes the limit follows the main bytes, so an
	// accepted value can always be cached.
	g := mustGroup(t, n, "small", newOrigin(), WithMainBytes(1000))
	if err := g.Set(t.Context(), "k", Item{Value: make([]byte, 600)}); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("Set of 600 bytes with 1000 main bytes = %v, want ErrValueTooLarge", err)
	}
	if err := g.Set(t.Context(), "k", Item{Value: make([]byte, 400)}); err != nil {
		t.Errorf("Set of 400 bytes with 1000 main bytes = %v", err)
	}
	if _, ok, _ := g.Peek(t.Context(), "k"); !ok {
		t.Errorf("an accepted value was not cached")
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

// A Get that missed must not load again when another caller's flight
// stored the key and ended between the miss and joining the flight.
func TestNoSecondLoadAfterFlightEnded(t *testing.T) {
	n := newTestNode(t)
	o := newOrigin()
	g := mustGroup(t, n, "g", o)
	const keys, callers = 3000, 8
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for i := range keys {
				if _, err := g.Get(context.Background(), strconv.Itoa(i)); err != nil {
					t.Errorf("Get: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := o.calls.Load(); got != keys {
		t.Errorf("loader calls = %d, want %d (one per key)", got, keys)
	}
}
