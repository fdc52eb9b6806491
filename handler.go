package meshcache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshcache/meshcache/local"
	"github.com/meshcache/meshcache/transport"
)

// handler serves peers' requests. It answers from the main cache or by
// loading, never from a hot copy and never by asking another node: a
// forwarded request is never forwarded again.
type handler struct{ n *Node }

var (
	_ transport.Handler      = handler{}
	_ transport.CachedGetter = handler{}
)

// group returns the group a peer asked for, or the transport error to
// answer.
func (h handler) group(name string) (*Group, error) {
	if h.n.closed.Load() {
		return nil, transport.ErrClosed
	}
	g, err := h.n.groupFor(name)
	if err != nil {
		return nil, err
	}
	g.node.stats.peerRequests.Add(1)
	return g, nil
}

// groupFor returns the group name, created by Config.OnUnknownGroup if this
// node has none, or an error wrapping [transport.ErrUnknownGroup].
func (n *Node) groupFor(name string) (*Group, error) {
	if g, ok := n.Group(name); ok {
		return g, nil
	}
	if n.unknownGroup == nil || name == "" || len(name) > MaxKeyLen {
		return nil, peerError(transport.ErrUnknownGroup, strconv.Quote(name))
	}
	g, err := n.callUnknownGroup(name)
	if err == nil && g != nil && g.node == n && g.name == name {
		return g, nil
	}
	if g, ok := n.Group(name); ok {
		return g, nil // created concurrently
	}
	n.log.Warn("meshcache: a peer asked for a group this node does not create", "group", name, "err", err)
	return nil, peerError(transport.ErrUnknownGroup, fmt.Sprintf("%q: %v", name, err))
}

// callUnknownGroup calls Config.OnUnknownGroup, turning its panic into an
// error: the peer then falls back instead of failing.
func (n *Node) callUnknownGroup(name string) (g *Group, err error) {
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("meshcache: OnUnknownGroup panicked", "group", name, "panic", p, "stack", string(debug.Stack()))
			// The panic value stays in the log: the error goes to the peer.
			g, err = nil, errors.New("OnUnknownGroup panicked")
		}
	}()
	return n.unknownGroup(n, name)
}

func checkPeerKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return peerError(transport.ErrBadRequest, fmt.Sprintf("key of %d bytes", len(key)))
	}
	return nil
}

func (h handler) Get(ctx context.Context, req transport.GetRequest) (_ transport.GetResponse, err error) {
	if len(req.Trace) > 0 {
		var span trace.Span
		ctx, span = h.n.tracing.serverSpan(ctx, "meshcache.serve", req.Trace, attrGroup.String(req.Group))
		defer func() { end(span, err) }()
	}
	g, err := h.group(req.Group)
	if err != nil {
		return transport.GetResponse{}, err
	}
	if err := checkPeerKey(req.Key); err != nil {
		return transport.GetResponse{}, err
	}
	v, err := g.serve(ctx, req.Key)
	return transport.GetResponse{Value: v}, err
}

// GetCached answers a peer's Get from the main cache on the transport's
// read loop, without a goroutine or a context (see
// [transport.CachedGetter]). A miss, a cached not-found and anything
// unusual go to Get.
func (h handler) GetCached(req transport.GetRequest) (transport.GetResponse, bool) {
	if h.n.closed.Load() || checkPeerKey(req.Key) != nil || len(req.Trace) > 0 {
		// A traced request goes to Get, which adds the server span.
		return transport.GetResponse{}, false
	}
	g, ok := h.n.Group(req.Group)
	if !ok || g.cfg.validate != nil {
		// A user predicate never runs on the read loop: it may block or
		// panic, and nothing recovers there.
		return transport.GetResponse{}, false
	}
	v, ok, err := g.serveCached(req.Key)
	if !ok || err != nil {
		return transport.GetResponse{}, false
	}
	h.n.stats.peerRequests.Add(1)
	g.stats.peerServed.Add(1)
	return transport.GetResponse{Value: v}, true
}

