package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// rawConn dials addr and, if handshake is set, exchanges prefaces.
func rawConn(t *testing.T, addr string, handshake bool) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if handshake {
		if _, err := nc.Write(appendPreface(nil, ProtocolVersion)); err != nil {
			t.Fatalf("write preface: %v", err)
		}
		var p [prefaceLen]byte
		if _, err := io.ReadFull(nc, p[:]); err != nil {
			t.Fatalf("read preface: %v", err)
		}
	}
	return nc
}

// expectClosed reads from nc until the peer closes it, failing the test if
// that does not happen within nc's deadline.
func expectClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	buf := make([]byte, 512)
	for range 1000 {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		t.Fatalf("read = %v, want the server to close the connection", err)
	}
	t.Fatalf("server kept sending, want it to close the connection")
}

func encodeFrame(t *testing.T, env *wirepb.Envelope) []byte {
	t.Helper()
	b, err := marshalFrame(nil, env, DefaultMaxFrameBytes)
	if err != nil {
		t.Fatalf("marshalFrame: %v", err)
	}
	return b
}

func header(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// checkServes asserts that s still answers a fresh client.
func checkServes(t *testing.T, s *Server) {
	t.Helper()
	c, _ := newTestClient(t, ClientConfig{})
	got, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "ok"})
	if err != nil || string(got.Value.Value) != "g/ok" {
		t.Fatalf("Get after bad input = %q, %v, want %q", got.Value.Value, err, "g/ok")
	}
}

func TestServerClosesConnectionOnBadInput(t *testing.T) {
	validGet := encodeFrame(t, &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Key: []byte("k")}}})
	tests := []struct {
		name      string
		handshake bool
		send      []byte
		closeSend bool   // half-close after sending, so truncation is seen
		log       string // substring of the expected error log
	}{
		{name: "no magic", send: []byte("GET / HTTP/1.1\r\n\r\n"), log: "bad connection preface"},
		{name: "garbage body", handshake: true, send: append(header(5), 0xff, 0xff, 0xff, 0xff, 0xff), log: "malformed"},
		{name: "truncated body", handshake: true, send: append(header(100), validGet[4:]...), closeSend: true, log: "truncated frame"},
		{name: "truncated header", handshake: true, send: []byte{0, 0}, closeSend: true, log: "truncated frame header"},
		{name: "empty frame", handshake: true, send: header(0), log: "empty frame"},
		{name: "no id", handshake: true, send: encodeFrame(t, &wirepb.Envelope{TimeoutNanos: 5}), log: "without id"},
		{name: "1 GiB frame", handshake: true, send: header(1 << 30), log: "frame too large"},
		{name: "good then garbage", handshake: true, send: append(append([]byte{}, validGet...), 0, 0, 0, 3, 0x0a, 0xff, 0xff), log: "malformed"},
		{name: "ping without id", handshake: true, send: encodeFrame(t, &wirepb.Envelope{Body: &wirepb.Envelope_Ping{Ping: &wirepb.Ping{}}}), log: "without id"},
		{name: "garbage ping", handshake: true, send: append(header(7), 0x08, 0x01, 0xa2, 0x01, 0x02, 0xff, 0xff), log: "malformed"}, // id 1, field 20 holding garbage
		{name: "truncated ping", handshake: true, send: append(header(5), 0x08, 0x01, 0xa2, 0x01, 0x05), log: "malformed"},           // field 20 claims 5 bytes
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rec := startServer(t, ServerConfig{}, &fakeHandler{})
			nc := rawConn(t, s.Addr(), tt.handshake)
			if _, err := nc.Write(tt.send); err != nil {
				t.Fatalf("write: %v", err)
			}
			if tt.closeSend {
				nc.(*net.TCPConn).CloseWrite()
			}
			expectClosed(t, nc)
			rec.waitFor(t, tt.log)
			eventually(t, func() bool { return serverConns(s) == 0 }, "the bad connection to be dropped")
			checkServes(t, s)
		})
	}
}

func TestServerRefusesWrongVersion(t *testing.T) {
	s, rec := startServer(t, ServerConfig{}, &fakeHandler{})
	nc := rawConn(t, s.Addr(), false)
	if _, err := nc.Write(appendPreface(nil, ProtocolVersion+98)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var p [prefaceLen]byte
	if _, err := io.ReadFull(nc, p[:]); err != nil {
		t.Fatalf("read server preface: %v", err)
	}
	if v, err := parsePreface(p[:]); err != nil || v != ProtocolVersion {
		t.Errorf("server preface = %d, %v, want version %d", v, err, ProtocolVersion)
	}
	expectClosed(t, nc)
	rec.waitFor(t, "wrong protocol")
	checkServes(t, s)
}

// TestOversizedFrameNotAllocated checks that announcing a huge frame does
// not make the server allocate it: over the limit it is refused outright,
// and under the limit the buffer grows only with the bytes that arrive.
func TestOversizedFrameNotAllocated(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	tests := []struct {
		name  string
		claim uint32
	}{
		{name: "over limit", claim: 1 << 30},
		{name: "under limit, never sent", claim: DefaultMaxFrameBytes - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			nc := rawConn(t, s.Addr(), true)
			nc.Write(append(header(tt.claim), make([]byte, 1000)...))
			nc.(*net.TCPConn).CloseWrite()
			expectClosed(t, nc)
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("server allocated %d bytes for a frame claiming %d, want far less", grew, tt.claim)
			}
			checkServes(t, s)
		})
	}
}

