#!/usr/bin/env bash
# TIMEOUT: 300
# The CRI labels through the real CRI plugin: containerd 1.6 with its CRI plugin on and
# stargzd as the CRI's snapshotter; a CRI client (Debian's python3-grpcio, raw
# runtime.v1.ImageService/PullImage, the message encoded by hand) pulls an eStargz image.
# containerd then passes only containerd.io/snapshot/cri.image-ref, cri.layer-digest and
# cri.image-layers (no stargz.* labels): the layers must still be mounted lazily, and a
# container must read the image's bytes.
# Then the image's startup profile, recorded by that run and pushed with `stargzd profile
# push`: after the image's removal and a daemon restart, a second CRI pull gets it from the
# registry in one round trip (the CRI plugin gives the manifest's digest as
# cri.manifest-digest, so the manifest's fetch and the referrers lookups go out together),
# and the layer replays it.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

$PYTHON -c 'import grpc' 2>/dev/null || { fail "python3-grpcio is installed (tools/install-deps.sh)"; finish; }
REGISTRY_LOG_LEVEL=info start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_cri_test_image cri
read -r LAYER TOC < <(esgz_layer_info "$WORK/esgz")
IMG=$REGISTRY/cri:v1

# No background fetch: the check below counts the blob bytes the pull itself moved, and
# background fetch starts 100 ms after a mount.
SG_EXTRA_CONFIG=$'background_fetch = false\nprofiles = "registry"\nprofile_quiet_ms = 1000' start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
# containerd with the CRI plugin: stargz as its snapshotter, snapshot annotations on (the
# cri.* labels), the test registry over plain HTTP through its own hosts.toml.
start_containerd_cri "$REGISTRY" || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
pass "containerd with the CRI plugin starts"

before=$(registry_blob_bytes cri)
CRI_SOCK=$WORK/containerd/containerd.sock
if $PYTHON "$CRI_CLIENT" "$CRI_SOCK" pull "$IMG" >"$WORK/cri.out" 2>&1 &&
   $PYTHON "$CRI_CLIENT" "$CRI_SOCK" status "$IMG" >>"$WORK/cri.out" 2>&1; then
  pass "CRI PullImage through containerd's CRI plugin"
else
  fail "CRI PullImage through containerd's CRI plugin" "$(tail -5 "$WORK/cri.out"; tail -5 "$WORK/containerd.log")"
fi
check "CRI ImageStatus knows the image by its tag" grep -q "repo_tags.*$IMG" "$WORK/cri.out"
pulled=$(( $(registry_blob_bytes cri) - before ))
echo "    registry sent $pulled bytes of blobs during the CRI pull (image blobs: $BLOBS bytes)"
SN="$CTR snapshots --snapshotter stargz"
check "the pull did not download the layers" bash -c "[[ $pulled -lt $((BLOBS / 2)) ]]"
check "the layers are remote snapshots" bash -c "[[ \$($SN ls | awk 'NR>1' | wc -l) -eq 2 ]] && for k in \$($SN ls | awk 'NR>1 {print \$1}'); do $SN info \$k | grep -q 'containerd.io/snapshot/remote' || exit 1; done"
check "their labels are the CRI plugin's, not stargz.*" bash -c "for k in \$($SN ls | awk 'NR>1 {print \$1}'); do i=\$($SN info \$k); grep -q 'containerd.io/snapshot/cri.layer-digest' <<<\"\$i\" && grep -q 'containerd.io/snapshot/cri.image-ref' <<<\"\$i\" && ! grep -q 'stargz.reference' <<<\"\$i\" || exit 1; done"
check "the layers are FUSE mounts" bash -c "[[ \$(grep -F '$WORK/' /proc/mounts | grep -c ' fuse.stargz ') -ge 2 ]]"
check "stargzd mounted the last layer under the CRI reference" bash -c "'$STARGZD' status --root '$SG_ROOT' | grep -A1 '^  $LAYER\$' | grep -q 'image       $IMG'"
out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sha256sum /data/big.bin 2>&1)
check "a container reads the image's bytes" grep -q "$BIG_SUM" <<<"$out"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
check "the first pull found no profile: asked about the CRI plugin's manifest digest" \
  grep -q "profile pull $IMG: none: no profile artifact refers to sha256:" "$WORK/stargzd.log"

# ---- the profile that run recorded, pushed, and pulled by the daemon at the next CRI pull ----
if wait_for 15 bash -c "'$STARGZD' profile ls --root '$SG_ROOT' | grep -q '^$TOC '"; then
  pass "the run recorded the data layer's profile"
else
  fail "the run recorded the data layer's profile" "$("$STARGZD" profile ls --root "$SG_ROOT" 2>&1)"
fi
out=$("$STARGZD" profile push --root "$SG_ROOT" --plain-http "$IMG" 2>&1)
check "profile push" grep -q "listed in the referrers tag" <<<"$out"
$CTR images rm --sync "$IMG" >/dev/null 2>&1
wait_for 10 bash -c "[[ \$($SN ls 2>/dev/null | awk 'NR>1' | wc -l) -eq 0 ]]" ||
  echo "    snapshots left after the image's removal: $($SN ls 2>&1 | tail -3)"
stop_stargzd INT
mv "$WORK/stargzd.log" "$WORK/stargzd-1.log"
start_stargzd || { fail "stargzd starts again" "$(cat "$WORK/stargzd.log")"; finish; }
# containerd's client of the proxy snapshotter reconnects to the new daemon within seconds.
# This pull goes through tools/cri-pull (the bench's CRI client), the first through Python's.
pulled=0
for _ in $(seq 20); do
  "$STARGZD_TOP/build/tools/cri-pull" "$CRI_SOCK" "$IMG" >"$WORK/cri2.out" 2>&1 && { pulled=1; break; }
  sleep 0.5
done
if [[ $pulled == 1 ]] && grep -q "^image_ref sha256:" "$WORK/cri2.out"; then
  pass "the second CRI pull (tools/cri-pull)"
else
  fail "the second CRI pull (tools/cri-pull)" "$(tail -5 "$WORK/cri2.out")"
fi
if wait_for 15 grep -q "profile pull $IMG: stored the profiles of [12] layers .*found through the referrers tag, 1 round trip)" "$WORK/stargzd.log"; then
  pass "the daemon pulled the profile in 1 round trip (the CRI plugin's manifest digest)"
else
  fail "the daemon pulled the profile in 1 round trip" "$(grep 'profile pull' "$WORK/stargzd.log")"
fi
check "the data layer replays it" grep -q "layer $LAYER: replaying its startup profile" "$WORK/stargzd.log"
out=$($CTR run --rm --snapshotter stargz "$IMG" c2 sha256sum /data/big.bin 2>&1)
check "a container reads the image's bytes again" grep -q "$BIG_SUM" <<<"$out"
check "stargzd logged no errors after the restart" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
finish
