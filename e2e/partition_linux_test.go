package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

const (
	// partitionKeys is how many keys the partition tests cache everywhere.
	partitionKeys = 60
	// partitionReaders is how many reads run at once on the nodes cut off.
	partitionReaders = 8
	// writeAttempts bounds the tries of one write through the majority,
	// which may answer 503 while its view of the membership settles.
	writeAttempts = 10
)

// TestPartition cuts nodes off from the rest of the cluster (their gossip
// and peer-transport packets dropped both ways, their HTTP API still
// reachable), has the majority invalidate every key after the origin
// changed, and checks the guarantee on the side cut off: it serves none of
// the values the majority's writes removed, and its own writes are not
// reported complete (it cannot reach the others). Healed, the nodes cut off
// are members and ready again, and serve the new values.
//
// The partitions are made with network namespaces (see netLab), so the test
// needs root and iproute2; it skips with a message otherwise.
func TestPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("the partition tests run real clusters for about a minute each")
	}
	t.Parallel()
	for _, tc := range []struct {
		name      string
		size, cut int // nodes, of which the last cut are cut off together
	}{
		{"1of4", 4, 1},
		{"2of5", 5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testPartition(t, tc.size, tc.cut)
		})
	}
}

func testPartition(t *testing.T, size, cut int) {
	lab := newNetLab(t, size)
	c := newLabCluster(t, lab, size)
	const group = "part"
	c.touchGroup(group)
	keys, oldValues := c.keySet(group, "p", partitionKeys)
	majority, cutOff := c.nodes[:size-cut], c.nodes[size-cut:]
	cutIdx := make([]int, 0, cut)
	for i := size - cut; i < size; i++ {
		cutIdx = append(cutIdx, i)
	}

	// Every node caches every key: main copies of those it owns, hot
	// copies of the others. The second read shows where they sit.
	warm := make(map[string]int)
	for _, n := range c.nodes {
		for _, k := range keys {
			c.mustGet(n, group, k, oldValues[k])
			warm[c.mustGet(n, group, k, oldValues[k]).xcache()]++
		}
	}
	t.Logf("%d keys cached on %d nodes; X-Cache of a second read: %v", len(keys), size, warm)

	// Cut off; the majority drops the nodes cut off from its members.
	start := time.Now()
	lab.cut(cutIdx...)
	dropped := c.waitMembers(majority, names(majority))
	t.Logf("cut off %v; the majority %v listed only itself after %v", names(cutOff), names(majority), dropped.Round(time.Millisecond))

	// New origin values, then every key invalidated through the majority.
	newValues := make(map[string]string, len(keys))
	for _, k := range keys {
		newValues[k] = oldValues[k] + " v2"
		c.writeOrigin(group, k, newValues[k])
	}
	retried := 0
	for i, k := range keys {
		retried += c.writeSettled(majority[i%len(majority)], http.MethodDelete, keyPath(group, k))
	}
	t.Logf("%d DELETEs through the majority answered 204 (%d retries after a 503), %v after the cut",
		len(keys), retried, time.Since(start).Round(time.Millisecond))
	for _, n := range majority {
		for _, k := range keys {
			c.mustGet(n, group, k, newValues[k])
		}
	}

	// The side cut off must serve none of the old values: the majority
	// completed writes without it.
	for _, n := range cutOff {
		ready := c.readyStatus(n)
		tally := c.readAll(n, group, keys, oldValues, newValues)
		t.Logf("%s cut off (/readyz %d), %v after the cut: %s", n.name, ready, time.Since(start).Round(time.Millisecond), tally)
		if tally.stale > 0 {
			t.Errorf("%s, cut off, served %d of %d keys at the value the majority's acknowledged DELETEs removed (X-Cache %v)",
				n.name, tally.stale, len(keys), tally.staleSources)
		}
		if tally.other > 0 {
			t.Errorf("%s, cut off, answered %d of %d keys with a value that is neither the old nor the new one; first: %s",
				n.name, tally.other, len(keys), tally.first)
		}
	}

	// Once the side cut off sees itself alone, a write through it must
	// not be reported complete: the majority never sees it.
	if took, ok := c.tryWaitMembers(cutOff, names(cutOff)); ok {
		t.Logf("the side cut off listed only %v after %v", names(cutOff), took.Round(time.Millisecond))
	} else {
		t.Logf("the side cut off did not list only %v within %v; writing through it anyway", names(cutOff), memberTimeout)
	}
	// (The tag is one no key carries: the check after healing still sees
	// what the side cut off cached.)
	for i, n := range cutOff {
		c.checkIncomplete(n, http.MethodDelete, keyPath(group, keys[i]), names(majority))
		c.checkIncomplete(n, http.MethodPost, "/v1/"+url.PathEscape(group)+"/-/invalidate-tags?tag=cutoff", names(majority))
	}

	// Heal: the nodes cut off are members and ready again, and serve the
	// new values.
	healed := time.Now()
	lab.heal(cutIdx...)
	rejoined := c.waitMembers(c.nodes, names(c.nodes))
	for _, n := range cutOff {
		c.waitReadyz(n, memberTimeout)
	}
	t.Logf("healed; every node listed all %d after %v, the nodes cut off ready after %v",
		size, rejoined.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	for _, n := range cutOff {
		tally := c.readAll(n, group, keys, oldValues, newValues)
		t.Logf("%s healed: %s", n.name, tally)
		if tally.fresh != len(keys) {
			t.Errorf("%s, healed, served %d of %d keys at their new value (%d old, %d other, %d errors); first: %s",
				n.name, tally.fresh, len(keys), tally.stale, tally.other, tally.failed, tally.first)
		}
	}
	checkRunning(t, c.nodes)
}

// newLabCluster starts size nodes n0, n1, ... in lab's namespaces, sharing
// a fresh origin dir, n1... joining n0, and waits until every node lists
// all of them. Its client reaches the nodes through the hub namespace.
func newLabCluster(t *testing.T, lab *netLab, size int) *cluster {
	t.Helper()
	useCluster(t)
	// Reads on a node cut off may wait for an owner it cannot reach.
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: lab.dial, MaxIdleConnsPerHost: 32, DisableCompression: true},
	}
	c := &cluster{t: t, origin: t.TempDir(), client: client}
	t.Cleanup(client.CloseIdleConnections)
	c.start(size, func(i int, dir, name string, extra ...string) (*node, error) {
		return launchWith(lab.wrap(i), dir, name, c.origin, append(lab.flags(i), extra...)...)
	})
	return c
}

