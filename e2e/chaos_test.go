package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Shape of the chaos soak.
const (
	// chaosNodes is the size of the cluster.
	chaosNodes = 5
	// chaosTags and chaosKeysPerTag shape the key set: keys "t<i>:k<j>",
	// tagged "t<i>" by the demo origin.
	chaosTags, chaosKeysPerTag = 8, 8
	// chaosReaders is the number of readers per node, chaosWriters the
	// number of writers.
	chaosReaders, chaosWriters = 2, 4
	// chaosRequestTimeout bounds every request: longer than a write's
	// -write-timeout (5s), so that a write answers 204 or 503 rather than
	// timing out, and longer than most pauses, so that reads queued on a
	// stopped node are answered once it resumes.
	chaosRequestTimeout = 10 * time.Second
	// chaosDefaultDuration is how long the faults run, unless
	// MESHCACHE_CHAOS_DURATION says otherwise.
	chaosDefaultDuration = 60 * time.Second
)

// TestChaos is a soak of five demo-node processes under faults, checking
// the fleet-wide read-your-invalidation guarantee (DESIGN.md, "The write
// and invalidation path"): once an invalidation has returned nil, no Get
// that starts afterwards, on any node, returns a value loaded before it.
//
// The origin is versioned: each key's file holds "v<N>", and N only grows.
// Writers bump a random key's version in the origin (an atomic rename),
// then invalidate it through a random node that is up: DELETE of the key,
// or POST invalidate-tags of its tag (which also invalidates the other keys
// of the tag). Readers on every node GET random keys without pause. Faults,
// one at a time on a random node: kill -9 and a restart 0.2-1s later,
// SIGSTOP for 3-8s then SIGCONT, SIGTERM and a restart. A restarted process
// keeps its name and the origin, gets new ports, and joins the gossip
// addresses of the other nodes.
//
// Every origin write, read and invalidation is timed on one clock, the
// test process's monotonic time since the soak started. The rule: let
// committed(K, t) be the highest version of key K whose origin write had
// returned before t. An invalidation I is successful when its node answered
// 204; it covers K when it names K or K's tag. A read of K that returned
// version v is a violation when, for some successful I covering K,
//
//	I returned before the read started, and v < committed(K, I's start).
//
// That is exactly the guarantee: the nodes only serve, after I returned,
// values loaded after I began, and those read the origin after
// committed(K, I's start) was in place. Nothing else is checked, so there
// are no false positives from what the guarantee leaves open: a read that
// overlaps the invalidation, or runs between the origin bump and the
// invalidation, may see the old or the new version; a bump concurrent
// with I (another writer of the same key or tag) does not count for I;
// invalidations that answered 503, another status or nothing at all
// (a stopped or restarting node, a client timeout) set no bound, though
// the versions they bumped count for any later successful one. The times
// are taken on the safe side: an origin write's time after it returned,
// an invalidation's start before it was sent and its end after its answer
// was read, a read's start before it was sent. Reads that fail (connection
// refused, timeout, 5xx) are counted as errors, not checked.
//
// MESHCACHE_CHAOS_DURATION (a Go duration) sets how long faults are
// injected, 60s by default; MESHCACHE_CHAOS_FAULTS, a comma-separated
// subset of kill, stop and term, limits the kinds of fault (the controls:
// stop,term). The test reports reads, writes complete (204)
// and partial, faults, latencies and violations, and fails on any
// violation, printing examples.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos soak: skipped with -short")
	}
	duration := chaosDefaultDuration
	if s := os.Getenv("MESHCACHE_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("MESHCACHE_CHAOS_DURATION=%q: want a positive Go duration such as 5m", s)
		}
		duration = d
	}
	faults := chaosFaults
	if s := os.Getenv("MESHCACHE_CHAOS_FAULTS"); s != "" {
		faults = nil
		for _, f := range strings.Split(s, ",") {
			if f = strings.TrimSpace(f); !slices.Contains(chaosFaults, f) {
				t.Fatalf("MESHCACHE_CHAOS_FAULTS=%q: %q is not one of %v", s, f, chaosFaults)
			}
			faults = append(faults, f)
		}
	}
	t.Parallel()
	c := newCluster(t, chaosNodes)
	c.client = newClient(chaosRequestTimeout)
	t.Cleanup(c.client.CloseIdleConnections)
	ch := newChaos(t, c)
	ch.kinds = faults
	ch.startWorkers()
	t.Cleanup(ch.halt)

	ch.warmUp()
	t.Logf("warmed up at %v; injecting faults for %v", ch.since().Round(time.Millisecond), duration)
	faultsEnd := ch.since() + duration
	for ch.since() < faultsEnd {
		ch.pause(1*time.Second, 3*time.Second)
		ch.fault()
	}
	ch.pause(2*time.Second, 2*time.Second) // reads after the last fault
	ch.halt()
	c.client.CloseIdleConnections()

	ch.report()
	checkRunning(t, ch.current())
}

