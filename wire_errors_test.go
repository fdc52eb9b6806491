package meshcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/meshcache/meshcache/transport"
)

// Tests of errors across hops (issue 9, section 4): a peer gets a class
// and a short message; a panic's value and stack stay in the owner's log.

// logBuffer collects a node's log, for tests that look into it.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// panicSecret is in the panic value of weLoader: it must never leave the
// owner's log.
const panicSecret = "s3cr3t-token"

// errWeLoad is the long error of weLoader for keys starting with "fail".
var errWeLoad = errors.New("db down: " + strings.Repeat("x", 10_000))

// weLoader panics for keys starting with "panic", fails with errWeLoad for
// keys starting with "fail", and answers key@node for the others.
func weLoader(node string) LoaderFunc {
	return func(ctx context.Context, key string) (Item, error) {
		switch {
		case strings.HasPrefix(key, "panic"):
			panic(fmt.Sprintf("%s while loading %s", panicSecret, key))
		case strings.HasPrefix(key, "fail"):
			return Item{}, errWeLoad
		}
		return Item{Value: []byte(key + "@" + node)}, nil
	}
}

// startLoggedCluster starts a cluster of size nodes, each logging to a
// buffer of its own at Debug.
func startLoggedCluster(t *testing.T, size int) ([]*Node, []*Group, map[string]*logBuffer) {
	t.Helper()
	logs := make(map[string]*logBuffer)
	nodes := startCluster(t, size, func(c *Config) {
		b := &logBuffer{}
		logs[c.NodeName] = b
		c.Logger = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	gs := make([]*Group, len(nodes))
	for i, n := range nodes {
		gs[i] = mustGroup(t, n, "errs", weLoader(n.Name()))
	}
	return nodes, gs, logs
}

// getErr returns the error of a Get of key, or of a GetMany of key alone.
func getErr(t *testing.T, g *Group, key string, many bool) error {
	t.Helper()
	var err error
	if many {
		_, err = g.GetMany(t.Context(), []string{key})
	} else {
		_, err = g.Get(t.Context(), key)
	}
	if err == nil {
		t.Fatalf("%s: Get(%q) succeeded, want an error", g.node.Name(), key)
	}
	return err
}

// TestClusterLoaderPanicAcrossNodes: a loader panic at the owner is
// ErrLoaderPanic (and ErrLoadFailed) for a caller on another node, with
// neither the panic value nor a stack in its text, which is short; both
// are in the owner's log, and only there.
func TestClusterLoaderPanicAcrossNodes(t *testing.T) {
	nodes, gs, logs := startLoggedCluster(t, 2)
	reader, owner := 0, 1
	for _, tc := range []struct {
		name     string
		from     int
		many     bool
		prefix   string
		maxBytes int
	}{
		{"remote Get", reader, false, "panic-get", 400},
		{"remote GetMany", reader, true, "panic-many", 400},
		{"local Get", owner, false, "panic-local", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := keyOwnedBy(t, nodes[tc.from], nodes[owner].Name(), tc.prefix)
			err := getErr(t, gs[tc.from], key, tc.many)
			text := err.Error()
			if !errors.Is(err, ErrLoaderPanic) || !errors.Is(err, ErrLoadFailed) {
				t.Errorf("Get(%q) = %.400q, want ErrLoaderPanic and ErrLoadFailed", key, text)
			}
			if strings.Contains(text, "goroutine") || strings.Contains(text, panicSecret) || strings.Contains(text, ".go:") {
				t.Errorf("Get(%q) = %.400q: carries the panic value or a stack", key, text)
			}
			if len(text) > tc.maxBytes {
				t.Errorf("Get(%q) error has %d bytes, want at most %d: %.400q", key, len(text), tc.maxBytes, text)
			}
			ownerLog := logs[nodes[owner].Name()].String()
			if !strings.Contains(ownerLog, panicSecret+" while loading "+key) || !strings.Contains(ownerLog, "goroutine ") {
				t.Errorf("the owner's log lacks the panic value or the stack of %q", key)
			}
		})
	}
	if strings.Contains(logs[nodes[reader].Name()].String(), panicSecret) {
		t.Error("the reader's log holds the panic value: it crossed the wire")
	}
}

// TestClusterLoaderErrorAcrossNodes: a loader error at the owner reaches
// a caller on another node as ErrLoadFailed, with the loader's own text
// cut to transport.MaxErrorMessage bytes, and each prefix once.
func TestClusterLoaderErrorAcrossNodes(t *testing.T) {
	nodes, gs, _ := startLoggedCluster(t, 2)
	reader, owner := 0, 1
	for _, many := range []bool{false, true} {
		t.Run(fmt.Sprintf("many=%v", many), func(t *testing.T) {
			key := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), fmt.Sprintf("fail-%v", many))
			err := getErr(t, gs[reader], key, many)
			text := err.Error()
			if !errors.Is(err, ErrLoadFailed) || errors.Is(err, ErrLoaderPanic) || errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q) = %.400q, want ErrLoadFailed only", key, text)
			}
			for _, once := range []string{transport.ErrLoader.Error(), ErrLoadFailed.Error(), fmt.Sprintf("load %q", key)} {
				if c := strings.Count(text, once); c != 1 {
					t.Errorf("Get(%q) = %.400q: %q appears %d times, want once", key, text, once, c)
				}
			}
			_, msg, ok := strings.Cut(text, transport.ErrLoader.Error()+": ")
			if !ok || !strings.HasPrefix(msg, "db down: xxx") {
				t.Fatalf("Get(%q) = %.400q, want the loader's text after %q", key, text, transport.ErrLoader.Error())
			}
			if len(msg) > transport.MaxErrorMessage {
				t.Errorf("Get(%q): the owner's message has %d bytes, want at most %d", key, len(msg), transport.MaxErrorMessage)
			}
			if limit := 2 * transport.MaxErrorMessage; len(text) > limit {
				t.Errorf("Get(%q) error has %d bytes, want at most %d", key, len(text), limit)
			}
		})
	}
}

