package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/goleak"
)

const (
	// readyTimeout bounds how long a node may take to print its ready line.
	readyTimeout = 20 * time.Second
	// exitTimeout bounds how long a signalled node may take to exit.
	exitTimeout = 15 * time.Second
	// memberTimeout bounds how long membership may take to converge,
	// failure detection included. Usually well under 10s; but with the
	// local gossip profile a membership change sometimes reaches a member
	// only at its next push/pull (every 15s), and a failure without
	// confirming suspicions takes 18s to declare.
	memberTimeout = 45 * time.Second
	// pollEvery is the interval of every poll.
	pollEvery = 100 * time.Millisecond
	// loadDelay is every node's -load-delay.
	loadDelay = "20ms"
)

// demoNode is the path of the demo-node binary built by TestMain.
var demoNode string

// clusters limits how many clusters run at once (2 shared cores).
var clusters = make(chan struct{}, 2)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds demo-node, runs the tests and checks for leaked goroutines.
func run(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "meshcache-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	demoNode = filepath.Join(dir, "demo-node")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", demoNode, "github.com/meshcache/meshcache/cmd/demo-node")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build cmd/demo-node: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built demo-node in %v\n", time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goleak:", err)
			code = 1
		}
	}
	return code
}

// useCluster reserves one of the cluster slots for the rest of the test.
func useCluster(t *testing.T) {
	t.Helper()
	select {
	case clusters <- struct{}{}:
	case <-t.Context().Done():
		t.Fatal("no cluster slot")
	}
	t.Cleanup(func() { <-clusters })
}

// node is one demo-node process.
type node struct {
	name   string
	http   string // host:port of its HTTP API
	gossip string // host:port of its gossip listener
	rpc    string // host:port of its peer transport
	cmd    *exec.Cmd
	out    *tail // its stderr, and any stdout line other than the ready line
	done   chan struct{}
	err    error // cmd.Wait's error; read only after done is closed
}

// url returns the node's URL for path (which starts with "/").
func (n *node) url(path string) string { return "http://" + n.http + path }

// exited reports whether the process has exited.
func (n *node) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process.
func (n *node) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, n.name, err)
	}
}

// wait waits up to exitTimeout for the process to exit and returns its
// exit code (-1 when killed by a signal).
func (n *node) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-n.done:
	case <-time.After(exitTimeout):
		t.Fatalf("%s did not exit within %v; stderr tail:\n%s", n.name, exitTimeout, n.out.tail(30))
	}
	return n.cmd.ProcessState.ExitCode()
}

// readyLine is what a node prints on stdout once it serves.
var readyLine = regexp.MustCompile(`^meshcache node (\S+) ready http=(\S+) gossip=(\S+) rpc=(\S+)$`)

// launch starts a node named name in its own directory dir, serving values
// from origin, and waits for its ready line. extra is appended to the
// flags. On error the process is gone.
func launch(dir, name, origin string, extra ...string) (*node, error) {
	return launchWith(nil, dir, name, origin, extra...)
}

// launchWith is launch with the command line prefixed by wrap, a command
// that execs the rest (such as ip netns exec NAME), so that the process
// started is still the node's. Extra flags override the defaults.
func launchWith(wrap []string, dir, name, origin string, extra ...string) (*node, error) {
	args := []string{
		"-name", name,
		"-http", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-rpc", "127.0.0.1:0",
		"-gossip-profile", "local", "-load-delay", loadDelay, "-origin", origin,
	}
	n := &node{name: name, out: newTail(), done: make(chan struct{})}
	ready := make(chan []string, 1)
	argv := slices.Concat(wrap, []string{demoNode}, args, extra)
	n.cmd = exec.Command(argv[0], argv[1:]...)
	orphanProof(n.cmd)
	n.cmd.Dir = dir
	n.cmd.Stdout = &lineWriter{fn: func(line string) {
		if m := readyLine.FindStringSubmatch(line); m != nil {
			select {
			case ready <- m:
			default:
			}
			return
		}
		n.out.Write([]byte("stdout: " + line + "\n"))
	}}
	n.cmd.Stderr = n.out
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		n.err = n.cmd.Wait()
		close(n.done)
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case m := <-ready:
		n.http, n.gossip, n.rpc = m[2], m[3], m[4]
		if m[1] != name {
			n.kill()
			return nil, fmt.Errorf("%s: ready line names %q", name, m[1])
		}
		return n, nil
	case <-n.done:
		return nil, fmt.Errorf("%s exited before ready (%v); output tail:\n%s", name, n.err, n.out.tail(30))
	case <-timer.C:
		n.kill()
		return nil, fmt.Errorf("%s not ready within %v; output tail:\n%s", name, readyTimeout, n.out.tail(30))
	}
}

