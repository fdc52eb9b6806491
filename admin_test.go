package meshcache

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// adminGet GETs u and returns the status, the body and the content type.
func adminGet(t *testing.T, u string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// TestAdminHandlerUnderPrefix mounts the handler under a prefix, as a
// service would on its internal port, and follows every link of the status
// page (and the URLs its script fetches) from the page's own URL.
func TestAdminHandlerUnderPrefix(t *testing.T) {
	n, err := NewNode(Config{NodeName: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	g := mustGroup(t, n, "users", newOrigin())
	mustGet(t, g, "k")
	mustGet(t, g, "k")
	mux := http.NewServeMux()
	mux.Handle("/debug/meshcache/", http.StripPrefix("/debug/meshcache", n.AdminHandler()))
	ts := httptest.NewServer(mux)
	defer ts.Close()

	page := ts.URL + "/debug/meshcache/"
	code, body, ctype := adminGet(t, page)
	if code != 200 || ctype != "text/html; charset=utf-8" {
		t.Fatalf("GET %s = %d %s", page, code, ctype)
	}
	for _, want := range []string{`<span id="node-name">solo</span>`, `<td>users</td>`, `width: 50.0%`} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	refs := regexp.MustCompile(`(?:href="|json\("|fetch\(")([^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(refs) < 8 {
		t.Fatalf("status page has %d links and fetches, want the 4 links and 4 fetches", len(refs))
	}
	base, _ := url.Parse(page)
	for _, ref := range refs {
		if strings.HasPrefix(ref[1], "/") || strings.Contains(ref[1], "://") {
			t.Errorf("status page refers to %q: not relative, it breaks under a prefix", ref[1])
			continue
		}
		u := base.ResolveReference(&url.URL{Path: ref[1]}).String()
		if code, _, _ := adminGet(t, u); code != 200 {
			t.Errorf("%q from the page: GET %s = %d", ref[1], u, code)
		}
	}
	_, body, _ = adminGet(t, page+"v1/stats")
	var st adminStats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Node.Name != "solo" || st.Groups["users"].Hits != 1 || st.Groups["users"].Loads != 1 {
		t.Errorf("v1/stats = %+v", st)
	}
	if _, body, _ = adminGet(t, page+"metrics"); !strings.Contains(body, `meshcache_hits_total{group="users",node="solo",tier="main"} 1`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics lack the node's or the runtime's series:\n%s", body)
	}
	// Read-only: writes are the application's.
	resp, err := http.Post(page+"v1/stats", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST v1/stats = %d, want 405", resp.StatusCode)
	}
}

// TestAdminReadiness: /readyz says joining, no-lease or ready, and goes
// back to 503 when a node loses its lease.
func TestAdminReadiness(t *testing.T) {
	n := newTestNode(t)
	for _, tc := range []struct {
		joined, leased bool
		code           int
		status         string
	}{
		{false, false, 503, "joining"},
		{true, false, 503, "no-lease"},
		{true, true, 200, "ready"},
	} {
		a := newAdmin(n)
		a.joined = func() bool { return tc.joined }
		a.leased = func() bool { return tc.leased }
		rec := httptest.NewRecorder()
		a.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), `"status":"`+tc.status+`"`) {
			t.Errorf("joined %v, leased %v: /readyz = %d %s, want %d %s", tc.joined, tc.leased, rec.Code, rec.Body, tc.code, tc.status)
		}
	}

	// A real node: ready in its cluster, then alone after the two others
	// crashed, it has no majority and no lease.
	nodes := startCluster(t, 3, nil)
	h := nodes[0].AdminHandler()
	readyz := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	waitFor(t, 10*time.Second, "n0 ready", func() bool { return readyz() == 200 })
	crash(nodes[1])
	crash(nodes[2])
	waitFor(t, 20*time.Second, "n0 unready without a majority", func() bool { return readyz() == 503 })
}

// TestAdminStatusPageCluster checks the ring picture of a two-node cluster.
func TestAdminStatusPageCluster(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a := newAdmin(nodes[0])
	h := a.handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(context.Background()))
	body := rec.Body.String()
	for _, n := range nodes {
		if !strings.Contains(body, n.GossipAddr()) {
			t.Errorf("status page lacks %s's gossip address %s", n.Name(), n.GossipAddr())
		}
	}
	d := a.pageData()
	total := 0
	for _, seg := range d.Ring.Segments {
		total += seg.Len
		if seg.Gap != d.Ring.Total-seg.Len {
			t.Errorf("segment %+v: gap %d, want %d", seg, seg.Gap, d.Ring.Total-seg.Len)
		}
	}
	if total == 0 || total != d.Ring.Total {
		t.Errorf("segments cover %d partitions of %d", total, d.Ring.Total)
	}
	arcs := regexp.MustCompile(`<circle class="segment" data-owner="(n0|n1)"`).FindAllString(body, -1)
	if len(arcs) != len(d.Ring.Segments) {
		t.Errorf("page has %d arcs, want %d", len(arcs), len(d.Ring.Segments))
	}
	if len(d.Legend) != 2 || d.Legend[0].Partitions+d.Legend[1].Partitions != total || d.Legend[0].Color == d.Legend[1].Color {
		t.Errorf("legend = %+v, want two members with their own colours and every partition", d.Legend)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
