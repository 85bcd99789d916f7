#!/usr/bin/env bash
# TIMEOUT: 300
# tools/stargzify: converts generated layers (all entry types, xattrs, hardlinks, PAX and GNU
# long names, empty files, multi-chunk files, duplicates, a 0-byte layer, gzip and stdin input)
# and checks (a) the gunzipped blob is a tar with the input's entries, byte for byte, (b) the
# reference implementation (Go estargz, tests/helpers/estargz-ref) opens and verifies it,
# (c) the printed digests and size are right, (d) the TOC matches the reference converter's TOC
# for the same input (offsets aside), plus error handling and the OCI layout mode.
#   STARGZIFY       the binary (default: $STARGZD_TOP/build/tools/stargzify)
#   READBACK        our reader's dump helper (default: tests/helpers/stargzify_readback in the
#                   same build dir; built by `make unit-bins`)
#   ESTARGZ_REF_DIR where tests/helpers/estargz-ref/build.sh caches the Go helper
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
STARGZIFY=${STARGZIFY:-$STARGZD_TOP/build/tools/stargzify}
PY="python3 $STARGZD_TOP/tests/integration/stargzify_tar.py"
READBACK=${READBACK:-$(dirname "$(dirname "$STARGZIFY")")/tests/helpers/stargzify_readback}

if [[ ! -x $STARGZIFY ]]; then
  fail "stargzify binary" "$STARGZIFY not built (make BUILD=... \$BUILD/tools/stargzify)"
  finish
fi
REF=$("$STARGZD_TOP/tests/helpers/estargz-ref/build.sh" 2>"$WORK/ref-build.log")
ref_rc=$?
if [[ $ref_rc -ne 0 ]]; then
  REF=""
  if [[ $ref_rc -eq 77 ]]; then skip "reference helper" "$(cat "$WORK/ref-build.log")"
  else fail "reference helper builds" "$(tail -n 5 "$WORK/ref-build.log")"; fi
fi

# field FILE KEY: a value from stargzify's text output
field() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }

# convert NAME INPUT [OPTIONS...]: runs stargzify and all checks on the result.
convert() {
  local name=$1 in=$2; shift 2
  local out=$WORK/$name.blob res=$WORK/$name.res prio=""
  local a prev_was_prio=0
  for a in "$@"; do [[ $prev_was_prio == 1 ]] && prio=$a; prev_was_prio=0; [[ $a == --prioritize ]] && prev_was_prio=1; done
  if ! "$STARGZIFY" "$@" "$in" "$out" >"$res" 2>"$WORK/$name.err"; then
    fail "$name: converts" "$(cat "$WORK/$name.err")"
    return
  fi
  pass "$name: converts"
  gzip -dc "$out" >"$WORK/$name.out.tar" 2>"$WORK/$name.gz.err" || { fail "$name: gunzips" "$(cat "$WORK/$name.gz.err")"; return; }
  local plain=$in
  if [[ $in == - ]]; then plain=$STDIN_SRC; fi
  if [[ $(head -c2 "$plain" | od -An -tx1 | tr -d ' ') == 1f8b ]]; then
    gzip -dc "$plain" >"$WORK/$name.in.tar"; plain=$WORK/$name.in.tar
  fi
  if $PY compare "$plain" "$WORK/$name.out.tar" $prio 2>"$WORK/$name.cmp"; then
    pass "$name: (a) output tar equals input entry by entry"
  else
    fail "$name: (a) output tar equals input" "$(head -n 10 "$WORK/$name.cmp")"
  fi
  # (c) digests
  local blob toc diff usize
  blob=$(field "$res" blob-digest); toc=$(field "$res" toc-digest); diff=$(field "$res" diff-id)
  usize=$(field "$res" uncompressed-size)
  if [[ $blob == "sha256:$(sha256sum <"$out" | cut -d' ' -f1)" &&
        $diff == "sha256:$(sha256sum <"$WORK/$name.out.tar" | cut -d' ' -f1)" &&
        $usize == "$(stat -c %s "$WORK/$name.out.tar")" &&
        $(field "$res" blob-size) == "$(stat -c %s "$out")" ]]; then
    pass "$name: (c) blob digest, diffID, sizes"
  else
    fail "$name: (c) blob digest, diffID, sizes" "$(cat "$res")"
  fi
  # footer: 51 bytes, TOC offset in the extra field
  if [[ $(tail -c 51 "$out" | head -c 16 | od -An -tx1 | tr -d ' \n') == 1f8b08040000000000ff1a0053471600 &&
        $(tail -c 35 "$out" | head -c 22) == *STARGZ ]]; then
    pass "$name: footer"
  else
    fail "$name: footer" "$(tail -c 51 "$out" | od -An -c | head -n 4)"
  fi
  # (e) round trip through our own reader (fs/estargz.h), every chunk digest checked
  if [[ -x $READBACK ]]; then
    if "$READBACK" "$out" "$toc" >"$WORK/$name.rb" 2>"$WORK/$name.rb.err" &&
       $PY readback "$plain" "$WORK/$name.rb" 2>>"$WORK/$name.rb.err"; then
      pass "$name: (e) our reader reads back every entry and byte"
    else
      fail "$name: (e) our reader reads it back" "$(head -n 8 "$WORK/$name.rb.err")"
    fi
  elif [[ -z ${readback_skipped:-} ]]; then
    readback_skipped=1
    skip "round trip through our reader" "$READBACK not built (make unit-bins)"
  fi
  [[ -n $REF ]] || return
  if "$REF" toc "$out" >"$WORK/$name.toc" 2>"$WORK/$name.toc.err" &&
     [[ $toc == "sha256:$(sha256sum <"$WORK/$name.toc" | cut -d' ' -f1)" ]]; then
    pass "$name: (c) TOC digest"
  else
    fail "$name: (c) TOC digest" "$toc; $(cat "$WORK/$name.toc.err")"
  fi
  # (b) the reference opens it, checks the TOC digest and every chunk digest
  if "$REF" verify "$out" "$toc" >"$WORK/$name.verify" 2>&1; then
    pass "$name: (b) reference verification ($(cat "$WORK/$name.verify"))"
  else
    fail "$name: (b) reference verification" "$(cat "$WORK/$name.verify")"
  fi
}

