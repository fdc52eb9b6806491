package transport

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawSocket reaches a plain socket's file descriptor directly, for a caller
// that writes its own frame (see clientConn): one write system call that
// does not block, and a look at the connection's state for a peer that
// closed it. It goes through RawConn.Control, which heeds neither deadline:
// the write role makes the caller the only writer, and a reading caller's
// read deadline must not stop a write.
type rawSocket struct {
	rc syscall.RawConn
	// Bound once: a method value made per call would allocate.
	writeFn, stateFn func(fd uintptr)

	// Set around each call: only the holder of the write role writes,
	// and cc.mu serializes the state checks.
	buf    []byte
	n      int
	err    error
	closed bool
}

// newRawSocket returns a rawSocket for nc, or nil if nc is not a plain
// socket (a TLS connection must be written through its record layer).
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
	w.writeFn, w.stateFn = w.doWrite, w.doState
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

// peerClosed reports whether the peer closed or reset the connection: the
// kernel's TCP state (TCP_INFO) is no longer established. Unlike a peek at
// the next byte, this sees a close behind answers nobody read yet.
func (w *rawSocket) peerClosed() bool {
	if err := w.rc.Control(w.stateFn); err != nil {
		return true
	}
	closed := w.closed
	w.closed = false
	return closed
}

// tcpEstablished is TCP_ESTABLISHED in Linux's tcp_states.h.
const tcpEstablished = 1

func (w *rawSocket) doState(fd uintptr) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	w.closed = err != nil || info.State != tcpEstablished
}
