package meshcache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshcache/meshcache/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// newTestNode returns a node closed when the test ends.
func newTestNode(t testing.TB) *Node {
	t.Helper()
	n, err := NewNode(Config{NodeName: "test"})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// origin is a fake database: each key has a version, bumped by writes; its
// loader returns the version as the value and counts its calls.
type origin struct {
	mu       sync.Mutex
	versions map[string]int
	tags     func(key string) []string
	calls    atomic.Int64
	// gate, if not nil, is received from before the first load returns;
	// later loads return at once.
	gate chan struct{}
	// entered, if not nil, is sent to once a load has read the version.
	entered chan string
	// down makes every load fail (a database outage).
	down atomic.Bool
}

// errDown is the origin's error while it is down.
var errDown = errors.New("origin down")

func newOrigin() *origin { return &origin{versions: make(map[string]int)} }

func (o *origin) bump(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.versions[key]++
	return o.versions[key]
}

func (o *origin) Load(ctx context.Context, key string) (Item, error) {
	call := o.calls.Add(1)
	o.mu.Lock()
	v, ok := o.versions[key]
	o.mu.Unlock()
	if o.entered != nil {
		o.entered <- key // the version is read: the load is in flight
	}
	if o.gate != nil && call == 1 {
		select {
		case <-o.gate:
		case <-ctx.Done():
			return Item{}, ctx.Err()
		}
	}
	if o.down.Load() {
		return Item{}, errDown
	}
	if !ok && key == "missing" {
		return Item{}, ErrNotFound
	}
	it := Item{Value: []byte(strconv.Itoa(v))}
	if o.tags != nil {
		it.Tags = o.tags(key)
	}
	return it, nil
}

func mustGroup(t testing.TB, n *Node, name string, l Loader, opts ...GroupOption) *Group {
	t.Helper()
	g, err := NewGroup(n, name, l, append([]GroupOption{WithJitter(0)}, opts...)...)
	if err != nil {
		t.Fatalf("NewGroup(%q): %v", name, err)
	}
	return g
}

// get returns the value of key, or the error's text: for goroutines other
// than the test's, which must not call t.Fatal.
func get(ctx context.Context, g *Group, key string) string {
	v, err := g.Get(ctx, key)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(v)
}

func mustGet(t testing.TB, g *Group, key string, opts ...CallOption) string {
	t.Helper()
	v, err := g.Get(context.Background(), key, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v)
}

func TestBadInput(t *testing.T) {
	n := newTestNode(t)
	g := mustGroup(t, n, "g", newOrigin())
	long := string(make([]byte, MaxKeyLen+1))
	ctx := t.Context()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"empty key", func() error { _, err := g.Get(ctx, ""); return err }(), ErrEmptyKey},
		{"long key", func() error { _, err := g.Get(ctx, long); return err }(), ErrKeyTooLong},
		{"long key in GetMany", func() error { _, err := g.GetMany(ctx, []string{"a", long}); return err }(), ErrKeyTooLong},
		{"empty key in Invalidate", g.Invalidate(ctx, "a", ""), ErrEmptyKey},
		{"empty tag", g.InvalidateTags(ctx, ""), ErrInvalidTag},
		{"value too large", g.Set(ctx, "k", Item{Value: make([]byte, DefaultMaxValueBytes+1)}), ErrValueTooLarge},
		{"negative TTL in Set", g.Set(ctx, "k", Item{TTL: -time.Second}), ErrInvalidTTL}, // -1 is NoExpiry
		{"zero TTL in Expire", func() error { _, err := g.Expire(ctx, "k", 0); return err }(), ErrInvalidTTL},
		{"nil loader", func() error { _, err := NewGroup(n, "x", nil); return err }(), ErrNilLoader},
		{"nil LoaderFunc", func() error { _, err := NewGroup(n, "x", LoaderFunc(nil)); return err }(), ErrNilLoader},
		{"duplicate group", func() error { _, err := NewGroup(n, "g", newOrigin()); return err }(), ErrGroupExists},
		{"empty group name", func() error { _, err := NewGroup(n, "", newOrigin()); return err }(), ErrInvalidName},
		{"zero TTL", func() error { _, err := NewGroup(n, "x", newOrigin(), WithTTL(0)); return err }(), ErrInvalidTTL},
		{"negative load timeout", func() error { _, err := NewGroup(n, "x", newOrigin(), WithLoadTimeout(-1)); return err }(), ErrInvalidTTL},
		{"jitter 1", func() error { _, err := NewGroup(n, "x", newOrigin(), WithJitter(1)); return err }(), ErrInvalidOption},
		{"nil batch loader", func() error { _, err := NewGroup(n, "x", newOrigin(), WithBatchLoader(nil)); return err }(), ErrNilLoader},
		{"zero main bytes", func() error { _, err := NewGroup(n, "x", newOrigin(), WithMainBytes(0)); return err }(), ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
	big := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: make([]byte, 11)}, nil
	})
	gb := mustGroup(t, n, "big", big, WithMaxValueBytes(10))
	if _, err := gb.Get(ctx, "k"); !errors.Is(err, ErrValueTooLarge) {
		t.Errorf("Get of a loaded value over the limit = %v, want ErrValueTooLarge", err)
	}
	if _, ok := n.Group("x"); ok {
		t.Errorf("a rejected group was registered")
	}
}

