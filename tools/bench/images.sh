#!/usr/bin/env bash
# Builds the benchmark images and pushes them to the link's registry (tools/bench/link.sh up).
#
#   tools/bench/images.sh            (BENCH_QUICK=1: base + python + imports)
#
# Cached under $BENCH_WORK (default /var/tmp/stargzd-bench); delete a piece to rebuild it:
#   rootfs/base          debootstrap --variant=minbase bookworm, from this machine's apt mirror
#   rootfs/NAME-upper    overlay upper dir of `apt-get install NAME's packages` on top of base
#   layers/*.tar.gz      OCI layers (whiteouts in .wh. form; apt caches and lists left out)
#   oci/IMAGE/legacy     gzip OCI layout (multi-layer: base [+ python3 | build-essential]; the
#                        imports image is the python image's layers with its own command)
#   oci/IMAGE/esgz       stargzify --oci-layout of legacy
#   oci/IMAGE/esgz-opt   the same with --prioritize: the files the workload opens, recorded with
#                        strace -f of the workload in a chroot of the image's rootfs
#   needed/IMAGE.list    that list (layer paths, first-use order)
# Pushed as 127.0.0.1:$LINK_PORT/bench-IMAGE:FORM (through the unshaped port $REGISTRY_PORT).
set -euo pipefail
. "$(dirname "$0")/common.sh"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, overlay mounts, chroot)"
[[ -x $STARGZIFY ]] || die "$STARGZIFY missing: make -j2 all"
for c in debootstrap skopeo strace; do command -v $c >/dev/null || die "$c missing: tools/install-deps.sh --bench"; done
RF=$BENCH_WORK/rootfs
LY=$BENCH_WORK/layers
mkdir -p "$RF" "$LY" "$BENCH_WORK/oci" "$BENCH_WORK/needed"

# The machine's Debian mirror (deb822 or one-line sources).
mirror() {
  local u
  u=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' |
    grep -v -- '-security' | grep -m1 debian || true)
  [[ -n $u ]] || u=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '{print $2}' | grep -v -- '-security' | grep -m1 debian || true)
  echo "${u:-http://deb.debian.org/debian}"
}

# Mounts for a chroot into DIR; unmounted by chroot_umount (also on exit).
MOUNTED=()
chroot_mount() {
  local d=$1
  mount -t proc proc "$d/proc" && MOUNTED+=("$d/proc")
  mount --rbind /dev "$d/dev" && mount --make-rslave "$d/dev" && MOUNTED+=("$d/dev")
  mount -t tmpfs tmpfs "$d/tmp" && MOUNTED+=("$d/tmp")
}
umount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -R "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || true; done
  MOUNTED=()
}
trap umount_all EXIT

base_rootfs() {
  [[ -e $RF/base.done ]] && return 0
  local m; m=$(mirror)
  log "debootstrap --variant=minbase bookworm from $m (about 1.5 min)"
  rm -rf "$RF/base" "$RF/base.tmp"
  debootstrap --variant=minbase bookworm "$RF/base.tmp" "$m" >"$RF/debootstrap.log" 2>&1 ||
    die "debootstrap failed, see $RF/debootstrap.log"
  mv "$RF/base.tmp" "$RF/base"
  touch "$RF/base.done"
}

# upper_rootfs NAME PACKAGES...: apt-get install on an overlay over base; the upper dir is the layer.
upper_rootfs() {
  local name=$1; shift
  [[ -e $RF/$name.done ]] && return 0
  log "installing $* on top of base (overlay upper dir $RF/$name-upper)"
  rm -rf "$RF/$name-upper" "$RF/$name-work" "$RF/$name-merged"
  mkdir -p "$RF/$name-upper" "$RF/$name-work" "$RF/$name-merged"
  mount -t overlay overlay -o "lowerdir=$RF/base,upperdir=$RF/$name-upper,workdir=$RF/$name-work" \
    "$RF/$name-merged"
  MOUNTED+=("$RF/$name-merged")
  chroot_mount "$RF/$name-merged"
  cp /etc/resolv.conf "$RF/$name-merged/etc/resolv.conf" 2>/dev/null || true
  chroot "$RF/$name-merged" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $*" \
    >"$RF/$name-apt.log" 2>&1 || { umount_all; die "apt-get install $* failed, see $RF/$name-apt.log"; }
  umount_all
  rm -rf "$RF/$name-work" "$RF/$name-merged"
  touch "$RF/$name.done"
}

EXCLUDES=(--exclude 'proc/*' --exclude 'sys/*' --exclude 'dev/*' --exclude 'tmp/*' --exclude 'run/*'
  --exclude 'var/cache/apt/*' --exclude 'var/lib/apt/lists/*' --exclude 'var/log/*'
  --exclude 'var/cache/debconf/*-old' --exclude 'var/lib/dpkg/*-old')
make_layer() {  # NAME SRC [--upper]
  local name=$1 src=$2; shift 2
  [[ -s $LY/$name.tar.gz && -s $LY/$name.tar.gz.diffid ]] && return 0
  log "layer $name from $src"
  $BENCHLIB layer "$src" "$LY/$name.tar.gz" "$@" "${EXCLUDES[@]}" >/dev/null
}

