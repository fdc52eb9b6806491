package meshcache_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meshcache/meshcache"
	"github.com/meshcache/meshcache/codec"
)

// users is a stand-in for a database table.
var users = map[string]struct{ Name, Org string }{
	"42": {"Ada", "acme"},
	"43": {"Grace", "acme"},
	"44": {"Edsger", "initech"},
}

func Example() {
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	if err != nil {
		panic(err)
	}
	defer node.Close()

	loads := 0
	group, err := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(
		func(ctx context.Context, key string) (meshcache.Item, error) {
			loads++
			u, ok := users[key]
			if !ok {
				return meshcache.Item{}, meshcache.ErrNotFound
			}
			return meshcache.Item{
				Value: []byte(u.Name),
				TTL:   5 * time.Minute,
				Tags:  []string{"org:" + u.Org},
			}, nil
		}),
		meshcache.WithTTL(10*time.Minute))
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	v, _ := group.Get(ctx, "42")
	v, _ = group.Get(ctx, "42") // cached
	fmt.Printf("%s, loads: %d\n", v, loads)

	group.Get(ctx, "43")
	group.InvalidateTags(ctx, "org:acme") // drops 42 and 43
	group.Get(ctx, "42")
	group.Get(ctx, "43")
	fmt.Println("loads after invalidating org:acme:", loads)

	_, err = group.Get(ctx, "99")
	fmt.Println(errors.Is(err, meshcache.ErrNotFound))

	group.Invalidate(ctx, "42")
	e, ok, _ := group.Peek(ctx, "42")
	fmt.Println(e.Key, ok)
	// Output:
	// Ada, loads: 1
	// loads after invalidating org:acme: 4
	// true
	//  false
}

func ExampleNewTypedGroup() {
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	if err != nil {
		panic(err)
	}
	defer node.Close()

	type User struct {
		Name string `json:"name"`
		Org  string `json:"org"`
	}
	group, err := meshcache.NewTypedGroup(node, "users", codec.JSON[User](),
		func(ctx context.Context, key string) (meshcache.TypedItem[User], error) {
			u, ok := users[key]
			if !ok {
				return meshcache.TypedItem[User]{}, meshcache.ErrNotFound
			}
			return meshcache.TypedItem[User]{Value: User{u.Name, u.Org}, Tags: []string{"org:" + u.Org}}, nil
		})
	if err != nil {
		panic(err)
	}
	u, _ := group.Get(context.Background(), "44")
	fmt.Printf("%+v\n", u)
	// Output:
	// {Name:Edsger Org:initech}
}

func ExampleKey() {
	fmt.Println(meshcache.Key("user", 42, "avatar"))
	fmt.Println(meshcache.Key("a:b", "c"), meshcache.Key("a", "b:c"))
	// Output:
	// user:42:avatar
	// a\:b:c a:b\:c
}

func ExampleGroup_GetMany() {
	node, _ := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	defer node.Close()
	batch := meshcache.BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]meshcache.Item, error) {
		fmt.Println("LoadMany", keys) // one call for every missing key
		out := map[string]meshcache.Item{}
		for _, k := range keys {
			if u, ok := users[k]; ok {
				out[k] = meshcache.Item{Value: []byte(u.Name)}
			}
		}
		return out, nil
	})
	group, _ := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(
		func(ctx context.Context, key string) (meshcache.Item, error) {
			return meshcache.Item{}, meshcache.ErrNotFound
		}), meshcache.WithBatchLoader(batch))
	vals, _ := group.GetMany(context.Background(), []string{"42", "44", "99"})
	fmt.Println(len(vals), string(vals["42"]), string(vals["44"]))
	// Output:
	// LoadMany [42 44 99]
	// 2 Ada Edsger
}

func ExampleBypass() {
	node, _ := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	defer node.Close()
	version := 1
	group, _ := meshcache.NewGroup(node, "config", meshcache.LoaderFunc(
		func(ctx context.Context, key string) (meshcache.Item, error) {
			return meshcache.Item{Value: fmt.Appendf(nil, "v%d", version)}, nil
		}))
	ctx := context.Background()
	v, _ := group.Get(ctx, "flags")
	version = 2
	cached, _ := group.Get(ctx, "flags")
	direct, _ := group.Get(ctx, "flags", meshcache.Bypass())          // the loader, cache untouched
	refreshed, _ := group.Get(ctx, "flags", meshcache.ForceRefresh()) // load and overwrite
	fmt.Println(string(v), string(cached), string(direct), string(refreshed))
	// Output:
	// v1 v1 v2 v2
}

