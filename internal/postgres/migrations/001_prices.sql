-- stock_prices: one row per task, never two. The unique task_id is what makes
-- a redelivered or retried task's write a no-op.
CREATE TABLE IF NOT EXISTS stock_prices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     text        NOT NULL,
    symbol      text        NOT NULL,
    price       numeric     NOT NULL,
    change      numeric,
    change_pct  numeric,
    day_high    numeric,
    day_low     numeric,
    day_open    numeric,
    prev_close  numeric,
    quoted_at   timestamptz NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    written_by  text        NOT NULL DEFAULT current_user,
    CONSTRAINT stock_prices_task_id_key UNIQUE (task_id),
    -- numeric orders NaN above +Infinity, so "< 'Infinity'" excludes both.
    CONSTRAINT stock_prices_price_check CHECK (price > 0 AND price < 'Infinity'),
    CONSTRAINT stock_prices_finite_check CHECK (
            (change     IS NULL OR (change     > '-Infinity' AND change     < 'Infinity'))
        AND (change_pct IS NULL OR (change_pct > '-Infinity' AND change_pct < 'Infinity'))
        AND (day_high   IS NULL OR (day_high   >= 0 AND day_high   < 'Infinity'))
        AND (day_low    IS NULL OR (day_low    >= 0 AND day_low    < 'Infinity'))
        AND (day_open   IS NULL OR (day_open   >= 0 AND day_open   < 'Infinity'))
        AND (prev_close IS NULL OR (prev_close >= 0 AND prev_close < 'Infinity'))
    )
);

CREATE INDEX IF NOT EXISTS stock_prices_symbol_quoted_at_idx
    ON stock_prices (symbol, quoted_at DESC);

-- latest_prices: the newest quote of each symbol; the writer only replaces a
-- row with a strictly newer quote.
CREATE TABLE IF NOT EXISTS latest_prices (
    symbol      text        PRIMARY KEY,
    price       numeric     NOT NULL,
    quoted_at   timestamptz NOT NULL,
    task_id     text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT latest_prices_price_check CHECK (price > 0 AND price < 'Infinity')
);
