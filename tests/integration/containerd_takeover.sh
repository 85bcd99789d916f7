#!/usr/bin/env bash
# TIMEOUT: 900
# Running containers survive a crash, a graceful restart with another binary, and a restart
# with the registry down (issue 15).  Real registry, real containerd 1.6 and runc; three
# containers hash files of a lazily pulled layer that are not cached yet (sha256sum) and
# page in others through mmap (a static helper, tests/lib/mmaphash.c), in loops, while the
# daemon is killed with SIGKILL TAKEOVER_KILLS times (default 3; 50 for the long run) at
# random moments.  Each time the fd holder keeps the FUSE sessions, a new daemon takes them
# over, and: no read fails, no byte is wrong, the containers keep running, and a read that
# blocked while no daemon ran completes within 1 s of the new daemon being ready.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

KILLS=${TAKEOVER_KILLS:-3}
FILES=${TAKEOVER_FILES:-$((KILLS < 10 ? 40 : 4 * KILLS))}
LIBS=8

# ---- the image: busybox + a data layer, per container its own files ----
make_busybox_rootfs "$WORK/l1"
cc -static -O2 -o "$WORK/l1/bin/mmaphash" "$STARGZD_TOP/tests/lib/mmaphash.c" ||
  { fail "build the static mmap helper"; finish; }
cat >"$WORK/l1/bin/reader.sh" <<'SH'
#!/bin/sh
# reader.sh NAME: hashes every file of /data/NAME once per pass, forever; one line per read
# in /out/NAME.log ("ok", or "BAD" with what was read), errors in /out/NAME.err.
c=$1
pass=0
while true; do
  pass=$((pass + 1))
  for f in /data/$c/f*.bin; do
    exp=$(grep " $f\$" /data/SUMS | cut -c1-64)
    got=$(sha256sum "$f" 2>>/out/$c.err | cut -c1-64)
    if [ -n "$exp" ] && [ "$got" = "$exp" ]; then echo "ok $f" >>/out/$c.log
    else echo "BAD $f got=$got exp=$exp" >>/out/$c.log; fi
    sleep 0.05
  done
  for f in /data/$c/lib*.so; do
    exp=$(grep " $f\$" /data/FNV | cut -c1-16)
    got=$(mmaphash "$f" 2>>/out/$c.err | cut -c1-16)
    if [ -n "$exp" ] && [ "$got" = "$exp" ]; then echo "ok $f" >>/out/$c.log
    else echo "BAD $f got=$got exp=$exp" >>/out/$c.log; fi
  done
  echo "pass $pass" >>/out/$c.log
done
SH
chmod 755 "$WORK/l1/bin/reader.sh"
for c in c1 c2 c3 host; do
  mkdir -p "$WORK/l2/data/$c"
  n=$FILES; [[ $c == host ]] && n=$((KILLS + 4))
  for i in $(seq -w 1 "$n"); do head -c 393216 /dev/urandom >"$WORK/l2/data/$c/f$i.bin"; done
  [[ $c == host ]] && continue
  for i in $(seq 1 $LIBS); do head -c 1048576 /dev/urandom >"$WORK/l2/data/$c/lib$i.so"; done
done
(cd "$WORK/l2" && sha256sum data/*/f*.bin | sed 's#  data/#  /data/#') >"$WORK/SUMS"
(cd "$WORK/l2" && "$WORK/l1/bin/mmaphash" data/c*/lib*.so | sed 's# data/# /data/#') >"$WORK/FNV"
cp "$WORK/SUMS" "$WORK/FNV" "$WORK/l2/data/"
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "eStargz image" make_estargz_image "$WORK/oci" "$WORK/esgz"
start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
check "image pushed" push_image "$WORK/esgz" v1 takeover
IMG=$REGISTRY/takeover:v1

# Nothing is fetched ahead: the containers' reads are the only fetches.
SG_EXTRA_CONFIG="prefetch = false
background_fetch = false
fetch_timeout = 5
fetch_attempts = 2
speculate = false"
start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
  --snapshotter stargz "$IMG" >"$WORK/rpull.log" 2>&1 && pass "rpull" || { fail "rpull" "$(tail -3 "$WORK/rpull.log")"; finish; }

