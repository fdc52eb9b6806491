package transport

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

const (
	// DefaultMaxConcurrent is the per-server request limit used when
	// ServerConfig.MaxConcurrent is zero.
	DefaultMaxConcurrent = 1024
	// DefaultRequestTimeout is the deadline given to requests that carry
	// none, when ServerConfig.DefaultTimeout is zero.
	DefaultRequestTimeout = 30 * time.Second

	// handshakeTimeout bounds the TLS handshake and the preface exchange.
	handshakeTimeout = 10 * time.Second
)

// ServerConfig configures a [Server]. The zero value of each field selects
// the documented default. NewServer copies the config and never modifies
// the caller's.
type ServerConfig struct {
	// Addr is the host:port to listen on; port 0 picks a free port (see
	// [Server.Addr]).
	Addr string
	// TLS, if set, makes the server speak TLS and require a client
	// certificate verified against TLS.ClientCAs (mutual TLS). The config is
	// cloned and its ClientAuth set to tls.RequireAndVerifyClientCert; if
	// ClientCAs is nil, RootCAs is used in its place, so one cluster config
	// can serve both sides. NewServer refuses (ErrBadConfig) a config with
	// neither ClientCAs nor RootCAs (crypto/tls would then accept any client
	// certificate issued under the system roots), one with
	// GetConfigForClient (its configs would replace the forced ClientAuth),
	// and one with neither Certificates nor GetCertificate.
	TLS *tls.Config
	// MaxFrameBytes limits the size of a frame body, in both directions.
	// A connection that announces a larger incoming frame is closed (with an
	// error log) without the frame being read into memory; a response over
	// the limit is replaced by an error (the client sees ErrLoader saying
	// "frame too large"). If zero, DefaultMaxFrameBytes (64 MiB); values
	// over math.MaxUint32-4 are clamped to it, so that a frame's length
	// always fits its header. Use the same limit on every node.
	MaxFrameBytes int
	// MaxConcurrent limits the requests the server handles at once, over
	// all connections; requests over it are answered at once with
	// ErrOverloaded. If zero, DefaultMaxConcurrent (1024).
	MaxConcurrent int
	// DefaultTimeout is the deadline of requests that carry none. If zero,
	// DefaultRequestTimeout (30s).
	DefaultTimeout time.Duration
	// WriteTimeout bounds each write of a response, so that a client that
	// stops reading cannot block others. If zero, DefaultWriteTimeout (10s).
	WriteTimeout time.Duration
	// Logger receives connection errors. If nil, slog.Default().
	Logger *slog.Logger
}

// Server accepts peer connections and answers their requests with a
// [Handler]. Create it with [NewServer]; stop it with [Server.Close]. Its
// methods are safe for concurrent use.
type Server struct {
	h         Handler
	log       *slog.Logger
	ln        net.Listener
	addr      string // ln.Addr().String(), computed once
	maxFrame  int
	maxActive int64
	timeout   time.Duration
	wtimeout  time.Duration

	cancel context.CancelFunc // cancels every connection's and request's context
	wg     sync.WaitGroup     // accept loop, connection readers, handlers
	active atomic.Int64       // requests being handled, for maxActive

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex // guards conns, closed
	conns  map[net.Conn]struct{}
	closed bool
}

// NewServer listens on cfg.Addr and starts serving h in goroutines owned by
// the returned Server, until [Server.Close]. A nil h, a negative limit or
// an unsafe TLS config (see [ServerConfig.TLS]) fails with an error
// wrapping ErrBadConfig; a listen failure is returned wrapped.
func NewServer(cfg ServerConfig, h Handler) (*Server, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrBadConfig)
	}
	if cfg.MaxFrameBytes < 0 || cfg.MaxConcurrent < 0 || cfg.DefaultTimeout < 0 || cfg.WriteTimeout < 0 {
		return nil, fmt.Errorf("%w: negative server limit", ErrBadConfig)
	}
	if cfg.TLS != nil {
		if err := checkServerTLS(cfg.TLS); err != nil {
			return nil, err
		}
	}
	s := &Server{
		h:         h,
		log:       cfg.Logger,
		maxFrame:  frameLimit(cfg.MaxFrameBytes),
		maxActive: int64(cmp.Or(cfg.MaxConcurrent, DefaultMaxConcurrent)),
		timeout:   cmp.Or(cfg.DefaultTimeout, DefaultRequestTimeout),
		wtimeout:  cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout),
		conns:     make(map[net.Conn]struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %q: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		if tc.ClientCAs == nil {
			tc.ClientCAs = tc.RootCAs
		}
		ln = tls.NewListener(ln, tc)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.log = s.log.With("component", "transport.server", "addr", s.addr)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.acceptLoop(ctx) })
	return s, nil
}

