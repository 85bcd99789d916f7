# Shared settings and helpers of tools/bench/{images,link,run}.sh (sourced, not run).
#   BENCH_WORK       work dir: rootfs, layers, OCI layouts, registry data, daemons' state
#                    (default /var/tmp/stargzd-bench)
#   BENCH_NETNS      network namespace holding the registry (default stargzd-bench)
#   LINK_RATE        htb rate of the link, tc syntax (default 100mbit)
#   LINK_DELAY_MS    one-way delay added by the proxy (default 20)
#   LINK_MTU         MTU of the namespace's lo (default 1500)
#   LINK_PORT        the shaped registry address, 127.0.0.1:LINK_PORT in the namespace (default 5000)
#   REGISTRY_PORT    the registry's own, unshaped port in the namespace (default 5001; pushes use it)
#   BENCH_QUICK=1    quick mode: images base + python + imports, one run each
#   BENCH_LINKS      link profiles run.sh measures in turn: default | far | near | all | a comma
#                    list (default: default; see link_profile)
BENCH_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$BENCH_TOP/tools/bench
BENCH_WORK=${BENCH_WORK:-/var/tmp/stargzd-bench}
# the delay proxy's request log (BENCH_REQLOG=1; link.sh starts the proxy with it, run.sh slices it)
LINK_REQLOG=$BENCH_WORK/link/requests.log
BENCH_NETNS=${BENCH_NETNS:-stargzd-bench}
LINK_RATE=${LINK_RATE:-100mbit}
LINK_DELAY_MS=${LINK_DELAY_MS:-20}
LINK_MTU=${LINK_MTU:-1500}
LINK_PORT=${LINK_PORT:-5000}
REGISTRY_PORT=${REGISTRY_PORT:-5001}
BENCH_QUICK=${BENCH_QUICK:-0}
BUILD_DIR=${BUILD:-build}
[[ $BUILD_DIR == /* ]] || BUILD_DIR=$BENCH_TOP/$BUILD_DIR
STARGZIFY=${STARGZIFY:-$BUILD_DIR/tools/stargzify}
STARGZD=${STARGZD:-$BUILD_DIR/stargzd}
PY=/usr/bin/python3
BENCHLIB="$PY $BENCH_DIR/benchlib.py"

NETNS_PATH=/run/netns/$BENCH_NETNS
# Runs a command with its network namespace joined to the link's (mounts stay shared).
innet() { nsenter --net="$NETNS_PATH" "$@"; }

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pid file helpers: only processes we started, identified by their pid file.
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pidfile() {  # PIDFILE [TIMEOUT_S]
  local f=$1 t=${2:-20} pid i
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
}
# Closes every descriptor above 2 of the current (sub)shell.  A daemon must not inherit the bench
# lock: `flock LOCK cmd` hands its locked descriptor to cmd's children, and a registry or delay
# proxy that outlives the run would hold the lock for good.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-"
  done
  return 0
}
# Starts "$@" in the background with output to LOG and its pid in PIDFILE.
start_bg() {  # PIDFILE LOG CMD...
  local f=$1 l=$2; shift 2
  (close_inherited_fds; exec setsid "$@" >>"$l" 2>&1 </dev/null) &
  echo $! >"$f"
}
wait_for() {  # SECONDS CMD...
  local t=$1 i; shift
  for ((i = 0; i < t * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# Link profiles (issue #13): "RATE DELAY_MS" of a profile name.  `default` keeps LINK_RATE and
# LINK_DELAY_MS (whose defaults are the default profile's), so a hand-set link still works.
link_profile() {
  case $1 in
    default) echo "$LINK_RATE $LINK_DELAY_MS" ;;
    far) echo "25mbit 50" ;;
    near) echo "1gbit 1" ;;
    *) return 1 ;;
  esac
}
# The profile names of BENCH_LINKS ("all" = default far near), one a line.
bench_links() {
  local l=${BENCH_LINKS:-default}
  [[ $l == all ]] && l=default,far,near
  tr ', ' '\n\n' <<<"$l" | grep .
}

# Images and workloads.  An image is a workload with its own image (its own config and its own
# optimized form); `imports` runs on the python image's layers.
bench_images() {
  if [[ -n ${BENCH_IMAGES:-} ]]; then echo "$BENCH_IMAGES"
  elif [[ $BENCH_QUICK == 1 ]]; then echo "base python imports"
  else echo "base python gcc imports"; fi
}
# A realistic application's stdlib imports (issue #13): most Python apps start like this.
IMPORTS_MODULES="asyncio, json, email.mime.multipart, http.server, logging.handlers, sqlite3, unittest, \
xml.dom.minidom, urllib.request, decimal, argparse, csv, zipfile, tarfile, ssl, uuid"

# The command each image's workload runs (argv, one word a line) and the output that marks it done.
workload_argv() {
  case $1 in
    base) printf '%s\n' true ;;
    python) printf '%s\n' python3 -c 'print("hello")' ;;
    imports) printf '%s\n' python3 -c "import $IMPORTS_MODULES; print(\"hello\")" ;;
    gcc) printf '%s\n' sh -c 'printf "#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n" >/tmp/h.c && gcc -O2 -o /tmp/h /tmp/h.c && /tmp/h' ;;
  esac
}
workload_expect() { case $1 in base) echo "" ;; *) echo hello ;; esac; }
