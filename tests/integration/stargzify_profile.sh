#!/usr/bin/env bash
# TIMEOUT: 60
# `stargzify --prioritize PROFILE --prioritize-from BLOB` (tools/stargzify/profile_paths.c): a
# learned startup profile, which names chunk indices of the eStargz layer it was recorded on,
# becomes the converter's priority list: the files owning the profile's chunks, in first-read
# order, then .prefetch.landmark, then the rest.  A profile for another TOC is refused, and a
# profile without the layer it names is refused with a message saying what is missing.
# Last line: "N passed, N failed".
. "$(dirname "$0")/lib.sh"
STARGZIFY=${STARGZIFY:-$STARGZD_TOP/build/tools/stargzify}
PY=/usr/bin/python3

mkdir -p "$WORK/src"
for f in a b c d; do head -c 150000 /dev/urandom >"$WORK/src/$f"; done
tar -C "$WORK/src" -cf "$WORK/layer.tar" a b c d
"$STARGZIFY" --no-progress --chunk-size 64K "$WORK/layer.tar" "$WORK/v1.esgz" >"$WORK/v1.out"
TOC=$(awk '$1=="toc-digest"{print $2}' "$WORK/v1.out")

# toc_order BLOB: the TOC's entries (name type) as the layer has them.
toc_order() {
  $PY - "$1" <<'PY'
import gzip, io, json, sys, tarfile
data = gzip.decompress(open(sys.argv[1], "rb").read())
t = tarfile.open(fileobj=io.BytesIO(data))
toc = json.load(t.extractfile("stargz.index.json"))
for e in toc["entries"]:
    print(e["name"], e["type"])
PY
}
# The chunk numbering of fs/layer.c: every chunk entry in TOC order (a non-empty reg entry is
# its file's first chunk).
mapfile -t CHUNKS < <(toc_order "$WORK/v1.esgz" | awk '$2=="chunk" || $2=="reg" {print $1}')
first_of() { local i; for i in "${!CHUNKS[@]}"; do [[ ${CHUNKS[$i]} == "$1" ]] && { echo "$i"; return; }; done; }
D0=$(first_of d) B0=$(first_of b)
if [[ ${#CHUNKS[@]} -eq 13 && -n $D0 && -n $B0 ]]; then pass "13 chunks in the layer (the landmark is one)"; else fail "chunk numbering" "${CHUNKS[*]}"; fi

# A profile: d's second chunk first, then two chunks of b, then d's first chunk again.
printf '{"schemaVersion":1,"toc":"%s","chunkCount":%d,"chunks":[[%d,%d],[%d,%d],[%d,%d]]}\n' \
  "$TOC" ${#CHUNKS[@]} $((D0 + 1)) $((D0 + 1)) "$B0" $((B0 + 1)) "$D0" "$D0" >"$WORK/profile.json"
if "$STARGZIFY" --no-progress --chunk-size 64K --prioritize "$WORK/profile.json" \
     --prioritize-from "$WORK/v1.esgz" "$WORK/layer.tar" "$WORK/v2.esgz" >/dev/null; then
  order=$(toc_order "$WORK/v2.esgz" | awk '$2!="chunk"{print $1}' | tr '\n' ' ')
  if [[ $order == "d b .prefetch.landmark a c " ]]; then
    pass "the profile's files come first, in first-read order"
  else
    fail "the profile's files come first" "$order"
  fi
else
  fail "conversion with a profile"
fi

# Without the layer the profile names, and with another layer: refused, saying why.
out=$("$STARGZIFY" --no-progress --prioritize "$WORK/profile.json" "$WORK/layer.tar" "$WORK/x.esgz" 2>&1)
rc=$?
if [[ $rc -ne 0 ]] && grep -q "give that layer with --prioritize-from" <<<"$out"; then
  pass "a profile needs --prioritize-from"
else
  fail "a profile needs --prioritize-from" "rc $rc: $out"
fi
out=$("$STARGZIFY" --no-progress --prioritize "$WORK/profile.json" --prioritize-from "$WORK/v2.esgz" \
  "$WORK/layer.tar" "$WORK/x.esgz" 2>&1)
rc=$?
if [[ $rc -ne 0 ]] && grep -q "is it the layer the profile was recorded on" <<<"$out"; then
  pass "a profile for another TOC is refused"
else
  fail "a profile for another TOC is refused" "rc $rc: $out"
fi
# A path list still works as before.
printf 'c\n' >"$WORK/list"
"$STARGZIFY" --no-progress --prioritize "$WORK/list" "$WORK/layer.tar" "$WORK/v3.esgz" >/dev/null &&
  [[ $(toc_order "$WORK/v3.esgz" | awk '$2!="chunk"{print $1}' | head -2 | tr '\n' ' ') == "c .prefetch.landmark " ]] &&
  pass "a path list is still a path list" || fail "a path list is still a path list"
finish