// chaosKey is one key of the soak and the history of its origin versions.
type chaosKey struct {
	name string
	tag  string

	mu      sync.Mutex // guards version and commits
	version int
	commits []chaosCommit // in order of version and of time
}

// chaosCommit is an origin write: at is when it returned.
type chaosCommit struct {
	at      time.Duration
	version int
}

// committed returns the highest version of k whose origin write returned
// before t (0, the initial version, if none). Call it once the writers
// have stopped.
func (k *chaosKey) committed(t time.Duration) int {
	i, _ := slices.BinarySearchFunc(k.commits, t, func(c chaosCommit, t time.Duration) int {
		if c.at < t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return 0
	}
	return k.commits[i-1].version
}

// chaosRead is one read answered 200.
type chaosRead struct {
	key        int // index in chaos.keys
	node       string
	xcache     string
	version    int
	start, end time.Duration
}

// chaosWrite is one origin bump and the invalidation that followed it.
type chaosWrite struct {
	key        int    // index of the key bumped
	version    int    // its new version
	tag        string // the tag invalidated, or "" for a DELETE of the key
	node       string
	status     int // 0 when no answer was read
	start, end time.Duration
}

// what describes the invalidation.
func (w chaosWrite) what(keys []*chaosKey) string {
	if w.tag != "" {
		return "tag " + w.tag
	}
	return "DELETE " + keys[w.key].name
}

// chaosWorker is what one reader or writer recorded; read once the
// workers have stopped.
type chaosWorker struct {
	writer   bool
	reads    []chaosRead
	writes   []chaosWrite
	errors   map[string]int // failed requests by kind
	examples []string       // the first few failures
}

// fail counts a failed request.
func (w *chaosWorker) fail(kind, example string) {
	w.errors[kind]++
	if len(w.examples) < 3 {
		w.examples = append(w.examples, example)
	}
}

// chaos is the state of one soak.
type chaos struct {
	t     *testing.T
	c     *cluster
	start time.Time // the clock's zero
	rng   *rand.Rand
	keys  []*chaosKey

	mu    sync.Mutex // guards nodes and up
	nodes []*node    // the current process of each name
	up    []bool     // false while a node is down for a restart

	stop    chan struct{}
	cancel  context.CancelFunc // ends the requests in flight at halt
	ctx     context.Context
	wg      sync.WaitGroup
	workers []*chaosWorker

	kinds    []string       // the faults to pick from: chaosFaults or some
	faults   map[string]int // faults injected, by kind
	faultLog []string
}

// chaosFaults are the kinds of fault, in MESHCACHE_CHAOS_FAULTS's terms.
var chaosFaults = []string{"kill", "stop", "term"}

// newChaos writes version 0 of every key in the origin and makes every
// node create the group.
func newChaos(t *testing.T, c *cluster) *chaos {
	ctx, cancel := context.WithCancel(t.Context())
	ch := &chaos{
		t:      t,
		c:      c,
		start:  time.Now(),
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		nodes:  slices.Clone(c.nodes),
		up:     make([]bool, len(c.nodes)),
		stop:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
		faults: make(map[string]int),
	}
	for i := range ch.up {
		ch.up[i] = true
	}
	for i := range chaosTags {
		for j := range chaosKeysPerTag {
			k := &chaosKey{name: fmt.Sprintf("t%d:k%d", i, j), tag: fmt.Sprintf("t%d", i)}
			c.writeOrigin(chaosGroup, k.name, "v0")
			ch.keys = append(ch.keys, k)
		}
	}
	// With the group's directory in the origin, restarted nodes create
	// the group at start.
	c.touchGroup(chaosGroup)
	return ch
}

// chaosGroup is the soak's group.
const chaosGroup = "chaos"

// since returns the soak's clock.
func (ch *chaos) since() time.Duration { return time.Since(ch.start) }

// node returns the current process of the i-th name, and whether it is up.
func (ch *chaos) node(i int) (*node, bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.nodes[i], ch.up[i]
}

// current returns the current processes.
func (ch *chaos) current() []*node {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return slices.Clone(ch.nodes)
}

// pickUp returns a random node that is up (a stopped one included: a
// client cannot tell).
func (ch *chaos) pickUp(rng *rand.Rand) *node {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var up []*node
	for i, n := range ch.nodes {
		if ch.up[i] {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[rng.IntN(len(up))]
}

// setUp marks the i-th name up with process n, or down.
func (ch *chaos) setUp(i int, n *node, up bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.nodes[i], ch.up[i] = n, up
}

// startWorkers starts the readers, chaosReaders per node, and the writers.
func (ch *chaos) startWorkers() {
	for i := range chaosNodes * chaosReaders {
		w := &chaosWorker{errors: make(map[string]int)}
		ch.workers = append(ch.workers, w)
		rng := rand.New(rand.NewPCG(uint64(i), ch.rng.Uint64()))
		ch.wg.Go(func() { ch.read(w, i%chaosNodes, rng) })
	}
	for i := range chaosWriters {
		w := &chaosWorker{writer: true, errors: make(map[string]int)}
		ch.workers = append(ch.workers, w)
		rng := rand.New(rand.NewPCG(uint64(1000+i), ch.rng.Uint64()))
		ch.wg.Go(func() { ch.write(w, rng) })
	}
}

// halt stops the workers and waits for them (idempotent).
func (ch *chaos) halt() {
	select {
	case <-ch.stop:
	default:
		close(ch.stop)
		ch.cancel()
	}
	ch.wg.Wait()
}

// sleep waits for d or until the workers stop, and reports whether they
// still run.
func (ch *chaos) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ch.stop:
		return false
	}
}

// read GETs random keys on the slot-th node until the workers stop.
func (ch *chaos) read(w *chaosWorker, slot int, rng *rand.Rand) {
	for {
		select {
		case <-ch.stop:
			return
		default:
		}
		n, up := ch.node(slot)
		if !up {
			if !ch.sleep(20 * time.Millisecond) {
				return
			}
			continue
		}
		k := rng.IntN(len(ch.keys))
		start := ch.since()
		r, err := do(ch.ctx, ch.c.client, http.MethodGet, n, keyPath(chaosGroup, ch.keys[k].name), nil)
		end := ch.since()
		if kind, failed := failure(err, r, http.StatusOK); failed {
			if ch.ctx.Err() == nil {
				w.fail(kind, fmt.Sprintf("GET %s on %s at %v: %v", ch.keys[k].name, n.name, start.Round(time.Millisecond), describe(err, r)))
			}
			// A node that is down answers at once: do not spin.
			if !ch.sleep(10 * time.Millisecond) {
				return
			}
			continue
		}
		v, ok := parseVersion(r.body)
		if !ok {
			ch.t.Errorf("GET %s/%s on %s = 200 %q (X-Cache %s), want v<N>", chaosGroup, ch.keys[k].name, n.name, r.body, r.xcache())
			continue
		}
		w.reads = append(w.reads, chaosRead{key: k, node: n.name, xcache: r.xcache(), version: v, start: start, end: end})
	}
}

// write bumps random keys and invalidates them, by key or tag, through
// random nodes, until the workers stop.
func (ch *chaos) write(w *chaosWorker, rng *rand.Rand) {
	for ch.sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond) {
		n := ch.pickUp(rng)
		if n == nil {
			continue
		}
		k := rng.IntN(len(ch.keys))
		key := ch.keys[k]
		v, err := ch.bump(key)
		if err != nil {
			ch.t.Errorf("bump %s in the origin: %v", key.name, err)
			return
		}
		wr := chaosWrite{key: k, version: v, node: n.name}
		method, path := http.MethodDelete, keyPath(chaosGroup, key.name)
		if rng.IntN(2) == 0 {
			wr.tag = key.tag
			method, path = http.MethodPost, "/v1/"+chaosGroup+"/-/invalidate-tags?tag="+key.tag
		}
		wr.start = ch.since()
		r, err := do(ch.ctx, ch.c.client, method, n, path, nil)
		wr.end = ch.since()
		if err == nil {
			wr.status = r.status
		} else if ch.ctx.Err() != nil {
			return // halted: the outcome is unknown, and does not matter
		}
		if kind, failed := failure(err, r, http.StatusNoContent); failed {
			w.fail(kind, fmt.Sprintf("%s on %s at %v: %v", wr.what(ch.keys), n.name, wr.start.Round(time.Millisecond), describe(err, r)))
		}
		w.writes = append(w.writes, wr)
	}
}