// serve returns key's value for a peer: from the main cache, or loaded
// through a load flight.
func (g *Group) serve(ctx context.Context, key string) (transport.Value, error) {
	g.stats.peerServed.Add(1)
	if v, ok, err := g.serveCached(key); ok {
		return v, err
	}
	if v, ok := g.staleBeforeLoad(key, false); ok {
		return staleWire(v), nil
	}
	// A key this node does not own (in its view) is asked of it as the
	// stand-in of an unreachable owner, or while views of the ring differ:
	// it is loaded into the stand-in tier, never the main cache.
	standIn := g.node.Owner(key) != g.node.name
	r := g.waitFlight(ctx, key, g.startFlightTo(ctx, key, nil, standIn))
	if r.err != nil {
		if err := servedCtxErr(ctx); err != nil {
			return transport.Value{}, err
		}
		if v, ok := g.staleAfterError(ctx, key, r.err, false); ok {
			return staleWire(v), nil
		}
		return transport.Value{}, wireError(r.err)
	}
	if v, ok, err := g.serveCached(key); ok && err == nil {
		return v, nil
	}
	// Loaded but not cached (NoStore, or fenced): the peer must not cache
	// it either.
	return transport.Value{Value: r.value}, nil
}

// serveCached returns key's entry in the main cache, as it goes on the
// wire; ok is false on a miss. It counts nothing: the requester counts its
// hit or miss, the owner counts the keys it served (PeerServed) and loads.
func (g *Group) serveCached(key string) (v transport.Value, ok bool, err error) {
	if !g.node.serving() {
		return transport.Value{}, true, errNoLease
	}
	tier := local.Main
	e, ok := g.store.Get(tier, key)
	if !ok && !g.store.Empty(local.StandIn) {
		tier = local.StandIn // what it loaded for an unreachable owner
		e, ok = g.store.Get(tier, key)
	}
	if !ok {
		return transport.Value{}, false, nil
	}
	if g.cfg.validate != nil && !e.Negative && !g.cfg.validate(g.entry(key, e)) {
		g.store.Remove(tier, key)
		return transport.Value{}, false, nil
	}
	if e.Negative {
		return transport.Value{}, true, transport.ErrNotFound // the peer knows the group and key
	}
	return wireValue(e), true, nil
}

// wireValue is a cached entry as it goes to a peer: the remaining TTL
// (wireNoExpiry for none) and the age as durations. Value and Tags are
// shared with the cache, which never modifies them.
func wireValue(e local.Entry) transport.Value {
	now := time.Now()
	v := transport.Value{Value: e.Value, Tags: e.Tags, Age: max(now.Sub(e.Filled), 0), TTL: wireNoExpiry}
	if !e.Expires.IsZero() {
		v.TTL = e.Expires.Sub(now)
		if v.TTL <= 0 {
			v.TTL = time.Nanosecond // about to expire: the peer keeps it no longer
		}
	}
	return v
}

// servedCtxErr returns, when the context of a peer's request ended (its
// deadline passed, or the server is closing) before its load did, the error
// to answer: it wraps ctx's error and not [transport.ErrLoader], so that the
// peer falls back instead of failing. The load itself goes on under its own
// context; the waiter only gave up on it.
func servedCtxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("meshcache: serving a peer: %w", err)
	}
	return nil
}

// wireError maps a load's error to what a peer sees: a class (the
// transport sentinel it wraps) and a short message. A panic's message is
// empty: its value and stack stay in this node's log (see
// Group.panicked). A loader's error keeps its own text, without this
// node's context (the peer adds its own), cut so that the whole error
// fits in [transport.MaxErrorMessage] bytes.
func wireError(err error) error {
	switch {
	case errors.Is(err, ErrLoaderPanic):
		return transport.ErrLoaderPanic
	case errors.Is(err, ErrNotFound):
		return transport.ErrNotFound
	case errors.Is(err, ErrClosed):
		return fmt.Errorf("%w: %w", transport.ErrClosed, err)
	}
	msg := err.Error()
	if lf, ok := errors.AsType[*loadFailure](err); ok {
		msg = lf.cause.Error()
	}
	return peerError(transport.ErrLoader, msg)
}

// peerError returns an error of class for a peer, with msg cut so that its
// whole text fits in [transport.MaxErrorMessage] bytes.
func peerError(class error, msg string) error {
	return fmt.Errorf("%w: %s", class, clip(msg, transport.MaxErrorMessage-len(class.Error())-len(": ")))
}

