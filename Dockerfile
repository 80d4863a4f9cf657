# syntax=docker/dockerfile:1
#
# keywatch in a container: a Rust build stage, then a small Debian runtime
# with the binary (librdkafka, OpenSSL and zlib are compiled into it), CA
# certificates and curl for the health check, running as an unprivileged user.
#
#   docker build -t keywatch .
#   docker run --rm -p 9464:9464 \
#     -v "$PWD/keywatch.toml:/etc/keywatch/keywatch.toml:ro" keywatch
#
# Configuration: /etc/keywatch/keywatch.toml (the documented example,
# config/keywatch.toml, is baked in; mount your own over it, read-only), plus
# KEYWATCH__SECTION__KEY environment variables, which override the file.
# The image sets KEYWATCH__HTTP__LISTEN=0.0.0.0:9464: inside a container the
# loopback default would hide /metrics and the probes from everyone else; and
# KEYWATCH__NETINTEL__DIR to the country and ASN data it ships (see
# docs/netintel.md: licences CC0 and CC BY 4.0, attribution in the
# directory's *.LICENSE files).
# Secrets: `env:NAME` or `file:/run/secrets/...` in the file. State
# (checkpoints, the dead-letter file) goes to the working directory,
# /var/lib/keywatch: mount a volume there to keep it across containers.

FROM rust:1-bookworm AS build
WORKDIR /src
# Cargo.toml declares the benches and the integration-test crate, so their
# sources must be present for the manifest to load; core/ is the workspace's
# other crate (keywatch-core), with its own benches.
COPY Cargo.toml Cargo.lock ./
COPY core ./core
COPY src ./src
COPY benches ./benches
COPY tests/it ./tests/it
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin keywatch \
    && install -D -m 0755 target/release/keywatch /out/keywatch
# Network intelligence out of the box: the country database and the ASN
# ranges (with their licence and attribution files), fetched, verified and
# loaded by the binary just built. Refresh them in a running deployment with
# `keywatch netintel update --dir /var/lib/keywatch/netintel`.
RUN /out/keywatch netintel update --only country,asn --dir /out/netintel

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 keywatch \
    && useradd --system --uid 10001 --gid keywatch --no-log-init \
        --home-dir /var/lib/keywatch --shell /usr/sbin/nologin keywatch \
    && install -d -o keywatch -g keywatch -m 0750 /var/lib/keywatch
COPY --from=build /out/keywatch /usr/local/bin/keywatch
COPY --from=build --chown=10001:10001 /out/netintel /var/lib/keywatch/netintel
COPY config/keywatch.toml /etc/keywatch/keywatch.toml
ENV KEYWATCH__HTTP__LISTEN=0.0.0.0:9464
ENV KEYWATCH__NETINTEL__DIR=/var/lib/keywatch/netintel
WORKDIR /var/lib/keywatch
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9464
# /healthz answers while the process is alive; the port follows
# KEYWATCH__HTTP__LISTEN if you change it.
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${KEYWATCH__HTTP__LISTEN##*:}/healthz" || exit 1
ENTRYPOINT ["keywatch"]
CMD ["run", "-c", "/etc/keywatch/keywatch.toml"]
