//go:build !linux

package cognito

import "os/exec"

// dieWithParent does nothing where the OS cannot tie a child's life to its
// parent's: TestMain stops the emulator.
func dieWithParent(*exec.Cmd) {}
