package main

import (
	"context"
	"os/exec"
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
