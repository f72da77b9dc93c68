#!/usr/bin/env bash
# Does a huge body cost memory? One 1 GiB download and one 1 GiB upload through Weir (one
# worker), with the worker's RSS sampled every 100 ms during each transfer. A proxy that
# streams bodies keeps RSS flat; one that buffers grows by the body size. Issue 3's goal:
# "a 1 GB upload and a 1 GB download through the proxy with RSS staying flat".
#
# Environment:
#   SIZE=1073741824   bytes per transfer
#   WEIR_BIN=path     use this weir binary instead of building target/release/weir
#
# Ends with one line:
#   RESULT size_mib=... download_ok=... upload_ok=... rss_before_kb=... rss_max_download_kb=...
#          rss_max_upload_kb=... growth_kb=... download_mib_s=... upload_mib_s=...
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE="${SIZE:-1073741824}"

bench_init
command -v curl >/dev/null || die "curl is needed"
build_weir

OPORT="$(free_port)"
start_bg origin python3 "$BENCH_DIR/bigbody_origin.py" "$OPORT" "$SIZE"
wait_port "$OPORT" "$STARTED_PID"

PORT="$(free_port)"
write_weir_desired "$BENCH_TMP/desired" "$PORT" "$OPORT" big.local
start_bg weir "$WEIR_BIN" proxy --workers 1 --desired "$BENCH_TMP/desired" \
	--socket "$BENCH_SOCKS/weir.sock"
WEIR_PID="$STARTED_PID"
wait_port "$PORT" "$WEIR_PID"
for _ in $(seq 1 100); do
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Host: big.local' \
		-X POST --data x "http://127.0.0.1:$PORT/" || true)"
	[[ "$code" == 200 ]] && break
	sleep 0.1
done
[[ "$code" == 200 ]] || die "weir did not route big.local"

# The serving processes: the main process and its worker.
mapfile -t PROCS < <(descendants "$WEIR_PID")

# sample_max PID_OF_TRANSFER: prints the largest summed RSS seen while the transfer runs.
sample_max() {
	local transfer=$1 max=0 now
	while kill -0 "$transfer" 2>/dev/null; do
		now="$(rss_kb "${PROCS[@]}")"
		((now > max)) && max=$now
		sleep 0.1
	done
	echo "$max"
}

RSS_BEFORE="$(rss_kb "${PROCS[@]}")"
log "rss before: ${RSS_BEFORE} kB over ${#PROCS[@]} processes"

log "download of $SIZE bytes"
start=$(date +%s.%N)
curl -s -o /dev/null -w '%{size_download}' --max-time 600 -H 'Host: big.local' \
	"http://127.0.0.1:$PORT/big" >"$BENCH_TMP/download.out" &
DL=$!
RSS_DL="$(sample_max "$DL")"
wait "$DL" || die "download failed"
dl_secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
DL_BYTES="$(cat "$BENCH_TMP/download.out")"

log "upload of $SIZE bytes"
start=$(date +%s.%N)
head -c "$SIZE" /dev/zero | curl -s --max-time 600 -H 'Host: big.local' \
	-H "Content-Length: $SIZE" -H 'Expect:' -H 'Transfer-Encoding:' -X POST -T - \
	"http://127.0.0.1:$PORT/up" >"$BENCH_TMP/upload.out" &
UL=$!
RSS_UL="$(sample_max "$UL")"
wait "$UL" || die "upload failed"
ul_secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
UL_BYTES="$(cat "$BENCH_TMP/upload.out")"

max=$RSS_DL
((RSS_UL > max)) && max=$RSS_UL
GROWTH=$((max - RSS_BEFORE))
mib=$((SIZE / 1048576))
echo "download: $DL_BYTES bytes in ${dl_secs}s, max RSS $RSS_DL kB"
echo "upload:   $UL_BYTES bytes received by the origin in ${ul_secs}s, max RSS $RSS_UL kB"
echo "RESULT size_mib=$mib download_ok=$([[ "$DL_BYTES" == "$SIZE" ]] && echo yes || echo no)" \
	"upload_ok=$([[ "$UL_BYTES" == "$SIZE" ]] && echo yes || echo no)" \
	"rss_before_kb=$RSS_BEFORE rss_max_download_kb=$RSS_DL rss_max_upload_kb=$RSS_UL" \
	"growth_kb=$GROWTH download_mib_s=$(awk -v m="$mib" -v s="$dl_secs" 'BEGIN { printf "%.0f", m / s }')" \
	"upload_mib_s=$(awk -v m="$mib" -v s="$ul_secs" 'BEGIN { printf "%.0f", m / s }')"
