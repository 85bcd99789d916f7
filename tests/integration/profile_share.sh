#!/usr/bin/env bash
# TIMEOUT: 180
# Sharing learned startup profiles (`stargzd profile push|pull`, daemon/profile_cmd.c) through
# a real registry: Debian's docker-registry, which has no OCI 1.1 referrers API, so push and
# pull go through the referrers tag sha256-<hex> (the fallback); and the same registry behind
# tests/lib/referrers_proxy.py, a small server that adds the referrers API (GET
# /v2/<name>/referrers/<digest>, OCI-Subject on manifest PUTs), for the API path.  Also
# `profile ls|show|rm`, and the refusals: a blob whose bytes do not match its digest, a blob
# larger than 1 MiB, and a profile for a TOC digest that is not a layer of the image; each
# ends the pull with a clear message and stores nothing.  A push embeds the blob in the
# artifact manifest and that in the referrers tag (OCI 1.1 `data`), so a pull takes two round
# trips (three through the API); an artifact without (another tool's) takes four, and
# embedded content that is not its descriptor's is fetched instead.  Last line: "N passed, N
# failed".
. "$(dirname "$0")/lib.sh"
. "$STARGZD_TOP/tests/lib/fixtures.sh"
for tool in docker-registry skopeo curl; do
  command -v "$tool" >/dev/null || { skip "profile sharing" "$tool missing"; finish; }
done

start_registry || { fail "registry did not start"; finish; }
mkdir -p "$WORK/l1/etc" "$WORK/l2/data"
echo hello >"$WORK/l1/etc/hello"
head -c 300000 /dev/urandom >"$WORK/l2/data/blob.bin"
make_image "$WORK/oci" v1 "$WORK/l1" "$WORK/l2" >/dev/null
check "eStargz conversion" make_estargz_image "$WORK/oci" "$WORK/esgz"
check "image pushed" push_image "$WORK/esgz" v1 test/prof
read -r LAYER TOC < <(esgz_layer_info "$WORK/esgz")
REF=$REGISTRY/test/prof:v1
P=(--plain-http)

# A recorded profile for the image's last layer, written as the recorder would store it.
R1=$WORK/root1
mkdir -p "$R1/profiles"
printf '{"schemaVersion":1,"toc":"%s","layer":"%s","chunkCount":120,"chunks":[[40,59],[3,3],[0,2]]}\n' \
  "$TOC" "$LAYER" >"$R1/profiles/${TOC#sha256:}.json"

# ---- ls, show, rm ----
out=$("$STARGZD" profile ls --root "$R1")
if grep -q "^$TOC  *24  *3  *120$" <<<"$out"; then pass "profile ls"; else fail "profile ls" "$out"; fi
out=$("$STARGZD" profile show --root "$R1" "${TOC#sha256:}")
if grep -q "chunks: 24 of 120 in 3 ranges" <<<"$out" && grep -q "^  40-59$" <<<"$out"; then
  pass "profile show"
else
  fail "profile show" "$out"
fi
# A recorder's profile has times: show prints when each range was first read.
RT=$WORK/timed
mkdir -p "$RT/profiles"
printf '{"schemaVersion":1,"toc":"%s","chunkCount":120,"chunks":[[40,59],[3,3]],"ms":[0,85]}\n' \
  "$TOC" >"$RT/profiles/${TOC#sha256:}.json"
out=$("$STARGZD" profile show --root "$RT" "$TOC")
if grep -q "^  40-59  at 0 ms$" <<<"$out" && grep -q "^  3  at 85 ms$" <<<"$out"; then
  pass "profile show: the times of a recorded profile"
else
  fail "profile show: the times of a recorded profile" "$out"
fi
cp -r "$R1" "$WORK/rmroot"
"$STARGZD" profile rm --root "$WORK/rmroot" "$TOC" &&
  ! "$STARGZD" profile show --root "$WORK/rmroot" "$TOC" 2>"$WORK/rm.err" &&
  grep -q "No such file" "$WORK/rm.err" && pass "profile rm" || fail "profile rm"

