package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// DefaultDialTimeout bounds a dial (TCP, TLS and preface) when
// ClientConfig.DialTimeout is zero.
const DefaultDialTimeout = 2 * time.Second

// DefaultCallTimeout bounds a call whose ctx has no deadline when
// ClientConfig.DefaultTimeout is zero.
const DefaultCallTimeout = 30 * time.Second

// ClientConfig configures a [Client]. The zero value of each field selects
// the documented default. NewClient copies the config.
type ClientConfig struct {
	// TLS, if set, makes the client dial with TLS, presenting the client
	// certificate from it and verifying the server against its RootCAs,
	// which must be set: a nil RootCAs would trust every server certificate
	// issued under the system roots, so such a client refuses every call
	// with ErrBadConfig (see [ClientConfig.Validate]). The config is cloned.
	// ServerName, if empty, is taken from the address being dialed.
	TLS *tls.Config
	// DialTimeout bounds one dial: TCP connect, TLS handshake and the
	// preface exchange. If zero, DefaultDialTimeout (2s).
	DialTimeout time.Duration
	// DefaultTimeout bounds a call whose ctx has no deadline, and is sent to
	// the peer as that request's deadline: every request carries one. If
	// zero, DefaultCallTimeout (30s).
	DefaultTimeout time.Duration
	// MaxFrameBytes limits the size of a frame body, in both directions: a
	// larger request fails with ErrFrameTooLarge without being sent, and a
	// larger response closes the connection. If zero,
	// DefaultMaxFrameBytes (64 MiB); values over math.MaxUint32-4 are
	// clamped to it.
	MaxFrameBytes int
	// WriteTimeout bounds each write of a connection's writer goroutine,
	// so that a peer that stops reading fails the connection (and its
	// pending calls) instead of holding queued requests forever. Callers
	// never wait for a write beyond their own ctx (a caller's own write
	// does not block). If zero, DefaultWriteTimeout (10s).
	WriteTimeout time.Duration
	// SilenceTimeout, if positive, bounds how long a request waits on a
	// peer that sends nothing at all. Once nothing (no response to any
	// request, no other frame, not a byte) has arrived on a connection for
	// SilenceTimeout since the later of a request's send and the last bytes
	// received, the connection is closed and its requests fail with an
	// error wrapping [ErrPeerSilent] and [ErrUnavailable]; the next request
	// dials again. While requests are outstanding and nothing has arrived
	// for a third of it, the client pings the peer, whose server answers at
	// once whatever its handlers are doing: a live peer is never failed for
	// being slow, only one that is paused, dead without a reset or cut off.
	// No ping is sent on a connection with nothing outstanding. It also
	// bounds each dial (with DialTimeout, whichever is shorter: a paused
	// process's kernel still completes TCP handshakes, so the dial waits
	// for the peer's preface); a dial that times out then wraps
	// ErrPeerSilent as well. Each request is still bounded by its ctx or
	// DefaultTimeout. Choose it well above the round-trip time (1s, say).
	// If zero (or negative), there is no such bound and no ping: requests
	// wait for their deadline only.
	SilenceTimeout time.Duration
	// Logger receives connection errors. If nil, slog.Default().
	Logger *slog.Logger
}

// Validate reports whether a Client with this config can make calls: an
// error wrapping ErrBadConfig if TLS is set without RootCAs. [NewClient]
// accepts any config, but a client whose config does not validate fails
// every call with this error; call Validate at startup to fail early.
func (cfg ClientConfig) Validate() error {
	if cfg.TLS != nil && cfg.TLS.RootCAs == nil {
		return fmt.Errorf("%w: client TLS config has no RootCAs: peers would be verified against the system roots", ErrBadConfig)
	}
	return nil
}

