package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestStatusPageStandalone(t *testing.T) {
	_, ts, _ := newStandaloneAPI(t)
	do(t, ts, "GET", "/v1/users/user:1", nil)
	do(t, ts, "GET", "/v1/users/user:1", nil)
	// A group whose name would be markup if it were not escaped.
	if r := do(t, ts, "PUT", "/v1/%3Cimg%20src=x%20onerror=alert(1)%3E/k", strings.NewReader("v")); r.code != 204 {
		t.Fatalf("PUT in a group named like markup = %d %q, want 204", r.code, r.body)
	}
	r := do(t, ts, "GET", "/", nil)
	if r.code != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %s", r.code, r.header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<span id="node-name">solo</span>`,
		`<span id="ready" class="badge ready">ready</span>`,
		`<svg id="ring"`,
		`data-owner="solo"`, // the whole circle
		`standalone`,
		`<span>every key</span>`,
		`<td>users</td>`,
		`width: 50.0%`, // users: one hit, one miss
		`&lt;img src=x onerror=alert(1)&gt;`,
		`setInterval(refresh, 2000)`,
		`var self = "solo";`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "<img src=x") {
		t.Errorf("status page has the group name unescaped")
	}
	for _, external := range []string{`src="http`, `href="http`, `@import`, `url(http`} {
		if strings.Contains(r.body, external) {
			t.Errorf("status page loads an external asset (%q)", external)
		}
	}
}

func TestStatusPageCluster(t *testing.T) {
	nodes := startTestCluster(t, 2)
	s, ts := newTestAPI(t, nodes[0], t.TempDir())
	r := do(t, ts, "GET", "/", nil)
	if r.code != 200 {
		t.Fatalf("GET / = %d", r.code)
	}
	for _, n := range nodes {
		if !strings.Contains(r.body, n.GossipAddr()) {
			t.Errorf("status page lacks %s's gossip address %s", n.Name(), n.GossipAddr())
		}
	}
	// One arc per run of partitions, the runs adding up to the ring.
	d := s.pageData()
	total := 0
	for _, seg := range d.Ring.Segments {
		total += seg.Len
		if seg.Gap != 271-seg.Len {
			t.Errorf("segment %+v: gap %d, want %d", seg, seg.Gap, 271-seg.Len)
		}
	}
	if total != 271 || d.Ring.Total != 271 {
		t.Errorf("segments cover %d partitions of %d, want 271", total, d.Ring.Total)
	}
	arcs := regexp.MustCompile(`<circle class="segment" data-owner="(n1|n2)"`).FindAllString(r.body, -1)
	if len(arcs) != len(d.Ring.Segments) {
		t.Errorf("page has %d arcs, want %d", len(arcs), len(d.Ring.Segments))
	}
	if len(d.Legend) != 2 || d.Legend[0].Partitions+d.Legend[1].Partitions != 271 || d.Legend[0].Color == d.Legend[1].Color {
		t.Errorf("legend = %+v, want two members with their own colours and 271 partitions in all", d.Legend)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestStatusPageInChromium loads the status page of a two-node cluster in
// headless Chromium and checks the DOM after the page's script ran.
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed")
	}
	if testing.Short() {
		t.Skip("starts a browser")
	}
	nodes := startTestCluster(t, 2)
	dir := t.TempDir()
	writeFile(t, dir, "users/user:1", "ada")
	_, ts := newTestAPI(t, nodes[0], dir)
	do(t, ts, "GET", "/v1/users/user:1", nil)

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=5000", "--dump-dom", ts.URL+"/")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	dom := string(out)
	for _, want := range []string{
		`<svg id="ring"`,
		`class="segment"`,
		`data-owner="n1"`,
		`data-owner="n2"`,
		nodes[0].GossipAddr(),
		nodes[1].GossipAddr(),
		`<td>users</td>`,
		`updated at`, // written by the script once it fetched the JSON
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
