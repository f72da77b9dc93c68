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
#   WRK_THREADS=1 WRK_CONNS=64     wrk parameters (the same for every proxy and measure)
#
# Ends with one line (keep-alive figures under the names http.sh uses, new-connection
# figures prefixed `newconn_`):
#   RESULT weir_rps=... nginx_rps=... haproxy_rps=... weir/nginx=... weir/haproxy=...
#          weir/best=... cpu_us_per_req_{weir,nginx,haproxy}=...
#          newconn_weir_cps=... newconn_nginx_cps=... newconn_haproxy_cps=...
#          newconn_weir/nginx=... newconn_weir/haproxy=... newconn_weir/best=...
#          newconn_cpu_us_per_req_{weir,nginx,haproxy}=... errors_*=... tls_*=...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
PROXIES="${PROXIES:-weir nginx haproxy}"
if [[ -n "${SKIP_WEIR:-}" ]]; then
	PROXIES=" $PROXIES "
	PROXIES="${PROXIES// weir / }"
fi
HOST="localhost"

bench_init
ensure_tools
command -v openssl >/dev/null || die "openssl is needed (the benchmark certificate)"
[[ " $PROXIES " == *" weir "* ]] && build_weir

# --- the certificate ---------------------------------------------------------------

# One self-signed P-256 certificate for HOST, used by all three: the handshake's signature
# (ECDSA P-256) is a large part of its cost, so it must be the same for each.
CERT_DIR="$BENCH_TMP/cert"
make_cert() {
	mkdir -p "$CERT_DIR"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,IP:127.0.0.1" \
		-keyout "$CERT_DIR/key.pem" -out "$CERT_DIR/cert.pem" 2>"$CERT_DIR/openssl.log" ||
		die "openssl could not make the certificate, see $CERT_DIR/openssl.log"
	# HAProxy takes the chain and the key in one file.
	cat "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem" >"$CERT_DIR/both.pem"
	# nginx workers may run as another user: they read the key after dropping root.
	chmod 644 "$CERT_DIR"/*.pem
}

# --- TLS-terminating proxies (same forwarding fields as bench/http.sh, proto https) -----

# start_nginx_tls PORT ORIGIN_PORT: bench/lib.sh's nginx proxy, terminating TLS.
start_nginx_tls() {
	start_nginx_proxy "$1" "$2" "        server_name $HOST;
        ssl_certificate $CERT_DIR/cert.pem;
        ssl_certificate_key $CERT_DIR/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;"
}

# start_haproxy_tls PORT ORIGIN_PORT: bench/lib.sh's HAProxy, terminating TLS.
start_haproxy_tls() {
	start_haproxy "$1" "$2" "$CERT_DIR/both.pem"
}

# write_weir_tls_desired DIR LISTEN_PORT ORIGIN_PORT: one https listener, one route.
write_weir_tls_desired() {
	local dir=$1 port=$2 oport=$3
	mkdir -p "$dir"
	cat >"$dir/weir.yaml" <<EOF
listeners:
  - name: secure
    address: "127.0.0.1:$port"
    protocol: https
clusters:
  - id: origin
    backends:
      - id: o1
        address: "127.0.0.1:$oport"
certificates:
  - name: bench
    certificate: $CERT_DIR/cert.pem
    key: $CERT_DIR/key.pem
frontends:
  - listener: secure
    hostname: $HOST
    path: /
    cluster: origin
    certificate: bench
EOF
}

# --- readiness and measurement over https --------------------------------------------

# wait_https PORT PID [SECONDS]: polls until a request over TLS, checked against the
# benchmark certificate, returns the origin's body.
wait_https() {
	local port=$1 pid=$2 timeout=${3:-30}
	local deadline=$((SECONDS + timeout)) body=""
	while ((SECONDS < deadline)); do
		body="$(curl -s --max-time 2 --cacert "$CERT_DIR/cert.pem" \
			--resolve "$HOST:$port:127.0.0.1" "https://$HOST:$port/" 2>/dev/null || true)"
		[[ "$body" == "$ORIGIN_BODY" ]] && return 0
		kill -0 "$pid" 2>/dev/null || die "process $pid died before serving https on $port"
		sleep 0.1
	done
	die "127.0.0.1:$port did not serve $HOST over https after ${timeout}s" \
		"(last body: ${body:0:80}; if Weir does not terminate TLS yet, run with SKIP_WEIR=1)"
}

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
	weir)
		write_weir_tls_desired "$BENCH_TMP/desired" "${port[weir]}" "$origin_port"
		start_bg weir "$WEIR_BIN" proxy --workers 1 --desired "$BENCH_TMP/desired" \
			--socket "$BENCH_TMP/weir.sock"
		wait_port "${port[weir]}" "$STARTED_PID" 60
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
for proxy in weir nginx haproxy; do
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
	"rounds=$ROUNDS duration=$DURATION"
