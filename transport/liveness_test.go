package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// testSilence is the SilenceTimeout of the liveness tests: long enough that
// a loaded machine answers a ping well within it, short enough to keep
// the tests quick. Bounds asserted on it are generous (10×).
const testSilence = 200 * time.Millisecond

func TestPingFramesMatchProto(t *testing.T) {
	for _, id := range []uint64{1, 300, 1 << 63} {
		for _, tt := range []struct {
			name   string
			append func([]byte, uint64) []byte
			env    *wirepb.Envelope
		}{
			{"ping", appendPingFrame, &wirepb.Envelope{Id: id, Body: &wirepb.Envelope_Ping{Ping: &wirepb.Ping{}}}},
			{"pong", appendPongFrame, &wirepb.Envelope{Id: id, Body: &wirepb.Envelope_Pong{Pong: &wirepb.Pong{}}}},
		} {
			want, err := marshalFrame(nil, tt.env, DefaultMaxFrameBytes)
			if err != nil {
				t.Fatal(err)
			}
			// The encoders append (the writer puts a ping in a batch).
			if got := tt.append([]byte("junk"), id); !bytes.Equal(got, append([]byte("junk"), want...)) {
				t.Errorf("append %s frame(%d) = %x, want junk + %x", tt.name, id, got, want)
			}
		}
	}
}

// TestSlowPeerKeptAlive checks that a peer whose handler takes several
// times SilenceTimeout is not failed: the client pings it, and the server
// answers the pings on its read loop although its only handler slot is
// taken.
func TestSlowPeerKeptAlive(t *testing.T) {
	h := &fakeHandler{get: func(ctx context.Context, req GetRequest) (GetResponse, error) {
		select {
		case <-time.After(3 * testSilence):
			return GetResponse{Value: valueFor(req.Group, req.Key)}, nil
		case <-ctx.Done():
			return GetResponse{}, ctx.Err()
		}
	}}
	s, _ := startServer(t, ServerConfig{MaxConcurrent: 1}, h)
	c, _ := newTestClient(t, ClientConfig{SilenceTimeout: testSilence})
	got, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "slow"})
	if err != nil || string(got.Value.Value) != "g/slow" {
		t.Fatalf("Get from a slow peer = %q, %v, want %q", got.Value.Value, err, "g/slow")
	}
	if n := c.pings.Load(); n == 0 {
		t.Errorf("client sent no ping during a request of 3×SilenceTimeout, want some")
	}
}

// pausedPeer accepts connections and simulates a process that is
// SIGSTOPped: from the afterFrames-th frame of its first connection on it
// reads and answers nothing (afterFrames < 0: it does not even answer the
// preface), and it never answers the preface of a later connection. It
// returns the address and a count of the connections accepted.
func pausedPeer(t *testing.T, afterFrames int) (string, *atomic.Int32) {
	var conns atomic.Int32
	paused := make(chan struct{})
	addr := fakePeer(t, func(i int, nc net.Conn) {
		conns.Add(1)
		if i == 0 && afterFrames >= 0 {
			fr, err := peerHandshake(nc, ProtocolVersion)
			if err != nil {
				return
			}
			for range afterFrames {
				env, err := nextEnvelope(fr)
				if err != nil {
					return
				}
				if env.GetGetRequest() != nil {
					nc.Write(peerGetResponse(env.Id))
				}
			}
		}
		<-paused
	})
	t.Cleanup(func() { close(paused) }) // runs before fakePeer's cleanup waits
	return addr, &conns
}

