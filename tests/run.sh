#!/usr/bin/env bash
# Runs every test program and prints one closing line "N passed, N failed[, N skipped]".
#
# A test program is a lint check (tests/lint/: the include rules and their self-test, and
# tools/bench/benchlib.py's self-test; run first: they take no time), a unit-test binary (build/tests/unit/*/test_*), an integration
# script (tests/integration/*.sh) or a fuzz replay driver (build/fuzz-replay/NAME,
# tests/fuzz/replay.c) run on tests/fuzz/NAME/corpus/ and regressions/.  Each prints its own
# "N passed, N failed" line last; this runner adds them up.  A program that dies without that
# line counts as one failure.  The unit tests and the replays run twice: the normal build,
# then the ASan+UBSan build (build-asan/).
#
#   tests/run.sh                 everything
#   tests/run.sh lint|unit|integration|fuzz|asan   one part
#   tests/run.sh asan-integration   (not in "everything": make check-asan-integration) the
#                                integration scripts against build-asan/stargzd
#   TESTS='loop cli' tests/run.sh        only programs whose name contains a word
set -uo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
export STARGZD_TOP=$TOP
export STARGZD_BIN=${STARGZD_BIN:-$TOP/build/stargzd}
LOGDIR=${LOGDIR:-$TOP/build/test-logs}
mkdir -p "$LOGDIR"
parts=${1:-all}

total_pass=0 total_fail=0 total_skip=0
failed_programs=()

selected() {
  [[ -z "${TESTS:-}" ]] && return 0
  local w
  for w in $TESTS; do [[ "$1" == *"$w"* ]] && return 0; done
  return 1
}

run_program() {   # label, command...
  local label=$1; shift
  selected "$label" || return 0
  local log="$LOGDIR/$(echo "$label" | tr '/ ' '__').log"
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  local line
  line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -n 1)
  local p=0 f=0 s=0
  if [[ -n "$line" ]]; then
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
    s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  fi
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    f=1   # died, or exited non-zero without saying why in its summary
  fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
  if [[ $f -ne 0 ]]; then
    failed_programs+=("$label")
    printf 'FAIL %-40s %3d passed, %d failed (%ds) — log: %s\n' "$label" "$p" "$f" $((SECONDS - t0)) "$log"
    grep -E '^(FAIL|not ok)|^    ' "$log" | head -n 40 | sed 's/^/     | /'
  else
    printf 'ok   %-40s %3d passed, %d skipped (%ds)\n' "$label" "$p" "$s" $((SECONDS - t0))
  fi
}

run_unit() {   # build dir, label prefix
  local dir=$1 prefix=$2 bin
  for bin in $(find "$dir/tests/unit" -type f -name 'test_*' ! -name '*.[od]' 2>/dev/null | sort); do
    [[ -x "$bin" ]] || continue
    run_program "$prefix${bin#"$dir"/tests/unit/}" "$bin"
  done
}

run_replay() {   # build dir, label prefix: every fuzz corpus and regression input, once each
  local dir=$1 prefix=$2 bin name inputs
  for bin in "$dir"/fuzz-replay/*; do
    [[ -x "$bin" ]] || continue
    name=$(basename "$bin")
    inputs=()
    for d in "tests/fuzz/$name/corpus" "tests/fuzz/$name/regressions"; do
      [[ -d "$d" ]] && inputs+=("$d")
    done
    run_program "${prefix}fuzz-replay/$name" "$bin" "${inputs[@]}"
  done
}

run_integration() {   # label prefix: every script of tests/integration/ (lib.sh is theirs)
  local t
  for t in tests/integration/*.sh; do
    [[ -f "$t" && $(basename "$t") != lib.sh ]] || continue
    run_program "$1$(basename "$t" .sh)" bash "$t"
  done
}

if [[ $parts == all || $parts == lint ]]; then
  run_program lint/include_rules bash tests/lint/include_rules.sh
  run_program lint/include_rules_selftest bash tests/lint/include_rules.sh --self-test
  # the bench's fetch-trace parser and goal lines on synthetic input (tools/bench/benchlib.py)
  run_program lint/bench_selftest /usr/bin/python3 tools/bench/benchlib.py selftest
fi
if [[ $parts == all || $parts == unit ]]; then
  run_unit build ""
  run_replay build ""
fi
if [[ $parts == all || $parts == integration ]]; then
  run_integration integration/
fi
if [[ $parts == all || $parts == fuzz ]]; then
  ls build-fuzz/fuzz/* >/dev/null 2>&1 && run_program "fuzz" tests/fuzz/run.sh
fi
if [[ $parts == all || $parts == asan ]]; then
  # halt_on_error keeps a finding from scrolling past; detect_leaks catches what a test leaks.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  run_unit build-asan "asan:"
  run_replay build-asan "asan:"
fi
if [[ $parts == asan-integration ]]; then
  # Each daemon (and CLI run) writes its sanitizer reports to a file of its own, and every
  # file fails the run: a finding in a daemon that a script stops does not fail the script
  # itself.  tests/lsan.supp: what libfuse keeps by design.
  asan_dir=$LOGDIR/asan-integration
  rm -rf "$asan_dir" && mkdir -p "$asan_dir"
  export STARGZD_BIN=$TOP/build-asan/stargzd
  export ASAN_OPTIONS=detect_leaks=1:log_path=$asan_dir/asan
  export LSAN_OPTIONS=suppressions=$TOP/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=print_stacktrace=1:log_path=$asan_dir/ubsan
  run_integration asan-integration/
  for f in "$asan_dir"/*; do
    [[ -s "$f" ]] || continue
    total_fail=$((total_fail + 1))
    failed_programs+=("sanitizer:$(basename "$f")")
    printf 'FAIL %-40s a sanitizer report — %s\n' "sanitizer:$(basename "$f")" "$f"
    head -n 30 "$f" | sed 's/^/     | /'
  done
fi

echo
if [[ ${#failed_programs[@]} -ne 0 ]]; then
  echo "failed: ${failed_programs[*]}"
fi
if [[ $total_skip -ne 0 ]]; then
  echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
  echo "$total_pass passed, $total_fail failed"
fi
[[ $total_fail -eq 0 ]]
