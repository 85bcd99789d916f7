#!/usr/bin/env bash
# TIMEOUT: 120
# Docker credential helpers (config.json credsStore / credHelpers, net/credhelper.c) through
# tools/stargz-fetch against Debian's docker-registry with htpasswd Basic auth, and a Bearer
# token flow through tests/lib/registry_proxy.py.  The helpers are small shell scripts
# (docker-credential-NAME) in a directory put first on PATH; each appends one line per run to
# $WORK/calls.  Asserts: credsStore works; credHelpers[host] overrides credsStore; failing,
# missing, broken and hanging helpers give a clear 401 error and no crash; a hung helper is
# killed (with the children it started) after the timeout; one helper run serves many requests.
# STARGZ_FETCH overrides the binary.  Last line: "N passed, N failed".
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
. "$STARGZD_TOP/tests/lib/registry_fixtures.sh"
need_fetch docker-registry skopeo htpasswd curl

push_test_image 600000
htpasswd -Bbc "$WORK/htpasswd" alice s3cret >/dev/null 2>&1
start_registry_extra basic "" "" "$WORK/htpasswd" || { fail "htpasswd registry did not start"; finish; }
BASIC=127.0.0.1:$EXTRA_PORT
start_proxy bearer --upstream "$REGISTRY" --bearer --token-user bob:hunter2
BEARER=127.0.0.1:$PROXY_PORT
FAST=(--insecure --timeout-ms 3000 --retry-base-ms 50 --no-system-ca)

# ---- the helpers ----
BIN=$WORK/bin
CALLS=$WORK/calls
SLEEP_MARK=$((424200 + RANDOM))   # a sleep only our hanging helper runs
mkdir -p "$BIN"
# helper NAME BODY: docker-credential-NAME logs "NAME get SERVER" and then runs BODY, with the
# server it was asked about in $server.
helper() {
  cat >"$BIN/docker-credential-$1" <<SH
#!/bin/sh
server=\$(cat)
echo "$1 \$1 \$server" >>"$CALLS"
$2
SH
  chmod +x "$BIN/docker-credential-$1"
}
# creds USER SECRET: the command that prints a helper's answer.
creds() { echo "printf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}\\n' \"\$server\" '$1' '$2'"; }
helper good "$(creds alice s3cret)"
helper wrong "$(creds alice nope)"
helper bob "$(creds bob hunter2)"
helper notfound 'echo "credentials not found in native keychain"; exit 1'
helper fails 'echo "store is locked" >&2; echo "store is locked"; exit 3'
helper garbage 'echo "this is not json"'
helper hang "sleep $SLEEP_MARK & wait"
export PATH="$BIN:$PATH"

# config NAME JSON: $WORK/NAME.json
config() { printf '%s\n' "$2" >"$WORK/$1.json"; }
config store "{\"credsStore\":\"good\"}"
config override "{\"credsStore\":\"wrong\",\"credHelpers\":{\"$BASIC\":\"good\"}}"
config override-bad "{\"credsStore\":\"good\",\"credHelpers\":{\"$BASIC\":\"wrong\"}}"
config other-host "{\"credHelpers\":{\"elsewhere.example:5000\":\"good\"}}"
config store-wins "{\"credsStore\":\"notfound\",\"auths\":{\"$BASIC\":{\"auth\":\"$(printf alice:s3cret | base64 -w0)\"}}}"
for h in notfound fails garbage hang missing; do config "$h" "{\"credsStore\":\"$h\"}"; done
config bearer "{\"credsStore\":\"bob\"}"
calls() { if [[ -f $CALLS ]]; then wc -l <"$CALLS"; else echo 0; fi; }

# ---- credsStore ----
: >"$CALLS"
ok_sha "credsStore: manifest with the helper's credentials" "$MAN_SHA" "${FAST[@]}" --docker-config "$WORK/store.json" "$BASIC/test/img:v1"
grep -qx "good get $BASIC" "$CALLS" && pass "credsStore: helper ran as 'get' with the host on stdin" \
  || fail "credsStore: helper call" "$(cat "$CALLS")"

