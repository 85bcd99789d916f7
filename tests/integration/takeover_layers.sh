#!/usr/bin/env bash
# TIMEOUT: 600
# The time from a new daemon's start to serving every held mount, with TAKEOVER_LAYERS
# (default 50) lazily mounted layers: after kill -9 and after SIGTERM.  Target: <= 1 s.
# Real registry and containerd (`ctr-remote images rpull` of one image with that many
# eStargz layers); the figure is the daemon's own "took over N held mount(s) in X ms since
# start" (from its first instruction to the last takeover attached).
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

N=${TAKEOVER_LAYERS:-50}
dirs=()
make_busybox_rootfs "$WORK/l0"
dirs+=("$WORK/l0")
for i in $(seq 2 "$N"); do
  mkdir -p "$WORK/l$i/data/l$i"
  head -c 65536 /dev/urandom >"$WORK/l$i/data/l$i/f.bin"
  for j in $(seq 1 20); do echo "$i $j" >"$WORK/l$i/data/l$i/small$j"; done
  dirs+=("$WORK/l$i")
done
make_image "$WORK/oci" v1 "${dirs[@]}" >/dev/null
check "eStargz image of $N layers" make_estargz_image "$WORK/oci" "$WORK/esgz"
start_registry || { fail "registry starts"; finish; }
check "image pushed" push_image "$WORK/esgz" v1 layers
start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts"; finish; }
ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
  --snapshotter stargz "$REGISTRY/layers:v1" >"$WORK/rpull.log" 2>&1 && pass "rpull" || { fail "rpull" "$(tail -3 "$WORK/rpull.log")"; finish; }
mounted() { awk -v r="$SG_ROOT/" '$3 == "fuse.stargz" && index($2, r) == 1' /proc/mounts | wc -l; }
check "$N lazy mounts" test "$(mounted)" -eq "$N"
MNT=$(awk -v r="$SG_ROOT/" '$3 == "fuse.stargz" && index($2, r) == 1 {print $2}' /proc/mounts | tail -1)
ls "$MNT" >/dev/null

takeover() {   # HOW: restart after kill -9 or SIGTERM; sets MS
  local before
  before=$(grep -c "took over" "$WORK/stargzd.log")
  if [[ $1 == KILL ]]; then kill -KILL "$SG_PID"; wait "$SG_PID" 2>/dev/null; else stop_stargzd TERM; fi
  start_stargzd
  wait_for 20 bash -c "[[ \$(grep -c 'took over' '$WORK/stargzd.log') -gt $before ]]" || { MS=99999; return 1; }
  MS=$(grep "took over" "$WORK/stargzd.log" | tail -1 | sed -E 's/.*took over ([0-9]+) held mount\(s\) in ([0-9.]+) ms.*/\1 \2/')
}
for how in KILL KILL TERM; do
  takeover $how
  n=${MS% *} ms=${MS#* }
  echo "    after $how: took over $n of $N held mounts in $ms ms since start"
  check "after $how all $N mounts are taken over" test "$n" -eq "$N"
  check "  ... within 1 s of the daemon's start ($ms ms)" test "${ms%.*}" -lt 1000
  check "  ... and serve" bash -c "ls '$MNT' >/dev/null && [[ \$(awk -v r='$SG_ROOT/' '\$3 == \"fuse.stargz\" && index(\$2, r) == 1' /proc/mounts | wc -l) -eq $N ]]"
done
"$STARGZD" stop --unmount --root "$SG_ROOT"
check "a full stop unmounts all $N" test "$(mounted)" -eq 0
finish
