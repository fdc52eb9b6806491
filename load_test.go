package meshcache

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

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

func TestSharedLoadOwnContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var loadCtx context.Context
		gate := make(chan struct{})
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			loadCtx = ctx
			<-gate
			return Item{Value: []byte("v")}, ctx.Err()
		})
		g := mustGroup(t, newTestNode(t), "g", l, WithLoadTimeout(time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		errA := make(chan error, 1)
		go func() {
			_, err := g.Get(ctx, "k")
			errA <- err
		}()
		deadlineCtx, cancelB := context.WithTimeout(context.Background(), time.Second)
		defer cancelB()
		errB := make(chan error, 1)
		go func() {
			_, err := g.Get(deadlineCtx, "k")
			errB <- err
		}()
		resC := make(chan string, 1)
		go func() { resC <- get(context.Background(), g, "k") }()
		synctest.Wait()

		cancel()
		if err := <-errA; !errors.Is(err, context.Canceled) {
			t.Errorf("Get with a cancelled context = %v, want context.Canceled", err)
		}
		if err := <-errB; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get past its deadline = %v, want context.DeadlineExceeded", err)
		}
		if err := loadCtx.Err(); err != nil {
			t.Errorf("the load's context ended with its callers': %v", err)
		}
		if d, ok := loadCtx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Errorf("load deadline = %v, %v; want the group's load timeout", d, ok)
		}
		close(gate)
		if v := <-resC; v != "v" {
			t.Errorf("remaining caller got %q, want %q", v, "v")
		}
	})
}

func TestLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			<-ctx.Done()
			return Item{}, ctx.Err()
		})
		g := mustGroup(t, newTestNode(t), "g", l, WithLoadTimeout(time.Second))
		start := time.Now()
		_, err := g.Get(context.Background(), "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("load ended after %v, want the 1s load timeout", d)
		}
		if st := g.Stats(); st.LoadErrors != 1 {
			t.Errorf("LoadErrors = %d, want 1", st.LoadErrors)
		}
	})
}

func TestLoaderPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		gate := make(chan struct{})
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			if calls.Add(1) == 1 {
				<-gate
				panic("boom")
			}
			return Item{Value: []byte("ok")}, nil
		})
		g := mustGroup(t, newTestNode(t), "g", l)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := g.Get(context.Background(), "k")
				errs <- err
			}()
		}
		synctest.Wait()
		close(gate)
		for range 3 {
			if err := <-errs; !errors.Is(err, ErrLoaderPanic) {
				t.Errorf("waiter got %v, want ErrLoaderPanic", err)
			}
		}
		if v := mustGet(t, g, "k"); v != "ok" {
			t.Errorf("Get after a panic = %q, want %q", v, "ok")
		}
	})
}

func TestLoaderErrorNotCached(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("db down")
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		calls.Add(1)
		return Item{}, boom
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithNegativeTTL(time.Hour))
	for range 2 {
		if _, err := g.Get(t.Context(), "k"); !errors.Is(err, boom) {
			t.Fatalf("Get = %v, want the loader's error", err)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("loader calls = %d, want 2 (errors are not cached)", calls.Load())
	}
}

func TestJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := NewGroup(newTestNode(t), "g", newOrigin(), WithTTL(100*time.Second), WithJitter(0.5))
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[time.Duration]bool{}
		for i := range 50 {
			key := strconv.Itoa(i)
			mustGet(t, g, key)
			e, _, _ := g.Peek(context.Background(), key)
			if e.TTL > 100*time.Second || e.TTL <= 50*time.Second {
				t.Errorf("TTL with jitter 0.5 = %v, want in (50s, 100s]", e.TTL)
			}
			distinct[e.TTL] = true
		}
		if len(distinct) < 10 {
			t.Errorf("jitter gave %d distinct TTLs in 50 loads", len(distinct))
		}
	})
}

func TestNoStoreAndStoreIf(t *testing.T) {
	var calls atomic.Int64
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		calls.Add(1)
		return Item{Value: []byte(key), NoStore: key == "nostore"}, nil
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithStoreIf(func(key string, it Item) bool { return key != "skip" }))
	for _, key := range []string{"nostore", "skip", "keep"} {
		for range 2 {
			if v := mustGet(t, g, key); v != key {
				t.Fatalf("Get(%q) = %q", key, v)
			}
		}
	}
	if got := calls.Load(); got != 5 {
		t.Fatalf("loader calls = %d, want 5 (2 nostore + 2 skip + 1 keep)", got)
	}
}

func TestNegativeTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithNegativeTTL(time.Second))
		for range 3 {
			if _, err := g.Get(context.Background(), "missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
			}
		}
		if o.calls.Load() != 1 {
			t.Fatalf("loader calls = %d, want 1 (not-found cached)", o.calls.Load())
		}
		if st := g.Stats(); st.NegativeHits != 2 {
			t.Fatalf("NegativeHits = %d, want 2", st.NegativeHits)
		}
		time.Sleep(time.Second)
		g.Get(context.Background(), "missing")
		if o.calls.Load() != 2 {
			t.Fatalf("loader calls after the negative TTL = %d, want 2", o.calls.Load())
		}
		// Without the option, not-found is not cached.
		g2 := mustGroup(t, g.node, "g2", o)
		g2.Get(context.Background(), "missing")
		g2.Get(context.Background(), "missing")
		if o.calls.Load() != 4 {
			t.Fatalf("loader calls without negative caching = %d, want 4", o.calls.Load())
		}
	})
}
