#!/usr/bin/env bash
# TIMEOUT: 120
# What keeps lazy mounts across restarts, without a real PID 1 systemd (this machine has
# none): `systemd-analyze verify` of the installed unit; the daemon's side of the systemd
# protocol against a fake $NOTIFY_SOCKET (READY=1, STOPPING=1, FDSTOREREMOVE for a stored
# descriptor that belongs to no snapshot, $LISTEN_FDS/$LISTEN_FDNAMES parsing); and the fd
# holder's protocol (PUT, GET, DEL, dropping a descriptor whose peer is gone, exiting when
# empty, one holder per root).  Not exercised for real: systemd actually storing and
# handing back descriptors across `systemctl restart` (containerd_takeover.sh covers the
# same takeover with the holder).
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"

# ---- the unit file ----
make -s -C "$STARGZD_TOP" install DESTDIR="$WORK/inst" PREFIX=/usr/local >"$WORK/install.log" 2>&1 ||
  fail "make install" "$(tail -3 "$WORK/install.log")"
UNIT=$WORK/inst/usr/local/lib/systemd/system/stargzd.service
check "make install installs the binary and the unit" test -x "$WORK/inst/usr/local/bin/stargzd" -a -f "$UNIT"
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's binary to exist: point it at the staged one.
  sed "s#/usr/local/bin/stargzd#$WORK/inst/usr/local/bin/stargzd#" "$UNIT" >"$WORK/stargzd.service"
  out=$(cd "$WORK" && systemd-analyze verify ./stargzd.service 2>&1)
  check "systemd-analyze verify accepts the unit" bash -c "[[ -z '$out' ]]" || echo "$out"
else
  skip "systemd-analyze verify" "systemd-analyze not installed"
fi
for k in "Type=notify" "FileDescriptorStoreMax=" "Restart=always" "Before=containerd.service" \
         "KillMode=mixed" "OOMScoreAdjust="; do
  check "the unit sets $k" grep -q "^$k" "$UNIT"
done

# ---- the systemd protocol, against a fake notify socket ----
cat >"$WORK/notify.py" <<'PY'
import socket, sys, os
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(20)
with open(sys.argv[2], "w", buffering=1) as out:
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(s, 4096, 4)
        except socket.timeout:
            break
        for fd in fds:
            os.close(fd)
        out.write(msg.decode().replace("\n", "|") + (" +fd" if fds else "") + "\n")
        if b"STOPPING=1" in msg:
            break
PY
$PYTHON "$WORK/notify.py" "$WORK/notify.sock" "$WORK/notify.log" &
NPID=$!
wait_for 5 test -S "$WORK/notify.sock"
mkdir -p "$WORK/root"
# A stored descriptor named like a mount, of a snapshot that does not exist: the daemon
# must take it from $LISTEN_FDS, find nobody to serve it, and tell systemd to drop it.
NOTIFY_SOCKET=$WORK/notify.sock LISTEN_FDS=1 LISTEN_FDNAMES=sg.999 \
  bash -c 'export LISTEN_PID=$$; exec "$0" --foreground --root "$1" --address "$2" --log-level debug 3</dev/null' \
  "$STARGZD" "$WORK/root" "$WORK/s.sock" >"$WORK/sd.log" 2>&1 &
SPID=$!
_pids+=("$SPID")
check "under systemd: READY=1 once serving" wait_for 10 grep -q "^READY=1" "$WORK/notify.log"
check "  ... the fd store is the keeper" grep -q "kept by systemd's fd store" "$WORK/sd.log"
check "  ... a stored descriptor of no snapshot is removed from the store" grep -q "^FDSTOREREMOVE=1|FDNAME=sg.999" "$WORK/notify.log"
kill -TERM "$SPID"
wait_exit "$SPID" 10
check "  ... SIGTERM: STOPPING=1, exit 0" bash -c "grep -q '^STOPPING=1' '$WORK/notify.log' && [[ $EXIT_CODE -eq 0 ]]"
wait "$NPID" 2>/dev/null

# ---- the fd holder ----
cat >"$WORK/holder.py" <<'PY'
import socket, sys, os, time
sock_path = sys.argv[1]
def call(msg, fd=None, many=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sock_path)
    if fd is None:
        s.send(msg.encode())
    else:
        socket.send_fds(s, [msg.encode()], [fd])
    got = []
    while True:
        m, fds, _, _ = socket.recv_fds(s, 512, 4)
        m = m.decode()
        if not many:
            s.close()
            return m
        if m == "END":
            s.close()
            return got
        got.append((m, fds[0] if fds else None))
ra, wa = os.pipe()
rb, wb = os.pipe()
print("put a:", call("PUT a", wa))
print("put b:", call("PUT b", wb))
print("put without fd:", call("PUT c"))
os.close(wa); os.close(wb)
held = call("GET", many=True)
print("get:", " ".join(sorted(n for n, _ in held)))
for n, fd in held:
    if n == "FD a":
        os.write(fd, b"through the holder")
    os.close(fd)
print("read a:", os.read(ra, 100).decode())
print("del b:", call("DEL b"))
print("get after del:", " ".join(sorted(n for n, _ in call("GET", many=True))))
# The last descriptor's peer goes away: the holder notices (POLLERR) and exits.
os.close(ra); os.close(rb)
for _ in range(100):
    if not os.path.exists(sock_path):
        break
    time.sleep(0.05)
print("socket gone:", not os.path.exists(sock_path))
PY
mkdir -p "$WORK/hroot"
spawn "$STARGZD" fdholder --root "$WORK/hroot" 2>"$WORK/holder.log"
HPID=$SPAWNED
check "the holder serves" wait_for 5 test -S "$WORK/hroot/fdholder.sock"
"$STARGZD" fdholder --root "$WORK/hroot" 2>>"$WORK/holder.log"
check "a second holder on the same root leaves at once (exit 0)" test $? -eq 0
check "  ... and the first one still serves" kill -0 "$HPID"
$PYTHON "$WORK/holder.py" "$WORK/hroot/fdholder.sock" >"$WORK/holder.out" 2>&1
cat "$WORK/holder.out" | sed 's/^/    /'
check "PUT is answered OK" grep -q "^put a: OK" "$WORK/holder.out"
check "PUT without a descriptor is refused" grep -q "^put without fd: ERR" "$WORK/holder.out"
check "GET hands every descriptor back, named" grep -q "^get: FD a FD b$" "$WORK/holder.out"
check "  ... the same open file (a write through it arrives)" grep -q "^read a: through the holder" "$WORK/holder.out"
check "DEL forgets one" grep -q "^get after del: FD a$" "$WORK/holder.out"
check "a descriptor whose peer is gone is dropped, and the empty holder exits" grep -q "^socket gone: True" "$WORK/holder.out"
wait_exit "$HPID" 5
check "  ... with exit 0" test "$EXIT_CODE" -eq 0
finish
