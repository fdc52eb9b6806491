package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcache/meshcache"
)

// testLogger discards logs unless MESHCACHE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MESHCACHE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newStandalone returns a standalone node, closed when the test ends.
func newStandalone(t *testing.T, name string) *meshcache.Node {
	t.Helper()
	n, err := meshcache.NewNode(meshcache.Config{NodeName: name, Logger: testLogger()})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startTestCluster starts size joined nodes n1, n2, ... in this process,
// closed when the test ends, and waits until each is ready and routes over
// all of them.
func startTestCluster(t *testing.T, size int) []*meshcache.Node {
	t.Helper()
	nodes := make([]*meshcache.Node, size)
	for i := range nodes {
		cfg := meshcache.Config{
			NodeName:      fmt.Sprintf("n%d", i+1),
			Logger:        testLogger(),
			BindAddr:      "127.0.0.1:0",
			RPCAddr:       "127.0.0.1:0",
			GossipProfile: meshcache.GossipLocal,
		}
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		n, err := meshcache.NewNode(cfg)
		if err != nil {
			t.Fatalf("NewNode(%s): %v", cfg.NodeName, err)
		}
		t.Cleanup(func() { n.Close() })
		nodes[i] = n
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		select {
		case <-n.Ready():
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%s not ready", n.Name())
		}
		for n.Stats().Members != size {
			if time.Now().After(deadline) {
				t.Fatalf("%s routes over %d members, want %d", n.Name(), n.Stats().Members, size)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nodes
}

// newTestAPI returns node's API over the origin dir, and a test server
// serving it.
func newTestAPI(t *testing.T, node *meshcache.Node, dir string) (*server, *httptest.Server) {
	t.Helper()
	s, err := newServer(node, &origin{dir: dir, ttl: time.Minute, maxBytes: 1 << 10}, time.Minute, testLogger())
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// response is what a test request got.
type response struct {
	code   int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends a request to the test server.
func do(t *testing.T, ts *httptest.Server, method, path string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// newStandaloneAPI returns a test server for a standalone node "solo" over
// an origin holding users/user:1 = "ada", users/big (over the loader's
// limit) and pages/home.
func newStandaloneAPI(t *testing.T) (*server, *httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "users/user:1", "ada")
	writeFile(t, dir, "users/big", strings.Repeat("x", 2<<10))
	writeFile(t, dir, "pages/home", "<h1>home</h1>")
	s, ts := newTestAPI(t, newStandalone(t, "solo"), dir)
	return s, ts, dir
}

func TestAPIStatusCodes(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	long := strings.Repeat("k", meshcache.MaxKeyLen+1)
	checkStatusCodes(t, ts, []statusCase{
		{"GET", "/v1/users/missing", "", 404, "not found"},
		{"GET", "/v1/users/" + long, "", 400, "key of 513 bytes"},
		{"GET", "/v1/users/a%2F..%2F..%2Fetc%2Fpasswd", "", 404, "not found"},
		{"GET", "/v1/users/big", "", 502, "too large"},
		{"PUT", "/v1/users/k?ttl=soon", "v", 400, "ttl"},
		{"PUT", "/v1/users/k?ttl=0s", "v", 400, "ttl"},
		{"PUT", "/v1/users/k?ttl=-1s", "v", 400, "ttl"},
		{"PUT", "/v1/users/k?tags=" + long, "v", 400, "tag"},
		{"PUT", "/v1/users/k?ttl=30s&tags=a,b", "v", 204, ""},
		{"PUT", "/v1/users/" + long, "v", 400, "key"},
		{"DELETE", "/v1/users/k", "", 204, ""},
		{"POST", "/v1/users/-/invalidate-tags", "", 400, "no tag"},
		{"POST", "/v1/users/-/invalidate-tags?tag=", "", 400, "tag"},
		{"POST", "/v1/users/-/invalidate-tags?tag=a&tag=b", "", 204, ""},
		{"POST", "/v1/users/-/clear", "", 204, ""},
		{"GET", "/healthz", "", 200, ""},
		{"GET", "/readyz", "", 200, ""},
	})
}

// statusCase is a request and the answer expected.
type statusCase struct {
	method, path string
	body         string
	code         int
	errorText    string // in the JSON error, for error codes
}

// checkStatusCodes sends each request to ts and checks its status, and for
// an error its JSON body (with errorText) and, for a 405, its Allow header.
func checkStatusCodes(t *testing.T, ts *httptest.Server, cases []statusCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path[:min(len(tc.path), 40)], func(t *testing.T) {
			r := do(t, ts, tc.method, tc.path, strings.NewReader(tc.body))
			if r.code != tc.code {
				t.Fatalf("%s %s = %d %q, want %d", tc.method, tc.path, r.code, r.body, tc.code)
			}
			if tc.code < 400 {
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type %q, want application/json", tc.method, tc.path, ct)
			}
			msg, _ := r.json(t)["error"].(string)
			if msg == "" || !strings.Contains(msg, tc.errorText) {
				t.Errorf("%s %s: error %q, want one mentioning %q", tc.method, tc.path, msg, tc.errorText)
			}
			if tc.code == 405 && r.header.Get("Allow") == "" {
				t.Errorf("%s %s: 405 without an Allow header", tc.method, tc.path)
			}
		})
	}
}

func TestAPIGetHeaders(t *testing.T) {
	_, ts, dir := newStandaloneAPI(t)
	for i, want := range []string{"load", "hit"} {
		r := do(t, ts, "GET", "/v1/users/user:1", nil)
		if r.code != 200 || r.body != "ada" {
			t.Fatalf("GET #%d = %d %q, want 200 \"ada\"", i+1, r.code, r.body)
		}
		if got := r.header.Get("X-Cache"); got != want {
			t.Errorf("GET #%d: X-Cache %q, want %q", i+1, got, want)
		}
		if got := r.header.Get("X-Owner"); got != "solo" {
			t.Errorf("GET #%d: X-Owner %q, want solo", i+1, got)
		}
		if got := r.header.Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("GET #%d: Content-Type %q, want application/octet-stream", i+1, got)
		}
	}
	// A changed origin file is served after an invalidation only.
	writeFile(t, dir, "users/user:1", "grace")
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.body != "ada" {
		t.Errorf("GET after the file changed = %q, want the cached \"ada\"", r.body)
	}
	if r := do(t, ts, "DELETE", "/v1/users/user:1", nil); r.code != 204 {
		t.Fatalf("DELETE = %d %q, want 204", r.code, r.body)
	}
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.body != "grace" || r.header.Get("X-Cache") != "load" {
		t.Errorf("GET after DELETE = %q (X-Cache %s), want \"grace\" (load)", r.body, r.header.Get("X-Cache"))
	}
	// Tags: user:1 is tagged "user".
	writeFile(t, dir, "users/user:1", "alan")
	if r := do(t, ts, "POST", "/v1/users/-/invalidate-tags?tag=user", nil); r.code != 204 {
		t.Fatalf("invalidate-tags = %d %q, want 204", r.code, r.body)
	}
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.body != "alan" {
		t.Errorf("GET after invalidate-tags = %q, want \"alan\"", r.body)
	}
	writeFile(t, dir, "users/user:1", "barbara")
	if r := do(t, ts, "POST", "/v1/users/-/clear", nil); r.code != 204 {
		t.Fatalf("clear = %d %q, want 204", r.code, r.body)
	}
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.body != "barbara" {
		t.Errorf("GET after clear = %q, want \"barbara\"", r.body)
	}
}

func TestAPIPut(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	if r := do(t, ts, "PUT", "/v1/users/k?ttl=30s&tags=a,b", strings.NewReader("value")); r.code != 204 || r.body != "" {
		t.Fatalf("PUT = %d %q, want 204 and no body", r.code, r.body)
	}
	r := do(t, ts, "GET", "/v1/users/k", nil)
	if r.code != 200 || r.body != "value" || r.header.Get("X-Cache") != "hit" {
		t.Fatalf("GET after PUT = %d %q (X-Cache %s), want 200 \"value\" (hit)", r.code, r.body, r.header.Get("X-Cache"))
	}
	if r := do(t, ts, "POST", "/v1/users/-/invalidate-tags?tag=b", nil); r.code != 204 {
		t.Fatalf("invalidate-tags = %d, want 204", r.code)
	}
	if r := do(t, ts, "GET", "/v1/users/k", nil); r.code != 404 {
		t.Errorf("GET after invalidating its tag = %d %q, want 404 (no origin file)", r.code, r.body)
	}
	// A group created by a PUT, and an empty value.
	if r := do(t, ts, "PUT", "/v1/fresh/k", nil); r.code != 204 {
		t.Fatalf("PUT empty value in a new group = %d %q, want 204", r.code, r.body)
	}
	if r := do(t, ts, "GET", "/v1/fresh/k", nil); r.code != 200 || r.body != "" {
		t.Errorf("GET of the empty value = %d %q, want 200 \"\"", r.code, r.body)
	}
}

func TestAPIBodyLimit(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	over := strings.Repeat("x", maxBodyBytes+1)
	if r := do(t, ts, "PUT", "/v1/users/k", strings.NewReader(over)); r.code != 413 {
		t.Errorf("PUT of %d bytes = %d %q, want 413", len(over), r.code, r.body)
	}
	// Without a Content-Length: the reader is cut at the limit.
	if r := do(t, ts, "PUT", "/v1/users/k", io.MultiReader(strings.NewReader(over))); r.code != 413 {
		t.Errorf("chunked PUT of %d bytes = %d %q, want 413", len(over), r.code, r.body)
	}
	if r := do(t, ts, "PUT", "/v1/users/k", strings.NewReader(over[:maxBodyBytes])); r.code != 204 {
		t.Errorf("PUT of %d bytes = %d %q, want 204", maxBodyBytes, r.code, r.body)
	}
}

func TestAPIStats(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	do(t, ts, "GET", "/v1/users/user:1", nil)
	do(t, ts, "GET", "/v1/users/user:1", nil)
	r := do(t, ts, "GET", "/v1/stats", nil)
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/stats = %d %s", r.code, r.header.Get("Content-Type"))
	}
	m := r.json(t)
	node, _ := m["node"].(map[string]any)
	wantNode := []string{"name", "members", "writes", "writes_partial", "write_requests", "write_acks", "write_batches", "gossip_sent", "gossip_applied", "peer_requests"}
	if got := slices.Sorted(maps.Keys(node)); !slices.Equal(got, slices.Sorted(slices.Values(wantNode))) {
		t.Errorf("node keys = %q, want %q", got, wantNode)
	}
	if node["name"] != "solo" || node["members"] != 1.0 {
		t.Errorf("node = %v, want name solo, 1 member", node)
	}
	groups, _ := m["groups"].(map[string]any)
	users, _ := groups["users"].(map[string]any)
	wantGroup := []string{"hits", "hot_hits", "negative_hits", "misses", "loads", "batch_loads", "load_errors",
		"loads_deduplicated", "peer_fetches", "peer_errors", "fallbacks", "handoffs", "peer_served", "stale_served", "revalidations", "l2_hits", "l2_misses", "l2_errors", "l2_bypassed", "l2_stores", "evictions",
		"expirations", "items", "bytes", "hot_items", "hot_bytes", "hit_rate"}
	if got := slices.Sorted(maps.Keys(users)); !slices.Equal(got, slices.Sorted(slices.Values(wantGroup))) {
		t.Errorf("group keys = %q, want %q", got, wantGroup)
	}
	if users["hits"] != 1.0 || users["loads"] != 1.0 || users["items"] != 1.0 || users["hit_rate"] != 0.5 {
		t.Errorf("users = %v, want 1 hit, 1 load, 1 item, hit rate 0.5", users)
	}
	if _, ok := groups["pages"]; !ok {
		t.Errorf("groups = %v, want pages (created at start)", slices.Collect(maps.Keys(groups)))
	}
}

func TestAPIMembersRingStandalone(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	r := do(t, ts, "GET", "/v1/members", nil)
	var members struct{ Members []memberJSON }
	if err := json.Unmarshal([]byte(r.body), &members); err != nil || r.code != 200 {
		t.Fatalf("GET /v1/members = %d %q: %v", r.code, r.body, err)
	}
	if len(members.Members) != 1 || members.Members[0].Name != "solo" || members.Members[0].State != "alive" {
		t.Errorf("members = %+v, want solo, alive", members.Members)
	}
	r = do(t, ts, "GET", "/v1/ring", nil)
	if r.code != 200 || strings.TrimSpace(r.body) != `{"partitions":[]}` {
		t.Errorf("GET /v1/ring = %d %q, want 200 with no partitions", r.code, r.body)
	}
}

func TestAPIMetrics(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	do(t, ts, "GET", "/v1/users/user:1", nil)
	do(t, ts, "GET", "/v1/users/user:1", nil)
	r := do(t, ts, "GET", "/metrics", nil)
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s", r.code, r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`meshcache_hits_total{group="users",node="solo",tier="main"} 1`,
		`meshcache_loads_total{group="users",node="solo"} 1`,
		`meshcache_members{node="solo"} 1`,
		`meshcache_load_duration_seconds_bucket{group="users",node="solo",le="+Inf"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestAPIReadiness(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	if r := do(t, ts, "GET", "/readyz", nil); r.code != 200 || r.json(t)["status"] != "ready" {
		t.Errorf("GET /readyz = %d %q, want 200 ready", r.code, r.body)
	}
	if r := do(t, ts, "GET", "/healthz", nil); r.code != 200 || r.json(t)["status"] != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", r.code, r.body)
	}
	// Joining and no-lease: the library's admin handler tests them.
}

// memberJSON is one member in /v1/members.
type memberJSON struct {
	Name   string `json:"name"`
	Gossip string `json:"gossip"`
	RPC    string `json:"rpc"`
	State  string `json:"state"`
}

func TestAPICluster(t *testing.T) {
	nodes := startTestCluster(t, 2)
	dir := t.TempDir()
	_, ts1 := newTestAPI(t, nodes[0], dir)
	_, ts2 := newTestAPI(t, nodes[1], dir)
	// A key n2 owns, read through n1.
	var key string
	for i := range 100 {
		if k := fmt.Sprintf("user:%d", i); nodes[0].Owner(k) == "n2" {
			key = k
			break
		}
	}
	if key == "" {
		t.Fatal("no key owned by n2 among 100")
	}
	writeFile(t, dir, "users/"+key, "v1")
	for _, step := range []struct {
		ts         *httptest.Server
		via, cache string
	}{{ts1, "n1", "peer"}, {ts1, "n1", "hot"}, {ts2, "n2", "hit"}} {
		r := do(t, step.ts, "GET", "/v1/users/"+key, nil)
		if r.code != 200 || r.body != "v1" {
			t.Fatalf("GET %s via %s = %d %q, want 200 v1", key, step.via, r.code, r.body)
		}
		if got := r.header.Get("X-Cache"); got != step.cache {
			t.Errorf("GET %s via %s: X-Cache %q, want %q", key, step.via, got, step.cache)
		}
		if got := r.header.Get("X-Owner"); got != "n2" {
			t.Errorf("GET %s via %s: X-Owner %q, want n2", key, step.via, got)
		}
	}
	// An invalidation through the owner reaches n1's hot copy.
	writeFile(t, dir, "users/"+key, "v2")
	if r := do(t, ts2, "DELETE", "/v1/users/"+key, nil); r.code != 204 {
		t.Fatalf("DELETE via n2 = %d %q, want 204", r.code, r.body)
	}
	if r := do(t, ts1, "GET", "/v1/users/"+key, nil); r.body != "v2" || r.header.Get("X-Cache") != "peer" {
		t.Errorf("GET via n1 after DELETE = %q (X-Cache %s), want v2 (peer)", r.body, r.header.Get("X-Cache"))
	}

	var members struct{ Members []memberJSON }
	if err := json.Unmarshal([]byte(do(t, ts1, "GET", "/v1/members", nil).body), &members); err != nil {
		t.Fatal(err)
	}
	if len(members.Members) != 2 || members.Members[0].Name != "n1" || members.Members[1].Name != "n2" ||
		members.Members[0].Gossip != nodes[0].GossipAddr() || members.Members[1].RPC != nodes[1].RPCAddr() {
		t.Errorf("members = %+v, want n1 and n2 with their addresses", members.Members)
	}
	var ring struct{ Partitions []string }
	if err := json.Unmarshal([]byte(do(t, ts2, "GET", "/v1/ring", nil).body), &ring); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, o := range ring.Partitions {
		counts[o]++
	}
	if len(ring.Partitions) != 271 || counts["n1"] == 0 || counts["n2"] == 0 || len(counts) != 2 {
		t.Errorf("ring: %d partitions owned %v, want 271 over n1 and n2", len(ring.Partitions), counts)
	}
}

// TestAPIOriginDown: while DIR/.down exists every load fails; a failed Get
// answers 503, and a value within -stale-if-error is served stale.
func TestAPIOriginDown(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "users/user:1", "ada")
	writeFile(t, dir, "users/user:2", "grace")
	s, err := newServer(newStandalone(t, "solo"), &origin{
		dir: dir, ttl: 50 * time.Millisecond, maxBytes: 1 << 10, staleIfError: time.Minute,
	}, time.Minute, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.code != 200 || r.body != "ada" {
		t.Fatalf("GET user:1 = %d %q", r.code, r.body)
	}
	writeFile(t, dir, downFile, "")
	time.Sleep(100 * time.Millisecond) // past the TTL
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.code != 200 || r.body != "ada" || r.header.Get("X-Cache") != "stale" {
		t.Errorf("GET user:1 while down = %d %q (X-Cache %q), want 200 ada stale", r.code, r.body, r.header.Get("X-Cache"))
	}
	if r := do(t, ts, "GET", "/v1/users/user:2", nil); r.code != 503 || !strings.Contains(r.body, "origin: down") {
		t.Errorf("GET of a key never read while down = %d %q, want 503 origin: down", r.code, r.body)
	}
	if r := do(t, ts, "DELETE", "/v1/users/user:1", nil); r.code != 204 {
		t.Fatalf("DELETE user:1 = %d %q", r.code, r.body)
	}
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.code != 503 {
		t.Errorf("GET user:1 deleted while down = %d %q, want 503 (never the old value)", r.code, r.body)
	}
	if err := os.Remove(filepath.Join(dir, downFile)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "users/user:1", "ada2")
	if r := do(t, ts, "GET", "/v1/users/user:1", nil); r.code != 200 || r.body != "ada2" {
		t.Errorf("GET user:1 after the outage = %d %q, want 200 ada2", r.code, r.body)
	}
}
