# Fixtures for end-to-end tests: a real registry, real containerd with stargzd as its proxy
# snapshotter, and small images built locally.  Source after tests/integration/lib.sh.
#
#   start_registry                 -> $REGISTRY (127.0.0.1:PORT, plain HTTP)
#   make_busybox_rootfs DIR        a minimal rootfs: busybox-static + applet links
#   make_image OCI_DIR TAG DIR...  OCI layout, one gzip layer per DIR (tests/lib/mkimage.py)
#   push_image OCI_DIR TAG REPO    -> $REGISTRY/REPO:TAG
#   start_stargzd                  -> $SG_ROOT, $SG_SOCK, $SG_PID, log $WORK/stargzd.log
#   stop_stargzd [SIGNAL]
#   start_containerd               -> $CTR (ctr with the right address), log $WORK/containerd.log
FIXTURES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's interpreter: the test-side Python packages (python3-grpcio, ...) live there.
PYTHON=/usr/bin/python3

free_port() {
  $PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_registry() {
  local port dir=$WORK/registry
  port=$(free_port)
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
  spawn docker-registry serve "$dir/config.yml" >"$WORK/registry.log" 2>&1
  REGISTRY=127.0.0.1:$port
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
  spawn "$STARGZD" --foreground --root "$SG_ROOT" --address "$SG_SOCK" --log-level debug "$@" \
    >>"$WORK/stargzd.log" 2>&1
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
disabled_plugins = ["io.containerd.grpc.v1.cri"]
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
TOML
  spawn containerd --config "$d/config.toml" >"$WORK/containerd.log" 2>&1
  CONTAINERD_PID=$SPAWNED
  CTR="ctr --address $d/containerd.sock"
  wait_for 20 $CTR version >/dev/null
}
