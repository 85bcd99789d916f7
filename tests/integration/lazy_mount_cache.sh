#!/usr/bin/env bash
# TIMEOUT: 180
# The disk cache bound with `stargzd mount --cache-max`: a 24 MB layer read whole through a
# cache bounded to 6 MiB.  The cache directory's disk usage (du -s -B1: allocated bytes;
# `du -sb` counts apparent sizes, which punched holes do not change) stays under the bound
# plus a small slack, every file reads back right, background fetch does not churn the
# small cache, and a remount reuses what is left and refetches what was evicted.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

BOUND=$((6 * 1024 * 1024))
# The directory and the bitmap are counted by the daemon too; what it cannot see is a
# partially punched block at a chunk boundary and the filesystem's own rounding.
SLACK=$((256 * 1024))

S=$WORK/src
mkdir -p "$S/d"
for i in 0 1 2 3 4 5; do head -c 4000000 /dev/urandom >"$S/d/f$i.bin"; done
echo small >"$S/d/small.txt"
tar -C "$S" -cf "$WORK/layer.tar" .
check "stargzify (1 MiB chunks)" bash -c "'$STARGZIFY' --no-progress --json --chunk-size 1M '$WORK/layer.tar' '$WORK/l.blob' >'$WORK/l.json'"
TOC=$($PYTHON -c "import json,sys; print(json.load(open(sys.argv[1]))['tocDigest'])" "$WORK/l.json")

mount_blob() {   # cache mountpoint [extra args] -> $MPID
  mkdir -p "$2"
  spawn "$STARGZD" mount --blob "$WORK/l.blob" --toc-digest "$TOC" --cache "$1" \
    --cache-max "$BOUND" "${@:3}" "$2" >>"$WORK/mount.log" 2>&1
  MPID=$SPAWNED
  wait_for 20 grep -q " $2 fuse.stargz" /proc/mounts
}

# Samples the cache's disk usage every 20 ms until told to stop; the maximum lands in $1.
sample_du() {   # outfile dir
  local max=0 u
  while [[ ! -f $WORK/stop-sampling ]]; do
    u=$(du -s -B1 "$2" 2>/dev/null | cut -f1)
    [[ -n $u && $u -gt $max ]] && max=$u
    sleep 0.02
  done
  echo "$max" >"$1"
}

under_bound() {   # dir
  local now
  now=$(du -s -B1 "$1" | cut -f1)
  echo "    cache usage now: $now bytes"
  [[ $now -le $((BOUND + SLACK)) ]]
}

# Stops the mount and puts its statistics line in $STATS.
unmount_stats() {
  kill -TERM "$MPID"; wait_exit "$MPID" 20
  STATS=$(grep 'unmounted:' "$WORK/mount.log" | tail -1)
  echo "    $STATS"
}

read_all() {   # mountpoint -> fails on the first wrong file
  local f
  for f in "$S"/d/*; do
    cmp -s "$f" "$1/d/$(basename "$f")" || { echo "differs: $f"; return 1; }
  done
}

CACHE=$WORK/cache
if mount_blob "$CACHE" "$WORK/mnt"; then
  pass "mounted with --cache-max $BOUND"
  rm -f "$WORK/stop-sampling"
  sample_du "$WORK/du-max" "$CACHE" &
  SAMPLER=$!
  check "every file reads back right through a cache a quarter of the layer's size" read_all "$WORK/mnt"
  # Background fetch would start 5 s after the mount, once reads are quiet for 1 s: it
  # must see that the rest of the layer does not fit and leave the cache alone.
  sleep 6.5
  touch "$WORK/stop-sampling"; wait "$SAMPLER"
  max=$(cat "$WORK/du-max")
  echo "    largest cache usage seen: $max bytes (bound $BOUND, slack $SLACK)"
  check "cache usage stayed under the bound (+ slack)" test "$max" -le $((BOUND + SLACK))
  check "cache usage at the end under the bound" under_bound "$CACHE"
  unmount_stats
  check "unmounted cleanly" test "$EXIT_CODE" -eq 0
  evicted=$(grep -oE '[0-9]+ chunks \([0-9]+ bytes\) evicted' <<<"$STATS" | grep -oE '^[0-9]+')
  check "chunks were evicted (stats line)" test "${evicted:-0}" -gt 0
  check "background fetch skipped: the layer does not fit" grep -q "background fetch skipped" <<<"$STATS"
else
  fail "mounted with --cache-max" "$(tail -5 "$WORK/mount.log")"
fi

# Remount on the same cache: what is left (the last file read) is reused, verified; the rest
# is fetched again.  Chunks found at mount count as least recently used (recency is not
# persisted), so the file left over is read first.
if mount_blob "$CACHE" "$WORK/mnt2" --no-background; then
  check "remount: the file left in the cache reads back right" cmp -s "$S/d/f5.bin" "$WORK/mnt2/d/f5.bin"
  check "remount: every file reads back right" read_all "$WORK/mnt2"
  check "remount: cache usage under the bound" under_bound "$CACHE"
  unmount_stats
  # Used = loaded by the daemon, or checked once and then read by the kernel (passthrough).
  disk=$(grep -oE '[0-9]+ from disk' <<<"$STATS" | grep -oE '^[0-9]+')
  checked=$(grep -oE '[0-9]+ checked for passthrough' <<<"$STATS" | grep -oE '^[0-9]+')
  check "remount: chunks left in the cache were used" test $(( ${disk:-0} + ${checked:-0} )) -gt 0
  check "remount: no verification failure" grep -q "; 0 verification failures" <<<"$STATS"
else
  fail "remount" "$(tail -5 "$WORK/mount.log")"
fi

check "bad --cache-max is refused" bash -c "! '$STARGZD' mount --blob '$WORK/l.blob' --skip-verify --cache-max 12Q '$WORK/mnt3' 2>/dev/null"
finish
