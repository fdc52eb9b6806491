package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshcache/meshcache/transport/internal/wirepb"
)

// peerGetResponse is a fake peer's answer to Get request id.
func peerGetResponse(id uint64) []byte {
	b, _ := marshalFrame(nil, &wirepb.Envelope{Id: id, Body: &wirepb.Envelope_GetResponse{
		GetResponse: &wirepb.GetResponse{Value: []byte("v")},
	}}, DefaultMaxFrameBytes)
	return b
}

// TestStalledPeerDoesNotBlockCallers checks that callers wait on their own
// ctx, not on a write to a peer that stopped reading, and that requests
// given up while queued leave the stream in step.
func TestStalledPeerDoesNotBlockCallers(t *testing.T) {
	release := make(chan struct{})
	type peerResult struct {
		frames int
		err    error
	}
	result := make(chan peerResult, 1)
	addr := fakePeer(t, func(i int, nc net.Conn) {
		fr, err := peerHandshake(nc, ProtocolVersion)
		if err != nil || i > 0 {
			return
		}
		// Stalled: reads nothing until released (at the latest at
		// cleanup; the timer is only a backstop).
		stall := time.NewTimer(time.Minute)
		defer stall.Stop()
		select {
		case <-release:
		case <-stall.C:
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		// Every byte the client wrote must parse as whole frames; answer
		// the Gets.
		frames := 0
		for {
			env, err := nextEnvelope(fr)
			if err != nil {
				result <- peerResult{frames, err}
				return
			}
			frames++
			if _, ok := env.Body.(*wirepb.Envelope_GetRequest); ok {
				nc.Write(peerGetResponse(env.Id))
			}
		}
	})
	var once sync.Once
	resume := func() { once.Do(func() { close(release) }) }
	t.Cleanup(resume) // before the peer's cleanup waits for it
	c, _ := newTestClient(t, ClientConfig{WriteTimeout: time.Hour})
	c.deadGrace = time.Hour // this test is not about retiring the connection

	// Far more than the socket buffers hold, so the writer blocks.
	const callers = 40
	big := make([]byte, 1<<20)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := c.Write(ctx, addr, WriteRequest{Group: "g", Op: OpSet, Items: []SetItem{{Key: "k", Value: big}}})
			errs <- err
		}()
	}
	for range callers {
		err := recv(t, errs, "a Write to a stalled peer to return at its deadline")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Write to a stalled peer error = %v, want ErrUnavailable and DeadlineExceeded", err)
		}
	}

	resume()
	got, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "k"})
	if err != nil || string(got.Value.Value) != "v" {
		t.Errorf("Get after the peer resumed = %q, %v, want %q on the same connection", got.Value.Value, err, "v")
	}
	c.Forget(addr)
	res := recv(t, result, "the peer to read to the end")
	if !errors.Is(res.err, io.EOF) {
		t.Errorf("peer read %d frames then %v, want whole frames then io.EOF", res.frames, res.err)
	}
	if res.frames >= callers+1 {
		t.Errorf("peer read %d frames, want fewer than %d (requests given up before being written are dropped)", res.frames, callers+1)
	}
}

func TestClientDefaultTimeout(t *testing.T) {
	timeouts := make(chan time.Duration, 4)
	addr := fakePeer(t, func(_ int, nc net.Conn) {
		fr, err := peerHandshake(nc, ProtocolVersion)
		if err != nil {
			return
		}
		for { // read requests, never answer
			body, err := fr.next()
			if err != nil {
				return
			}
			var env wirepb.Envelope
			if unmarshalEnvelope(body, &env) == nil {
				timeouts <- time.Duration(env.TimeoutNanos)
			}
		}
	})
	const timeout = 150 * time.Millisecond
	c, _ := newTestClient(t, ClientConfig{DefaultTimeout: timeout})
	c.deadGrace = time.Hour
	tests := []struct {
		name string
		ctx  context.Context
		want time.Duration // the timeout the request carries, at most
	}{
		{name: "background", ctx: context.Background(), want: timeout},
		{name: "cancelable without deadline", ctx: t.Context(), want: timeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() {
				_, err := c.Get(tt.ctx, addr, GetRequest{Group: "g", Key: "k"})
				errc <- err
			}()
			if got := recv(t, timeouts, "the request"); got <= 0 || got > tt.want {
				t.Errorf("request carries timeout %v, want in (0, %v]", got, tt.want)
			}
			err := recv(t, errc, "the Get to time out")
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Get without deadline from a silent peer error = %v, want ErrUnavailable and DeadlineExceeded", err)
			}
		})
	}
}

// manualDeadline is a context with a distant deadline that the test makes
// pass, by calling expire, when it chooses.
type manualDeadline struct {
	context.Context
	deadline time.Time
	done     chan struct{}
}

