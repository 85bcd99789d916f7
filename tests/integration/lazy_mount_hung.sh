#!/usr/bin/env bash
# TIMEOUT: 180
# A registry that stops answering (SIGSTOP: its kernel still accepts connections, nothing
# replies) while `stargzd mount` has a read waiting on a fetch from it, and then the layer goes
# (Ctrl-C): the layer's close cancels the request in flight at once instead of leaving it to
# the shutdown's grace or the registry's timeouts, every waiting reader gets one answer, and
# nothing is left mounted.  Once with one reader, once with two readers of one chunk.
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

mkdir -p "$WORK/l/data"
head -c 9000000 /dev/urandom >"$WORK/l/data/big.bin"   # three chunks, never fetched ahead
make_image "$WORK/oci" v1 "$WORK/l" >/dev/null
make_estargz_image "$WORK/oci" "$WORK/esgz" || fail "convert the image"
read -r LAYER TOC < <(esgz_layer_info "$WORK/esgz")
start_registry || { fail "registry starts"; finish; }
push_image "$WORK/esgz" v1 hung || fail "push"

for readers in 1 2; do
  M=$WORK/m$readers
  mkdir -p "$M"
  kill -CONT "$REGISTRY_PID" 2>/dev/null
  spawn "$STARGZD" mount --plain-http --no-prefetch --no-background --no-speculate \
    --toc-digest "$TOC" --cache "$WORK/cache$readers" "$REGISTRY/hung:v1" "$LAYER" "$M" \
    2>"$WORK/m$readers.log"
  MP=$SPAWNED
  wait_for 20 mountpoint -q "$M" || { fail "[$readers] mounted" "$(tail -3 "$WORK/m$readers.log")"; continue; }
  kill -STOP "$REGISTRY_PID"
  pids=()
  for r in $(seq "$readers"); do
    ( tail -c +4200000 "$M/data/big.bin" | head -c 4096 >/dev/null 2>"$WORK/r$readers-$r.err"
      echo $? >"$WORK/r$readers-$r.rc" ) &
    pids+=($!)
  done
  sleep 1
  if [[ -e $WORK/r$readers-1.rc ]]; then
    fail "[$readers] the read waits on the stopped registry" "it ended: rc $(cat "$WORK/r$readers-1.rc")"
  else
    pass "[$readers] the read waits on the stopped registry"
  fi
  t0=$(date +%s%N)
  kill -INT "$MP"
  # Before the close cancelled its requests, the exit waited for the shutdown's 5 s grace
  # (then the registry's shutdown cancelled them): 4.9 s here, against 55 ms.
  if wait_exit "$MP" 10; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [[ $ms -lt 2000 ]] && pass "[$readers] stargzd mount exits on SIGINT at once (${ms} ms)" ||
      fail "[$readers] stargzd mount exits on SIGINT at once" "${ms} ms: the close waited for the hung request"
  else
    fail "[$readers] stargzd mount exits on SIGINT within 10 s" "$(tail -5 "$WORK/m$readers.log")"
  fi
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  n=0
  for r in $(seq "$readers"); do [[ -e $WORK/r$readers-$r.rc ]] && n=$((n + 1)); done
  [[ $n -eq $readers ]] && pass "[$readers] every waiting reader got its answer" ||
    fail "[$readers] every waiting reader got its answer" "$n of $readers"
  check "[$readers] no mount is left behind" bash -c "! mountpoint -q '$M'"
done
kill -CONT "$REGISTRY_PID" 2>/dev/null
finish
