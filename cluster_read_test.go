package meshcache

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport"
)

// Tests of the cluster's read path (issue 3, behaviours 1, 2, 4, 6 and 7):
// several real nodes in one process, real gossip and real TCP on 127.0.0.1.

// errOrigin is what readLoader returns for keys starting with "fail".
var errOrigin = errors.New("origin is down")

// readLoader is one node's loader. It answers key with "key@node", so a
// value tells which node loaded it, and counts its calls per key. Keys
// starting with "missing" are not found; keys starting with "fail" fail.
type readLoader struct {
	node  string
	delay time.Duration // how long a load takes
	ttl   time.Duration // the items' TTL; 0: the group's

	mu      sync.Mutex
	calls   map[string]int
	batches [][]string // the keys of each LoadMany call
	total   atomic.Int64
}

func newReadLoader(node string, delay, ttl time.Duration) *readLoader {
	return &readLoader{node: node, delay: delay, ttl: ttl, calls: make(map[string]int)}
}

func (l *readLoader) Load(ctx context.Context, key string) (Item, error) {
	l.total.Add(1)
	l.mu.Lock()
	l.calls[key]++
	l.mu.Unlock()
	if l.delay > 0 {
		t := time.NewTimer(l.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return Item{}, ctx.Err()
		}
	}
	switch {
	case strings.HasPrefix(key, "missing"):
		return Item{}, ErrNotFound
	case strings.HasPrefix(key, "fail"):
		return Item{}, errOrigin
	}
	return Item{Value: []byte(key + "@" + l.node), TTL: l.ttl}, nil
}

// LoadMany makes readLoader a BatchLoader too.
func (l *readLoader) LoadMany(ctx context.Context, keys []string) (map[string]Item, error) {
	l.mu.Lock()
	l.batches = append(l.batches, slices.Clone(keys))
	l.mu.Unlock()
	out := make(map[string]Item, len(keys))
	for _, k := range keys {
		it, err := l.Load(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[k] = it
	}
	return out, nil
}

func (l *readLoader) callsOf(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[key]
}

func (l *readLoader) batchCalls() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.batches)
}

// readGroups creates group name on every node, each with a readLoader of
// its own, and jitter off.
func readGroups(t testing.TB, nodes []*Node, name string, delay, ttl time.Duration, opts ...GroupOption) ([]*Group, []*readLoader) {
	t.Helper()
	gs := make([]*Group, len(nodes))
	ls := make([]*readLoader, len(nodes))
	for i, n := range nodes {
		ls[i] = newReadLoader(n.Name(), delay, ttl)
		gs[i] = mustGroup(t, n, name, ls[i], opts...)
	}
	return gs, ls
}

// getSource returns key's value and where it came from.
func getSource(t testing.TB, g *Group, key string) (string, Source) {
	t.Helper()
	var src Source
	v, err := g.Get(context.Background(), key, ReportSource(&src))
	if err != nil {
		t.Fatalf("%s: Get(%q): %v", g.node.Name(), key, err)
	}
	return string(v), src
}

// hardStop stops n as a crash would: its gossip stops without leaving (the
// others must detect the failure) and its peer transport closes. The test's
// cleanup still closes n.
func hardStop(n *Node) {
	n.cluster.Kill()
	n.server.Close()
}

