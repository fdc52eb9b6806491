package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/meshcache/meshcache/internal/redistest"
)

// l2Fields are the group counters the second-level tests read.
var l2Fields = []string{"loads", "l2_hits", "l2_misses", "l2_errors", "l2_stores"}

// redisFlags returns the demo-node flags that give every group a second
// level in srv, under a prefix of the test's own.
func redisFlags(t *testing.T, srv *redistest.Server) []string {
	return []string{"-redis", srv.Addr, "-redis-prefix", fmt.Sprintf("e2e:%s:%d:", t.Name(), os.Getpid())}
}

// restartCold starts a new cluster of size nodes (n0, n1, ... again) on
// c's origin, with the flags extra, after the nodes of c are gone: it
// shares nothing with c but the origin and what extra names (the second
// level). It runs in c's cluster slot.
func (c *cluster) restartCold(size int, extra ...string) *cluster {
	c.t.Helper()
	d := &cluster{t: c.t, origin: c.origin, client: c.client}
	d.start(size, func(_ int, dir, name string, more ...string) (*node, error) {
		return launch(dir, name, d.origin, slices.Concat(extra, more)...)
	})
	return d
}

// TestL2WarmsAColdCluster crashes a whole cluster and checks that the
// second level (Redis) warms the next one. Three nodes with -redis read
// 103 keys through every node (the owners load them and write them to
// L2); then, each with a new origin value, one key is deleted (DELETE), one
// is deleted and read again, and three are invalidated by tag (POST
// invalidate-tags), so that L2 holds the new value of the second and
// nothing valid for the other four. Every node is SIGKILLed (no hand-over,
// no snapshot), three fresh nodes join on the same origin and Redis prefix,
// and every key is read through every node: each answer is 200 with the
// key's current value (never one L2 should have dropped), and the new
// cluster loads only the four keys L2 must not serve, all others being L2
// hits. Errors of L2 (a call over its 100ms timeout on a loaded machine)
// may each cost a load more: the bound allows for them.
func TestL2WarmsAColdCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("crash and restart of a cluster with a second level: skipped with -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	flags := redisFlags(t, srv)
	c := newClusterWith(t, 3, flags...)
	const group = "l2warm"
	c.touchGroup(group)
	keys, values := c.keySet(group, "k", 100)
	tagged, tvalues := c.keySet(group, "t", 3) // tagged "t" by the demo's loader
	for k, v := range tvalues {
		values[k] = v
	}
	all := slices.Concat(keys, tagged)

	begin := time.Now()
	warmSources := c.readThrough(c.nodes, group, all, values)
	warm := counters(c.groupStats(c.nodes, group), l2Fields...)
	t.Logf("first cluster: %d keys read through %d nodes in %v: X-Cache %v; %s",
		len(all), len(c.nodes), time.Since(begin).Round(time.Millisecond), warmSources, formatCounters(warm))
	if warm["loads"] < float64(len(all)) {
		t.Fatalf("the first cluster loaded %v times for %d keys: the keys were not all loaded", warm["loads"], len(all))
	}
	if warm["l2_stores"] == 0 {
		t.Fatalf("the first cluster wrote nothing to the second level: %s", formatCounters(warm))
	}

	// Writes: new origin values, then invalidations through the API.
	newValue := func(k string) {
		values[k] = fmt.Sprintf("%s/%s value 2", group, k)
		c.writeOrigin(group, k, values[k])
	}
	for _, k := range tagged {
		newValue(k)
	}
	c.write(http.MethodPost, c.nodes[0], "/v1/"+url.PathEscape(group)+"/-/invalidate-tags?tag=t")
	deleted, reread := keys[0], keys[1]
	newValue(deleted)
	c.write(http.MethodDelete, c.nodes[1], keyPath(group, deleted))
	newValue(reread)
	c.write(http.MethodDelete, c.nodes[2], keyPath(group, reread))
	// The new values, read now: every node, reread loaded again (and
	// written back to L2) but not the others, whose loads come after the
	// restart.
	for _, n := range c.nodes {
		c.mustGet(n, group, reread, values[reread])
	}
	before := counters(c.groupStats(c.nodes, group), l2Fields...)
	// Keys L2 must not serve after the restart: their new values are not
	// in it, and their old ones must be dropped.
	mustLoad := append([]string{deleted}, tagged...)

	// A crash of the whole cluster: no hand-over, no snapshot.
	for _, n := range c.nodes {
		n.signal(t, syscall.SIGKILL)
	}
	for _, n := range c.nodes {
		if code := n.wait(t); code != -1 {
			t.Errorf("%s after SIGKILL: exit code %d, want -1 (signalled)", n.name, code)
		}
	}

	d := c.restartCold(3, flags...)
	d.settledRing(d.nodes)
	begin = time.Now()
	sources := d.readThrough(d.nodes, group, all, values)
	after := counters(d.groupStats(d.nodes, group), l2Fields...)
	loads := after["loads"]
	// Each error of L2 (a read that failed, or one skipped for a while
	// after a failure; a write-back that failed) may cost one load that L2
	// should have saved.
	errs := before["l2_errors"] + after["l2_errors"]
	t.Logf("second cluster (cold, after SIGKILL of the first): %d keys read through %d nodes in %v: X-Cache %v; %s; "+
		"%v loads for %d keys (%.3f loads per key; %d keys had to be loaded); L2 errors in the first cluster %v",
		len(all), len(d.nodes), time.Since(begin).Round(time.Millisecond), sources, formatCounters(after),
		loads, len(all), loads/float64(len(all)), len(mustLoad), before["l2_errors"])
	if loads < float64(len(mustLoad)) {
		t.Errorf("the second cluster loaded %v times, want at least %d (%v: L2 must not serve them)", loads, len(mustLoad), mustLoad)
	}
	if limit := float64(len(mustLoad)) + errs; loads > limit {
		t.Errorf("the second cluster loaded %v times for %d keys, want at most %v (%d keys L2 must not serve, plus %v L2 errors)",
			loads, len(all), limit, len(mustLoad), errs)
	}
	if want := float64(len(all)-len(mustLoad)) - errs; after["l2_hits"] < want {
		t.Errorf("the second cluster found %v keys in L2, want at least %v (%d keys L2 holds, minus %v L2 errors)",
			after["l2_hits"], want, len(all)-len(mustLoad), errs)
	}
	if after["l2_hits"] == 0 {
		t.Errorf("the second cluster found nothing in L2: %s", formatCounters(after))
	}
	checkRunning(t, d.nodes)
}

