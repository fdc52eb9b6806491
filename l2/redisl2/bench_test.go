package redisl2_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/meshcache/meshcache/l2"
)

// BenchmarkStore measures one call of each method against a real
// redis-server on 127.0.0.1, 1 KiB values with one tag.
func BenchmarkStore(b *testing.B) {
	s, _, _ := newStoreB(b)
	ctx := context.Background()
	value := make([]byte, 1024)
	const keys = 1000
	for i := range keys {
		k := "k" + strconv.Itoa(i)
		rs, err := s.Get(ctx, "g", k)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Set(ctx, "g", l2.Item{Key: k, Value: value, TTL: time.Hour, Tags: []string{"t"}, Version: rs[0].Version}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Get/1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Get(ctx, "g", "k"+strconv.Itoa(i%keys)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Get/16", func(b *testing.B) {
		batch := make([]string, 16)
		for i := 0; b.Loop(); i++ {
			for j := range batch {
				batch[j] = "k" + strconv.Itoa((i*16+j)%keys)
			}
			if _, err := s.Get(ctx, "g", batch...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Set/1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			k := "s" + strconv.Itoa(i%keys)
			if _, err := s.Set(ctx, "g", l2.Item{Key: k, Value: value, TTL: time.Hour, Tags: []string{"t"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Delete/1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := s.Delete(ctx, "g", "d"+strconv.Itoa(i%keys)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("InvalidateTags/1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := s.InvalidateTags(ctx, "g", "x"+strconv.Itoa(i%keys)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
