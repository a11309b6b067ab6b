#!/usr/bin/env bash
# start.sh - install what is missing, build, and run the local cluster of
# shard-config.toml: one kvshard-server per [[shards]] entry, data under
# data/, logs and pid files under .run/.
#
#   ./start.sh               run in the foreground; Ctrl-C stops every shard
#   ./start.sh --background  start and return
#   ./start.sh stop          stop a cluster started with --background
#   ./start.sh status        show which shards run
# Environment: CONFIG (default shard-config.toml), BUILD_DIR (default build).
set -u
cd "$(dirname "$0")" || exit 1
. .ci/common.sh

CONFIG=${CONFIG:-shard-config.toml}
BUILD_DIR=${BUILD_DIR:-build}
RUN_DIR=.run
SERVER=$BUILD_DIR/server/kvshard-server
START_TIMEOUT_S=10
STOP_TIMEOUT_S=15

# The shards of the config: "name address" per line.
shards() {
	awk -F'=' '
	/^[[:space:]]*\[\[shards\]\]/ { if (n != "") print n, a; n = ""; a = ""; next }
	/^[[:space:]]*\[/ { if (n != "") print n, a; n = ""; a = ""; next }
	$1 ~ /^[[:space:]]*name[[:space:]]*$/ { gsub(/[" \t\r]/, "", $2); n = $2 }
	$1 ~ /^[[:space:]]*address[[:space:]]*$/ { gsub(/[" \t\r]/, "", $2); a = $2 }
	END { if (n != "") print n, a }' "$CONFIG"
}

running_pid() { # name -> pid if that shard runs
	local f=$RUN_DIR/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = kvshard-server ] &&
		echo "$pid"
}

stop_all() {
	local name addr pid left=() deadline
	while read -r name addr; do
		pid=$(running_pid "$name") || { rm -f "$RUN_DIR/$name.pid"; continue; }
		kill -TERM "$pid" 2>/dev/null && left+=("$name:$pid")
	done < <(shards)
	deadline=$((SECONDS + STOP_TIMEOUT_S))
	for entry in "${left[@]}"; do
		name=${entry%%:*}
		pid=${entry##*:}
		while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			kvs_log "$name (pid $pid) did not stop in ${STOP_TIMEOUT_S}s: killing it"
			kill -KILL "$pid" 2>/dev/null
		fi
		rm -f "$RUN_DIR/$name.pid"
		kvs_log "stopped $name"
	done
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
}

case ${1:-} in
stop) stop_all; exit 0 ;;
status) status; exit 0 ;;
--background | "") ;;
-h | --help)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
	exit 0 ;;
*) echo "usage: ./start.sh [--background | stop | status]" >&2; exit 2 ;;
esac
background=0
[ "${1:-}" = --background ] && background=1

# shellcheck disable=SC2086
kvs_install $KVS_BUILD_PACKAGES curl || exit 1
kvs_build "$BUILD_DIR" -Dserver=enabled || exit 1
[ -f "$CONFIG" ] || { kvs_log "no $CONFIG"; exit 1; }
mkdir -p "$RUN_DIR" data

started=()
while read -r name addr; do
	if pid=$(running_pid "$name"); then
		kvs_log "$name is already running (pid $pid); ./start.sh stop first"
		stop_all_started=1
		break
	fi
	"$SERVER" --config "$CONFIG" --shard "$name" >>"$RUN_DIR/$name.log" 2>&1 &
	echo $! >"$RUN_DIR/$name.pid"
	started+=("$name $addr $!")
done < <(shards)
if [ -n "${stop_all_started:-}" ]; then
	stop_all
	exit 1
fi

# Wait until every shard answers /health (or has died).
for entry in "${started[@]}"; do
	read -r name addr pid <<<"$entry"
	deadline=$((SECONDS + START_TIMEOUT_S))
	until curl -fs -o /dev/null "http://$addr/health"; do
		if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
			kvs_log "$name did not start; its log ($RUN_DIR/$name.log) ends with:"
			tail -n 5 "$RUN_DIR/$name.log" >&2
			stop_all
			exit 1
		fi
		sleep 0.1
	done
	kvs_log "$name is up on $addr (pid $pid, log $RUN_DIR/$name.log)"
done

first=$(shards | awk 'NR == 1 { print $2 }')
cat <<MSG

kvshard is running: ${#started[@]} shards from $CONFIG. Try, against any shard:

  curl -Lkv 'http://$first/store?key=mykey&value=myvalue'
  curl -Lkv 'http://$first/retrieve?key=mykey'
  curl -X PUT --data-binary @somefile 'http://$first/v1/kv/some%2Fkey'
  curl 'http://$first/v1/cluster'

MSG
if [ $background = 1 ]; then
	echo "Stop it with: ./start.sh stop"
	exit 0
fi
echo "Press Ctrl-C to stop every shard."
trap 'echo; stop_all; exit 0' INT TERM
while :; do
	for entry in "${started[@]}"; do
		read -r name addr pid <<<"$entry"
		if ! kill -0 "$pid" 2>/dev/null; then
			kvs_log "$name (pid $pid) exited; see $RUN_DIR/$name.log"
			stop_all
			exit 1
		fi
	done
	sleep 1
done
