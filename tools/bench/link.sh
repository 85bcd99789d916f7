#!/usr/bin/env bash
# The WAN-like link of the benchmark: a network namespace whose own lo carries
#   - a registry (docker-registry) on 127.0.0.1:$REGISTRY_PORT (unshaped; pushes go here), and
#   - tools/bench/delayproxy.py on 127.0.0.1:$LINK_PORT in front of it: $LINK_DELAY_MS ms each way,
#     one round trip before a new connection is relayed, byte counters on a unix socket,
#   - an htb class per direction on lo limiting port $LINK_PORT to $LINK_RATE.
# Clients join with `nsenter --net=/run/netns/$BENCH_NETNS` (not `ip netns exec`, which would also
# give them a private mount namespace and hide FUSE mounts from containerd).  The namespace has only
# lo: no traffic leaves it.
#
#   tools/bench/link.sh up       create (idempotent) and print the link parameters
#   tools/bench/link.sh down     stop the registry and proxy, delete the namespace (idempotent)
#   tools/bench/link.sh params   print the link parameters
#   tools/bench/link.sh stats    the proxy's counters (JSON)
#   tools/bench/link.sh probe [MB [RUNS]]   up, then time a MB-megabyte blob (default 20) through the
#                                shaped port with curl, RUNS times (default 3): TTFB, total, rate
# Settings: see tools/bench/common.sh (BENCH_WORK, BENCH_NETNS, LINK_RATE, LINK_DELAY_MS, ...).
set -euo pipefail
. "$(dirname "$0")/common.sh"
LD=$BENCH_WORK/link
CTL=$LD/proxy.ctl

params() {
  local rtt
  rtt=$(awk -v d="$LINK_DELAY_MS" 'BEGIN { print 2 * d }')
  echo "link: netns $BENCH_NETNS, registry 127.0.0.1:$LINK_PORT (shaped) / :$REGISTRY_PORT (unshaped)," \
    "rate $LINK_RATE per direction (htb), delay $LINK_DELAY_MS ms each way (RTT $rtt ms, user-space proxy)," \
    "lo MTU $LINK_MTU"
}

