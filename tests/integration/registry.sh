#!/usr/bin/env bash
# TIMEOUT: 180
# The registry client (net/registry.c and its modules) through tools/stargz-fetch against Debian's real
# docker-registry: plain HTTP, TLS with a generated CA, htpasswd Basic auth, and — through
# tests/lib/registry_proxy.py — a Bearer token flow, redirects, multi-range quirks, retries,
# truncated/stalled/reset/garbage responses, dead registries and hosts.toml mirrors.  Every byte is
# compared with what curl gets from the registry.  STARGZ_FETCH overrides the binary (default
# build/tools/stargz-fetch).  Last line: "N passed, N failed".
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
. "$STARGZD_TOP/tests/lib/registry_fixtures.sh"
need_fetch docker-registry skopeo htpasswd openssl curl

# ---- fixtures: one image, pushed once; every registry below shares its storage ----
push_test_image 3000000
# Three ranges: the start, the middle, the tail end.
R1=(0 4096) R2=(1000000 70000) R3=($((BLOB_SIZE - 1000)) 1000)
RANGES=(--range "${R1[0]}-$((R1[0] + R1[1] - 1))" --range "${R2[0]}-$((R2[0] + R2[1] - 1))" --range "${R3[0]}-$((R3[0] + R3[1] - 1))")
RANGES_SHA=$( { slice "$WORK/blob" "${R1[@]}"; slice "$WORK/blob" "${R2[@]}"; slice "$WORK/blob" "${R3[@]}"; } | sha)
ONE_SHA=$(slice "$WORK/blob" "${R2[@]}" | sha)
FAST=(--timeout-ms 3000 --retry-base-ms 50 --no-system-ca)

# ---- plain HTTP ----
ok_sha "plain: manifest by tag" "$MAN_SHA" --insecure "$REF"
MAN_DIGEST=sha256:$MAN_SHA
ok_sha "plain: manifest by digest (verified)" "$MAN_SHA" --insecure "$REGISTRY/test/img@$MAN_DIGEST"
ok_sha "plain: whole blob (4 parallel 256 KiB reads)" "$BLOB_SHA" --insecure --chunk 262144 "$REF" "$LAYER"
ok_sha "plain: single range" "$ONE_SHA" --insecure --range "${R2[0]}-$((R2[0] + R2[1] - 1))" "$REF" "$LAYER"
ok_sha "plain: three ranges in one request" "$RANGES_SHA" --insecure --verbose "${RANGES[@]}" "$REF" "$LAYER"
grep -q "multirange=ok" "$WORK/err" && pass "plain: registry answered multipart/byteranges" || fail "plain: multipart" "$(cat "$WORK/err")"
if "$FETCH" --insecure --size "$REF" "$LAYER" 2>/dev/null | grep -qx "$BLOB_SIZE"; then pass "plain: blob size from HEAD"; else fail "plain: blob size"; fi
ok_sha "plain: 64 x 64 KiB reads over at most 2 connections" "$BLOB_SHA" --insecure --verbose --chunk 65536 --parallel 64 --max-conns 2 "$REF" "$LAYER"
grep -Eq "max_conns=[12] " "$WORK/err" && pass "plain: pool bound held" || fail "plain: pool bound" "$(cat "$WORK/err")"
bad "plain: without --insecure no plain HTTP" "TLS handshake" "${FAST[@]}" --attempts 1 "$REF"
bad "plain: unknown repository is ENOENT with the registry's message" "404.*NAME_UNKNOWN|404.*MANIFEST_UNKNOWN" --insecure "$REGISTRY/test/nope:v1"
bad "plain: unknown blob" "404" --insecure "$REF" "sha256:$(printf '0%.0s' {1..64})"
bad "plain: range outside the blob" "outside the blob" --insecure --range "$BLOB_SIZE-$((BLOB_SIZE + 10))" "$REF" "$LAYER"

