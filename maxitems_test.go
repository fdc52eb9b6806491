package meshcache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// keyValueLoader loads "value-" + key and counts its calls.
type keyValueLoader struct{ calls atomic.Int64 }

func (l *keyValueLoader) Load(ctx context.Context, key string) (Item, error) {
	l.calls.Add(1)
	return Item{Value: []byte("value-" + key)}, nil
}

func TestMaxItemsBoundsMain(t *testing.T) {
	l := &keyValueLoader{}
	g := mustGroup(t, newTestNode(t), "g", l, WithMaxItems(100))
	for i := range 1000 {
		key := fmt.Sprint("k", i)
		if got, want := mustGet(t, g, key), "value-"+key; got != want {
			t.Fatalf("Get(%q) = %q, want %q", key, got, want)
		}
		if n := g.Stats().Items; n > 100 {
			t.Fatalf("after Get(%q): Items = %d, over 100", key, n)
		}
	}
	st := g.Stats()
	if st.Items != 100 || st.Evictions != 900 || st.Loads != 1000 {
		t.Errorf("Items, Evictions, Loads = %d, %d, %d, want 100, 900, 1000", st.Items, st.Evictions, st.Loads)
	}
	// The 100 most recent keys are cached: no load, right values.
	for i := 900; i < 1000; i++ {
		key := fmt.Sprint("k", i)
		e, ok, err := g.Peek(t.Context(), key)
		if err != nil || !ok || string(e.Value) != "value-"+key {
			t.Errorf("Peek(%q) = %q, %v, %v, want %q cached", key, e.Value, ok, err, "value-"+key)
		}
	}
	// An evicted key loads again, with its value.
	if got, want := mustGet(t, g, "k0"), "value-k0"; got != want {
		t.Errorf("Get(k0) after its eviction = %q, want %q", got, want)
	}
	if got := l.calls.Load(); got != 1001 {
		t.Errorf("loader calls = %d, want 1001", got)
	}
	if n := g.Stats().Items; n != 100 {
		t.Errorf("Items = %d, want 100", n)
	}
}

func TestMaxItemsWithMainBytes(t *testing.T) {
	// 100 entries of ~1 KiB do not fit in 20 KiB: the bytes bind first.
	l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: make([]byte, 1000)}, nil
	})
	g := mustGroup(t, newTestNode(t), "g", l, WithMaxItems(100), WithMainBytes(20_000))
	for i := range 300 {
		mustGet(t, g, fmt.Sprint(i))
	}
	if st := g.Stats(); st.Bytes > 20_000 || st.Items >= 20 || st.Items == 0 {
		t.Errorf("Items, Bytes = %d, %d, want under 20 entries within 20000 bytes", st.Items, st.Bytes)
	}
}

func TestMaxItemsInvalid(t *testing.T) {
	n := newTestNode(t)
	for _, v := range []int{0, -1} {
		if _, err := NewGroup(n, "g", newOrigin(), WithMaxItems(v)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewGroup(WithMaxItems(%d)) = %v, want ErrInvalidOption", v, err)
		}
	}
}

func TestMaxItemsHotShare(t *testing.T) {
	tests := []struct {
		maxItems  int
		mainBytes int64
		hotBytes  int64
		want      int
	}{
		{100, DefaultMainBytes, DefaultMainBytes / 8, 13},
		{800, DefaultMainBytes, DefaultMainBytes / 8, 100},
		{1, DefaultMainBytes, DefaultMainBytes / 8, 1},
		{100, 1000, 1000, 100},
		{100, 1000, 3000, 300},
		{100, DefaultMainBytes, 1, 1},
		{1 << 30, 1000, 4000, 1 << 30},
		{0, DefaultMainBytes, DefaultMainBytes / 8, 0}, // no WithMaxItems
		{100, DefaultMainBytes, -1, 0},                 // hot cache off
	}
	for _, tc := range tests {
		c := groupConfig{maxItems: tc.maxItems, mainBytes: tc.mainBytes}
		if got := c.hotItems(tc.hotBytes); got != tc.want {
			t.Errorf("hotItems with maxItems %d, main %d bytes, hot %d bytes = %d, want %d", tc.maxItems, tc.mainBytes, tc.hotBytes, got, tc.want)
		}
	}
}

// TestMaxItemsBoundsHot reads keys another node owns: the hot cache keeps
// at most its share of the count, an eighth.
func TestMaxItemsBoundsHot(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	l := &keyValueLoader{}
	gs := newClusterGroups(t, nodes, "g", l, WithMaxItems(80))
	ctx := t.Context()
	for i := range 400 {
		key := fmt.Sprint("k", i)
		v, err := gs[0].Get(ctx, key)
		if err != nil || string(v) != "value-"+key {
			t.Fatalf("Get(%q) = %q, %v, want %q", key, v, err, "value-"+key)
		}
	}
	st0, st1 := gs[0].Stats(), gs[1].Stats()
	if st0.PeerFetches == 0 {
		t.Fatalf("no key was fetched from the other node")
	}
	if st0.HotItems > 10 || st0.HotItems == 0 {
		t.Errorf("HotItems = %d, want 1 to 10 (80/8)", st0.HotItems)
	}
	if st0.Items > 80 || st1.Items > 80 {
		t.Errorf("Items = %d and %d, want at most 80 each", st0.Items, st1.Items)
	}
}
