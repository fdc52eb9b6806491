package transport

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

func TestGetRoundTrip(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	tests := []struct {
		name, group, key string
		want             GetResponse
		wantErr          []error
		notErr           error // the error must not wrap it
	}{
		{name: "value", group: "users", key: "42", want: GetResponse{Value: valueFor("users", "42")}},
		{name: "binary key", group: "g\xff", key: "\x00\xfe\xff", want: GetResponse{Value: valueFor("g\xff", "\x00\xfe\xff")}},
		{name: "not found", group: "users", key: "missing", wantErr: []error{ErrNotFound}},
		{name: "plain error is loader", group: "users", key: "broken", wantErr: []error{ErrLoader}},
		{name: "loader", group: "users", key: "loader", wantErr: []error{ErrLoader}},
		{name: "unknown group", group: "users", key: "nogroup", wantErr: []error{ErrUnknownGroup}},
		{name: "bad request", group: "users", key: "bad", wantErr: []error{ErrBadRequest}},
		{name: "overloaded", group: "users", key: "busy", wantErr: []error{ErrOverloaded}},
		{name: "wrong protocol", group: "users", key: "oldproto", wantErr: []error{ErrWrongProtocol}},
		{name: "remote deadline", group: "users", key: "slow", wantErr: []error{ErrUnavailable, context.DeadlineExceeded}},
		{name: "remote cancel", group: "users", key: "cancelled", wantErr: []error{ErrUnavailable}},
		{name: "remote closing", group: "users", key: "closing", wantErr: []error{ErrUnavailable}, notErr: ErrLoader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: tt.group, Key: tt.key})
			if len(tt.wantErr) > 0 {
				for _, want := range tt.wantErr {
					if !errors.Is(err, want) {
						t.Errorf("Get(%q) error = %v, want one wrapping %v", tt.key, err, want)
					}
				}
				if tt.notErr != nil && errors.Is(err, tt.notErr) {
					t.Errorf("Get(%q) error = %v, want one not wrapping %v", tt.key, err, tt.notErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q) error = %v", tt.key, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Get(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
		})
	}
}

func TestRemoteErrorKeepsMessage(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	_, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "broken"})
	if want := `fake: database down for "broken"`; err == nil || !contains(err.Error(), want) {
		t.Errorf("Get error = %v, want text containing %q", err, want)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Errorf("Get error = %v, must not wrap ErrUnavailable (no fallback on loader errors)", err)
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || len(s) >= len(sub) && index(s, sub) >= 0 }

func index(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestGetManyRoundTrip(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})

	got, err := c.GetMany(t.Context(), s.Addr(), GetManyRequest{Group: "g", Keys: []string{"a", "missing", "b", "broken"}})
	if err != nil {
		t.Fatalf("GetMany error = %v", err)
	}
	want := []struct {
		key string
		err error
	}{{"a", nil}, {"missing", ErrNotFound}, {"b", nil}, {"broken", ErrLoader}}
	if len(got.Results) != len(want) {
		t.Fatalf("GetMany returned %d results, want %d", len(got.Results), len(want))
	}
	for i, w := range want {
		r := got.Results[i]
		if r.Key != w.key {
			t.Errorf("Results[%d].Key = %q, want %q", i, r.Key, w.key)
		}
		if w.err != nil {
			if !errors.Is(r.Err, w.err) {
				t.Errorf("Results[%d].Err = %v, want %v", i, r.Err, w.err)
			}
			continue
		}
		if r.Err != nil || !reflect.DeepEqual(r.Value, valueFor("g", w.key)) {
			t.Errorf("Results[%d] = %+v, want value %+v", i, r, valueFor("g", w.key))
		}
	}

	_, err = c.GetMany(t.Context(), s.Addr(), GetManyRequest{Group: "nogroup", Keys: []string{"a"}})
	if !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("GetMany(nogroup) error = %v, want ErrUnknownGroup", err)
	}
	got, err = c.GetMany(t.Context(), s.Addr(), GetManyRequest{Group: "g"})
	if err != nil || len(got.Results) != 0 {
		t.Errorf("GetMany(no keys) = %+v, %v, want no results", got, err)
	}
}