// clip cuts s to at most n bytes, marking the cut with "...". It cuts
// before a UTF-8 sequence rather than inside it.
func clip(s string, n int) string {
	const more = "..."
	if len(s) <= n {
		return s
	}
	i := max(n-len(more), 0)
	for j := 0; j < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i--
	}
	return s[:i] + more
}

func (h handler) GetMany(ctx context.Context, req transport.GetManyRequest) (_ transport.GetManyResponse, err error) {
	if len(req.Trace) > 0 {
		var span trace.Span
		ctx, span = h.n.tracing.serverSpan(ctx, "meshcache.serve", req.Trace, attrGroup.String(req.Group), attrKeys.Int(len(req.Keys)))
		defer func() { end(span, err) }()
	}
	g, err := h.group(req.Group)
	if err != nil {
		return transport.GetManyResponse{}, err
	}
	if !h.n.serving() {
		return transport.GetManyResponse{}, errNoLease
	}
	resp := transport.GetManyResponse{Results: make([]transport.KeyResult, len(req.Keys))}
	var missing []string
	for i, k := range req.Keys {
		r := &resp.Results[i]
		r.Key = k
		if r.Err = checkPeerKey(k); r.Err != nil {
			continue
		}
		g.stats.peerServed.Add(1)
		if v, ok, err := g.serveCached(k); ok {
			r.Value, r.Err = v, err
			continue
		}
		r.Err = errPending
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return resp, nil
	}
	// Keys this node does not own (in its view) are asked of it as a
	// stand-in: they go to the stand-in tier, never the main cache.
	var owned, standIn []string
	for _, k := range missing {
		if g.node.Owner(k) == g.node.name {
			owned = append(owned, k)
		} else {
			standIn = append(standIn, k)
		}
	}
	loaded := make(map[string]flightResult, len(missing))
	if len(owned) > 0 {
		maps.Copy(loaded, g.loadMissing(ctx, owned, local.Main))
	}
	if len(standIn) > 0 {
		maps.Copy(loaded, g.loadMissing(ctx, standIn, local.StandIn))
	}
	if err := servedCtxErr(ctx); err != nil {
		return transport.GetManyResponse{}, err
	}
	for i := range resp.Results {
		r := &resp.Results[i]
		if r.Err != errPending {
			continue
		}
		switch lr := loaded[r.Key]; {
		case lr.err != nil:
			r.Value, r.Err = transport.Value{}, wireError(lr.err)
		default:
			r.Err = nil
			if v, ok, err := g.serveCached(r.Key); ok && err == nil {
				r.Value = v
			} else {
				r.Value = transport.Value{Value: lr.value} // not cached: the peer must not cache it
			}
		}
	}
	return resp, nil
}

// errNoLease answers a peer's read while this node does not hold its
// lease: the peer falls back to loading the key itself.
var errNoLease = fmt.Errorf("meshcache: %w: no lease: this node may have missed writes", transport.ErrClosed)

// errPending marks the results of a GetMany still to be loaded.
var errPending = errors.New("pending")

func (h handler) Peek(ctx context.Context, req transport.PeekRequest) (transport.PeekResponse, error) {
	if h.n.closed.Load() {
		return transport.PeekResponse{}, transport.ErrClosed
	}
	g, ok := h.n.Group(req.Group) // a hand-off never creates a group: it would be empty
	if !ok {
		return transport.PeekResponse{}, nil
	}
	if !h.n.serving() {
		return transport.PeekResponse{}, nil
	}
	h.n.stats.peerRequests.Add(1)
	if err := checkPeerKey(req.Key); err != nil {
		return transport.PeekResponse{}, err
	}
	e, ok := g.store.Get(local.Main, req.Key)
	if !ok || e.Negative {
		return transport.PeekResponse{}, nil
	}
	return transport.PeekResponse{Found: true, Value: wireValue(e)}, nil
}