# ---- TLS ----
if make_test_ca "$WORK/pki"; then
  start_registry_extra tls "$WORK/pki/srv.pem" "$WORK/pki/srv.key" "" || fail "TLS registry did not start"
  # BearSSL matches DNS names only (no IP-address SANs), so TLS goes to "localhost".
  TLS=localhost:$EXTRA_PORT
  ok_sha "tls: manifest with the test CA" "$MAN_SHA" --ca "$WORK/pki/ca.pem" "$TLS/test/img:v1"
  ok_sha "tls: blob ranges with the test CA" "$RANGES_SHA" --ca "$WORK/pki/ca.pem" "${RANGES[@]}" "$TLS/test/img:v1" "$LAYER"
  bad "tls: system CAs do not trust it" "TLS handshake.*(not trusted|BearSSL error 62)" --attempts 1 "$TLS/test/img:v1"
  bad "tls: a certificate from an unknown CA is refused" "TLS handshake.*(not trusted|BearSSL error 62)" --no-system-ca --ca "$WORK/pki/other.pem" --attempts 1 "$TLS/test/img:v1"
  mkdir -p "$WORK/certs.d/$TLS"
  printf 'server = "https://%s"\nskip_verify = true\n' "$TLS" >"$WORK/certs.d/$TLS/hosts.toml"
  ok_sha "tls: hosts.toml skip_verify accepts it" "$BLOB_SHA" --hosts-dir "$WORK/certs.d" --no-system-ca "$TLS/test/img:v1" "$LAYER"
  printf 'server = "https://%s"\nca = "%s"\n' "$TLS" "$WORK/pki/ca.pem" >"$WORK/certs.d/$TLS/hosts.toml"
  ok_sha "tls: hosts.toml ca accepts it" "$MAN_SHA" --hosts-dir "$WORK/certs.d" --no-system-ca "$TLS/test/img:v1"
  # Wrong name: openssl s_server with a certificate for registry.invalid only.
  WN_PORT=$(free_port)
  spawn openssl s_server -accept "127.0.0.1:$WN_PORT" -cert "$WORK/pki/wrongname.pem" -key "$WORK/pki/wrongname.key" -www -quiet >/dev/null 2>&1
  wait_port "$WN_PORT"
  bad "tls: a certificate for another name is refused" "TLS handshake.*(name|BearSSL error 56)" --ca "$WORK/pki/ca.pem" --attempts 1 "127.0.0.1:$WN_PORT/test/img:v1"
else
  fail "tls: could not generate the test CA"
fi

# ---- htpasswd Basic auth ----
htpasswd -Bbc "$WORK/htpasswd" alice s3cret >/dev/null 2>&1
start_registry_extra basic "" "" "$WORK/htpasswd" || fail "htpasswd registry did not start"
BASIC=127.0.0.1:$EXTRA_PORT
auth_json() {   # HOST USER:PASS FILE
  printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$1" "$(printf %s "$2" | base64 -w0)" >"$3"
}
auth_json "$BASIC" alice:s3cret "$WORK/docker-good.json"
auth_json "$BASIC" alice:wrong "$WORK/docker-bad.json"
ok_sha "basic: manifest with credentials from config.json" "$MAN_SHA" --insecure --docker-config "$WORK/docker-good.json" "$BASIC/test/img:v1"
ok_sha "basic: blob ranges with credentials" "$RANGES_SHA" --insecure --docker-config "$WORK/docker-good.json" "${RANGES[@]}" "$BASIC/test/img:v1" "$LAYER"
echo '{}' >"$WORK/docker-empty.json"
bad "basic: no credentials is a clear EACCES" "401.*no credentials for $BASIC" --insecure --docker-config "$WORK/docker-empty.json" "$BASIC/test/img:v1"
bad "basic: wrong password is rejected" "401.*rejected" --insecure --docker-config "$WORK/docker-bad.json" "$BASIC/test/img:v1"

