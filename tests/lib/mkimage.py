#!/usr/bin/env python3
"""Builds a small OCI image layout from directories, one layer per directory.

    mkimage.py OUT_DIR TAG LAYER_DIR [LAYER_DIR ...] [--cmd 'sh -c ...']
    mkimage.py OUT_DIR TAG --esgz-blob BLOB TOC_DIGEST [--esgz-blob ...]

Each layer is a tar of the directory (owner 0:0, the files' own modes and mtimes), gzipped.
Writes OUT_DIR/{oci-layout,index.json,blobs/sha256/...} so that
`skopeo copy oci:OUT_DIR:TAG docker://HOST/REPO:TAG` pushes it, and prints one line per
layer: "<layer digest> <diff id> <compressed size>".  Whiteouts are taken as they are in
the directory (a file named .wh.NAME), as in any OCI layer.  --esgz-blob adds a ready-made
eStargz blob as a layer (after the directories) with its TOC digest annotation.
"""
import argparse, gzip, hashlib, io, json, os, tarfile, sys


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer_tar(src):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arc = os.path.relpath(full, src)
                ti = tf.gettarinfo(full, arcname=arc)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = "root"
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return buf.getvalue()


def put_blob(out, data):
    d = sha(data)
    path = os.path.join(out, "blobs", "sha256", d.split(":")[1])
    with open(path, "wb") as f:
        f.write(data)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("tag")
    ap.add_argument("layers", nargs="*")
    ap.add_argument("--cmd", default="/bin/sh")
    ap.add_argument("--esgz-blob", nargs=2, action="append", default=[],
                    metavar=("BLOB", "TOC_DIGEST"))
    a = ap.parse_args()
    if not a.layers and not a.esgz_blob:
        ap.error("no layers")
    os.makedirs(os.path.join(a.out, "blobs", "sha256"), exist_ok=True)
    layers, diff_ids = [], []
    for src in a.layers:
        raw = layer_tar(src)
        gz = gzip.compress(raw, mtime=0)
        d = put_blob(a.out, gz)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": d, "size": len(gz)})
        diff_ids.append(sha(raw))
        print(d, sha(raw), len(gz))
    for blob, toc in a.esgz_blob:
        with open(blob, "rb") as f:
            gz = f.read()
        d, raw = put_blob(a.out, gz), gzip.decompress(gz)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": d, "size": len(gz),
                       "annotations": {"containerd.io/snapshot/stargz/toc.digest": toc}})
        diff_ids.append(sha(raw))
        print(d, sha(raw), len(gz))
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["/bin/sh", "-c", a.cmd],
                         "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cb = json.dumps(config, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": put_blob(a.out, cb), "size": len(cb)},
                "layers": layers}
    mb = json.dumps(manifest, separators=(",", ":")).encode()
    md = put_blob(a.out, mb)
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(mb),
         "annotations": {"org.opencontainers.image.ref.name": a.tag}}]}
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


if __name__ == "__main__":
    sys.exit(main())
