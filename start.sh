#!/usr/bin/env bash
# start.sh - install what is missing, build, and run the local cluster of
# shard-config.toml: one kvshard-server per [[shards]] entry, data where
# the config says (data/ by default), logs and pid files under .run/.
# A config with [coordination] also gets a private etcd member on its
# first endpoint (when that is a loopback address and no etcd answers
# there), with its data under .run/etcd.
#
#   ./start.sh               run in the foreground; Ctrl-C stops every shard
#   ./start.sh --background  start the shards not running yet, and return
#   ./start.sh stop          stop a cluster started with --background
#   ./start.sh status        show which shards run
#   ./start.sh add NAME [W [HOST:PORT]]
#                            start one more shard and add it to the running
#                            cluster (weight W, default 1; on the next free
#                            port unless given): its data moves to it while
#                            the cluster serves (needs the [coordination]
#                            table of shard-config.toml)
# Environment: CONFIG (default shard-config.toml), BUILD_DIR (default build),
# RUN_DIR (default .run), KVS_SKIP_BUILD=1 (use the binaries already built),
# ETCD_PEER_PORT (etcd's peer port; default its client port + 1).
set -u
cd "$(dirname "$0")" || exit 1
. .ci/common.sh

CONFIG=${CONFIG:-shard-config.toml}
BUILD_DIR=${BUILD_DIR:-build}
RUN_DIR=${RUN_DIR:-.run}
SERVER=$BUILD_DIR/server/kvshard-server
START_TIMEOUT_S=10
STOP_TIMEOUT_S=15
HEALTH_TIMEOUT_S=2

usage() {
	sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
}

# The shards of the config, "name address" per line, as the server itself
# reads the file (so quoting and comments mean what TOML says), then those
# ./start.sh add started.
shards() {
	"$SERVER" --config "$CONFIG" --list-shards || return 1
	[ ! -f "$RUN_DIR/added" ] || cat "$RUN_DIR/added"
}

alive() { # pid [command] -> is it a kvshard-server (or command) that runs?
	[ "$(cat /proc/"$1"/comm 2>/dev/null)" = "${2:-kvshard-server}" ] || return 1
	runs "$1"
}

# Does pid run? A process that died but was not reaped yet (Z) does not.
# (For a child this script just started: until it has exec'd, its
# command is still this shell's, which alive would not take.)
runs() { # pid
	local state
	read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
	[ "$state" != Z ]
}

running_pid() { # name [command] -> pid if that shard (or command) runs
	local f=$RUN_DIR/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	alive "$pid" "${2:-}" && echo "$pid"
}

# Does the shard (or etcd) at host:port answer /health with 200? (bash's
# /dev/tcp: no curl needed.)
answers() {
	local hostport=$1 host port line
	host=${hostport%:*}
	port=${hostport##*:}
	host=${host#[}
	host=${host%]}
	exec 3<>"/dev/tcp/$host/$port" || return 1
	printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$hostport" >&3
	IFS= read -r -t "$HEALTH_TIMEOUT_S" line <&3
	exec 3<&- 3>&-
	[[ ${line:-} == HTTP/1.?" 200 "* ]]
}

# The etcd endpoints of the config's [coordination], one per line (none
# without it).
etcd_endpoints() {
	"$SERVER" --config "$CONFIG" --list-etcd
}

# The private etcd member start.sh started, if it runs.
etcd_pid() {
	running_pid etcd etcd
}

# Make sure etcd answers for a config with [coordination]: an etcd that
# already answers at one of its endpoints is used as it is; otherwise a
# private member is started on the first one, which must be a loopback
# address (start.sh starts nothing that other machines could reach).
start_etcd() { # the config's endpoints, one per line
	local eps=$1 ep host port peer url peer_url pid deadline
	for ep in $eps; do
		if answers "$ep" 2>/dev/null; then
			kvs_log "etcd answers at $ep"
			return 0
		fi
	done
	ep=$(head -n 1 <<<"$eps")
	host=${ep%:*}
	port=${ep##*:}
	case ${host#[} in
	127.* | localhost | ::1]) ;;
	*)
		kvs_log "no etcd answers at $ep, and start.sh starts one only on a loopback address"
		return 1 ;;
	esac
	peer=${ETCD_PEER_PORT:-$((port + 1))}
	url=http://$ep
	peer_url=http://$host:$peer
	if ! pid=$(etcd_pid); then
		command -v etcd >/dev/null 2>&1 || {
			kvs_log "etcd is not installed (Debian: etcd-server)"
			return 1
		}
		etcd_started=1
		etcd --name kvshard-local --data-dir "$RUN_DIR/etcd" \
			--listen-client-urls "$url" --advertise-client-urls "$url" \
			--listen-peer-urls "$peer_url" \
			--initial-advertise-peer-urls "$peer_url" \
			--initial-cluster "kvshard-local=$peer_url" \
			>>"$RUN_DIR/etcd.log" 2>&1 &
		pid=$!
		echo "$pid" >"$RUN_DIR/etcd.pid"
	fi
	wait_started etcd "$pid" answers "$ep" || { stop_etcd; return 1; }
	kvs_log "etcd is up on $ep (pid $pid, data $RUN_DIR/etcd, log $RUN_DIR/etcd.log)"
}

