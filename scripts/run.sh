#!/usr/bin/env bash
# run.sh BIN RUN_DIR WATCHLIST — start quoteserver, worker and web UI in the
# background (logs and pids in RUN_DIR), enqueue the watchlist, wait for
# those tasks only (what `producer enqueue` printed is kept in
# RUN_DIR/enqueued.txt) and show where to look, also when something failed or
# timed out; then it exits non-zero. `make stop` stops what it started.
set -euo pipefail
bin=$1 run_dir=$2 watchlist=$3
mkdir -p "$run_dir"

quote_addr=${QUOTE_API_URL:-http://127.0.0.1:8000}
quote_addr=${quote_addr#http://}
admin_addr=${ADMIN_ADDR-127.0.0.1:8081}
ui_addr=${UI_ADDR:-127.0.0.1:8080}
db=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tickerq?sslmode=disable}
enqueued=$run_dir/enqueued.txt
prices_sql='SELECT symbol, price, quoted_at, written_by, task_id FROM stock_prices ORDER BY id DESC LIMIT 20'

# where_to_look runs on every exit, so that a failure or a timeout still says
# what runs and where its logs are.
where_to_look() {
	local code=$?
	trap - EXIT
	set +e
	if [ "$code" -ne 0 ]; then
		echo >&2
		echo "run: FAILED (exit $code); what it started keeps running until: make stop" >&2
	fi
	cat <<MSG

tickerq is running in the background (stop it with: make stop).
  web UI:   http://$ui_addr/   (asynqmon: queues, tasks, results, errors)
  prices:   psql '$db' -c '$prices_sql'
  queues:   $bin/producer stats
  tasks:    $bin/producer tasks list --state archived   (or pending, active, scheduled, retry, completed)
  enqueued: $enqueued   (wait again: $bin/producer wait --tasks $enqueued)
  enqueue:  $bin/producer enqueue IBM ORCL   (or --file $watchlist)
  logs:     tail -f $run_dir/worker.log $run_dir/quoteserver.log $run_dir/ui.log
  metrics:  curl -s http://$admin_addr/metrics | grep ^tickerq_
  health:   curl -s http://$admin_addr/readyz
UNKNOWN in the watchlist is archived on purpose: it shows a permanent failure.
MSG
	exit "$code"
}
trap where_to_look EXIT

start() { # name, then the command
	local name=$1; shift
	"$@" >"$run_dir/$name.log" 2>&1 &
	echo $! >"$run_dir/$name.pid"
	echo "run: started $name (pid $!, log $run_dir/$name.log)" >&2
}

wait_http() { # url, name
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "run: $2 did not come up; last lines of its log:" >&2
	tail -n 20 "$run_dir/$2.log" >&2
	exit 1
}

start quoteserver "$bin/quoteserver" --addr "$quote_addr"
wait_http "http://$quote_addr/api/v1/quote?symbol=AAPL" quoteserver
LOG_FORMAT=${LOG_FORMAT:-console} start worker "$bin/worker"
if [ -n "$admin_addr" ]; then wait_http "http://$admin_addr/readyz" worker; else sleep 1; fi

start ui "$bin/producer" ui --addr "$ui_addr"
wait_http "http://$ui_addr/" ui

echo "run: enqueueing $watchlist (task list in $enqueued)" >&2
"$bin/producer" enqueue --file "$watchlist" >"$enqueued"
cat "$enqueued"
status=0
"$bin/producer" wait --tasks "$enqueued" --timeout 60s || status=$?
"$bin/producer" stats || status=$?
if [ "$status" -eq 0 ] && command -v psql >/dev/null; then
	psql "$db" -c "$prices_sql" || true
fi
exit "$status"
