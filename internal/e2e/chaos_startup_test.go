package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/tickerq/tickerq/internal/testenv"
)

// TestChaosWorkerRedisGoneAfterPing is the regression test of what the
// chaos suite found: Redis killed just after a starting worker's first ping
// made the worker exit 1 ("subscribe to upstream pauses: … connection
// refused"), because only that ping was retried. Here a proxy lets the
// worker's first Redis connection through and refuses the next ones: the
// worker must wait for Redis, as it does before its first ping, and then
// work normally.
func TestChaosWorkerRedisGoneAfterPing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver()
	rp, redisURL := testenv.ProxyURL(t, e.redis)
	rp.RefuseAfter(1)
	p := e.start("worker", []string{
		"ADMIN_ADDR=127.0.0.1:0", "QUOTE_API_URL=" + quoteURL,
		"REDIS_URL=" + redisURL,
	}, "--connect-timeout", "2m")
	admin := "http://" + e.loggedAddr(p, "admin server listening")

	waitBody(t, admin+"/readyz", http.StatusServiceUnavailable, "starting: waiting for redis (attempt 2)", 30*time.Second, p)
	rp.SetDown(false)
	e.readyThenWorks(p, admin)
}
