# shellcheck shell=bash
# proc.sh — sourced by run.sh and stop.sh: which process is which, read from
# /proc alone (nothing to install, also on a fresh Debian without iproute2).
#
# A pid file holds one line, "PID START_TIME EXE": the pid, the process's
# start time (field 22 of /proc/PID/stat, clock ticks since boot) and the
# binary it runs. Pid and start time name one process for the machine's
# uptime, where a pid alone names whatever process reuses it later.

# proc_stat_tail PID prints /proc/PID/stat after the command name, which may
# hold spaces and parentheses: field 3 (the state) first.
proc_stat_tail() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	printf '%s\n' "${stat##*) }"
}

# proc_start_time PID prints the process's start time.
proc_start_time() {
	local -a f
	read -ra f <<<"$(proc_stat_tail "$1")" || return 1
	[ "${#f[@]}" -ge 20 ] || return 1
	printf '%s\n' "${f[19]}" # field 22, counted from field 3
}

# proc_alive PID succeeds while the process runs: it exists and is not a
# zombie (kill -0 succeeds on a zombie).
proc_alive() {
	local tail
	tail=$(proc_stat_tail "$1") || return 1
	[[ $tail != [ZX]* ]]
}

# proc_exe PID prints the binary the process runs; " (deleted)" is dropped,
# as `go build` replaces bin/X under a running process.
proc_exe() {
	local exe
	exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
	printf '%s\n' "${exe% (deleted)}"
}

# proc_cmd PID prints the process's command line, cut to 120 characters.
proc_cmd() {
	local cmd
	cmd=$(tr '\0\n' '  ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	cmd=${cmd% }
	[ ${#cmd} -le 120 ] || cmd="${cmd:0:117}..."
	printf '%s\n' "$cmd"
}

# pidfile_write FILE PID EXE records the process PID started from EXE.
pidfile_write() {
	local start
	start=$(proc_start_time "$2") || start='?'
	printf '%s %s %s\n' "$2" "$start" "$(readlink -f "$3")" >"$1.tmp"
	mv "$1.tmp" "$1"
}

# pidfile_check FILE EXE succeeds when the process FILE records still runs
# and is that process: the same start time (when recorded; pid files of older
# versions hold the pid only) and the binary EXE. It sets pf_pid, and pf_why
# to the reason when it fails.
pidfile_check() {
	local file=$1 want_exe start exe now
	want_exe=$(readlink -f "$2")
	pf_pid='' pf_why=''
	read -r pf_pid start exe <"$file" 2>/dev/null || true
	if ! [[ $pf_pid =~ ^[0-9]+$ ]]; then
		pf_why="it holds no pid"
		return 1
	fi
	if ! proc_alive "$pf_pid"; then
		pf_why="pid $pf_pid is not running"
		return 1
	fi
	now=$(proc_start_time "$pf_pid") || now=
	if [ -n "$start" ] && [ "$start" != "?" ] && [ "$start" != "$now" ]; then
		pf_why="pid $pf_pid is another process now, of another start time: $(proc_cmd "$pf_pid")"
		return 1
	fi
	if [ -n "$exe" ] && [ "$exe" != "$want_exe" ]; then
		pf_why="it names $exe, not $want_exe"
		return 1
	fi
	if [ "$(proc_exe "$pf_pid")" != "$want_exe" ]; then
		pf_why="pid $pf_pid is not $want_exe but: $(proc_cmd "$pf_pid" || echo 'a process of another user')"
		return 1
	fi
}

# stop_pidfile FILE EXE NAME stops the process FILE records, if it still is
# that process (pidfile_check), with SIGTERM, then waits up to 30 s for it to
# exit (the worker drains in-flight jobs first). Anything else is left alone;
# the file is removed either way. It fails only when the process outlives the
# wait.
stop_pidfile() {
	local file=$1 exe=$2 name=$3
	[ -f "$file" ] || return 0
	if ! pidfile_check "$file" "$exe"; then
		echo "stop: $name: $file is stale ($pf_why): removed it, stopped nothing" >&2
		rm -f "$file"
		return 0
	fi
	kill -TERM "$pf_pid" 2>/dev/null || true
	for _ in $(seq 1 300); do proc_alive "$pf_pid" || break; sleep 0.1; done
	if proc_alive "$pf_pid"; then
		echo "stop: $name (pid $pf_pid) still running 30 s after SIGTERM; $file kept" >&2
		return 1
	fi
	echo "stop: stopped $name (pid $pf_pid)" >&2
	rm -f "$file"
}

# socket_hex HOST prints how /proc/net/tcp{,6} spell the address HOST
# ("ANY" for a wildcard address, "" when it cannot say).
socket_hex() {
	local host=$1 a b c d
	case $host in
	'' | 0.0.0.0 | :: | '*') echo ANY ;;
	localhost) socket_hex 127.0.0.1 ;;
	::1) echo 00000000000000000000000001000000 ;;
	*)
		if [[ $host =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
			a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]}
			printf '%02X%02X%02X%02X\n' "$d" "$c" "$b" "$a"
		else
			echo ''
		fi
		;;
	esac
}

# split_addr HOST:PORT sets addr_host and addr_port ([::1]:8000 gives ::1).
split_addr() {
	addr_port=${1##*:}
	addr_host=${1%:*}
	addr_host=${addr_host#[}
	addr_host=${addr_host%]}
}

# listen_inodes HOST:PORT prints the socket inode of every TCP listener that
# keeps a new listener from binding HOST:PORT: one on the same address, or
# where either is a wildcard address (or an address this cannot decode).
listen_inodes() {
	local want
	split_addr "$1"
	want=$(socket_hex "$addr_host")
	awk -v port="$(printf '%04X' "$addr_port")" -v want="$want" '
		$4 == "0A" {
			split($2, local_, ":")
			if (local_[2] != port) next
			have = local_[1]
			if (have ~ /^0+$/) have = "ANY"
			else if (have ~ /^0000000000000000FFFF0000/) have = substr(have, 25)
			if (want == "" || want == "ANY" || have == "ANY" || have == want) print $10
		}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u
}

# socket_pids INODE [PID] prints the pids holding socket INODE (among PID's
# only, when given): those of other users stay unseen unless run as root.
socket_pids() {
	local where='/proc/[0-9]*/fd'
	[ -z "${2:-}" ] || where=/proc/$2/fd
	# shellcheck disable=SC2086 # $where is a glob on purpose
	find $where -maxdepth 1 -lname "socket:\[$1\]" 2>/dev/null | cut -d/ -f3 | sort -un
}

# listening_pid PID HOST:PORT succeeds when process PID holds a listener on
# HOST:PORT.
listening_pid() {
	local inode
	for inode in $(listen_inodes "$2"); do
		[ -n "$(socket_pids "$inode" "$1")" ] && return 0
	done
	return 1
}