func TestClusterReadRouting(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	gs, ls := readGroups(t, nodes, "route", 0, 0)
	ctx := context.Background()

	t.Run("one owner per key", func(t *testing.T) {
		names := map[string]bool{}
		for _, n := range nodes {
			names[n.Name()] = true
		}
		owned := map[string]int{}
		for i := range 300 {
			key := fmt.Sprintf("k%d", i)
			owner := nodes[0].Owner(key)
			if !names[owner] {
				t.Fatalf("Owner(%q) = %q, not a member", key, owner)
			}
			owned[owner]++
			for _, n := range nodes[1:] {
				if got := n.Owner(key); got != owner {
					t.Errorf("%s: Owner(%q) = %q, want %q", n.Name(), key, got, owner)
				}
			}
		}
		if len(owned) != len(nodes) {
			t.Errorf("owners %v: want keys on every node", owned)
		}
	})

	t.Run("any node returns the owner's value", func(t *testing.T) {
		for i := range 30 {
			key := fmt.Sprintf("r%d", i)
			owner := nodes[0].Owner(key)
			for _, g := range gs {
				if got, want := mustGet(t, g, key), key+"@"+owner; got != want {
					t.Errorf("%s: Get(%q) = %q, want %q", g.node.Name(), key, got, want)
				}
			}
			for i, l := range ls {
				want := 0
				if nodes[i].Name() == owner {
					want = 1
				}
				if got := l.callsOf(key); got != want {
					t.Errorf("%s: loader calls for %q = %d, want %d", nodes[i].Name(), key, got, want)
				}
			}
		}
	})

	t.Run("served request is never forwarded", func(t *testing.T) {
		// Ask nodes[2] directly for a key nodes[0] owns, as a peer whose ring
		// disagrees would: it must load the key itself.
		server := nodes[2]
		key := keyOwnedBy(t, server, nodes[0].Name(), "direct")
		var served [3]uint64
		for i, g := range gs {
			served[i] = g.Stats().PeerServed
		}
		c := transport.NewClient(transport.ClientConfig{Logger: testLogger()})
		defer c.Close()
		resp, err := c.Get(ctx, server.RPCAddr(), transport.GetRequest{Group: "route", Key: key})
		if err != nil {
			t.Fatalf("transport Get(%q) from %s: %v", key, server.Name(), err)
		}
		if got, want := string(resp.Value.Value), key+"@"+server.Name(); got != want {
			t.Errorf("transport Get(%q) = %q, want %q (loaded where served)", key, got, want)
		}
		for i, l := range ls {
			want := 0
			if i == 2 {
				want = 1
			}
			if got := l.callsOf(key); got != want {
				t.Errorf("%s: loader calls for %q = %d, want %d", nodes[i].Name(), key, got, want)
			}
		}
		for i, g := range gs {
			want := served[i]
			if i == 2 {
				want++
			}
			if got := g.Stats().PeerServed; got != want {
				t.Errorf("%s: PeerServed = %d, want %d", nodes[i].Name(), got, want)
			}
		}
	})
}

func TestClusterRefusesOtherRingSettings(t *testing.T) {
	seed := startCluster(t, 1, nil)[0]
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
	}{
		{"partitions", func(c *Config) { c.Partitions = 113 }},
		{"load factor", func(c *Config) { c.LoadFactor = 1.5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testClusterConfig("odd", seed.GossipAddr())
			cfg.JoinTimeout = 5 * time.Second
			tc.tweak(&cfg)
			n, err := NewNode(cfg)
			if err == nil {
				n.Close()
				t.Fatal("NewNode with other ring settings joined")
			}
			if !errors.Is(err, ErrJoin) || !errors.Is(err, ErrIncompatible) {
				t.Errorf("NewNode = %v, want ErrJoin and ErrIncompatible", err)
			}
		})
	}
	if got := seed.Stats().Members; got != 1 {
		t.Errorf("seed routes over %d members, want 1", got)
	}
}