func TestPeekRoundTrip(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	tests := []struct {
		key     string
		want    PeekResponse
		wantErr error
	}{
		{key: "k", want: PeekResponse{Found: true, Value: valueFor("g", "k")}},
		{key: "absent", want: PeekResponse{}},
		{key: "nogroup", wantErr: ErrUnknownGroup},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := c.Peek(t.Context(), s.Addr(), PeekRequest{Group: "g", Key: tt.key})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Peek(%q) error = %v, want %v", tt.key, err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Peek(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
		})
	}
}

func TestWriteRoundTrip(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []WriteRequest
	)
	h := &fakeHandler{write: func(_ context.Context, req WriteRequest) (WriteResponse, error) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		if req.Group == "nogroup" {
			return WriteResponse{}, ErrUnknownGroup
		}
		return WriteResponse{Applied: 7}, nil
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})

	reqs := []WriteRequest{
		{Group: "g", Op: OpInvalidate, Phase: PhaseServing, Keys: []string{"a", "b"}, Origin: "node-1", ID: 1},
		{Group: "g", Op: OpInvalidateTags, Phase: PhaseCopies, Tags: []string{"org:acme"}, Origin: "node-1", ID: 2},
		{Group: "g", Op: OpClear, Phase: PhaseServing, ID: 3},
		{Group: "g", Op: OpSet, Phase: PhaseServing, Items: []SetItem{
			{Key: "a", Value: []byte("va"), TTL: time.Minute, Tags: []string{"t1", "t2"}},
			{Key: "b", Value: []byte("vb")},
		}, ID: 4},
		{Group: "g", Op: OpSetIfAbsent, Items: []SetItem{{Key: "c", Value: []byte("vc"), TTL: time.Hour}}, ID: 5},
		{Group: "g", Op: OpExpire, Phase: PhaseServing, Keys: []string{"a"}, TTL: 5 * time.Second, ID: 6},
	}
	for _, req := range reqs {
		t.Run(req.Op.String(), func(t *testing.T) {
			got, err := c.Write(t.Context(), s.Addr(), req)
			if err != nil {
				t.Fatalf("Write(%v) error = %v", req.Op, err)
			}
			if got.Applied != 7 {
				t.Errorf("Write(%v).Applied = %d, want 7", req.Op, got.Applied)
			}
			mu.Lock()
			last := seen[len(seen)-1]
			mu.Unlock()
			if !reflect.DeepEqual(last, req) {
				t.Errorf("handler saw %+v, want %+v", last, req)
			}
		})
	}

	_, err := c.Write(t.Context(), s.Addr(), WriteRequest{Group: "nogroup", Op: OpClear})
	if !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Write(nogroup) error = %v, want ErrUnknownGroup", err)
	}
	for _, bad := range []WriteRequest{{Group: "g"}, {Group: "g", Op: 99}, {Group: "g", Op: OpClear, Phase: 3}} {
		if _, err := c.Write(t.Context(), s.Addr(), bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("Write(op %v, phase %v) error = %v, want ErrBadRequest", bad.Op, bad.Phase, err)
		}
	}
}

func TestConcurrentRequestsShareOneConnection(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	const workers, perWorker = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				key := fmt.Sprintf("k-%d-%d", w, i)
				var err error
				switch i % 3 {
				case 0:
					var got GetResponse
					got, err = c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: key})
					if err == nil && string(got.Value.Value) != "g/"+key {
						err = fmt.Errorf("Get(%q) = %q, want %q", key, got.Value.Value, "g/"+key)
					}
				case 1:
					var got GetManyResponse
					got, err = c.GetMany(t.Context(), s.Addr(), GetManyRequest{Group: "g", Keys: []string{key, "missing"}})
					if err == nil && (len(got.Results) != 2 || got.Results[0].Key != key || !errors.Is(got.Results[1].Err, ErrNotFound)) {
						err = fmt.Errorf("GetMany(%q) = %+v", key, got)
					}
				case 2:
					_, err = c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "missing"})
					if errors.Is(err, ErrNotFound) {
						err = nil
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := serverConns(s); n != 1 {
		t.Errorf("server has %d connections, want 1 shared by all requests", n)
	}
}

