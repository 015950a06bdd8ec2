package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tickerq/tickerq/internal/postgres"
	"github.com/tickerq/tickerq/internal/testenv"
	"github.com/tickerq/tickerq/tasks"
)

// recorder is a postgres.BatchObserver that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	flushes  []flushRecord
	waits    int
	rejected int
}

type flushRecord struct {
	rows int
	err  error
}

func (r *recorder) ObserveFlush(rows int, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes = append(r.flushes, flushRecord{rows, err})
}

func (r *recorder) ObserveCommitWait(time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits++
}

func (r *recorder) ObserveRejectedRow() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected++
}

// committed is how many flushes committed, and the rows they carried.
func (r *recorder) committed() (flushes, rows int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.flushes {
		if f.err == nil {
			flushes++
			rows += f.rows
		}
	}
	return flushes, rows
}

// newCommitter opens a committer on db, closed when the test ends.
func newCommitter(t *testing.T, db *postgres.DB, cfg postgres.CommitterConfig) (*postgres.Committer, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.Observer = rec
	c := postgres.NewCommitter(db, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("close committer: %v", err)
		}
	})
	return c, rec
}

// save is one SavePrice call and what it returned.
type save struct {
	taskID   string
	quote    tasks.Quote
	inserted bool
	err      error
}

// saveAll calls SavePrice for every save at once and fills in the results.
func saveAll(ctx context.Context, c *postgres.Committer, saves []*save) {
	var wg sync.WaitGroup
	for _, s := range saves {
		wg.Go(func() { s.inserted, s.err = c.SavePrice(ctx, s.taskID, s.quote) })
	}
	wg.Wait()
}

// saveAllAsync runs saveAll in the background; the channel is closed when
// every save has returned.
func saveAllAsync(c *postgres.Committer, saves []*save) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		saveAll(context.Background(), c, saves)
	}()
	return done
}

// latestPrice reads symbol's price in latest_prices.
func latestPrice(t *testing.T, tdb *testenv.Database, symbol string) string {
	t.Helper()
	var price string
	if err := tdb.Conn(t).QueryRow(context.Background(),
		"SELECT price::text FROM latest_prices WHERE symbol = $1", symbol).Scan(&price); err != nil {
		t.Fatal(err)
	}
	return price
}

// blocker holds the lock on latest_prices' row for symbol BLOCK in a
// transaction of the test's own, so that the batch carrying a newer BLOCK
// quote waits inside the server until release. It lets a test queue rows
// behind a batch in flight and so decide what the next batch holds.
type blocker struct {
	t       *testing.T
	tdb     *testenv.Database
	tx      pgx.Tx
	blockAt time.Time
}

