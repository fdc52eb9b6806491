package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readThrough GETs each of keys through each of nodes (key by key, a few
// at once) and checks that every answer is 200 with the key's value. It
// returns the X-Cache counts.
func (c *cluster) readThrough(nodes []*node, group string, keys []string, values map[string]string) map[string]int {
	c.t.Helper()
	answers := c.wave(group, keys, nodes, 6, time.Now())
	if len(answers) != len(keys)*len(nodes) {
		c.t.Fatalf("%d answers, want %d", len(answers), len(keys)*len(nodes))
	}
	_, _, _, sources := waveReport(c.t, group, answers, values, 0, "")
	if c.t.Failed() {
		c.t.FailNow()
	}
	return sources
}

// counters sums the fields of group's counters over the stats of nodes.
func counters(stats []map[string]float64, fields ...string) map[string]float64 {
	m := make(map[string]float64, len(fields))
	for _, f := range fields {
		m[f] = sum(stats, f)
	}
	return m
}

// addCounters adds b to a, field by field.
func addCounters(a, b map[string]float64) {
	for k, v := range b {
		a[k] += v
	}
}

// formatCounters prints m with its keys sorted.
func formatCounters(m map[string]float64) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", k, m[k])
	}
	return b.String()
}

// TestRollingRestartWarm is the hand-over target of a rolling restart: 300
// keys read through each of three nodes (each owner holds its keys in its
// main cache, the others hot), then each node in turn is stopped with
// SIGTERM (it hands the entries it owns over to their next owners and exits
// 0), all keys are read through the two live nodes, it is started again
// under the same name joining a live member, and once it is a member
// everywhere and ready all keys are read through every node. Every request
// answers 200 with the key's value, and the three restarts together cost at most
// 0.1 loads per key: the group counter "loads" summed over every process
// that ever ran (a stopped process counted just before its SIGTERM), minus
// the loads of the warm-up.
func TestRollingRestartWarm(t *testing.T) {
	if testing.Short() {
		t.Skip("rolling restart of warm nodes: skipped with -short")
	}
	t.Parallel()
	const (
		nkeys  = 300
		target = 0.1 // loads per key over the three restarts
	)
	// Counters, summed over processes (not gauges such as items).
	fields := []string{"loads", "handoffs", "fallbacks", "peer_fetches", "peer_errors"}
	c := newCluster(t, 3)
	c.client = newClient(30 * time.Second) // measure a slow answer rather than cut it
	t.Cleanup(c.client.CloseIdleConnections)
	const group = "warm"
	c.touchGroup(group)
	keys, values := c.keySet(group, "w", nkeys)

	begin := time.Now()
	warmSources := c.readThrough(c.nodes, group, keys, values)
	warmStats := c.groupStats(c.nodes, group)
	warm := counters(warmStats, fields...)
	t.Logf("warm-up: %d keys read through %d nodes in %v: X-Cache %v; %s; main items %v, hot items %v",
		nkeys, len(c.nodes), time.Since(begin).Round(time.Millisecond), warmSources, formatCounters(warm),
		sum(warmStats, "items"), sum(warmStats, "hot_items"))
	if warm["loads"] < nkeys {
		t.Fatalf("the warm-up loaded %v times for %d keys: the keys were not all loaded", warm["loads"], nkeys)
	}
	if items := sum(warmStats, "items"); items < nkeys {
		t.Errorf("after the warm-up the owners hold %v items in their main caches, want %d", items, nkeys)
	}

	// gone sums the counters of the processes that have exited, each read
	// just before its SIGTERM.
	gone := make(map[string]float64)
	restarts := time.Now()
	var perStep []float64
	for i, old := range c.nodes {
		step := time.Now()
		addCounters(gone, counters(c.groupStats([]*node{old}, group), fields...))
		old.signal(t, syscall.SIGTERM)
		if code := old.wait(t); code != 0 {
			t.Errorf("%s after SIGTERM: exit code %d, want 0; output tail:\n%s", old.name, code, old.out.tail(20))
		}
		stopped := time.Since(step)
		live := slices.Concat(c.nodes[:i], c.nodes[i+1:])
		c.waitMembers(live, names(live))
		// Traffic goes on while it is down: the live nodes answer every
		// key, the ones it owned from what it handed over.
		down := c.readThrough(live, group, keys, values)
		downLoads := sum(c.groupStats(live, group), "loads") + gone["loads"] - warm["loads"]
		back := time.Now()
		n := startNode(t, old.name, c.origin, "-join", live[0].gossip)
		c.nodes[i] = n
		c.waitMembers(c.nodes, names(c.nodes))
		c.waitReadyz(n, memberTimeout)
		rejoined := time.Since(back)
		sources := c.readThrough(c.nodes, group, keys, values)

		now := counters(c.groupStats(c.nodes, group), fields...)
		addCounters(now, gone)
		loads := now["loads"] - warm["loads"]
		perStep = append(perStep, loads-sumFloats(perStep))
		t.Logf("restart %d (%s): stopped in %v (%s); read while it was down: X-Cache %v, loads since the warm-up %v; "+
			"started again, member everywhere and ready in %v; read through every node: X-Cache %v, loads since the warm-up %v (%.3f per key); "+
			"all processes so far: %s",
			i+1, old.name, stopped.Round(time.Millisecond), handOverLine(old), down, downLoads,
			rejoined.Round(time.Millisecond), sources, loads, loads/nkeys, formatCounters(now))
	}
	took := time.Since(restarts)

	final := counters(c.groupStats(c.nodes, group), fields...)
	addCounters(final, gone)
	loads := final["loads"] - warm["loads"]
	handoffs := final["handoffs"] - warm["handoffs"]
	perKey := loads / nkeys
	t.Logf("rolling restart of %d warm nodes in %v: %v loads for %d keys (%.3f per key, target %v; per restart %v), "+
		"%v entries received by hand-over or hand-off",
		len(c.nodes), took.Round(time.Millisecond), loads, nkeys, perKey, target, perStep, handoffs)
	if perKey > target {
		t.Errorf("the rolling restart cost %v loads for %d keys (%.3f per key), want at most %v per key", loads, nkeys, perKey, target)
	}
	checkRunning(t, c.nodes)
}

// sumFloats adds s.
func sumFloats(s []float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t
}

// handOverLine returns the hand-over log line of an exited node, or a note
// that it has none.
func handOverLine(n *node) string {
	for line := range strings.Lines(n.out.String()) {
		if strings.Contains(line, "handed over") || strings.Contains(line, "hand-over") {
			return strings.TrimSpace(line)
		}
	}
	return "no hand-over line in its output"
}
