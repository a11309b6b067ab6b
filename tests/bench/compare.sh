#!/usr/bin/env bash
# compare.sh - kvshard side by side with what a user would pick instead,
# measured in one run on this machine with identical settings.
#
# Starts, one after the other, on 127.0.0.1 only:
#   nginx returning a fixed 100-byte body     (the HTTP ceiling)
#   kvshard-server, 1 node
#   kvshard, 3 nodes with N=1 and with N=3     (requests go to an owner)
#   kvshard, 3 nodes with N=3, requests spread over every node, then with
#     one node stopped by SIGSTOP (p99 and max)
#   kvshard, a proxy hop: a node that owns nothing forwards to the owner
#   Redis behind webdis                         (HTTP to Redis)
#   etcd, v3 JSON gateway                       (a durable, replicated peer)
# and drives each with tests/bench/kvshard-bench: GET (YCSB C, 100% reads)
# and PUT (100% writes), 100,000 keys, 100-byte values, 32 keep-alive
# connections, uniform keys; the median of RUNS runs. Then kvshard's p99 at
# half its peak GET rate, and wrk as a second opinion on GET.
#
# The load generator runs on CPU $LOAD_CPU and the servers on CPU
# $SERVER_CPU (taskset), so that neither steals the other's core. Missing
# peers are installed from Debian's packages (their system services are
# not started). Every process started here is stopped by its pid.
#
# Environment: RUNS (3), DURATION (10 s), CONNS (32), KEYS (100000),
# VALUE (100), LOAD_CPU (0), SERVER_CPU (1), RESULTS (bench-results/).
# Output: a markdown table on stdout; raw JSON per run under RESULTS.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. .ci/common.sh

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
KEYS=${KEYS:-100000}
VALUE=${VALUE:-100}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
RESULTS=${RESULTS:-bench-results}
BUILD=${BUILD_DIR:-build-release}
BASE_PORT=19080

PIDS=()
WORK=$(mktemp -d)
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 0.5
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

die() { kvs_log "error: $*"; exit 1; }

# ---------------------------------------------------------------------
# Preparation

install_peers() {
	kvs_install_no_start nginx-light redis-server webdis etcd-server wrk python3 curl
}

# Start a command pinned to the server CPU, in the background.
start_server() { # name logfile command...
	local name=$1 log=$2
	shift 2
	taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
	PIDS+=($!)
	echo $!
}

wait_http() { # url [expected-status]
	local i
	for i in $(seq 1 200); do
		curl -s -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.05
	done
	die "nothing answers at $1"
}

stop_pid() {
	local p=$1 i
	kill -TERM "$p" 2>/dev/null
	for i in $(seq 1 100); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null
}

# ---------------------------------------------------------------------
# Measuring

BENCH=
COMMON=()

# run_bench LABEL ARGS...: RUNS runs; prints "throughput p99_ms errors
# max_ms" (medians; the largest error count and latency of all runs).
run_bench() {
	local label=$1 i out
	shift
	mkdir -p "$RESULTS"
	for i in $(seq 1 "$RUNS"); do
		out="$RESULTS/$label.$i.json"
		taskset -c "$LOAD_CPU" "$BENCH" "${COMMON[@]}" "$@" --json >"$out" 2>"$WORK/bench.err" ||
			{ cat "$WORK/bench.err" >&2; die "kvshard-bench failed for $label"; }
	done
	python3 - "$RESULTS" "$label" "$RUNS" <<'PY'
import json, statistics, sys
d, label, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
tp, p99, err, mx = [], [], [], []
for i in range(1, runs + 1):
    j = json.load(open("%s/%s.%d.json" % (d, label, i)))
    tp.append(j["throughput"])
    p99.append(j["latency_ms"]["all"]["p99"])
    err.append(j["errors"]["total"])
    mx.append(j["latency_ms"]["all"]["max"])
print("%.0f %.3f %d %.3f" % (statistics.median(tp), statistics.median(p99), max(err), max(mx)))
PY
}

declare -A GET_TP GET_P99 GET_MAX PUT_TP PUT_P99 PUT_MAX NOTE

