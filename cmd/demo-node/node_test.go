package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// runningNode is a node run by run in this process.
type runningNode struct {
	ready  readyInfo
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startRun runs run(args) in the background and waits for its ready line.
// The node is stopped when the test ends.
func startRun(t *testing.T, args ...string) *runningNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan string, 1)
	rn := &runningNode{stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- run(ctx, args, &firstLine{ch: lines}, rn.stderr) }()
	t.Cleanup(func() { rn.stop(t) })
	select {
	case line := <-lines:
		r, err := parseReadyLine(line)
		if err != nil {
			t.Fatalf("run(%q): %v", args, err)
		}
		rn.ready = r
	case err := <-rn.done:
		rn.done <- err
		t.Fatalf("run(%q) = %v before it was ready; stderr:\n%s", args, err, rn.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("run(%q) not ready after 30s; stderr:\n%s", args, rn.stderr)
	}
	return rn
}

// stop cancels the run and waits for it; it reports a run that failed.
func (rn *runningNode) stop(t *testing.T) {
	t.Helper()
	rn.cancel()
	select {
	case err := <-rn.done:
		if err != nil {
			t.Errorf("run returned %v after it was stopped", err)
		}
		rn.done <- nil
	case <-time.After(30 * time.Second):
		t.Errorf("run still running 30s after it was stopped")
	}
}

func TestRunStandalone(t *testing.T) {
	rn := startRun(t, "-name", "solo", "-http", "127.0.0.1:0", "-gossip", "", "-load-delay", "0s")
	if rn.ready.Name != "solo" || rn.ready.Gossip != "" || rn.ready.RPC != "" {
		t.Errorf("ready line %+v, want solo without gossip or rpc", rn.ready)
	}
	base := "http://" + rn.ready.HTTP
	if code, body, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("GET /healthz = %d %q", code, body)
	}
	if code, body, _ := httpGet(t, base+"/v1/users/nobody"); code != 404 {
		t.Errorf("GET /v1/users/nobody = %d %q, want 404", code, body)
	}
	m := regexp.MustCompile(`dir=(\S+)`).FindStringSubmatch(rn.stderr.String())
	if m == nil {
		t.Fatalf("the log does not name the origin directory:\n%s", rn.stderr)
	}
	if st, err := os.Stat(m[1]); err != nil || !st.IsDir() {
		t.Fatalf("origin %s: %v", m[1], err)
	}
	rn.stop(t)
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary origin %s still exists after the node stopped: %v", m[1], err)
	}
}

// TestRunSecureCluster runs two nodes with mutual TLS on the peer
// transport and gossip encryption, and reads a key through the node that
// does not own it.
func TestRunSecureCluster(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := writeTestPKI(t, dir)
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString([]byte("0123456789abcdef"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	origin := filepath.Join(dir, "origin")
	for i := range 20 {
		writeFile(t, origin, fmt.Sprintf("users/user:%d", i), fmt.Sprintf("value %d", i))
	}
	common := []string{"-http", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-rpc", "127.0.0.1:0",
		"-gossip-profile", "local", "-origin", origin, "-load-delay", "0s",
		"-secret-key-file", keyFile, "-tls-cert", cert, "-tls-key", key, "-tls-ca", ca}
	a := startRun(t, append([]string{"-name", "a"}, common...)...)
	b := startRun(t, append([]string{"-name", "b", "-join", a.ready.Gossip}, common...)...)
	for _, rn := range []*runningNode{a, b} {
		waitFor(t, rn.ready.Name+" to list both members", 20*time.Second, func() bool {
			_, body, _ := httpGet(t, "http://"+rn.ready.HTTP+"/v1/members")
			var m struct{ Members []memberJSON }
			return json.Unmarshal([]byte(body), &m) == nil && len(m.Members) == 2
		})
	}
	// Every key read through a: those b owns come from b over TLS.
	peers := 0
	for i := range 20 {
		code, body, h := httpGet(t, fmt.Sprintf("http://%s/v1/users/user:%d", a.ready.HTTP, i))
		if code != 200 || body != fmt.Sprintf("value %d", i) {
			t.Fatalf("GET user:%d via a = %d %q", i, code, body)
		}
		if h.Get("X-Owner") == "b" {
			if h.Get("X-Cache") != "peer" {
				t.Errorf("GET user:%d (owned by b) via a: X-Cache %q, want peer", i, h.Get("X-Cache"))
			}
			peers++
		}
	}
	if peers == 0 {
		t.Errorf("b owns none of 20 keys")
	}
}

func TestRunErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"bad flag", []string{"-ttl", "never"}, 2},
		{"origin missing", []string{"-http", "127.0.0.1:0", "-gossip", "", "-origin", filepath.Join(t.TempDir(), "none")}, 2},
		{"cluster origin missing", []string{"-cluster", "2", "-origin", filepath.Join(t.TempDir(), "none")}, 2},
		{"http port busy", []string{"-http", busy.Addr().String(), "-gossip", ""}, 1},
		{"gossip port busy", []string{"-http", "127.0.0.1:0", "-gossip", busy.Addr().String()}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := run(ctx, tc.args, io.Discard, io.Discard)
			if code := exitCode(err, io.Discard); code != tc.code {
				t.Errorf("run(%q) = %v: exit code %d, want %d", tc.args, err, code, tc.code)
			}
		})
	}
}