# Stop the private etcd member, if start.sh started one that runs.
stop_etcd() {
	local pid deadline
	pid=$(etcd_pid) || { rm -f "$RUN_DIR/etcd.pid"; return 0; }
	kill -TERM "$pid" 2>/dev/null
	deadline=$((SECONDS + STOP_TIMEOUT_S))
	while etcd_pid >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
	if etcd_pid >/dev/null; then
		kvs_log "etcd (pid $pid) did not stop in ${STOP_TIMEOUT_S}s: killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$RUN_DIR/etcd.pid"
	kvs_log "stopped etcd"
}

# With TLS the port speaks HTTPS, which bash cannot: a shard is up once
# its log says it serves (it does after binding and starting the HTTP
# server), in the lines written since this start.
serving_since() { # name offset
	tail -c +"$(($2 + 1))" "$RUN_DIR/$1.log" 2>/dev/null | grep -q " serving on "
}

# Is the shard started at log offset `logged` up? (/health, or with TLS
# its log: see serving_since.)
shard_up() { # name address logged
	if [ "$tls" = 1 ]; then
		serving_since "$1" "$3"
	else
		answers "$2" 2>/dev/null
	fi
}

# Wait until what this script just started (pid; its log is
# $RUN_DIR/name.log) is up, as the command after pid says: 0, or 1 when it
# died or took START_TIMEOUT_S (with the end of its log).
wait_started() { # name pid command...
	local name=$1 pid=$2 deadline=$((SECONDS + START_TIMEOUT_S))
	shift 2
	until "$@" 2>/dev/null; do
		if ! runs "$pid" || [ $SECONDS -ge $deadline ]; then
			kvs_log "$name did not start; its log ($RUN_DIR/$name.log) ends with:"
			tail -n 5 "$RUN_DIR/$name.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

stop_all() {
	local name addr pid left=() deadline entry
	while read -r name addr; do
		pid=$(running_pid "$name") || { rm -f "$RUN_DIR/$name.pid"; continue; }
		kill -TERM "$pid" 2>/dev/null && left+=("$name:$pid")
	done < <(shards)
	deadline=$((SECONDS + STOP_TIMEOUT_S))
	for entry in "${left[@]}"; do
		name=${entry%%:*}
		pid=${entry##*:}
		while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		if alive "$pid"; then
			kvs_log "$name (pid $pid) did not stop in ${STOP_TIMEOUT_S}s: killing it"
			kill -KILL "$pid" 2>/dev/null
		fi
		rm -f "$RUN_DIR/$name.pid"
		kvs_log "stopped $name"
	done
	stop_etcd
}

status() {
	local name addr pid
	while read -r name addr; do
		if pid=$(running_pid "$name"); then
			echo "$name  $addr  running (pid $pid)"
		else
			echo "$name  $addr  stopped"
		fi
	done < <(shards)
	if pid=$(etcd_pid); then
		echo "etcd  $(etcd_endpoints | head -n 1)  running (pid $pid)"
	fi
}

# The shards authenticate each other with a secret of this cluster's own
# (so that no client can speak the peer protocol): made once, kept in
# $RUN_DIR/cluster-secret, and added to a copy of the config the shards
# run with (RUN_CONFIG). A config with its own [auth] table is used as it
# is.
make_run_config() {
	if grep -Eq '^[[:space:]]*\[[[:space:]]*auth[[:space:]]*\]' "$CONFIG"; then
		RUN_CONFIG=$CONFIG
		return 0
	fi
	if [ ! -s "$RUN_DIR/cluster-secret" ]; then
		(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' \
			>"$RUN_DIR/cluster-secret") || return 1
	fi
	# Its lines are $CONFIG's, so that any message's line:column holds.
	RUN_CONFIG=$RUN_DIR/config.toml
	{
		cat "$CONFIG"
		printf '\n# Added by start.sh: the local cluster'"'"'s secret.\n'
		printf '[auth]\ncluster_secret = "%s"\n' "$(cat "$RUN_DIR/cluster-secret")"
	} >"$RUN_CONFIG.tmp" && chmod 600 "$RUN_CONFIG.tmp" &&
		mv "$RUN_CONFIG.tmp" "$RUN_CONFIG"
}

# Start one more shard and add it to the running cluster: the admin call
# first (it joins with no data), then its server (which finds its shard in
# etcd's topology and starts the move).
add_shard() { # name [weight [address]]
	local name=${1:-} weight=${2:-1} addr=${3:-} first="" host port name_
	local addr_ pid logged out
	case $name in
	"" | -*) echo "usage: ./start.sh add NAME [WEIGHT [HOST:PORT]]" >&2; return 2 ;;
	esac
	if [ -z "$(etcd_endpoints)" ]; then
		kvs_log "add needs the topology in etcd: a [coordination] table in $CONFIG (docs/operations.md)"
		return 1
	fi
	while read -r name_ addr_; do
		if [ "$name_" = "$name" ]; then
			kvs_log "$CONFIG or an earlier add has a shard named $name already"
			return 1
		fi
		[ -z "$first" ] && running_pid "$name_" >/dev/null &&
			answers "$addr_" 2>/dev/null && first=$addr_
	done < <(shards)
	[ -n "$first" ] || { kvs_log "no shard of $CONFIG runs: ./start.sh --background first"; return 1; }
	if [ -z "$addr" ]; then
		# The next port after the highest one used that nothing
		# listens on.
		host=${first%:*}
		port=$(shards | awk '{ n = split($2, a, ":"); if (a[n] > m) m = a[n] } END { print m + 1 }')
		while (exec 3<>"/dev/tcp/${host#[}/$port") 2>/dev/null; do port=$((port + 1)); done
		addr=$host:$port
	fi
	make_run_config || return 1
	out=$("$BUILD_DIR/server/kvshard" --cluster "$first" cluster add "$name" "$addr" --weight "$weight" 2>&1) || {
		kvs_log "cannot add $name: $out"
		return 1
	}
	kvs_log "$out"
	echo "$name $addr" >>"$RUN_DIR/added"
	logged=$(stat -c %s "$RUN_DIR/$name.log" 2>/dev/null || echo 0)
	"$SERVER" --config "$RUN_CONFIG" --shard "$name" >>"$RUN_DIR/$name.log" 2>&1 &
	pid=$!
	echo "$pid" >"$RUN_DIR/$name.pid"
	wait_started "$name" "$pid" shard_up "$name" "$addr" "$logged" || return 1
	kvs_log "$name is up on $addr (pid $pid, log $RUN_DIR/$name.log)"
	[ "$weight" = 0 ] && return 0
	echo "Its share of the data moves to it now. Follow the move with:"
	echo "  $BUILD_DIR/server/kvshard --cluster $first cluster rebalance --watch"
}

need_server() {
	[ -x "$SERVER" ] && return 0
	kvs_log "$SERVER is not built yet: run ./start.sh first"
	exit 1
}

# With TLS the shards' port speaks HTTPS (see serving_since).
tls=0
grep -Eq '^[[:space:]]*\[[[:space:]]*tls[[:space:]]*\]' "$CONFIG" 2>/dev/null && tls=1

case ${1:-} in
stop) need_server; stop_all; exit 0 ;;
status) need_server; status; exit 0 ;;
add) need_server; shift; add_shard "$@"; exit $? ;;
--background | "") ;;
-h | --help) usage; exit 0 ;;
*) echo "usage: ./start.sh [--background | stop | status | add NAME [WEIGHT [HOST:PORT]]]" >&2; exit 2 ;;
esac
background=0
[ "${1:-}" = --background ] && background=1