// TestWireError: what a peer gets for each kind of load error.
func TestWireError(t *testing.T) {
	lf := func(cause error) error { return &loadFailure{what: `load "k" in group g`, cause: cause} }
	long := "db down: " + strings.Repeat("é", 1000)
	for _, tc := range []struct {
		name   string
		err    error
		class  error
		prefix string // of the text after the class's
	}{
		{"panic", lf(fmt.Errorf("%w: group g, key %q", ErrLoaderPanic, "k")), transport.ErrLoaderPanic, ""},
		{"panic outside the loader", fmt.Errorf("%w: group g", ErrLoaderPanic), transport.ErrLoaderPanic, ""},
		{"loader error", lf(errors.New("db down")), transport.ErrLoader, "db down"},
		{"long loader error", lf(errors.New(long)), transport.ErrLoader, "db down: éé"},
		// Not a loadFailure: its whole text goes, bounded.
		{"other load error", fmt.Errorf("meshcache: load 2 keys in group h: %w: %w", ErrLoadFailed, errors.New("db down")), transport.ErrLoader, "meshcache: load 2 keys"},
		{"not found", fmt.Errorf("meshcache: g %q: %w", "k", ErrNotFound), transport.ErrNotFound, ""},
		{"closed", ErrClosed, transport.ErrClosed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			werr := wireError(tc.err)
			text := werr.Error()
			if !errors.Is(werr, tc.class) {
				t.Errorf("wireError(%v) = %v, want %v", tc.err, werr, tc.class)
			}
			if len(text) > transport.MaxErrorMessage {
				t.Errorf("wireError(%.60v...) has %d bytes, want at most %d", tc.err, len(text), transport.MaxErrorMessage)
			}
			if strings.Contains(text, `in group g:`) {
				t.Errorf("wireError(%v) = %q: carries this node's context", tc.err, text)
			}
			if !strings.HasPrefix(strings.TrimPrefix(text, tc.class.Error()+": "), tc.prefix) {
				t.Errorf("wireError(%v) = %q, want %q after the class", tc.err, text, tc.prefix)
			}
		})
	}
}
