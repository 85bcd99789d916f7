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
    benchlib.py report CSV OUT.md LINK_PARAMS MACHINE [LINK_NAME]
        the markdown table (medians, spread) from run.sh's CSV, issue #13's and #14's (the
        esgz+profile rows) goals met or not on that link, and the miss timelines
    benchlib.py trace LOGDIR
        a run's miss-timeline figures from stargzd's fetch trace (LOGDIR/trace-*.jsonl) as CSV fields
    benchlib.py timeline CSV LOGS OUT.png TITLE
        the PNG of the blocked reads on a time axis, per workload and form (gnuplot)
    benchlib.py selftest
        the trace parser and the goal lines on synthetic input (run by tests/run.sh lint)
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


# --- the fetch trace (stargzd's fetch_trace_dir: DIR/trace-PID.jsonl) -> the miss timeline ----------
#
# Events (the format is README.md's "Fetch trace"): "read" = a FUSE read that had to wait, t = its
# start, wait_ms, net = it waited on a network fetch; "fetch" = one range request, t = its start;
# "layer" = a layer's totals at its close, fetched and used compressed bytes per kind.  "profile":
# a learned startup profile's replay (issue #14).
FETCH_KINDS = ("ondemand", "spec", "prefetch", "background", "stream", "profile")
# The CSV columns run.sh adds per run (empty when the run has no trace).
TRACE_FIELDS = (["tr_blocked", "tr_wait_s", "tr_union_s", "tr_chain", "tr_chain_s"]
                + ["tr_fetched_" + k for k in FETCH_KINDS] + ["tr_used_" + k for k in FETCH_KINDS]
                + ["tr_spec_in_miss", "tr_ahead_in_miss", "tr_chunk_max", "tr_beside_max",
                   "tr_beside_spec_max", "tr_asked_s"])


def ahead_during_misses(events):
    """How much fetching ahead shared the link with readers' own fetches (issue #13: "speculation
    never delays an on-demand read by more than one chunk transfer").  For each on-demand fetch,
    the bytes the other requests of the run delivered while it was in flight, each taken to
    deliver its bytes evenly over its duration: (the most of kind spec during one on-demand
    fetch, the most of every kind fetching ahead, the largest chunk fetched: the biggest
    single-chunk request).  Failed requests are left out.  The link carries them beside the reader's bytes, so at its rate they
    are the time they added to that fetch, at most."""
    fetches = [e for e in events if e.get("ev") == "fetch" and float(e.get("ms", 0)) > 0
               and e.get("ok", True)]
    spec_max = ahead_max = 0.0
    for o in fetches:
        if o.get("kind") != "ondemand":
            continue
        s = float(o["t"])
        t = s + float(o["ms"])
        spec = ahead = 0.0
        for x in fetches:
            if x.get("kind") == "ondemand":
                continue
            xs = float(x["t"])
            xe = xs + float(x["ms"])
            overlap = min(t, xe) - max(s, xs)
            if overlap > 0:
                b = int(x.get("len", 0)) * overlap / float(x["ms"])
                ahead += b
                if x.get("kind") == "spec":
                    spec += b
        spec_max, ahead_max = max(spec_max, spec), max(ahead_max, ahead)
    chunk_max = max([int(e.get("len", 0)) for e in fetches if int(e.get("chunks", 0)) == 1] or [0])
    return spec_max, ahead_max, chunk_max


def beside_measured(events, field="beside"):
    """The most bytes fetched ahead (every kind; field "beside_spec": speculation's) that the
    daemon counted arriving on the link while one on-demand fetch was in flight (its "beside",
    fs/fetch_trace.h), or None when no on-demand fetch of the trace has it (older daemons).
    Measured as the bytes came, not spread over each request's duration as ahead_during_misses
    models it.  0 when the run had no on-demand fetch."""
    od = [e for e in events if e.get("ev") == "fetch" and e.get("kind") == "ondemand"]
    vals = [int(e[field]) for e in od if field in e]
    return max(vals) if vals else (0 if not od else None)


def read_trace(paths, daemon_start=None):
    """The events of trace files, a list of dicts; lines that do not parse (the last line of a
    daemon killed mid-write) are skipped.  With DAEMON_START (the wall-clock second the run's
    daemon was started, times.json), each file's times are moved onto that clock from its
    "start" line's epoch: the daemon opens its trace about 0.1 s after it was started, and a
    timeline drawn from the trace's own origin put every read that much early."""
    events = []
    for p in paths:
        shift = 0.0
        with open(p, errors="replace") as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(ev, dict) or "ev" not in ev:
                    continue
                if ev["ev"] == "start":
                    if daemon_start is not None and "epoch" in ev:
                        shift = (float(ev["epoch"]) - daemon_start) * 1e3
                    continue
                if shift and "t" in ev:
                    ev["t"] = float(ev["t"]) + shift
                events.append(ev)
    return events


def blocked_reads(events):
    """[(start_ms, end_ms, path)] of the reads that waited on the network, by start."""
    out = []
    for e in events:
        if e.get("ev") == "read" and e.get("net"):
            t, w = float(e.get("t", 0)), float(e.get("wait_ms", 0))
            out.append((t, t + w, e.get("path", "")))
    out.sort()
    return out


