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
# The layer is a real file mix: /usr/lib/python3 and /usr/share/perl of this machine (copied).
#   curl-link    (ARCHIVE_LINK=1, the default) curl of the blob over the bench link (link.sh)
#   cold-link    tar of a fresh mount (defaults, + ARCHIVE_LINK_OPTS) over the same link
# ARCHIVE_ONLY_LINK=1 runs only the two link cases.  STARGZD_BIN=... measures another binary.
# Not part of make check.   RUNS=5 tools/bench/archive.sh
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export STARGZD_TOP=$TOP
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/lib/fixtures.sh"
RUNS=${RUNS:-5}
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
# lib.sh's trap (_cleanup: its spawned registry and mounts) must run too: a registry left behind
# keeps the descriptor of the bench lock it inherited from flock(1), and every bench waits for good.
trap 'rm -rf "$NATIVE"; _cleanup' EXIT
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
timed() {   # name, prepare, command
  hyperfine --runs "$RUNS" --prepare "$2" --export-json "$WORK/$1.json" "$3" >"$WORK/$1.log" 2>&1 ||
    { echo "hyperfine $1 failed: $(tail -3 "$WORK/$1.log")" >&2; echo 0; return; }
  $PYTHON -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f %.3f" % (r["mean"], r["stddev"] or 0))' "$WORK/$1.json"
}

declare -A T
CASES="native native-warm cold local warm"
if [[ ${ARCHIVE_LINK:-1} == 1 ]]; then
  # Over the bench link (tools/bench/link.sh: 100 Mbit/s, 20 ms each way by default): curl of
  # the blob against a cold mount read with tar (issue #13: <= 1.2x curl).  The mount runs with
  # its defaults (ARCHIVE_LINK_OPTS adds options, e.g. --no-background).
  NETNS_PATH=/run/netns/${BENCH_NETNS:-stargzd-bench}
  LPORT=${LINK_PORT:-5000} RPORT=${REGISTRY_PORT:-5001}
  # The link's daemons must not inherit our fds: flock(1)'s would keep the bench lock held by
  # the registry and the proxy for as long as they live.
  ( for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; ((fd > 2 && fd < 255)) && eval "exec $fd>&-"; done
    exec bash "$TOP/tools/bench/link.sh" up ) >&2 || { echo "link.sh up failed"; exit 1; }
  nsenter --net="$NETNS_PATH" skopeo copy -q --dest-tls-verify=false "oci:$WORK/esgz:v1" \
    "docker://127.0.0.1:$RPORT/archive:v1" || { echo "push to the link registry failed"; exit 1; }
  blob_bytes=$(stat -c %s "$WORK/esgz/blobs/${DIGEST%%:*}/${DIGEST#*:}")
  T[curl-link]=$(timed curl-link true "nsenter --net=$NETNS_PATH curl -sf -o /dev/null \
    http://127.0.0.1:$LPORT/v2/archive/blobs/$DIGEST")
  cat >"$WORK/link-prepare.sh" <<SH
#!/bin/bash
pkill -TERM -f -- "--cache $WORK/cache-link " 2>/dev/null
for i in \$(seq 100); do grep -q " $mnt fuse.stargz" /proc/mounts || break; sleep 0.1; done
rm -rf "$WORK/cache-link"; mkdir -p "$mnt"
setsid nsenter --net=$NETNS_PATH "$STARGZD" mount --plain-http ${ARCHIVE_LINK_OPTS:-} --toc-digest "$TOC" \
  --cache "$WORK/cache-link" "127.0.0.1:$LPORT/archive:v1" "$DIGEST" "$mnt" >>"$WORK/mount-link.log" 2>&1 &
for i in \$(seq 300); do grep -q " $mnt fuse.stargz" /proc/mounts && break; sleep 0.05; done
$DROP
SH
  chmod +x "$WORK/link-prepare.sh"
  T[cold-link]=$(timed cold-link "$WORK/link-prepare.sh" "$(tar_of "$mnt")")
  pkill -TERM -f -- "--cache $WORK/cache-link " 2>/dev/null
  wait_for 30 bash -c "! grep -q ' $mnt fuse.stargz' /proc/mounts"
  CASES+=" curl-link cold-link"
