package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// member is one entry of /v1/members.
type member struct {
	Name   string `json:"name"`
	Gossip string `json:"gossip"`
	RPC    string `json:"rpc"`
	State  string `json:"state"`
}

// alive returns the sorted names of the members n lists as alive.
func (c *cluster) alive(n *node) ([]string, error) {
	r, err := do(c.t.Context(), c.client, http.MethodGet, n, "/v1/members", nil)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/members on %s = %d %s", n.name, r.status, r.body)
	}
	var body struct {
		Members []member `json:"members"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		return nil, fmt.Errorf("GET /v1/members on %s: %w in %q", n.name, err, r.body)
	}
	var s []string
	for _, m := range body.Members {
		if m.State == "alive" || m.State == "" {
			s = append(s, m.Name)
		}
	}
	slices.Sort(s)
	return s, nil
}

// waitMembers polls until each of nodes lists exactly want as alive
// members, for up to memberTimeout, and returns how long it took.
func (c *cluster) waitMembers(nodes []*node, want []string) time.Duration {
	c.t.Helper()
	took, ok := c.tryWaitMembers(nodes, want)
	if !ok {
		c.t.Fatalf("members want %v: not within %v", want, memberTimeout)
	}
	return took
}

// tryWaitMembers is waitMembers that logs what it saw and reports a
// timeout instead of failing.
func (c *cluster) tryWaitMembers(nodes []*node, want []string) (time.Duration, bool) {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(memberTimeout)
	for _, n := range nodes {
		for {
			got, err := c.alive(n)
			if err == nil && slices.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Logf("members on %s = %v (err %v), want %v", n.name, got, err, want)
				return time.Since(start), false
			}
			select {
			case <-time.After(pollEvery):
			case <-c.t.Context().Done():
				c.t.Log("test ended while waiting for members")
				return time.Since(start), false
			}
		}
	}
	return time.Since(start), true
}

// partitionOwners returns n's ring: the owner of each partition (GET
// /v1/ring).
func (c *cluster) partitionOwners(n *node) []string {
	c.t.Helper()
	r := c.do(http.MethodGet, n, "/v1/ring", nil)
	if r.status != http.StatusOK {
		c.t.Fatalf("GET /v1/ring on %s = %d %s", n.name, r.status, r.body)
	}
	var body struct {
		Partitions []string `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || len(body.Partitions) == 0 {
		c.t.Fatalf("GET /v1/ring on %s: %v in %q", n.name, err, r.body)
	}
	return body.Partitions
}

// ownedKeys returns n keys prefix:i that owner owns in the ring
// partitions (from partitionOwners), without asking any node for them,
// so that none is loaded or cached. The partition of a key is
// xxhash64(key) modulo the partition count (ring.Ring.Owner).
func ownedKeys(partitions []string, owner, prefix string, n int) []string {
	var keys []string
	for i := 0; len(keys) < n && i < 1000*n; i++ {
		k := fmt.Sprintf("%s:%d", prefix, i)
		if partitions[xxhash.Sum64String(k)%uint64(len(partitions))] == owner {
			keys = append(keys, k)
		}
	}
	return keys
}

// groupStats returns every node's counters for group (zero when a node
// does not have the group).
func (c *cluster) groupStats(nodes []*node, group string) []map[string]float64 {
	c.t.Helper()
	var all []map[string]float64
	for _, n := range nodes {
		r := c.do(http.MethodGet, n, "/v1/stats", nil)
		if r.status != http.StatusOK {
			c.t.Fatalf("GET /v1/stats on %s = %d %s", n.name, r.status, r.body)
		}
		var body struct {
			Node   map[string]any                `json:"node"`
			Groups map[string]map[string]float64 `json:"groups"`
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			c.t.Fatalf("GET /v1/stats on %s: %v in %q", n.name, err, r.body)
		}
		all = append(all, body.Groups[group])
	}
	return all
}

// sum adds counter field over stats.
func sum(stats []map[string]float64, field string) float64 {
	var s float64
	for _, m := range stats {
		s += m[field]
	}
	return s
}

// waitReadyz polls until GET /readyz on n answers 200, for up to bound,
// and returns how long it took.
func (c *cluster) waitReadyz(n *node, bound time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		r, err := do(c.t.Context(), c.client, http.MethodGet, n, "/readyz", nil)
		if err == nil && r.status == http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			c.t.Fatalf("GET /readyz on %s = %d %q (err %v) after %v, want 200", n.name, r.status, r.body, err, bound)
		}
		time.Sleep(pollEvery)
	}
}
