package cognito

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the emulator die with the test binary, even when the
// binary is killed before TestMain can stop it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
