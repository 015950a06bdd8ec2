package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// uiShots is where TestUI saves its screenshots, relative to this package:
// test-output/ui/ at the repository root (ignored by git).
const uiShots = "../../test-output/ui"

// uiWait bounds each wait for the web UI to show something.
const uiWait = 30 * time.Second

// resultText is how the UI shows a completed task's result:
// "173.25 USD @ 14:30:00Z".
var resultText = regexp.MustCompile(`^(\d+(?:\.\d+)?) USD @ (\d{2}:\d{2}:\d{2})Z$`)

// TestUI checks what a person sees in `producer ui` (asynqmon) after three
// quotes were fetched and one unknown symbol was archived: the queue and its
// counts on the dashboard, each completed task's symbol and formatted result,
// and the archived task's error. The pages are read from the DOM that
// headless Chromium rendered, and saved as screenshots under test-output/ui.
func TestUI(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)
	e := newEnv(t)
	quoteURL, _ := e.startQuoteserver()
	e.startWorker([]string{"QUOTE_API_URL=" + quoteURL})

	enqueuedDay := time.Now().UTC().YearDay()
	ids := e.enqueueFile([]string{"GOOG", "MSFT", "AAPL", "UNKNOWN"})
	e.producer(nil, "wait", "--timeout", "30s")
	if q := e.stats()["default"]; q.Completed != 3 || q.Archived != 1 || q.Processed != 4 || q.Failed != 1 {
		t.Fatalf("default queue: %+v; want 3 completed, 1 archived, 4 processed, 1 failed", q)
	}
	var googPrice float64
	var googAt time.Time
	if err := e.db.Conn(t).QueryRow(context.Background(),
		"SELECT price, quoted_at FROM stock_prices WHERE task_id = $1", ids[0]).Scan(&googPrice, &googAt); err != nil {
		t.Fatalf("GOOG's row: %v", err)
	}

	const user, password = "ops", "correct horse battery staple"
	base := e.startUI(user, password)
	checkBasicAuth(t, base, user, password)

	b := newBrowser(t, chromium, user, password)

	// The dashboard: one row per queue.
	b.open(base + "/")
	b.waitRows("dashboard", `table[aria-label="queues overview table"]`, func(rows []map[string]string) error {
		row := findRow(rows, "Queue", "default")
		if row == nil {
			return fmt.Errorf("no row for the default queue")
		}
		want := map[string]string{"State": "run", "Size": "4"}
		// asynqmon's Processed, Failed and Error rate count today (UTC) only:
		// checked unless the run crossed midnight.
		if time.Now().UTC().YearDay() == enqueuedDay {
			want["Processed"], want["Failed"], want["Error rate"] = "4", "1", "25.00 %"
		}
		return expectCells(row, want)
	})
	b.screenshot("dashboard")

	// The queue's completed tasks: symbol and result, as the formatters show them.
	b.open(base + "/queues/default?status=completed")
	b.waitChips("completed", map[string]string{"Completed": "3", "Archived": "1", "Pending": "0", "Retry": "0"})
	var googResult string
	b.waitRows("completed", `table[aria-label="completed tasks table"]`, func(rows []map[string]string) error {
		var payloads []string
		for _, row := range rows {
			payloads = append(payloads, row["Payload"])
			if !resultText.MatchString(row["Result"]) {
				return fmt.Errorf("%s: result %q does not read like %q", row["Payload"], row["Result"], "173.25 USD @ 14:30:00Z")
			}
		}
		slices.Sort(payloads)
		if !slices.Equal(payloads, []string{"AAPL", "GOOG", "MSFT"}) {
			return fmt.Errorf("payloads %q, want AAPL, GOOG and MSFT", payloads)
		}
		googResult = findRow(rows, "Payload", "GOOG")["Result"]
		return nil
	})
	b.screenshot("completed")
	m := resultText.FindStringSubmatch(googResult)
	if price, _ := strconv.ParseFloat(m[1], 64); math.Abs(price-googPrice) > 0.005 || m[2] != googAt.UTC().Format(time.TimeOnly) {
		t.Errorf("GOOG's result shows %q; stock_prices holds %v at %s", googResult, googPrice, googAt.UTC().Format(time.RFC3339))
	}

	// The archived task: the unknown symbol and why it failed.
	b.open(base + "/queues/default?status=archived")
	b.waitRows("archived", `table[aria-label="archived tasks table"]`, func(rows []map[string]string) error {
		if len(rows) != 1 {
			return fmt.Errorf("%d rows, want 1", len(rows))
		}
		return expectCells(rows[0], map[string]string{"Type": "quote:fetch", "Payload": "UNKNOWN", "Last Error": "~unknown symbol"})
	})
	b.screenshot("archived")

	// One completed task on its own page, as a click on its row opens it.
	b.open(base + "/queues/default/tasks/" + ids[0])
	b.waitText("task", func(text string) error {
		for _, want := range []string{ids[0], "quote:fetch", "completed", "GOOG", googResult} {
			if !strings.Contains(text, want) {
				return fmt.Errorf("no %q on the page", want)
			}
		}
		return nil
	})
	b.screenshot("task-goog")
}