// blockingHandler returns a handler whose Get signals entered and then
// blocks until release is closed or its ctx ends.
func blockingHandler(entered chan<- struct{}, release <-chan struct{}) *fakeHandler {
	return &fakeHandler{get: func(ctx context.Context, req GetRequest) (GetResponse, error) {
		if req.Key != "block" {
			return GetResponse{Value: valueFor(req.Group, req.Key)}, nil
		}
		select { // never blocks past ctx, even if nobody drains entered
		case entered <- struct{}{}:
		case <-ctx.Done():
			return GetResponse{}, ctx.Err()
		}
		select {
		case <-release:
			return GetResponse{Value: Value{Value: []byte("late")}}, nil
		case <-ctx.Done():
			return GetResponse{}, ctx.Err()
		}
	}}
}

func TestClientContext(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s, _ := startServer(t, ServerConfig{}, blockingHandler(entered, release))
	c, _ := newTestClient(t, ClientConfig{})
	defer close(release)

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() { waitThen(entered, cancel) }()
		_, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "block"})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Get with cancelled ctx error = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		// The handler may or may not have started (a request whose ctx ends
		// before it is written is dropped): no wait on entered, which the
		// handler never blocks on.
		_, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "block"})
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get past deadline error = %v, want ErrUnavailable and DeadlineExceeded", err)
		}
	})
	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "k"}); !errors.Is(err, context.Canceled) {
			t.Errorf("Get with done ctx error = %v, want context.Canceled", err)
		}
	})
	// Abandoned requests leave the connection usable.
	got, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "k"})
	if err != nil || string(got.Value.Value) != "g/k" {
		t.Errorf("Get after abandoned requests = %q, %v, want %q", got.Value.Value, err, "g/k")
	}
}

func TestLateResponseIsDropped(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s, _ := startServer(t, ServerConfig{}, blockingHandler(entered, release))
	c, _ := newTestClient(t, ClientConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { waitThen(entered, cancel) }()
	if _, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "block"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get error = %v, want context.Canceled", err)
	}
	close(release) // the handler now answers a request nobody waits for
	for i := range 20 {
		key := fmt.Sprint("after-", i)
		got, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: key})
		if err != nil || string(got.Value.Value) != "g/"+key {
			t.Fatalf("Get(%q) = %q, %v, want %q", key, got.Value.Value, err, "g/"+key)
		}
	}
}

func TestServerDeadlinePropagation(t *testing.T) {
	type seen struct {
		deadline time.Time
		ok       bool
	}
	got := make(chan seen, 1)
	h := &fakeHandler{get: func(ctx context.Context, _ GetRequest) (GetResponse, error) {
		d, ok := ctx.Deadline()
		got <- seen{d, ok}
		return GetResponse{}, nil
	}}
	s, _ := startServer(t, ServerConfig{DefaultTimeout: 7 * time.Minute}, h)
	c, _ := newTestClient(t, ClientConfig{DefaultTimeout: 5 * time.Minute})

	tests := []struct {
		name    string
		timeout time.Duration // 0: no client deadline
		raw     bool          // send a request without a timeout on a raw connection
		max     time.Duration
		min     time.Duration
	}{
		{name: "client deadline", timeout: 3 * time.Minute, max: 3 * time.Minute, min: time.Minute},
		{name: "client default", max: 5 * time.Minute, min: 4 * time.Minute},
		{name: "server default", raw: true, max: 7 * time.Minute, min: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			start := time.Now()
			if tt.raw {
				nc := rawConn(t, s.Addr(), true)
				req := &wirepb.Envelope{Id: 1, Body: &wirepb.Envelope_GetRequest{GetRequest: &wirepb.GetRequest{Key: []byte("k")}}}
				if _, err := nc.Write(encodeFrame(t, req)); err != nil {
					t.Fatalf("write: %v", err)
				}
			} else if _, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "k"}); err != nil {
				t.Fatalf("Get error = %v", err)
			}
			sv := recv(t, got, "the handler to run")
			if !sv.ok {
				t.Fatalf("handler ctx has no deadline, want one")
			}
			// Bounds are loose: only the order of magnitude is checked (the
			// server measures from its own receive time, so it may exceed max a little).
			if left := sv.deadline.Sub(start); left > tt.max+time.Minute || left < tt.min {
				t.Errorf("handler deadline %v after the call, want in [%v, %v]", left, tt.min, tt.max)
			}
		})
	}
}