// writeSettled sends a write to n until it answers 204, retrying a 503
// (members still settling) up to writeAttempts times, and returns the
// number of retries. Any other answer fails the test.
func (c *cluster) writeSettled(n *node, method, path string) int {
	c.t.Helper()
	for try := range writeAttempts {
		r := c.do(method, n, path, nil)
		switch r.status {
		case http.StatusNoContent:
			return try
		case http.StatusServiceUnavailable:
			if try == writeAttempts-1 {
				c.t.Fatalf("%s %s on %s = 503 %s after %d attempts, want 204", method, path, n.name, r.body, writeAttempts)
			}
			time.Sleep(pollEvery)
		default:
			c.t.Fatalf("%s %s on %s = %d %s, want 204", method, path, n.name, r.status, r.body)
		}
	}
	return writeAttempts
}

// checkIncomplete sends a write through n, cut off from the members
// missing, and checks that it is reported incomplete: 503 naming members
// it did not reach, not 204.
func (c *cluster) checkIncomplete(n *node, method, path string, missing []string) {
	c.t.Helper()
	r := c.do(method, n, path, nil)
	var body struct {
		Error   string   `json:"error"`
		Unacked []string `json:"unacked"`
	}
	_ = json.Unmarshal([]byte(r.body), &body)
	switch {
	case r.status == http.StatusNoContent:
		c.t.Errorf("%s %s on %s, cut off from %v: 204, want 503: a write the others never saw was reported complete",
			method, path, n.name, missing)
	case r.status != http.StatusServiceUnavailable:
		c.t.Errorf("%s %s on %s, cut off: %d %s, want 503 with the members it did not reach", method, path, n.name, r.status, r.body)
	case len(body.Unacked) == 0:
		c.t.Errorf("%s %s on %s, cut off: 503 %s, want the members it did not reach in \"unacked\"", method, path, n.name, r.body)
	default:
		c.t.Logf("%s %s on %s, cut off: 503, unacked %v (%s)", method, path, n.name, body.Unacked, body.Error)
	}
}

// readTally counts the answers of a node to a read of every key.
type readTally struct {
	fresh, stale, other, failed int
	sources                     map[string]int // "status X-Cache" → count
	staleSources                map[string]int // X-Cache of the stale answers
	first                       string         // the first unexpected answer
}

func (r readTally) String() string {
	return fmt.Sprintf("%d new values, %d old, %d other, %d errors; status and X-Cache %v",
		r.fresh, r.stale, r.other, r.failed, r.sources)
}

// readAll reads every key through n, partitionReaders at a time, and
// classifies the answers: the old value, the new one, another value, or no
// value (an error status or a failed request).
func (c *cluster) readAll(n *node, group string, keys []string, oldValues, newValues map[string]string) readTally {
	c.t.Helper()
	tally := readTally{sources: make(map[string]int), staleSources: make(map[string]int)}
	var mu sync.Mutex // guards tally
	work := make(chan string)
	var wg sync.WaitGroup
	for range partitionReaders {
		wg.Go(func() {
			for k := range work {
				r, err := do(c.t.Context(), c.client, http.MethodGet, n, keyPath(group, k), nil)
				mu.Lock()
				switch {
				case err != nil:
					tally.failed++
					tally.sources["error"]++
					if tally.first == "" {
						tally.first = err.Error()
					}
				case r.status != http.StatusOK:
					tally.failed++
					tally.sources[fmt.Sprintf("%d %s", r.status, r.xcache())]++
				case r.body == oldValues[k]:
					tally.stale++
					tally.staleSources[r.xcache()]++
					tally.sources["200 "+r.xcache()]++
				case r.body == newValues[k]:
					tally.fresh++
					tally.sources["200 "+r.xcache()]++
				default:
					tally.other++
					tally.sources["200 "+r.xcache()]++
					if tally.first == "" {
						tally.first = fmt.Sprintf("GET %s/%s = %q", group, k, r.body)
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	if tally.first == "" && tally.failed > 0 {
		tally.first = fmt.Sprintf("statuses and X-Cache %v", tally.sources)
	}
	return tally
}

// readyStatus returns the status of GET /readyz on n (0 on a failed
// request).
func (c *cluster) readyStatus(n *node) int {
	r, err := do(c.t.Context(), c.client, http.MethodGet, n, "/readyz", nil)
	if err != nil {
		return 0
	}
	return r.status
}
