package peers

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// faultyTransport wraps memberlist's transport and, while dropOut is set,
// silently drops every packet this node sends and fails every dial: the node
// still hears the cluster but cannot answer it, like a one-way partition.
type faultyTransport struct {
	memberlist.NodeAwareTransport
	dropOut atomic.Bool
}

var _ memberlist.NodeAwareTransport = (*faultyTransport)(nil)

var errFault = errors.New("fault injection: outbound traffic dropped")

func (f *faultyTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if f.dropOut.Load() {
		return time.Now(), nil
	}
	return f.NodeAwareTransport.WriteTo(b, addr)
}

func (f *faultyTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if f.dropOut.Load() {
		return time.Now(), nil
	}
	return f.NodeAwareTransport.WriteToAddress(b, addr)
}

func (f *faultyTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if f.dropOut.Load() {
		return nil, errFault
	}
	return f.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (f *faultyTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if f.dropOut.Load() {
		return nil, errFault
	}
	return f.NodeAwareTransport.DialAddressTimeout(addr, timeout)
}
