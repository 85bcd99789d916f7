#!/usr/bin/env bash
# TIMEOUT: 300
# The CRI image-service proxy ([cri_keychain]) with credentials given only in PullImage: a
# registry that requires Basic auth, containerd's real CRI plugin with stargzd as its
# snapshotter, and a CRI client (python3-grpcio, raw runtime.v1.ImageService calls) speaking
# to stargzd's listen_path as kubelet would with --image-service-endpoint.  stargzd has no
# other credentials: the image must still be pulled lazily and run, and the password must
# appear in no log, no status and no metric.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
. "$STARGZD_TOP/tests/lib/registry_fixtures.sh"

$PYTHON -c 'import grpc' 2>/dev/null || { fail "python3-grpcio is installed (tools/install-deps.sh)"; finish; }
REGISTRY_LOG_LEVEL=info start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_cri_test_image private
# The same storage behind Basic auth: the private registry.
PASSWORD=Cr1-pr0xy-s3cret-$RANDOM
htpasswd -Bbc "$WORK/htpasswd" kubelet "$PASSWORD" >/dev/null 2>&1
start_registry_extra private "" "" "$WORK/htpasswd" || { fail "private registry starts"; finish; }
PRIV=127.0.0.1:$EXTRA_PORT
IMG=$PRIV/private:v1
check "the private registry refuses anonymous pulls" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://$PRIV/v2/private/manifests/v1) == 401 ]]"

MPORT=$(free_port)
SG_EXTRA_CONFIG="metrics_address = \"127.0.0.1:$MPORT\"
background_fetch = false
[cri_keychain]
enable_keychain = true
image_service_path = \"$WORK/containerd/containerd.sock\"
listen_path = \"$WORK/cri.sock\"" start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
check "the CRI proxy listens" wait_for 10 test -S "$WORK/cri.sock"

start_containerd_cri "$PRIV" || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }

check "without credentials the pull fails (the registry is private)" bash -c "! $PYTHON '$CRI_CLIENT' '$WORK/cri.sock' pull '$IMG' >'$WORK/cri-anon.out' 2>&1"
if $PYTHON "$CRI_CLIENT" "$WORK/cri.sock" pull "$IMG" kubelet "$PASSWORD" >"$WORK/cri.out" 2>&1 &&
   $PYTHON "$CRI_CLIENT" "$WORK/cri.sock" list "$IMG" >>"$WORK/cri.out" 2>&1; then
  pass "PullImage through stargzd's CRI proxy with credentials only in the request"
else
  fail "PullImage through stargzd's CRI proxy with credentials only in the request" "$(cat "$WORK/cri.out"; tail -5 "$WORK/containerd.log")"
fi
check "ListImages through the proxy lists it" grep -q "listed True" "$WORK/cri.out"
# The proxy saw the PullImage before containerd's Prepare: it fetched the manifest itself,
# with the request's credentials, and started both layers' TOCs; the Prepares joined them.
check "the proxy's pull loads both layers ahead of containerd's Prepare" grep -qF "image $IMG: 2 of its 2 layers load ahead of containerd's Prepare" "$WORK/stargzd.log"
check "  ... and containerd's Prepares find them there" bash -c "[[ \$(grep -cE \"its Prepare finds it (loaded|loading) ahead of it\" '$WORK/stargzd.log') -eq 2 ]]"
check "  ... the anonymous pull's manifest was refused, and said so" grep -qE "image $IMG: not loaded ahead of containerd's Prepare: its manifest: .*(401|denied|unauthorized|credentials)" "$WORK/stargzd.log"
SN="$CTR snapshots --snapshotter stargz"
check "the layers are remote snapshots (lazy)" bash -c "[[ \$($SN ls | awk 'NR>1' | wc -l) -eq 2 ]] && for k in \$($SN ls | awk 'NR>1 {print \$1}'); do $SN info \$k | grep -q 'containerd.io/snapshot/remote' || exit 1; done"
check "the layers are FUSE mounts" bash -c "[[ \$(grep -F '$WORK/' /proc/mounts | grep -c ' fuse.stargz ') -ge 2 ]]"
out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sha256sum /data/big.bin 2>&1)
check "the image runs and reads its bytes lazily with the given credentials" grep -q "$BIG_SUM" <<<"$out"
# (The anonymous pull's manifest GET, refused, is the one failure.)
check "  ... fetched from the private registry by stargzd" bash -c "'$STARGZD' status --root '$SG_ROOT' | grep -qE '^  $PRIV \\(http\\): [1-9][0-9]* requests, [0-9]+ retries, 1 failures?'"
"$STARGZD" status --root "$SG_ROOT" --json >"$WORK/status.json" 2>&1
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$WORK/scrape.txt"
check "the metrics count both layers loaded ahead and both Prepares that joined them" bash -c "grep -qx 'stargzd_layers_loaded_ahead_total 2' '$WORK/scrape.txt' && grep -qx 'stargzd_prepares_joined_ahead_total 2' '$WORK/scrape.txt'"
read -r LAYER _ < <(esgz_layer_info "$WORK/esgz")
check "  ... lazily: part of the data layer's blob was fetched, not all of it" $PYTHON -c "
import json, sys
s = json.load(open('$WORK/status.json'))
l = [l for l in s['layers'] if l['digest'] == '$LAYER'][0]
assert l['image'] == '$IMG' and 0 < l['fetched_bytes'] < l['blob_bytes'], l
"

