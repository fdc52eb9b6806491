package transport

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// DefaultWriteTimeout bounds one write to a connection when a config
	// leaves WriteTimeout zero.
	DefaultWriteTimeout = 10 * time.Second

	writeBufferBytes = 32 << 10
	readBufferBytes  = 32 << 10
)

// connWriter serializes frames from many goroutines onto one server
// connection (the client queues its frames to a writer goroutine instead:
// see clientConn).
// Frames are buffered and flushed by the last writer of a burst: a writer
// that sees others queued behind it leaves the flush to them, so concurrent
// requests share system calls.
type connWriter struct {
	nc      net.Conn
	timeout time.Duration
	queued  atomic.Int32 // writers waiting for or holding mu

	mu       sync.Mutex // guards bw, err, deadline
	bw       *bufio.Writer
	err      error     // sticky: the first write error
	deadline time.Time // the connection's current write deadline
}

func newConnWriter(nc net.Conn, timeout time.Duration) *connWriter {
	return &connWriter{nc: nc, timeout: timeout, bw: bufio.NewWriterSize(nc, writeBufferBytes)}
}

// write writes one complete frame. It returns the connection's first write
// error, now or from an earlier write; the caller closes the connection.
// Each write is bounded by the writer's timeout (at least half of it, as
// the deadline is only moved when less than that remains: setting it costs
// a lock in the runtime poller), so a peer that stops reading cannot hold
// the lock forever.
func (w *connWriter) write(frame []byte) error {
	w.queued.Add(1)
	w.mu.Lock()
	last := w.queued.Add(-1) == 0
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	var err error
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		err = w.nc.SetWriteDeadline(w.deadline)
	}
	if err == nil {
		_, err = w.bw.Write(frame)
	}
	if err == nil && last {
		err = w.bw.Flush()
	}
	if err != nil {
		w.err = err
	}
	w.mu.Unlock()
	return err
}

// isClosedConn reports whether err only says that the connection ended
// (closed by us, closed or reset by the peer): expected when a peer leaves
// or at shutdown, so logged at debug level rather than as an error.
func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
