package meshcache

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// Tests of gossip as part of the security boundary (issue 9, section 5).

// checkNotMember checks, for a second, that no node lists name as a
// member or gives it partitions.
func checkNotMember(t *testing.T, nodes []*Node, name string) {
	t.Helper()
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, n := range nodes {
			for _, m := range n.Members() {
				if m.Name == name {
					t.Fatalf("%s lists %s as a member", n.Name(), name)
				}
			}
			if p, ok := n.Partitions()[name]; ok {
				t.Fatalf("%s gives %s %d partitions", n.Name(), name, p)
			}
			if got := n.Stats().Members; got != len(nodes) {
				t.Fatalf("%s routes over %d members, want %d", n.Name(), got, len(nodes))
			}
		}
	}
}

// TestTLSNeedsSecretKey: a clustered node with TLS and no gossip key is
// refused, saying why; a standalone node ignores both.
func TestTLSNeedsSecretKey(t *testing.T) {
	ca := newReadTestCA(t, "CA")
	cfg := testClusterConfig("tls-no-key")
	cfg.TLS = ca.nodeTLS(t, cfg.NodeName, 2)
	n, err := NewNode(cfg)
	if err == nil {
		n.Close()
		t.Fatal("NewNode with TLS and no SecretKey succeeded")
	}
	if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "SecretKey") {
		t.Errorf("NewNode with TLS and no SecretKey = %v, want ErrInvalidOption naming SecretKey", err)
	}

	cfg.SecretKey = []byte("0123456789abcdef")
	startNode(t, cfg)

	standalone := Config{NodeName: "alone", Logger: testLogger(), TLS: ca.nodeTLS(t, "alone", 3)}
	startNode(t, standalone)
}

// TestClusterRefusesTLSIntoPlain: a node with TLS cannot join a cluster
// without it (the reverse of TestClusterTLS's "no TLS"), even with the
// right gossip key: ErrIncompatible, and it never owns partitions there.
func TestClusterRefusesTLSIntoPlain(t *testing.T) {
	key := []byte("0123456789abcdef")
	nodes := startCluster(t, 2, func(c *Config) { c.SecretKey = key })
	ca := newReadTestCA(t, "CA")
	cfg := testClusterConfig("intruder", nodes[0].GossipAddr())
	cfg.SecretKey = key
	cfg.TLS = ca.nodeTLS(t, cfg.NodeName, 2)
	cfg.JoinTimeout = 2 * time.Second
	n, err := NewNode(cfg)
	if err == nil {
		n.Close()
		t.Fatal("NewNode with TLS joined a cluster without TLS")
	}
	if !errors.Is(err, ErrJoin) || !errors.Is(err, ErrIncompatible) {
		t.Errorf("NewNode with TLS = %v, want ErrJoin and ErrIncompatible", err)
	}
	checkNotMember(t, nodes, "intruder")
}

// TestGossipWriteFromNonMember: a write on gossip applies only when its
// origin is a current member. A Clear that names another origin (a process
// refused at join, or a forgery by a holder of the gossip key) is dropped.
func TestGossipWriteFromNonMember(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	gs, _ := readGroups(t, nodes, "g", 0, 0)
	local := keyOwnedBy(t, nodes[0], nodes[0].Name(), "mine")
	remote := keyOwnedBy(t, nodes[0], nodes[1].Name(), "theirs")
	cached := func() (n int) {
		for _, k := range []string{local, remote} {
			if _, ok, err := gs[0].Peek(t.Context(), k); err == nil && ok {
				n++
			}
		}
		return n
	}
	for _, k := range []string{local, remote} {
		getSource(t, gs[0], k) // the owner's main cache, and a hot copy
	}
	if got := cached(); got != 2 {
		t.Fatalf("%s caches %d of its 2 keys, want both", nodes[0].Name(), got)
	}
	clear := func(origin string, id uint64) {
		t.Helper()
		b, err := transport.EncodeWrite(transport.WriteRequest{Group: "g", Op: transport.OpClear, Origin: origin, ID: id})
		if err != nil {
			t.Fatal(err)
		}
		nodes[0].onMessage(b)
	}

	for i, origin := range []string{"stranger", ""} {
		clear(origin, uint64(i+1))
		if got := cached(); got != 2 {
			t.Fatalf("after a gossip Clear from %q: %s caches %d of its 2 keys, want both", origin, nodes[0].Name(), got)
		}
	}
	if got := nodes[0].Stats().GossipApplied; got != 0 {
		t.Errorf("GossipApplied = %d after writes from non-members, want 0", got)
	}

	clear(nodes[1].Name(), 10)
	if got := cached(); got != 0 {
		t.Errorf("after a gossip Clear from member %s: %s caches %d keys, want 0", nodes[1].Name(), nodes[0].Name(), got)
	}
	if got := nodes[0].Stats().GossipApplied; got != 1 {
		t.Errorf("GossipApplied = %d after a write from a member, want 1", got)
	}
}
