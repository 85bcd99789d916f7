#!/usr/bin/env bash
# The benchmark: time to a command's output from a cold start, legacy pull vs lazy pull.
#
#   tools/bench/run.sh [--quick]       (or BENCH_QUICK=1; `make bench` / `make bench-quick`)
#   tools/bench/run.sh --rss           memory only: each lazy snapshotter's RSS idle, with the
#                                      python image run, with python and gcc, after background fetch
#
# For each link profile (BENCH_LINKS) x image (base, python, gcc, imports; quick: base, python,
# imports) x form x snapshotter:
#   legacy   (gzip)    containerd's overlayfs, `ctr images pull` (download + unpack everything)
#   esgz, esgz-opt     stargzd and the Go reference (tools/bench/reference), `ctr-remote images rpull`
#   esgz+profile       stargzd on the esgz image with a startup profile recorded on "another node"
#                      (python, gcc, imports; issue #14): a record pass of the workload under another
#                      snapshotter root, then every run cold with only those profiles in the fresh root
#   esgz+profile-python  gcc with the profiles python recorded (a shared base layer)
# each run from a cold state: fresh containerd and snapshotter roots (so no image, no content, no
# layer cache), page cache dropped.  Measured: pull time; `ctr run --rm` time until the workload's
# output (python: "hello"; imports: a realistic stdlib import set, then "hello"; gcc: compile + run
# a one-line program; base: `true`, until exit); total; bytes and HTTP requests from the registry,
# counted in the link's delay proxy; then a warm re-run.  Plus a physical-limit row per image (see
# the report's footnote).  stargzd writes its fetch trace into each run's log dir (BENCH_TRACE);
# the report's miss timelines and the timeline PNG come from it.
#   BENCH_RUNS           runs per row (default 3; quick 1)
#   BENCH_SNAPSHOTTERS   which of "overlayfs stargzd reference" to run (default all)
#   BENCH_IMAGES         which images (default "base python gcc imports"; quick "base python imports")
#   BENCH_LINKS          link profiles, in turn: default (100 Mbit/s, 20 ms each way), far (25 Mbit/s,
#                        50 ms), near (1 Gbit/s, 1 ms), all, or a comma list (default: default)
#   BENCH_TRACE          auto (default: on when the stargzd binary knows the config key
#                        fetch_trace_dir), 1, 0
#   BENCH_FORMS          which forms to run (default all: legacy esgz esgz-opt esgz+profile
#                        esgz+profile-python); the limit row is always there
#   BENCH_PROFILE        1 (default): the esgz+profile rows; 0: none
#   BENCH_PROFILE_SHARE  how a recorded profile reaches the measured run's daemon: copy (default:
#                        into the fresh root's profiles/) or registry (`stargzd profile push` to the
#                        bench registry, the daemon with profiles = "registry" pulls it)
#   BENCH_PROFILE_REUSE  1: no record pass for a workload whose profiles an earlier invocation left in
#                        $BENCH_WORK/profiles/WORKLOAD (default 0: recorded afresh, once per invocation)
#   BENCH_REQLOG         1: the delay proxy logs every request; each run's log dir gets its own
#                        (requests.log: ms since the daemon's start, connection, request line, range)
#   BENCH_PULL           the pull client: ctr-hook (default; see below), ctr (`ctr images pull` for
#                        legacy, `ctr-remote images rpull` for the lazy snapshotters) or cri (every
#                        form: containerd's CRI plugin, as kubelet pulls, asked by tools/cri-pull, the snapshotter under test being the
#                        CRI's; the CRI labels, cri.manifest-digest among them, reach the snapshotter;
#                        results named DATE[-quick][-LINK]-cri.*), or cri-proxy (as cri, but stargzd's
#                        rows pull through stargzd's own CRI image-service proxy, [cri_keychain], as
#                        kubelet does with --image-service-endpoint: the daemon sees the PullImage
#                        and loads the image's layers before containerd's Prepare, daemon/pull_ahead.h;
#                        results named …-cri-proxy.*), or ctr-ahead (as ctr, but stargzd's rows run
#                        ctr-remote under `stargzd pull-ahead`, daemon/ahead_cmd.h: the daemon loads the
#                        image's layers while ctr-remote resolves it; results named …-ctr-ahead.*),
#                        or ctr-hook / cri-hook (as ctr / cri, but stargzd's rows give containerd a
#                        hosts.toml that lists stargzd's resolve hook, resolve_hook_address, before
#                        the registry: ctr-remote with --hosts-dir, or the CRI plugin's config_path;
#                        the daemon loads the layers from containerd's first resolve request on,
#                        daemon/ahead_cmd.h; results named …-ctr-hook.*, …-cri-hook.*).  ctr-hook
#                        is the default since 2026-12-06: stargzd as its README deploys it for
#                        ctr, nerdctl and BuildKit (a hosts.toml entry, no wrapper); the reference
#                        and legacy rows pull exactly as with ctr.  Before, the default was ctr.
#                        The record pass always uses ctr-remote.
#   BENCH_TIMEOUT        seconds allowed for one pull or one run (default 120)
#   BENCH_RESULTS        where the results go (default tools/bench/results): per link
#                        DATE[-quick][-LINK].{md,csv,png} and DATE[-quick][-LINK]-timeline.png
#                        (no -LINK for the default link)
# Everything else: tools/bench/common.sh.  Needs root.  Never part of `make check`.
set -euo pipefail
[[ ${1:-} == --quick ]] && export BENCH_QUICK=1
RSS_ONLY=0
[[ ${1:-} == --rss ]] && RSS_ONLY=1
. "$(dirname "$0")/common.sh"
RUNS=${BENCH_RUNS:-$([[ $BENCH_QUICK == 1 ]] && echo 1 || echo 3)}
SNAPSHOTTERS=${BENCH_SNAPSHOTTERS:-$([[ $RSS_ONLY == 1 ]] && echo stargzd reference || echo overlayfs stargzd reference)}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}
TMO=${BENCH_TIMEOUT:-120}
RD=$BENCH_WORK/run          # the cold state of one measurement, wiped every time
LOGS=$BENCH_WORK/logs
[[ $(id -u) -eq 0 ]] || die "needs root"
for c in containerd ctr ctr-remote runc skopeo docker-registry gnuplot curl nsenter; do
  command -v $c >/dev/null || die "$c missing: tools/install-deps.sh --bench"
