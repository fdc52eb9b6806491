package transport

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchParallelism is the number of goroutines of the parallel benchmarks.
const benchParallelism = 16

// benchValue is the 1 KiB value both round-trip benchmarks move.
var benchValue = bytes.Repeat([]byte("v"), 1024)

// fixedHandler answers every Get with benchValue.
type fixedHandler struct{ fakeHandler }

func (fixedHandler) Get(context.Context, GetRequest) (GetResponse, error) {
	return GetResponse{Value: Value{Value: benchValue, TTL: 1e9}}, nil
}

// setParallelism makes RunParallel use benchParallelism goroutines in all
// (SetParallelism multiplies by GOMAXPROCS).
func setParallelism(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism(max(1, (benchParallelism+procs-1)/procs))
}

// BenchmarkGetRoundTrip measures a Get through Client and Server on
// loopback, request and response fully encoded, handler returning a fixed
// 1 KiB value. Compare with BenchmarkBareTCPRoundTrip.
func BenchmarkGetRoundTrip(b *testing.B) {
	quiet := slog.New(slog.DiscardHandler)
	s, _ := startServer(b, ServerConfig{Logger: quiet}, &fixedHandler{})
	c, _ := newTestClient(b, ClientConfig{Logger: quiet})
	req := GetRequest{Group: "users", Key: "user:1234567890"}
	ctx := context.Background()
	if _, err := c.Get(ctx, s.Addr(), req); err != nil {
		b.Fatal(err)
	}

	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Get(ctx, s.Addr(), req)
			if err != nil || len(resp.Value.Value) != len(benchValue) {
				b.Fatalf("Get = %d bytes, %v", len(resp.Value.Value), err)
			}
		}
	})
	b.Run("parallel16", func(b *testing.B) {
		b.ReportAllocs()
		setParallelism(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(ctx, s.Addr(), req)
				if err != nil || len(resp.Value.Value) != len(benchValue) {
					b.Errorf("Get = %d bytes, %v", len(resp.Value.Value), err)
					return
				}
			}
		})
	})
}

// BenchmarkLiveness measures what ClientConfig.SilenceTimeout costs, off
// and on (100ms), reporting the pings sent per request:
//
//   - idle: sequential Gets answered at once, then the connection is left
//     idle for 3×SilenceTimeout (not timed): no ping is due, ever.
//   - busy-fast: 16 concurrent Gets answered at once, as
//     BenchmarkGetRoundTrip/parallel16: answers keep arriving, no ping.
//   - busy-slow: 64 concurrent Gets whose handler takes 50ms, half of
//     SilenceTimeout, so that a connection waiting for a burst of answers
//     is due a ping (after 33ms without any): pings cost a fraction of a
//     request.
func BenchmarkLiveness(b *testing.B) {
	const silence = 100 * time.Millisecond
	quiet := slog.New(slog.DiscardHandler)
	req := GetRequest{Group: "users", Key: "user:1234567890"}
	ctx := context.Background()
	fast, _ := startServer(b, ServerConfig{Logger: quiet}, &fixedHandler{})
	slow, _ := startServer(b, ServerConfig{Logger: quiet}, &fakeHandler{get: func(ctx context.Context, _ GetRequest) (GetResponse, error) {
		t := time.NewTimer(silence / 2)
		defer t.Stop()
		select {
		case <-t.C:
			return GetResponse{Value: Value{Value: benchValue}}, nil
		case <-ctx.Done():
			return GetResponse{}, ctx.Err()
		}
	}})
	modes := []struct {
		name    string
		silence time.Duration
	}{{"off", 0}, {"on", silence}}

	// client returns a connected client for addr.
	client := func(b *testing.B, addr string, silence time.Duration) *Client {
		c, _ := newTestClient(b, ClientConfig{Logger: quiet, SilenceTimeout: silence})
		if _, err := c.Get(ctx, addr, req); err != nil {
			b.Fatal(err)
		}
		return c
	}
	get := func(b *testing.B, c *Client, addr string) bool {
		resp, err := c.Get(ctx, addr, req)
		if err != nil || len(resp.Value.Value) != len(benchValue) {
			b.Errorf("Get = %d bytes, %v", len(resp.Value.Value), err)
			return false
		}
		return true
	}
	parallel := func(b *testing.B, addr string, silence time.Duration, goroutines int) {
		c := client(b, addr, silence)
		pings := c.pings.Load()
		b.ReportAllocs()
		procs := runtime.GOMAXPROCS(0)
		b.SetParallelism(max(1, (goroutines+procs-1)/procs))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !get(b, c, addr) {
					return
				}
			}
		})
		b.ReportMetric(float64(c.pings.Load()-pings)/float64(b.N), "pings/op")
	}

	for _, m := range modes {
		b.Run("idle/"+m.name, func(b *testing.B) {
			c := client(b, fast.Addr(), m.silence)
			pings := c.pings.Load()
			b.ReportAllocs()
			for b.Loop() {
				if !get(b, c, fast.Addr()) {
					return
				}
			}
			time.Sleep(3 * silence) // idle; b.Loop stopped the timer
			b.ReportMetric(float64(c.pings.Load()-pings)/float64(b.N), "pings/op")
		})
	}
	for _, m := range modes {
		b.Run("busy-fast/"+m.name, func(b *testing.B) { parallel(b, fast.Addr(), m.silence, 16) })
	}
	for _, m := range modes {
		b.Run("busy-slow/"+m.name, func(b *testing.B) { parallel(b, slow.Addr(), m.silence, 64) })
	}
}

// BenchmarkBareTCPRoundTrip is the floor for BenchmarkGetRoundTrip: a plain
// TCP echo on loopback of the same sizes (a 40-byte request, a 1 KiB
// response), no framing or encoding. The parallel variant gives each
// goroutine its own connection.
func BenchmarkBareTCPRoundTrip(b *testing.B) {
	const reqLen = 40
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				req := make([]byte, reqLen)
				for {
					if _, err := io.ReadFull(nc, req); err != nil {
						return
					}
					if _, err := nc.Write(benchValue); err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	roundTrip := func(nc net.Conn, req, resp []byte) error {
		if _, err := nc.Write(req); err != nil {
			return err
		}
		_, err := io.ReadFull(nc, resp)
		return err
	}
	dial := func(b *testing.B) net.Conn {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
		}
		return nc
	}

	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		nc := dial(b)
		if nc == nil {
			return
		}
		defer nc.Close()
		req, resp := make([]byte, reqLen), make([]byte, len(benchValue))
		for b.Loop() {
			if err := roundTrip(nc, req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel16", func(b *testing.B) {
		b.ReportAllocs()
		setParallelism(b)
		b.RunParallel(func(pb *testing.PB) {
			nc := dial(b)
			if nc == nil {
				return
			}
			defer nc.Close()
			req, resp := make([]byte, reqLen), make([]byte, len(benchValue))
			for pb.Next() {
				if err := roundTrip(nc, req, resp); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