# Two of everything: a second image sharing the first one's base layer, pulled twice at once.
# Each pull's hold finds what is in use (the base, mounted; for the later of the two, the data
# layer the earlier one started) and starts only the rest: one data layer load for both pulls,
# and one Prepare, which finds it loaded or loading.
mkdir -p "$WORK/l3/data"
head -c 4000000 /dev/urandom >"$WORK/l3/data/other.bin"
OTHER_SUM=$(sha256sum "$WORK/l3/data/other.bin" | cut -d' ' -f1)
make_image "$WORK/oci2" v2 "$WORK/l1" "$WORK/l3" >/dev/null
check "the second image is eStargz" make_estargz_image "$WORK/oci2" "$WORK/esgz2"
check "  ... and pushed" push_image "$WORK/esgz2" v2 private
IMG2=$PRIV/private:v2
joins_before=$(grep -cE "its Prepare finds it (loaded|loading) ahead of it" "$WORK/stargzd.log")
$PYTHON "$CRI_CLIENT" "$WORK/cri.sock" pull "$IMG2" kubelet "$PASSWORD" >"$WORK/cri2a.out" 2>&1 & pa=$!
$PYTHON "$CRI_CLIENT" "$WORK/cri.sock" pull "$IMG2" kubelet "$PASSWORD" >"$WORK/cri2b.out" 2>&1 & pb=$!
wait $pa; ra=$?; wait $pb; rb=$?
check "two PullImages of the second image at once both succeed" bash -c "[[ $ra -eq 0 && $rb -eq 0 ]]"
check "  ... the first pull's hold starts the data layer only, the base being in use" grep -qF "image $IMG2: 1 of its 2 layers load ahead of containerd's Prepare (1 in use already)" "$WORK/stargzd.log"
check "  ... the second pull's hold starts nothing" grep -qF "image $IMG2: 0 of its 2 layers load ahead of containerd's Prepare (2 in use already)" "$WORK/stargzd.log"
check "  ... one Prepare, which finds the data layer there" bash -c "[[ \$(grep -cE 'its Prepare finds it (loaded|loading) ahead of it' '$WORK/stargzd.log') -eq $((joins_before + 1)) ]]"
out=$($CTR run --rm --snapshotter stargz "$IMG2" c2 sha256sum /data/other.bin 2>&1)
check "  ... and the second image runs with its bytes" grep -q "$OTHER_SUM" <<<"$out"
check "the password is in no log, status or metric" bash -c "! grep -rqF '$PASSWORD' '$WORK/stargzd.log' '$WORK/status.json' '$WORK/scrape.txt'"
check "  ... nor its base64" bash -c "! grep -rqF \"\$(printf %s 'kubelet:$PASSWORD' | base64 -w0)\" '$WORK/stargzd.log' '$WORK/status.json' '$WORK/scrape.txt'"
# A shutdown in the middle: a third image's pull is sent, and the daemon is stopped as soon as
# the proxy's pull has its layers loading (containerd's Prepares then still to come, or in
# flight).  The holds go with the stop; the daemon stops cleanly (the asan-integration run
# checks that nothing leaks or is used after free), and the client gets an answer.
mkdir -p "$WORK/l4/data"
head -c 8000000 /dev/urandom >"$WORK/l4/data/third.bin"
make_image "$WORK/oci3" v3 "$WORK/l1" "$WORK/l4" >/dev/null
make_estargz_image "$WORK/oci3" "$WORK/esgz3" && push_image "$WORK/esgz3" v3 private
IMG3=$PRIV/private:v3
timeout 30 $PYTHON "$CRI_CLIENT" "$WORK/cri.sock" pull "$IMG3" kubelet "$PASSWORD" >"$WORK/cri3.out" 2>&1 & pc=$!
check "a third pull's layers start loading ahead" wait_for 10 grep -qF "image $IMG3: " "$WORK/stargzd.log"
stop_stargzd TERM
check "stargzd with the proxy stops cleanly, that pull in flight" bash -c "[[ $EXIT_CODE -eq 0 ]]"
wait $pc; rc3=$?
check "  ... and the pull's client got an answer (not the timeout)" bash -c "[[ $rc3 -ne 124 ]]"
check "the proxy's socket is removed" bash -c "[[ ! -e '$WORK/cri.sock' ]]"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
finish
