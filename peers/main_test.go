package peers

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcache/meshcache/internal/leaktest"

	"github.com/hashicorp/memberlist"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// testLogger logs to stderr at Warn (or Debug with PEERS_DEBUG=1).
func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("PEERS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// recorder collects callback invocations for assertions.
type recorder struct {
	mu       sync.Mutex // guards all fields
	changes  [][]Member
	messages [][]byte
	cutOffs  int
	inFlight int
	overlap  bool // OnChange/OnCutOff ran concurrently with each other
}

func (r *recorder) enter() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight++
	if r.inFlight > 1 {
		r.overlap = true
	}
}

func (r *recorder) exit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
}

func (r *recorder) onChange(ms []Member) {
	r.enter()
	defer r.exit()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, ms)
}

func (r *recorder) onCutOff() {
	r.enter()
	defer r.exit()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutOffs++
}

func (r *recorder) onMessage(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, p)
}

func (r *recorder) cutOffCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cutOffs
}

// countMessage returns how often payload was delivered.
func (r *recorder) countMessage(payload []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.messages {
		if bytes.Equal(m, payload) {
			n++
		}
	}
	return n
}

// everListed reports whether any OnChange list contained name.
func (r *recorder) everListed(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ms := range r.changes {
		if slices.ContainsFunc(ms, func(m Member) bool { return m.Name == name }) {
			return true
		}
	}
	return false
}

func (r *recorder) lastChange() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.changes) == 0 {
		return nil
	}
	return r.changes[len(r.changes)-1]
}

// testConfig returns a loopback config with fast timings and r's callbacks.
// Its fingerprint is the top-level test's name, so that parallel tests can
// never join each other's clusters.
func testConfig(t *testing.T, name string, r *recorder) Config {
	cfg := Config{
		Name:        name,
		BindAddr:    "127.0.0.1:0",
		RPCAddr:     "127.0.0.1:" + name,
		Fingerprint: "test:" + strings.SplitN(t.Name(), "/", 2)[0],
		Profile:     ProfileLocal,
		Logger:      testLogger(),
		JoinTimeout: 20 * time.Second,
	}
	if r != nil {
		cfg.OnChange = r.onChange
		cfg.OnCutOff = r.onCutOff
		cfg.OnMessage = r.onMessage
	}
	return cfg
}

// start joins a cluster and closes it when the test ends.
func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	c, err := Join(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Join(%q) = %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// names returns the member names of c, sorted.
func names(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// memberlistNames returns what memberlist itself lists as alive on c.
func memberlistNames(c *Cluster) []string {
	var out []string
	for _, n := range c.ml.Members() {
		name, _, ok := splitIncarnation(n.Name)
		if !ok {
			name = n.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// waitMembers waits until every cluster lists exactly want.
func waitMembers(t *testing.T, want []string, cs ...*Cluster) {
	t.Helper()
	for _, c := range cs {
		waitFor(t, 30*time.Second, c.LocalName()+" to list "+a2s(want), func() bool {
			return slices.Equal(names(c.Members()), want)
		})
	}
}

func a2s(ss []string) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	b.WriteByte(']')
	return b.String()
}

// flushEvents waits until c's event goroutine handled everything queued.
func flushEvents(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.barrier(ctx); err != nil {
		t.Fatalf("barrier: %v", err)
	}
}

// disableTCPPings makes failure detection rely on UDP only, so that a node
// whose outgoing traffic is dropped cannot answer a TCP fallback ping on an
// accepted connection.
func disableTCPPings(mc *memberlist.Config) { mc.DisableTcpPings = true }

// rudeSeed returns the address of a TCP listener that closes every
// connection at once. It stays bound until the test ends, so no other test
// can get its port.
func rudeSeed(t *testing.T) string {
	t.Helper()
	return fakeSeed(t, func(c net.Conn) { _ = c.Close() }, nil)
}

// silentSeed returns the address of a TCP listener that accepts connections
// and never answers; each accepted connection is reported on accepted (if
// not nil, without blocking). Connections are closed when the test ends.
func silentSeed(t *testing.T, accepted chan<- struct{}) string {
	t.Helper()
	return fakeSeed(t, nil, accepted)
}

func fakeSeed(t *testing.T, handle func(net.Conn), accepted chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		mu    sync.Mutex // guards conns
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if accepted != nil {
				select {
				case accepted <- struct{}{}:
				default:
				}
			}
			if handle != nil {
				handle(c)
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
