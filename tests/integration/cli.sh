#!/usr/bin/env bash
# TIMEOUT: 120
# The process shell: flags, root lock, socket handling, signals, daemon mode, config file.
. "$(dirname "$0")/lib.sh"

# Runs stargzd with args; captures exit code, stdout and stderr.
run() {
  "$STARGZD" "$@" >"$WORK/out" 2>"$WORK/err"
  RC=$?
}
one_line_err() { [[ $(wc -l <"$WORK/err") -eq 1 ]]; }

run --help
check "help exits 0 and shows usage" bash -c "[[ $RC -eq 0 ]] && grep -q -- '--foreground' '$WORK/out' && grep -q proxy_plugins '$WORK/out'"
run --version
check "version" bash -c "[[ $RC -eq 0 ]] && grep -qE '^stargzd [0-9]+\.[0-9]+\.[0-9]+$' '$WORK/out'"

run --no-such-flag
check "bad flag: exit 2, one line" bash -c "[[ $RC -eq 2 ]]" && one_line_err && grep -q "unknown option --no-such-flag" "$WORK/err" || fail "bad flag message" "$(cat "$WORK/err")"
run --root
check "missing value: exit 2" bash -c "[[ $RC -eq 2 ]] && grep -q 'needs a value' '$WORK/err'"
run -f stray
check "stray argument: exit 2" bash -c "[[ $RC -eq 2 ]] && grep -q 'unexpected argument' '$WORK/err'"
run -f --log-level loud
check "bad log level: exit 2" bash -c "[[ $RC -eq 2 ]] && grep -q 'unknown log level' '$WORK/err'"

# Unwritable roots.  We are root, so permissions alone do not stop us: use a read-only
# filesystem, a file in the way, and an unprivileged user.
mkdir -p "$WORK/rofs"
mount -t tmpfs -o ro,size=1m tmpfs "$WORK/rofs"
run -f --root "$WORK/rofs/root" --address "$WORK/a.sock"
check "read-only root: exit 1, one line" bash -c "[[ $RC -eq 1 ]]" && one_line_err && grep -q "Read-only file system" "$WORK/err" || fail "read-only root message" "$(cat "$WORK/err")"
touch "$WORK/afile"
run -f --root "$WORK/afile" --address "$WORK/a.sock"
check "root is a file: exit 1" bash -c "[[ $RC -eq 1 ]] && grep -q 'Not a directory' '$WORK/err'"
mkdir -p "$WORK/rootonly" && chmod 0755 "$WORK/rootonly" && chmod 0755 "$WORK"
if command -v setpriv >/dev/null; then
  setpriv --reuid=65534 --regid=65534 --clear-groups "$STARGZD" -f --root "$WORK/rootonly/r" --address "$WORK/nobody.sock" >"$WORK/out" 2>"$WORK/err"
  RC=$?
  check "root not writable by user: exit 1" bash -c "[[ $RC -eq 1 ]] && grep -q 'Permission denied' '$WORK/err'"
else
  skip "root not writable by user" "setpriv missing"
fi
[[ ! -e "$WORK/a.sock" ]] && pass "no socket left by failed starts" || fail "no socket left by failed starts"

# A daemon in the foreground.
spawn "$STARGZD" --foreground --root "$WORK/root" --address "$WORK/run/s.sock" --log-level debug 2>"$WORK/d1.log"
D1=$SPAWNED
if wait_for 10 test -S "$WORK/run/s.sock"; then pass "foreground daemon creates its socket"; else fail "foreground daemon creates its socket" "$(cat "$WORK/d1.log")"; fi
check "socket mode 0660" bash -c "[[ \$(stat -c %a '$WORK/run/s.sock') == 660 ]]"
check "lock file names the pid" bash -c "[[ \$(cat '$WORK/root/stargzd.lock') == $D1 ]]"
# The socket exists before the daemon logs that it serves: wait for the line.
check "log lines have timestamp and level" wait_for 5 grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z info  stargzd .* serving on' "$WORK/d1.log"

run -f --root "$WORK/root" --address "$WORK/other.sock"
check "second instance on the same root: exit 1, one line" bash -c "[[ $RC -eq 1 ]]" && one_line_err && grep -q "already running on root $WORK/root" "$WORK/err" && grep -q "pid $D1" "$WORK/err" || fail "second instance message" "$(cat "$WORK/err")"
check "second instance left the first one's socket alone" test -S "$WORK/run/s.sock"
run -f --root "$WORK/root2" --address "$WORK/run/s.sock"
check "socket in use by a live daemon: exit 1" bash -c "[[ $RC -eq 1 ]] && grep -q 'in use by a live daemon' '$WORK/err'"

