#!/usr/bin/env bash
# Control-path speed: how fast a running `weir proxy --workers 2` takes a large configuration.
#
#   bench/apply.sh            (APPS=10000 RUNS=3 WINDOW=256 override)
#
# Three measurements, each on a fresh proxy so every run starts from an empty state:
#   1. raw: 30,001 changes (one listener, then per app a cluster, a backend and a frontend)
#      pipelined through the command socket by reconciler/examples/control_load.rs, at most
#      WINDOW requests in flight; each change is OK only once both workers applied it. Wall
#      time of the whole load, and per-change latency (request written -> final answer).
#   2. unloaded latency: the same kind of changes one at a time (window 1), 2,000 apps.
#   3. reconciler: `weir apply DIR --auto-approve` of the same 10,000 apps from empty, as a
#      CI job would run it: wall time of the command (load files, query, plan, print, apply)
#      and the apply phase alone as the command reports it.
# Sōzu's `state load` of the same 30,000 messages took 930 ms on this machine (issue 5).
# Ends with `RESULT apply_30k_ms=... p50_us=... p99_us=... reconciler_apply_ms=...`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APPS="${APPS:-10000}"
RUNS="${RUNS:-3}"
WINDOW="${WINDOW:-256}"
SOZU_STATE_LOAD_MS=930

bench_init
command -v python3 >/dev/null || die "python3 is needed (free ports, app generator)"
build_weir
log "building the socket load generator (reconciler/examples/control_load.rs)"
(cd "$ROOT_DIR" && cargo build --release -p weir-reconciler --example control_load >&2) ||
	die "cannot build control_load"
LOAD_BIN="$ROOT_DIR/target/release/examples/control_load"

# Nothing is ever sent to the backend address: the proxy only records it.
LISTEN_PORT="$(free_port)"
BACKEND_ADDR="127.0.0.1:$(free_port)"

# start_proxy NAME: a fresh `weir proxy --workers 2` on its own socket; sets SOCK and
# PROXY_PID once it answers `weir status`.
SOCK=""
PROXY_PID=""
start_proxy() {
	local name=$1 deadline=$((SECONDS + 30))
	SOCK="$BENCH_SOCKS/$name.sock"
	start_bg "$name" "$WEIR_BIN" proxy --workers 2 --socket "$SOCK"
	PROXY_PID=$STARTED_PID
	until "$WEIR_BIN" status --socket "$SOCK" >/dev/null 2>&1; do
		kill -0 "$PROXY_PID" 2>/dev/null || die "weir proxy died, see $BENCH_TMP/$name.log"
		((SECONDS < deadline)) || die "weir proxy did not answer on $SOCK"
		sleep 0.05
	done
}

# field LINE KEY: the value of KEY=value in LINE.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }

busy="$(pgrep -c rustc || true)"
[[ "$busy" == 0 ]] || log "note: $busy rustc process(es) running; figures will be noisy"

raw_ms=() raw_p50=() raw_p99=()
for ((run = 1; run <= RUNS; run++)); do
	start_proxy "raw-$run"
	line="$("$LOAD_BIN" pipeline "$SOCK" "$APPS" "127.0.0.1:$LISTEN_PORT" "$BACKEND_ADDR" "$WINDOW")" ||
		die "raw load failed: $line"
	log "raw run $run: $line"
	raw_ms+=("$(field "$line" total_ms)")
	raw_p50+=("$(field "$line" p50_us)")
	raw_p99+=("$(field "$line" p99_us)")
	stop_pid "$PROXY_PID"
done

start_proxy "unloaded"
line="$("$LOAD_BIN" pipeline "$SOCK" 2000 "127.0.0.1:$LISTEN_PORT" "$BACKEND_ADDR" 1)" ||
	die "unloaded run failed: $line"
log "one at a time: $line"
solo_p50="$(field "$line" p50_us)"
solo_p99="$(field "$line" p99_us)"
stop_pid "$PROXY_PID"

DESIRED="$BENCH_TMP/apps"
gen_apps "$APPS" "$DESIRED" "127.0.0.1:$LISTEN_PORT" "$BACKEND_ADDR"
wall_ms=() phase_ms=()
for ((run = 1; run <= RUNS; run++)); do
	start_proxy "reconciler-$run"
	out="$BENCH_TMP/apply-$run.out"
	t0="$(date +%s%N)"
	"$WEIR_BIN" apply "$DESIRED" --auto-approve --socket "$SOCK" >"$out" 2>&1 ||
		die "weir apply failed, see $out"
	t1="$(date +%s%N)"
	done_line="$(grep '^Apply complete' "$out")" || die "no 'Apply complete' in $out"
	# "Apply complete: 30001 step(s) in 185 ms, state version 30001."
	phase="$(sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' <<<"$done_line")"
	[[ -n "$phase" ]] || die "cannot read the apply time from: $done_line"
	version="$("$WEIR_BIN" status --socket "$SOCK" | sed -n 's/.*state version \([0-9]*\).*/\1/p')"
	[[ "$version" == $((3 * APPS + 1)) ]] || die "state version $version after apply, expected $((3 * APPS + 1))"
	wall_ms+=("$(((t1 - t0) / 1000000))")
	phase_ms+=("$phase")
	log "weir apply run $run: wall ${wall_ms[-1]} ms, apply phase $phase ms"
	stop_pid "$PROXY_PID"
done

m_raw="$(median "${raw_ms[@]}")"
echo "raw socket, $((3 * APPS + 1)) changes, window $WINDOW, median of $RUNS: ${m_raw} ms" \
	"(runs: ${raw_ms[*]}), per-change p50 $(median "${raw_p50[@]}") us p99 $(median "${raw_p99[@]}") us"
echo "one change at a time: p50 ${solo_p50} us p99 ${solo_p99} us"
echo "weir apply from empty, median of $RUNS: wall $(median "${wall_ms[@]}") ms" \
	"(runs: ${wall_ms[*]}), apply phase $(median "${phase_ms[@]}") ms (runs: ${phase_ms[*]})"
echo "RESULT apply_30k_ms=$m_raw p50_us=$(median "${raw_p50[@]}") p99_us=$(median "${raw_p99[@]}")" \
	"unloaded_p50_us=$solo_p50 unloaded_p99_us=$solo_p99" \
	"reconciler_apply_ms=$(median "${phase_ms[@]}") reconciler_apply_wall_ms=$(median "${wall_ms[@]}")" \
	"sozu_state_load_ms=$SOZU_STATE_LOAD_MS weir/sozu=$(ratio "$m_raw" "$SOZU_STATE_LOAD_MS")"