# ---- Bearer tokens (proxy in front of the registry; it serves /token itself) ----
start_proxy bearer --upstream "$REGISTRY" --bearer --token-user bob:hunter2
BEARER=127.0.0.1:$PROXY_PORT
auth_json "$BEARER" bob:hunter2 "$WORK/docker-bearer.json"
ok_sha "bearer: manifest through the token flow" "$MAN_SHA" --insecure --docker-config "$WORK/docker-bearer.json" "$BEARER/test/img:v1"
grep -q "^GET /token?.*scope=repository%3Atest%2Fimg%3Apull.*auth=Basic " "$WORK/bearer.log" \
  && pass "bearer: token request carried scope and Basic credentials" || fail "bearer: token request" "$(grep token "$WORK/bearer.log")"
: >"$WORK/bearer.log"
ok_sha "bearer: 16 parallel reads" "$BLOB_SHA" --insecure --docker-config "$WORK/docker-bearer.json" --chunk 200000 --parallel 16 "$BEARER/test/img:v1" "$LAYER"
n=$(grep -c "^GET /token" "$WORK/bearer.log")
[[ $n -eq 1 ]] && pass "bearer: one token request shared by concurrent 401s" || fail "bearer: token requests" "$n"
bad "bearer: token endpoint refuses bad credentials" "token request failed.*401" --insecure --docker-config "$WORK/docker-bad.json" "$BEARER/test/img:v1"
start_proxy bearer-anon --upstream "$REGISTRY" --bearer --token-uses 3
ok_sha "bearer: anonymous tokens, refreshed on 401" "$BLOB_SHA" --insecure --docker-config "$WORK/docker-empty.json" --chunk 300000 --parallel 2 "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
n=$(grep -c "^GET /token" "$WORK/bearer-anon.log")
[[ $n -ge 2 ]] && pass "bearer: expired token refreshed ($n token requests)" || fail "bearer: refresh" "$n token requests"

# ---- redirects: the bearer registry sends blob GETs to a "storage" host ----
start_proxy storage --upstream "$REGISTRY"
STORAGE=$PROXY_PORT
start_proxy redirect --upstream "$REGISTRY" --bearer --token-user bob:hunter2 --redirect-blobs "http://127.0.0.1:$STORAGE"
auth_json "127.0.0.1:$PROXY_PORT" bob:hunter2 "$WORK/docker-redir.json"
ok_sha "redirect: ranges served by the redirect target" "$RANGES_SHA" --insecure --docker-config "$WORK/docker-redir.json" "${RANGES[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
if grep -q "/blobs/" "$WORK/storage.log" && ! grep -q "auth=." "$WORK/storage.log"; then
  pass "redirect: the registry's Authorization does not follow the redirect"
else
  fail "redirect: storage log" "$(head -c 600 "$WORK/storage.log")"
fi
grep -q "/blobs/.*auth=Bearer" "$WORK/redirect.log" && pass "redirect: the registry itself got the token" || fail "redirect: registry auth"

# ---- credentials stay on their host: a redirect elsewhere carries no Authorization ----
# "Elsewhere" is 127.0.0.2, another address on the loopback, so the client sees another host
# (not just another port).  Each proxy logs the Authorization it received.
OTHER=127.0.0.2
TOKEN=cross-host-test-token
# The token endpoint (on the registry's host, given Basic credentials) redirects the token
# request to another host, which issues an anonymous token the registry accepts.
start_proxy_at "$OTHER" "" other-token --fixed-token "$TOKEN"
start_proxy redir-token --upstream "$REGISTRY" --bearer --token-user bob:hunter2 --fixed-token "$TOKEN" \
  --redirect "/token?=http://$OTHER:$PROXY_PORT/token?"