func TestClusterOncePerFleet(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	ctx := context.Background()

	t.Run("concurrent gets load once", func(t *testing.T) {
		gs, ls := readGroups(t, nodes, "once", 20*time.Millisecond, 0)
		const keys, workers = 50, 8
		var wg sync.WaitGroup
		var bad atomic.Int64
		for _, g := range gs {
			for w := range workers {
				wg.Go(func() {
					for i := range keys {
						key := fmt.Sprintf("k%d", (i+w*7)%keys)
						v, err := g.Get(ctx, key)
						want := key + "@" + g.node.Owner(key)
						if err != nil || string(v) != want {
							if bad.Add(1) <= 5 {
								t.Errorf("%s: Get(%q) = %q, %v; want %q", g.node.Name(), key, v, err, want)
							}
						}
					}
				})
			}
		}
		wg.Wait()
		for i := range keys {
			key := fmt.Sprintf("k%d", i)
			sum := 0
			for _, l := range ls {
				sum += l.callsOf(key)
			}
			if sum != 1 {
				t.Errorf("loader calls for %q in the cluster = %d, want 1", key, sum)
			}
		}
		// What non-owners fetched is in their hot cache.
		for i := range keys {
			key := fmt.Sprintf("k%d", i)
			for _, g := range gs {
				want := SourceHot
				if g.node.Owner(key) == g.node.Name() {
					want = SourceHit
				}
				if _, src := getSource(t, g, key); src != want {
					t.Errorf("%s: second Get(%q) came from %v, want %v", g.node.Name(), key, src, want)
				}
			}
		}
	})

	// The hot copy of a value lives min(the owner's remaining TTL, the hot
	// TTL cap).
	for _, tc := range []struct {
		name             string
		ownerTTL, hotCap time.Duration
	}{
		{"owner TTL under the cap", 300 * time.Millisecond, time.Minute},
		{"cap under the owner TTL", time.Minute, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			gs, ls := readGroups(t, nodes, name, 0, tc.ownerTTL, WithHotTTL(tc.hotCap))
			owner, reader := 1, 0
			key := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "ttl")
			if _, src := getSource(t, gs[reader], key); src != SourcePeer {
				t.Fatalf("first Get(%q) came from %v, want %v", key, src, SourcePeer)
			}
			e, ok, err := gs[reader].Peek(ctx, key)
			if err != nil || !ok {
				t.Fatalf("Peek(%q) on the reader = %v, %v: want the hot copy", key, ok, err)
			}
			if limit := min(tc.ownerTTL, tc.hotCap); e.TTL <= 0 || e.TTL > limit {
				t.Errorf("hot copy TTL = %v, want in (0, %v]", e.TTL, limit)
			}
			if _, src := getSource(t, gs[reader], key); src != SourceHot {
				t.Errorf("second Get(%q) came from %v, want %v", key, src, SourceHot)
			}
			// The copy expires: bounded well below the longer of the two.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, ok, _ := gs[reader].Peek(ctx, key); !ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("hot copy of %q still there after 10s", key)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, src := getSource(t, gs[reader], key); src != SourcePeer {
				t.Errorf("Get(%q) after the copy expired came from %v, want %v", key, src, SourcePeer)
			}
			// The owner reloaded only when its own entry had expired too.
			want := 1
			if tc.ownerTTL < tc.hotCap {
				want = 2
			}
			if got := ls[owner].callsOf(key); got != want {
				t.Errorf("owner's loader calls for %q = %d, want %d", key, got, want)
			}
			if got := ls[reader].callsOf(key); got != 0 {
				t.Errorf("reader's loader calls for %q = %d, want 0", key, got)
			}
		})
	}

	t.Run("GetMany one request per owner", func(t *testing.T) {
		ls := make([]*readLoader, len(nodes))
		gs := make([]*Group, len(nodes))
		for i, n := range nodes {
			ls[i] = newReadLoader(n.Name(), 0, 0)
			gs[i] = mustGroup(t, n, "many", ls[i], WithBatchLoader(ls[i]))
		}
		for round, caller := range []int{0, 1} {
			keys := make([]string, 30)
			owned := make(map[string][]string)
			for i := range keys {
				keys[i] = fmt.Sprintf("m%d-%d", round, i)
				o := nodes[caller].Owner(keys[i])
				owned[o] = append(owned[o], keys[i])
			}
			if len(owned) != len(nodes) {
				t.Fatalf("keys owned by %d nodes, want %d", len(owned), len(nodes))
			}
			var requests, served [3]uint64
			var batches [3]int
			for i, n := range nodes {
				requests[i] = n.Stats().PeerRequests
				served[i] = gs[i].Stats().PeerServed
				batches[i] = len(ls[i].batchCalls())
			}
			got, err := gs[caller].GetMany(ctx, keys)
			if err != nil {
				t.Fatalf("GetMany on %s: %v", nodes[caller].Name(), err)
			}
			for _, k := range keys {
				if want := k + "@" + nodes[caller].Owner(k); string(got[k]) != want {
					t.Errorf("GetMany[%q] = %q, want %q", k, got[k], want)
				}
			}
			for i, n := range nodes {
				mine := owned[n.Name()]
				calls := ls[i].batchCalls()[batches[i]:]
				if len(calls) != 1 {
					t.Errorf("round %d: %s: LoadMany calls = %d, want 1", round, n.Name(), len(calls))
				} else if !sameKeys(calls[0], mine) {
					t.Errorf("round %d: %s: LoadMany(%q), want its keys %q", round, n.Name(), calls[0], mine)
				}
				wantReq, wantServed := requests[i]+1, served[i]+uint64(len(mine))
				if i == caller {
					wantReq, wantServed = requests[i], served[i]
				}
				if got := n.Stats().PeerRequests; got != wantReq {
					t.Errorf("round %d: %s: PeerRequests = %d, want %d", round, n.Name(), got, wantReq)
				}
				if got := gs[i].Stats().PeerServed; got != wantServed {
					t.Errorf("round %d: %s: PeerServed = %d, want %d", round, n.Name(), got, wantServed)
				}
			}
			// The fetched values are hot on the caller now.
			for o, ks := range owned {
				if o == nodes[caller].Name() {
					continue
				}
				if _, src := getSource(t, gs[caller], ks[0]); src != SourceHot {
					t.Errorf("Get(%q) after GetMany came from %v, want %v", ks[0], src, SourceHot)
				}
			}
		}
	})

	t.Run("ReportSource", func(t *testing.T) {
		gs, ls := readGroups(t, nodes, "src", 0, 0)
		owner, reader := 1, 0
		key := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "s")
		seen := map[Source]int{}
		for _, step := range []struct {
			g    *Group
			want Source
		}{
			{gs[owner], SourceLoad},
			{gs[owner], SourceHit},
			{gs[reader], SourcePeer},
			{gs[reader], SourceHot},
		} {
			v, src := getSource(t, step.g, key)
			if want := key + "@" + nodes[owner].Name(); v != want {
				t.Errorf("%s: Get(%q) = %q, want %q", step.g.node.Name(), key, v, want)
			}
			if src != step.want {
				t.Errorf("%s: Get(%q) came from %v, want %v", step.g.node.Name(), key, src, step.want)
			}
			seen[src]++
		}
		if got := ls[owner].callsOf(key) + ls[reader].callsOf(key); got != 1 {
			t.Errorf("loader calls for %q = %d, want 1", key, got)
		}
		// A group the owner does not have: the owner cannot serve, the
		// reader falls back to its own loader and keeps the value hot only.
		alone := newReadLoader(nodes[reader].Name(), 0, 0)
		ga := mustGroup(t, nodes[reader], "src-alone", alone)
		v, src := getSource(t, ga, key)
		if want := key + "@" + nodes[reader].Name(); v != want {
			t.Errorf("Get(%q) in a group only the reader has = %q, want %q", key, v, want)
		}
		if src != SourceFallback {
			t.Errorf("Get(%q) in a group only the reader has came from %v, want %v", key, src, SourceFallback)
		}
		seen[src]++
		st := ga.Stats()
		if st.Fallbacks != 1 || st.PeerErrors != 1 || st.PeerFetches != 1 || st.Items != 0 || st.HotItems != 1 {
			t.Errorf("after a fallback: Fallbacks, PeerErrors, PeerFetches, Items, HotItems = %d, %d, %d, %d, %d; want 1, 1, 1, 0, 1",
				st.Fallbacks, st.PeerErrors, st.PeerFetches, st.Items, st.HotItems)
		}
		for _, s := range []Source{SourceHit, SourceHot, SourcePeer, SourceLoad, SourceFallback} {
			if seen[s] != 1 {
				t.Errorf("source %v seen %d times, want once", s, seen[s])
			}
		}
	})
}

