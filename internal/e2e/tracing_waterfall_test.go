package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The picture of one trace in the README (docs/trace-waterfall.png, with
// the spans drawn in docs/trace-waterfall.json) is redrawn only on request,
// TICKERQ_WRITE_TRACE_PNG=1, and by default under test-output/trace/ (ignored
// by git), so that a test run changes no tracked file. TICKERQ_TRACE_PNG_DIR
// names another directory, relative to the repository root:
// TICKERQ_TRACE_PNG_DIR=docs replaces the README's picture on purpose.
const (
	envWriteTracePNG   = "TICKERQ_WRITE_TRACE_PNG"
	envTracePNGDir     = "TICKERQ_TRACE_PNG_DIR"
	defaultTracePNGDir = "test-output/trace"
	waterfallPNG       = "trace-waterfall.png"
	waterfallJSON      = "trace-waterfall.json"
	// repoRoot is the repository root, relative to this package.
	repoRoot = "../.."
)

// waterfallDir is where writeWaterfall writes: TICKERQ_TRACE_PNG_DIR, else
// test-output/trace, a relative one under the repository root.
func waterfallDir() string {
	dir := os.Getenv(envTracePNGDir)
	if dir == "" {
		dir = defaultTracePNGDir
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot, dir)
	}
	return dir
}

// writeWaterfall draws one task's trace (the enqueue span and everything
// below it) and the batch span linked to it with its SQL spans, on one
// time axis, as trace-waterfall.png, with the spans drawn in
// trace-waterfall.json, in waterfallDir, when TICKERQ_WRITE_TRACE_PNG=1.
func writeWaterfall(t *testing.T, spans []*span, chains map[string]*chain) {
	t.Helper()
	if os.Getenv(envWriteTracePNG) != "1" {
		return
	}
	dir := waterfallDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pngPath, jsonPath := filepath.Join(dir, waterfallPNG), filepath.Join(dir, waterfallJSON)
	// The trace whose batch carried the most rows shows the sharing best;
	// ties go to the lowest trace id, so the choice is stable.
	var pick *chain
	for _, trace := range slices.Sorted(maps.Keys(chains)) {
		c := chains[trace]
		if pick == nil || len(c.batch.Links) > len(pick.batch.Links) {
			pick = c
		}
	}
	if pick == nil {
		t.Fatal("no complete trace to draw")
	}
	children := map[string][]*span{}
	for _, s := range spans {
		if s.Parent != "" {
			children[s.Parent] = append(children[s.Parent], s)
		}
	}
	type row struct {
		s     *span
		depth int
	}
	var rows []row
	var walk func(s *span, depth int)
	walk = func(s *span, depth int) {
		rows = append(rows, row{s, depth})
		kids := children[s.ID]
		slices.SortFunc(kids, func(a, b *span) int { return a.Start.Compare(b.Start) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	walk(pick.enqueue, 0)
	taskRows := len(rows)
	walk(pick.batch, 0)

	t0, t1 := rows[0].s.Start, rows[0].s.End
	for _, r := range rows {
		t0 = minTime(t0, r.s.Start)
		t1 = maxTime(t1, r.s.End)
	}
	total := t1.Sub(t0)
	pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(total) }

	var b strings.Builder
	fmt.Fprintf(&b, `<!doctype html><meta charset="utf-8"><style>
body{margin:0;background:#fff;font:13px/1.2 "DejaVu Sans",sans-serif;color:#222}
#w{width:1200px;padding:16px 20px}
h1{font-size:16px;margin:0 0 4px}
.sub{color:#666;margin:0 0 12px}
.r{display:flex;align-items:center;height:24px}
.l{width:330px;flex:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.t{position:relative;flex:1;height:18px;border-left:1px solid #ccc}
.b{position:absolute;top:2px;height:14px;border-radius:2px;min-width:2px}
.d{position:absolute;top:2px;font-size:11px;color:#333;white-space:nowrap;padding-left:4px}
.sep{margin:10px 0 4px;color:#555;font-style:italic;border-top:1px dashed #bbb;padding-top:6px}
.axis{display:flex;margin-top:8px;color:#666;font-size:11px}.axis .l{}
</style><div id="w"><h1>One task's trace: producer enqueue → worker job → quote call → batch wait, and the batch that committed it</h1>
<p class="sub">trace %s · %s end to end · spans from tickerq-producer and tickerq-worker, received by the OTLP test receiver (TestTracingEndToEnd)</p>`,
		html.EscapeString(pick.enqueue.Trace), total.Round(time.Microsecond))
	colors := map[string]string{"tickerq-producer": "#6a8fd8", "tickerq-worker": "#57a773"}
	for i, r := range rows {
		if i == taskRows {
			fmt.Fprintf(&b, `<div class="sep">linked: batch transaction, its own trace %s, carrying %s rows (links to %d jobs' commit-wait spans)</div>`,
				html.EscapeString(pick.batch.Trace), html.EscapeString(pick.batch.Attrs["tickerq.batch.rows"]), len(pick.batch.Links))
		}
		s := r.s
		color := colors[s.Service]
		switch {
		case s.Status != "":
			color = "#d9534f"
		case s.Name == "commit wait":
			color = "#e0a030"
		case strings.HasPrefix(s.Name, "commit batch"):
			color = "#9b6bc4"
		case i > taskRows:
			color = "#b99bd8"
		}
		label := s.Name
		left, width := pct(s.Start.Sub(t0)), pct(s.Duration())
		// The duration goes right of the bar, or left of it near the end.
		at := fmt.Sprintf("left:%.3f%%", left+width)
		if left+width > 80 {
			at = fmt.Sprintf("right:%.3f%%;padding-right:4px", 100-left)
		}
		fmt.Fprintf(&b, `<div class="r"><div class="l" style="padding-left:%dpx" title="%s">%s</div><div class="t">`+
			`<div class="b" style="left:%.3f%%;width:%.3f%%;background:%s"></div><div class="d" style="%s">%s</div></div></div>`,
			4+16*r.depth, html.EscapeString(label), html.EscapeString(label), left, width, color, at, s.Duration().Round(time.Microsecond))
	}
	fmt.Fprintf(&b, `<div class="axis"><div class="l"></div><div style="flex:1;display:flex;justify-content:space-between"><span>0</span><span>%s</span><span>%s</span></div></div></div>`,
		(total / 2).Round(time.Microsecond), total.Round(time.Microsecond))

	page := filepath.Join(t.TempDir(), "waterfall.html")
	if err := os.WriteFile(page, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	png := screenshotPage(t, "file://"+page)
	if err := os.WriteFile(pngPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	drawn := make([]*span, len(rows))
	for i, r := range rows {
		drawn[i] = r.s
	}
	js, err := json.MarshalIndent(drawn, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes) and %s: trace %s, %d spans, %s", pngPath, len(png), jsonPath, pick.enqueue.Trace, len(rows), total)
}

// screenshotPage renders url in headless Chromium and returns a PNG of the
// whole page.
func screenshotPage(t *testing.T, url string) []byte {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1240, 600),
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	if _, err := chromedp.Run(tab, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", url, err)
	}
	return png
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
