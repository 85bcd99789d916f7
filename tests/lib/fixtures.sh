# Fixtures for end-to-end tests: a real registry, real containerd with stargzd as its proxy
# snapshotter, and small images built locally.  Source after tests/integration/lib.sh.
#
#   start_registry [NAME]          -> $REGISTRY (127.0.0.1:PORT, plain HTTP), $REGISTRY_PID
#   make_busybox_rootfs DIR        a minimal rootfs: busybox-static + applet links
#   make_image OCI_DIR TAG DIR...  OCI layout, one gzip layer per DIR (tests/lib/mkimage.py)
#   push_image OCI_DIR TAG REPO    -> $REGISTRY/REPO:TAG
#   start_stargzd                  -> $SG_ROOT, $SG_SOCK, $SG_PID, log $WORK/stargzd.log
#   stop_stargzd [SIGNAL]
#   start_containerd_cri REGISTRY  the same with the CRI plugin on (stargz, cri.* labels), $CTR in
#                                  namespace k8s.io; tests/lib/cri.py ($CRI_CLIENT) is kubelet's side
#   start_containerd               -> $CTR (ctr with the right address), log $WORK/containerd.log;
#                                  CONTAINERD_DISABLED_PLUGINS (default the CRI plugin) and
#                                  CONTAINERD_EXTRA_CONFIG (TOML appended) change its config
#   run_after_restart IMG NAME CMD... -> $RUN_OUT: ctr run, retried for 10 s while containerd's
#                                  client reconnects to a restarted stargzd
#   esgz_layer_info OCI_DIR        "<layer digest> <toc digest>" of the image's last layer
FIXTURES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's interpreter: the test-side Python packages (python3-grpcio, ...) live there.
PYTHON=/usr/bin/python3