// kill SIGKILLs the process if it still runs and waits for it (bounded).
func (n *node) kill() {
	if !n.exited() {
		_ = n.cmd.Process.Kill()
	}
	select {
	case <-n.done:
	case <-time.After(exitTimeout):
	}
}

// startNode starts a node like launch, in a temp dir of t, and kills it
// when t ends. On failure it prints the node's output tail.
func startNode(t *testing.T, name, origin string, extra ...string) *node {
	t.Helper()
	n, err := launch(t.TempDir(), name, origin, extra...)
	if err != nil {
		t.Fatal(err)
	}
	own(t, n)
	return n
}

// own kills n when t ends, printing its output tail if t failed.
func own(t *testing.T, n *node) {
	t.Cleanup(func() {
		n.kill()
		if !n.exited() {
			t.Errorf("%s (pid %d) survived SIGKILL", n.name, n.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s output tail:\n%s", n.name, n.out.tail(40))
		}
	})
}

// cluster is a set of nodes sharing an origin directory, and an HTTP
// client for them.
type cluster struct {
	t      *testing.T
	origin string
	nodes  []*node
	client *http.Client
}

// newCluster starts size nodes n0, n1, ... sharing a fresh origin dir,
// n1... joining n0, and waits until every node lists all of them.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	useCluster(t)
	c := &cluster{t: t, origin: t.TempDir(), client: newClient(5 * time.Second)}
	t.Cleanup(c.client.CloseIdleConnections)
	c.start(size, func(_ int, dir, name string, extra ...string) (*node, error) {
		return launch(dir, name, c.origin, extra...)
	})
	return c
}

// newClusterWith is newCluster with the flags extra added to every node's
// command line (after the defaults, which they override).
func newClusterWith(t *testing.T, size int, extra ...string) *cluster {
	t.Helper()
	useCluster(t)
	c := &cluster{t: t, origin: t.TempDir(), client: newClient(5 * time.Second)}
	t.Cleanup(c.client.CloseIdleConnections)
	c.start(size, func(_ int, dir, name string, more ...string) (*node, error) {
		return launch(dir, name, c.origin, slices.Concat(extra, more)...)
	})
	return c
}

// A launcher starts node i of a cluster, named name, in dir, with the
// extra flags.
type launcher func(i int, dir, name string, extra ...string) (*node, error)

// start launches size nodes n0, n1, ... with launchAt, n1... concurrently
// and joining n0, kills them when the test ends, and waits until every
// node lists all of them.
func (c *cluster) start(size int, launchAt launcher) {
	t := c.t
	t.Helper()
	begin := time.Now()
	first, err := launchAt(0, t.TempDir(), "n0")
	if err != nil {
		t.Fatal(err)
	}
	own(t, first)
	c.nodes = append(c.nodes, first)
	rest := make([]*node, size-1)
	errs := make([]error, size-1)
	var wg sync.WaitGroup
	for i := range rest {
		dir := t.TempDir()
		wg.Go(func() {
			rest[i], errs[i] = launchAt(i+1, dir, fmt.Sprintf("n%d", i+1), "-join", first.gossip)
		})
	}
	wg.Wait()
	for _, n := range rest {
		if n != nil {
			own(t, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	c.nodes = append(c.nodes, rest...)
	c.waitMembers(c.nodes, names(c.nodes))
	t.Logf("%d nodes up and joined in %v", size, time.Since(begin).Round(time.Millisecond))
}

// newClient returns an HTTP client with its own connection pool.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
	}
}

// names returns the nodes' names, sorted.
func names(nodes []*node) []string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.name
	}
	slices.Sort(s)
	return s
}