func sameKeys(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestClusterOwnerErrors(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	gs, ls := readGroups(t, nodes, "errs", 0, 0)
	owner, reader := 1, 0
	for _, tc := range []struct {
		prefix string
		want   error
	}{
		{"missing", ErrNotFound},
		{"fail", ErrLoadFailed},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			key := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), tc.prefix)
			before := gs[reader].Stats()
			var src Source
			_, err := gs[reader].Get(context.Background(), key, ReportSource(&src))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Get(%q) = %v, want %v", key, err, tc.want)
			}
			if got := ls[reader].callsOf(key); got != 0 {
				t.Errorf("reader's loader calls for %q = %d, want 0 (no second load)", key, got)
			}
			if got := ls[owner].callsOf(key); got != 1 {
				t.Errorf("owner's loader calls for %q = %d, want 1", key, got)
			}
			st := gs[reader].Stats()
			if st.Fallbacks != before.Fallbacks || st.PeerErrors != before.PeerErrors {
				t.Errorf("Fallbacks, PeerErrors went from %d, %d to %d, %d: an owner's answer is no peer failure",
					before.Fallbacks, before.PeerErrors, st.Fallbacks, st.PeerErrors)
			}
		})
	}
	t.Run("GetMany", func(t *testing.T) {
		missing := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "missing-many")
		failing := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "fail-many")
		good := keyOwnedBy(t, nodes[reader], nodes[owner].Name(), "good-many")
		before := gs[reader].Stats()
		got, err := gs[reader].GetMany(context.Background(), []string{missing, failing, good})
		if !errors.Is(err, ErrLoadFailed) || errors.Is(err, ErrNotFound) {
			t.Errorf("GetMany error = %v, want ErrLoadFailed for %q only", err, failing)
		}
		if want := map[string]string{good: good + "@" + nodes[owner].Name()}; len(got) != 1 || string(got[good]) != want[good] {
			t.Errorf("GetMany = %q, want %q", got, want)
		}
		for _, k := range []string{missing, failing, good} {
			if got := ls[reader].callsOf(k); got != 0 {
				t.Errorf("reader's loader calls for %q = %d, want 0", k, got)
			}
			if got := ls[owner].callsOf(k); got != 1 {
				t.Errorf("owner's loader calls for %q = %d, want 1", k, got)
			}
		}
		if st := gs[reader].Stats(); st.Fallbacks != before.Fallbacks || st.PeerErrors != before.PeerErrors {
			t.Errorf("Fallbacks, PeerErrors went from %d, %d to %d, %d: an owner's answer is no peer failure",
				before.Fallbacks, before.PeerErrors, st.Fallbacks, st.PeerErrors)
		}
	})
}

