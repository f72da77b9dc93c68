#!/usr/bin/env bash
# Fast clients beside slowloris ones: Weir, nginx and HAProxy, one worker each, in front of
# the same nginx origin. For each proxy, wrk runs alone, then with LORIS slowloris
# connections held open beside it (bench/slowloris_conns.py: each sends a header line every
# INTERVAL seconds and never ends its head; a connection the proxy closes is opened again),
# alternating ROUNDS times; the figures are the medians of each kind of run.
#
# Goal (issue 17): with 1,000 slowloris sockets, fast clients keep >= 0.95 x their rps and
# their p99 grows by at most 1.2 x.
#
# Environment:
#   LORIS=1000 INTERVAL=5 ROUNDS=3 DURATION=10s WARMUP=2s
#   PROXIES="weir nginx haproxy"   WEIR_BIN=path   WRK_THREADS=1 WRK_CONNS=64
#
# Ends with one line:
#   RESULT weir_rps_ratio=... weir_p99_ratio=... nginx_rps_ratio=... ... (with / without)
#          plus the medians: weir_rps_alone=... weir_rps_loris=... weir_p99_alone=... ...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LORIS="${LORIS:-1000}"
INTERVAL="${INTERVAL:-5}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
PROXIES="${PROXIES:-weir nginx haproxy}"
HOST="bench.local"

ulimit -n "$(ulimit -Hn)"
bench_init
ensure_tools
[[ " $PROXIES " == *" weir "* ]] && build_weir

origin_port="$(free_port)"
start_origin "$origin_port"
wait_http "$origin_port" "$HOST" "$STARTED_PID"
log "origin (nginx, 1 worker) on 127.0.0.1:$origin_port"

result=""
for proxy in weir nginx haproxy; do
	if [[ " $PROXIES " != *" $proxy "* ]]; then
		result+=" ${proxy}_rps_ratio=NA ${proxy}_p99_ratio=NA"
		continue
	fi
	port="$(free_port)"
	case "$proxy" in
	weir)
		write_weir_desired "$BENCH_TMP/desired" "$port" "$origin_port" "$HOST"
		start_weir weir "$port" "$BENCH_TMP/desired" "$HOST"
		;;
	nginx) start_nginx_proxy "$port" "$origin_port" ;;
	haproxy) start_haproxy "$port" "$origin_port" ;;
	esac
	pid="$STARTED_PID"
	wait_http "$port" "$HOST" "$pid"
	run_wrk "$port" "$HOST" "$WARMUP" "$BENCH_TMP/warmup-$proxy.log" >/dev/null
	rps_alone="" rps_loris="" p99_alone="" p99_loris=""
	for round in $(seq 1 "$ROUNDS"); do
		read -r r _ l99 _ errs non2xx < <(run_wrk "$port" "$HOST" "$DURATION" \
			"$BENCH_TMP/wrk-$proxy-alone-$round.log")
		rps_alone+="$r " p99_alone+="$l99 "
		log "round $round $proxy alone: $r rps, p99 $l99 ms, errors $errs/$non2xx"

		coproc LORIS_CONNS { exec python3 "$BENCH_DIR/slowloris_conns.py" "$port" "$HOST" \
			"$LORIS" "$INTERVAL" 300; }
		# shellcheck disable=SC2153 # LORIS_CONNS_PID is set by coproc
		loris_pid="$LORIS_CONNS_PID"
		BENCH_PIDS+=("$loris_pid")
		loris_out="${LORIS_CONNS[0]}" loris_in="${LORIS_CONNS[1]}"
		ready=""
		read -r -t 120 ready <&"$loris_out" || true
		[[ "$ready" == "READY $LORIS" ]] || die "$proxy: slowloris connections failed (got '$ready')"
		read -r r _ l99 _ errs non2xx < <(run_wrk "$port" "$HOST" "$DURATION" \
			"$BENCH_TMP/wrk-$proxy-loris-$round.log")
		rps_loris+="$r " p99_loris+="$l99 "
		eval "exec ${loris_in}>&-"
		reopened=""
		read -r -t 30 reopened <&"$loris_out" || true
		wait "$loris_pid" || true
		log "round $round $proxy with $LORIS slowloris: $r rps, p99 $l99 ms," \
			"errors $errs/$non2xx, ${reopened:-REOPENED ?}"
	done
	# shellcheck disable=SC2086 # word splitting intended
	{
		ra="$(median $rps_alone)" rl="$(median $rps_loris)"
		pa="$(median $p99_alone)" pl="$(median $p99_loris)"
	}
	log "$proxy: rps $ra -> $rl ($(ratio "$rl" "$ra") x), p99 $pa -> $pl ms ($(ratio "$pl" "$pa") x)"
	result+=" ${proxy}_rps_ratio=$(ratio "$rl" "$ra") ${proxy}_p99_ratio=$(ratio "$pl" "$pa")"
	result+=" ${proxy}_rps_alone=$ra ${proxy}_rps_loris=$rl ${proxy}_p99_alone=$pa ${proxy}_p99_loris=$pl"
	stop_pid "$pid"
done
echo "RESULT${result} loris=$LORIS interval=$INTERVAL rounds=$ROUNDS duration=$DURATION"
