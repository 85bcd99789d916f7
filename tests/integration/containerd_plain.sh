#!/usr/bin/env bash
# TIMEOUT: 300
# stargzd as containerd's proxy snapshotter, plain (non-lazy) path: real containerd 1.6,
# real registry, real runc.  Pull, run, snapshot commands, GC, restart.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data"
echo "hello from layer 2" >"$WORK/l2/data/hello.txt"
head -c 3000000 /dev/urandom >"$WORK/l2/data/random.bin"
WANT_SUM=$(sha256sum "$WORK/l2/data/random.bin" | cut -d' ' -f1)
mkdir -p "$WORK/l2/etc"
echo "root:x:0:0:layer2:/:/bin/sh" >"$WORK/l2/etc/passwd"
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "image pushed to the local registry" push_image "$WORK/oci" v1 plain
IMG=$REGISTRY/plain:v1

start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
pass "containerd with the stargz proxy plugin is up"

# Pull (unpack goes through our Prepare/Commit) and run.
if $CTR images pull --plain-http --snapshotter stargz "$IMG" >"$WORK/pull.log" 2>&1; then
  pass "ctr images pull --snapshotter stargz"
else
  fail "ctr images pull --snapshotter stargz" "$(tail -5 "$WORK/pull.log")"
fi
out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sh -c 'cat /data/hello.txt; sha256sum /data/random.bin; cat /etc/passwd' 2>&1)
check "container runs and sees layer 2's file" grep -q "hello from layer 2" <<<"$out"
check "file contents match the image byte for byte" grep -q "$WANT_SUM" <<<"$out"
check "upper layer wins over lower" grep -q "layer2" <<<"$out"
out=$($CTR run --rm --snapshotter stargz "$IMG" c2 sh -c 'echo written >/tmp/x && cat /tmp/x' 2>&1)
check "container writes to its own upper dir" grep -q "^written" <<<"$out"

# Snapshot commands through containerd.
SN="$CTR snapshots --snapshotter stargz"
# The top layer is the committed snapshot that has a parent.
CHAIN=$($SN ls | awk 'NR>1 && NF==3 && $3=="Committed" {print $1}' | tail -n 1)
check "two committed layer snapshots" bash -c "[[ \$($SN ls | awk 'NR>1 && \$NF==\"Committed\"' | wc -l) -eq 2 ]]"
check "snapshots prepare/commit/rm via ctr" bash -c "$SN prepare s-active $CHAIN >/dev/null && $SN commit s-committed s-active && $SN info s-committed | grep -q '\"Kind\": \"Committed\"' && $SN rm s-committed"
check "snapshot info shows the parent" bash -c "$SN info $CHAIN | grep -q '\"Parent\": \"sha256:'"
check "snapshot usage" bash -c "$SN usage $CHAIN | awk 'NR==2 {exit !(\$2 != \"0\")}'"
check "snapshot label set and cleared" bash -c "$SN label $CHAIN test.label=hello >/dev/null && $SN info $CHAIN | grep -q '\"test.label\": \"hello\"' && $SN label $CHAIN test.label= >/dev/null && ! $SN info $CHAIN | grep -q test.label"
check "snapshot view mounts read-only" bash -c "$SN view v1 $CHAIN | grep -q 'mount -t \(bind\|overlay\)' ; $SN rm v1"
BASE=$($SN ls | awk 'NR>1 && NF==2 && $2=="Committed" {print $1}')
if $SN rm "$BASE" >"$WORK/rm.log" 2>&1; then
  fail "removing a parent snapshot is refused"
else
  grep -qi "precondition\|child" "$WORK/rm.log" && pass "removing a parent snapshot is refused" || fail "removing a parent snapshot is refused" "$(cat "$WORK/rm.log")"
fi

# Restart stargzd: metadata persists, containers still start.
stop_stargzd TERM
check "stargzd stopped cleanly (exit 0)" bash -c "[[ $EXIT_CODE -eq 0 ]]"
start_stargzd
run_after_restart "$IMG" c3 cat /data/hello.txt
check "after a restart the image still runs" grep -q "hello from layer 2" <<<"$RUN_OUT"

# kill -9, restart: still consistent.
stop_stargzd KILL
start_stargzd
run_after_restart "$IMG" c4 cat /data/hello.txt
check "after kill -9 the image still runs" grep -q "hello from layer 2" <<<"$RUN_OUT"

# Remove the image, garbage-collect: our snapshots and directories go away.
$CTR images rm --sync "$IMG" >/dev/null 2>&1
for i in $(seq 20); do
  n=$($SN ls 2>/dev/null | awk 'NR>1' | wc -l)
  [[ $n -eq 0 ]] && break
  sleep 0.5
done
check "image removal garbage-collects our snapshots" bash -c "[[ \$($SN ls | awk 'NR>1' | wc -l) -eq 0 ]]"
check "and their directories" bash -c "[[ \$(ls '$SG_ROOT/snapshots' | wc -l) -eq 0 ]]"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
finish
