# Builds baseplate on Debian 12 and serves the hello-world example.
#   docker build -t baseplate .
#   docker run --rm -p 9090:9090 baseplate
FROM debian:12-slim AS build
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
RUN bash scripts/install-deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBP_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" \
 && DESTDIR=/out cmake --install /build --prefix /usr

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libluajit2-5.1-2 libuv1 libinih1 libhttp-parser2.9 libedit2 lua-cjson \
    libhiredis0.14 libpq5 libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
COPY examples/helloworld /srv/helloworld
WORKDIR /srv/helloworld
EXPOSE 9090
CMD ["baseplate-serve", "--bind", "0.0.0.0:9090", "helloworld.ini"]
