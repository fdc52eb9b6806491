package meshcache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meshcache/meshcache/codec"
)

// profile is the value of the typed tests' groups, encoded as JSON.
type profile struct {
	Name    string  `json:"name"`
	Version int     `json:"version"`
	Score   float64 `json:"score,omitempty"`
}

// profiles is a fake database for typed groups. Each key has a version,
// bumped by writes. A key starting with "missing" has no value; one
// starting with "nan" has a NaN score, which JSON cannot encode. Its
// loaders count their calls and record their batches.
type profiles struct {
	mu       sync.Mutex
	versions map[string]int
	batches  [][]string // guarded by mu
	tags     func(key string) []string
	calls    atomic.Int64 // calls of load
}

func newProfiles() *profiles { return &profiles{versions: make(map[string]int)} }

func (p *profiles) bump(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.versions[key]++
}

// item returns key's item, and false for a key that has no value.
func (p *profiles) item(key string) (TypedItem[profile], bool) {
	if strings.HasPrefix(key, "missing") {
		return TypedItem[profile]{}, false
	}
	p.mu.Lock()
	v := p.versions[key]
	p.mu.Unlock()
	it := TypedItem[profile]{Value: profile{Name: key, Version: v}}
	if strings.HasPrefix(key, "nan") {
		it.Value.Score = math.NaN()
	}
	if p.tags != nil {
		it.Tags = p.tags(key)
	}
	return it, true
}

func (p *profiles) load(ctx context.Context, key string) (TypedItem[profile], error) {
	p.calls.Add(1)
	it, ok := p.item(key)
	if !ok {
		return TypedItem[profile]{}, ErrNotFound
	}
	return it, nil
}

func (p *profiles) loadMany(ctx context.Context, keys []string) (map[string]TypedItem[profile], error) {
	p.mu.Lock()
	p.batches = append(p.batches, slices.Clone(keys))
	p.mu.Unlock()
	out := make(map[string]TypedItem[profile], len(keys))
	for _, k := range keys {
		if it, ok := p.item(k); ok {
			out[k] = it
		}
	}
	return out, nil
}

// batchKeys returns the keys of every batch so far, each batch sorted.
func (p *profiles) batchKeys() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([][]string, len(p.batches))
	for i, b := range p.batches {
		out[i] = slices.Sorted(slices.Values(b))
	}
	return out
}

func mustTyped(t testing.TB, n *Node, name string, p *profiles, opts ...GroupOption) *TypedGroup[profile] {
	t.Helper()
	g, err := NewTypedGroup(n, name, codec.JSON[profile](), p.load, append([]GroupOption{WithJitter(0)}, opts...)...)
	if err != nil {
		t.Fatalf("NewTypedGroup(%q): %v", name, err)
	}
	return g
}

