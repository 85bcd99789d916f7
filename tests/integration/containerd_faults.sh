#!/usr/bin/env bash
# TIMEOUT: 300
# A registry that stops answering while its layers are in use, with real containerd and runc:
# reads of data not fetched yet fail with EIO within the configured budget (fetch_timeout ×
# fetch_attempts), never hang; containers of another image, served by another registry through
# the same daemon (the same event loop), keep running at full speed meanwhile; once the
# registry answers again the same reads succeed.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

TIMEOUT_S=3
ATTEMPTS=2

# Two images with nothing in common, each in its own registry.
for x in a b; do
  make_busybox_rootfs "$WORK/base-$x"
  echo "image $x" >"$WORK/base-$x/etc/hostname"
  mkdir -p "$WORK/data-$x/data"
  head -c 6000000 /dev/urandom >"$WORK/data-$x/data/$x.bin"   # two chunks, never prefetched
  make_image "$WORK/oci-$x" v1 "$WORK/base-$x" "$WORK/data-$x" >/dev/null
  make_estargz_image "$WORK/oci-$x" "$WORK/esgz-$x" || fail "convert image $x"
done
SUM_A=$(sha256sum "$WORK/data-a/data/a.bin" | cut -d' ' -f1)
SUM_B=$(sha256sum "$WORK/data-b/data/b.bin" | cut -d' ' -f1)
start_registry reg-a || { fail "registry a starts"; finish; }
REG_A=$REGISTRY PID_A=$REGISTRY_PID
push_image "$WORK/esgz-a" v1 fa || fail "push a"
start_registry reg-b || { fail "registry b starts"; finish; }
REG_B=$REGISTRY
push_image "$WORK/esgz-b" v1 fb || fail "push b"

SG_EXTRA_CONFIG="prefetch = false
background_fetch = false
fetch_timeout = $TIMEOUT_S
fetch_attempts = $ATTEMPTS"
start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
for img in "$REG_A/fa:v1" "$REG_B/fb:v1"; do
  ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
    --snapshotter stargz "$img" >>"$WORK/rpull.log" 2>&1 && pass "rpull $img" || fail "rpull $img" "$(tail -3 "$WORK/rpull.log")"
done
# Start each image once: busybox's chunks are in the cache from now on.
check "image a runs" bash -c "$CTR run --rm --snapshotter stargz $REG_A/fa:v1 a0 true"
check "image b runs" bash -c "$CTR run --rm --snapshotter stargz $REG_B/fb:v1 b0 true"

# Registry a stops answering (SIGSTOP: its kernel still accepts connections, nothing replies).
kill -STOP "$PID_A"
t0=$(date +%s%N)
( $CTR run --rm --snapshotter stargz "$REG_A/fa:v1" a1 cat /data/a.bin >/dev/null 2>"$WORK/a1.err"
  echo $? >"$WORK/a1.rc"; echo $(( ($(date +%s%N) - t0) / 1000000 )) >"$WORK/a1.ms") &
A_JOB=$!
sleep 1
tb=$(date +%s%N)
out=$($CTR run --rm --snapshotter stargz "$REG_B/fb:v1" b1 sha256sum /data/b.bin 2>&1)
b_ms=$(( ($(date +%s%N) - tb) / 1000000 ))
[[ $out == *"$SUM_B"* ]] && pass "other registry's image reads right while registry a hangs (${b_ms} ms)" ||
  fail "other image reads while registry a hangs" "$out"
kill -0 "$A_JOB" 2>/dev/null && pass "  ... while the read from registry a was still waiting" ||
  fail "the read from registry a was still waiting" "it ended after $(cat "$WORK/a1.ms" 2>/dev/null) ms"
[[ $b_ms -lt $((TIMEOUT_S * 1000)) ]] && pass "  ... without waiting for the hung registry's timeout" ||
  fail "other image waited for the hung registry" "${b_ms} ms"

budget=$(( (TIMEOUT_S * ATTEMPTS + 8) * 1000 ))   # + backoff and container start
wait "$A_JOB"
a_ms=$(cat "$WORK/a1.ms"); a_rc=$(cat "$WORK/a1.rc")
[[ $a_rc -ne 0 ]] && grep -q "Input/output error" "$WORK/a1.err" && pass "unfetched data of the hung registry: EIO after ${a_ms} ms" ||
  fail "EIO from the hung registry" "rc=$a_rc $(cat "$WORK/a1.err")"
[[ $a_ms -le $budget ]] && pass "  ... within fetch_timeout × fetch_attempts (+ slack: ${budget} ms)" ||
  fail "EIO took too long" "${a_ms} ms > ${budget} ms"
check "the daemon is still running" kill -0 "$SG_PID"

kill -CONT "$PID_A"
out=$($CTR run --rm --snapshotter stargz "$REG_A/fa:v1" a2 sha256sum /data/a.bin 2>&1)
[[ $out == *"$SUM_A"* ]] && pass "registry a answers again: the same read succeeds with the right bytes" ||
  fail "read after the registry came back" "$out
$(tail -30 "$WORK/stargzd.log")"
check "no verification failure logged" bash -c "! grep -q 'failed verification' '$WORK/stargzd.log'"
finish