kill -INT "$D1"
if wait_exit "$D1" 10 && [[ $EXIT_CODE -eq 0 ]]; then pass "SIGINT: exit 0"; else fail "SIGINT: exit 0" "exit $EXIT_CODE"; fi
check "SIGINT: socket removed" test ! -e "$WORK/run/s.sock"
check "SIGINT: logged a clean stop" grep -q "stopped" "$WORK/d1.log"

# A stale socket (its owner died without removing it) is replaced.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$WORK/run/s.sock"
check "stale socket file exists" test -S "$WORK/run/s.sock"
spawn "$STARGZD" -f --root "$WORK/root" --address "$WORK/run/s.sock" 2>"$WORK/d2.log"
D2=$SPAWNED
if wait_for 10 grep -q "serving on" "$WORK/d2.log"; then pass "stale socket replaced"; else fail "stale socket replaced" "$(cat "$WORK/d2.log")"; fi
kill -TERM "$D2"
if wait_exit "$D2" 10 && [[ $EXIT_CODE -eq 0 ]]; then pass "SIGTERM: exit 0"; else fail "SIGTERM: exit 0" "exit $EXIT_CODE"; fi
check "SIGTERM: socket removed" test ! -e "$WORK/run/s.sock"

# A regular file where the socket should go is not ours to delete.
echo keep >"$WORK/notasock"
run -f --root "$WORK/root" --address "$WORK/notasock"
check "non-socket file at address: exit 1, file kept" bash -c "[[ $RC -eq 1 ]] && grep -q 'is not a socket' '$WORK/err' && [[ \$(cat '$WORK/notasock') == keep ]]"

# Daemon mode: the parent returns once the child serves; the child logs under the root.
"$STARGZD" --root "$WORK/droot" --address "$WORK/d.sock" >"$WORK/out" 2>"$WORK/err"
RC=$?
check "daemon mode: parent exits 0 when serving" bash -c "[[ $RC -eq 0 ]] && test -S '$WORK/d.sock'"
DPID=$(cat "$WORK/droot/stargzd.lock" 2>/dev/null)
check "daemon mode: child alive and detached" bash -c "kill -0 $DPID && [[ \$(ps -o sid= -p $DPID | tr -d ' ') == $DPID ]]"
check "daemon mode: logs to ROOT/stargzd.log" grep -q "serving on $WORK/d.sock" "$WORK/droot/stargzd.log"
"$STARGZD" --root "$WORK/droot" --address "$WORK/d2.sock" >"$WORK/out" 2>"$WORK/err"
RC=$?
check "daemon mode: a second daemon fails in the parent" bash -c "[[ $RC -eq 1 ]] && grep -q 'already running' '$WORK/err'"
kill -TERM "$DPID"
if wait_for 10 bash -c "! kill -0 $DPID"; then pass "daemon mode: SIGTERM stops it"; else fail "daemon mode: SIGTERM stops it"; fi
check "daemon mode: socket removed" test ! -e "$WORK/d.sock"

# Config file: values apply, flags override, mistakes are named by file and line.
cat >"$WORK/cfg.toml" <<CFG
# test config
root = "$WORK/croot"
address = "$WORK/c.sock"   # trailing comment
log_level = "debug"
CFG
spawn "$STARGZD" -f --config "$WORK/cfg.toml" 2>"$WORK/d3.log"
D3=$SPAWNED
check "config file: root and address used" wait_for 10 test -S "$WORK/c.sock"
check "config file: root created" test -f "$WORK/croot/stargzd.lock"
kill -TERM "$D3"; wait_exit "$D3" 10
spawn "$STARGZD" -f --config "$WORK/cfg.toml" --address "$WORK/flag.sock" 2>"$WORK/d4.log"
D4=$SPAWNED
check "flags override the config file" wait_for 10 test -S "$WORK/flag.sock"
kill -TERM "$D4"; wait_exit "$D4" 10
printf 'root = "/x"\nbogus = "y"\n' >"$WORK/bad.toml"
run -f --config "$WORK/bad.toml"
check "bad config key: exit 2 with file:line" bash -c "[[ $RC -eq 2 ]] && grep -q 'bad.toml:2: unknown key \"bogus\"' '$WORK/err'"
printf 'root = /unquoted\n' >"$WORK/bad2.toml"
run -f --config "$WORK/bad2.toml"
check "unquoted config value: exit 2" bash -c "[[ $RC -eq 2 ]] && grep -q 'bad2.toml:1:' '$WORK/err'"
run -f --config "$WORK/missing.toml"
check "missing explicit config: exit 2" bash -c "[[ $RC -eq 2 ]] && grep -q 'cannot open config file' '$WORK/err'"

finish