done
[[ -x $STARGZD ]] || die "$STARGZD missing: make -j2 all"
# A private copy: build/ may be rebuilt by someone else while the bench runs.
mkdir -p "$BENCH_WORK"
STARGZD_ID="$(stat -c %y "$STARGZD" | cut -c1-19), sha256 $(sha256sum "$STARGZD" | cut -c1-12)"
[[ $STARGZD -ef $BUILD_DIR/stargzd ]] || STARGZD_ID+=", from $STARGZD, not this tree's build"
FORMS=${BENCH_FORMS:-legacy esgz esgz-opt esgz+profile esgz+profile-python}
PROFILE_ON=${BENCH_PROFILE:-1}
PROFILE_SHARE=${BENCH_PROFILE_SHARE:-copy}
PULL=${BENCH_PULL:-ctr-hook}
[[ $PULL == ctr || $PULL == ctr-ahead || $PULL == ctr-hook || $PULL == cri || $PULL == cri-proxy ||
   $PULL == cri-hook ]] || die "BENCH_PULL: ctr, ctr-ahead, ctr-hook, cri, cri-proxy or cri-hook"
HOOK_PORT=${BENCH_HOOK_PORT:-5399}   # stargzd's resolve hook (BENCH_PULL=ctr-hook, cri-hook)
CRI_PULL=$BUILD_DIR/tools/cri-pull
[[ $PULL == ctr* || -x $CRI_PULL ]] || die "$CRI_PULL missing: make -j2 all"
[[ $PROFILE_SHARE == copy || $PROFILE_SHARE == registry ]] || die "BENCH_PROFILE_SHARE: copy or registry"
cp "$STARGZD" "$BENCH_WORK/stargzd.bin.tmp" && mv "$BENCH_WORK/stargzd.bin.tmp" "$BENCH_WORK/stargzd.bin"
STARGZD=$BENCH_WORK/stargzd.bin
if [[ $PULL == cri* ]]; then
  cp "$CRI_PULL" "$BENCH_WORK/cri-pull.bin.tmp" && mv "$BENCH_WORK/cri-pull.bin.tmp" "$BENCH_WORK/cri-pull.bin"
  CRI_PULL=$BENCH_WORK/cri-pull.bin
fi
# The fetch trace (config key fetch_trace_dir) is being added to the daemon: an older binary
# refuses a config with a key it does not know, so the key is passed only when the binary has it.
TRACE=${BENCH_TRACE:-auto}
if [[ $TRACE == auto ]]; then
  if grep -aq fetch_trace_dir "$STARGZD"; then TRACE=1; else TRACE=0; fi
fi
log "stargzd fetch trace: $([[ $TRACE == 1 ]] && echo on || echo "off (the binary does not know fetch_trace_dir, or BENCH_TRACE=0)")"
LINKS=$(bench_links)
for l in $LINKS; do link_profile "$l" >/dev/null || die "unknown link profile $l (default, far, near, all)"; done

REF_BIN=""
if [[ " $SNAPSHOTTERS " == *" reference "* ]]; then
  log "building the Go reference snapshotter (GOPATH mode; first time about 2 min)"
  if REF_BIN=$(BENCH_WORK=$BENCH_WORK "$BENCH_DIR/reference/build.sh" 2>"$BENCH_WORK/reference-build.log"); then
    :
  else
    REF_BIN=""
    log "reference build failed (its rows are marked so): $(tail -3 "$BENCH_WORK/reference-build.log")"
  fi
fi

