package peers

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// partition drops all traffic between groups of gossip addresses while it
// is active.
type partition struct {
	mu     sync.Mutex     // guards group
	group  map[string]int // gossip addr -> group
	active atomic.Bool
}

func (p *partition) blocked(from, to string) bool {
	if !p.active.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	gf, ok1 := p.group[from]
	gt, ok2 := p.group[to]
	return ok1 && ok2 && gf != gt
}

// partTransport is one node's transport under a partition.
type partTransport struct {
	memberlist.NodeAwareTransport
	p    *partition
	self *atomic.Value // this node's gossip address
}

func (t *partTransport) blocked(to string) bool { return t.p.blocked(t.self.Load().(string), to) }

func (t *partTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.blocked(a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *partTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.blocked(addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *partTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	if t.blocked(a.Addr) {
		return nil, errFault
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, d)
}

func (t *partTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.blocked(addr) {
		return nil, errFault
	}
	return t.NodeAwareTransport.DialTimeout(addr, d)
}

// TestPartitionHeals splits {a,b} from {c,d} until each side declared the
// other dead, then heals the network: the halves must merge again, through
// the reconnect attempts (memberlist alone never contacts dead members).
func TestPartitionHeals(t *testing.T) {
	t.Parallel()
	p := &partition{group: map[string]int{}}
	cs := make([]*Cluster, 4)
	rs := make([]*recorder, 4)
	all := []string{"a", "b", "c", "d"}
	for i := range cs {
		rs[i] = &recorder{}
		cfg := testConfig(t, all[i], rs[i])
		self := &atomic.Value{}
		self.Store("")
		cfg.wrapTransport = func(tr memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			return &partTransport{NodeAwareTransport: tr, p: p, self: self}
		}
		if i > 0 {
			cfg.Join = []string{cs[0].GossipAddr()}
		}
		cs[i] = start(t, cfg)
		self.Store(cs[i].GossipAddr())
		p.mu.Lock()
		p.group[cs[i].GossipAddr()] = i / 2
		p.mu.Unlock()
	}
	waitMembers(t, all, cs...)

	p.active.Store(true)
	waitMembers(t, []string{"a", "b"}, cs[0], cs[1])
	waitMembers(t, []string{"c", "d"}, cs[2], cs[3])
	cuts := make([]int, len(rs))
	for i, r := range rs {
		cuts[i] = r.cutOffCount()
	}

	p.active.Store(false)
	// Reconnect attempts run every 2s with ProfileLocal; waitMembers allows
	// 30s per node.
	waitMembers(t, all, cs...)
	for i, r := range rs {
		waitFor(t, 10*time.Second, fmt.Sprintf("OnCutOff on %s after the heal", all[i]), func() bool { return r.cutOffCount() > cuts[i] })
	}
}

// TestCloseDuringRejoin makes b's reconnect loop hang on a seed that
// accepts and never answers, with memberlist's TCP timeout at a minute:
// Close must abort that attempt instead of waiting for it.
func TestCloseDuringRejoin(t *testing.T) {
	t.Parallel()
	a := start(t, testConfig(t, "a", nil))
	accepted := make(chan struct{}, 1)
	cfg := testConfig(t, "b", nil)
	cfg.Join = []string{a.GossipAddr(), silentSeed(t, accepted)}
	cfg.tweak = func(mc *memberlist.Config) { mc.TCPTimeout = time.Minute }
	b := start(t, cfg)
	waitMembers(t, []string{"a", "b"}, a, b)

	// b has a live peer; the silent seed is still retried since it is not
	// an alive member.
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("b never retried the silent seed")
	}
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	// Generous bound: far below the minute the attempt would otherwise take.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Close() took %v while a rejoin attempt was in flight", d)
	}
}

func TestLostSet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l lostSet
	l.add("a", "10.0.0.1:7946", t0)
	l.add("b", "10.0.0.2:7946", t0.Add(10*time.Second))
	l.add("c", "10.0.0.3:7946", t0.Add(20*time.Second))
	l.remove("c")
	got := l.addrs(t0.Add(25*time.Second), 20*time.Second)
	slices.Sort(got)
	if want := []string{"10.0.0.2:7946"}; !slices.Equal(got, want) {
		t.Errorf("addrs() = %v, want %v (a expired, c removed)", got, want)
	}
	l.removeAddr("10.0.0.2:7946")
	if got := l.addrs(t0.Add(25*time.Second), time.Hour); len(got) != 0 {
		t.Errorf("addrs() after removeAddr = %v, want none", got)
	}

	for i := range maxLost + 10 {
		l.add(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.1.%d:7946", i), t0.Add(time.Duration(i)*time.Second))
	}
	got = l.addrs(t0.Add(time.Duration(maxLost+10)*time.Second), time.Hour)
	if len(got) != maxLost {
		t.Errorf("len(addrs()) = %d, want %d", len(got), maxLost)
	}
	if slices.Contains(got, "10.0.1.0:7946") {
		t.Errorf("addrs() kept the oldest entry beyond the bound")
	}
}

// TestRefusalsFind checks that a join attempt is only failed by the refusal
// its own error carries, not by one made meanwhile for another node's join.
func TestRefusalsFind(t *testing.T) {
	var r refusals
	errOther := fmt.Errorf("%w: member %q has fingerprint %q", ErrIncompatible, "x", "other")
	tagged := r.record(errOther)
	mine := fmt.Errorf("%w: member %q has fingerprint %q", ErrIncompatible, "y", "mine")
	taggedMine := r.record(mine)

	tests := []struct {
		name    string
		joinErr error
		want    error
	}{
		{"no error", nil, nil},
		{"unreachable seed while another node was refused", errors.New("1 error occurred:\n\t* failed to join 127.0.0.1:1: dial tcp: connection refused\n"), nil},
		{"own refusal", fmt.Errorf("1 error occurred:\n\t* failed to join 127.0.0.1:1: %v\n", taggedMine), mine},
		{"other refusal", fmt.Errorf("failed to join: %v", tagged), errOther},
		{"unknown id", errors.New("failed to join: x (" + refusalTag + "999)"), nil},
		{"tag without id", errors.New("failed to join: x (" + refusalTag + ")"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.find(tt.joinErr); got != tt.want {
				t.Errorf("find(%v) = %v, want %v", tt.joinErr, got, tt.want)
			}
		})
	}
	if !errors.Is(r.find(tagged), ErrIncompatible) {
		t.Errorf("found refusal does not wrap ErrIncompatible")
	}
	for range maxRefusals {
		r.record(errOther)
	}
	if got := r.find(taggedMine); got != nil {
		t.Errorf("find(evicted) = %v, want nil", got)
	}
}
