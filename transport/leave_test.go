package transport

import (
	"context"
	"errors"
	"net"
	"testing"
)

// TestGetOrLeave checks that a caller that leaves a Get gets a
// PendingGet at once, whether the request was sent or still waiting for
// its connection, and that Wait then returns the answer, or the error of
// the ctx the request is bounded by.
func TestGetOrLeave(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	s, _ := startServer(t, ServerConfig{}, blockingHandler(entered, release))
	c, _ := newTestClient(t, ClientConfig{})
	ctx := t.Context()

	t.Run("answered", func(t *testing.T) {
		resp, pending, err := c.GetOrLeave(ctx, s.Addr(), GetRequest{Group: "g", Key: "k"}, 0, make(chan struct{}))
		if err != nil || pending != nil || string(resp.Value.Value) != "g/k" {
			t.Errorf("GetOrLeave = %q, %v, %v; want %q, no PendingGet", resp.Value.Value, pending, err, "g/k")
		}
	})
	t.Run("left after sending", func(t *testing.T) {
		leave := make(chan struct{})
		go func() { waitThen(entered, func() { close(leave) }) }()
		_, pending, err := c.GetOrLeave(ctx, s.Addr(), GetRequest{Group: "g", Key: "block"}, 0, leave)
		if err != nil || pending == nil {
			t.Fatalf("GetOrLeave after leave = %v, %v; want a PendingGet", pending, err)
		}
		release <- struct{}{}
		resp, err := pending.Wait(ctx)
		if err != nil || string(resp.Value.Value) != "late" {
			t.Errorf("Wait = %q, %v; want %q", resp.Value.Value, err, "late")
		}
	})
	t.Run("ctx ends after leaving", func(t *testing.T) {
		leave := make(chan struct{})
		rctx, cancel := context.WithCancel(ctx)
		go func() { waitThen(entered, func() { close(leave) }) }()
		_, pending, err := c.GetOrLeave(rctx, s.Addr(), GetRequest{Group: "g", Key: "block"}, 0, leave)
		if err != nil || pending == nil {
			t.Fatalf("GetOrLeave after leave = %v, %v; want a PendingGet", pending, err)
		}
		cancel()
		if _, err := pending.Wait(rctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Wait with its ctx cancelled = %v, want context.Canceled", err)
		}
		// The abandoned request leaves the connection usable.
		if resp, err := c.Get(ctx, s.Addr(), GetRequest{Group: "g", Key: "k2"}); err != nil || string(resp.Value.Value) != "g/k2" {
			t.Errorf("Get after an abandoned PendingGet = %q, %v; want %q", resp.Value.Value, err, "g/k2")
		}
	})
	t.Run("left while dialing", func(t *testing.T) {
		// The peer answers the preface only once the caller has left.
		left := make(chan struct{})
		addr := fakePeer(t, func(_ int, nc net.Conn) {
			waitThen(left, func() {})
			fr, err := peerHandshake(nc, ProtocolVersion)
			if err != nil {
				return
			}
			if id := readRequestID(fr); id != 0 {
				nc.Write(peerGetResponse(id))
			}
		})
		leave := make(chan struct{})
		close(leave)
		_, pending, err := c.GetOrLeave(ctx, addr, GetRequest{Group: "g", Key: "k"}, 0, leave)
		close(left)
		if err != nil || pending == nil {
			t.Fatalf("GetOrLeave with leave closed = %v, %v; want a PendingGet", pending, err)
		}
		resp, err := pending.Wait(ctx)
		if err != nil || string(resp.Value.Value) != "v" {
			t.Errorf("Wait = %q, %v; want %q", resp.Value.Value, err, "v")
		}
	})
}
