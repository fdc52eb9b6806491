//go:build unix

package transport

import (
	"net"
	"syscall"
)

// rawSocket reaches a plain socket's file descriptor directly, for a caller
// that writes its own frame (see clientConn): one write system call that
// does not block, and a peek for a peer that closed the connection. It
// goes through RawConn.Control, which checks neither deadline: the write
// role makes the caller the only writer, and a reading caller's read
// deadline must not stop a write or a peek.
type rawSocket struct {
	rc syscall.RawConn
	// Bound once: a method value made per call would allocate.
	writeFn, peekFn func(fd uintptr)

	// Set around each call; only the holder of the write role writes,
	// and a peek is made before a send, so each is used by one
	// goroutine at a time (mu serializes peeks).
	buf    []byte
	n      int
	err    error
	peek   [1]byte
	closed bool
}

// newRawSocket returns a rawSocket for nc, or nil if nc is not a plain socket
// (a TLS connection must be written through its record layer, and a peek
// would see its alerts).
func newRawSocket(nc net.Conn) *rawSocket {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawSocket{rc: rc}
	w.writeFn, w.peekFn = w.doWrite, w.doPeek
	return w
}

// write writes what the socket takes of b at once and returns how much
// that was (0 when its buffer is full). The error is the socket's, other
// than that it would block.
func (w *rawSocket) write(b []byte) (int, error) {
	w.buf = b
	err := w.rc.Control(w.writeFn)
	n, werr := w.n, w.err
	w.buf, w.n, w.err = nil, 0, nil
	if err != nil {
		return 0, err
	}
	if werr == syscall.EAGAIN {
		werr = nil
	}
	return n, werr
}

func (w *rawSocket) doWrite(fd uintptr) {
	for {
		n, err := syscall.Write(int(fd), w.buf)
		if err == syscall.EINTR {
			continue
		}
		w.n, w.err = max(n, 0), err
		return
	}
}

// peerClosed reports whether the peer closed or reset the connection, as
// far as the socket shows without reading: the end of the stream is next,
// or an error is pending. Bytes waiting to be read, or none, mean open.
func (w *rawSocket) peerClosed() bool {
	if err := w.rc.Control(w.peekFn); err != nil {
		return true
	}
	closed := w.closed
	w.closed = false
	return closed
}

func (w *rawSocket) doPeek(fd uintptr) {
	for {
		n, _, err := syscall.Recvfrom(int(fd), w.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		w.closed = (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN)
		return
	}
}
