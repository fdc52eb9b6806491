package e2e

import (
	"os/exec"
	"syscall"
)

// orphanProof makes the kernel kill a node if the test process dies without
// running its cleanups (a panic on -timeout, a kill).
func orphanProof(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
