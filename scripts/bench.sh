#!/usr/bin/env bash
# bench.sh OUT [bench flags...] — run internal/bench into OUT. When this
# checkout's history has it, the worker as it was before group commit (one
# transaction per job, commit OLD_REV) is built and measured beside the
# others; nothing of it is kept in the tree.
set -euo pipefail
out=$1
shift
OLD_REV=${OLD_REV:-06de034}

args=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if git rev-parse --verify -q "$OLD_REV^{commit}" >/dev/null 2>&1; then
	mkdir "$tmp/src"
	git archive "$OLD_REV" | tar -x -C "$tmp/src"
	echo "bench: building the worker of $OLD_REV (before group commit)" >&2
	(cd "$tmp/src" && go build -o "$tmp/old-worker" ./worker)
	args+=(--old-worker "$tmp/old-worker")
else
	echo "bench: commit $OLD_REV is not in this checkout; the worker before group commit is not measured" >&2
fi
mkdir -p "$out"
go run ./internal/bench --out "$out" "${args[@]}" "$@"
