#!/usr/bin/env bash
# What an access log costs: Weir without one, Weir writing JSON lines to a file, and nginx
# writing the same fields as JSON (`log_format ... escape=json`) to a file, each with one
# worker in front of http.sh's nginx origin.
#
# Two measurements on the same three proxies:
# - Sequential rounds, interleaved as in http.sh, each figure the median over the rounds:
#   rps and CPU per request of all three.
# - Paired rounds: the two Weirs loaded AT THE SAME TIME by two wrk (PAIRED_CONNS connections
#   each), so whatever else the machine does in a round hits both alike. Sequential rounds
#   swing ±15 % on a shared machine and hide a 5 % effect; a paired round's ratio compares two
#   runs that shared the same moment. The median paired ratio is the figure for issue 16's goal.
#
# Weir's counters (its metrics) are always kept; there is no switch to turn them off.
# nginx gets `buffer=64k flush=1s`, its way of batching writes as Weir does (32 KiB or 100 ms).
#
# Environment: ROUNDS=3 DURATION=10s WARMUP=2s WEIR_BIN=path WRK_THREADS=1 WRK_CONNS=64
#              PAIRED_ROUNDS=10 PAIRED_DURATION=5s PAIRED_CONNS=32 (PAIRED_ROUNDS=0 skips them)
#
# Ends with two lines:
#   RESULT weir_rps=... weir_log_rps=... nginx_log_rps=... cpu_us_weir=... cpu_us_weir_log=...
#          cpu_us_nginx_log=... log_cpu_cost=... (weir_log/weir CPU per request)
#          weir_log/nginx_log=... (rps, goal > 1) lines_weir=... lines_nginx=...
#   RESULT paired_log_cpu_cost_median=... (goal <= 1.05) rounds=... duration=...
#          per_round=r1,r2,...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
HOST="bench.local"
PROXIES="weir weir_log nginx_log"
PAIRED_ROUNDS="${PAIRED_ROUNDS:-10}"
PAIRED_DURATION="${PAIRED_DURATION:-5s}"
PAIRED_CONNS="${PAIRED_CONNS:-32}"

bench_init
ensure_tools
build_weir

origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"

declare -A port pid
for proxy in $PROXIES; do
	port[$proxy]="$(free_port)"
done

write_weir_desired "$BENCH_TMP/desired-off" "${port[weir]}" "$origin_port" "$HOST"
start_weir weir "${port[weir]}" "$BENCH_TMP/desired-off" "$HOST"
pid[weir]="$STARTED_PID"

write_weir_desired "$BENCH_TMP/desired-log" "${port[weir_log]}" "$origin_port" "$HOST"
cat >"$BENCH_TMP/weir-log.toml" <<EOF
[access_log]
target = "$BENCH_TMP/weir-access.log"
format = "json"
EOF
start_weir weir_log "${port[weir_log]}" "$BENCH_TMP/desired-log" "$HOST" 60 "$BENCH_TMP/weir-log.toml"
pid[weir_log]="$STARTED_PID"

# The fields of Weir's JSON line, from nginx's variables.
nginx_format="    log_format weir_fields escape=json '{\"time\":\"\$time_iso8601\",\"client\":\"\$remote_addr:\$remote_port\",\"listener\":\"\$server_addr:\$server_port\",\"host\":\"\$host\",\"method\":\"\$request_method\",\"path\":\"\$request_uri\",\"status\":\$status,\"bytes_in\":\$request_length,\"bytes_out\":\$bytes_sent,\"cluster\":\"origin\",\"backend\":\"\$upstream_addr\",\"duration_ms\":\$request_time,\"connect_ms\":\"\$upstream_connect_time\",\"backend_ms\":\"\$upstream_header_time\",\"request_id\":\"\$request_id\"}';"
start_nginx_proxy "${port[nginx_log]}" "$origin_port" "" "$nginx_format" \
	"        access_log $BENCH_TMP/nginx-access.log weir_fields buffer=64k flush=1s;"
pid[nginx_log]="$STARTED_PID"
wait_http "${port[nginx_log]}" "$HOST" "$STARTED_PID"

for proxy in $PROXIES; do
	log "warm-up $proxy ($WARMUP)"
	run_wrk "${port[$proxy]}" "$HOST" "$WARMUP" "$BENCH_TMP/warmup-$proxy.log" >/dev/null