// writeOrigin sets the origin value of group/key, atomically (rename).
func (c *cluster) writeOrigin(group, key, value string) {
	c.t.Helper()
	dir := filepath.Join(c.origin, group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		c.t.Fatal(err)
	}
	_, err = tmp.WriteString(value)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, key))
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

// response is an HTTP answer read in full.
type response struct {
	status  int
	body    string
	header  http.Header
	latency time.Duration
}

// xcache returns the X-Cache header.
func (r response) xcache() string { return r.header.Get("X-Cache") }

// owner returns the X-Owner header.
func (r response) owner() string { return r.header.Get("X-Owner") }

// do sends a request to n and reads the answer.
func do(ctx context.Context, client *http.Client, method string, n *node, path string, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url(path), rd)
	if err != nil {
		return response{}, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s on %s: %w", method, path, n.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s on %s: read body: %w", method, path, n.name, err)
	}
	return response{status: resp.StatusCode, body: string(b), header: resp.Header, latency: time.Since(start)}, nil
}

// keyPath returns the API path of group/key.
func keyPath(group, key string) string {
	return "/v1/" + url.PathEscape(group) + "/" + url.PathEscape(key)
}

// do sends a request to n, failing the test on a transport error.
func (c *cluster) do(method string, n *node, path string, body []byte) response {
	c.t.Helper()
	r, err := do(c.t.Context(), c.client, method, n, path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// get returns GET group/key on n.
func (c *cluster) get(n *node, group, key string) response {
	c.t.Helper()
	return c.do(http.MethodGet, n, keyPath(group, key), nil)
}

// mustGet checks that GET group/key on n answers 200 with want, and
// returns the answer.
func (c *cluster) mustGet(n *node, group, key, want string) response {
	c.t.Helper()
	r := c.get(n, group, key)
	if r.status != http.StatusOK || r.body != want {
		c.t.Fatalf("GET %s/%s on %s = %d %q, want 200 %q", group, key, n.name, r.status, r.body, want)
	}
	return r
}

// write sends a write (DELETE, POST) and checks for 204.
func (c *cluster) write(method string, n *node, path string) {
	c.t.Helper()
	r := c.do(method, n, path, nil)
	if r.status != http.StatusNoContent {
		c.t.Fatalf("%s %s on %s = %d %s, want 204", method, path, n.name, r.status, r.body)
	}
}

// touchGroup sends a GET for group on every node, so that each creates
// the group (demo-node creates groups on first use, per process).
func (c *cluster) touchGroup(group string) {
	c.t.Helper()
	for _, n := range c.nodes {
		if r := c.get(n, group, "touch"); r.status != http.StatusNotFound && r.status != http.StatusOK {
			c.t.Fatalf("GET %s/touch on %s = %d %s, want 404 or 200", group, n.name, r.status, r.body)
		}
	}
}

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

// checkRunning fails the test for every node that has exited.
func checkRunning(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		if n.exited() {
			t.Errorf("%s exited: %v; output tail:\n%s", n.name, n.err, n.out.tail(30))
		}
	}
}

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

// lineWriter calls fn with each complete line written to it.
type lineWriter struct {
	fn  func(line string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a line that never ends
		w.fn(string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

// tail keeps the last 256 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func newTail() *tail { return &tail{} }

func (b *tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 256<<10; over > 0 {
		b.buf = slices.Clone(b.buf[over:])
	}
	return len(p), nil
}

// String returns everything kept.
func (b *tail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// tail returns the last n lines kept.
func (b *tail) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
