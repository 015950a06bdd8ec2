//go:build !linux

package testenv

import "os/exec"

// dieWithParent does nothing outside Linux, which alone has Pdeathsig: there
// a test process's own redis-server outlives the process.
func dieWithParent(*exec.Cmd) {}