done

# cpu_us USED_MS REQUESTS: CPU microseconds a request.
cpu_us() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.3f", n ? c * 1000 / n : 0 }'; }

declare -A rps cpu
for ((round = 1; round <= ROUNDS; round++)); do
	for proxy in $PROXIES; do
		# shellcheck disable=SC2046
		before="$(cpu_ms $(descendants "${pid[$proxy]}"))"
		read -r r _ _ requests sock non2xx < <(run_wrk "${port[$proxy]}" "$HOST" "$DURATION" \
			"$BENCH_TMP/wrk-$proxy-$round.log")
		# shellcheck disable=SC2046
		us="$(cpu_us $(($(cpu_ms $(descendants "${pid[$proxy]}")) - before)) "$requests")"
		rps[$proxy]+="$r "
		cpu[$proxy]+="$us "
		log "round $round $proxy: $r rps, $requests requests, $sock socket errors," \
			"$non2xx non-2xx, ${us} us CPU per request"
	done
done

declare -A c0 req
paired=""
for ((round = 1; round <= PAIRED_ROUNDS; round++)); do
	loads=()
	for proxy in weir weir_log; do
		# shellcheck disable=SC2046
		c0[$proxy]="$(cpu_ms $(descendants "${pid[$proxy]}"))"
		WRK_CONNS="$PAIRED_CONNS" run_wrk "${port[$proxy]}" "$HOST" "$PAIRED_DURATION" \
			"$BENCH_TMP/wrk-paired-$proxy-$round.log" >"$BENCH_TMP/paired-$proxy" &
		loads+=($!)
	done
	wait "${loads[@]}"
	declare -A us=()
	for proxy in weir weir_log; do
		read -r _ _ _ req[$proxy] _ _ <"$BENCH_TMP/paired-$proxy"
		# shellcheck disable=SC2046
		us[$proxy]="$(cpu_us $(($(cpu_ms $(descendants "${pid[$proxy]}")) - c0[$proxy])) "${req[$proxy]}")"
	done
	r="$(ratio "${us[weir_log]}" "${us[weir]}" 3)"
	paired+="$r "
	log "paired round $round: weir ${req[weir]} requests ${us[weir]} us/req," \
		"weir_log ${req[weir_log]} requests ${us[weir_log]} us/req, ratio $r"
done

declare -A med_rps med_cpu
for proxy in $PROXIES; do
	# shellcheck disable=SC2086
	med_rps[$proxy]="$(median ${rps[$proxy]})"
	# shellcheck disable=SC2086
	med_cpu[$proxy]="$(median ${cpu[$proxy]})"
done
sleep 1.5 # nginx's flush=1s
lines_weir="$(wc -l <"$BENCH_TMP/weir-access.log")"
lines_nginx="$(wc -l <"$BENCH_TMP/nginx-access.log")"
log "weir line:  $(tail -1 "$BENCH_TMP/weir-access.log")"
log "nginx line: $(tail -1 "$BENCH_TMP/nginx-access.log")"

echo "RESULT weir_rps=$(printf '%.0f' "${med_rps[weir]}")" \
	"weir_log_rps=$(printf '%.0f' "${med_rps[weir_log]}")" \
	"nginx_log_rps=$(printf '%.0f' "${med_rps[nginx_log]}")" \
	"cpu_us_weir=${med_cpu[weir]} cpu_us_weir_log=${med_cpu[weir_log]}" \
	"cpu_us_nginx_log=${med_cpu[nginx_log]}" \
	"log_cpu_cost=$(ratio "${med_cpu[weir_log]}" "${med_cpu[weir]}" 3)" \
	"weir_log/nginx_log=$(ratio "${med_rps[weir_log]}" "${med_rps[nginx_log]}")" \
	"lines_weir=$lines_weir lines_nginx=$lines_nginx rounds=$ROUNDS duration=$DURATION"
if ((PAIRED_ROUNDS > 0)); then
	per_round="${paired% }"
	# shellcheck disable=SC2086
	echo "RESULT paired_log_cpu_cost_median=$(median $paired) rounds=$PAIRED_ROUNDS" \
		"duration=$PAIRED_DURATION per_round=${per_round// /,}"
fi
