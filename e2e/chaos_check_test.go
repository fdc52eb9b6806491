package e2e

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// chaosViolation is a read that returned a version older than a
// successful invalidation that returned before it started requires.
type chaosViolation struct {
	read chaosRead
	want int        // committed(key, by.start)
	by   chaosWrite // the invalidation that requires want
}

// report logs what the soak did and fails the test on violations.
func (ch *chaos) report() {
	t := ch.t
	var (
		reads    []chaosRead
		writes   []chaosWrite
		readErrs = make(map[string]int)
		examples []string
	)
	for _, w := range ch.workers {
		reads = append(reads, w.reads...)
		writes = append(writes, w.writes...)
		if !w.writer {
			for k, v := range w.errors {
				readErrs[k] += v
			}
		}
		examples = append(examples, w.examples...)
	}
	var complete, partial, unanswered int
	statuses := make(map[int]int)
	var readLat, writeLat []time.Duration
	for _, w := range writes {
		switch w.status {
		case http.StatusNoContent:
			complete++
		case 0:
			unanswered++
		default:
			partial++
			statuses[w.status]++
		}
		if w.status != 0 {
			writeLat = append(writeLat, w.end-w.start)
		}
	}
	sources := make(map[string]int)
	for _, r := range reads {
		readLat = append(readLat, r.end-r.start)
		sources[r.xcache]++
	}
	violations := ch.check(reads, writes)

	t.Logf("%d faults %v", len(ch.faultLog), ch.faults)
	t.Logf("reads: %d answered 200 (X-Cache %v), %d failed %v; latency p50 %v p99 %v",
		len(reads), sources, total(readErrs), readErrs, percentile(readLat, 50), percentile(readLat, 99))
	t.Logf("writes: %d complete (204), %d partial (status %v), %d unanswered; latency p50 %v p99 %v",
		complete, partial, statuses, unanswered, percentile(writeLat, 50), percentile(writeLat, 99))
	if len(examples) > 0 {
		t.Logf("failed requests, first few per worker:\n  %s", strings.Join(examples[:min(len(examples), 12)], "\n  "))
	}
	t.Logf("violations: %d", len(violations))
	if len(reads) == 0 || complete == 0 {
		t.Errorf("the soak checked nothing: %d reads, %d complete writes", len(reads), complete)
	}
	if len(violations) == 0 {
		return
	}
	byNode := make(map[string]int)
	bySource := make(map[string]int)
	var worst time.Duration
	for _, v := range violations {
		byNode[v.read.node]++
		bySource[v.read.xcache]++
		worst = max(worst, v.read.start-v.by.end)
	}
	var lines []string
	for _, i := range spread(len(violations), 10) {
		v := violations[i]
		lines = append(lines, fmt.Sprintf("GET %s on %s [%v, %v] = v%d (X-Cache %s), want v%d or newer: %s through %s [%v, %v] answered 204 %v before the read",
			ch.keys[v.read.key].name, v.read.node, v.read.start.Round(time.Millisecond), v.read.end.Round(time.Millisecond),
			v.read.version, v.read.xcache, v.want, v.by.what(ch.keys), v.by.node,
			v.by.start.Round(time.Millisecond), v.by.end.Round(time.Millisecond), (v.read.start-v.by.end).Round(time.Millisecond)))
	}
	t.Errorf("%d of %d reads (by node %v, by X-Cache %v) started after a successful invalidation returned and saw an older version, up to %v after it; examples:\n  %s\nfaults:\n  %s",
		len(violations), len(reads), byNode, bySource, worst.Round(time.Millisecond),
		strings.Join(lines, "\n  "), strings.Join(ch.faultLog, "\n  "))
}

// check returns the reads that break the rule of [TestChaos], in order of
// their start.
func (ch *chaos) check(reads []chaosRead, writes []chaosWrite) []chaosViolation {
	// bound is what a successful invalidation requires of one key from
	// the reads that start after it returned.
	type bound struct {
		end     time.Duration
		version int
		by      chaosWrite
	}
	bounds := make([][]bound, len(ch.keys))
	for _, w := range writes {
		if w.status != http.StatusNoContent {
			continue
		}
		for k, key := range ch.keys {
			if (w.tag == "" && k == w.key) || (w.tag != "" && key.tag == w.tag) {
				bounds[k] = append(bounds[k], bound{w.end, key.committed(w.start), w})
			}
		}
	}
	// Sort each key's bounds by end, and make each the strongest of those
	// that ended no later.
	for _, bs := range bounds {
		slices.SortFunc(bs, func(a, b bound) int { return cmp.Compare(a.end, b.end) })
		for i := 1; i < len(bs); i++ {
			if bs[i].version < bs[i-1].version {
				bs[i].version, bs[i].by = bs[i-1].version, bs[i-1].by
			}
		}
	}
	var out []chaosViolation
	for _, r := range reads {
		bs := bounds[r.key]
		// The invalidations that returned strictly before r started.
		i, _ := slices.BinarySearchFunc(bs, r.start, func(b bound, t time.Duration) int {
			if b.end < t {
				return -1
			}
			return 1
		})
		if i > 0 && r.version < bs[i-1].version {
			out = append(out, chaosViolation{read: r, want: bs[i-1].version, by: bs[i-1].by})
		}
	}
	slices.SortFunc(out, func(a, b chaosViolation) int { return cmp.Compare(a.read.start, b.read.start) })
	return out
}