func TestServerAnswersBadRequest(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	nc := rawConn(t, s.Addr(), true)
	fr := newFrameReader(nc, 4096, DefaultMaxFrameBytes)
	tests := []struct {
		name string
		env  *wirepb.Envelope
		want wirepb.Code
	}{
		{name: "response as request", env: &wirepb.Envelope{Id: 5, Body: &wirepb.Envelope_GetResponse{GetResponse: &wirepb.GetResponse{}}}, want: wirepb.Code_CODE_BAD_REQUEST},
		{name: "no body", env: &wirepb.Envelope{Id: 6}, want: wirepb.Code_CODE_BAD_REQUEST},
		{name: "unknown op", env: &wirepb.Envelope{Id: 7, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{Op: 99}}}, want: wirepb.Code_CODE_BAD_REQUEST},
		{name: "huge op", env: &wirepb.Envelope{Id: 8, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{Op: 1 << 20}}}, want: wirepb.Code_CODE_BAD_REQUEST},
		{name: "unknown phase", env: &wirepb.Envelope{Id: 9, Body: &wirepb.Envelope_WriteRequest{WriteRequest: &wirepb.WriteRequest{Op: 1, Phase: 7}}}, want: wirepb.Code_CODE_BAD_REQUEST},
		{name: "valid get", env: &wirepb.Envelope{Id: 10, Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Key: []byte("k")}}}, want: wirepb.Code_CODE_OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := nc.Write(encodeFrame(t, tt.env)); err != nil {
				t.Fatalf("write: %v", err)
			}
			body, err := fr.next()
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			var resp wirepb.Envelope
			if err := unmarshalEnvelope(body, &resp); err != nil {
				t.Fatalf("decode response: %v", err)
			}
			if resp.Id != tt.env.Id || resp.ErrorCode != tt.want {
				t.Errorf("response = id %d code %v, want id %d code %v", resp.Id, resp.ErrorCode, tt.env.Id, tt.want)
			}
		})
	}
}

func TestServerCloseWithRequestsInFlight(t *testing.T) {
	const n = 5
	var (
		entered = make(chan struct{}, n)
		exited  atomic.Int32
	)
	h := &fakeHandler{get: func(ctx context.Context, _ GetRequest) (GetResponse, error) {
		defer exited.Add(1)
		entered <- struct{}{}
		<-ctx.Done()
		return GetResponse{}, ctx.Err()
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"})
			errs <- err
		}()
	}
	for range n {
		recv(t, entered, "a handler to start")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	if got := exited.Load(); got != n {
		t.Errorf("after Close, %d handlers returned, want %d", got, n)
	}
	for range n {
		if err := recv(t, errs, "a Get to return"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Get during Close error = %v, want ErrUnavailable", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if _, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get from closed server error = %v, want ErrUnavailable", err)
	}
}

// fakePeer listens on 127.0.0.1:0 and runs serve for each connection, the
// i-th accepted connection getting i (from 0). It stops at cleanup.
func fakePeer(t *testing.T, serve func(i int, nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				serve(i, nc)
			})
		}
	})
	return ln.Addr().String()
}

// peerHandshake answers a client's preface with version on the fake peer
// side, returning a reader for the requests that follow.
func peerHandshake(nc net.Conn, version uint32) (*frameReader, error) {
	var p [prefaceLen]byte
	if _, err := io.ReadFull(nc, p[:]); err != nil {
		return nil, err
	}
	if _, err := nc.Write(appendPreface(nil, version)); err != nil {
		return nil, err
	}
	return newFrameReader(nc, 4096, DefaultMaxFrameBytes), nil
}

// nextEnvelope reads the next frame a fake peer receives and decodes it.
func nextEnvelope(fr *frameReader) (*wirepb.Envelope, error) {
	body, err := fr.next()
	if err != nil {
		return nil, err
	}
	env := new(wirepb.Envelope)
	return env, unmarshalEnvelope(body, env)
}

// serveEnvelopes calls handle with every frame a fake peer receives on fr,
// in order, until the connection fails.
func serveEnvelopes(fr *frameReader, handle func(env *wirepb.Envelope)) {
	for {
		env, err := nextEnvelope(fr)
		if err != nil {
			return
		}
		handle(env)
	}
}