auth_json "127.0.0.1:$PROXY_PORT" bob:hunter2 "$WORK/docker-rt.json"
ok_sha "cross-host: token request redirected to another host" "$MAN_SHA" --insecure --docker-config "$WORK/docker-rt.json" "127.0.0.1:$PROXY_PORT/test/img:v1"
if grep -q "^GET /token?.*auth=Basic " "$WORK/redir-token.log" && grep -q "^GET /token?" "$WORK/other-token.log" &&
   ! grep -q "auth=." "$WORK/other-token.log"; then
  pass "cross-host: the token request's Basic credentials do not follow it to another host"
else
  fail "cross-host: token redirect" "registry: $(grep "^GET /token" "$WORK/redir-token.log" | head -c 300); other host: $(head -c 300 "$WORK/other-token.log")"
fi
# There and back: what left the host does not get its credentials back on returning (as Go's
# net/http since CVE-2024-45336), so the token endpoint's second look sees none and refuses.
BACK=$(free_port)
start_proxy_at "$OTHER" "" other-back --redirect "/token?=http://127.0.0.1:$BACK/token2?"
start_proxy_at 127.0.0.1 "$BACK" redir-back --upstream "$REGISTRY" --bearer --token-user bob:hunter2 \
  --redirect "/token?=http://$OTHER:$PROXY_PORT/token?"
auth_json "127.0.0.1:$BACK" bob:hunter2 "$WORK/docker-back.json"
bad "cross-host: redirected back to the registry's host, the token request has no credentials" "token request failed.*401" \
  --insecure --attempts 1 --docker-config "$WORK/docker-back.json" "127.0.0.1:$BACK/test/img:v1"
if grep -q "^GET /token2?" "$WORK/redir-back.log" && ! grep "^GET /token2?" "$WORK/redir-back.log" | grep -q "auth=." &&
   ! grep -q "auth=." "$WORK/other-back.log"; then
  pass "cross-host: neither the other host nor the return trip got Basic credentials"
else
  fail "cross-host: there and back" "registry: $(grep "^GET /token" "$WORK/redir-back.log" | head -c 300); other host: $(head -c 300 "$WORK/other-back.log")"
fi
# A redirect on the same host keeps them: /token -> /token2 (relative Location), which wants them.
start_proxy redir-same --upstream "$REGISTRY" --bearer --token-user bob:hunter2 --redirect "/token?=/token2?"
auth_json "127.0.0.1:$PROXY_PORT" bob:hunter2 "$WORK/docker-same.json"
ok_sha "cross-host: a same-host redirect of the token request keeps its credentials" "$MAN_SHA" --insecure --docker-config "$WORK/docker-same.json" "127.0.0.1:$PROXY_PORT/test/img:v1"
# Manifests and blobs redirected to another host: the registry gets the token, the other host
# nothing.
start_proxy_at "$OTHER" "" other-data --upstream "$REGISTRY"
OD=$PROXY_PORT
start_proxy redir-data --upstream "$REGISTRY" --bearer --token-user bob:hunter2 \
  --redirect "/v2/test/img/manifests/=http://$OTHER:$OD/v2/test/img/manifests/" \
  --redirect "/v2/test/img/blobs/=http://$OTHER:$OD/v2/test/img/blobs/"
auth_json "127.0.0.1:$PROXY_PORT" bob:hunter2 "$WORK/docker-data.json"
ok_sha "cross-host: manifest redirected to another host" "$MAN_SHA" --insecure --docker-config "$WORK/docker-data.json" "127.0.0.1:$PROXY_PORT/test/img:v1"
ok_sha "cross-host: blob ranges redirected to another host" "$RANGES_SHA" --insecure --docker-config "$WORK/docker-data.json" "${RANGES[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
if grep -q "^GET /v2/test/img/manifests/.*auth=Bearer " "$WORK/redir-data.log"; then
  if grep -q "/manifests/" "$WORK/other-data.log" && grep -q "/blobs/" "$WORK/other-data.log" && ! grep -q "auth=." "$WORK/other-data.log"; then
    pass "cross-host: manifest and blob requests reach the other host without Authorization"
  else
    fail "cross-host: other host's log" "$(head -c 600 "$WORK/other-data.log")"
  fi
