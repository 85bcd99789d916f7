#!/usr/bin/env python3
"""Helpers of tools/bench (images.sh, run.sh); standard library only.

    benchlib.py layer SRC OUT.tar.gz [--upper] [--exclude GLOB ...]
        tar a directory as an OCI layer (numeric owners, hardlinks kept), gzip -6, print
        "<blob digest> <diff id> <size>"; with --upper, SRC is an overlayfs upper dir: whiteouts
        (0:0 char devices) become .wh.NAME, opaque dirs get .wh..wh..opq
    benchlib.py oci OUT TAG CMD_JSON LAYER.tar.gz ...
        an OCI image layout from layers made by `layer` (their .diffid beside them)
    benchlib.py accessed TRACE_DIR ROOT
        the files a workload opened (strace -ff -o TRACE_DIR/tr ... of a chroot into ROOT), as
        layer paths in first-use order: symlinks resolved inside ROOT, both the link and the target
    benchlib.py physlimit OCI_DIR NEEDED RATE_BITS RTT_S
        the physical limit of a lazy pull + run of the image: JSON with the bytes (manifest, config,
        footers, TOCs, and the compressed gzip members of the needed files' chunks) and the time
    benchlib.py timed EXPECT LOG -- CMD...
        run CMD, print the seconds to its first output line containing EXPECT, to its exit, and rc
    benchlib.py report CSV OUT.md LINK_PARAMS MACHINE
        the markdown table (medians, spread) from run.sh's CSV
"""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import statistics
import sys
import tarfile
import zlib
from fnmatch import fnmatch


class _Sink(io.RawIOBase):
    """Tar bytes -> sha256 of the tar (diff id) and gzip -> file with its own sha256."""

    def __init__(self, out):
        self.raw_sha = hashlib.sha256()
        self.gz_sha = hashlib.sha256()
        self.out = out
        self.size = 0
        self.z = zlib.compressobj(6, zlib.DEFLATED, 31)

    def writable(self):
        return True

    def _emit(self, b):
        if b:
            self.gz_sha.update(b)
            self.out.write(b)
            self.size += len(b)

    def write(self, b):
        b = bytes(b)
        self.raw_sha.update(b)
        self._emit(self.z.compress(b))
        return len(b)

    def finish(self):
        self._emit(self.z.flush())


def cmd_layer(argv):
    src, out = argv[0], argv[1]
    upper = "--upper" in argv
    excludes = [argv[i + 1] for i, a in enumerate(argv) if a == "--exclude"]
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        sink = _Sink(f)
        tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)

        def add(full, arc):
            ti = tf.gettarinfo(full, arcname=arc)
            if ti is None:  # sockets
                return
            ti.uname = ti.gname = ""
            if ti.isreg():
                with open(full, "rb") as fh:
                    tf.addfile(ti, fh)
            else:
                tf.addfile(ti)

        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            rel = os.path.relpath(dirpath, src)
            keep = []
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                arc = name if rel == "." else rel + "/" + name
                if any(fnmatch(arc, g) for g in excludes):
                    continue
                st = os.lstat(full)
                if upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    ti = tarfile.TarInfo(os.path.dirname(arc) + "/.wh." + name if "/" in arc else ".wh." + name)
                    ti.mtime = int(st.st_mtime)
                    tf.addfile(ti)
                    continue
                add(full, arc)
                if stat.S_ISDIR(st.st_mode):
                    if upper:
                        try:
                            opq = os.getxattr(full, "trusted.overlay.opaque", follow_symlinks=False)
                        except OSError:
                            opq = b""
                        if opq == b"y":
                            ti = tarfile.TarInfo(arc + "/.wh..wh..opq")
                            ti.mtime = int(st.st_mtime)
                            tf.addfile(ti)
                    keep.append(name)
            dirnames[:] = [d for d in dirnames if d in keep]
        tf.close()
        sink.finish()
    os.rename(tmp, out)
    digest = "sha256:" + sink.gz_sha.hexdigest()
    diffid = "sha256:" + sink.raw_sha.hexdigest()
    with open(out + ".diffid", "w") as f:
        f.write("%s %s %d\n" % (digest, diffid, sink.size))
    print(digest, diffid, sink.size)