// Client sends requests to peers. It keeps one persistent connection per
// peer address, dialed on first use and redialed after a failure, and runs
// any number of requests on it at once. Its methods are safe for concurrent
// use. A call waits on its own ctx only: a caller that gives up does not
// affect others on the same connection, and a request still queued behind
// a slow write when its caller gives up is never sent.
//
// A connection on which a request timed out (its deadline, or
// DefaultTimeout, passed) after being written, with nothing at all read
// from the peer since, and nothing read for at least deadPeerGrace (2s)
// after a request was written, is presumed dead (a peer that vanished
// without a reset) and closed, failing its pending calls with
// ErrUnavailable; the next call dials again. With
// [ClientConfig.SilenceTimeout] set, a connection on which nothing at all
// arrives for that long while requests wait is closed sooner, failing
// them with [ErrPeerSilent], and a peer that is merely slow is kept alive
// with pings.
//
// Errors: a remote error comes back wrapping the same sentinel (see the
// error block); a dial or connection failure, or an expired ctx deadline,
// wraps [ErrUnavailable] (the caller falls back to loading itself); a peer of
// another protocol version gives [ErrWrongProtocol]; after Close, [ErrClosed];
// with an invalid config, [ErrBadConfig].
type Client struct {
	log       *slog.Logger
	tls       *tls.Config
	cfgErr    error // from ClientConfig.Validate: every call fails with it
	dialTO    time.Duration
	callTO    time.Duration
	maxFrame  int
	writeTO   time.Duration
	silence   time.Duration  // ClientConfig.SilenceTimeout; 0: no liveness checks
	deadGrace time.Duration  // see deadPeerGrace; tests change it
	nextID    atomic.Uint64  // request and ping ids
	pings     atomic.Uint64  // pings written, for tests and benchmarks
	carries   atomic.Uint64  // frames a caller began and the writer finished, for tests
	wg        sync.WaitGroup // one per connection: dial, read, then wait for its writer and watcher

	mu     sync.Mutex // guards conns, closed
	conns  map[string]*clientConn
	closed bool
}

// deadPeerGrace is how long a connection must have gone without reading
// anything since a request was written before a timed-out request retires
// it. Shorter would redial whenever a single slow handler outlives its
// caller's deadline; a live peer answers every request by the deadline it
// carries, so a silence this long is a dead peer or one that ignores its
// deadlines.
const deadPeerGrace = 2 * time.Second

// NewClient returns a Client. It starts no goroutine until the first
// request; release it with [Client.Close]. If cfg does not pass
// [ClientConfig.Validate], the error is logged and every call fails with
// it.
func NewClient(cfg ClientConfig) *Client {
	c := &Client{
		log:       cfg.Logger,
		cfgErr:    cfg.Validate(),
		dialTO:    cfg.DialTimeout,
		callTO:    cfg.DefaultTimeout,
		maxFrame:  frameLimit(cfg.MaxFrameBytes),
		writeTO:   cfg.WriteTimeout,
		deadGrace: deadPeerGrace,
		conns:     make(map[string]*clientConn),
	}
	if c.dialTO <= 0 {
		c.dialTO = DefaultDialTimeout
	}
	if c.callTO <= 0 {
		c.callTO = DefaultCallTimeout
	}
	if c.writeTO <= 0 {
		c.writeTO = DefaultWriteTimeout
	}
	if cfg.SilenceTimeout > 0 {
		c.silence = cfg.SilenceTimeout
		c.dialTO = min(c.dialTO, c.silence)
	}
	if cfg.TLS != nil {
		c.tls = cfg.TLS.Clone()
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "transport.client")
	if c.cfgErr != nil {
		c.log.Error("transport: unusable client config; every call will fail", "err", c.cfgErr)
	}
	return c
}

// Close closes every connection, failing their pending requests with
// ErrUnavailable, and waits for the client's goroutines to return. Later
// requests fail with ErrClosed. Close is idempotent and always returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = make(map[string]*clientConn)
	c.mu.Unlock()
	for _, cc := range conns {
		cc.close(fmt.Errorf("%w: %s: %w", ErrUnavailable, cc.addr, ErrClosed))
	}
	c.wg.Wait()
	return nil
}

// Forget closes the connection to addr, if any, failing its pending requests
// with ErrUnavailable. Use it when a peer left or died; a later request to
// addr dials again. It does not block.
func (c *Client) Forget(addr string) {
	c.mu.Lock()
	cc := c.conns[addr]
	delete(c.conns, addr)
	c.mu.Unlock()
	if cc != nil {
		cc.close(fmt.Errorf("%w: %s: connection forgotten", ErrUnavailable, addr))
	}
}