# ref_toc NAME INPUT [ref options]: the reference converter's TOC must equal ours
ref_toc() {
  local name=$1 in=$2; shift 2
  [[ -n $REF ]] || return
  if ! "$REF" convert "$@" "$in" "$WORK/$name.ref.blob" >"$WORK/$name.ref.res" 2>&1; then
    fail "$name: reference converts" "$(cat "$WORK/$name.ref.res")"
    return
  fi
  "$REF" list "$WORK/$name.blob" >"$WORK/$name.list" 2>&1 &&
    "$REF" list "$WORK/$name.ref.blob" >"$WORK/$name.ref.list" 2>&1 &&
    $PY toc-compare "$WORK/$name.list" "$WORK/$name.ref.list" 2>"$WORK/$name.tcmp"
  if [[ $? -eq 0 ]]; then
    pass "$name: (d) TOC equals the reference converter's"
  else
    fail "$name: (d) TOC equals the reference converter's" "$(head -n 6 "$WORK/$name.tcmp")"
  fi
}

for kind in pax gnu ustar emptytar onlydirs; do
  $PY gen $kind "$WORK/$kind.tar" || fail "generate $kind"
done

convert pax "$WORK/pax.tar" --chunk-size 64K
ref_toc pax "$WORK/pax.tar" -chunk-size 65536
convert pax-default "$WORK/pax.tar"
ref_toc pax-default "$WORK/pax.tar"
convert gnu "$WORK/gnu.tar" --chunk-size 64K --level 1
ref_toc gnu "$WORK/gnu.tar" -chunk-size 65536
convert ustar "$WORK/ustar.tar"
ref_toc ustar "$WORK/ustar.tar"
convert emptytar "$WORK/emptytar.tar"
ref_toc emptytar "$WORK/emptytar.tar"
convert onlydirs "$WORK/onlydirs.tar"

# A 0-byte layer (no tar blocks at all).
: >"$WORK/zero.tar"
convert zero "$WORK/zero.tar"
ref_toc zero "$WORK/zero.tar"

