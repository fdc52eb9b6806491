//go:build !linux

package transport

import "net"

// rawSocket is only built for Linux (it reads the kernel's TCP state): on
// other platforms callers queue their frames for the connection's writer
// goroutine, and its reader goroutine reads every frame, as on TLS
// connections.
type rawSocket struct{}

func newRawSocket(net.Conn) *rawSocket { return nil }

func (*rawSocket) write([]byte) (int, error) { panic("transport: rawSocket unavailable") }

func (*rawSocket) peerClosed() bool { panic("transport: rawSocket unavailable") }
