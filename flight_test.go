package meshcache

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
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
