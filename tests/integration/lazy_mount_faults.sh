#!/usr/bin/env bash
# TIMEOUT: 180
# `stargzd mount` against layers and operators that misbehave: a chunk that decompresses
# cleanly but fails its digest (every read gets an answer, never a wrong byte, and the
# process still exits on SIGINT); an external unmount.  (One layer mounted twice with a small
# cache bound is tests/unit/daemon/test_remote.c: two_mounts_of_one_layer_share_its_state;
# two processes cannot share a cache directory, see mount_cache_dir.sh.)
. "$(dirname "$0")/lib.sh"
HOSTILE=$STARGZD_TOP/build/tests/helpers/esgz_hostile

# big.bin's content, as the helper writes it: byte i = (i * 131 + (i >> 12)) & 0xff.
BIG_SHA=$(python3 -c '
import hashlib
n = 3 * 65536 + 777
print(hashlib.sha256(bytes(((i * 131 + (i >> 12)) & 0xff) for i in range(n))).hexdigest())')

# ---- 0. a tampered middle chunk: EIO, never a hang, never its bytes ----
TOC=$("$HOSTILE" tampered "$WORK/tampered.blob")
mkdir -p "$WORK/m0"
spawn "$STARGZD" mount --blob "$WORK/tampered.blob" --toc-digest "$TOC" --cache "$WORK/cache0" \
  --no-background "$WORK/m0"
M0=$SPAWNED
wait_for 10 mountpoint -q "$WORK/m0"
# Whole file, then the kernel's page-by-page retry of the failed readahead: every request
# must be answered (a lost reply leaves the reader in D state: timeout cannot kill it).
timeout -s KILL 10 cat "$WORK/m0/big.bin" >"$WORK/out0" 2>"$WORK/err0"
rc=$?
if [[ $rc -ne 137 ]] && grep -q "Input/output error" "$WORK/err0"; then
  pass "reading a file with a tampered chunk ends with EIO"
else
  fail "reading a file with a tampered chunk ends with EIO" "rc=$rc $(cat "$WORK/err0")"
fi
# Twice more, with small reads around the bad chunk: the first and last chunks are served,
# the middle never.
check "the chunk before the bad one reads" timeout -s KILL 10 dd if="$WORK/m0/big.bin" bs=4k count=16 of=/dev/null status=none
if timeout -s KILL 10 dd if="$WORK/m0/big.bin" bs=4k skip=16 count=1 of="$WORK/mid" status=none 2>/dev/null; then
  fail "the bad chunk itself gives EIO" "read $(stat -c %s "$WORK/mid") bytes"
else
  [[ $? -ne 137 ]] && pass "the bad chunk itself gives EIO" || fail "the bad chunk itself gives EIO" "hung"
fi
check "other files of the layer read" bash -c "timeout -s KILL 10 cat '$WORK/m0/small.txt' '$WORK/m0/other.bin' >/dev/null"
kill -INT "$M0"
if wait_exit "$M0" 5; then
  pass "stargzd mount exits on SIGINT after the failed reads"
else
  fail "stargzd mount exits on SIGINT after the failed reads" "still running after 5 s"
fi
check "no mount is left behind" bash -c "! mountpoint -q '$WORK/m0'"

# ---- 6. unmounted from outside: stargzd mount notices and exits ----
TOC=$("$HOSTILE" good "$WORK/good.blob")
for how in "umount" "fusermount3 -u"; do
  mkdir -p "$WORK/m6"
  spawn "$STARGZD" mount --blob "$WORK/good.blob" --toc-digest "$TOC" --cache "$WORK/cache6" \
    "$WORK/m6" 2>"$WORK/m6.log"
  M6=$SPAWNED
  wait_for 10 mountpoint -q "$WORK/m6"
  sum=$(sha256sum <"$WORK/m6/big.bin" | cut -d' ' -f1)
  [[ $sum == "$BIG_SHA" ]] && pass "[$how] the good layer reads right" || fail "[$how] the good layer reads right" "$sum"
  $how "$WORK/m6"
  if wait_exit "$M6" 2; then
    pass "[$how] stargzd mount exits within 2 s of an external unmount"
  else
    fail "[$how] stargzd mount exits within 2 s of an external unmount" "$(tail -3 "$WORK/m6.log")"
  fi
  check "[$how] ... and says why" grep -q "removed from outside" "$WORK/m6.log"
done

finish