// Get asks the peer at addr for a key's value. A missing key gives an error
// wrapping ErrNotFound.
func (c *Client) Get(ctx context.Context, addr string, req GetRequest) (GetResponse, error) {
	return c.GetWithin(ctx, addr, req, 0)
}

// GetWithin is [Client.Get] bounded also by timeout (if positive), which
// the client enforces with the call's pooled timer: unlike a deadline on
// ctx, it allocates nothing. The request's deadline is the earlier of
// ctx's and timeout from now.
func (c *Client) GetWithin(ctx context.Context, addr string, req GetRequest, timeout time.Duration) (GetResponse, error) {
	resp, _, err := c.GetOrLeave(ctx, addr, req, timeout, nil)
	return resp, err
}

// GetOrLeave is [Client.GetWithin] for a caller that may stop waiting
// before the answer comes without abandoning the request: one that waits
// on behalf of others too. When leave is closed first (a nil leave never
// is), GetOrLeave returns, at once or, if the caller was reading for its
// answer, within 2ms, with a non-nil *PendingGet and the
// request goes on, still bounded by ctx and timeout: the caller (or a
// goroutine it hands it to) must call [PendingGet.Wait] for the answer.
// Otherwise it returns what GetWithin would, and a nil *PendingGet.
func (c *Client) GetOrLeave(ctx context.Context, addr string, req GetRequest, timeout time.Duration, leave <-chan struct{}) (GetResponse, *PendingGet, error) {
	cl := getCall()
	cl.timeout = timeout
	if fastGet && len(req.Trace) == 0 {
		cl.fastGet, cl.getReq = true, req
	} else {
		// A traced request takes the generic encoding, which carries
		// the trace (so does every Get in a build without the fast path).
		encodeGetRequest(&cl.a, &cl.getMsg, req)
		cl.env.Body = &cl.get
		cl.env.Trace = req.Trace
	}
	if err := c.prepare(ctx, addr, "get", cl); err != nil {
		cl.release()
		return GetResponse{}, nil, err
	}
	left, err := c.deliver(ctx, leave, addr, "get", cl)
	if left {
		return GetResponse{}, &PendingGet{c: c, cl: cl, addr: addr}, nil
	}
	defer cl.release()
	if err != nil {
		return GetResponse{}, nil, err
	}
	resp, err := c.getAnswer(addr, cl)
	return resp, nil, err
}

// A PendingGet is a Get whose caller stopped waiting for its answer without
// abandoning it (see [Client.GetOrLeave]).
type PendingGet struct {
	c    *Client
	cl   *call
	addr string
}

// Wait waits for p's answer and returns what [Client.GetWithin] would
// have. ctx must be the one given to [Client.GetOrLeave]: it still bounds
// the request, as does the timeout given there. Call Wait once.
func (p *PendingGet) Wait(ctx context.Context) (GetResponse, error) {
	defer p.cl.release()
	if _, err := p.c.deliver(ctx, nil, p.addr, "get", p.cl); err != nil {
		return GetResponse{}, err
	}
	return p.c.getAnswer(p.addr, p.cl)
}

// getAnswer decodes the answer to a Get, the response frame in cl.rbuf.
func (c *Client) getAnswer(addr string, cl *call) (GetResponse, error) {
	if _, resp, ok := fastGetResponse(cl.rbuf); ok {
		return resp, nil
	}
	if err := c.decode(addr, "get", cl); err != nil {
		return GetResponse{}, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_GetResponse)
	if !ok {
		return GetResponse{}, c.mismatch(cl, addr, "get")
	}
	return decodeGetResponse(b.GetResponse), nil
}