// checkServerTLS refuses a server TLS config that would not restrict
// clients to the cluster's CA or that the forced ClientAuth cannot cover.
func checkServerTLS(tc *tls.Config) error {
	switch {
	case tc.ClientCAs == nil && tc.RootCAs == nil:
		return fmt.Errorf("%w: server TLS config has neither ClientCAs nor RootCAs: client certificates would be verified against the system roots", ErrBadConfig)
	case tc.GetConfigForClient != nil:
		return fmt.Errorf("%w: server TLS config has GetConfigForClient: its configs would bypass the required client certificate", ErrBadConfig)
	case len(tc.Certificates) == 0 && tc.GetCertificate == nil:
		return fmt.Errorf("%w: server TLS config has neither Certificates nor GetCertificate", ErrBadConfig)
	}
	return nil
}

// Addr returns the address the server listens on, with the port it bound.
func (s *Server) Addr() string { return s.addr }

// Close stops the server: it closes the listener and every connection,
// cancels the context of every running handler, and waits until every
// goroutine of the server, handlers included, has returned. Requests in
// flight fail on their clients with ErrUnavailable. Close is idempotent;
// it returns the listener's close error, if any.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]net.Conn, 0, len(s.conns))
		for nc := range s.conns {
			conns = append(conns, nc)
		}
		s.mu.Unlock()
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("transport: close listener: %w", err)
		}
		s.cancel()
		for _, nc := range conns {
			nc.Close()
		}
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Server) acceptLoop(ctx context.Context) {
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary trouble such as running out of file descriptors:
			// retry with a bounded backoff.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("transport: accept failed", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if !s.track(nc) {
			nc.Close()
			return
		}
		s.wg.Go(func() {
			defer s.untrack(nc)
			s.serveConn(ctx, nc)
		})
	}
}

// track records nc so that Close can close it; false if the server closed.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

// serveConn runs the connection's reader: the handshake, then one frame at
// a time, each request dispatched to its own goroutine. It returns when the
// connection fails, the peer misbehaves, or the server closes; its requests'
// contexts are then cancelled.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer nc.Close()
	log := s.log.With("peer", nc.RemoteAddr().String())

	if err := s.handshake(ctx, nc); err != nil {
		if isClosedConn(err) && ctx.Err() != nil {
			return
		}
		log.Warn("transport: connection refused", "err", err)
		return
	}

	w := newConnWriter(nc, s.wtimeout)
	fr := newFrameReader(nc, readBufferBytes, s.maxFrame)
	var env wirepb.Envelope // reused: requests are converted before dispatch
	for {
		body, err := fr.next()
		if err == nil {
			err = s.dispatch(ctx, w, body, &env)
		}
		if err != nil {
			switch {
			case ctx.Err() != nil || isClosedConn(err):
				log.Debug("transport: connection closed", "err", err)
			default:
				log.Error("transport: closing connection", "err", err)
			}
			return
		}
	}
}

// handshake runs the TLS handshake (if any) and the preface exchange. The
// server always answers with its own preface, so that a client of another
// version learns why it is refused.
func (s *Server) handshake(ctx context.Context, nc net.Conn) error {
	deadline := time.Now().Add(handshakeTimeout)
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	if tc, ok := nc.(*tls.Conn); ok {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fmt.Errorf("transport: tls handshake: %w", err)
		}
	}
	var p [prefaceLen]byte
	if _, err := io.ReadFull(nc, p[:]); err != nil {
		return fmt.Errorf("transport: read preface: %w", err)
	}
	version, err := parsePreface(p[:])
	if err != nil {
		return err
	}
	if _, err := nc.Write(appendPreface(p[:0], ProtocolVersion)); err != nil {
		return fmt.Errorf("transport: write preface: %w", err)
	}
	if version != ProtocolVersion {
		return fmt.Errorf("%w: client speaks %d, server %d", ErrWrongProtocol, version, ProtocolVersion)
	}
	return nc.SetDeadline(time.Time{})
}

// serverRequest is one decoded request on its way to a handler goroutine.
type serverRequest struct {
	id      uint64
	timeout time.Duration
	kind    int
	get     GetRequest
	getMany GetManyRequest
	peek    PeekRequest
	write   WriteRequest
	writes  []WriteRequest // a batch
	applied []WriteResult  // of a batch: the results of the writes before writes, applied on the read loop
	lease   LeaseRequest
	hand    HandOverRequest
}