// bump writes the next version of k in the origin and returns it.
func (ch *chaos) bump(k *chaosKey) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := k.version + 1
	if err := writeFileAtomic(filepath.Join(ch.c.origin, chaosGroup), k.name, "v"+strconv.Itoa(v)); err != nil {
		return 0, err
	}
	k.version = v
	k.commits = append(k.commits, chaosCommit{at: ch.since(), version: v})
	return v, nil
}

// failure classifies a request that did not answer want.
func failure(err error, r response, want int) (kind string, failed bool) {
	switch {
	case err == nil && r.status == want:
		return "", false
	case err != nil && strings.Contains(err.Error(), "connection refused"):
		return "connection refused", true
	case err != nil && (strings.Contains(err.Error(), "Timeout") || strings.Contains(err.Error(), "deadline exceeded")):
		return "timeout", true
	case err != nil:
		return "transport error", true
	}
	return "status " + strconv.Itoa(r.status), true
}

// describe returns err, or r's status and body.
func describe(err error, r response) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", r.status, strings.TrimSpace(r.body))
}

// parseVersion parses "v<N>".
func parseVersion(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, "v")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(rest)
	return v, err == nil && v >= 0
}

// warmUp waits until every node has answered a read of most keys, so
// that the caches are full before the first fault.
func (ch *chaos) warmUp() {
	deadline := ch.since() + memberTimeout
	for _, n := range ch.current() {
		for _, k := range ch.keys {
			for {
				r, err := do(ch.ctx, ch.c.client, http.MethodGet, n, keyPath(chaosGroup, k.name), nil)
				if err == nil && r.status == http.StatusOK {
					break
				}
				if ch.since() > deadline {
					ch.t.Fatalf("warm up: GET %s on %s: %s", k.name, n.name, describe(err, r))
				}
				ch.sleep(pollEvery)
			}
		}
	}
}