else
  fail "cross-host: the registry did not get the token" "$(head -c 600 "$WORK/redir-data.log")"
fi

# ---- multi-range quirks ----
for mode in 400 200 first; do
  start_proxy "multi-$mode" --upstream "$REGISTRY" --multi "$mode"
  ok_sha "multirange $mode: bytes correct" "$RANGES_SHA" --insecure --verbose --repeat 3 "${RANGES[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
  case $mode in 400) want=refused ;; 200) want=whole-blob ;; first) want=first-range-only ;; esac
  n=$(grep -c "range=bytes=.*," "$WORK/multi-$mode.log")
  if grep -q "multirange=$want" "$WORK/err" && [[ $n -eq 1 ]]; then
    pass "multirange $mode: detected ($want) and remembered (1 multi-range request of 3 reads)"
  else
    fail "multirange $mode: detection" "$n multi-range requests; $(grep stats "$WORK/err")"
  fi
done

# ---- manifest digests are verified ----
start_proxy tamper --upstream "$REGISTRY" --tamper-manifests
bad "digest: a manifest that does not match its digest is refused" "digest mismatch" --insecure "127.0.0.1:$PROXY_PORT/test/img@$MAN_DIGEST"
ok_sha "digest: by tag there is nothing to verify against" "$( { cat "$WORK/manifest.json"; printf ' '; } | sha)" --insecure "127.0.0.1:$PROXY_PORT/test/img:v1"

# ---- retries and faults ----
start_proxy fail503 --upstream "$REGISTRY" --fail-first 2 --fail-status 503
ok_sha "retry: two 503s, then success" "$MAN_SHA" --insecure --verbose "${FAST[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1"
grep -q "retries=2" "$WORK/err" && pass "retry: counted two retries" || fail "retry: count" "$(grep stats "$WORK/err")"
start_proxy fail429 --upstream "$REGISTRY" --fail-first 1 --fail-status 429 --retry-after 1
t0=$(date +%s%N)
ok_sha "retry: 429 with Retry-After: 1" "$ONE_SHA" --insecure "${FAST[@]}" --range "${R2[0]}-$((R2[0] + R2[1] - 1))" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $ms -ge 900 ]] && pass "retry: Retry-After honoured (${ms} ms)" || fail "retry: Retry-After" "${ms} ms"
start_proxy fail500 --upstream "$REGISTRY" --fail-first 100 --fail-status 500
bad "retry: persistent 500 gives up after the attempts" "500.*UNAVAILABLE.*after 3 attempts" --insecure "${FAST[@]}" --attempts 3 "127.0.0.1:$PROXY_PORT/test/img:v1"
start_proxy drop --upstream "$REGISTRY" --drop-first 2
ok_sha "retry: two dropped connections, then success" "$RANGES_SHA" --insecure "${FAST[@]}" "${RANGES[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
start_proxy trunc --upstream "$REGISTRY" --truncate
bad "fault: truncated 206 is EIO, never short data" "Input/output error.*closed before the response was complete" --insecure "${FAST[@]}" --attempts 2 --range "${R2[0]}-$((R2[0] + R2[1] - 1))" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
start_proxy reset --upstream "$REGISTRY" --reset
bad "fault: connection reset mid-body is a clear error, never short data" "Connection reset by peer" --insecure "${FAST[@]}" --attempts 1 --range "${R2[0]}-$((R2[0] + R2[1] - 1))" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
start_proxy reset1 --upstream "$REGISTRY" --reset --reset-first 1
ok_sha "fault: connection reset mid-body is retried" "$ONE_SHA" --insecure --verbose "${FAST[@]}" --attempts 2 --range "${R2[0]}-$((R2[0] + R2[1] - 1))" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
grep -q "retries=1" "$WORK/err" && pass "fault: reset counted one retry" || fail "fault: reset retry count" "$(grep stats "$WORK/err")"
start_proxy stall --upstream "$REGISTRY" --stall 20
t0=$SECONDS
bad "fault: stalled body hits the idle timeout" "idle timeout" --insecure --timeout-ms 1000 --attempts 1 --range "${R2[0]}-$((R2[0] + R2[1] - 1))" "127.0.0.1:$PROXY_PORT/test/img:v1" "$LAYER"
[[ $((SECONDS - t0)) -le 5 ]] && pass "fault: idle timeout fired in time" || fail "fault: idle timeout slow" "$((SECONDS - t0)) s"
start_proxy garbage --upstream "$REGISTRY" --garbage
bad "fault: garbage status line" "malformed response" --insecure "${FAST[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1"
start_proxy bighdr --upstream "$REGISTRY" --big-header
bad "fault: oversized header" "malformed response" --insecure "${FAST[@]}" "127.0.0.1:$PROXY_PORT/test/img:v1"

