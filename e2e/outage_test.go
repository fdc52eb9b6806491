package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// outageTimeout bounds each wait of the outage test: for the TTL to run
// out everywhere, and for the new values once the origin is back (stale
// answers and retries at most once a second per key are in the way).
const outageTimeout = 20 * time.Second

// setOriginDown creates (down) or removes the file whose presence makes
// every load of the demo origin fail, as in a database outage.
func (c *cluster) setOriginDown(down bool) {
	c.t.Helper()
	path := filepath.Join(c.origin, ".down")
	var err error
	if down {
		err = os.WriteFile(path, nil, 0o644)
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

// TestOriginOutage takes the origin down under three nodes that run with
// -ttl 1s -stale-if-error 1m: past the TTL every node still answers 200
// with the values read before (X-Cache stale); a key never read answers
// 503, and so does a key deleted during the outage, on every node, never
// with its old value. Loads of the stale keys are retried about once a
// second, not per request. Once the origin is back, with new values, every
// node serves the new values, and none goes back to an old one.
func TestOriginOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("origin outage: skipped with -short")
	}
	t.Parallel()
	c := newClusterWith(t, 3, "-ttl", "1s", "-hot-ttl", "1s", "-stale-if-error", "1m")
	const group = "outage"
	c.touchGroup(group)
	keys, values := c.keySet(group, "k", 12)
	const never = "never"
	c.writeOrigin(group, never, "never read")

	// Every node reads every key: the owners hold them, the others hold
	// hot copies.
	for _, n := range c.nodes {
		for _, k := range keys {
			c.mustGet(n, group, k, values[k])
		}
	}
	before := sum(c.groupStats(c.nodes, group), "loads")
	c.setOriginDown(true)
	down := time.Now()

	// Past the TTL (hot copies included), every answer is the old value,
	// served stale. Until then they are hits or copies of the old value.
	passes := 0
	for {
		passes++
		allStale := true
		for _, n := range c.nodes {
			for _, k := range keys {
				if r := c.mustGet(n, group, k, values[k]); r.xcache() != "stale" {
					allStale = false
				}
			}
		}
		if allStale {
			break
		}
		if time.Since(down) > outageTimeout {
			t.Fatalf("%v after the origin went down, not every answer is stale (X-Cache)", outageTimeout)
		}
		time.Sleep(pollEvery)
	}
	t.Logf("every node served all %d keys stale %v after the origin went down (%d passes)",
		len(keys), time.Since(down).Round(time.Millisecond), passes)

	// Nothing to serve stale: 503.
	for _, n := range c.nodes {
		if r := c.get(n, group, never); r.status != http.StatusServiceUnavailable {
			t.Errorf("GET %s/%s (never read) on %s during the outage = %d %q (X-Cache %q), want 503",
				group, never, n.name, r.status, r.body, r.xcache())
		}
	}

	// A key deleted during the outage is gone everywhere: 503, never its
	// old value, however often it is asked for.
	deleted, kept := keys[0], keys[1:]
	c.write(http.MethodDelete, c.nodes[1], keyPath(group, deleted))
	for range 3 {
		for _, n := range c.nodes {
			r := c.get(n, group, deleted)
			if r.status != http.StatusServiceUnavailable || r.body == values[deleted] {
				t.Errorf("GET %s/%s (deleted during the outage) on %s = %d %q (X-Cache %q), want 503",
					group, deleted, n.name, r.status, r.body, r.xcache())
			}
		}
	}
	// The others are still served stale.
	for _, n := range c.nodes {
		for _, k := range kept {
			if r := c.mustGet(n, group, k, values[k]); r.xcache() != "stale" {
				t.Errorf("GET %s/%s on %s during the outage: X-Cache %q, want stale", group, k, n.name, r.xcache())
			}
		}
	}
	// The loads of a key served stale are retried at most once a second
	// for the fleet, not once per request; every request for the two keys
	// without a stale value may load.
	loads := sum(c.groupStats(c.nodes, group), "loads") - before
	outage := time.Since(down)
	budget := float64(len(kept)*(int(outage.Seconds())+2) + 4*len(c.nodes))
	t.Logf("%v loads during the %v outage (%d keys served stale; budget %v)", loads, outage.Round(time.Millisecond), len(kept), budget)
	if loads > budget {
		t.Errorf("%v loads during the %v outage for %d keys served stale, want at most %v (about one retry a second per key)",
			loads, outage.Round(time.Millisecond), len(kept), budget)
	}
	if t.Failed() {
		return
	}

	// The origin comes back with new values.
	fresh := make(map[string]string)
	for _, k := range append([]string{never}, keys...) {
		fresh[k] = k + " v2"
		c.writeOrigin(group, k, fresh[k])
	}
	c.setOriginDown(false)
	up := time.Now()
	// Until each node serves the new value of each key, a key that has an
	// old value may be served stale; the others may fail. Once a node
	// served the new value, it never serves the old one again.
	type nodeKey struct{ node, key string }
	updated := make(map[nodeKey]bool)
	unavailable := 0
	for len(updated) < len(c.nodes)*len(fresh) {
		if time.Since(up) > outageTimeout {
			t.Fatalf("%v after the origin came back, %d of %d (node, key) pairs serve the new value",
				outageTimeout, len(updated), len(c.nodes)*len(fresh))
		}
		for _, n := range c.nodes {
			for k, want := range fresh {
				r := c.get(n, group, k)
				nk := nodeKey{n.name, k}
				switch {
				case r.status == http.StatusOK && r.body == want:
					updated[nk] = true
				case r.status == http.StatusOK && r.body == values[k] && k != deleted && !updated[nk]:
					// Still stale.
				case r.status == http.StatusServiceUnavailable && (k == deleted || k == never) && !updated[nk]:
					unavailable++
				default:
					t.Fatalf("GET %s/%s on %s after the origin came back = %d %q (X-Cache %q), want 200 %q (or, before that, the stale value, or 503 for a key without one)",
						group, k, n.name, r.status, r.body, r.xcache(), want)
				}
			}
		}
		if len(updated) < len(c.nodes)*len(fresh) {
			time.Sleep(pollEvery)
		}
	}
	t.Logf("every node served the new values %v after the origin came back (%d answers 503 on the way)",
		time.Since(up).Round(time.Millisecond), unavailable)
	checkRunning(t, c.nodes)
}
