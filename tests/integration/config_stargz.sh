#!/usr/bin/env bash
# TIMEOUT: 300
# A stargz-snapshotter config.toml (its documented keys: docs/overview.md, fs/config) given to
# stargzd as it is: the daemon starts with a warning for each key that has no meaning here
# and no error, and two mapped keys take effect in a real lazy run through containerd:
# `noprefetch = true` (no byte prefetched, where the defaults prefetch the image's
# prioritized file) and `[fuse] passthrough = false` (no open passed through, where the
# defaults pass a cached file's opens to the kernel).  The proof is read from the metrics
# endpoint (tests/integration/metrics.sh checks the endpoint itself).
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data"
head -c 3000000 /dev/urandom >"$WORK/l2/data/hot.bin"      # prioritized: prefetched
head -c 3000000 /dev/urandom >"$WORK/l2/data/cold.bin"
echo "small file" >"$WORK/l2/data/small.txt"
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
printf 'data/hot.bin\n' >"$WORK/prio.txt"
check "eStargz conversion with a prioritized file" make_estargz_image "$WORK/oci" "$WORK/esgz" --prioritize "$WORK/prio.txt"
check "eStargz image pushed" push_image "$WORK/esgz" v1 cfg
read -r LAYER _ < <(esgz_layer_info "$WORK/esgz")
IMG=$REGISTRY/cfg:v1
MPORT=$(free_port)
MURL=http://127.0.0.1:$MPORT/metrics
mkdir -p "$WORK/certs.d"; echo "{}" >"$WORK/no-docker-config.json"
OURS="plain_http_localhost = true
hosts_dir = \"$WORK/certs.d\"
docker_config = \"$WORK/no-docker-config.json\""

# stargz-snapshotter's config as its documentation writes it (metrics_address moved to a
# free port, the CRI proxy's listen_path into the test's directory).
cat >"$WORK/stargz.toml" <<TOML
$OURS
# --- stargz-snapshotter (containerd-stargz-grpc) config.toml ---
metrics_address = "127.0.0.1:$MPORT"
noprefetch = true
no_background_fetch = true
prefetch_timeout_sec = 10
max_concurrency = 2
metadata_store = "memory"

[blob]
check_always = true
max_retries = 1
fetching_timeout_sec = 300
chunk_size = 50000

[directory_cache]
max_lru_cache_entry = 10
direct = true

[fuse]
passthrough = false
attr_timeout = 1
entry_timeout = 1

# Stargz Snapshotter proxies CRI Image Service into containerd socket.
[cri_keychain]
enable_keychain = true
image_service_path = "/run/containerd/containerd.sock"
listen_path = "$WORK/cri.sock"

# Use Kubernetes secrets accessible by the kubeconfig \`/etc/kubernetes/snapshotter/config.conf\`.
[kubeconfig_keychain]
enable_keychain = true
kubeconfig_path = "/etc/kubernetes/snapshotter/config.conf"

# Use \`mirrorhost.io\` as a mirrored host of \`exampleregistry.io\` and
# use plain HTTP for connecting to the mirror host.
[[resolver.host."exampleregistry.io".mirrors]]
host = "mirrorhost.io"
insecure = true

# Use plain HTTP for connecting to \`exampleregistry.io\`.
[[resolver.host."exampleregistry.io".mirrors]]
host = "exampleregistry.io"
insecure = true

[[resolver.host."registry2:5000".mirrors]]
  host = "registry2:5000"
  [resolver.host."registry2:5000".mirrors.header]
    x-custom-2 = ["value3", "value4"]
TOML
# The same run with our defaults, for contrast.
cat >"$WORK/defaults.toml" <<TOML
$OURS
metrics_address = "127.0.0.1:$MPORT"
no_background_fetch = true
TOML

