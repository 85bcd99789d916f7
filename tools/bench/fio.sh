#!/usr/bin/env bash
# Read performance of a lazily mounted layer against the same file on the native filesystem
# (issue #5): sequential 1 MiB and random 4 KiB reads with fio, for
#   (a) uncached: a fresh mount and an empty chunk cache, data from a loopback registry;
#   (b) disk-cached: every chunk in the cache, page cache dropped;
#   (c) warm: page cache populated (the kernel serves; FUSE's read path only).
# The layer holds one SIZE_MB file; the mount is `stargzd mount` (the daemon's own code).
# Prints a table with MB/s, IOPS and the ratio to native.  Not part of make check.
#   tools/bench/fio.sh          SIZE_MB=256 RUNTIME=8 REPS=3
#   PASSTHROUGH=0 tools/bench/fio.sh     the same with FUSE passthrough off (every read
#                                        through the daemon), to see what passthrough buys
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export STARGZD_TOP=$TOP
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/lib/fixtures.sh"
SIZE_MB=${SIZE_MB:-256}
RUNTIME=${RUNTIME:-8}
command -v fio >/dev/null || { echo "fio missing: tools/install-deps.sh --bench"; exit 1; }

# A layer with one file of mixed content (half random, half text-like) so gzip has work.
mkdir -p "$WORK/layer/data"
$PYTHON - "$WORK/layer/data/file.bin" "$SIZE_MB" <<'PY'
import os, sys
path, mb = sys.argv[1], int(sys.argv[2])
line = b"".join(b"%08d the quick brown fox jumps over the lazy dog\n" % i for i in range(16384))
with open(path, "wb") as f:
    for i in range(mb):
        f.write(os.urandom(1 << 19) if i % 2 else line[: 1 << 19] + line[: 1 << 19][:0])
        f.write(line[: 1 << 19] if i % 2 == 0 else os.urandom(1 << 19))
PY
start_registry || { echo "registry did not start"; exit 1; }
make_image "$WORK/oci" v1 "$WORK/layer" >/dev/null
make_estargz_image "$WORK/oci" "$WORK/esgz" || exit 1
push_image "$WORK/esgz" v1 fio || exit 1
read -r DIGEST TOC < <(esgz_layer_info "$WORK/esgz")
NATIVE=/var/tmp/stargzd-fio-native.bin
cp "$WORK/layer/data/file.bin" "$NATIVE"
trap 'rm -f "$NATIVE"; _cleanup' EXIT   # and lib.sh's: its registry must not outlive us (it holds the bench lock)

