#!/usr/bin/env bash
# TIMEOUT: 240
# One layer mounted with `stargzd mount` (the daemon's own code): the mounted tree equals
# what a full pull extracts from the same blob, for a layer from our converter and one from
# the reference converter; whiteouts work under overlayfs; laziness is measured; a tampered
# blob gives EIO; a remount serves from the cache; SIGTERM leaves no mount behind.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

# ---- a layer with every kind of entry ----
S=$WORK/src
mkdir -p "$S/bin" "$S/etc/opq" "$S/data/sub" "$S/dev"
printf '#!/bin/sh\necho tool\n' >"$S/bin/tool"; chmod 4755 "$S/bin/tool"
: >"$S/data/empty"
echo "small" >"$S/data/small.txt"
head -c 9000000 /dev/urandom >"$S/data/big.bin"
ln "$S/data/big.bin" "$S/data/hard.bin"
ln -s big.bin "$S/data/link"
ln -s /nonexistent/abs "$S/data/dangling"
mkfifo "$S/dev/fifo"
mknod "$S/dev/null" c 1 3
echo "x" >"$S/data/x.txt"
$PYTHON -c "import os,sys; os.setxattr(sys.argv[1], 'user.color', b'blue')" "$S/data/x.txt"
chown -R 1000:1001 "$S/data/sub"; echo owned >"$S/data/sub/f"; chown 1000:1001 "$S/data/sub/f"
: >"$S/etc/.wh.gone"                 # whiteout of a lower layer's etc/gone
: >"$S/etc/opq/.wh..wh..opq"         # etc/opq hides the lower layers' content
echo "kept" >"$S/etc/opq/kept"
# Whole-second times: the TOC keeps seconds only (the reference converter rounds), a tar
# header truncates; sub-second times would differ by construction, not by a bug.
find "$S" -exec touch -h -d @1700000000 {} +
touch -d '2021-02-03 04:05:06' "$S/data/small.txt"
tar --numeric-owner --xattrs --xattrs-include='user.*' -C "$S" -cf "$WORK/layer.tar" .

check "stargzify converts the layer" bash -c "'$STARGZIFY' --no-progress --json '$WORK/layer.tar' '$WORK/ours.blob' >'$WORK/ours.json'"
OURS_TOC=$($PYTHON -c "import json,sys; print(json.load(open(sys.argv[1]))['tocDigest'])" "$WORK/ours.json" 2>/dev/null)
REF=$(ESTARGZ_REF_DIR=${ESTARGZ_REF_DIR:-$STARGZD_TOP/build/estargz-ref} bash "$STARGZD_TOP/tests/helpers/estargz-ref/build.sh" 2>/dev/null)
if [[ -x $REF ]] && "$REF" convert "$WORK/layer.tar" "$WORK/ref.blob" >"$WORK/ref.out" 2>&1; then
  REF_TOC=$(awk '$1=="tocDigest" {print $2}' "$WORK/ref.out")
  pass "reference converter converts the layer"
else
  fail "reference converter converts the layer" "$(cat "$WORK/ref.out" 2>/dev/null)"
fi

# What a full pull would extract: the blob untarred, .wh. entries as overlay whiteouts.
expected() {   # blob dir
  mkdir -p "$2"
  gzip -dc "$1" | tar --numeric-owner --xattrs --xattrs-include='*' -xpf - -C "$2" || return 1
  $PYTHON - "$2" <<'PY'
import os, stat, sys
root = sys.argv[1]
for dirpath, dirs, files in os.walk(root):
    dir_times = os.stat(dirpath)
    changed = False
    for f in files:
        p = os.path.join(dirpath, f)
        if f == ".wh..wh..opq":
            os.unlink(p); os.setxattr(dirpath, "trusted.overlay.opaque", b"y"); changed = True
        elif f.startswith(".wh."):
            wh = os.lstat(p)
            os.unlink(p); t = os.path.join(dirpath, f[4:])
            os.mknod(t, stat.S_IFCHR | 0, os.makedev(0, 0)); os.chown(t, 0, 0)
            os.utime(t, ns=(wh.st_atime_ns, wh.st_mtime_ns), follow_symlinks=False)
            changed = True
    if changed:   # keep the directory's own time, as the tar gave it
        os.utime(dirpath, ns=(dir_times.st_atime_ns, dir_times.st_mtime_ns))
PY
}

mount_blob() {   # blob toc cache mountpoint [extra args] -> $MPID
  mkdir -p "$4"
  spawn "$STARGZD" mount --blob "$1" --toc-digest "$2" --cache "$3" "${@:5}" "$4" >>"$WORK/mount.log" 2>&1
  MPID=$SPAWNED
  wait_for 20 grep -q " $4 fuse.stargz" /proc/mounts
}