func ExampleWithNegativeTTL() {
	node, _ := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	defer node.Close()
	loads := 0
	group, _ := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(
		func(ctx context.Context, key string) (meshcache.Item, error) {
			loads++
			return meshcache.Item{}, meshcache.ErrNotFound
		}), meshcache.WithNegativeTTL(30*time.Second))
	for range 3 {
		_, err := group.Get(context.Background(), "ghost")
		fmt.Println(errors.Is(err, meshcache.ErrNotFound))
	}
	fmt.Println("loads:", loads)
	// Output:
	// true
	// true
	// true
	// loads: 1
}

func ExampleItem_noStore() {
	node, _ := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	defer node.Close()
	loads := 0
	group, _ := meshcache.NewGroup(node, "search", meshcache.LoaderFunc(
		func(ctx context.Context, key string) (meshcache.Item, error) {
			loads++
			// Cache only non-empty results (cachu's cache_if).
			return meshcache.Item{Value: nil, NoStore: true}, nil
		}))
	group.Get(context.Background(), "q=nothing")
	group.Get(context.Background(), "q=nothing")
	fmt.Println("loads:", loads)
	// Output:
	// loads: 2
}

// A service mounts the node's admin pages on an internal port, under a
// prefix of its choice.
func ExampleNode_AdminHandler() {
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "api-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	internal := http.NewServeMux()
	internal.Handle("/debug/meshcache/", http.StripPrefix("/debug/meshcache", node.AdminHandler()))
	// In a service: go http.ListenAndServe("10.0.0.5:9090", internal)

	rec := httptest.NewRecorder()
	internal.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/meshcache/readyz", nil))
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	// Output: 200 {"status":"ready"}
}

// NewFunc memoizes a function for the whole fleet: the node that owns an
// argument runs it once, every node shares the result.
func ExampleNewFunc() {
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "api-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	type Query struct {
		Org  string
		Page int
	}
	runs := 0
	search, err := meshcache.NewFunc(node, "search", codec.JSON[Query](), codec.JSON[[]string](),
		func(ctx context.Context, q Query) ([]string, error) {
			runs++ // a database query in real life
			return []string{fmt.Sprintf("%s result %d", q.Org, q.Page)}, nil
		},
		meshcache.WithTTL(time.Minute),
		meshcache.FuncTags(func(q Query, _ []string) []string { return []string{"org:" + q.Org} }))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	hits, _ := search.Call(ctx, Query{Org: "acme", Page: 2})
	hits, _ = search.Call(ctx, Query{Org: "acme", Page: 2}) // cached
	fmt.Println(hits, runs)
	_ = search.InvalidateTags(ctx, "org:acme") // every result for acme, fleet-wide
	hits, _ = search.Call(ctx, Query{Org: "acme", Page: 2})
	fmt.Println(hits, runs)
	// Output:
	// [acme result 2] 1
	// [acme result 2] 2
}

// A batch window turns concurrent Gets of distinct keys into one LoadMany
// call, as a DataLoader does.
func ExampleWithBatchWindow() {
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "api-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	var mu sync.Mutex
	var batches [][]string
	loadMany := meshcache.BatchLoaderFunc(func(ctx context.Context, keys []string) (map[string]meshcache.Item, error) {
		mu.Lock()
		batches = append(batches, keys) // one SELECT ... WHERE id IN (...) in real life
		mu.Unlock()
		items := make(map[string]meshcache.Item, len(keys))
		for _, k := range keys {
			items[k] = meshcache.Item{Value: []byte("user " + k)}
		}
		return items, nil
	})
	users, err := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(func(ctx context.Context, key string) (meshcache.Item, error) {
		return meshcache.Item{}, errors.New("not used: the window loads in batches")
	}), meshcache.WithBatchLoader(loadMany), meshcache.WithBatchWindow(5*time.Millisecond), meshcache.WithMaxBatch(3))
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, id := range []string{"1", "2", "3"} {
		wg.Go(func() { users.Get(context.Background(), id) })
	}
	wg.Wait()
	fmt.Println(len(batches), "batch of", len(batches[0]), "keys")
	// Output: 1 batch of 3 keys
}

// Spans join the caller's trace, and cross to the key's owner.
func ExampleConfig_tracing() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "api-1", TracerProvider: tp})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	users, err := meshcache.NewGroup(node, "users", meshcache.LoaderFunc(func(ctx context.Context, key string) (meshcache.Item, error) {
		return meshcache.Item{Value: []byte("Ada")}, nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	ctx, span := tp.Tracer("my-service").Start(context.Background(), "GET /users/42")
	users.Get(ctx, "42")
	span.End()
	for _, s := range rec.Ended() {
		fmt.Println(s.Name())
	}
	// Output:
	// meshcache.load
	// meshcache.Get
	// GET /users/42
}
