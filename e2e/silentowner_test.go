package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// settledRing polls until every one of nodes reports the same ring, for up
// to memberTimeout, and returns it.
func (c *cluster) settledRing(nodes []*node) []string {
	c.t.Helper()
	deadline := time.Now().Add(memberTimeout)
	for {
		first := c.partitionOwners(nodes[0])
		same := true
		for _, n := range nodes[1:] {
			if !slices.Equal(c.partitionOwners(n), first) {
				same = false
				break
			}
		}
		if same {
			return first
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the nodes' rings differ after %v", memberTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// originValues writes an origin value for each of keys and returns them.
func (c *cluster) originValues(group string, keys []string) map[string]string {
	c.t.Helper()
	values := make(map[string]string, len(keys))
	for _, k := range keys {
		values[k] = fmt.Sprintf("%s/%s value", group, k)
		c.writeOrigin(group, k, values[k])
	}
	return values
}

// answer is one timed GET of a wave.
type answer struct {
	node *node
	key  string
	r    response
	err  error
	end  time.Duration // when it was read, since the wave's reference time
}

// wave GETs each of keys from each of nodes, key by key (so that the nodes
// ask for the same key at about the same time), with workers requests at
// once, and returns the answers. Their end times are measured from since.
func (c *cluster) wave(group string, keys []string, nodes []*node, workers int, since time.Time) []answer {
	jobs := make(chan answer)
	var (
		mu  sync.Mutex
		out []answer
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for a := range jobs {
				a.r, a.err = do(c.t.Context(), c.client, http.MethodGet, a.node, keyPath(group, a.key), nil)
				a.end = time.Since(since)
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			}
		})
	}
	for _, k := range keys {
		for _, n := range nodes {
			jobs <- answer{node: n, key: k}
		}
	}
	close(jobs)
	wg.Wait()
	return out
}

// waveReport checks that every answer is 200 with its key's value within
// bound (no bound if zero), and returns the worst latency, the last end
// time, how many answers named owner in X-Owner, and the X-Cache counts.
func waveReport(t *testing.T, group string, answers []answer, values map[string]string, bound time.Duration, owner string) (worst, last time.Duration, owned int, sources map[string]int) {
	t.Helper()
	sources = make(map[string]int)
	bad := 0
	for _, a := range answers {
		if a.err != nil {
			t.Errorf("GET %s/%s on %s: %v", group, a.key, a.node.name, a.err)
			bad++
			continue
		}
		worst, last = max(worst, a.r.latency), max(last, a.end)
		sources[a.r.xcache()]++
		if a.r.owner() == owner {
			owned++
		}
		switch {
		case a.r.status != http.StatusOK || a.r.body != values[a.key]:
			t.Errorf("GET %s/%s on %s = %d %q (X-Cache %q), want 200 %q", group, a.key, a.node.name,
				a.r.status, a.r.body, a.r.xcache(), values[a.key])
			bad++
		case bound > 0 && a.r.latency > bound:
			t.Errorf("GET %s/%s on %s took %v (X-Cache %q), want at most %v", group, a.key, a.node.name,
				a.r.latency.Round(time.Millisecond), a.r.xcache(), bound)
			bad++
		}
		if bad >= 10 {
			t.Fatalf("too many bad answers (%d so far of %d)", bad, len(answers))
		}
	}
	return worst, last, owned, sources
}

// TestStopOwnerBounded SIGSTOPs one of three nodes run with -fetch-timeout
// 300ms, then, under a background load, reads keys it owns and that no node
// has cached from the two others: each request answers 200 with the right
// value within 2s (the fetch timeout plus a load, not failure detection,
// which takes seconds), while the stopped node is still in every ring.
// After SIGCONT it is ready again, serves its keys, and the others ask it
// for its keys again instead of their stand-in.
func TestStopOwnerBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("SIGSTOP of an owner: skipped with -short")
	}
	t.Parallel()
	const bound = 2 * time.Second
	c := newClusterWith(t, 3, "-fetch-timeout", "300ms")
	// Long enough to measure a request that takes too long rather than cut it.
	c.client = newClient(30 * time.Second)
	t.Cleanup(c.client.CloseIdleConnections)
	const group = "pause"
	c.touchGroup(group)
	stopped, others := c.nodes[2], c.nodes[:2]
	ring := c.settledRing(c.nodes)
	keys := ownedKeys(ring, stopped.name, "p", 40)
	later := ownedKeys(ring, stopped.name, "q", 40) // read after SIGCONT
	busy := slices.Concat(ownedKeys(ring, others[0].name, "b", 10), ownedKeys(ring, others[1].name, "b", 10))
	if len(keys) < 40 || len(later) < 40 || len(busy) < 20 {
		t.Fatalf("found %d, %d and %d keys for the nodes in the ring, want 40, 40 and 20", len(keys), len(later), len(busy))
	}
	values := c.originValues(group, slices.Concat(keys, later, busy))

	// The background load: keys the others own, read from the others.
	l := startLoad(t, c.client, 2, func(rng *rand.Rand) request {
		k := busy[rng.IntN(len(busy))]
		return request{node: others[rng.IntN(len(others))], group: group, key: k, want: values[k], strict: true}
	})
	l.waitRequests(t, 20)

	stopped.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { _ = stopped.cmd.Process.Signal(syscall.SIGCONT) })
	stop := time.Now()
	answers := c.wave(group, keys, others, 8, stop)
	worst, last, owned, sources := waveReport(t, group, answers, values, bound, stopped.name)
	l.check(t)
	bg := l.snapshot()
	t.Logf("%s stopped: %d fresh keys it owns read from %v in %v; worst latency %v; X-Cache %v; "+
		"%d of %d answers while it was still the owner in the reader's ring; background: %d requests, worst %v",
		stopped.name, len(keys), names(others), last.Round(time.Millisecond), worst.Round(time.Millisecond), sources,
		owned, len(answers), bg.requests, bg.worst.Round(time.Millisecond))
	if bg.worst > bound {
		t.Errorf("a background request (keys %s does not own) took %v, want at most %v", stopped.name, bg.worst, bound)
	}
	if owned < len(answers)/2 {
		t.Errorf("only %d of %d answers came while %s still owned the keys: most reads ran after failure detection and bound nothing",
			owned, len(answers), stopped.name)
	}

	stopped.signal(t, syscall.SIGCONT)
	resumed := time.Now()
	// The others take it back: a fresh key of its own, read through
	// another node, comes from it (X-Cache peer), not from a stand-in.
	back := time.Duration(-1)
	var tried []string
	for _, k := range later {
		r := c.mustGet(others[0], group, k, values[k])
		tried = append(tried, r.xcache())
		if r.xcache() == "peer" && r.owner() == stopped.name {
			back = time.Since(resumed)
			break
		}
		time.Sleep(pollEvery)
	}
	if back < 0 {
		t.Fatalf("after SIGCONT %s served %d fresh keys of %s, none from it (X-Cache %v)", others[0].name, len(later), stopped.name, tried)
	}
	c.waitReadyz(stopped, memberTimeout)
	ready := time.Since(resumed)
	c.waitMembers(c.nodes, names(c.nodes))
	for _, k := range keys {
		c.mustGet(stopped, group, k, values[k])
	}
	t.Logf("after SIGCONT the others asked %s for its keys again within %v (X-Cache on the way %v); it was ready within %v",
		stopped.name, back.Round(time.Millisecond), tried, ready.Round(time.Millisecond))
	checkRunning(t, c.nodes)
}

