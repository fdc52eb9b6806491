//go:build !unix

package transport

import "net"

// rawSocket is not available on this platform: callers queue their frames
// for the connection's writer goroutine, and its reader goroutine reads
// every frame.
type rawSocket struct{}

func newRawSocket(net.Conn) *rawSocket { return nil }

func (*rawSocket) write([]byte) (int, error) { panic("transport: rawSocket unavailable") }

func (*rawSocket) peerClosed() bool { panic("transport: rawSocket unavailable") }
