#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/fuzz/ for FUZZ_SECONDS (default 20) on a scratch
# copy of its seed corpus (tests/fuzz/NAME/corpus).  A crash, leak, sanitizer report or
# timeout is a failure; the crashing input is kept in build-fuzz/findings/NAME/.
# Prints "N passed, N failed" like every test program.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-20}
pass=0 fail=0
for bin in build-fuzz/fuzz/*; do
  [[ -x "$bin" ]] || continue
  name=$(basename "$bin")
  work=$(mktemp -d)
  findings=build-fuzz/findings/$name
  mkdir -p "$findings"
  [[ -d tests/fuzz/$name/corpus ]] && cp -r "tests/fuzz/$name/corpus/." "$work/"
  dict=()
  [[ -f tests/fuzz/$name/dict ]] && dict=(-dict="tests/fuzz/$name/dict")
  if "$bin" "$work" "${dict[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$findings/" -print_final_stats=1 >"build-fuzz/$name.log" 2>&1; then
    echo "ok   fuzz/$name ($(grep -oE 'stat::number_of_executed_units: *[0-9]+' "build-fuzz/$name.log" | grep -oE '[0-9]+$') runs in ${secs}s)"
    pass=$((pass + 1))
  else
    echo "FAIL fuzz/$name: see build-fuzz/$name.log and $findings/"
    grep -E 'ERROR|SUMMARY|panic|==[0-9]+==' "build-fuzz/$name.log" | head -n 10 | sed 's/^/    /'
    fail=$((fail + 1))
  fi
  rm -rf "$work"
done
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
