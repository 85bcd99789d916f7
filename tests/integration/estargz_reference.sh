#!/usr/bin/env bash
# Cross-compatibility (issue 3, acceptance (a)): layers converted by the reference eStargz
# implementation (Debian's Go estargz package, through tests/helpers/estargz-ref) are read
# correctly by stargzd's reader.  For each generated tar: convert with the reference, list
# the blob with tools/estargz-ls (TOC digest verified, every file read back chunk by chunk
# with chunk verification), and compare every entry -- type, mode, owner, size, mtime, link
# target, device numbers, xattrs, content sha256 -- with the tar itself.
#
# Prints "N passed, N failed[, N skipped]" last; exits non-zero on failure.
#   ESTARGZ_LS   the listing tool (default: $TOP/build/tools/estargz-ls)
set -uo pipefail
TOP=${STARGZD_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
LS=${ESTARGZ_LS:-$TOP/build/tools/estargz-ls}
pass=0 fail=0 skip=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ok()   { echo "ok   $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL $1"; fail=$((fail + 1)); }
summary() {
  if [[ $skip -ne 0 ]]; then echo "$pass passed, $fail failed, $skip skipped"
  else echo "$pass passed, $fail failed"; fi
  [[ $fail -eq 0 ]]
  exit
}

if [[ ! -x $LS ]]; then
  echo "FAIL: $LS is not built (make all)"
  fail=1; summary
fi
REF=$(ESTARGZ_REF_DIR=${ESTARGZ_REF_DIR:-$TOP/build/estargz-ref} bash "$TOP/tests/helpers/estargz-ref/build.sh")
rc=$?
if [[ $rc -eq 77 ]]; then
  echo "skip: the reference helper cannot be built (no Go or no estargz sources)"
  skip=1; summary
elif [[ $rc -ne 0 || ! -x $REF ]]; then
  echo "FAIL: building the reference helper"
  fail=1; summary
fi

# Makes the test tars and, for each, the expected listing in estargz-ls -l format.
python3 - "$work" <<'PY'
import hashlib, io, os, random, sys, tarfile
work = sys.argv[1]
rnd = random.Random(1234)

def norm(name):
    parts = [p for p in name.split('/') if p not in ('', '.')]
    return '/'.join(parts)

class T:
    def __init__(self, name):
        self.name, self.members = name, []
    def add(self, name, kind='reg', data=b'', mode=0o644, uid=0, gid=0, uname='', gname='',
            link='', dev=(0, 0), xattrs=None, mtime=1600000000):
        ti = tarfile.TarInfo(name)
        ti.type = {'reg': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE,
                   'hardlink': tarfile.LNKTYPE, 'char': tarfile.CHRTYPE,
                   'block': tarfile.BLKTYPE, 'fifo': tarfile.FIFOTYPE}[kind]
        ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = mode, uid, gid, uname, gname
        ti.mtime, ti.linkname = mtime, link
        ti.devmajor, ti.devminor = dev
        ti.size = len(data) if kind == 'reg' else 0
        if xattrs:
            ti.pax_headers = {'SCHILY.xattr.' + k: v for k, v in xattrs.items()}
        self.members.append((ti, data, kind, xattrs or {}))
    def write(self):
        with tarfile.open(os.path.join(work, self.name + '.tar'), 'w', format=tarfile.PAX_FORMAT) as tf:
            for ti, data, _, _ in self.members:
                tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
        lines = []
        for ti, data, kind, xattrs in self.members:
            name = norm(ti.name) or '.'
            base = name.rsplit('/', 1)[-1]
            if base == '.wh..wh..opq':
                lines.append(f"{name}\treg\t-\t-\t-\t0\t-\t\t0,0\t-\t\t-")
                continue
            link = ti.linkname if kind == 'symlink' else (norm(ti.linkname) if kind == 'hardlink' else '')
            sha = 'sha256:' + hashlib.sha256(data).hexdigest() if kind == 'reg' else '-'
            dev = f"{ti.devmajor},{ti.devminor}" if kind in ('char', 'block') else '0,0'
            xa = ';'.join(f"{k}={v.encode().hex()}" for k, v in sorted(xattrs.items()))
            size = len(data) if kind == 'reg' else 0
            lines.append(f"{name}\t{kind}\t{ti.mode & 0o7777:04o}\t{ti.uid}\t{ti.gid}\t{size}\t{ti.mtime}\t{link}\t{dev}\t{sha}\t{xa}\t-")
        with open(os.path.join(work, self.name + '.want'), 'w') as f:
            f.write(''.join(l + '\n' for l in sorted(lines)))

def blob(n):
    return bytes(rnd.getrandbits(8) for _ in range(n))

t = T('all-types')
t.add('./', 'dir', mode=0o755)
t.add('etc/', 'dir', mode=0o750, uid=1, gid=2, uname='daemon', gname='adm')
t.add('etc/passwd', data=b'root:x:0:0::/root:/bin/sh\n', mode=0o644, uname='root', gname='root')
t.add('etc/empty', data=b'', mode=0o600)
t.add('etc/setuid', data=b'#!/bin/sh\n', mode=0o4755)
t.add('etc/sym', 'symlink', link='passwd', mode=0o777)
t.add('etc/abs-sym', 'symlink', link='/etc/passwd', mode=0o777)
t.add('etc/hard', 'hardlink', link='etc/passwd')
t.add('dev/', 'dir', mode=0o755)
t.add('dev/null', 'char', dev=(1, 3), mode=0o666)
t.add('dev/sda', 'block', dev=(8, 0), mode=0o660)
t.add('dev/pipe', 'fifo', mode=0o644)
t.add('x/', 'dir', xattrs={'user.dir': 'on a dir'})
t.add('x/attrs', data=b'x', xattrs={'user.a': 'alpha', 'user.b': 'beta', 'trusted.overlay.x': 'y'})
long = 'deep/' + '/'.join(['d' * 40] * 4) + '/' + 'f' * 120
t.add(long, data=b'long name via PAX\n', mode=0o640, uid=1000, gid=1000, mtime=1234567890)
t.add('large', data=blob(300000), mode=0o644)
t.write()

t = T('whiteouts')
t.add('usr/', 'dir')
t.add('usr/.wh.removed', data=b'')
t.add('opt/', 'dir')
t.add('opt/.wh..wh..opq', data=b'')
t.add('opt/kept', data=b'new')
t.write()

t = T('implied-dirs')
t.add('a/b/c/file', data=b'no parents in the tar')
t.add('a/b/other', data=b'x' * 5000)
t.write()

t = T('empty-layer')
t.write()

t = T('many-small')
for i in range(300):
    t.add(f"node_modules/p{i // 30}/f{i}.js", data=blob(rnd.randint(0, 4096)))
t.write()

t = T('multi-chunk-default')
t.add('big', data=blob(9 * 1024 * 1024 + 17))
t.add('after', data=b'after big')
t.write()
PY
[[ $? -eq 0 ]] || { bad "generating test tars"; summary; }

check() {   # name, convert options...
  local name=$1; shift
  local out digest
  if ! out=$("$REF" convert "$@" "$work/$name.tar" "$work/$name.blob" 2>"$work/$name.err"); then
    bad "$name: reference convert failed: $(head -c 300 "$work/$name.err")"; return
  fi
  digest=$(awk '$1 == "tocDigest" {print $2}' <<<"$out")
  if ! "$LS" -d "$digest" -l "$work/$name.blob" >"$work/$name.raw" 2>"$work/$name.err"; then
    bad "$name: estargz-ls refused the reference blob: $(head -c 300 "$work/$name.err")"; return
  fi
  # Implied directories (and the implied root) are not in the tar, nor are the converter's
  # bookkeeping entries (the landmark and stargz.index.json, which holds the TOC itself).
  awk -F'\t' '$12 != "implied" && $1 != ".prefetch.landmark" && $1 != ".no.prefetch.landmark" &&
               $1 != "stargz.index.json"' "$work/$name.raw" | sort >"$work/$name.got"
  if ! awk -F'\t' -v d="$digest" '$1 == "stargz.index.json" && $2 == "reg" && $10 == d {f = 1}
                               END {exit !f}' "$work/$name.raw"; then
    bad "$name: stargz.index.json is not listed with the TOC as its content"; return
  fi
  if diff -u "$work/$name.want" "$work/$name.got" >"$work/$name.diff"; then
    ok "$name ($(wc -l <"$work/$name.want") entries)"
  else
    bad "$name: listing differs from the tar:"; head -n 20 "$work/$name.diff" | sed 's/^/    /'
  fi
}

check all-types -chunk-size 65536
check whiteouts
check implied-dirs
check empty-layer
check many-small
check multi-chunk-default

# Prioritized files: the landmark is listed apart and the prefetch region is recorded.
printf 'etc/passwd\n' >"$work/prio"
check all-types -chunk-size 65536 -prioritize "$work/prio"

# The reader refuses the same blob when the digest is wrong or missing.
name=all-types
"$REF" convert -chunk-size 65536 "$work/$name.tar" "$work/$name.blob" >/dev/null 2>&1
if ! "$LS" -d sha256:0000000000000000000000000000000000000000000000000000000000000000 \
     "$work/$name.blob" >/dev/null 2>"$work/err" && grep -q toc-digest "$work/err"; then
  ok "wrong TOC digest refused"
else
  bad "wrong TOC digest was not refused: $(cat "$work/err")"
fi
if ! "$LS" "$work/$name.blob" >/dev/null 2>&1; then
  ok "missing TOC digest refused"
else
  bad "listing without a digest or -k succeeded"
fi
# A file's bytes read back through the reader equal the tar's.
if cmp -s <("$LS" -k -c etc/hard "$work/$name.blob") <(printf 'root:x:0:0::/root:/bin/sh\n'); then
  ok "hardlink content read back"
else
  bad "hardlink content differs"
fi

summary
