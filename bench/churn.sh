#!/usr/bin/env bash
# Zero failed requests while backends churn: `wrk -t1 -c64` through `weir proxy --workers 2`
# while a command-socket client adds and removes a backend RATE times per second.
#
#   bench/churn.sh            (DURATION=20 RATE=100 override)
#
# Two nginx origins on 127.0.0.1 answer every request with the same 20 bytes. The route's
# cluster keeps origin A's backend throughout; reconciler/examples/control_load.rs adds a
# backend on origin B (churn-N), then removes it (RemoveBackend, which drains: new traffic
# stops at once, in-flight requests finish), alternating on a fixed schedule, so about half
# the time the cluster has two backends and requests go to both. Every change must end OK.
# Any non-2xx answer or socket error seen by wrk is a failed request.
# (Issue 5 measured, under 2 changes/s: nginx reload 665 failed, HAProxy reload 114, Sōzu 0.)
# Ends with `RESULT failed_requests=... changes_applied=... rps=...`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-20}"
RATE="${RATE:-100}"
HOST="churn.example.com"

bench_init
ensure_tools
build_weir
log "building the socket load generator (reconciler/examples/control_load.rs)"
(cd "$ROOT_DIR" && cargo build --release -p weir-reconciler --example control_load >&2) ||
	die "cannot build control_load"
LOAD_BIN="$ROOT_DIR/target/release/examples/control_load"

# start_origin_b PORT: a second origin like lib.sh's start_origin, in its own directory.
start_origin_b() {
	local port=$1 dir="$BENCH_TMP/origin-b"
	mkdir -p "$dir"
	{
		nginx_common "$dir"
		cat <<EOF
    server {
        listen 127.0.0.1:$port;
        location / {
            default_type text/plain;
            return 200 "$ORIGIN_BODY";
        }
    }
}
EOF
	} >"$dir/nginx.conf"
	start_bg origin-b nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	wait_port "$port" "$STARTED_PID"
}

ORIGIN_A="$(free_port)"
ORIGIN_B="$(free_port)"
WEIR_PORT="$(free_port)"
start_origin "$ORIGIN_A"
start_origin_b "$ORIGIN_B"

write_weir_desired "$BENCH_TMP/desired" "$WEIR_PORT" "$ORIGIN_A" "$HOST"
SOCK="$BENCH_SOCKS/weir.sock"
start_bg weir "$WEIR_BIN" proxy --workers 2 --desired "$BENCH_TMP/desired" --socket "$SOCK"
WEIR_PID=$STARTED_PID
wait_port "$WEIR_PORT" "$WEIR_PID"
wait_http "$WEIR_PORT" "$HOST" "$WEIR_PID"
# The second origin must serve too, or a failure would be blamed on the churn.
[[ "$(curl -s --max-time 2 "http://127.0.0.1:$ORIGIN_B/")" == "$ORIGIN_BODY" ]] ||
	die "origin B does not answer"

busy="$(pgrep -c rustc || true)"
[[ "$busy" == 0 ]] || log "note: $busy rustc process(es) running; figures will be noisy"

log "wrk -c${WRK_CONNS:-64} for ${DURATION}s while $RATE backend changes/s are applied"
wrk_out="$BENCH_TMP/wrk.result"
(run_wrk "$WEIR_PORT" "$HOST" "${DURATION}s" "$BENCH_TMP/wrk.log" >"$wrk_out") &
wrk_pid=$!
BENCH_PIDS+=("$wrk_pid")
# Let wrk open its connections first, and stop churning before it ends, so every change
# happens under full load; the churn then lasts DURATION - 2 seconds.
sleep 1
churn_s=$((DURATION - 2))
((churn_s > 0)) || die "DURATION must be at least 3 seconds"
# Proof that the churned backends take traffic: sample their request counters a few times
# during the churn (each lives 10 ms at 100 changes/s, so one sample may miss them all).
(
	for ((i = 0; i < 5; i++)); do
		sleep 2
		"$WEIR_BIN" metrics --socket "$SOCK" 2>/dev/null |
			awk '$1 ~ /^backend\.origin\/churn-.*\.requests$/ { n += $2 } END { print n + 0 }'
	done >"$BENCH_TMP/churn-requests"
) &
sampler_pid=$!
BENCH_PIDS+=("$sampler_pid")
churn_rc=0
churn_line="$("$LOAD_BIN" churn "$SOCK" origin "127.0.0.1:$ORIGIN_B" "$RATE" "$churn_s")" || churn_rc=$?
log "churn: $churn_line"
wait "$wrk_pid" || die "wrk failed, see $BENCH_TMP/wrk.log"
wait "$sampler_pid" || true
churn_requests="$(sort -n "$BENCH_TMP/churn-requests" | tail -1)"
log "requests counted on a live churned backend (max of 5 samples): ${churn_requests:-none}"
[[ "${churn_requests:-0}" -gt 0 ]] || log "warning: no sample saw traffic on a churned backend"
read -r rps p50 p99 requests socket_errors non2xx <"$wrk_out"
log "wrk: $requests requests, $rps rps, p50 $p50 ms, p99 $p99 ms, socket errors $socket_errors, non-2xx $non2xx"

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }
changes="$(field "$churn_line" changes)"
ok="$(field "$churn_line" ok)"
failed_changes="$(field "$churn_line" failed)"
[[ "$churn_rc" == 0 ]] || log "warning: $failed_changes change(s) failed or went unanswered"
# Every churned backend must be gone again: only origin A's backend stays.
backends="$("$WEIR_BIN" state --json --socket "$SOCK" |
	python3 -c 'import json, sys; print(sum(len(c["backends"]) for c in json.load(sys.stdin)["clusters"]))')" ||
	die "cannot read the state"
[[ "$backends" == 1 ]] || log "warning: $backends backends left in the state, expected 1"

failed=$((socket_errors + non2xx))
echo "$requests requests at $rps rps (p50 $p50 ms, p99 $p99 ms): $socket_errors socket errors, $non2xx non-2xx"
echo "$changes backend changes sent over ${churn_s}s ($RATE/s), $ok OK, $failed_changes failed"
echo "RESULT failed_requests=$failed changes_applied=$ok changes_failed=$failed_changes rps=$rps p99_ms=$p99 churned_backend_requests_sample=${churn_requests:-0}"
