#!/usr/bin/env bash
# Benchmark: tools/stargzify against the reference converter (Go estargz.Build with default
# options, through tests/helpers/estargz-ref) on the same realistic layer.
#
#   tools/bench/stargzify.sh [LAYER.tar ...]
#
# Without arguments it builds a Debian bookworm minbase rootfs with python3 (debootstrap, ~2-4
# minutes, needs the Debian mirror; cached) and tars it (without the downloaded .debs that
# debootstrap leaves in /var/cache/apt/archives); with SMALLFILES=1 it also makes a
# node_modules-shaped layer of 100,000 files of 1-4 KiB.  For each layer it reports wall time
# (hyperfine, RUNS runs), the ratio, peak RSS and output sizes, and checks that both outputs
# pass the reference verification.
#   BUILD      build dir holding tools/stargzify (default: build)
#   BENCH_DIR  cache for the rootfs and layers (default: build-bench/stargzify; not under a
#              build dir: the Makefile's *.d scan would trip over the rootfs's /etc/rc?.d)
#   RUNS       hyperfine runs per command (default: 3)
#   LEVEL      extra stargzify run at this gzip level (default: 9, the reference's level;
#              empty = skip)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$TOP/$BUILD
BENCH_DIR=${BENCH_DIR:-$TOP/build-bench/stargzify}
RUNS=${RUNS:-3}
LEVEL=${LEVEL-9}
STARGZIFY=$BUILD/tools/stargzify
mkdir -p "$BENCH_DIR"
[[ -x $STARGZIFY ]] || { echo "build $STARGZIFY first: make BUILD=$BUILD $STARGZIFY" >&2; exit 1; }
DEF_LEVEL=$("$STARGZIFY" --help | sed -n 's/.*gzip level 0-12 (libdeflate; default \([0-9]*\)).*/\1/p')
REF=$("$TOP/tests/helpers/estargz-ref/build.sh")
command -v hyperfine >/dev/null || { echo "hyperfine missing (tools/install-deps.sh)" >&2; exit 1; }

