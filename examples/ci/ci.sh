#!/usr/bin/env bash
# The CI job for a repository of desired-state files, as a plain shell script any CI can run:
#
#   ci.sh plan DIR    # on a pull request: validate, show the plan; exit 0 with or without changes
#   ci.sh apply DIR   # on merge: validate, apply without a prompt; non-zero if it did not apply
#
# With $WEIR_FROM_STATE set (a saved state, or the desired-state files of the branch the pull
# request targets), `plan` compares with that instead of the live proxy, and needs no socket:
# pull requests run code nobody reviewed yet, so their jobs should not reach the proxy (see
# README.md). Otherwise, and for `apply`, the proxy's command socket comes from $WEIR_SOCKET
# (or weir's per-user default), so the job must run where it can reach it: on the proxy's host,
# or a runner with the socket mounted. $WEIR names the weir binary (default: weir on PATH).
#
# Exit codes follow weir's contract: plan --detailed-exitcode answers 0 (no changes),
# 2 (changes) or 1 (error); apply answers 0, 1 (error), 3 (stale), 4 (drain deadline reached)
# or 5 (a step failed and the apply was rolled back).
set -euo pipefail

WEIR="${WEIR:-weir}"
if [[ $# -ne 2 ]] || [[ "$1" != plan && "$1" != apply ]]; then
	echo "usage: $0 plan|apply DIR" >&2
	exit 1
fi
mode="$1"
dir="$2"

summary() {
	# GitHub Actions shows this file on the run's page; elsewhere it is simply not set.
	if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
		printf '%s\n' "$@" >>"$GITHUB_STEP_SUMMARY"
	fi
}

"$WEIR" validate "$dir"

case "$mode" in
plan)
	plan_file="$(mktemp)"
	trap 'rm -f "$plan_file"' EXIT
	status=0
	from_state=()
	if [[ -n "${WEIR_FROM_STATE:-}" ]]; then
		from_state=(--from-state "$WEIR_FROM_STATE")
	fi
	"$WEIR" plan "$dir" --detailed-exitcode ${from_state[@]+"${from_state[@]}"} >"$plan_file" || status=$?
	cat "$plan_file"
	case "$status" in
	0)
		echo "no changes: merging this changes nothing on the proxy"
		summary "### weir plan: no changes"
		;;
	2)
		echo "changes present: they are applied when this is merged"
		summary "### weir plan" '```' "$(cat "$plan_file")" '```'
		;;
	*)
		echo "weir plan failed (exit $status)" >&2
		exit "$status"
		;;
	esac
	;;
apply)
	status=0
	"$WEIR" apply "$dir" --auto-approve || status=$?
	case "$status" in
	0) summary "### weir apply: applied" ;;
	3) echo "the proxy's state moved while applying; re-run the job" >&2 ;;
	4) echo "a backend drain outlived its deadline; the backend is out of rotation, re-run to finish" >&2 ;;
	5) echo "a step failed and the apply was rolled back: the proxy is as it was" >&2 ;;
	*) echo "weir apply failed (exit $status)" >&2 ;;
	esac
	exit "$status"
	;;
esac
