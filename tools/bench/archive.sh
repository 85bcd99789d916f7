#!/usr/bin/env bash
# Whole-layer reads of a lazily mounted layer (issue #5; the open problem of BuildKit #1396:
# exporting or archiving a lazily pulled layer): `tar -c` of the whole tree into a pipe (GNU
# tar skips reading file data when its archive is /dev/null), timed
# by hyperfine, against the same tree extracted on the native filesystem, in the same run.
#   native       the extracted layer on ext4, page cache dropped before each run
#   native-warm  the same, page cache populated (the baseline of "warm")
#   cold         a fresh mount on an empty cache: everything comes from a loopback registry
#   local        the same layer after background fetch made it local, page cache dropped
#                (fully cached files are served by the kernel: FUSE passthrough)
#   warm         the mount again with its page cache populated
# and over the bench's default link (tools/bench/link.sh: 100 Mbit/s, 20 ms each way; issue #13's
# whole-layer goal: link-cold ÷ link-curl ≤ 1.2):
#   link-cold    from nothing to the end of `tar -c`: a fresh mount (default settings: prefetch and
#                background fetch on) on an empty cache, its TOC and every file from the registry
#                through the link
#   link-curl    curl of the same blob through the same link
# The layer is a real file mix: /usr/lib/python3 and /usr/share/perl of this machine (copied).
# Not part of make check; run it under the bench lock:
#   flock /var/tmp/stargzd-bench.lock tools/bench/archive.sh     (RUNS=5, LINK_RUNS=3; LINK=0: no
#   link cases)
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export STARGZD_TOP=$TOP
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/lib/fixtures.sh"
RUNS=${RUNS:-5}
LINK_RUNS=${LINK_RUNS:-3}
LINK=${LINK:-1}
command -v hyperfine >/dev/null || { echo "hyperfine missing: tools/install-deps.sh --bench"; exit 1; }

mkdir -p "$WORK/layer/usr/lib" "$WORK/layer/usr/share"
cp -a /usr/lib/python3* "$WORK/layer/usr/lib/" 2>/dev/null
cp -a /usr/share/perl "$WORK/layer/usr/share/" 2>/dev/null
start_registry || { echo "registry did not start"; exit 1; }
make_image "$WORK/oci" v1 "$WORK/layer" >/dev/null
make_estargz_image "$WORK/oci" "$WORK/esgz" || exit 1
push_image "$WORK/esgz" v1 archive || exit 1
read -r DIGEST TOC < <(esgz_layer_info "$WORK/esgz")
NATIVE=/var/tmp/stargzd-archive-native
rm -rf "$NATIVE"; cp -a "$WORK/layer" "$NATIVE"
trap 'rm -rf "$NATIVE"' EXIT
files=$(find "$NATIVE" -type f | wc -l); bytes=$(du -sb "$NATIVE" | cut -f1)

mnt=$WORK/mnt
mount_layer() {   # cache dir, extra args
  mkdir -p "$mnt"
  spawn "$STARGZD" mount --plain-http --toc-digest "$TOC" --cache "$1" "${@:2}" \
    "$REGISTRY/archive:v1" "$DIGEST" "$mnt" >>"$WORK/mount.log" 2>&1
  MPID=$SPAWNED
  wait_for 30 grep -q " $mnt fuse.stargz" /proc/mounts
}
unmount_layer() { kill -TERM "$MPID"; wait_exit "$MPID" 30; }
DROP='sync; echo 3 >/proc/sys/vm/drop_caches'
tar_of() { echo "tar -cf - -C $1 . | cat >/dev/null"; }
# hyperfine's mean (s) of one case
timed() {   # name, prepare, command[, runs]
  hyperfine --runs "${4:-$RUNS}" --prepare "$2" --export-json "$WORK/$1.json" "$3" >"$WORK/$1.log" 2>&1 ||
    { echo "hyperfine $1 failed: $(tail -3 "$WORK/$1.log")" >&2; echo 0; return; }
  $PYTHON -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f %.3f" % (r["mean"], r["stddev"] or 0))' "$WORK/$1.json"
}

declare -A T
T[native]=$(timed native "$DROP" "$(tar_of "$NATIVE")")
T[native-warm]=$(timed native-warm "$(tar_of "$NATIVE")" "$(tar_of "$NATIVE")")
# mount-cold.sh PIDFILE CACHE REF [FLAGS...]: a new mount on an empty cache, back when it is
# mounted; unmount-cold.sh PIDFILE: its end (the previous one's, by its pid file).  NETNS set:
# the daemon joins that network namespace (the bench link).
cat >"$WORK/unmount-cold.sh" <<SH
#!/bin/bash
if [[ -s \$1 ]]; then
  kill -TERM "\$(cat "\$1")" 2>/dev/null
  for i in \$(seq 100); do grep -q " $mnt fuse.stargz" /proc/mounts || break; sleep 0.1; done
  rm -f "\$1"
