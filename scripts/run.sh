#!/usr/bin/env bash
# run.sh BIN RUN_DIR WATCHLIST — start quoteserver, worker and web UI in the
# background (logs and pid files in RUN_DIR), enqueue the watchlist, wait for
# those tasks only (what `producer enqueue` printed is kept in
# RUN_DIR/enqueued.txt) and show where to look, also when something failed or
# timed out; then it exits non-zero. `make stop` (stop.sh) stops exactly what
# it started: each pid file records the process's identity (proc.sh).
#
# The addresses are the programs' own variables (docs/configuration.md):
#   QUOTE_API_URL  http://127.0.0.1:8000  quoteserver listens on its HOST:PORT
#   ADMIN_ADDR     127.0.0.1:8081         worker's /healthz, /readyz, /metrics ("" = none)
#   UI_ADDR        127.0.0.1:8080         web UI
# It checks them all before it starts anything: a taken one is named, with
# what holds it, and nothing starts (exit 1). A process is ready only when the
# pid it started listens on its address and answers there; one that exits
# first, or later while the tasks run, is named with the end of its log.
# The worker without an admin server (ADMIN_ADDR="") is ready when the web UI,
# started before it, lists its host and pid among asynq's running servers,
# whatever LOG_LEVEL keeps out of its log.
set -euo pipefail
bin=$1 run_dir=$2 watchlist=$3
# shellcheck source=scripts/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"
mkdir -p "$run_dir"
bin=$(readlink -f "$bin")
run_dir=$(readlink -f "$run_dir")

default_redis=redis://127.0.0.1:6379/0
quote_url=${QUOTE_API_URL:-http://127.0.0.1:8000}
admin_addr=${ADMIN_ADDR-127.0.0.1:8081}
ui_addr=${UI_ADDR:-127.0.0.1:8080}
db=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tickerq?sslmode=disable}
# One log format for the three programs: the contract's default, JSON lines.
export LOG_FORMAT=${LOG_FORMAT:-json}
enqueued=$run_dir/enqueued.txt
prices_sql='SELECT symbol, price, quoted_at, written_by, task_id FROM stock_prices ORDER BY id DESC LIMIT 20'
hostport='^(\[[^]]*\]|[^:/]*):[0-9]+$'