func mustTypedGet(t testing.TB, g *TypedGroup[profile], key string) profile {
	t.Helper()
	v, err := g.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

// plainCodec is a codec of strings whose errors wrap neither
// codec.ErrEncode nor codec.ErrDecode: it cannot encode "unencodable" nor
// decode "garbage".
type plainCodec struct{}

var errPlain = errors.New("plain codec failure")

func (plainCodec) Marshal(v string) ([]byte, error) {
	if v == "unencodable" {
		return nil, errPlain
	}
	return []byte(v), nil
}

func (plainCodec) Unmarshal(b []byte) (string, error) {
	if string(b) == "garbage" {
		return "", errPlain
	}
	return string(b), nil
}

func TestTypedGetAndAccessors(t *testing.T) {
	p := newProfiles()
	g := mustTyped(t, newTestNode(t), "profiles", p)
	if g.Name() != "profiles" || g.Group().Name() != "profiles" {
		t.Errorf("Name() = %q, Group().Name() = %q; want profiles", g.Name(), g.Group().Name())
	}
	if got, want := mustTypedGet(t, g, "ada"), (profile{Name: "ada"}); got != want {
		t.Fatalf("Get = %+v, want %+v", got, want)
	}
	if got := mustTypedGet(t, g, "ada"); got.Name != "ada" || p.calls.Load() != 1 {
		t.Fatalf("second Get = %+v with %d loads, want ada and one load", got, p.calls.Load())
	}
	// The group underneath holds the encoded value.
	raw, err := g.Group().Get(t.Context(), "ada")
	if err != nil || string(raw) != `{"name":"ada","version":0}` {
		t.Errorf("Group().Get = %s, %v; want the JSON encoding", raw, err)
	}
	if st := g.Stats(); st.Loads != 1 || st.Hits != 2 || st.Misses != 1 {
		t.Errorf("Stats = %+v, want 1 load, 2 hits, 1 miss", st)
	}
	if _, err := g.Get(t.Context(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := g.Get(t.Context(), ""); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Get(\"\") = %v, want ErrEmptyKey", err)
	}
}

func TestNewTypedGroupErrors(t *testing.T) {
	n := newTestNode(t)
	p := newProfiles()
	if _, err := NewTypedGroup(n, "g", nil, p.load); !errors.Is(err, ErrNilLoader) {
		t.Errorf("nil codec: %v, want ErrNilLoader", err)
	}
	if _, err := NewTypedGroup[profile](n, "g", codec.JSON[profile](), nil); !errors.Is(err, ErrNilLoader) {
		t.Errorf("nil loader: %v, want ErrNilLoader", err)
	}
	if _, err := NewTypedGroup(n, "g", codec.JSON[profile](), p.load, WithTTL(-time.Second)); !errors.Is(err, ErrInvalidTTL) {
		t.Errorf("bad option: %v, want ErrInvalidTTL", err)
	}
	mustTyped(t, n, "g", p)
	if _, err := NewTypedGroup(n, "g", codec.JSON[profile](), p.load); !errors.Is(err, ErrGroupExists) {
		t.Errorf("second group g: %v, want ErrGroupExists", err)
	}
}

func TestTypedSetPeekSetIfAbsent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newProfiles()
		g := mustTyped(t, newTestNode(t), "g", p)
		ctx := context.Background()
		set := profile{Name: "set", Version: 7}
		if err := g.Set(ctx, "k", TypedItem[profile]{Value: set, TTL: time.Minute, Tags: []string{"t"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		e, ok, err := g.Peek(ctx, "k")
		if err != nil || !ok {
			t.Fatalf("Peek = %v, %v", ok, err)
		}
		want := TypedEntry[profile]{Key: "k", Value: set, Tags: []string{"t"}, Age: time.Second, TTL: 59 * time.Second}
		if fmt.Sprint(e) != fmt.Sprint(want) {
			t.Errorf("Peek = %+v, want %+v", e, want)
		}
		if v := mustTypedGet(t, g, "k"); v != set || p.calls.Load() != 0 {
			t.Errorf("Get after Set = %+v with %d loads, want %+v and none", v, p.calls.Load(), set)
		}
		if _, ok, err := g.Peek(ctx, "other"); ok || err != nil || p.calls.Load() != 0 {
			t.Errorf("Peek of an absent key = %v, %v with %d loads; want false, nil, none", ok, err, p.calls.Load())
		}
		if ok, err := g.SetIfAbsent(ctx, "k", TypedItem[profile]{Value: profile{Name: "new"}}); ok || err != nil {
			t.Errorf("SetIfAbsent on a cached key = %v, %v; want false", ok, err)
		}
		if v := mustTypedGet(t, g, "k"); v != set {
			t.Errorf("SetIfAbsent replaced a cached value: Get = %+v", v)
		}
		if ok, err := g.SetIfAbsent(ctx, "k2", TypedItem[profile]{Value: profile{Name: "new"}}); !ok || err != nil {
			t.Errorf("SetIfAbsent on an absent key = %v, %v; want true", ok, err)
		}
		if v := mustTypedGet(t, g, "k2"); v.Name != "new" || p.calls.Load() != 0 {
			t.Errorf("Get after SetIfAbsent = %+v with %d loads", v, p.calls.Load())
		}
	})
}

func TestTypedEncodeErrors(t *testing.T) {
	ctx := t.Context()
	n := newTestNode(t)
	p := newProfiles()
	g := mustTyped(t, n, "g", p)
	bad := TypedItem[profile]{Value: profile{Name: "x", Score: math.NaN()}}
	if err := g.Set(ctx, "k", bad); !errors.Is(err, codec.ErrEncode) || !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("Set of a NaN = %v, want codec.ErrEncode naming the key", err)
	}
	if ok, err := g.SetIfAbsent(ctx, "k", bad); ok || !errors.Is(err, codec.ErrEncode) {
		t.Errorf("SetIfAbsent of a NaN = %v, %v; want codec.ErrEncode", ok, err)
	}
	if _, ok, _ := g.Peek(ctx, "k"); ok {
		t.Errorf("a value that did not encode was stored")
	}
	// A loaded value that does not encode fails that load, and is not cached.
	for range 2 {
		_, err := g.Get(ctx, "nan1")
		if !errors.Is(err, codec.ErrEncode) || !errors.Is(err, ErrLoadFailed) {
			t.Fatalf("Get(nan1) = %v, want ErrLoadFailed and codec.ErrEncode", err)
		}
	}
	if p.calls.Load() != 2 {
		t.Errorf("loads of nan1 = %d, want 2 (failures are not cached)", p.calls.Load())
	}

	// A codec's own errors are wrapped with the codec sentinels too.
	pg, err := NewTypedGroup(n, "plain", plainCodec{}, func(ctx context.Context, key string) (TypedItem[string], error) {
		return TypedItem[string]{Value: key}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Set(ctx, "k", TypedItem[string]{Value: "unencodable"}); !errors.Is(err, codec.ErrEncode) || !errors.Is(err, errPlain) {
		t.Errorf("Set with a plain codec error = %v, want codec.ErrEncode and the codec's error", err)
	}
	if _, err := pg.Get(ctx, "unencodable"); !errors.Is(err, codec.ErrEncode) || !errors.Is(err, errPlain) {
		t.Errorf("load with a plain codec error = %v, want codec.ErrEncode and the codec's error", err)
	}
}

// A cached value the codec cannot decode fails the calls that read it, with
// an error naming the key; the others are unaffected.
func TestTypedDecodeErrors(t *testing.T) {
	ctx := t.Context()
	n := newTestNode(t)
	p := newProfiles()
	g := mustTyped(t, n, "g", p)
	if err := g.Group().Set(ctx, "bad", Item{Value: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	isDecode := func(err error) bool {
		return errors.Is(err, codec.ErrDecode) && strings.Contains(err.Error(), `"bad"`)
	}
	if v, err := g.Get(ctx, "bad"); !isDecode(err) || v != (profile{}) {
		t.Errorf("Get(bad) = %+v, %v; want the zero value and codec.ErrDecode naming the key", v, err)
	}
	if _, ok, err := g.Peek(ctx, "bad"); ok || !isDecode(err) {
		t.Errorf("Peek(bad) = %v, %v; want false and codec.ErrDecode naming the key", ok, err)
	}
	got, err := g.GetMany(ctx, []string{"good", "bad", "missing"})
	if !isDecode(err) || len(got) != 1 || got["good"].Name != "good" {
		t.Errorf("GetMany = %+v, %v; want good alone and codec.ErrDecode naming bad", got, err)
	}
	// Refresh replaces the bad value with a loaded one.
	if v, err := g.Refresh(ctx, "bad"); err != nil || v.Name != "bad" {
		t.Errorf("Refresh(bad) = %+v, %v", v, err)
	}
	if v := mustTypedGet(t, g, "bad"); v.Name != "bad" {
		t.Errorf("Get after Refresh = %+v", v)
	}

	pg, err := NewTypedGroup(n, "plain", plainCodec{}, func(ctx context.Context, key string) (TypedItem[string], error) {
		return TypedItem[string]{Value: key}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Get(ctx, "garbage"); !errors.Is(err, codec.ErrDecode) || !errors.Is(err, errPlain) {
		t.Errorf("Get with a plain codec error = %v, want codec.ErrDecode and the codec's error", err)
	}
}

func TestTypedRefresh(t *testing.T) {
	p := newProfiles()
	g := mustTyped(t, newTestNode(t), "g", p)
	mustTypedGet(t, g, "k")
	p.bump("k")
	if v := mustTypedGet(t, g, "k"); v.Version != 0 {
		t.Fatalf("cached Get = %+v, want version 0", v)
	}
	if v, err := g.Refresh(t.Context(), "k"); err != nil || v.Version != 1 {
		t.Fatalf("Refresh = %+v, %v; want version 1", v, err)
	}
	if v := mustTypedGet(t, g, "k"); v.Version != 1 || p.calls.Load() != 2 {
		t.Fatalf("Get after Refresh = %+v with %d loads, want version 1 and 2 loads", v, p.calls.Load())
	}
	if _, err := g.Refresh(t.Context(), "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Refresh(missing) = %v, want ErrNotFound", err)
	}
}

func TestTypedExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newProfiles()
		g := mustTyped(t, newTestNode(t), "g", p, WithTTL(time.Hour))
		ctx := context.Background()
		mustTypedGet(t, g, "k")
		if ok, err := g.Expire(ctx, "k", 2*time.Second); !ok || err != nil {
			t.Fatalf("Expire of a cached key = %v, %v; want true", ok, err)
		}
		if e, ok, _ := g.Peek(ctx, "k"); !ok || e.TTL != 2*time.Second {
			t.Fatalf("Peek after Expire = %+v, %v; want TTL 2s", e, ok)
		}
		time.Sleep(3 * time.Second)
		if _, ok, _ := g.Peek(ctx, "k"); ok {
			t.Fatalf("k still cached after its new TTL")
		}
		mustTypedGet(t, g, "k")
		if p.calls.Load() != 2 {
			t.Errorf("loads = %d, want 2 (k loaded again after it expired)", p.calls.Load())
		}
		if ok, err := g.Expire(ctx, "absent", time.Second); ok || err != nil {
			t.Errorf("Expire of an absent key = %v, %v; want false, nil", ok, err)
		}
		if _, err := g.Expire(ctx, "k", 0); !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("Expire with TTL 0 = %v, want ErrInvalidTTL", err)
		}
	})
}

func TestTypedInvalidateTagsClear(t *testing.T) {
	p := newProfiles()
	p.tags = func(key string) []string { return []string{"first:" + key[:1]} }
	g := mustTyped(t, newTestNode(t), "g", p)
	ctx := t.Context()
	keys := []string{"a1", "a2", "b1", "b2"}
	for _, k := range keys {
		mustTypedGet(t, g, k)
		p.bump(k) // cached values are now stale
	}
	cached := func(k string) bool {
		_, ok, err := g.Peek(ctx, k)
		if err != nil {
			t.Fatalf("Peek(%q): %v", k, err)
		}
		return ok
	}

	if err := g.Invalidate(ctx, "a1", "b1"); err != nil {
		t.Fatal(err)
	}
	if cached("a1") || cached("b1") || !cached("a2") || !cached("b2") {
		t.Fatalf("after Invalidate(a1, b1): want a2 and b2 alone cached")
	}
	if v := mustTypedGet(t, g, "a1"); v.Version != 1 {
		t.Fatalf("Get(a1) after Invalidate = %+v, want version 1", v)
	}

	if err := g.InvalidateTags(ctx, "first:b"); err != nil {
		t.Fatal(err)
	}
	if cached("b2") || !cached("a1") || !cached("a2") {
		t.Fatalf("after InvalidateTags(first:b): want a1 and a2 alone cached")
	}
	if v := mustTypedGet(t, g, "b2"); v.Version != 1 {
		t.Fatalf("Get(b2) after InvalidateTags = %+v, want version 1", v)
	}

	if err := g.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if cached(k) {
			t.Fatalf("%s cached after Clear", k)
		}
	}
	if v := mustTypedGet(t, g, "a2"); v.Version != 1 {
		t.Fatalf("Get(a2) after Clear = %+v, want version 1", v)
	}
}

func TestTypedGetManyWarm(t *testing.T) {
	p := newProfiles()
	g := mustTyped(t, newTestNode(t), "g", p)
	mustTypedGet(t, g, "a")
	got, err := g.GetMany(t.Context(), []string{"a", "b", "c", "b", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["a"].Name != "a" || got["b"].Name != "b" || got["c"].Name != "c" {
		t.Fatalf("GetMany = %+v, want a, b, c", got)
	}
	if p.calls.Load() != 4 {
		t.Fatalf("loads = %d, want 4 (a, then b, c and missing once each)", p.calls.Load())
	}
	if err := g.Warm(t.Context(), "c", "d", "missing"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := g.Peek(t.Context(), "d"); !ok || p.calls.Load() != 6 {
		t.Fatalf("Warm: d cached %v after %d loads, want true after 6 (d and missing)", ok, p.calls.Load())
	}
	if _, err := g.GetMany(t.Context(), []string{"a", ""}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("GetMany with an empty key = %v, want ErrEmptyKey", err)
	}
}

func TestTypedBatchLoader(t *testing.T) {
	p := newProfiles()
	g := mustTyped(t, newTestNode(t), "g", p, WithTypedBatchLoader(p.loadMany), WithNegativeTTL(time.Minute))
	mustTypedGet(t, g, "a") // through the single loader
	got, err := g.GetMany(t.Context(), []string{"a", "b", "c", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["a"].Name != "a" || got["b"].Name != "b" || got["c"].Name != "c" {
		t.Fatalf("GetMany = %+v, want a, b, c", got)
	}
	if b := p.batchKeys(); fmt.Sprint(b) != "[[b c missing]]" || p.calls.Load() != 1 {
		t.Fatalf("batches %q and %d single loads, want one batch of b, c, missing and one single load", b, p.calls.Load())
	}
	if err := g.Warm(t.Context(), "b", "c", "d", "missing"); err != nil {
		t.Fatal(err)
	}
	if b := p.batchKeys(); len(b) != 2 || fmt.Sprint(b[1]) != "[d]" {
		t.Fatalf("Warm batches = %q, want a second batch of [d] alone", b)
	}
	if e, ok, err := g.Peek(t.Context(), "d"); !ok || err != nil || e.Value.Name != "d" {
		t.Fatalf("Peek(d) after Warm = %+v, %v, %v", e, ok, err)
	}
	if st := g.Stats(); st.BatchLoads != 2 || st.Loads != 5 {
		t.Fatalf("Stats = %+v, want 2 batch loads and 5 loads", st)
	}
}

// An item of the batch that does not encode fails the batch (a BatchLoader
// has no per-key error), with an error naming the key; nothing is cached.
func TestTypedBatchLoaderEncodeError(t *testing.T) {
	p := newProfiles()
	g := mustTyped(t, newTestNode(t), "g", p, WithTypedBatchLoader(p.loadMany))
	got, err := g.GetMany(t.Context(), []string{"a", "nan1"})
	if !errors.Is(err, codec.ErrEncode) || !errors.Is(err, ErrLoadFailed) || !strings.Contains(err.Error(), `"nan1"`) {
		t.Fatalf("GetMany = %v, want ErrLoadFailed and codec.ErrEncode naming nan1", err)
	}
	if len(got) != 0 {
		t.Errorf("GetMany of a failed batch = %+v, want nothing", got)
	}
	for _, k := range []string{"a", "nan1"} {
		if _, ok, _ := g.Peek(t.Context(), k); ok {
			t.Errorf("%s cached from a failed batch", k)
		}
	}
	// Keys the loader returns without being asked are not encoded: an
	// unencodable one does not fail the batch.
	extra := func(ctx context.Context, keys []string) (map[string]TypedItem[profile], error) {
		m, _ := p.loadMany(ctx, keys)
		m["nan-extra"], _ = p.item("nan-extra")
		return m, nil
	}
	g2 := mustTyped(t, g.Group().node, "g2", p, WithTypedBatchLoader(extra))
	if got, err := g2.GetMany(t.Context(), []string{"a"}); err != nil || got["a"].Name != "a" {
		t.Errorf("GetMany with an extra unencodable item = %+v, %v; want a", got, err)
	}
}

func TestTypedBatchLoaderOptionErrors(t *testing.T) {
	n := newTestNode(t)
	p := newProfiles()
	if _, err := NewGroup(n, "untyped", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{}, ErrNotFound
	}), WithTypedBatchLoader(p.loadMany)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("NewGroup with WithTypedBatchLoader: %v, want ErrInvalidOption", err)
	}
	strs := func(ctx context.Context, keys []string) (map[string]TypedItem[string], error) { return nil, nil }
	if _, err := NewTypedGroup(n, "mismatch", codec.JSON[profile](), p.load, WithTypedBatchLoader(strs)); !errors.Is(err, ErrInvalidOption) ||
		!strings.Contains(err.Error(), "string") {
		t.Errorf("NewTypedGroup[profile] with a batch loader of strings: %v, want ErrInvalidOption naming string", err)
	}
	if _, err := NewTypedGroup(n, "nil", codec.JSON[profile](), p.load, WithTypedBatchLoader[profile](nil)); !errors.Is(err, ErrNilLoader) {
		t.Errorf("WithTypedBatchLoader(nil): %v, want ErrNilLoader", err)
	}
	if _, err := NewTypedGroup(n, "window", codec.JSON[profile](), p.load, WithBatchWindow(time.Millisecond)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithBatchWindow without a batch loader: %v, want ErrInvalidOption", err)
	}
	// The refused names are free, and the last batch loader given wins.
	raw := BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]Item, error) {
		return nil, errors.New("the raw batch loader ran")
	})
	g := mustTyped(t, n, "mismatch", p, WithBatchLoader(raw), WithTypedBatchLoader(p.loadMany))
	if got, err := g.GetMany(t.Context(), []string{"a"}); err != nil || got["a"].Name != "a" {
		t.Errorf("GetMany = %+v, %v; want a from the typed batch loader", got, err)
	}
	g = mustTyped(t, n, "untyped", p, WithTypedBatchLoader(p.loadMany), WithBatchLoader(raw))
	if _, err := g.GetMany(t.Context(), []string{"a"}); err == nil || !strings.Contains(err.Error(), "raw") {
		t.Errorf("GetMany = %v; want the raw batch loader's error", err)
	}
	// The caller's options are not changed by NewTypedGroup.
	opts := make([]GroupOption, 1, 4)
	opts[0] = WithTTL(time.Minute)
	if _, err := NewTypedGroup(n, "opts", codec.JSON[profile](), p.load, opts...); err != nil {
		t.Fatal(err)
	}
	if opts[:2][1] != nil {
		t.Errorf("NewTypedGroup wrote past the caller's options")
	}
}

// With a batch window, single Gets of a typed group are loaded together by
// the typed batch loader.
func TestTypedBatchWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newProfiles()
		g := mustTyped(t, newTestNode(t), "g", p, WithTypedBatchLoader(p.loadMany), WithBatchWindow(time.Millisecond))
		keys := []string{"a", "b", "c"}
		got := make([]profile, len(keys))
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i, k := range keys {
			wg.Go(func() { got[i], errs[i] = g.Get(context.Background(), k) })
		}
		wg.Wait()
		for i, k := range keys {
			if errs[i] != nil || got[i].Name != k {
				t.Errorf("Get(%q) = %+v, %v", k, got[i], errs[i])
			}
		}
		if b := p.batchKeys(); fmt.Sprint(b) != "[[a b c]]" || p.calls.Load() != 0 {
			t.Errorf("batches %q and %d single loads, want one batch of a, b, c and none", b, p.calls.Load())
		}
		if _, err := g.Get(context.Background(), "nan1"); !errors.Is(err, ErrLoadFailed) || !errors.Is(err, codec.ErrEncode) {
			t.Errorf("Get(nan1) = %v, want ErrLoadFailed and codec.ErrEncode", err)
		}
	})
}