func newBlocker(t *testing.T, tdb *testenv.Database) *blocker {
	t.Helper()
	conn := tdb.Conn(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `INSERT INTO latest_prices (symbol, price, quoted_at, task_id)
		VALUES ('BLOCK', 1, 'epoch', 'block-0') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM latest_prices WHERE symbol = 'BLOCK' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	return &blocker{t: t, tdb: tdb, tx: tx, blockAt: time.Now()}
}

// hold sends a BLOCK row through c and waits until its batch is stuck on
// the lock. The returned save is filled in once the batch is released.
func (b *blocker) hold(c *postgres.Committer) (*save, <-chan struct{}) {
	b.t.Helper()
	s := &save{taskID: "block-" + testenv.RandomName(""), quote: sampleQuote("BLOCK", "1", b.blockAt)}
	done := saveAllAsync(c, []*save{s})
	conn := b.tdb.Conn(b.t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := conn.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
			b.tdb.Name).Scan(&waiting); err != nil {
			b.t.Fatal(err)
		}
		if waiting > 0 {
			return s, done
		}
		if time.Now().After(deadline) {
			b.t.Fatal("the BLOCK batch never waited on the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *blocker) release() {
	b.t.Helper()
	if err := b.tx.Commit(context.Background()); err != nil {
		b.t.Fatal(err)
	}
}

// waitPending waits until c holds n rows.
func waitPending(t *testing.T, c *postgres.Committer, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.Pending() < n {
		if time.Now().After(deadline) {
			t.Fatalf("committer holds %d rows, want %d", c.Pending(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// oneBatch writes saves as a single batch: it holds a BLOCK batch in
// flight on a one-flusher committer, queues every save behind it, then
// releases it, so the next flush carries them all.
func oneBatch(t *testing.T, tdb *testenv.Database, c *postgres.Committer, saves []*save) {
	t.Helper()
	if c.Flushers() != 1 {
		t.Fatalf("oneBatch needs a committer with one flusher, not %d", c.Flushers())
	}
	b := newBlocker(t, tdb)
	blockSave, blockDone := b.hold(c)
	done := saveAllAsync(c, saves)
	waitPending(t, c, 1+len(saves))
	b.release()
	<-blockDone
	<-done
	if blockSave.err != nil {
		t.Fatalf("BLOCK row: %v", blockSave.err)
	}
}

// rowsOf counts stock_prices rows by task id.
func rowsOf(t *testing.T, tdb *testenv.Database) map[string]int {
	t.Helper()
	rows, err := tdb.Conn(t).Query(context.Background(), "SELECT task_id, count(*) FROM stock_prices GROUP BY task_id")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCommitterGroupsConcurrentSaves(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, rec := newCommitter(t, db, postgres.CommitterConfig{})
	now := time.Now().Truncate(time.Second)

	const n = 1000
	saves := make([]*save, n)
	for i := range saves {
		saves[i] = &save{taskID: fmt.Sprint("g", i), quote: sampleQuote(fmt.Sprintf("S%03d", i%100), fmt.Sprint(i+1), now.Add(time.Duration(i)*time.Second))}
	}
	saveAll(context.Background(), c, saves)
	for _, s := range saves {
		if s.err != nil || !s.inserted {
			t.Fatalf("save %s: inserted %v, err %v", s.taskID, s.inserted, s.err)
		}
	}
	rows := rowsOf(t, tdb)
	flushes, flushedRows := rec.committed()
	t.Logf("%d concurrent saves: %d rows in %d transactions (%.1f rows each) on %d flushers",
		n, len(rows), flushes, float64(flushedRows)/float64(flushes), c.Flushers())
	if len(rows) != n || flushedRows != n {
		t.Fatalf("%d rows, %d rows flushed; want %d", len(rows), flushedRows, n)
	}
	if flushes > n/5 {
		t.Fatalf("%d transactions for %d rows: the rows were not grouped", flushes, n)
	}
	if rec.waits != n {
		t.Fatalf("commit waits observed: %d, want %d", rec.waits, n)
	}
	// Every symbol's latest is its newest quote: i = 900+k for symbol k.
	var wrong int
	if err := tdb.Conn(t).QueryRow(context.Background(), `
		SELECT count(*) FROM latest_prices l
		 WHERE l.symbol <> 'BLOCK' AND l.price <> 901 + substr(l.symbol, 2)::int`).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Fatalf("%d symbols' latest price is not their newest quote", wrong)
	}
	if n := db.RoleLeaks(); n != 0 {
		t.Fatalf("the guard destroyed %d connections", n)
	}
}

func TestCommitterBadRowFailsOnlyItsJob(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, rec := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1})
	now := time.Now().Truncate(time.Second)

	for _, bad := range []string{"NaN", "0", "-1", "Infinity"} {
		t.Run(bad, func(t *testing.T) {
			saves := make([]*save, 100)
			for i := range saves {
				saves[i] = &save{taskID: fmt.Sprintf("%s-%03d", bad, i), quote: sampleQuote("IBM", "10", now)}
			}
			badSave := saves[37]
			badSave.quote.Price = json.Number(bad)
			before := rec.rejected
			oneBatch(t, tdb, c, saves)

			rows := rowsOf(t, tdb)
			for _, s := range saves {
				switch {
				case s == badSave:
					if !errors.Is(s.err, tasks.ErrRejected) || tasks.Classify(s.err) != tasks.Permanent {
						t.Errorf("bad row: err %v, want tasks.ErrRejected (permanent)", s.err)
					}
					if rows[s.taskID] != 0 {
						t.Errorf("bad row was written")
					}
				case s.err != nil || !s.inserted || rows[s.taskID] != 1:
					t.Errorf("good row %s: inserted %v, err %v, rows %d; want written once", s.taskID, s.inserted, s.err, rows[s.taskID])
				}
			}
			if got := rec.rejected - before; got != 1 {
				t.Errorf("rows rejected one by one: %d, want 1", got)
			}
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var log []string
	for _, f := range rec.flushes {
		log = append(log, fmt.Sprintf("%d:%v", f.rows, map[bool]string{true: "committed", false: "rejected"}[f.err == nil]))
	}
	t.Logf("flushes (rows:outcome): %s", strings.Join(log, " "))
}

func TestCommitterSameTaskOnce(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, _ := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1})
	at := time.Now().Truncate(time.Second)

	// Twice in one batch: written once, one caller told it inserted.
	twins := []*save{
		{taskID: "dup", quote: sampleQuote("MSFT", "1", at)},
		{taskID: "dup", quote: sampleQuote("MSFT", "2", at)},
		{taskID: "other", quote: sampleQuote("MSFT", "3", at)},
	}
	oneBatch(t, tdb, c, twins)
	if twins[0].err != nil || twins[1].err != nil || twins[0].inserted == twins[1].inserted {
		t.Fatalf("same task twice in one batch: (%v, %v), (%v, %v); want one insert and one duplicate",
			twins[0].inserted, twins[0].err, twins[1].inserted, twins[1].err)
	}
	// Again in a later batch, and concurrently in several.
	later := make([]*save, 10)
	for i := range later {
		later[i] = &save{taskID: "dup", quote: sampleQuote("MSFT", "9", at.Add(time.Hour))}
	}
	saveAll(context.Background(), c, later)
	for _, s := range later {
		if s.err != nil || s.inserted {
			t.Fatalf("same task in a later batch: inserted %v, err %v; want a duplicate", s.inserted, s.err)
		}
	}
	if rows := rowsOf(t, tdb); rows["dup"] != 1 || rows["other"] != 1 {
		t.Fatalf("rows by task: %v; want dup and other once each", rows)
	}
	// The duplicates did not touch latest_prices.
	if latestPrice(t, tdb, "MSFT") == "9" {
		t.Fatal("a duplicate delivery moved latest_prices")
	}
}

func TestCommitterLatestNewestWinsInOneBatch(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, _ := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1})
	base := time.Unix(1763719200, 0).UTC()
	for _, tc := range []struct {
		name      string
		existing  time.Duration // offset of a quote already in latest_prices; <0 for none
		batch     []time.Duration
		wantPrice string // price of batch[i] is i+1; "existing" is 100
	}{
		{"newest of the batch wins", -1, []time.Duration{time.Minute, 3 * time.Minute, 2 * time.Minute}, "2"},
		{"newest first", -1, []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute}, "1"},
		{"newer than the table", 0, []time.Duration{time.Minute, 2 * time.Minute}, "2"},
		{"older than the table", 10 * time.Minute, []time.Duration{time.Minute, 2 * time.Minute}, "100"},
		{"equal to the table", 2 * time.Minute, []time.Duration{time.Minute, 2 * time.Minute}, "100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			symbol := strings.ToUpper(testenv.RandomName("L"))
			if tc.existing >= 0 {
				if _, err := tdb.Conn(t).Exec(context.Background(),
					"INSERT INTO latest_prices (symbol, price, quoted_at, task_id) VALUES ($1, 100, $2, 'old')",
					symbol, base.Add(tc.existing)); err != nil {
					t.Fatal(err)
				}
			}
			saves := make([]*save, len(tc.batch))
			for i, off := range tc.batch {
				saves[i] = &save{taskID: fmt.Sprintf("%s-%d", symbol, i), quote: sampleQuote(symbol, fmt.Sprint(i+1), base.Add(off))}
			}
			oneBatch(t, tdb, c, saves)
			for _, s := range saves {
				if s.err != nil {
					t.Fatal(s.err)
				}
			}
			if price := latestPrice(t, tdb, symbol); price != tc.wantPrice {
				t.Fatalf("latest price = %s, want %s", price, tc.wantPrice)
			}
		})
	}
}

func TestCommitterContextEndsWhileWaiting(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, _ := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1})
	b := newBlocker(t, tdb)
	_, blockDone := b.hold(c)

	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		ctx, cancel := tc.ctx()
		start := time.Now()
		_, err := c.SavePrice(ctx, "gone-"+tc.name, sampleQuote("IBM", "10", time.Now()))
		waited := time.Since(start)
		cancel()
		if !errors.Is(err, tc.want) || tasks.Classify(err) != tasks.Transient {
			t.Errorf("%s: err %v, want %v (transient)", tc.name, err, tc.want)
		}
		// A wide sanity bound: the call returns when its context ends, not
		// when the stuck batch does.
		if waited > 5*time.Second {
			t.Errorf("%s: returned after %s", tc.name, waited)
		}
	}
	b.release()
	<-blockDone
	// The rows of callers that had gone before their batch formed were
	// dropped, not written behind their backs.
	if _, err := c.SavePrice(context.Background(), "after", sampleQuote("IBM", "11", time.Now())); err != nil {
		t.Fatal(err)
	}
	rows := rowsOf(t, tdb)
	if rows["gone-deadline"] != 0 || rows["gone-cancel"] != 0 || rows["after"] != 1 {
		t.Fatalf("rows %v: want the abandoned rows dropped and the later one written", rows)
	}
}

func TestCommitterCloseFlushesWhatItHolds(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c := postgres.NewCommitter(db, postgres.CommitterConfig{Flushers: 1})
	b := newBlocker(t, tdb)
	blockSave, blockDone := b.hold(c)

	// 300 rows queued behind the batch in flight, then Close.
	saves := make([]*save, 300)
	for i := range saves {
		saves[i] = &save{taskID: fmt.Sprint("q", i), quote: sampleQuote("AMD", "5", time.Now())}
	}
	saved := saveAllAsync(c, saves)
	waitPending(t, c, 301)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		closed <- c.Close(ctx)
	}()
	// Once closing, no new row is taken. (One offered in the instant
	// before Close begins is taken; its context ends, so it is dropped.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := c.SavePrice(ctx, "late", sampleQuote("AMD", "5", time.Now()))
		cancel()
		if errors.Is(err, postgres.ErrCommitterClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SavePrice during Close: %v, want ErrCommitterClosed", err)
		}
	}
	b.release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	<-blockDone
	<-saved
	rows := rowsOf(t, tdb)
	for _, s := range append(saves, blockSave) {
		if s.err != nil || rows[s.taskID] != 1 {
			t.Fatalf("row %s held at Close: err %v, %d rows; want written once", s.taskID, s.err, rows[s.taskID])
		}
	}
	if rows["late"] != 0 {
		t.Fatal("a row offered after Close was written")
	}
}

func TestCommitterCloseMidRunLosesNoAckedRow(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c := postgres.NewCommitter(db, postgres.CommitterConfig{MaxBatch: 50})

	saves := make([]*save, 3000)
	for i := range saves {
		saves[i] = &save{taskID: fmt.Sprint("m", i), quote: sampleQuote(fmt.Sprint("M", i%50), "5", time.Now())}
	}
	var wg sync.WaitGroup
	for _, s := range saves {
		wg.Go(func() { s.inserted, s.err = c.SavePrice(context.Background(), s.taskID, s.quote) })
	}
	waitPending(t, c, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	rows := rowsOf(t, tdb)
	var acked, refused int
	for _, s := range saves {
		switch {
		case s.err == nil:
			acked++
			if rows[s.taskID] != 1 {
				t.Errorf("acked row %s: %d rows", s.taskID, rows[s.taskID])
			}
		case errors.Is(s.err, postgres.ErrCommitterClosed):
			refused++
			if rows[s.taskID] != 0 {
				t.Errorf("refused row %s was written", s.taskID)
			}
		default:
			t.Errorf("row %s: %v", s.taskID, s.err)
		}
	}
	t.Logf("Close mid-run: %d acked and written, %d refused", acked, refused)
	if acked == 0 {
		t.Fatal("nothing was acked")
	}
}

func TestCommitterPostgresCutMidFlush(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	proxy, proxied := testenv.ProxyURL(t, tdb.URL)
	db := openDB(t, proxied, tdb.Role)
	c, _ := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1})
	at := time.Now().Truncate(time.Second)

	// A batch stuck in the server, 50 rows queued behind it; then the
	// connection is cut.
	b := newBlocker(t, tdb)
	blockSave, blockDone := b.hold(c)
	saves := make([]*save, 50)
	for i := range saves {
		saves[i] = &save{taskID: fmt.Sprint("cut", i), quote: sampleQuote("INTC", "20", at)}
	}
	saved := saveAllAsync(c, saves)
	waitPending(t, c, 51)
	proxy.SetDown(true)
	<-blockDone
	if blockSave.err == nil || tasks.Classify(blockSave.err) != tasks.Transient {
		t.Fatalf("batch whose connection was cut: %v, want a transient error", blockSave.err)
	}
	<-saved
	for _, s := range saves {
		if s.err == nil || tasks.Classify(s.err) != tasks.Transient {
			t.Fatalf("row %s queued while Postgres was cut: %v, want a transient error", s.taskID, s.err)
		}
	}
	t.Logf("while cut: %v", blockSave.err)
	b.release()

	// Back up: the jobs' retries complete, and each row is there once.
	proxy.SetDown(false)
	retry := append([]*save{{taskID: blockSave.taskID, quote: blockSave.quote}}, saves...)
	for _, s := range retry {
		s.err = nil
	}
	saveAll(context.Background(), c, retry)
	rows := rowsOf(t, tdb)
	for _, s := range retry {
		if s.err != nil || rows[s.taskID] != 1 {
			t.Fatalf("retry of %s: err %v, %d rows; want written once", s.taskID, s.err, rows[s.taskID])
		}
	}
}

func TestCommitterBackPressure(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, _ := newCommitter(t, db, postgres.CommitterConfig{Flushers: 1, MaxBatch: 10, MaxPending: 20})
	b := newBlocker(t, tdb)
	_, blockDone := b.hold(c)
	saves := make([]*save, 19)
	for i := range saves {
		saves[i] = &save{taskID: fmt.Sprint("bp", i), quote: sampleQuote("TXN", "3", time.Now())}
	}
	saved := saveAllAsync(c, saves)
	waitPending(t, c, 20)
	// Full: the next caller waits for room, and gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.SavePrice(ctx, "over", sampleQuote("TXN", "3", time.Now())); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SavePrice past MaxPending: %v, want it to wait until its deadline", err)
	}
	if n := c.Pending(); n != 20 {
		t.Fatalf("committer holds %d rows, want at most MaxPending = 20", n)
	}
	b.release()
	<-blockDone
	<-saved
	for _, s := range saves {
		if s.err != nil {
			t.Fatal(s.err)
		}
	}
}

func TestCommitterConnectionsStayClean(t *testing.T) {
	t.Parallel()
	tdb := testenv.NewDatabase(t)
	db := openDB(t, tdb.URL, tdb.Role)
	c, rec := newCommitter(t, db, postgres.CommitterConfig{MaxBatch: 20})
	saves := make([]*save, 0, 520)
	for i := range 500 {
		saves = append(saves, &save{taskID: fmt.Sprint("c", i), quote: sampleQuote("NVDA", "100", time.Now())})
	}
	for i := range 20 {
		saves = append(saves, &save{taskID: fmt.Sprint("f", i), quote: sampleQuote("NVDA", "NaN", time.Now())})
	}
	saveAll(context.Background(), c, saves)
	for _, s := range saves {
		if bad := s.quote.Price == "NaN"; bad != errors.Is(s.err, tasks.ErrRejected) || (!bad && s.err != nil) {
			t.Fatalf("row %s (price %s): %v", s.taskID, s.quote.Price, s.err)
		}
	}
	if rec.rejected != 20 {
		t.Fatalf("rows rejected: %d, want 20", rec.rejected)
	}
	if n := db.RoleLeaks(); n != 0 {
		t.Fatalf("the guard destroyed %d connections that kept the role", n)
	}
	conns := db.Pool().AcquireAllIdle(context.Background())
	for _, conn := range conns {
		var cur, sess string
		if err := conn.QueryRow(context.Background(), "SELECT current_user, session_user").Scan(&cur, &sess); err != nil {
			t.Fatal(err)
		}
		if cur != sess {
			t.Errorf("pooled connection: current_user %q, session_user %q", cur, sess)
		}
		conn.Release()
	}
	var writtenBy string
	if err := tdb.Conn(t).QueryRow(context.Background(), "SELECT string_agg(DISTINCT written_by, ',') FROM stock_prices").Scan(&writtenBy); err != nil {
		t.Fatal(err)
	}
	if writtenBy != tdb.Role.String() {
		t.Fatalf("written_by = %q, want only %q", writtenBy, tdb.Role)
	}
}
