#!/usr/bin/env bash
# TIMEOUT: 180
# net/conn + net/tls + net/http1 against real servers on 127.0.0.1: `openssl s_server` with a
# test CA generated here (RSA and ECDSA server certificates), Python's http.server for plain
# HTTP, and a silent TCP listener for timeouts.  Drives tests/helpers/net_fetch (built by
# `make unit-bins`; NET_FETCH overrides its path).  Last line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
FETCH=${NET_FETCH:-$TOP/${BUILD:-build}/tests/helpers/net_fetch}
work=$(mktemp -d)
pids=()
pass=0 fail=0

cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; shift; for l in "$@"; do echo "    $l"; done; fail=$((fail + 1)); }

if [[ ! -x $FETCH ]]; then
  bad "net_fetch helper missing at $FETCH (run make unit-bins)"
  echo "$pass passed, $fail failed"
  exit 1
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {   # port
  local i
  for i in $(seq 1 100); do
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$1)))" && return 0
    sleep 0.05
  done
  return 1
}

# ---- fixtures: CAs and server certificates ----
cd "$work"
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=stargzd-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ossl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > ext.cnf
ossl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost
ossl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.csr -subj /CN=localhost
ossl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ec.pem -days 2 -extfile ext.cnf
[[ -s srv.pem && -s ec.pem ]] || { bad "certificate generation"; echo "$pass passed, $fail failed"; exit 1; }

mkdir www
head -c 5000000 /dev/urandom > www/blob
printf 'hello\n' > www/small
want=$(sha256sum < www/blob | cut -d' ' -f1)

# ---- servers ----
start_s_server() {   # port cert key
  (cd "$work/www" && exec openssl s_server -accept "127.0.0.1:$1" -cert "$work/$2" -key "$work/$3" \
     -WWW -tls1_2 -quiet) >"$work/s_server.$1.log" 2>&1 &
  pids+=($!)
  wait_port "$1"
}
RSA_PORT=$(free_port); start_s_server "$RSA_PORT" srv.pem srv.key || bad "s_server (RSA) did not start"
EC_PORT=$(free_port);  start_s_server "$EC_PORT" ec.pem ec.key   || bad "s_server (EC) did not start"
HTTP_PORT=$(free_port)
(cd "$work/www" && exec python3 -m http.server --bind 127.0.0.1 "$HTTP_PORT") >"$work/http.log" 2>&1 &
pids+=($!)
wait_port "$HTTP_PORT" || bad "http.server did not start"
SILENT_PORT=$(free_port)
python3 - "$SILENT_PORT" >"$work/silent.log" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)   # accept and never answer
EOF
pids+=($!)
wait_port "$SILENT_PORT" || bad "silent listener did not start"
CLOSED_PORT=$(free_port)

# ---- cases ----
run() {   # name expected-exit stderr-substring [fetch args...]; stdout -> $work/out
  local name=$1 want_rc=$2 want_err=$3; shift 3
  local t0=$SECONDS
  timeout 60 "$FETCH" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc -ne $want_rc ]]; then
    bad "$name" "exit $rc, want $want_rc" "$(tail -n 3 "$work/err")"
    return 1
  fi
  if [[ -n $want_err ]] && ! grep -q -- "$want_err" "$work/err"; then
    bad "$name" "stderr lacks '$want_err'" "$(tail -n 3 "$work/err")"
    return 1
  fi
  LAST_SECS=$((SECONDS - t0))
  return 0
}

if run "tls rsa: 5 MB blob, test CA, SNI localhost" 0 "handshake ok" \
     --tls --ca "$work/ca.pem" --name localhost 127.0.0.1 "$RSA_PORT" /blob; then
  got=$(sha256sum < "$work/out" | cut -d' ' -f1)
  [[ $got == "$want" ]] && ok "tls rsa: 5 MB blob, test CA, SNI localhost" \
    || bad "tls rsa: 5 MB blob" "sha256 $got != $want ($(stat -c %s "$work/out") bytes)"
fi
if run "tls ecdsa server certificate" 0 "handshake ok" \
     --tls --ca "$work/ca.pem" --name localhost 127.0.0.1 "$EC_PORT" /small; then
  [[ $(cat "$work/out") == hello ]] && ok "tls ecdsa server certificate" || bad "tls ecdsa" "body $(head -c 50 "$work/out")"
fi
run "tls via name resolution (localhost, helper thread)" 0 "handshake ok" \
  --tls --ca "$work/ca.pem" localhost "$RSA_PORT" /small && ok "tls via name resolution (localhost, helper thread)"
run "tls: unknown CA is rejected" 1 "not trusted" \
  --tls --ca "$work/other.pem" --name localhost 127.0.0.1 "$RSA_PORT" /small && ok "tls: unknown CA is rejected"
run "tls: wrong server name is rejected" 1 "does not match the server name" \
  --tls --ca "$work/ca.pem" --name wrong.example 127.0.0.1 "$RSA_PORT" /small && ok "tls: wrong server name is rejected"
run "tls: system bundle does not trust the test CA" 1 "not trusted" \
  --tls --system-ca --name localhost 127.0.0.1 "$RSA_PORT" /small && \
  if grep -qE 'system anchors: [0-9]{2,}' "$work/err"; then ok "tls: system bundle does not trust the test CA"
  else bad "tls: system bundle" "few anchors: $(grep anchors "$work/err")"; fi
run "tls insecure (skip_verify): unknown CA and wrong name accepted" 0 "handshake ok" \
  --tls --insecure --ca "$work/other.pem" --name wrong.example 127.0.0.1 "$EC_PORT" /small && \
  if [[ $(cat "$work/out") == hello ]]; then ok "tls insecure (skip_verify): unknown CA and wrong name accepted"
  else bad "tls insecure" "body $(head -c 50 "$work/out")"; fi
run "tls: handshake timeout against a silent server" 1 "timed out" \
  --tls --ca "$work/ca.pem" --name localhost --timeout-ms 300 127.0.0.1 "$SILENT_PORT" /small && \
  if [[ $LAST_SECS -le 5 ]]; then ok "tls: handshake timeout against a silent server"
  else bad "tls: handshake timeout" "took ${LAST_SECS}s"; fi
run "tls to a plain-HTTP server fails cleanly" 1 "TLS" \
  --tls --ca "$work/ca.pem" --name localhost 127.0.0.1 "$HTTP_PORT" /small && ok "tls to a plain-HTTP server fails cleanly"

if run "plain http: 5 MB blob" 0 "status 200" 127.0.0.1 "$HTTP_PORT" /blob; then
  got=$(sha256sum < "$work/out" | cut -d' ' -f1)
  [[ $got == "$want" ]] && ok "plain http: 5 MB blob" || bad "plain http: 5 MB blob" "sha256 mismatch"
fi
run "plain http: 404 is reported" 2 "status 404" 127.0.0.1 "$HTTP_PORT" /missing && ok "plain http: 404 is reported"
run "plain http: HEAD has no body" 0 "status 200" --head 127.0.0.1 "$HTTP_PORT" /blob && \
  if [[ ! -s $work/out ]]; then ok "plain http: HEAD has no body"; else bad "HEAD" "body was returned"; fi
run "connect refused" 1 "refused" 127.0.0.1 "$CLOSED_PORT" /x && ok "connect refused"
run "plain http: response timeout on a silent server" 1 "timed out" \
  --timeout-ms 300 127.0.0.1 "$SILENT_PORT" /x && ok "plain http: response timeout on a silent server"
run "unknown host name" 1 "connect" --timeout-ms 5000 no-such-host.invalid 80 /x && ok "unknown host name"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
