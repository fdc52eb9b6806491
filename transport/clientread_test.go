package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// TestFrameReaderResumesAfterTimeout checks that a frame whose bytes
// arrive in pieces, with the reader's deadline passing in between, is read
// whole once they are all there, and that the stream stays in step: a
// caller that held the read role may stop reading mid-frame, and the next
// reader goes on from there.
func TestFrameReaderResumesAfterTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	small := []byte("hello, frames")
	large := bytes.Repeat([]byte{7}, eagerFrameBytes+eagerFrameBytes/2) // grows as it arrives
	var stream []byte
	stream = append(header(uint32(len(small))), small...)
	stream = append(append(stream, header(uint32(len(large)))...), large...)
	stream = append(append(stream, header(uint32(len(small)))...), small...)
	// Cut inside the first header, inside the first body, inside the
	// second header, and twice inside the large body.
	cuts := []int{2, 9, len(small) + 6, len(small) + 4 + 4 + 1000, len(small) + 8 + eagerFrameBytes + 5, len(stream)}

	fr := newFrameReader(r, 4096, DefaultMaxFrameBytes)
	var got [][]byte
	from := 0
	for _, cut := range cuts {
		if _, err := w.Write(stream[from:cut]); err != nil {
			t.Fatal(err)
		}
		from = cut
		// Read what there is until the deadline passes: the frames
		// completed by these bytes come out, then a timeout.
		for range 10 {
			r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			body, err := fr.next()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if cut == len(stream) && len(got) < 3 {
					continue // the last bytes may still be on their way
				}
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: next = %v, want a frame or a timeout", cut, err)
			}
			got = append(got, bytes.Clone(body))
			if len(got) == 3 {
				break
			}
		}
	}
	want := [][]byte{small, large, small}
	if len(got) != len(want) {
		t.Fatalf("read %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d: %d bytes, want %d bytes as sent", i, len(got[i]), len(want[i]))
		}
	}
}

// answerAfter is a fake peer that answers each Get after delay(i), where i
// counts its requests from 0 (a negative delay: never), on the first
// connection only.
func answerAfter(t *testing.T, delay func(i int) time.Duration) string {
	return fakePeer(t, func(conn int, nc net.Conn) {
		fr, err := peerHandshake(nc, ProtocolVersion)
		if err != nil || conn > 0 {
			return
		}
		out := make(chan []byte, 16)
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case b := <-out:
					nc.Write(b)
				case <-done:
					return
				}
			}
		}()
		for i := 0; ; i++ {
			id := readRequestID(fr)
			if id == 0 {
				return
			}
			d := delay(i)
			if d < 0 {
				continue
			}
			time.AfterFunc(d, func() {
				select {
				case out <- peerGetResponse(id):
				case <-done:
				}
			})
		}
	})
}

// TestReadingCallerStillWaitsOnItsCtx checks that a caller that reads its
// own answer (the first on a quiet connection) still returns when its ctx
// ends, and that the read role then passes on: a later caller's answer
// comes.
func TestReadingCallerStillWaitsOnItsCtx(t *testing.T) {
	addr := answerAfter(t, func(i int) time.Duration {
		if i == 1 {
			return -1 // the first Get after the dial: never answered
		}
		return 0
	})
	c, _ := newTestClient(t, ClientConfig{})
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "dial"}); err != nil {
		t.Fatalf("first Get: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Get(ctx, addr, GetRequest{Group: "g", Key: "never"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled ctx = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get returned %v after its ctx ended", d)
	}
	got, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"})
	if err != nil || string(got.Value.Value) != "v" {
		t.Fatalf("Get after = %q, %v, want %q on the same connection", got.Value.Value, err, "v")
	}
}

// TestReadingCallerLeaves checks GetOrLeave for a caller that reads its
// own answer: when leave closes it returns at once, and PendingGet.Wait
// gets the answer that comes later.
func TestReadingCallerLeaves(t *testing.T) {
	addr := answerAfter(t, func(i int) time.Duration {
		if i == 1 {
			return 200 * time.Millisecond
		}
		return 0
	})
	c, _ := newTestClient(t, ClientConfig{})
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "dial"}); err != nil {
		t.Fatalf("first Get: %v", err)
	}
	leave := make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(leave) })
	_, pending, err := c.GetOrLeave(t.Context(), addr, GetRequest{Group: "g", Key: "slow"}, 0, leave)
	if err != nil || pending == nil {
		t.Fatalf("GetOrLeave = %v, %v; want a PendingGet", pending, err)
	}
	got, err := pending.Wait(t.Context())
	if err != nil || string(got.Value.Value) != "v" {
		t.Fatalf("Wait = %q, %v, want %q", got.Value.Value, err, "v")
	}
}

