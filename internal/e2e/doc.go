// Package e2e holds tickerq's end-to-end tests: they build worker, producer
// and quoteserver and drive them only through the outside contract, against
// the real Redis and PostgreSQL.
package e2e
