#!/usr/bin/env bash
# TIMEOUT: 240
# The resolve hook (resolve_hook_address, daemon/ahead_cmd.h): a host of containerd's
# hosts.toml, listed before the registry, that containerd's resolver asks first; it answers 404
# and loads the image's lazy layers ahead of containerd's first Prepare.  Real registry, real
# containerd with stargzd as its "stargz" snapshotter, plain `ctr-remote images rpull
# --hosts-dir` (no wrapper), `ctr run`.
#  - the rpull: containerd asks the hook, which starts the image (log), both layers load ahead
#    and both Prepares find them (log, metrics), the container reads the right bytes;
#  - two of everything: a second rpull of the image while it is held, and two at once, extend
#    the one hold instead of starting another;
#  - what is not a manifest resolve starts nothing and is answered 404 (a GET, a blob, no ns, a
#    bad name, an image the registry does not have: its pull fails as it would without the
#    hook, the daemon lives on); a malformed request gets 400;
#  - a bad resolve_hook_address refuses the daemon's start with a reason;
#  - a daemon stopped with a hold in flight stops cleanly (nothing leaks: ASan mode).
# Last line: "N passed, N failed".
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
for tool in docker-registry skopeo curl ctr ctr-remote containerd runc; do
  command -v "$tool" >/dev/null || { skip "resolve hook with containerd" "$tool missing"; finish; }
done

start_registry || { fail "registry starts" "$(cat "$WORK/registry.log")"; finish; }
make_busybox_big_image rh
IMG=$REGISTRY/rh:v1

HPORT=$(free_port)
MPORT=$(free_port)
HOOK=http://127.0.0.1:$HPORT
SG_EXTRA_CONFIG="background_fetch = false
resolve_hook_address = \"127.0.0.1:$HPORT\"
metrics_address = \"127.0.0.1:$MPORT\"" start_stargzd || { fail "stargzd starts" "$(cat "$WORK/stargzd.log")"; finish; }
start_containerd || { fail "containerd starts" "$(tail -20 "$WORK/containerd.log")"; finish; }
# containerd's hosts.toml for the registry: the hook first, then the registry itself.
write_hook_hosts_toml "$WORK/certs.d" "$REGISTRY" "$HPORT"
RPULL="ctr-remote --address $WORK/containerd/containerd.sock images rpull --plain-http --hosts-dir $WORK/certs.d --snapshotter stargz"
log_has() { grep -qF -- "$1" "$WORK/stargzd.log"; }
starts() { grep -cF -- "loading ahead of its pull (resolve hook" "$WORK/stargzd.log"; }
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

check "the daemon says where the hook listens" log_has "resolve hook on $HOOK"

# ---- the rpull, resolved through the hook ----
$RPULL "$IMG" >"$WORK/rpull.log" 2>&1
check "a plain rpull with the hook in hosts.toml succeeds" test $? -eq 0
check "containerd asked the hook, which started the image (id 1)" log_has "image $IMG: loading ahead of its pull (resolve hook, id 1, held 120 s at most)"
check_two_layers_loaded_ahead "$IMG"
check "  ... (metrics: 2 loaded ahead, 2 joined)" bash -c "[[ '$(metric stargzd_layers_loaded_ahead_total)' == 2 && '$(metric stargzd_prepares_joined_ahead_total)' == 2 ]]"
out=$($CTR run --rm --snapshotter stargz "$IMG" c1 sha256sum /data/big.bin 2>&1)
check "the container reads the right bytes" bash -c "grep -q '$BIG_SUM' <<<'$out'"

