package meshcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// Config configures a [Node]. The zero value is a valid standalone node.
// [NewNode] copies it; the caller may reuse it afterwards.
type Config struct {
	// NodeName names this node; it must be unique in a cluster. If empty,
	// the host name followed by a random suffix.
	NodeName string

	// Logger receives the node's logs. If nil, [slog.Default].
	Logger *slog.Logger
}

// A Node is one member of a cache cluster: it holds the groups of this
// process. Create it with [NewNode] and stop it with [Node.Close]. Many nodes
// can run in one process (there is no package-level state). All methods are
// safe for concurrent use.
type Node struct {
	name string
	log  *slog.Logger

	// closing is cancelled by Close; every load runs under a context that
	// ends with it, so Close does not wait out the load timeouts.
	closing context.Context
	cancel  context.CancelFunc
	closed  atomic.Bool

	mu sync.Mutex // guards groups, loadsClosed and every loads.Add
	// groups holds the node's groups by name.
	groups map[string]*Group
	// loadsClosed is set by Close before it waits on loads: no load starts
	// after it is set, so loads.Add never races with loads.Wait.
	loadsClosed bool
	loads       sync.WaitGroup
}

// NewNode validates cfg and starts a node.
func NewNode(cfg Config) (*Node, error) {
	name := cfg.NodeName
	if name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "node"
		}
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = host + "-" + hex.EncodeToString(b[:])
	}
	if len(name) > MaxKeyLen {
		return nil, fmt.Errorf("meshcache: NodeName of %d bytes: %w", len(name), ErrInvalidOption)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Node{
		name:    name,
		log:     log.With("node", name),
		closing: ctx,
		cancel:  cancel,
		groups:  make(map[string]*Group),
	}, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Group returns the node's group of that name, if there is one.
func (n *Node) Group(name string) (*Group, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	g, ok := n.groups[name]
	return g, ok
}

// Groups returns the node's groups, in no particular order.
func (n *Node) Groups() []*Group {
	n.mu.Lock()
	defer n.mu.Unlock()
	gs := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		gs = append(gs, g)
	}
	return gs
}

// Close stops the node: loads in flight are cancelled and waited for, the
// groups' background work stops, and every later call on the node or its
// groups returns [ErrClosed]. Close is idempotent: later calls return nil.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.cancel()
	n.mu.Lock()
	n.loadsClosed = true
	groups := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		groups = append(groups, g)
	}
	n.mu.Unlock()
	n.loads.Wait()
	for _, g := range groups {
		g.store.Close()
	}
	return nil
}

// startLoad registers a load with the node, so that Close waits for it. It
// returns false once the node is closing; otherwise the caller must call
// n.loads.Done when the load is over.
func (n *Node) startLoad() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.loadsClosed {
		return false
	}
	n.loads.Add(1)
	return true
}

func (n *Node) addGroup(g *Group) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.loadsClosed {
		return ErrClosed
	}
	if _, ok := n.groups[g.name]; ok {
		return fmt.Errorf("meshcache: group %q: %w", g.name, ErrGroupExists)
	}
	n.groups[g.name] = g
	return nil
}