func TestClosed(t *testing.T) {
	n, err := NewNode(Config{})
	if err != nil {
		t.Fatal(err)
	}
	g := mustGroup(t, n, "g", newOrigin())
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	ctx := t.Context()
	calls := map[string]error{
		"Get":                func() error { _, err := g.Get(ctx, "k"); return err }(),
		"GetMany":            func() error { _, err := g.GetMany(ctx, []string{"k"}); return err }(),
		"Peek":               func() error { _, _, err := g.Peek(ctx, "k"); return err }(),
		"Set":                g.Set(ctx, "k", Item{}),
		"SetIfAbsent":        func() error { _, err := g.SetIfAbsent(ctx, "k", Item{}); return err }(),
		"Expire":             func() error { _, err := g.Expire(ctx, "k", time.Second); return err }(),
		"Invalidate":         g.Invalidate(ctx, "k"),
		"InvalidateTags":     g.InvalidateTags(ctx, "t"),
		"Clear":              g.Clear(ctx),
		"Refresh":            func() error { _, err := g.Refresh(ctx, "k"); return err }(),
		"Warm":               g.Warm(ctx, "k"),
		"Warm no keys":       g.Warm(ctx),
		"GetMany no keys":    func() error { _, err := g.GetMany(ctx, nil); return err }(),
		"Invalidate no keys": g.Invalidate(ctx),
		"NewGroup":           func() error { _, err := NewGroup(n, "h", newOrigin()); return err }(),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestCloseCancelsLoads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := NewNode(Config{})
		started := make(chan struct{})
		l := LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			close(started)
			<-ctx.Done()
			return Item{}, ctx.Err()
		})
		g := mustGroup(t, n, "g", l)
		errc := make(chan error, 1)
		go func() {
			_, err := g.Get(context.Background(), "k")
			errc <- err
		}()
		<-started
		n.Close() // returns only once the load has ended
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Get during Close = %v, want the load cancelled", err)
		}
	})
}

func TestKey(t *testing.T) {
	tests := []struct {
		parts []any
		want  string
	}{
		{[]any{"a:b", "c"}, `a\:b:c`},
		{[]any{"a", "b:c"}, `a:b\:c`},
		{[]any{`a\`, "b"}, `a\\:b`},
		{[]any{"user", 42, int64(-1), uint(7), 1.5, true, []byte("x")}, "user:42:-1:7:1.5:true:x"},
		{[]any{time.Second}, "1s"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := Key(tt.parts...); got != tt.want {
			t.Errorf("Key(%v) = %q, want %q", tt.parts, got, tt.want)
		}
	}
	if Key("a:b", "c") == Key("a", "b:c") || Key(`a\`, ":b") == Key(`a\:`, "b") {
		t.Errorf("Key is ambiguous")
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
