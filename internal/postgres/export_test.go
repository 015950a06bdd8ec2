package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// Pool exposes the pool to the external tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ident exposes the quoted role to the external tests.
func (r Role) Ident() string { return r.ident() }
