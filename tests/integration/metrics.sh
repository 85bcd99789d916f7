#!/usr/bin/env bash
# TIMEOUT: 300
# The metrics endpoint during a real lazy run: a registry, containerd with stargzd as its
# proxy snapshotter, `ctr-remote images rpull`, then `ctr run` of a container that reads a
# multi-chunk file while we scrape.  The scrape must be valid Prometheus text (promtool), carry
# stargz-snapshotter's names and labels, and show on-demand bytes for the layer just read.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

command -v promtool >/dev/null || { fail "promtool is installed (tools/install-deps.sh)"; finish; }
start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_busybox_rootfs "$WORK/l1"
mkdir -p "$WORK/l2/data"
head -c 6000000 /dev/urandom >"$WORK/l2/data/big.bin"     # several chunks, read on demand
head -c 3000000 /dev/urandom >"$WORK/l2/data/unread.bin"
mkdir -p "$WORK/l2/data/s"   # small neighbours: taken along with the first one read (the window)
for i in $(seq -w 1 20); do head -c 4000 /dev/urandom >"$WORK/l2/data/s/$i.txt"; done
BIG_SUM=$(sha256sum "$WORK/l2/data/big.bin" | cut -d' ' -f1)
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "eStargz conversion" make_estargz_image "$WORK/oci" "$WORK/esgz"
check "eStargz image pushed" push_image "$WORK/esgz" v1 lazy
read -r LAYER _ < <(esgz_layer_info "$WORK/esgz")

MPORT=$(free_port)
MURL=http://127.0.0.1:$MPORT/metrics
# Background fetch would fetch the rest of the layer after 5 s; the on-demand bytes must
# come from the container's reads, so it stays off here.
mkdir -p "$WORK/trace"
SG_EXTRA_CONFIG="metrics_address = \"127.0.0.1:$MPORT\"
fetch_trace_dir = \"$WORK/trace\"
background_fetch = false" start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
IMG=$REGISTRY/lazy:v1

check "metrics served before any layer is mounted" bash -c "curl -sf '$MURL' | grep -q '^# TYPE stargz_fs_operation_count counter'"
check "other paths are 404" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/) == 404 ]]"
if ctr-remote --address "$WORK/containerd/containerd.sock" images rpull --plain-http \
     --snapshotter stargz "$IMG" >"$WORK/rpull.log" 2>&1; then
  pass "ctr-remote images rpull"
else
  fail "ctr-remote images rpull" "$(tail -5 "$WORK/rpull.log")"
fi

# The container reads big.bin, then stays up while we scrape.
$CTR run --rm --snapshotter stargz "$IMG" c1 sh -c \
  'cat /data/s/01.txt >/dev/null; cat /data/s/*.txt >/dev/null; sha256sum /data/big.bin; sleep 8' \
  >"$WORK/run.out" 2>&1 &
RUN=$!
ondemand() {   # the on-demand bytes of $LAYER in a scrape
  grep -E "^stargz_fs_bytes_served\{operation_type=\"on_demand_bytes_fetched\",layer=\"$LAYER\"\} " "$1" |
    awk '{print $2}'
}
scrape_after_read() {   # once the container has read the file, while it still runs
  grep -q "$BIG_SUM" "$WORK/run.out" || return 1
  curl -sf -D "$WORK/scrape.headers" -o "$WORK/scrape.txt" "$MURL" || return 1
  $CTR task ls 2>/dev/null | grep -q '^c1 .*RUNNING'
}
check "a scrape taken while the container runs, after it read the file" wait_for 60 scrape_after_read
check "the container read the file right" grep -q "$BIG_SUM" "$WORK/run.out"
check "served as Prometheus text 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' "$WORK/scrape.headers"

# promtool: parse errors fail (exit 1).  Its lint (exit 3) objects to stargz-snapshotter's own
# names (a counter without _total, milliseconds rather than seconds), which dashboards rely
# on and so are kept as they are; every other family must lint clean.
promtool check metrics <"$WORK/scrape.txt" >"$WORK/promtool.out" 2>&1
rc=$?
check "promtool check metrics parses the scrape (exit $rc)" bash -c "[[ $rc -eq 0 || $rc -eq 3 ]]"
check "promtool lint names only stargz-snapshotter's compatible families" \
  bash -c "! grep -v -E '^stargz_fs_(operation_count|operation_duration_milliseconds|operation_duration_microseconds|layer_fetched_size_bytes|layer_prefetch_size_bytes|layer_size_bytes) ' '$WORK/promtool.out' | grep -q ."
check "our own stargzd_ families lint clean" bash -c "! grep -q '^stargzd_' '$WORK/promtool.out'"

