#!/usr/bin/env bash
# How long `weir plan` takes for 10,000 apps (30,001 resources: a listener, then per app a
# cluster, a backend and a route).
#
#   bench/plan.sh            (APPS=10000 RUNS=5 override)
#
# Wall time of the whole command, median of RUNS, in four situations:
#   live_empty     `weir plan DIR` against a running proxy with an empty state (30,001 adds)
#   live_same      `weir plan DIR` against a proxy already holding DIR (no change)
#   state_empty    `weir plan DIR --from-state EMPTY` (a saved empty state; no proxy)
#   state_same     `weir plan DIR --from-state SAVED` (a saved copy of the full state)
# and, from reconciler/examples/plan_timing.rs, each stage on its own: loading DIR, the plan
# itself (diff + ordering) from empty and with no change, and rendering text / JSON.
# Ends with `RESULT plan_10k_ms=<live_empty> ...`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APPS="${APPS:-10000}"
RUNS="${RUNS:-5}"

bench_init
command -v python3 >/dev/null || die "python3 is needed (free ports, app generator)"
build_weir
log "building the stage timer (reconciler/examples/plan_timing.rs)"
(cd "$ROOT_DIR" && cargo build --release -p weir-reconciler --example plan_timing >&2) ||
	die "cannot build plan_timing"
TIMING_BIN="$ROOT_DIR/target/release/examples/plan_timing"

DESIRED="$BENCH_TMP/apps"
gen_apps "$APPS" "$DESIRED" "127.0.0.1:$(free_port)" "127.0.0.1:$(free_port)"

SOCK="$BENCH_SOCKS/weir.sock"
start_bg weir "$WEIR_BIN" proxy --workers 2 --socket "$SOCK"
WEIR_PID=$STARTED_PID
deadline=$((SECONDS + 30))
until "$WEIR_BIN" status --socket "$SOCK" >/dev/null 2>&1; do
	kill -0 "$WEIR_PID" 2>/dev/null || die "weir proxy died, see $BENCH_TMP/weir.log"
	((SECONDS < deadline)) || die "weir proxy did not answer on $SOCK"
	sleep 0.05
done

busy="$(pgrep -c rustc || true)"
[[ "$busy" == 0 ]] || log "note: $busy rustc process(es) running; figures will be noisy"

# time_plan EXPECTED_EXIT ARGS...: wall ms of `weir plan ARGS --detailed-exitcode`, which must
# exit EXPECTED_EXIT (2: changes present, 0: none).
time_plan() {
	local want=$1 t0 t1 rc=0
	shift
	t0="$(date +%s%N)"
	"$WEIR_BIN" plan "$@" --detailed-exitcode >"$BENCH_TMP/plan.out" 2>&1 || rc=$?
	t1="$(date +%s%N)"
	[[ "$rc" == "$want" ]] || die "weir plan $* exited $rc, expected $want: $(tail -3 "$BENCH_TMP/plan.out")"
	echo $(((t1 - t0) / 1000000))
}

# runs NAME EXPECTED_EXIT ARGS...: median of RUNS timings, logged with every run.
runs() {
	local name=$1 want=$2 i all=()
	shift 2
	for ((i = 0; i < RUNS; i++)); do
		all+=("$(time_plan "$want" "$@")")
	done
	log "$name: ${all[*]} ms"
	median "${all[@]}"
}

"$WEIR_BIN" state save "$BENCH_TMP/empty.state" --socket "$SOCK" >/dev/null
live_empty="$(runs live_empty 2 "$DESIRED" --socket "$SOCK")"
state_empty="$(runs state_empty 2 "$DESIRED" --from-state "$BENCH_TMP/empty.state")"
grep -q "Plan: $((3 * APPS + 1)) to add, 0 to change, 0 to remove." "$BENCH_TMP/plan.out" ||
	die "unexpected plan summary: $(tail -1 "$BENCH_TMP/plan.out")"

"$WEIR_BIN" apply "$DESIRED" --auto-approve --socket "$SOCK" >"$BENCH_TMP/apply.out" 2>&1 ||
	die "weir apply failed, see $BENCH_TMP/apply.out"
"$WEIR_BIN" state save "$BENCH_TMP/full.state" --socket "$SOCK" >/dev/null
live_same="$(runs live_same 0 "$DESIRED" --socket "$SOCK")"
state_same="$(runs state_same 0 "$DESIRED" --from-state "$BENCH_TMP/full.state")"

stages="$("$TIMING_BIN" "$DESIRED" "$RUNS")" || die "plan_timing failed"
log "stages: $stages"
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }

echo "weir plan of $APPS apps ($((3 * APPS + 1)) resources), wall ms, median of $RUNS:"
echo "  against a live empty proxy $live_empty, a live proxy holding them $live_same," \
	"--from-state empty $state_empty, --from-state full $state_same"
echo "  stages: load $(field "$stages" load_ms), plan from empty $(field "$stages" plan_from_empty_ms)," \
	"plan no change $(field "$stages" plan_no_change_ms), render text $(field "$stages" render_text_ms)," \
	"render json $(field "$stages" render_json_ms)"
echo "RESULT plan_10k_ms=$live_empty plan_10k_nochange_ms=$live_same" \
	"from_state_ms=$state_empty from_state_nochange_ms=$state_same" \
	"load_ms=$(field "$stages" load_ms) plan_compute_ms=$(field "$stages" plan_from_empty_ms)" \
	"render_text_ms=$(field "$stages" render_text_ms) render_json_ms=$(field "$stages" render_json_ms)"
