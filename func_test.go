package meshcache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/meshcache/meshcache/codec"
)

type searchQuery struct {
	Org  string
	Page int
	Opts map[string]bool
}

type searchHit struct{ ID, Title string }

// TestFuncAcrossNodes: the fleet computes each call once, on the owner of
// its argument; equal arguments (a map in them included) share the result;
// Invalidate and tags reach every node.
func TestFuncAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	var calls atomic.Int64
	version := atomic.Int64{}
	search := func(ctx context.Context, q searchQuery) ([]searchHit, error) {
		calls.Add(1)
		if q.Org == "broken" {
			return nil, errors.New("search backend down")
		}
		return []searchHit{{ID: fmt.Sprint(q.Page), Title: fmt.Sprintf("%s v%d", q.Org, version.Load())}}, nil
	}
	fs := make([]*Func[searchQuery, []searchHit], len(nodes))
	for i, n := range nodes {
		f, err := NewFunc(n, "search", codec.JSON[searchQuery](), codec.JSON[[]searchHit](), search,
			FuncTags(func(q searchQuery, _ []searchHit) []string { return []string{"org:" + q.Org} }))
		if err != nil {
			t.Fatal(err)
		}
		fs[i] = f
	}
	ctx := context.Background()
	q := searchQuery{Org: "acme", Page: 2, Opts: map[string]bool{"a": true, "b": false, "c": true}}
	for _, f := range fs {
		hits, err := f.Call(ctx, q)
		if err != nil || len(hits) != 1 || hits[0].Title != "acme v0" {
			t.Fatalf("%s: Call = %v, %v", f.Group().node.Name(), hits, err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("function ran %d times for one argument on three nodes, want 1", got)
	}
	key, _ := fs[0].Key(q)
	owner := nodes[0].Owner(key)
	for i, n := range nodes {
		if n.Name() == owner && fs[i].Group().Stats().Loads != 1 {
			t.Errorf("the owner %s did not run the call: %+v", owner, fs[i].Group().Stats())
		}
	}

	version.Store(1)
	if err := fs[1].Invalidate(ctx, q); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if hits, _ := f.Call(ctx, q); hits[0].Title != "acme v1" {
			t.Errorf("after Invalidate: %v", hits)
		}
	}
	version.Store(2)
	if err := fs[2].InvalidateTags(ctx, "org:acme"); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if hits, _ := f.Call(ctx, q); hits[0].Title != "acme v2" {
			t.Errorf("after InvalidateTags: %v", hits)
		}
	}
	if err := fs[0].Set(ctx, q, []searchHit{{ID: "x", Title: "pinned"}}, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if hits, _ := f.Call(ctx, q); hits[0].Title != "pinned" {
			t.Errorf("after Set: %v", hits)
		}
	}
	if hits, err := fs[2].Refresh(ctx, q); err != nil || hits[0].Title != "acme v2" {
		t.Errorf("Refresh = %v, %v", hits, err)
	}
	if _, err := fs[0].Call(ctx, searchQuery{Org: "broken"}); err == nil || !strings.Contains(err.Error(), "search backend down") {
		t.Errorf("a failing function: %v", err)
	}
}

func TestFuncBadInput(t *testing.T) {
	n := newTestNode(t)
	echo := func(ctx context.Context, s string) (string, error) { return s, nil }
	f, err := NewFunc(n, "echo", codec.String(), codec.String(), echo)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.Call(ctx, strings.Repeat("x", MaxKeyLen+1)); !errors.Is(err, ErrKeyTooLong) {
		t.Errorf("an argument over the key limit: %v, want ErrKeyTooLong", err)
	}
	if _, err := f.Call(ctx, ""); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("an argument that encodes to nothing: %v, want ErrEmptyKey", err)
	}
	if v, err := f.Call(ctx, "hi"); v != "hi" || err != nil {
		t.Errorf("Call(hi) = %q, %v", v, err)
	}
	if _, err := NewFunc[string, string](n, "nil", codec.String(), codec.String(), nil); !errors.Is(err, ErrNilLoader) {
		t.Errorf("a nil function: %v", err)
	}
	wrongTags := FuncTags(func(int, int) []string { return nil })
	if _, err := NewFunc(n, "tags", codec.String(), codec.String(), echo, wrongTags); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("FuncTags of other types: %v, want ErrInvalidOption", err)
	}
	if _, err := NewFunc(n, "echo", codec.String(), codec.String(), echo); !errors.Is(err, ErrGroupExists) {
		t.Errorf("a second func of the same name: %v, want ErrGroupExists", err)
	}
}
