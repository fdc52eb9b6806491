package meshcache

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTracingAcrossNodes: a traced Get on one node that the key's owner
// loads shows, in the caller's trace, the Get, the fetch to the owner, the
// owner's serve span (its parent the fetch, across the hop) and the owner's
// load; a traced write shows its phases and the members' apply spans; an
// untraced Get makes no span.
func TestTracingAcrossNodes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	nodes := startCluster(t, 2, func(c *Config) { c.TracerProvider = tp })
	gs := newClusterGroups(t, nodes, "g", newOrigin())
	key := keyOwnedBy(t, nodes[0], "n1", "k")

	mustGet(t, gs[0], key) // untraced: loads at n1, no span
	if spans := rec.Ended(); len(spans) != 0 {
		t.Fatalf("an untraced Get made %d spans", len(spans))
	}
	if err := gs[0].Invalidate(context.Background(), key); err != nil {
		t.Fatal(err)
	}

	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := gs[0].Get(ctx, key); err != nil {
		t.Fatal(err)
	}
	root.End()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name(), s.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
	}
	parent := map[string]string{
		"meshcache.Get":   "request",
		"meshcache.fetch": "meshcache.Get",
		"meshcache.serve": "meshcache.fetch",
		"meshcache.load":  "meshcache.serve",
	}
	for name, want := range parent {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no span %s; spans: %v", name, spanNames(rec.Ended()))
			continue
		}
		p, ok := byName[want]
		if !ok || s.Parent().SpanID() != p.SpanContext().SpanID() {
			t.Errorf("span %s: parent %s, want %s", name, s.Parent().SpanID(), want)
		}
	}
	if s, ok := byName["meshcache.serve"]; ok && s.SpanKind() != trace.SpanKindServer {
		t.Errorf("meshcache.serve kind %v, want server", s.SpanKind())
	}
	if s, ok := byName["meshcache.Get"]; ok {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if attrs["meshcache.group"] != "g" || attrs["meshcache.source"] != "peer" {
			t.Errorf("meshcache.Get attributes %v, want group g, source peer", attrs)
		}
	}

	// A write: its phases and the member's apply spans.
	ctx, root = tp.Tracer("test").Start(context.Background(), "write request")
	if err := gs[0].Invalidate(ctx, key); err != nil {
		t.Fatal(err)
	}
	root.End()
	// The members' apply spans are made after the write was applied, on
	// goroutines of their own.
	var counts map[string]int
	waitFor(t, 10*time.Second, "the apply spans", func() bool {
		counts = map[string]int{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
				counts[s.Name()]++
			}
		}
		return counts["meshcache.apply"] >= 2
	})
	if counts["meshcache.write"] != 1 || counts["meshcache.write.phase"] != 2 || counts["meshcache.apply"] != 2 {
		t.Errorf("write spans %v, want 1 write, 2 phases, 2 applies (one per phase on n1)", counts)
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	return names
}

// BenchmarkGetHitTracing measures a hit with the default (global, no SDK)
// provider, untraced and inside a traced request of a real SDK provider.
func BenchmarkGetHitTracing(b *testing.B) {
	n := newTestNode(b)
	g := mustGroup(b, n, "g", newOrigin())
	mustGet(b, g, "k")
	b.Run("ctx=untraced", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			g.Get(ctx, "k")
		}
	})
}
