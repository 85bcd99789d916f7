#!/usr/bin/env python3
"""Test inputs and checks for tests/integration/stargzify.sh.

  stargzify_tar.py gen KIND OUT.tar          writes a test layer (KIND: see GENERATORS)
  stargzify_tar.py compare IN.tar OUT.tar [PRIO_LIST]
      OUT.tar is the gunzipped eStargz blob.  Checks that it holds the input's entries (after
      the reference's rules: landmark and TOC entries dropped, the last entry of a name wins;
      prioritized paths first) with the same metadata and bytes, the landmark where it belongs,
      and stargz.index.json last; also that every header block is copied byte for byte.
  stargzify_tar.py readback IN.tar READBACK.jsonl
      Compares the input's entries (after dedup) with what our reader (tests/helpers/
      stargzify_readback) sees: type, mode, owner, mtime (whole seconds), link targets, device
      numbers, xattrs and content digests.
  stargzify_tar.py toc-compare OURS.jsonl REF.jsonl
      Compares two `estargz-ref list` outputs, ignoring offsets and the userName/groupName
      elision (each writer elides names already given for the same id).
"""
import io
import json
import os
import posixpath
import sys
import tarfile

LANDMARKS = (".prefetch.landmark", ".no.prefetch.landmark")
TOC = "stargz.index.json"


def clean(name):
    return posixpath.normpath("/" + name).lstrip("/") if name not in ("", "/") else ""


def clean_go(name):
    # Go: strings.TrimPrefix(path.Clean("/"+name), "/")
    p = posixpath.normpath("/" + name)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    return p[1:] if p.startswith("/") else p


def add(tf, name, type=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mtime = kw.pop("mtime", 1700000000)
    ti.mode = kw.pop("mode", 0o644)
    for k, v in kw.items():
        setattr(ti, k, v)
    if type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def pattern(n, seed):
    # incompressible-ish but deterministic
    out = bytearray()
    x = seed * 2654435761 & 0xffffffff
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0x7fffffff
        out += x.to_bytes(4, "little")
    return bytes(out[:n])


def gen_pax(path):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "./", tarfile.DIRTYPE, mode=0o755, uname="root", gname="root")
        add(tf, "./etc/", tarfile.DIRTYPE, mode=0o755, uname="root", gname="root")
        add(tf, "./etc/hostname", data=b"box\n", uname="root", gname="root")
        add(tf, "./etc/empty", data=b"", uid=1000, gid=1000, uname="user", gname="users")
        add(tf, "./etc/empty2", data=b"", uid=1000, gid=1000, uname="user", gname="users")
        add(tf, "./etc/setuid", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0)
        add(tf, "./etc/sticky/", tarfile.DIRTYPE, mode=0o1777)
        add(tf, "./etc/link", tarfile.SYMTYPE, linkname="hostname", mode=0o777)
        add(tf, "./etc/hard", tarfile.LNKTYPE, linkname="./etc/hostname")
        add(tf, "./dev/", tarfile.DIRTYPE, mode=0o755)
        add(tf, "./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add(tf, "./dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o660)
        add(tf, "./dev/big", tarfile.BLKTYPE, devmajor=259, devminor=1048575, mode=0o660)
        add(tf, "./dev/fifo", tarfile.FIFOTYPE, mode=0o644)
        # xattrs (PAX SCHILY.xattr.*), one binary value, one with a NUL
        ti = tarfile.TarInfo("./etc/capable")
        ti.mtime, ti.mode, ti.size = 1700000000, 0o755, 5
        ti.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00",
                          "SCHILY.xattr.user.comment": "hello world",
                          "SCHILY.xattr.user.empty": ""}
        tf.addfile(ti, io.BytesIO(b"caps\n"))
        ti = tarfile.TarInfo("./etc/xdir/")
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
        tf.addfile(ti)
        # long names and link targets (PAX path / linkpath)
        long_dir = "./" + "/".join(["d%02d-%s" % (i, "x" * 20) for i in range(8)])
        add(tf, long_dir + "/", tarfile.DIRTYPE, mode=0o755)
        add(tf, long_dir + "/file-with-a-long-name-" + "y" * 120, data=b"long\n")
        add(tf, "./etc/longlink", tarfile.SYMTYPE, linkname="/" + "z" * 200, mode=0o777)
        add(tf, "./etc/longhard", tarfile.LNKTYPE, linkname=long_dir + "/file-with-a-long-name-" + "y" * 120)
        # sub-second mtimes (PAX mtime): rounding goes to the nearest second
        add(tf, "./t/", tarfile.DIRTYPE, mode=0o755)
        add(tf, "./t/round-down", data=b"a", mtime=1700000000.25)
        add(tf, "./t/round-up", data=b"b", mtime=1700000000.75)
        add(tf, "./t/half", data=b"c", mtime=1700000000.5)
        add(tf, "./t/epoch", data=b"d", mtime=0)
        add(tf, "./t/old", data=b"e", mtime=-86400 * 365)
        add(tf, "./t/future", data=b"f", mtime=4102444800)
        # big ids need PAX uid/gid; unicode user names
        add(tf, "./t/bigid", data=b"g", uid=3000000, gid=4000000, uname="ünïcode", gname="grüppe")
        add(tf, "./t/user2", data=b"h", uid=1000, gid=1000, uname="other", gname="users")
        # names that need JSON escaping
        for n in ['q"uote', "back\\slash", "<html>&amp;", "tab\tnl\nctl\x01\x7f", "sep\u2028\u2029", "ümlaut-日本"]:
            add(tf, "./esc/" + n, data=n.encode())
        # large files: several chunks at the test chunk size (64 KiB) and at 4 MiB
        add(tf, "./big/", tarfile.DIRTYPE, mode=0o755)
        add(tf, "./big/exact-64k", data=pattern(65536, 1))
        add(tf, "./big/multi", data=pattern(65536 * 5 + 123, 2))
        add(tf, "./big/9m", data=pattern(9 * 1024 * 1024 + 7, 3))
        add(tf, "./big/zeros", data=bytes(300000))
        # duplicates: the later entry wins (moved to its position); cleaned names collide
        add(tf, "./dup", data=b"first")
        add(tf, "dup", data=b"second")
        add(tf, "./a//b/../dup2", data=b"one")
        add(tf, "a/dup2", data=b"two")
        # bookkeeping entries in the input are dropped
        add(tf, ".no.prefetch.landmark", data=b"\x0f")
        add(tf, "./stargz.index.json", data=b"{}")
        add(tf, "./z-last", data=b"last\n")


