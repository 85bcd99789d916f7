#!/usr/bin/env bash
# Builds the Go reference snapshotter (tools/bench/reference/main.go) in GOPATH mode against
# Debian's golang-github-containerd-stargz-snapshotter-dev sources and prints the binary's path.
# Cached as $OUT/stargz-ref (default $BENCH_WORK/reference, BENCH_WORK default /var/tmp/stargzd-bench);
# rebuilt when main.go is newer.  Exit 77 if Go or the sources are missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${REF_OUT:-${BENCH_WORK:-/var/tmp/stargzd-bench}/reference}
bin=$out/stargz-ref
src=/usr/share/gocode/src/github.com/containerd/stargz-snapshotter
if ! command -v go >/dev/null || [[ ! -d $src/fs ]]; then
  echo "stargz-ref: go or $src missing (tools/install-deps.sh --bench installs them)" >&2
  exit 77
fi
if [[ -x $bin && $bin -nt $here/main.go ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$out/gocache" "$out/gopath/src/stargz-ref"
cp "$here/main.go" "$out/gopath/src/stargz-ref/main.go"
(cd "$out/gopath/src/stargz-ref" &&
  GOPATH="$out/gopath:/usr/share/gocode" GO111MODULE=off GOCACHE="$out/gocache" GOFLAGS= \
    go build -o "$bin.tmp" . >&2)
mv "$bin.tmp" "$bin"
echo "$bin"