// On a cluster, GetMany on a node that owns none of the keys has each
// owner load its keys with one call of its typed batch loader; the values
// are then hot copies, and an owner's encoding failure fails its keys alone.
func TestTypedBatchLoaderCluster(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	ps := make([]*profiles, len(nodes))
	gs := make([]*TypedGroup[profile], len(nodes))
	for i, n := range nodes {
		ps[i] = newProfiles()
		gs[i] = mustTyped(t, n, "g", ps[i], WithTypedBatchLoader(ps[i].loadMany), WithNegativeTTL(time.Minute))
	}
	owned := func(owner string, prefixes ...string) []string {
		var ks []string
		for _, pre := range prefixes {
			ks = append(ks, keyOwnedBy(t, nodes[0], owner, pre))
		}
		return ks
	}
	k1 := owned("n1", "a", "b", "missing")
	k2 := owned("n2", "c", "d")
	keys := append(slices.Clone(k1), k2...)
	ctx := t.Context()

	got, err := gs[0].GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("GetMany on n0 = %+v, want the 4 keys other than %s", got, k1[2])
	}
	for k, v := range got {
		if v != (profile{Name: k}) {
			t.Errorf("GetMany on n0: %s = %+v", k, v)
		}
	}
	if b := ps[0].batchKeys(); len(b) != 0 || ps[0].calls.Load() != 0 {
		t.Errorf("n0 loaded: batches %q, %d single loads; want none", b, ps[0].calls.Load())
	}
	for i, want := range map[int][]string{1: k1, 2: k2} {
		w := fmt.Sprint([][]string{slices.Sorted(slices.Values(want))})
		if b := ps[i].batchKeys(); fmt.Sprint(b) != w || ps[i].calls.Load() != 0 {
			t.Errorf("n%d: batches %q and %d single loads, want %s and none", i, b, ps[i].calls.Load(), w)
		}
	}

	// Served again from n0's hot copies and the owners' caches: no load.
	if got, err := gs[0].GetMany(ctx, keys); err != nil || len(got) != 4 {
		t.Fatalf("second GetMany on n0 = %+v, %v", got, err)
	}
	if got, err := gs[1].GetMany(ctx, k1); err != nil || len(got) != 2 {
		t.Fatalf("GetMany on the owner n1 = %+v, %v", got, err)
	}
	for i, p := range ps {
		if n := len(p.batchKeys()); n > 1 || p.calls.Load() != 0 {
			t.Errorf("n%d loaded again: %d batches, %d single loads", i, n, p.calls.Load())
		}
	}
	if st := gs[0].Stats(); st.HotHits != 4 {
		t.Errorf("n0 Stats = %+v, want 4 hot hits", st)
	}

	// An item n1 cannot encode fails n1's batch; n2's keys are served.
	bad := keyOwnedBy(t, nodes[0], "n1", "nan")
	fresh := keyOwnedBy(t, nodes[0], "n2", "e")
	got, err = gs[0].GetMany(ctx, []string{bad, fresh})
	if !errors.Is(err, ErrLoadFailed) || !strings.Contains(err.Error(), "codec: encode") || !strings.Contains(err.Error(), bad) {
		t.Errorf("GetMany with %s = %v, want ErrLoadFailed from an encoding error naming it", bad, err)
	}
	if len(got) != 1 || got[fresh].Name != fresh {
		t.Errorf("GetMany with %s = %+v, want %s alone", bad, got, fresh)
	}
}

