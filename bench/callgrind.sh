#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: repeatable for the same
# binary and load whatever else the machine is doing, so it is the figure to optimise the
# worker's hot path against where rps ratios drown in noise (see RESULTS.md).
#
# Runs `weir proxy` (one worker) under `valgrind --tool=callgrind --trace-children=yes` in
# front of the nginx origin of http.sh, drives it with wrk for DURATION, dumps the worker's
# profile and prints the instructions per request. The profile is kept for
# `callgrind_annotate` (its path is printed). Startup instructions are included, so compare
# runs of the same DURATION.
#
# Environment: DURATION=5s WRK_CONNS=16 WEIR_BIN=path (as in http.sh); WEIR_CONFIG=weir.toml
# to profile with settings (access_log.sh uses it for the access log's cost); BODY=chunked sends
# every request as a POST with a 20-byte chunked body in a non-canonical spelling
# (bench/chunked_post.lua), to count what rewriting chunk framing costs.
#
# Ends with one line:
#   RESULT instructions_per_request=... requests=... profile=...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-5s}"
HOST="bench.local"

bench_init
ensure_tools
command -v valgrind >/dev/null || die "valgrind is needed (apt-get install -y valgrind)"
command -v callgrind_control >/dev/null || die "callgrind_control is needed (valgrind package)"
build_weir

out_dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-callgrind.XXXXXX")"
origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"

# The main process execs its own binary for the worker; --trace-children follows it there.
wrapper="$BENCH_TMP/weir-under-callgrind"
cat >"$wrapper" <<EOW
#!/bin/sh
exec valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$out_dir/callgrind.%p "$WEIR_BIN" "\$@"
EOW
chmod +x "$wrapper"
port="$(free_port)"
write_weir_desired "$BENCH_TMP/desired" "$port" "$origin_port" "$HOST"
WEIR_BIN="$wrapper" # start_weir runs $WEIR_BIN; the wrapper holds the real path
start_weir weir "$port" "$BENCH_TMP/desired" "$HOST" 120 "${WEIR_CONFIG:-}"

wrk_script=()
[[ "${BODY:-}" == chunked ]] && wrk_script=(-s "$BENCH_DIR/chunked_post.lua")
wrk -t1 -c"${WRK_CONNS:-16}" -d"$DURATION" -H "Host: $HOST" "${wrk_script[@]}" "http://127.0.0.1:$port/" \
	>"$BENCH_TMP/wrk.log" 2>&1 || die "wrk failed, see $BENCH_TMP/wrk.log"
requests="$(awk '/requests in/ { print $1 }' "$BENCH_TMP/wrk.log")"

# Under valgrind the worker's command line holds both our output path and `worker --id`.
worker="$(pgrep -n -f -- "$out_dir/.* worker --id" || true)"
[[ -n "$worker" ]] || die "no worker process found"
callgrind_control -d "$worker" >/dev/null 2>&1
profile=""
for _ in $(seq 1 100); do
	profile="$(ls "$out_dir"/callgrind."$worker".* 2>/dev/null | head -1 || true)"
	[[ -n "$profile" && -s "$profile" ]] && break
	sleep 0.1
done
[[ -s "$profile" ]] || die "callgrind wrote no profile for worker $worker"
total="$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
log "worker $worker: $total instructions, $requests requests; profile $profile"
echo "RESULT instructions_per_request=$(ratio "$total" "$requests" 0) requests=$requests profile=$profile"