# GNU tar from a real directory: xattrs, hardlinks, devices, fifo, sparse-free.
src=$WORK/tree
mkdir -p "$src/usr/bin" "$src/dev" "$src/var/empty"
printf 'hello\n' >"$src/usr/bin/hello"
head -c 1000000 /dev/urandom >"$src/usr/bin/random"
ln "$src/usr/bin/hello" "$src/usr/bin/hello-hard"
ln -s hello "$src/usr/bin/hello-sym"
mknod "$src/dev/null" c 1 3 2>/dev/null
mknod "$src/dev/loop0" b 7 0 2>/dev/null
mkfifo "$src/dev/fifo"
python3 -c "import os,sys; os.setxattr(sys.argv[1], 'user.mime', b'text/plain')" "$src/usr/bin/hello" 2>/dev/null
chmod 4755 "$src/usr/bin/hello"
chown 123:456 "$src/usr/bin/random"
tar --xattrs --format=posix --numeric-owner -cf "$WORK/gnutar.tar" -C "$src" .
convert gnutar "$WORK/gnutar.tar" --chunk-size 256K
ref_toc gnutar "$WORK/gnutar.tar" -chunk-size 262144
tar --format=gnu -cf "$WORK/gnutar-gnu.tar" -C "$src" .
convert gnutar-gnu "$WORK/gnutar-gnu.tar"

# gzip input (by magic), and stdin input (tar and tar.gz)
gzip -c "$WORK/pax.tar" >"$WORK/pax.tar.gz"
convert gzip-in "$WORK/pax.tar.gz" --chunk-size 64K
cat "$WORK/pax.tar" "$WORK/pax.tar" | head -c 0 >/dev/null
STDIN_SRC=$WORK/gnu.tar convert stdin-tar - <"$WORK/gnu.tar"
STDIN_SRC=$WORK/pax.tar.gz convert stdin-gz - --chunk-size 64K <"$WORK/pax.tar.gz"
# a multi-member gzip input
{ head -c 4096 "$WORK/ustar.tar" | gzip -c; tail -c +4097 "$WORK/ustar.tar" | gzip -c; } >"$WORK/multi.tar.gz"
convert gzip-multi "$WORK/multi.tar.gz"

# Same input twice gives the same blob (deterministic), with 1 or 2 threads.
"$STARGZIFY" --threads 1 --chunk-size 64K "$WORK/pax.tar" "$WORK/det1.blob" >/dev/null 2>&1
"$STARGZIFY" --threads 2 --chunk-size 64K "$WORK/pax.tar" "$WORK/det2.blob" >/dev/null 2>&1
check "deterministic output across thread counts" cmp -s "$WORK/det1.blob" "$WORK/det2.blob"

# Prioritized files: placed first (with their parent dirs and link targets), then the
# .prefetch.landmark; a missing path is a warning.
printf '%s\n' ./etc/hard /big/multi etc/missing-file >"$WORK/prio.txt"
convert prio "$WORK/pax.tar" --chunk-size 64K --prioritize "$WORK/prio.txt"
printf '%s\n' ./etc/hard /big/multi >"$WORK/prio-ref.txt"
convert prio-ref "$WORK/pax.tar" --chunk-size 64K --prioritize "$WORK/prio-ref.txt"
ref_toc prio-ref "$WORK/pax.tar" -chunk-size 65536 -prioritize "$WORK/prio-ref.txt"
check "missing prioritized file is a warning" grep -q "etc/missing-file is not in the layer" "$WORK/prio.err"

# --json
if "$STARGZIFY" --json "$WORK/ustar.tar" "$WORK/j.blob" >"$WORK/j.json" 2>&1 &&
   python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert set(d) >= {"blobDigest","tocDigest","diffID","uncompressedSize","blobSize"}' "$WORK/j.json"; then
  pass "--json output"
else
  fail "--json output" "$(cat "$WORK/j.json")"
fi

