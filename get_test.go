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

func TestNilCallOption(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin())
	if _, err := g.Get(t.Context(), "k", nil); err != nil {
		t.Fatalf("Get with a nil option: %v", err)
	}
	if _, err := g.GetMany(t.Context(), []string{"k"}, nil, Bypass()); err != nil {
		t.Fatalf("GetMany with a nil option: %v", err)
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

func TestGetConcurrentLoadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		o.gate = make(chan struct{})
		g := mustGroup(t, newTestNode(t), "g", o)
		const callers = 20
		var wg sync.WaitGroup
		vals := make([]string, callers)
		for i := range callers {
			wg.Go(func() {
				v, err := g.Get(context.Background(), "k")
				if err != nil {
					t.Errorf("Get: %v", err)
				}
				vals[i] = string(v)
			})
		}
		synctest.Wait() // every caller waits on the one flight
		close(o.gate)
		wg.Wait()
		if got := o.calls.Load(); got != 1 {
			t.Errorf("loader calls = %d, want 1", got)
		}
		for i, v := range vals {
			if v != "0" {
				t.Errorf("caller %d got %q, want %q", i, v, "0")
			}
		}
		// A Get after the flight ended hits the stored value.
		if v := mustGet(t, g, "k"); v != "0" {
			t.Errorf("Get after load = %q, want %q", v, "0")
		}
		st := g.Stats()
		if st.Loads != 1 || st.LoadsDeduplicated != callers-1 || st.Hits != 1 || st.Misses != callers {
			t.Errorf("Stats = %+v, want 1 load, %d deduplicated, 1 hit, %d misses", st, callers-1, callers)
		}
	})
}

func TestGetOnceperTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithTTL(time.Minute))
		for range 5 {
			mustGet(t, g, "k")
			time.Sleep(10 * time.Second)
		}
		if got := o.calls.Load(); got != 1 {
			t.Fatalf("loader calls within one TTL = %d, want 1", got)
		}
		time.Sleep(time.Minute)
		mustGet(t, g, "k")
		if got := o.calls.Load(); got != 2 {
			t.Fatalf("loader calls after the TTL = %d, want 2", got)
		}
	})
}

func TestGetReturnsCopy(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin())
	v, _ := g.Get(t.Context(), "k")
	v[0] = 'X'
	if got := mustGet(t, g, "k"); got != "0" {
		t.Fatalf("Get after modifying a returned value = %q, want %q", got, "0")
	}
}

func TestTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			if key == "short" {
				return Item{Value: []byte(key), TTL: time.Second}, nil
			}
			return Item{Value: []byte(key)}, nil
		})
		g := mustGroup(t, newTestNode(t), "g", l, WithTTL(time.Minute))
		mustGet(t, g, "short")
		mustGet(t, g, "default")
		peekTTL := func(key string) (time.Duration, bool) {
			e, ok, err := g.Peek(context.Background(), key)
			if err != nil {
				t.Fatalf("Peek(%q): %v", key, err)
			}
			return e.TTL, ok
		}
		if ttl, _ := peekTTL("short"); ttl != time.Second {
			t.Errorf("TTL of an item with its own TTL = %v, want 1s", ttl)
		}
		if ttl, _ := peekTTL("default"); ttl != time.Minute {
			t.Errorf("TTL of an item with the group default = %v, want 1m", ttl)
		}
		time.Sleep(time.Second)
		if _, ok := peekTTL("short"); ok {
			t.Errorf("Peek found an expired entry")
		}
		if ok, err := g.Expire(context.Background(), "default", time.Hour); !ok || err != nil {
			t.Errorf("Expire = %v, %v; want true, nil", ok, err)
		}
		if ttl, _ := peekTTL("default"); ttl != time.Hour {
			t.Errorf("TTL after Expire = %v, want 1h", ttl)
		}
		if ok, _ := g.Expire(context.Background(), "absent", time.Hour); ok {
			t.Errorf("Expire of an absent key = true")
		}
		if st := g.Stats(); st.Expirations == 0 {
			t.Errorf("Expirations = 0 after an entry expired")
		}
	})
}

func TestEvictionByBytes(t *testing.T) {
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: make([]byte, 1000)}, nil
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithMainBytes(10_000))
	for i := range 30 {
		mustGet(t, g, strconv.Itoa(i))
		mustGet(t, g, "0") // keep 0 recently used
	}
	st := g.Stats()
	if st.Bytes > 10_000 || st.Evictions == 0 {
		t.Errorf("Stats = %+v, want Bytes <= 10000 and some evictions", st)
	}
	if _, ok, _ := g.Peek(t.Context(), "0"); !ok {
		t.Errorf("the most recently used key was evicted")
	}
	if _, ok, _ := g.Peek(t.Context(), "1"); ok {
		t.Errorf("the least recently used key was kept")
	}
}

func TestValidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin()
		g := mustGroup(t, newTestNode(t), "g", o, WithValidate(func(e Entry) bool { return e.Age < 10*time.Second }))
		mustGet(t, g, "k")
		time.Sleep(5 * time.Second)
		mustGet(t, g, "k")
		if o.calls.Load() != 1 {
			t.Fatalf("loader calls for a valid entry = %d, want 1", o.calls.Load())
		}
		time.Sleep(5 * time.Second)
		mustGet(t, g, "k")
		if o.calls.Load() != 2 {
			t.Fatalf("loader calls for an entry the validator rejects = %d, want 2", o.calls.Load())
		}
	})
}

func TestBypassRefreshPassthrough(t *testing.T) {
	o := newOrigin()
	g := mustGroup(t, newTestNode(t), "g", o)
	mustGet(t, g, "k")
	o.bump("k")
	if v := mustGet(t, g, "k"); v != "0" {
		t.Fatalf("cached Get = %q, want %q", v, "0")
	}
	if v := mustGet(t, g, "k", Bypass()); v != "1" {
		t.Fatalf("Get with Bypass = %q, want %q", v, "1")
	}
	if v := mustGet(t, g, "k"); v != "0" {
		t.Fatalf("Bypass wrote the cache: Get = %q, want %q", v, "0")
	}
	if v := mustGet(t, g, "k", ForceRefresh()); v != "1" {
		t.Fatalf("Get with ForceRefresh = %q, want %q", v, "1")
	}
	o.bump("k")
	if v, err := g.Refresh(t.Context(), "k"); err != nil || string(v) != "2" {
		t.Fatalf("Refresh = %q, %v; want %q", v, err, "2")
	}
	if v := mustGet(t, g, "k"); v != "2" {
		t.Fatalf("Get after Refresh = %q, want %q", v, "2")
	}
	calls := o.calls.Load()
	p := mustGroup(t, g.node, "p", o, WithPassthrough())
	mustGet(t, p, "k")
	mustGet(t, p, "k")
	if got := o.calls.Load() - calls; got != 2 {
		t.Fatalf("passthrough loader calls = %d, want 2", got)
	}
	if st := p.Stats(); st.Items != 0 {
		t.Fatalf("passthrough stored %d items", st.Items)
	}
}
