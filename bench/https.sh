#!/usr/bin/env bash
# Side-by-side HTTPS termination: Weir, nginx and HAProxy, each with one worker, terminating
# TLS with the same P-256 certificate (made here with openssl, in the scratch directory) in
# front of the same plain-HTTP nginx origin as bench/http.sh.
#
# Two measures, each in interleaved rounds (weir, nginx, haproxy, weir, ...) so machine
# noise hits all three alike; figures are medians over a proxy's rounds:
#   * keep-alive: wrk over https, WRK_CONNS connections kept open, requests/s;
#   * new connections: wrk with `Connection: close`, so every request is a new TCP
#     connection and a full TLS handshake (wrk resumes no session), connections/s.
# Around each round the proxy's process tree CPU time is read, for CPU per request.
#
# Environment:
#   ROUNDS=3        rounds per proxy and measure
#   DURATION=10s    wrk duration per round
#   WARMUP=2s       an unmeasured wrk run per proxy before the first round
#   PROXIES="weir nginx haproxy"   which proxies to run (others report NA)
#   SKIP_WEIR=1     leave Weir out (same as PROXIES without weir)
#   WEIR_BIN=path   use this weir binary instead of building target/release/weir
#   WEIR_ALT_BIN=path  a second weir binary measured in the same rounds as `weir_alt`, right
#                   after `weir` (the crypto provider A/B: a build with `--features aws-lc-rs`)
#   WRK_THREADS=1 WRK_CONNS=64     wrk parameters (the same for every proxy and measure)
#
# Ends with one line (keep-alive figures under the names http.sh uses, new-connection
# figures prefixed `newconn_`):
#   RESULT weir_rps=... nginx_rps=... haproxy_rps=... weir/nginx=... weir/haproxy=...
#          weir/best=... cpu_us_per_req_{weir,nginx,haproxy}=...
#          newconn_weir_cps=... newconn_nginx_cps=... newconn_haproxy_cps=...
#          newconn_weir/nginx=... newconn_weir/haproxy=... newconn_weir/best=...
#          newconn_cpu_us_per_req_{weir,nginx,haproxy}=... errors_*=... tls_*=...
#          weir/best_per_round=r1,r2,... newconn_weir/best_per_round=r1,r2,...
#   and with WEIR_ALT_BIN: weir_alt_rps=... weir_alt/weir=... weir_alt/weir_per_round=...
#          cpu_us_per_req_weir_alt=... and the same four with the newconn_ prefix
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tls.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
PROXIES="${PROXIES:-weir nginx haproxy}"
if [[ -n "${SKIP_WEIR:-}" ]]; then
	PROXIES=" $PROXIES "
	PROXIES="${PROXIES// weir / }"
fi
WEIR_ALT_BIN="${WEIR_ALT_BIN:-}"
if [[ -n "$WEIR_ALT_BIN" ]]; then
	[[ -x "$WEIR_ALT_BIN" ]] || die "WEIR_ALT_BIN=$WEIR_ALT_BIN is not executable"
	PROXIES=" $PROXIES "
	PROXIES="${PROXIES/ weir / weir weir_alt }"
fi
HOST="localhost"

bench_init
ensure_tools
[[ " $PROXIES " == *" weir "* ]] && build_weir

# negotiated PORT: the TLS version and cipher a default OpenSSL client gets (wrk uses
# OpenSSL too), so a reader can check the three were measured alike.
negotiated() {
	local out
	out="$(openssl s_client -connect "127.0.0.1:$1" -servername "$HOST" -brief \
		</dev/null 2>&1 || true)"
	local version cipher group
	version="$(awk -F': *' '/^Protocol version/ { print $2 }' <<<"$out")"
	cipher="$(awk -F': *' '/^Ciphersuite/ { print $2 }' <<<"$out")"
	group="$(awk -F': *' '/^(Server Temp Key|Negotiated TLS1.3 group)/ { split($2, g, ","); print g[1]; exit }' \
		<<<"$out")"
	echo "${version:-?}/${cipher:-?}/${group:-?}"
}

# run_wrk_tls PORT DURATION LOGFILE [HEADER]: like lib.sh's run_wrk, over https to HOST
# (wrk sends the URL's host as SNI and as Host).
run_wrk_tls() {
	local port=$1 duration=$2 logfile=$3 header=${4:-}
	local extra=()
	[[ -n "$header" ]] && extra=(-H "$header")
	wrk -t"${WRK_THREADS:-1}" -c"${WRK_CONNS:-64}" -d"$duration" --latency \
		"${extra[@]}" -s "$BENCH_DIR/report.lua" \
		"https://$HOST:$port/" >"$logfile" 2>&1 || die "wrk failed, see $logfile"
	local line
	line="$(grep '^WRKRESULT ' "$logfile" | tail -1)" || die "no WRKRESULT in $logfile"
	echo "${line#WRKRESULT }"
}

