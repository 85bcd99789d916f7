#!/usr/bin/env bash
# TIMEOUT: 240
# `stargzd pull-ahead IMAGE -- COMMAND`: a pull client run with the image's lazy layers loading
# ahead of its first Prepare (daemon/ahead_cmd.h).  Real registry, real containerd with stargzd
# as its "stargz" snapshotter, `ctr-remote images rpull` as the command, `ctr run`.
#  - the rpull through it: the daemon loads both layers ahead (log), both Prepares find them
#    (log, metrics), the container reads the right bytes, and the hold ends with the command;
#  - the command's exit status is passed through, and a failed command ends its hold too;
#  - two of everything: two pull-aheads of one image at once (the second finds both layers
#    held), each ended once;
#  - a pull-ahead whose command is killed with it is let go after its --hold time;
#  - a daemon stopped in the middle of a hold stops cleanly (nothing leaks: ASan mode);
#  - no daemon, a bad reference: the command still runs, with a warning;
#  - a HEAD of the route is refused (it acts).
# Last line: "N passed, N failed".
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
for tool in docker-registry skopeo curl ctr ctr-remote containerd runc; do
  command -v "$tool" >/dev/null || { skip "pull-ahead with containerd" "$tool missing"; finish; }
done

start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_busybox_big_image pa
# A second image of two layers of its own (nothing shared with the first).
mkdir -p "$WORK/l3/other" "$WORK/l4/more"
head -c 2000000 /dev/urandom >"$WORK/l3/other/b.bin"
head -c 1000000 /dev/urandom >"$WORK/l4/more/c.bin"
make_image "$WORK/oci2" v1 "$WORK/l3" "$WORK/l4" >/dev/null
make_estargz_image "$WORK/oci2" "$WORK/esgz2" && push_image "$WORK/esgz2" v1 pb ||
  fail "the second image" "conversion or push failed"
IMG=$REGISTRY/pa:v1
IMG2=$REGISTRY/pb:v1

MPORT=$(free_port)
SG_EXTRA_CONFIG="background_fetch = false
metrics_address = \"127.0.0.1:$MPORT\"" start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
RPULL="ctr-remote --address $WORK/containerd/containerd.sock images rpull --plain-http --snapshotter stargz"
log_has() { grep -qF -- "$1" "$WORK/stargzd.log"; }
log_count() { grep -cF -- "$1" "$WORK/stargzd.log"; }
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# ---- the rpull through pull-ahead ----
"$STARGZD" pull-ahead --root "$SG_ROOT" "$IMG" -- $RPULL "$IMG" >"$WORK/rpull.log" 2>&1
check "pull-ahead runs the rpull, which succeeds (exit 0)" test $? -eq 0
check "the daemon started the image's pull ahead (id 1)" log_has "image $IMG: loading ahead of its pull (\`stargzd pull-ahead\`, id 1"
check_two_layers_loaded_ahead "$IMG"
check "  ... (metrics: 2 loaded ahead, 2 joined)" bash -c "[[ '$(metric stargzd_layers_loaded_ahead_total)' == 2 && '$(metric stargzd_prepares_joined_ahead_total)' == 2 ]]"
check "  ... and the hold ended with the command (nothing left unprepared)" bash -c "! grep -q 'not prepared by containerd' '$WORK/stargzd.log'"
out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sha256sum /data/big.bin 2>&1)
check "the container reads the right bytes" bash -c "grep -q '$BIG_SUM' <<<'$out'"
check "an unknown id is refused (ended once)" bash -c "! curl -sf --unix-socket '$SG_ROOT/stargzd-control.sock' 'http://l/pull-ahead-end?id=1&pulled=1'"
check "a HEAD of the route is refused (405) and starts nothing" bash -c "
  [[ \$(curl -s -o /dev/null -w '%{http_code}' -I --unix-socket '$SG_ROOT/stargzd-control.sock' 'http://l/pull-ahead?image=$IMG2') == 405 ]] &&
  ! grep -qF 'image $IMG2: loading ahead' '$WORK/stargzd.log'"

# ---- the command's status, and a failed command ----
"$STARGZD" pull-ahead --root "$SG_ROOT" "$IMG2" -- sh -c 'exit 7'
check "the command's exit status is passed through (7)" test $? -eq 7
check "  ... and its hold ended (id 2): not pulled, so nothing is said of unprepared layers" bash -c "
  grep -qF 'image $IMG2: loading ahead of its pull (\`stargzd pull-ahead\`, id 2' '$WORK/stargzd.log' &&
  ! curl -sf --unix-socket '$SG_ROOT/stargzd-control.sock' 'http://l/pull-ahead-end?id=2&pulled=0'"

