#!/usr/bin/env bash
# TIMEOUT: 120
# The README's run command: `make run` starts stargzd in the foreground with the built-in
# defaults (root /var/lib/stargzd, socket /run/stargzd/stargzd.sock); Ctrl-C stops it with
# exit code 0 and removes the socket.
. "$(dirname "$0")/lib.sh"
SOCK=/run/stargzd/stargzd.sock

if [[ -S $SOCK ]] && python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])" "$SOCK" 2>/dev/null; then
  skip "defaults" "a stargzd is already serving on $SOCK"
  finish
fi

# The binary with no flags at all.
spawn "$STARGZD" --foreground 2>"$WORK/bin.log"
PID=$SPAWNED
check "no flags: serves on the default socket" wait_for 10 test -S "$SOCK"
check "no flags: default root holds the lock" bash -c "[[ \$(cat /var/lib/stargzd/stargzd.lock) == $PID ]]"
kill -INT "$PID"
if wait_exit "$PID" 10 && [[ $EXIT_CODE -eq 0 ]]; then pass "Ctrl-C (SIGINT): exit 0"; else fail "Ctrl-C (SIGINT): exit 0" "exit $EXIT_CODE"; fi
check "Ctrl-C: socket removed" test ! -e "$SOCK"

# `make run`, interrupted the way a terminal does it: SIGINT to the whole process group.
setsid make -s -C "$STARGZD_TOP" run >"$WORK/make.log" 2>&1 &
MPID=$!
_pids+=("$MPID")
check "make run: serves on the default socket" wait_for 60 test -S "$SOCK"
DPID=$(cat /var/lib/stargzd/stargzd.lock 2>/dev/null)
check "make run: runs stargzd --foreground" bash -c "tr '\0' ' ' </proc/$DPID/cmdline | grep -q 'stargzd --foreground'"
kill -INT -- "-$MPID"
wait_exit "$MPID" 20
check "make run: Ctrl-C stops the daemon" bash -c "! kill -0 $DPID 2>/dev/null"
check "make run: clean stop logged" grep -q "info  stopped" "$WORK/make.log"
check "make run: socket removed" test ! -e "$SOCK"
finish
