package peers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestJoinThreeNodes(t *testing.T) {
	t.Parallel()
	var ra, rb, rc recorder
	a := start(t, testConfig(t, "a", &ra))
	if got := names(a.Members()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("alone: Members() = %v, want [a]", got)
	}
	if got := names(ra.lastChange()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("alone: last OnChange = %v, want [a] (delivered before Join returns)", got)
	}
	cfgB := testConfig(t, "b", &rb)
	cfgB.Join = []string{a.GossipAddr()}
	b := start(t, cfgB)
	cfgC := testConfig(t, "c", &rc)
	cfgC.Join = []string{b.GossipAddr()}
	c := start(t, cfgC)

	want := []string{"a", "b", "c"}
	waitMembers(t, want, a, b, c)

	for _, cl := range []*Cluster{a, b, c} {
		for _, m := range cl.Members() {
			if wantRPC := "127.0.0.1:" + m.Name; m.RPCAddr != wantRPC {
				t.Errorf("%s: member %s RPCAddr = %q, want %q", cl.LocalName(), m.Name, m.RPCAddr, wantRPC)
			}
			if m.State != StateAlive {
				t.Errorf("%s: member %s State = %v, want alive", cl.LocalName(), m.Name, m.State)
			}
			if m.GossipAddr == "" {
				t.Errorf("%s: member %s has no GossipAddr", cl.LocalName(), m.Name)
			}
		}
	}
	if got, wantAddr := b.Members()[0].GossipAddr, a.GossipAddr(); got != wantAddr {
		t.Errorf("b sees a at %q, want %q", got, wantAddr)
	}
	for _, x := range []struct {
		c *Cluster
		r *recorder
	}{{a, &ra}, {b, &rb}, {c, &rc}} {
		flushEvents(t, x.c)
		if got := names(x.r.lastChange()); !slices.Equal(got, want) {
			t.Errorf("%s: last OnChange = %v, want %v", x.c.LocalName(), got, want)
		}
		x.r.mu.Lock()
		overlap := x.r.overlap
		x.r.mu.Unlock()
		if overlap {
			t.Errorf("%s: OnChange/OnCutOff ran concurrently", x.c.LocalName())
		}
	}
}

// TestLeaveDropsNodePromptly also checks that the survivors record the
// member that left as left, not failed, so that they never try to reconnect
// to it. memberlist does not say which in NotifyLeave (the *Node it passes
// says alive either way); the leaving node announces it in its metadata.
func TestLeaveDropsNodePromptly(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig(t, "a", nil))
	cfgB := testConfig(t, "b", nil)
	cfgB.Join = []string{a.GossipAddr()}
	b := start(t, cfgB)
	cfgC := testConfig(t, "c", nil)
	cfgC.Join = []string{a.GossipAddr()}
	c := start(t, cfgC)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		t.Fatalf("Leave() = %v", err)
	}
	// memberlist marks a leaving node "left" on the leave broadcast; no
	// failure detection is involved.
	waitMembers(t, []string{"a", "b"}, a, b)

	if err := c.Leave(ctx); err != nil {
		t.Errorf("second Leave() = %v, want nil", err)
	}
	if err := c.Broadcast([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Broadcast after Leave = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if err := c.Leave(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close = %v, want ErrClosed", err)
	}
	if got := c.Members(); got != nil {
		t.Errorf("Members after Close = %v, want nil", got)
	}
	for _, s := range []*Cluster{a, b} {
		flushEvents(t, s)
		if got := s.lost.addrs(time.Now(), s.s.reconnectFor); slices.Contains(got, c.GossipAddr()) {
			t.Errorf("%s: reconnect candidates = %v, want without %s (c left, it did not fail)",
				s.LocalName(), got, c.GossipAddr())
		}
	}
}

func TestKilledNodeDetectedDead(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig(t, "a", nil))
	cfgB := testConfig(t, "b", nil)
	cfgB.Join = []string{a.GossipAddr()}
	b := start(t, cfgB)
	cfgC := testConfig(t, "c", nil)
	cfgC.Join = []string{a.GossipAddr()}
	c := start(t, cfgC)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)

	c.kill()
	waitMembers(t, []string{"a", "b"}, a, b)
	for _, s := range []*Cluster{a, b} {
		flushEvents(t, s)
		if got := s.lost.addrs(time.Now(), s.s.reconnectFor); !slices.Contains(got, c.GossipAddr()) {
			t.Errorf("%s: reconnect candidates = %v, want %s (c failed)", s.LocalName(), got, c.GossipAddr())
		}
	}
	if err := c.Leave(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after kill = %v, want ErrClosed", err)
	}
}

