//go:build unix

package transport

import (
	"net"
	"syscall"
)

// rawWriter writes to a socket without blocking, for a caller that writes
// its own frame (see clientConn): it makes one write system call and
// reports what the socket took. Only the holder of the connection's write
// role uses it.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // do, bound once: a method value per call would allocate
	buf []byte
	n   int
	err error
}

// newRawWriter returns a rawWriter for nc, or nil if nc is not a plain
// socket (a TLS connection must be written through its record layer).
func newRawWriter(nc net.Conn) *rawWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = w.do
	return w
}

// write writes what the socket takes of b at once and returns how much
// that was (0 when its buffer is full). The error is the socket's, other
// than that it would block.
func (w *rawWriter) write(b []byte) (int, error) {
	w.buf = b
	err := w.rc.Write(w.fn)
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

func (w *rawWriter) do(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), w.buf)
		if err == syscall.EINTR {
			continue
		}
		w.n, w.err = max(n, 0), err
		return true
	}
}
