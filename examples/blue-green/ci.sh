#!/usr/bin/env bash
# The blue/green switch as a CI job runs it: edit the route, review the plan, apply it.
#
#   examples/blue-green/ci.sh [green|blue] [DIR]
#
# 1. edit: every frontend routed to shop-<other colour> is pointed at shop-<colour> (default:
#    green). In a real pipeline this is the commit under review; here it edits DIR (default:
#    this example) in place, so run it again with the other colour to switch back.
# 2. plan: `weir plan --detailed-exitcode` shows the make-before-break order (routes to the
#    new colour added before the old ones are removed) and exits 2 because there are changes.
# 3. apply: `weir apply --auto-approve` applies it step by step, rolling back on a failure.
#
# Needs a running proxy: e.g. `weir up examples/blue-green` in another terminal (its watch
# would apply the edit by itself too; start it with --debounce 1m to see this script do it),
# or `weir proxy` with WEIR_SOCKET pointing at its socket. $WEIR names the weir binary.
set -euo pipefail

WEIR="${WEIR:-weir}"
to="${1:-green}"
dir="${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
case "$to" in
green) from=blue ;;
blue) from=green ;;
*)
	echo "usage: $0 [green|blue] [DIR]" >&2
	exit 1
	;;
esac

echo "== edit: route shop-$from -> shop-$to in $dir"
edited=0
while IFS= read -r file; do
	sed -i -E "s/^([[:space:]]*-?[[:space:]]*cluster:[[:space:]]*)shop-$from[[:space:]]*$/\1shop-$to/" "$file"
	echo "   edited $file"
	edited=1
done < <(grep -rlE "^[[:space:]]*-?[[:space:]]*cluster:[[:space:]]*shop-$from[[:space:]]*$" "$dir" \
	--include='*.yaml' --include='*.yml' || true)
if [[ "$edited" == 0 ]]; then
	echo "   no route points at shop-$from: nothing to switch"
fi

echo "== plan"
status=0
"$WEIR" plan "$dir" --detailed-exitcode || status=$?
case "$status" in
0)
	echo "no changes: the proxy already routes to shop-$to"
	exit 0
	;;
2) ;;
*)
	echo "weir plan failed (exit $status)" >&2
	exit "$status"
	;;
esac

echo "== apply"
"$WEIR" apply "$dir" --auto-approve
echo "== done: shop now routes to shop-$to"
