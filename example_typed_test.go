package meshcache_test

import (
	"context"
	"fmt"

	"github.com/meshcache/meshcache"
	"github.com/meshcache/meshcache/codec"
)

func ExampleWithTypedBatchLoader() {
	node, err := meshcache.NewNode(meshcache.Config{NodeName: "example"})
	if err != nil {
		panic(err)
	}
	defer node.Close()

	type Book struct {
		Title string `json:"title"`
		Year  int    `json:"year"`
	}
	books := map[string]Book{ // a stand-in for a table
		"isbn:0262510871": {"Structure and Interpretation of Computer Programs", 1985},
		"isbn:0201633612": {"Design Patterns", 1994},
	}
	loadBook := func(ctx context.Context, key string) (meshcache.TypedItem[Book], error) {
		b, ok := books[key]
		if !ok {
			return meshcache.TypedItem[Book]{}, meshcache.ErrNotFound
		}
		return meshcache.TypedItem[Book]{Value: b}, nil
	}
	// One query for every key GetMany misses: SELECT ... WHERE isbn IN (...).
	loadBooks := func(ctx context.Context, keys []string) (map[string]meshcache.TypedItem[Book], error) {
		fmt.Println("loading", len(keys), "books in one query")
		out := make(map[string]meshcache.TypedItem[Book], len(keys))
		for _, k := range keys {
			if b, ok := books[k]; ok {
				out[k] = meshcache.TypedItem[Book]{Value: b}
			}
		}
		return out, nil // a key left out has no value
	}
	group, err := meshcache.NewTypedGroup(node, "books", codec.JSON[Book](), loadBook,
		meshcache.WithTypedBatchLoader(loadBooks))
	if err != nil {
		panic(err)
	}

	ctx := context.Background()
	keys := []string{"isbn:0262510871", "isbn:0201633612", "isbn:0000000000"}
	got, err := group.GetMany(ctx, keys)
	if err != nil {
		panic(err)
	}
	for _, k := range keys {
		if b, ok := got[k]; ok {
			fmt.Printf("%s: %s (%d)\n", k, b.Title, b.Year)
		} else {
			fmt.Printf("%s: none\n", k)
		}
	}
	got, _ = group.GetMany(ctx, keys[:2]) // cached: no query
	fmt.Println(len(got), "books")
	// Output:
	// loading 3 books in one query
	// isbn:0262510871: Structure and Interpretation of Computer Programs (1985)
	// isbn:0201633612: Design Patterns (1994)
	// isbn:0000000000: none
	// 2 books
}
