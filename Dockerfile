# syntax=docker/dockerfile:1
# One Dockerfile for all four services: docker build --build-arg SERVICE=billing .
# cargo-chef splits the build so the dependency layer (the slow part: ~3.5 min on 2 cores)
# is cached across services and across source changes; only workspace crates rebuild.
# scripts/check-deploy runs these same cargo-chef steps in a scratch directory to prove them.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS chef
# libpq is built from source (pq-sys "bundled"): it needs OpenSSL's headers, not libpq-dev
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev libsqlite3-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

# 1. planner: the dependency recipe of the whole workspace (changes only with Cargo files)
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# 2. cook: build only the dependencies, cached until recipe.json changes.
#    FEATURES: extra cargo features, e.g. `--build-arg FEATURES=common/otlp` for OTLP span
#    export (README, "Logs and traces"); the same for cook and build, so the cache holds.
FROM chef AS builder
ARG FEATURES=""
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json ${FEATURES:+--features "$FEATURES"}
# 3. build every binary of the workspace in one layer that the four images share. Building
#    one package (-p auth) would unify dependency features differently from the cook step and
#    recompile part of the dependencies; the whole workspace reuses all of them.
COPY . .
# shop_build_info{revision} on /metrics: `--build-arg SHOP_REVISION=$(git rev-parse --short HEAD)`
ARG SHOP_REVISION=unknown
RUN cargo build --release --locked --workspace --bins ${FEATURES:+--features "$FEATURES"}
# 4. pick the one service asked for. SERVICE is declared this late on purpose: declared
#    earlier, every service name would invalidate the cached layers above.
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "--build-arg SERVICE=auth|billing|order|notification" >&2; exit 1; } \
 && cp "target/release/${SERVICE}" /app/service

# 5. runtime: the binary and the shared libraries it links (OpenSSL, SQLite), nothing else;
#    non-root.
FROM debian:${DEBIAN}-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libsqlite3-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 shop \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shop
COPY --from=builder /app/service /usr/local/bin/service
USER 10001:10001
# listen on all interfaces inside the pod; the port every manifest uses
ENV HOST=0.0.0.0 PORT=8080 RUST_LOG=info
EXPOSE 8080
# `service migrate` is the init container; `service serve` (the default) the server.
# Liveness and readiness are the Kubernetes probes on /health and /ready.
ENTRYPOINT ["/usr/local/bin/service"]
CMD ["serve"]
