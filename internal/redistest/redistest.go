// Package redistest starts a real redis-server (Debian's package) for a
// test: on a free port of 127.0.0.1, with its files in the test's temporary
// directory, stopped when the test ends.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Server is a running redis-server.
type Server struct {
	Addr string // host:port
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server for t and stops it in t's cleanup. Without
// the binary the test is skipped, unless MESHCACHE_REQUIRE_REDIS is set (as
// .ci/run does): then it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("MESHCACHE_REQUIRE_REDIS") != "" {
			t.Fatalf("redis-server not found and MESHCACHE_REQUIRE_REDIS is set: %v", err)
		}
		t.Skip("redis-server not found (Debian package redis-server): skipping the tests against a real Redis")
	}
	// The port is picked by the OS, then given to redis-server: another
	// process may take it in between, so a failed start is retried.
	var last error
	for range 5 {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		last = err
	}
	t.Fatalf("redis-server did not start: %v", last)
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	conf := strings.Join([]string{
		"bind 127.0.0.1",
		fmt.Sprintf("port %d", port),
		"dir " + dir,
		"save \"\"",
		"appendonly no",
		"protected-mode yes",
		"daemonize no",
		"logfile " + filepath.Join(dir, "redis.log"),
	}, "\n") + "\n"
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, path)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return nil, fmt.Errorf("%w; log:\n%s", err, log)
	}
	t.Cleanup(s.Stop)
	return s, nil
}

// waitReady waits until the server answers PING.
func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited: %v", s.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop kills the server and waits for it. Safe to call more than once.
func (s *Server) Stop() {
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Kill()
	<-s.done
}

// Pause stops the server with SIGSTOP: it keeps its connections and
// answers nothing until Resume.
func (s *Server) Pause() { s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
