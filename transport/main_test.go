package transport

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeHandler is a Handler whose methods tests can replace; the defaults
// answer from the key's name (see defaultGet).
type fakeHandler struct {
	get     func(context.Context, GetRequest) (GetResponse, error)
	getMany func(context.Context, GetManyRequest) (GetManyResponse, error)
	peek    func(context.Context, PeekRequest) (PeekResponse, error)
	write   func(context.Context, WriteRequest) (WriteResponse, error)
}

// errFor returns the error a fake key stands for: "missing" is not found,
// "broken" a plain (loader) error, "nogroup" an unknown group, "bad" a bad
// request, "busy" overloaded, "slow" a context deadline, "closing" a node
// shutting down.
func errFor(key string) error {
	switch key {
	case "missing":
		return fmt.Errorf("fake: key %q: %w", key, ErrNotFound)
	case "broken":
		return fmt.Errorf("fake: database down for %q", key)
	case "loader":
		return fmt.Errorf("fake: %w: boom", ErrLoader)
	case "nogroup":
		return ErrUnknownGroup
	case "bad":
		return fmt.Errorf("fake: %w: key too long", ErrBadRequest)
	case "busy":
		return ErrOverloaded
	case "slow":
		return fmt.Errorf("fake: load: %w", context.DeadlineExceeded)
	case "cancelled":
		return context.Canceled
	case "oldproto":
		return ErrWrongProtocol
	case "closing":
		return fmt.Errorf("fake: node shutting down: %w", ErrClosed)
	}
	return nil
}

func valueFor(group, key string) Value {
	return Value{
		Value: []byte(group + "/" + key),
		TTL:   90 * time.Second,
		Age:   3 * time.Second,
		Tags:  []string{"tag:" + key, "group:" + group},
	}
}

func (h *fakeHandler) Get(ctx context.Context, req GetRequest) (GetResponse, error) {
	if h.get != nil {
		return h.get(ctx, req)
	}
	if err := errFor(req.Key); err != nil {
		return GetResponse{}, err
	}
	return GetResponse{Value: valueFor(req.Group, req.Key)}, nil
}

func (h *fakeHandler) GetMany(ctx context.Context, req GetManyRequest) (GetManyResponse, error) {
	if h.getMany != nil {
		return h.getMany(ctx, req)
	}
	if req.Group == "nogroup" {
		return GetManyResponse{}, ErrUnknownGroup
	}
	var resp GetManyResponse
	for _, k := range req.Keys {
		if err := errFor(k); err != nil {
			resp.Results = append(resp.Results, KeyResult{Key: k, Err: err})
			continue
		}
		resp.Results = append(resp.Results, KeyResult{Key: k, Value: valueFor(req.Group, k)})
	}
	return resp, nil
}

func (h *fakeHandler) Peek(ctx context.Context, req PeekRequest) (PeekResponse, error) {
	if h.peek != nil {
		return h.peek(ctx, req)
	}
	if req.Key == "absent" {
		return PeekResponse{}, nil
	}
	if err := errFor(req.Key); err != nil {
		return PeekResponse{}, err
	}
	return PeekResponse{Found: true, Value: valueFor(req.Group, req.Key)}, nil
}

// HandOver stores every item (Stored = len(Items)), or fails for group
// "nogroup".
func (h *fakeHandler) HandOver(ctx context.Context, req HandOverRequest) (HandOverResponse, error) {
	if req.Group == "nogroup" {
		return HandOverResponse{}, ErrUnknownGroup
	}
	return HandOverResponse{Stored: len(req.Items)}, nil
}

// Lease echoes the request: Member unless leaving, the base names when
// the digest is 7, the incarnation plus one.
func (h *fakeHandler) Lease(ctx context.Context, req LeaseRequest) (LeaseResponse, error) {
	if req.From == "broken" {
		return LeaseResponse{}, ErrBadRequest
	}
	resp := LeaseResponse{Member: !req.Leaving, Leased: true, Base: req.Base, Incarnation: req.Incarnation + 1}
	if req.Base == 7 {
		resp.BaseNames = []string{req.From, "b\xff"}
	}
	return resp, nil
}

func (h *fakeHandler) Write(ctx context.Context, req WriteRequest) (WriteResponse, error) {
	if h.write != nil {
		return h.write(ctx, req)
	}
	if req.Group == "nogroup" {
		return WriteResponse{}, ErrUnknownGroup
	}
	return WriteResponse{Applied: len(req.Keys) + len(req.Tags) + len(req.Items)}, nil
}

// logRecorder is a slog.Handler that keeps the messages of every record
// at Warn level or above, so tests can assert that a failure was logged.
type logRecorder struct {
	mu   sync.Mutex // guards msgs
	msgs []string
}

func (r *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, b.String())
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// waitFor polls until a record containing substr was logged, or fails the
// test after a generous deadline.
func (r *logRecorder) waitFor(t *testing.T, substr string) {
	t.Helper()
	eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, m := range r.msgs {
			if strings.Contains(m, substr) {
				return true
			}
		}
		return false
	}, "log record containing %q", substr)
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv returns the next value from ch, failing the test if none comes
// within 10s.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
	}
	t.Fatalf("timed out waiting for %s", what)
	var zero T
	return zero
}

// waitThen calls f once ch yields a value, or after 10s if it never does
// (the test then fails on its own). It is for goroutines, which must not
// call t.Fatal.
func waitThen[T any](ch <-chan T, f func()) {
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
	}
	f()
}

// startServer starts a Server on 127.0.0.1:0 that is closed at cleanup.
func startServer(t testing.TB, cfg ServerConfig, h Handler) (*Server, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(rec)
	}
	s, err := NewServer(cfg, h)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec
}

// newTestClient returns a Client closed at cleanup.
func newTestClient(t testing.TB, cfg ClientConfig) (*Client, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(rec)
	}
	c := NewClient(cfg)
	t.Cleanup(func() { c.Close() })
	return c, rec
}

// serverConns returns how many connections s is serving.
func serverConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