// WriteQuick applies a write at once, on the transport's read loop, when
// its group exists here: then nothing in Write can block. A write for a
// group this node does not have (Config.OnUnknownGroup may create it) goes
// to Write, on a goroutine. A write to every group (an empty Group,
// [Node.InvalidateTags]) applies here too: it creates no group.
//
// A traced write is applied here too (writes from one node must apply in
// the order they arrive), and its span is made afterwards on a goroutine:
// the tracing SDK's code (samplers, processors, exporters) never runs on the
// read loop.
func (h handler) WriteQuick(req transport.WriteRequest) (transport.WriteResponse, bool, error) {
	if _, ok := h.n.Group(req.Group); !ok && req.Group != "" {
		return transport.WriteResponse{}, false, nil
	}
	if len(req.Trace) == 0 {
		resp, err := h.apply(req)
		return resp, true, err
	}
	start := time.Now()
	resp, err := h.apply(req)
	h.n.traceApplied(req, start, time.Now(), err)
	return resp, true, err
}

func (h handler) Write(ctx context.Context, req transport.WriteRequest) (_ transport.WriteResponse, err error) {
	if len(req.Trace) > 0 {
		var span trace.Span
		_, span = h.n.tracing.serverSpan(ctx, "meshcache.apply", req.Trace, applyAttrs(req)...)
		defer func() { end(span, err) }()
	}
	return h.apply(req)
}

// applyAttrs are the attributes of a meshcache.apply span.
func applyAttrs(req transport.WriteRequest) []attribute.KeyValue {
	return []attribute.KeyValue{attrGroup.String(req.Group), attrOp.String(req.Op.String()), attrPhase.Int(int(req.Phase))}
}

// traceApplied makes the meshcache.apply span of a write applied from start
// to end, on a goroutine of its own (Close waits for it).
func (n *Node) traceApplied(req transport.WriteRequest, start, end time.Time, err error) {
	n.wg.Go(func() {
		_, span := n.tracing.tracer.Start(n.tracing.extract(context.Background(), req.Trace), "meshcache.apply",
			trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start), trace.WithAttributes(applyAttrs(req)...))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End(trace.WithTimestamp(end))
	})
}

// apply applies a peer's write.
func (h handler) apply(req transport.WriteRequest) (transport.WriteResponse, error) {
	// A closing node still applies writes: it stays in its peers' rings
	// until its leave has spread, and its store works after Close.
	if req.Group == "" {
		return h.applyAllGroups(req)
	}
	g, ok := h.n.noteMissedWrite(req.Group)
	switch {
	case !ok && (req.Op == transport.OpSet || req.Op == transport.OpSetIfAbsent):
		// This node may own the key: it must store it, or the writer must
		// not report the value stored.
		var err error
		if g, err = h.n.groupFor(req.Group); err != nil {
			h.n.pendingWrite(req)
			return transport.WriteResponse{}, err
		}
	case !ok:
		// Nothing of that group is cached here, but a snapshot may be
		// waiting for it.
		h.n.pendingWrite(req)
		return h.n.writeResponse(req, 0), nil
	}
	if err := g.checkWrite(req); err != nil {
		g.log.Warn("meshcache: refused a peer's write", "origin", req.Origin, "err", err)
		return transport.WriteResponse{}, err
	}
	applied := g.applyPhases(req)
	if req.Phase == transport.PhaseCopies && req.ID != 0 {
		h.n.acked.Add(writeKey{req.Origin, req.ID}, struct{}{})
	}
	return h.n.writeResponse(req, applied), nil
}

// writeResponse is the answer to a write: what it applied, this node's
// view when it differs from the writer's, and how long the writer must
// wait for a departed member's lease (see Node.departedLease).
func (n *Node) writeResponse(req transport.WriteRequest, applied int) transport.WriteResponse {
	resp := transport.WriteResponse{Applied: applied, Members: n.viewFor(req)}
	resp.Settle, resp.SettleMember = n.departedLease()
	return resp
}

// viewFor returns this node's view of the alive members when it differs
// from the writer's (req.View), else nil: the writer must reach the
// members it lacks too.
func (n *Node) viewFor(req transport.WriteRequest) []transport.Member {
	if rs := n.ring.Load(); rs != nil && req.View != 0 && req.View != rs.view {
		return rs.members
	}
	return nil
}
