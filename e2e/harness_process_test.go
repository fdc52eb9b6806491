package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds and settings of every demo-node process.
const (
	// readyTimeout bounds how long a node may take to print its ready line.
	readyTimeout = 20 * time.Second
	// exitTimeout bounds how long a signalled node may take to exit.
	exitTimeout = 15 * time.Second
	// loadDelay is every node's -load-delay.
	loadDelay = "20ms"
)

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

// checkRunning fails the test for every node that has exited.
func checkRunning(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		if n.exited() {
			t.Errorf("%s exited: %v; output tail:\n%s", n.name, n.err, n.out.tail(30))
		}
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