# wrk sends its URL's host as SNI and cannot be told another address, so the name is
# `localhost`, which resolves to 127.0.0.1 without any change to the machine.
getent ahosts "$HOST" | grep -q '^127\.0\.0\.1 ' || die "$HOST does not resolve to 127.0.0.1"

make_cert
origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"
log "origin (nginx, 1 worker) on 127.0.0.1:$origin_port; certificate P-256 for $HOST"

declare -A port pid tls
for proxy in $PROXIES; do
	port[$proxy]="$(free_port)"
	case "$proxy" in
	weir | weir_alt)
		bin="$WEIR_BIN"
		[[ "$proxy" == weir_alt ]] && bin="$WEIR_ALT_BIN"
		write_weir_tls_desired "$BENCH_TMP/desired-$proxy" "${port[$proxy]}" "$origin_port"
		start_bg "$proxy" "$bin" proxy --workers 1 --desired "$BENCH_TMP/desired-$proxy" \
			--socket "$BENCH_SOCKS/$proxy.sock"
		wait_port "${port[$proxy]}" "$STARTED_PID" 60
		;;
	nginx) start_nginx_tls "${port[nginx]}" "$origin_port" ;;
	haproxy) start_haproxy_tls "${port[haproxy]}" "$origin_port" ;;
	*) die "unknown proxy $proxy (expected weir, nginx or haproxy)" ;;
	esac
	pid[$proxy]="$STARTED_PID"
	wait_https "${port[$proxy]}" "$STARTED_PID" 60
	tls[$proxy]="$(negotiated "${port[$proxy]}")"
	log "$proxy on 127.0.0.1:${port[$proxy]} (${tls[$proxy]})"
done

for proxy in $PROXIES; do
	log "warm-up $proxy ($WARMUP)"
	run_wrk_tls "${port[$proxy]}" "$WARMUP" "$BENCH_TMP/warmup-$proxy.log" >/dev/null
done

# measure NAME PROXY ROUND [HEADER]: one wrk round; appends to the NAME_* tables.
declare -A ka_rps ka_cpu nc_rps nc_cpu errors
measure() {
	local measure=$1 proxy=$2 round=$3 header=${4:-}
	local cpu_before cpu_used r l50 l99 requests sock non2xx us
	# shellcheck disable=SC2046
	cpu_before="$(cpu_ms $(descendants "${pid[$proxy]}"))"
	read -r r l50 l99 requests sock non2xx < <(run_wrk_tls "${port[$proxy]}" "$DURATION" \
		"$BENCH_TMP/wrk-$measure-$proxy-$round.log" "$header")
	# shellcheck disable=SC2046
	cpu_used=$(($(cpu_ms $(descendants "${pid[$proxy]}")) - cpu_before))
	us=$(awk -v c="$cpu_used" -v n="$requests" 'BEGIN { printf "%.2f", n ? c * 1000 / n : 0 }')
	errors[$proxy]=$((${errors[$proxy]:-0} + non2xx))
	case "$measure" in
	keepalive)
		ka_rps[$proxy]+="$r "
		ka_cpu[$proxy]+="$us "
		# A kept-alive connection has no reason to fail.
		errors[$proxy]=$((${errors[$proxy]} + sock))
		;;
	newconn)
		nc_rps[$proxy]+="$r "
		nc_cpu[$proxy]+="$us "
		;;
	esac
	log "round $round $measure $proxy: $r per s, p50 ${l50} ms, p99 ${l99} ms," \
		"$requests requests, $sock socket errors, $non2xx non-2xx, ${us} us CPU per request"
}

for ((round = 1; round <= ROUNDS; round++)); do
	for proxy in $PROXIES; do
		measure keepalive "$proxy" "$round"
	done
	# wrk counts the server's close after each answer as a read error when it races a
	# write; these are not failures here, so newconn socket errors are only logged.
	for proxy in $PROXIES; do
		measure newconn "$proxy" "$round" "Connection: close"
	done
done

declare -A med_ka med_kc med_nc med_ncc
printf '\n%-8s %14s %12s %14s %12s %8s\n' proxy "keepalive_rps" "cpu_us/req" "newconn_cps" \
	"cpu_us/conn" errors >&2
for proxy in weir weir_alt nginx haproxy; do
	if [[ " $PROXIES " == *" $proxy "* ]]; then
		# shellcheck disable=SC2086
		med_ka[$proxy]="$(median ${ka_rps[$proxy]})"
		# shellcheck disable=SC2086
		med_kc[$proxy]="$(median ${ka_cpu[$proxy]})"
		# shellcheck disable=SC2086
		med_nc[$proxy]="$(median ${nc_rps[$proxy]})"
		# shellcheck disable=SC2086
		med_ncc[$proxy]="$(median ${nc_cpu[$proxy]})"
		printf '%-8s %14.0f %12.2f %14.0f %12.2f %8d\n' "$proxy" "${med_ka[$proxy]}" \
			"${med_kc[$proxy]}" "${med_nc[$proxy]}" "${med_ncc[$proxy]}" "${errors[$proxy]}" >&2
	else
		med_ka[$proxy]=NA med_kc[$proxy]=NA med_nc[$proxy]=NA med_ncc[$proxy]=NA
		errors[$proxy]=NA tls[$proxy]=NA
	fi
