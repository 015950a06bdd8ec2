package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// What otelpgx records of a statement's error is its SQLSTATE, never the
// message, which can quote the refused value; errors.As still finds the
// PgError (otelpgx's SQLSTATE attribute).
func TestDataFreeError(t *testing.T) {
	t.Parallel()
	pgErr := &pgconn.PgError{Code: "22P02", Message: `invalid input syntax for type numeric: "98765.4321"`}
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("insert: %w", pgErr), "SQLSTATE 22P02"},
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "cancelled"},
		{errors.New("conn closed: 98765.4321"), "failed"},
	}
	for _, tc := range tests {
		got := dataFree(tc.err)
		if got.Error() != tc.want {
			t.Errorf("dataFree(%v) = %q, want %q", tc.err, got.Error(), tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("dataFree(%v) does not unwrap to it", tc.err)
		}
	}
	var pe *pgconn.PgError
	if !errors.As(dataFree(pgErr), &pe) || pe.Code != "22P02" {
		t.Errorf("errors.As lost the PgError")
	}
	if dataFree(nil) != nil {
		t.Error("dataFree(nil) != nil")
	}
}