stats() { curl -sf --unix-socket "$CTL" http://link/stats; }

setup_tc() {
  tc -n "$BENCH_NETNS" qdisc del dev lo root 2>/dev/null || true
  tc -n "$BENCH_NETNS" qdisc add dev lo root handle 1: htb default 30
  tc -n "$BENCH_NETNS" class add dev lo parent 1: classid 1:1 htb rate 100gbit quantum 65536
  tc -n "$BENCH_NETNS" class add dev lo parent 1:1 classid 1:10 htb rate "$LINK_RATE" ceil "$LINK_RATE" quantum 65536
  tc -n "$BENCH_NETNS" class add dev lo parent 1:1 classid 1:20 htb rate "$LINK_RATE" ceil "$LINK_RATE" quantum 65536
  tc -n "$BENCH_NETNS" class add dev lo parent 1:1 classid 1:30 htb rate 50gbit quantum 65536
  for c in 10 20; do tc -n "$BENCH_NETNS" qdisc add dev lo parent 1:$c handle $c: pfifo limit 10000; done
  tc -n "$BENCH_NETNS" filter add dev lo parent 1: protocol ip prio 1 u32 \
    match ip sport "$LINK_PORT" 0xffff flowid 1:10   # server -> client (downloads)
  tc -n "$BENCH_NETNS" filter add dev lo parent 1: protocol ip prio 1 u32 \
    match ip dport "$LINK_PORT" 0xffff flowid 1:20   # client -> server
}

up() {
  mkdir -p "$LD" "$BENCH_WORK/registry/data"
  [[ -e $NETNS_PATH ]] || ip netns add "$BENCH_NETNS"
  ip -n "$BENCH_NETNS" link set lo mtu "$LINK_MTU" up
  # Rate: one htb class per direction of the proxy's port; everything else (the registry's own
  # port, used by the proxy and by pushes) unshaped.  Rebuilt only when the parameters changed, so
  # that `up` while a measurement runs does not disturb it.
  local tcp="$LINK_RATE $LINK_PORT"
  if [[ $(cat "$LD/tc.params" 2>/dev/null) != "$tcp" ]] || ! tc -n "$BENCH_NETNS" qdisc show dev lo | grep -q htb; then
    setup_tc
    echo "$tcp" >"$LD/tc.params"
  fi

  if ! pid_alive "$LD/registry.pid"; then
    cat >"$LD/registry.yml" <<YML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $BENCH_WORK/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
YML
    start_bg "$LD/registry.pid" "$LD/registry.log" nsenter --net="$NETNS_PATH" docker-registry serve "$LD/registry.yml"
  fi
  wait_for 20 innet curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" -o /dev/null ||
    die "registry did not start: $(tail -5 "$LD/registry.log")"
  # A proxy started with other parameters is restarted.
  local want="$LINK_DELAY_MS $LINK_PORT $REGISTRY_PORT ${BENCH_REQLOG:-0}" reqlog=()
  [[ ${BENCH_REQLOG:-0} == 1 ]] && reqlog=(--reqlog "$LINK_REQLOG")
  if pid_alive "$LD/proxy.pid" && [[ $(cat "$LD/proxy.params" 2>/dev/null) != "$want" ]]; then
    stop_pidfile "$LD/proxy.pid"
  fi
  if ! pid_alive "$LD/proxy.pid"; then
    rm -f "$LD/proxy.pid"
    (close_inherited_fds; exec setsid nsenter --net="$NETNS_PATH" "$PY" "$BENCH_DIR/delayproxy.py" \
      --listen "127.0.0.1:$LINK_PORT" --upstream "127.0.0.1:$REGISTRY_PORT" --delay-ms "$LINK_DELAY_MS" \
      --ctl "$CTL" --pidfile "$LD/proxy.pid" "${reqlog[@]}" >>"$LD/proxy.log" 2>&1 </dev/null) &
    echo "$want" >"$LD/proxy.params"
    wait_for 10 test -s "$LD/proxy.pid" || die "delay proxy did not start: $(tail -5 "$LD/proxy.log")"
  fi
  wait_for 20 innet curl -sf "http://127.0.0.1:$LINK_PORT/v2/" -o /dev/null ||
    die "registry not reachable through the proxy"
  wait_for 5 stats || die "proxy counters not reachable on $CTL"
  params
}

down() {
  stop_pidfile "$LD/proxy.pid"
  stop_pidfile "$LD/registry.pid"
  rm -f "$CTL" "$LD/proxy.params"
  rm -f "$LD/tc.params"
  [[ -e $NETNS_PATH ]] && ip netns del "$BENCH_NETNS"
  return 0
}

# A random blob of $1 MB in the registry (pushed through the unshaped port); prints its digest.
probe_blob() {
  local f=$LD/probe-$1M.bin d loc
  [[ -s $f ]] || head -c "$(($1 * 1000000))" /dev/urandom >"$f"
  d=sha256:$(sha256sum "$f" | cut -c1-64)
  if ! innet curl -sf -o /dev/null -I "http://127.0.0.1:$REGISTRY_PORT/v2/probe/blobs/$d"; then
    loc=$(innet curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/probe/blobs/uploads/" |
      tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
    [[ $loc == http* ]] || loc=http://127.0.0.1:$REGISTRY_PORT$loc
    innet curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$f" \
      "$loc$([[ $loc == *\?* ]] && echo '&' || echo '?')digest=$d" -o /dev/null || die "probe blob upload failed"
  fi
  echo "$d"
}
probe() {
  local mb=${1:-20} runs=${2:-3} d i
  up >&2
  d=$(probe_blob "$mb")
  for ((i = 1; i <= runs; i++)); do
    innet curl -sf -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download}\n' \
      "http://127.0.0.1:$LINK_PORT/v2/probe/blobs/$d"
  done | awk -v r="$LINK_RATE" -v dl="$LINK_DELAY_MS" '{ printf "%s + %s ms each way: %.1f MB in %.3f s (%.1f MB/s, %.0f Mbit/s), TTFB %.0f ms\n", r, dl, $3 / 1e6, $2, $3 / $2 / 1e6, $3 * 8 / $2 / 1e6, $1 * 1000 }'
}

case ${1:-} in
  up) up ;;
  down) down ;;
  params) params ;;
  stats) stats ;;
  probe) probe "${@:2}" ;;
  *) echo "usage: $0 up|down|params|stats|probe [MB [RUNS]]" >&2; exit 2 ;;
esac
