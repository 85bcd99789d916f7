#!/usr/bin/python3
"""A misbehaving HTTP/1.1 front for a registry, for tests/integration/registry.sh.

Forwards GET/HEAD to --upstream (a real docker-registry) and, depending on the options,
demands Bearer tokens (and serves them at /token), redirects blob, manifest or token requests
elsewhere, mangles multi-range requests the way real registries do, fails or drops the first
requests, truncates or stalls bodies, resets connections mid-body, or answers garbage.  Every
request is logged to --log as one line:
    METHOD PATH range=RANGE auth=AUTHORIZATION
"""
import argparse
import base64
import http.client
import http.server
import re
import secrets
import os
import socket
import struct
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--bind", default="127.0.0.1", help="address to listen on; the token realm names it")
ap.add_argument("--upstream", help="host:port of the registry")
ap.add_argument("--log", required=True)
ap.add_argument("--bearer", action="store_true", help="demand Bearer tokens from /token")
ap.add_argument("--token-user", help="user:pass the token endpoint wants (Basic); else anonymous")
ap.add_argument("--token-uses", type=int, default=0, help="a token is refused after N uses")
ap.add_argument("--fixed-token", help="issue this token and accept it: proxies on two hosts share tokens")
ap.add_argument("--redirect-blobs", help="base URL blob requests are 307-redirected to")
ap.add_argument("--redirect", action="append", default=[], metavar="PREFIX=URL",
                help="307 a request whose path starts with PREFIX to URL + the rest of its path; "
                     "/token requests before their credentials are checked, others after the "
                     "Bearer check (repeatable)")
ap.add_argument("--multi", choices=["400", "200", "first"], help="how to answer multi-range")
ap.add_argument("--fail-first", type=int, default=0, help="answer the first N with --fail-status")
ap.add_argument("--fail-status", type=int, default=503)
ap.add_argument("--retry-after", default="0")
ap.add_argument("--drop-first", type=int, default=0, help="close the first N without answering")
ap.add_argument("--truncate", action="store_true", help="206/200 bodies end half-way")
ap.add_argument("--stall", type=float, default=0, help="send part of a body, then stall")
ap.add_argument("--reset", action="store_true", help="send part of a blob body, then a TCP RST")
ap.add_argument("--reset-first", type=int, default=0, help="with --reset: only the first N bodies (0 = all)")
ap.add_argument("--garbage", action="store_true", help="answer with a broken status line")
ap.add_argument("--tamper-manifests", action="store_true", help="append a space to manifests")
ap.add_argument("--big-header", action="store_true", help="answer with a 40 KiB header")
args = ap.parse_args()

lock = threading.Lock()
counter = {"n": 0, "resets": 0}
tokens = {}   # token -> uses
logf = open(args.log, "a", buffering=1)


def next_request():
    with lock:
        counter["n"] += 1
        return counter["n"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def do_GET(self):
        self.handle_req(True)

    def do_HEAD(self):
        self.handle_req(False)

    def reply(self, status, headers=(), body=b"", send_body=True):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def redirect_rule(self, send_body):
        for rule in args.redirect:
            prefix, url = rule.split("=", 1)
            if self.path.startswith(prefix):
                self.reply(307, [("Location", url + self.path[len(prefix):])], b"", send_body)
                return True
        return False

    def handle_token(self):
        if args.token_user:
            want = "Basic " + base64.b64encode(args.token_user.encode()).decode()
            if self.headers.get("Authorization") != want:
                self.reply(401, [("Content-Type", "application/json")], b'{"details":"bad credentials"}')
                return
        tok = args.fixed_token or secrets.token_hex(16)
        with lock:
            tokens[tok] = 0
        body = ('{"token":"%s","expires_in":300}' % tok).encode()
        self.reply(200, [("Content-Type", "application/json")], body)

    def bearer_ok(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        tok = auth[7:]
        if args.fixed_token and tok == args.fixed_token:
            return True
        with lock:
            if tok not in tokens:
                return False
            tokens[tok] += 1
            if args.token_uses and tokens[tok] > args.token_uses:
                del tokens[tok]
                return False
        return True

    def handle_req(self, send_body):
        logf.write("%s %s range=%s auth=%s\n" % (self.command, self.path,
                   self.headers.get("Range", ""), self.headers.get("Authorization", "")))
        if self.path.startswith("/token"):
            if not self.redirect_rule(send_body):
                self.handle_token()
            return
        n = next_request()
        if args.garbage:
            self.wfile.write(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")
            self.close_connection = True
            return
        if args.big_header:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 40000 + b"\r\nContent-Length: 0\r\n\r\n")
            self.close_connection = True
            return
        if n <= args.drop_first:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if n <= args.fail_first:
            self.reply(args.fail_status, [("Retry-After", args.retry_after),
                                          ("Content-Type", "application/json")],
                       b'{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}', send_body)
            return
        if args.bearer and not self.bearer_ok():
            m = re.match(r"^/v2/(.+)/(blobs|manifests)/", self.path)
            scope = ',scope="repository:%s:pull"' % m.group(1) if m else ""
            realm = "http://%s:%d/token" % (args.bind, args.port)
            self.reply(401, [("WWW-Authenticate", 'Bearer realm="%s",service="test-registry"%s' % (realm, scope)),
                             ("Content-Type", "application/json")],
                       b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}', send_body)
            return
        if args.redirect_blobs and "/blobs/" in self.path:
            self.reply(307, [("Location", args.redirect_blobs + self.path)], b"", send_body)
            return
        if self.redirect_rule(send_body):
            return
        headers = {}
        for h in ("Accept", "Range"):
            if self.headers.get(h):
                headers[h] = self.headers.get(h)
        rng = headers.get("Range", "")
        if "," in rng:
            if args.multi == "400":
                self.reply(400, [("Content-Type", "text/plain")], b"multiple ranges not supported", send_body)
                return
            if args.multi == "200":
                del headers["Range"]
            if args.multi == "first":
                headers["Range"] = rng.split(",")[0]
        conn = http.client.HTTPConnection(args.upstream, timeout=10)
        conn.request(self.command, self.path.split("?")[0], headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if args.tamper_manifests and "/manifests/" in self.path and resp.status == 200:
            body += b" "
        out = [(k, v) for k, v in resp.getheaders()
               if k.lower() in ("content-type", "content-range", "docker-content-digest", "location")]
        if not send_body:
            self.send_response(resp.status)
            for k, v in out:
                self.send_header(k, v)
            cl = int(resp.getheader("Content-Length", "0"))
            if args.tamper_manifests and "/manifests/" in self.path and resp.status == 200:
                cl += 1
            self.send_header("Content-Length", str(cl))
            self.end_headers()
            return
        blob = resp.status in (200, 206) and "/blobs/" in self.path
        reset = blob and args.reset and self.take_reset()
        if reset or (blob and (args.truncate or args.stall)):
            self.send_response(resp.status)
            for k, v in out:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            if reset:
                self.abort_connection()
                return
            if args.stall:
                time.sleep(args.stall)
            self.close_connection = True
            return
        self.reply(resp.status, out, body)


    def take_reset(self):
        with lock:
            if args.reset_first and counter["resets"] >= args.reset_first:
                return False
            counter["resets"] += 1
            return True

    def abort_connection(self):
        # SO_LINGER {on, 0} makes close() send RST instead of FIN.  The socket is detached and
        # closed here: socketserver would shut it down (a FIN) before closing it otherwise, and
        # the buffered reader and writer still hold references that would delay the close.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(self.connection.detach())
        self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Server((args.bind, args.port), Handler).serve_forever()