if [ "${KVS_SKIP_BUILD:-}" != 1 ]; then
	# shellcheck disable=SC2086
	kvs_install $KVS_BUILD_PACKAGES || exit 1
	kvs_build "$BUILD_DIR" -Dserver=enabled || exit 1
fi
need_server
[ -f "$CONFIG" ] || { kvs_log "no $CONFIG"; exit 1; }
list=$(shards) || { kvs_log "$CONFIG cannot be read (see above)"; exit 1; }
mkdir -p "$RUN_DIR" || exit 1
etcd_started=0
eps=$(etcd_endpoints) || exit 1
if [ -n "$eps" ]; then
	if [ "${KVS_SKIP_BUILD:-}" != 1 ]; then
		kvs_install_no_start etcd-server || exit 1
	fi
	start_etcd "$eps" || exit 1
fi

make_run_config || exit 1

# Start the shards that do not run yet; leave running ones alone.
started=()
already=0
while read -r name addr; do
	if pid=$(running_pid "$name"); then
		kvs_log "$name is already running (pid $pid)"
		already=$((already + 1))
		continue
	fi
	# Where this start's lines begin in the log (for serving_since).
	logged=$(stat -c %s "$RUN_DIR/$name.log" 2>/dev/null || echo 0)
	"$SERVER" --config "$RUN_CONFIG" --shard "$name" >>"$RUN_DIR/$name.log" 2>&1 &
	echo $! >"$RUN_DIR/$name.pid"
	started+=("$name $addr $! $logged")