func newManualDeadline() *manualDeadline {
	return &manualDeadline{Context: context.Background(), deadline: time.Now().Add(time.Hour), done: make(chan struct{})}
}

func (m *manualDeadline) Deadline() (time.Time, bool) { return m.deadline, true }
func (m *manualDeadline) Done() <-chan struct{}       { return m.done }
func (m *manualDeadline) expire()                     { close(m.done) }

func (m *manualDeadline) Err() error {
	select {
	case <-m.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestDeadPeerConnectionRetired(t *testing.T) {
	tests := []struct {
		name        string
		grace       time.Duration
		readBetween bool // a response is read after the slow request was sent
		wantConns   int32
	}{
		{name: "silent since the request", grace: 0, wantConns: 2},
		{name: "silent less than the grace", grace: time.Hour, wantConns: 1},
		{name: "answered since the request", grace: 0, readBetween: true, wantConns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			slowSeen := make(chan struct{}, 1)
			// The peer answers "fast" and never answers "slow", like a peer
			// gone without a reset.
			addr := fakePeer(t, func(_ int, nc net.Conn) {
				conns.Add(1)
				fr, err := peerHandshake(nc, ProtocolVersion)
				if err != nil {
					return
				}
				serveEnvelopes(fr, func(env *wirepb.Envelope) {
					if string(env.GetGetRequest().GetKey()) == "fast" {
						nc.Write(peerGetResponse(env.Id))
					} else {
						slowSeen <- struct{}{}
					}
				})
			})
			c, _ := newTestClient(t, ClientConfig{})
			c.deadGrace = tt.grace
			fast := func() {
				t.Helper()
				if _, err := c.Get(t.Context(), addr, GetRequest{Group: "g", Key: "fast"}); err != nil {
					t.Fatalf("Get(fast) error = %v", err)
				}
			}
			fast() // the connection is up and has answered

			ctx := newManualDeadline()
			errc := make(chan error, 1)
			go func() {
				_, err := c.Get(ctx, addr, GetRequest{Group: "g", Key: "slow"})
				errc <- err
			}()
			recv(t, slowSeen, "the slow request to reach the peer")
			if tt.readBetween {
				fast()
			}
			ctx.expire()
			if err := recv(t, errc, "the slow Get to time out"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Get(slow) error = %v, want ErrUnavailable and DeadlineExceeded", err)
			}
			fast()
			if got := conns.Load(); got != tt.wantConns {
				t.Errorf("peer accepted %d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestClientStress mixes calls, cancellations, timeouts and Forget on one
// peer: every call must end, with its own answer or an expected error.
func TestClientStress(t *testing.T) {
	h := &fakeHandler{get: func(ctx context.Context, req GetRequest) (GetResponse, error) {
		if rand.IntN(4) == 0 {
			select {
			case <-time.After(time.Duration(rand.IntN(2000)) * time.Microsecond):
			case <-ctx.Done():
				return GetResponse{}, ctx.Err()
			}
		}
		return GetResponse{Value: valueFor(req.Group, req.Key)}, nil
	}}
	s, _ := startServer(t, ServerConfig{}, h)
	c, _ := newTestClient(t, ClientConfig{})
	stop := make(chan struct{})
	var forgetter sync.WaitGroup
	forgetter.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rand.IntN(3000)) * time.Microsecond):
				c.Forget(s.Addr())
			}
		}
	})
	const workers, perWorker = 12, 150
	var ok, failed atomic.Int64
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range perWorker {
				key := fmt.Sprintf("k-%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(3000)+50)*10*time.Microsecond)
				if i%7 == 0 {
					go cancel() // races with the call
				}
				var (
					got string
					err error
				)
				if i%2 == 0 {
					var r GetResponse
					r, err = c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: key})
					got = string(r.Value.Value)
				} else {
					var m GetManyResponse
					m, err = c.GetMany(ctx, s.Addr(), GetManyRequest{Group: "g", Keys: []string{key}})
					if err == nil && len(m.Results) == 1 && m.Results[0].Key == key {
						got = string(m.Results[0].Value.Value)
					}
				}
				cancel()
				switch {
				case err == nil && got != "g/"+key:
					errs <- fmt.Errorf("call for %q got %q", key, got)
					return
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled):
					failed.Add(1)
				default:
					errs <- fmt.Errorf("call for %q: unexpected error %w", key, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := recv(t, errs, "a stress worker to finish"); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	forgetter.Wait()
	t.Logf("ok=%d failed=%d", ok.Load(), failed.Load())
	if _, err := c.Get(t.Context(), s.Addr(), GetRequest{Group: "g", Key: "after"}); err != nil {
		t.Errorf("Get after the stress error = %v", err)
	}
}
