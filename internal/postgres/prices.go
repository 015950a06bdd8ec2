package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tickerq/tickerq/tasks"
)

// SavePrice writes the quote fetched by task taskID in a transaction of its
// own, under the role: a stock_prices row keyed by the task (a second
// delivery of the same task writes nothing and reports false), and
// latest_prices when the quote is newer than the one there. It is the
// write path of one transaction per job, which the worker uses only when
// benchmarked against the Committer.
func (db *DB) SavePrice(ctx context.Context, taskID string, q tasks.Quote) (inserted bool, err error) {
	got, err := db.insertBatch(ctx, []*saveRequest{{taskID: taskID, quote: q}})
	return got[taskID], err
}

// insertBatchSQL writes many rows in one statement: the stock_prices rows
// (a task id already there is skipped), then latest_prices with the newest
// quote per symbol among the rows just inserted. Within a batch the newest
// quote wins (on a tie, the first of the batch); the upsert never moves a
// symbol back in time. The role needs no SELECT on
// stock_prices beyond task_id: the newest rows are found in the input.
// Decimals travel as text and are cast to numeric by the server, so no
// float ever rounds a price.
const insertBatchSQL = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
           WITH ORDINALITY AS u (task_id, symbol, price, change, change_pct,
                                 day_high, day_low, day_open, prev_close, quoted_at, ord)
), inserted AS (
    INSERT INTO stock_prices (task_id, symbol, price, change, change_pct,
                              day_high, day_low, day_open, prev_close, quoted_at)
    SELECT task_id, symbol, price::numeric, change::numeric, change_pct::numeric,
           day_high::numeric, day_low::numeric, day_open::numeric, prev_close::numeric, quoted_at
      FROM input ORDER BY ord
    ON CONFLICT (task_id) DO NOTHING
    RETURNING task_id
), newest AS (
    SELECT DISTINCT ON (i.symbol) i.symbol, i.price, i.quoted_at, i.task_id
      FROM input i JOIN inserted USING (task_id)
     ORDER BY i.symbol, i.quoted_at DESC, i.ord
), latest AS (
    INSERT INTO latest_prices AS l (symbol, price, quoted_at, task_id, updated_at)
    SELECT symbol, price::numeric, quoted_at, task_id, now() FROM newest ORDER BY symbol
    ON CONFLICT (symbol) DO UPDATE
       SET price = EXCLUDED.price, quoted_at = EXCLUDED.quoted_at,
           task_id = EXCLUDED.task_id, updated_at = EXCLUDED.updated_at
     WHERE l.quoted_at < EXCLUDED.quoted_at
)
SELECT task_id FROM inserted`

// insertBatch writes rows (distinct task ids) in one transaction under the
// role and returns the task ids it inserted; the others were there already.
func (db *DB) insertBatch(ctx context.Context, rows []*saveRequest) (map[string]bool, error) {
	n := len(rows)
	var (
		ids, symbols, prices         = make([]string, n), make([]string, n), make([]string, n)
		change, changePct, high, low = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		open, prevClose              = make([]*string, n), make([]*string, n)
		quotedAt                     = make([]time.Time, n)
	)
	for i, r := range rows {
		q := r.quote
		ids[i], symbols[i], prices[i], quotedAt[i] = r.taskID, q.Symbol, q.Price.String(), q.QuotedAt
		change[i], changePct[i], high[i] = optional(q.Change), optional(q.ChangePct), optional(q.DayHigh)
		low[i], open[i], prevClose[i] = optional(q.DayLow), optional(q.DayOpen), optional(q.PrevClose)
	}
	inserted := make(map[string]bool, n)
	err := db.InRole(ctx, func(b *pgx.Batch) {
		b.Queue(insertBatchSQL, ids, symbols, prices, change, changePct, high, low, open, prevClose, quotedAt).
			Query(func(rows pgx.Rows) error {
				var id string
				_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
					inserted[id] = true
					return nil
				})
				if err != nil {
					return fmt.Errorf("insert batch: %w", err)
				}
				return nil
			})
	})
	if err != nil {
		return nil, err
	}
	return inserted, nil
}

// optional maps an absent optional decimal to NULL.
func optional(n json.Number) *string {
	if n == "" {
		return nil
	}
	s := n.String()
	return &s
}