mnt=$WORK/mnt
mount_layer() {   # cache dir
  mkdir -p "$mnt"
  spawn "$STARGZD" mount --plain-http --no-prefetch --no-background --toc-digest "$TOC" \
    $([[ ${PASSTHROUGH:-1} == 0 ]] && echo --no-passthrough) \
    --cache "$1" "$REGISTRY/fio:v1" "$DIGEST" "$mnt" >>"$WORK/mount.log" 2>&1
  MPID=$SPAWNED
  wait_for 30 grep -q " $mnt fuse.stargz" /proc/mounts
}
unmount_layer() { kill -TERM "$MPID"; wait_exit "$MPID" 30; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# fio → "MB/s IOPS"
# fio drops the file's page cache before a job unless told not to (invalidate=1): warm runs
# pass --invalidate=0.
run_fio() {   # file rw bs [fio args]
  fio --name=b --filename="$1" --rw="$2" --bs="$3" --size="${SIZE_MB}M" --ioengine=psync \
      --runtime="$RUNTIME" --time_based=0 --output-format=json --readonly "${@:4}" 2>/dev/null |
    $PYTHON -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["read"]; print("%.1f %.0f" % (j["bw_bytes"]/1e6, j["iops"]))'
}

# The median of REPS runs ("MB/s IOPS" each), the page cache dropped before each if COLD=1.
# Warm runs loop over the file for RUNTIME seconds: one pass of 4 KiB reads from the page
# cache takes a tenth of a second, too short to measure.
REPS=${REPS:-3}
median_fio() {   # cold(0|1) file rw bs [fio args]
  local cold=$1 i out=(); shift
  for ((i = 0; i < REPS; i++)); do
    [[ $cold == 1 ]] && drop
    out+=("$(run_fio "$@")")
  done
  printf '%s\n' "${out[@]}" | sort -n -k1,1 | sed -n "$(( (REPS + 1) / 2 ))p"
}
WARM=(--invalidate=0 --time_based=1)

declare -A R
for mode in seq rand; do
  rw=$([[ $mode == seq ]] && echo read || echo randread); bs=$([[ $mode == seq ]] && echo 1M || echo 4k)
  # native, cold and warm
  R[native-cold-$mode]=$(median_fio 1 "$NATIVE" "$rw" "$bs")
  cat "$NATIVE" >/dev/null; R[native-warm-$mode]=$(median_fio 0 "$NATIVE" "$rw" "$bs" "${WARM[@]}")
  # (a) uncached: fresh cache, fresh mount
  rm -rf "$WORK/cache-$mode"; mount_layer "$WORK/cache-$mode"; drop
  R[uncached-$mode]=$(run_fio "$mnt/data/file.bin" "$rw" "$bs")
  cat "$mnt/data/file.bin" >/dev/null   # everything into the chunk cache
  unmount_layer
  # (b) disk-cached: remount on the full cache, page cache dropped.  The first open after a
  # mount checks the cached file against its chunk digests (it reads it once) before the
  # kernel serves it (passthrough); that open is timed on its own, then the page cache is
  # dropped again so fio reads from disk.
  mount_layer "$WORK/cache-$mode"; drop
  t0=$(date +%s%N); : <"$mnt/data/file.bin"; R[firstopen-$mode]=$((($(date +%s%N) - t0) / 1000000))
  R[cached-$mode]=$(median_fio 1 "$mnt/data/file.bin" "$rw" "$bs")
  # (c) warm: page cache of the mount populated
  cat "$mnt/data/file.bin" >/dev/null
  R[warm-$mode]=$(median_fio 0 "$mnt/data/file.bin" "$rw" "$bs" "${WARM[@]}")
  unmount_layer
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo
echo "fio, ${SIZE_MB} MB file, psync, $(nproc) CPUs, passthrough $([[ ${PASSTHROUGH:-1} == 0 ]] && echo off || echo on), median of $REPS; lazily mounted layer vs native ($(df --output=fstype /var/tmp | tail -1))"
echo
echo "| case | seq 1 MiB MB/s | ratio | rand 4 KiB IOPS | ratio |"
echo "|---|---|---|---|---|"
for c in uncached cached warm; do
  base=$([[ $c == warm ]] && echo native-warm || echo native-cold)
  read -r sbw _ <<<"${R[$c-seq]}"; read -r _ riops <<<"${R[$c-rand]}"
  read -r nbw _ <<<"${R[$base-seq]}"; read -r _ niops <<<"${R[$base-rand]}"
  echo "| $c (vs $base) | $sbw | $(ratio "$sbw" "$nbw") | $riops | $(ratio "$riops" "$niops") |"
done
read -r a _ <<<"${R[native-cold-seq]}"; read -r _ b <<<"${R[native-cold-rand]}"
read -r c _ <<<"${R[native-warm-seq]}"; read -r _ d <<<"${R[native-warm-rand]}"
echo "| native cold | $a | 1 | $b | 1 |"
echo "| native warm | $c | 1 | $d | 1 |"
echo
echo "First open after a remount (cache check of the ${SIZE_MB} MB file, page cache cold): ${R[firstopen-seq]} ms, ${R[firstopen-rand]} ms."
grep -o 'opens: [^;]*' "$WORK/mount.log" | sed 's/^/mount stats: /' | tail -n 4
