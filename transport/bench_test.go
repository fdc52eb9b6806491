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
