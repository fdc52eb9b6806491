package meshcache

import (
	"context"
	"strconv"
	"testing"

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

// BenchmarkGetHit measures Group.Get of a cached 1 KiB value; compare with
// BenchmarkBareLRUGetHit, a golang-lru/v2 Cache.Get plus the same copy.
func BenchmarkGetHit(b *testing.B) {
	n, _ := NewNode(Config{NodeName: "bench"})
	defer n.Close()
	val := value1K()
	g, _ := NewGroup(n, "g", LoaderFunc(func(ctx context.Context, key string) (Item, error) {
		return Item{Value: val}, nil
	}))
	const keys = 1024
	ctx := context.Background()
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
		g.Get(ctx, names[i])
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sink, _ = g.Get(ctx, names[i%keys])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			var s []byte
			for pb.Next() {
				s, _ = g.Get(ctx, names[i%keys])
				i++
			}
			_ = s
		})
	})
}

func BenchmarkBareLRUGetHit(b *testing.B) {
	c, _ := lru.New[string, []byte](4096)
	val := value1K()
	const keys = 1024
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
		c.Add(names[i], val)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v, _ := c.Get(names[i%keys])
			sink = append([]byte(nil), v...)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			var s []byte
			for pb.Next() {
				v, _ := c.Get(names[i%keys])
				s = append([]byte(nil), v...)
				i++
			}
			_ = s
		})
	})
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