# ---- two at once: the second finds both layers held by the first ----
# Id 2 may or may not have logged its own such line: its command ended at once, maybe before
# its manifest came (then dropped unsaid).
loaded_before=$(grep -cF "image $IMG2: 2 of its 2 layers load ahead" "$WORK/stargzd.log")
"$STARGZD" pull-ahead --root "$SG_ROOT" "$IMG2" -- sleep 2 &
A=$!
# The first's manifest came and its hold took both layers.
wait_for 10 bash -c "[[ \$(grep -cF 'image $IMG2: 2 of its 2 layers load ahead' '$WORK/stargzd.log') -gt $loaded_before ]]"
"$STARGZD" pull-ahead --root "$SG_ROOT" "$IMG2" -- sleep 1 &
B=$!
wait "$A"; ra=$?
wait "$B"; rb=$?
check "two pull-aheads of one image at once both succeed" bash -c "[[ $ra -eq 0 && $rb -eq 0 ]]"
check "  ... the second finds both layers held by the first" log_has "image $IMG2: 0 of its 2 layers load ahead of containerd's Prepare (2 in use already)"
check "  ... both ended, each once (no id left)" bash -c "
  ! curl -sf --unix-socket '$SG_ROOT/stargzd-control.sock' 'http://l/pull-ahead-end?id=3&pulled=1' &&
  ! curl -sf --unix-socket '$SG_ROOT/stargzd-control.sock' 'http://l/pull-ahead-end?id=4&pulled=1'"
check "  ... and, nothing having been prepared, their layers were let go" log_has "image $IMG2: its pull ended with 2 of the layers loaded ahead not prepared by containerd"

# ---- a pull-ahead killed with its command: let go after its --hold ----
"$STARGZD" pull-ahead --root "$SG_ROOT" --hold 1 "$IMG2" -- sleep 30 &
K=$!
wait_for 10 grep -qF "image $IMG2: loading ahead of its pull (\`stargzd pull-ahead\`, id 5" "$WORK/stargzd.log"
# The command first, so that it cannot tell the daemon; then its orphaned child.
KIDS=$(pgrep -P "$K")
kill -KILL "$K"; wait "$K" 2>/dev/null
kill -KILL $KIDS 2>/dev/null
check "a pull-ahead nobody ends is let go after its --hold (1 s; the daemon looks every 3 s)" \
  wait_for 10 grep -qF "image $IMG2: its \`stargzd pull-ahead\` (id 5) did not end within 1 s" "$WORK/stargzd.log"

# ---- no daemon, a bad reference ----
"$STARGZD" pull-ahead --root "$WORK/nothing" "$IMG" -- true 2>"$WORK/none.err"
check "no daemon: the command still runs (exit 0), with a warning" bash -c "[[ $? -eq 0 ]] && grep -q 'not loaded ahead: cannot reach the daemon' '$WORK/none.err'"
"$STARGZD" pull-ahead --root "$SG_ROOT" 'Not/A:Ref!' -- true 2>"$WORK/bad.err"
check "a bad reference: the command still runs, the daemon says why" bash -c "[[ $? -eq 0 ]] && grep -q 'answered \"HTTP/1.1 500' '$WORK/bad.err' && grep -qF 'image Not/A:Ref!: not loaded ahead of its pull' '$WORK/stargzd.log'"
check "usage errors exit 2 (no command)" bash -c "'$STARGZD' pull-ahead '$IMG'; [[ \$? -eq 2 ]] && '$STARGZD' pull-ahead '$IMG' --; [[ \$? -eq 2 ]]"
check "the \"--\" is optional" bash -c "'$STARGZD' pull-ahead --root '$WORK/nothing' '$IMG' sh -c 'exit 3' 2>/dev/null; [[ \$? -eq 3 ]]"

# ---- a stop in the middle of a hold ----
"$STARGZD" pull-ahead --root "$SG_ROOT" "$IMG2" -- sleep 5 >"$WORK/mid.out" 2>&1 &
M=$!
wait_for 10 grep -qF "image $IMG2: loading ahead of its pull (\`stargzd pull-ahead\`, id 6" "$WORK/stargzd.log"
stop_stargzd TERM
check_logged_clean_stop "the daemon stops cleanly with a hold in flight"
wait "$M"; rm_=$?
check "  ... and the command still ends with its own status (0), the daemon gone" bash -c "[[ $rm_ -eq 0 ]] && grep -q 'could not tell the daemon that the pull ended' '$WORK/mid.out'"
finish