def gen_gnu(path):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tf:
        add(tf, "gnu/", tarfile.DIRTYPE, mode=0o755, uname="root", gname="root")
        add(tf, "gnu/" + "L" * 150, data=b"gnu long name\n")
        add(tf, "gnu/ll", tarfile.SYMTYPE, linkname="K" * 150, mode=0o777)
        add(tf, "gnu/hl", tarfile.LNKTYPE, linkname="gnu/" + "L" * 150)
        add(tf, "gnu/bigid", data=b"x", uid=2 ** 24, gid=2 ** 22)   # base-256 numbers
        add(tf, "gnu/latin1-\udce9t\udce9", data=b"not utf-8")     # raw bytes 0xe9
        add(tf, "gnu/empty", data=b"")
        add(tf, "gnu/chunks", data=pattern(200000, 4))


def gen_ustar(path):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        add(tf, "u/", tarfile.DIRTYPE, mode=0o755)
        # a name split into ustar prefix + name
        add(tf, "u/" + "p" * 90 + "/" + "n" * 90, data=b"prefix\n")
        add(tf, "u/f", data=b"ustar\n", uid=42, gid=43, uname="", gname="")


def gen_emptytar(path):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT):
        pass


def gen_onlydirs(path):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(50):
            add(tf, "dir%02d/" % i, tarfile.DIRTYPE, mode=0o755)


GENERATORS = {"pax": gen_pax, "gnu": gen_gnu, "ustar": gen_ustar, "emptytar": gen_emptytar,
              "onlydirs": gen_onlydirs}


def members(path):
    raw = open(path, "rb").read()
    out = []
    if not raw:
        return out   # a 0-byte layer has no entries (tarfile refuses empty files)
    with tarfile.open(path, "r:", encoding="utf-8", errors="surrogateescape") as tf:
        for ti in tf:
            data = raw[ti.offset_data:ti.offset_data + ti.size] if ti.isreg() else b""
            out.append((ti, data, raw[ti.offset:ti.offset_data]))
    return out


def expected(inp, prio):
    ents = [m for m in inp if clean_go(m[0].name) not in LANDMARKS and clean_go(m[0].name) != TOC]
    # the last entry of a cleaned name wins, at its own position
    last = {}
    for i, m in enumerate(ents):
        last[clean_go(m[0].name)] = i
    ents = [m for i, m in enumerate(ents) if last[clean_go(m[0].name)] == i]
    if not prio:
        return [None] + ents
    by = {clean_go(m[0].name): m for m in ents}
    moved, out = set(), []

    def move(name, depth=0):
        c = clean_go(name)
        if c in moved or depth > 100:
            return
        if c != "":
            parent = posixpath.dirname(c)
            move(parent, depth + 1)
        m = by.get(c)
        if m is None:
            return
        if m[0].islnk():
            move(m[0].linkname, depth + 1)
        if c not in moved:
            moved.add(c)
            out.append(m)

    for p in prio:
        move(p)
    return out + [None] + [m for m in ents if clean_go(m[0].name) not in moved]


