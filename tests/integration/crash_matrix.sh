#!/usr/bin/env bash
# TIMEOUT: 600
# Crash matrix with real containerd 1.6, runc and a registry: stargzd is killed with SIGKILL
# at a random moment of one of
#   rpull  `ctr-remote images rpull` of an eStargz image (remote Prepare: TOC fetch, FUSE mount)
#   run    `ctr run --rm` on the lazily pulled image, reading every file (Prepare/Mounts of the
#          container's snapshot, chunk fetches and cache writes, Remove)
#   rm     `ctr images rm --sync` of that image: containerd's GC removes (unmounts) the layers
#   ppull  `ctr images pull` of the same layers as plain gzip (Prepare, apply, Commit)
#   prm    `ctr images rm --sync` of the plain image (Remove of committed overlay snapshots)
# and two more phases:
#   restore   killed with the lazy image pulled, which containerd removes meanwhile; restarted
#             with the registry paused, so that containerd's GC removes the snapshots while
#             the new daemon is still mounting them again (it fetches their TOC)
#   corrupt   stopped, and its chunk cache damaged (bytes flipped, holes punched, files
#             truncated or removed, chunks.bitmap set to all ones or truncated).
# After each restart (containerd keeps running):
#   - containerd's own records of the snapshotter's snapshots (read from its bolt database;
#     `ctr snapshots ls` hides those the backend cannot Stat) all exist in stargzd's
#     metadata.db, with the same parents; after a forced containerd GC the two sets are equal
#     (a Prepare or Commit whose reply the kill swallowed leaves stargzd one snapshot
#     containerd rolled back: that is what containerd's GC removes), and List on stargzd's
#     socket answers the same;
#   - every remote snapshot is mounted again, exactly once, and answers; nothing else is
#     mounted under the root; no FUSE mount of ours anywhere else;
#   - ROOT/snapshots holds exactly one directory per snapshot row (no new-*, rm-*, orphans);
#   - the image (pulled again if needed) runs and prints the right output and file hashes;
#   - after cache damage: the right hashes, the damaged chunks logged as "failed verification"
#     and fetched again, no EIO.
# CHAOS_ITERATIONS (default 7: each phase once) kills, the phases in turn; CHAOS_SEED replays
# the same delays and damage (the machine's timing still differs from run to run);
# CHAOS_PHASES="rm corrupt" cycles through some phases only.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
# The daemon's mounts die with it here (no fd holder): this matrix checks the restart that
# mounts every remote snapshot again and repairs what a kill left; a kill with the mounts
# kept and taken over is containerd_takeover.sh's.
export STARGZD_FDSTORE=none

ITERATIONS=${CHAOS_ITERATIONS:-7}
SEED=${CHAOS_SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) % 2147483647 ))}
RANDOM=$SEED   # bash's generator, seeded: only ever read in this shell, never in a subshell
read -ra PHASES <<<"${CHAOS_PHASES:-rpull run rm ppull prm restore corrupt}"
echo "crash matrix: CHAOS_SEED=$SEED CHAOS_ITERATIONS=$ITERATIONS CHAOS_PHASES=\"${PHASES[*]}\""
echo "  replay: CHAOS_SEED=$SEED CHAOS_ITERATIONS=$ITERATIONS CHAOS_PHASES=\"${PHASES[*]}\" TESTS=crash_matrix tests/run.sh integration"
rnd() { R=$(( (RANDOM << 15 | RANDOM) % $1 )); }   # R in [0, $1)

fatal() {
  fail "$1" "$2"
  echo "--- stargzd.log (tail)"; tail -n 30 "$WORK/stargzd.log"
  echo "--- containerd.log (tail)"; tail -n 15 "$WORK/containerd.log"
  finish
}