// percentile returns the p-th percentile of d (sorting it), 0 if empty.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)].Round(10 * time.Microsecond)
}

// spread returns up to n indexes spread evenly over [0, size).
func spread(size, n int) []int {
	if size <= n {
		out := make([]int, size)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i * (size - 1) / (n - 1)
	}
	return out
}

// TestChaosCheck checks the rule of [TestChaos] on made-up histories: what
// the guarantee leaves open is not a violation.
func TestChaosCheck(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// Key 0 is t0:k0, key 1 t0:k1 (same tag), key 2 t1:k0.
	newKeys := func() []*chaosKey {
		return []*chaosKey{
			{name: "t0:k0", tag: "t0", commits: []chaosCommit{{ms(10), 1}, {ms(30), 2}}},
			{name: "t0:k1", tag: "t0", commits: []chaosCommit{{ms(40), 1}}},
			{name: "t1:k0", tag: "t1", commits: []chaosCommit{{ms(5), 1}}},
		}
	}
	del := func(key, version, start, end, status int) chaosWrite {
		return chaosWrite{key: key, version: version, node: "w", status: status, start: ms(start), end: ms(end)}
	}
	tag := func(key int, tag string, version, start, end, status int) chaosWrite {
		w := del(key, version, start, end, status)
		w.tag = tag
		return w
	}
	read := func(key, version, start int) chaosRead {
		return chaosRead{key: key, node: "r", xcache: "hit", version: version, start: ms(start), end: ms(start + 1)}
	}
	tests := []struct {
		name   string
		writes []chaosWrite
		read   chaosRead
		want   int // the version required, 0 for no violation
	}{
		{"older after the DELETE returned", []chaosWrite{del(0, 1, 11, 15, 204)}, read(0, 0, 16), 1},
		{"newer after the DELETE returned", []chaosWrite{del(0, 1, 11, 15, 204)}, read(0, 1, 16), 0},
		{"started while the DELETE ran", []chaosWrite{del(0, 1, 11, 15, 204)}, read(0, 0, 14), 0},
		{"started as the DELETE returned", []chaosWrite{del(0, 1, 11, 15, 204)}, read(0, 0, 15), 0},
		{"between the bump and the DELETE", []chaosWrite{del(0, 1, 11, 15, 204)}, read(0, 1, 31), 0},
		{"after a partial DELETE", []chaosWrite{del(0, 1, 11, 15, 204), del(0, 2, 32, 33, 503)}, read(0, 1, 34), 0},
		{"after an unanswered DELETE", []chaosWrite{del(0, 2, 32, 33, 0)}, read(0, 0, 34), 0},
		{"after a partial one, a complete one", []chaosWrite{del(0, 2, 32, 33, 503), tag(1, "t0", 1, 41, 45, 204)}, read(0, 1, 46), 2},
		{"another key's DELETE", []chaosWrite{del(1, 1, 41, 45, 204)}, read(0, 0, 46), 0},
		{"tag: a bump concurrent with it", []chaosWrite{tag(0, "t0", 2, 39, 45, 204)}, read(1, 0, 46), 0},
		{"tag: the other keys of the tag", []chaosWrite{tag(0, "t0", 2, 39, 45, 204)}, read(0, 1, 46), 2},
		{"tag: another tag", []chaosWrite{tag(0, "t0", 2, 39, 45, 204)}, read(2, 0, 46), 0},
		{"the strongest earlier bound", []chaosWrite{del(0, 2, 32, 40, 204), del(0, 1, 11, 41, 204)}, read(0, 1, 42), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := &chaos{keys: newKeys()}
			got := ch.check([]chaosRead{tt.read}, tt.writes)
			switch {
			case tt.want == 0 && len(got) != 0:
				t.Errorf("violation %+v, want none", got[0])
			case tt.want != 0 && len(got) != 1:
				t.Errorf("%d violations, want 1 (v%d required)", len(got), tt.want)
			case tt.want != 0 && got[0].want != tt.want:
				t.Errorf("violation requires v%d, want v%d", got[0].want, tt.want)
			}
		})
	}
}
