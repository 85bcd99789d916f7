#!/usr/bin/env bash
# TIMEOUT: 240
# Learned startup profiles end to end (issue #14): a real registry, real containerd with stargzd
# as its "stargz" snapshotter, real FUSE, `ctr-remote images rpull` and `ctr run`.
#
# The image is unoptimized eStargz whose workload is a chain of dependent misses: a shell loop
# that cats 36 small files (one by one, in a shuffled order, each separated in the blob by an
# unread filler larger than the fetch window) and two larger ones.  Every phase is a cold start
# of its own: a fresh snapshotter root, the image pulled again and removed (content GC'd) after.
# Background fetch and speculation are off, so that only a profile explains fewer misses.
#
#  C  profiles = "off": the baseline, the workload's blocking network misses counted from the
#     fetch trace ("read" events with "net":true).
#  A  profiles = "local": the run records; after a clean stop `stargzd profile ls` lists the
#     layers' profiles and the log says "recorded its startup profile".  `stargzd profile push`
#     publishes them twice: to Debian's docker-registry (no referrers API: the referrers tag
#     sha256-<hex>) and through tests/lib/referrers_proxy.py (the OCI 1.1 referrers API).
#  B  profiles = "registry", twice from a fresh root: the image pulled from the registry itself
#     (the daemon finds the artifact through the tag) and through the proxy (through the API).
#     The daemon pulls the profile at the first mount and replays it; the container starts
#     once the replays are done (stargzd status): fetches of kind "profile" in the trace,
#     net misses <= max(2, baseline / 4), and no byte fetched that the workload did not read.
#  H  profiles = "local" with a hostile file in ROOT/profiles/<toc-hex>.json: garbage bytes,
#     more than 1 MiB, another chunkCount, another TOC inside.  Each is ignored with a log line,
#     nothing replays, and the container prints the right output.
# Last line: "N passed, N failed".
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
for tool in docker-registry skopeo curl ctr ctr-remote containerd runc; do
  command -v "$tool" >/dev/null || { skip "profiles with containerd" "$tool missing"; finish; }
done

REGISTRY_LOG_LEVEL=info start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }

# ---- the image: busybox, then /data with the workload's files spread over the blob ----
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data"
NSMALL=36
for i in $(seq -w 0 $((NSMALL - 1))); do
  mkdir -p "$WORK/l2/data/d$i"
  head -c $((2000 + 10#$i * 97)) /dev/urandom | base64 >"$WORK/l2/data/d$i/a.txt"   # read
  head -c 327680 /dev/urandom >"$WORK/l2/data/d$i/b.fill"                         # never read
done
head -c 1500000 /dev/urandom >"$WORK/l2/data/big1.bin"
head -c 700000 /dev/urandom >"$WORK/l2/data/big2.bin"
# A fixed shuffled order: no long forward run in blob order (that would start the layer's
# full-read stream, fs/layer_prefetch.c), the two big files in the middle of the chain.
ORDER=$($PYTHON -c '
import random
n = '"$NSMALL"'
files = ["d%02d/a.txt" % i for i in range(n)]
random.Random(14).shuffle(files)
files[n // 3:n // 3] = ["big1.bin"]
files[2 * n // 3:2 * n // 3] = ["big2.bin"]
print(" ".join(files))')
WANT=$(cd "$WORK/l2/data" && for f in $ORDER; do cat "$f"; done | sha256sum | cut -d' ' -f1)
WORKLOAD="for f in $ORDER; do cat /data/\$f; done | sha256sum"
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "eStargz conversion (unoptimized)" make_estargz_image "$WORK/oci" "$WORK/esgz"
check "image pushed" push_image "$WORK/esgz" v1 test/pc
read -r LAYER TOC < <(esgz_layer_info "$WORK/esgz")
TOCHEX=${TOC#sha256:}
REPO=test/pc
REF=$REGISTRY/$REPO:v1

# The referrers API in front of the same registry.
API_PORT=$(free_port)
spawn $PYTHON "$STARGZD_TOP/tests/lib/referrers_proxy.py" --port "$API_PORT" --upstream "$REGISTRY" \
  --log "$WORK/api.log"
wait_for 20 curl -sf "http://127.0.0.1:$API_PORT/v2/" -o /dev/null || fail "the referrers proxy starts"
AREF=127.0.0.1:$API_PORT/$REPO:v1

# containerd talks to whichever daemon listens on $SG_SOCK: one daemon per phase, one containerd.
SG_SOCK=$WORK/stargzd.sock
start_stargzd_phase() {   # ROOT MODE: a daemon on ROOT with profiles = MODE, its trace in ROOT.trace
  SG_ROOT=$1
  TRACE_DIR=$1.trace
  mkdir -p "$TRACE_DIR" "$WORK/certs.d"
  echo "{}" >"$WORK/no-docker-config.json"
  cat >"$WORK/stargzd.toml" <<CFG
plain_http_localhost = true
hosts_dir = "$WORK/certs.d"
docker_config = "$WORK/no-docker-config.json"
background_fetch = false
speculate = false
fetch_trace_dir = "$TRACE_DIR"
profiles = "$2"
profile_quiet_ms = 1000
CFG
  : >"$WORK/stargzd.log"
  start_stargzd
}

# replays_done ROOT: every mounted layer's replay is over (stargzd status --json).
replays_done() {
  "$STARGZD" status --root "$1" --json 2>/dev/null |
    $PYTHON -c 'import json, sys; ls = json.load(sys.stdin)["layers"]; sys.exit(not ls or any(l["profile_replay"] != "done" for l in ls))'
}

# rpull IMAGE OUT: ctr-remote rpull, retried for 10 s: containerd's client of the proxy
# snapshotter reconnects to a new daemon within seconds.
rpull() {
  local i
  for i in $(seq 20); do
    ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
      --snapshotter stargz "$1" >"$2" 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# run_after_restart_pc IMAGE NAME: the workload in a container, retried for 10 s (containerd's
# client of the proxy snapshotter reconnects to a new daemon within seconds); its output.
run_after_restart_pc() {
  local i out
  for i in $(seq 20); do
    out=$($CTR run --rm --snapshotter stargz "$1" "$2" sh -c "$WORKLOAD" 2>&1) && { echo "$out"; return 0; }
    sleep 0.5
  done
  echo "$out"
  return 1
}

# no_snapshots_left: waits up to 10 s for containerd's GC to remove every stargz snapshot.
no_snapshots_left() {
  local i
  for i in $(seq 40); do
    [[ $($CTR snapshots --snapshotter stargz ls 2>/dev/null | awk 'NR>1' | wc -l) -eq 0 ]] && return 0
    sleep 0.25
  done
  return 1
}

started_containerd=0
PHASE_LOGS=()
# run_phase NAME ROOT MODE IMAGE [WAIT_REPLAY]: a cold start on a fresh daemon: rpull, (with
# WAIT_REPLAY=1, wait until both layers' replays are done), the workload, image removed and
# GC'd, daemon stopped with SIGINT.  Sets PHASE_OUT (the workload's output), PHASE_LOG (the
# daemon's log), PHASE_OK (1 when every step went through), and from the fetch trace
# NET_MISSES, PROFILE_FETCHES, FETCHED (bytes, all kinds), PROFILE_FETCHED and PROFILE_USED.
run_phase() {
  local name=$1 root=$2 mode=$3 img=$4 wait_replay=${5:-0} i
  PHASE_OUT="" PHASE_OK=0 NET_MISSES=-1 PROFILE_FETCHES=-1
  PHASE_LOG=$WORK/$name.log
  start_stargzd_phase "$root" "$mode" || { fail "$name: stargzd starts" "$(tail -5 "$WORK/stargzd.log")"; return; }
  if [[ $started_containerd == 0 ]]; then
    start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
    started_containerd=1
  fi
  if rpull "$img" "$WORK/$name.rpull"; then
    if [[ $wait_replay == 1 ]]; then
      # Both layers have a profile.  The container starts once both replays are done: what is
      # asserted is that the profile names what the workload reads (the race between the
      # replay and the container's start is the bench's to measure; through the referrers
      # proxy, a Python server that connects upstream per request, the replay's 40 requests
      # take ~300 ms and a container started at once met 0-7 of them still in flight).
      local t0=$SECONDS
      wait_for 15 bash -c "[[ \$(grep -c 'replaying its startup profile' '$WORK/stargzd.log') -ge 2 ]]" ||
        echo "    $name: the replays did not both start within 15 s"
      wait_for 15 replays_done "$root" ||
        echo "    $name: the replays were not done within 15 s"
      echo "    $name: replays pulled, started and done $((SECONDS - t0)) s after the pull"
    fi
    PHASE_OUT=$($CTR run --rm --snapshotter stargz "$img" "c-$name" sh -c "$WORKLOAD" 2>&1) && PHASE_OK=1 ||
      echo "    $name: ctr run exited with $?"
    [[ -n ${AFTER_RUN:-} ]] && eval "$AFTER_RUN"
  else
    echo "    $name: rpull failed: $(tail -3 "$WORK/$name.rpull")"
  fi
  $CTR images rm --sync "$img" >/dev/null 2>&1
  no_snapshots_left || { echo "    $name: snapshots left after the image's removal"; PHASE_OK=0; }
  stop_stargzd INT
  [[ $EXIT_CODE -eq 0 ]] || { echo "    $name: stargzd exited with $EXIT_CODE"; PHASE_OK=0; }
  cp "$WORK/stargzd.log" "$PHASE_LOG"
  PHASE_LOGS+=("$PHASE_LOG")
  NET_MISSES=$(cat "$TRACE_DIR"/trace-*.jsonl 2>/dev/null | grep '"ev":"read"' | grep -c '"net":true')
  PROFILE_FETCHES=$(cat "$TRACE_DIR"/trace-*.jsonl 2>/dev/null | grep '"ev":"fetch"' | grep -c '"kind":"profile"')
  # The layers' close summaries: compressed bytes fetched (all kinds), fetched and used by the replay.
  read -r FETCHED PROFILE_FETCHED PROFILE_USED < <(cat "$TRACE_DIR"/trace-*.jsonl 2>/dev/null | $PYTHON -c '
import json, sys
f = pf = pu = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("ev") == "layer":
        f += sum(e["fetched"].values())
        pf += e["fetched"].get("profile", 0)
        pu += e["used"].get("profile", 0)
print(f, pf, pu)')
  # The replay's requests: how long from the first to the last, how many at once at most.
  [[ $PROFILE_FETCHES -gt 0 ]] && cat "$TRACE_DIR"/trace-*.jsonl | $PYTHON -c '
import json, sys
iv = [(e["t"], e["t"] + e["ms"]) for e in map(json.loads, sys.stdin)
      if e.get("ev") == "fetch" and e.get("kind") == "profile"]
top = max(sum(1 for s, e in iv if s <= t < e) for t, _ in iv)
print("    replay: %d requests from %.0f to %.0f ms, at most %d at once"
      % (len(iv), min(s for s, _ in iv), max(e for _, e in iv), top))'
  echo "    $name: $NET_MISSES reads blocked on the network, $PROFILE_FETCHES profile fetches, $FETCHED bytes fetched"
}

# output_right NAME: the workload printed the files' digest.
output_right() {
  if [[ $PHASE_OK == 1 && $PHASE_OUT == *"$WANT"* ]]; then
    pass "$1: the container prints the right output"
  else
    fail "$1: the container prints the right output" "want $WANT, got (run ok: $PHASE_OK): $PHASE_OUT; daemon: $(grep -E ' (warn|error) ' "$PHASE_LOG" | tail -5)"
  fi
}

log_has() { grep -q -- "$2" "$1"; }

# ---- C: the baseline, no profile ----
run_phase off "$WORK/rootC" off "$REF"
output_right "no profile"
BASE=$NET_MISSES
BASE_BYTES=$FETCHED
if [[ $BASE -ge 30 ]]; then
  pass "no profile: the workload is a chain of blocking misses ($BASE)"
else
  fail "no profile: the workload is a chain of blocking misses" "only $BASE reads waited on the network"
fi
# The trace says when each layer was asked for and how long its TOC took (the bench's "first
# layer asked"): a "toc" event for the data layer, after the trace's "start" line.
if cat "$WORK/rootC.trace"/trace-*.jsonl | $PYTHON -c '
import json, sys
ev = [json.loads(l) for l in sys.stdin]
start = [e for e in ev if e["ev"] == "start"]
toc = [e for e in ev if e["ev"] == "toc" and e["layer"] == sys.argv[1]]
sys.exit(not (len(start) == 1 and ev[0] is start[0] and start[0]["epoch"] > 1.6e9 and len(toc) == 1
              and toc[0]["t"] > 0 and 0 < toc[0]["ms"] < 60000))' "$LAYER"; then
  pass "no profile: the fetch trace has its start line and the data layer's toc event"
else
  fail "no profile: the fetch trace has its start line and the data layer's toc event" \
    "$(grep -hE '"ev":"(start|toc)"' "$WORK/rootC.trace"/trace-*.jsonl | head -5)"
fi
if ! log_has "$PHASE_LOG" "recorded its startup profile" && [[ ! -e $WORK/rootC/profiles/$TOCHEX.json ]]; then
  pass "profiles = off: nothing recorded"
else
  fail "profiles = off: nothing recorded"
fi

# ---- A: record ----
# The workload goes quiet: the recording is stored profile_quiet_ms later, while the layer is
# still mounted, and not again at its close (nothing new came).
QUIET_STORED=0
AFTER_RUN='wait_for 10 grep -q "layer $LAYER: recorded its startup profile: " "$WORK/stargzd.log" && QUIET_STORED=1'
run_phase record "$WORK/rootA" local "$REF"
AFTER_RUN=
output_right "record"
if [[ $QUIET_STORED == 1 ]]; then
  pass "record: stored once the workload went quiet, the layer still mounted"
else
  fail "record: stored once the workload went quiet, the layer still mounted"
fi
n=$(grep -c "layer $LAYER: recorded its startup profile: " "$PHASE_LOG")
if [[ $n -eq 1 ]]; then
  pass "record: the log says once that the layer recorded its startup profile"
else
  fail "record: the log says once that the layer recorded its startup profile" "$n lines: $(grep -i profile "$PHASE_LOG" | head -5)"
fi
LS=$("$STARGZD" profile ls --root "$WORK/rootA" 2>&1)
CHUNK_COUNT=$(awk -v t="$TOC" '$1 == t {print $4}' <<<"$LS")
if [[ -n $CHUNK_COUNT ]] && [[ $(awk -v t="$TOC" '$1 == t {print $2}' <<<"$LS") -ge $((NSMALL + 2)) ]] &&
   [[ $(awk 'NR>1' <<<"$LS" | wc -l) -eq 2 ]]; then
  pass "record: profile ls lists both layers, the workload's chunks in the data layer's"
else
  fail "record: profile ls lists both layers" "$LS"
fi
echo "$LS" | sed 's/^/    /'

# ---- push: the referrers tag (docker-registry) and the referrers API (the proxy) ----
out=$("$STARGZD" profile push --root "$WORK/rootA" --plain-http "$REF" 2>&1)
if grep -q "listed in the referrers tag sha256-" <<<"$out"; then
  pass "push to docker-registry: the referrers tag"
else
  fail "push to docker-registry: the referrers tag" "$out"
fi
out=$("$STARGZD" profile push --root "$WORK/rootA" --plain-http "$AREF" 2>&1)
if grep -q "listed by the registry's referrers API" <<<"$out"; then
  pass "push through the proxy: the referrers API"
else
  fail "push through the proxy: the referrers API" "$out"
fi

# ---- B: a fresh root pulls the profile at its first mount and replays it ----
replayed() {   # NAME VIA WANT_LOG_WORD
  local name=$1 via=$2
  output_right "$name"
  if log_has "$PHASE_LOG" "profile pull .*$3" ; then
    pass "$name: the daemon pulled the profile artifact through the $via"
  else
    fail "$name: the daemon pulled the profile artifact through the $via" "$(grep 'profile pull' "$PHASE_LOG" | head -5)"
  fi
  if log_has "$PHASE_LOG" "layer $LAYER: replaying its startup profile: "; then
    pass "$name: the data layer replays its startup profile"
  else
    fail "$name: the data layer replays its startup profile" "$(grep -i profile "$PHASE_LOG" | head -5)"
  fi
  if [[ $PROFILE_FETCHES -ge 1 ]]; then
    pass "$name: the fetch trace has fetches of kind profile ($PROFILE_FETCHES)"
  else
    fail "$name: the fetch trace has fetches of kind profile"
  fi
  # Which reads still waited, and how long (a read on a chunk whose replay request was still in
  # flight waits too, shorter).
  [[ $NET_MISSES -gt 0 ]] && cat "$TRACE_DIR"/trace-*.jsonl | grep '"ev":"read"' | grep '"net":true' |
    grep -oE '"path":"[^"]*"|"wait_ms":[0-9.]+' | paste -sd' ' | fold -w 200 | head -3 | sed 's/^/    waited: /'
  local bound=$((BASE / 4))
  [[ $bound -lt 2 ]] && bound=2
  if [[ $NET_MISSES -ge 0 && $NET_MISSES -le $bound ]]; then
    pass "$name: blocking misses drop to near zero ($NET_MISSES, without a profile $BASE)"
  else
    fail "$name: blocking misses drop to near zero" "$NET_MISSES reads waited on the network (bound $bound, without a profile $BASE)"
  fi
  # The replay fetches what the workload reads, not the fillers between: bytes over the link
  # within 1.2x of the run without a profile (which fetched exactly what it read), and every
  # byte the replay fetched was read.
  if [[ $FETCHED -gt 0 && $((FETCHED * 10)) -le $((BASE_BYTES * 12)) && $PROFILE_FETCHED -gt 0 &&
        $PROFILE_USED -eq $PROFILE_FETCHED ]]; then
    pass "$name: the replay fetched only what was read ($FETCHED bytes, without a profile $BASE_BYTES)"
  else
    fail "$name: the replay fetched only what was read" "fetched $FETCHED (replay $PROFILE_FETCHED, of it used $PROFILE_USED), without a profile $BASE_BYTES"
  fi
}
REG_LINES=$(wc -l <"$WORK/registry.log")
run_phase registry-tag "$WORK/rootB1" registry "$REF" 1
TAG_MISSES=$NET_MISSES
replayed registry-tag "referrers tag" "referrers tag, 2 round trips"
# grep -c, not -q: -q would leave tail writing into a closed pipe, and pipefail would turn its
# SIGPIPE into a failure whenever more than a pipe's worth of log follows the match.
if [[ $(tail -n +$((REG_LINES + 1)) "$WORK/registry.log" | grep -c "/v2/$REPO/manifests/sha256-") -gt 0 ]]; then
  pass "registry-tag: the daemon read the referrers tag sha256-<hex>"
else
  fail "registry-tag: the daemon read the referrers tag sha256-<hex>" \
    "$(tail -n +$((REG_LINES + 1)) "$WORK/registry.log" | grep -oE '[A-Z]+ /v2/[^ ]*(manifests|referrers)[^ ]*' | head -10)"
fi

: >"$WORK/api.log"
run_phase registry-api "$WORK/rootB2" registry "$AREF" 1
API_MISSES=$NET_MISSES
replayed registry-api "referrers API" "referrers API, 3 round trips"
# The tag (asked together with the API) lists the artifact pushed before, the API the newer:
# the API's answer is taken ("found through the referrers API" above; its 3 round trips: the
# manifest embeds the blob).
if grep -q "GET /v2/$REPO/referrers/sha256:" "$WORK/api.log"; then
  pass "registry-api: the daemon asked the referrers API and took its answer"
else
  fail "registry-api: the daemon took the referrers API's answer" "$(grep -v blobs "$WORK/api.log" | head -10)"
fi

# ---- K: the base layer mounted for another image first ----
# An image of the busybox layer alone is pulled first; the test image has the same first
# layer, so containerd mounts only its data layer, on the base image's snapshot.  The daemon
# pulls the test image's profiles at that mount, and the base layer, mounted for the other
# image, replays the test image's profile of it.  The base layer already replays a profile
# of its own then (one chunk the test image's profile does not name, as if another workload
# had read another file): the test image's joins that replay.
make_image "$WORK/oci-base" v1 "$WORK/l1" >/dev/null
check "base-only image converted" make_estargz_image "$WORK/oci-base" "$WORK/esgz-base"
check "base-only image pushed" push_image "$WORK/esgz-base" v1 test/pc-base
BASE_REF=$REGISTRY/test/pc-base:v1
read -r BASE_LAYER BASE_TOC < <(esgz_layer_info "$WORK/esgz-base")
mkdir -p "$WORK/rootK/profiles"
"$STARGZD" profile show --root "$WORK/rootA" --json "$BASE_TOC" 2>/dev/null | $PYTHON -c '
import json, sys
p = json.load(sys.stdin)
named = {c for f, l in p["chunks"] for c in range(f, l + 1)}
other = min(c for c in range(p["chunkCount"]) if c not in named)
json.dump({"schemaVersion": 1, "toc": p["toc"], "chunkCount": p["chunkCount"],
           "chunks": [[other, other]]}, open(sys.argv[1], "w"))' "$WORK/rootK/profiles/${BASE_TOC#sha256:}.json" ||
  fail "chain: a one-chunk profile of the base layer" "$("$STARGZD" profile show --root "$WORK/rootA" "$BASE_TOC" 2>&1 | head -3)"
FIRST_LAYER=$($PYTHON -c '
import json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(os.path.join(d, "blobs", *idx["manifests"][0]["digest"].split(":"))))
print(m["layers"][0]["digest"])' "$WORK/esgz")
if [[ $BASE_LAYER != "$FIRST_LAYER" ]]; then
  fail "chain: the base-only image has the test image's first layer" "$BASE_LAYER, $FIRST_LAYER"
elif ! start_stargzd_phase "$WORK/rootK" registry; then
  fail "chain: stargzd starts" "$(tail -5 "$WORK/stargzd.log")"
else
  if rpull "$BASE_REF" "$WORK/chain-base.rpull" &&
     wait_for 10 grep -q "profile pull $BASE_REF: none" "$WORK/stargzd.log" &&
     wait_for 10 grep -q "layer $BASE_LAYER: replaying its startup profile: 1 chunks" "$WORK/stargzd.log" &&
     rpull "$REF" "$WORK/chain.rpull"; then
    if wait_for 15 grep -q "layer $BASE_LAYER: its startup profile grew: the replay goes on with the rest" "$WORK/stargzd.log"; then
      pass "chain: the base layer, mounted for another image and replaying its own profile, replays the test image's too"
    else
      fail "chain: the base layer replays the test image's profile too" "$(grep -E 'profile|replay' "$WORK/stargzd.log" | tail -6)"
    fi
    out=$($CTR run --rm --snapshotter stargz "$REF" c-chain sh -c "$WORKLOAD" 2>&1)
    if [[ $out == *"$WANT"* ]]; then
      pass "chain: the container prints the right output"
    else
      fail "chain: the container prints the right output" "want $WANT, got: $out"
    fi
    # A restart in the middle: the daemon remounts both snapshots from its database (the
    # base one for the base-only image, the data layer with the base below it), with its
    # profile store emptied: the test image's profile comes only from the registry, and the
    # base layer replays it only if the restored data layer passed its parent chain.
    stop_stargzd INT
    cp "$WORK/stargzd.log" "$WORK/chain-1.log"
    PHASE_LOGS+=("$WORK/chain-1.log")
    rm -rf "$WORK/rootK/profiles"
    if ! start_stargzd_phase "$WORK/rootK" registry; then
      fail "chain, restarted: stargzd starts" "$(tail -5 "$WORK/stargzd.log")"
    elif wait_for 20 grep -q "layer $BASE_LAYER: replaying its startup profile" "$WORK/stargzd.log"; then
      pass "chain, restarted: the restored base layer replays the test image's profile"
    else
      fail "chain, restarted: the restored base layer replays the test image's profile" "$(grep -E 'profile|replay|restor' "$WORK/stargzd.log" | tail -8)"
    fi
    out=$(run_after_restart_pc "$REF" c-chain2 2>&1)
    if [[ $out == *"$WANT"* ]]; then
      pass "chain, restarted: the container prints the right output"
    else
      fail "chain, restarted: the container prints the right output" "want $WANT, got: $out"
    fi
  else
    fail "chain: both images pulled" "$(tail -3 "$WORK/chain-base.rpull" "$WORK/chain.rpull" 2>&1; grep 'profile pull' "$WORK/stargzd.log" | tail -3)"
  fi
  $CTR images rm --sync "$REF" "$BASE_REF" >/dev/null 2>&1
  no_snapshots_left || fail "chain: no snapshots left after the images' removal"
  stop_stargzd INT
  cp "$WORK/stargzd.log" "$WORK/chain.log"
  PHASE_LOGS+=("$WORK/chain.log")
fi

# ---- H: hostile stored profiles, each ignored ----
hostile() {   # NAME (the file is in place under ROOT)
  local name=$1 root=$WORK/root-$1
  run_phase "$name" "$root" local "$REF"
  output_right "$name"
  if grep -q "startup profile.* ignored: " "$PHASE_LOG"; then
    pass "$name: ignored, with a log line"
  else
    fail "$name: ignored, with a log line" "$(grep -i profile "$PHASE_LOG" | head -5)"
  fi
  if ! log_has "$PHASE_LOG" "replaying"; then
    pass "$name: nothing replayed"
  else
    fail "$name: nothing replayed" "$(grep replaying "$PHASE_LOG")"
  fi
  grep "startup profile.*ignored" "$PHASE_LOG" | head -2 | sed 's/.*ignored: /    log: ... ignored: /'
  # What the store holds after the run's own recording (not asserted: the contract leaves it open).
  "$STARGZD" profile ls --root "$root" 2>&1 | grep -F "$TOC" | sed 's/^/    then: /'
}
plant() {   # NAME: creates ROOT/profiles/<toc-hex>.json, the content from stdin
  mkdir -p "$WORK/root-$1/profiles"
  cat >"$WORK/root-$1/profiles/$TOCHEX.json"
}
head -c 3000 /dev/urandom | plant corrupt
hostile corrupt
{
  printf '{"schemaVersion":1,"toc":"%s","chunkCount":%s,"chunks":[[0,0]],"pad":"' "$TOC" "${CHUNK_COUNT:-1}"
  head -c 1200000 /dev/zero | tr '\0' x
  printf '"}\n'
} | plant oversized
hostile oversized
printf '{"schemaVersion":1,"toc":"%s","chunkCount":%s,"chunks":[[0,3]]}\n' "$TOC" $((${CHUNK_COUNT:-1} + 1)) |
  plant chunkcount
hostile chunkcount
OTHER=sha256:$(echo other | sha256sum | cut -d' ' -f1)
printf '{"schemaVersion":1,"toc":"%s","chunkCount":%s,"chunks":[[0,3]]}\n' "$OTHER" "${CHUNK_COUNT:-1}" |
  plant othertoc
hostile othertoc

# ---- E: the profile stored under the root before the pull: its first chunks are read beside
# the TOC (the profile's "head"), before the TOC places them ----
mkdir -p "$WORK/rootE" && cp -a "$WORK/rootA/profiles" "$WORK/rootE/"
run_phase early "$WORK/rootE" local "$REF"
output_right "early"
EARLY_MISSES=$NET_MISSES
EARLY_LINE=$(grep "layer $LAYER: .* bytes of its startup profile were read beside its TOC" "$PHASE_LOG" | head -1)
EARLY_USED=$(sed -nE 's/.*, ([0-9]+) used$/\1/p' <<<"$EARLY_LINE")
if [[ -n $EARLY_USED && $EARLY_USED -gt 0 ]]; then
  pass "early: the replay took what was read beside the TOC ($EARLY_USED bytes)"
else
  fail "early: the replay took what was read beside the TOC" "${EARLY_LINE:-no such log line}: $(grep -iE 'startup profile|early read' "$PHASE_LOG" | head -8)"
fi
if [[ $NET_MISSES -ge 0 && $NET_MISSES -le $(( BASE / 4 > 2 ? BASE / 4 : 2 )) ]]; then
  pass "early: blocking misses drop to near zero ($NET_MISSES, without a profile $BASE)"
else
  fail "early: blocking misses drop to near zero" "$NET_MISSES reads waited on the network (without a profile $BASE)"
fi

# A head that names other bytes of the blob, and bytes past its end: what is read there is
# never what a read gets unless it is the blob's own bytes at those offsets, and every chunk is
# verified against the TOC; the container's output is right.
mkdir -p "$WORK/rootW" && cp -a "$WORK/rootA/profiles" "$WORK/rootW/"
$PYTHON - "$WORK/rootW/profiles/$TOCHEX.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["head"] = [[0, 300000], [999999999, 1000000000]]
json.dump(p, open(sys.argv[1], "w"))
PY
run_phase wronghead "$WORK/rootW" local "$REF"
output_right "wrong head"
if log_has "$PHASE_LOG" "layer $LAYER: replaying its startup profile: "; then
  pass "wrong head: the layer still replays its profile"
else
  fail "wrong head: the layer still replays its profile" "$(grep -i profile "$PHASE_LOG" | head -5)"
fi

echo "    net misses: without a profile $BASE, with the profile pulled through the tag $TAG_MISSES, through the API $API_MISSES, stored before the pull $EARLY_MISSES"
if ! grep -q ' error ' "${PHASE_LOGS[@]}"; then
  pass "stargzd logged no errors"
else
  fail "stargzd logged no errors" "$(grep ' error ' "${PHASE_LOGS[@]}" | head -5)"
fi
finish
