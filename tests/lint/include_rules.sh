#!/usr/bin/env bash
# The one-way dependency rule, checked over every #include "…" of the production code:
#
#   folder        may include
#   daemon/core   daemon/core                      (the loop core: loop, log, digest, seams)
#   fs            fs, daemon/core
#   net           net, daemon/core
#   proto         proto, daemon/core
#   daemon        daemon, fs, net, proto, daemon/core
#   tools         tools, daemon, fs, net, proto, daemon/core   (never tests/)
#
# fs/ and net/ never include each other; nothing in production includes tests/.  Generated
# protobuf headers ("containerd/…", from build/proto) count as proto.  tests/ may include
# anything.  Prints one line per wrong arrow and "N passed, N failed" (files checked).
#
#   tests/lint/include_rules.sh [ROOT]   check ROOT (default: the checkout)
#   tests/lint/include_rules.sh --self-test
#                                        shows that the check fails on a wrong include
set -uo pipefail

declare -A ALLOWED=(
  [daemon/core]="daemon/core"
  [fs]="fs daemon/core"
  [net]="net daemon/core"
  [proto]="proto daemon/core"
  [daemon]="daemon fs net proto daemon/core"
  [tools]="tools daemon fs net proto daemon/core"
)

module_of() {   # path (of a file, or of an include) -> module name
  case $1 in
    daemon/core/*) echo daemon/core ;;
    daemon/*) echo daemon ;;
    fs/*) echo fs ;;
    net/*) echo net ;;
    proto/* | containerd/* | google/*) echo proto ;;
    tools/*) echo tools ;;
    tests/*) echo tests ;;
    *) echo "?" ;;
  esac
}

check_tree() {   # root -> prints violations, returns the number of bad files (capped)
  local root=$1 files=0 bad=0 f from line inc to ok
  while IFS= read -r f; do
    files=$((files + 1))
    from=$(module_of "$f")
    local file_bad=0
    while IFS= read -r line; do
      inc=${line#*:}
      inc=${inc#*\"}; inc=${inc%%\"*}
      to=$(module_of "$inc")
      ok=0
      for m in ${ALLOWED[$from]}; do [[ $m == "$to" ]] && ok=1; done
      if [[ $ok -eq 0 ]]; then
        echo "FAIL $f:${line%%:*} includes \"$inc\" ($to): $from/ may include only ${ALLOWED[$from]}"
        file_bad=1
      fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$root/$f")
    bad=$((bad + file_bad))
  done < <(cd "$root" && find daemon fs net proto tools -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | sort)
  echo "$((files - bad)) passed, $bad failed"
  [[ $bad -eq 0 ]]
}

if [[ ${1:-} == --self-test ]]; then
  # A tree with one right and one wrong arrow of each kind must fail exactly on the wrong ones.
  t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
  mkdir -p "$t"/{daemon/core,fs,net,proto,tools}
  printf '#include "daemon/core/loop.h"\n' >"$t/fs/good.c"
  printf '#include "net/registry.h"\n' >"$t/fs/bad.c"
  printf '#include "fs/layer.h"\n#include "net/conn.h"\n' >"$t/daemon/good.c"
  printf '#include "tests/helpers/esgz_build.h"\n' >"$t/tools/bad.c"
  printf '#include "fs/toc.h"\n' >"$t/daemon/core/bad.h"
  out=$(check_tree "$t")
  want_fail="fs/bad.c tools/bad.c daemon/core/bad.h"
  pass=0 fail=0
  for f in $want_fail; do
    if grep -q "^FAIL $f:" <<<"$out"; then pass=$((pass + 1)); echo "ok   a wrong include in $f is caught"
    else fail=$((fail + 1)); echo "FAIL a wrong include in $f was not caught"; fi
  done
  for f in fs/good.c daemon/good.c; do
    if grep -q "^FAIL $f:" <<<"$out"; then fail=$((fail + 1)); echo "FAIL $f was flagged"
    else pass=$((pass + 1)); echo "ok   $f passes"; fi
  done
  echo "$pass passed, $fail failed"
  [[ $fail -eq 0 ]]
  exit
fi

check_tree "${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