done <<<"$list"
if [ ${#started[@]} -eq 0 ]; then
	if [ $background = 1 ]; then
		kvs_log "kvshard is already running ($already shards); ./start.sh stop stops it"
		exit 0
	fi
	kvs_log "kvshard is already running in the background; ./start.sh stop first"
	exit 1
fi

# Wait until every shard started answers /health (or has died).
for entry in "${started[@]}"; do
	read -r name addr pid logged <<<"$entry"
	if ! wait_started "$name" "$pid" shard_up "$name" "$addr" "$logged"; then
		# Stop only what this run started.
		for e in "${started[@]}"; do
			read -r _ _ p _ <<<"$e"
			kill -TERM "$p" 2>/dev/null
		done
		[ $etcd_started = 1 ] && stop_etcd
		exit 1
	fi
	kvs_log "$name is up on $addr (pid $pid, log $RUN_DIR/$name.log)"
done

first=$(awk 'NR == 1 { print $2 }' <<<"$list")
if [ $tls = 1 ]; then
	scheme=https
	curl_ca=" --cacert <the [tls] ca file>"
else
	scheme=http
	curl_ca=
fi
cat <<MSG

kvshard is running: $(wc -l <<<"$list") shards from $CONFIG. Try, against any shard:

  curl -Lkv$curl_ca '$scheme://$first/store?key=mykey&value=myvalue'
  curl -Lkv$curl_ca '$scheme://$first/retrieve?key=mykey'
  curl$curl_ca -X PUT --data-binary @somefile '$scheme://$first/v1/kv/some%2Fkey'
  curl$curl_ca '$scheme://$first/v1/cluster'

MSG
if [ $background = 1 ]; then
	echo "Stop it with: ./start.sh stop"
	exit 0
fi
echo "Press Ctrl-C to stop every shard."
trap 'echo; stop_all; exit 0' INT TERM
while :; do
	for entry in "${started[@]}"; do
		read -r name addr pid _ <<<"$entry"
		if ! alive "$pid"; then
			kvs_log "$name (pid $pid) exited; see $RUN_DIR/$name.log"
			stop_all
			exit 1
		fi
	done
	sleep 1
done
