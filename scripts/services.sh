#!/usr/bin/env bash
# services.sh — make Redis and PostgreSQL available at REDIS_URL and
# DATABASE_URL, then create the database DATABASE_URL names.
#
# Works here and on a fresh Debian 12 machine (apt-get reachable, no systemd,
# no Docker). Services on loopback are managed: used if already up, started if
# installed, installed with apt-get otherwise. Services on any other host are
# only checked. Safe to run repeatedly and from several shells at once.
#
# Usage: scripts/services.sh [postgres]
#   postgres      only PostgreSQL (the tests start a Redis of their own)
#   REDIS_URL     default redis://127.0.0.1:6379/0
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/tickerq?sslmode=disable
set -euo pipefail

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tickerq?sslmode=disable}

REDIS_WAIT_SECONDS=20
PG_WAIT_SECONDS=30
LOCK_FILE=/run/lock/tickerq-services.lock
APT_UPDATED=false

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

need_cmd() {
	command -v "$1" >/dev/null 2>&1 || die "required command '$1' not found${2:+ ($2)}"
}

# as_root runs a command as root: directly when we are root, through sudo
# otherwise, and fails clearly when neither is possible. Every daemon is
# started through it, so it closes the lock descriptor (fd 9): a daemon that
# inherited it would hold the lock for its whole life and block later runs.
as_root() {
	if ((EUID == 0)); then
		"$@" 9>&-
	elif command -v sudo >/dev/null 2>&1; then
		sudo -- "$@" 9>&-
	else
		die "need root to run '$*' (not root and sudo is not installed)"
	fi
}

# as_postgres runs a command as the OS user postgres (peer auth on the socket).
as_postgres() {
	if ((EUID == 0)) && command -v runuser >/dev/null 2>&1; then
		runuser -u postgres -- "$@" 9>&-
	elif command -v sudo >/dev/null 2>&1; then
		sudo -u postgres -- "$@" 9>&-
	else
		return 1
	fi
}

apt_install() {
	need_cmd apt-get "install $* by hand"
	if ! $APT_UPDATED; then
		log "apt-get update"
		as_root apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 ||
			die "apt-get update failed"
		APT_UPDATED=true
	fi
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >&2 ||
		die "apt-get install $* failed"
}

# url_decode turns %XX escapes back into bytes.
url_decode() {
	printf '%b' "${1//%/\\x}"
}