# ---- images: busybox, then data with multi-chunk files, then more data ----
CHUNK=$((512 * 1024))
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data" "$WORK/l2/etc" "$WORK/l3/data/dir"
echo "hello after a crash" >"$WORK/l2/data/hello.txt"
head -c 3000001 /dev/urandom >"$WORK/l2/data/a.bin"      # 6 chunks
echo "root:x:0:0:chaos:/:/bin/sh" >"$WORK/l2/etc/passwd"  # over layer 1's
head -c 1500003 /dev/urandom >"$WORK/l3/data/b.bin"      # 3 chunks
head -c 700005 /dev/urandom >"$WORK/l3/data/dir/c.bin"   # 2 chunks
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" "$WORK/l3" >/dev/null
make_estargz_image "$WORK/oci" "$WORK/esgz" --chunk-size "$CHUNK" || fatal "eStargz conversion"
start_registry || fatal "registry starts" "$(cat "$WORK/registry.log")"
push_image "$WORK/esgz" v1 lazy || fatal "push the eStargz image"
push_image "$WORK/oci" v1 plain || fatal "push the plain image"
LAZY=$REGISTRY/lazy:v1 PLAIN=$REGISTRY/plain:v1

# What a container of either image must print, and the files whose cache we damage.
declare -A SRC=([/data/a.bin]=$WORK/l2/data/a.bin [/data/b.bin]=$WORK/l3/data/b.bin
  [/data/dir/c.bin]=$WORK/l3/data/dir/c.bin [/bin/busybox]=$WORK/l1/bin/busybox
  [/etc/passwd]=$WORK/l2/etc/passwd)
HASHED="/data/a.bin /data/b.bin /data/dir/c.bin /bin/busybox /etc/passwd"
READ_CMD="cat /data/hello.txt; sha256sum $HASHED"
EXPECT="hello after a crash"
for f in $HASHED; do EXPECT+=$'\n'"$(sha256sum <"${SRC[$f]}" | cut -d' ' -f1)  $f"; done

