package meshcache

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

var sink []byte

func value1K() []byte {
	v := make([]byte, 1024)
	for i := range v {
		v[i] = byte(i)
	}
	return v
}

// BenchmarkGetHit measures Group.Get of a cached 1 KiB value (impl=meshcache)
// next to a bare golang-lru/v2 Cache.Get plus the same copy (impl=golang-lru),
// in one run, serially and in parallel. Compare with
//
//	benchstat -col /impl bench.txt
func BenchmarkGetHit(b *testing.B) {
	const keys = 1024
	val := value1K()
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
	}
	n, _ := NewNode(Config{NodeName: "bench"})
	defer n.Close()
	g, _ := NewGroup(n, "g", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: val}, nil
	}))
	ctx := context.Background()
	c, _ := lru.New[string, []byte](4 * keys)
	for _, k := range names {
		g.Get(ctx, k)
		c.Add(k, val)
	}
	impls := []struct {
		name string
		get  func(key string) []byte
	}{
		{"meshcache", func(key string) []byte { v, _ := g.Get(ctx, key); return v }},
		{"golang-lru", func(key string) []byte { v, _ := c.Get(key); return append([]byte(nil), v...) }},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name+"/mode=serial", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sink = impl.get(names[i%keys])
				i++
			}
		})
		b.Run("impl="+impl.name+"/mode=parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				var s []byte
				for pb.Next() {
					s = impl.get(names[i%keys])
					i++
				}
				_ = s
			})
		})
	}
}

// BenchmarkInvalidateTags measures invalidating one tag carried by size
// entries: the cost must not grow with size.
func BenchmarkInvalidateTags(b *testing.B) {
	for _, size := range []int{1_000, 100_000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			n, _ := NewNode(Config{NodeName: "bench"})
			defer n.Close()
			g, _ := NewGroup(n, "g", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
				return Item{Value: []byte("v"), Tags: []string{"tag"}}, nil
			}), WithMainBytes(1<<30))
			ctx := context.Background()
			for i := range size {
				g.Set(ctx, strconv.Itoa(i), Item{Value: []byte("v"), Tags: []string{"tag"}})
			}
			b.ReportAllocs()
			for b.Loop() {
				g.InvalidateTags(ctx, "tag")
			}
		})
	}
}

// BenchmarkGetMiss measures a Get that loads (a loader that returns at once).
func BenchmarkGetMiss(b *testing.B) {
	n, _ := NewNode(Config{NodeName: "bench"})
	defer n.Close()
	val := value1K()
	g, _ := NewGroup(n, "g", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: val, NoStore: true}, nil
	}))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = g.Get(ctx, "k")
	}
}

// BenchmarkGetStale compares a Get served stale (WithStaleIfError, within a
// second of a failed load: no load) with a hit, on one node.
func BenchmarkGetStale(b *testing.B) {
	const keys = 1024
	val := value1K()
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
	}
	var down atomic.Bool
	n, _ := NewNode(Config{NodeName: "bench"})
	defer n.Close()
	ctx := context.Background()
	for _, mode := range []string{"hit", "stale"} {
		g, _ := NewGroup(n, mode, LoaderFunc(func(ctx context.Context, key string) (Item, error) {
			if down.Load() {
				return Item{}, errors.New("down")
			}
			return Item{Value: val, TTL: 50 * time.Millisecond}, nil
		}), WithStaleIfError(time.Hour), WithJitter(0))
		down.Store(false)
		for _, k := range names {
			g.Get(ctx, k)
		}
		if mode == "stale" {
			time.Sleep(60 * time.Millisecond) // past the TTL
			down.Store(true)
			for _, k := range names {
				g.Get(ctx, k) // the failed load: the next second is served stale without loading
			}
		} else {
			g, _ = NewGroup(n, "hit-forever", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
				return Item{Value: val, TTL: time.Hour}, nil
			}), WithStaleIfError(time.Hour), WithJitter(0))
			for _, k := range names {
				g.Get(ctx, k)
			}
		}
		b.Run("mode="+mode, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sink, _ = g.Get(ctx, names[i%keys])
				i++
			}
		})
	}
}