"$BENCH_DIR/images.sh"
# link_up PROFILE: the link with that profile's rate and delay; sets LINK (its description),
# RATE_BITS, RTT_S
link_up() {
  read -r LINK_RATE LINK_DELAY_MS < <(link_profile "$1")
  export LINK_RATE LINK_DELAY_MS
  LINK=$("$BENCH_DIR/link.sh" up)
  log "$LINK"
  RATE_BITS=$($PY -c '
import re,sys
m=re.fullmatch(r"([0-9.]+)([kmg]?)(bit|bps)?", sys.argv[1].lower())
v=float(m.group(1))*{"":1,"k":1e3,"m":1e6,"g":1e9}[m.group(2)]
print(v*8 if m.group(3)=="bps" else v)' "$LINK_RATE")
  RTT_S=$(awk -v d="$LINK_DELAY_MS" 'BEGIN { print 2 * d / 1000 }')
}

# --- one cold measurement ------------------------------------------------------------------
stop_all() {
  local p pids
  stop_pidfile "$RD/containerd.pid" 30
  # shims containerd left (they carry our socket path in their command line)
  pids=$(pgrep -f -- "-address $RD/containerd/containerd.sock" || true)
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  stop_pidfile "$RD/snapshotter.pid" 30
  # anything still mounted under the run dir (dead FUSE mounts, overlays)
  { grep -o " $RD/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  return 0
}
trap 'stop_all' EXIT

# containerd's hosts.toml for the link's registry; with "hook", stargzd's resolve hook is the
# first host (containerd asks it first, it answers 404 and starts loading the image ahead).
hosts_toml() {  # [hook]
  printf 'server = "http://127.0.0.1:%s"\n' "$LINK_PORT"
  [[ $1 == hook ]] && printf '[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$HOOK_PORT"
  printf '[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$LINK_PORT"
}

start_containerd() {  # PROXY_SOCK (empty: none) [CRI_SNAPSHOTTER: the CRI plugin on, pulling with it]
  local cri=${2:-}
  mkdir -p "$RD/containerd"
  cat >"$RD/containerd/config.toml" <<TOML
version = 2
root = "$RD/containerd/root"
state = "$RD/containerd/state"
disabled_plugins = [$([[ -n $cri ]] || echo '"io.containerd.grpc.v1.cri"')]
[grpc]
  address = "$RD/containerd/containerd.sock"
[ttrpc]
  address = "$RD/containerd/containerd.sock.ttrpc"
[debug]
  address = "$RD/containerd/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$RD/containerd/opt"
TOML
  if [[ -n $1 ]]; then
    printf '[proxy_plugins.stargz]\n  type = "snapshot"\n  address = "%s"\n' "$1" >>"$RD/containerd/config.toml"
  fi
  if [[ -n $cri ]]; then
    # The CRI plugin pulls from the link's port over plain HTTP (its own hosts.toml), with
    # snapshot annotations on (the cri.* labels); no CNI is needed for pulls and ctr runs.
    mkdir -p "$RD/cri-certs.d/127.0.0.1:$LINK_PORT" "$RD/cni/bin" "$RD/cni/conf"
    hosts_toml "$([[ $PULL == cri-hook && ${sn:-} == stargzd ]] && echo hook || true)" \
      >"$RD/cri-certs.d/127.0.0.1:$LINK_PORT/hosts.toml"
    cat >>"$RD/containerd/config.toml" <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$RD/cni/bin"
    conf_dir = "$RD/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$cri"
    disable_snapshot_annotations = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$RD/cri-certs.d"
TOML
  fi
  start_bg "$RD/containerd.pid" "$RD/containerd.log" nsenter --net="$NETNS_PATH" \
    containerd --config "$RD/containerd/config.toml"
  wait_for 30 ctr --address "$RD/containerd/containerd.sock" version
}

start_snapshotter() {  # stargzd|reference -> socket path on stdout
  case $1 in
    stargzd)
      mkdir -p "$RD/certs.d"; echo '{}' >"$RD/docker-config.json"
      cat >"$RD/stargzd.toml" <<CFG
plain_http_localhost = true
hosts_dir = "$RD/certs.d"
docker_config = "$RD/docker-config.json"
${TRACE_DIR:+fetch_trace_dir = \"$TRACE_DIR\"}
${PROFILE_CONFIG:-}
${STARGZD_EXTRA_CONFIG:-}
$([[ $PULL == *-hook ]] && echo "resolve_hook_address = \"127.0.0.1:$HOOK_PORT\"" || true)
CFG
      # after the top-level keys: a table ends them
      [[ $PULL == cri-proxy ]] && printf '[cri_keychain]\nenable_keychain = true\nimage_service_path = "%s"\nlisten_path = "%s"\n' \
        "$RD/containerd/containerd.sock" "$RD/cri.sock" >>"$RD/stargzd.toml"
      start_bg "$RD/snapshotter.pid" "$RD/snapshotter.log" nsenter --net="$NETNS_PATH" \
        "$STARGZD" --foreground --root "$RD/sg" --address "$RD/sg.sock" --config "$RD/stargzd.toml"
      wait_for 20 test -S "$RD/sg.sock" && echo "$RD/sg.sock" ;;
    reference)
      [[ -n $REF_BIN ]] || return 1
      start_bg "$RD/snapshotter.pid" "$RD/snapshotter.log" nsenter --net="$NETNS_PATH" \
        "$REF_BIN" -root "$RD/ref" -address "$RD/ref.sock"
      wait_for 20 test -S "$RD/ref.sock" && echo "$RD/ref.sock" ;;
  esac
}

stat_field() { $PY -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# --- learned startup profiles (issue #14): a record pass, and how its profiles reach a run ----------
# The workloads with an esgz+profile row.  Each one's profiles are recorded once per invocation
# (on the first link measured), the first time a row needs them: stargzd with profiles = "local"
# on a snapshotter root of its own, the esgz image pulled and the workload run once from a cold
# state, then containerd stopped and the daemon stopped cleanly (SIGTERM, waited for: it saves
# its profiles when the workload goes quiet, at layer close and at exit); ROOT/profiles/*.json
# are kept in $PROFILE_STORE/WORKLOAD.  PROFILE_STATE[WORKLOAD]: ok, or the status its rows get.
PROFILE_WORKLOADS="python gcc imports"
PROFILE_STORE=$BENCH_WORK/profiles
declare -A PROFILE_STATE=()
# SIGTERM, then wait up to SECONDS for the process to exit; 1 (and SIGKILL) if it did not.
stop_clean() {  # PIDFILE SECONDS
  local pid i
  pid=$(cat "$1" 2>/dev/null) || return 0
  rm -f "$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  return 1
}
record_profile() {  # WORKLOAD
  local w=$1 ref="127.0.0.1:$LINK_PORT/bench-$1:esgz" sock r run_s t0 argv=() n=0 f clean=1
  [[ -z ${PROFILE_STATE[$w]:-} ]] || return 0
  if [[ ${BENCH_PROFILE_REUSE:-0} == 1 ]] && compgen -G "$PROFILE_STORE/$w/*.json" >/dev/null; then
    PROFILE_STATE[$w]=ok
    log "record pass for $w skipped (BENCH_PROFILE_REUSE=1): the profiles in $PROFILE_STORE/$w, from an earlier run"
    return 0
  fi
  local L=$LOGS/$w-record-stargzd
  rm -rf "$L" "$PROFILE_STORE/$w"; mkdir -p "$L" "$PROFILE_STORE/$w"
  stop_all; rm -rf "$RD"; mkdir -p "$RD"
  log "record pass for $w: stargzd (profiles = \"local\", root $RD/sg), $ref pulled and run once, cold"
  PROFILE_CONFIG='profiles = "local"'
  TRACE_DIR=""
  [[ $TRACE == 1 ]] && TRACE_DIR=$L
  PROFILE_STATE[$w]=fail:record-run
  if sock=$(start_snapshotter stargzd) && start_containerd "$sock"; then
    sync; echo 3 >/proc/sys/vm/drop_caches
    mapfile -t argv < <(workload_argv "$w")
    if timeout "$TMO" nsenter --net="$NETNS_PATH" ctr-remote --address "$RD/containerd/containerd.sock" \
      images rpull --plain-http --snapshotter stargz "$ref" >"$L/pull.log" 2>&1 </dev/null; then
      r=$($BENCHLIB timed "$(workload_expect "$w")" "$L/run.log" -- timeout "$TMO" nsenter --net="$NETNS_PATH" \
        ctr --address "$RD/containerd/containerd.sock" run --rm --snapshotter stargz "$ref" "record-$w" "${argv[@]}")
      read -r run_s _ t0 <<<"$r"
      [[ $t0 == 0 && $run_s != -1 ]] && PROFILE_STATE[$w]=fail:no-profile
    fi
  fi
  # containerd first (the container's rootfs goes), then the daemon: SIGTERM and wait, so it
  # saves its profiles as it closes its layers and exits (a SIGKILL would lose those not yet saved)
  stop_pidfile "$RD/containerd.pid" 30
  stop_clean "$RD/snapshotter.pid" 60 || clean=0
  stop_all
  cp "$RD"/*.log "$L/" 2>/dev/null || true
  for f in "$RD"/sg/profiles/*.json; do
    [[ -s $f ]] || continue
    cp "$f" "$PROFILE_STORE/$w/" && n=$((n + 1))
  done
  # the store's index by layer digest (symlinks to the profiles: each one's TOC tail)
  if [[ -d "$RD/sg/profiles/layers" ]]; then cp -a "$RD/sg/profiles/layers" "$PROFILE_STORE/$w/"; fi
  "$STARGZD" profile ls --root "$RD/sg" >"$L/profiles.txt" 2>&1 </dev/null || true
  { grep -i 'profile' "$L/snapshotter.log" 2>/dev/null || true; } | head -8 |
    while read -r line; do log "  daemon: $line"; done
  ((clean)) || log "record pass for $w: the daemon did not exit within 60 s of SIGTERM (killed): profiles not saved at exit are lost"
  if [[ ${PROFILE_STATE[$w]} == fail:record-run ]]; then
    log "record pass for $w FAILED (pull or run; logs in $L): its esgz+profile rows are marked fail:record-run"
  elif ((n == 0)); then
    log "record pass for $w: the daemon wrote NO PROFILE ($RD/sg/profiles/ is empty: a binary without the" \
      "profile wiring?); its esgz+profile rows run without one and are marked fail:no-profile"
  else
    PROFILE_STATE[$w]=ok
    log "record pass for $w: $n profile(s) kept in $PROFILE_STORE/$w ($(tr '\n' ';' <"$L/profiles.txt"))"
  fi
  return 0
}
# Removes the profile artifacts of IMAGE's esgz tag from the bench registry: the referrers tag
# sha256-<hex of the image manifest digest> (Debian's docker-registry has no referrers API, so
# the tag is the only way a pull finds them), deleted by its digest.
clear_profile_artifacts() {  # IMAGE
  local base="http://127.0.0.1:$REGISTRY_PORT/v2/bench-$1/manifests" md idx
  md=$(innet curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/esgz" </dev/null |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}') || return 0
  [[ -n $md ]] || return 0
  idx=$(innet curl -sfI -H 'Accept: application/vnd.oci.image.index.v1+json' "$base/sha256-${md#sha256:}" </dev/null |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}') || return 0
  [[ -z $idx ]] || innet curl -sf -X DELETE "$base/$idx" -o /dev/null </dev/null || true
}
# Puts WORKLOAD's recorded profiles where the daemon of this run of IMAGE finds them: copied into
# the fresh root's profiles/ dir, or (BENCH_PROFILE_SHARE=registry) pushed as the image's profile
# artifact to the bench registry (its unshaped port, as the image pushes), from a root of their
# own, for the daemon (profiles = "registry") to pull over the link.  Untimed, before the run.
share_profile() {  # WORKLOAD IMAGE LOGDIR
  local w=$1 img=$2 L=$3 dir
  if [[ $PROFILE_SHARE == copy ]]; then
    mkdir -p "$RD/sg/profiles" && cp -a "$PROFILE_STORE/$w"/. "$RD/sg/profiles/"
    return
  fi
  dir=$RD/profile-push-root
  mkdir -p "$dir/profiles" && cp "$PROFILE_STORE/$w"/*.json "$dir/profiles/" || return 1
  # the only artifact of the image: no other workload's or run's
  clear_profile_artifacts "$img"
  if ! innet "$STARGZD" profile push --root "$dir" --plain-http "127.0.0.1:$REGISTRY_PORT/bench-$img:esgz" \
    >"$L/profile-push.log" 2>&1 </dev/null; then
    log "stargzd profile push of $w's profiles to bench-$img:esgz failed: $(tail -2 "$L/profile-push.log")"
    return 1
  fi
  rm -rf "$dir"
}

CSV_ROWS=()
row() { CSV_ROWS+=("$(IFS=,; echo "$*")"); }

measure() {  # IMAGE FORM SNAPSHOTTER RUN
  local img=$1 form=$2 sn=$3 n=$4 sock="" argv=() out
  local L=$LOGS/$img-$form-$sn-$n status=ok pull_s="" run_s="" run_exit="" warm_s="" bytes="" pbytes="" reqs="" remote=""
  # a profile form pulls the esgz image; its daemon starts with the profiles workload $prof recorded
  local tag=$form prof="" prof_fail="" replayed=""
  case $form in
    esgz+profile) tag=esgz prof=$img ;;
    esgz+profile-*) tag=esgz prof=${form#esgz+profile-} ;;
  esac
  local ref="127.0.0.1:$LINK_PORT/bench-$img:$tag"
  [[ -z $prof ]] || record_profile "$prof"
  rm -rf "$L"; mkdir -p "$L"
  stop_all
  rm -rf "$RD"; mkdir -p "$RD"
  PROFILE_CONFIG=""
  if [[ -n $prof ]]; then
    if [[ ${PROFILE_STATE[$prof]} != ok ]]; then
      # still run it (the plumbing, the figures in the CSV), but never count it as a profile row
      prof_fail=${PROFILE_STATE[$prof]}
    elif ! share_profile "$prof" "$img" "$L"; then
      prof_fail=fail:profile-push
    fi
    PROFILE_CONFIG="profiles = \"$([[ $PROFILE_SHARE == registry ]] && echo registry || echo local)\""
  fi
  mapfile -t argv < <(workload_argv "$img")
  # the run's clock for its timeline: the daemon's start (its trace's t = 0), the pull's, the run's
  local t_daemon=$EPOCHREALTIME t_pull="" t_run=""
  # the proxy's request log holds this run's requests only (sliced into the run's log dir below)
  [[ ${BENCH_REQLOG:-0} == 1 && -f $LINK_REQLOG ]] && : >"$LINK_REQLOG"
  TRACE_DIR=""
  [[ $TRACE == 1 && $sn == stargzd ]] && TRACE_DIR=$L
  if [[ $sn != overlayfs ]]; then
    if ! sock=$(start_snapshotter "$sn"); then
      status=fail:snapshotter-start
    fi
  fi
  local cri_sn=""
  [[ $PULL == cri* ]] && cri_sn=$([[ $sn == overlayfs ]] && echo overlayfs || echo stargz)
  if [[ $status == ok ]] && ! start_containerd "$sock" "$cri_sn"; then status=fail:containerd-start; fi
  local CTR=(nsenter --net="$NETNS_PATH" ctr --address "$RD/containerd/containerd.sock")
  [[ $PULL == cri* ]] && CTR+=(-n k8s.io)   # the CRI plugin's namespace
  local SNOPT=()
  [[ $sn != overlayfs ]] && SNOPT=(--snapshotter stargz)
  if [[ $status == ok ]]; then
    sync; echo 3 >/proc/sys/vm/drop_caches
    local s0 s2 r t0 pull_cmd
    s0=$("$BENCH_DIR/link.sh" stats)
    if [[ $PULL == cri-proxy && $sn == stargzd ]]; then
      pull_cmd=("$CRI_PULL" "$RD/cri.sock" "$ref")
    elif [[ $PULL == cri* ]]; then
      pull_cmd=("$CRI_PULL" "$RD/containerd/containerd.sock" "$ref")
    elif [[ $PULL == ctr-ahead && $sn == stargzd ]]; then
      # No "--" before the command: timed-pair splits its own arguments at "--".
      pull_cmd=(nsenter --net="$NETNS_PATH" "$STARGZD" pull-ahead --root "$RD/sg" "$ref" \
        ctr-remote --address "$RD/containerd/containerd.sock" \
        images rpull --plain-http --snapshotter stargz "$ref")
    elif [[ $PULL == ctr-hook && $sn == stargzd ]]; then
      mkdir -p "$RD/hook-certs.d/127.0.0.1:$LINK_PORT"
      hosts_toml hook >"$RD/hook-certs.d/127.0.0.1:$LINK_PORT/hosts.toml"
      pull_cmd=(nsenter --net="$NETNS_PATH" ctr-remote --address "$RD/containerd/containerd.sock" \
        images rpull --plain-http --hosts-dir "$RD/hook-certs.d" --snapshotter stargz "$ref")
    elif [[ $sn == overlayfs ]]; then
      pull_cmd=("${CTR[@]}" images pull --plain-http "$ref")
    else
      pull_cmd=(nsenter --net="$NETNS_PATH" ctr-remote --address "$RD/containerd/containerd.sock" \
        images rpull --plain-http --snapshotter stargz "$ref")
    fi
    # The pull and the run back to back from one process: anything between them (an interpreter
    # starting, ctr listing snapshots) would be time the snapshotter fetches in, uncounted.
    r=$($BENCHLIB timed-pair "" "$L/pull.log" "$(workload_expect "$img")" "$L/run.log" -- \
      timeout "$TMO" "${pull_cmd[@]}" -- \
      timeout "$TMO" "${CTR[@]}" run --rm "${SNOPT[@]}" "$ref" "bench-$n" "${argv[@]}")
    local run_end
    read -r _ pull_s t0 run_s run_exit run_end t_pull <<<"$r"
    [[ $t0 == 0 ]] || status=fail:pull
    if [[ $status == ok ]]; then
      t_run=$(awk -v a="$t_pull" -v b="$pull_s" 'BEGIN { printf "%.6f", a + b }')
      [[ $run_end == 0 && $run_s != -1 ]] || status=fail:run
    fi
    # (no byte count at the pull's end: reading the counters there would be such a gap)
    if [[ $sn != overlayfs && $status != fail:pull ]]; then
      # how many of the image's layers became remote (lazy) snapshots (after the run: see above)
      local keys k nr=0 nt=0
      keys=$("${CTR[@]}" snapshots --snapshotter stargz ls 2>/dev/null | awk 'NR>1 {print $1}')
      for k in $keys; do
        nt=$((nt + 1))
        "${CTR[@]}" snapshots --snapshotter stargz info "$k" 2>/dev/null | grep -q 'containerd.io/snapshot/remote' && nr=$((nr + 1))
      done
      remote="$nr/$nt"
    fi
    if [[ $status == fail:* ]]; then  # what was stuck, for the log
      ps -eo pid,ppid,stat,wchan:32,etime,args >"$L/ps.txt" 2>&1 || true
      for t in $(ps -eo pid=,stat= | awk '$2 ~ /D/ {print $1}'); do
        { echo "== $t $(tr '\0' ' ' </proc/$t/cmdline)"; cat /proc/$t/stack; } >>"$L/stacks.txt" 2>/dev/null || true
      done
    fi
    s2=$("$BENCH_DIR/link.sh" stats)
    bytes=$(( $(stat_field "$s2" down_bytes) - $(stat_field "$s0" down_bytes) ))
    reqs=$(( $(stat_field "$s2" requests) - $(stat_field "$s0" requests) ))
    if [[ $status == ok ]]; then
      r=$($BENCHLIB timed "$(workload_expect "$img")" "$L/warm.log" -- timeout "$TMO" "${CTR[@]}" run --rm \
        "${SNOPT[@]}" "$ref" "bench-warm-$n" "${argv[@]}")
      read -r warm_s _ t0 <<<"$r"
      [[ $t0 == 0 ]] || warm_s=""
    fi
  fi
  stop_all   # the daemon writes the rest of its trace as it exits
  cp "$RD"/*.log "$L/" 2>/dev/null || true
  if [[ $sn == stargzd ]]; then
    replayed=$(grep -c 'replaying its startup profile' "$RD/snapshotter.log" 2>/dev/null || true)
    { grep -E 'startup profile .* ignored|profile pull ' "$RD/snapshotter.log" 2>/dev/null || true; } | head -5 |
      while read -r line; do log "  daemon: $line"; done
  fi
  [[ -n $prof_fail && $status == ok ]] && status=$prof_fail
  # leave no profile artifact in the registry for the other rows and other users of the images
  [[ -n $prof && $PROFILE_SHARE == registry ]] && clear_profile_artifacts "$img"
  printf '{"daemon_start": %s, "pull_start": %s, "run_start": %s}\n' "$t_daemon" "${t_pull:-null}" \
    "${t_run:-null}" >"$L/times.json"
  # the proxy's requests of this run (BENCH_REQLOG=1), times relative to the daemon's start
  [[ ${BENCH_REQLOG:-0} == 1 && -f $LINK_REQLOG ]] &&
    awk -v t0="$t_daemon" '$1 >= t0 { $1 = sprintf("%8.1f", ($1 - t0) * 1000); print }' "$LINK_REQLOG" \
      >"$L/requests.log"
  local total=""
  [[ $status == ok ]] && total=$(awk -v a="$pull_s" -v b="$run_s" 'BEGIN { printf "%.4f", a + b }')
  row "$img" "$form" "$sn" "$n" "$status" "$pull_s" "$run_s" "$total" "$run_exit" "$warm_s" "$bytes" "$pbytes" \
    "$reqs" "$remote" "$replayed" "$($BENCHLIB trace "$L")"
  log "$(printf '%-6s %-8s %-9s run %d: %s pull %ss run %ss total %ss, %s bytes, %s requests%s%s' \
    "$img" "$form" "$sn" "$n" "$status" "${pull_s:--}" "${run_s:--}" "${total:--}" "${bytes:--}" \
    "${reqs:--}" "${remote:+, remote layers $remote}" "${prof:+, layers replaying a profile: ${replayed:-0}}")"
  [[ -z $prof || -n $prof_fail || ${replayed:-0} != 0 ]] ||
    log "  $img $form: $prof's profiles were there but no layer replayed one (daemon log: $L/snapshotter.log)"
}

# The forms and snapshotters of an image's rows ("FORM SNAPSHOTTER" a line), within BENCH_FORMS.
combos() {  # IMAGE
  local sn
  {
    for sn in $SNAPSHOTTERS; do
      case $sn in
        overlayfs) echo "legacy overlayfs" ;;
        stargzd | reference) echo "esgz $sn"; echo "esgz-opt $sn" ;;
      esac
    done
    if [[ $PROFILE_ON == 1 && " $SNAPSHOTTERS " == *" stargzd "* && " $PROFILE_WORKLOADS " == *" $1 "* ]]; then
      echo "esgz+profile stargzd"
      # the cross-workload check: gcc shares python's base layer
      [[ $1 == gcc ]] && echo "esgz+profile-python stargzd"
    fi
  } | while read -r form sn; do [[ " $FORMS " == *" $form "* ]] && echo "$form $sn"; done
  return 0
}

# --- memory: RSS of one snapshotter process as images are mounted and used ------------------
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$RD/snapshotter.pid")/status"; }
measure_rss() {  # SNAPSHOTTER -> "idle python python+gcc after-background cache-bytes"
  local sn=$1 sock img out=() last now same=0 i
  stop_all; rm -rf "$RD"; mkdir -p "$RD"
  sock=$(start_snapshotter "$sn") || return 1
  start_containerd "$sock" || return 1
  local CTR=(nsenter --net="$NETNS_PATH" ctr --address "$RD/containerd/containerd.sock")
  sleep 2; out+=("$(rss_kb)")
  for img in python gcc; do
    local ref="127.0.0.1:$LINK_PORT/bench-$img:esgz"
    nsenter --net="$NETNS_PATH" ctr-remote --address "$RD/containerd/containerd.sock" images rpull       --plain-http --snapshotter stargz "$ref" >"$LOGS/rss-$sn-$img.log" 2>&1 || return 1
    mapfile -t argv < <(workload_argv "$img")
    timeout "$TMO" "${CTR[@]}" run --rm --snapshotter stargz "$ref" "rss-$img" "${argv[@]}" \
      >>"$LOGS/rss-$sn-$img.log" 2>&1 || return 1
    out+=("$(rss_kb)")
  done
  # background fetch: wait until the link has been quiet for 5 s (at most 5 minutes)
  last=$(stat_field "$("$BENCH_DIR/link.sh" stats)" down_bytes)
  for ((i = 0; i < 300 && same < 5; i++)); do
    sleep 1; now=$(stat_field "$("$BENCH_DIR/link.sh" stats)" down_bytes)
    if [[ $now == "$last" ]]; then same=$((same + 1)); else same=0; last=$now; fi
  done
  out+=("$(rss_kb)" "$(du -sb "$RD/$([[ $sn == stargzd ]] && echo sg/cache || echo ref)" | cut -f1)")
  stop_all
  echo "${out[*]}"
}
if [[ $RSS_ONLY == 1 ]]; then
  link_up default
  mkdir -p "$LOGS" "$RESULTS"
  md=$RESULTS/$(date +%Y-%m-%d)-rss.md
  {
    echo "RSS of the snapshotter process (VmRSS), $(date -u +%Y-%m-%d), $(nproc) CPUs, kernel $(uname -r);"
    echo "python and gcc eStargz images pulled lazily and their workloads run once; background fetch on."
    echo
    echo "| snapshotter | idle | python mounted + run | python + gcc | after background fetch | root on disk after |"
    echo "|---|---|---|---|---|---|"
  } >"$md"
  for sn in $SNAPSHOTTERS; do
    if r=$(measure_rss "$sn"); then
      awk -v sn="$sn" -v r="$r" 'BEGIN { split(r, v, " ");
        printf "| %s | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %.0f MB |\n", sn,
          v[1] / 1024, v[2] / 1024, v[3] / 1024, v[4] / 1024, v[5] / 1e6 }' >>"$md"
    else
      echo "| $sn | failed (logs in $LOGS) | | | | |" >>"$md"
    fi
  done
  cat "$md"
  exit 0
fi

# --- one link profile: the measurements, the limit rows, the report ---------------------------
bench_link() {  # PROFILE
  local lname=$1 n img form sn lim
  link_up "$lname"
  CSV_ROWS=()
  LOGS=$BENCH_WORK/logs/$lname
  mkdir -p "$LOGS"
  for ((n = 1; n <= RUNS; n++)); do
    for img in $(bench_images); do
      while read -r form sn; do measure "$img" "$form" "$sn" "$n"; done < <(combos "$img")
    done
  done
  for img in $(bench_images); do
    lim=$($BENCHLIB physlimit "$BENCH_WORK/oci/$img/esgz-opt" "$BENCH_WORK/needed/$img.list" "$RATE_BITS" "$RTT_S")
    row "$img" esgz-opt limit 0 ok "" "" "$(stat_field "$lim" seconds)" "" "" "$(stat_field "$lim" bytes)" "" \
      "$(stat_field "$lim" round_trips)" "" "" "$($BENCHLIB trace /nonexistent)"
  done

  mkdir -p "$RESULTS"
  local name
  name=$(date +%Y-%m-%d)$([[ $BENCH_QUICK == 1 ]] && echo -quick || true)$([[ $lname == default ]] || echo "-$lname")$([[ $PULL == ctr ]] || echo "-$PULL")
  local csv=$RESULTS/$name.csv
  {
    echo "image,form,snapshotter,run,status,pull_s,run_s,total_s,run_exit_s,warm_s,bytes,pull_bytes,requests,remote_layers,profiles_replayed,$($PY -c \
      'import sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[1]); import benchlib; print(",".join(benchlib.TRACE_FIELDS))' "$BENCH_DIR")"
    printf '%s\n' "${CSV_ROWS[@]}"
  } >"$csv"
  local machine
  machine="$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); \
containerd $(containerd --version | awk '{print $3}'), stargzd $(git -C "$BENCH_TOP" rev-parse --short HEAD 2>/dev/null || echo ?)\
$(git -C "$BENCH_TOP" diff --quiet HEAD -- daemon fs net 2>/dev/null || echo '+dirty') (binary built $STARGZD_ID), \
reference stargz-snapshotter $(dpkg-query -W -f='${Version}' golang-github-containerd-stargz-snapshotter-dev 2>/dev/null) \
(prefetch + background fetch on); runs per row: $RUNS; pull client: \
$([[ $PULL == cri ]] && echo "containerd's CRI plugin (PullImage from tools/cri-pull, as kubelet pulls)" || true)$([[ $PULL == cri-proxy ]] && echo "containerd's CRI plugin, stargzd's rows through stargzd's CRI proxy (PullImage from tools/cri-pull, as kubelet pulls with --image-service-endpoint)" || true)$([[ $PULL == ctr ]] && echo "ctr-remote images rpull (legacy: ctr images pull)" || true)$([[ $PULL == ctr-ahead ]] && echo "ctr-remote images rpull, stargzd's rows under \`stargzd pull-ahead\` (legacy: ctr images pull)" || true)$([[ $PULL == ctr-hook ]] && echo "ctr-remote images rpull, stargzd's rows with --hosts-dir listing stargzd's resolve hook before the registry (legacy: ctr images pull)" || true)$([[ $PULL == cri-hook ]] && echo "containerd's CRI plugin (PullImage from tools/cri-pull, as kubelet pulls), stargzd's rows with config_path's hosts.toml listing stargzd's resolve hook before the registry" || true)"
  $BENCHLIB report "$csv" "$RESULTS/$name.md" "$LINK" "$machine" "$lname" >/dev/null
  $BENCHLIB chartdata "$csv" "$RESULTS/$name.dat"
  gnuplot -e "datafile='$RESULTS/$name.dat'; outfile='$RESULTS/$name.png'; title='stargzd bench $name: total time to output (s), $LINK_RATE + ${LINK_DELAY_MS} ms each way'" \
    "$BENCH_DIR/chart.gp" && rm -f "$RESULTS/$name.dat"
  if [[ $TRACE == 1 ]]; then
    $BENCHLIB timeline "$csv" "$LOGS" "$RESULTS/$name-timeline.png" \
      "stargzd bench $name: reads blocked on the network (red: the longest chain; dashed: ctr run starts; solid: output), $LINK_RATE + ${LINK_DELAY_MS} ms each way" ||
      log "no timeline PNG"
  fi
  cat "$RESULTS/$name.md"
  log "wrote $RESULTS/$name.md, $name.csv, $name.png$([[ $TRACE == 1 ]] && echo ", $name-timeline.png")"
}

for l in $LINKS; do bench_link "$l"; done