unmount_blob() {
  kill -TERM "$MPID"
  wait_exit "$MPID" 20
}

# The bookkeeping entries (stargz.index.json, landmarks) are ordinary tar entries: a full
# pull has them, so the mount shows them too and the comparison includes them (content, mode,
# owner, mtime).
compare_tree() {   # kind expected mounted label
  if $PYTHON "$STARGZD_TOP/tests/lib/treecmp.py" "$2" "$3" >"$WORK/cmp-$1.log" 2>&1; then
    pass "$4 ($(tail -1 "$WORK/cmp-$1.log"))"
  else
    fail "$4" "$(head -20 "$WORK/cmp-$1.log")"
  fi
}
for kind in ours ref; do
  blob=$WORK/$kind.blob
  [[ -f $blob ]] || continue
  toc=$([[ $kind == ours ]] && echo "$OURS_TOC" || echo "$REF_TOC")
  expected "$blob" "$WORK/exp-$kind" || fail "$kind: extract the blob"
  if mount_blob "$blob" "$toc" "$WORK/cache-$kind" "$WORK/mnt-$kind"; then
    pass "$kind: mounted"
    compare_tree "$kind" "$WORK/exp-$kind" "$WORK/mnt-$kind" "$kind: mounted tree equals the extracted tree"
    check "$kind: stargz.index.json holds the TOC" bash -c "[[ sha256:\$(sha256sum <'$WORK/mnt-$kind/stargz.index.json' | cut -d' ' -f1) == '$toc' ]]"
    if [[ $kind == ours ]]; then OURS_PID=$MPID; else unmount_blob; fi
  else
    fail "$kind: mounted" "$(tail -5 "$WORK/mount.log")"
  fi
done

# Under overlayfs, as a lower layer above another one: whiteouts and opaque dirs take effect.
L=$WORK/lower0; mkdir -p "$L/etc/opq"
echo "should be hidden" >"$L/etc/gone"; echo "hidden too" >"$L/etc/opq/old"; echo "stays" >"$L/etc/stays"
mkdir -p "$WORK/up" "$WORK/wk" "$WORK/merged"
if mount -t overlay overlay -o "lowerdir=$WORK/mnt-ours:$L,upperdir=$WORK/up,workdir=$WORK/wk" "$WORK/merged"; then
  check "overlay: whiteout hides the lower file" test ! -e "$WORK/merged/etc/gone"
  check "overlay: other lower files stay" grep -q stays "$WORK/merged/etc/stays"
  check "overlay: opaque dir hides lower content" bash -c "test ! -e '$WORK/merged/etc/opq/old' && grep -q kept '$WORK/merged/etc/opq/kept'"
  check "overlay: reads through to the lazy layer" cmp -s "$WORK/merged/data/big.bin" "$S/data/big.bin"
  umount "$WORK/merged"
else
  fail "overlay over the lazy mount"
fi

# SIGTERM: unmounted cleanly, with the fetch statistics logged.
MPID=${OURS_PID:-0}
unmount_blob
check "SIGTERM: exit 0" bash -c "[[ $EXIT_CODE -eq 0 ]]"
check "SIGTERM: mount gone" bash -c "! grep -q ' $WORK/mnt-ours ' /proc/mounts"

# Laziness: a fresh cache, one small file read; nothing else (no prefetch/background, no
# speculation: its budget is bounded, and tested below).
mount_blob "$WORK/ours.blob" "$OURS_TOC" "$WORK/cache-lazy" "$WORK/mnt-lazy" --no-background --no-prefetch --no-speculate
check "lazy: small file reads" grep -q small "$WORK/mnt-lazy/data/small.txt"
unmount_blob
fetched=$(grep -oE 'fetched [0-9]+ bytes' "$WORK/mount.log" | tail -1 | grep -oE '[0-9]+')
BLOB_SIZE=$(stat -c %s "$WORK/ours.blob")
echo "    fetched ${fetched:-?} of $BLOB_SIZE blob bytes to read one small file"
check "lazy: a small fraction of the blob was fetched" bash -c "[[ -n '$fetched' && $fetched -lt $((BLOB_SIZE / 10)) ]]"

# The fetch trace (--fetch-trace-dir, the bench's miss timeline): a fresh cache, two files
# read; the reads that waited, each range request and the layer's summary are there, in
# the format tools/bench reads (README.md, "Fetch trace").
mkdir -p "$WORK/trace"
mount_blob "$WORK/ours.blob" "$OURS_TOC" "$WORK/cache-trace" "$WORK/mnt-trace" --no-background --no-prefetch --fetch-trace-dir "$WORK/trace"
check "trace: small file reads" grep -q small "$WORK/mnt-trace/data/small.txt"
check "trace: the big file reads" cmp -s "$WORK/mnt-trace/data/big.bin" "$S/data/big.bin"
TRACE_PID=$MPID
unmount_blob
LAYER_DIGEST=sha256:$(sha256sum <"$WORK/ours.blob" | cut -d' ' -f1)
if $PYTHON - "$WORK/trace/trace-$TRACE_PID.jsonl" "$LAYER_DIGEST" >"$WORK/trace.out" 2>&1 <<'PY'
import json, sys
path, layer = sys.argv[1], sys.argv[2]
lines = [json.loads(l) for l in open(path)]
kinds = {"ondemand", "spec", "prefetch", "background", "stream", "profile"}
def need(cond, what):
    if not cond:
        sys.exit("missing: " + what)
