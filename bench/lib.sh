# shellcheck shell=bash
# Shared helpers for the side-by-side benchmarks in bench/.
#
# Sourced by http.sh, idle.sh and routes.sh. It owns three things every script needs
# and must get right the same way:
#   * a private scratch directory and a cleanup trap that stops every process the
#     script started (and only those), whatever way the script exits;
#   * the nginx / HAProxy / origin configurations, so that each script compares the
#     proxies with the same settings (one worker, keep-alive to the origin);
#   * measurement plumbing: free ports from the OS, readiness polling, a wrk run
#     whose figures come from wrk's own Lua `done` hook rather than from screen
#     scraping, and RSS sums read from /proc.
# Every server binds 127.0.0.1 only and every load is bounded in time.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$BENCH_DIR/.." && pwd)"

# The fixed 20-byte body the origin answers with; the proxies are checked against it.
ORIGIN_BODY="weir-bench-20-bytes!"

BENCH_PIDS=()
BENCH_TMP=""
BENCH_SOCKS=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Stops every process this script started, newest first, then removes the scratch
# directory. Installed as the EXIT trap by bench_init; INT/TERM turn into an exit so
# the same path runs.
bench_cleanup() {
	local status=$?
	local i pid tree=()
	# Collect the whole trees first: a proxy's workers must not outlive their parent
	# if the parent dies before it could stop them.
	for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
		pid="${BENCH_PIDS[$i]}"
		kill -0 "$pid" 2>/dev/null || continue
		# shellcheck disable=SC2207
		tree+=($(descendants "$pid"))
	done
	for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${BENCH_PIDS[$i]}"
	done
	for pid in "${tree[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" && -z "${BENCH_KEEP_TMP:-}" ]]; then
		rm -rf "$BENCH_TMP"
	elif [[ -n "$BENCH_TMP" ]]; then
		log "kept scratch directory $BENCH_TMP"
	fi
	exit "$status"
}