// GetMany asks the peer at addr for several keys of one group. Per-key
// failures are reported in each [KeyResult.Err]; the returned error is for
// the request as a whole.
func (c *Client) GetMany(ctx context.Context, addr string, req GetManyRequest) (GetManyResponse, error) {
	cl := getCall()
	defer cl.release()
	encodeGetManyRequest(&cl.a, &cl.manyMsg, req)
	cl.env.Body = &cl.many
	cl.env.Trace = req.Trace
	if err := c.roundTrip(ctx, addr, "get-many", cl); err != nil {
		return GetManyResponse{}, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_GetManyResponse)
	if !ok {
		return GetManyResponse{}, c.mismatch(cl, addr, "get-many")
	}
	return decodeGetManyResponse(b.GetManyResponse), nil
}

// Peek asks the peer at addr for a key from its main cache only (hand-off);
// the peer never loads. A key it does not hold gives Found == false.
func (c *Client) Peek(ctx context.Context, addr string, req PeekRequest) (PeekResponse, error) {
	cl := getCall()
	defer cl.release()
	encodePeekRequest(&cl.a, &cl.peekMsg, req)
	cl.env.Body = &cl.peek
	if err := c.roundTrip(ctx, addr, "peek", cl); err != nil {
		return PeekResponse{}, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_PeekResponse)
	if !ok {
		return PeekResponse{}, c.mismatch(cl, addr, "peek")
	}
	return decodePeekResponse(b.PeekResponse), nil
}

// Write sends a write or invalidation to the peer at addr. An undefined Op
// or Phase fails with ErrBadRequest before anything is sent.
func (c *Client) Write(ctx context.Context, addr string, req WriteRequest) (WriteResponse, error) {
	cl := getCall()
	defer cl.release()
	if err := encodeWriteRequest(&cl.a, &cl.writeMsg, req); err != nil {
		return WriteResponse{}, fmt.Errorf("transport: write to %s: %w", addr, err)
	}
	cl.env.Body = &cl.write
	cl.env.Trace = req.Trace
	if err := c.roundTrip(ctx, addr, "write", cl); err != nil {
		return WriteResponse{}, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_WriteResponse)
	if !ok {
		return WriteResponse{}, c.mismatch(cl, addr, "write")
	}
	return decodeWriteResponse(b.WriteResponse), nil
}

// WriteBatch sends several writes to the peer at addr in one frame (a group
// commit). The peer applies them in order, each as if it came alone, and
// answers each: the results are in the order of reqs, each with its own
// response or error. The returned error is the batch's (transport, ctx, or
// a request that does not encode): then there are no results. An empty
// batch sends nothing.
func (c *Client) WriteBatch(ctx context.Context, addr string, reqs []WriteRequest) ([]WriteResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	cl := getCall()
	defer cl.release()
	var m wirepb.WriteBatchRequest
	if err := encodeWriteBatch(&cl.a, &m, reqs); err != nil {
		return nil, fmt.Errorf("transport: write batch to %s: %w", addr, err)
	}
	cl.env.Body = &wirepb.Envelope_WriteBatchRequest{WriteBatchRequest: &m}
	if err := c.roundTrip(ctx, addr, "write batch", cl); err != nil {
		return nil, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_WriteBatchResponse)
	if !ok {
		return nil, c.mismatch(cl, addr, "write batch")
	}
	results, err := decodeWriteResults(b.WriteBatchResponse, len(reqs))
	if err != nil {
		return nil, c.mismatch(cl, addr, "write batch")
	}
	for i := range results {
		if results[i].Err != nil {
			results[i].Err = fmt.Errorf("transport: write from %s: %w", addr, results[i].Err)
		}
	}
	return results, nil
}

// HandOver offers entries to the peer at addr (see [HandOverRequest]).
func (c *Client) HandOver(ctx context.Context, addr string, req HandOverRequest) (HandOverResponse, error) {
	cl := getCall()
	defer cl.release()
	encodeHandOverRequest(&cl.a, &cl.handMsg, req)
	cl.env.Body = &cl.hand
	if err := c.roundTrip(ctx, addr, "hand-over", cl); err != nil {
		return HandOverResponse{}, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_HandOverResponse)
	if !ok {
		return HandOverResponse{}, c.mismatch(cl, addr, "hand-over")
	}
	return HandOverResponse{Stored: int(b.HandOverResponse.GetStored())}, nil
}

