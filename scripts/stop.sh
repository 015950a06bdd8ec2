#!/usr/bin/env bash
# stop.sh BIN RUN_DIR — stop what run.sh started, and nothing else: a pid file
# counts only while its process is still the one run.sh started (same pid and
# start time, running this clone's BIN/PROGRAM); a stale one is removed and
# said so. Each process gets SIGTERM, then up to 30 s to exit (the worker
# drains in-flight jobs first).
set -euo pipefail
bin=$1 run_dir=$2
# shellcheck source=scripts/proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"
status=0
stop_pidfile "$run_dir/ui.pid" "$bin/producer" ui || status=1
stop_pidfile "$run_dir/worker.pid" "$bin/worker" worker || status=1
stop_pidfile "$run_dir/quoteserver.pid" "$bin/quoteserver" quoteserver || status=1
exit "$status"