bench_init() {
	BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")"
	# nginx workers may drop to an unprivileged user when started as root; they only
	# need to traverse this directory, never to write in it.
	chmod 755 "$BENCH_TMP"
	# Weir's command sockets go in a directory of their own: the proxy refuses a socket
	# directory that is open to group or others (issue 17), as this one is for nginx.
	BENCH_SOCKS="$BENCH_TMP/sockets"
	mkdir -m 700 "$BENCH_SOCKS"
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# Installs the load generator and the two reference proxies when they are missing.
ensure_tools() {
	local missing=()
	command -v nginx >/dev/null || missing+=(nginx-light)
	command -v haproxy >/dev/null || missing+=(haproxy)
	command -v wrk >/dev/null || missing+=(wrk)
	if ((${#missing[@]} > 0)); then
		log "installing ${missing[*]}"
		if [[ $(id -u) -eq 0 ]]; then
			DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 ||
				{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2; }
		else
			sudo DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
		fi
	fi
	command -v python3 >/dev/null || die "python3 is needed (free ports, idle connections)"
	command -v curl >/dev/null || die "curl is needed (readiness checks)"
}

# Builds the release binary once per script run, unless WEIR_BIN names one already.
WEIR_BIN="${WEIR_BIN:-}"
build_weir() {
	if [[ -n "$WEIR_BIN" ]]; then
		[[ -x "$WEIR_BIN" ]] || die "WEIR_BIN=$WEIR_BIN is not executable"
		return
	fi
	log "building weir (cargo build --release)"
	(cd "$ROOT_DIR" && cargo build --release --bin weir >&2) || die "cargo build --release failed"
	WEIR_BIN="$ROOT_DIR/target/release/weir"
}

# A port the kernel says is free on 127.0.0.1. The socket is closed before the
# server binds, so a race is possible in theory; wait_port catches a loser.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# wait_port PORT PID [SECONDS]: polls until something accepts on 127.0.0.1:PORT,
# failing early if PID (the server that should be listening) died.
wait_port() {
	local port=$1 pid=$2 timeout=${3:-30}
	local deadline=$((SECONDS + timeout))
	while ((SECONDS < deadline)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || die "process $pid died before listening on $port"
		sleep 0.05
	done
	die "nothing listens on 127.0.0.1:$port after ${timeout}s"
}

# wait_http PORT HOST PID [SECONDS]: polls until a GET with that Host header gets the
# origin's body, so a proxy that listens before its routes are loaded is not measured.
wait_http() {
	local port=$1 host=$2 pid=$3 timeout=${4:-30}
	local deadline=$((SECONDS + timeout)) body=""
	while ((SECONDS < deadline)); do
		body="$(curl -s --max-time 2 -H "Host: $host" "http://127.0.0.1:$port/" 2>/dev/null || true)"
		[[ "$body" == "$ORIGIN_BODY" ]] && return 0
		kill -0 "$pid" 2>/dev/null || die "process $pid died before serving $host on $port"
		sleep 0.1
	done
	die "127.0.0.1:$port did not serve $host after ${timeout}s (last body: ${body:0:80})"
}

# start_bg NAME COMMAND...: runs COMMAND in the background with its output in
# $BENCH_TMP/NAME.log, records its pid for cleanup and sets STARTED_PID.
STARTED_PID=""
start_bg() {
	local name=$1
	shift
	"$@" >"$BENCH_TMP/$name.log" 2>&1 &
	STARTED_PID=$!
	BENCH_PIDS+=("$STARTED_PID")
}

# stop_pid PID: TERM, then KILL after 5 s; reaps the process if it is our child.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# --- servers ---------------------------------------------------------------------

# The nginx settings shared by the origin and the nginx proxy: one worker, no
# access log, all scratch paths inside $BENCH_TMP/NAME.
nginx_common() {
	local dir=$1
	cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 19000;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
EOF
}

# start_origin PORT: nginx answering every request with ORIGIN_BODY (20 bytes).
start_origin() {
	local port=$1 dir="$BENCH_TMP/origin"
	mkdir -p "$dir"
	{
		nginx_common "$dir"
		cat <<EOF
    server {
        listen 127.0.0.1:$port;
        location / {
            default_type text/plain;
            return 200 "$ORIGIN_BODY";
        }
    }
}
EOF
	} >"$dir/nginx.conf"
	start_bg origin nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	wait_port "$port" "$STARTED_PID"
}

# start_nginx_proxy PORT ORIGIN_PORT [TLS_LINES] [HTTP_LINES] [SERVER_LINES]: nginx as a
# reverse proxy with an upstream keep-alive pool. Like HAProxy below, it adds the forwarding
# fields Weir must add (X-Forwarded-For/-Proto/-Port, Forwarded, Via), so all three do the
# same work per request and the origin parses the same heads. With TLS_LINES (server
# directives: certificate, protocols, curves), the listener terminates TLS (https.sh).
# HTTP_LINES go in the http block and SERVER_LINES in the server block (access_log.sh's
# log_format and access_log).
start_nginx_proxy() {
	local port=$1 oport=$2 tls=${3:-} http_lines=${4:-} server_lines=${5:-}
	local dir="$BENCH_TMP/nginx"
	mkdir -p "$dir"
	{
		nginx_common "$dir"
		cat <<EOF
$http_lines
    upstream origin {
        server 127.0.0.1:$oport;
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$port${tls:+ ssl};
$tls
$server_lines
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header Via "1.1 nginx";
            proxy_set_header Forwarded "for=\$remote_addr;host=\\"\$host\\";proto=\$scheme";
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Port \$server_port;
        }
    }
}
EOF
	} >"$dir/nginx.conf"
	start_bg nginx nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	wait_port "$port" "$STARTED_PID"
}

# start_haproxy PORT ORIGIN_PORT: HAProxy in http mode, one thread, server
# connections kept alive and shared between client connections, adding the same
# forwarding fields as the other two.
# With CERT_PEM (certificate and key in one file), it terminates TLS (https.sh).
start_haproxy() {
	local port=$1 oport=$2 pem=${3:-} dir="$BENCH_TMP/haproxy"
	local tls_global="" bind="" proto=http
	if [[ -n "$pem" ]]; then
		tls_global="    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-curves X25519:P-256:P-384"
		bind=" ssl crt $pem alpn http/1.1"
		proto=https
	fi
	mkdir -p "$dir"
	cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
$tls_global
defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout http-request 30s
frontend fe
    bind 127.0.0.1:$port$bind
    default_backend origin
backend origin
    # HAProxy 2.6 has no "option forwarded" yet (2.7 does).
    http-request add-header Via "1.1 haproxy"
    http-request add-header Forwarded "for=%[src];host=\"%[req.hdr(host)]\";proto=$proto"
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Port %[dst_port]
    server o1 127.0.0.1:$oport
EOF
	start_bg haproxy haproxy -db -f "$dir/haproxy.cfg"
	wait_port "$port" "$STARTED_PID"
}

# write_weir_desired DIR LISTEN_PORT ORIGIN_PORT HOSTNAME: a one-route desired state.
# The listener allows WEIR_KEEPALIVE_REQUESTS requests per connection (default 1000000, as
# nginx_common's keepalive_requests, so no proxy reconnects wrk mid-run); set it empty for a
# Weir binary older than max_requests_per_connection, which has no such limit.
write_weir_desired() {
	local dir=$1 port=$2 oport=$3 host=$4
	local keepalive="${WEIR_KEEPALIVE_REQUESTS-1000000}"
	mkdir -p "$dir"
	cat >"$dir/weir.yaml" <<EOF
listeners:
  - name: web
    address: "127.0.0.1:$port"
    protocol: http
${keepalive:+    max_requests_per_connection: $keepalive}
clusters:
  - id: origin
    backends:
      - id: o1
        address: "127.0.0.1:$oport"
frontends:
  - listener: web
    hostname: $host
    path: /
    cluster: origin
EOF
}

# start_weir NAME PORT DESIRED_DIR HOST [SECONDS] [CONFIG]: `weir proxy` with one worker
# (and weir.toml CONFIG, if given), waiting until HOST is actually routed (not only until the
# port accepts).
start_weir() {
	local name=$1 port=$2 desired=$3 host=$4 timeout=${5:-60} config=${6:-}
	start_bg "$name" "$WEIR_BIN" proxy --workers 1 --desired "$desired" \
		--socket "$BENCH_SOCKS/$name.sock" ${config:+--config "$config"}
	wait_port "$port" "$STARTED_PID" "$timeout"
	wait_http "$port" "$host" "$STARTED_PID" "$timeout"
}

# --- measurement -----------------------------------------------------------------

# run_wrk PORT HOST DURATION LOGFILE: wrk -t1 -c64 (WRK_THREADS / WRK_CONNS override)
# against 127.0.0.1:PORT with the given Host header. Prints one line
# "rps p50_ms p99_ms requests errors non2xx" computed by bench/report.lua.
run_wrk() {
	local port=$1 host=$2 duration=$3 logfile=$4
	wrk -t"${WRK_THREADS:-1}" -c"${WRK_CONNS:-64}" -d"$duration" --latency \
		-H "Host: $host" -s "$BENCH_DIR/report.lua" \
		"http://127.0.0.1:$port/" >"$logfile" 2>&1 || die "wrk failed, see $logfile"
	local line
	line="$(grep '^WRKRESULT ' "$logfile" | tail -1)" || die "no WRKRESULT in $logfile"
	echo "${line#WRKRESULT }"
}

# median NUMBERS...: the median (mean of the two middle values for an even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR == 0) { print "NA"; exit }
		      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B [DECIMALS]: A / B, or NA when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {
		if (a == "NA" || b == "NA" || b + 0 == 0) { print "NA"; exit }
		printf "%.*f\n", d, a / b }'
}

# rss_kb PID...: the sum of VmRSS (kB) of the given processes.
rss_kb() {
	local total=0 pid kb
	for pid in "$@"; do
		kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
		[[ -n "$kb" ]] || die "cannot read VmRSS of pid $pid"
		total=$((total + kb))
	done
	echo "$total"
}

# descendants PID: PID and all its descendants (a proxy's serving processes).
descendants() {
	local pid=$1 child
	echo "$pid"
	for child in $(pgrep -P "$pid" || true); do
		descendants "$child"
	done
}

# cpu_ms PID...: user + system CPU time (ms) the given processes have used so far.
# Per-request CPU cost is far less sensitive to a busy machine than requests/s is,
# so the scripts report it next to the throughput.
cpu_ms() {
	local pid total=0 ticks hz
	hz="$(getconf CLK_TCK)"
	for pid in "$@"; do
		# Fields 14 and 15 (utime, stime) counted after the ")" closing the command name.
		ticks="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true)"
		[[ -n "$ticks" ]] || die "cannot read the CPU time of pid $pid"
		total=$((total + ticks))
	done
	echo $((total * 1000 / hz))
}

# --- inputs ----------------------------------------------------------------------

# gen_apps N DIR LISTEN BACKEND: a listener file (on LISTEN), then N apps, each a cluster
# with one backend (at BACKEND) and one route, in files of 1,000 apps, like a team splits
# a large repository. Unlike examples/many-apps/generate.sh (two backends per app), this matches issue 5's
# "a cluster with a frontend and a backend each": 3N+1 resources.
gen_apps() {
	python3 - "$1" "$2" "$3" "$4" <<'EOF'
import os, sys
n, out, listen, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
os.makedirs(os.path.join(out, "apps"), exist_ok=True)
with open(os.path.join(out, "listeners.yaml"), "w") as f:
    f.write(f'listeners:\n  - name: web\n    address: "{listen}"\n    protocol: http\n')
for start in range(0, n, 1000):
    end = min(n, start + 1000)
    with open(os.path.join(out, "apps", f"apps-{start // 1000:04d}.yaml"), "w") as f:
        f.write("clusters:\n")
        for i in range(start, end):
            f.write(f'  - id: app-{i}\n    backends:\n      - id: b1\n        address: "{backend}"\n')
        f.write("frontends:\n")
        for i in range(start, end):
            f.write(f"  - listener: web\n    hostname: app-{i}.example.com\n    path: /\n    cluster: app-{i}\n")
EOF
}