// Lease sends a lease heartbeat to the peer at addr.
func (c *Client) Lease(ctx context.Context, addr string, req LeaseRequest) (LeaseResponse, error) {
	cl := getCall()
	defer cl.release()
	encodeLeaseRequest(&cl.a, &cl.leaseMsg, req)
	cl.env.Body = &cl.lease
	if err := c.roundTrip(ctx, addr, "lease", cl); err != nil {
		return LeaseResponse{}, err
	}
	b, ok := cl.resp.Body.(*wirepb.Envelope_LeaseResponse)
	if !ok {
		return LeaseResponse{}, c.mismatch(cl, addr, "lease")
	}
	return decodeLeaseResponse(b.LeaseResponse), nil
}

// mismatch handles a successful response whose body does not answer the
// request: a protocol violation that closes the connection.
func (c *Client) mismatch(cl *call, addr, op string) error {
	err := fmt.Errorf("%w: %s response body is %T", ErrMalformed, op, cl.resp.Body)
	c.log.Error("transport: closing connection", "peer", addr, "err", err)
	cl.cc.close(fmt.Errorf("%w: %s: %w", ErrUnavailable, addr, err))
	return fmt.Errorf("transport: %s from %s: %w: %w", op, addr, ErrUnavailable, err)
}

// roundTrip sends cl's request envelope to addr and decodes the response
// into cl.resp. It returns remote errors, transport errors and ctx errors.
func (c *Client) roundTrip(ctx context.Context, addr, op string, cl *call) error {
	if err := c.exchange(ctx, addr, op, cl); err != nil {
		return err
	}
	return c.decode(addr, op, cl)
}

// exchange sends cl's request envelope to addr and waits for the response
// frame in cl.rbuf. It returns transport errors and ctx errors.
func (c *Client) exchange(ctx context.Context, addr, op string, cl *call) error {
	if err := c.prepare(ctx, addr, op, cl); err != nil {
		return err
	}
	_, err := c.deliver(ctx, nil, addr, op, cl)
	return err
}

// prepare gives cl's request its id and deadline, starts the call's timer
// when the deadline is not ctx's, and encodes the request frame into
// cl.wbuf.
func (c *Client) prepare(ctx context.Context, addr, op string, cl *call) error {
	if err := ctx.Err(); err != nil {
		return ctxError(op, addr, err)
	}
	cl.env.Id = c.nextID.Add(1)
	// Every request carries a deadline: the ctx's, or the default one,
	// enforced with the call's pooled timer (stopped by release).
	to := c.callTO
	if cl.timeout > 0 {
		to = cl.timeout
	}
	now := time.Now()
	if deadline, ok := ctx.Deadline(); ok && (cl.timeout <= 0 || deadline.Sub(now) <= cl.timeout) {
		left := deadline.Sub(now)
		if left <= 0 {
			return ctxError(op, addr, context.DeadlineExceeded)
		}
		cl.env.TimeoutNanos = int64(left)
		cl.deadline = deadline
	} else {
		cl.env.TimeoutNanos = int64(to)
		cl.deadline = now.Add(to)
		if cl.timer == nil {
			cl.timer = time.NewTimer(to)
		} else {
			cl.timer.Reset(to)
		}
		cl.expired = cl.timer.C
	}
	var (
		frame []byte
		err   error
	)
	if cl.fastGet {
		frame = appendGetRequestFrame(cl.wbuf, cl.env.Id, cl.env.TimeoutNanos, cl.getReq)
		err = checkFrameSize(frame, c.maxFrame)
	} else {
		frame, err = marshalFrame(cl.wbuf, &cl.env, c.maxFrame)
	}
	cl.wbuf = frame
	if err != nil {
		return fmt.Errorf("transport: %s to %s: %w", op, addr, err)
	}
	return nil
}