const (
	kindGet = iota + 1
	kindGetMany
	kindPeek
	kindWrite
	kindLease
	kindPing // answered on the read loop, never handled
	kindHandOver
	kindWriteBatch
)

var serverRequestPool = sync.Pool{New: func() any { return new(serverRequest) }}

// dispatch decodes one request frame and starts its handler. It returns an
// error only for input that must close the connection; a well-formed but
// unacceptable request is answered with an error code instead.
func (s *Server) dispatch(ctx context.Context, w *connWriter, body []byte, env *wirepb.Envelope) error {
	r := serverRequestPool.Get().(*serverRequest)
	var err error
	if id, timeout, req, ok := fastGetRequest(body); ok {
		*r = serverRequest{id: id, timeout: timeout, kind: kindGet, get: req}
	} else {
		if err := unmarshalEnvelope(body, env); err != nil {
			r.release()
			return err
		}
		*r = serverRequest{id: env.Id, timeout: time.Duration(env.TimeoutNanos)}
		switch b := env.Body.(type) {
		case *wirepb.Envelope_GetRequest:
			r.kind, r.get = kindGet, decodeGetRequest(b.GetRequest)
			r.get.Trace = env.Trace
		case *wirepb.Envelope_GetManyRequest:
			r.kind, r.getMany = kindGetMany, decodeGetManyRequest(b.GetManyRequest)
			r.getMany.Trace = env.Trace
		case *wirepb.Envelope_PeekRequest:
			r.kind, r.peek = kindPeek, decodePeekRequest(b.PeekRequest)
		case *wirepb.Envelope_WriteRequest:
			r.kind = kindWrite
			r.write, err = decodeWriteRequest(b.WriteRequest)
			r.write.Trace = env.Trace
		case *wirepb.Envelope_WriteBatchRequest:
			r.kind = kindWriteBatch
			r.writes, err = decodeWriteBatch(b.WriteBatchRequest)
		case *wirepb.Envelope_LeaseRequest:
			r.kind, r.lease = kindLease, decodeLeaseRequest(b.LeaseRequest)
		case *wirepb.Envelope_HandOverRequest:
			r.kind, r.hand = kindHandOver, decodeHandOverRequest(b.HandOverRequest)
		case *wirepb.Envelope_Ping:
			r.kind = kindPing
		default:
			err = fmt.Errorf("%w: envelope body %T is not a request", ErrBadRequest, env.Body)
		}
		proto.Reset(env) // drop references to the request's data
	}
	if r.kind == kindPing {
		// Answered at once, on the read loop, whatever the handlers are
		// doing or the load: a pong is how a client tells a slow peer from
		// a silent one (see ClientConfig.SilenceTimeout).
		id := r.id
		r.release()
		return s.pong(w, id)
	}
	if r.timeout <= 0 {
		r.timeout = s.timeout
	}
	if err == nil && r.kind == kindGet {
		if cg, ok := s.h.(CachedGetter); ok {
			if resp, ok := cg.GetCached(r.get); ok {
				id := r.id
				r.release()
				out := serverResponsePool.Get().(*serverResponse)
				out.a.reset()
				out.fastGet, out.getResp = true, resp
				if werr := s.reply(w, id, out, nil); werr != nil {
					s.log.Debug("transport: write response", "err", werr)
				}
				return nil
			}
		}
	}
	if err == nil && (r.kind == kindWrite || r.kind == kindWriteBatch) {
		// Writes are applied on the read loop, in the order they arrive,
		// whenever the handler can: a write that a later one on the same
		// connection overtook could bring back what that one removed.
		if qw, ok := s.h.(QuickWriter); ok && s.quickWrite(w, qw, r) {
			return nil
		}
	}
	if err == nil && s.active.Add(1) > s.maxActive {
		s.active.Add(-1)
		err = fmt.Errorf("%w: %d requests running", ErrOverloaded, s.maxActive)
	}
	if err != nil {
		id := r.id
		r.release()
		return s.reply(w, id, nil, err)
	}
	// A go statement rather than wg.Go: it saves the two closure allocations
	// per request on the hottest path. handle calls s.wg.Done.
	s.wg.Add(1)
	go s.handle(ctx, w, r)
	return nil
}