// TestSilentPeerFails checks that requests to a peer that sends nothing
// fail with ErrPeerSilent (and ErrUnavailable) about SilenceTimeout after
// they were sent, though their ctx has no deadline and DefaultTimeout is
// long; that the connection is closed, and that the next request dials
// again and fails as fast while the peer is still paused.
func TestSilentPeerFails(t *testing.T) {
	tests := []struct {
		name        string
		afterFrames int // see pausedPeer
	}{
		{name: "paused with a request in flight", afterFrames: 0},
		{name: "paused after answering", afterFrames: 1},
		{name: "paused before the dial", afterFrames: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conns := pausedPeer(t, tt.afterFrames)
			c, _ := newTestClient(t, ClientConfig{SilenceTimeout: testSilence, DefaultTimeout: time.Hour})
			req := GetRequest{Group: "g", Key: "k"}
			if tt.afterFrames > 0 {
				if _, err := c.Get(t.Context(), addr, req); err != nil {
					t.Fatalf("Get before the pause error = %v", err)
				}
			}
			for i := range 2 {
				start := time.Now()
				_, err := c.Get(t.Context(), addr, req)
				elapsed := time.Since(start)
				if !errors.Is(err, ErrPeerSilent) || !errors.Is(err, ErrUnavailable) {
					t.Errorf("Get %d from a paused peer error = %v, want ErrPeerSilent and ErrUnavailable", i, err)
				}
				if elapsed < testSilence*9/10 || elapsed > 10*testSilence {
					t.Errorf("Get %d from a paused peer failed after %v, want about SilenceTimeout (%v)", i, elapsed, testSilence)
				}
			}
			if got := conns.Load(); got != 2 {
				t.Errorf("peer accepted %d connections, want 2 (the silent one closed, one redial)", got)
			}
			t.Logf("pings sent: %d", c.pings.Load())
		})
	}
}

// TestSilenceBoundsAWriteThePeerDoesNotRead checks that a request stuck
// behind a write the peer does not read (its socket buffers full) fails
// with ErrPeerSilent too, not after WriteTimeout.
func TestSilenceBoundsAWriteThePeerDoesNotRead(t *testing.T) {
	addr, _ := pausedPeer(t, 0)
	c, _ := newTestClient(t, ClientConfig{SilenceTimeout: testSilence, WriteTimeout: time.Hour, DefaultTimeout: time.Hour})
	// Far more than the socket buffers hold.
	big := WriteRequest{Group: "g", Op: OpSet, Items: []SetItem{{Key: "k", Value: make([]byte, 8<<20)}}}
	start := time.Now()
	_, err := c.Write(t.Context(), addr, big)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrPeerSilent) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Write to a paused peer error = %v, want ErrPeerSilent and ErrUnavailable", err)
	}
	if elapsed > 10*testSilence {
		t.Errorf("Write to a paused peer failed after %v, want about SilenceTimeout (%v)", elapsed, testSilence)
	}
}

// TestSlowReaderKeptAlive checks that a large request that a live peer
// reads slowly, for longer than SilenceTimeout, before it can answer
// anything (a ping cannot overtake the request), is not taken for silence.
func TestSlowReaderKeptAlive(t *testing.T) {
	// The peer reads 64 KiB at a time every 5ms (at most 13 MB/s) for
	// 2×SilenceTimeout, then at full speed. The frame is larger than what
	// it can read slowly plus what the socket buffers hold, so the client
	// is still writing during the slow part. The buffers are set small, as
	// the kernel would size them for a slow link with a short round trip:
	// a blocked write goes on every half send buffer (see liveness.go).
	// SilenceTimeout is longer than in other tests: how often the kernel
	// lets the write go on also depends on scheduling and TCP timers,
	// which a loaded machine stretches.
	const silence = 500 * time.Millisecond
	const size = 16 << 20
	addr := fakePeer(t, func(_ int, nc net.Conn) {
		nc.(*net.TCPConn).SetReadBuffer(512 << 10)
		if _, err := peerHandshake(nc, ProtocolVersion); err != nil {
			return
		}
		fr := newFrameReader(&slowReader{r: nc, n: 64 << 10, every: 5 * time.Millisecond, slowFor: 2 * silence}, 4096, DefaultMaxFrameBytes)
		serveEnvelopes(fr, func(env *wirepb.Envelope) {
			switch {
			case env.GetGetRequest() != nil:
				nc.Write(peerGetResponse(env.Id))
			case env.GetWriteRequest() != nil:
				nc.Write(encodeFrame(t, &wirepb.Envelope{Id: env.Id, Body: &wirepb.Envelope_WriteResponse{WriteResponse: &wirepb.WriteResponse{Applied: 1}}}))
			case env.GetPing() != nil:
				nc.Write(appendPongFrame(nil, env.Id))
			}
		})
	})
	c, _ := newTestClient(t, ClientConfig{SilenceTimeout: silence})
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"}); err != nil {
		t.Fatalf("Get error = %v", err)
	}
	c.mu.Lock()
	cc := c.conns[addr]
	c.mu.Unlock()
	cc.mu.Lock()
	nc := cc.nc
	cc.mu.Unlock()
	if err := nc.(*net.TCPConn).SetWriteBuffer(128 << 10); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := c.Write(t.Context(), addr, WriteRequest{Group: "g", Op: OpSet, Items: []SetItem{{Key: "k", Value: make([]byte, size)}}})
	if err != nil || resp.Applied != 1 {
		t.Fatalf("Write of %d bytes to a slow reader = %+v, %v, want Applied 1", size, resp, err)
	}
	if elapsed := time.Since(start); elapsed < silence {
		t.Logf("the write took %v only, less than SilenceTimeout: the test proves little on this machine", elapsed)
	}
}

