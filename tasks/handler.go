package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// QuoteFetcher fetches one quote. It returns errors wrapping
// ErrUnknownSymbol, ErrInvalidQuote or a *StatusError for the answers they
// describe; any other error is taken as transient (see Classify).
type QuoteFetcher interface {
	Quote(ctx context.Context, symbol string) (Quote, error)
}

// PriceStore durably writes one task's quote, idempotently per task ID:
// it returns only once the write is durable, and reports false when the
// task's row already existed. An error wrapping ErrRejected is permanent;
// any other error is transient, and the job is retried.
type PriceStore interface {
	SavePrice(ctx context.Context, taskID string, q Quote) (inserted bool, err error)
}

// QuoteFetchResult is what a completed quote-fetch task records with asynq's
// result writer.
type QuoteFetchResult struct {
	Symbol   string      `json:"symbol"`
	Price    json.Number `json:"price"`
	QuotedAt time.Time   `json:"quoted_at"`
	// Duplicate is true when an earlier delivery of the same task had
	// already written the row.
	Duplicate bool `json:"duplicate,omitempty"`
}

// QuoteFetchHandler processes TypeQuoteFetch tasks: it fetches the quote,
// writes it, and records a QuoteFetchResult.
type QuoteFetchHandler struct {
	quotes  QuoteFetcher
	store   PriceStore
	limiter RateLimiter
}

// NewQuoteFetchHandler returns a handler using quotes and store.
func NewQuoteFetchHandler(quotes QuoteFetcher, store PriceStore, opts ...HandlerOption) *QuoteFetchHandler {
	h := &QuoteFetchHandler{quotes: quotes, store: store, limiter: noLimit{}}
	for _, o := range opts {
		o(h)
	}
	return h
}

// ProcessTask implements asynq.Handler. Permanent failures are returned
// wrapping asynq.SkipRetry; see Classify. For a task that carries
// HeaderMaxRetry, so are counted failures once its retries are used up
// (ErrRetriesExhausted).
func (h *QuoteFetchHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if err := checkDeadline(t, time.Now()); err != nil {
		return err // dropped: its successor is due
	}
	n, ok := headerMaxRetry(t)
	if !ok {
		return finish(h.process(ctx, t))
	}
	retried, _ := asynq.GetRetryCount(ctx)
	ctx, cancel, err := limitAttempt(ctx, n, retried)
	defer cancel()
	if err != nil {
		return err
	}
	err = finish(h.process(ctx, t))
	if retried >= n && Classify(err) == Transient {
		return exhaustedError{n: n, err: err}
	}
	return err
}

func (h *QuoteFetchHandler) process(ctx context.Context, t *asynq.Task) error {
	p, err := ParseQuoteFetchPayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", errBadPayload, err)
	}
	taskID, ok := asynq.GetTaskID(ctx)
	if !ok {
		return errors.New("no task id in context: the handler must run under an asynq server")
	}
	q, err := h.fetch(ctx, p.Symbol)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", p.Symbol, err)
	}
	inserted, err := h.store.SavePrice(ctx, taskID, q)
	if err != nil {
		return fmt.Errorf("save %s: %w", p.Symbol, err)
	}
	res, err := json.Marshal(QuoteFetchResult{Symbol: q.Symbol, Price: q.Price, QuotedAt: q.QuotedAt, Duplicate: !inserted})
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if w := t.ResultWriter(); w != nil {
		// The row is committed; should this write fail, the retry finds
		// the row and only records the result.
		if _, err := w.Write(res); err != nil {
			return fmt.Errorf("write result: %w", err)
		}
	}
	return nil
}

// Symbol returns the symbol of a quote-fetch task, or "" for another task or
// an unreadable payload. For logs.
func Symbol(t *asynq.Task) string {
	if t.Type() != TypeQuoteFetch {
		return ""
	}
	p, err := ParseQuoteFetchPayload(t.Payload())
	if err != nil {
		return ""
	}
	return p.Symbol
}
