#!/usr/bin/env bash
# Soak: does Weir leak or break under long, mixed, hostile traffic? (issue 17)
#
#   bench/soak.sh   (DURATION=1800 WARMUP=60 KILL_EVERY=30 VANISH_EVERY=60 BASELINE=20 COOLDOWN=45)
#
# Weir alone (`weir proxy --workers 2`), three misbehaving origins (bench/soak_origin.py) in one
# cluster, and for DURATION seconds, all at once:
#   * traffic from bench/soak_load.py: keep-alive and new-connection GETs, WebSocket echo
#     sessions, 100 MB uploads, 200 slowloris sockets, and requests that ask an origin to reset
#     mid-answer, trickle, answer garbage or vanish;
#   * origin C killed every VANISH_EVERY seconds and restarted 10 s later;
#   * a worker killed with `kill -9` every KILL_EVERY seconds (the main process replaces it);
#   * `weir apply` of a changed desired state (a weight flips) every second.
# Every second, the RSS and open fds of each Weir process are sampled into soak.csv.
#
# Done means: no failed request that did not meet an injected fault ("unexplained" = 0), every
# apply succeeded, and after the load RSS and fds come back to the baseline taken before it
# (median of the last 10 s of COOLDOWN vs median of BASELINE: RSS within 10 % + 4 MiB, fds within
# the baseline + 4). The baseline is taken idle after WARMUP seconds of the same traffic
# (without kills, vanishing origins or applies) and a COOLDOWN: memory the allocator keeps after
# its first peak, and the buffer pool's growth, are not leaks; growth over the soak is.
# COOLDOWN must outlast `backend_idle_ms` (30 s), or the idle pooled backend connections still
# open count as leaked fds. Writes bench/soak.csv and bench/soak.png (matplotlib, installed
# with pip when missing) and ends with one `RESULT ...` line. 127.0.0.1 only; every loop is
# bounded by DURATION.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-1800}"
KILL_EVERY="${KILL_EVERY:-30}"
VANISH_EVERY="${VANISH_EVERY:-60}"
BASELINE="${BASELINE:-20}"
COOLDOWN="${COOLDOWN:-45}"
WARMUP="${WARMUP:-60}"
HOST="soak.example.com"
ORIGIN_BODY="soak-ok" # what soak_origin.py answers on any plain path; wait_http checks it
CSV="$BENCH_DIR/soak.csv"
PNG="$BENCH_DIR/soak.png"

bench_init
ensure_tools
build_weir

start_soak_origin() {
	start_bg "origin-$1" python3 "$BENCH_DIR/soak_origin.py" "$2"
	wait_port "$2" "$STARTED_PID"
}

ORIGIN_A="$(free_port)"
ORIGIN_B="$(free_port)"
ORIGIN_C="$(free_port)"
WEIR_PORT="$(free_port)"
start_soak_origin a "$ORIGIN_A"
start_soak_origin b "$ORIGIN_B"
start_soak_origin c "$ORIGIN_C"
ORIGIN_C_PID=$STARTED_PID

DESIRED="$BENCH_TMP/desired"
mkdir -p "$DESIRED"
# write_desired WEIGHT_B: the one desired state, with origin B's weight as given.
write_desired() {
	cat >"$DESIRED/weir.yaml.tmp" <<EOF
listeners:
  - name: web
    address: "127.0.0.1:$WEIR_PORT"
    protocol: http
clusters:
  - id: soak
    backends:
      - id: a
        address: "127.0.0.1:$ORIGIN_A"
      - id: b
        address: "127.0.0.1:$ORIGIN_B"
        weight: $1
      - id: c
        address: "127.0.0.1:$ORIGIN_C"
frontends:
  - listener: web
    hostname: $HOST
    path: /
    cluster: soak
EOF
	mv "$DESIRED/weir.yaml.tmp" "$DESIRED/weir.yaml"
}
write_desired 100

SOCK="$BENCH_SOCKS/weir.sock"
start_bg weir "$WEIR_BIN" proxy --workers 2 --desired "$DESIRED" --socket "$SOCK"
WEIR_PID=$STARTED_PID
wait_port "$WEIR_PORT" "$WEIR_PID"
wait_http "$WEIR_PORT" "$HOST" "$WEIR_PID"

busy="$(pgrep -c rustc || true)"
[[ "$busy" == 0 ]] || log "note: $busy rustc process(es) running; the machine is not quiet"