quote_addr=${quote_url#http://}
quote_addr=${quote_addr%/}
if [[ $quote_url != http://* || ! $quote_addr =~ $hostport ]]; then
	echo "run: QUOTE_API_URL=$quote_url: make run starts its local quoteserver there, so it must be http://HOST:PORT (e.g. http://127.0.0.1:8100)" >&2
	exit 2
fi
for check in "ADMIN_ADDR=$admin_addr" "UI_ADDR=$ui_addr"; do
	var=${check%%=*} addr=${check#*=}
	if [ -n "$addr" ] && [[ ! $addr =~ $hostport ]]; then
		echo "run: $var=$addr: want HOST:PORT (e.g. 127.0.0.1:8100)" >&2
		exit 2
	fi
done

# The three programs, in the order they start (the web UI before the worker:
# see await): binary and arguments, address, its variable, and the URL that
# answers once it is ready.
names=(quoteserver ui worker)
declare -A exe=([quoteserver]=$bin/quoteserver [worker]=$bin/worker [ui]=$bin/producer)
declare -A args=([quoteserver]="--addr $quote_addr" [worker]="" [ui]="ui --addr $ui_addr")
declare -A addr_of=([quoteserver]=$quote_addr [worker]=$admin_addr [ui]=$ui_addr)
declare -A var_of=([quoteserver]=QUOTE_API_URL [worker]=ADMIN_ADDR [ui]=UI_ADDR)
declare -A ready_url=([quoteserver]=http://$quote_addr/stats [worker]=http://$admin_addr/readyz [ui]=http://$ui_addr/)

# whose PID describes the process PID for someone deciding what to stop: one
# a `make run` started (of this clone, or of another whose RUN_DIR is the
# Makefile's CLONE/run), or any other.
whose() {
	local pid=$1 path cmd clone name
	cmd=$(proc_cmd "$pid") || cmd='?'
	path=$(proc_exe "$pid") || path=
	clone=${path%/bin/*}
	for name in "${names[@]}"; do
		[ "$path" = "$clone/bin/${exe[$name]##*/}" ] || continue
		if ! pidfile_check "$clone/run/$name.pid" "$path" 2>/dev/null || [ "$pf_pid" != "$pid" ]; then
			continue
		fi
		if [ "$clone/run" = "$run_dir" ]; then
			echo "this clone's own \`make run\` (its $name, pid $pid): make stop stops it"
		else
			echo "another \`make run\` (its $name, pid $pid, clone $clone)"
		fi
		return
	done
	echo "pid $pid: $cmd"
}

# holders HOST:PORT describes what listens there, one process a line.
holders() {
	local inode pid seen=
	for inode in $(listen_inodes "$1"); do
		for pid in $(socket_pids "$inode"); do
			[[ " $seen " == *" $pid "* ]] && continue
			seen+=" $pid"
			whose "$pid"
		done
	done
	[ -n "$seen" ] || echo "a process not visible from here (another user's, or in another container)"
}

# held_by NAME says what holds NAME's address now, if anything does.
held_by() {
	local addr=${addr_of[$1]}
	[ -n "$addr" ] && [ -n "$(listen_inodes "$addr")" ] || return 0
	echo "run: ${var_of[$1]}: $addr is held by $(holders "$addr" | paste -sd';' -)" >&2
}

# log_tail NAME shows the last lines of NAME's log.
log_tail() {
	echo "run: last lines of $run_dir/$1.log:" >&2
	tail -n 15 "$run_dir/$1.log" | sed 's/^/  | /' >&2
}

# free_like HOST:PORT prints a free address on the same host, for advice.
free_like() {
	local port
	split_addr "$1"
	for port in $(seq $((addr_port + 100)) 100 $((addr_port + 2000 < 65535 ? addr_port + 2000 : 65535))); do
		[ -z "$(listen_inodes "${1%:*}:$port")" ] && { echo "${1%:*}:$port"; return; }
	done
	echo "${1%:*}:PORT"
}

# Nothing starts while any address is taken.
taken=0
for name in "${names[@]}"; do
	addr=${addr_of[$name]}
	if [ -z "$addr" ] || [ -z "$(listen_inodes "$addr")" ]; then
		continue
	fi
	taken=$((taken + 1))
	var=${var_of[$name]} suggest=$(free_like "$addr")
	[ "$var" = QUOTE_API_URL ] && suggest=http://$suggest
	echo "run: $var: $addr is taken by $(holders "$addr" | paste -sd';' -); set $var=$suggest (or another free one) to run beside it" >&2
done
if [ "$taken" -gt 0 ]; then
	echo "run: nothing started ($taken address(es) taken); see README.md, \"Ports: make run and the compose stack\"" >&2
	exit 1
fi

declare -A pid_of=() gone=()
started=()
running=false

# exited NAME says that NAME exited, with its status and the end of its log,
# and what holds its address now, once per process.
exited() {
	local name=$1 pid=${pid_of[$1]} status=0
	[ -z "${gone[$name]:-}" ] || return 0
	gone[$name]=1
	wait "$pid" 2>/dev/null || status=$?
	echo "run: $name (pid $pid) exited with status $status" >&2
	log_tail "$name"
	held_by "$name"
}

# all_alive reports each process of ours that has exited; it fails if any has.
all_alive() {
	local name ok=0
	for name in "${started[@]}"; do
		proc_alive "${pid_of[$name]}" && continue
		exited "$name"
		ok=1
	done
	return $ok
}

# finish runs on every exit. Before all three are ready it stops what it
# started; after, it says what runs and where to look, also when a task
# failed or timed out, or a process exited since.
# shellcheck disable=SC2317 # run by the trap
finish() {
	local code=$? name state=
	trap - EXIT
	set +e
	if ! $running; then
		if [ ${#started[@]} -gt 0 ]; then
			echo "run: FAILED (exit $code); stopping what it started" >&2
			for ((i = ${#started[@]} - 1; i >= 0; i--)); do
				name=${started[i]}
				if [ -n "${gone[$name]:-}" ]; then
					rm -f "$run_dir/$name.pid"
				else
					stop_pidfile "$run_dir/$name.pid" "${exe[$name]}" "$name"
				fi
			done
		fi
		exit "$code"
	fi
	all_alive || code=1
	if [ "$code" -ne 0 ]; then
		echo >&2
		echo "run: FAILED (exit $code); what still runs keeps running until: make stop" >&2
	fi
	for name in "${started[@]}"; do
		if [ -n "${gone[$name]:-}" ]; then
			state+=$(printf '\n  %-11s exited (see above)' "$name")
		else
			state+=$(printf '\n  %-11s pid %-8s %s' "$name" "${pid_of[$name]}" "${addr_of[$name]:+${addr_of[$name]} (${var_of[$name]})}")
		fi
	done
	echo
	if [ ${#gone[@]} -eq 0 ]; then
		echo "tickerq is running in the background (stop it with: make stop):$state"
	else
		echo "tickerq is only partly running (stop the rest with: make stop):$state"
	fi
	if [ "${REDIS_URL:-$default_redis}" != "$default_redis" ]; then
		echo "  env:      export REDIS_URL='$REDIS_URL'   (the producer commands below need it)"
	fi
	cat <<MSG
  web UI:   http://$ui_addr/   (asynqmon: queues, tasks, results, errors)
  prices:   psql '$db' -c '$prices_sql'
  queues:   $bin/producer stats
  tasks:    $bin/producer tasks list --state archived   (or pending, active, scheduled, retry, completed)
  enqueued: $enqueued   (wait again: $bin/producer wait --tasks $enqueued)
  enqueue:  $bin/producer enqueue IBM ORCL   (or --file $watchlist)
  logs:     tail -f $run_dir/worker.log $run_dir/quoteserver.log $run_dir/ui.log   ($LOG_FORMAT)
MSG
	if [ -n "$admin_addr" ]; then
		echo "  metrics:  curl -s http://$admin_addr/metrics | grep ^tickerq_"
		echo "  health:   curl -s http://$admin_addr/readyz"
	fi
	echo "UNKNOWN in the watchlist is archived on purpose: it shows a permanent failure."
	exit "$code"
}
trap finish EXIT

# start NAME starts the program in the background and records its identity.
start() {
	local name=$1
	# shellcheck disable=SC2086 # args holds words on purpose
	"${exe[$name]}" ${args[$name]} >"$run_dir/$name.log" 2>&1 &
	pid_of[$name]=$!
	started+=("$name")
	pidfile_write "$run_dir/$name.pid" "$!" "${exe[$name]}"
	echo "run: started $name (pid $!, log $run_dir/$name.log)" >&2
}

# probe URL [CURL_ARGS...] GETs url, failing on an HTTP error; a URL of the
# web UI gets its basic auth when UI_USER is set, passed to curl as a config
# on stdin so that the password never shows in a process list.
probe() {
	local url=$1
	shift
	if [[ -n ${UI_USER:-} && $url == "http://$ui_addr/"* ]]; then
		local cred=$UI_USER:${UI_PASSWORD:-}
		cred=${cred//\\/\\\\}
		cred=${cred//\"/\\\"}
		curl -gfsS --max-time 2 -K - "$@" "$url" <<<"user = \"$cred\""
	else
		curl -gfsS --max-time 2 "$@" "$url"
	fi
}

# await NAME waits up to 30 s until the pid it started listens on its address
# and answers there; it fails when that process exits first. The worker
# without an admin server is ready once it serves its queues: the web UI
# lists it (asynqmon's /api/servers: host and pid, as asynq registers the
# server in Redis on start-up), which depends neither on the log level nor
# on a log line's wording.
await() {
	local name=$1 pid=${pid_of[$1]} addr=${addr_of[$1]} servers
	for _ in $(seq 1 300); do
		if ! proc_alive "$pid"; then
			exited "$name"
			exit 1
		fi
		if [ -z "$addr" ]; then
			servers=$(probe "http://$ui_addr/api/servers" 2>/dev/null) || servers=
			[[ $servers == *"\"host\":\"$HOSTNAME\",\"pid\":$pid,"* ]] && return 0
		elif listening_pid "$pid" "$addr" && probe "${ready_url[$name]}" -o /dev/null 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	if [ -n "$addr" ]; then
		echo "run: $name (pid $pid) is not ready after 30 s on $addr" >&2
	else
		echo "run: $name (pid $pid) is not ready after 30 s: http://$ui_addr/api/servers does not list it" >&2
	fi
	log_tail "$name"
	[ -z "$addr" ] || listening_pid "$pid" "$addr" || held_by "$name"
	exit 1
}

for name in "${names[@]}"; do
	start "$name"
	await "$name"
done
running=true

echo "run: enqueueing $watchlist (task list in $enqueued)" >&2
"$bin/producer" enqueue --file "$watchlist" >"$enqueued"
cat "$enqueued"
status=0
# Wait for the tasks in the background, to notice a process of ours exiting
# meanwhile rather than after the wait's timeout.
"$bin/producer" wait --tasks "$enqueued" --timeout 60s &
waiter=$!
while proc_alive "$waiter"; do
	if ! all_alive; then
		kill "$waiter" 2>/dev/null || true
		status=1
		break
	fi
	sleep 0.2
done
wait "$waiter" || status=$?
"$bin/producer" stats || status=$?
if [ "$status" -eq 0 ] && command -v psql >/dev/null; then
	psql "$db" -c "$prices_sql" || true
fi
exit "$status"