need(lines and lines[0].get("ev") == "start" and lines[0].get("t") == 0 and
     isinstance(lines[0].get("epoch"), (int, float)) and lines[0]["epoch"] > 1.6e9,
     "the start line first, with the clock's origin on the wall clock")
need(not any(l.get("ev") == "start" for l in lines[1:]), "one start line")
lines = lines[1:]
for l in lines:
    need(l.get("layer") == layer and isinstance(l.get("t"), (int, float)) and l["t"] >= 0,
         "layer and t on every line: %r" % l)
reads = [l for l in lines if l["ev"] == "read"]
fetches = [l for l in lines if l["ev"] == "fetch"]
summary = [l for l in lines if l["ev"] == "layer"]
small = [r for r in reads if r["path"] == "data/small.txt"]
need(small and small[0]["net"] is True and small[0]["off"] == 0 and small[0]["len"] > 0 and
     small[0]["wait_ms"] > 0, "a read of data/small.txt that waited on the network")
need(any(r["path"] in ("data/big.bin", "data/hard.bin") for r in reads), "reads of data/big.bin")
need(all(set(r) == {"t", "ev", "layer", "path", "off", "len", "wait_ms", "net"} for r in reads),
     "exactly the read fields")
need(all(set(f) == {"t", "ev", "layer", "kind", "off", "len", "chunks", "spans", "ms", "ok"} and
         f["kind"] in kinds and f["ok"] is True and f["len"] > 0 and f["chunks"] >= 1 and
         1 <= f["spans"] <= f["chunks"] for f in fetches), "well-formed fetch lines")
ondemand = sum(f["len"] for f in fetches if f["kind"] == "ondemand")
need(ondemand > 0, "on-demand fetches")
need(len(summary) == 1, "one layer summary")
s = summary[0]
need(set(s["fetched"]) == kinds and set(s["used"]) == kinds, "every kind in the summary")
need(s["fetched"]["ondemand"] > 0 and 0 < s["used"]["ondemand"] <= s["fetched"]["ondemand"],
     "on-demand bytes fetched and used")
need(all(s["used"][k] <= s["fetched"][k] for k in kinds), "used <= fetched")
need(sum(s["fetched"].values()) <= sum(f["len"] for f in fetches), "chunks within the ranges")
print("%d reads waited, %d range requests (%d B on demand, %d B speculative); used %s of %s" %
      (len(reads), len(fetches), ondemand, s["fetched"]["spec"], sum(s["used"].values()),
       sum(s["fetched"].values())))
PY
then
  pass "trace: reads, range requests and the layer summary ($(tail -1 "$WORK/trace.out"))"
else
  fail "trace: reads, range requests and the layer summary" "$(tail -5 "$WORK/trace.out")"
fi

# Remount with the cache of the first mount: the big file comes from disk, not the blob.
mount_blob "$WORK/ours.blob" "$OURS_TOC" "$WORK/cache-ours" "$WORK/mnt-ours" --no-background --no-prefetch
check "remount: big file reads back" cmp -s "$WORK/mnt-ours/data/big.bin" "$S/data/big.bin"
unmount_blob
fetched=$(grep -oE 'fetched [0-9]+ bytes' "$WORK/mount.log" | tail -1 | grep -oE '[0-9]+')
check "remount: served from the cache without refetching" bash -c "[[ '$fetched' == 0 ]]"

# A tampered blob (same TOC): the bad chunk is EIO, never wrong bytes, and it is not cached.
cp "$WORK/ours.blob" "$WORK/bad.blob"
$PYTHON - "$WORK/bad.blob" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(3000000); f.write(b"\x55" * 64)   # inside big.bin's compressed chunks
PY
mount_blob "$WORK/bad.blob" "$OURS_TOC" "$WORK/cache-bad" "$WORK/mnt-bad" --no-background --no-prefetch
if cat "$WORK/mnt-bad/data/big.bin" >"$WORK/bad.out" 2>"$WORK/bad.err"; then
  fail "tampered: reading the damaged file fails"
else
  grep -q "Input/output error" "$WORK/bad.err" && pass "tampered: reading the damaged file fails with EIO" || fail "tampered: EIO" "$(cat "$WORK/bad.err")"