// readRequestID reads one request frame and returns its id (0 on error).
func readRequestID(fr *frameReader) uint64 {
	body, err := fr.next()
	if err != nil {
		return 0
	}
	id, _ := envelopeID(body)
	return id
}

func TestClientOnBadPeer(t *testing.T) {
	getResp := func(id uint64) *wirepb.Envelope {
		return &wirepb.Envelope{Id: id, Body: &wirepb.Envelope_GetResponse{GetResponse: &wirepb.GetResponse{Value: []byte("v")}}}
	}
	tests := []struct {
		name    string
		reply   func(t *testing.T, id uint64) []byte // nil: close without answering
		version uint32
		want    []error
	}{
		{name: "dies mid-request", want: []error{ErrUnavailable}},
		{name: "wrong version", version: ProtocolVersion + 1, want: []error{ErrWrongProtocol}},
		{name: "garbage", reply: func(*testing.T, uint64) []byte { return []byte("\x00\x00\x00\x04\xff\xff\xff\xff") }, want: []error{ErrUnavailable}},
		{name: "oversized", reply: func(*testing.T, uint64) []byte { return header(1 << 30) }, want: []error{ErrUnavailable}},
		{name: "truncated", reply: func(t *testing.T, id uint64) []byte { return encodeFrame(t, getResp(id))[:6] }, want: []error{ErrUnavailable}},
		{name: "wrong body", reply: func(t *testing.T, id uint64) []byte {
			return encodeFrame(t, &wirepb.Envelope{Id: id, Body: &wirepb.Envelope_PeekResponse{PeekResponse: &wirepb.PeekResponse{}}})
		}, want: []error{ErrUnavailable, ErrMalformed}},
		{name: "bad nested message", reply: func(t *testing.T, id uint64) []byte {
			body := binary.AppendUvarint([]byte{0x08}, id) // field 1 (id), varint
			body = append(body, 0x5a, 0x02, 0xff, 0xff)    // field 11 (get_response), 2 garbage bytes
			return append(header(uint32(len(body))), body...)
		}, want: []error{ErrUnavailable, ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakePeer(t, func(i int, nc net.Conn) {
				version := tt.version
				if version == 0 || i > 0 {
					version = ProtocolVersion
				}
				fr, err := peerHandshake(nc, version)
				if err != nil {
					return
				}
				id := readRequestID(fr)
				if id == 0 {
					return
				}
				if i > 0 { // the redial after the failure is served properly
					nc.Write(encodeFrame(t, getResp(id)))
					readRequestID(fr) // wait for the client to go away
					return
				}
				if tt.reply != nil {
					nc.Write(tt.reply(t, id))
				}
			})
			c, _ := newTestClient(t, ClientConfig{})
			_, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"})
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("Get error = %v, want one wrapping %v", err, want)
				}
			}
			got, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"})
			if err != nil || string(got.Value.Value) != "v" {
				t.Errorf("Get after redial = %q, %v, want %q", got.Value.Value, err, "v")
			}
		})
	}
}

func TestOverloaded(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s, _ := startServer(t, ServerConfig{MaxConcurrent: 1}, blockingHandler(entered, release))
	c, _ := newTestClient(t, ClientConfig{})
	first := make(chan error, 1)
	go func() {
		_, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "block"})
		first <- err
	}()
	recv(t, entered, "the blocking handler to start")
	if _, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrOverloaded) {
		t.Errorf("Get over MaxConcurrent error = %v, want ErrOverloaded", err)
	}
	close(release)
	if err := recv(t, first, "the first Get to return"); err != nil {
		t.Errorf("first Get error = %v, want nil", err)
	}
	// The server frees the slot just after it wrote the first response:
	// the client may see that response first. Bounded retries.
	var err error
	for range 100 {
		if _, err = c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrOverloaded) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("Get after the slot freed error = %v, want nil", err)
	}
}

func TestHandlerPanic(t *testing.T) {
	h := &fakeHandler{get: func(context.Context, GetRequest) (GetResponse, error) { panic("oops") }}
	s, rec := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	for range 2 {
		_, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"})
		if !errors.Is(err, ErrLoader) || !strings.Contains(err.Error(), "oops") {
			t.Errorf("Get from panicking handler error = %v, want ErrLoader mentioning the panic", err)
		}
	}
	rec.waitFor(t, "handler panicked")
}