# ---- push and pull through the referrers tag (docker-registry has no referrers API) ----
out=$("$STARGZD" profile push --root "$R1" "${P[@]}" "$REF" 2>&1)
if grep -q "pushed the profiles of 1 layers (24 chunks) as sha256:.*listed in the referrers tag sha256-" <<<"$out"; then
  pass "push: the referrers tag (no referrers API)"
else
  fail "push: the referrers tag" "$out"
fi
MAN=$(curl -sf -H "Accept: application/vnd.oci.image.manifest.v1+json" -I "http://$REGISTRY/v2/test/prof/manifests/v1" |
  tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
TAGIDX=$(curl -sf -H "Accept: application/vnd.oci.image.index.v1+json" \
  "http://$REGISTRY/v2/test/prof/manifests/sha256-${MAN#sha256:}")
if grep -q '"artifactType":"application/vnd.stargzd.profile.v1+json"' <<<"$TAGIDX" &&
   grep -q '"data":"' <<<"$TAGIDX"; then
  pass "the referrers tag lists the artifact, its manifest embedded"
else
  fail "the referrers tag lists the artifact" "$TAGIDX"
fi
# pulled_same NAME ROOT REF ROUND_TRIPS: `profile pull REF` into the fresh ROOT says so, and
# stores the profile pushed from R1 byte for byte.
pulled_same() {
  local out
  out=$("$STARGZD" profile pull --root "$2" "${P[@]}" "$3" 2>&1)
  if grep -q "pulled the profiles of 1 layers .*referrers tag, $4)" <<<"$out" &&
     [[ $("$STARGZD" profile show --root "$R1" --json "$TOC") == "$("$STARGZD" profile show --root "$2" --json "$TOC")" ]]; then
    pass "$1"
  else
    fail "$1" "$out"
  fi
}
pulled_same "pull into a fresh root: the same profile, in 2 round trips (all embedded)" \
  "$WORK/root2" "$REF" "2 round trips"
# By digest (as the daemon pulls when containerd's CRI plugin gives the manifest's digest):
# the manifest's fetch and the two lookups go out together, one round trip.
pulled_same "pull by the manifest's digest: the same profile, in 1 round trip" \
  "$WORK/root2d" "$REGISTRY/test/prof@$MAN" "1 round trip"

# start_proxy NAME ARGS...: tests/lib/referrers_proxy.py in front of the registry, logging to
# $WORK/NAME.log; its port in PROXY_PORT.
start_proxy() {
  local name=$1
  shift
  PROXY_PORT=$(free_port)
  spawn $PYTHON "$STARGZD_TOP/tests/lib/referrers_proxy.py" --port "$PROXY_PORT" --upstream "$REGISTRY" \
    --log "$WORK/$name.log" "$@"
  wait_for 20 curl -sf "http://127.0.0.1:$PROXY_PORT/v2/" -o /dev/null
}

# ---- the referrers API (tests/lib/referrers_proxy.py in front of the same registry) ----
start_proxy api
API_PORT=$PROXY_PORT
AREF=127.0.0.1:$API_PORT/test/prof:v1
out=$("$STARGZD" profile push --root "$R1" "${P[@]}" "$AREF" 2>&1)
if grep -q "listed by the registry's referrers API" <<<"$out"; then
  pass "push: the registry's referrers API (OCI-Subject)"
else
  fail "push: the referrers API" "$out"
fi
: >"$WORK/api.log"
R3=$WORK/root3
out=$("$STARGZD" profile pull --root "$R3" "${P[@]}" "$AREF" 2>&1)
# The tag still lists the older artifact pushed above: the API's answer is preferred.
if grep -q "found through the referrers API, 3 round trips" <<<"$out" &&
   grep -q "GET /v2/test/prof/referrers/$MAN" "$WORK/api.log" &&
   ! grep -q "GET /v2/test/prof/blobs/" "$WORK/api.log" &&
   cmp -s "$R1/profiles/${TOC#sha256:}.json" "$R3/profiles/${TOC#sha256:}.json"; then
  pass "pull through the referrers API (preferred to the tag; the blob embedded)"
else
  fail "pull through the referrers API" "$out $(cat "$WORK/api.log")"
fi

# ---- refusals ----
# push_artifact FILE: FILE as the blob of a new (newest) profile artifact for the image,
# listed in the referrers tag, as another tool could push it.
push_artifact() {
  $PYTHON - "$REGISTRY" test/prof "$MAN" "$1" <<'PY'
import hashlib, json, sys, time, urllib.request, urllib.error
reg, repo, subject, path = sys.argv[1:5]
base = f"http://{reg}/v2/{repo}"
def req(method, url, data=None, ctype=None, accept=None):
    r = urllib.request.Request(url, data=data, method=method)
    if ctype: r.add_header("Content-Type", ctype)
    if accept: r.add_header("Accept", accept)
    return urllib.request.urlopen(r)
def blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = req("POST", base + "/blobs/uploads/").headers["Location"]
    if loc.startswith("/"): loc = f"http://{reg}" + loc
    req("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, data, "application/octet-stream")
    return d
M = "application/vnd.oci.image.manifest.v1+json"
I = "application/vnd.oci.image.index.v1+json"
T = "application/vnd.stargzd.profile.v1+json"
sm = req("GET", f"{base}/manifests/{subject}", accept=M).read()
data = open(path, "rb").read()
ns = time.time_ns()
created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)
man = json.dumps({"schemaVersion": 2, "mediaType": M, "artifactType": T,
    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": blob(b"{}"), "size": 2},
    "layers": [{"mediaType": T, "digest": blob(data), "size": len(data)}],
    "subject": {"mediaType": M, "digest": subject, "size": len(sm)},
    "annotations": {"org.opencontainers.image.created": created}}).encode()
md = "sha256:" + hashlib.sha256(man).hexdigest()
req("PUT", f"{base}/manifests/{md}", man, M)
tag = subject.replace(":", "-")
try:
    idx = json.loads(req("GET", f"{base}/manifests/{tag}", accept=I).read())
except urllib.error.HTTPError:
    idx = {"schemaVersion": 2, "mediaType": I, "manifests": []}
idx["manifests"].append({"mediaType": M, "digest": md, "size": len(man), "artifactType": T,
                         "annotations": {"org.opencontainers.image.created": created}})
req("PUT", f"{base}/manifests/{tag}", json.dumps(idx).encode(), I)
PY
}

# Another tool's artifact, nothing embedded: the manifest and the blob are fetched (4 round
# trips); through a proxy that flips a byte of the blob, the pull refuses it.
printf '{"schemaVersion":1,"mediaType":"application/vnd.stargzd.profile.v1+json","profiles":[%s]}' \
  "$(cat "$R1/profiles/${TOC#sha256:}.json")" >"$WORK/plain.json"
if push_artifact "$WORK/plain.json"; then
  RP=$WORK/rootplain
  out=$("$STARGZD" profile pull --root "$RP" "${P[@]}" "$REF" 2>&1)
  if grep -q "referrers tag, 4 round trips" <<<"$out" &&
     cmp -s "$R1/profiles/${TOC#sha256:}.json" "$RP/profiles/${TOC#sha256:}.json"; then
    pass "an artifact with nothing embedded: fetched, in 4 round trips"
  else
    fail "an artifact with nothing embedded" "$out"
  fi
  start_proxy bad --no-referrers --corrupt-profiles
  BAD_PORT=$PROXY_PORT
  R4=$WORK/root4
  out=$("$STARGZD" profile pull --root "$R4" "${P[@]}" "127.0.0.1:$BAD_PORT/test/prof:v1" 2>&1)
  rc=$?
  if [[ $rc -eq 1 ]] && grep -q "blob sha256:.*digest mismatch" <<<"$out" && [[ ! -e $R4/profiles ]]; then
    pass "a corrupt profile blob is refused"
  else
    fail "a corrupt profile blob is refused" "rc $rc: $out"
  fi
else
  fail "an artifact with nothing embedded" "could not push the artifact"
fi

# A blob above 1 MiB: refused from its descriptor, before a byte is fetched.
{
  printf '{"schemaVersion":1,"profiles":[],"pad":"'
  head -c 1200000 /dev/zero | tr '\0' x
  printf '"}'
} >"$WORK/big.json"
R5=$WORK/root5
if push_artifact "$WORK/big.json"; then
  out=$("$STARGZD" profile pull --root "$R5" "${P[@]}" "$REF" 2>&1)
  rc=$?
  if [[ $rc -eq 1 ]] && grep -q "blob of 1200.* bytes is larger than 1048576" <<<"$out" && [[ ! -e $R5/profiles ]]; then
    pass "an oversized profile blob is refused"
  else
    fail "an oversized profile blob is refused" "rc $rc: $out"
  fi
else
  fail "an oversized profile blob is refused" "could not push the artifact"
fi

# A profile for a TOC digest that is no layer of the image.
OTHER=sha256:$(echo other | sha256sum | cut -d' ' -f1)
printf '{"schemaVersion":1,"profiles":[{"schemaVersion":1,"toc":"%s","chunkCount":9,"chunks":[[0,8]]}]}' \
  "$OTHER" >"$WORK/other.json"
R6=$WORK/root6
if push_artifact "$WORK/other.json"; then
  out=$("$STARGZD" profile pull --root "$R6" "${P[@]}" "$REF" 2>&1)
  rc=$?
  if [[ $rc -eq 1 ]] && grep -q "profile for TOC $OTHER names no layer of" <<<"$out" &&
     [[ -z $(ls -A "$R6/profiles" 2>/dev/null) ]]; then
    pass "a profile for another TOC digest is refused"
  else
    fail "a profile for another TOC digest is refused" "rc $rc: $out"
  fi
else
  fail "a profile for another TOC digest is refused" "could not push the artifact"
fi

# A push again makes the good profile the newest: pull works again (newest wins).
"$STARGZD" profile push --root "$R1" "${P[@]}" "$REF" >/dev/null 2>&1
R7=$WORK/root7
if "$STARGZD" profile pull --root "$R7" "${P[@]}" "$REF" >/dev/null 2>&1 &&
   cmp -s "$R1/profiles/${TOC#sha256:}.json" "$R7/profiles/${TOC#sha256:}.json"; then
  pass "the newest artifact is the one pulled"
else
  fail "the newest artifact is the one pulled"
fi

# Embedded content that is not its descriptor's is not used: the manifest is fetched (and
# verified) instead, with a note, and the profile is the same.
start_proxy emb --no-referrers --corrupt-embedded
EMB_PORT=$PROXY_PORT
R8=$WORK/root8
out=$("$STARGZD" profile pull --root "$R8" "${P[@]}" "127.0.0.1:$EMB_PORT/test/prof:v1" 2>&1)
if grep -q "the referrers tag embeds a manifest that is not sha256:.*: fetched instead" <<<"$out" &&
   grep -q "referrers tag, 3 round trips" <<<"$out" && grep -q "GET /v2/test/prof/manifests/sha256:" "$WORK/emb.log" &&
   cmp -s "$R1/profiles/${TOC#sha256:}.json" "$R8/profiles/${TOC#sha256:}.json"; then
  pass "embedded content that does not match is fetched instead"
else
  fail "embedded content that does not match is fetched instead" "$out"
fi
# A registry that refuses embedded content (400 to a manifest PUT with "data"): the push
# falls back to plain descriptors, saying so, and the pull fetches (4 round trips).
start_proxy strict --no-referrers --refuse-data
STRICT_PORT=$PROXY_PORT
SREF=127.0.0.1:$STRICT_PORT/test/prof:v1
out=$("$STARGZD" profile push --root "$R1" "${P[@]}" "$SREF" 2>&1)
R9=$WORK/root9
pout=$("$STARGZD" profile pull --root "$R9" "${P[@]}" "$SREF" 2>&1)
if grep -q "refused the manifest with the blob embedded (.*400 .*MANIFEST_INVALID.*): pushed without" <<<"$out" &&
   grep -q "refused the referrers tag with the manifest embedded .*: pushed without" <<<"$out" &&
   grep -q "listed in the referrers tag" <<<"$out" && grep -q "referrers tag, 4 round trips" <<<"$pout" &&
   cmp -s "$R1/profiles/${TOC#sha256:}.json" "$R9/profiles/${TOC#sha256:}.json"; then
  pass "a registry refusing embedded content: pushed without, pulled in 4 round trips"
else
  fail "a registry refusing embedded content" "$out / $pout"
fi
finish
