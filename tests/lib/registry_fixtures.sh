# Fixtures for the registry client tests; source after tests/integration/lib.sh and
# tests/lib/fixtures.sh (and after start_registry, whose storage the extra registries share).
#
#   start_registry_extra NAME TLS_CERT TLS_KEY HTPASSWD   another docker-registry on the same
#                                  storage ("" to leave a feature out) -> $EXTRA_PORT
#   start_proxy LOGNAME ARGS...    tests/lib/registry_proxy.py on a free port -> $PROXY_PORT,
#                                  its request log in $WORK/LOGNAME.log
#   make_test_ca DIR               DIR/{ca,other}.pem + keys, DIR/srv.pem for 127.0.0.1 and
#                                  localhost, DIR/wrongname.pem for registry.invalid only
REGISTRY_FIXTURES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

wait_port() {   # PORT
  wait_for 20 $PYTHON -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$1)))"
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

start_proxy() {
  local log=$1; shift
  PROXY_PORT=$(free_port)
  spawn $PYTHON "$REGISTRY_FIXTURES_DIR/registry_proxy.py" --port "$PROXY_PORT" --log "$WORK/$log.log" "$@"
  wait_port "$PROXY_PORT"
}

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
