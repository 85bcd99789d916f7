#!/usr/bin/env bash
# TIMEOUT: 300
# Lazy pulling end to end: a real registry holding an eStargz image made by stargzify, real
# containerd 1.6 with stargzd as its "stargz" proxy snapshotter, `ctr-remote images rpull`,
# `ctr run` with runc.  The layers must not be downloaded at pull time, the container must
# see exactly the image's bytes, and a plain pull must fall back and work.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

REGISTRY_LOG_LEVEL=info start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data" "$WORK/l2/etc"
echo "hello lazily" >"$WORK/l2/data/hello.txt"
head -c 6000000 /dev/urandom >"$WORK/l2/data/big.bin"     # several chunks
head -c 2000000 /dev/urandom >"$WORK/l2/data/unread.bin"  # never read by the container
BIG_SUM=$(sha256sum "$WORK/l2/data/big.bin" | cut -d' ' -f1)
echo "root:x:0:0:lazy:/:/bin/sh" >"$WORK/l2/etc/passwd"
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "eStargz conversion (stargzify --oci-layout)" make_estargz_image "$WORK/oci" "$WORK/esgz"
check "eStargz image pushed" push_image "$WORK/esgz" v1 lazy
check "plain image pushed" push_image "$WORK/oci" v1 plain
BLOBS=$(du -cb "$WORK/esgz/blobs/sha256" | tail -1 | cut -f1)

start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
SN="$CTR snapshots --snapshotter stargz"
IMG=$REGISTRY/lazy:v1

before=$(registry_blob_bytes lazy)
if ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
     --snapshotter stargz "$IMG" >"$WORK/rpull.log" 2>&1; then
  pass "ctr-remote images rpull"
else
  fail "ctr-remote images rpull" "$(tail -5 "$WORK/rpull.log")"
fi
pulled=$(( $(registry_blob_bytes lazy) - before ))
echo "    registry sent $pulled bytes of blobs at pull time (image blobs: $BLOBS bytes)"
check "both layers are remote snapshots" bash -c "[[ \$($SN ls | awk 'NR>1' | wc -l) -eq 2 ]] && for k in \$($SN ls | awk 'NR>1 {print \$1}'); do $SN info \$k | grep -q 'containerd.io/snapshot/remote' || exit 1; done"
check "pull did not download the layers" bash -c "[[ $pulled -lt $((BLOBS / 2)) ]]"
# Each layer's blob is opened by one suffix GET that brings its size and its TOC: no HEAD.
check "stargzd sent no HEAD for a blob (the tail GET gives the size)" bash -c \
  "grep -a 'response completed' '$WORK/registry.log' | grep -a 'useragent=stargzd' | grep -aq '/blobs/' &&
   ! grep -a 'response completed' '$WORK/registry.log' | grep -a 'useragent=stargzd' | grep -a '/blobs/' |
     grep -aq 'http.request.method=HEAD'"
check "layers are FUSE mounts" bash -c "[[ \$(grep -F '$WORK/' /proc/mounts | grep -c ' fuse.stargz ') -ge 2 ]]"

out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sh -c 'cat /data/hello.txt; sha256sum /data/big.bin; cat /etc/passwd' 2>&1)
check "container runs on lazy layers" grep -q "hello lazily" <<<"$out"
check "a multi-chunk file reads back exactly" grep -q "$BIG_SUM" <<<"$out"
check "upper layer wins" grep -q "lazy:/" <<<"$out"

# Without the lazy labels (plain `ctr images pull`), of the gzip image and of the eStargz
# image itself: containerd downloads and unpacks through the plain path.
$CTR images rm --sync "$IMG" >/dev/null 2>&1   # GC done: no remote snapshot is left to be listed below
out=$($CTR images pull --plain-http --snapshotter stargz "$REGISTRY/plain:v1" 2>&1)
check "plain image pull falls back to the normal path" bash -c "$CTR run --rm --snapshotter stargz $REGISTRY/plain:v1 c2 cat /data/hello.txt | grep -q 'hello lazily'"
out=$($CTR images pull --plain-http --snapshotter stargz "$IMG" 2>&1)
check "eStargz image pulled without lazy labels works too" bash -c "$CTR run --rm --snapshotter stargz $IMG c2b sha256sum /data/big.bin | grep -q $BIG_SUM"
check "  ... as local (non-remote) snapshots" bash -c "! $SN info \$($SN ls | awk 'NR>1 && NF==2 {print \$1}' | head -1) | grep -q 'containerd.io/snapshot/remote'"
$CTR images rm --sync "$IMG" >/dev/null 2>&1

