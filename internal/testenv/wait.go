package testenv

import (
	"testing"
	"time"
)

// WaitUntil polls cond every few milliseconds until it holds, failing the
// test when timeout (a wide bound) passes first; what names the state in
// that failure.
func WaitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