# Bad input: clear errors, non-zero exit, no output file left behind.
bad() {   # NAME PATTERN INPUT
  local name=$1 pat=$2 in=$3
  "$STARGZIFY" "$in" "$WORK/bad.blob" >"$WORK/bad.out" 2>"$WORK/bad.err"
  local rc=$?
  if [[ $rc -ne 0 && $rc -lt 128 ]] && grep -q -- "$pat" "$WORK/bad.err" && [[ ! -e $WORK/bad.blob ]] &&
     ! ls "$WORK"/bad.blob.tmp.* >/dev/null 2>&1; then
    pass "bad input: $name"
  else
    fail "bad input: $name" "rc=$rc: $(cat "$WORK/bad.err")"
  fi
  rm -f "$WORK/bad.blob" "$WORK"/bad.blob.tmp.*
}
head -c 100000 "$WORK/pax.tar" >"$WORK/trunc.tar"
bad "truncated tar" "truncated" "$WORK/trunc.tar"
head -c 700 "$WORK/pax.tar" >"$WORK/trunc2.tar"
bad "truncated header" "truncated" "$WORK/trunc2.tar"
{ head -c 512 "$WORK/ustar.tar" | sed 's/u\//X\//'; tail -c +513 "$WORK/ustar.tar"; } >"$WORK/badsum.tar"
bad "bad checksum" "checksum" "$WORK/badsum.tar"
head -c 5000 /dev/urandom >"$WORK/garbage.bin"
bad "garbage" "tar entry 0" "$WORK/garbage.bin"
head -c 20000 "$WORK/pax.tar.gz" >"$WORK/trunc.tar.gz"
bad "truncated gzip" "corrupt or truncated gzip" "$WORK/trunc.tar.gz"
truncate -s 1M "$WORK/sparse-src"; echo x >>"$WORK/sparse-src"
tar --sparse --format=posix -cf "$WORK/sparse.tar" -C "$WORK" sparse-src
bad "sparse (PAX)" "sparse files" "$WORK/sparse.tar"
tar --sparse --format=gnu -cf "$WORK/sparse-gnu.tar" -C "$WORK" sparse-src
bad "sparse (GNU)" "sparse files" "$WORK/sparse-gnu.tar"
python3 - "$WORK/global.tar" <<'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT, pax_headers={"mtime": "1"}) as tf:
    ti = tarfile.TarInfo("f"); ti.size = 1; tf.addfile(ti, io.BytesIO(b"x"))
EOF
bad "PAX global header" "global" "$WORK/global.tar"
bad "missing input" "cannot open" "$WORK/does-not-exist"
"$STARGZIFY" --chunk-size 0 "$WORK/pax.tar" "$WORK/x.blob" >/dev/null 2>"$WORK/opt.err"
check "bad option value: exit 2" bash -c "[[ $? -eq 2 ]] && grep -q chunk-size '$WORK/opt.err'"

# git archive's comment-only global header is dropped with a warning.
python3 - "$WORK/gitarch.tar" <<'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "0123abcd"}) as tf:
    ti = tarfile.TarInfo("f"); ti.size = 1; tf.addfile(ti, io.BytesIO(b"x"))
EOF
if "$STARGZIFY" "$WORK/gitarch.tar" "$WORK/gitarch.blob" >/dev/null 2>"$WORK/gitarch.err" &&
   grep -q "dropping a PAX global header" "$WORK/gitarch.err"; then
  pass "comment-only global header dropped"
else
  fail "comment-only global header dropped" "$(cat "$WORK/gitarch.err")"
fi

