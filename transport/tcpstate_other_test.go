//go:build !linux

package transport

import (
	"net"
	"testing"
)

// tcpClosedByPeer is never called off Linux: callers skip first, as these
// platforms have no raw socket.
func tcpClosedByPeer(t *testing.T, _ net.Conn) bool {
	t.Fatal("tcpClosedByPeer: Linux only")
	return false
}