// chromiumPath finds the browser: $CHROMIUM_PATH, else chromium,
// chromium-browser or google-chrome on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome"}
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		names = []string{p}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium (tried %s): run `make tools`, which installs Debian's chromium package (`make test` runs it first), or set CHROMIUM_PATH", strings.Join(names, ", "))
	return ""
}

// startUI runs `producer ui` with basic auth on a free port and returns its
// base URL once it answers.
func (e *env) startUI(user, password string) string {
	e.t.Helper()
	p := e.start("producer", []string{"UI_USER=" + user, "UI_PASSWORD=" + password}, "ui", "--addr", "127.0.0.1:0")
	base := "http://" + e.loggedAddr(p, "web UI listening")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			e.t.Fatalf("producer ui exited early: %v\n%s", p.err, p.logs.String())
		default:
		}
		if authStatus(e.t, base+"/", user, password) == http.StatusOK {
			return base
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("producer ui did not answer 200 at %s within 15s\n%s", base, p.logs.String())
	return ""
}

// authStatus GETs url with basic auth (none when user is empty) and returns
// the status code, or 0 when the request fails.
func authStatus(t *testing.T, url, user, password string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("GET %s: 401 without a WWW-Authenticate: Basic challenge, so a browser would not ask for a password", url)
	}
	return resp.StatusCode
}

// checkBasicAuth: the page and the API behind it answer 401 without the
// right credentials and 200 with them.
func checkBasicAuth(t *testing.T, base, user, password string) {
	t.Helper()
	for _, path := range []string{"/", "/queues/default", "/api/queues"} {
		for _, c := range []struct {
			user, password string
			want           int
		}{
			{"", "", http.StatusUnauthorized},
			{user, "wrong", http.StatusUnauthorized},
			{"someone", password, http.StatusUnauthorized},
			{user, password, http.StatusOK},
		} {
			if got := authStatus(t, base+path, c.user, c.password); got != c.want {
				t.Errorf("GET %s as %q/%q: %d, want %d", path, c.user, c.password, got, c.want)
			}
		}
	}
}

// browser is one headless Chromium tab that sends basic auth with every
// request.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T, path, user, password string) *browser {
	t.Helper()
	shots, err := filepath.Abs(uiShots)
	if err != nil {
		t.Fatal(err)
	}
	// The folder shows the last run only, with no stale -failed.png.
	if err := os.RemoveAll(shots); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	profile := t.TempDir() // removed after the browser has exited (cleanups run last first)
	output := &syncBuffer{}
	// The flags the machine notes give for a closed network, run as root.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 900),
		chromedp.CombinedOutput(output),
	)
	// The whole browser part gets a minute; the first Run binds the
	// browser's life to this context.
	parent, cancelTimeout := context.WithTimeout(context.Background(), time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()   // closes the browser
		cancelAlloc() // and waits for its process to exit
		cancelTimeout()
		if t.Failed() {
			t.Logf("--- chromium output without D-Bus noise (last 4 KiB) ---\n%s", tail(withoutDBus(output.String()), 4096))
		}
	})

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
			network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
			return err
		}
		// asynqmon's page links Google Fonts; the network is closed, so
		// fail those requests at once rather than let them hang.
		_, err := chromedp.Call(ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: []*network.BlockPattern{
			{URLPattern: "https://fonts.googleapis.com/*", Block: true},
			{URLPattern: "https://fonts.gstatic.com/*", Block: true},
		}})
		return err
	})); err != nil {
		t.Fatalf("start Chromium (%s): %v\n%s", path, err, output.String())
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

func (b *browser) open(url string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
}

// screenshot saves the whole page as NAME.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", file)
}

