#!/usr/bin/env bash
# stop.sh RUN_DIR — stop what run.sh started: SIGTERM, then wait for each
# process (the worker drains in-flight jobs first).
set -euo pipefail
run_dir=$1
for name in ui worker quoteserver; do
	pidfile="$run_dir/$name.pid"
	[ -f "$pidfile" ] || continue
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "stop: $name (pid $pid) still running after 30 s" >&2
			exit 1
		fi
		echo "stop: stopped $name (pid $pid)" >&2
	fi
	rm -f "$pidfile"
done
