#!/usr/bin/python3
"""An OCI 1.1 referrers API in front of a registry that has none (Debian's docker-registry),
for tests/integration/profile_share.sh and profile_containerd.sh (where containerd and stargzd
pull the whole image through it).

Forwards every request (any method, with its body) to --upstream.  On top:
  - a manifest PUT whose body has a "subject" is remembered, and the answer carries the
    OCI-Subject header, as OCI 1.1 registries do;
  - GET /v2/<name>/referrers/<digest>[?artifactType=T] answers the image index of the
    remembered manifests with that subject (filtered by artifactType), OCI 1.1's shape;
  - --corrupt-profiles flips one byte of every blob body that is a stargzd profile bundle
    (the registry itself would never serve a wrong byte);
  - --corrupt-embedded changes one character of the first embedded content ("data") of every
    referrers tag (GET manifests/sha256-<hex>): the manifest it embeds is no longer the one
    its descriptor names;
  - --refuse-data answers 400 MANIFEST_INVALID to a manifest PUT with embedded content
    ("data"), as a registry that validates descriptors strictly may.
Every request is logged to --log as "METHOD PATH".
"""
import argparse
import http.client
import http.server
import json
import re
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--upstream", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--no-referrers", action="store_true",
                help="no referrers API: 404 to referrers requests, no OCI-Subject")
ap.add_argument("--corrupt-profiles", action="store_true")
ap.add_argument("--corrupt-embedded", action="store_true")
ap.add_argument("--refuse-data", action="store_true")
args = ap.parse_args()

lock = threading.Lock()
referrers = {}   # (repo, subject digest) -> [descriptor]
logf = open(args.log, "a", buffering=1)
PROFILE_MARK = b'"mediaType":"application/vnd.stargzd.profile.v1+json","profiles"'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, headers, body, send_body=True, length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def referrers(self, repo, digest, query):
        if args.no_referrers:
            self.reply(404, [("Content-Type", "application/json")],
                       b'{"errors":[{"code":"NOT_FOUND","message":"no referrers API"}]}')
            return
        want = urllib.parse.parse_qs(query).get("artifactType", [None])[0]
        with lock:
            ms = [d for d in referrers.get((repo, digest), [])
                  if want is None or d.get("artifactType") == want]
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": ms}).encode()
        headers = [("Content-Type", "application/vnd.oci.image.index.v1+json")]
        if want:
            headers.append(("OCI-Filters-Applied", "artifactType"))
        self.reply(200, headers, body)

    def forward(self):
        path, _, query = self.path.partition("?")
        logf.write(f"{self.command} {path}\n")
        m = re.match(r"^/v2/(.+)/referrers/(sha256:[0-9a-f]{64})$", path)
        if m and self.command == "GET":
            self.referrers(m.group(1), m.group(2), query)
            return
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if (args.refuse_data and self.command == "PUT" and "/manifests/" in path and body
                and b'"data":' in body):
            self.reply(400, [("Content-Type", "application/json")],
                       b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid",'
                       b'"detail":"unknown field data"}]}')
            return
        # Host kept: the registry writes upload Locations with it, so they name this proxy.
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection", "content-length")}
        conn = http.client.HTTPConnection(args.upstream, timeout=30)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        out = [(k, v) for k, v in resp.getheaders()
               if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        m = re.match(r"^/v2/(.+)/manifests/(.+)$", path)
        if m and self.command == "PUT" and resp.status == 201 and body and not args.no_referrers:
            doc = json.loads(body)
            subject = doc.get("subject")
            if subject:
                desc = {"mediaType": doc.get("mediaType", self.headers.get("Content-Type")),
                        "digest": resp.getheader("Docker-Content-Digest"),
                        "size": len(body),
                        "artifactType": doc.get("artifactType") or doc["config"]["mediaType"]}
                if doc.get("annotations"):
                    desc["annotations"] = doc["annotations"]
                with lock:
                    referrers.setdefault((m.group(1), subject["digest"]), []).append(desc)
                out.append(("OCI-Subject", subject["digest"]))
        if args.corrupt_profiles and "/blobs/" in path and PROFILE_MARK in data[:200]:
            data = data[:-3] + bytes([data[-3] ^ 1]) + data[-2:]
        if args.corrupt_embedded and re.search(r"/manifests/sha256-[0-9a-f]{64}$", path):
            i = data.find(b'"data":"')
            if i >= 0:
                i += len(b'"data":"')
                data = data[:i] + (b"B" if data[i:i + 1] == b"A" else b"A") + data[i + 1:]
        if self.command == "HEAD":
            # No body, but the size of the one a GET would get: containerd resolves a tag by
            # HEAD and takes the manifest's size from it.
            self.reply(resp.status, out, b"", False, resp.getheader("Content-Length", "0"))
        else:
            self.reply(resp.status, out, data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


Server(("127.0.0.1", args.port), Handler).serve_forever()