mkdir -p "$WORK/out"
# runc keeps its state per namespace machine-wide: names of our own, and the containers
# deleted through containerd before lib.sh's cleanup kills it (else runc's state stays).
P=tko$$
remove_containers() {
  local c
  for c in c1 c2 c3; do
    $CTR tasks kill -s KILL "$P-$c" >/dev/null 2>&1
    $CTR tasks delete -f "$P-$c" >/dev/null 2>&1
    $CTR containers delete "$P-$c" >/dev/null 2>&1
  done
}
trap 'remove_containers; _cleanup' EXIT
for c in c1 c2 c3; do
  $CTR run -d --snapshotter stargz --mount "type=bind,src=$WORK/out,dst=/out,options=rbind:rw" \
    "$IMG" "$P-$c" /bin/sh /bin/reader.sh "$c" >/dev/null 2>>"$WORK/ctr-run.err" || fail "start container $c" "$(tail -3 "$WORK/ctr-run.err")"
done
check "the containers read" wait_for 30 bash -c "grep -qs '^ok' $WORK/out/c1.log && grep -qs '^ok' $WORK/out/c2.log && grep -qs '^ok' $WORK/out/c3.log"
check "the fd holder keeps the sessions" wait_for 10 test -S "$SG_ROOT/fdholder.sock"

# The data layer's FUSE mount, found while a daemon serves it (a lookup in a mount whose
# daemon is gone would wait for the next one).
DATA_MNT=
for m in $(awk -v r="$SG_ROOT/" '$3 == "fuse.stargz" && index($2, r) == 1 {print $2}' /proc/mounts); do
  [[ -d $m/data/host ]] && DATA_MNT=$m
done
[[ -n $DATA_MNT ]] || { fail "the data layer is mounted"; finish; }
# Listed now: a listing while no daemon runs would block this script.
HOST_FILES=("$DATA_MNT"/data/host/f*.bin)

# A file the kernel reads through FUSE passthrough, open across every kill: fetched and
# verified by a first read, its next open gets a backing file (recorded in the session's
# journal); a new daemon must answer later opens of it with the same backing file.
PT_FILE=${HOST_FILES[-2]}
PT_SUM=$(grep " /data/host/$(basename "$PT_FILE")\$" "$WORK/SUMS" | cut -c1-64)
cat "$PT_FILE" >/dev/null
( exec 7<"$PT_FILE"; while [[ ! -e $WORK/pt.go ]]; do sleep 0.1; done; sha256sum <&7 >"$WORK/pt.held" ) &
PT_HOLDER=$!
JOURNAL=$(dirname "$DATA_MNT")/fuse.backing
check "a file is open in passthrough mode before the kills" wait_for 5 test -s "$JOURNAL"

running() {   # the number of containers whose task is RUNNING
  $CTR tasks ls 2>/dev/null | awk '$3 == "RUNNING"' | wc -l
}
ready_lines() { grep -c "took over .* held mount" "$WORK/stargzd.log"; }

# restart_and_measure HOW K: a read of an uncached file blocked in the gap must resume
# within 1 s of the new daemon being ready; sets RESUME_MS and TAKEOVER_MS.
restart_and_measure() {
  local how=$1 k=$2 f=${HOST_FILES[$(( $2 - 1 ))]} before t0 line
  rm -f "$WORK/blocked.out" "$WORK/blocked.done"
  ( sha256sum "$f" >"$WORK/blocked.out" 2>&1; date +%s%N >"$WORK/blocked.done" ) &
  local reader=$!
  sleep 0.3
  if [[ -e $WORK/blocked.done ]]; then
    BLOCKED_EARLY=$((BLOCKED_EARLY + 1))   # answered before the stop (cached, or fast)
  fi
  before=$(ready_lines)
  t0=$(date +%s%N)
  if [[ $how == upgrade ]]; then STARGZD=$UPGRADE_BIN start_stargzd; else start_stargzd; fi
  wait_for 20 bash -c "[[ \$(grep -c 'took over .* held mount' '$WORK/stargzd.log') -gt $before ]]" ||
    { RESUME_MS=99999; TAKEOVER_MS=99999; return 1; }
  line=$(grep "took over .* held mount" "$WORK/stargzd.log" | tail -1)
  TAKEOVER_MS=$(sed -E 's/.* in ([0-9.]+) ms.*/\1/' <<<"$line")
  wait_for 20 test -e "$WORK/blocked.done"
  wait "$reader" 2>/dev/null
  local done_ns
  done_ns=$(cat "$WORK/blocked.done" 2>/dev/null || echo 0)
  # Ready = start + the takeover time the daemon logged; a read that finished before counts 0.
  RESUME_MS=$(( (done_ns - t0) / 1000000 - ${TAKEOVER_MS%.*} ))
  (( RESUME_MS < 0 )) && RESUME_MS=0
  local exp
  exp=$(grep " /data/host/$(basename "$f")\$" "$WORK/SUMS" | cut -c1-64)
  grep -q "^$exp " "$WORK/blocked.out" || { BLOCKED_BAD=$((BLOCKED_BAD + 1)); echo "    blocked read of $f: $(cat "$WORK/blocked.out")"; }
  return 0
}

