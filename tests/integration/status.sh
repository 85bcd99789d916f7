#!/usr/bin/env bash
# TIMEOUT: 300
# `stargzd status` (and --json) over the root-only control socket during a real lazy run
# through containerd: the mounted layers with their image, mountpoint, bytes fetched,
# prefetch and background state, passthrough; the cache and its bound; and the registry hosts,
# one of them failing.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
REG_A=$REGISTRY
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data"
head -c 5000000 /dev/urandom >"$WORK/l2/data/big.bin"
head -c 3000000 /dev/urandom >"$WORK/l2/data/unread.bin"
BIG_SUM=$(sha256sum "$WORK/l2/data/big.bin" | cut -d' ' -f1)
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "eStargz conversion" make_estargz_image "$WORK/oci" "$WORK/esgz"
check "image pushed to registry A" push_image "$WORK/esgz" v1 st
read -r LAYER _ < <(esgz_layer_info "$WORK/esgz")
# Registry B: its own image, which will become unreachable.
mkdir -p "$WORK/l3/other"
head -c 3000000 /dev/urandom >"$WORK/l3/other/b.bin"
make_image "$WORK/oci-b" v1 "$WORK/l1" "$WORK/l3" >/dev/null
make_estargz_image "$WORK/oci-b" "$WORK/esgz-b"
start_registry reg-b || { fail "registry b starts"; finish; }
REG_B=$REGISTRY
check "image pushed to registry B" push_image "$WORK/esgz-b" v1 stb

check "no daemon: status says it cannot reach it (exit 1)" bash -c "! '$STARGZD' status --root '$WORK/nothing' 2>'$WORK/none.err' && grep -q 'cannot reach the daemon' '$WORK/none.err'"
MPORT=$(free_port)
SG_EXTRA_CONFIG="background_fetch = false
metrics_address = \"127.0.0.1:$MPORT\"
fetch_timeout = 2
fetch_attempts = 2" start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
for img in "$REG_A/st:v1" "$REG_B/stb:v1"; do
  ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
    --snapshotter stargz "$img" >>"$WORK/rpull.log" 2>&1 && pass "rpull $img" || fail "rpull $img" "$(tail -3 "$WORK/rpull.log")"
done

$CTR run --rm --snapshotter stargz "$REG_A/st:v1" c1 sh -c 'sha256sum /data/big.bin; sleep 8' >"$WORK/c1.out" 2>&1 &
RUN=$!
check "the container read its file" wait_for 40 grep -q "$BIG_SUM" "$WORK/c1.out"
"$STARGZD" status --root "$SG_ROOT" >"$WORK/status.txt" 2>&1
rc=$?
"$STARGZD" status --root "$SG_ROOT" --json >"$WORK/status.json" 2>&1
rcj=$?
check "status taken while the container runs" bash -c "$CTR task ls | grep -q '^c1 .*RUNNING'"
check "stargzd status exits 0" bash -c "[[ $rc -eq 0 && $rcj -eq 0 ]]"
cat "$WORK/status.txt"
check "status names the daemon and its root" grep -q "^stargzd .*, pid $SG_PID, up [0-9]* s, root $SG_ROOT\$" "$WORK/status.txt"
check "status shows the cache use and bound" grep -qE '^cache: [0-9.]+ MiB of [0-9.]+ MiB' "$WORK/status.txt"
check "status lists the layer with its image" bash -c "grep -A1 '^  $LAYER\$' '$WORK/status.txt' | grep -q 'image       $REG_A/st:v1'"
check "  ... with its mountpoint" grep -qE "^    mountpoint  $SG_ROOT/snapshots/[0-9]+/fs\$" "$WORK/status.txt"
check "  ... bytes fetched of its blob" grep -qE '^    fetched     [0-9.]+ MiB of a [0-9.]+ MiB blob' "$WORK/status.txt"
check "  ... prefetch and background state" bash -c "grep -q '^    prefetch    done' '$WORK/status.txt' && grep -q '^    background  off' '$WORK/status.txt'"
check "  ... passthrough" grep -q '^    passthrough ' "$WORK/status.txt"
check "status lists registry A" grep -q "^  $REG_A (http): [1-9][0-9]* requests, [0-9]* retries, 0 failures" "$WORK/status.txt"
check "  ... with what its link meter measured" grep -qE "^  $REG_A \(http\): .*; link: RTT [0-9.]+ ms, [0-9.]+ MB/s\$" "$WORK/status.txt"
check "--json: the layer, its image and fetched bytes; the cache; the hosts" $PYTHON - "$WORK/status.json" "$LAYER" "$REG_A" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
layer, reg = sys.argv[2], sys.argv[3]
ls = [l for l in s["layers"] if l["digest"] == layer]
assert ls and ls[0]["image"] == reg + "/st:v1" and ls[0]["mounted"], ls
assert 0 < ls[0]["fetched_bytes"] < ls[0]["blob_bytes"], ls[0]
assert ls[0]["on_demand_fetched_bytes"] > 0 and ls[0]["chunks_local"] > 0, ls[0]
assert ls[0]["background_fetch"] == "off" and ls[0]["prefetch"] == "done", ls[0]
assert s["cache"]["max_bytes"] > 0 and s["cache"]["bytes"] > 0, s["cache"]
assert any(h["host"] == reg and h["requests"] > 0 and h["link_rtt_us"] > 0
           for h in s["registry_hosts"]), s["registry_hosts"]
assert s["lazy"] is True and s["pid"] > 0
PY
wait "$RUN"

# Registry B goes away: a read of data not fetched yet fails, and status says where and why.
kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null
$CTR run --rm --snapshotter stargz "$REG_B/stb:v1" c2 sh -c 'cat /other/b.bin >/dev/null; echo rc=$?' >"$WORK/c2.out" 2>&1
check "the read from the dead registry failed" grep -q 'rc=1' "$WORK/c2.out"
"$STARGZD" status --root "$SG_ROOT" >"$WORK/status2.txt" 2>&1
grep "^  $REG_B" "$WORK/status2.txt"
check "  ... and its retry, by cause, in the metrics" bash -c "curl -sf http://127.0.0.1:$MPORT/metrics | grep -qE '^stargzd_registry_retries_total\{host=\"$REG_B\",scheme=\"http\",cause=\"connection\"\} [1-9]'"
check "each registry host is listed once" bash -c "[[ \$(grep -c '^  $REG_B (http)' '$WORK/status2.txt') -eq 1 ]]"
check "status lists registry B with its retries, failures and the last error" grep -qE "^  $REG_B \(http\): [0-9]+ requests, [1-9][0-9]* retries, [1-9][0-9]* failures; last: .+" "$WORK/status2.txt"

# Root only: the socket is 0600 in the 0700 root.
check "the control socket is root's, mode 0600" bash -c "[[ \$(stat -c '%U %a' '$SG_ROOT/stargzd-control.sock') == 'root 600' ]]"
check "another user cannot ask" bash -c "! setpriv --reuid=65534 --regid=65534 --clear-groups '$STARGZD' status --root '$SG_ROOT' >/dev/null 2>&1"
stop_stargzd TERM
check "the control socket is removed at exit" bash -c "[[ ! -e '$SG_ROOT/stargzd-control.sock' ]]"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
finish