layers=("$@")
if [[ ${#layers[@]} -eq 0 ]]; then
  deb=$BENCH_DIR/debian-python3.tar
  if [[ ! -s $deb ]]; then
    if [[ ! -x $BENCH_DIR/rootfs/usr/bin/python3 ]]; then
      echo "debootstrap bookworm (minbase + python3) into $BENCH_DIR/rootfs ..." >&2
      rm -rf "$BENCH_DIR/rootfs"
      debootstrap --variant=minbase --include=python3 bookworm "$BENCH_DIR/rootfs" \
        http://deb.debian.org/debian >"$BENCH_DIR/debootstrap.log" 2>&1 ||
        { echo "debootstrap failed, see $BENCH_DIR/debootstrap.log" >&2; exit 1; }
    fi
    tar --numeric-owner --xattrs --format=posix -cf "$deb.tmp" -C "$BENCH_DIR/rootfs" \
      --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
      --exclude='./var/cache/apt/archives/*.deb' . && mv "$deb.tmp" "$deb"
  fi
  layers+=("$deb")
  if [[ ${SMALLFILES:-0} == 1 ]]; then
    small=$BENCH_DIR/smallfiles-100k.tar
    if [[ ! -s $small ]]; then
      python3 - "$small" <<'EOF'
import io, random, sys, tarfile
rnd = random.Random(1)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz{}();=. \n") for _ in range(8)) for _ in range(5000)]
with tarfile.open(sys.argv[1] + ".tmp", "w", format=tarfile.PAX_FORMAT) as tf:
    for d in range(1000):
        ti = tarfile.TarInfo("node_modules/pkg%04d/" % d); ti.type = tarfile.DIRTYPE; ti.mode = 0o755
        tf.addfile(ti)
        for f in range(100):
            n = rnd.randint(1024, 4096)
            data = b"".join(rnd.choice(words) for _ in range(n // 8 + 1))[:n]
            ti = tarfile.TarInfo("node_modules/pkg%04d/file%03d.js" % (d, f)); ti.size = n; ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
EOF
      mv "$small.tmp" "$small"
    fi
    layers+=("$small")
  fi
fi

# peak RSS (KiB) of one run of a command
peak_rss() {
  python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}

mean() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(" ".join("%.3f" % x["mean"] for x in r))' "$1"; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "stargzify: $STARGZIFY (default level $DEF_LEVEL, 4 MiB chunks, $(nproc) threads); reference: $REF (estargz.Build defaults: gzip level 9, 4 MiB chunks)"
for layer in "${layers[@]}"; do
  name=$(basename "$layer" .tar)
  out=$BENCH_DIR/$name
  size=$(stat -c %s "$layer")
  entries=$(tar -tf "$layer" | wc -l)
  echo
  echo "== $name: $((size / 1000000)) MB tar, $entries entries"
  cmds=("$STARGZIFY --no-progress $layer $out.ours.blob" "$REF convert $layer $out.ref.blob")
  [[ -n $LEVEL ]] && cmds+=("$STARGZIFY --no-progress --level $LEVEL $layer $out.ours-l$LEVEL.blob")
  cmds+=("sh -c 'gzip -6 -c $layer >$out.gz'")   # plain single-threaded gzip, for scale
  hyperfine --runs "$RUNS" --warmup 0 --export-json "$out.hyperfine.json" --style basic "${cmds[@]}" |
    grep -E 'Time \(mean|Benchmark [0-9]|±' || true
  read -r t_ours t_ref t_l t_gz <<<"$(mean "$out.hyperfine.json")"
  [[ -n $LEVEL ]] || { t_gz=$t_l; t_l=""; }
  rss_ours=$(peak_rss $STARGZIFY --no-progress "$layer" "$out.ours.blob")
  rss_ref=$(peak_rss "$REF" convert "$layer" "$out.ref.blob")
  toc_ours=$($STARGZIFY --no-progress --json "$layer" "$out.ours.blob" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tocDigest"])')
  toc_ref=$("$REF" convert "$layer" "$out.ref.blob" | awk '$1 == "tocDigest" { print $2 }')
  v_ours=$("$REF" verify "$out.ours.blob" "$toc_ours" 2>&1 || true)
  v_ref=$("$REF" verify "$out.ref.blob" "$toc_ref" 2>&1 || true)
  python3 - "$size" "$t_ours" "$t_ref" "${t_l:-0}" "$t_gz" "$rss_ours" "$rss_ref" \
    "$(stat -c %s "$out.ours.blob")" "$(stat -c %s "$out.ref.blob")" \
    "$( [[ -n $LEVEL ]] && stat -c %s "$out.ours-l$LEVEL.blob" || echo 0)" "$(stat -c %s "$out.gz")" "$LEVEL" "$DEF_LEVEL" <<'EOF'
import sys
size, t_ours, t_ref, t_l, t_gz = int(sys.argv[1]), *map(float, sys.argv[2:6])
rss_ours, rss_ref, s_ours, s_ref, s_l, s_gz = map(int, sys.argv[6:12])
level, deflevel = sys.argv[12], sys.argv[13]
mb = size / 1e6
print("%-28s %9s %10s %11s %12s" % ("", "time s", "MB/s in", "peak RSS", "output MB"))
print("%-28s %9.2f %10.1f %8.1f MiB %12.2f" % ("stargzify (default, level %s)" % deflevel, t_ours, mb / t_ours, rss_ours / 1024, s_ours / 1e6))
print("%-28s %9.2f %10.1f %8.1f MiB %12.2f" % ("reference estargz.Build", t_ref, mb / t_ref, rss_ref / 1024, s_ref / 1e6))
if level:
    print("%-28s %9.2f %10.1f %11s %12.2f" % ("stargzify --level " + level, t_l, mb / t_l, "", s_l / 1e6))
print("%-28s %9.2f %10.1f %11s %12.2f" % ("gzip -6 (plain, 1 thread)", t_gz, mb / t_gz, "", s_gz / 1e6))
print("speedup over the reference: %.1fx (level %s)%s; output size ratio ours/ref: %.3f" % (
    t_ref / t_ours, deflevel, (", %.1fx (level %s)" % (t_ref / t_l, level)) if level else "", s_ours / s_ref))
EOF
  echo "reference verify of ours: $v_ours"
  echo "reference verify of ref:  $v_ref"
done