: >"$CALLS"
ok_sha "credsStore: whole blob in 8 parallel reads" "$BLOB_SHA" "${FAST[@]}" --docker-config "$WORK/store.json" --chunk 65536 --parallel 8 "$BASIC/test/img:v1" "$LAYER"
n=$(calls)
[[ $n -eq 1 ]] && pass "credsStore: one helper run for every request" || fail "credsStore: helper runs" "$n: $(cat "$CALLS")"

# ---- credHelpers ----
: >"$CALLS"
ok_sha "credHelpers: the host's helper overrides credsStore" "$MAN_SHA" "${FAST[@]}" --docker-config "$WORK/override.json" "$BASIC/test/img:v1"
grep -q "^good " "$CALLS" && ! grep -q "^wrong " "$CALLS" && pass "credHelpers: only the host's helper ran" \
  || fail "credHelpers: helper calls" "$(cat "$CALLS")"
bad "credHelpers: the host's helper wins even when credsStore would work" "401.*credentials for $BASIC rejected" "${FAST[@]}" --docker-config "$WORK/override-bad.json" "$BASIC/test/img:v1"
: >"$CALLS"
bad "credHelpers: a helper for another host is not used" "401.*no credentials for $BASIC in the docker config" "${FAST[@]}" --docker-config "$WORK/other-host.json" "$BASIC/test/img:v1"
[[ $(calls) -eq 0 ]] && pass "credHelpers: no helper ran for an unlisted host" || fail "credHelpers: unexpected run" "$(cat "$CALLS")"
# docker: with a store configured, auths entries are not consulted.
bad "precedence: credsStore is used instead of auths, as docker does" "401.*docker-credential-notfound has no credentials for $BASIC" "${FAST[@]}" --docker-config "$WORK/store-wins.json" "$BASIC/test/img:v1"

# ---- failing helpers: anonymous access, a clear error, no crash ----
bad "fail: 'credentials not found'" "401.*no credentials for $BASIC: docker-credential-notfound has no credentials" "${FAST[@]}" --docker-config "$WORK/notfound.json" "$BASIC/test/img:v1"
bad "fail: non-zero exit" "401.*docker-credential-fails failed \(exit status 3\): store is locked" "${FAST[@]}" --docker-config "$WORK/fails.json" "$BASIC/test/img:v1"
bad "fail: output that is not JSON" "401.*docker-credential-garbage: unusable output" "${FAST[@]}" --docker-config "$WORK/garbage.json" "$BASIC/test/img:v1"
bad "fail: helper not in PATH" "401.*cannot run docker-credential-missing: No such file" "${FAST[@]}" --docker-config "$WORK/missing.json" "$BASIC/test/img:v1"

# ---- a hanging helper is killed after the timeout ----
: >"$CALLS"
t0=$(date +%s%N)
bad "hang: the fetch fails cleanly" "401.*docker-credential-hang timed out after 1000 ms" "${FAST[@]}" --helper-timeout-ms 1000 --docker-config "$WORK/hang.json" --chunk 65536 --parallel 4 "$BASIC/test/img:v1" "$LAYER"
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $ms -ge 900 && $ms -le 5000 ]] && pass "hang: gave up after the timeout (${ms} ms)" || fail "hang: took ${ms} ms"
[[ $(calls) -eq 1 ]] && pass "hang: one run for the parallel requests" || fail "hang: runs" "$(cat "$CALLS")"
if wait_for 3 bash -c "! pgrep -f '[s]leep $SLEEP_MARK' >/dev/null"; then
  pass "hang: the helper's child was killed with it"
else
  fail "hang: 'sleep $SLEEP_MARK' still running"
fi

# ---- Bearer: the helper's credentials go to the token endpoint ----
ok_sha "bearer: blob through the token flow with the helper's credentials" "$BLOB_SHA" "${FAST[@]}" --docker-config "$WORK/bearer.json" --chunk 200000 --parallel 4 "$BEARER/test/img:v1" "$LAYER"
grep -q "^GET /token?.*auth=Basic $(printf bob:hunter2 | base64 -w0)" "$WORK/bearer.log" \
  && pass "bearer: token request carried the helper's credentials" || fail "bearer: token request" "$(grep token "$WORK/bearer.log")"

finish