def union_ms(intervals):
    """Wall-clock time covered by at least one of the intervals."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted((i[0], i[1]) for i in intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def longest_chain(intervals):
    """The longest chain of dependent blocking misses, by this definition: a chain is a sequence
    of blocked network reads each of which starts at or after the previous one ended (so none
    could overlap the one before: a reader that waits, gets its answer, then misses again, as the
    dynamic loader and an interpreter's imports do); the longest is the chain whose waits add up
    to the most time (weighted interval scheduling).  Non-overlap does not prove a dependency, so
    this is an upper bound of the true critical path of misses.  Returns (indices, total ms)."""
    iv = sorted(range(len(intervals)), key=lambda i: (intervals[i][1], intervals[i][0]))
    ends = [intervals[i][1] for i in iv]
    best = [0.0] * (len(iv) + 1)   # best[k]: the longest chain among the first k by end
    take = [False] * (len(iv) + 1)
    prev = [0] * (len(iv) + 1)
    import bisect
    for k, i in enumerate(iv, 1):
        s, e = intervals[i][0], intervals[i][1]
        p = bisect.bisect_right(ends, s, 0, k - 1)   # those ending at or before s
        with_it = (e - s) + best[p]
        prev[k] = p
        if with_it > best[k - 1]:
            best[k], take[k] = with_it, True
        else:
            best[k] = best[k - 1]
    chain, k = [], len(iv)
    while k > 0:
        if take[k]:
            chain.append(iv[k - 1])
            k = prev[k]
        else:
            k -= 1
    chain.reverse()
    return chain, best[len(iv)]


def trace_metrics(events):
    """The miss timeline's figures of one run (a dict; bytes per kind summed over layers).  Bytes
    come from the layers' close summaries; without any (a daemon killed before closing them),
    fetched bytes are summed from the fetch events and used bytes are unknown (None)."""
    br = blocked_reads(events)
    chain, chain_ms = longest_chain(br)
    fetched = dict.fromkeys(FETCH_KINDS, 0)
    used = dict.fromkeys(FETCH_KINDS, 0)
    layers = [e for e in events if e.get("ev") == "layer"]
    if layers:
        for e in layers:
            for k in FETCH_KINDS:
                fetched[k] += int(e.get("fetched", {}).get(k, 0))
                used[k] += int(e.get("used", {}).get(k, 0))
    else:
        used = None
        for e in events:
            if e.get("ev") == "fetch" and e.get("kind") in fetched and e.get("ok", True):
                fetched[e["kind"]] += int(e.get("len", 0))
    total_f = sum(fetched.values())
    spec_in_miss, ahead_in_miss, chunk_max = ahead_during_misses(events)
    tocs = [float(e["t"]) for e in events if e.get("ev") == "toc" and "t" in e]
    return {"spec_in_miss": spec_in_miss, "ahead_in_miss": ahead_in_miss, "chunk_max": chunk_max,
            "first_asked_ms": min(tocs) if tocs else None,
            "beside_max": beside_measured(events),
            "beside_spec_max": beside_measured(events, "beside_spec"),
            "blocked": len(br), "wait_ms": sum(e - s for s, e, _ in br), "union_ms": union_ms(br),
            "chain": len(chain), "chain_ms": chain_ms, "chain_idx": chain, "reads": br,
            "fetched": fetched, "used": used,
            "useful": (sum(used.values()) / total_f) if used is not None and total_f else None}


def trace_files(logdir):
    import glob
    return sorted(glob.glob(os.path.join(logdir, "trace-*.jsonl")))


def cmd_trace(argv):
    """trace LOGDIR: the run's miss-timeline figures as the CSV fields TRACE_FIELDS (comma-joined;
    all empty when LOGDIR has no trace file)."""
    files = trace_files(argv[0])
    if not files:
        print("," * (len(TRACE_FIELDS) - 1))
        return
    try:
        times = json.load(open(os.path.join(argv[0], "times.json")))
    except (OSError, ValueError):
        times = {}
    m = trace_metrics(read_trace(files, times.get("daemon_start")))
    # the first layer asked for (containerd's first Prepare), seconds after the pull started:
    # what the pull client spent before a snapshotter could do anything (resolve, manifest,
    # config); only on the daemon's clock when the trace has its "start" line
    asked = ""
    if m["first_asked_ms"] is not None and times.get("pull_start") and times.get("daemon_start"):
        asked = "%.4f" % (m["first_asked_ms"] / 1e3 - (times["pull_start"] - times["daemon_start"]))
    vals = [m["blocked"], "%.4f" % (m["wait_ms"] / 1e3), "%.4f" % (m["union_ms"] / 1e3), m["chain"],
            "%.4f" % (m["chain_ms"] / 1e3)]
    vals += [m["fetched"][k] for k in FETCH_KINDS]
    vals += [m["used"][k] if m["used"] is not None else "" for k in FETCH_KINDS]
    vals += [int(m["spec_in_miss"]), int(m["ahead_in_miss"]), m["chunk_max"]]
    vals += [m[f] if m[f] is not None else "" for f in ("beside_max", "beside_spec_max")]
    vals += [asked]
    print(",".join(str(v) for v in vals))


def _pick_run(rows):
    """The run whose total is the median of the rows' (the one a timeline shows)."""
    ok = sorted((float(r["total_s"]), r) for r in rows if r["status"] == "ok" and r["total_s"])
    return ok[(len(ok) - 1) // 2][1] if ok else None


def cmd_timeline(argv):
    """timeline CSV LOGS OUT.png TITLE: per workload and eStargz form, stargzd's blocked network
    reads of the median run as bars on a time axis (seconds since the pull started; waterfall,
    one read a line by start; the longest chain in red; a dashed line where `ctr run` began, a
    solid one at the workload's output).
    Needs each run's trace and times.json (run.sh writes them into LOGS/IMAGE-FORM-stargzd-RUN)."""
    import csv
    import subprocess
    csv_path, logs, out_png, title = argv[:4]
    rows = list(csv.DictReader(open(csv_path)))
    images = [i for i in IMAGES if any(r["image"] == i for r in rows)]
    images += sorted(set(r["image"] for r in rows) - set(images))
    forms = ["esgz", "esgz-opt", PROFILE_FORM]
    forms += sorted(set(r["form"] for r in rows if r["form"].startswith(PROFILE_FORM + "-")))
    dat = out_png[:-4] + ".dat"
    panels = []
    with open(dat, "w") as f:
        for img in images:
            for form in forms:
                r = _pick_run([x for x in rows if x["image"] == img and x["form"] == form
                               and x["snapshotter"] == "stargzd"])
                if r is None:
                    continue
                d = os.path.join(logs, "%s-%s-stargzd-%s" % (img, form, r["run"]))
                files = trace_files(d)
                if not files:
                    continue
                try:
                    times = json.load(open(os.path.join(d, "times.json")))
                except (OSError, ValueError):
                    continue
                m = trace_metrics(read_trace(files, times.get("daemon_start")))
                # the trace's clock starts with the daemon (moved onto it); the axis with the pull
                off = (times["pull_start"] - times["daemon_start"]) * 1e3
                chain = set(m["chain_idx"])
                f.write("# %s %s run %s\n" % (img, form, r["run"]))
                for i, (s, e, path) in enumerate(m["reads"]):
                    f.write("%.4f %.4f %d %d\n" % ((s - off) / 1e3, (e - off) / 1e3, i, 1 if i in chain else 0))
                if not m["reads"]:
                    f.write("0 0 -1 0\n")
                f.write("\n\n")
                run_at = times["run_start"] - times["pull_start"]
                # the output: the run's start (after the pull and the remote-layer count) + run_s
                panels.append((img, form, run_at, run_at + float(r["run_s"]), m,
                               max([(e - off) / 1e3 for _, e, _ in m["reads"]] or [0])))
    if not panels:
        print("timeline: no traced stargzd run in %s" % logs, file=sys.stderr)
        return
    nrow = (len(panels) + 1) // 2
    gp = ["set terminal pngcairo size 1200,%d font ',9' noenhanced" % (260 * nrow + 40),
          "set output '%s'" % out_png, "set multiplot layout %d,2 title '%s'" % (nrow, title),
          "set style fill solid 0.9 noborder", "set grid xtics", "set xlabel 's since pull start'",
          "set ylabel 'blocked read #'", "set key off",
          "set xrange [0:%.3f]" % (1.05 * max(max(p[3], p[5]) for p in panels))]   # one scale for all
    for k, (img, form, run_at, out_at, m, _) in enumerate(panels):
        n = max(len(m["reads"]), 1)
        gp += ["set yrange [%.1f:-0.6] reverse" % (n - 0.4), "set ytics 0, %d" % max(1, (n + 5) // 6),
               "unset arrow", "set arrow from %.3f, graph 0 to %.3f, graph 1 nohead dt 2 lc rgb 'black'" % (run_at, run_at),
               "set arrow from %.3f, graph 0 to %.3f, graph 1 nohead lw 2 lc rgb 'black'" % (out_at, out_at),
               "set title '%s, %s: %d blocked reads, wait %.2f s (union %.2f s), chain %d reads %.2f s'" % (
                   img, form, m["blocked"], m["wait_ms"] / 1e3, m["union_ms"] / 1e3, m["chain"], m["chain_ms"] / 1e3),
               "plot '%s' index %d using (($1+$2)/2):3:(($2-$1)/2):(0.4):($4 > 0 ? 0xcc2222 : 0x3366aa) "
               "with boxxyerror lc rgb variable" % (dat, k)]
    gp.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(gp).encode(), check=True)
    os.unlink(dat)



IMAGES = ["base", "python", "gcc", "imports"]
# Issue #13's goal for unoptimized stargzd ÷ the Go reference, per link (none on the near link).
REF_GOAL = {"default": 0.5, "far": 0.4}


def _fmt_s(xs):
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1:
        return "%.2f" % med
    return "%.2f (%.2f–%.2f)" % (med, min(xs), max(xs))


def _goal(value, limit):
    """'0.93, not met (goal ≤ 0.50)'; '-' without a value; no verdict without a goal."""
    if value is None:
        return "-"
    if limit is None:
        return "%.2f (no goal on this link)" % value
    return "%.2f, %s (goal ≤ %.2f)" % (value, "met" if value <= limit else "**not met**", limit)


def _median_of(rows, col, scale=1.0):
    xs = [float(r[col]) * scale for r in rows if r.get(col) not in (None, "")]
    if not xs and col.startswith("tr_used_") and rows and all(col not in r for r in rows):
        return 0.0   # a CSV from before this fetch kind existed: none fetched, none used
    return statistics.median(xs) if xs else None


# The form of the rows "unoptimized image + a startup profile recorded on another node" (issue #14);
# PROFILE_FORM-W: the profile another workload W recorded (the cross-workload check).
PROFILE_FORM = "esgz+profile"
# Issue #14's goals: total ÷ (limit + warm re-run), bytes ÷ the limit's bytes.
PROFILE_TIME_GOAL, PROFILE_BYTES_GOAL = 1.15, 1.2


def _failed(groups, k, value):
    """VALUE, or when every run of row K failed, '**failed** (the statuses)'."""
    runs = groups.get(k, [])
    if runs and not any(r["status"] == "ok" for r in runs):
        return "**failed** (%s)" % ", ".join(sorted(set(r["status"] for r in runs)))
    return value


def _profile_goals(imgs, med, mbytes, oks, groups):
    """The goal lines of issue #14, for the workloads with an esgz+profile row: its total ÷ (limit +
    warm re-run), its bytes ÷ the limit's, its blocked reads against esgz's, and each cross-workload
    row (another workload's profile) ÷ esgz without a profile (not slower: ≤ 1).  A row whose runs
    all failed (no profile recorded) says so instead of a figure."""
    with_rows = [i for i in imgs if any(k[0] == i and k[1].startswith(PROFILE_FORM) for k in oks)]
    if not with_rows:
        return []
    lines = ["## Goals (issue #14: an unoptimized image + a profile recorded on another node)", "",
             "| workload | + profile: stargzd ÷ (limit + warm re-run) | + profile: bytes over the link ÷ limit's "
             "bytes | blocked reads: esgz → + profile | layers replaying a profile | another workload's "
             "profile: stargzd ÷ esgz without | not a goal: pull start → first Prepare; + profile ÷ "
             "(limit + warm + that) |", "|---|---|---|---|---|---|---|"]
    for img in with_rows:
        pf, lim = med.get((img, PROFILE_FORM, "stargzd")), med.get((img, "esgz-opt", "limit"))
        warm = med.get((img, "warm", "overlayfs"), med.get((img, "warm", "stargzd")))
        b, lb = mbytes.get((img, PROFILE_FORM, "stargzd")), mbytes.get((img, "esgz-opt", "limit"))
        blocked = lambda form: _median_of([r for r in oks.get((img, form, "stargzd"), []) if r.get("tr_blocked")],
                                          "tr_blocked")
        bl = [blocked("esgz"), blocked(PROFILE_FORM)]
        replayed = _median_of(oks.get((img, PROFILE_FORM, "stargzd"), []), "profiles_replayed")
        cross = []
        base = med.get((img, "esgz", "stargzd"))
        for k in sorted(k for k in oks if k[0] == img and k[1].startswith(PROFILE_FORM + "-") and k[2] == "stargzd"):
            v = med.get(k)
            cross.append("%s's: %s" % (k[1][len(PROFILE_FORM) + 1:],
                                       _failed(groups, k, _goal(v / base if v and base else None, 1.0))))
        pk = (img, PROFILE_FORM, "stargzd")
        asked = _median_of(oks.get(pk, []), "tr_asked_s")
        before = ("%.2f s; %.2f" % (asked, pf / (lim + warm + asked))
                  if asked is not None and pf and lim and warm is not None else "-")
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            img, _failed(groups, pk, _goal(pf / (lim + warm) if pf and lim and warm is not None else None,
                                           PROFILE_TIME_GOAL)),
            _failed(groups, pk, _goal(b / lb if b and lb else None, PROFILE_BYTES_GOAL)),
            " → ".join("%d" % x if x is not None else "-" for x in bl),
            "%d" % replayed if replayed is not None else "-", "; ".join(cross) or "-", before))
    lines += ["", "`%s`: the unoptimized eStargz image, cold as every row, with only the profiles a record pass "
              "of the same workload wrote under another snapshotter root put into the fresh root (or pulled "
              "from the registry: see the bench README).  `%s-W`: the profiles workload W recorded (a shared "
              "base layer).  A row of a profile form fails when the record pass wrote no profile.  Layers "
              "replaying: the daemon's `replaying its startup profile` log lines (median).  The last column is "
              "not the goal: the time the pull client (see the machine line: `ctr-remote`, or containerd's "
              "CRI plugin: resolve, manifest, config) takes before "
              "containerd's first Prepare reaches any snapshotter (the daemon's trace, median), which the "
              "limit credits only as part of its three round trips, and the ratio with it added to the "
              "limit.  Pulled through stargzd's CRI proxy (`BENCH_PULL=cri-proxy`), by `ctr-remote` under "
              "`stargzd pull-ahead` (`BENCH_PULL=ctr-ahead`), or with stargzd's resolve hook in containerd's "
              "hosts.toml (`BENCH_PULL=ctr-hook`, `cri-hook`), it is the time to the first layer the daemon "
              "loaded ahead, before containerd's Prepare." % (PROFILE_FORM,
                                                                                    PROFILE_FORM), ""]
    return lines