fi
check "tampered: what was returned before the error is correct" bash -c "cmp -s '$WORK/bad.out' <(head -c \$(stat -c %s '$WORK/bad.out') '$S/data/big.bin')"
check "tampered: other files still read" grep -q small "$WORK/mnt-bad/data/small.txt"
unmount_blob
check "tampered: logged with layer, file and offset" grep -qE 'error layer sha256:[0-9a-f]+: chunk of data/(big|hard).bin at offset [0-9]+ failed verification' "$WORK/mount.log"
# A registry that dies mid-use: reads of data not yet fetched fail with EIO within the retry
# budget (never hang), cached data keeps working, and reads succeed again once it is back.
start_registry || fail "registry starts"

# The same two layers pushed to a real registry and mounted from it (`stargzd mount REF
# LAYER-DIGEST`): the tree equals the full pull's, bookkeeping entries included.
for kind in ours ref; do
  blob=$WORK/$kind.blob
  [[ -f $blob ]] || continue
  toc=$([[ $kind == ours ]] && echo "$OURS_TOC" || echo "$REF_TOC")
  make_image "$WORK/img-$kind" v1 --esgz-blob "$blob" "$toc" >/dev/null &&
    push_image "$WORK/img-$kind" v1 "tree-$kind" || { fail "$kind: push to the registry"; continue; }
  read -r LDIGEST LTOC < <(esgz_layer_info "$WORK/img-$kind")
  mkdir -p "$WORK/mnt-reg-$kind"
  spawn "$STARGZD" mount --plain-http --no-prefetch --no-background --toc-digest "$LTOC" \
    --cache "$WORK/cache-reg-$kind" "$REGISTRY/tree-$kind:v1" "$LDIGEST" "$WORK/mnt-reg-$kind" >>"$WORK/mount.log" 2>&1
  MPID=$SPAWNED
  if wait_for 20 grep -q " $WORK/mnt-reg-$kind fuse.stargz" /proc/mounts; then
    compare_tree "reg-$kind" "$WORK/exp-$kind" "$WORK/mnt-reg-$kind" "registry $kind: mounted tree equals the extracted tree"
    unmount_blob
  else
    fail "registry $kind: mounted" "$(tail -3 "$WORK/mount.log")"
  fi
done

mkdir -p "$WORK/rl/d"
head -c 3000000 /dev/urandom >"$WORK/rl/d/a.bin"
head -c 3000000 /dev/urandom >"$WORK/rl/d/b.bin"
make_image "$WORK/rl-oci" v1 "$WORK/rl" >/dev/null
make_estargz_image "$WORK/rl-oci" "$WORK/rl-esgz" 2>/dev/null
push_image "$WORK/rl-esgz" v1 dying
read -r RDIGEST RTOC < <(esgz_layer_info "$WORK/rl-esgz")
REG_PID=$(pgrep -f "docker-registry serve $WORK/registry/config.yml" | head -1)
mkdir -p "$WORK/mnt-reg"
spawn "$STARGZD" mount --plain-http --no-prefetch --no-background --toc-digest "$RTOC" \
  --cache "$WORK/cache-reg" "$REGISTRY/dying:v1" "$RDIGEST" "$WORK/mnt-reg" >>"$WORK/mount.log" 2>&1
MPID=$SPAWNED
if wait_for 20 grep -q " $WORK/mnt-reg fuse.stargz" /proc/mounts; then
  check "registry mount: first file reads" cmp -s "$WORK/mnt-reg/d/a.bin" "$WORK/rl/d/a.bin"
  kill -KILL "$REG_PID"; sleep 0.2
  t0=$SECONDS
  if timeout 60 cat "$WORK/mnt-reg/d/b.bin" >/dev/null 2>"$WORK/dead.err"; then
    fail "dead registry: unfetched data fails"
  else
    grep -q "Input/output error" "$WORK/dead.err" && pass "dead registry: EIO after $((SECONDS - t0)) s (no hang)" ||
      fail "dead registry: EIO" "$(cat "$WORK/dead.err")"
  fi
  check "dead registry: cached data still reads" cmp -s "$WORK/mnt-reg/d/a.bin" "$WORK/rl/d/a.bin"
  spawn docker-registry serve "$WORK/registry/config.yml" >>"$WORK/registry.log" 2>&1
  wait_for 20 curl -sf "http://$REGISTRY/v2/" -o /dev/null
  sleep 0.5   # a chunk whose fetch failed is refused at once for 300 ms (SG_LAYER_FAILED_HOLD_NS, fs/layer_int.h)
  check "registry back: the same read now succeeds" cmp -s "$WORK/mnt-reg/d/b.bin" "$WORK/rl/d/b.bin"
  unmount_blob
else
  fail "registry mount" "$(tail -3 "$WORK/mount.log")"
fi
finish