value() {   # FAMILY -> the value of FAMILY{...$LAYER...} in $WORK/scrape.txt (0 if absent)
  local v
  v=$(grep -E "^$1\\{[^}]*\"$LAYER\"" "$WORK/scrape.txt" | head -1 | awk '{print $2}')
  echo "${v:-0}"
}
# rpull, then a container that reads the prioritized file and opens a cached file twice;
# scrape while it still runs.
lazy_run() {   # NAME
  local i ok=0
  # Retried: containerd's client reconnects to a restarted stargzd within a few seconds.
  for i in $(seq 10); do
    ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
      --snapshotter stargz "$IMG" >>"$WORK/rpull.log" 2>&1 && { ok=1; break; }
    sleep 1
  done
  [[ $ok == 1 ]] || return 1
  sleep 2   # prefetch of the small layer, when on, is over by now
  $CTR run --rm --snapshotter stargz "$IMG" "$1" sh -c \
    'cat /data/small.txt; cat /data/small.txt; sha256sum /data/hot.bin; echo done; sleep 6' \
    >"$WORK/$1.out" 2>&1 &
  RUN_PID=$!
  wait_for 40 grep -q '^done' "$WORK/$1.out" || return 1
  curl -sf -o "$WORK/scrape.txt" "$MURL" || return 1
  $CTR task ls | grep -q "^$1 .*RUNNING"
}
stop_all() {
  wait "$RUN_PID" 2>/dev/null
  $CTR images rm --sync "$IMG" >/dev/null 2>&1
  stop_stargzd TERM
}

# --- stargz-snapshotter's config ---
cp "$WORK/stargz.toml" "$WORK/stargzd.toml"
SG_ROOT=$WORK/root-stargz start_stargzd || { fail "stargzd starts with stargz-snapshotter's config" "$(tail -5 "$WORK/stargzd.log")"; finish; }
pass "stargzd starts with stargz-snapshotter's config"
for key in prefetch_timeout_sec max_concurrency metadata_store blob.check_always blob.chunk_size \
           directory_cache.max_lru_cache_entry directory_cache.direct \
           kubeconfig_keychain.kubeconfig_path; do
  check "a warning names $key" grep -q "warn .*stargzd.toml:[0-9]*: stargz-snapshotter's $key has no effect here" "$WORK/stargzd.log"
done
check "only warnings: no error logged" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
check "nothing else warned about at start" bash -c "[[ \$(grep -c ' warn ' '$WORK/stargzd.log') -eq 9 ]]"
# The snapshot socket listens before the proxy starts and logs: wait for the line.
check "[cri_keychain] starts the CRI image-service proxy" wait_for 5 grep -q "CRI image service on $WORK/cri.sock, forwarded to /run/containerd/containerd.sock" "$WORK/stargzd.log"
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
check "lazy run with stargz-snapshotter's config" lazy_run c1
check "  the container read the files" grep -q "small file" "$WORK/c1.out"
A_PREFETCH=$(value stargz_fs_layer_prefetch_size_bytes)
A_PT=$(value stargzd_passthrough_opens_total)
A_REQS=$(value stargzd_fuse_requests_total)
check "noprefetch = true: nothing prefetched ($A_PREFETCH bytes)" bash -c "[[ $A_PREFETCH -eq 0 ]]"
check "[fuse] passthrough = false: no open passed through ($A_PT; $A_REQS FUSE requests)" bash -c "[[ $A_PT -eq 0 && $A_REQS -gt 0 ]]"
stop_all
check "  and the unmount log line says passthrough off" grep -q "layer $LAYER at .*unmounted: .*passthrough off" "$WORK/stargzd.log"

# --- our defaults: the same run prefetches and passes opens through ---
cp "$WORK/defaults.toml" "$WORK/stargzd.toml"
SG_ROOT=$WORK/root-defaults start_stargzd || { fail "stargzd restarts with the defaults"; finish; }
check "lazy run with the defaults" lazy_run c2
B_PREFETCH=$(value stargz_fs_layer_prefetch_size_bytes)
B_PT=$(value stargzd_passthrough_opens_total)
check "  defaults: the prioritized file was prefetched ($B_PREFETCH bytes)" bash -c "[[ $B_PREFETCH -gt 1000000 ]]"
check "  defaults: cached files' opens passed through ($B_PT)" bash -c "[[ $B_PT -ge 1 ]]"
stop_all

# A typo in one of our keys stops the daemon at start, naming it.
printf '%s\npassthrouh = false\n' "$OURS" >"$WORK/typo.toml"
"$STARGZD" --foreground --root "$WORK/root-typo" --address "$WORK/typo.sock" --config "$WORK/typo.toml" >"$WORK/typo.log" 2>&1
rc=$?
check "a typo in our keys is an error (exit $rc) naming it and its line" bash -c "[[ $rc -eq 2 ]] && grep -q 'typo.toml:4: unknown key \"passthrouh\"' '$WORK/typo.log'"
[[ ${KEEP:-} ]] && { cp -r "$WORK/stargzd.log" "$WORK"/*.out "$WORK/rpull.log" /tmp/i16/ 2>/dev/null; }
finish
