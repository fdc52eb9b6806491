package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const (
	// memberTimeout bounds how long membership may take to converge,
	// failure detection included. Usually well under 10s; but with the
	// local gossip profile a membership change sometimes reaches a member
	// only at its next push/pull (every 15s), and a failure without
	// confirming suspicions takes 18s to declare.
	memberTimeout = 45 * time.Second
	// pollEvery is the interval of every poll.
	pollEvery = 100 * time.Millisecond
)

// demoNode is the path of the demo-node binary built by TestMain.
var demoNode string

// clusters limits how many clusters run at once (2 shared cores).
var clusters = make(chan struct{}, 2)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds demo-node, runs the tests and checks for leaked goroutines.
func run(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "meshcache-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	demoNode = filepath.Join(dir, "demo-node")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", demoNode, "github.com/meshcache/meshcache/cmd/demo-node")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build cmd/demo-node: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built demo-node in %v\n", time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goleak:", err)
			code = 1
		}
	}
	return code
}

// useCluster reserves one of the cluster slots for the rest of the test.
func useCluster(t *testing.T) {
	t.Helper()
	select {
	case clusters <- struct{}{}:
	case <-t.Context().Done():
		t.Fatal("no cluster slot")
	}
	t.Cleanup(func() { <-clusters })
}

// cluster is a set of nodes sharing an origin directory, and an HTTP
// client for them.
type cluster struct {
	t      *testing.T
	origin string
	nodes  []*node
	client *http.Client
}

// newCluster starts size nodes n0, n1, ... sharing a fresh origin dir,
// n1... joining n0, and waits until every node lists all of them.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	return newClusterWith(t, size)
}

// newClusterWith is newCluster with the flags extra added to every node's
// command line (after the defaults, which they override).
func newClusterWith(t *testing.T, size int, extra ...string) *cluster {
	t.Helper()
	useCluster(t)
	c := &cluster{t: t, origin: t.TempDir(), client: newClient(5 * time.Second)}
	t.Cleanup(c.client.CloseIdleConnections)
	c.start(size, func(_ int, dir, name string, more ...string) (*node, error) {
		return launch(dir, name, c.origin, slices.Concat(extra, more)...)
	})
	return c
}

// A launcher starts node i of a cluster, named name, in dir, with the
// extra flags.
type launcher func(i int, dir, name string, extra ...string) (*node, error)

// start launches size nodes n0, n1, ... with launchAt, n1... concurrently
// and joining n0, kills them when the test ends, and waits until every
// node lists all of them.
func (c *cluster) start(size int, launchAt launcher) {
	t := c.t
	t.Helper()
	begin := time.Now()
	first, err := launchAt(0, t.TempDir(), "n0")
	if err != nil {
		t.Fatal(err)
	}
	own(t, first)
	c.nodes = append(c.nodes, first)
	rest := make([]*node, size-1)
	errs := make([]error, size-1)
	var wg sync.WaitGroup
	for i := range rest {
		dir := t.TempDir()
		wg.Go(func() {
			rest[i], errs[i] = launchAt(i+1, dir, fmt.Sprintf("n%d", i+1), "-join", first.gossip)
		})
	}
	wg.Wait()
	for _, n := range rest {
		if n != nil {
			own(t, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	c.nodes = append(c.nodes, rest...)
	c.waitMembers(c.nodes, names(c.nodes))
	t.Logf("%d nodes up and joined in %v", size, time.Since(begin).Round(time.Millisecond))
}

// names returns the nodes' names, sorted.
func names(nodes []*node) []string {
	s := make([]string, len(nodes))
	for i, n := range nodes {
		s[i] = n.name
	}
	slices.Sort(s)
	return s
}

// writeOrigin sets the origin value of group/key, atomically (rename).
func (c *cluster) writeOrigin(group, key, value string) {
	c.t.Helper()
	dir := filepath.Join(c.origin, group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := writeFileAtomic(dir, key, value); err != nil {
		c.t.Fatal(err)
	}
}

// writeFileAtomic sets the contents of dir/name with a rename.
func writeFileAtomic(dir, name, value string) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.WriteString(value)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