fi
if [[ ${ARCHIVE_ONLY_LINK:-0} == 1 ]]; then
  CASES="curl-link cold-link"
  T[native]="0 0"; T[native-warm]="0 0"
else
T[native]=$(timed native "$DROP" "$(tar_of "$NATIVE")")
T[native-warm]=$(timed native-warm "$(tar_of "$NATIVE")" "$(tar_of "$NATIVE")")
# cold: every run a new mount on an empty cache (prefetch and background fetch off)
cat >"$WORK/cold-prepare.sh" <<SH
#!/bin/bash
pkill -TERM -f -- "--cache $WORK/cache-cold " 2>/dev/null
for i in \$(seq 100); do grep -q " $mnt fuse.stargz" /proc/mounts || break; sleep 0.1; done
rm -rf "$WORK/cache-cold"; mkdir -p "$mnt"
setsid "$STARGZD" mount --plain-http --no-prefetch --no-background --toc-digest "$TOC" \
  --cache "$WORK/cache-cold" "$REGISTRY/archive:v1" "$DIGEST" "$mnt" >>"$WORK/mount.log" 2>&1 &
for i in \$(seq 300); do grep -q " $mnt fuse.stargz" /proc/mounts && break; sleep 0.05; done
$DROP
SH
chmod +x "$WORK/cold-prepare.sh"
T[cold]=$(timed cold "$WORK/cold-prepare.sh" "$(tar_of "$mnt")")
pkill -TERM -f -- "--cache $WORK/cache-cold " 2>/dev/null
wait_for 30 bash -c "! grep -q ' $mnt fuse.stargz' /proc/mounts"
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
fi
stats=$(grep -so 'opens: [^;]*' "$WORK/mount.log" | tail -1 || true)   # no local/warm cases with ARCHIVE_ONLY_LINK

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }'; }
read -r n _ <<<"${T[native]}"; read -r nw _ <<<"${T[native-warm]}"
echo
echo "tar -c of a whole layer into a pipe ($files files, $((bytes / 1000000)) MB; hyperfine, $RUNS runs, mean ± sd),"
echo "$(nproc) CPUs, $(df --output=fstype /var/tmp | tail -1); registry on loopback; speed as a ratio to native"
echo
echo "| case | seconds | speed vs native (warm: vs native-warm) |"
echo "|---|---|---|"
for c in $CASES; do
  read -r m sd <<<"${T[$c]}"
  base=$n; [[ $c == *warm ]] && base=$nw
  echo "| $c | $m ± $sd | $(ratio "$m" "$base") |"
done
echo
echo "mount stats (local/warm): $stats"
if [[ -n ${T[cold-link]:-} ]]; then
  read -r cl _ <<<"${T[cold-link]}"; read -r cu _ <<<"${T[curl-link]}"
  echo "over the link ($(bash "$TOP/tools/bench/link.sh" params | sed 's/^link: //')):"
  echo "blob $((blob_bytes / 1000000)) MB: curl ${cu} s, tar -c of a cold mount ${cl} s = $(ratio "$cu" "$cl")x curl" \
    "(mount options: ${ARCHIVE_LINK_OPTS:-defaults})"
  echo "cold-link runs (s): $($PYTHON -c 'import json,sys; print(" ".join("%.2f" % t for t in json.load(open(sys.argv[1]))["results"][0]["times"]))' "$WORK/cold-link.json")"
  grep -oE 'fetched [0-9]+ bytes in [0-9]+ requests(, streamed [0-9]+ bytes)?' "$WORK/mount-link.log"
  if [[ -n ${ARCHIVE_LOGS:-} ]]; then
    mkdir -p "$ARCHIVE_LOGS" && cp "$WORK"/*.json "$WORK"/mount-link.log "$ARCHIVE_LOGS"/
  fi
fi
