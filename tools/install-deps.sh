#!/usr/bin/env bash
# Installs every Debian package that stargzd's build, tests and benchmarks need.
# Idempotent: when every package is already installed it does nothing (no apt-get update, no network).
# Keep the BUILD list in sync with the Dockerfile's build stage and RUNTIME with its final stage.
set -euo pipefail

BUILD=(
  build-essential pkg-config
  liburing-dev libfuse3-dev libdeflate-dev libbearssl-dev zlib1g-dev
  libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
  libnghttp2-dev libsqlite3-dev nettle-dev libyajl-dev
)
RUNTIME=(fuse3)
TEST=(
  clang libclang-rt-14-dev   # ASan/UBSan runtime for clang, libFuzzer
  python3 procps util-linux iproute2 openssl curl
  python3-grpcio            # an independent gRPC client for tests/integration/grpc_python.sh
  containerd runc docker-registry skopeo busybox-static   # the real stack the e2e tests drive
  stargz-snapshotter        # ctr-remote images rpull, for the lazy end-to-end test
  tar gzip golang-go golang-github-containerd-stargz-snapshotter-dev   # stargzify tests: reference helper
  apache2-utils   # htpasswd -B for tests/integration/registry.sh (Basic auth)
  prometheus      # promtool check metrics, for tests/integration/metrics.sh
  systemd         # systemd-analyze verify of packaging/stargzd.service (tests/integration/service.sh)
)

# Only for the benchmark (tools/bench, `make bench`): installed with --bench, never by `make check`.
BENCH=(
  gnuplot-nox fio strace   # chart; filesystem read benchmarks; recording what a workload opens
  stargz-snapshotter       # ctr-remote (images rpull)
  containerd runc docker-registry skopeo debootstrap hyperfine curl iproute2
  golang-go golang-github-containerd-stargz-snapshotter-dev   # the Go reference snapshotter
  libcjson-dev libjansson-dev   # tools/bench/toc-load.sh: the JSON library comparison
)

want=("${BUILD[@]}" "${RUNTIME[@]}" "${TEST[@]}")
print=0
for a in "$@"; do
  case "$a" in
    --print) print=1 ;;
    --bench) want+=("${BENCH[@]}") ;;
    *) echo "usage: $0 [--bench] [--print]" >&2; exit 2 ;;
  esac
done
[[ $print -eq 1 ]] && { printf '%s\n' "${want[@]}"; exit 0; }

missing=()
for p in "${want[@]}"; do
  # dpkg-query prints "install ok installed" only for fully installed packages.
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
