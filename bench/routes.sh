#!/usr/bin/env bash
# Does the size of the routing table cost throughput? Weir with 1 route against Weir
# with 100,000 routes (distinct hostnames app-NNNNNN.example.com, all to one cluster),
# the load going to the last route of the file, which is also the last in sorted order,
# so neither insertion order nor a sorted scan can favour it.
#
# Both proxies run side by side (one worker each) in front of the same nginx origin;
# rounds are interleaved (1 route, 100k routes, 1 route, ...) and the figures are the
# medians over the rounds.
#
# Environment:
#   ROUTES=100000   routes in the big table
#   ROUNDS=3 DURATION=10s WARMUP=2s WRK_THREADS=1 WRK_CONNS=64   as in http.sh
#   WEIR_BIN=path   use this weir binary instead of building target/release/weir
#
# Ends with one line:
#   RESULT rps_1_route=... rps_100k_routes=... ratio=... p99_ms_1_route=... ...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUTES="${ROUTES:-100000}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
TARGET="$(printf 'app-%06d.example.com' "$ROUTES")"

bench_init
ensure_tools
build_weir

origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$TARGET" "$STARTED_PID"
log "origin (nginx, 1 worker) on 127.0.0.1:$origin_port"

# One route: the target hostname alone.
small_port="$(free_port)"
write_weir_desired "$BENCH_TMP/small" "$small_port" "$origin_port" "$TARGET"

# ROUTES routes: the same listener and cluster, then every frontend in a file of its own.
big_port="$(free_port)"
write_weir_desired "$BENCH_TMP/big" "$big_port" "$origin_port" "$TARGET"
python3 - "$BENCH_TMP/big/weir.yaml" "$ROUTES" <<'EOF'
import sys

path, routes = sys.argv[1], int(sys.argv[2])
text = open(path).read()
# Keep the listener and cluster; replace the single frontend with ROUTES of them.
head = text[: text.index("frontends:")]
with open(path, "w") as out:
    out.write(head)
with open(path.replace("weir.yaml", "frontends.yaml"), "w") as out:
    out.write("frontends:\n")
    for n in range(1, routes + 1):
        out.write(f"  - {{listener: web, hostname: app-{n:06d}.example.com, path: /, cluster: origin}}\n")
EOF
log "generated $ROUTES routes ($(du -h "$BENCH_TMP/big/frontends.yaml" | cut -f1)); target $TARGET"

start_weir weir-1 "$small_port" "$BENCH_TMP/small" "$TARGET"
small_pid="$STARTED_PID"
log "weir with 1 route on 127.0.0.1:$small_port"
load_start=$SECONDS
start_weir weir-big "$big_port" "$BENCH_TMP/big" "$TARGET" 600
big_pid="$STARTED_PID"
load_s=$((SECONDS - load_start))
# Another route of the table must answer too, and a hostname outside it must not.
wait_http "$big_port" "app-000001.example.com" "$big_pid"
status="$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: nowhere.example.org' "http://127.0.0.1:$big_port/")"
[[ "$status" == 404 ]] || die "an unrouted hostname got $status, expected 404"
# shellcheck disable=SC2046
rss_small="$(rss_kb $(descendants "$small_pid"))"
# shellcheck disable=SC2046
rss_big="$(rss_kb $(descendants "$big_pid"))"
log "weir with $ROUTES routes on 127.0.0.1:$big_port, serving after ${load_s}s;" \
	"RSS ${rss_small} kB (1 route) vs ${rss_big} kB ($ROUTES routes)"
for p in $(descendants "$big_pid"); do
	log "  $ROUTES routes, pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-40)): $(rss_kb "$p") kB"
done

declare -A port=([small]="$small_port" [big]="$big_port") pid=([small]="$small_pid" [big]="$big_pid")
for setup in small big; do
	run_wrk "${port[$setup]}" "$TARGET" "$WARMUP" "$BENCH_TMP/warmup-$setup.log" >/dev/null
done

declare -A rps p99 errors cpu
for ((round = 1; round <= ROUNDS; round++)); do
	for setup in small big; do
		# shellcheck disable=SC2046
		cpu_before="$(cpu_ms $(descendants "${pid[$setup]}"))"
		read -r r _ l99 requests sock non2xx < <(run_wrk "${port[$setup]}" "$TARGET" "$DURATION" \
			"$BENCH_TMP/wrk-$setup-$round.log")
		# shellcheck disable=SC2046
		cpu_used=$(($(cpu_ms $(descendants "${pid[$setup]}")) - cpu_before))
		us=$(awk -v c="$cpu_used" -v n="$requests" 'BEGIN { printf "%.2f", n ? c * 1000 / n : 0 }')
		cpu[$setup]+="$us "
		rps[$setup]+="$r "
		p99[$setup]+="$l99 "
		errors[$setup]=$((${errors[$setup]:-0} + sock + non2xx))
		log "round $round $setup: $r rps, p99 ${l99} ms, $requests requests," \
			"$sock socket errors, $non2xx non-2xx, ${us} us CPU per request"
	done
done

# shellcheck disable=SC2086
rps_small="$(median ${rps[small]})"
# shellcheck disable=SC2086
rps_big="$(median ${rps[big]})"
# shellcheck disable=SC2086
p99_small="$(median ${p99[small]})"
# shellcheck disable=SC2086
p99_big="$(median ${p99[big]})"
# shellcheck disable=SC2086
cpu_small="$(median ${cpu[small]})"
# shellcheck disable=SC2086
cpu_big="$(median ${cpu[big]})"
log "1 route: ${rps[small]}rps; $ROUTES routes: ${rps[big]}rps"
log "CPU per request: 1 route: ${cpu[small]}us; $ROUTES routes: ${cpu[big]}us"

echo "RESULT rps_1_route=$(printf '%.0f' "$rps_small") rps_100k_routes=$(printf '%.0f' "$rps_big")" \
	"ratio=$(ratio "$rps_big" "$rps_small")" \
	"p99_ms_1_route=$p99_small p99_ms_100k_routes=$p99_big" \
	"cpu_us_per_req_1_route=$cpu_small cpu_us_per_req_100k_routes=$cpu_big" \
	"cpu_ratio=$(ratio "$cpu_big" "$cpu_small")" \
	"errors_1_route=${errors[small]} errors_100k_routes=${errors[big]}" \
	"routes=$ROUTES load_s=$load_s rss_kb_1_route=$rss_small rss_kb_100k_routes=$rss_big" \
	"rounds=$ROUNDS duration=$DURATION"
