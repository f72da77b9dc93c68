#!/usr/bin/env bash
# Weir as third-party tools see it, beside nginx and HAProxy with the bench settings, one
# worker each, in front of the same nginx origin:
#
# - sslyze --mozilla_config=intermediate on each proxy's HTTPS listener. The certificate is
#   tls.sh's self-signed one, so the certificate checks (trust, path validation) fail by
#   design for all three; the count reported is of the other findings: protocol versions,
#   cipher suites, curves, and what Mozilla's intermediate profile asks of a server.
# - slowhttptest, the slow-attack generator, on each proxy's HTTP listener: slowloris
#   (-H, heads never finished), slow body (-B, a POST body a byte at a time) and slow read
#   (-X, a tiny receive window, responses read slowly). slowhttptest probes the server once a
#   second while the attack runs; the figure is the number of seconds it found the service
#   unavailable (0 is the goal).
#
# Not a speed measurement: it can run on a busy machine.
#
# Environment: SLOW_CONNS=1000 SLOW_SECONDS=30 PROXIES="weir nginx haproxy" WEIR_BIN=path
#
# Ends with one line:
#   RESULT weir_mozilla_intermediate_findings=... (besides the certificate's)
#          weir_slowloris_unavailable_s=... weir_slow_body_unavailable_s=...
#          weir_slow_read_unavailable_s=... and the same for nginx and haproxy
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tls.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls.sh"

SLOW_CONNS="${SLOW_CONNS:-1000}"
SLOW_SECONDS="${SLOW_SECONDS:-30}"
PROXIES="${PROXIES:-weir nginx haproxy}"
HOST="localhost"

ulimit -n "$(ulimit -Hn)"
bench_init
ensure_tools
[[ " $PROXIES " == *" weir "* ]] && build_weir

if ! command -v slowhttptest >/dev/null; then
	log "installing slowhttptest"
	DEBIAN_FRONTEND=noninteractive apt-get install -y slowhttptest >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y slowhttptest >&2; }
fi
SSLYZE="${SSLYZE:-}"
if [[ -z "$SSLYZE" ]]; then
	log "installing sslyze (PyPI) in a scratch virtualenv"
	python3 -m venv "$BENCH_TMP/venv" >&2
	"$BENCH_TMP/venv/bin/pip" install -q sslyze >&2 || die "pip could not install sslyze"
	SSLYZE="$BENCH_TMP/venv/bin/sslyze"
fi

make_cert
origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"

declare -A http_port tls_port
for proxy in $PROXIES; do
	http_port[$proxy]="$(free_port)"
	tls_port[$proxy]="$(free_port)"
	case "$proxy" in
	weir)
		write_weir_desired "$BENCH_TMP/desired-weir" "${http_port[weir]}" "$origin_port" "$HOST"
		start_weir weir "${http_port[weir]}" "$BENCH_TMP/desired-weir" "$HOST"
		write_weir_tls_desired "$BENCH_TMP/desired-weir-tls" "${tls_port[weir]}" "$origin_port"
		start_bg weir_tls "$WEIR_BIN" proxy --workers 1 --desired "$BENCH_TMP/desired-weir-tls" \
			--socket "$BENCH_SOCKS/weir_tls.sock"
		;;
	nginx)
		start_nginx_proxy "${http_port[nginx]}" "$origin_port"
		wait_http "${http_port[nginx]}" "$HOST" "$STARTED_PID"
		start_nginx_tls "${tls_port[nginx]}" "$origin_port"
		;;
	haproxy)
		start_haproxy "${http_port[haproxy]}" "$origin_port"
		wait_http "${http_port[haproxy]}" "$HOST" "$STARTED_PID"
		start_haproxy_tls "${tls_port[haproxy]}" "$origin_port"
		;;
	*) die "unknown proxy $proxy (expected weir, nginx or haproxy)" ;;
	esac
	wait_https "${tls_port[$proxy]}" "$STARTED_PID" 60
	log "$proxy: http on 127.0.0.1:${http_port[$proxy]}, https on 127.0.0.1:${tls_port[$proxy]}"
done

# mozilla_findings PROXY: sslyze's findings against the intermediate profile, the
# certificate's own excepted (listed in the log, counted apart).
mozilla_findings() {
	local proxy=$1 out="$BENCH_TMP/sslyze-$1.txt"
	"$SSLYZE" --mozilla_config=intermediate "$HOST:${tls_port[$proxy]}{127.0.0.1}" >"$out" 2>&1 || true
	grep -q "COMPLIANCE AGAINST" "$out" || die "sslyze did not finish, see $out"
	local findings
	findings="$(sed -n '/COMPLIANCE AGAINST/,$p' "$out" | grep '^ *\* ' || true)"
	if [[ -z "$findings" ]]; then
		echo 0
		return
	fi
	log "$proxy sslyze findings:"$'\n'"$findings"
	grep -vcE '^ *\* (certificate_|maximum_certificate_lifespan)' <<<"$findings" || true
}

# unavailable_seconds PROXY MODE NAME: seconds slowhttptest's probe found the service down
# during the attack (its CSV's last column is 0 then).
unavailable_seconds() {
	local proxy=$1 mode=$2 name=$3 out="$BENCH_TMP/slow-$1-$3"
	local args=(-c "$SLOW_CONNS" -r 200 -l "$SLOW_SECONDS" -p 3 -g -o "$out"
		-u "http://$HOST:${http_port[$proxy]}/")
	case "$mode" in
	-H | -B) args+=(-i 10 -x 24) ;;
	# Advertised window 10-20 bytes, 5 s between reads of 32 bytes, 3 pipelined requests.
	-X) args+=(-w 10 -y 20 -n 5 -z 32 -k 3) ;;
	esac
	timeout $((SLOW_SECONDS + 60)) slowhttptest "$mode" "${args[@]}" >"$out.log" 2>&1 ||
		die "slowhttptest $mode failed against $proxy, see $out.log"
	[[ -s "$out.csv" ]] || die "slowhttptest wrote no $out.csv"
	awk -F, 'NR > 1 && $NF == 0 { n++ } END { print n + 0 }' "$out.csv"
}

result=""
for proxy in $PROXIES; do
	m="$(mozilla_findings "$proxy")"
	result+=" ${proxy}_mozilla_intermediate_findings=$m"
	for attack in "-H slowloris" "-B slow_body" "-X slow_read"; do
		read -r mode name <<<"$attack"
		s="$(unavailable_seconds "$proxy" "$mode" "$name")"
		log "$proxy $name: service unavailable for $s s of $SLOW_SECONDS"
		result+=" ${proxy}_${name}_unavailable_s=$s"
	done
done
echo "RESULT${result} slow_conns=$SLOW_CONNS slow_seconds=$SLOW_SECONDS"