func TestTypedSetManyDelete(t *testing.T) {
	ctx := t.Context()
	p := newProfiles()
	g := mustTyped(t, newTestNode(t), "g", p)
	a, b := profile{Name: "a", Version: 1}, profile{Name: "b", Version: 2}
	if err := g.SetMany(ctx, map[string]TypedItem[profile]{"a": {Value: a}, "b": {Value: b, TTL: NoExpiry}}); err != nil {
		t.Fatal(err)
	}
	if va, vb := mustTypedGet(t, g, "a"), mustTypedGet(t, g, "b"); va != a || vb != b || p.calls.Load() != 0 {
		t.Errorf("Get after SetMany = %+v, %+v with %d loads; want %+v, %+v and none", va, vb, p.calls.Load(), a, b)
	}
	if e, ok, err := g.Peek(ctx, "b"); !ok || err != nil || e.TTL != 0 {
		t.Errorf("Peek of a NoExpiry item = %+v, %v, %v; want TTL 0 (no expiry)", e, ok, err)
	}
	bad := map[string]TypedItem[profile]{"c": {Value: profile{Name: "c"}}, "nan": {Value: profile{Score: math.NaN()}}}
	if err := g.SetMany(ctx, bad); !errors.Is(err, codec.ErrEncode) || !strings.Contains(err.Error(), `"nan"`) {
		t.Errorf("SetMany with a NaN = %v, want codec.ErrEncode naming the key", err)
	}
	if _, ok, _ := g.Peek(ctx, "c"); ok {
		t.Error("SetMany that failed to encode one value stored another")
	}
	if existed, err := g.Delete(ctx, "a"); !existed || err != nil {
		t.Errorf("Delete of a cached key = %v, %v; want true", existed, err)
	}
	if _, ok, _ := g.Peek(ctx, "a"); ok {
		t.Error("Delete left the key cached")
	}
	if existed, err := g.Delete(ctx, "a"); existed || err != nil {
		t.Errorf("Delete of an absent key = %v, %v; want false", existed, err)
	}
}