func TestForgetAndClose(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	s, _ := startServer(t, ServerConfig{}, blockingHandler(entered, release))
	c, _ := newTestClient(t, ClientConfig{})

	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "block"})
		errc <- err
	}()
	recv(t, entered, "the blocking handler to start")
	c.Forget(s.Addr())
	if err := recv(t, errc, "the Get to return"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get during Forget error = %v, want ErrUnavailable", err)
	}
	if _, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"}); err != nil {
		t.Errorf("Get after Forget error = %v, want nil (redialed)", err)
	}
	c.Forget("127.0.0.1:1") // unknown address: no-op

	go func() {
		_, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "block"})
		errc <- err
	}()
	recv(t, entered, "the blocking handler to start")
	if err := c.Close(); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	if err := recv(t, errc, "the Get to return"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get during Close error = %v, want ErrUnavailable", err)
	}
	if _, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close error = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := newTestClient(t, ClientConfig{})
	for range 2 { // the second attempt dials again
		if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Get from a dead address error = %v, want ErrUnavailable", err)
		}
	}
}

func TestFrameLimits(t *testing.T) {
	big := strings.Repeat("x", 4096)
	h := &fakeHandler{get: func(_ context.Context, req GetRequest) (GetResponse, error) {
		return GetResponse{Value: Value{Value: []byte(req.Key + big)}}, nil
	}}
	small, _ := startServer(t, ServerConfig{MaxFrameBytes: 1024}, h)
	large, _ := startServer(t, ServerConfig{}, h)
	c, rec := newTestClient(t, ClientConfig{MaxFrameBytes: 2048})

	if _, err := c.Get(t.Context(), large.Addr(), GetRequest{Group: "g", Key: big}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Get with a request over the client limit error = %v, want ErrFrameTooLarge", err)
	}
	_, err := c.Get(t.Context(), small.Addr(), GetRequest{Group: "g", Key: "k"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "frame too large") {
		t.Errorf("Get of a response over the server limit error = %v, want ErrUnavailable saying frame too large", err)
	}
	if _, err := c.Get(t.Context(), large.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get of a response over the client limit error = %v, want ErrUnavailable", err)
	}
	rec.waitFor(t, "frame too large")
}

func TestNewServerErrors(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	cert := ca.issue(t, "server", 2)
	tests := []struct {
		name string
		cfg  ServerConfig
		h    Handler
		want error // nil: any error
	}{
		{name: "nil handler", cfg: ServerConfig{Addr: "127.0.0.1:0"}, want: ErrBadConfig},
		{name: "negative limit", cfg: ServerConfig{Addr: "127.0.0.1:0", MaxConcurrent: -1}, h: &fakeHandler{}, want: ErrBadConfig},
		{name: "bad address", cfg: ServerConfig{Addr: "127.0.0.1:99999"}, h: &fakeHandler{}},
		{name: "TLS without CA pool", cfg: ServerConfig{Addr: "127.0.0.1:0", TLS: &tls.Config{
			Certificates: []tls.Certificate{cert},
		}}, h: &fakeHandler{}, want: ErrBadConfig},
		{name: "TLS with GetConfigForClient", cfg: ServerConfig{Addr: "127.0.0.1:0", TLS: &tls.Config{
			Certificates:       []tls.Certificate{cert},
			ClientCAs:          ca.pool,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil },
		}}, h: &fakeHandler{}, want: ErrBadConfig},
		{name: "TLS without certificate", cfg: ServerConfig{Addr: "127.0.0.1:0", TLS: &tls.Config{
			ClientCAs: ca.pool,
		}}, h: &fakeHandler{}, want: ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewServer(tt.cfg, tt.h)
			if err == nil {
				s.Close()
				t.Fatalf("NewServer(%s) error = nil, want an error", tt.name)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("NewServer(%s) error = %v, want one wrapping %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestMaxFrameBytesClamped(t *testing.T) {
	tests := []struct {
		name string
		cfg  int
		want int
	}{
		{name: "zero", cfg: 0, want: DefaultMaxFrameBytes},
		{name: "small", cfg: 1024, want: 1024},
		{name: "limit", cfg: maxFrameLimit, want: maxFrameLimit},
		{name: "over uint32", cfg: math.MaxInt, want: maxFrameLimit},
	}
	if maxFrameLimit > math.MaxUint32-frameHeaderLen {
		t.Fatalf("maxFrameLimit = %d, want at most %d", maxFrameLimit, math.MaxUint32-frameHeaderLen)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(ClientConfig{MaxFrameBytes: tt.cfg})
			defer c.Close()
			if c.maxFrame != tt.want {
				t.Errorf("NewClient(MaxFrameBytes: %d).maxFrame = %d, want %d", tt.cfg, c.maxFrame, tt.want)
			}
			s, _ := startServer(t, ServerConfig{MaxFrameBytes: tt.cfg}, &fakeHandler{})
			if s.maxFrame != tt.want {
				t.Errorf("NewServer(MaxFrameBytes: %d).maxFrame = %d, want %d", tt.cfg, s.maxFrame, tt.want)
			}
			s.Close()
		})
	}
}