bytes=$(ondemand "$WORK/scrape.txt")
check "non-zero on-demand bytes fetched for the layer read ($LAYER: ${bytes:-none})" bash -c "[[ -n '$bytes' && '$bytes' -gt 0 ]]"
check "on-demand registry fetches counted for it" grep -qE "^stargz_fs_operation_count\{operation_type=\"on_demand_remote_registry_fetch_count\",layer=\"$LAYER\"\} [1-9]" "$WORK/scrape.txt"
served=$(grep -E "^stargz_fs_bytes_served\{operation_type=\"on_demand_bytes_served\",layer=\"$LAYER\"\} " "$WORK/scrape.txt" | awk '{print $2}')
check "on-demand bytes served at least the file's size (${served:-none})" bash -c "[[ -n '$served' && '$served' -ge 6000000 ]]"
check "read_on_demand latency histogram (microseconds) has observations" grep -qE "^stargz_fs_operation_duration_microseconds_count\{operation_type=\"read_on_demand\",layer=\"$LAYER\"\} [1-9]" "$WORK/scrape.txt"
check "remote_registry_get latency histogram (milliseconds) has observations" grep -qE "^stargz_fs_operation_duration_milliseconds_bucket\{operation_type=\"remote_registry_get\",layer=\"$LAYER\",le=\"16384\"\} [1-9]" "$WORK/scrape.txt"
check "mount latency per layer" grep -qE "^stargz_fs_operation_duration_milliseconds_count\{operation_type=\"mount\",layer=\"$LAYER\"\} [1-9]" "$WORK/scrape.txt"
check "layer gauges per mount: fetched size with digest and mountpoint" grep -qE "^stargz_fs_layer_fetched_size_bytes\{digest=\"$LAYER\",mountpoint=\"$WORK/stargzd-root/snapshots/[0-9]+/fs\"\} [1-9]" "$WORK/scrape.txt"
blob=$(stat -c %s "$WORK/esgz/blobs/sha256/${LAYER#sha256:}")
check "layer size is the blob's ($blob)" grep -qE "^stargz_fs_layer_size_bytes\{digest=\"$LAYER\",[^}]*\} $blob\$" "$WORK/scrape.txt"
check "less than the whole blob was fetched (lazy)" bash -c "[[ $bytes -lt $blob ]]"
check "gRPC calls by method and code" grep -qE '^stargzd_grpc_requests_total\{grpc_service="containerd.services.snapshots.v1.Snapshots",grpc_method="Prepare",grpc_code="OK"\} [1-9]' "$WORK/scrape.txt"
check "gRPC durations by method" grep -qE '^stargzd_grpc_request_duration_seconds_count\{grpc_service="containerd.services.snapshots.v1.Snapshots",grpc_method="Mounts"\} [1-9]' "$WORK/scrape.txt"
check "cache use and bound" bash -c "grep -qE '^stargzd_cache_bytes [1-9]' '$WORK/scrape.txt' && grep -qE '^stargzd_cache_max_bytes [1-9]' '$WORK/scrape.txt'"
check "registry requests by host" grep -qE "^stargzd_registry_requests_total\{host=\"$REGISTRY\",scheme=\"http\"\} [1-9]" "$WORK/scrape.txt"
spec=$(grep -E "^stargzd_layer_speculative_fetched_bytes_total\{layer=\"$LAYER\"\} " "$WORK/scrape.txt" | awk '{print $2}')
used=$(grep -E "^stargzd_layer_speculative_used_bytes_total\{layer=\"$LAYER\"\} " "$WORK/scrape.txt" | awk '{print $2}')
check "speculation: $spec bytes fetched ahead of readers (the small neighbours), $used of them read since" bash -c "[[ -n '$spec' && -n '$used' && $spec -gt 0 && $used -gt 0 && $used -le $spec && $spec -le $bytes ]]"
check "layer chunk counts" grep -qE "^stargzd_layer_chunks_cached\{layer=\"$LAYER\"\} [1-9]" "$WORK/scrape.txt"
# The fetch trace (fetch_trace_dir): SIGUSR1 writes out what is buffered while the layer is
# still mounted; the container's reads of big.bin waited on the network.
kill -USR1 "$SG_PID"
TRACE=$WORK/trace/trace-$SG_PID.jsonl
check "SIGUSR1 writes the fetch trace out, with the container's reads that waited" \
  wait_for 10 grep -qE "\"ev\":\"read\",\"layer\":\"$LAYER\",\"path\":\"data/big.bin\",.*\"net\":true" "$TRACE"
check "... and the layer's on-demand range requests" \
  grep -qE "\"ev\":\"fetch\",\"layer\":\"$LAYER\",\"kind\":\"ondemand\",.*\"ok\":true" "$TRACE"
check "SIGUSR1 does not stop the daemon" kill -0 "$SG_PID"
wait "$RUN"

# A unix socket instead of TCP, and off by default.
stop_stargzd TERM
check "stargzd with metrics stopped cleanly" bash -c "[[ $EXIT_CODE -eq 0 ]]"
check "at the stop, the layer's summary is in the fetch trace" \
  grep -qE "\"ev\":\"layer\",\"layer\":\"$LAYER\",\"fetched\":\\{\"ondemand\":[1-9]" "$TRACE"
check "the TCP port is closed with it" bash -c "! curl -s -o /dev/null '$MURL'"
sed -i "s|^metrics_address = .*|metrics_address = \"$WORK/metrics.sock\"|" "$WORK/stargzd.toml"
start_stargzd || fail "stargzd restarts"
check "metrics on a unix socket" wait_for 10 bash -c "curl -sf --unix-socket '$WORK/metrics.sock' http://x/metrics | grep -q '^stargz_fs_layer_size_bytes{digest=\"$LAYER\"'"
check "the unix socket is not world-accessible" bash -c "[[ \$(stat -c %a '$WORK/metrics.sock') == 660 ]]"
stop_stargzd TERM
check "the unix socket is removed at exit" bash -c "[[ ! -e '$WORK/metrics.sock' ]]"
sed -i "/^metrics_address = /d" "$WORK/stargzd.toml"
start_stargzd || fail "stargzd restarts"
check "no metrics endpoint without metrics_address" bash -c "[[ \$(grep -c ' metrics on ' '$WORK/stargzd.log') -eq 2 ]] && ! curl -s -o /dev/null '$MURL'"
check "stargzd logged no errors" bash -c "! grep -q ' error ' '$WORK/stargzd.log'"
finish