# ---- kill -9 at random moments ----
BLOCKED_BAD=0 BLOCKED_EARLY=0 MAX_RESUME=0 MAX_TAKEOVER=0 FAILED_RESTARTS=0
for k in $(seq 1 "$KILLS"); do
  sleep "0.$((RANDOM % 9 + 1))"
  kill -KILL "$SG_PID"; wait "$SG_PID" 2>/dev/null
  if ! restart_and_measure kill "$k"; then
    FAILED_RESTARTS=$((FAILED_RESTARTS + 1)); echo "    kill $k: no takeover"; continue
  fi
  (( RESUME_MS > MAX_RESUME )) && MAX_RESUME=$RESUME_MS
  t=${TAKEOVER_MS%.*}; (( t > MAX_TAKEOVER )) && MAX_TAKEOVER=$t
  [[ $KILLS -le 10 ]] && echo "    kill -9 #$k: takeover ${TAKEOVER_MS} ms after start, blocked read resumed ${RESUME_MS} ms after ready"
done
echo "    $KILLS kills: max takeover ${MAX_TAKEOVER} ms, max resume ${MAX_RESUME} ms;" \
  "$((KILLS - BLOCKED_EARLY)) of the $KILLS gap reads were blocked until the takeover"
check "every kill -9 was followed by a takeover" test "$FAILED_RESTARTS" -eq 0
check "reads blocked in the gap read the right bytes" test "$BLOCKED_BAD" -eq 0
check "  ... and did block (no daemon answered them)" test "$BLOCKED_EARLY" -eq 0
check "  ... and resumed within 1 s of the new daemon being ready (max ${MAX_RESUME} ms)" test "$MAX_RESUME" -lt 1000
check "the mounts never went away (no remount after a kill)" bash -c "! grep -q 'mounted again\$' '$WORK/stargzd.log'"
sleep 2
check "the three containers are still running" test "$(running)" -eq 3
check "the file open in passthrough mode across the kills: a new open reads right" \
  bash -c "sha256sum '$PT_FILE' | grep -q '^$PT_SUM'"
touch "$WORK/pt.go"; wait "$PT_HOLDER"
check "  ... and so does the descriptor opened before them" grep -q "^$PT_SUM" "$WORK/pt.held"
oks_before=$(cat "$WORK"/out/c*.log | grep -c '^ok')
check "the containers go on reading after the last takeover" wait_for 20 bash -c "[[ \$(cat $WORK/out/c*.log | grep -c '^ok') -gt $((oks_before + 10)) ]]"

# ---- a graceful restart with another build (an upgrade) ----
UPGRADE_BIN=$WORK/stargzd-upgrade
BUILD_DIR=$(dirname "$STARGZD")
SAN=; [[ $(nm "$BUILD_DIR/libstargzd.a" 2>/dev/null | grep -c __asan_) -gt 0 ]] && SAN=-fsanitize=address,undefined
cc $SAN -std=gnu11 -O2 -D_GNU_SOURCE -DSTARGZD_VERSION='"0.1.0-upgrade-test"' -I"$STARGZD_TOP" \
  -I"$BUILD_DIR/proto" -I/usr/include/bearssl $(pkg-config --cflags fuse3) \
  -o "$UPGRADE_BIN" "$STARGZD_TOP/daemon/main.c" "$BUILD_DIR/libstargzd.a" \
  -luring -lfuse3 -ldeflate -lbearssl -lprotobuf-c -lnghttp2 -lsqlite3 -lnettle -lyajl -lz -lpthread 2>"$WORK/upgrade-build.err"
