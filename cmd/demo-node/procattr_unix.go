//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// childProcAttr puts a child in a process group of its own, so that a
// Ctrl-C in the terminal reaches the supervisor only, which then stops the
// children in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks p to stop gracefully.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