free_port() {
  $PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_registry() {   # [NAME]: another registry beside the first, in $WORK/NAME
  local port name=${1:-registry} dir=$WORK/${1:-registry}
  port=$(free_port)
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: ${REGISTRY_LOG_LEVEL:-warn}
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
  spawn docker-registry serve "$dir/config.yml" >"$WORK/$name.log" 2>&1
  REGISTRY=127.0.0.1:$port
  REGISTRY_PID=$SPAWNED
  wait_for 20 curl -sf "http://$REGISTRY/v2/" -o /dev/null
}

make_busybox_rootfs() {
  local root=$1 applet
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh cat ls echo sha256sum wc head stat true sleep id env; do
    ln -sf busybox "$root/bin/$applet"
  done
  echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
  chmod 1777 "$root/tmp"
}

# A two-layer image in $WORK/oci (tag v1): a busybox rootfs, then /data/big.bin, 3 MB of
# random bytes whose sha256 goes to BIG_SUM; converted to eStargz in $WORK/esgz and pushed as
# REPO:v1 (both checked).
make_busybox_big_image() {   # REPO
  make_busybox_rootfs "$WORK/l1"
  mkdir -p "$WORK/l2/data"
  head -c 3000000 /dev/urandom >"$WORK/l2/data/big.bin"
  BIG_SUM=$(sha256sum "$WORK/l2/data/big.bin" | cut -d' ' -f1)
  make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
  check "eStargz conversion" make_estargz_image "$WORK/oci" "$WORK/esgz"
  check "image pushed" push_image "$WORK/esgz" v1 "$1"
}

# The first pull of IMAGE (two eStargz layers) on this daemon loaded both layers ahead of
# containerd's Prepares, and both Prepares joined them (the daemon's log).
check_two_layers_loaded_ahead() {   # IMAGE
  check "  ... both layers load ahead of containerd's Prepare" grep -qF \
    "image $1: 2 of its 2 layers load ahead of containerd's Prepare (0 in use already)" "$WORK/stargzd.log"
  check "  ... and both Prepares find them (log)" \
    bash -c "[[ \$(grep -cE 'its Prepare finds it (loaded|loading) ahead of it' '$WORK/stargzd.log') -eq 2 ]]"
}

# After a stop: the daemon's last word is its clean stop, with the CPU time it used.
check_logged_clean_stop() {   # WHAT
  check "$1" grep -q 'info  stopped; CPU time [0-9.]* s user, [0-9.]* s system$' "$WORK/stargzd.log"
}

# After a stop: the daemon said, for each lazy mount it unmounted or handed over, that every
# FUSE request got its reply (at least one such mount, none with a request left unanswered).
check_fuse_requests_answered() {
  check "every FUSE request got exactly one reply (the stop's accounts)" bash -c "
    grep -oE 'FUSE requests [0-9]+, replies [0-9]+, [0-9]+ unanswered' '$WORK/stargzd.log' >'$WORK/fuse-accounts'
    [[ -s '$WORK/fuse-accounts' ]] &&
      ! awk '{ gsub(\",\", \"\"); if (\$3 != \$5 || \$6 != 0) bad = 1 } END { exit !bad }' '$WORK/fuse-accounts' &&
      ! grep -q 'unanswered for' '$WORK/stargzd.log'"
}

make_image() {
  local out=$1 tag=$2; shift 2
  $PYTHON "$FIXTURES_DIR/mkimage.py" "$out" "$tag" "$@"
}

push_image() {
  local oci=$1 tag=$2 repo=$3
  skopeo copy -q --dest-tls-verify=false "oci:$oci:$tag" "docker://$REGISTRY/$repo:$tag"
}

start_stargzd() {
  SG_ROOT=${SG_ROOT:-$WORK/stargzd-root}
  SG_SOCK=${SG_SOCK:-$WORK/stargzd.sock}
  # The test registry is plain HTTP on 127.0.0.1; empty certs.d and docker config so that
  # nothing of the machine's own configuration leaks in.
  mkdir -p "$WORK/certs.d"
  [[ -f $WORK/no-docker-config.json ]] || echo "{}" >"$WORK/no-docker-config.json"
  [[ -f $WORK/stargzd.toml ]] || cat >"$WORK/stargzd.toml" <<CFG
plain_http_localhost = true
hosts_dir = "$WORK/certs.d"
docker_config = "$WORK/no-docker-config.json"
${SG_EXTRA_CONFIG:-}
CFG
  spawn "$STARGZD" --foreground --root "$SG_ROOT" --address "$SG_SOCK" --log-level debug \
    --config "$WORK/stargzd.toml" "$@" >>"$WORK/stargzd.log" 2>&1
  SG_PID=$SPAWNED
  wait_for 10 test -S "$SG_SOCK"
}

stop_stargzd() {
  kill "-${1:-TERM}" "$SG_PID" 2>/dev/null
  wait_exit "$SG_PID" 20
}

start_containerd() {
  local d=$WORK/containerd
  mkdir -p "$d"
  cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = [${CONTAINERD_DISABLED_PLUGINS-\"io.containerd.grpc.v1.cri\"}]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[proxy_plugins.stargz]
  type = "snapshot"
  address = "$SG_SOCK"
${CONTAINERD_EXTRA_CONFIG:-}
TOML
  spawn containerd --config "$d/config.toml" >"$WORK/containerd.log" 2>&1
  CONTAINERD_PID=$SPAWNED
  CTR="ctr --address $d/containerd.sock"
  wait_for 20 $CTR version >/dev/null
}

# containerd with its CRI plugin on (stargz as its snapshotter, snapshot annotations on: the
# cri.* labels) and REGISTRY reachable over plain HTTP through a hosts.toml of its own; $CTR
# is in the CRI's namespace, k8s.io.  tests/lib/cri.py is the CRI client.
CRI_CLIENT=$FIXTURES_DIR/cri.py
# DIR/REGISTRY/hosts.toml for containerd: stargzd's resolve hook on 127.0.0.1:PORT first (it
# answers 404 and loads the image ahead), then the registry itself over plain HTTP.
write_hook_hosts_toml() {   # DIR REGISTRY PORT
  mkdir -p "$1/$2"
  cat >"$1/$2/hosts.toml" <<TOML
server = "http://$2"
[host."http://127.0.0.1:$3"]
  capabilities = ["pull", "resolve"]
[host."http://$2"]
  capabilities = ["pull", "resolve"]
TOML
}

start_containerd_cri() {   # REGISTRY
  mkdir -p "$WORK/cri-certs.d/$1" "$WORK/cni/bin" "$WORK/cni/conf"
  cat >"$WORK/cri-certs.d/$1/hosts.toml" <<TOML
server = "http://$1"
[host."http://$1"]
  capabilities = ["pull", "resolve"]
TOML
  CONTAINERD_DISABLED_PLUGINS="" CONTAINERD_EXTRA_CONFIG="[plugins.\"io.containerd.grpc.v1.cri\"]
  stream_server_address = \"127.0.0.1\"
  stream_server_port = \"0\"
  [plugins.\"io.containerd.grpc.v1.cri\".cni]
    bin_dir = \"$WORK/cni/bin\"
    conf_dir = \"$WORK/cni/conf\"
  [plugins.\"io.containerd.grpc.v1.cri\".containerd]
    snapshotter = \"stargz\"
    disable_snapshot_annotations = false
  [plugins.\"io.containerd.grpc.v1.cri\".registry]
    config_path = \"$WORK/cri-certs.d\"" start_containerd || return 1
  CTR="$CTR -n k8s.io"
}

# Bytes the registry sent for blob requests of a repository so far (from its access log,
# which needs REGISTRY_LOG_LEVEL=info).
registry_blob_bytes() {
  grep 'response completed' "$WORK/registry.log" | grep "/v2/$1/blobs/" |
    grep -oE 'http.response.written=[0-9]+' | cut -d= -f2 | awk '{s+=$1} END {print s+0}'
}

# Converts an OCI layout to eStargz with stargzify (tools/stargzify --oci-layout).
STARGZIFY=${STARGZIFY:-$STARGZD_TOP/build/tools/stargzify}
make_estargz_image() {
  local src=$1 dst=$2; shift 2
  "$STARGZIFY" --no-progress "$@" --oci-layout "$src" "$dst" >/dev/null
}

run_after_restart() {
  local img=$1 name=$2 i; shift 2
  RUN_OUT=""
  for i in $(seq 10); do
    RUN_OUT=$($CTR run --rm --snapshotter stargz "$img" "$name" "$@" 2>&1) && return 0
    sleep 1
  done
  return 1
}

esgz_layer_info() {
  $PYTHON - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(os.path.join(d, "blobs", *idx["manifests"][0]["digest"].split(":"))))
l = m["layers"][-1]
print(l["digest"], l["annotations"]["containerd.io/snapshot/stargz/toc.digest"])
PY
}

# A two-layer eStargz image for the CRI tests, pushed as REPO:v1: busybox, then /data/big.bin
# (6 MB, read by the tests; its sha256 in BIG_SUM) and /data/unread.bin (3 MB, never read, so
# that a full download shows).  Sets BIG_SUM and BLOBS (the image's blob bytes).
make_cri_test_image() {   # REPO
  make_busybox_rootfs "$WORK/l1"
  mkdir -p "$WORK/l2/data"
  head -c 6000000 /dev/urandom >"$WORK/l2/data/big.bin"
  head -c 3000000 /dev/urandom >"$WORK/l2/data/unread.bin"
  BIG_SUM=$(sha256sum "$WORK/l2/data/big.bin" | cut -d' ' -f1)
  make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
  check "eStargz conversion" make_estargz_image "$WORK/oci" "$WORK/esgz"
  check "eStargz image pushed" push_image "$WORK/esgz" v1 "$1"
  BLOBS=$(du -cb "$WORK/esgz/blobs/sha256" | tail -1 | cut -f1)
}