// slowReader reads at most n bytes per call, waiting every before each
// call, for slowFor from its first call; then it reads at full speed.
type slowReader struct {
	r       io.Reader
	n       int
	every   time.Duration
	slowFor time.Duration
	until   time.Time
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.until.IsZero() {
		s.until = time.Now().Add(s.slowFor)
	}
	if time.Now().After(s.until) {
		return s.r.Read(p)
	}
	time.Sleep(s.every)
	return s.r.Read(p[:min(len(p), s.n)])
}

// TestNoPingOnIdleConnection checks that a connection with nothing
// outstanding sends no ping and that its watcher parks.
func TestNoPingOnIdleConnection(t *testing.T) {
	var pinged atomic.Int32
	addr := fakePeer(t, func(_ int, nc net.Conn) {
		fr, err := peerHandshake(nc, ProtocolVersion)
		if err != nil {
			return
		}
		serveEnvelopes(fr, func(env *wirepb.Envelope) {
			switch {
			case env.GetGetRequest() != nil:
				nc.Write(peerGetResponse(env.Id))
			case env.GetPing() != nil:
				pinged.Add(1)
				nc.Write(appendPongFrame(nil, env.Id))
			}
		})
	})
	c, _ := newTestClient(t, ClientConfig{SilenceTimeout: testSilence})
	for range 3 {
		if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"}); err != nil {
			t.Fatalf("Get error = %v", err)
		}
	}
	sent := c.pings.Load()
	c.mu.Lock()
	cc := c.conns[addr]
	c.mu.Unlock()
	eventually(t, func() bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return cc.watchParked
	}, "the watcher of an idle connection to park")
	time.Sleep(3 * testSilence)
	if got := c.pings.Load(); got != sent {
		t.Errorf("client sent %d pings on an idle connection, want none", got-sent)
	}
	eventually(t, func() bool { return pinged.Load() == int32(sent) }, "the peer to receive the %d pings sent, and no other", sent)
	if sent != 0 {
		t.Logf("%d pings during the fast requests (a loaded machine)", sent)
	}
	// The connection is still the one dialed, and serves.
	if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"}); err != nil {
		t.Fatalf("Get after idling error = %v", err)
	}
	c.mu.Lock()
	again := c.conns[addr]
	c.mu.Unlock()
	if again != cc {
		t.Errorf("the idle connection was replaced, want it kept")
	}
}

