#!/usr/bin/env bash
# Memory held per idle keep-alive connection: Weir, nginx and HAProxy, one worker each,
# in front of the same nginx origin.
#
# For each proxy: start it, send one request, read the RSS of its serving processes
# (VmRSS of the whole process tree: weir main + workers, nginx master + worker,
# haproxy), open CONNS keep-alive connections that each carry one request and then
# stay idle, read the RSS again, and divide the growth by CONNS.
#
# With TLS=1 the proxies terminate TLS (bench/tls.sh: the same P-256 certificate for all
# three) and each connection completes a handshake before its request, so the figure is
# what an idle TLS session costs.
#
# Environment:
#   CONNS=5000      idle connections per proxy
#   SETTLE=1        seconds between the last answer and the second RSS reading
#   PROXIES="weir nginx haproxy"   which proxies to run (others report NA)
#   WEIR_BIN=path   use this weir binary instead of building target/release/weir
#   TLS=1           idle TLS connections instead of plain HTTP ones
#
# Ends with one line:
#   RESULT weir_bytes_per_conn=... nginx_bytes_per_conn=... haproxy_bytes_per_conn=...
#          conns=... closed_weir=... (connections a proxy closed while they were held:
#          anything but 0 makes that proxy's figure meaningless) tls=0|1
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TLS="${TLS:-0}"
if [[ "$TLS" == 1 ]]; then
	# shellcheck source=tls.sh
	source "$(dirname "${BASH_SOURCE[0]}")/tls.sh"
fi
CONNS="${CONNS:-5000}"
SETTLE="${SETTLE:-1}"
PROXIES="${PROXIES:-weir nginx haproxy}"
HOST="bench.local"

# Every connection costs the client one descriptor and the proxy at least one.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > CONNS + 1000)) || die "ulimit -n is $(ulimit -n); CONNS=$CONNS needs more"

bench_init
ensure_tools
[[ " $PROXIES " == *" weir "* ]] && build_weir

[[ "$TLS" == 1 ]] && make_cert
origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"
log "origin (nginx, 1 worker) on 127.0.0.1:$origin_port"

declare -A per_conn closed_by
for proxy in weir nginx haproxy; do
	per_conn[$proxy]=NA closed_by[$proxy]=NA
	[[ " $PROXIES " == *" $proxy "* ]] || continue
	port="$(free_port)"
	case "$proxy/$TLS" in
	weir/1)
		write_weir_tls_desired "$BENCH_TMP/desired" "$port" "$origin_port"
		start_bg weir "$WEIR_BIN" proxy --workers 1 --desired "$BENCH_TMP/desired" \
			--socket "$BENCH_SOCKS/weir.sock"
		wait_port "$port" "$STARTED_PID" 60
		;;
	weir/*)
		write_weir_desired "$BENCH_TMP/desired" "$port" "$origin_port" "$HOST"
		start_weir weir "$port" "$BENCH_TMP/desired" "$HOST"
		;;
	nginx/1) start_nginx_tls "$port" "$origin_port" ;;
	nginx/*) start_nginx_proxy "$port" "$origin_port" ;;
	haproxy/1) start_haproxy_tls "$port" "$origin_port" ;;
	haproxy/*) start_haproxy "$port" "$origin_port" ;;
	esac
	pid="$STARTED_PID"
	if [[ "$TLS" == 1 ]]; then
		wait_https "$port" "$pid" 60
		idle_args=(300 "$CERT_DIR/cert.pem")
	else
		wait_http "$port" "$HOST" "$pid"
		idle_args=(300)
	fi
	# shellcheck disable=SC2207
	pids=($(descendants "$pid"))
	before="$(rss_kb "${pids[@]}")"

	coproc IDLE { exec python3 "$BENCH_DIR/idle_conns.py" "$port" "$HOST" "$CONNS" "${idle_args[@]}"; }
	# shellcheck disable=SC2153 # IDLE_PID is set by coproc
	idle_pid="$IDLE_PID"
	BENCH_PIDS+=("$idle_pid")
	idle_out="${IDLE[0]}" idle_in="${IDLE[1]}"
	ready=""
	read -r -t 120 ready <&"$idle_out" || true
	[[ "$ready" == "READY $CONNS" ]] || die "$proxy: idle connections failed (got '${ready}')"
	sleep "$SETTLE"
	# Re-read the tree: a proxy may have started processes meanwhile.
	# shellcheck disable=SC2207
	pids=($(descendants "$pid"))
	after="$(rss_kb "${pids[@]}")"

	# Let go of the connections and check the proxy had kept them all open.
	eval "exec ${idle_in}>&-"
	closed=""
	read -r -t 30 closed <&"$idle_out" || true
	wait "$idle_pid" || true
	closed="${closed#CLOSED }"
	[[ "$closed" =~ ^[0-9]+$ ]] || die "$proxy: the idle client did not report how many connections closed"
	closed_by[$proxy]="$closed"
	((closed == 0)) || log "$proxy: warning: $closed of $CONNS connections were closed by the proxy" \
		"before the end of the measurement; its figure is not comparable"

	per_conn[$proxy]=$(((after - before) * 1024 / CONNS))
	log "$proxy: ${#pids[@]} processes, RSS ${before} kB -> ${after} kB with $CONNS idle" \
		"connections: ${per_conn[$proxy]} bytes per connection"
	stop_pid "$pid"
done

echo "RESULT weir_bytes_per_conn=${per_conn[weir]} nginx_bytes_per_conn=${per_conn[nginx]}" \
	"haproxy_bytes_per_conn=${per_conn[haproxy]} conns=$CONNS" \
	"closed_weir=${closed_by[weir]} closed_nginx=${closed_by[nginx]} closed_haproxy=${closed_by[haproxy]}" \
	"tls=$TLS"
