#!/usr/bin/env bash
# TIMEOUT: 240
# The resolve hook (resolve_hook_address) under containerd's CRI plugin, as kubelet pulls
# without stargzd's CRI proxy: the plugin's config_path has the registry's hosts.toml list the
# hook first; a raw runtime.v1.ImageService/PullImage (tests/lib/cri.py) then makes containerd
# ask the hook, which loads the image's lazy layers before the plugin's first Prepare, and both
# Prepares (with the CRI labels only) join them; a container reads the image's bytes.  Then a
# hosts.toml whose hook is down: containerd goes on to the registry, the pull still succeeds.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

$PYTHON -c 'import grpc' 2>/dev/null || { fail "python3-grpcio is installed (tools/install-deps.sh)"; finish; }
start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_cri_test_image rhc
IMG=$REGISTRY/rhc:v1

HPORT=$(free_port)
SG_EXTRA_CONFIG="background_fetch = false
resolve_hook_address = \"127.0.0.1:$HPORT\"" start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd_cri "$REGISTRY" || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
# The hook first (containerd reads config_path's files at each pull: no restart).
write_hook_hosts_toml "$WORK/cri-certs.d" "$REGISTRY" "$HPORT"
CRI_SOCK=$WORK/containerd/containerd.sock
log_has() { grep -qF -- "$1" "$WORK/stargzd.log"; }

$PYTHON "$CRI_CLIENT" "$CRI_SOCK" pull "$IMG" >"$WORK/cri.out" 2>&1
check "CRI PullImage with the hook listed first succeeds" test $? -eq 0
check "containerd's CRI plugin asked the hook, which started the image" log_has "image $IMG: loading ahead of its pull (resolve hook, id 1"
check_two_layers_loaded_ahead "$IMG"   # Prepares that carry only the CRI labels
check "the layers are FUSE mounts" bash -c "[[ \$(grep -F '$WORK/' /proc/mounts | grep -c ' fuse.stargz ') -ge 2 ]]"
out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sha256sum /data/big.bin 2>&1)
check "a container reads the image's bytes" grep -q "$BIG_SUM" <<<"$out"

# ---- the hook down: containerd goes on to the registry ----
DEAD=$(free_port)
write_hook_hosts_toml "$WORK/cri-certs.d" "$REGISTRY" "$DEAD"
$CTR images rm "$IMG" >/dev/null 2>&1
$PYTHON "$CRI_CLIENT" "$CRI_SOCK" pull "$IMG" >"$WORK/cri2.out" 2>&1
check "with the hook's port closed, the pull still succeeds (the registry answers)" test $? -eq 0
check "  ... and nothing more was started" bash -c "[[ \$(grep -cF 'loading ahead of its pull (resolve hook' '$WORK/stargzd.log') -eq 1 ]]"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
stop_stargzd INT
check_fuse_requests_answered
finish
