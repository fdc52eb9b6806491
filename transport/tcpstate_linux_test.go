package transport

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// tcpClosedByPeer reports whether the kernel has the TCP connection under
// nc in CLOSE_WAIT: the peer closed it, and this side has not.
func tcpClosedByPeer(t *testing.T, nc net.Conn) bool {
	t.Helper()
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	var state uint8
	cerr := rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
	})
	if cerr != nil {
		t.Fatalf("Control: %v", cerr)
	}
	const tcpCloseWait = 8 // linux/tcp_states.h
	return state == tcpCloseWait
}