if [[ -x $UPGRADE_BIN ]] && ! cmp -s "$UPGRADE_BIN" "$STARGZD"; then
  pass "a different build of the daemon"
  # A file fetched and then opened again after the takeovers: the kernel reads it through
  # passthrough (on again in a taken-over session); the handover's statistics count it.
  PT2=${HOST_FILES[-3]}
  cat "$PT2" >/dev/null && cat "$PT2" >/dev/null
  stop_stargzd TERM
  check "passthrough works in a taken-over session" \
    grep -qE "snapshots/[0-9]+/fs handed over: .*opens: [1-9][0-9]* passthrough" "$WORK/stargzd.log"
  check "SIGTERM: the old daemon exits 0" test "$EXIT_CODE" -eq 0
  check "  ... leaving the lazy mounts in place" bash -c "grep -F '$SG_ROOT/' /proc/mounts | grep -q ' fuse.stargz '"
  check "  ... having handed them over" grep -q "handed over" "$WORK/stargzd.log"
  restart_and_measure upgrade $((KILLS + 1)) || fail "the upgraded daemon takes over"
  check "the new build runs" grep -q "stargzd 0.1.0-upgrade-test serving" "$WORK/stargzd.log"
  echo "    upgrade: takeover ${TAKEOVER_MS} ms after start, blocked read resumed ${RESUME_MS} ms after ready"
  check "  ... the blocked read resumed within 1 s" test "$RESUME_MS" -lt 1000
  check "  ... and read the right bytes" test "$BLOCKED_BAD" -eq 0
  sleep 1
  check "  ... the containers still run" test "$(running)" -eq 3
  oks_before=$(cat "$WORK"/out/c*.log | grep -c '^ok')
  check "  ... and read on" wait_for 20 bash -c "[[ \$(cat $WORK/out/c*.log | grep -c '^ok') -gt $((oks_before + 10)) ]]"
else
  fail "build another daemon binary" "$(tail -5 "$WORK/upgrade-build.err")"
fi

# The verdict on everything the containers read so far.
bad=$(cat "$WORK"/out/c*.log | grep -c '^BAD')
oks=$(cat "$WORK"/out/c*.log | grep -c '^ok')
errs=$(cat "$WORK"/out/c*.err 2>/dev/null | wc -l)
echo "    containers: $oks reads right, $bad wrong or failed, $errs error lines"
check "0 failed reads, 0 wrong bytes in the containers" bash -c "[[ $bad -eq 0 && $errs -eq 0 && $oks -gt 0 ]]"
[[ $bad -eq 0 ]] || grep -m5 '^BAD' "$WORK"/out/c*.log
[[ $errs -eq 0 ]] || head -5 "$WORK"/out/c*.err
check "every FUSE request got its reply (no lost reply logged)" bash -c "! grep -q 'unanswered for' '$WORK/stargzd.log'"

# ---- restart with the registry unreachable ----
remove_containers
kill -KILL "$SG_PID"; wait "$SG_PID" 2>/dev/null
kill -STOP "$REGISTRY_PID"
start_stargzd
check "with the registry down, the held mounts are taken over" wait_for 20 bash -c "[[ \$(grep -c 'took over [1-9][0-9]* held mount' '$WORK/stargzd.log') -ge $((KILLS + 2)) ]]"
cached=$(ls "$DATA_MNT"/data/c1/f*.bin | head -1)
check "  ... cached data reads" bash -c "sha256sum '$cached' | grep -q \$(grep ' /data/c1/$(basename "$cached")\$' '$WORK/SUMS' | cut -c1-64)"
unread=${HOST_FILES[-1]}
t0=$SECONDS
if cat "$unread" >/dev/null 2>"$WORK/eio.err"; then
  fail "  ... uncached data gets EIO while the registry is down" "the read succeeded"
else
  el=$((SECONDS - t0))
  check "  ... uncached data gets EIO after the fetch timeout (${el} s)" bash -c "grep -q 'Input/output error' '$WORK/eio.err' && [[ $el -le 20 ]]"
fi
kill -CONT "$REGISTRY_PID"
check "  ... and reads again once the registry is back" wait_for 20 bash -c "sha256sum '$unread' | grep -q \$(grep ' /data/host/$(basename "$unread")\$' '$WORK/SUMS' | cut -c1-64)"

# ---- a full stop still unmounts everything ----
"$STARGZD" stop --unmount --root "$SG_ROOT" --timeout 30
check "stargzd stop --unmount: the daemon is gone" bash -c "! kill -0 $SG_PID 2>/dev/null"
check "  ... and no lazy mount is left" bash -c "! grep -F '$SG_ROOT/' /proc/mounts | grep -q ' fuse.stargz '"
check "  ... and the fd holder exits" wait_for 10 bash -c "! test -S '$SG_ROOT/fdholder.sock'"
check "no sanitizer report from any daemon (ASan/UBSan builds)" \
  bash -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' '$WORK/stargzd.log'"
[[ $_fail -eq 0 ]] || cp "$WORK/stargzd.log" "$STARGZD_TOP/build/test-logs/containerd_takeover.stargzd.log" 2>/dev/null
finish
