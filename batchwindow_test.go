package meshcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingBatch is a batch loader over an origin that counts its calls and
// the keys it was asked for.
type countingBatch struct {
	o           *origin
	calls, keys atomic.Int64
	fail        atomic.Bool
}

func (c *countingBatch) LoadMany(ctx context.Context, keys []string) (map[string]Item, error) {
	c.calls.Add(1)
	c.keys.Add(int64(len(keys)))
	if c.fail.Load() {
		return nil, errDown
	}
	m := make(map[string]Item, len(keys))
	for _, k := range keys {
		if k == "missing" {
			continue
		}
		it, err := c.o.Load(ctx, k)
		if err != nil {
			return nil, err
		}
		m[k] = it
	}
	return m, nil
}

// TestBatchWindow: concurrent Gets of distinct keys are loaded by one
// LoadMany call (the window closes when it is full: no timing involved);
// each caller gets its own key, a key the batch lacks is not found, and a
// failed batch fails each caller.
func TestBatchWindow(t *testing.T) {
	const n = 50
	b := &countingBatch{o: newOrigin()}
	g := mustGroup(t, newTestNode(t), "g", b.o, WithBatchLoader(b), WithBatchWindow(time.Hour), WithMaxBatch(n))
	ctx := context.Background()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	keys[n-1] = "missing"
	b.o.bump("k7")
	errs := make([]error, n)
	vals := make([]string, n)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			v, err := g.Get(ctx, k)
			vals[i], errs[i] = string(v), err
		})
	}
	wg.Wait()
	for i, k := range keys {
		want := "0"
		if k == "k7" {
			want = "1"
		}
		switch {
		case k == "missing":
			if !errors.Is(errs[i], ErrNotFound) {
				t.Errorf("Get(missing) = %v, want ErrNotFound", errs[i])
			}
		case errs[i] != nil || vals[i] != want:
			t.Errorf("Get(%s) = %q, %v; want %q", k, vals[i], errs[i], want)
		}
	}
	if calls, got := b.calls.Load(), b.keys.Load(); calls != 1 || got != n {
		t.Errorf("LoadMany called %d times for %d keys, want once for %d", calls, got, n)
	}
	if st := g.Stats(); st.BatchLoads != 1 || st.Loads != n {
		t.Errorf("stats: %d batch loads, %d loads; want 1, %d", st.BatchLoads, st.Loads, n)
	}

	// A failed batch fails each of its callers, and caches nothing.
	b.fail.Store(true)
	var failed atomic.Int64
	for i := range n {
		wg.Go(func() {
			if _, err := g.Get(ctx, "other"+strconv.Itoa(i)); errors.Is(err, ErrLoadFailed) && errors.Is(err, errDown) {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != n {
		t.Errorf("%d of %d callers of a failed batch got its error", failed.Load(), n)
	}
	// Cached values are served, not batched again.
	b.fail.Store(false)
	if v := mustGet(t, g, "k7"); v != "1" {
		t.Errorf("cached k7 = %q", v)
	}
}

// TestBatchWindowTimer: a window that does not fill closes after d.
func TestBatchWindowTimer(t *testing.T) {
	b := &countingBatch{o: newOrigin()}
	g := mustGroup(t, newTestNode(t), "g", b.o, WithBatchLoader(b), WithBatchWindow(time.Millisecond))
	if v := mustGet(t, g, "k"); v != "0" || b.calls.Load() != 1 {
		t.Errorf("Get = %q after %d LoadMany calls", v, b.calls.Load())
	}
}

func TestBatchWindowOptions(t *testing.T) {
	n := newTestNode(t)
	if _, err := NewGroup(n, "a", newOrigin(), WithBatchWindow(time.Millisecond)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithBatchWindow without a batch loader: %v", err)
	}
	b := &countingBatch{o: newOrigin()}
	if _, err := NewGroup(n, "b", newOrigin(), WithBatchLoader(b), WithBatchWindow(0)); !errors.Is(err, ErrInvalidTTL) {
		t.Errorf("WithBatchWindow(0): %v", err)
	}
	if _, err := NewGroup(n, "c", newOrigin(), WithBatchLoader(b), WithBatchWindow(time.Millisecond), WithMaxBatch(0)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithMaxBatch(0): %v", err)
	}
}

// BenchmarkBatchWindow runs 1,000 concurrent Gets of distinct keys against a
// batch loader that takes 1 ms per call (a database round trip), without
// and with a 1 ms window, and reports the loader calls per round and the
// mean latency of a Get.
//
//	go test -run '^$' -bench BatchWindow -count 6 . | benchstat -col /window -
func BenchmarkBatchWindow(b *testing.B) {
	const callers = 1000
	for _, window := range []time.Duration{0, time.Millisecond} {
		b.Run(fmt.Sprintf("window=%v", window), func(b *testing.B) {
			var calls atomic.Int64
			batch := BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]Item, error) {
				calls.Add(1)
				time.Sleep(time.Millisecond)
				m := make(map[string]Item, len(keys))
				for _, k := range keys {
					m[k] = Item{Value: []byte(k)}
				}
				return m, nil
			})
			single := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
				m, err := batch(ctx, []string{key})
				return m[key], err
			})
			opts := []GroupOption{WithBatchLoader(batch)}
			if window > 0 {
				opts = append(opts, WithBatchWindow(window))
			}
			g := mustGroup(b, newTestNode(b), "g", single, opts...)
			ctx := context.Background()
			var total time.Duration
			var mu sync.Mutex
			round := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for i := range callers {
					key := fmt.Sprintf("r%d-k%d", round, i)
					wg.Go(func() {
						start := time.Now()
						if _, err := g.Get(ctx, key); err != nil {
							b.Error(err)
						}
						d := time.Since(start)
						mu.Lock()
						total += d
						mu.Unlock()
					})
				}
				wg.Wait()
				round++
			}
			b.ReportMetric(float64(calls.Load())/float64(round), "loader-calls/op")
			b.ReportMetric(float64(total.Microseconds())/float64(round*callers), "µs/get")
		})
	}
}
