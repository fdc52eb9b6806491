// Package leaktest is the TestMain of the packages whose tests run
// memberlist: it fails the tests when goroutines outlive them.
package leaktest

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs the tests of m, then waits (at most 15 s) for memberlist's own
// goroutines to notice their shutdown: some of them (probes, stream
// handlers, suspicion timers) outlive Shutdown by up to a probe interval or
// a TCP timeout. It then fails, and exits non-zero, if any goroutine other
// than the testing package's is still running.
func Main(m *testing.M) {
	goleak.VerifyTestMain(settled{m})
}

type settled struct{ m *testing.M }

func (s settled) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("hashicorp/memberlist")) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return code
}
