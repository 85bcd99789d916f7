#!/usr/bin/env bash
# TIMEOUT: 120
# Where `stargzd mount` keeps its chunks, and who else may use them (issue 11, defects 7 and
# the last point of 1):
#  - without --cache it writes nothing into the working directory: a private directory
#    under $TMPDIR, removed at exit (SIGINT) and when the mount fails;
#  - a cache directory is used by one process at a time: `stargzd mount --cache ROOT/cache`
#    beside a daemon on ROOT, or beside another mount, is refused with the holder's pid and
#    changes nothing there.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

if [[ ! -e /dev/fuse ]] || ! command -v fusermount3 >/dev/null; then
  skip "mount cache directory" "no FUSE here"
  finish
fi

HOSTILE=$STARGZD_TOP/build/tests/helpers/esgz_hostile
TOC=$("$HOSTILE" good "$WORK/l.blob") || { fail "esgz_hostile good"; finish; }

mounted() { grep -q " $1 fuse.stargz" /proc/mounts; }

# ---- no --cache: a private directory, nothing in the working directory ----
mkdir -p "$WORK/cwd" "$WORK/tmp" "$WORK/mnt"
(cd "$WORK/cwd" && exec env TMPDIR="$WORK/tmp" "$STARGZD" mount --blob "$WORK/l.blob" \
  --toc-digest "$TOC" "$WORK/mnt") >>"$WORK/mount.log" 2>&1 &
MPID=$!
_pids+=("$MPID")
if wait_for 20 mounted "$WORK/mnt"; then
  pass "mounted without --cache"
  check "a file reads back through the mount" cmp -s <(head -c 6 "$WORK/mnt/small.txt") <(echo small)
  cat "$WORK/mnt/big.bin" >/dev/null
  PRIV=$(ls -d "$WORK"/tmp/stargzd-mount-* 2>/dev/null)
  check "the chunks go to one private directory under \$TMPDIR" test -n "$PRIV" -a "$(echo "$PRIV" | wc -l)" = 1
  check "it is private (mode 0700)" test "$(stat -c %a "$PRIV" 2>/dev/null)" = 700
  check "and holds the layer's cache" bash -c "ls '$PRIV' | grep -qE '^[0-9a-f]{64}$'"
  kill -INT "$MPID"
  wait_exit "$MPID" 20
  check "SIGINT: exit code 0" test "$EXIT_CODE" = 0
  check "SIGINT: the private directory is gone" test -z "$(ls -A "$WORK/tmp")"
else
  fail "mounted without --cache" "$(tail -5 "$WORK/mount.log")"
  kill -KILL "$MPID" 2>/dev/null
fi
check "nothing was written into the working directory" test -z "$(ls -A "$WORK/cwd")"

# A mount that fails (wrong TOC digest) removes its private directory too.
BAD=sha256:$(printf '0%.0s' {1..64})
(cd "$WORK/cwd" && TMPDIR="$WORK/tmp" timeout 20 "$STARGZD" mount --blob "$WORK/l.blob" \
  --toc-digest "$BAD" "$WORK/mnt") >>"$WORK/mount.log" 2>&1
check "a failed mount exits non-zero" test $? -ne 0
check "a failed mount leaves no private directory" test -z "$(ls -A "$WORK/tmp")"
check "nor anything in the working directory" test -z "$(ls -A "$WORK/cwd")"
mounted "$WORK/mnt" && fusermount3 -u "$WORK/mnt"

# ---- beside a daemon on the same root ----
listing() { find "$1" -printf '%p %s %T@ %m\n' | sort; }
start_stargzd
if wait_for 10 grep -q "serving on" "$WORK/stargzd.log"; then
  check "the daemon holds its cache directory (cache/.lock)" test -f "$SG_ROOT/cache/.lock"
  mkdir -p "$SG_ROOT/cache/$(printf 'a%.0s' {1..64})"   # a layer directory it must not touch
  echo data >"$SG_ROOT/cache/$(printf 'a%.0s' {1..64})/1"
  listing "$SG_ROOT/cache" >"$WORK/before"
  mkdir -p "$WORK/mnt2"
  timeout 20 "$STARGZD" mount --blob "$WORK/l.blob" --toc-digest "$TOC" --cache "$SG_ROOT/cache" \
    --cache-max 4096 "$WORK/mnt2" >"$WORK/refused.log" 2>&1
  rc=$?
  check "a mount on the daemon's cache is refused (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
  check "with a message naming the daemon's pid" \
    grep -q "cache directory $SG_ROOT/cache is in use by another stargzd (pid $SG_PID)" "$WORK/refused.log"
  check "it did not mount" bash -c "! grep -q ' $WORK/mnt2 fuse.stargz' /proc/mounts"
  listing "$SG_ROOT/cache" >"$WORK/after"
  check "nothing under the daemon's cache changed" cmp -s "$WORK/before" "$WORK/after"
  stop_stargzd
  check "the daemon still stops cleanly (exit 0)" test "$EXIT_CODE" = 0
else
  fail "the daemon starts" "$(tail -5 "$WORK/stargzd.log")"
fi

# ---- two mounts on one --cache ----
mkdir -p "$WORK/mnt3" "$WORK/mnt4"
spawn "$STARGZD" mount --blob "$WORK/l.blob" --toc-digest "$TOC" --cache "$WORK/shared" "$WORK/mnt3" \
  >>"$WORK/mount.log" 2>&1
APID=$SPAWNED
if wait_for 20 mounted "$WORK/mnt3"; then
  timeout 20 "$STARGZD" mount --blob "$WORK/l.blob" --toc-digest "$TOC" --cache "$WORK/shared" \
    "$WORK/mnt4" >"$WORK/refused2.log" 2>&1
  rc=$?
  check "a second mount on the same --cache is refused (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
  check "naming the first mount's pid" \
    grep -q "cache directory $WORK/shared is in use by another stargzd (pid $APID)" "$WORK/refused2.log"
  check "the first mount still serves" cmp -s <(head -c 6 "$WORK/mnt3/small.txt") <(echo small)
  kill -INT "$APID"
  wait_exit "$APID" 20
  check "the first mount exits 0" test "$EXIT_CODE" = 0
  check "its --cache directory is kept" test -f "$WORK/shared/.lock"
else
  fail "first mount on --cache $WORK/shared" "$(tail -5 "$WORK/mount.log")"
fi
mounted "$WORK/mnt4" && fusermount3 -u "$WORK/mnt4"

finish