# parse_url splits scheme://[user[:pass]@]host[:port][/path][?query] into the
# globals url_scheme, url_user, url_pass, url_host, url_port, url_path and
# url_query. IPv6 hosts come in brackets ([::1]:6379) and leave without them.
parse_url() {
	local url=$1 rest authority userinfo hostport
	[[ $url == *://* ]] || die "not a URL: '$url'"
	url_scheme=${url%%://*}
	rest=${url#*://}
	url_query=
	if [[ $rest == *\?* ]]; then
		url_query=${rest#*\?}
		rest=${rest%%\?*}
	fi
	authority=${rest%%/*}
	url_path=
	[[ $rest == */* ]] && url_path=$(url_decode "${rest#*/}")
	url_user='' url_pass=''
	hostport=$authority
	if [[ $authority == *@* ]]; then
		userinfo=${authority%@*}
		hostport=${authority##*@}
		url_user=$(url_decode "${userinfo%%:*}")
		[[ $userinfo == *:* ]] && url_pass=$(url_decode "${userinfo#*:}")
	fi
	url_port=
	if [[ $hostport == \[* ]]; then
		url_host=${hostport%%]*}
		url_host=${url_host#[}
		rest=${hostport#*]}
		url_port=${rest#:}
	else
		url_host=$(url_decode "${hostport%%:*}")
		[[ $hostport == *:* ]] && url_port=${hostport#*:}
	fi
	[[ -z $url_port || $url_port =~ ^[0-9]+$ ]] || die "bad port '$url_port' in URL"
}

# query_param NAME prints the value of NAME in url_query, if present.
query_param() {
	local kv
	local -a pairs
	IFS='&' read -ra pairs <<<"$url_query"
	for kv in "${pairs[@]}"; do
		[[ ${kv%%=*} == "$1" ]] && { url_decode "${kv#*=}"; return 0; }
	done
	return 0
}

is_loopback() {
	case $1 in
	localhost | 127.* | ::1 | /* | '') return 0 ;;
	*) return 1 ;;
	esac
}

# tcp_open HOST PORT succeeds when something accepts connections there.
tcp_open() {
	# shellcheck disable=SC2016 # $0 and $1 expand in the child bash
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- Redis

redis_ping() {
	if command -v redis-cli >/dev/null 2>&1; then
		local -a args=(-h "$REDIS_HOST" -p "$REDIS_PORT")
		[[ -n $REDIS_USER ]] && args+=(--user "$REDIS_USER")
		[[ $(REDISCLI_AUTH=$REDIS_PASS timeout 5 redis-cli "${args[@]}" ping 2>/dev/null) == PONG ]]
	else
		tcp_open "$REDIS_HOST" "$REDIS_PORT"
	fi
}

start_redis() {
	local -a bind=(127.0.0.1 -::1)
	[[ $REDIS_HOST == 127.* && $REDIS_HOST != 127.0.0.1 ]] && bind+=("$REDIS_HOST")
	log "starting redis-server on port $REDIS_PORT"
	as_root mkdir -p /var/lib/redis /var/log/redis
	# --save "" and --appendonly no: a scratch server for development and
	# tests, nothing is persisted.
	as_root redis-server --daemonize yes --bind "${bind[@]}" --port "$REDIS_PORT" \
		--save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
		die "redis-server failed to start (see /var/log/redis/ci.log)"
}

ensure_redis() {
	parse_url "$REDIS_URL"
	REDIS_HOST=$url_host REDIS_PORT=${url_port:-6379}
	REDIS_USER=$url_user REDIS_PASS=$url_pass

	case $url_scheme in
	redis) ;;
	redis-socket)
		[[ -S /$url_path ]] || die "Redis socket /$url_path does not exist (socket URLs are not managed)"
		log "redis: using socket /$url_path"
		return 0
		;;
	rediss | redis-sentinel)
		# TLS and sentinel deployments are never ours: check the first address only.
		REDIS_HOST=${REDIS_HOST%%,*} REDIS_PORT=${REDIS_PORT%%,*}
		tcp_open "$REDIS_HOST" "${REDIS_PORT:-6379}" ||
			die "$url_scheme server $REDIS_HOST:${REDIS_PORT:-6379} is unreachable"
		log "redis: $url_scheme server $REDIS_HOST:${REDIS_PORT:-6379} is reachable (not managed)"
		return 0
		;;
	*) die "unsupported REDIS_URL scheme '$url_scheme'" ;;
	esac
	[[ -n $REDIS_HOST ]] || REDIS_HOST=127.0.0.1

	if redis_ping; then
		log "redis: up at $REDIS_HOST:$REDIS_PORT"
		return 0
	fi
	is_loopback "$REDIS_HOST" ||
		die "Redis at $REDIS_HOST:$REDIS_PORT is unreachable (only loopback Redis is managed here)"

	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		apt_install redis-server redis-tools
		need_cmd redis-server
	fi
	# The package's own init script may have started it already.
	redis_ping || start_redis

	local i
	for ((i = 0; i < REDIS_WAIT_SECONDS * 2; i++)); do
		if redis_ping; then
			log "redis: up at $REDIS_HOST:$REDIS_PORT"
			return 0
		fi
		sleep 0.5
	done
	die "Redis did not answer PONG on $REDIS_HOST:$REDIS_PORT within ${REDIS_WAIT_SECONDS}s (see /var/log/redis/ci.log)"
}

# ------------------------------------------------------------ PostgreSQL

# PG_HOST/PG_PORT/PG_USER/PG_DB describe DATABASE_URL; PGPASSWORD and
# PGSSLMODE are exported for every client call when the URL carries them.
pg_isready_() {
	if [[ -n $PG_HOST ]]; then
		pg_isready -q -t 3 -h "$PG_HOST" -p "$PG_PORT"
	else
		pg_isready -q -t 3 -p "$PG_PORT"
	fi
}

pg_args() {
	PG_ARGS=(-p "$PG_PORT" -U "$PG_USER")
	[[ -n $PG_HOST ]] && PG_ARGS+=(-h "$PG_HOST")
	return 0
}

# psql_maint runs psql against the maintenance database as the URL's user.
psql_maint() {
	pg_args
	psql -X -w -q -v ON_ERROR_STOP=1 "${PG_ARGS[@]}" -d postgres "$@"
}

wait_postgres() {
	local i
	for ((i = 0; i < PG_WAIT_SECONDS * 2; i++)); do
		pg_isready_ && return 0
		sleep 0.5
	done
	return 1
}

# cluster_for_port prints "VERSION NAME STATUS LOGFILE" of the local cluster
# listening on PORT, if there is one.
cluster_for_port() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 0
	pg_lsclusters -h 2>/dev/null | awk -v port="$1" '$3 == port { print $1, $2, $4, $7; exit }'
}

# trust_loopback makes TCP logins from 127.0.0.1 and ::1 work without a
# password on a local cluster that refuses them. Debian's default is
# scram-sha-256 for these lines and the postgres role has no password, so
# nothing could log in over TCP. This is for a local development/test cluster
# only: never point this script at a cluster that holds anything of value.
trust_loopback() {
	local version=$1 name=$2 out hba
	out=$(psql_maint -tAc 'select 1' 2>&1) && return 0
	[[ $out == *password* ]] || return 0
	hba=/etc/postgresql/$version/$name/pg_hba.conf
	[[ -f $hba ]] || die "cannot log in as '$PG_USER' ($out) and $hba is missing"
	log "postgres: setting trust auth for loopback TCP in $hba (local dev/test cluster)"
	as_root sed -i.tickerq.bak -E \
		's#^([[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[^[:space:]]+#\1trust#' \
		"$hba"
	as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload ||
		die "could not reload cluster $version/$name"
	sleep 1
}

ensure_postgres() {
	parse_url "$DATABASE_URL"
	case $url_scheme in
	postgres | postgresql) ;;
	*) die "DATABASE_URL must be a postgres:// URL (got scheme '$url_scheme')" ;;
	esac
	PG_HOST=$url_host PG_PORT=${url_port:-5432}
	PG_USER=${url_user:-${PGUSER:-$(id -un)}}
	PG_DB=${url_path:-$PG_USER}
	[[ -n $url_pass ]] && export PGPASSWORD=$url_pass
	local sslmode
	sslmode=$(query_param sslmode)
	[[ -n $sslmode ]] && export PGSSLMODE=$sslmode

	if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
		if is_loopback "$PG_HOST" && ! command -v pg_lsclusters >/dev/null 2>&1; then
			apt_install postgresql postgresql-client
		else
			apt_install postgresql-client
		fi
		need_cmd pg_isready
	fi

	if pg_isready_; then
		# Running already (on a VM, apt-get install starts the cluster itself):
		# a local cluster may still refuse password-less TCP logins.
		if is_loopback "$PG_HOST"; then
			local running_version running_name _rest
			read -r running_version running_name _rest <<<"$(cluster_for_port "$PG_PORT")"
			[[ -n $running_version ]] && trust_loopback "$running_version" "$running_name"
		fi
		log "postgres: up at ${PG_HOST:-local socket}:$PG_PORT"
		return 0
	fi
	is_loopback "$PG_HOST" ||
		die "PostgreSQL at $PG_HOST:$PG_PORT is unreachable (only loopback PostgreSQL is managed here)"

	if ! command -v pg_lsclusters >/dev/null 2>&1; then
		apt_install postgresql postgresql-client
		need_cmd pg_ctlcluster
	fi

	local cluster version name status logfile
	cluster=$(cluster_for_port "$PG_PORT")
	if [[ -z $cluster ]]; then
		if [[ -n $(pg_lsclusters -h 2>/dev/null) ]]; then
			die "no PostgreSQL cluster on port $PG_PORT; existing clusters:
$(pg_lsclusters)
set DATABASE_URL to one of their ports"
		fi
		# Debian's postgresql package normally creates "main"; create it when
		# it did not (create_main_cluster = false, or an earlier failure).
		version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
		[[ -n $version ]] || die "PostgreSQL server is not installed under /usr/lib/postgresql"
		log "postgres: creating cluster $version/main on port $PG_PORT"
		as_root pg_createcluster -p "$PG_PORT" "$version" main >&2 ||
			die "pg_createcluster $version main failed"
		cluster=$(cluster_for_port "$PG_PORT")
		[[ -n $cluster ]] || die "cluster $version/main was created but is not on port $PG_PORT"
	fi
	read -r version name status logfile <<<"$cluster"

	if [[ $status != online* ]]; then
		log "postgres: starting cluster $version/$name"
		# A concurrent run may be starting it too; readiness below decides.
		as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2 ||
			log "postgres: pg_ctlcluster start reported an error, waiting anyway"
	fi
	wait_postgres ||
		die "PostgreSQL $version/$name did not become ready on port $PG_PORT within ${PG_WAIT_SECONDS}s (see $logfile)"
	trust_loopback "$version" "$name"
	wait_postgres || die "PostgreSQL $version/$name is not ready after reload (see $logfile)"
	log "postgres: up at ${PG_HOST:-local socket}:$PG_PORT (cluster $version/$name)"
}

ensure_database() {
	local exists out out2=
	exists=$(psql_maint -tA -v db="$PG_DB" <<<"select 1 from pg_database where datname = :'db'" 2>&1) ||
		die "cannot query databases as '$PG_USER' on ${PG_HOST:-local socket}:$PG_PORT: $exists"
	if [[ $exists == 1 ]]; then
		log "postgres: database '$PG_DB' exists"
		return 0
	fi

	log "postgres: creating database '$PG_DB' owned by '$PG_USER'"
	pg_args
	if out=$(createdb -w "${PG_ARGS[@]}" -O "$PG_USER" "$PG_DB" 2>&1); then
		return 0
	fi
	# Several runs at once: the first one wins, the others see "already exists".
	[[ $out == *"already exists"* ]] && return 0
	# The URL's user may lack CREATEDB; on a local cluster, ask postgres itself.
	if [[ $out == *"permission denied"* ]] && is_loopback "$PG_HOST" &&
		out2=$(as_postgres createdb -p "$PG_PORT" -O "$PG_USER" "$PG_DB" 2>&1); then
		return 0
	fi
	[[ $out2 == *"already exists"* ]] && return 0
	die "could not create database '$PG_DB': $out${out2:+; as postgres: $out2}"
}

main() {
	need_cmd timeout
	# Serialize concurrent runs on this machine (best effort: every step also
	# tolerates a racing run on its own).
	[[ -d ${LOCK_FILE%/*} ]] || LOCK_FILE=/tmp/${LOCK_FILE##*/}
	if command -v flock >/dev/null 2>&1 && { exec 9>>"$LOCK_FILE"; } 2>/dev/null; then
		chmod 0666 "$LOCK_FILE" 2>/dev/null || true
		flock -w 300 9 || die "timed out after 300s waiting for $LOCK_FILE (another services.sh run, or a process holding it: fuser $LOCK_FILE)"
	fi
	case ${1:-all} in
	all)
		ensure_redis
		ensure_postgres
		ensure_database
		log "ready: redis up, postgres database '$PG_DB' exists"
		;;
	postgres)
		ensure_postgres
		ensure_database
		log "ready: postgres database '$PG_DB' exists"
		;;
	*) die "usage: services.sh [postgres]" ;;
	esac
}

main "$@"
