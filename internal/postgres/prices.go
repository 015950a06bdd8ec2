package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tickerq/tickerq/tasks"
)

// Decimals travel as text and are cast to numeric by the server, so no
// float ever rounds a price.
const insertPrice = `
INSERT INTO stock_prices (task_id, symbol, price, change, change_pct,
                          day_high, day_low, day_open, prev_close, quoted_at)
VALUES ($1, $2, $3::text::numeric, $4::text::numeric, $5::text::numeric,
        $6::text::numeric, $7::text::numeric, $8::text::numeric, $9::text::numeric, $10)
ON CONFLICT (task_id) DO NOTHING`

const upsertLatest = `
INSERT INTO latest_prices AS l (symbol, price, quoted_at, task_id, updated_at)
VALUES ($1, $2::text::numeric, $3, $4, now())
ON CONFLICT (symbol) DO UPDATE
   SET price = EXCLUDED.price, quoted_at = EXCLUDED.quoted_at,
       task_id = EXCLUDED.task_id, updated_at = EXCLUDED.updated_at
 WHERE l.quoted_at < EXCLUDED.quoted_at`

// SavePrice writes the quote fetched by task taskID under the role, in one
// transaction: a stock_prices row keyed by the task (a second delivery of the
// same task writes nothing and reports false), and latest_prices when the
// quote is newer than the one there.
func (db *DB) SavePrice(ctx context.Context, taskID string, q tasks.Quote) (inserted bool, err error) {
	err = db.InRole(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, insertPrice, taskID, q.Symbol, q.Price.String(),
			decimal(q.Change), decimal(q.ChangePct), decimal(q.DayHigh),
			decimal(q.DayLow), decimal(q.DayOpen), decimal(q.PrevClose), q.QuotedAt)
		if err != nil {
			return fmt.Errorf("insert stock_prices: %w", err)
		}
		if inserted = tag.RowsAffected() == 1; !inserted {
			return nil
		}
		if _, err := tx.Exec(ctx, upsertLatest, q.Symbol, q.Price.String(), q.QuotedAt, taskID); err != nil {
			return fmt.Errorf("upsert latest_prices: %w", err)
		}
		return nil
	})
	return inserted, err
}

// decimal maps an absent optional decimal to NULL.
func decimal(n json.Number) any {
	if n == "" {
		return nil
	}
	return n.String()
}