# ---- dead registries ----
DEAD=$(free_port)
t0=$SECONDS
bad "dead: connection refused, clear error" "connect: Connection refused \(after 3 attempts\)" --insecure "${FAST[@]}" --attempts 3 "127.0.0.1:$DEAD/test/img:v1"
[[ $((SECONDS - t0)) -le 5 ]] && pass "dead: gave up within the retry budget" || fail "dead: slow" "$((SECONDS - t0)) s"
# A listener that never answers: the first-byte timeout.
SILENT=$(free_port)
spawn $PYTHON -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',$SILENT)); s.listen(16); time.sleep(600)"
wait_port "$SILENT"
t0=$SECONDS
bad "dead: silent server hits the first-byte timeout" "first-byte timeout" --insecure --timeout-ms 1000 --attempts 1 "127.0.0.1:$SILENT/test/img:v1"
[[ $((SECONDS - t0)) -le 4 ]] && pass "dead: timeout fired in time" || fail "dead: timeout slow" "$((SECONDS - t0)) s"

# ---- mirrors from hosts.toml ----
start_proxy mirror --upstream "$REGISTRY"
MIRROR=$PROXY_PORT
mkdir -p "$WORK/certs.d/$REGISTRY"
cat >"$WORK/certs.d/$REGISTRY/hosts.toml" <<TOML
server = "http://$REGISTRY"

[host."http://127.0.0.1:$DEAD"]
  capabilities = ["pull", "resolve"]

[host."http://127.0.0.1:$MIRROR"]
  capabilities = ["pull", "resolve"]
  [host."http://127.0.0.1:$MIRROR".header]
    x-test = "mirror"
TOML
ok_sha "mirror: manifest (dead mirror skipped, live mirror used)" "$MAN_SHA" --hosts-dir "$WORK/certs.d" "${FAST[@]}" "$REF"
ok_sha "mirror: blob ranges" "$RANGES_SHA" --hosts-dir "$WORK/certs.d" "${FAST[@]}" "${RANGES[@]}" "$REF" "$LAYER"
if grep -q "^GET /v2/test/img/manifests/v1?ns=127.0.0.1%3A" "$WORK/mirror.log" && grep -q "^GET /v2/test/img/blobs/.*?ns=" "$WORK/mirror.log"; then
  pass "mirror: requests went to the mirror with ?ns="
else
  fail "mirror: log" "$(head -c 600 "$WORK/mirror.log")"
fi
printf 'server = "http://%s"\n[host."http://127.0.0.1:%s"]\n  bogus = 1\n' "$REGISTRY" "$MIRROR" >"$WORK/certs.d/$REGISTRY/hosts.toml"
bad "mirror: a broken hosts.toml is a clear error" "hosts.toml:3" --hosts-dir "$WORK/certs.d" "$REF"

finish