// TestDeadOwnerLoadsOnce kills -9 one of five nodes and at once reads 50
// keys it owned, that no node has cached, from every survivor at the same
// time: before gossip declares it dead, its keys are loaded by one stand-in
// for the fleet, so the survivors' loads stay at most 1.2 per key (without
// stand-ins each survivor loads each key).
func TestDeadOwnerLoadsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 of an owner: skipped with -short")
	}
	t.Parallel()
	const nkeys = 50
	c := newCluster(t, 5)
	c.client = newClient(30 * time.Second)
	t.Cleanup(c.client.CloseIdleConnections)
	const group = "dead"
	c.touchGroup(group)
	victim, survivors := c.nodes[4], c.nodes[:4]
	ring := c.settledRing(c.nodes)
	keys := ownedKeys(ring, victim.name, "d", nkeys)
	if len(keys) < nkeys {
		t.Fatalf("found %d keys owned by %s in the ring, want %d", len(keys), victim.name, nkeys)
	}
	values := c.originValues(group, keys)
	before := c.groupStats(survivors, group)

	victim.signal(t, syscall.SIGKILL)
	if code := victim.wait(t); code != -1 {
		t.Errorf("%s after SIGKILL: exit code %d, want -1 (signalled)", victim.name, code)
	}
	killed := time.Now()
	answers := c.wave(group, keys, survivors, 4*len(survivors), killed)
	worst, last, owned, sources := waveReport(t, group, answers, values, 0, victim.name)
	after := c.groupStats(survivors, group)
	loads := sum(after, "loads") - sum(before, "loads")
	fallbacks := sum(after, "fallbacks") - sum(before, "fallbacks")
	perKey := loads / nkeys
	c.waitMembers(survivors, names(survivors))
	detected := time.Since(killed)
	t.Logf("%d fresh keys of the dead %s read from %d survivors: %v loads (%.2f per key), %v fallbacks; X-Cache %v; "+
		"worst latency %v; all read %v after the kill, %d of %d answers while it was still the owner in the reader's ring; "+
		"every survivor saw it dead %v after the kill",
		nkeys, victim.name, len(survivors), loads, perKey, fallbacks, sources, worst.Round(time.Millisecond),
		last.Round(time.Millisecond), owned, len(answers), detected.Round(time.Millisecond))
	if owned < len(answers)*3/4 {
		t.Errorf("only %d of %d answers came while %s still owned the keys: the reads ran after failure detection and prove nothing",
			owned, len(answers), victim.name)
	}
	if perKey > 1.2 {
		t.Errorf("the survivors loaded %v times for %d keys (%.2f per key), want at most 1.2 per key", loads, nkeys, perKey)
	}
	checkRunning(t, survivors)
}
