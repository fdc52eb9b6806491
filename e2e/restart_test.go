package e2e

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// TestRollingRestart restarts every node of three in turn (SIGTERM, then
// a new process under the same name joining a live node) under load:
// clients only ask nodes that are up, and no request fails.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	const group = "roll"
	c.touchGroup(group)
	keys, values := c.keySet(group, "r", 100)
	p := newPicker(c.nodes)
	l := startLoad(t, c.client, 4, func(rng *rand.Rand) request {
		n := p.acquire(rng)
		rq := randomRequest(rng, []*node{n}, group, keys, values)
		rq.done = func() { p.release(n) }
		return rq
	})
	l.waitRequests(t, 200)
	before := l.snapshot()
	start := time.Now()
	for i, old := range c.nodes {
		p.drain(old)
		old.signal(t, syscall.SIGTERM)
		if code := old.wait(t); code != 0 {
			t.Errorf("%s after SIGTERM: exit code %d, want 0; output tail:\n%s", old.name, code, old.out.tail(20))
		}
		var live []*node
		for _, n := range c.nodes {
			if n != old {
				live = append(live, n)
			}
		}
		c.waitMembers(live, names(live))
		n := startNode(t, old.name, c.origin, "-join", live[0].gossip)
		c.nodes[i] = n
		c.waitMembers(c.nodes, names(c.nodes))
		p.add(n)
		l.waitRequests(t, 100)
	}
	took := time.Since(start)
	after := l.snapshot()
	l.check(t)

	answered := total(after.sources) - total(before.sources)
	loaded := after.loaded() - before.loaded()
	if answered == 0 {
		t.Fatal("no request answered during the restart")
	}
	t.Logf("rolling restart of %d nodes in %v: %d requests (%d with a value), %d (%.1f%%) had to load (X-Cache load|fallback); X-Cache before %v, after %v; worst latency %v",
		len(c.nodes), took.Round(time.Millisecond), after.requests-before.requests, answered, loaded,
		100*float64(loaded)/float64(answered), before.sources, after.sources, after.worst)
	checkRunning(t, c.nodes)
}

// total sums the counts of m.
func total(m map[string]int) int {
	var s int
	for _, v := range m {
		s += v
	}
	return s
}
