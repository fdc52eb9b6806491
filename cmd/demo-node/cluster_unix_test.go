//go:build unix

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRunCluster runs -cluster 2 with this test binary as the nodes (see
// TestMain), uses both nodes, kills one, and stops the cluster.
func TestRunCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"-cluster", "2", "-load-delay", "0s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	var mu sync.Mutex
	pids := map[string]int{}
	sup := supervisor{
		exe: exe, env: append(os.Environ(), runMainEnv+"=1"), stdout: &stdout, stderr: &stderr,
		started: func(name string, pid int) { mu.Lock(); pids[name] = pid; mu.Unlock() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runCluster(ctx, o, sup) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("runCluster still running 30s after it was cancelled")
		}
	}()

	waitFor(t, "the cluster's hint line", 60*time.Second, func() bool { return strings.Contains(stdout.String(), "\ntry: ") })
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("stdout %q: want origin, two nodes, hint", stdout.String())
	}
	dir, ok := strings.CutPrefix(lines[0], "origin ")
	if !ok {
		t.Fatalf("first line %q, want origin DIR", lines[0])
	}
	var urls []string
	for i, line := range lines[1:3] {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "node" || f[1] != []string{"n1", "n2"}[i] || !strings.HasPrefix(f[2], "http://127.0.0.1:") || !strings.HasSuffix(f[2], "/") {
			t.Fatalf("line %q, want node NAME http://127.0.0.1:PORT/", line)
		}
		urls = append(urls, f[2])
	}
	for _, u := range urls {
		code, body, h := httpGet(t, u+"v1/users/user:1")
		if code != 200 || !strings.Contains(body, "Ada Lovelace") || h.Get("X-Owner") == "" {
			t.Errorf("GET %sv1/users/user:1 = %d %q (X-Owner %q), want the seeded user", u, code, body, h.Get("X-Owner"))
		}
		if code, body, _ := httpGet(t, u+"v1/members"); code != 200 || !strings.Contains(body, `"n1"`) || !strings.Contains(body, `"n2"`) {
			t.Errorf("GET %sv1/members = %d %q, want n1 and n2", u, code, body)
		}
	}

	mu.Lock()
	n2 := pids["n2"]
	n1 := pids["n1"]
	mu.Unlock()
	if err := syscall.Kill(n2, syscall.SIGKILL); err != nil {
		t.Fatalf("kill n2: %v", err)
	}
	waitFor(t, "the supervisor to report n2", 20*time.Second, func() bool {
		return strings.Contains(stderr.String(), "node n2 exited unexpectedly")
	})
	if code, _, _ := httpGet(t, urls[0]+"healthz"); code != 200 {
		t.Errorf("n1 /healthz = %d after n2 died, want 200", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runCluster = %v after cancel, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("runCluster still running 30s after it was cancelled")
	}
	done <- nil // for the deferred wait
	if err := syscall.Kill(n1, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("n1 (pid %d) still exists after the cluster stopped: %v", n1, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("origin %s still exists after the cluster stopped: %v", dir, err)
	}
	if strings.Contains(stderr.String(), "node n1 exited unexpectedly") {
		t.Errorf("stopping the cluster reported n1 as unexpected:\n%s", stderr.String())
	}
}
