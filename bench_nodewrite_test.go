package meshcache

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkWriteKinds measures, in a cluster of 3 nodes, how long a write
// of one key or tag takes to return from n0 (both phases acknowledged by
// every member): Invalidate, Delete (which also asks each member what it
// held), Group.InvalidateTags and Node.InvalidateTags (every group; here
// the cluster has two).
//
//	go test -run '^$' -bench 'WriteKinds' -count 6 . > kinds.txt
//	benchstat -col /kind kinds.txt
func BenchmarkWriteKinds(b *testing.B) {
	nodes, gs := benchCluster(b, 3)
	for _, n := range nodes {
		mustGroup(b, n, "other", newOrigin())
	}
	ctx := context.Background()
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("item:%04d", i)
	}
	kinds := []struct {
		name  string
		write func(key string) error
	}{
		{"Invalidate", func(key string) error { return gs[0].Invalidate(ctx, key) }},
		{"Delete", func(key string) error { _, err := gs[0].Delete(ctx, key); return err }},
		{"Group.InvalidateTags", func(key string) error { return gs[0].InvalidateTags(ctx, key) }},
		{"Node.InvalidateTags", func(key string) error { return nodes[0].InvalidateTags(ctx, key) }},
	}
	for _, k := range kinds {
		b.Run("kind="+k.name, func(b *testing.B) {
			benchWriteLatency(b, gs[0], keys, k.name, k.write)
		})
	}
}