// TestServerAnswersPing checks the server's side on a raw connection: a
// ping is answered with a pong of the same id at once, on the read loop,
// while the only handler slot is taken by a blocked request, and a pong
// sent to the server is refused as a bad request without closing the
// connection.
func TestServerAnswersPing(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s, _ := startServer(t, ServerConfig{MaxConcurrent: 1}, blockingHandler(entered, release))
	defer close(release)
	nc := rawConn(t, s.Addr(), true)
	fr := newFrameReader(nc, 4096, DefaultMaxFrameBytes)
	nc.Write(encodeFrame(t, &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Key: []byte("block")}}}))
	recv(t, entered, "the blocking handler to start")

	nc.Write(appendPingFrame(nil, 77))
	env, err := nextEnvelope(fr)
	if err != nil || env.Id != 77 || env.GetPong() == nil || env.ErrorCode != wirepb.Code_CODE_OK {
		t.Fatalf("answer to ping 77 = %v, %v, want a pong with id 77", env, err)
	}

	nc.Write(appendPongFrame(nil, 78))
	env, err = nextEnvelope(fr)
	if err != nil || env.Id != 78 || env.ErrorCode != wirepb.Code_CODE_BAD_REQUEST {
		t.Fatalf("answer to a pong = %v, %v, want a bad request with id 78", env, err)
	}
}

// TestClientOnBadPong checks that an answer to a ping that is not a pong
// closes the connection like other malformed input, and that pongs alone
// keep a request waiting until its own deadline.
func TestClientOnBadPong(t *testing.T) {
	tests := []struct {
		name  string
		pong  func(id uint64) []byte
		want  []error
		avoid error
	}{
		{name: "pong", pong: func(id uint64) []byte { return appendPongFrame(nil, id) },
			want: []error{ErrUnavailable, context.DeadlineExceeded}, avoid: ErrPeerSilent},
		{name: "wrong body", pong: peerGetResponse, want: []error{ErrUnavailable, ErrMalformed}},
		{name: "error code", pong: func(id uint64) []byte {
			return encodeFrame(t, &wirepb.Envelope{Id: id, ErrorCode: wirepb.Code_CODE_LOADER})
		}, want: []error{ErrUnavailable, ErrMalformed}},
		{name: "garbage pong", pong: func(id uint64) []byte {
			body := []byte{0x08, byte(id), 0xaa, 0x01, 0x02, 0xff, 0xff} // id (< 128), field 21 holding garbage
			return append(header(uint32(len(body))), body...)
		}, want: []error{ErrUnavailable, ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The peer never answers the request; it answers pings.
			addr := fakePeer(t, func(_ int, nc net.Conn) {
				fr, err := peerHandshake(nc, ProtocolVersion)
				if err != nil {
					return
				}
				serveEnvelopes(fr, func(env *wirepb.Envelope) {
					if env.GetPing() != nil {
						nc.Write(tt.pong(env.Id))
					}
				})
			})
			c, _ := newTestClient(t, ClientConfig{SilenceTimeout: testSilence})
			ctx, cancel := context.WithTimeout(t.Context(), 4*testSilence)
			defer cancel()
			_, err := c.Get(ctx, addr, GetRequest{Group: "g", Key: "k"})
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Get error = %v, want one wrapping %v", err, want)
				}
			}
			if tt.avoid != nil && errors.Is(err, tt.avoid) {
				t.Errorf("Get error = %v, want none wrapping %v", err, tt.avoid)
			}
		})
	}
}

// TestSilenceDisabled checks the zero value: no watcher, no ping, a silent
// peer holds a request until its deadline.
func TestSilenceDisabled(t *testing.T) {
	addr, _ := pausedPeer(t, 0)
	c, _ := newTestClient(t, ClientConfig{})
	c.deadGrace = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 3*testSilence)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, addr, GetRequest{Group: "g", Key: "k"})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPeerSilent) {
		t.Errorf("Get from a paused peer without SilenceTimeout error = %v, want DeadlineExceeded, not ErrPeerSilent", err)
	}
	if elapsed := time.Since(start); elapsed < 3*testSilence*9/10 {
		t.Errorf("Get returned after %v, before its deadline (%v)", elapsed, 3*testSilence)
	}
	if n := c.pings.Load(); n != 0 {
		t.Errorf("client without SilenceTimeout sent %d pings, want none", n)
	}
}