# Restart: the remote snapshots are mounted again and still serve.
if ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
     --snapshotter stargz "$IMG" >>"$WORK/rpull.log" 2>&1; then pass "rpull again"; else fail "rpull again"; fi
# SIGINT is the full stop (SIGTERM hands the mounts over: containerd_takeover.sh).
stop_stargzd INT
check "stargzd stopped cleanly" bash -c "[[ $EXIT_CODE -eq 0 ]]"
check "and unmounted its layers" bash -c "! grep -F '$WORK/' /proc/mounts | grep -q ' fuse.stargz '"
start_stargzd
check "remote snapshots are mounted again after restart" wait_for 20 bash -c "[[ \$(grep -F '$WORK/' /proc/mounts | grep -c ' fuse.stargz ') -ge 2 ]]"
run_after_restart "$IMG" c3 sha256sum /data/big.bin
check "container runs after restart" grep -q "$BIG_SUM" <<<"$RUN_OUT"

# kill -9: the fd holder keeps the mounts; the next start takes them over.
stop_stargzd KILL
start_stargzd
run_after_restart "$IMG" c4 cat /data/hello.txt
check "container runs after kill -9 and restart" grep -q "hello lazily" <<<"$RUN_OUT"

# kill -9 in the middle of a pull: metadata stays consistent, the pull can be repeated.
$CTR images rm --sync "$IMG" >/dev/null 2>&1
ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
  --snapshotter stargz "$IMG" >>"$WORK/rpull.log" 2>&1 &
RP=$!
sleep 0.15
kill -KILL "$SG_PID"
wait "$RP" 2>/dev/null
{ wait "$SG_PID"; } 2>/dev/null
start_stargzd
ok=0
for i in $(seq 10); do
  if ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
       --snapshotter stargz "$IMG" >>"$WORK/rpull.log" 2>&1 &&
     out=$($CTR run --rm --snapshotter stargz "$IMG" c5 cat /data/hello.txt 2>&1); then
    ok=1; break
  fi
  sleep 1
done
check "pull repeated after kill -9 mid-pull; container runs" bash -c "[[ $ok == 1 ]] && grep -q 'hello lazily' <<<'$out'"
check "no half-mounted snapshot left behind" bash -c "! ls '$SG_ROOT/snapshots' | grep -q '^new-'"

# A lazy mount removed from outside stargzd (an operator's umount): the daemon notices,
# releases the layer and mounts it again; the next container reads right.
lazy_mnt=$(grep -F "$SG_ROOT/" /proc/mounts | awk '$3 == "fuse.stargz" {print $2}' | head -1)
if [[ -n $lazy_mnt ]] && umount "$lazy_mnt"; then
  check "the daemon notices an external unmount" wait_for 5 grep -q "unmounted from outside" "$WORK/stargzd.log"
  check "... and mounts the layer again" wait_for 10 mountpoint -q "$lazy_mnt"
  out=$($CTR run --rm --snapshotter stargz "$IMG" c6 cat /data/hello.txt 2>&1)
  grep -q 'hello lazily' <<<"$out" && pass "... and the next container reads right" ||
    fail "... and the next container reads right" "$out"
else
  fail "a lazy mount to remove from outside" "none found under $SG_ROOT"
fi

# Remove everything: GC removes our snapshots and unmounts the layers.
$CTR images rm --sync "$IMG" "$REGISTRY/plain:v1" >/dev/null 2>&1
for i in $(seq 20); do
  [[ $($SN ls 2>/dev/null | awk 'NR>1' | wc -l) -eq 0 ]] && break
  sleep 0.5
done
check "GC removed all snapshots" bash -c "[[ \$($SN ls | awk 'NR>1' | wc -l) -eq 0 ]]"
check "no lazy mounts left" bash -c "! grep -F '$WORK/' /proc/mounts | grep -q ' fuse.stargz '"
check "no snapshot directories left" bash -c "[[ \$(ls '$SG_ROOT/snapshots' | wc -l) -eq 0 ]]"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
finish