# A file-name-safe form of a label.
slug() { echo "$1" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//'; }

measure() { # name get-args... -- put-args... (put-args may be empty)
	local name=$1 get=() put=() seen=0 r tp p99 e
	shift
	for a in "$@"; do
		if [ "$a" = -- ]; then seen=1; continue; fi
		if [ $seen = 0 ]; then get+=("$a"); else put+=("$a"); fi
	done
	kvs_log "$name: GET"
	r=$(run_bench "$(slug "$name")-get" "${get[@]}" --workload C) || exit 1
	read -r tp p99 e mx <<<"$r"
	GET_TP[$name]=$tp
	GET_P99[$name]=$p99
	GET_MAX[$name]=$mx
	[ "$e" = 0 ] || NOTE[$name]="${NOTE[$name]:-}GET errors: $e. "
	if [ ${#put[@]} -gt 0 ]; then
		kvs_log "$name: PUT"
		r=$(run_bench "$(slug "$name")-put" "${put[@]}" --read-ratio 0) || exit 1
		read -r tp p99 e mx <<<"$r"
		PUT_TP[$name]=$tp
		PUT_P99[$name]=$p99
		PUT_MAX[$name]=$mx
		[ "$e" = 0 ] || NOTE[$name]="${NOTE[$name]:-}PUT errors: $e. "
	fi
}

kv_get() { echo --get "http://{host}/v1/kv/{key}" "$@"; }

# preload TARGET-AND-TEMPLATE-ARGS...: write every key once (not measured).
preload() {
	taskset -c "$LOAD_CPU" "$BENCH" "${COMMON[@]}" "$@" --preload -d 1 \
		--warmup 0 --read-ratio 1 >/dev/null || die "preload failed: $*"
}

# The disk's latency for one synchronous 4 KiB write, in ms.
sync_latency() {
	local f=$WORK/sync-probe n=500 t0 t1
	t0=$(date +%s%N)
	dd if=/dev/zero of="$f" bs=4k count=$n oflag=dsync 2>/dev/null
	t1=$(date +%s%N)
	rm -f "$f"
	python3 -c "print('%.2f' % (($t1 - $t0) / 1e6 / $n))"
}

kvshard_config() { # file nodes replication [weights...]
	local f=$1 n=$2 r=$3 i w
	shift 3
	{
		printf '[cluster]\nreplication = %d\ndata_dir = "%s"\n' "$r" "$WORK/data-$(basename "$f" .toml)"
		printf '[server]\nthreads = 1\n\n'
		for i in $(seq 1 "$n"); do
			w=${1:-1}
			shift || true
			printf '[[shards]]\nname = "s%d"\nidx = %d\naddress = "127.0.0.1:%d"\nweight = %s\n\n' \
				"$i" "$((i - 1))" "$((BASE_PORT + i))" "$w"
		done
	} >"$f"
}

start_kvshard() { # config nodes -> pids in KV_PIDS
	local cfg=$1 n=$2 i
	KV_PIDS=()
	for i in $(seq 1 "$n"); do
		KV_PIDS+=("$(start_server "s$i" "$WORK/s$i.log" "$BUILD/server/kvshard-server" -c "$cfg" -s "s$i")")
	done
	for i in $(seq 1 "$n"); do
		wait_http "http://127.0.0.1:$((BASE_PORT + i))/health"
	done
}

stop_kvshard() {
	local p
	for p in "${KV_PIDS[@]}"; do stop_pid "$p"; done
}

# ---------------------------------------------------------------------

main() {
	local hosts1="127.0.0.1:$((BASE_PORT + 1))" cfg r r2
	[ "$(nproc)" -ge 2 ] || kvs_log "warning: 1 CPU: load generator and servers share it"

	# shellcheck disable=SC2086
	kvs_install $KVS_BUILD_PACKAGES || exit 1
	install_peers || exit 1
	kvs_build "$BUILD" -Dbuildtype=release -Dtests=enabled -Dserver=enabled >/dev/null || exit 1
	BENCH=$BUILD/tests/bench/kvshard-bench
	[ -x "$BENCH" ] || die "$BENCH was not built"
	COMMON=(-c "$CONNS" -d "$DURATION" --warmup 1 --keys "$KEYS" --value-size "$VALUE" --dist uniform)

	# nginx: a fixed 100-byte body for every path.
	local body
	body=$(head -c "$VALUE" /dev/zero | tr '\0' v)
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $WORK/nginx;
	proxy_temp_path $WORK/nginx;
	fastcgi_temp_path $WORK/nginx;
	uwsgi_temp_path $WORK/nginx;
	scgi_temp_path $WORK/nginx;
	server {
		listen 127.0.0.1:$((BASE_PORT + 10));
		location / { return 200 "$body"; }
	}
}
EOF
	local nginx_host="127.0.0.1:$((BASE_PORT + 10))"
	r=$(start_server nginx "$WORK/nginx.log" nginx -c "$WORK/nginx/nginx.conf")
	wait_http "http://$nginx_host/"
	measure "nginx (fixed body)" --hosts "$nginx_host" $(kv_get)
	stop_pid "$r"

	# kvshard, one node.
	cfg=$WORK/one.toml
	kvshard_config "$cfg" 1 1
	start_kvshard "$cfg" 1
	preload --hosts "$hosts1" $(kv_get) --put "http://{host}/v1/kv/{key}"
	measure "kvshard, 1 node" --hosts "$hosts1" $(kv_get) -- \
		--hosts "$hosts1" --put "http://{host}/v1/kv/{key}"
	# p99 at half the peak GET rate.
	local half=$(( ${GET_TP["kvshard, 1 node"]%.*} / 2 ))
	kvs_log "kvshard, 1 node: GET at $half req/s"
	r=$(run_bench "kvshard-half-rate" --hosts "$hosts1" $(kv_get) --workload C --rate "$half")
	read -r HALF_TP HALF_P99 _ <<<"$r"
	# The same paced rate against nginx: what this machine's scheduling
	# and loopback alone give at that rate, the floor for the p99 above.
	kvs_log "nginx: GET at $half req/s"
	r=$(start_server nginx "$WORK/nginx.log" nginx -c "$WORK/nginx/nginx.conf")
	wait_http "http://$nginx_host/"
	r2=$(run_bench "nginx-half-rate" --hosts "$nginx_host" $(kv_get) --workload C --rate "$half")
	stop_pid "$r"
	read -r _ NGINX_HALF_P99 _ <<<"$r2"
	# wrk, second opinion on the same server.
	cat >"$WORK/keys.lua" <<EOF
math.randomseed(42)
request = function()
	return wrk.format("GET", string.format("/v1/kv/key%08d", math.random(0, $KEYS - 1)))
end
EOF
	WRK_KV=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$WORK/keys.lua" \
		"http://$hosts1" | awk '/Requests\/sec/ { print $2 }')
	stop_kvshard

	# kvshard, 3 nodes, N=1: requests straight to the owner (--ring).
	cfg=$WORK/three1.toml
	kvshard_config "$cfg" 3 1
	start_kvshard "$cfg" 3
	preload --ring "$cfg" $(kv_get) --put "http://{host}/v1/kv/{key}"
	measure "kvshard, 3 nodes N=1, to the owner" --ring "$cfg" $(kv_get) -- \
		--ring "$cfg" --put "http://{host}/v1/kv/{key}"
	stop_kvshard

	# kvshard, 3 nodes, N=3 (W=2, R=2): replicated writes, quorum reads.
	cfg=$WORK/three3.toml
	kvshard_config "$cfg" 3 3
	start_kvshard "$cfg" 3
	preload --ring "$cfg" $(kv_get) --put "http://{host}/v1/kv/{key}"
	measure "kvshard, 3 nodes N=3 W=2 R=2" --ring "$cfg" $(kv_get) -- \
		--ring "$cfg" --put "http://{host}/v1/kv/{key}"
	# What a curl user gets: requests spread over every node, whatever
	# the key (most reach a node that must ask another).
	local hosts3="127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2)),127.0.0.1:$((BASE_PORT + 3))"
	local hosts2="127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2))"
	measure "kvshard, 3 nodes N=3 W=2 R=2, spread over the nodes" --hosts "$hosts3" $(kv_get) -- \
		--hosts "$hosts3" --put "http://{host}/v1/kv/{key}"
	# One node hung (SIGSTOP): requests through the other two.
	kill -STOP "${KV_PIDS[2]}"
	measure "kvshard, 3 nodes N=3, one stopped (SIGSTOP)" --hosts "$hosts2" $(kv_get) -- \
		--hosts "$hosts2" --put "http://{host}/v1/kv/{key}"
	kill -CONT "${KV_PIDS[2]}"
	NOTE["kvshard, 3 nodes N=3, one stopped (SIGSTOP)"]="max GET ${GET_MAX["kvshard, 3 nodes N=3, one stopped (SIGSTOP)"]} ms, max PUT ${PUT_MAX["kvshard, 3 nodes N=3, one stopped (SIGSTOP)"]} ms. "
	stop_kvshard

	# A proxy hop: s1 owns nothing (weight 0) and forwards everything to
	# s2; compare with s2 asked directly.
	cfg=$WORK/hop.toml
	kvshard_config "$cfg" 2 1 0 1
	start_kvshard "$cfg" 2
	preload --hosts "127.0.0.1:$((BASE_PORT + 2))" $(kv_get) \
		--put "http://{host}/v1/kv/{key}"
	measure "kvshard, owner asked directly" --hosts "127.0.0.1:$((BASE_PORT + 2))" $(kv_get)
	measure "kvshard, through a non-owner (proxy hop)" --hosts "127.0.0.1:$((BASE_PORT + 1))" $(kv_get)
	stop_kvshard

	# Redis behind webdis (no persistence: not a durable comparison).
	local rport=$((BASE_PORT + 20)) wport=$((BASE_PORT + 21))
	r=$(start_server redis "$WORK/redis.log" redis-server --bind 127.0.0.1 --port "$rport" \
		--save "" --appendonly no --dir "$WORK")
	cat >"$WORK/webdis.json" <<EOF
{"redis_host": "127.0.0.1", "redis_port": $rport, "http_host": "127.0.0.1",
 "http_port": $wport, "threads": 2, "pool_size": 20, "daemonize": false,
 "websockets": false, "database": 0, "verbosity": 0,
 "logfile": "$WORK/webdis.log"}
EOF
	local w
	w=$(start_server webdis "$WORK/webdis.out" webdis "$WORK/webdis.json")
	wait_http "http://127.0.0.1:$wport/PING"
	preload --hosts "127.0.0.1:$wport" --get "http://{host}/GET/{key}" \
		--put "http://{host}/SET/{key}/{value}" --put-method GET
	measure "Redis + webdis" --hosts "127.0.0.1:$wport" --get "http://{host}/GET/{key}" -- \
		--hosts "127.0.0.1:$wport" --put "http://{host}/SET/{key}/{value}" --put-method GET
	NOTE["Redis + webdis"]="${NOTE["Redis + webdis"]:-}Redis without persistence: writes are not durable. "
	stop_pid "$w"
	stop_pid "$r"

	# etcd, one member, v3 JSON gateway (fsyncs its log before answering).
	local eport=$((BASE_PORT + 30)) epeer=$((BASE_PORT + 31))
	r=$(start_server etcd "$WORK/etcd.log" env GOMAXPROCS=1 etcd --name bench \
		--data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$eport" \
		--advertise-client-urls "http://127.0.0.1:$eport" \
		--listen-peer-urls "http://127.0.0.1:$epeer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$epeer" \
		--initial-cluster "bench=http://127.0.0.1:$epeer")
	wait_http "http://127.0.0.1:$eport/health"
	local eput=(--put "http://{host}/v3/kv/put" --put-method POST
		--put-body '{"key":"{key_b64}","value":"{value_b64}"}')
	preload --hosts "127.0.0.1:$eport" --get "http://{host}/v3/kv/range" \
		--get-method POST --get-body '{"key":"{key_b64}"}' "${eput[@]}"
	measure "etcd (v3 JSON gateway)" --hosts "127.0.0.1:$eport" \
		--get "http://{host}/v3/kv/range" --get-method POST --get-body '{"key":"{key_b64}"}' -- \
		--hosts "127.0.0.1:$eport" "${eput[@]}"
	stop_pid "$r"

	SYNC_MS=$(sync_latency)
	report
}

ratio() { # a b -> a/b as "1.23x"
	python3 -c "import sys; a, b = float(sys.argv[1] or 0), float(sys.argv[2] or 0); print('%.2fx' % (a / b) if b else '-')" "$1" "$2"
}

report() {
	local ref="kvshard, 1 node" name
	local order=("nginx (fixed body)" "kvshard, 1 node" "kvshard, 3 nodes N=1, to the owner"
		"kvshard, 3 nodes N=3 W=2 R=2" "kvshard, 3 nodes N=3 W=2 R=2, spread over the nodes"
		"kvshard, 3 nodes N=3, one stopped (SIGSTOP)" "kvshard, owner asked directly"
		"kvshard, through a non-owner (proxy hop)" "Redis + webdis" "etcd (v3 JSON gateway)")
	echo
	echo "compare.sh, $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
	echo "kvshard-bench -c $CONNS -d $DURATION, $KEYS keys, $VALUE-byte values, uniform; median of $RUNS runs;"
	echo "load generator on CPU $LOAD_CPU, servers on CPU $SERVER_CPU."
	echo
	echo "| system | GET req/s | GET p99 ms | PUT req/s | PUT p99 ms | kvshard GET is | kvshard PUT is | notes |"
	echo "|---|---|---|---|---|---|---|---|"
	for name in "${order[@]}"; do
		local g=${GET_TP[$name]:-} p=${PUT_TP[$name]:-}
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${g:--}" "${GET_P99[$name]:--}" \
			"${p:--}" "${PUT_P99[$name]:--}" \
			"$( [ -n "$g" ] && ratio "${GET_TP[$ref]}" "$g" || echo -)" \
			"$( [ -n "$p" ] && ratio "${PUT_TP[$ref]}" "$p" || echo -)" "${NOTE[$name]:-}"
	done
	echo
	echo "kvshard, 1 node, GET at half its peak ($HALF_TP req/s): p99 $HALF_P99 ms;" \
		"nginx at the same rate: p99 $NGINX_HALF_P99 ms."
	echo "wrk -t1 -c$CONNS -d${DURATION}s on the same kvshard GET: $WRK_KV req/s."
	echo "One synchronous 4 KiB write (dd oflag=dsync) on this disk: $SYNC_MS ms."
}

main "$@"
