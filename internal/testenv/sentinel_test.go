package testenv

import (
	"testing"
	"time"
)

// TestSentinelSetFailsOver: killing the master makes the sentinels promote
// the replica, within a wide bound of their settings.
func TestSentinelSetFailsOver(t *testing.T) {
	t.Parallel()
	s := StartSentinelSet(t)
	if addr := s.WaitPromoted("", time.Second); addr != s.Master.Addr() {
		t.Fatalf("sentinels name %s as master, want %s", addr, s.Master.Addr())
	}
	s.Master.Kill()
	killed := time.Now()
	addr := s.WaitPromoted(s.Master.Addr(), 30*time.Second)
	t.Logf("master %s killed; sentinels promoted %s after %s", s.Master.Addr(), addr, time.Since(killed).Round(time.Millisecond))
	if addr != s.Replica.Addr() {
		t.Fatalf("new master %s, want the replica %s", addr, s.Replica.Addr())
	}
}
