#!/usr/bin/env bash
# Registry client throughput over loopback TLS (issue #4): a 200 MB blob fetched from a real
# docker-registry serving TLS with a test CA, by `stargz-fetch` (our registry client: pool,
# HTTP/1.1, BearSSL on the io_uring loop) and by curl, in the same run.  Prints MB/s and the
# ratio; median of RUNS (default 3).  Not part of make check.
#   tools/bench/tls-throughput.sh            SIZE_MB=200 RUNS=3
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
export STARGZD_TOP=$TOP
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/lib/fixtures.sh"
. "$TOP/tests/lib/registry_fixtures.sh"
FETCH=${STARGZ_FETCH:-$TOP/build/tools/stargz-fetch}
SIZE_MB=${SIZE_MB:-200}
RUNS=${RUNS:-3}

start_registry || { echo "registry did not start"; exit 1; }
mkdir -p "$WORK/layer"
head -c $((SIZE_MB * 1000000)) /dev/urandom >"$WORK/layer/blob.bin"
make_image "$WORK/oci" v1 "$WORK/layer" >"$WORK/layers.txt"
push_image "$WORK/oci" v1 big || { echo "push failed"; exit 1; }
DIGEST=$(awk '{print $1}' "$WORK/layers.txt")
SIZE=$(awk '{print $3}' "$WORK/layers.txt")
make_test_ca "$WORK/ca"
start_registry_extra tls "$WORK/ca/srv.pem" "$WORK/ca/srv.key" "" || { echo "TLS registry did not start"; exit 1; }
HOST=localhost:$EXTRA_PORT
WANT=$(sha256sum "$WORK/oci/blobs/sha256/${DIGEST#sha256:}" | cut -d' ' -f1)

secs() { local t0 t1; t0=$(date +%s.%N); "$@" || return 1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours=() theirs=()
for i in $(seq "$RUNS"); do
  t=$(secs sh -c "'$FETCH' --ca '$WORK/ca/ca.pem' --no-system-ca '$HOST/big:v1' '$DIGEST' >'$WORK/ours.out'") || { echo "stargz-fetch failed"; exit 1; }
  [[ $(sha256sum <"$WORK/ours.out" | cut -d' ' -f1) == "$WANT" ]] || { echo "stargz-fetch: wrong bytes"; exit 1; }
  ours+=("$t")
  t=$(secs curl -sf --cacert "$WORK/ca/ca.pem" -o "$WORK/curl.out" "https://$HOST/v2/big/blobs/$DIGEST") || { echo "curl failed"; exit 1; }
  theirs+=("$t")
done
o=$(printf '%s\n' "${ours[@]}" | median); c=$(printf '%s\n' "${theirs[@]}" | median)
printf 'blob %s bytes over loopback TLS 1.2, median of %s\n' "$SIZE" "$RUNS"
awk -v o="$o" -v c="$c" -v s="$SIZE" 'BEGIN {
  printf "stargz-fetch: %.2f s (%.0f MB/s)   curl: %.2f s (%.0f MB/s)   rate ratio ours/curl: %.2f\n",
    o, s / o / 1e6, c, s / c / 1e6, c / o }'
