# Builds baseplate on Debian 12 and serves the hello-world example.
#   docker build -t baseplate .
#   docker run --rm -p 9090:9090 baseplate
#
# Two stages: the build stage has the compiler and the -dev packages; the
# runtime stage gets only the installed files and the shared libraries they
# load (no compiler, no redis-server or PostgreSQL), and runs as an
# unprivileged user.
FROM debian:12-slim AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
    libluajit2-5.1-dev libuv1-dev libinih-dev libhttp-parser-dev libhiredis-dev libpq-dev librdkafka-dev librabbitmq-dev libzookeeper-st-dev liburing-dev \
    libssl-dev libedit-dev zlib1g-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBP_BUILD_TESTS=OFF -DBP_BUILD_EXAMPLES=OFF \
      -DCMAKE_INSTALL_PREFIX=/usr/local \
 && cmake --build /build -j"$(nproc)" \
 && DESTDIR=/out cmake --install /build \
 && rm -f /out/usr/local/lib/libbaseplate.a

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
    libluajit2-5.1-2 libuv1 libinih1 libhttp-parser2.9 libhiredis0.14 libpq5 librdkafka1 librabbitmq4 libzookeeper-st2 liburing2 libssl3 libedit2 zlib1g libcurl4 \
    lua-cjson thrift-compiler \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin baseplate
COPY --from=build /out/ /
COPY examples/helloworld /srv/helloworld
WORKDIR /srv/helloworld
USER baseplate:baseplate
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["baseplate-healthcheck", "--probe", "readiness", "--timeout", "4", "http", "127.0.0.1:9090"]
CMD ["baseplate-serve", "--bind", "0.0.0.0:9090", "helloworld.ini"]