// closingPeer is a fake peer whose first connection answers one Get, then
// runs first (if not nil), then closes the connection and says so on the
// returned channel; later connections answer every Get. conns counts the
// connections it accepted.
func closingPeer(t *testing.T, first func(fr *frameReader, nc net.Conn)) (addr string, conns *atomic.Int32, closed <-chan struct{}) {
	conns = new(atomic.Int32)
	done := make(chan struct{})
	addr = fakePeer(t, func(i int, nc net.Conn) {
		conns.Add(1)
		fr, err := peerHandshake(nc, ProtocolVersion)
		if err != nil {
			return
		}
		if i > 0 {
			serveEnvelopes(fr, func(env *wirepb.Envelope) { nc.Write(peerGetResponse(env.Id)) })
			return
		}
		if id := readRequestID(fr); id != 0 {
			nc.Write(peerGetResponse(id))
		}
		if first != nil {
			first(fr, nc)
		}
		nc.Close()
		close(done)
	})
	return addr, conns, done
}

// awaitPeerClose waits for closingPeer's close to reach the client's
// socket (as the kernel's TCP state shows it, asked apart from the code
// under test), and then for the gap after which a request checks for it.
func awaitPeerClose(t *testing.T, c *Client, addr string, closed <-chan struct{}) {
	t.Helper()
	recv(t, closed, "the peer to close its first connection")
	c.mu.Lock()
	cc := c.conns[addr]
	c.mu.Unlock()
	if cc == nil || cc.raw == nil {
		t.Skip("no raw socket on this platform")
	}
	eventually(t, func() bool { return tcpClosedByPeer(t, cc.nc) }, "the kernel to show the peer's close")
	time.Sleep(2 * stateAfter) // a request sooner would not check (see send)
}

// TestPeerCloseBetweenRequestsNoticed checks that when a peer closes a
// connection between two requests (a restart, say), the second goes out
// on a new connection rather than failing, although nobody reads an idle
// connection: send looks at the socket first.
func TestPeerCloseBetweenRequestsNoticed(t *testing.T) {
	addr, conns, closed := closingPeer(t, nil)
	c, _ := newTestClient(t, ClientConfig{})
	for i := range 3 {
		got, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"})
		if err != nil || string(got.Value.Value) != "v" {
			t.Fatalf("Get %d = %q, %v, want %q", i, got.Value.Value, err, "v")
		}
		if i == 0 {
			awaitPeerClose(t, c, addr, closed)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("peer accepted %d connections, want 2", n)
	}
}

// TestCallerWriteAfterWriterDeadline checks that a caller's own write does
// not heed the write deadline the writer goroutine left on the socket: a
// connection whose writer wrote once, longer ago than WriteTimeout, still
// takes callers' writes.
func TestCallerWriteAfterWriterDeadline(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{WriteTimeout: 50 * time.Millisecond})
	addr := s.Addr()
	// A frame over selfWriteBytes always goes to the writer goroutine.
	big := bytes.Repeat([]byte{1}, selfWriteBytes+1024)
	if _, err := c.Write(t.Context(), addr, WriteRequest{Group: "g", Op: OpSet, Items: []SetItem{{Key: "k", Value: big}}}); err != nil {
		t.Fatalf("large Write: %v", err)
	}
	time.Sleep(80 * time.Millisecond) // the writer's deadline passes
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"}); err != nil {
		t.Fatalf("Get after the writer's deadline passed: %v", err)
	}
}

// TestSendWhileCarryPending checks that while the rest of a caller's frame
// waits for the writer goroutine, the next caller queues its frame rather
// than writing it into the middle of that one. It sets up the state
// writeOwn leaves after a partial write, before the writer runs.
func TestSendWhileCarryPending(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	addr := s.Addr()
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	cc := c.conns[addr]
	c.mu.Unlock()
	if cc.raw == nil {
		t.Skip("no raw writes on this platform")
	}
	a := appendGetRequestFrame(nil, c.nextID.Add(1), int64(time.Second), GetRequest{Group: "g", Key: "a"})
	cc.mu.Lock()
	if n, err := cc.raw.write(a[:6]); n != 6 || err != nil {
		cc.mu.Unlock()
		t.Fatalf("raw write = %d, %v", n, err)
	}
	cc.carry = append(cc.carry, a[6:]...)
	cc.writing = roleGo // as writeOwn leaves it; the writer is not woken yet
	cc.mu.Unlock()
	if _, err := c.GetWithin(t.Context(), addr, GetRequest{Group: "g", Key: "b"}, time.Second); err != nil {
		t.Fatalf("Get with another caller's frame half written: %v", err)
	}
}