func TestLeaseRoundTrip(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	tests := []struct {
		req  LeaseRequest
		want LeaseResponse
	}{
		{LeaseRequest{From: "a", Incarnation: 1 << 60, Base: 3}, LeaseResponse{Member: true, Leased: true, Base: 3, Incarnation: 1<<60 + 1}},
		{LeaseRequest{From: "a\x00", Base: 7}, LeaseResponse{Member: true, Leased: true, Base: 7, Incarnation: 1, BaseNames: []string{"a\x00", "b\xff"}}},
		{LeaseRequest{From: "a", Leaving: true}, LeaseResponse{Leased: true, Incarnation: 1}},
	}
	for _, tt := range tests {
		got, err := c.Lease(t.Context(), s.Addr(), tt.req)
		if err != nil {
			t.Fatalf("Lease(%+v) error = %v", tt.req, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lease(%+v) = %+v, want %+v", tt.req, got, tt.want)
		}
	}
	if _, err := c.Lease(t.Context(), s.Addr(), LeaseRequest{From: "broken"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Lease(broken) error = %v, want ErrBadRequest", err)
	}
}

// TestWriteViewRoundTrip: the writer's view digest reaches the handler, and
// the responder's members and settle wait come back.
func TestWriteViewRoundTrip(t *testing.T) {
	members := []Member{{Name: "a", RPCAddr: "127.0.0.1:1", Incarnation: 5}, {Name: "b\xff", RPCAddr: "[::1]:2", Incarnation: 1 << 63}}
	h := &fakeHandler{write: func(ctx context.Context, req WriteRequest) (WriteResponse, error) {
		if req.View != 42 {
			return WriteResponse{}, nil
		}
		return WriteResponse{Applied: 1, Members: members, Settle: 1500 * time.Millisecond, SettleMember: "c"}, nil
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	got, err := c.Write(t.Context(), s.Addr(), WriteRequest{Group: "g", Op: OpClear, View: 42})
	if err != nil {
		t.Fatal(err)
	}
	want := WriteResponse{Applied: 1, Members: members, Settle: 1500 * time.Millisecond, SettleMember: "c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Write = %+v, want %+v", got, want)
	}
	if got, err := c.Write(t.Context(), s.Addr(), WriteRequest{Group: "g", Op: OpClear}); err != nil || !reflect.DeepEqual(got, WriteResponse{}) {
		t.Errorf("Write without a view = %+v, %v, want an empty response", got, err)
	}
}

func TestHandOverRoundTrip(t *testing.T) {
	s, _ := startServer(t, ServerConfig{}, &fakeHandler{})
	c, _ := newTestClient(t, ClientConfig{})
	req := HandOverRequest{Group: "g", From: "n2", Items: []SetItem{
		{Key: "k", Value: []byte("v"), TTL: time.Minute, Tags: []string{"t"}},
		{Key: "k2", TTL: 0},
	}}
	got, err := c.HandOver(t.Context(), s.Addr(), req)
	if err != nil || got.Stored != 2 {
		t.Errorf("HandOver = %+v, %v, want 2 stored", got, err)
	}
	if _, err := c.HandOver(t.Context(), s.Addr(), HandOverRequest{Group: "nogroup"}); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("HandOver(nogroup) error = %v, want ErrUnknownGroup", err)
	}
}

// TestWriteBatchRoundTrip: a batch reaches the handler in order, each write
// as it was sent, and each gets its own result: a failing write does not
// fail the others.
func TestWriteBatchRoundTrip(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []WriteRequest
	)
	h := &fakeHandler{write: func(_ context.Context, req WriteRequest) (WriteResponse, error) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		switch req.Group {
		case "nogroup":
			return WriteResponse{}, ErrUnknownGroup
		case "broken":
			return WriteResponse{}, errors.New("disk on fire")
		}
		return WriteResponse{Applied: len(req.Keys), Members: []Member{{Name: "m", RPCAddr: "a:1", Incarnation: 9}}, Settle: time.Second, SettleMember: "x"}, nil
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	reqs := []WriteRequest{
		{Group: "g", Op: OpInvalidate, Phase: PhaseServing, Keys: []string{"a", "b"}, Origin: "n1", ID: 1, View: 42},
		{Group: "nogroup", Op: OpClear, Phase: PhaseServing, ID: 2},
		{Group: "g", Op: OpSet, Phase: PhaseCopies, Items: []SetItem{{Key: "a", Value: []byte("va"), TTL: time.Minute, Tags: []string{"t"}}}, ID: 3},
		{Group: "broken", Op: OpInvalidateTags, Phase: PhaseServing, Tags: []string{"t"}, ID: 4},
		{Group: "g", Op: OpInvalidate, Phase: PhaseCopies, Keys: []string{"c"}, ID: 5},
	}
	results, err := c.WriteBatch(t.Context(), s.Addr(), reqs)
	if err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if len(results) != len(reqs) {
		t.Fatalf("%d results for %d writes", len(results), len(reqs))
	}
	mu.Lock()
	if !reflect.DeepEqual(seen, reqs) {
		t.Errorf("handler saw %+v, want %+v", seen, reqs)
	}
	mu.Unlock()
	for i, r := range results {
		switch reqs[i].Group {
		case "nogroup":
			if !errors.Is(r.Err, ErrUnknownGroup) {
				t.Errorf("result %d: %v, want ErrUnknownGroup", i, r.Err)
			}
		case "broken":
			if !errors.Is(r.Err, ErrLoader) {
				t.Errorf("result %d: %v, want ErrLoader (an internal error)", i, r.Err)
			}
		default:
			want := WriteResponse{Applied: len(reqs[i].Keys), Members: []Member{{Name: "m", RPCAddr: "a:1", Incarnation: 9}}, Settle: time.Second, SettleMember: "x"}
			if r.Err != nil || !reflect.DeepEqual(r.WriteResponse, want) {
				t.Errorf("result %d: %+v, %v; want %+v", i, r.WriteResponse, r.Err, want)
			}
		}
	}
	if _, err := c.WriteBatch(t.Context(), s.Addr(), []WriteRequest{reqs[0], {Group: "g", Op: 99}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("WriteBatch with an undefined op: %v, want ErrBadRequest", err)
	}
	if rs, err := c.WriteBatch(t.Context(), s.Addr(), nil); rs != nil || err != nil {
		t.Errorf("empty WriteBatch = %v, %v", rs, err)
	}
}

// TestTraceRoundTrip: a request's trace context reaches the handler (Get
// takes the generic encoding then), and an untraced Get still takes the
// fast path.
func TestTraceRoundTrip(t *testing.T) {
	trace := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "v=1"}
	var (
		mu   sync.Mutex
		seen []map[string]string
	)
	note := func(m map[string]string) {
		mu.Lock()
		seen = append(seen, m)
		mu.Unlock()
	}
	h := &fakeHandler{
		get: func(_ context.Context, req GetRequest) (GetResponse, error) {
			note(req.Trace)
			return GetResponse{Value: valueFor(req.Group, req.Key)}, nil
		},
		getMany: func(_ context.Context, req GetManyRequest) (GetManyResponse, error) {
			note(req.Trace)
			return GetManyResponse{}, nil
		},
		write: func(_ context.Context, req WriteRequest) (WriteResponse, error) {
			note(req.Trace)
			return WriteResponse{}, nil
		},
	}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	ctx := t.Context()
	if resp, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "k", Trace: trace}); err != nil || string(resp.Value.Value) != "g/k" {
		t.Fatalf("traced Get = %q, %v", resp.Value.Value, err)
	}
	if _, err := c.GetMany(ctx, s.Addr(), GetManyRequest{Group: "g", Keys: []string{"k"}, Trace: trace}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(ctx, s.Addr(), WriteRequest{Group: "g", Op: OpClear, Trace: trace}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []map[string]string{trace, trace, trace, nil}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("handlers saw traces %v, want %v", seen, want)
	}
}