// TestL2DownAnswersEveryRequest takes the second level away under three
// nodes with -redis: the redis-server is SIGSTOPped (connections open,
// nothing answered), then continued, then killed. Throughout, every key,
// old or new (new ones make the owners load, and so ask L2), read through
// every node answers 200 with its value; L2's failures show in l2_errors;
// once Redis is back the owners write to it again.
func TestL2DownAnswersEveryRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("second-level outage: skipped with -short")
	}
	t.Parallel()
	srv := redistest.Start(t)
	c := newClusterWith(t, 3, redisFlags(t, srv)...)
	const group = "l2down"
	c.touchGroup(group)
	keys, values := c.keySet(group, "a", 30)
	sources := c.readThrough(c.nodes, group, keys, values)
	up := counters(c.groupStats(c.nodes, group), l2Fields...)
	t.Logf("Redis up: %d keys read through %d nodes: X-Cache %v; %s", len(keys), len(c.nodes), sources, formatCounters(up))

	// phase adds n new keys, reads every key so far through every node,
	// and returns the counters.
	phase := func(name, prefix string, n int) map[string]float64 {
		t.Helper()
		more, vs := c.keySet(group, prefix, n)
		for k, v := range vs {
			values[k] = v
		}
		keys = append(keys, more...)
		begin := time.Now()
		answers := c.wave(group, keys, c.nodes, 6, begin)
		if len(answers) != len(keys)*len(c.nodes) {
			t.Fatalf("%d answers, want %d", len(answers), len(keys)*len(c.nodes))
		}
		worst, _, _, sources := waveReport(t, group, answers, values, 0, "")
		if t.Failed() {
			t.FailNow()
		}
		st := counters(c.groupStats(c.nodes, group), l2Fields...)
		t.Logf("%s: %d keys (%d new) read through %d nodes in %v, all 200 with the right value (worst %v): X-Cache %v; %s",
			name, len(keys), n, len(c.nodes), time.Since(begin).Round(time.Millisecond), worst.Round(time.Millisecond),
			sources, formatCounters(st))
		return st
	}

	srv.Pause()
	paused := phase("Redis SIGSTOPped", "b", 30)
	if paused["l2_errors"] <= up["l2_errors"] {
		t.Errorf("l2_errors went from %v to %v while Redis was stopped and %d new keys were loaded, want more",
			up["l2_errors"], paused["l2_errors"], 30)
	}
	if got := paused["loads"] - up["loads"]; got < 30 {
		t.Errorf("%v loads while Redis was stopped, want at least the 30 new keys", got)
	}

	// Back: within a bound, the owners write what they load to L2 again
	// (reads skip it for a while after a failure).
	srv.Resume()
	resumed := phase("Redis continued", "c", 30)
	deadline := time.Now().Add(outageTimeout)
	for i := 0; resumed["l2_stores"] <= paused["l2_stores"]; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%v after Redis was continued, the nodes still write nothing to it: %s", outageTimeout, formatCounters(resumed))
		}
		time.Sleep(pollEvery)
		k := fmt.Sprintf("r:%d", i)
		values[k] = fmt.Sprintf("%s/%s value", group, k)
		c.writeOrigin(group, k, values[k])
		for _, n := range c.nodes {
			c.mustGet(n, group, k, values[k])
		}
		resumed = counters(c.groupStats(c.nodes, group), l2Fields...)
	}
	t.Logf("the nodes write to Redis again: %s", formatCounters(resumed))

	srv.Stop()
	gone := phase("Redis killed", "d", 30)
	if gone["l2_errors"] <= resumed["l2_errors"] {
		t.Errorf("l2_errors went from %v to %v after Redis was killed and %d new keys were loaded, want more",
			resumed["l2_errors"], gone["l2_errors"], 30)
	}
	checkRunning(t, c.nodes)
}