// TestClusterStopUnderLoad stops one node of three while the two others
// run Gets; no Get may fail.
func TestClusterStopUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*Node)
		hard bool
	}{
		{"close", func(n *Node) { n.Close() }, false},
		{"hard stop", hardStop, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startCluster(t, 3, nil)
			gs, _ := readGroups(t, nodes, "stop", time.Millisecond, 0)
			victim, survivors := nodes[2], nodes[:2]

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var done, bad atomic.Int64
			for s := range survivors {
				for w := range 2 {
					wg.Go(func() {
						for i := range 100000 {
							select {
							case <-stop:
								return
							default:
							}
							key := fmt.Sprintf("w%d-%d-%d", s, w, i) // fresh: a load or a fetch
							if i%2 == 1 {
								key = fmt.Sprintf("shared%d", i%40)
							}
							ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
							v, err := gs[s].Get(ctx, key)
							cancel()
							if err != nil || !strings.HasPrefix(string(v), key+"@") {
								if bad.Add(1) <= 5 {
									t.Errorf("%s: Get(%q) = %q, %v", survivors[s].Name(), key, v, err)
								}
							}
							done.Add(1)
						}
					})
				}
			}
			defer func() {
				close(stop)
				wg.Wait()
			}()
			waitGets := func(n int64) {
				t.Helper()
				target := done.Load() + n
				deadline := time.Now().Add(20 * time.Second)
				for done.Load() < target {
					if time.Now().After(deadline) {
						t.Fatalf("only %d of %d Gets done", done.Load(), target)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			waitGets(100)

			tc.stop(victim)
			if tc.hard {
				// Until the failure is detected, the survivors still route
				// to the victim: a Get of one of its keys falls back.
				s := survivors[0]
				rs := s.ring.Load()
				key := keyOwnedBy(t, s, victim.Name(), "dead")
				if _, src := getSource(t, gs[0], key); s.ring.Load() == rs && src != SourceFallback {
					t.Errorf("Get(%q) owned by the stopped node came from %v, want %v", key, src, SourceFallback)
				}
			}
			waitGets(100)

			// The victim leaves the survivors' rings: at once after Close,
			// after failure detection after a hard stop.
			deadline := time.Now().Add(30 * time.Second)
			for _, s := range survivors {
				for s.Stats().Members != 2 || slices.ContainsFunc(s.Members(), func(m Member) bool { return m.Name == victim.Name() }) {
					if time.Now().After(deadline) {
						t.Fatalf("%s still lists %s: %v", s.Name(), victim.Name(), s.Members())
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			waitGets(100)

			var fallbacks, peerErrors uint64
			for _, g := range gs[:2] {
				st := g.Stats()
				fallbacks += st.Fallbacks
				peerErrors += st.PeerErrors
			}
			t.Logf("%d Gets on the survivors; Fallbacks %d, PeerErrors %d", done.Load(), fallbacks, peerErrors)
			if tc.hard && (fallbacks == 0 || peerErrors == 0) {
				t.Errorf("after a hard stop: Fallbacks %d, PeerErrors %d; want both > 0", fallbacks, peerErrors)
			}
			// A failed request is answered by the key's stand-in (this
			// node, counted in Fallbacks, or the other survivor) or a
			// fallback load: the Gets above never fail.
		})
	}
}

// readTestCA is a certificate authority made for one test, with ECDSA P-256
// keys (fast to generate).
type readTestCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newReadTestCA(t testing.TB, name string) *readTestCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &readTestCA{cert: cert, key: key, pool: pool}
}

// nodeTLS returns a mutual TLS config for a node: a certificate from ca for
// 127.0.0.1 (server and client use), and ca as the only trusted root.
func (ca *readTestCA) nodeTLS(t testing.TB, name string, serial int64) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS13,
	}
}

func TestClusterSecretKey(t *testing.T) {
	key := []byte("0123456789abcdef")
	nodes := startCluster(t, 2, func(c *Config) { c.SecretKey = key })
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"no key", nil},
		{"other key", []byte("fedcba9876543210")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testClusterConfig("intruder-"+strings.ReplaceAll(tc.name, " ", "-"), nodes[0].GossipAddr())
			cfg.SecretKey = tc.key
			cfg.JoinTimeout = 2 * time.Second
			n, err := NewNode(cfg)
			if err == nil {
				n.Close()
				t.Fatal("NewNode without the cluster's key joined")
			}
			if !errors.Is(err, ErrJoin) {
				t.Errorf("NewNode = %v, want ErrJoin", err)
			}
		})
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if got := n.Stats().Members; got != 2 {
				t.Errorf("%s routes over %d members, want 2", n.Name(), got)
			}
		}
	})
}

