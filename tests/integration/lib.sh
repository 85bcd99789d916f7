# Shared helpers for integration tests (bash).  Source it first thing:
#   . "$(dirname "$0")/lib.sh"
# Gives: $WORK (a scratch dir removed at exit), $STARGZD (the binary), check NAME CMD...,
# pass/fail NAME [why], spawn (background process killed at exit), wait_for CMD, and
# `finish`, which prints "N passed, N failed" and sets the exit code.
set -uo pipefail
STARGZD_TOP=${STARGZD_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
STARGZD=${STARGZD_BIN:-$STARGZD_TOP/build/stargzd}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stargzd-it.XXXXXX")
_pass=0 _fail=0 _skip=0
_pids=()

_cleanup() {
  local p
  exec 2>/dev/null   # no "Killed" notices for the daemons we stop here
  for p in "${_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  # Children of spawned daemons (containerd shims, ...) carry $WORK in their command line.
  pkill -KILL -f -- "$WORK/" 2>/dev/null
  wait 2>/dev/null
  # Anything a test mounted under $WORK goes before the directory does.
  grep -o " $WORK[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$WORK"
}
trap _cleanup EXIT

pass() { _pass=$((_pass + 1)); echo "ok   $1"; }
fail() { _fail=$((_fail + 1)); echo "FAIL $1${2:+: $2}"; }
skip() { _skip=$((_skip + 1)); echo "skip $1${2:+: $2}"; }

# check NAME CMD...: passes when CMD succeeds.
check() {
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi
}

# spawn CMD...: runs CMD in the background; its pid is in $SPAWNED and it is killed at exit.
spawn() {
  "$@" &
  SPAWNED=$!
  _pids+=("$SPAWNED")
}

# wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds; fails after SECONDS.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" 2>/dev/null; do
    [[ $SECONDS -ge $end ]] && return 1
    sleep 0.05
  done
}

# wait_exit PID SECONDS: waits for a spawned process and puts its exit code in $EXIT_CODE;
# returns 1 (and kills it) if it has not exited in time.
wait_exit() {
  local pid=$1 secs=$2 end=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    if [[ $SECONDS -ge $end ]]; then kill -KILL "$pid"; wait "$pid" 2>/dev/null; EXIT_CODE=137; return 1; fi
    sleep 0.05
  done
  { wait "$pid"; } 2>/dev/null
  EXIT_CODE=$?
  return 0
}

finish() {
  if [[ $_skip -ne 0 ]]; then
    echo "$_pass passed, $_fail failed, $_skip skipped"
  else
    echo "$_pass passed, $_fail failed"
  fi
  [[ $_fail -eq 0 ]]
  exit $?
}