// TestCallerWriteCarriedOver checks a caller's frame that the socket takes
// only part of: the writer goroutine writes the rest before anything else,
// and the stream stays in step.
func TestCallerWriteCarriedOver(t *testing.T) {
	release := make(chan struct{})
	addr := fakePeer(t, func(i int, nc net.Conn) {
		nc.(*net.TCPConn).SetReadBuffer(4096)
		fr, err := peerHandshake(nc, ProtocolVersion)
		if err != nil || i > 0 {
			return
		}
		if id := readRequestID(fr); id != 0 {
			nc.Write(peerGetResponse(id))
		}
		<-release
		serveEnvelopes(fr, func(env *wirepb.Envelope) {
			var resp wirepb.Envelope
			resp.Id = env.Id
			switch env.Body.(type) {
			case *wirepb.Envelope_WriteRequest:
				resp.Body = &wirepb.Envelope_WriteResponse{WriteResponse: &wirepb.WriteResponse{}}
			default:
				resp.Body = &wirepb.Envelope_GetResponse{GetResponse: &wirepb.GetResponse{Value: []byte("v")}}
			}
			b, _ := marshalFrame(nil, &resp, DefaultMaxFrameBytes)
			nc.Write(b)
		})
	})
	c, _ := newTestClient(t, ClientConfig{})
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "dial"}); err != nil {
		t.Fatalf("first Get: %v", err)
	}
	c.mu.Lock()
	cc := c.conns[addr]
	c.mu.Unlock()
	if cc.raw == nil {
		t.Skip("no raw writes on this platform")
	}
	cc.nc.(*net.TCPConn).SetWriteBuffer(4096)

	value := bytes.Repeat([]byte{1}, selfWriteBytes-1024)
	errs := make(chan error, 1)
	go func() {
		_, err := c.Write(t.Context(), addr, WriteRequest{Group: "g", Op: OpSet, Items: []SetItem{{Key: "k", Value: value}}})
		errs <- err
	}()
	eventually(t, func() bool { return c.carries.Load() > 0 }, "a caller's frame to be carried over")
	close(release)
	if err := recv(t, errs, "the Write to be answered"); err != nil {
		t.Fatalf("Write = %v", err)
	}
	got, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"})
	if err != nil || string(got.Value.Value) != "v" {
		t.Fatalf("Get after = %q, %v, want %q on the same connection", got.Value.Value, err, "v")
	}
}

// TestPeerCloseBehindUnreadAnswerNoticed checks a close that arrives
// behind the late answer of a withdrawn request, which nobody reads: the
// next request still sees that the peer closed the connection (a peek at
// the next byte would see the answer and call it open), and goes out on a
// new connection.
func TestPeerCloseBehindUnreadAnswerNoticed(t *testing.T) {
	gaveUp, aRead := make(chan struct{}), make(chan struct{})
	addr, _, closed := closingPeer(t, func(fr *frameReader, nc net.Conn) {
		a, b := readRequestID(fr), readRequestID(fr)
		waitThen(gaveUp, func() {})
		nc.Write(peerGetResponse(a)) // read by the reader goroutine, which then lets go
		waitThen(aRead, func() {})
		nc.Write(peerGetResponse(b)) // nobody reads it; the close comes behind it
	})
	c, _ := newTestClient(t, ClientConfig{})
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "dial"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, k := range []string{"a", "b"} {
		wg.Go(func() {
			if _, err := c.GetWithin(t.Context(), addr, GetRequest{Group: "g", Key: k}, 20*time.Millisecond); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Get %s = %v, want a timeout", k, err)
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	cc := c.conns[addr]
	c.mu.Unlock()
	reads := cc.reads.Load()
	close(gaveUp)
	eventually(t, func() bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return cc.reads.Load() > reads && cc.reading == roleNone
	}, "the reader goroutine to read the first late answer and let go")
	close(aRead)
	awaitPeerClose(t, c, addr, closed)
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "c"}); err != nil {
		t.Fatalf("Get after the peer closed = %v, want it on a new connection", err)
	}
}

// TestWaitAfterLeaveDuringDialNoticesClose checks a request whose caller
// left while the connection was being dialed, sent by PendingGet.Wait only
// after another request and the peer's close: it still sees the close (the
// time since the last request is taken when it is sent, not when it was
// prepared) and goes out on a new connection.
func TestWaitAfterLeaveDuringDialNoticesClose(t *testing.T) {
	addr, _, closed := closingPeer(t, nil)
	c, _ := newTestClient(t, ClientConfig{})
	left := make(chan struct{})
	close(left)
	_, pending, err := c.GetOrLeave(t.Context(), addr, GetRequest{Group: "g", Key: "w"}, 0, left)
	if pending == nil {
		t.Skipf("did not leave during the dial: %v", err)
	}
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "x"}); err != nil {
		t.Fatal(err)
	}
	awaitPeerClose(t, c, addr, closed)
	if _, err := pending.Wait(t.Context()); err != nil {
		t.Fatalf("Wait on a connection the peer closed = %v, want it on a new connection", err)
	}
}