func TestFingerprintMismatchRefused(t *testing.T) {
	t.Parallel()
	var ra recorder
	cfgA := testConfig(t, "a", &ra)
	cfgA.Fingerprint = "ring:271/1.25 proto:1"
	a := start(t, cfgA)

	cfgB := testConfig(t, "b", nil)
	cfgB.Fingerprint = "ring:541/1.25 proto:1"
	cfgB.Join = []string{a.GossipAddr()}
	b, err := Join(t.Context(), cfgB)
	if err == nil {
		_ = b.Close()
		t.Fatal("Join with another fingerprint succeeded, want error")
	}
	if !errors.Is(err, ErrIncompatible) || !errors.Is(err, ErrJoin) {
		t.Errorf("Join error = %v, want ErrJoin and ErrIncompatible", err)
	}
	if !strings.Contains(err.Error(), "ring:271/1.25 proto:1") {
		t.Errorf("Join error = %q, want it to name the other fingerprint", err)
	}

	// a refused b's push/pull before merging anything: memberlist itself
	// never learnt about b, nor did OnChange.
	if got := memberlistNames(a); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a's memberlist lists %v, want [a]", got)
	}
	flushEvents(t, a)
	if ra.everListed("b") {
		t.Errorf("a's OnChange listed b")
	}
	if got := names(a.Members()); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a.Members() = %v, want [a]", got)
	}
}

func TestSecretKey(t *testing.T) {
	t.Parallel()
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	cfgA := testConfig(t, "a", nil)
	cfgA.SecretKey = key1
	a := start(t, cfgA)

	tests := []struct {
		name string
		key  []byte
		ok   bool
	}{
		{"same key", key1, true},
		{"other key", key2, false},
		{"no key", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "joiner-"+strings.ReplaceAll(tt.name, " ", "-"), nil)
			cfg.SecretKey = tt.key
			cfg.Join = []string{a.GossipAddr()}
			cfg.JoinTimeout = 1500 * time.Millisecond
			c, err := Join(t.Context(), cfg)
			if tt.ok {
				if err != nil {
					t.Fatalf("Join() = %v, want nil", err)
				}
				defer c.Close()
				waitMembers(t, []string{"a", cfg.Name}, c)
				return
			}
			if err == nil {
				_ = c.Close()
				t.Fatal("Join() succeeded, want error")
			}
			if !errors.Is(err, ErrJoin) || errors.Is(err, ErrIncompatible) {
				t.Errorf("Join() = %v, want ErrJoin, not ErrIncompatible", err)
			}
			if slices.Contains(memberlistNames(a), cfg.Name) {
				t.Errorf("a lists %s", cfg.Name)
			}
		})
	}
}

func TestJoinConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"short key", func(c *Config) { c.SecretKey = make([]byte, 15) }, ErrInvalidKey},
		{"long key", func(c *Config) { c.SecretKey = make([]byte, 33) }, ErrInvalidKey},
		{"bind without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, ErrInvalidConfig},
		{"bind bad port", func(c *Config) { c.BindAddr = "127.0.0.1:99999" }, ErrInvalidConfig},
		{"advertise without host", func(c *Config) { c.AdvertiseAddr = ":7946" }, ErrInvalidConfig},
		{"negative join timeout", func(c *Config) { c.JoinTimeout = -time.Second }, ErrInvalidConfig},
		{"unknown profile", func(c *Config) { c.Profile = 9 }, ErrInvalidConfig},
		{"empty seed", func(c *Config) { c.Join = []string{""} }, ErrInvalidConfig},
		{"meta too large", func(c *Config) { c.Fingerprint = strings.Repeat("f", 500) }, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "x", nil)
			tt.edit(&cfg)
			c, err := Join(t.Context(), cfg)
			if err == nil {
				_ = c.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Join() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestJoinUnreachableSeedTimesOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		seed func(t *testing.T) string
	}{
		// Nobody speaks memberlist there: every attempt fails at once and
		// is retried until JoinTimeout.
		{"refusing seed", func(t *testing.T) string { return rudeSeed(t) }},
		// The seed accepts but never answers: the attempt in flight must be
		// aborted when JoinTimeout ends, not when memberlist's TCP timeout
		// (a minute here) would end it.
		{"silent seed", func(t *testing.T) string { return silentSeed(t, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, "b", nil)
			cfg.Join = []string{tt.seed(t)}
			cfg.JoinTimeout = 500 * time.Millisecond
			cfg.tweak = func(mc *memberlist.Config) { mc.TCPTimeout = time.Minute }
			start := time.Now()
			c, err := Join(t.Context(), cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("Join() succeeded, want ErrJoin")
			}
			if !errors.Is(err, ErrJoin) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrIncompatible) {
				t.Errorf("Join() = %v, want ErrJoin wrapping context.DeadlineExceeded", err)
			}
			// Generous: the point is not waiting for the minute.
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("Join() took %v with JoinTimeout 500ms", d)
			}
		})
	}
}

func TestDefaultNameAndAddresses(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "", nil)
	c := start(t, cfg)
	if c.LocalName() == "" {
		t.Errorf("LocalName() is empty")
	}
	if !strings.HasPrefix(c.GossipAddr(), "127.0.0.1:") || strings.HasSuffix(c.GossipAddr(), ":0") {
		t.Errorf("GossipAddr() = %q, want 127.0.0.1 with a real port", c.GossipAddr())
	}
	cfg2 := testConfig(t, "", nil)
	c2 := start(t, cfg2)
	if c.LocalName() == c2.LocalName() {
		t.Errorf("two default names are both %q", c.LocalName())
	}
}

// TestCutOffOnRefute drops every packet b sends. a then suspects b and
// gossips it; b hears that and must refute, which fires OnCutOff on b. Once
// both declared the other dead, traffic is restored: b's rejoin loop
// reconnects, and each side sees the other come back as the same process,
// which fires OnCutOff on both.
func TestCutOffOnRefute(t *testing.T) {
	t.Parallel()
	var ra, rb recorder
	tweak := func(mc *memberlist.Config) {
		disableTCPPings(mc)
		// After the heal, a may still think b dead while b already sees a
		// alive; a periodic push/pull settles that. Make it come sooner.
		mc.PushPullInterval = 2 * time.Second
	}
	cfgA := testConfig(t, "a", &ra)
	cfgA.tweak = tweak
	a := start(t, cfgA)

	var faulty *faultyTransport
	cfgB := testConfig(t, "b", &rb)
	cfgB.tweak = tweak
	cfgB.wrapTransport = func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		faulty = &faultyTransport{NodeAwareTransport: t}
		return faulty
	}
	cfgB.Join = []string{a.GossipAddr()}
	b := start(t, cfgB)
	waitMembers(t, []string{"a", "b"}, a, b)

	refutesBefore := b.refutes.Load()
	cutB := rb.cutOffCount()
	faulty.dropOut.Store(true)
	waitFor(t, 30*time.Second, "b to refute a suspicion", func() bool {
		return b.refutes.Load() > refutesBefore
	})
	waitFor(t, 10*time.Second, "OnCutOff on b", func() bool { return rb.cutOffCount() > cutB })

	// Both sides give up on each other.
	waitMembers(t, []string{"a"}, a)
	waitMembers(t, []string{"b"}, b)
	cutA, cutB := ra.cutOffCount(), rb.cutOffCount()

	faulty.dropOut.Store(false)
	waitMembers(t, []string{"a", "b"}, a, b)
	waitFor(t, 10*time.Second, "OnCutOff on a after b came back", func() bool { return ra.cutOffCount() > cutA })
	waitFor(t, 10*time.Second, "OnCutOff on b after a came back", func() bool { return rb.cutOffCount() > cutB })
}
