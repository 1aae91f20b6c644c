# JUnit reports from bash scripts, one <testcase> per check (written by scripts/lib/report.py,
# read by scripts/lib/summary.py): sourced by scripts/test, check-deploy and e2e-nginx.
#
#   report_start NAME            # target/reports/NAME.xml, empty; the checks below go there
#   check_begin "what"           # a check starts ...
#   check_pass ["detail"]        # ... and passed: prints "ok: what[: detail]"
#   check_fail "why"             # ... and failed, without stopping the script: prints FAIL
#   report_stopped STATUS        # from the EXIT trap: a check begun and never passed failed,
#                                # with the command that stopped the script as its message
#
# A check that fails usually stops the script (set -e). The ERR trap installed by report_start
# keeps the command that failed and its line, and report_stopped records them, so the report
# says which check failed and how even though the script never reached check_pass.

REPORT_FILE=""
REPORT_CHECK=""
REPORT_CHECK_STARTED=0
REPORT_FAILED_COMMAND=""
REPORT_FAILURES=0   # checks failed with check_fail: the script decides when to stop on them
REPORT_PY="$(dirname "${BASH_SOURCE[0]}")/report.py"

report_start() {
  mkdir -p target/reports
  REPORT_FILE="target/reports/$1.xml"
  REPORT_CHECK=""
  REPORT_FAILURES=0
  python3 "$REPORT_PY" start "$REPORT_FILE" "$1"
  # errtrace: the trap also sees a command that fails inside a function
  set -E
  trap 'REPORT_FAILED_COMMAND="${BASH_SOURCE[0]}:$LINENO: $BASH_COMMAND (exit status $?)"' ERR
}

_report_seconds() {
  echo "$(( $(date +%s%N) / 1000000 - REPORT_CHECK_STARTED ))" | awk '{ printf "%.3f", $1 / 1000 }'
}

check_begin() {
  REPORT_CHECK=$1
  REPORT_CHECK_STARTED=$(( $(date +%s%N) / 1000000 ))
  REPORT_FAILED_COMMAND=""
}

check_pass() {
  [ -n "$REPORT_CHECK" ] || { echo "check_pass without check_begin" >&2; return 1; }
  python3 "$REPORT_PY" case "$REPORT_FILE" "$REPORT_CHECK" "$(_report_seconds)"
  echo "ok: $REPORT_CHECK${1:+: $1}"
  REPORT_CHECK=""
}

check_fail() {
  [ -n "$REPORT_CHECK" ] || { echo "check_fail without check_begin" >&2; return 1; }
  python3 "$REPORT_PY" case "$REPORT_FILE" "$REPORT_CHECK" "$(_report_seconds)" "$1"
  echo "FAIL: $REPORT_CHECK: $1"
  REPORT_CHECK=""
  REPORT_FAILURES=$((REPORT_FAILURES + 1))
}

report_stopped() {
  local status=$1
  [ -n "$REPORT_FILE" ] && [ -n "$REPORT_CHECK" ] && [ -f "$REPORT_FILE" ] || return 0
  python3 "$REPORT_PY" case "$REPORT_FILE" "$REPORT_CHECK" "$(_report_seconds)" \
    "stopped the script: ${REPORT_FAILED_COMMAND:-exit status $status}; its output is above in the run's log"
  echo "FAIL: $REPORT_CHECK (${REPORT_FAILED_COMMAND:-exit status $status})" >&2
  REPORT_CHECK=""
}
