//go:build !unix

package transport

import "net"

// rawWriter is not available on this platform: callers always queue their
// frames for the connection's writer goroutine.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (*rawWriter) write([]byte) (int, error) { panic("transport: rawWriter unavailable") }
