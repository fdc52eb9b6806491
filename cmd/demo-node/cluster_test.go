package main

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestParseReadyLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want readyInfo
	}{
		{"meshcache node n1 ready http=127.0.0.1:1 gossip=127.0.0.1:2 rpc=127.0.0.1:3",
			readyInfo{"n1", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}},
		{"meshcache node solo ready http=[::1]:80 gossip= rpc=", readyInfo{"solo", "[::1]:80", "", ""}},
		{"  meshcache  node x ready http=h:1 gossip=h:2 rpc=h:3  ", readyInfo{"x", "h:1", "h:2", "h:3"}},
	} {
		got, err := parseReadyLine(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("parseReadyLine(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"",
		"hello",
		"meshcache node n1 ready",
		"meshcache node n1 ready http=h:1 gossip=h:2",
		"meshcache node n1 started http=h:1 gossip=h:2 rpc=h:3",
		"meshcache node n1 ready gossip=h:2 http=h:1 rpc=h:3",
		"meshcache node n1 ready http= gossip=h:2 rpc=h:3",
		"meshcache node n1 ready http=h:1 gossip=h:2 rpc=h:3 extra",
		"mesh cache node n1 ready http=h:1 gossip=h:2 rpc=h:3",
	} {
		if got, err := parseReadyLine(bad); err == nil {
			t.Errorf("parseReadyLine(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestFirstLine(t *testing.T) {
	ch := make(chan string, 1)
	w := &firstLine{ch: ch}
	for _, chunk := range []string{"meshcache no", "de n1 ready\r", "\nsecond line\n", "third"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if got := <-ch; got != "meshcache node n1 ready" {
		t.Errorf("first line = %q", got)
	}
	select {
	case extra := <-ch:
		t.Errorf("a second line was sent: %q", extra)
	default:
	}
	// A writer that never ends its line is cut off.
	w = &firstLine{ch: ch}
	w.Write(bytes.Repeat([]byte{'x'}, 5000))
	if got := <-ch; len(got) != 5000 {
		t.Errorf("unterminated first line of %d bytes, want 5000", len(got))
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: "n1 | "}
	for _, chunk := range []string{"one\ntw", "o\n", "", "three\nfour"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if want := "n1 | one\nn1 | two\nn1 | three\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestChildArgs(t *testing.T) {
	o, err := parseFlags([]string{"-cluster", "2", "-load-delay", "10ms", "-ttl", "1m", "-log-level", "warn", "-minority-serves"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	args := childArgs(o, "n2", "/origin", "127.0.0.1:7000")
	// The child must accept them, as one node.
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(childArgs) = %v", err)
	}
	if c.name != "n2" || c.origin != "/origin" || c.httpAddr != "127.0.0.1:0" || c.gossipAddr != "127.0.0.1:0" ||
		c.rpcAddr != "127.0.0.1:0" || !slices.Equal(c.join, []string{"127.0.0.1:7000"}) || c.loadDelay != 10*time.Millisecond ||
		c.ttl != time.Minute || c.logLevel != o.logLevel || c.gossipProfile.String() != "local" || c.cluster != 0 || !c.minority {
		t.Errorf("child options = %+v (args %q)", c, args)
	}
	if first := childArgs(o, "n1", "/origin", ""); slices.Contains(first, "-join") {
		t.Errorf("the first node's args %q join someone", first)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}
