#!/usr/bin/env bash
# Builds the reference eStargz helper (tests/helpers/estargz-ref/main.go) in GOPATH mode against
# Debian's golang-github-containerd-stargz-snapshotter-dev sources and prints the binary's path.
# The binary is cached as $ESTARGZ_REF_DIR/estargz-ref (default build/estargz-ref) and
# rebuilt only when main.go is newer.  Exit 77 (skip) if Go or the sources are absent.
#   ESTARGZ_REF_DIR   where the binary and its Go build cache live (default: $TOP/build/estargz-ref)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
out=${ESTARGZ_REF_DIR:-$top/build/estargz-ref}
bin=$out/estargz-ref
src=/usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz
if ! command -v go >/dev/null || [[ ! -d $src ]]; then
  echo "estargz-ref: go or $src missing (tools/install-deps.sh installs them)" >&2
  exit 77
fi
if [[ -x $bin && $bin -nt $here/main.go ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$out/gocache" "$out/gopath/src/estargz-ref"
cp "$here/main.go" "$out/gopath/src/estargz-ref/main.go"
# GOPATH mode: our package lives in a private GOPATH entry, the dependencies in Debian's.
(cd "$out/gopath/src/estargz-ref" &&
  GOPATH="$out/gopath:/usr/share/gocode" GO111MODULE=off GOCACHE="$out/gocache" \
    go build -o "$bin.tmp" . >&2)
mv "$bin.tmp" "$bin"
echo "$bin"