// deliver sends the request prepared in cl, unless it is sent already, and
// waits for its response frame in cl.rbuf, ctx, the call's timer or leave
// (nil: never), whichever comes first. When leave comes first it returns
// left set and leaves cl as it is, sent or not: calling deliver again goes
// on from there. Otherwise it returns transport errors and ctx errors.
func (c *Client) deliver(ctx context.Context, leave <-chan struct{}, addr, op string, cl *call) (left bool, err error) {
	if cl.cc == nil {
		// A connection found dead before the request was queued is
		// replaced once: the request was not sent, so retrying it is safe.
		var (
			cc                  *clientConn
			writeSelf, readSelf bool
		)
		for attempt := 0; ; attempt++ {
			if cc, err = c.conn(ctx, leave, addr); err != nil {
				if err == errLeft {
					return true, nil
				}
				return false, fmt.Errorf("transport: %s to %s: %w", op, addr, err)
			}
			if writeSelf, readSelf, err = cc.send(cl); err == nil {
				break
			}
			if attempt > 0 {
				return false, fmt.Errorf("transport: %s to %s: %w", op, addr, err)
			}
		}
		cl.cc = cc
		if writeSelf {
			cc.writeOwn(cl)
		}
		if readSelf && c.readOwn(cc, cl, cl.deadline) {
			return false, c.failed(op, addr, cl)
		}
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		if err := c.abandon(cl.cc, cl, ctx.Err()); err != nil {
			return false, ctxError(op, addr, err)
		}
	case <-cl.expired:
		if err := c.abandon(cl.cc, cl, context.DeadlineExceeded); err != nil {
			return false, ctxError(op, addr, err)
		}
	case <-leave:
		return true, nil
	}
	return false, c.failed(op, addr, cl)
}

// failed returns the error of call cl, whose answer or failure came: nil
// if it was answered.
func (c *Client) failed(op, addr string, cl *call) error {
	if cl.err != nil {
		return fmt.Errorf("transport: %s to %s: %w", op, addr, cl.err)
	}
	return nil
}

// errLeft is conn's error when its caller's leave channel closed first.
var errLeft = errors.New("transport: caller left")

// abandon withdraws cl, whose caller gave up for reason err, and returns
// err; or, if its response or failure is being delivered right now, waits
// for that and returns nil. A request not yet written is never sent. A
// timeout on a connection that has read nothing since the request was
// written, for deadGrace or longer, retires the connection.
func (c *Client) abandon(cc *clientConn, cl *call, err error) error {
	waiting, silent, silentFor := cc.withdraw(cl)
	if !waiting {
		<-cl.done
		return nil
	}
	if silent && silentFor >= c.deadGrace && errors.Is(err, context.DeadlineExceeded) {
		derr := fmt.Errorf("%w: %s: nothing read for %v: connection presumed dead", ErrUnavailable, cc.addr, silentFor.Round(time.Millisecond))
		c.log.Warn("transport: closing connection", "peer", cc.addr, "err", derr)
		cc.close(derr)
	}
	return err
}

// decode decodes the response frame in cl.rbuf into cl.resp and returns
// its remote error, if any. An undecodable response closes the connection.
func (c *Client) decode(addr, op string, cl *call) error {
	if err := unmarshalEnvelope(cl.rbuf, &cl.resp); err != nil {
		c.log.Error("transport: closing connection", "peer", addr, "err", err)
		cl.cc.close(fmt.Errorf("%w: %s: %w", ErrUnavailable, addr, err))
		return fmt.Errorf("transport: %s from %s: %w: %w", op, addr, ErrUnavailable, err)
	}
	if err := errorOf(cl.resp.ErrorCode, cl.resp.ErrorMessage); err != nil {
		return fmt.Errorf("transport: %s from %s: %w", op, addr, err)
	}
	return nil
}

// ctxError is the error for a request abandoned because ctx ended. An
// expired deadline also wraps ErrUnavailable: the peer did not answer in time.
func ctxError(op, addr string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("transport: %s to %s: %w: %w", op, addr, ErrUnavailable, err)
	}
	return fmt.Errorf("transport: %s to %s: %w", op, addr, err)
}