layers_of() { case $1 in base) echo base ;; python | imports) echo base python3 ;; gcc) echo base build-essential ;; esac; }

# record IMAGE: strace the workload in a chroot of the image's rootfs (a throw-away overlay).
record() {
  local img=$1 out=$BENCH_WORK/needed/$1.list lowers="" l d argv=()
  [[ -s $out ]] && return 0
  for l in $(layers_of "$img"); do
    [[ $l == base ]] && d=$RF/base || d=$RF/$l-upper
    lowers="$d${lowers:+:$lowers}"
  done
  local t=$BENCH_WORK/record/$img
  rm -rf "$t"; mkdir -p "$t/upper" "$t/work" "$t/merged" "$t/trace"
  mount -t overlay overlay -o "lowerdir=$lowers,upperdir=$t/upper,workdir=$t/work" "$t/merged"
  MOUNTED+=("$t/merged")
  chroot_mount "$t/merged"
  mapfile -t argv < <(workload_argv "$img")
  log "recording the files $img's workload opens: ${argv[*]}"
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    strace -qq -f -ff -o "$t/trace/tr" -e trace=open,openat,execve,chroot -e signal=none \
    chroot "$t/merged" "${argv[@]}" >"$t/out.txt" 2>&1 || { umount_all; die "workload failed in chroot: $(cat "$t/out.txt")"; }
  $BENCHLIB accessed "$t/trace" "$t/merged" >"$out.tmp"
  umount_all
  mv "$out.tmp" "$out"
  log "$img: $(wc -l <"$out") paths"
}

oci_image() {  # IMAGE
  local img=$1 o=$BENCH_WORK/oci/$1 l gz=() argv=() cmd
  for l in $(layers_of "$img"); do gz+=("$LY/$l.tar.gz"); done
  mapfile -t argv < <(workload_argv "$img")
  cmd=$($PY -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${argv[@]}")
  if [[ ! -e $o/legacy/index.json ]]; then
    rm -rf "$o/legacy"; $BENCHLIB oci "$o/legacy" latest "$cmd" "${gz[@]}"
  fi
  if [[ ! -e $o/esgz/index.json ]]; then
    log "$img: stargzify --oci-layout"
    rm -rf "$o/esgz"; "$STARGZIFY" --no-progress --oci-layout "$o/legacy" "$o/esgz" >"$o/esgz.log" 2>&1 ||
      die "stargzify failed: $(tail -3 "$o/esgz.log")"
  fi
  if [[ ! -e $o/esgz-opt/index.json ]]; then
    record "$img"
    log "$img: stargzify --prioritize (optimized)"
    rm -rf "$o/esgz-opt"
    "$STARGZIFY" --no-progress --prioritize "$BENCH_WORK/needed/$img.list" --oci-layout "$o/legacy" "$o/esgz-opt" \
      >"$o/esgz-opt.log" 2>&1 || die "stargzify failed: $(tail -3 "$o/esgz-opt.log")"
  fi
}

push() {  # IMAGE FORM
  local src=$BENCH_WORK/oci/$1/$2 ref=127.0.0.1:$REGISTRY_PORT/bench-$1:$2 stamp=$BENCH_WORK/oci/$1/$2.pushed
  local d; d=$(sha256sum "$src/index.json" | cut -c1-64)
  # Pushed already (and the registry still has it)?
  if [[ -e $stamp && $(cat "$stamp") == "$d" ]] &&
    innet curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
      "http://127.0.0.1:$REGISTRY_PORT/v2/bench-$1/manifests/$2"; then
    return 0
  fi
  log "push $ref"
  innet skopeo copy -q --dest-tls-verify=false "oci:$src:latest" "docker://$ref" || die "push $ref failed"
  echo "$d" >"$stamp"
}

base_rootfs
make_layer base "$RF/base"
for img in $(bench_images); do
  case $img in
    python | imports) upper_rootfs python3 python3; make_layer python3 "$RF/python3-upper" --upper ;;
    gcc) upper_rootfs build-essential build-essential; make_layer build-essential "$RF/build-essential-upper" --upper ;;
  esac
  oci_image "$img"
done
"$BENCH_DIR/link.sh" up >/dev/null
for img in $(bench_images); do
  for form in legacy esgz esgz-opt; do push "$img" "$form"; done
done
for img in $(bench_images); do
  for form in legacy esgz esgz-opt; do
    printf '%-7s %-9s %s layers, %s bytes\n' "$img" "$form" \
      "$($PY -c 'import json,sys; m=json.load(open(sys.argv[1])); print(len(m["layers"]))' \
        "$BENCH_WORK/oci/$img/$form/blobs/sha256/$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$BENCH_WORK/oci/$img/$form/index.json")")" \
      "$($PY -c 'import json,sys,os
o=sys.argv[1]; b=o+"/blobs/sha256/"
m=json.load(open(b+json.load(open(o+"/index.json"))["manifests"][0]["digest"][7:]))
print(sum(l["size"] for l in m["layers"]))' "$BENCH_WORK/oci/$img/$form")"
  done
done
