#!/usr/bin/env bash
# File save -> route live: how long after an editor saves a desired-state file does the new
# route answer through the proxy? Goal (issue 7): p99 <= debounce + 20 ms over 100 edits.
#
# It runs `weir up` on a scratch directory (one listener, one cluster served by a built-in demo
# origin), then, EDITS times, saves routes.yaml the way editors do (write a temporary file,
# rename it over the original) with a new hostname, and polls that hostname through the proxy
# every millisecond until it answers 200. Everything listens on 127.0.0.1, on ports from the OS;
# every wait is bounded.
#
# Environment: WEIR (binary; default target/release/weir, built if missing), EDITS (100),
# DEBOUNCE_MS (200), WORKERS (1).
# Last line: RESULT p50_ms=... p99_ms=... max_ms=... debounce_ms=... goal_ms=... edits=...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEIR="${WEIR:-$ROOT/target/release/weir}"
EDITS="${EDITS:-100}"
DEBOUNCE_MS="${DEBOUNCE_MS:-200}"
WORKERS="${WORKERS:-1}"

if [[ ! -x "$WEIR" ]]; then
	echo "building $WEIR" >&2
	(cd "$ROOT" && cargo build --release --bin weir >&2)
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/weir-watch-bench.XXXXXX")"
UP_PID=""
cleanup() {
	local status=$?
	if [[ -n "$UP_PID" ]] && kill -0 "$UP_PID" 2>/dev/null; then
		# SIGINT is weir up's clean stop: it stops the proxy it started.
		kill -INT "$UP_PID" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$UP_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$UP_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN_PORT="$(free_port)"
ORIGIN_PORT="$(free_port)"
DIR="$TMP/desired"
mkdir -p "$DIR"
cat >"$DIR/base.yaml" <<YAML
listeners:
  - name: web
    address: 127.0.0.1:$LISTEN_PORT
    protocol: http
clusters:
  - id: app
    backends:
      - id: blue
        address: 127.0.0.1:$ORIGIN_PORT
        demo: true
YAML
cat >"$DIR/routes.yaml" <<YAML
frontends:
  - listener: web
    hostname: edit-0.test
    path: /
    cluster: app
YAML

"$WEIR" up "$DIR" --socket "$TMP/weir.sock" --workers "$WORKERS" \
	--debounce "${DEBOUNCE_MS}ms" --drift-interval 0 >"$TMP/up.out" 2>"$TMP/up.err" &
UP_PID=$!

python3 - "$DIR" "$LISTEN_PORT" "$EDITS" "$DEBOUNCE_MS" "$UP_PID" <<'PY'
import os, socket, sys, time

directory, port, edits, debounce_ms, up_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def status(host):
    """The status code for GET / with this Host, or None if the proxy does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64)
            return int(head.split()[1]) if head.startswith(b"HTTP/1.") else None
    except (OSError, ValueError, IndexError):
        return None

def wait_for(host, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(host) == 200:
            return time.monotonic()
        try:
            os.kill(up_pid, 0)
        except ProcessLookupError:
            sys.exit("weir up exited; see its output")
        time.sleep(0.001)
    sys.exit(f"{host} never answered 200 within {timeout}s")

def save(i):
    """An editor's atomic save: write a temporary file, rename it over the original."""
    tmp = os.path.join(directory, ".routes.yaml.tmp")
    with open(tmp, "w") as f:
        f.write(f"frontends:\n  - listener: web\n    hostname: edit-{i}.test\n    path: /\n    cluster: app\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(directory, "routes.yaml"))

wait_for("edit-0.test", 60)
samples = []
for i in range(1, edits + 1):
    saved = time.monotonic()
    save(i)
    live = wait_for(f"edit-{i}.test", 10)
    samples.append((live - saved) * 1000)

samples.sort()
def pct(p):
    return samples[min(len(samples) - 1, max(0, int(round(p / 100 * len(samples))) - 1))]
goal = debounce_ms + 20
print(f"edits={len(samples)} min={samples[0]:.1f}ms p50={pct(50):.1f}ms p90={pct(90):.1f}ms p99={pct(99):.1f}ms max={samples[-1]:.1f}ms goal<={goal}ms", file=sys.stderr)
print(f"RESULT p50_ms={pct(50):.1f} p99_ms={pct(99):.1f} max_ms={samples[-1]:.1f} debounce_ms={debounce_ms} goal_ms={goal} edits={len(samples)} within_goal={'yes' if pct(99) <= goal else 'no'}")
PY