fi
SH
cat >"$WORK/mount-cold.sh" <<SH
#!/bin/bash
pidfile=\$1 cache=\$2 ref=\$3; shift 3
rm -rf "\$cache"; mkdir -p "$mnt"
setsid \${NETNS:+nsenter --net=\$NETNS} "$STARGZD" mount --plain-http --toc-digest "$TOC" \
  --cache "\$cache" "\$@" "\$ref" "$DIGEST" "$mnt" >>"$WORK/mount.log" 2>&1 </dev/null &
echo \$! >"\$pidfile"
for i in \$(seq 3000); do grep -q " $mnt fuse.stargz" /proc/mounts && exit 0; sleep 0.01; done
exit 1
SH
chmod +x "$WORK/unmount-cold.sh" "$WORK/mount-cold.sh"
# cold: every run a new mount on an empty cache (prefetch and background fetch off)
P=$WORK/cold.pid
T[cold]=$(timed cold "$WORK/unmount-cold.sh $P; $WORK/mount-cold.sh $P $WORK/cache-cold $REGISTRY/archive:v1 \
  --no-prefetch --no-background && $DROP" "$(tar_of "$mnt")")
"$WORK/unmount-cold.sh" "$P"
# local: background fetch to completion, then tar with the page cache dropped
mount_layer "$WORK/cache-local" --no-prefetch
wait_for 120 bash -c "grep -q . '$WORK/cache-local'/*/chunks.bitmap 2>/dev/null && \
  ! $PYTHON - '$WORK/cache-local' <<'PY'
import glob, sys
b = open(glob.glob(sys.argv[1] + '/*/chunks.bitmap')[0], 'rb').read()
sys.exit(0 if any(x != 0xff for x in b[:-1]) else 1)
PY"
sleep 2
T[local]=$(timed local "$DROP" "$(tar_of "$mnt")")
T[warm]=$(timed warm "$(tar_of "$mnt")" "$(tar_of "$mnt")")
unmount_layer
stats=$(grep -o 'opens: [^;]*' "$WORK/mount.log" | tail -1)

# over the bench link: the blob in the bench registry, curl and a cold mount + tar through the proxy
if [[ $LINK == 1 ]]; then
  export LINK_RATE=100mbit LINK_DELAY_MS=20   # the default profile
  NETNS=/run/netns/${BENCH_NETNS:-stargzd-bench}
  LINKP=${LINK_PORT:-5000}
  if LINKDESC=$("$TOP/tools/bench/link.sh" up) &&
    nsenter --net="$NETNS" skopeo copy -q --dest-tls-verify=false "oci:$WORK/esgz:v1" \
      "docker://127.0.0.1:${REGISTRY_PORT:-5001}/archive:v1"; then
    T[link-curl]=$(timed link-curl "$DROP" \
      "nsenter --net=$NETNS curl -sf -o /dev/null http://127.0.0.1:$LINKP/v2/archive/blobs/$DIGEST" "$LINK_RUNS")
    P=$WORK/link.pid
    T[link-cold]=$(timed link-cold "$WORK/unmount-cold.sh $P; rm -rf $WORK/cache-link; $DROP" \
      "NETNS=$NETNS $WORK/mount-cold.sh $P $WORK/cache-link 127.0.0.1:$LINKP/archive:v1 && $(tar_of "$mnt")" \
      "$LINK_RUNS")
    "$WORK/unmount-cold.sh" "$P"
  else
    echo "the bench link did not come up (tools/bench/link.sh up): no link cases" >&2
    LINK=0
  fi
fi
blob_bytes=$(stat -c %s "$WORK/esgz/blobs/sha256/${DIGEST#sha256:}")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }'; }
read -r n _ <<<"${T[native]}"; read -r nw _ <<<"${T[native-warm]}"
echo
echo "tar -c of a whole layer into a pipe ($files files, $((bytes / 1000000)) MB; hyperfine, $RUNS runs, mean ± sd),"
echo "$(nproc) CPUs, $(df --output=fstype /var/tmp | tail -1); registry on loopback; speed as a ratio to native"
echo
echo "| case | seconds | speed vs native (warm: vs native-warm) |"
echo "|---|---|---|"
for c in native native-warm cold local warm; do
  read -r m sd <<<"${T[$c]}"
  base=$n; [[ $c == *warm ]] && base=$nw
  echo "| $c | $m ± $sd | $(ratio "$m" "$base") |"
done
if [[ $LINK == 1 ]]; then
  read -r lc _ <<<"${T[link-cold]}"; read -r lu _ <<<"${T[link-curl]}"
  echo
  echo "Over the bench link ($LINKDESC), the blob $((blob_bytes / 1000)) kB; $LINK_RUNS runs, mean ± sd:"
  echo
  echo "| case | seconds |"
  echo "|---|---|"
  for c in link-curl link-cold; do read -r m sd <<<"${T[$c]}"; echo "| $c | $m ± $sd |"; done
  echo
  r=$(ratio "$lu" "$lc")
  echo "whole layer, cold: tar -c of the lazily mounted layer ÷ curl of its blob, same link: $r" \
    "($(awk -v r="$r" 'BEGIN { print (r <= 1.2 ? "met" : "not met") }'), goal ≤ 1.2)"
fi
echo
echo "mount stats (local/warm): $stats"