// TestClusterTLS: members with TLS (and the gossip key, which TLS
// requires) serve each other. An intruder with the gossip key but without
// TLS is refused at join (ErrIncompatible) and never owns keys; one with
// TLS from another CA joins gossip, but no member answers it over the peer
// transport, so it never holds a lease and loads for its callers directly.
func TestClusterTLS(t *testing.T) {
	ca := newReadTestCA(t, "cluster CA")
	rogue := newReadTestCA(t, "rogue CA")
	key := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name string
		tls  *tls.Config // the intruder's
	}{
		{"other CA", rogue.nodeTLS(t, "intruder", 10)},
		{"no TLS", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serial := int64(1)
			nodes := startCluster(t, 2, func(c *Config) {
				serial++
				c.TLS = ca.nodeTLS(t, c.NodeName, serial)
				c.SecretKey = key
			})
			cfg := testClusterConfig("intruder", nodes[0].GossipAddr())
			cfg.TLS = tc.tls
			cfg.SecretKey = key
			if tc.tls == nil {
				cfg.JoinTimeout = 2 * time.Second
				n, err := NewNode(cfg)
				if err == nil {
					n.Close()
					t.Fatal("NewNode without TLS joined a cluster with TLS")
				}
				if !errors.Is(err, ErrJoin) || !errors.Is(err, ErrIncompatible) {
					t.Errorf("NewNode without TLS = %v, want ErrJoin and ErrIncompatible", err)
				}
				checkNotMember(t, nodes, "intruder")
				return
			}
			all := append(slices.Clone(nodes), startNode(t, cfg))
			waitMembers(t, nodes, 3)
			in := 2
			waitFor(t, 20*time.Second, "the intruder sees the members", func() bool { return all[in].Stats().Members == 3 })
			gs, ls := readGroups(t, all, "tls", 0, 0)

			// The members serve each other over TLS.
			key := keyOwnedBy(t, nodes[0], nodes[1].Name(), "ok")
			if v, src := getSource(t, gs[0], key); v != key+"@"+nodes[1].Name() || src != SourcePeer {
				t.Errorf("member Get(%q) = %q from %v, want %q from %v", key, v, src, key+"@"+nodes[1].Name(), SourcePeer)
			}
			served := gs[1].Stats().PeerServed

			// No member answers the intruder's lease heartbeats over the
			// peer transport: it never holds the lease, so it is never
			// ready and loads for its callers directly.
			time.Sleep(2 * nodes[0].lease.timings.lease)
			if all[in].IsReady() {
				t.Error("the intruder is ready; want never ready (no member answers its heartbeats)")
			}
			var asked int
			for i := range 40 {
				key := fmt.Sprintf("x%d", i)
				if all[in].Owner(key) == all[in].Name() {
					continue
				}
				asked++
				v, src := getSource(t, gs[in], key)
				if want := key + "@" + all[in].Name(); v != want || src != SourceLoad {
					t.Errorf("intruder Get(%q) = %q from %v, want %q from %v", key, v, src, want, SourceLoad)
				}
			}
			if asked == 0 {
				t.Fatal("the intruder owns every key")
			}
			st := gs[in].Stats()
			if st.Fallbacks != 0 || ls[in].total.Load() != int64(asked) {
				t.Errorf("intruder: Fallbacks %d, loads %d; want 0 and %d", st.Fallbacks, ls[in].total.Load(), asked)
			}
			if got := gs[0].Stats().PeerServed; got != 0 {
				t.Errorf("%s served %d keys, want 0", nodes[0].Name(), got)
			}
			if got := gs[1].Stats().PeerServed; got != served {
				t.Errorf("%s served %d keys, want %d (none to the intruder)", nodes[1].Name(), got, served)
			}
		})
	}
}

// TestServeContextEnded: a peer's request whose context ends (its deadline,
// or the server closing) before the load does is answered with an error the
// peer falls back on, not with a loader error that would fail its Get. A
// hard stop of a node under load showed it: the server cancels its requests
// before it closes their connections.
func TestServeContextEnded(t *testing.T) {
	n := newTestNode(t)
	l := newReadLoader(n.Name(), time.Minute, 0) // until the node closes
	mustGroup(t, n, "g", l, WithBatchLoader(l))
	h := handler{n}
	for _, tc := range []struct {
		name string
		call func(context.Context) error
	}{
		{"get", func(ctx context.Context) error {
			_, err := h.Get(ctx, transport.GetRequest{Group: "g", Key: "k"})
			return err
		}},
		{"get-many", func(ctx context.Context) error {
			resp, err := h.GetMany(ctx, transport.GetManyRequest{Group: "g", Keys: []string{"k1", "k2"}})
			if err == nil {
				err = errors.Join(resp.Results[0].Err, resp.Results[1].Err)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := tc.call(ctx)
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, transport.ErrLoader) {
				t.Errorf("%s with an ended context = %v, want context.DeadlineExceeded, not transport.ErrLoader", tc.name, err)
			}
		})
	}
}