def report_text(rows, title, link, machine, link_name):
    rank = {("legacy", "overlayfs"): 0, ("esgz", "stargzd"): 1, ("esgz", "reference"): 2,
            ("esgz-opt", "stargzd"): 3, ("esgz-opt", "reference"): 4, (PROFILE_FORM, "stargzd"): 5,
            ("esgz-opt", "limit"): 7}
    # esgz+profile-WORKLOAD (another workload's profile) right after esgz+profile
    form_rank = lambda r: rank.get((r["form"], r["snapshotter"]),
                                   6 if r["form"].startswith(PROFILE_FORM + "-") else 9)
    img_rank = lambda i: IMAGES.index(i) if i in IMAGES else 9
    rows = sorted(rows, key=lambda r: (img_rank(r["image"]), form_rank(r)))
    groups, order = {}, []
    for r in rows:
        k = (r["image"], r["form"], r["snapshotter"])
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(r)
    lines = ["# stargzd benchmark, %s" % title, "",
             "- machine: %s" % machine, "- link profile `%s`: %s" % (link_name, link),
             "- cold state every run: fresh containerd and snapshotter roots, page cache dropped; "
             "median of the runs that succeeded, (min–max) when there are several", ""]
    lines.append("| image | form | snapshotter | runs ok | pull s | run s (to output) | total s | MB fetched | requests |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    med, mbytes, oks = {}, {}, {}
    for k in order:
        ok = [r for r in groups[k] if r["status"] == "ok"]
        oks[k] = ok
        f = lambda c: [float(r[c]) for r in ok if r[c] != ""]
        mb = [float(r["bytes"]) / 1e6 for r in ok if r["bytes"] != ""]
        if k[2] == "limit":
            lim = groups[k][0]
            lines.append("| %s | %s | physical limit | - | - | - | %.2f | %.2f | %s |" % (
                k[0], k[1], float(lim["total_s"]), float(lim["bytes"]) / 1e6, lim["requests"]))
            med[k] = float(lim["total_s"])
            mbytes[k] = float(lim["bytes"])
            continue
        lines.append("| %s | %s | %s | %d/%d | %s | %s | %s | %s | %s |" % (
            k[0], k[1], k[2], len(ok), len(groups[k]), _fmt_s(f("pull_s")), _fmt_s(f("run_s")),
            _fmt_s(f("total_s")), ("%.2f" % statistics.median(mb)) if mb else "-",
            ("%d" % statistics.median(f("requests"))) if f("requests") else "-"))
        if ok:
            med[k] = statistics.median(f("total_s"))
            if mb:
                mbytes[k] = statistics.median(mb) * 1e6
        warm = f("warm_s")
        if warm:
            med[(k[0], "warm", k[2])] = statistics.median(warm)
    lines.append("")
    imgs = sorted(set(k[0] for k in order), key=img_rank)

    # The goals of issue #13, each met or not.
    ref_goal = REF_GOAL.get(link_name)
    lines += ["## Goals (issue #13), link `%s`" % link_name, "",
              "| workload | unoptimized: stargzd ÷ reference | unoptimized: stargzd ÷ legacy full pull "
              "| optimized: stargzd ÷ (limit + warm re-run) | unoptimized: bytes over the link ÷ limit's bytes "
              "| unoptimized: useful ÷ fetched |", "|---|---|---|---|---|---|"]
    for img in imgs:
        g = lambda form, sn: med.get((img, form, sn))
        sg, ref, leg = g("esgz", "stargzd"), g("esgz", "reference"), g("legacy", "overlayfs")
        opt, lim = g("esgz-opt", "stargzd"), g("esgz-opt", "limit")
        warm = med.get((img, "warm", "overlayfs"), med.get((img, "warm", "stargzd")))
        b, lb = mbytes.get((img, "esgz", "stargzd")), mbytes.get((img, "esgz-opt", "limit"))
        useful = None
        tr = [r for r in oks.get((img, "esgz", "stargzd"), []) if r.get("tr_blocked")]
        if tr:
            f_ = sum(_median_of(tr, "tr_fetched_" + k) or 0 for k in FETCH_KINDS)
            u_ = [_median_of(tr, "tr_used_" + k) for k in FETCH_KINDS]
            if f_ and None not in u_:
                useful = sum(u_) / f_
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            img, _goal(sg / ref if sg and ref else None, ref_goal),
            _goal(sg / leg if sg and leg else None, 1.0),
            _goal(opt / (lim + warm) if opt and lim and warm is not None else None, 1.2),
            _goal(b / lb if b and lb else None, 2.0),
            "%.2f" % useful if useful is not None else "-"))
    lines += ["", "Warm re-run: the legacy row's (image present, page cache warm); stargzd's when there is no "
              "legacy row.  Bytes over the link: everything the registry sent during pull and run (headers "
              "included) on the unoptimized image.  Useful ÷ fetched: the bytes of chunks the workload read "
              "÷ the compressed bytes stargzd fetched, from its fetch trace.", ""]

    lines += _profile_goals(imgs, med, mbytes, oks, groups)

    # The miss timelines.
    tl = [(k, [r for r in oks[k] if r.get("tr_blocked")]) for k in order if k[2] == "stargzd"]
    tl = [(k, rs) for k, rs in tl if rs]
    lines += ["## Miss timelines (stargzd's fetch trace; medians of the runs)", ""]
    if not tl:
        lines += ["No trace: the stargzd binary does not know `fetch_trace_dir`, or BENCH_TRACE=0.", ""]
    else:
        lines += ["| image | form | reads blocked on the network | their wait s: sum / wall-clock union "
                  "| longest chain: reads, s | MB fetched: %s "
                  "| MB of those used | useful ÷ fetched "
                  "| MB fetched ahead beside one on-demand fetch, most: spec / all kinds "
                  "| spec ÷ largest chunk | measured ÷ largest chunk: spec / all kinds |" % " / ".join(FETCH_KINDS),
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, rs in tl:
            fe = [_median_of(rs, "tr_fetched_" + x, 1e-6) or 0 for x in FETCH_KINDS]
            us = [_median_of(rs, "tr_used_" + x, 1e-6) for x in FETCH_KINDS]
            known = None not in us
            sm, am, cm = (_median_of(rs, f) for f in ("tr_spec_in_miss", "tr_ahead_in_miss", "tr_chunk_max"))
            beside = "%.2f / %.2f" % (sm / 1e6, am / 1e6) if sm is not None and am is not None else "-"
            per_chunk = "%.2f" % (sm / cm) if sm is not None and cm else "-"
            bm, bs = _median_of(rs, "tr_beside_max"), _median_of(rs, "tr_beside_spec_max")
            measured = ("%.2f / %.2f" % (bs / cm, bm / cm) if bm is not None and bs is not None and cm
                        else "-")
            lines.append("| %s | %s | %d | %.2f / %.2f | %d, %.2f | %s | %s | %s | %s | %s | %s |" % (
                k[0], k[1], _median_of(rs, "tr_blocked"), _median_of(rs, "tr_wait_s"),
                _median_of(rs, "tr_union_s"), _median_of(rs, "tr_chain"), _median_of(rs, "tr_chain_s"),
                " / ".join("%.2f" % x for x in fe),
                " / ".join("%.2f" % x for x in us) if known else "- (no layer summary)",
                "%.2f" % (sum(us) / sum(fe)) if known and sum(fe) else "-", beside, per_chunk, measured))
        lines += ["", "A read is blocked on the network when the daemon answered it only after a range "
                  "request completed.  Longest chain: the blocked reads each starting at or after the previous "
                  "one ended (so one could not overlap the next, as when the dynamic loader or an import "
                  "waits, gets its answer, then misses again) whose waits add up to the most time; its reads "
                  "and their total wait.  Non-overlap does not prove a dependency: an upper bound of the "
                  "chain of dependent misses.  Fetched ahead beside an on-demand fetch: the bytes other "
                  "requests delivered while it was in flight (each spread evenly over its own duration), "
                  "the most for any one on-demand fetch of the run; at the link's rate, the time they "
                  "added to it at most.  Issue #13 asks that speculation add no more than one chunk "
                  "transfer: spec ÷ largest chunk ≤ 1 (the largest chunk: the biggest single-chunk "
                  "request of the run).  Measured: the bytes of speculation, and of every kind fetching "
                  "ahead, that the daemon counted arriving on the link during one on-demand fetch (its fetch "
                  "trace's `beside_spec` and `beside`), the most of the run, ÷ the largest chunk: the same "
                  "bound without the model (all kinds: stricter, prefetch, replay, background and stream "
                  "count too).  The timeline PNG draws the median run's blocked reads.", ""]

    notes = []
    for img in imgs:
        leg = med.get((img, "legacy", "overlayfs"))
        lim = med.get((img, "esgz-opt", "limit"))
        warm = med.get((img, "warm", "overlayfs"))
        parts = []
        for form in ("esgz", "esgz-opt", PROFILE_FORM):
            sg, ref = med.get((img, form, "stargzd")), med.get((img, form, "reference"))
            if leg and ref:
                parts.append("%s: reference ÷ legacy %.2f" % (form, ref / leg))
            if leg and sg:
                parts.append("%s: stargzd ÷ legacy %.2f" % (form, sg / leg))
            if sg and ref:
                parts.append("%s: stargzd ÷ reference %.2f" % (form, sg / ref))
            if sg and lim:
                parts.append("%s: stargzd ÷ (limit + warm run) %.2f" % (form, sg / (lim + (warm or 0))))
        pf, opt = med.get((img, PROFILE_FORM, "stargzd")), med.get((img, "esgz-opt", "stargzd"))
        if pf and opt:
            parts.append("%s ÷ esgz-opt (stargzd) %.2f" % (PROFILE_FORM, pf / opt))
        if warm is not None:
            parts.append("warm re-run (legacy, image present) %.2f s" % warm)
        if parts:
            notes.append("- %s: %s" % (img, "; ".join(parts)))
    if notes:
        lines += ["## All ratios", ""] + notes
    lines += ["", "Physical limit: compressed bytes the workload needs (manifest + config + every layer's TOC and "
              "footer + the gzip members holding the chunks of the files the workload opens, measured in the "
              "optimized eStargz blobs) ÷ link rate, + 3 round trips (manifest, config + TOCs, file chunks). "
              "It excludes container start; compare lazy totals with limit + warm re-run.", ""]
    return "\n".join(lines)


def cmd_report(argv):
    """report CSV OUT.md LINK_PARAMS MACHINE [LINK_NAME]"""
    import csv
    csv_path, out_md, link, machine = argv[:4]
    link_name = argv[4] if len(argv) > 4 else "default"
    text = report_text(list(csv.DictReader(open(csv_path))), os.path.basename(out_md)[:-3], link, machine,
                       link_name)
    with open(out_md, "w") as f:
        f.write(text)
    print(text)


SERIES = [("legacy", "overlayfs", "legacy (overlayfs)"), ("esgz", "reference", "eStargz, Go reference"),
          ("esgz", "stargzd", "eStargz, stargzd"), ("esgz-opt", "reference", "optimized, Go reference"),
          ("esgz-opt", "stargzd", "optimized, stargzd"), ("esgz+profile", "stargzd", "eStargz + profile, stargzd"),
          ("esgz-opt", "limit", "physical limit")]


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
    print(_timed_one(argv[0], argv[1], argv[argv.index("--") + 1:]))


def _timed_one(expect, logp, cmd):
    import subprocess
    import time
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
    return "%.4f %.4f %d" % (seen if seen is not None else (end if not expect else -1), end, rc)


def cmd_timed_pair(argv):
    """timed-pair EXPECT1 LOG1 EXPECT2 LOG2 -- CMD1... -- CMD2...: runs CMD1 and, if it exits 0,
    CMD2 at once from the same process (no interpreter start or other command between them: the
    time between a pull and its run is time the snapshotter would get for free); prints timed's
    three fields for each ("-1 -1 -1" for a CMD2 not run), then the wall-clock time CMD1 started."""
    import time
    e1, l1, e2, l2 = argv[:4]
    started = time.time()
    rest = argv[argv.index("--") + 1:]
    cut = rest.index("--")
    first = _timed_one(e1, l1, rest[:cut])
    second = _timed_one(e2, l2, rest[cut + 1:]) if first.endswith(" 0") else "-1 -1 -1"
    print(first, second, "%.6f" % started)


def cmd_selftest(argv):
    """selftest: checks the trace parser and the goal lines on synthetic input (tests/run.sh lint);
    prints "N passed, N failed"."""
    import tempfile
    res = {"passed": 0, "failed": 0}

    def check(name, cond):
        res["passed" if cond else "failed"] += 1
        print("%s %s" % ("ok  " if cond else "FAIL", name))

    L = "sha256:aa"
    ev = [
        {"t": 0.0, "ev": "read", "layer": L, "path": "a", "off": 0, "len": 4096, "wait_ms": 10.0, "net": True},
        {"t": 5.0, "ev": "read", "layer": L, "path": "b", "off": 0, "len": 4096, "wait_ms": 10.0, "net": True},
        {"t": 20.0, "ev": "read", "layer": L, "path": "c", "off": 0, "len": 4096, "wait_ms": 30.0, "net": True},
        {"t": 25.0, "ev": "read", "layer": L, "path": "d", "off": 0, "len": 4096, "wait_ms": 5.0, "net": False},
        {"t": 60.0, "ev": "read", "layer": L, "path": "e", "off": 0, "len": 4096, "wait_ms": 5.0, "net": True},
        {"t": 1.0, "ev": "fetch", "layer": L, "kind": "ondemand", "off": 0, "len": 1000, "chunks": 1, "ms": 9, "ok": True,
         "beside": 320, "beside_spec": 200},
        {"t": 40.0, "ev": "fetch", "layer": L, "kind": "ondemand", "off": 4000, "len": 10, "chunks": 1, "ms": 1,
         "ok": True, "beside": 0, "beside_spec": 0},
        {"t": 2.0, "ev": "fetch", "layer": L, "kind": "spec", "off": 1000, "len": 500, "chunks": 1, "ms": 9, "ok": True},
        {"t": 3.0, "ev": "fetch", "layer": L, "kind": "background", "off": 1500, "len": 300, "chunks": 1, "ms": 9,
         "ok": False},
    ]
    layer = {"t": 900.0, "ev": "layer", "layer": L,
             "fetched": {"ondemand": 1000, "spec": 500, "prefetch": 0, "background": 300, "stream": 0},
             "used": {"ondemand": 1000, "spec": 100, "prefetch": 0, "background": 0, "stream": 0}}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "trace-1.jsonl"), "w") as f:
            f.write("".join(json.dumps(e) + "\n" for e in ev + [layer]))
            f.write('{"t": 901.0, "ev": "read", "lay')   # a daemon killed mid-line
        m = trace_metrics(read_trace(trace_files(d)))
        check("blocked reads: net only", m["blocked"] == 4)
        check("no toc event: no first layer asked", m["first_asked_ms"] is None)
        check("wait sum", abs(m["wait_ms"] - 55.0) < 1e-9)
        check("wait union (overlaps counted once)", abs(m["union_ms"] - 50.0) < 1e-9)
        check("longest chain: reads", m["chain"] == 3)
        check("longest chain: ms", abs(m["chain_ms"] - 45.0) < 1e-9)
        check("longest chain: no two overlap", all(m["reads"][a][1] <= m["reads"][b][0]
              for a, b in zip(m["chain_idx"], m["chain_idx"][1:])))
        check("bytes from the layer summary", m["fetched"]["spec"] == 500 and m["used"]["spec"] == 100)
        check("useful ÷ fetched", abs(m["useful"] - 1100 / 1800) < 1e-9)
        # the on-demand fetch runs 1..10 ms; the spec one 2..11 (8 of its 9 ms beside it), the
        # background one failed (left out)
        check("spec beside a miss", abs(m["spec_in_miss"] - 500 * 8 / 9) < 1e-6)
        check("all kinds beside a miss", abs(m["ahead_in_miss"] - 500 * 8 / 9) < 1e-6)
        check("largest chunk", m["chunk_max"] == 1000)
        check("beside, as the daemon counted it: the most of any on-demand fetch", m["beside_max"] == 320)
        check("beside, speculation's", m["beside_spec_max"] == 200)
        check("beside: no on-demand fetch, none beside it", beside_measured(ev[:5] + ev[7:]) == 0)
        check("beside: not counted by an older daemon",
              beside_measured([{k: v for k, v in e.items() if k != "beside"} for e in ev]) is None)
        # without the summary: fetch events, failed ones left out, used unknown
        m2 = trace_metrics(ev)
        check("bytes from fetch events", m2["fetched"]["ondemand"] == 1010 and m2["fetched"]["background"] == 0
              and m2["used"] is None and m2["useful"] is None)
        import contextlib
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cmd_trace([d])
        fields = buf.getvalue().strip().split(",")
        check("trace CSV fields", len(fields) == len(TRACE_FIELDS) and fields[0] == "4" and fields[3] == "3")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cmd_trace([os.path.join(d, "none")])
        check("no trace: empty fields", buf.getvalue().strip() == "," * (len(TRACE_FIELDS) - 1))
    # a chain where the most reads are not the longest wait
    _, ms = longest_chain([(0, 1, ""), (1, 2, ""), (2, 3, ""), (0, 10, "")])
    check("longest chain by time, not count", ms == 10)
    check("empty trace", trace_metrics([])["chain"] == 0 and union_ms([]) == 0)

    # goal lines
    base = dict.fromkeys(["pull_s", "run_s", "run_exit_s", "warm_s", "bytes", "pull_bytes", "requests",
                          "remote_layers"] + TRACE_FIELDS, "")

    def row(form, sn, total, nbytes, warm="", **kw):
        r = dict(base, image="python", form=form, snapshotter=sn, run="1", status="ok", total_s=str(total),
                 bytes=str(nbytes), warm_s=str(warm))
        r.update(kw)
        return r
    rows = [row("legacy", "overlayfs", 8.0, 65e6, warm=0.3),
            row("esgz", "stargzd", 2.0, 7e6, tr_blocked="10", tr_wait_s="1.5", tr_union_s="1.2", tr_chain="6",
                tr_chain_s="1.0", tr_fetched_ondemand="3000000", tr_fetched_spec="1000000", tr_fetched_prefetch="0",
                tr_fetched_background="0", tr_fetched_stream="0", tr_used_ondemand="2000000", tr_used_spec="0",
                tr_used_prefetch="0", tr_used_background="0", tr_used_stream="0", tr_fetched_profile="0",
                tr_used_profile="0"),
            row("esgz", "reference", 2.6, 5e6), row("esgz-opt", "stargzd", 1.0, 5e6),
            row("esgz-opt", "limit", 0.5, 4e6)]
    text = report_text(rows, "t", "link", "machine", "default")

    def check_line(text, start, wants):
        """The report line starting with START has each (check name, wanted part) of WANTS."""
        line = ([l for l in text.split("\n") if l.startswith(start)] or [None])[0]
        for name, want in wants:
            check(name, line is not None and want in line)
    check_line(text, "| python | 0.77", [
        ("goal row: stargzd ÷ reference not met", "0.77, **not met** (goal ≤ 0.50)"),
        ("goal row: ÷ legacy met", "0.25, met (goal ≤ 1.00)"),
        ("goal row: ÷ (limit + warm)", "1.25, **not met** (goal ≤ 1.20)"),
        ("goal row: bytes ÷ limit bytes", "1.75, met (goal ≤ 2.00)"),
        ("goal row: useful ÷ fetched", "| 0.50 |")])
    check("miss timeline row", "| python | esgz | 10 | 1.50 / 1.20 | 6, 1.00 | 3.00 / 1.00 / 0.00 / 0.00 / 0.00 "
          "/ 0.00 | 2.00 / 0.00 / 0.00 / 0.00 / 0.00 / 0.00 | 0.50 |" in text)
    check("no issue #14 goals without a profile row", "issue #14" not in text)
    near = report_text(rows, "t", "link", "machine", "near")
    check("near link: no reference goal", "0.77 (no goal on this link)" in near)

    # issue #14: the profile rows, their goal lines and the kind "profile" in the miss timeline
    ptr = {"tr_blocked": "1", "tr_wait_s": "0.1", "tr_union_s": "0.1", "tr_chain": "1", "tr_chain_s": "0.1"}
    ptr.update({"tr_fetched_" + k: "0" for k in FETCH_KINDS})
    ptr.update({"tr_used_" + k: "0" for k in FETCH_KINDS})
    ptr.update(tr_fetched_ondemand="500000", tr_used_ondemand="500000", tr_fetched_profile="4000000",
               tr_used_profile="3500000")
    ptr.update(tr_asked_s="0.3")
    prow = row(PROFILE_FORM, "stargzd", 0.9, 4.4e6, profiles_replayed="2", **ptr)
    failed = dict(row(PROFILE_FORM, "stargzd", 2.0, 7e6, image="imports"), status="fail:no-profile")
    text = report_text(rows + [dict(r, image="imports") for r in rows] + [failed], "t", "link", "machine", "default")
    check("profile goal: a failed row says so", "| imports | **failed** (fail:no-profile) | **failed** "
          "(fail:no-profile) |" in text)
    rows14 = rows + [prow, row(PROFILE_FORM + "-imports", "stargzd", 2.1, 7e6, profiles_replayed="1")]
    text = report_text(rows14, "t", "link", "machine", "default")
    check_line(text, "| python | 1.12", [
        ("profile goal: ÷ (limit + warm) met", "1.12, met (goal ≤ 1.15)"),
        ("profile goal: bytes ÷ limit met", "1.10, met (goal ≤ 1.20)"),
        ("profile goal: blocked reads and layers replaying", "| 10 → 1 | 2 |"),
        ("profile goal: the client's time before the first Prepare", "| 0.30 s; 0.82 |"),
        ("cross-workload: slower is not met", "imports's: 1.05, **not met** (goal ≤ 1.00)")])
    check("miss timeline: profile bytes fetched and used", "| python | esgz+profile | 1 | 0.10 / 0.10 | 1, 0.10 "
          "| 0.50 / 0.00 / 0.00 / 0.00 / 0.00 / 4.00 | 0.50 / 0.00 / 0.00 / 0.00 / 0.00 / 3.50 | 0.89 |" in text)
    order = [l.split(" | ")[1] for l in text.split("\n") if l.startswith("| python | ") and "snapshotter" not in l]
    check("result rows: profile forms after esgz-opt, before the limit", order[:7] == [
        "legacy", "esgz", "esgz", "esgz-opt", PROFILE_FORM, PROFILE_FORM + "-imports", "esgz-opt"])
    # a trace whose layer summary has the kind "profile"
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "trace-2.jsonl"), "w") as f:
            # "spans": a vectored request (len = its spans' sum), a field the timeline ignores
            f.write(json.dumps({"t": 1.0, "ev": "fetch", "layer": L, "kind": "profile", "off": 0, "len": 7000,
                                "chunks": 5, "spans": 3, "ms": 40, "ok": True}) + "\n")
            f.write(json.dumps({"t": 99.0, "ev": "layer", "layer": L, "fetched": {"profile": 7000, "ondemand": 10},
                                "used": {"profile": 6000, "ondemand": 10}}) + "\n")
        m = trace_metrics(read_trace(trace_files(d)))
        check("trace: kind profile from the layer summary", m["fetched"]["profile"] == 7000
              and m["used"]["profile"] == 6000 and m["fetched"]["spec"] == 0)
        m = trace_metrics(read_trace(trace_files(d))[:1])
        check("trace: kind profile from fetch events", m["fetched"]["profile"] == 7000)
    # the trace's clock moved onto the daemon's start, and the first layer asked after the pull's
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "trace-3.jsonl"), "w") as f:
            f.write('{"t":0.000,"ev":"start","epoch":1000.100000}\n')
            f.write(json.dumps({"t": 400.0, "ev": "toc", "layer": L, "ms": 150.0}) + "\n")
            f.write(json.dumps({"t": 410.0, "ev": "toc", "layer": "sha256:bb", "ms": 5.0}) + "\n")
            f.write(json.dumps({"t": 600.0, "ev": "read", "layer": L, "path": "a", "off": 0, "len": 1,
                                "wait_ms": 10.0, "net": True}) + "\n")
        with open(os.path.join(d, "times.json"), "w") as f:
            json.dump({"daemon_start": 1000.0, "pull_start": 1000.2, "run_start": 1000.9}, f)
        ev3 = read_trace(trace_files(d), 1000.0)
        check("trace: times moved by the start line's epoch", abs(ev3[0]["t"] - 500.0) < 1e-6
              and abs(ev3[2]["t"] - 700.0) < 1e-6 and all(e["ev"] != "start" for e in ev3))
        check("trace: without the daemon's start, the trace's own clock", read_trace(trace_files(d))[0]["t"] == 400.0)
        check("trace: the first layer asked", abs(trace_metrics(ev3)["first_asked_ms"] - 500.0) < 1e-6)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cmd_trace([d])
        f3 = buf.getvalue().strip().split(",")
        check("trace CSV: first layer asked, s after the pull start",
              len(f3) == len(TRACE_FIELDS) and f3[TRACE_FIELDS.index("tr_asked_s")] == "0.3000")
    # a CSV from before the kind "profile": its used bytes still known
    old = [{k: v for k, v in rows[1].items() if not k.endswith("_profile")}]
    check("old CSV without the profile columns", _median_of(old, "tr_used_profile") == 0.0
          and _median_of(old, "tr_fetched_profile") is None)
    print("%d passed, %d failed" % (res["passed"], res["failed"]))
    sys.exit(1 if res["failed"] else 0)


if __name__ == "__main__":
    cmds = {"timed": cmd_timed, "timed-pair": cmd_timed_pair, "chartdata": cmd_chartdata, "layer": cmd_layer, "oci": cmd_oci, "accessed": cmd_accessed, "physlimit": cmd_physlimit,
            "report": cmd_report, "trace": cmd_trace, "timeline": cmd_timeline, "selftest": cmd_selftest}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]](sys.argv[2:])
