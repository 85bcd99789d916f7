# Fixtures for the registry client tests; source after tests/integration/lib.sh and
# tests/lib/fixtures.sh (and after start_registry, whose storage the extra registries share).
#
#   start_registry_extra NAME TLS_CERT TLS_KEY HTPASSWD   another docker-registry on the same
#                                  storage ("" to leave a feature out) -> $EXTRA_PORT
#   start_proxy LOGNAME ARGS...    tests/lib/registry_proxy.py on a free port -> $PROXY_PORT,
#                                  its request log in $WORK/LOGNAME.log
#   start_proxy_at ADDR PORT LOGNAME ARGS...   the same on ADDR (e.g. 127.0.0.2, another host
#                                  to the client) and PORT ("" = a free one)
#   make_test_ca DIR               DIR/{ca,other}.pem + keys, DIR/srv.pem for 127.0.0.1 and
#                                  localhost, DIR/wrongname.pem for registry.invalid only
#   need_fetch TOOL...             sets $FETCH (stargz-fetch); fails or skips the whole
#                                  script when it or one of the tools is missing
#   push_test_image BYTES          start_registry and push test/img:v1 (busybox + BYTES of
#                                  random data) -> $REF $LAYER $BLOB_SHA $BLOB_SIZE $MAN_SHA,
#                                  $WORK/manifest.json and $WORK/blob as the registry serves them
#   ok_sha / bad                   run $FETCH and check its output or its error
REGISTRY_FIXTURES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

wait_port() {   # PORT [ADDR]
  wait_for 20 $PYTHON -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('${2:-127.0.0.1}',$1)))"
}

start_registry_extra() {
  local name=$1 cert=$2 key=$3 htpasswd=$4 port dir=$WORK/registry-$1
  port=$(free_port)
  mkdir -p "$dir"
  {
    echo "version: 0.1"
    echo "log:"
    echo "  level: warn"
    echo "storage:"
    echo "  filesystem:"
    echo "    rootdirectory: $WORK/registry/data"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    if [[ -n $cert ]]; then
      echo "  tls:"
      echo "    certificate: $cert"
      echo "    key: $key"
    fi
    if [[ -n $htpasswd ]]; then
      echo "auth:"
      echo "  htpasswd:"
      echo "    realm: test-realm"
      echo "    path: $htpasswd"
    fi
  } >"$dir/config.yml"
  spawn docker-registry serve "$dir/config.yml" >"$WORK/registry-$name.log" 2>&1
  EXTRA_PORT=$port
  wait_port "$port"
}

start_proxy_at() {
  local addr=$1 log=$3
  PROXY_PORT=${2:-$(free_port)}
  shift 3
  spawn $PYTHON "$REGISTRY_FIXTURES_DIR/registry_proxy.py" --bind "$addr" --port "$PROXY_PORT" --log "$WORK/$log.log" "$@"
  wait_port "$PROXY_PORT" "$addr"
}
start_proxy() { start_proxy_at 127.0.0.1 "" "$@"; }

make_test_ca() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d" || exit 1
    o() { openssl "$@" >/dev/null 2>&1; }
    o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
      -subj /CN=stargzd-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out other.pem -days 2 \
      -subj /CN=other-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    for n in srv wrongname; do
      if [[ $n == srv ]]; then san="DNS:localhost,IP:127.0.0.1"; else san="DNS:registry.invalid"; fi
      printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" >"$n.ext"
      o req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$n.key" -out "$n.csr" -subj "/CN=$n"
      o x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$n.pem" -days 2 -extfile "$n.ext"
    done
  )
  [[ -s $d/srv.pem && -s $d/wrongname.pem ]]
}

# ok_sha NAME WANT_SHA FETCH-ARGS...: stargz-fetch succeeds and its output has that sha256.
ok_sha() {
  local name=$1 want=$2; shift 2
  local got
  if ! "$FETCH" "$@" >"$WORK/out" 2>"$WORK/err"; then
    fail "$name" "exit $?: $(tail -c 400 "$WORK/err")"
    return 1
  fi
  got=$(sha256sum <"$WORK/out" | cut -d' ' -f1)
  if [[ $got == "$want" ]]; then pass "$name"; else fail "$name" "sha256 $got, want $want"; return 1; fi
}
# bad NAME REGEX FETCH-ARGS...: stargz-fetch fails (exit 1), prints nothing, says REGEX on stderr.
bad() {
  local name=$1 re=$2; shift 2
  "$FETCH" "$@" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if [[ $rc -ne 1 ]]; then fail "$name" "exit $rc, want 1"; return 1; fi
  if [[ -s $WORK/out ]]; then fail "$name" "printed $(wc -c <"$WORK/out") bytes"; return 1; fi
  if grep -Eq -- "$re" "$WORK/err"; then pass "$name"; else fail "$name" "stderr: $(tail -c 300 "$WORK/err")"; return 1; fi
}
slice() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }   # FILE OFFSET LEN
sha() { sha256sum | cut -d' ' -f1; }

need_fetch() {
  FETCH=${STARGZ_FETCH:-$STARGZD_TOP/${BUILD:-build}/tools/stargz-fetch}
  if [[ ! -x $FETCH ]]; then
    fail "stargz-fetch missing at $FETCH"
    finish
  fi
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { skip "all" "$tool not installed"; finish; }
  done
}

push_test_image() {
  start_registry || { fail "docker-registry did not start"; finish; }
  mkdir -p "$WORK/root"
  make_busybox_rootfs "$WORK/root"
  head -c "$1" /dev/urandom >"$WORK/root/random.bin"
  make_image "$WORK/oci" v1 "$WORK/root" >/dev/null || { fail "make_image"; finish; }
  push_image "$WORK/oci" v1 test/img || { fail "skopeo push"; finish; }
  REF=$REGISTRY/test/img:v1
  curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REGISTRY/v2/test/img/manifests/v1" >"$WORK/manifest.json"
  LAYER=$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$WORK/manifest.json")
  curl -sf "http://$REGISTRY/v2/test/img/blobs/$LAYER" >"$WORK/blob"
  BLOB_SHA=${LAYER#sha256:}
  BLOB_SIZE=$(stat -c %s "$WORK/blob")
  MAN_SHA=$(sha <"$WORK/manifest.json")
  [[ $(sha <"$WORK/blob") == "$BLOB_SHA" && $BLOB_SIZE -gt $1 ]] || { fail "fixture blob"; finish; }
}
