#!/usr/bin/env bash
# test.sh — run the test suite (`make test`) against a Redis of its own.
#
# Unless TEST_REDIS_URL is set, starts a private redis-server on a free
# loopback port, persisting nothing, in a temporary directory, points
# TEST_REDIS_URL at it, runs the tests and stops it (and removes the
# directory) however the run ends. The tests never use REDIS_URL, so a
# developer's Redis is left alone. With TEST_REDIS_URL set, the tests use
# that server, and only its empty databases 1–15 (README, "Tests").
#
# The tests run through gotestsum (a tool dependency in go.mod): one line a
# package, the output of each failing test, and at the end a summary that
# lists every skipped test with its reason. Its exit status is go test's.
#
# Usage: scripts/test.sh
#   TEST_PKGS        packages to test (default ./...)
#   TEST_REDIS_URL   a Redis server to use instead of a private one
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test: %s\n' "$*" >&2; }
die() { printf 'test: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/proc.sh
. scripts/proc.sh

REDIS_PID=""
REDIS_PORT=""
REDIS_DIR=""

# stop_redis stops the redis-server this script started, once it has
# checked that the pid still is that server (proc.sh's pidfile_check: alive,
# the start time recorded at launch, the redis-server binary), not a process
# that reused the pid, and waits for it to exit; then it removes its
# directory. It reads /proc alone: `ps` (procps) may be missing.
stop_redis() {
	if [[ -n $REDIS_PID ]]; then
		if ! stop_pidfile "$REDIS_DIR/redis.pid" "$REDIS_BIN" "the tests' redis-server"; then
			log "left $REDIS_DIR in place: the server still uses it"
			REDIS_DIR=""
		fi
		# Reaped once it has exited; not waited for while it runs (a
		# process this did not stop).
		proc_alive "$REDIS_PID" || wait "$REDIS_PID" 2>/dev/null || true
	fi
	REDIS_PID=""
	if [[ -n $REDIS_DIR ]]; then
		rm -rf -- "$REDIS_DIR"
	fi
	REDIS_DIR=""
}

# redis_pid prints the process_id (INFO server) of the Redis answering on
# 127.0.0.1:$1; "?" when something answers there without one (not a Redis,
# or one that wants a password), nothing when nothing answers.
redis_pid() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
		printf 'INFO server\r\n' >&3
		while read -r -t 2 line <&3; do
			line=${line%$'\r'}
			case $line in
			process_id:*) echo "${line#process_id:}" && exit 0 ;;
			-*) break ;; # an error reply
			esac
		done
		echo '?'
	) 2>/dev/null
}

# port_taken says whether something listens on 127.0.0.1:$1.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_redis starts redis-server on a free port and waits until it
# answers, itself: INFO's process_id is the pid it started. A port taken
# between the check and the bind makes the server exit at once while the
# process that took it may answer there; the server is then stopped (if it
# still runs) and another port is tried.
start_redis() {
	REDIS_BIN=$(command -v redis-server) || die "redis-server not found (make tools installs it)"
	REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tickerq-test-redis.XXXXXX")
	local attempt i answer why
	for attempt in 1 2 3 4 5; do
		REDIS_PORT=$((20000 + RANDOM % 30000))
		port_taken "$REDIS_PORT" && continue
		"$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
			--save "" --appendonly no --daemonize no \
			--logfile "$REDIS_DIR/redis.log" &
		REDIS_PID=$!
		pidfile_write "$REDIS_DIR/redis.pid" "$REDIS_PID" "$REDIS_BIN"
		why="it did not answer within 10 s"
		for ((i = 0; i < 100; i++)); do
			answer=$(redis_pid "$REDIS_PORT")
			[[ $answer == "$REDIS_PID" ]] && return 0
			if [[ -n $answer ]]; then
				why="another process answers there (process_id $answer), not pid $REDIS_PID"
				break
			fi
			if ! proc_alive "$REDIS_PID"; then
				why="it exited"
				break
			fi
			sleep 0.1
		done
		log "redis-server on port $REDIS_PORT did not start (attempt $attempt): $why: $(tail -n 3 "$REDIS_DIR/redis.log" 2>/dev/null)"
		stop_redis
		REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tickerq-test-redis.XXXXXX")
	done
	die "could not start a private redis-server"
}

if [[ -z ${TEST_REDIS_URL:-} ]]; then
	trap stop_redis EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	start_redis
	export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
	log "private redis-server for the tests on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID), stopped when they end"
else
	log "TEST_REDIS_URL is set: the tests use its empty databases 1-15"
fi

# TICKERQ_REQUIRE_REDIS_SERVER: tests that start Redis processes of their
# own fail, rather than skip, when redis-server is missing.
# -p 2 -parallel 2: the tests share one Postgres (100 connections) and 15
# Redis databases; this is the load they are sized for, whatever the cores.
# Not exec: the EXIT trap must run after the tests.
read -r -a pkgs <<<"${TEST_PKGS:-./...}"
TICKERQ_REQUIRE_REDIS_SERVER=1 go tool gotestsum --format pkgname-and-test-fails --format-icons text -- \
	-race -count=1 -timeout 30m -p 2 -parallel 2 "${pkgs[@]}"