// conn returns the live connection to addr, dialing it if there is none. It
// waits for a dial in progress on ctx; concurrent callers share one dial.
// It returns errLeft if leave (nil: never) closes first.
func (c *Client) conn(ctx context.Context, leave <-chan struct{}, addr string) (*clientConn, error) {
	if c.cfgErr != nil {
		return nil, c.cfgErr
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	cc := c.conns[addr]
	if cc == nil || cc.dead.Load() {
		dctx, cancel := context.WithTimeout(context.Background(), c.dialTO)
		cc = newClientConn(c, addr, cancel)
		c.conns[addr] = cc
		c.wg.Go(func() { c.run(dctx, cc) })
	}
	c.mu.Unlock()
	select {
	case <-cc.ready:
	case <-ctx.Done():
		return nil, ctxError("dial", addr, ctx.Err())
	case <-leave:
		return nil, errLeft
	}
	if cc.dialErr != nil {
		return nil, cc.dialErr
	}
	return cc, nil
}

// run dials cc and then reads its responses until it fails or is closed.
func (c *Client) run(ctx context.Context, cc *clientConn) {
	nc, err := c.dial(ctx, cc.addr)
	// The peer sent nothing within the dial bound: the connect or a
	// read of its preface timed out (by the socket deadline, which may
	// come a moment before ctx's).
	silent := c.silence > 0 && err != nil && (errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err))
	cc.cancelDial()
	if err == nil {
		cc.mu.Lock()
		if cc.err != nil { // closed while dialing
			err = cc.err
		} else {
			cc.nc = nc
		}
		cc.mu.Unlock()
		if err != nil {
			nc.Close()
		}
	}
	if err != nil {
		if silent {
			err = fmt.Errorf("%w: dial %s: nothing received for %v: %w: %w", ErrUnavailable, cc.addr, c.dialTO, ErrPeerSilent, err)
		} else if !errors.Is(err, ErrWrongProtocol) {
			err = fmt.Errorf("%w: dial %s: %w", ErrUnavailable, cc.addr, err)
		} else {
			err = fmt.Errorf("transport: dial %s: %w", cc.addr, err)
		}
		cc.dialErr = err
		cc.close(err)
		close(cc.ready)
		c.log.Debug("transport: dial failed", "peer", cc.addr, "err", err)
		return
	}
	var r io.Reader = nc
	if c.silence > 0 {
		r = &liveReader{r: nc, cc: cc}
	}
	cc.fr = newFrameReader(r, readBufferBytes, c.maxFrame)
	cc.raw = newRawSocket(nc)
	if cc.raw == nil {
		cc.reading = roleGo // for good: callers cannot read for themselves
	}
	close(cc.ready)
	cc.wg.Go(func() { cc.writeLoop(nc) })
	if c.silence > 0 {
		cc.readAt.Store(cc.now()) // the peer's preface just arrived
		cc.wg.Go(cc.watchLoop)
	}
	c.readLoop(cc)
	cc.wg.Wait() // cc is closed: the writer and the watcher are returning
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dial connects to addr and exchanges prefaces, all within ctx.
func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	var (
		nc  net.Conn
		err error
	)
	if c.tls != nil {
		d := tls.Dialer{Config: c.tls}
		nc, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if err := handshakeClient(ctx, nc); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// handshakeClient sends the preface and checks the server's answer.
func handshakeClient(ctx context.Context, nc net.Conn) error {
	if deadline, ok := ctx.Deadline(); ok {
		if err := nc.SetDeadline(deadline); err != nil {
			return err
		}
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	var p [prefaceLen]byte
	if _, err := nc.Write(appendPreface(p[:0], ProtocolVersion)); err != nil {
		return fmt.Errorf("write preface: %w", err)
	}
	if _, err := io.ReadFull(nc, p[:]); err != nil {
		return fmt.Errorf("read preface: %w", err)
	}
	version, err := parsePreface(p[:])
	if err != nil {
		return err
	}
	if version != ProtocolVersion {
		return fmt.Errorf("%w: server speaks %d, client %d", ErrWrongProtocol, version, ProtocolVersion)
	}
	if !stop() {
		return ctx.Err()
	}
	return nc.SetDeadline(time.Time{})
}