start_stargzd || fatal "stargzd starts" "$(cat "$WORK/stargzd.log")"
start_containerd || fatal "containerd starts" "$(tail -20 "$WORK/containerd.log")"
CSOCK=$WORK/containerd/containerd.sock
CBOLT=$WORK/containerd/root/io.containerd.metadata.v1.bolt/meta.db
SN="$CTR snapshots --snapshotter stargz"
OPLOG=$WORK/ops.log
N=0   # containers and probes get unique names
# runc's state (/run/containerd/runc/NAMESPACE/ID) is shared by every containerd on the
# machine: container IDs carry this test's directory suffix, so that tests running side by
# side do not take each other's containers.
CID=cm-${WORK##*.}

# ---- client operations (each bounded: a hung client is a finding, not a hung test) ----
op_rpull() { timeout 90 ctr-remote --address "$CSOCK" images rpull --plain-http --snapshotter stargz "$LAZY"; }
op_ppull() { timeout 90 $CTR images pull --plain-http --snapshotter stargz "$PLAIN"; }
op_rm() { timeout 90 $CTR images rm --sync "$1"; }
op_run() { timeout 90 $CTR run --rm --snapshotter stargz "$1" "$2" sh -c "$READ_CMD"; }
has_image() { $CTR images ls -q 2>/dev/null | grep -qxF "$1"; }
logged() { echo "== $(date +%T.%N | cut -c1-12) $*" >>"$OPLOG"; "$@" >>"$OPLOG" 2>&1; }

# run_image IMG: pulls it (again) and runs it; containerd's client may still be reconnecting
# and restored layers may still be mounting, so failures before the container ran are
# retried.  Output of a container that ran is judged at once.  -> $OUT
run_image() {
  local img=$1 i
  for i in $(seq 8); do
    if [[ $img == "$LAZY" ]]; then logged op_rpull; else logged op_ppull; fi
    N=$((N + 1))
    OUT=$(op_run "$img" "$CID-$N" 2>&1)
    echo "== run $CID-$N: $OUT" >>"$OPLOG"
    [[ $OUT == *"hello after a crash"* ]] && break
    sleep 1
  done
  [[ $OUT == "$EXPECT" ]]
}

# ---- daemon lifecycle ----
LOG_MARK=0
new_log() { tail -n +$((LOG_MARK + 1)) "$WORK/stargzd.log"; }

daemon_start() {   # starts stargzd and waits until this instance serves
  LOG_MARK=$(wc -l <"$WORK/stargzd.log")
  start_stargzd   # (its socket check passes at once on the stale socket of a killed daemon)
  local end=$((SECONDS + 30))
  until new_log | grep -q 'serving on'; do
    kill -0 "$SG_PID" 2>/dev/null || fatal "stargzd starts again (iteration $IT)" "$(new_log | tail -5)"
    [[ $SECONDS -ge $end ]] && fatal "stargzd serves within 30 s of a restart (iteration $IT)"
    sleep 0.05
  done
}

# A daemon that died by itself (a crash) is a failure; it is started again so that the
# checks that follow say what it left behind.
alive_or_restart() {   # WHEN
  kill -0 "$SG_PID" 2>/dev/null && return 0
  wait_exit "$SG_PID" 1 2>/dev/null
  ifail "stargzd still runs $1" "it exited with status $EXIT_CODE; log: $(new_log | tail -3)"
  daemon_start
}

kill9() {
  kill -KILL "$SG_PID" 2>/dev/null
  wait_exit "$SG_PID" 20 2>/dev/null
}

# ---- the two views ----
# stargzd's rows: id|name|kind|remote|parent name (kind 1 view, 2 active, 3 committed;
# remote 0 local, 1 remote, 2 being mounted).
sg_rows() {
  sqlite3 -cmd '.timeout 5000' -separator '|' "$SG_ROOT/metadata.db" \
    "SELECT s.id, s.name, s.kind, s.remote, COALESCE(p.name, '') FROM snapshots s
     LEFT JOIN snapshots p ON p.id = s.parent_id ORDER BY s.id;"
}

# containerd's records for the "stargz" snapshotter: "BACKEND-KEY<TAB>PARENT'S BACKEND-KEY",
# read straight from its bolt file (containerd holds the lock; a write racing the read
# makes it fail, and it is retried).
BOLTLS=$(cat <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
want = sys.argv[2].encode()

def fnv64a(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h

psize = struct.unpack_from("<I", data, 24)[0]
metas = []
for p in (0, 1):   # two meta pages; the valid one with the larger txid is current
    off = p * psize + 16
    magic, _v, _ps, _fl, root, _sq, _free, _pgid, txid, csum = struct.unpack_from("<IIIIQQQQQQ", data, off)
    if magic == 0xED0CDAED and fnv64a(data[off:off + 56]) == csum:
        metas.append((txid, root))
if not metas:
    sys.exit("no valid meta page")

def items(buf, off):   # (key, value, is_bucket) of the tree whose page is buf[off:]
    _id, flags, count, _ov = struct.unpack_from("<QHHI", buf, off)
    for i in range(count):
        e = off + 16 + i * 16
        if flags & 0x01:   # branch
            _pos, _ks, pgid = struct.unpack_from("<IIQ", buf, e)
            yield from items(data, pgid * psize)
        elif flags & 0x02:   # leaf
            fl, pos, ks, vs = struct.unpack_from("<IIII", buf, e)
            yield (bytes(buf[e + pos:e + pos + ks]), bytes(buf[e + pos + ks:e + pos + ks + vs]),
                   bool(fl & 0x01))
        else:
            sys.exit("bad page flags %#x" % flags)

def bucket(v):   # a bucket value: its root page, or an inline page after the header
    root = struct.unpack_from("<Q", v, 0)[0]
    return (data, root * psize) if root else (v[16:], 0)

def get(b, name):
    for k, v, isb in items(*b):
        if k == name:
            return bucket(v) if isb else v
    return None

v1 = get(bucket(struct.pack("<QQ", max(metas)[1], 0)), b"v1")
out = []
for ns, nv, isb in (items(*v1) if v1 else []):
    snaps = get(bucket(nv), b"snapshots") if isb else None
    ss = get(snaps, want) if snaps else None
    if not ss:
        continue
    keys = {}
    for k, v, isb in items(*ss):
        if isb:
            b = bucket(v)
            keys[k] = (get(b, b"name") or b"", get(b, b"parent") or b"")
    for name, parent in keys.values():
        pname = keys[parent][0] if parent in keys else (b"MISSING:" + parent if parent else b"")
        out.append(name.decode() + "\t" + pname.decode())
print("\n".join(sorted(out)))
PY
)
ctd_view() {
  local i
  for i in 1 2 3 4 5 6; do
    $PYTHON -c "$BOLTLS" "$CBOLT" stargz 2>>"$OPLOG" && return 0
    sleep 0.3
  done
  return 1
}
sg_view() { sg_rows | awk -F'|' '$4 != 2 {print $2 "\t" $5}' | sort; }

# What stargzd answers to List on its socket (what containerd's GC walks), same form.
LIST_PY=$(cat <<'PY'
import sys, grpc

def fields(b):   # protobuf wire format: (field, value) of one message
    i = 0
    def varint():
        nonlocal i
        v = s = 0
        while True:
            c = b[i]; i += 1; v |= (c & 0x7F) << s; s += 7
            if c < 0x80:
                return v
    while i < len(b):
        key = varint()
        wt = key & 7
        if wt == 0:
            v = varint()
        elif wt == 2:
            n = varint(); v = b[i:i + n]; i += n
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4; v = b[i:i + n]; i += n
        else:
            sys.exit("bad wire type %d" % wt)
        yield key >> 3, v

ch = grpc.insecure_channel("unix:" + sys.argv[1])
call = ch.unary_stream("/containerd.services.snapshots.v1.Snapshots/List")
out = []
for msg in call(b"", timeout=20):
    for f, info in fields(msg):
        if f == 1:
            d = dict((k, v) for k, v in fields(info) if k in (1, 2))
            out.append(d.get(1, b"").decode() + "\t" + d.get(2, b"").decode())
print("\n".join(sorted(out)))
PY
)
sg_list() { $PYTHON -c "$LIST_PY" "$SG_SOCK" 2>>"$OPLOG"; }

# A containerd GC that also cleans the stargz snapshotter (it only does when a snapshot of
# it was removed since the last one): remove a probe snapshot, then a synchronous lease
# deletion runs the GC and waits for it.  The probe is retried while containerd's client
# reconnects to a restarted daemon.
force_gc() {
  local lid i
  for i in $(seq 20); do
    N=$((N + 1))
    logged $SN prepare "chaos-probe-$N" && break
    sleep 0.5
  done
  logged $SN rm "chaos-probe-$N"
  lid=$($CTR leases create 2>>"$OPLOG") && logged $CTR leases delete --sync "$lid"
}

# ---- the checks after a restart ----
ITER_FAILS=0
ifail() { ITER_FAILS=$((ITER_FAILS + 1)); fail "iteration $IT ($PHASE): $1" "${2:-}"; }

remote_ids() { sg_rows | awk -F'|' '$4 == 1 {print $1}' | sort -n; }
# Mount points under the root, and every mount of our filesystem type elsewhere in this
# test's directory (other tests and people on the machine have their own).
mounts_of_root() {
  awk -v r="$SG_ROOT/" -v w="$WORK/" '{ for (i = 7; $i != "-"; i++);
      if (index($5, r) == 1 || (index($5, w) == 1 && $(i + 1) == "fuse.stargz")) print $5, $(i + 1) }' \
    /proc/self/mountinfo | sort
}
expected_mounts() { for id in $(remote_ids); do echo "$SG_ROOT/snapshots/$id/fs fuse.stargz"; done | sort; }

check_state() {   # IMG: the image the phase used
  local img=$1 c s l extra missing m end
  # Restored layers come back asynchronously (the TOC is fetched again).
  end=$((SECONDS + 60))
  until [[ "$(mounts_of_root)" == "$(expected_mounts)" ]]; do
    if [[ $SECONDS -ge $end ]]; then
      ifail "remote snapshots mounted again, exactly once, nothing else mounted" \
        "$(diff <(expected_mounts) <(mounts_of_root) | head -10)"
      break
    fi
    sleep 0.1
  done
  for m in $(mounts_of_root | awk '$2 == "fuse.stargz" {print $1}'); do
    timeout 10 ls "$m" >/dev/null 2>&1 || ifail "mounted layer $m answers"
  done
  c=$(ctd_view) || { ifail "read containerd's bolt database" "$(tail -3 "$OPLOG")"; return; }
  s=$(sg_view)
  missing=$(comm -23 <(echo "$c") <(echo "$s") | grep .)
  [[ -z $missing ]] || ifail "every snapshot containerd records exists in stargzd (same parent)" "$missing"
  [[ -z $(sg_rows | awk -F'|' '$4 == 2') ]] || ifail "no remote snapshot left half-mounted" "$(sg_rows | awk -F'|' '$4 == 2')"

  force_gc
  c=$(ctd_view) || { ifail "read containerd's bolt database" "$(tail -3 "$OPLOG")"; return; }
  s=$(sg_view)
  [[ "$c" == "$s" ]] || ifail "after containerd's GC, stargzd's snapshots are containerd's" \
    "$(diff <(echo "$c") <(echo "$s") | grep '^[<>]' | head -10)"
  l=$(sg_list) || ifail "List on stargzd's socket" "$(tail -3 "$OPLOG")"
  [[ "$l" == "$s" ]] || ifail "List answers what metadata.db holds" \
    "$(diff <(echo "$s") <(echo "$l") | grep '^[<>]' | head -10)"
  extra=$(comm -3 <(ls -A "$SG_ROOT/snapshots" | sort) <(sg_rows | cut -d'|' -f1 | sort) | head -10)
  [[ -z $extra ]] || ifail "one directory per snapshot under ROOT/snapshots (dirs | rows)" "$extra"
  [[ "$(mounts_of_root)" == "$(expected_mounts)" ]] ||
    ifail "after GC: exactly the remote snapshots are mounted" "$(diff <(expected_mounts) <(mounts_of_root) | head -10)"

  run_image "$img" || ifail "$img runs and prints the right bytes" "$(diff <(echo "$EXPECT") <(echo "$OUT") | head -10)"
  # The container is gone (--rm): nothing of it is left mounted.
  m=$(grep -F " $WORK/containerd/state/" /proc/self/mountinfo | awk '{print $5}' | head -5)
  [[ -z $m ]] || ifail "no container rootfs left mounted" "$m"
  alive_or_restart "after the checks"
}

# ---- calibration: each operation once, undisturbed, to learn how long it takes ----
declare -A DUR
timed() {   # NAME CMD...: runs it, DUR[NAME] = milliseconds
  local name=$1 t0; shift
  t0=$(date +%s%N)
  logged "$@"
  local rc=$?
  DUR[$name]=$(( ($(date +%s%N) - t0) / 1000000 ))
  return $rc
}
IT=0 PHASE=calibration
check "rpull (lazy)" timed rpull op_rpull
run_once() { N=$((N + 1)); OUT=$(op_run "$LAZY" "$CID-$N" 2>&1); [[ $OUT == "$EXPECT" ]]; }
if timed run run_once; then pass "run on the lazy image"; else
  fail "run on the lazy image" "$(diff <(echo "$EXPECT") <(echo "$OUT") | head -10)"; fi
check "image rm + GC (lazy)" timed rm op_rm "$LAZY"
check "plain pull" timed ppull op_ppull
check "plain image rm + GC" timed prm op_rm "$PLAIN"
echo "    durations (ms): rpull ${DUR[rpull]} run ${DUR[run]} rm ${DUR[rm]} ppull ${DUR[ppull]} prm ${DUR[prm]}"
no_snapshots() { [[ -z "$(sg_view)" ]]; }
check "no snapshot left after removing both images" no_snapshots

# ---- the kills ----

# Puts the world in the state a phase starts from (undisturbed, retried: the previous
# iteration may have left the image half-pulled).
prepare_phase() {
  case $PHASE in
    rpull) has_image "$LAZY" && logged op_rm "$LAZY" ;;
    ppull) has_image "$PLAIN" && logged op_rm "$PLAIN" ;;
    run | rm | restore | corrupt) logged op_rpull || { sleep 1; logged op_rpull; } ;;
    prm) logged op_ppull || { sleep 1; logged op_ppull; } ;;
  esac
  true
}

