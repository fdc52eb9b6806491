package meshcache

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A loader that calls runtime.Goexit (t.FailNow in a test's loader) fails
// its flight's callers instead of leaving them waiting, and the next Get
// starts a new flight.
func TestLoaderGoexit(t *testing.T) {
	n := newTestNode(t)
	var calls atomic.Int64
	g, err := NewGroup(n, "g", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		calls.Add(1)
		runtime.Goexit()
		return Item{}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := g.Get(context.Background(), "k"); !errors.Is(err, ErrLoadFailed) {
			t.Errorf("Get %d of %q = %v, want an error wrapping ErrLoadFailed", i, "k", err)
		}
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("loader calls = %d, want 2", got)
	}
}

// Regression: a panic in a flight outside the loader (here a WithStoreIf
// predicate) fails the Get with ErrLoaderPanic; it must not crash the node.
func TestFlightPanicOutsideLoader(t *testing.T) {
	g := mustGroup(t, newTestNode(t), "g", newOrigin(),
		WithStoreIf(func(string, Item) bool { panic("predicate bug") }))
	if _, err := g.Get(t.Context(), "k"); !errors.Is(err, ErrLoaderPanic) {
		t.Fatalf("Get with a panicking predicate = %v, want ErrLoaderPanic", err)
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

// panicLogger panics on a message while armed: a misbehaving slog.Handler
// of the embedding program.
type panicLogger struct {
	slog.Handler
	msg   string
	armed *atomic.Bool
}

func (h panicLogger) Enabled(context.Context, slog.Level) bool { return true }
func (h panicLogger) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h panicLogger) WithGroup(string) slog.Handler            { return h }

func (h panicLogger) Handle(ctx context.Context, r slog.Record) error {
	if h.armed.Load() && r.Message == h.msg {
		panic("logger bug")
	}
	return nil
}

// Regression (review of the fetch flight on the leader's goroutine): a
// panic while a leader fetches (here in the node's logger, when the owner
// cannot serve) fails its Get and must still end the node's load, or Close
// waits for it forever.
func TestFetchLeaderPanicEndsLoad(t *testing.T) {
	var armed atomic.Bool
	nodes := startCluster(t, 2, func(c *Config) {
		c.Logger = slog.New(panicLogger{Handler: slog.DiscardHandler, msg: "meshcache: owner unreachable", armed: &armed})
	})
	g := mustGroup(t, nodes[0], "only-here", newOrigin()) // n1 has no such group
	key := keyOwnedBy(t, nodes[0], nodes[1].Name(), "k")
	armed.Store(true)
	if _, err := g.Get(t.Context(), key); !errors.Is(err, ErrLoaderPanic) {
		t.Errorf("Get with a panicking logger = %v, want ErrLoaderPanic", err)
	}
	armed.Store(false)
	closed := make(chan struct{})
	go func() {
		nodes[0].Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return: the panicked fetch's load was never ended")
	}
}
