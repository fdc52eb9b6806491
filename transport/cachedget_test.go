package transport

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// cachingHandler answers Gets of "hit" from GetCached, the others from Get,
// counting the calls of Get.
type cachingHandler struct {
	fakeHandler
	gets atomic.Int64
}

func (h *cachingHandler) GetCached(req GetRequest) (GetResponse, bool) {
	if req.Key != "hit" {
		return GetResponse{}, false
	}
	return GetResponse{Value: valueFor(req.Group, "cached")}, true
}

func (h *cachingHandler) Get(ctx context.Context, req GetRequest) (GetResponse, error) {
	h.gets.Add(1)
	return h.fakeHandler.Get(ctx, req)
}

func TestCachedGetter(t *testing.T) {
	h := &cachingHandler{}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	ctx := context.Background()
	tests := []struct {
		key, want string
		wantErr   error
		gets      int64 // calls of Get so far
	}{
		{"hit", "g/cached", nil, 0},
		{"miss", "g/miss", nil, 1},
		{"missing", "", ErrNotFound, 2},
		{"hit", "g/cached", nil, 2},
	}
	for _, tt := range tests {
		resp, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: tt.key})
		if !errors.Is(err, tt.wantErr) || string(resp.Value.Value) != tt.want {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.key, resp.Value.Value, err, tt.want, tt.wantErr)
		}
		if got := h.gets.Load(); got != tt.gets {
			t.Errorf("after Get(%q): handler Get called %d times, want %d", tt.key, got, tt.gets)
		}
	}
}

func TestGetWithin(t *testing.T) {
	release := make(chan struct{})
	h := &fakeHandler{get: func(ctx context.Context, req GetRequest) (GetResponse, error) {
		if req.Key == "stuck" {
			<-release // ignores ctx: only the client's timer can end the call
		}
		return GetResponse{Value: valueFor(req.Group, req.Key)}, nil
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	defer close(release)
	ctx := context.Background()

	if resp, err := c.GetWithin(ctx, s.Addr(), GetRequest{Group: "g", Key: "k"}, time.Minute); err != nil || string(resp.Value.Value) != "g/k" {
		t.Errorf("GetWithin(k) = %q, %v; want %q", resp.Value.Value, err, "g/k")
	}
	start := time.Now()
	_, err := c.GetWithin(ctx, s.Addr(), GetRequest{Group: "g", Key: "stuck"}, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetWithin(stuck, 50ms) = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("GetWithin(stuck, 50ms) returned after %v", d)
	}
	// A ctx deadline earlier than the timeout wins.
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.GetWithin(dctx, s.Addr(), GetRequest{Group: "g", Key: "stuck"}, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetWithin(stuck) with a 50ms ctx = %v, want an error wrapping context.DeadlineExceeded", err)
	}
}

// quickHandler applies writes of group "quick" in WriteQuick (panicking for
// group "panic"), the others in Write, counting both.
type quickHandler struct {
	fakeHandler
	quick, slow atomic.Int64
}

func (h *quickHandler) WriteQuick(req WriteRequest) (WriteResponse, bool, error) {
	switch req.Group {
	case "quick":
		h.quick.Add(1)
		if len(req.Keys) == 0 {
			return WriteResponse{}, true, ErrBadRequest
		}
		return WriteResponse{Applied: len(req.Keys)}, true, nil
	case "panic":
		panic("quick write exploded")
	}
	return WriteResponse{}, false, nil
}

func (h *quickHandler) Write(ctx context.Context, req WriteRequest) (WriteResponse, error) {
	h.slow.Add(1)
	return WriteResponse{Applied: 100}, nil
}

func TestQuickWriter(t *testing.T) {
	h := &quickHandler{}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	ctx := context.Background()
	tests := []struct {
		group       string
		keys        []string
		applied     int
		wantErr     error
		quick, slow int64 // calls so far
	}{
		{"quick", []string{"a", "b"}, 2, nil, 1, 0},
		{"other", []string{"a"}, 100, nil, 1, 1},
		{"quick", nil, 0, ErrBadRequest, 2, 1},
		{"panic", []string{"a"}, 0, ErrLoader, 2, 1}, // a panic is an internal error
	}
	for _, tt := range tests {
		resp, err := c.Write(ctx, s.Addr(), WriteRequest{Group: tt.group, Op: OpInvalidate, Phase: PhaseServing, Keys: tt.keys})
		if !errors.Is(err, tt.wantErr) || resp.Applied != tt.applied {
			t.Errorf("Write(%s) = %d, %v; want %d, %v", tt.group, resp.Applied, err, tt.applied, tt.wantErr)
		}
		if q, sl := h.quick.Load(), h.slow.Load(); q != tt.quick || sl != tt.slow {
			t.Errorf("after Write(%s): WriteQuick %d, Write %d calls; want %d, %d", tt.group, q, sl, tt.quick, tt.slow)
		}
	}
	// The connection survived the panic.
	if _, err := c.Write(ctx, s.Addr(), WriteRequest{Group: "quick", Op: OpInvalidate, Phase: PhaseServing, Keys: []string{"a"}}); err != nil {
		t.Errorf("Write after a panic: %v", err)
	}
}

// TestQuickWriterBatch: a batch's writes are applied by WriteQuick in order
// until one needs Write; that one and the rest go to Write, and the answer
// holds every result in order.
func TestQuickWriterBatch(t *testing.T) {
	h := &quickHandler{}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	w := func(group string, keys ...string) WriteRequest {
		return WriteRequest{Group: group, Op: OpInvalidate, Phase: PhaseServing, Keys: keys}
	}
	results, err := c.WriteBatch(context.Background(), s.Addr(), []WriteRequest{
		w("quick", "a"), w("quick", "a", "b"), w("panic", "a"), w("other", "a"), w("quick", "a"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{1, 2, 0, 100, 100} // the last goes to Write with the one before it
	for i, r := range results {
		if r.Applied != want[i] {
			t.Errorf("result %d: applied %d (%v), want %d", i, r.Applied, r.Err, want[i])
		}
	}
	if !errors.Is(results[2].Err, ErrLoader) {
		t.Errorf("the panicking write: %v, want ErrLoader", results[2].Err)
	}
	if q, sl := h.quick.Load(), h.slow.Load(); q != 2 || sl != 2 {
		t.Errorf("WriteQuick %d, Write %d calls; want 2, 2", q, sl)
	}
}