# OCI image layout mode: two layers (one gzip, one plain), config + manifest rewritten.
oci=$WORK/oci
mkdir -p "$oci/blobs/sha256"
put() { local d; d=$(sha256sum <"$1" | cut -d' ' -f1); cp "$1" "$oci/blobs/sha256/$d"; echo "$d"; }
l1=$(put "$WORK/pax.tar.gz"); l1s=$(stat -c %s "$WORK/pax.tar.gz")
l2=$(put "$WORK/ustar.tar"); l2s=$(stat -c %s "$WORK/ustar.tar")
d1=$(gzip -dc "$WORK/pax.tar.gz" | sha256sum | cut -d' ' -f1); d2=$(sha256sum <"$WORK/ustar.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]},"history":[{"created_by":"x"},{"created_by":"y"}]}' "$d1" "$d2" >"$WORK/config.json"
c=$(put "$WORK/config.json"); cs=$(stat -c %s "$WORK/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s},{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$c" "$cs" "$l1" "$l1s" "$l2" "$l2s" >"$WORK/manifest.json"
m=$(put "$WORK/manifest.json"); ms=$(stat -c %s "$WORK/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$m" "$ms" >"$oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
if "$STARGZIFY" --oci-layout "$oci" "$WORK/oci-out" >"$WORK/oci.res" 2>"$WORK/oci.err"; then
  pass "oci: converts"
  if python3 - "$WORK/oci-out" "${REF:-}" >"$WORK/oci.check" 2>&1 <<'EOF'
import hashlib, json, os, subprocess, sys, gzip
d, ref = sys.argv[1], sys.argv[2]
def blob(dg):
    p = os.path.join(d, "blobs", "sha256", dg.split(":")[1])
    b = open(p, "rb").read()
    assert "sha256:" + hashlib.sha256(b).hexdigest() == dg, "blob digest " + dg
    return b, p
idx = json.load(open(os.path.join(d, "index.json")))
assert json.load(open(os.path.join(d, "oci-layout")))["imageLayoutVersion"] == "1.0.0"
m = idx["manifests"][0]
assert m["annotations"]["org.opencontainers.image.ref.name"] == "v1"
mb, _ = blob(m["digest"]); assert len(mb) == m["size"]
man = json.loads(mb)
assert man["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
cb, _ = blob(man["config"]["digest"]); assert len(cb) == man["config"]["size"]
cfg = json.loads(cb)
assert cfg["config"]["Cmd"] == ["/bin/sh"] and len(cfg["history"]) == 2
assert len(man["layers"]) == 2 == len(cfg["rootfs"]["diff_ids"])
for l, diff in zip(man["layers"], cfg["rootfs"]["diff_ids"]):
    assert l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    b, p = blob(l["digest"]); assert len(b) == l["size"]
    raw = gzip.decompress(b)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff, "diff_id"
    a = l["annotations"]
    assert int(a["io.containers.estargz.uncompressed-size"]) == len(raw)
    if ref:
        subprocess.run([ref, "verify", p, a["containerd.io/snapshot/stargz/toc.digest"]], check=True)
print("ok")
EOF
  then pass "oci: manifest, config diff_ids, annotations, blobs verify"
  else fail "oci: layout check" "$(tail -n 5 "$WORK/oci.check")"; fi
  if command -v skopeo >/dev/null; then
    if skopeo inspect --raw "oci:$WORK/oci-out:v1" >/dev/null 2>"$WORK/skopeo.err" &&
       skopeo copy -q "oci:$WORK/oci-out:v1" "dir:$WORK/skopeo-dir" >/dev/null 2>>"$WORK/skopeo.err"; then
      pass "oci: skopeo reads and copies the converted layout"
    else
      fail "oci: skopeo copy" "$(tail -n 3 "$WORK/skopeo.err")"
    fi
  else
    skip "oci: skopeo copy" "skopeo not installed"
  fi
  # Push to a real registry; the pushed manifest keeps the eStargz annotations.
  if command -v skopeo >/dev/null && command -v docker-registry >/dev/null; then
    # start_registry takes a port the kernel reports free; a port derived from the PID once
    # landed on one in use in CI, and the registry never answered.
    if ! start_registry; then
      fail "oci: push to a registry" "docker-registry did not answer on $REGISTRY: $(tail -n 3 "$WORK/registry.log" | tr '\n' ' ')"
    elif skopeo copy -q --dest-tls-verify=false "oci:$WORK/oci-out:v1" "docker://$REGISTRY/esgz:v1" \
         >/dev/null 2>"$WORK/push.err" &&
       skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/esgz:v1" >"$WORK/pushed.json" 2>>"$WORK/push.err" &&
       python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert all("containerd.io/snapshot/stargz/toc.digest" in l["annotations"] and "io.containers.estargz.uncompressed-size" in l["annotations"] for l in m["layers"])' "$WORK/pushed.json" 2>>"$WORK/push.err"; then
      pass "oci: skopeo pushes it to a registry, annotations kept"
    else
      fail "oci: push to a registry" "$(tail -n 3 "$WORK/push.err" "$WORK/registry.log" 2>/dev/null | tr '\n' ' ')"
    fi
  fi
else
  fail "oci: converts" "$(cat "$WORK/oci.err")"
fi

finish
