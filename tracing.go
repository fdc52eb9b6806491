package meshcache

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (OpenTelemetry API only: the application installs the SDK).
//
// meshcache never starts a trace: it adds spans to the caller's, when the
// context it is given carries a span (a request a traced service handles),
// and to the trace a peer's request carries. A call without one costs no
// span and no allocation, so a cache hit stays as cheap as without tracing.
// The spans:
//
//	meshcache.Get      a Get (attributes meshcache.group, meshcache.source:
//	                   hit, hot, peer, load, stale, fallback)
//	meshcache.load     a call of the loader or batch loader (and its L2 read)
//	meshcache.fetch    a request to a key's owner (client)
//	meshcache.serve    a peer's Get or GetMany, on the owner (server)
//	meshcache.write    a write (meshcache.op), with one meshcache.write.phase
//	                   span per phase and its fan-out to the members
//	meshcache.apply    a peer's write, on the member (server)
//
// The trace context crosses to peers in the request (W3C trace context, or
// Config.Propagator), so the owner's load appears in the caller's trace.
// Metrics stay with Prometheus ([Node.Collector]): an OpenTelemetry
// Prometheus bridge can read them; meshcache does not duplicate them.

// tracerName is the instrumentation scope of meshcache's spans.
const tracerName = "github.com/meshcache/meshcache"

// Span attribute keys.
const (
	attrGroup  = attribute.Key("meshcache.group")
	attrSource = attribute.Key("meshcache.source")
	attrOp     = attribute.Key("meshcache.op")
	attrPhase  = attribute.Key("meshcache.phase")
	attrPeer   = attribute.Key("meshcache.peer")
	attrKeys   = attribute.Key("meshcache.keys")
)

type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

func newTracing(cfg Config) tracing {
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	return tracing{tracer: tp.Tracer(tracerName), prop: prop}
}

// on reports whether ctx carries a span to add meshcache's spans to.
func (t tracing) on(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsValid()
}

// start starts span name as a child of ctx's span. Call it only when on.
func (t tracing) start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// inject returns ctx's trace context for a request to a peer, or nil when
// ctx has none.
func (t tracing) inject(ctx context.Context) map[string]string {
	if !t.on(ctx) {
		return nil
	}
	carrier := propagation.MapCarrier{}
	t.prop.Inject(ctx, carrier)
	return carrier
}

// extract returns ctx with the trace context a peer's request carries.
func (t tracing) extract(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.MapCarrier(carrier))
}

// serverSpan starts a server span for a peer's request, in the trace its
// carrier names.
func (t tracing) serverSpan(ctx context.Context, name string, carrier map[string]string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return t.start(t.extract(ctx, carrier), name, trace.SpanKindServer, attrs...)
}

// end records err (other than a not-found) on span and ends it.
func end(span trace.Span, err error) {
	if err != nil && !errors.Is(err, ErrNotFound) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
