#!/usr/bin/env bash
# TIMEOUT: 240
# A whole layer read through a cold lazy mount with `tar -c` (issue #13): the layer comes from
# a registry (stargzd mount, prefetch and background fetch off, so that only the reads fetch),
# tar's archive extracts to the same tree as the blob itself, the reads file after file made
# the rest of the layer stream (the mount's closing line says "streamed"), in far fewer
# requests than files, and the whole blob came over about once.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

# ---- a layer of many files in a few directories (incompressible, so bytes are bytes) ----
S=$WORK/src
for d in lib lib/pkg-a lib/pkg-b share/doc; do mkdir -p "$S/$d"; done
$PYTHON - "$S" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(13)
dirs = ["lib", "lib/pkg-a", "lib/pkg-b", "share/doc"]
for i in range(400):
    d = dirs[i % len(dirs)]
    size = rnd.choice([300, 2000, 9000, 40000, 120000])
    with open(os.path.join(root, d, "f%03d.py" % i), "wb") as f:
        f.write(rnd.randbytes(size))
with open(os.path.join(root, "lib", "big.so"), "wb") as f:
    f.write(rnd.randbytes(6 << 20))
PY
find "$S" -exec touch -h -d @1700000000 {} +
files=$(find "$S" -type f | wc -l)

start_registry || { fail "registry starts"; finish; exit; }
make_image "$WORK/oci" v1 "$S" >/dev/null
check "stargzify converts the image" make_estargz_image "$WORK/oci" "$WORK/esgz"
check "push" push_image "$WORK/esgz" v1 tarlayer
read -r DIGEST TOC < <(esgz_layer_info "$WORK/esgz")
BLOB=$WORK/esgz/blobs/${DIGEST%%:*}/${DIGEST#*:}
BLOB_SIZE=$(stat -c %s "$BLOB")

# What a full pull extracts: the blob untarred (no whiteouts in this layer; a directory's
# files come after other entries, so its time is set at the end).
mkdir -p "$WORK/exp"
check "the blob untars" bash -c "gzip -dc '$BLOB' | tar --numeric-owner --delay-directory-restore -xpf - -C '$WORK/exp'"

mnt=$WORK/mnt
mkdir -p "$mnt"
spawn "$STARGZD" mount --plain-http --no-prefetch --no-background --toc-digest "$TOC" \
  --cache "$WORK/cache" "$REGISTRY/tarlayer:v1" "$DIGEST" "$mnt" >>"$WORK/mount.log" 2>&1
MPID=$SPAWNED
if ! wait_for 20 grep -q " $mnt fuse.stargz" /proc/mounts; then
  fail "mounted" "$(tail -5 "$WORK/mount.log")"
  finish; exit
fi
pass "mounted"

check "tar -c reads the whole mount" bash -c "tar --numeric-owner -C '$mnt' -cf - . >'$WORK/mnt.tar'"
mkdir -p "$WORK/got"
check "its archive extracts" tar --numeric-owner -xpf "$WORK/mnt.tar" -C "$WORK/got"
if $PYTHON "$STARGZD_TOP/tests/lib/treecmp.py" "$WORK/exp" "$WORK/got" >"$WORK/cmp.log" 2>&1; then
  pass "tar of the mount equals the blob's tree ($(tail -1 "$WORK/cmp.log"))"
else
  fail "tar of the mount equals the blob's tree" "$(head -20 "$WORK/cmp.log")"
fi

kill -TERM "$MPID"
wait_exit "$MPID" 20
line=$(grep -E "layer $DIGEST .*fetched" "$WORK/mount.log" | tail -1)
fetched=$(grep -oE 'fetched [0-9]+ bytes' <<<"$line" | grep -oE '[0-9]+')
requests=$(grep -oE 'in [0-9]+ requests' <<<"$line" | grep -oE '[0-9]+')
echo "    $files files, blob $BLOB_SIZE bytes: fetched ${fetched:-?} bytes in ${requests:-?} requests;" \
  "$(grep -oE 'streamed [0-9]+ bytes' <<<"$line" || echo 'no stream')"
check "the reads made the layer stream" grep -q "streamed [1-9]" <<<"$line"
check "far fewer requests than files" bash -c "[[ -n '$requests' && $requests -lt $((files / 4)) ]]"
check "the blob came over about once" bash -c "[[ -n '$fetched' && $fetched -le $((BLOB_SIZE * 11 / 10)) ]]"
finish