# The sampler: one CSV line per second, "seconds,phase,processes,rss_kb,fds", over the main
# process and every worker alive at that moment (replaced workers included).
PHASE_FILE="$BENCH_TMP/phase"
echo start >"$PHASE_FILE"
echo "seconds,phase,processes,rss_kb,fds" >"$CSV"
sampler() {
	local t0=$SECONDS pids pid rss fds n
	while kill -0 "$WEIR_PID" 2>/dev/null; do
		rss=0 fds=0 n=0
		# shellcheck disable=SC2207
		pids=($(descendants "$WEIR_PID"))
		for pid in "${pids[@]}"; do
			local kb
			kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
			[[ -n "$kb" ]] || continue
			rss=$((rss + kb))
			fds=$((fds + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
			n=$((n + 1))
		done
		echo "$((SECONDS - t0)),$(cat "$PHASE_FILE"),$n,$rss,$fds" >>"$CSV"
		sleep 1
	done
}
sampler &
BENCH_PIDS+=("$!")

log "warm-up: ${WARMUP}s of the same traffic without kills or applies, ${COOLDOWN}s idle, ${BASELINE}s of baseline"
echo warmup >"$PHASE_FILE"
python3 "$BENCH_DIR/soak_load.py" "$WEIR_PORT" "$HOST" "$WARMUP" /dev/null >"$BENCH_TMP/warmup.log" ||
	die "warm-up traffic failed, see $BENCH_TMP/warmup.log"
echo settle >"$PHASE_FILE"
sleep "$COOLDOWN"
echo baseline >"$PHASE_FILE"
sleep "$BASELINE"

log "soak: ${DURATION}s of mixed traffic, a worker killed every ${KILL_EVERY}s, origin C every ${VANISH_EVERY}s, an apply every second"
echo load >"$PHASE_FILE"
EVENTS="$BENCH_TMP/events"
: >"$EVENTS"
start_bg load python3 "$BENCH_DIR/soak_load.py" "$WEIR_PORT" "$HOST" "$DURATION" "$EVENTS"
LOAD_PID=$STARTED_PID

applies=0 apply_failures=0 kills=0 vanishes=0 weight=100 c_down_at=""
start=$SECONDS
while ((SECONDS - start < DURATION)) && kill -0 "$LOAD_PID" 2>/dev/null; do
	elapsed=$((SECONDS - start))
	weight=$((weight == 100 ? 200 : 100))
	write_desired "$weight"
	if "$WEIR_BIN" apply "$DESIRED" --auto-approve --socket "$SOCK" >>"$BENCH_TMP/apply.log" 2>&1; then
		applies=$((applies + 1))
	else
		apply_failures=$((apply_failures + 1))
	fi
	if ((elapsed > 0 && elapsed % KILL_EVERY == 0)); then
		# shellcheck disable=SC2207
		workers=($(pgrep -P "$WEIR_PID" || true))
		if ((${#workers[@]} > 0)); then
			victim="${workers[RANDOM % ${#workers[@]}]}"
			echo "$(date +%s.%N) kill-worker" >>"$EVENTS"
			kill -KILL "$victim" 2>/dev/null || true
			kills=$((kills + 1))
		fi
	fi
	if [[ -z "$c_down_at" ]] && ((elapsed > 0 && elapsed % VANISH_EVERY == 0)); then
		echo "$(date +%s.%N) kill-origin" >>"$EVENTS"
		kill -KILL "$ORIGIN_C_PID" 2>/dev/null || true
		c_down_at=$SECONDS
		vanishes=$((vanishes + 1))
	elif [[ -n "$c_down_at" ]] && ((SECONDS - c_down_at >= 10)); then
		start_soak_origin c "$ORIGIN_C"
		ORIGIN_C_PID=$STARTED_PID
		echo "$(date +%s.%N) kill-origin" >>"$EVENTS" # a restart is a fault window too
		c_down_at=""
	fi
	sleep 1
done
log "waiting for the load generator's summary"
wait "$LOAD_PID" || die "soak_load.py failed, see $BENCH_TMP/load.log"
summary="$(tail -1 "$BENCH_TMP/load.log")"

echo cooldown >"$PHASE_FILE"
log "cooldown: ${COOLDOWN}s idle"
sleep "$COOLDOWN"
kill -0 "$WEIR_PID" 2>/dev/null || die "the main process died during the soak"

verdict="$(python3 - "$CSV" "$summary" <<'EOF'
import csv, json, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
summary = json.loads(sys.argv[2])
base = [r for r in rows if r["phase"] == "baseline"]
cool = [r for r in rows if r["phase"] == "cooldown"][-10:]
load = [r for r in rows if r["phase"] == "load"]
med = lambda rs, k: statistics.median(int(r[k]) for r in rs)
b_rss, c_rss, b_fds, c_fds = med(base, "rss_kb"), med(cool, "rss_kb"), med(base, "fds"), med(cool, "fds")
rss_ok = c_rss <= b_rss * 1.10 + 4096
fds_ok = c_fds <= b_fds + 4
print(f"rss_baseline_kb={b_rss:.0f} rss_peak_kb={max(int(r['rss_kb']) for r in load)} "
      f"rss_after_kb={c_rss:.0f} fds_baseline={b_fds:.0f} fds_peak={max(int(r['fds']) for r in load)} "
      f"fds_after={c_fds:.0f} leak={'no' if rss_ok and fds_ok else 'YES'} "
      f"requests_failed={summary['failures']} unexplained={summary['unexplained']}")
EOF
)"
log "traffic: $summary"

if ! python3 -c 'import matplotlib' 2>/dev/null; then
	log "installing matplotlib for the plot (pip --user)"
	python3 -m pip install --user --quiet matplotlib >&2 || log "matplotlib unavailable: no plot"
fi
python3 "$BENCH_DIR/soak_plot.py" "$CSV" "$PNG" || log "no plot drawn"

echo "RESULT duration_s=$DURATION applies=$applies apply_failures=$apply_failures worker_kills=$kills origin_vanishes=$vanishes $verdict"
