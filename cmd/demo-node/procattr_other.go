//go:build !unix

package main

import (
	"os"
	"syscall"
)

// childProcAttr has nothing to set here.
func childProcAttr() *syscall.SysProcAttr { return nil }

// terminate stops p: there is no SIGTERM to send here.
func terminate(p *os.Process) error { return p.Kill() }