// poll evaluates expression until check accepts its value; on timeout it
// saves a screenshot NAME-failed.png and fails with the last problem.
func poll[T any](b *browser, name, expression string, check func(T) error) {
	b.t.Helper()
	deadline := time.Now().Add(uiWait)
	var problem error
	for {
		v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expression))
		if err != nil {
			problem = err
		} else if problem = check(v); problem == nil {
			return
		}
		if time.Now().After(deadline) {
			b.screenshot(name + "-failed")
			b.t.Fatalf("%s page: after %s: %v", name, uiWait, problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readTable is JavaScript that returns a table's rows as objects keyed by
// the column headers, with each cell's rendered text.
const readTable = `(() => {
	const table = document.querySelector(%q);
	if (!table) return [];
	const heads = Array.from(table.querySelectorAll("thead th")).map(th => th.innerText.trim());
	return Array.from(table.querySelectorAll("tbody tr")).map(tr => {
		const row = {};
		Array.from(tr.cells).forEach((td, i) => { row[heads[i] || "#" + i] = td.innerText.trim(); });
		return row;
	});
})()`

// waitRows waits until the table that selector names shows rows that check
// accepts.
func (b *browser) waitRows(name, selector string, check func([]map[string]string) error) {
	b.t.Helper()
	poll(b, name, fmt.Sprintf(readTable, selector), func(rows []map[string]string) error {
		if err := check(rows); err != nil {
			return fmt.Errorf("%w; the table shows %q", err, rows)
		}
		return nil
	})
}

// waitChips waits until the task-state chips ("Completed 3") show want.
func (b *browser) waitChips(name string, want map[string]string) {
	b.t.Helper()
	const chips = `Array.from(document.querySelectorAll(".MuiChip-label")).map(c => c.innerText.trim())`
	poll(b, name, chips, func(labels []string) error {
		got := map[string]string{}
		for _, l := range labels {
			if state, count, ok := strings.Cut(l, " "); ok {
				got[state] = strings.TrimSpace(count)
			}
		}
		if err := expectCells(got, want); err != nil {
			return fmt.Errorf("chips %q: %w", labels, err)
		}
		return nil
	})
}

// waitText waits until the page's visible text passes check.
func (b *browser) waitText(name string, check func(string) error) {
	b.t.Helper()
	poll(b, name, `document.body.innerText`, check)
}

// findRow returns the first row whose column holds value.
func findRow(rows []map[string]string, column, value string) map[string]string {
	for _, row := range rows {
		if row[column] == value {
			return row
		}
	}
	return nil
}

// expectCells compares cells with want; a wanted value starting with "~"
// need only be contained.
func expectCells(cells, want map[string]string) error {
	for column, w := range want {
		got, ok := cells[column]
		switch sub, contains := strings.CutPrefix(w, "~"); {
		case !ok:
			return fmt.Errorf("no %q column", column)
		case contains && !strings.Contains(got, sub):
			return fmt.Errorf("%s = %q, want it to contain %q", column, got, sub)
		case !contains && got != w:
			return fmt.Errorf("%s = %q, want %q", column, got, w)
		}
	}
	return nil
}

// withoutDBus drops the lines in which Chromium complains that the machine
// has no D-Bus; they would bury anything useful.
func withoutDBus(log string) string {
	lines := strings.Split(log, "\n")
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return strings.Contains(l, ":ERROR:dbus/") }), "\n")
}
