#!/usr/bin/env bash
# tools.sh — the build tools the Makefile needs beyond Go itself: a C
# compiler (the race detector needs cgo), curl (make run's readiness
# checks), Chromium (the browser test of the web UI drives it headless) and
# redis-server (the chaos and Sentinel tests start Redis processes of their
# own, whatever REDIS_URL points at). Installed from Debian's packages when
# missing.
set -euo pipefail

missing=()
command -v go >/dev/null || { echo "tools: Go 1.26 is required (https://go.dev/dl/)" >&2; exit 1; }
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "tools: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "tools: need root or sudo to install ${missing[*]}" >&2; exit 1; }
	sudo=sudo
fi
$sudo apt-get update -qq
# env, not a prefix: sudo resets the environment, and a debconf question
# hidden behind -qq would hang the build.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
