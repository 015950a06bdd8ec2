package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Report is everything one bench run measured; results.json holds it.
type Report struct {
	Machine    Machine         `json:"machine"`
	Settings   Settings        `json:"settings"`
	Throughput []ConfigResult  `json:"throughput,omitempty"`
	Ratios     *Ratios         `json:"ratios,omitempty"`
	Overlap    []OverlapResult `json:"overlap,omitempty"`
	RSS        RSS             `json:"worker_rss"`
	Enqueue    EnqueueResult   `json:"enqueue"`
	Latency    []LatencyResult `json:"latency,omitempty"`
	Scale      ScaleResult     `json:"scale"`
	Finished   time.Time       `json:"finished"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Go       string `json:"go"`
	Postgres string `json:"postgres"`
	Redis    string `json:"redis"`
	// MaxConnections is the Postgres server's max_connections.
	MaxConnections int `json:"max_connections"`
}

// Settings are the run's sizes.
type Settings struct {
	Jobs            int     `json:"jobs"`
	Rounds          int     `json:"rounds"`
	Concurrency     int     `json:"concurrency"`
	EnqueueLines    int     `json:"enqueue_lines"`
	OpenLoopSeconds float64 `json:"open_loop_seconds"`
}

// Run is one throughput measurement.
type Run struct {
	JobsPerSecond float64 `json:"jobs_per_second"`
	Seconds       float64 `json:"seconds"`
	Failed        int64   `json:"failed"`
	Rows          int     `json:"rows,omitempty"`
	BatchRows     float64 `json:"mean_rows_per_batch,omitempty"`
	// Spans is how many spans the traced configuration exported.
	Spans int64 `json:"spans,omitempty"`
}

// ConfigResult is one configuration's runs and their median.
type ConfigResult struct {
	Mode   string  `json:"mode"`
	Label  string  `json:"label"`
	Runs   []Run   `json:"runs"`
	Median float64 `json:"median_jobs_per_second"`
	Min    float64 `json:"min_jobs_per_second"`
	Max    float64 `json:"max_jobs_per_second"`
	// BatchRows is the median of the runs' mean rows per batch.
	BatchRows float64 `json:"median_rows_per_batch,omitempty"`
}

func (c *ConfigResult) summarise() {
	var rates, batches []float64
	for _, r := range c.Runs {
		rates = append(rates, r.JobsPerSecond)
		if r.BatchRows > 0 {
			batches = append(batches, r.BatchRows)
		}
	}
	c.Median, c.Min, c.Max = median(rates), slices.Min(rates), slices.Max(rates)
	if len(batches) > 0 {
		c.BatchRows = median(batches)
	}
}

// Ratios compare the medians.
type Ratios struct {
	TickerqOverGet   float64 `json:"tickerq_over_asynq_get"`
	TickerqOverOneTx float64 `json:"tickerq_over_one_tx_per_job"`
	GetOverNoop      float64 `json:"asynq_get_over_noop"`
	// TracedOverTickerq is tickerq with tracing on (every trace sampled)
	// over tickerq with it off.
	TracedOverTickerq float64 `json:"traced_over_tickerq,omitempty"`
	// TickerqOverOld is set when --old-worker was measured.
	TickerqOverOld float64 `json:"tickerq_over_old_worker,omitempty"`
}

func ratios(cs []ConfigResult) *Ratios {
	m := map[string]float64{}
	for _, c := range cs {
		m[c.Mode] = c.Median
	}
	r := &Ratios{
		TickerqOverGet:   m[modeTickerq] / m[modeGet],
		TickerqOverOneTx: m[modeTickerq] / m[modeOneTx],
		GetOverNoop:      m[modeGet] / m[modeNoop],
	}
	if m[modeOld] > 0 {
		r.TickerqOverOld = m[modeTickerq] / m[modeOld]
	}
	if m[modeTraced] > 0 && m[modeTickerq] > 0 {
		r.TracedOverTickerq = m[modeTraced] / m[modeTickerq]
	}
	return r
}

// OverlapResult is one overlap-efficiency run.
type OverlapResult struct {
	Mode            string  `json:"mode"`
	Jobs            int     `json:"jobs"`
	LatencyMS       int64   `json:"quote_latency_ms"`
	Concurrency     int     `json:"concurrency"`
	IdealSeconds    float64 `json:"ideal_seconds"`
	MeasuredSeconds float64 `json:"measured_seconds"`
	Efficiency      float64 `json:"efficiency"`
	// RelativeToGet is Efficiency over asynq GET-only's in the same
	// scenario (tickerq rows only).
	RelativeToGet    float64 `json:"relative_to_asynq_get,omitempty"`
	Failed           int64   `json:"failed"`
	Errors53300      int     `json:"errors_53300"`
	MaxPgConnections int     `json:"max_pg_connections"`
	PeakRSSMiB       float64 `json:"peak_rss_mib"`
}

// RSS is the worker's peak resident set at high concurrency.
type RSS struct {
	Concurrency int     `json:"concurrency"`
	PeakMiB     float64 `json:"peak_mib"`
}

// EnqueueResult is the producer's enqueue rate.
type EnqueueResult struct {
	Lines     int     `json:"lines"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

// LatencyResult is enqueue→commit latency at one open-loop load.
type LatencyResult struct {
	Load             float64 `json:"load"`
	RatePerSecond    float64 `json:"rate_per_second"`
	OfferedPerSecond float64 `json:"offered_per_second"`
	Jobs             int     `json:"jobs"`
	Committed        int     `json:"committed"`
	P50MS            float64 `json:"p50_ms"`
	P90MS            float64 `json:"p90_ms"`
	P99MS            float64 `json:"p99_ms"`
	MaxMS            float64 `json:"max_ms"`
}

// ScaleResult is three workers against one stock Postgres.
type ScaleResult struct {
	Workers          int     `json:"workers"`
	Concurrency      int     `json:"concurrency"`
	Jobs             int     `json:"jobs"`
	Seconds          float64 `json:"seconds"`
	Rows             int     `json:"rows"`
	Processed        int64   `json:"processed"`
	Failed           int64   `json:"failed"`
	Retry            int64   `json:"retry"`
	Errors53300      int     `json:"errors_53300"`
	MaxPgConnections int     `json:"max_pg_connections"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (b *bench) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if match := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(data); match != nil {
			m.CPUModel = string(match[1])
		}
	}
	_ = b.pg.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('max_connections')::int").Scan(&m.Postgres, &m.MaxConnections)
	if info, err := b.rdb.Info(ctx, "server").Result(); err == nil {
		if match := regexp.MustCompile(`redis_version:(\S+)`).FindStringSubmatch(info); match != nil {
			m.Redis = match[1]
		}
	}
	return m
}

func httpGet(url string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// metric finds one unlabelled sample in Prometheus text; 0 when absent.
func metric(text, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// write saves results.json, results.md and throughput.png in dir.
func (r *Report) write(dir string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	md := r.markdown()
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if len(r.Throughput) > 0 {
		if err := r.plot(filepath.Join(dir, "throughput.png")); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	fmt.Print(md)
	progress("wrote %s, %s and %s", filepath.Join(dir, "results.json"), filepath.Join(dir, "results.md"), filepath.Join(dir, "throughput.png"))
	return nil
}

// markdown renders the report as the tables docs/performance.md shows.
func (r *Report) markdown() string {
	var w strings.Builder
	m := r.Machine
	fmt.Fprintf(&w, "Run of %s on %d × %s; %s, PostgreSQL %s (max_connections %d), Redis %s.\n\n",
		r.Finished.Format("2006-01-02 15:04 MST"), m.CPUs, m.CPUModel, m.Go, m.Postgres, m.MaxConnections, m.Redis)
	if len(r.Throughput) > 0 {
		fmt.Fprintf(&w, "### Throughput: %d jobs a run, concurrency %d, %d alternating rounds\n\n", r.Settings.Jobs, r.Settings.Concurrency, r.Settings.Rounds)
		w.WriteString("| configuration | median jobs/s | min – max | × asynq GET-only | rows per batch |\n|---|---:|---:|---:|---:|\n")
		get := 0.0
		for _, c := range r.Throughput {
			if c.Mode == modeGet {
				get = c.Median
			}
		}
		for _, c := range r.Throughput {
			batch := "–"
			if c.BatchRows > 0 {
				batch = fmt.Sprintf("%.1f", c.BatchRows)
			}
			fmt.Fprintf(&w, "| %s | %.0f | %.0f – %.0f | %.2f | %s |\n", c.Label, c.Median, c.Min, c.Max, c.Median/get, batch)
		}
		if r.Ratios != nil {
			fmt.Fprintf(&w, "\ntickerq end to end / asynq GET-only = **%.2f**; tickerq / one transaction per job = **%.2f×**",
				r.Ratios.TickerqOverGet, r.Ratios.TickerqOverOneTx)
			if r.Ratios.TickerqOverOld > 0 {
				fmt.Fprintf(&w, "; tickerq / before group commit = **%.2f×**", r.Ratios.TickerqOverOld)
			}
			if r.Ratios.TracedOverTickerq > 0 {
				fmt.Fprintf(&w, "; tracing on / off = **%.2f×**", r.Ratios.TracedOverTickerq)
			}
			w.WriteString(".\n")
		}
		w.WriteString("\n")
	}
	if len(r.Overlap) > 0 {
		w.WriteString("### Overlap efficiency: N jobs each waiting D on the quote API, one worker\n\n")
		w.WriteString("| jobs × wait | concurrency | configuration | ideal s | measured s | efficiency | ÷ asynq GET-only | max PG connections (server) | 53300 errors |\n|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, o := range r.Overlap {
			rel, errs := "–", "–"
			if o.Mode == modeTickerq {
				rel, errs = fmt.Sprintf("%.2f", o.RelativeToGet), strconv.Itoa(o.Errors53300)
			}
			fmt.Fprintf(&w, "| %d × %d ms | %d | %s | %.3f | %.3f | %.3f | %s | %d | %s |\n",
				o.Jobs, o.LatencyMS, o.Concurrency, modeLabel(o.Mode), o.IdealSeconds, o.MeasuredSeconds, o.Efficiency, rel, o.MaxPgConnections, errs)
		}
		w.WriteString("\n")
	}
	if r.RSS.Concurrency > 0 {
		fmt.Fprintf(&w, "Worker peak RSS at concurrency %d: **%.1f MiB**.\n\n", r.RSS.Concurrency, r.RSS.PeakMiB)
	}
	if r.Enqueue.Lines > 0 {
		fmt.Fprintf(&w, "### Producer\n\n`producer enqueue --file` of %d lines: %.2f s, **%.0f tasks/s**.\n\n", r.Enqueue.Lines, r.Enqueue.Seconds, r.Enqueue.PerSecond)
	}
	if len(r.Latency) > 0 {
		w.WriteString("### Enqueue→commit latency under an open-loop load\n\n| load | offered jobs/s | jobs | p50 ms | p90 ms | p99 ms | max ms |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, l := range r.Latency {
			fmt.Fprintf(&w, "| %.0f%% | %.0f | %d | %.1f | %.1f | %.1f | %.1f |\n", l.Load*100, l.OfferedPerSecond, l.Jobs, l.P50MS, l.P90MS, l.P99MS, l.MaxMS)
		}
		w.WriteString("\n")
	}
	if s := r.Scale; s.Workers > 0 {
		fmt.Fprintf(&w, "### Three workers against one stock Postgres\n\n%d workers × concurrency %d, %d jobs waiting 100 ms on the quote API: drained in %.2f s; %d rows; asynq processed %d, failed %d, retry %d; %d `53300` errors; at most **%d** client connections on the whole Postgres server.\n",
			s.Workers, s.Concurrency, s.Jobs, s.Seconds, s.Rows, s.Processed, s.Failed, s.Retry, s.Errors53300, s.MaxPgConnections)
	}
	return w.String()
}

func modeLabel(mode string) string {
	for _, c := range configurations {
		if c.mode == mode {
			return c.label
		}
	}
	if mode == modeOld {
		return oldLabel
	}
	return mode
}

// plot draws the median throughput of each configuration with its
// min–max range.
func (r *Report) plot(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Throughput, %d jobs, concurrency %d (median of %d rounds, bars min–max)",
		r.Settings.Jobs, r.Settings.Concurrency, r.Settings.Rounds)
	p.Y.Label.Text = "jobs per second"
	p.Y.Min = 0
	values := make(plotter.Values, len(r.Throughput))
	errs := make(plotter.YErrors, len(r.Throughput))
	points := make(plotter.XYs, len(r.Throughput))
	names := make([]string, len(r.Throughput))
	for i, c := range r.Throughput {
		values[i] = c.Median
		points[i] = plotter.XY{X: float64(i), Y: c.Median}
		errs[i] = struct{ Low, High float64 }{c.Median - c.Min, c.Max - c.Median}
		names[i] = strings.Replace(strings.Replace(c.Label, ", ", "\n", 1), " (", "\n(", 1)
	}
	bars, err := plotter.NewBarChart(values, vg.Points(60))
	if err != nil {
		return err
	}
	bars.LineStyle.Width = 0
	bars.Color = barColor
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYer
		plotter.YErrorer
	}{points, errs})
	if err != nil {
		return err
	}
	p.Add(bars, eb)
	for i, c := range r.Throughput {
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    plotter.XYs{{X: float64(i), Y: c.Max}},
			Labels: []string{strconv.FormatFloat(math.Round(c.Median), 'f', 0, 64)},
		})
		if err != nil {
			return err
		}
		labels.Offset.X = -vg.Points(12)
		labels.Offset.Y = vg.Points(4)
		p.Add(labels)
	}
	p.NominalX(names...)
	p.Y.Max *= 1.12
	return p.Save(9*vg.Inch, 5*vg.Inch, path)
}

// barColor is the bars' fill.
var barColor = color.RGBA{R: 0x3b, G: 0x6e, B: 0xa8, A: 0xff}