# ---- two of everything: resolved again, and twice at once, while held ----
$RPULL "$IMG" >"$WORK/rpull2.log" 2>&1
check "a second rpull of the image succeeds" test $? -eq 0
$RPULL "$IMG" >"$WORK/rpull3.log" 2>&1 &
A=$!
$RPULL "$IMG" >"$WORK/rpull4.log" 2>&1 &
B=$!
wait "$A"; ra=$?
wait "$B"; rb=$?
check "two rpulls at once both succeed" bash -c "[[ $ra -eq 0 && $rb -eq 0 ]]"
check "  ... and the three resolves while held extended the one hold (1 start)" bash -c "[[ \$(grep -cF 'loading ahead of its pull (resolve hook' '$WORK/stargzd.log') -eq 1 ]]"
out=$($CTR run --rm --snapshotter stargz "$IMG" c2 sha256sum /data/big.bin 2>&1)
check "  ... and a container still reads the right bytes" bash -c "grep -q '$BIG_SUM' <<<'$out'"

# ---- what starts nothing ----
n0=$(starts)
check "a GET of a manifest: 404, nothing started" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$HOOK/v2/rh/manifests/v2?ns=$REGISTRY') == 404 ]]"
check "a HEAD of a blob: 404" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -I '$HOOK/v2/rh/blobs/sha256:00?ns=$REGISTRY') == 404 ]]"
check "a HEAD without ns: 404" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -I '$HOOK/v2/rh/manifests/v2') == 404 ]]"
check "a HEAD of a bad name: 404" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -I '$HOOK/v2/R%2F..%2Fx/manifests/v2?ns=$REGISTRY') == 404 ]]"
check "  ... none of them started anything" bash -c "[[ \$(grep -cF 'loading ahead of its pull (resolve hook' '$WORK/stargzd.log') -eq $n0 ]]"
check "a malformed request: 400" bash -c "[[ \$(printf 'garbage\r\n\r\n' | timeout 5 curl -s telnet://127.0.0.1:$HPORT | head -1 | tr -d '\r') == 'HTTP/1.1 400 Bad Request' ]]"
$RPULL "$REGISTRY/rh:nosuchtag" >"$WORK/rpull-missing.log" 2>&1
check "an image the registry does not have: the pull fails as it would anyway" bash -c "[[ $? -ne 0 ]] && grep -q 'not found' '$WORK/rpull-missing.log'"
check "  ... the hook started it" log_has "image $REGISTRY/rh:nosuchtag: loading ahead of its pull (resolve hook"
check "  ... and the daemon said why nothing loads" wait_for 10 grep -qF \
  "image $REGISTRY/rh:nosuchtag: not loaded ahead of containerd's Prepare: its manifest" "$WORK/stargzd.log"
check "  ... and it still answers" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' -I '$HOOK/v2/rh/manifests/zz') == 404 ]]"

# ---- a bad address refuses the start ----
printf 'resolve_hook_address = "localhost"\n' >"$WORK/bad.toml"
timeout 10 "$STARGZD" --foreground --root "$WORK/bad-root" --address "$WORK/bad.sock" --config "$WORK/bad.toml" >"$WORK/bad.log" 2>&1
check "a bad resolve_hook_address: the daemon refuses to start, and says why" bash -c "[[ $? -ne 0 ]] && grep -q 'cannot serve the resolve hook on localhost: .*host:port' '$WORK/bad.log'"
check "  ... and wrote nothing outside its root" test ! -e "$WORK/bad.sock"

# ---- a stop with a hold in flight ----
# A registry that takes the connection and never answers: the hold's manifest is on its way.
BPORT=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(60)' "$BPORT" &
SILENT=$!
sleep 0.3
n1=$(starts)
curl -s -o /dev/null -I "$HOOK/v2/rh/manifests/v1?ns=127.0.0.1%3A$BPORT" || true
check "a hold started just before the stop" wait_for 10 bash -c "[[ \$(grep -cF 'loading ahead of its pull (resolve hook' '$WORK/stargzd.log') -gt $n1 ]]"
stop_stargzd TERM
check_fuse_requests_answered
check_logged_clean_stop "the daemon stops cleanly with a hold in flight"
kill "$SILENT" 2>/dev/null
finish
