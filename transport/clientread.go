package transport

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// readPoll bounds how long a caller that holds a connection's read role
// reads before it hands the role to the connection's reader goroutine and
// waits for its answer like any other caller: on its ctx, the call's timer
// and its leave channel. So a reading caller notices at most readPoll late
// that it should stop waiting, and a slow answer costs one hand-off, as
// every answer did before callers read.
const readPoll = 2 * time.Millisecond

// readLoop is the connection's reader goroutine. It reads while it holds
// the read role, which a caller hands it when calls still wait; it gives
// the role up once none does. On a connection callers cannot read for
// themselves (TLS) it holds the role for good. It returns when the
// connection closes; a read error or a malformed frame closes it.
func (c *Client) readLoop(cc *clientConn) {
	if cc.raw == nil {
		c.readWhileWaited(cc)
		return
	}
	for {
		select {
		case <-cc.stop:
			return
		case <-cc.readKick:
		}
		if !c.readWhileWaited(cc) {
			return
		}
	}
}

// readWhileWaited reads frames for the reader goroutine, which holds the
// read role, until no call waits (then it gives the role up and returns
// true; never on a connection without raw access) or the connection fails
// (false).
func (c *Client) readWhileWaited(cc *clientConn) bool {
	if cc.raw != nil { // the role comes from a reading caller, who set a deadline
		if err := cc.nc.SetReadDeadline(time.Time{}); err != nil {
			c.readFailed(cc, err)
			return false
		}
	}
	for {
		if err := c.readFrame(cc); err != nil {
			c.readFailed(cc, err)
			return false
		}
		cc.mu.Lock()
		if len(cc.pending) == 0 && cc.raw != nil {
			cc.reading = roleNone
			cc.mu.Unlock()
			return true
		}
		cc.mu.Unlock()
	}
}

// readOwn reads frames for a caller that send gave the read role, handing
// each to its call, until cl's answer or failure comes: then it gives the
// role up and reports true (cl.done was received). If its answer has not
// come within readPoll, or by deadline if that is sooner (whatever other
// frames came meanwhile), it hands the role to the reader goroutine and
// reports false, as it does when the connection fails (which fails cl):
// the caller then waits for cl.done.
func (c *Client) readOwn(cc *clientConn, cl *call, deadline time.Time) bool {
	until := time.Now().Add(readPoll)
	if !deadline.IsZero() && deadline.Before(until) {
		until = deadline
	}
	// Whoever gave the role up to nobody left the deadline clear
	// (releaseRead, readWhileWaited); releaseRead clears this one.
	if err := cc.nc.SetReadDeadline(until); err != nil {
		c.readFailed(cc, err)
		return false
	}
	for {
		if err := c.readFrame(cc); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				cc.releaseRead()
				return false
			}
			c.readFailed(cc, err)
			return false
		}
		select {
		case <-cl.done:
			cc.releaseRead()
			return true
		default:
		}
	}
}

// releaseRead gives up a caller's read role: to the reader goroutine if
// calls still wait, else to nobody. Then it also clears the socket's read
// deadline, whose timer would otherwise fire on an idle connection and
// wake a thread for nothing.
func (cc *clientConn) releaseRead() {
	cc.mu.Lock()
	kick := len(cc.pending) > 0
	if kick {
		cc.reading = roleGo
	} else {
		// readOwn set a deadline. An error here shows again on the
		// next read.
		cc.nc.SetReadDeadline(time.Time{})
		cc.reading = roleNone
	}
	cc.mu.Unlock()
	if kick {
		select {
		case cc.readKick <- struct{}{}:
		default:
		}
	}
}

// readFrame reads one frame and hands it to its call. A frame for an
// abandoned request, or a pong, is dropped; an answer to a ping that is
// not a pong is an error.
func (c *Client) readFrame(cc *clientConn) error {
	body, err := cc.fr.next()
	var id uint64
	if err == nil {
		id, err = envelopeID(body)
	}
	if err == nil && c.silence > 0 && id == cc.pingID.Load() {
		err = checkPong(body, &cc.pong)
	}
	if err != nil {
		return err
	}
	cc.heard()
	cc.mu.Lock()
	cl := cc.pending[id]
	delete(cc.pending, id)
	cc.mu.Unlock()
	if cl != nil {
		cl.rbuf = append(cl.rbuf[:0], body...)
		cl.done <- struct{}{}
	}
	return nil
}

// readFailed closes cc after a read error, failing its pending calls with
// ErrUnavailable.
func (c *Client) readFailed(cc *clientConn, err error) {
	if cc.dead.Load() || isClosedConn(err) {
		c.log.Debug("transport: connection closed", "peer", cc.addr, "err", err)
	} else {
		c.log.Error("transport: closing connection", "peer", cc.addr, "err", err)
	}
	cc.close(fmt.Errorf("%w: %s: %w", ErrUnavailable, cc.addr, err))
}
