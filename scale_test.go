package meshcache

import (
	"sync"
	"testing"
	"time"
)

// TestScaleFenceStress is the cluster fence stress (TestClusterFenceStress)
// at 20 nodes: readers on every node Get random keys of a versioned origin
// (mostly keys other nodes own: peer fetches and hot copies), while writers
// on several nodes run random Sets, Invalidates, InvalidateTags and Clears,
// each reaching 19 members in two phases. No Get that starts after a write
// returned may see an older version, on any node.
func TestScaleFenceStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test of 20 nodes")
	}
	const (
		size           = 20
		readersPerNode = 1
		writerNodes    = 5   // n0, n4, n8, ...
		writersPerNode = 2   // their requests to a member share frames
		reads          = 400 // per reader, at most
		writes         = 60  // per writer, at most
		budget         = 4 * time.Second
	)
	s := newFenceStress(t)
	nodes := startCluster(t, size, nil)
	closeTogether(t, nodes)
	gs := newClusterGroups(t, nodes, "stress", s, WithJitter(0))
	ctx := t.Context()
	stop := time.Now().Add(budget)

	var wg sync.WaitGroup
	for i, g := range gs {
		for range readersPerNode {
			wg.Go(func() {
				for r := 0; r < reads && time.Now().Before(stop); r++ {
					if !s.read(ctx, g) {
						return
					}
				}
			})
		}
		if i%(size/writerNodes) != 0 {
			continue
		}
		for range writersPerNode {
			wg.Go(func() {
				for w := 0; w < writes && time.Now().Before(stop); w++ {
					s.write(ctx, g)
				}
			})
		}
	}
	wg.Wait()

	sum := sumStats(gs)
	var ns NodeStats
	for _, n := range nodes {
		st := n.Stats()
		ns.Writes += st.Writes
		ns.WritesPartial += st.WritesPartial
		ns.WriteRequests += st.WriteRequests
		ns.WriteBatches += st.WriteBatches
	}
	t.Logf("%d reads, writes: %d Set, %d Invalidate, %d InvalidateTags, %d Clear; loads %d, hits %d, hot hits %d, peer fetches %d, fallbacks %d",
		s.reads.Load(), s.writes[0].Load(), s.writes[1].Load(), s.writes[2].Load(), s.writes[3].Load(),
		sum.Loads, sum.Hits, sum.HotHits, sum.PeerFetches, sum.Fallbacks)
	t.Logf("fan-out: %d writes, %d partial, %d requests to members, %d frames with several writes",
		ns.Writes, ns.WritesPartial, ns.WriteRequests, ns.WriteBatches)
	if n := s.violations.Load(); n > 0 {
		t.Fatalf("%d Gets saw a value older than a write that had returned", n)
	}
	if s.reads.Load() == 0 || s.writes[0].Load() == 0 || s.writes[1].Load() == 0 || s.writes[2].Load() == 0 {
		t.Fatalf("the stress test exercised too little: %d reads, %d Sets, %d Invalidates, %d InvalidateTags",
			s.reads.Load(), s.writes[0].Load(), s.writes[1].Load(), s.writes[2].Load())
	}
	if sum.Loads == 0 || sum.PeerFetches == 0 || sum.HotHits == 0 {
		t.Fatalf("the stress test exercised too little: %+v", sum)
	}
}

// closeTogether closes nodes concurrently when t ends, before startNode's
// cleanups (which then find them closed): one after the other, each Close
// of a large cluster takes about a second (its hand-over, its leave).
func closeTogether(t testing.TB, nodes []*Node) {
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() { n.Close() })
		}
		wg.Wait()
	})
}