kill_during() {   # kills stargzd at a random moment of the phase's operation
  local dur=${DUR[$PHASE]} delay op t0 early
  [[ $dur -lt 200 ]] && dur=200
  rnd $((dur * 12 / 10)); delay=$R
  rnd 3; early=$((R == 0))   # a third of the time stargzd is back before the client gave up
  N=$((N + 1))
  case $PHASE in
    rpull) logged op_rpull & ;;
    run) logged op_run "$LAZY" "$CID-$N" & ;;
    rm) logged op_rm "$LAZY" & ;;
    ppull) logged op_ppull & ;;
    prm) logged op_rm "$PLAIN" & ;;
  esac
  op=$!
  t0=$SECONDS
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  kill9
  echo "    iteration $IT: $PHASE, kill -9 after ${delay} ms (of ~${DUR[$PHASE]} ms)$([[ $early == 1 ]] && echo ', restart at once')"
  [[ $early == 1 ]] && daemon_start
  wait "$op"
  local rc=$?
  [[ $rc -eq 124 ]] && ifail "the client returns after the kill" "still running after 90 s"
  echo "== client exit $rc after $((SECONDS - t0)) s" >>"$OPLOG"
  [[ $early == 1 ]] || daemon_start
}

# Waits until no chunks.bitmap changes for a second (cache writes of the last reads landed).
cache_quiet() {
  local a b i
  a=$(cat "$SG_ROOT"/cache/*/chunks.bitmap 2>/dev/null | md5sum)
  for i in $(seq 20); do
    sleep 1
    b=$(cat "$SG_ROOT"/cache/*/chunks.bitmap 2>/dev/null | md5sum)
    [[ $a == "$b" ]] && return 0
    a=$b
  done
}

