#!/usr/bin/env bash
# Side-by-side HTTP/1.1 throughput and latency: Weir, nginx and HAProxy, each with one
# worker, in front of the same nginx origin answering a fixed 20-byte body.
#
# Rounds are interleaved (weir, nginx, haproxy, weir, nginx, ...) so that machine noise
# hits all three alike; each proxy's figures are the medians over its rounds.
#
# Environment:
#   ROUNDS=3        rounds per proxy
#   DURATION=10s    wrk duration per round
#   WARMUP=2s       an unmeasured wrk run per proxy before the first round
#   PROXIES="weir nginx haproxy"   which proxies to run (others report NA)
#   WEIR_BIN=path   use this weir binary instead of building target/release/weir
#   WRK_THREADS=1 WRK_CONNS=64     wrk parameters (the same for every proxy)
#
# Ends with one line:
#   RESULT weir_rps=... nginx_rps=... haproxy_rps=... weir/nginx=... weir/haproxy=...
#          weir/best_per_round_median=... (Weir over the better of the two, round by round)
#          p50_ms_weir=... p99_ms_weir=... p99_ms_nginx=... p99_ms_haproxy=... ...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
PROXIES="${PROXIES:-weir nginx haproxy}"
HOST="bench.local"

bench_init
ensure_tools
[[ " $PROXIES " == *" weir "* ]] && build_weir

origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"
log "origin (nginx, 1 worker) on 127.0.0.1:$origin_port"

declare -A port pid
for proxy in $PROXIES; do
	port[$proxy]="$(free_port)"
	case "$proxy" in
	weir)
		write_weir_desired "$BENCH_TMP/desired" "${port[weir]}" "$origin_port" "$HOST"
		start_weir weir "${port[weir]}" "$BENCH_TMP/desired" "$HOST"
		;;
	nginx) start_nginx_proxy "${port[nginx]}" "$origin_port" ;;
	haproxy) start_haproxy "${port[haproxy]}" "$origin_port" ;;
	*) die "unknown proxy $proxy (expected weir, nginx or haproxy)" ;;
	esac
	pid[$proxy]="$STARTED_PID"
	wait_http "${port[$proxy]}" "$HOST" "$STARTED_PID"
	log "$proxy on 127.0.0.1:${port[$proxy]}"
done

for proxy in $PROXIES; do
	log "warm-up $proxy ($WARMUP)"
	run_wrk "${port[$proxy]}" "$HOST" "$WARMUP" "$BENCH_TMP/warmup-$proxy.log" >/dev/null
done

declare -A rps p50 p99 errors cpu
for ((round = 1; round <= ROUNDS; round++)); do
	for proxy in $PROXIES; do
		# shellcheck disable=SC2046
		cpu_before="$(cpu_ms $(descendants "${pid[$proxy]}"))"
		read -r r l50 l99 requests sock non2xx < <(run_wrk "${port[$proxy]}" "$HOST" "$DURATION" \
			"$BENCH_TMP/wrk-$proxy-$round.log")
		# shellcheck disable=SC2046
		cpu_used=$(($(cpu_ms $(descendants "${pid[$proxy]}")) - cpu_before))
		us=$(awk -v c="$cpu_used" -v n="$requests" 'BEGIN { printf "%.2f", n ? c * 1000 / n : 0 }')
		cpu[$proxy]+="$us "
		rps[$proxy]+="$r "
		p50[$proxy]+="$l50 "
		p99[$proxy]+="$l99 "
		errors[$proxy]=$((${errors[$proxy]:-0} + sock + non2xx))
		log "round $round $proxy: $r rps, p50 ${l50} ms, p99 ${l99} ms," \
			"$requests requests, $sock socket errors, $non2xx non-2xx, ${us} us CPU per request"
	done
done

declare -A med_rps med_p50 med_p99 med_cpu
printf '\n%-8s %12s %10s %10s %12s %8s   %s\n' proxy "rps(median)" "p50_ms" "p99_ms" "cpu_us/req" errors \
	"rps per round" >&2
for proxy in weir nginx haproxy; do
	if [[ " $PROXIES " == *" $proxy "* ]]; then
		# shellcheck disable=SC2086
		med_rps[$proxy]="$(median ${rps[$proxy]})"
		# shellcheck disable=SC2086
		med_p50[$proxy]="$(median ${p50[$proxy]})"
		# shellcheck disable=SC2086
		med_p99[$proxy]="$(median ${p99[$proxy]})"
		# shellcheck disable=SC2086
		med_cpu[$proxy]="$(median ${cpu[$proxy]})"
		printf '%-8s %12.0f %10.3f %10.3f %12.2f %8d   %s\n' "$proxy" "${med_rps[$proxy]}" \
			"${med_p50[$proxy]}" "${med_p99[$proxy]}" "${med_cpu[$proxy]}" "${errors[$proxy]}" \
			"${rps[$proxy]}" >&2
	else
		med_rps[$proxy]=NA med_p50[$proxy]=NA med_p99[$proxy]=NA med_cpu[$proxy]=NA errors[$proxy]=NA
	fi
done

# Per-round ratios: Weir against the better of the other two in the same round. Rounds of
# one proxy run seconds apart, so slow drifts of a shared machine cancel out here better than
# in the ratio of medians; their median is reported beside it.
best_round_ratios=()
read -r -a weir_rounds <<<"${rps[weir]:-}"
read -r -a nginx_rounds <<<"${rps[nginx]:-}"
read -r -a haproxy_rounds <<<"${rps[haproxy]:-}"
for ((i = 0; i < ${#weir_rounds[@]}; i++)); do
	best="$(printf '%s\n' "${nginx_rounds[$i]:-0}" "${haproxy_rounds[$i]:-0}" | sort -g | tail -1)"
	[[ "$best" != 0 ]] && best_round_ratios+=("$(ratio "${weir_rounds[$i]}" "$best")")
done
if ((${#best_round_ratios[@]} > 0)); then
	round_median="$(median "${best_round_ratios[@]}")"
	round_list="$(
		IFS=,
		echo "${best_round_ratios[*]}"
	)"
else
	round_median=NA round_list=NA
fi
log "weir / better of nginx and HAProxy, per round: $round_list (median $round_median)"

fmt_int() { [[ "$1" == NA ]] && echo NA || printf '%.0f' "$1"; }
echo "RESULT weir_rps=$(fmt_int "${med_rps[weir]}") nginx_rps=$(fmt_int "${med_rps[nginx]}")" \
	"haproxy_rps=$(fmt_int "${med_rps[haproxy]}")" \
	"weir/nginx=$(ratio "${med_rps[weir]}" "${med_rps[nginx]}")" \
	"weir/haproxy=$(ratio "${med_rps[weir]}" "${med_rps[haproxy]}")" \
	"weir/best_per_round_median=$round_median weir/best_per_round=$round_list" \
	"p50_ms_weir=${med_p50[weir]} p50_ms_nginx=${med_p50[nginx]} p50_ms_haproxy=${med_p50[haproxy]}" \
	"p99_ms_weir=${med_p99[weir]} p99_ms_nginx=${med_p99[nginx]} p99_ms_haproxy=${med_p99[haproxy]}" \
	"cpu_us_per_req_weir=${med_cpu[weir]} cpu_us_per_req_nginx=${med_cpu[nginx]}" \
	"cpu_us_per_req_haproxy=${med_cpu[haproxy]}" \
	"errors_weir=${errors[weir]} errors_nginx=${errors[nginx]} errors_haproxy=${errors[haproxy]}" \
	"rounds=$ROUNDS duration=$DURATION"