// pause sleeps for a random time in [lo, hi].
func (ch *chaos) pause(lo, hi time.Duration) {
	ch.sleep(lo + time.Duration(ch.rng.Int64N(int64(hi-lo)+1)))
}

// fault injects one fault on a random node and returns once it is over:
// the node resumed or restarted.
func (ch *chaos) fault() {
	t := ch.t
	i := ch.rng.IntN(chaosNodes)
	n, _ := ch.node(i)
	at := ch.since()
	var kind, detail string
	switch ch.kinds[ch.rng.IntN(len(ch.kinds))] {
	case "kill":
		kind = "kill -9 and restart"
		ch.setUp(i, n, false)
		n.signal(t, syscall.SIGKILL)
		n.wait(t)
		down := 200*time.Millisecond + time.Duration(ch.rng.Int64N(int64(800*time.Millisecond)))
		ch.sleep(down)
		detail = fmt.Sprintf("down %v, ", down.Round(time.Millisecond)) + ch.restart(i, n)
	case "stop":
		kind = "SIGSTOP"
		stopped := 3*time.Second + time.Duration(ch.rng.Int64N(int64(5*time.Second)))
		n.signal(t, syscall.SIGSTOP)
		ch.sleep(stopped)
		n.signal(t, syscall.SIGCONT)
		detail = fmt.Sprintf("for %v", stopped.Round(time.Millisecond))
	case "term":
		kind = "SIGTERM and restart"
		ch.setUp(i, n, false)
		n.signal(t, syscall.SIGTERM)
		if code := n.wait(t); code != 0 {
			t.Errorf("%s after SIGTERM: exit code %d, want 0; output tail:\n%s", n.name, code, n.out.tail(20))
		}
		detail = ch.restart(i, n)
	}
	ch.faults[kind]++
	line := fmt.Sprintf("%8v %s %s: %s", at.Round(time.Millisecond), kind, n.name, detail)
	ch.faultLog = append(ch.faultLog, line)
	t.Log("fault", line)
}

// restart starts a new process for the i-th name, old's, joining the
// other nodes, and marks it up; it returns how long it took to be ready.
func (ch *chaos) restart(i int, old *node) string {
	var seeds []string
	for j, n := range ch.current() {
		if j != i {
			seeds = append(seeds, n.gossip)
		}
	}
	start := time.Now()
	n := startNode(ch.t, old.name, ch.c.origin, "-join", strings.Join(seeds, ","))
	ch.setUp(i, n, true)
	return fmt.Sprintf("restarted, ready in %v", time.Since(start).Round(time.Millisecond))
}
