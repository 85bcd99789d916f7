#!/usr/bin/env bash
# TIMEOUT: 120
# An independent gRPC client against our server: Debian's python3-grpcio (the C-core gRPC
# stack) calls the generic methods of tests/helpers/grpc_echo with raw bytes — unary,
# server-streaming, errors with percent-encoded messages, unknown method, size limit,
# deadlines, cancellation, 100 concurrent calls over 5 connections, and a graceful SIGTERM
# with a call in flight.
. "$(dirname "$0")/lib.sh"

ECHO=${GRPC_ECHO:-$STARGZD_TOP/build/tests/helpers/grpc_echo}
# Debian's interpreter, which is where python3-grpcio installs (a python3 earlier in PATH,
# e.g. from pyenv, would not see it).
PY=${PYTHON:-/usr/bin/python3}
[[ -x $PY ]] || PY=python3
if ! "$PY" -c 'import grpc' 2>/dev/null; then
  skip grpc_python "python3-grpcio is not installed (tools/install-deps.sh)"
  finish
fi
if [[ ! -x $ECHO ]]; then
  fail grpc_echo "missing $ECHO (make unit-bins)"
  finish
fi

SOCK=$WORK/echo.sock
spawn "$ECHO" "$SOCK" $((4 * 1024 * 1024)) >"$WORK/echo.out" 2>"$WORK/echo.err"
SERVER=$SPAWNED
check "server starts" wait_for 10 test -S "$SOCK"

cat >"$WORK/client.py" <<'EOF'
import os, signal, sys, threading, time
import grpc

sock, server_pid = sys.argv[1], int(sys.argv[2])
target = "unix:" + sock

def result(name, ok, why=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + why), flush=True)

def run(name, fn):
    try:
        fn()
        result(name, True)
    except Exception as e:  # noqa: BLE001 - report anything as a failure of that check
        result(name, False, "%s: %s" % (type(e).__name__, e))

def expect_error(call, code, details=None):
    try:
        call()
    except grpc.RpcError as e:
        assert e.code() == code, "code %s, want %s (%s)" % (e.code(), code, e.details())
        if details is not None:
            assert e.details() == details, "details %r, want %r" % (e.details(), details)
        return
    raise AssertionError("no error, want %s" % code)

ch = grpc.insecure_channel(target)
grpc.channel_ready_future(ch).result(timeout=10)
unary = ch.unary_unary("/test.Echo/Unary")
stream = ch.unary_stream("/test.Echo/Stream")
fail = ch.unary_unary("/test.Echo/Fail")
sleep = ch.unary_unary("/test.Echo/Sleep")

def t_unary():
    assert unary(b"hello", timeout=5) == b"hello"
    assert unary(b"", timeout=5) == b""
    blob = os.urandom(3 * 1024 * 1024)
    assert unary(blob, timeout=10) == blob
run("unary echo (empty, 3 MiB)", t_unary)

def t_stream():
    msgs = list(stream(b"5,100", timeout=5))
    assert msgs == [bytes([i]) * 100 for i in range(5)], "got %d messages" % len(msgs)
    assert list(stream(b"0,10", timeout=5)) == []
    big = list(stream(b"64,65536", timeout=20))
    assert len(big) == 64 and all(m == bytes([i]) * 65536 for i, m in enumerate(big))
run("server streaming", t_stream)

def t_errors():
    text = 'snapshot "a b" 100% gone\n\u00e9 \u2603'
    expect_error(lambda: fail(("5:" + text).encode(), timeout=5), grpc.StatusCode.NOT_FOUND, text)
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        n = code.value[0]
        expect_error(lambda: fail(("%d:code %d" % (n, n)).encode(), timeout=5), code, "code %d" % n)
run("error statuses and percent-encoded messages", t_errors)

def t_unknown():
    expect_error(lambda: ch.unary_unary("/test.Echo/Nope")(b"x", timeout=5),
                 grpc.StatusCode.UNIMPLEMENTED, "unknown method /test.Echo/Nope")
    expect_error(lambda: ch.unary_unary("/other.Svc/Unary")(b"x", timeout=5),
                 grpc.StatusCode.UNIMPLEMENTED)
run("unknown method is UNIMPLEMENTED", t_unknown)

def t_too_big():
    expect_error(lambda: unary(b"x" * (5 * 1024 * 1024), timeout=10),
                 grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert unary(b"after", timeout=5) == b"after"
run("oversized request is RESOURCE_EXHAUSTED", t_too_big)

def t_deadline():
    expect_error(lambda: sleep(b"2000", timeout=0.2), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert unary(b"still here", timeout=5) == b"still here"
run("client deadline", t_deadline)

def t_cancel():
    fut = sleep.future(b"500", timeout=5)
    time.sleep(0.05)
    assert fut.cancel()
    assert unary(b"after cancel", timeout=5) == b"after cancel"
run("client cancel", t_cancel)

def t_concurrent():
    chans = [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
             for _ in range(5)]
    futs = []
    for i in range(100):
        payload = ("%d" % (100 + (i * 37) % 150)).encode()
        futs.append((payload, chans[i % 5].unary_unary("/test.Echo/Sleep").future(payload, timeout=10)))
    for payload, f in futs:
        assert f.result() == payload
    for c in chans:
        c.close()
run("100 concurrent calls over 5 connections", t_concurrent)

def t_sigterm():
    fut = sleep.future(b"400", timeout=10)
    time.sleep(0.1)
    os.kill(server_pid, signal.SIGTERM)
    assert fut.result() == b"400"
run("SIGTERM lets the call in flight finish", t_sigterm)
ch.close()
EOF

"$PY" "$WORK/client.py" "$SOCK" "$SERVER" >"$WORK/client.out" 2>"$WORK/client.err"
rc=$?
while read -r status name; do
  case $status in
    ok) pass "$name" ;;
    FAIL) fail "$name" ;;
  esac
done <"$WORK/client.out"
[[ $rc -eq 0 ]] || { fail "python client exit" "rc=$rc"; tail -n 20 "$WORK/client.err"; }

if wait_exit "$SERVER" 10; then
  check "server exits 0 after SIGTERM" test "$EXIT_CODE" -eq 0
else
  fail "server exits after SIGTERM" "still running"
fi
grep -q . "$WORK/echo.err" && sed 's/^/  server: /' "$WORK/echo.err" | head -n 20
finish