def _put(out, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d


def cmd_oci(argv):
    out, tag, cmd = argv[0], argv[1], json.loads(argv[2])
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    layers, diff_ids = [], []
    for gz in argv[3:]:
        digest, diffid, size = open(gz + ".diffid").read().split()
        dst = os.path.join(out, "blobs", "sha256", digest.split(":")[1])
        if not os.path.exists(dst):
            try:
                os.link(gz, dst)
            except OSError:
                shutil.copyfile(gz, dst)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": digest, "size": int(size)})
        diff_ids.append(diffid)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": cmd, "WorkingDir": "/",
                         "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cb = json.dumps(config, separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": _put(out, cb), "size": len(cb)},
                "layers": layers}
    mb = json.dumps(manifest, separators=(",", ":")).encode()
    md = _put(out, mb)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(mb),
             "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


_OPEN = re.compile(r'^(open|openat|execve)\((?:AT_FDCWD, |\d+, )?"((?:[^"\\]|\\.)*)".*\)\s+=\s+(\d+)')
_CHROOT = re.compile(r'^chroot\(.*\)\s+=\s+0')


def _resolve(root, path, seen_links, depth=0):
    """Walks PATH inside ROOT component by component; returns the real path (no leading /) and
    adds every symlink met on the way to seen_links."""
    parts = [p for p in path.split("/") if p and p != "."]
    cur = []
    while parts:
        p = parts.pop(0)
        if p == "..":
            if cur:
                cur.pop()
            continue
        cand = cur + [p]
        full = os.path.join(root, *cand)
        if os.path.islink(full) and depth < 40:
            seen_links.append("/".join(cand))
            target = os.readlink(full)
            if target.startswith("/"):
                cur = []
            parts = [x for x in target.split("/") if x] + parts
            depth += 1
            continue
        cur = cand
    return "/".join(cur)


