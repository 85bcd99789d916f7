# stargzd image: build on Debian bookworm, run on a slim bookworm with only the runtime
# libraries.  Keep the package lists in sync with tools/install-deps.sh (BUILD and RUNTIME).
#
#   docker build -t stargzd .
#   docker run --privileged --device /dev/fuse \
#     -v /var/lib/stargzd:/var/lib/stargzd:rshared -v /run/stargzd:/run/stargzd stargzd
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      liburing-dev libfuse3-dev libdeflate-dev libbearssl-dev zlib1g-dev \
      libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev \
      libnghttp2-dev libsqlite3-dev nettle-dev libyajl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `make all` only: `make deps` would try apt again, the packages are already here.
RUN make -j"$(nproc)" all && make install PREFIX=/usr/local DESTDIR=/out

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      fuse3 liburing2 libfuse3-3 libdeflate0 libbearssl0 libprotobuf-c1 zlib1g \
      libnghttp2-14 libsqlite3-0 libnettle8 libyajl2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/stargzd /usr/local/bin/stargzd
VOLUME ["/var/lib/stargzd"]
ENTRYPOINT ["/usr/local/bin/stargzd", "--foreground"]
