"""kubelet's side of the CRI image service, for the tests: raw runtime.v1.ImageService calls
over python3-grpcio with the messages encoded by hand (field numbers of k8s.io/cri-api
runtime/v1/api.proto), so that no generated stubs are needed.

    cri.py SOCK pull IMAGE [USER PASSWORD]   prints "image_ref REF"; exit 1 on an error
    cri.py SOCK status IMAGE                 prints "image ID" and "repo_tags [...]"
    cri.py SOCK list IMAGE                   prints "listed True|False"
"""
import sys

import grpc


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])


def field(num, payload):   # a length-delimited field
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def read_varint(msg, i):
    n, shift = 0, 0
    while True:
        b = msg[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i


def strings(msg):   # the length-delimited fields of a message: {num: [bytes]}
    i, out = 0, {}
    while i < len(msg):
        key, i = read_varint(msg, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, i = read_varint(msg, i)
            continue
        assert wt == 2, wt
        n, i = read_varint(msg, i)
        out.setdefault(num, []).append(msg[i:i + n])
        i += n
    return out


def main():
    sock, verb, image = sys.argv[1:4]
    ch = grpc.insecure_channel("unix://" + sock)
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    spec = field(1, field(1, image.encode()))   # ImageSpec{image}
    try:
        if verb == "pull":
            req = spec
            if len(sys.argv) > 5 and sys.argv[4]:
                # AuthConfig{username = 1, password = 2}
                req += field(2, field(1, sys.argv[4].encode()) + field(2, sys.argv[5].encode()))
            resp = ch.unary_unary("/runtime.v1.ImageService/PullImage", **raw)(req, timeout=120)
            print("image_ref", strings(resp)[1][0].decode())
        elif verb == "status":
            resp = ch.unary_unary("/runtime.v1.ImageService/ImageStatus", **raw)(spec, timeout=30)
            img = strings(strings(resp)[1][0])
            print("image", img[1][0].decode())
            print("repo_tags", [t.decode() for t in img.get(2, [])])
        elif verb == "list":
            resp = ch.unary_unary("/runtime.v1.ImageService/ListImages", **raw)(b"", timeout=30)
            print("listed", image.encode() in resp)
    except grpc.RpcError as e:
        print(verb, "failed", e.code().name, e.details())
        sys.exit(1)


main()
