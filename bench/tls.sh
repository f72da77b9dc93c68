# shellcheck shell=bash
# TLS helpers shared by https.sh and idle.sh (`TLS=1`), sourced after lib.sh: one P-256
# certificate for $HOST made with openssl in the scratch directory, and Weir, nginx and
# HAProxy terminating TLS with it in front of lib.sh's origin, with lib.sh's settings.
#
# The caller sets HOST (a name resolving to 127.0.0.1: wrk sends its URL's host as SNI)
# before calling make_cert.

command -v openssl >/dev/null || die "openssl is needed (the benchmark certificate)"

# --- the certificate ---------------------------------------------------------------

# make_cert (after bench_init): one self-signed P-256 certificate for HOST, used by all three: the handshake's signature
# (ECDSA P-256) is a large part of its cost, so it must be the same for each.
CERT_DIR=""
make_cert() {
	CERT_DIR="$BENCH_TMP/cert"
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