// quickWrite answers write request r (a write or a batch) on the read
// loop if qw can apply it at once, and then releases r. A batch whose
// writes qw cannot all apply keeps the results of those before the first
// it cannot in r.applied, and the rest for a goroutine.
func (s *Server) quickWrite(w *connWriter, qw QuickWriter, r *serverRequest) (done bool) {
	if r.kind == kindWriteBatch {
		for len(r.writes) > 0 {
			resp, ok, err := s.writeQuick(qw, r.writes[0])
			if !ok {
				return false
			}
			r.applied = append(r.applied, WriteResult{WriteResponse: resp, Err: err})
			r.writes = r.writes[1:]
		}
		out := serverResponsePool.Get().(*serverResponse)
		out.a.reset()
		s.encodeBatch(out, r.applied, nil)
		id := r.id
		r.release()
		if werr := s.reply(w, id, out, nil); werr != nil {
			s.log.Debug("transport: write response", "err", werr)
		}
		return true
	}
	resp, ok, err := s.writeQuick(qw, r.write)
	if !ok {
		return false
	}
	out := serverResponsePool.Get().(*serverResponse)
	out.a.reset()
	id := r.id
	r.release()
	if err == nil {
		encodeWriteResponse(&out.a, &out.wrMsg, resp)
		out.env.Body = &out.write
	} else {
		out.env.Body = nil
	}
	if werr := s.reply(w, id, out, err); werr != nil {
		s.log.Debug("transport: write response", "err", werr)
	}
	return true
}

// writeQuick calls qw.WriteQuick, turning a panic into an internal error.
func (s *Server) writeQuick(qw QuickWriter, req WriteRequest) (resp WriteResponse, ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("transport: handler panicked", "panic", p, "stack", string(debug.Stack()))
			resp, ok, err = WriteResponse{}, true, fmt.Errorf("transport: handler panicked: %v", p)
		}
	}()
	return qw.WriteQuick(req)
}

// encodeBatch puts the results of a batch, done and then rest, in out.
func (s *Server) encodeBatch(out *serverResponse, done, rest []WriteResult) {
	var m wirepb.WriteBatchResponse
	encodeWriteResults(&out.a, &m, append(done, rest...))
	out.env.Body = &wirepb.Envelope_WriteBatchResponse{WriteBatchResponse: &m}
}

// pong answers ping id. A write failure closes the connection and is
// returned.
func (s *Server) pong(w *connWriter, id uint64) error {
	out := serverResponsePool.Get().(*serverResponse)
	out.buf = appendPongFrame(out.buf[:0], id)
	err := w.write(out.buf)
	out.release()
	if err != nil {
		w.nc.Close()
	}
	return err
}

func (r *serverRequest) release() {
	*r = serverRequest{}
	serverRequestPool.Put(r)
}

// serverResponse is a pooled response envelope with a slot for every body
// kind, so that building a response allocates nothing.
type serverResponse struct {
	fastGet bool        // the response is getResp, encoded by the Get fast path
	getResp GetResponse // with fastGet

	env     wirepb.Envelope // the response, unless fastGet
	many    wirepb.Envelope_GetManyResponse
	manyMsg wirepb.GetManyResponse
	peek    wirepb.Envelope_PeekResponse
	peekMsg wirepb.PeekResponse
	write   wirepb.Envelope_WriteResponse
	wrMsg   wirepb.WriteResponse
	lease   wirepb.Envelope_LeaseResponse
	leMsg   wirepb.LeaseResponse
	hand    wirepb.Envelope_HandOverResponse
	handMsg wirepb.HandOverResponse
	a       arena
	buf     []byte
}

var serverResponsePool = sync.Pool{New: func() any {
	r := new(serverResponse)
	r.many.GetManyResponse = &r.manyMsg
	r.peek.PeekResponse = &r.peekMsg
	r.write.WriteResponse = &r.wrMsg
	r.lease.LeaseResponse = &r.leMsg
	r.hand.HandOverResponse = &r.handMsg
	return r
}}

// handle runs one request's handler and writes its response.
func (s *Server) handle(ctx context.Context, w *connWriter, r *serverRequest) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	out := serverResponsePool.Get().(*serverResponse)
	err := s.call(ctx, r, out)
	cancel()
	id := r.id
	r.release()
	if err != nil {
		out.env.Body = nil
	}
	if werr := s.reply(w, id, out, err); werr != nil {
		s.log.Debug("transport: write response", "err", werr)
	}
	// The slot is free once the response is written: a client that stops
	// reading cannot pile up handlers beyond MaxConcurrent.
	s.active.Add(-1)
}

