package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
)

// TestCluster runs three nodes and checks membership, one load per key
// fleet-wide, and fleet-wide invalidation (key, tag, clear).
func TestCluster(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)

	t.Run("members", func(t *testing.T) {
		want := names(c.nodes)
		for _, n := range c.nodes {
			got, err := c.alive(n)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("members on %s = %v, want %v", n.name, got, want)
			}
		}
	})

	t.Run("once fleet-wide", func(t *testing.T) {
		c := c.in(t)
		const group, keys, workers = "fleet", 200, 16
		c.touchGroup(group)
		before := c.groupStats(c.nodes, group)
		for i := range keys {
			c.writeOrigin(group, fmt.Sprintf("k%03d", i), fmt.Sprintf("value %d", i))
		}
		type job struct {
			n   *node
			key int
		}
		var jobs []job
		for _, n := range c.nodes {
			for i := range keys {
				jobs = append(jobs, job{n, i})
			}
		}
		rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
		ch := make(chan job)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			failures []string
		)
		for range workers {
			wg.Go(func() {
				for j := range ch {
					key, want := fmt.Sprintf("k%03d", j.key), fmt.Sprintf("value %d", j.key)
					r, err := do(t.Context(), c.client, http.MethodGet, j.n, keyPath(group, key), nil)
					if err == nil && (r.status != http.StatusOK || r.body != want) {
						err = fmt.Errorf("GET %s/%s on %s = %d %q, want 200 %q", group, key, j.n.name, r.status, r.body, want)
					}
					if err != nil {
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
					}
				}
			})
		}
		for _, j := range jobs {
			ch <- j
		}
		close(ch)
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("%d of %d requests failed; first: %s", len(failures), len(jobs), failures[0])
		}
		stats := sub(c.groupStats(c.nodes, group), before)
		if got := sum(stats, "loads"); got != keys {
			t.Errorf("sum of loads over the nodes = %v, want %d (per node %v)", got, keys, field(stats, "loads"))
		}
		t.Logf("%d requests: loads per node %v, peer_fetches %v, loads_deduplicated %v, fallbacks %v",
			len(jobs), field(stats, "loads"), field(stats, "peer_fetches"),
			field(stats, "loads_deduplicated"), field(stats, "fallbacks"))
	})

	t.Run("invalidate", func(t *testing.T) {
		c := c.in(t)
		const group = "inv"
		c.touchGroup(group)
		// warm writes v1 of keys, reads them twice on every node (so each
		// node holds a copy), writes v2 to the origin, and checks every
		// node still serves v1 from its cache.
		warm := func(keys ...string) {
			t.Helper()
			for _, k := range keys {
				c.writeOrigin(group, k, k+" v1")
			}
			for range 2 {
				for _, n := range c.nodes {
					for _, k := range keys {
						c.mustGet(n, group, k, k+" v1")
					}
				}
			}
			for _, k := range keys {
				c.writeOrigin(group, k, k+" v2")
			}
			for _, n := range c.nodes {
				for _, k := range keys {
					if r := c.mustGet(n, group, k, k+" v1"); r.xcache() != "hit" && r.xcache() != "hot" {
						t.Errorf("GET %s/%s on %s: X-Cache %q, want hit or hot", group, k, n.name, r.xcache())
					}
				}
			}
		}
		// fresh checks every node serves v2 of keys.
		fresh := func(keys ...string) {
			t.Helper()
			for _, n := range c.nodes {
				for _, k := range keys {
					c.mustGet(n, group, k, k+" v2")
				}
			}
		}

		warm("doc:a", "doc:b")
		c.write(http.MethodDelete, c.nodes[1], keyPath(group, "doc:a"))
		fresh("doc:a")
		for _, n := range c.nodes { // the other key keeps its cached value
			c.mustGet(n, group, "doc:b", "doc:b v1")
		}

		warm("user:1", "user:2", "user:3", "page:1")
		c.write(http.MethodPost, c.nodes[2], "/v1/"+group+"/-/invalidate-tags?tag=user")
		fresh("user:1", "user:2", "user:3")
		for _, n := range c.nodes { // untagged by "user": still cached
			c.mustGet(n, group, "page:1", "page:1 v1")
		}

		warm("item:1", "item:2", "plain")
		c.write(http.MethodPost, c.nodes[0], "/v1/"+group+"/-/clear")
		fresh("item:1", "item:2", "plain", "doc:b", "page:1")
	})

	t.Run("set in a group only one node has used", func(t *testing.T) {
		c := c.in(t)
		const group = "fresh"
		for i := range 6 {
			k := fmt.Sprintf("k%d", i)
			if r := c.do(http.MethodPut, c.nodes[1], keyPath(group, k), []byte(k+" set")); r.status != http.StatusNoContent {
				t.Fatalf("PUT %s/%s on %s = %d %s, want 204", group, k, c.nodes[1].name, r.status, r.body)
			}
		}
		for _, n := range c.nodes {
			for i := range 6 {
				k := fmt.Sprintf("k%d", i)
				if r := c.get(n, group, k); r.status != http.StatusOK || r.body != k+" set" {
					t.Errorf("GET %s/%s on %s after PUT = %d %q (X-Cache %s, X-Owner %s), want 200 %q",
						group, k, n.name, r.status, r.body, r.xcache(), r.owner(), k+" set")
				}
			}
		}
	})
}

// in returns a copy of c that reports to t.
func (c *cluster) in(t *testing.T) *cluster {
	d := *c
	d.t = t
	return &d
}

// sub returns the counters of a minus those of b, node by node.
func sub(a, b []map[string]float64) []map[string]float64 {
	d := make([]map[string]float64, len(a))
	for i := range a {
		d[i] = make(map[string]float64, len(a[i]))
		for k, v := range a[i] {
			d[i][k] = v - b[i][k]
		}
	}
	return d
}

// field returns counter name of each node's stats.
func field(stats []map[string]float64, name string) []float64 {
	s := make([]float64, len(stats))
	for i, m := range stats {
		s[i] = m[name]
	}
	return s
}