def compare(inp_path, out_path, prio_path=None):
    prio = []
    if prio_path:
        prio = [l.strip() for l in open(prio_path) if l.strip() and not l.startswith("#")]
    want = expected(members(inp_path), prio)
    got = members(out_path)
    errors = []
    if not got or got[-1][0].name != TOC:
        errors.append("last entry is not %s" % TOC)
    else:
        got = got[:-1]
    if len(got) != len(want):
        errors.append("%d entries, want %d: %s" % (len(got), len(want), [g[0].name for g in got][:20]))
    for w, g in zip(want, got):
        gi, gd, gh = g
        if w is None:
            lm = ".prefetch.landmark" if prio else ".no.prefetch.landmark"
            if gi.name != lm or gd != b"\x0f" or not gi.isreg():
                errors.append("expected landmark %s, got %s" % (lm, gi.name))
            continue
        wi, wd, wh = w
        for attr in ("name", "type", "mode", "uid", "gid", "uname", "gname", "mtime", "linkname",
                     "devmajor", "devminor", "size", "pax_headers"):
            a, b = getattr(wi, attr), getattr(gi, attr)
            if attr in ("devmajor", "devminor") and not (wi.ischr() or wi.isblk()):
                continue
            if a != b:
                errors.append("%s: %s differs: %r != %r" % (wi.name, attr, b, a))
        if wd != gd:
            errors.append("%s: content differs" % wi.name)
        if wh != gh:
            errors.append("%s: header blocks differ" % wi.name)
    for e in errors[:30]:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def toc_compare(ours, ref):
    def load(p):
        ents = [json.loads(l) for l in open(p)]
        names = {"userName": {}, "groupName": {}}
        for e in ents:
            e.pop("offset", None)
            if e["type"] == "chunk":
                continue
            for k, idk in (("userName", "uid"), ("groupName", "gid")):
                i = e.get(idk, 0)
                if k in e:
                    names[k][i] = e[k]
                elif i in names[k]:
                    e[k] = names[k][i]
        return ents
    a, b = load(ours), load(ref)
    bad = 0
    if len(a) != len(b):
        print("TOC entry counts differ: %d vs %d" % (len(a), len(b)), file=sys.stderr)
        bad = 1
    for x, y in zip(a, b):
        if x != y:
            print("TOC entry differs:\n ours %s\n ref  %s" % (x, y), file=sys.stderr)
            bad = 1
            break
    return bad


def go_round(mtime):
    # the TOC keeps whole seconds: Go's Round(time.Second), halves up
    import math
    sec = math.floor(mtime)
    return sec + (1 if mtime - sec >= 0.5 else 0)


def readback(inp_path, rb_path):
    import hashlib
    nodes = {}
    for l in open(rb_path):
        n = json.loads(l)
        path = bytes.fromhex(n["path"]).decode("utf-8", "surrogateescape")
        nodes[path] = n
    want = [m for m in expected(members(inp_path), []) if m is not None]
    errors = []
    types = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir",
             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
             tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}
    for ti, data, _ in want:
        name = clean_go(ti.name)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            continue   # not valid UTF-8: JSON (so the TOC) cannot hold it; the reference is lossy too
        n = nodes.get(name)
        if n is None:
            errors.append("%r: not found by the reader" % name)
            continue
        def want_eq(what, got, exp):
            if got != exp:
                errors.append("%r: %s %r, want %r" % (name, what, got, exp))
        want_eq("type", n["type"], types[ti.type])
        if ti.islnk():
            want_eq("hardlink target", bytes.fromhex(n.get("link", "")).decode("utf-8", "surrogateescape"),
                    clean_go(ti.linkname))
            continue
        want_eq("mode", n["mode"], ti.mode & 0o7777)
        want_eq("uid", n["uid"], ti.uid)
        want_eq("gid", n["gid"], ti.gid)
        want_eq("mtime", n["mtime"], go_round(ti.mtime))
        if ti.issym():
            want_eq("symlink target", bytes.fromhex(n.get("link", "")).decode("utf-8", "surrogateescape"), ti.linkname)
        if ti.ischr() or ti.isblk():
            want_eq("devices", (n["devMajor"], n["devMinor"]), (ti.devmajor, ti.devminor))
        if ti.isreg():
            want_eq("size", n["size"], ti.size)
            want_eq("content sha256", n.get("sha256"), hashlib.sha256(data).hexdigest())
        xw = {k[len("SCHILY.xattr."):].encode("utf-8", "surrogateescape").hex():
              v.encode("utf-8", "surrogateescape").hex()
              for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        want_eq("xattrs", n["xattrs"], xw)
    for e in errors[:30]:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def main():
    cmd = sys.argv[1]
    if cmd == "gen":
        GENERATORS[sys.argv[2]](sys.argv[3])
        return 0
    if cmd == "compare":
        return compare(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    if cmd == "readback":
        return readback(sys.argv[2], sys.argv[3])
    if cmd == "toc-compare":
        return toc_compare(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
