#!/usr/bin/env python3
"""Compares two directory trees entry by entry: names, types, modes, owners, mtimes (whole
seconds), nlink, device numbers, symlink targets, xattrs and file contents (sha256).

    treecmp.py A B [--ignore NAME ...]

Prints the differences and exits 1 if there are any.  Used to check a lazily mounted layer
against what a full pull extracts from the same blob."""
import hashlib, os, stat, sys


def xattrs(p):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(p, n, follow_symlinks=False) for n in sorted(names)}


def describe(root, rel):
    p = os.path.join(root, rel) if rel else root
    st = os.lstat(p)
    d = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
         "gid": st.st_gid, "mtime": int(st.st_mtime), "xattrs": xattrs(p)}
    if stat.S_ISREG(st.st_mode):
        d["nlink"] = st.st_nlink
        d["size"] = st.st_size
        with open(p, "rb") as f:
            d["sha256"] = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(p)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    elif stat.S_ISDIR(st.st_mode):
        d["entries"] = sorted(os.listdir(p))
    return d


def walk(root, ignore):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        for n in list(dirnames):
            if n in ignore and not rel:
                dirnames.remove(n)
        for n in dirnames + filenames:
            if not rel and n in ignore:
                continue
            r = os.path.join(rel, n) if rel else n
            out[r] = describe(root, r)
    root_d = describe(root, "")
    root_d["entries"] = [e for e in root_d["entries"] if e not in ignore]
    out["."] = root_d
    return out


def main():
    a, b = sys.argv[1], sys.argv[2]
    ignore = set()
    args = sys.argv[3:]
    while args:
        if args[0] == "--ignore":
            ignore.add(args[1])
            args = args[2:]
        else:
            sys.exit("unknown argument " + args[0])
    ta, tb = walk(a, ignore), walk(b, ignore)
    diffs = 0
    for k in sorted(set(ta) | set(tb)):
        if k not in ta or k not in tb:
            print(f"only in {'B' if k not in ta else 'A'}: {k}")
            diffs += 1
            continue
        if k == ".":
            ta[k].pop("mtime"); tb[k].pop("mtime")   # the mount point's own time
        for f in sorted(set(ta[k]) | set(tb[k])):
            if ta[k].get(f) != tb[k].get(f):
                print(f"{k}: {f}: {ta[k].get(f)!r} != {tb[k].get(f)!r}")
                diffs += 1
    print(f"{len(ta)} entries compared, {diffs} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