// call runs the handler for r and encodes a successful response into out.
// A panicking handler is logged and reported as an internal error.
func (s *Server) call(ctx context.Context, r *serverRequest, out *serverResponse) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("transport: handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("transport: handler panicked: %v", p)
		}
	}()
	out.a.reset()
	switch r.kind {
	case kindGet:
		resp, err := s.h.Get(ctx, r.get)
		if err != nil {
			return err
		}
		out.fastGet, out.getResp = true, resp
	case kindGetMany:
		resp, err := s.h.GetMany(ctx, r.getMany)
		if err != nil {
			return err
		}
		encodeGetManyResponse(&out.a, &out.manyMsg, resp)
		out.env.Body = &out.many
	case kindPeek:
		resp, err := s.h.Peek(ctx, r.peek)
		if err != nil {
			return err
		}
		encodePeekResponse(&out.a, &out.peekMsg, resp)
		out.env.Body = &out.peek
	case kindWrite:
		resp, err := s.h.Write(ctx, r.write)
		if err != nil {
			return err
		}
		encodeWriteResponse(&out.a, &out.wrMsg, resp)
		out.env.Body = &out.write
	case kindWriteBatch:
		// In order, each as if it came alone: one write's error is its
		// own result, not the batch's.
		results := make([]WriteResult, len(r.writes))
		for i, req := range r.writes {
			results[i].WriteResponse, results[i].Err = s.h.Write(ctx, req)
		}
		s.encodeBatch(out, r.applied, results)
	case kindHandOver:
		resp, err := s.h.HandOver(ctx, r.hand)
		if err != nil {
			return err
		}
		out.handMsg.Stored = int64(resp.Stored)
		out.env.Body = &out.hand
	case kindLease:
		resp, err := s.h.Lease(ctx, r.lease)
		if err != nil {
			return err
		}
		encodeLeaseResponse(&out.a, &out.leMsg, resp)
		out.env.Body = &out.lease
	}
	return nil
}

// reply writes the response for request id: out's body if herr is nil,
// else herr's code and text. out may be nil for an error reply; reply
// recycles it. A response too large to send is replaced by an error. A
// write failure closes the connection and is returned.
func (s *Server) reply(w *connWriter, id uint64, out *serverResponse, herr error) error {
	if out == nil {
		out = serverResponsePool.Get().(*serverResponse)
		out.a.reset()
		out.env.Body = nil
	}
	defer out.release()
	out.env.Id = id
	setError(&out.env, &out.a, herr)
	var (
		frame []byte
		err   error
	)
	if out.fastGet && herr == nil {
		frame = appendGetResponseFrame(out.buf, id, out.getResp)
		err = checkFrameSize(frame, s.maxFrame)
	} else {
		frame, err = marshalFrame(out.buf, &out.env, s.maxFrame)
	}
	out.buf = frame
	if err != nil {
		s.log.Error("transport: cannot send response", "id", id, "err", err)
		out.env.Body = nil
		// The peer cannot have this answer (a value over the frame
		// limit): to it, this node cannot serve the request, which is not
		// a loader error.
		setError(&out.env, &out.a, fmt.Errorf("%w: %w", ErrUnavailable, err))
		if frame, err = marshalFrame(out.buf, &out.env, s.maxFrame); err != nil {
			return err // cannot happen: an error envelope is tiny
		}
		out.buf = frame
	}
	if err := w.write(frame); err != nil {
		w.nc.Close() // the reader then ends and cancels the connection's requests
		return err
	}
	return nil
}

// setError sets env's error fields from err (clearing them if err is nil).
func setError(env *wirepb.Envelope, a *arena, err error) {
	env.ErrorCode = codeOf(err)
	env.ErrorMessage = nil
	if err != nil {
		env.ErrorMessage = a.str(messageOf(err)) // bounded, without the class's own text
	}
}

func (r *serverResponse) release() {
	// Drop references to handler data so the pool does not pin it.
	r.fastGet, r.getResp = false, GetResponse{}
	r.manyMsg.Results = nil
	r.peekMsg.Value, r.peekMsg.Tags = nil, nil
	r.wrMsg.Members, r.wrMsg.SettleMember = nil, nil
	r.leMsg.BaseNames = nil
	r.env.Body = nil
	r.a.reset()
	if cap(r.buf) > keepFrameBytes {
		r.buf = nil
	}
	if cap(r.a.b) > keepFrameBytes {
		r.a = arena{}
	}
	serverResponsePool.Put(r)
}
