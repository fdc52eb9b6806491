package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// newClient returns an HTTP client with its own connection pool.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true},
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