# The cache file of a file of the image: the one of its exact size in a layer's directory
# (sizes are distinct on purpose).
cache_file_of() {
  find "$SG_ROOT/cache" -mindepth 2 -maxdepth 2 -type f -regex '.*/[0-9]+' -size "$(stat -c %s "${SRC[$1]}")c" | head -1
}

corrupt_phase() {
  local files=(/data/a.bin /data/b.bin /data/dir/c.bin /bin/busybox) kinds=(flip punch truncate unlink)
  local f cf size off kind n i dir expect_detect=() bitmap_reset=() how
  N=$((N + 1))
  OUT=$(op_run "$LAZY" "$CID-$N" 2>&1)   # every file read once: in the cache
  [[ $OUT == "$EXPECT" ]] || ifail "reading the image before damaging its cache" "$OUT"
  cache_quiet
  rnd 2
  if [[ $R == 0 ]]; then how=KILL; kill9; else how=TERM; stop_stargzd TERM; fi
  # Damage 2 or 3 of the four files, each a different way, and maybe a bitmap.
  for ((i = ${#files[@]} - 1; i > 0; i--)); do   # shuffle
    rnd $((i + 1)); f=${files[i]}; files[i]=${files[R]}; files[R]=$f
  done
  rnd 2; n=$((2 + R))
  for ((i = 0; i < n; i++)); do
    f=${files[i]}
    cf=$(cache_file_of "$f")
    [[ -n $cf ]] || { ifail "cache file of $f found" "$(ls -lR "$SG_ROOT/cache" | head -20)"; continue; }
    size=$(stat -c %s "$cf")
    [[ $size -gt 0 ]] || continue
    rnd ${#kinds[@]}; kind=${kinds[R]}
    rnd "$size"; off=$R
    case $kind in
      flip)   # one byte inverted: a chunk of wrong bytes behind a set bit
        printf "$(printf '\\%03o' $(( 0xff ^ $(od -An -tu1 -j "$off" -N1 "$cf") )))" |
          dd of="$cf" bs=1 seek="$off" conv=notrunc status=none
        expect_detect+=("$f $((off / CHUNK * CHUNK)) $(dirname "$cf")") ;;
      punch)  # a chunk-aligned hole: zeros behind a set bit
        off=$((off / CHUNK * CHUNK))
        fallocate -p -o "$off" -l "$CHUNK" "$cf"
        expect_detect+=("$f $off $(dirname "$cf")") ;;
      truncate) truncate -s "$off" "$cf" ;;
      unlink) rm -f "$cf" ;;
    esac
    echo "    iteration $IT: corrupt: $kind $f at $off ($cf)"
  done
  for dir in "$SG_ROOT"/cache/*/; do
    rnd 4
    case $R in
      0) # every chunk claimed present, holes included
        size=$(stat -c %s "$dir/chunks.bitmap")
        head -c "$size" /dev/zero | tr '\0' '\377' >"$dir/chunks.bitmap"
        echo "    iteration $IT: corrupt: chunks.bitmap all ones in $dir" ;;
      1) # a bitmap cut short
        size=$(stat -c %s "$dir/chunks.bitmap")
        rnd $((size + 1)); truncate -s "$R" "$dir/chunks.bitmap"
        bitmap_reset+=("${dir%/}")
        echo "    iteration $IT: corrupt: chunks.bitmap truncated to $R bytes in $dir" ;;
    esac
  done
  echo "    iteration $IT: stopped with SIG$how"
  daemon_start
  check_state "$LAZY"
  # Damage behind a set bit must have been caught by the chunk digest and fetched again
  # (unless the bitmap of that layer was reset, which drops every chunk unchecked).
  local e p o d
  for e in "${expect_detect[@]}"; do
    read -r p o d <<<"$e"
    [[ " ${bitmap_reset[*]} " == *" $d "* ]] && continue
    new_log | grep 'failed verification' | grep -q "${p#/} at offset $o failed verification" ||
      ifail "damaged chunk of $p at $o detected and fetched again" "$(new_log | grep -i 'verif' | head -5)"
  done
  if new_log | grep -q 'reads of it fail with EIO'; then
    ifail "no read failed because of the damage" "$(new_log | grep 'EIO' | head -3)"
  fi
}

restore_phase() {
  local delay nrem end
  kill9
  nrem=$(remote_ids | wc -l)
  logged $CTR images rm "$LAZY"   # containerd's GC cannot reach stargzd now
  kill -STOP "$REGISTRY_PID"      # layers rebuilt from their cache dir need it not; the others wait
  daemon_start
  rnd 1000; delay=$R
  sleep "$(printf '0.%03d' "$delay")"
  echo "    iteration $IT: restore: image removed while stargzd was down, GC ${delay} ms after the restart, registry paused"
  force_gc   # removes the snapshots being mounted again
  kill -CONT "$REGISTRY_PID"
  # Every restore ends (mounted, cancelled or failed) once the registry answers.
  end=$((SECONDS + 60))
  while kill -0 "$SG_PID" 2>/dev/null && [[ $SECONDS -lt $end ]] &&
    [[ $(new_log | grep -cE 'mounted again|mounting it again was cancelled|cannot be mounted now') -lt $nrem ]]; do
    sleep 0.1
  done
  alive_or_restart "after containerd removed snapshots it was mounting again"
  check_state "$LAZY"
}

for ((IT = 1; IT <= ITERATIONS; IT++)); do
  PHASE=${PHASES[(IT - 1) % ${#PHASES[@]}]}
  ITER_FAILS=0
  echo "== iteration $IT: $PHASE" >>"$OPLOG"
  prepare_phase
  if [[ $PHASE == corrupt ]]; then
    corrupt_phase
  elif [[ $PHASE == restore ]]; then
    restore_phase
  else
    kill_during
    case $PHASE in
      rpull | run | rm) check_state "$LAZY" ;;
      *) check_state "$PLAIN" ;;
    esac
  fi
  [[ $ITER_FAILS -eq 0 ]] && pass "iteration $IT: $PHASE"
done

check "stargzd never logged an assertion or crash" bash -c "! grep -qiE 'assert|sanitizer|segfault' '$WORK/stargzd.log'"
echo "crash matrix: $ITERATIONS iterations, CHAOS_SEED=$SEED"
finish
