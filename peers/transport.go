package peers

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinTransport wraps memberlist's transport so that this package's join
// attempts can be bounded and interrupted, which memberlist's Join cannot.
//
// memberlist dials without a node name only for Join's push/pull (its own
// push/pulls, TCP pings and reliable messages name the target node), so a
// nameless dial belongs to one of our join attempts. For those the transport
//
//   - caps the dial timeout at dialCap (memberlist would use its TCPTimeout,
//     10s on LAN and 30s on WAN, for every seed in turn),
//   - dials with the context of the current attempt (see attempt), and
//   - tracks the connection, which it closes when that context ends: the
//     exchange that follows the dial then fails at once instead of waiting
//     for memberlist's read deadline.
//
// Attempts never overlap: [Join] makes them one at a time before the rejoin
// goroutine starts, and that goroutine makes them one at a time afterwards.
type joinTransport struct {
	memberlist.NodeAwareTransport
	dialCap time.Duration

	mu    sync.Mutex // guards cur and conns
	cur   context.Context
	conns map[*joinConn]struct{}
}

var _ memberlist.NodeAwareTransport = (*joinTransport)(nil)

// errAttemptOver is returned by a join dial made when no attempt is running,
// or after its context ended.
var errAttemptOver = errors.New("peers: join attempt over")

func newJoinTransport(t memberlist.NodeAwareTransport, dialCap time.Duration) *joinTransport {
	return &joinTransport{NodeAwareTransport: t, dialCap: dialCap, conns: make(map[*joinConn]struct{})}
}

// attempt makes ctx the context of the join attempt about to run and returns
// the function that ends the attempt. When ctx ends first, the attempt's
// connections are closed.
func (t *joinTransport) attempt(ctx context.Context) (end func()) {
	t.mu.Lock()
	t.cur = ctx
	t.mu.Unlock()
	stop := context.AfterFunc(ctx, t.closeConns)
	return func() {
		stop()
		t.mu.Lock()
		t.cur = nil
		t.mu.Unlock()
	}
}

// closeConns closes every tracked join connection.
func (t *joinTransport) closeConns() {
	t.mu.Lock()
	conns := make([]*joinConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// DialTimeout is DialAddressTimeout without a node name.
func (t *joinTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout dials a.Addr. Named dials are memberlist's own and go
// through unchanged; nameless ones are join dials (see joinTransport).
func (t *joinTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if a.Name != "" {
		return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	}
	t.mu.Lock()
	ctx := t.cur
	t.mu.Unlock()
	if ctx == nil {
		return nil, errAttemptOver
	}
	if t.dialCap > 0 {
		timeout = min(timeout, t.dialCap)
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	jc := &joinConn{Conn: conn, t: t}
	t.mu.Lock()
	// Checked under mu: if ctx ended before, closeConns may already have
	// run; if after, it runs later and sees jc.
	if ctx.Err() != nil {
		t.mu.Unlock()
		_ = conn.Close()
		return nil, errAttemptOver
	}
	t.conns[jc] = struct{}{}
	t.mu.Unlock()
	return jc, nil
}

// joinConn is a tracked join connection; Close untracks it.
type joinConn struct {
	net.Conn
	t    *joinTransport
	once sync.Once
}

func (c *joinConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}