done

# better_of A B: the larger of two figures, NA only when both are.
better_of() {
	if [[ "$1" == NA ]]; then echo "$2"; elif [[ "$2" == NA ]]; then echo "$1"; else
		printf '%s\n' "$1" "$2" | sort -g | tail -1
	fi
}
best_ka="$(better_of "${med_ka[nginx]}" "${med_ka[haproxy]}")"
best_nc="$(better_of "${med_nc[nginx]}" "${med_nc[haproxy]}")"

fmt_int() { [[ "$1" == NA ]] && echo NA || printf '%.0f' "$1"; }

# per_round "A1 A2..." "B1 B2..." ["C1 C2..."]: round by round, A over the larger of B and C,
# comma-separated (the noise of one round hits all of them alike); NA without figures.
per_round() {
	[[ -n "$1" && -n "$2" ]] || { echo NA; return; }
	awk -v a="$1" -v b="$2" -v c="${3:-}" 'BEGIN {
		n = split(a, x, " "); split(b, y, " "); split(c, z, " ")
		for (i = 1; i <= n; i++) {
			best = y[i]; if (z[i] != "" && z[i] + 0 > best + 0) best = z[i]
			printf "%s%.2f", (i > 1 ? "," : ""), (best + 0 ? x[i] / best : 0)
		}
		print "" }'
}
alt=""
if [[ " $PROXIES " == *" weir_alt "* ]]; then
	alt="weir_alt_rps=$(fmt_int "${med_ka[weir_alt]}")"
	alt+=" weir_alt/weir=$(ratio "${med_ka[weir_alt]}" "${med_ka[weir]}")"
	alt+=" weir_alt/weir_per_round=$(per_round "${ka_rps[weir_alt]}" "${ka_rps[weir]}")"
	alt+=" cpu_us_per_req_weir_alt=${med_kc[weir_alt]}"
	alt+=" newconn_weir_alt_cps=$(fmt_int "${med_nc[weir_alt]}")"
	alt+=" newconn_weir_alt/weir=$(ratio "${med_nc[weir_alt]}" "${med_nc[weir]}")"
	alt+=" newconn_weir_alt/weir_per_round=$(per_round "${nc_rps[weir_alt]}" "${nc_rps[weir]}")"
	alt+=" newconn_cpu_us_per_req_weir_alt=${med_ncc[weir_alt]}"
	alt+=" errors_weir_alt=${errors[weir_alt]} tls_weir_alt=${tls[weir_alt]}"
fi
echo "RESULT weir_rps=$(fmt_int "${med_ka[weir]}") nginx_rps=$(fmt_int "${med_ka[nginx]}")" \
	"haproxy_rps=$(fmt_int "${med_ka[haproxy]}")" \
	"weir/nginx=$(ratio "${med_ka[weir]}" "${med_ka[nginx]}")" \
	"weir/haproxy=$(ratio "${med_ka[weir]}" "${med_ka[haproxy]}")" \
	"weir/best=$(ratio "${med_ka[weir]}" "$best_ka")" \
	"cpu_us_per_req_weir=${med_kc[weir]} cpu_us_per_req_nginx=${med_kc[nginx]}" \
	"cpu_us_per_req_haproxy=${med_kc[haproxy]}" \
	"newconn_weir_cps=$(fmt_int "${med_nc[weir]}") newconn_nginx_cps=$(fmt_int "${med_nc[nginx]}")" \
	"newconn_haproxy_cps=$(fmt_int "${med_nc[haproxy]}")" \
	"newconn_weir/nginx=$(ratio "${med_nc[weir]}" "${med_nc[nginx]}")" \
	"newconn_weir/haproxy=$(ratio "${med_nc[weir]}" "${med_nc[haproxy]}")" \
	"newconn_weir/best=$(ratio "${med_nc[weir]}" "$best_nc")" \
	"newconn_cpu_us_per_req_weir=${med_ncc[weir]} newconn_cpu_us_per_req_nginx=${med_ncc[nginx]}" \
	"newconn_cpu_us_per_req_haproxy=${med_ncc[haproxy]}" \
	"errors_weir=${errors[weir]} errors_nginx=${errors[nginx]} errors_haproxy=${errors[haproxy]}" \
	"tls_weir=${tls[weir]} tls_nginx=${tls[nginx]} tls_haproxy=${tls[haproxy]}" \
	"weir/best_per_round=$(per_round "${ka_rps[weir]:-}" "${ka_rps[nginx]:-}" "${ka_rps[haproxy]:-}")" \
	"newconn_weir/best_per_round=$(per_round "${nc_rps[weir]:-}" "${nc_rps[nginx]:-}" "${nc_rps[haproxy]:-}")" \
	${alt:+"$alt"} "rounds=$ROUNDS duration=$DURATION"
