package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// picker picks among the nodes that are up, and lets a test take one down
// once the requests in flight to it have finished.
type picker struct {
	mu       sync.Mutex
	cond     *sync.Cond
	up       []*node
	inflight map[*node]int
}

func newPicker(nodes []*node) *picker {
	p := &picker{up: slices.Clone(nodes), inflight: make(map[*node]int)}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// acquire returns a random node that is up; release it when done.
func (p *picker) acquire(rng *rand.Rand) *node {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.up[rng.IntN(len(p.up))]
	p.inflight[n]++
	return n
}

// release ends a request to n.
func (p *picker) release(n *node) {
	p.mu.Lock()
	p.inflight[n]--
	p.mu.Unlock()
	p.cond.Broadcast()
}

// drain removes n from the nodes that are up and waits until no request to
// it is in flight.
func (p *picker) drain(n *node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = slices.DeleteFunc(p.up, func(m *node) bool { return m == n })
	for p.inflight[n] > 0 {
		p.cond.Wait()
	}
}

// add makes n available.
func (p *picker) add(n *node) {
	p.mu.Lock()
	p.up = append(p.up, n)
	p.mu.Unlock()
}

// load is a set of client goroutines sending GETs until stopped.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	requests int
	sources  map[string]int // X-Cache value → count
	failures []string       // first few failures
	failed   int
	worst    time.Duration
}

// request is one GET chosen by a load worker: the node to ask, the key,
// the value expected (empty: 404 expected), and whether a failure counts.
type request struct {
	node   *node
	group  string
	key    string
	want   string
	strict bool
	done   func()
}

// startLoad runs workers goroutines, each calling next for a request and
// sending it with client, until stop is called.
func startLoad(t *testing.T, client *http.Client, workers int, next func(rng *rand.Rand) request) *load {
	l := &load{stop: make(chan struct{}), sources: make(map[string]int)}
	for i := range workers {
		l.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				rq := next(rng)
				r, err := do(t.Context(), client, http.MethodGet, rq.node, keyPath(rq.group, rq.key), nil)
				if rq.done != nil {
					rq.done()
				}
				l.record(rq, r, err)
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

// record counts one answer.
func (l *load) record(rq request, r response, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !rq.strict {
		return
	}
	l.requests++
	l.worst = max(l.worst, r.latency)
	var bad string
	switch {
	case err != nil:
		bad = err.Error()
	case rq.want == "" && r.status != http.StatusNotFound:
		bad = fmt.Sprintf("GET %s/%s on %s = %d %q, want 404", rq.group, rq.key, rq.node.name, r.status, r.body)
	case rq.want != "" && (r.status != http.StatusOK || r.body != rq.want):
		bad = fmt.Sprintf("GET %s/%s on %s = %d %q, want 200 %q", rq.group, rq.key, rq.node.name, r.status, r.body, rq.want)
	}
	if bad != "" {
		l.failed++
		if len(l.failures) < 5 {
			l.failures = append(l.failures, bad)
		}
		return
	}
	if rq.want != "" {
		l.sources[r.xcache()]++
	}
}

// halt stops the workers and waits for them (idempotent).
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// waitRequests waits until the load has answered at least n more
// requests, bounded by memberTimeout.
func (l *load) waitRequests(t *testing.T, n int) {
	t.Helper()
	start := l.snapshot().requests
	deadline := time.Now().Add(memberTimeout)
	for {
		got := l.snapshot().requests
		if got >= start+n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load answered %d requests in %v, want %d", got-start, memberTimeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loadStats are a load's counters.
type loadStats struct {
	requests int            // strict requests answered
	failed   int            // of which failed
	sources  map[string]int // X-Cache value → count of 200s
	worst    time.Duration  // longest strict request
}

// loaded returns the number of answers with X-Cache load or fallback.
func (s loadStats) loaded() int { return s.sources["load"] + s.sources["fallback"] }

// snapshot returns the counters so far.
func (l *load) snapshot() loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadStats{l.requests, l.failed, maps.Clone(l.sources), l.worst}
}

// check halts the load and fails t for each failed request.
func (l *load) check(t *testing.T) {
	t.Helper()
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed > 0 {
		t.Errorf("%d of %d requests failed; first: %s", l.failed, l.requests, strings.Join(l.failures, "; "))
	}
	if l.requests == 0 {
		t.Error("the load sent no request")
	}
}