def _interpreter(path):
    """PT_INTERP of an ELF executable or the #! line's program, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            if head.startswith(b"#!"):
                return head[2:].split(b"\n")[0].strip().split()[0].decode()
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            import struct
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
            for i in range(phnum):
                ptype, = struct.unpack_from("<I", ph, i * phentsize)
                if ptype == 3:
                    off, = struct.unpack_from("<Q", ph, i * phentsize + 8)
                    size, = struct.unpack_from("<Q", ph, i * phentsize + 32)
                    f.seek(off)
                    return f.read(size).rstrip(b"\0").decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


def cmd_accessed(argv):
    tdir, root = argv[0], argv[1]
    files = sorted(os.listdir(tdir), key=lambda n: int(n.rsplit(".", 1)[1]) if "." in n else 0)
    order = []
    seen = set()
    for name in files:
        inside = False
        with open(os.path.join(tdir, name), errors="replace") as f:
            lines = f.readlines()
        # The first process is `chroot`: its opens before chroot() are the host's.
        if any(_CHROOT.match(l) for l in lines):
            pass
        else:
            inside = True
        for line in lines:
            if not inside:
                if _CHROOT.match(line):
                    inside = True
                continue
            m = _OPEN.match(line)
            if not m:
                continue
            path = m.group(2).encode().decode("unicode_escape")
            if not path.startswith("/"):
                continue  # relative to a cwd we do not track; workloads use absolute paths
            if path.split("/")[1] in ("proc", "sys", "dev", "tmp", "run"):
                continue
            links = []
            real = _resolve(root, path, links)
            extra = []
            if m.group(1) == "execve":  # the kernel opens the ELF interpreter or #! interpreter
                interp = _interpreter(os.path.join(root, real))
                if interp:
                    ilinks = []
                    ireal = _resolve(root, interp, ilinks)
                    extra = ilinks + [ireal]
            for p in links + [real] + extra:
                full = os.path.join(root, p)
                if p and p not in seen and (os.path.islink(full) or os.path.isfile(full)):
                    seen.add(p)
                    order.append(p)
    print("\n".join(order))


def _estargz_toc(blob):
    with open(blob, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(size - 51)
        footer = f.read(51)
        m = re.search(rb"([0-9a-f]{16})STARGZ", footer)
        if not m:
            return None
        toc_off = int(m.group(1), 16)
        f.seek(toc_off)
        tocgz = f.read(size - 51 - toc_off)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tocgz))) as tf:
        toc = json.load(tf.extractfile("stargz.index.json"))
    return size, toc_off, toc


def cmd_physlimit(argv):
    oci, needed_file, rate_bits, rtt = argv[0], argv[1], float(argv[2]), float(argv[3])
    needed = set(l.strip().lstrip("/") for l in open(needed_file) if l.strip())
    blobs = os.path.join(oci, "blobs", "sha256")
    index = json.load(open(os.path.join(oci, "index.json")))
    mdesc = index["manifests"][0]
    manifest = json.load(open(os.path.join(blobs, mdesc["digest"].split(":")[1])))
    meta = mdesc["size"] + manifest["config"]["size"]
    toc_bytes = files_bytes = 0
    found = set()
    for layer in manifest["layers"]:
        r = _estargz_toc(os.path.join(blobs, layer["digest"].split(":")[1]))
        if r is None:
            continue
        size, toc_off, toc = r
        toc_bytes += size - toc_off
        offsets = sorted(set(e["offset"] for e in toc["entries"] if e.get("offset")) | {toc_off})
        nxt = {o: offsets[i + 1] for i, o in enumerate(offsets[:-1])}
        for e in toc["entries"]:
            name = e["name"].lstrip("./") if e["name"].startswith("./") else e["name"].lstrip("/")
            if name in needed and e["type"] in ("reg", "chunk") and e.get("offset"):
                files_bytes += nxt.get(e["offset"], e["offset"]) - e["offset"]
                found.add(name)
    total = meta + toc_bytes + files_bytes
    rtts = 3
    print(json.dumps({"bytes": total, "meta_bytes": meta, "toc_bytes": toc_bytes, "file_bytes": files_bytes,
                      "files_needed": len(needed), "files_found": len(found), "round_trips": rtts,
                      "seconds": total * 8 / rate_bits + rtts * rtt}))


def _fmt_s(xs):
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1:
        return "%.2f" % med
    return "%.2f (%.2f–%.2f)" % (med, min(xs), max(xs))


def cmd_report(argv):
    import csv
    csv_path, out_md, link, machine = argv[:4]
    rows = list(csv.DictReader(open(csv_path)))
    rank = {("legacy", "overlayfs"): 0, ("esgz", "stargzd"): 1, ("esgz", "reference"): 2,
            ("esgz-opt", "stargzd"): 3, ("esgz-opt", "reference"): 4, ("esgz-opt", "limit"): 5}
    images = ["base", "python", "gcc"]
    rows.sort(key=lambda r: (images.index(r["image"]) if r["image"] in images else 9,
                             rank.get((r["form"], r["snapshotter"]), 9)))
    groups = {}
    order = []
    for r in rows:
        k = (r["image"], r["form"], r["snapshotter"])
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(r)
    lines = ["# stargzd benchmark, %s" % os.path.basename(out_md)[:-3], "",
             "- machine: %s" % machine, "- %s" % link,
             "- cold state every run: fresh containerd and snapshotter roots, page cache dropped; "
             "median of the runs that succeeded, (min–max) when there are several", ""]
    lines.append("| image | form | snapshotter | runs ok | pull s | run s (to output) | total s | MB fetched | requests |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    med = {}
    for k in order:
        ok = [r for r in groups[k] if r["status"] == "ok"]
        f = lambda c: [float(r[c]) for r in ok if r[c] != ""]
        mb = [float(r["bytes"]) / 1e6 for r in ok]
        if k[2] == "limit":
            lines.append("| %s | %s | physical limit | - | - | - | %.2f | %.2f | %s |" % (
                k[0], k[1], float(groups[k][0]["total_s"]), float(groups[k][0]["bytes"]) / 1e6,
                groups[k][0]["requests"]))
            med[k] = float(groups[k][0]["total_s"])
            continue
        lines.append("| %s | %s | %s | %d/%d | %s | %s | %s | %s | %s |" % (
            k[0], k[1], k[2], len(ok), len(groups[k]), _fmt_s(f("pull_s")), _fmt_s(f("run_s")),
            _fmt_s(f("total_s")), ("%.2f" % statistics.median(mb)) if mb else "-",
            ("%d" % statistics.median(f("requests"))) if ok else "-"))
        if ok:
            med[k] = statistics.median(f("total_s"))
        warm = f("warm_s")
        if warm:
            med[(k[0], "warm", k[2])] = statistics.median(warm)
    lines.append("")
    notes = []
    for img in sorted(set(k[0] for k in order), key=lambda i: ["base", "python", "gcc"].index(i) if i in ("base", "python", "gcc") else 9):
        leg = med.get((img, "legacy", "overlayfs"))
        lim = med.get((img, "esgz-opt", "limit"))
        warm = med.get((img, "warm", "overlayfs"))
        parts = []
        for form in ("esgz", "esgz-opt"):
            sg, ref = med.get((img, form, "stargzd")), med.get((img, form, "reference"))
            if leg and ref:
                parts.append("%s: reference ÷ legacy %.2f" % (form, ref / leg))
            if leg and sg:
                parts.append("%s: stargzd ÷ legacy %.2f" % (form, sg / leg))
            if sg and ref:
                parts.append("%s: stargzd ÷ reference %.2f" % (form, sg / ref))
            if sg and lim:
                parts.append("%s: stargzd ÷ (limit + warm run) %.2f" % (form, sg / (lim + (warm or 0))))
        if warm is not None:
            parts.append("warm re-run (legacy, image present) %.2f s" % warm)
        if parts:
            notes.append("- %s: %s" % (img, "; ".join(parts)))
    lines += notes
    lines += ["", "Physical limit: compressed bytes the workload needs (manifest + config + every layer's TOC and "
              "footer + the gzip members holding the chunks of the files the workload opens, measured in the "
              "optimized eStargz blobs) ÷ link rate, + 3 round trips (manifest, config + TOCs, file chunks). "
              "It excludes container start; compare lazy totals with limit + warm re-run.", ""]
    text = "\n".join(lines)
    with open(out_md, "w") as f:
        f.write(text)
    print(text)


SERIES = [("legacy", "overlayfs", "legacy (overlayfs)"), ("esgz", "reference", "eStargz, Go reference"),
          ("esgz", "stargzd", "eStargz, stargzd"), ("esgz-opt", "reference", "optimized, Go reference"),
          ("esgz-opt", "stargzd", "optimized, stargzd"), ("esgz-opt", "limit", "physical limit")]


def cmd_chartdata(argv):
    """chartdata CSV OUT.dat: median total per image (rows) and series (columns, SERIES order,
    titles in chart.gp) for chart.gp."""
    import csv
    rows = list(csv.DictReader(open(argv[0])))
    images = []
    for r in rows:
        if r["image"] not in images:
            images.append(r["image"])
    with open(argv[1], "w") as f:
        for img in images:
            vals = []
            for form, sn, _ in SERIES:
                xs = [float(r["total_s"]) for r in rows if r["image"] == img and r["form"] == form
                      and r["snapshotter"] == sn and r["status"] == "ok" and r["total_s"]]
                vals.append("%.3f" % statistics.median(xs) if xs else "-")
            f.write(img + " " + " ".join(vals) + "\n")


def cmd_timed(argv):
    """timed EXPECT LOG -- CMD...: runs CMD; prints "<s to the first output line containing EXPECT>
    <s to exit> <exit code>" (EXPECT empty: the exit time twice).  CMD's output goes to LOG."""
    import subprocess
    import time
    expect, logp = argv[0], argv[1]
    cmd = argv[argv.index("--") + 1:]
    t0 = time.monotonic()
    seen = None
    with open(logp, "ab") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for line in p.stdout:
            log.write(line)
            if seen is None and expect and expect.encode() in line:
                seen = time.monotonic() - t0
        rc = p.wait()
    end = time.monotonic() - t0
    print("%.4f %.4f %d" % (seen if seen is not None else (end if not expect else -1), end, rc))


if __name__ == "__main__":
    cmds = {"timed": cmd_timed, "chartdata": cmd_chartdata, "layer": cmd_layer, "oci": cmd_oci, "accessed": cmd_accessed, "physlimit": cmd_physlimit,
            "report": cmd_report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]](sys.argv[2:])
