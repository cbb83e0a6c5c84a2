#!/usr/bin/env bash
# tests/docker-smoke.sh - build the top-level Dockerfile and smoke-test the image, with
# rootful podman/buildah (no Docker daemon and no registry needed). CI runs it last.
#
# What it does:
#   1. installs podman/buildah/runc/debootstrap (and catatonit, the pause binary `podman
#      kube play` needs) from Debian's packages if missing;
#   2. uses its own containers.conf / storage.conf in a scratch folder (the machine's
#      global container config is never changed);
#   3. makes the base images the Dockerfile's FROM lines name, locally:
#        debian:bookworm-slim  = debootstrap --variant=minbase bookworm
#        rust:1.95-bookworm    = the same + gcc/libc6-dev/curl + this machine's Rust
#                                toolchain (from `rustup which cargo`), cargo on PATH,
#                                CARGO_HOME /usr/local/cargo (under the name the seed
#                                below was built with, see "cargo cache seed")
#      (the Debian mirror is read from this machine's apt sources at run time);
#   4. seeds the build's cargo cache mounts (RUN --mount=type=cache) with COPIES of this
#      machine's release build of the same crate (target/release: deps, build scripts,
#      fingerprints; not this package's own artifacts) and of its cargo registry, so the
#      image build compiles only omcp-sandbox itself instead of ~300 dependencies. The
#      Dockerfile is built unchanged: the seed only pre-fills what a previous build would
#      have left in those caches, and cargo rebuilds whatever does not match (another
#      toolchain, other features). Without target/release the build compiles everything;
#   5. builds the Dockerfile (--build-arg VERSION from Cargo.toml, SOURCE from the git
#      remote `origin` when it is a URL) and runs the image with
#        --read-only --cap-drop=ALL --security-opt no-new-privileges --user 10001
#        -p 127.0.0.1:PORT:8000
#      and checks /healthz, POST /run, a timeout, MCP over HTTP (/mcp), `mcp` over stdio
#      and SIGTERM; then runs the Helm chart's rendered Deployment with `podman kube play`
#      (needs tests/prepare.sh's .cache/clients/k8s) and calls it;
#   6. removes what it started and its scratch folder (trap), then prints a summary
#      (timings, image size, passed/failed); exit status non-zero on any failure.
#
# Usage: sudo tests/docker-smoke.sh            (must run as root: rootful podman)
# Environment:
#   OMCP_SMOKE_STORAGE=DIR   reuse DIR as the podman storage/scratch folder and keep it
#                            afterwards (base images and the cargo cache mounts survive,
#                            so a second run skips debootstrap, seeding and most of the
#                            compile)
#   OMCP_SMOKE_SEED_TARGET=DIR  cargo release dir to seed the build's target cache from
#                            (default: $ROOT/target/release; empty: no seed, build from
#                            scratch)
#   OMCP_SMOKE_SEED_REGISTRY=DIR  cargo registry to seed the registry cache from
#                            (default: $CARGO_HOME/registry; empty: none)
#   OMCP_SMOKE_SEED_COMPILE=DIR  omcp-sandbox compile cache to seed the image build's
#                            compile cache mount from (default: the test suite's,
#                            $ROOT/target/tmp/omcp-cache; empty: none, and the image build
#                            compiles the scientific runtime, several minutes)
#   OMCP_SMOKE_PORT=N        host port to publish on 127.0.0.1 (default: a free one)
#   OMCP_SMOKE_IMAGE=NAME    tag for the built image (default localhost/omcp-sandbox:smoke)

set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly RUST_BASE="rust:1.95-bookworm"
readonly SLIM_BASE="debian:bookworm-slim"
IMAGE="${OMCP_SMOKE_IMAGE:-localhost/omcp-sandbox:smoke}"
readonly IMAGE
readonly NAME="omcp-smoke-$$"
# The mount targets of the Dockerfile's `RUN --mount=type=cache` lines (build stage).
readonly CACHE_TARGET_MOUNT=/src/target
readonly CACHE_REGISTRY_MOUNT=/usr/local/cargo/registry
SEED_TARGET="${OMCP_SMOKE_SEED_TARGET-$ROOT/target/release}"
readonly SEED_TARGET

log() { printf '[docker-smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

PASSED=0
FAILED=0
ABORTED=""
pass() { PASSED=$((PASSED + 1)); log "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL: $*"; }
die() { FAILED=$((FAILED + 1)); ABORTED="$*"; log "FAIL: $*"; exit 1; }

# Figures for the summary ("-" = not measured in this run).
DEBOOTSTRAP_SECS="-" SEED_SECS="-" SEED_SIZE="-" BUILD_SECS="-" COMPILED="-"
IMAGE_SIZE="" FIRST_MS="-"

[ "$(id -u)" -eq 0 ] || die "run as root (rootful podman/buildah)"

# ------------------------------------------------------------------ install --
need_pkgs=()
for tool in podman:podman buildah:buildah runc:runc debootstrap:debootstrap \
    newuidmap:uidmap slirp4netns:slirp4netns iptables:iptables fuse-overlayfs:fuse-overlayfs \
    curl:curl jq:jq python3:python3 catatonit:catatonit; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_pkgs+=("${tool#*:}")
done
[ -e /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${need_pkgs[@]}" >/dev/null
fi

# ------------------------------------------------------------ scratch config --
if [ -n "${OMCP_SMOKE_STORAGE:-}" ]; then
    SCRATCH="$OMCP_SMOKE_STORAGE"
    KEEP_SCRATCH=1
    mkdir -p "$SCRATCH"
else
    SCRATCH="$(mktemp -d /var/tmp/omcp-docker-smoke.XXXXXX)"
    KEEP_SCRATCH=0
fi
SCRATCH="$(cd "$SCRATCH" && pwd)"
readonly SCRATCH KEEP_SCRATCH
mkdir -p "$SCRATCH"/{storage,run,tmp,cni,rootfs}

cat >"$SCRATCH/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$SCRATCH/run/events.log"
tmp_dir = "$SCRATCH/run/libpod"

[network]
network_config_dir = "$SCRATCH/cni"
EOF
cat >"$SCRATCH/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$SCRATCH/storage"
runroot = "$SCRATCH/run/storage"
EOF
export CONTAINERS_CONF="$SCRATCH/containers.conf"
export CONTAINERS_STORAGE_CONF="$SCRATCH/storage.conf"
# buildah's RUN --mount=type=cache folders and big-layer temp files live under TMPDIR.
export TMPDIR="$SCRATCH/tmp"

STDIO_PID=""
SEED_PID=""
BG_PGIDS=() # background jobs (each its own process group): stopped on abort
summary() {
    printf '\n== docker-smoke summary\n'
    printf 'image:                        %s\n' "$IMAGE"
    if [ -n "$IMAGE_SIZE" ]; then
        printf 'image size:                   %s bytes (%s MiB)\n' "$IMAGE_SIZE" "$((IMAGE_SIZE / 1048576))"
    fi
    printf 'debootstrap (base images):    %s s\n' "$DEBOOTSTRAP_SECS"
    printf 'cargo cache seed copy:        %s s (%s)\n' "$SEED_SECS" "$SEED_SIZE"
    printf 'image build:                  %s s (crates compiled: %s)\n' "$BUILD_SECS" "$COMPILED"
    printf 'start -> first served run:    %s ms\n' "$FIRST_MS"
    printf 'whole script:                 %s s\n' "$SECONDS"
    [ -z "$ABORTED" ] || printf 'aborted:                      %s\n' "$ABORTED"
    printf 'docker-smoke: %d passed, %d failed\n' "$PASSED" "$FAILED"
}
cleanup() {
    local rc=$?
    set +e
    [ -z "$STDIO_PID" ] || kill "$STDIO_PID" 2>/dev/null
    local pg
    for pg in "${BG_PGIDS[@]}"; do
        kill -- "-$pg" 2>/dev/null
        wait "$pg" 2>/dev/null
    done
    if podman container exists "$NAME" 2>/dev/null; then
        if [ "$rc" -ne 0 ]; then
            log "container log (last 30 lines):"
            podman logs --tail 30 "$NAME" >&2 2>&1
        fi
        podman rm -f -t 2 "$NAME" >/dev/null 2>&1
    fi
    podman rm -f -t 2 "$NAME-stdio" >/dev/null 2>&1
    [ ! -f "$SCRATCH/deployment.yaml" ] || podman kube down "$SCRATCH/deployment.yaml" >/dev/null 2>&1
    # A build interrupted mid-RUN leaves a stopped runc container whose bundle is ours.
    runc list --format json 2>/dev/null \
        | jq -r --arg s "$SCRATCH/" '.[]? | select(.bundle | startswith($s)) | .id' \
        | while read -r id; do runc delete --force "$id" >/dev/null 2>&1; done
    # ... and its build containers (in our storage only: CONTAINERS_STORAGE_CONF).
    buildah rm --all >/dev/null 2>&1
    if [ "$KEEP_SCRATCH" -eq 0 ]; then
        podman rmi -a -f >/dev/null 2>&1
        # Unmount whatever containers/storage left mounted below the scratch folder.
        findmnt -rn -o TARGET | grep -F "$SCRATCH" | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null
        done
        rm -rf --one-file-system "$SCRATCH" 2>/dev/null || rm -rf "$SCRATCH"
        log "removed $SCRATCH"
    else
        log "kept $SCRATCH (OMCP_SMOKE_STORAGE)"
    fi
    # Any failure check, or an abort, makes the exit status non-zero.
    [ "$rc" -ne 0 ] || [ "$FAILED" -eq 0 ] || rc=1
    summary
    exit "$rc"
}
trap cleanup EXIT
trap 'ABORTED="interrupted (SIGINT)"; exit 130' INT
trap 'ABORTED="terminated (SIGTERM)"; exit 143' TERM

have_image() { podman image exists "$1" 2>/dev/null; }

# ------------------------------------------------------------ cargo cache seed --
# buildah 1.28 (podman 4.3) keeps a `RUN --mount=type=cache,target=T` (no id=) in
# $TMPDIR/buildah-cache/T, and keeps it between builds: the Dockerfile's build stage
# finds there what an earlier build left. A fresh storage has nothing, so the seed puts
# there what this machine's own `cargo test --release` / `cargo build --release` of the
# same crate with the same toolchain already compiled. cargo decides, unit by unit, by
# its fingerprints (package, version, features, profile, rustc version, and the absolute
# path of a dependency's sources, i.e. $CARGO_HOME/registry/src/...): matching
# dependency artifacts are reused, anything else is rebuilt as it would be anyway.
#
# That source path is why the local rust base image sets CARGO_HOME to the path the
# seed was built with (read from the seed's dep-info files; /root/.cargo for root), made
# a symlink to /usr/local/cargo: cargo, the registry (the Dockerfile's cache mount at
# /usr/local/cargo/registry) and every file stay where the official image has them, only
# the name cargo uses for them matches the host's. With CARGO_HOME=/usr/local/cargo
# verbatim, cargo would find every seeded fingerprint stale and compile everything.
#
# Copies only (cp -a, a reflink where the filesystem has them), never hard links: the
# container build writes into these folders and must never touch the host's files.
# Left out: this package's own artifacts (lib, bin, test and bench binaries, its
# fingerprints), incremental/ (release builds do not use it) and the top-level copies.
readonly CACHE_ROOT="$TMPDIR/buildah-cache"
seed_target() { # seed_target SRC_RELEASE_DIR DEST_RELEASE_DIR
    local src="$1" dest="$2" own re d
    own="$(awk -F'"' '/^[[:space:]]*name[[:space:]]*=/ { print $2 }' "$ROOT/Cargo.toml" \
        | sed 's/[-_]/[-_]/g' | sort -u | paste -sd'|' -)"
    [ -n "$own" ] || return 1
    re=".*/(lib)?($own)-[0-9a-f]{16}(\\..*)?"
    for d in deps build .fingerprint; do
        [ -d "$src/$d" ] || continue
        mkdir -p "$dest/$d"
        find "$src/$d" -mindepth 1 -maxdepth 1 -regextype posix-extended ! -regex "$re" \
            -exec cp -a --reflink=auto -t "$dest/$d" {} +
    done
}
seed_registry() { # seed_registry SRC_REGISTRY_DIR DEST_REGISTRY_DIR
    local src="$1" dest="$2" d
    mkdir -p "$dest"
    # index/ (sparse index cache), cache/ (.crate files), src/ (their unpacked sources).
    for d in index cache src; do
        [ -d "$src/$d" ] && cp -a --reflink=auto "$src/$d" "$dest/"
    done
    return 0
}
seed_caches() { # runs in the background while the base images are made
    local t0=$SECONDS
    if [ -n "$SEED_TARGET" ] && [ -d "$SEED_TARGET/deps" ]; then
        seed_target "$SEED_TARGET" "$CACHE_ROOT$CACHE_TARGET_MOUNT/release" || return 1
    fi
    if [ -n "$SEED_REGISTRY" ] && [ -d "$SEED_REGISTRY" ]; then
        seed_registry "$SEED_REGISTRY" "$CACHE_ROOT$CACHE_REGISTRY_MOUNT" || return 1
    fi
    echo "$((SECONDS - t0))" >"$SCRATCH/seed.secs"
}

seed_cargo_home() { # the CARGO_HOME the seed was built with (empty: not found)
    { grep -rhoE -m1 --include='*.d' '/[^ :]*/registry/src/index\.crates\.io-[0-9a-f]+/' \
        "$SEED_TARGET/deps" 2>/dev/null || true; } \
        | sed -n '1 { s#/registry/src/.*##; /^\/[A-Za-z0-9._\/-]*$/p; }'
}
SEED_CARGO_HOME=""
if [ -n "$SEED_TARGET" ] && [ -d "$SEED_TARGET/deps" ]; then
    SEED_CARGO_HOME="$(seed_cargo_home)"
fi
# The registry seed: the one the seed target was built with, else this user's.
SEED_REGISTRY="${OMCP_SMOKE_SEED_REGISTRY-${SEED_CARGO_HOME:-${CARGO_HOME:-$HOME/.cargo}}/registry}"
readonly SEED_CARGO_HOME SEED_REGISTRY

# The compile cache mount of the final stage's `prepare`: the test suite compiled the same
# modules with the same wasmtime, settings and CPU, and the scientific runtime takes minutes
# to compile. The image keeps only what `prepare` used (see the Dockerfile).
readonly COMPILE_MOUNT=/var/cache/omcp-compile
SEED_COMPILE="${OMCP_SMOKE_SEED_COMPILE-$ROOT/target/tmp/omcp-cache}"
readonly SEED_COMPILE
if [ -e "$CACHE_ROOT$COMPILE_MOUNT" ]; then
    log "compile cache mount already filled by an earlier build in $SCRATCH: not seeding"
elif ! grep -q "type=cache,target=${COMPILE_MOUNT}[, ]" "$ROOT/Dockerfile"; then
    log "the Dockerfile no longer mounts $COMPILE_MOUNT as a cache: not seeding it"
elif [ -z "$SEED_COMPILE" ] || [ ! -d "$SEED_COMPILE" ]; then
    log "no compile cache to seed from (${SEED_COMPILE:-seeding off}): the image build compiles both runtimes"
else
    mkdir -p "$CACHE_ROOT$COMPILE_MOUNT"
    find "$SEED_COMPILE" -maxdepth 1 -type f \( -name '*.cwasm' -o -name '*.meta' \) \
        -exec cp -a --reflink=auto -t "$CACHE_ROOT$COMPILE_MOUNT" {} +
    log "seeded the compile cache mount from $SEED_COMPILE ($(du -sh "$CACHE_ROOT$COMPILE_MOUNT" | cut -f1)B)"
fi

if [ -e "$CACHE_ROOT$CACHE_TARGET_MOUNT/release" ]; then
    log "cargo cache mounts already filled by an earlier build in $SCRATCH: not seeding"
elif ! grep -q "type=cache,target=${CACHE_TARGET_MOUNT}[, ]" "$ROOT/Dockerfile" \
    || ! grep -q "type=cache,target=${CACHE_REGISTRY_MOUNT}[, ]" "$ROOT/Dockerfile"; then
    log "the Dockerfile no longer mounts $CACHE_TARGET_MOUNT and $CACHE_REGISTRY_MOUNT as caches: not seeding"
elif [ -z "$SEED_TARGET" ] || [ ! -d "$SEED_TARGET/deps" ]; then
    log "no cargo release build to seed from (${SEED_TARGET:-seeding off}): the image build compiles every dependency"
else
    log "seeding the cargo cache mounts from $SEED_TARGET and ${SEED_REGISTRY:-(no registry)} (copies, in the background)"
    # In its own process group (set -m), so that an abort stops its cp as well.
    set -m
    seed_caches &
    SEED_PID=$!
    set +m
    BG_PGIDS+=("$SEED_PID")
fi

# ------------------------------------------------------------- base images --
debian_mirror() {
    # The machine's own configured Debian archive (the one serving bookworm main).
    # shellcheck disable=SC2016 # $(...) here is apt's format syntax, not the shell's
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null \
        | awk '$2 == "bookworm" && $3 == "main" { print $1; exit }'
}

bootstrap() { # bootstrap DIR [--slim | --include=...]
    local dir="$1" slim=0
    shift
    if [ "${1:-}" = --slim ]; then slim=1; shift; fi
    rm -rf "$dir"
    debootstrap --variant=minbase "$@" bookworm "$dir" "$MIRROR" >"$dir.log" 2>&1 \
        || { tail -n 20 "$dir.log" >&2; return 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    if [ "$slim" -eq 1 ]; then
        # Like the official -slim images: no docs, man pages or translations, now or
        # from later apt-get installs.
        mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
        printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
            'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
            'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
            'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/lintian/*' \
            >"$dir/etc/dpkg/dpkg.cfg.d/docker"
        find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$dir"/usr/share/{man,info,groff,lintian}/*
        find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
            -exec rm -rf {} +
    fi
    # This machine's extra root CAs (a TLS-intercepting egress proxy, if any), so that
    # builds in these local stand-ins for the official images reach the package registries
    # as the host does. A stage that installs ca-certificates picks them up too.
    local crt
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -f "$crt" ] || continue
        install -D -m 0644 "$crt" "$dir/usr/local/share/ca-certificates/$(basename "$crt")"
    done
    if [ -x "$dir/usr/sbin/update-ca-certificates" ]; then
        chroot "$dir" update-ca-certificates >/dev/null 2>&1 \
            || cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    fi
}

import_as() { # import_as ROOTFS NAME [--change ...]
    local dir="$1" name="$2"
    shift 2
    tar -C "$dir" -c . | podman import --quiet "$@" - "localhost/$name" >/dev/null
    # FROM short names resolve to either of these; name both so no pull is ever tried.
    podman tag "localhost/$name" "docker.io/library/$name"
}

if ! have_image "$SLIM_BASE" || ! have_image "$RUST_BASE"; then
    MIRROR="$(debian_mirror)"
    [ -n "$MIRROR" ] || die "no bookworm main archive in this machine's apt sources"
    log "bootstrapping base images from $MIRROR"
    cargo_bin="$(rustup which cargo 2>/dev/null || command -v cargo)" \
        || die "no Rust toolchain on this machine (need cargo)"
    toolchain="$(cd "$(dirname "$(readlink -f "$cargo_bin")")/.." && pwd)"
    "$toolchain/bin/rustc" --version | grep -q '^rustc 1\.9[5-9]\|^rustc 1\.[1-9][0-9][0-9]' \
        || die "toolchain $toolchain is older than Rust 1.95"
    t0=$SECONDS
    set -m # each in its own process group, so that an abort stops debootstrap as well
    bootstrap "$SCRATCH/rootfs/slim" --slim &
    slim_pid=$!
    bootstrap "$SCRATCH/rootfs/rust" --include=ca-certificates,curl,gcc,libc6-dev,binutils &
    rust_pid=$!
    set +m
    BG_PGIDS+=("$slim_pid" "$rust_pid")
    wait "$slim_pid" || die "debootstrap (slim) failed"
    wait "$rust_pid" || die "debootstrap (rust) failed"
    BG_PGIDS=(${SEED_PID:+"$SEED_PID"})
    DEBOOTSTRAP_SECS=$((SECONDS - t0))
    log "debootstrap done in $DEBOOTSTRAP_SECS s"

    import_as "$SCRATCH/rootfs/slim" "$SLIM_BASE" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]'

    # The machine's toolchain, laid out like the official rust image (rustup home +
    # cargo home), without its documentation.
    tc_dest="$SCRATCH/rootfs/rust/usr/local/rustup/toolchains/$(basename "$toolchain")"
    mkdir -p "$tc_dest" "$SCRATCH/rootfs/rust/usr/local/cargo/bin"
    tar -C "$toolchain" --exclude=./share/doc --exclude=./share/man -c . | tar -C "$tc_dest" -x
    for b in "$tc_dest"/bin/*; do
        ln -sf "/usr/local/rustup/toolchains/$(basename "$toolchain")/bin/$(basename "$b")" \
            "$SCRATCH/rootfs/rust/usr/local/cargo/bin/$(basename "$b")"
    done
    # CARGO_HOME: /usr/local/cargo, named as the seed's cargo home (see "cargo cache seed").
    image_cargo_home=/usr/local/cargo
    case "$SEED_CARGO_HOME" in
        "" | /usr/local/cargo | /usr/local/cargo/* | /usr | /usr/* | /etc | /etc/* | /bin | /bin/* | /lib* | /sbin*) ;;
        /*)
            if [ ! -e "$SCRATCH/rootfs/rust$SEED_CARGO_HOME" ]; then
                mkdir -p "$SCRATCH/rootfs/rust$(dirname "$SEED_CARGO_HOME")"
                ln -s /usr/local/cargo "$SCRATCH/rootfs/rust$SEED_CARGO_HOME"
                image_cargo_home="$SEED_CARGO_HOME"
            fi
            ;;
    esac
    [ "$image_cargo_home" = /usr/local/cargo ] \
        || log "rust base image: CARGO_HOME=$image_cargo_home (a symlink to /usr/local/cargo)"
    import_as "$SCRATCH/rootfs/rust" "$RUST_BASE" \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change "ENV CARGO_HOME=$image_cargo_home" \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]'
    rm -rf "$SCRATCH/rootfs"
    mkdir -p "$SCRATCH/rootfs"
    log "base images ready: $SLIM_BASE, $RUST_BASE"
else
    log "base images already in $SCRATCH"
fi

if [ -n "$SEED_PID" ] && [ -n "$SEED_CARGO_HOME" ]; then
    img_home="$(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$RUST_BASE" \
        | sed -n 's/^CARGO_HOME=//p')"
    [ "$img_home" = "$SEED_CARGO_HOME" ] \
        || log "note: $RUST_BASE has CARGO_HOME=$img_home but the seed was built with $SEED_CARGO_HOME: cargo will not reuse it"
fi
if [ -n "$SEED_PID" ]; then
    wait_start=$SECONDS
    wait "$SEED_PID" || die "seeding the cargo cache mounts failed"
    SEED_PID=""
    BG_PGIDS=()
    SEED_SECS="$(cat "$SCRATCH/seed.secs")"
    SEED_SIZE="$(du -sh "$CACHE_ROOT" | cut -f1)B copied"
    log "cargo cache mounts seeded in $SEED_SECS s ($SEED_SIZE, waited $((SECONDS - wait_start)) s for it)"
fi

# ------------------------------------------------------------------- build --
# The image's labels: the version Cargo.toml declares, and the repository the sources
# come from when the clone's `origin` is a URL (credentials dropped; an ssh remote is
# named by its https form); a clone of a local path names no source (empty label).
VERSION="$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version[[:space:]]*=/ { print $2; exit }' "$ROOT/Cargo.toml")"
source_url() {
    local url
    url="$(git -C "$ROOT" remote get-url origin 2>/dev/null)" || return 0
    case "$url" in
        http://* | https://*) url="$(sed -E 's#^(https?://)[^/@]*@#\1#' <<<"$url")" ;;
        ssh://*) url="https://$(sed -E 's#^ssh://([^/@]*@)?([^/:]*)(:[0-9]+)?/#\2/#' <<<"$url")" ;;
        [!/]*@*:*) url="https://$(sed -E 's#^[^@]*@([^:]*):/?#\1/#' <<<"$url")" ;;
        *) return 0 ;;
    esac
    printf '%s\n' "${url%.git}"
}
SOURCE="$(source_url)"
readonly VERSION SOURCE
log "building $IMAGE from $ROOT/Dockerfile (version ${VERSION:-?}, source ${SOURCE:-none})"
build_start=$SECONDS
# --format docker keeps HEALTHCHECK (the OCI image format has no such field);
# --network host only gives RUN steps the host's network (the package registries);
# --no-cache because buildah 1.28 reuses a COPY layer although the copied sources changed
# (seen with OMCP_SMOKE_STORAGE); the cargo cache mounts still make a rebuild incremental.
podman build --pull=never --no-cache --format docker --network host \
    --build-arg "VERSION=$VERSION" --build-arg "SOURCE=$SOURCE" \
    -f "$ROOT/Dockerfile" -t "$IMAGE" "$ROOT" >"$SCRATCH/build.log" 2>&1 \
    || { tail -n 40 "$SCRATCH/build.log" >&2; die "image build failed (log: $SCRATCH/build.log)"; }
BUILD_SECS=$((SECONDS - build_start))
# podman build can exit 0 when it is killed by a signal: trust the image, not the status.
have_image "$IMAGE" || { tail -n 40 "$SCRATCH/build.log" >&2; die "image build produced no $IMAGE"; }
compiled="$(sed -n 's/^[[:space:]]*Compiling \([^ ]*\) .*/\1/p' "$SCRATCH/build.log")"
COMPILED="$(grep -c . <<<"$compiled" || true)"
log "image built in ${BUILD_SECS} s; cargo compiled $COMPILED crate(s): $(paste -sd' ' - <<<"$compiled")"
IMAGE_SIZE="$(podman image inspect --format '{{.Size}}' "$IMAGE")"

# Static checks of the image config.
cfg="$(podman image inspect "$IMAGE")"
check_cfg() { # check_cfg JQ-EXPR DESCRIPTION
    if jq -e "$1" <<<"$cfg" >/dev/null 2>&1; then pass "$2"; else fail "$2"; fi
}
check_cfg '.[0].Config.User == "10001:10001"' "image user is 10001:10001"
check_cfg '.[0].Config.Entrypoint == ["omcp-sandbox"] and .[0].Config.Cmd == ["serve"]' \
    "ENTRYPOINT [omcp-sandbox], CMD [serve]"
if jq -e --arg v "$VERSION" --arg s "$SOURCE" '.[0].Labels as $l
        | $l["org.opencontainers.image.licenses"] == "Apache-2.0"
        and $l["org.opencontainers.image.title"] == "omcp-sandbox"
        and $v != "" and $l["org.opencontainers.image.version"] == $v
        and ($l["org.opencontainers.image.source"] // "") == $s' <<<"$cfg" >/dev/null 2>&1; then
    pass "OCI labels (version $VERSION, source ${SOURCE:-empty: origin is no URL})"
else
    fail "OCI labels: $(jq -c '.[0].Labels' <<<"$cfg")"
fi
# A plain `docker build .` (no --build-arg) labels the image with ARG VERSION's default.
arg_version="$(sed -n 's/^ARG VERSION=//p' "$ROOT/Dockerfile")"
if [ "$arg_version" = "$VERSION" ]; then
    pass "Dockerfile ARG VERSION default = Cargo.toml version ($VERSION)"
else
    fail "Dockerfile ARG VERSION default '$arg_version' differs from Cargo.toml version '$VERSION'"
fi
check_cfg '(.[0].Config.Env | index("OMCP_LISTEN=0.0.0.0:8000")) != null
    and (.[0].Config.Env | index("OMCP_CACHE_DIR=/usr/local/share/omcp-sandbox/cache")) != null' \
    "ENV OMCP_LISTEN, OMCP_CACHE_DIR"
check_cfg '((.[0].Healthcheck // .[0].Config.Healthcheck // {}).Test // []) | length > 0' \
    "HEALTHCHECK kept in the image config"

# --------------------------------------------------------------------- run --
PORT="${OMCP_SMOKE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
BASE="http://127.0.0.1:$PORT"
# A read-only root, and a tmpfs at /tmp as the README advises: the scientific runtime makes
# each run's scratch directory there (without one, runs get no writable /tmp).
HARDENING=(--read-only --read-only-tmpfs=false --tmpfs /tmp:rw,mode=1777,size=256m
    --cap-drop=ALL --security-opt no-new-privileges --user 10001)

log "starting $NAME on 127.0.0.1:$PORT"
start_ns=$(date +%s%N)
# --health-interval=disable: podman schedules HEALTHCHECK with systemd timers, and this
# machine may have no systemd; the probe is run by hand below (podman healthcheck run).
# podman 4.3 still logs "unable to get systemd connection" errors for those timers:
# its stderr goes to $SCRATCH/podman.log, shown only when a step fails.
podman run -d --name "$NAME" "${HARDENING[@]}" --health-interval=disable \
    -p "127.0.0.1:$PORT:8000" "$IMAGE" >/dev/null 2>>"$SCRATCH/podman.log" \
    || { cat "$SCRATCH/podman.log" >&2; die "podman run failed"; }

run_req() { # run_req JSON -> response body (fails on non-2xx)
    curl -fsS --max-time 30 -H 'Content-Type: application/json' --data-binary "$1" "$BASE/run"
}

first=""
for _ in $(seq 1 600); do
    if first="$(run_req '{"code": "print(1+1)\n2+2"}' 2>/dev/null)"; then
        break
    fi
    first=""
    podman container inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null | grep -q true \
        || die "container exited: $(podman logs --tail 20 "$NAME" 2>&1)"
    sleep 0.05
done
FIRST_MS=$((($(date +%s%N) - start_ns) / 1000000))
[ -n "$first" ] || die "no /run answered within 30 s of the start"
log "container start -> first served run: ${FIRST_MS} ms"

# /run, the seed example.
if jq -e '.result == 4 and .output == "2\n" and .error == null' <<<"$first" >/dev/null; then
    pass "/run seed example -> result 4, output \"2\\n\", error null"
else
    fail "/run seed example: $first"
fi

# /healthz
health="$(curl -fsS --max-time 10 "$BASE/healthz")" || health=""
if jq -e '.status == "ok" and .runtime.start == "snapshot"' <<<"$health" >/dev/null 2>&1; then
    pass "/healthz ok, runtime.start = snapshot"
else
    fail "/healthz: $health"
fi

# Timeout.
slow="$(run_req '{"code":"while True: pass","timeout_ms":500}')" || slow=""
if jq -e '.stopped == "timeout"' <<<"$slow" >/dev/null 2>&1; then
    pass "/run while True, timeout_ms 500 -> stopped timeout"
else
    fail "/run timeout: $slow"
fi

# Both runtimes, each from its snapshot; a request that names none runs in the scientific one.
if jq -e '(.runtimes | map(.name) | sort) == ["scientific", "stdlib"]
          and (.runtimes | all(.start == "snapshot")) and .runtime.name == "scientific"' \
    <<<"$health" >/dev/null 2>&1; then
    pass "/healthz lists both runtimes, both from snapshots, scientific the default"
else
    fail "/healthz runtimes: $(jq -c '[.runtimes[]? | {name, start}]' <<<"$health" 2>/dev/null)"
fi

# numpy, and a plot that comes back as a PNG (base64 of the PNG signature: iVBORw0KGgo).
numpy="$(run_req '{"code":"import numpy as np\nint((np.arange(10) ** 2).sum())"}')" || numpy=""
if jq -e '.result == 285 and .runtime == "scientific" and .error == null' <<<"$numpy" >/dev/null 2>&1; then
    pass "/run numpy snippet -> 285 (scientific runtime)"
else
    fail "/run numpy: $numpy"
fi
plot="$(run_req '{"code":"import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n1"}')" || plot=""
if jq -e '(.images | length) == 1 and .images[0].mime_type == "image/png"
          and .images[0].width == 640 and .images[0].height == 480
          and (.images[0].data | startswith("iVBORw0KGgo"))' <<<"$plot" >/dev/null 2>&1; then
    pass "/run matplotlib plot -> one 640x480 PNG image"
else
    fail "/run plot: $(jq -c '{error, images_omitted, n: (.images | length)}' <<<"$plot" 2>/dev/null)"
fi

# A session keeps state across calls, and a file written in its /workspace comes back
# (under the read-only root its directory is on the /tmp tmpfs).
session="$(curl -fsS --max-time 30 -X POST -H 'Content-Type: application/json' \
    --data-binary '{"runtime":"scientific"}' "$BASE/sessions" | jq -r '.session_id // empty')" || session=""
turn() { # turn JSON -> the turn's answer
    curl -fsS --max-time 30 -H 'Content-Type: application/json' --data-binary "$1" \
        "$BASE/sessions/$session/run"
}
if [ -n "$session" ] \
    && turn '{"code":"import numpy as np\na = np.arange(5)\nopen(\"a.txt\", \"w\").write(\"hi\")"}' >/dev/null \
    && second="$(turn '{"code":"int(a.sum())"}')" \
    && jq -e '.result == 10 and .turn == 2' <<<"$second" >/dev/null 2>&1 \
    && [ "$(curl -fsS --max-time 10 "$BASE/sessions/$session/files/a.txt")" = "hi" ]; then
    pass "session: state across turns (numpy), a workspace file downloaded"
else
    fail "session: ${session:-no session} ${second:-}"
fi

# The container wrote nothing: the compile cache was baked in (read-only rootfs anyway).
if podman logs "$NAME" 2>&1 | grep -qi 'compiling\|unusable\|could not write'; then
    fail "the server compiled at start (baked cache not used): $(podman logs "$NAME" 2>&1 | grep -i 'compil\|cache' | head -3)"
else
    pass "no compile at start (baked module + snapshot used)"
fi

# HEALTHCHECK command itself (bash /dev/tcp probe) inside the running container.
if podman healthcheck run "$NAME" >/dev/null 2>&1; then
    pass "HEALTHCHECK probe passes"
else
    fail "HEALTHCHECK probe failed"
fi

# ------------------------------------------------------------- MCP over HTTP --
mcp_post() { # mcp_post JSON [SESSION] -> headers to $SCRATCH/h, body (SSE or JSON) on stdout
    local extra=()
    [ -z "${2:-}" ] || extra=(-H "mcp-session-id: $2")
    [ -z "${PROTO:-}" ] || extra+=(-H "mcp-protocol-version: $PROTO")
    curl -sS --max-time 30 -D "$SCRATCH/h" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' "${extra[@]}" \
        --data-binary "$1" "$BASE/mcp"
}
sse_json() { # the JSON-RPC message with id $1 from an SSE (or plain JSON) body on stdin
    sed -n 's/^data: \{0,1\}//p; /^{/p' | jq -c --argjson id "$1" 'select(.id? == $id)' | head -n 1
}

PROTO=""
init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"docker-smoke","version":"1"}}}'
init_resp="$(mcp_post "$init" | sse_json 1)" || init_resp=""
session="$(awk 'tolower($1) == "mcp-session-id:" { print $2 }' "$SCRATCH/h" | tr -d '\r')"
PROTO="$(jq -r '.result.protocolVersion // empty' <<<"$init_resp" 2>/dev/null)"
if [ -n "$session" ] && [ -n "$PROTO" ]; then
    pass "MCP/HTTP initialize (protocol $PROTO, session id set)"
    mcp_post '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$session" >/dev/null || true
    code="$(awk 'NR == 1 { print $2 }' "$SCRATCH/h")"
    case "$code" in 2*) pass "MCP/HTTP notifications/initialized -> $code" ;;
        *) fail "MCP/HTTP notifications/initialized -> $code" ;; esac
    call='{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_python","arguments":{"code":"print(1+1)\n2+2"}}}'
    call_resp="$(mcp_post "$call" "$session" | sse_json 2)" || call_resp=""
    if jq -e '.result.isError != true and .result.structuredContent.result == 4
            and .result.structuredContent.output == "2\n"' <<<"$call_resp" >/dev/null 2>&1; then
        pass "MCP/HTTP tools/call run_python -> result 4"
    else
        fail "MCP/HTTP tools/call: $call_resp"
    fi
    curl -sS --max-time 10 -X DELETE -H "mcp-session-id: $session" "$BASE/mcp" -o /dev/null || true
else
    fail "MCP/HTTP initialize: headers $(tr '\r\n' '  ' <"$SCRATCH/h") body $init_resp"
fi

# ------------------------------------------------------------ MCP over stdio --
# Driven line by line (answer awaited before the next request), not by closing stdin
# early, so an EOF cannot race the tools/call.
stdio_out="$(python3 - "$IMAGE" "$NAME-stdio" "${HARDENING[@]}" <<'PY'
import json, subprocess, sys, threading, queue
image, name, hardening = sys.argv[1], sys.argv[2], sys.argv[3:]
p = subprocess.Popen(["podman", "run", "-i", "--rm", "--name", name, "--network", "none",
                      *hardening, image, "mcp"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                     text=True)
q = queue.Queue()
threading.Thread(target=lambda: [q.put(l) for l in p.stdout] and None, daemon=True).start()
def send(msg):
    p.stdin.write(json.dumps(msg) + "\n"); p.stdin.flush()
def wait_id(i, timeout=60):
    while True:
        line = q.get(timeout=timeout)
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("id") == i:
            return msg
try:
    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "docker-smoke", "version": "1"}}})
    init = wait_id(1)
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python", "arguments": {"code": "print(1+1)\n2+2"}}})
    call = wait_id(2)
    print(json.dumps({"init": init, "call": call}))
finally:
    p.stdin.close()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
PY
)" || stdio_out=""
if jq -e '.init.result.serverInfo != null and .call.result.structuredContent.result == 4
        and .call.result.structuredContent.output == "2\n"' <<<"$stdio_out" >/dev/null 2>&1; then
    pass "MCP/stdio (podman run -i ... mcp): initialize + tools/call -> result 4"
else
    fail "MCP/stdio: ${stdio_out:-no answer}"
fi

# ------------------------------------------------------------------ SIGTERM --
stop_start=$SECONDS
podman stop -t 10 "$NAME" >/dev/null 2>>"$SCRATCH/podman.log" || cat "$SCRATCH/podman.log" >&2
stop_secs=$((SECONDS - stop_start))
exit_code="$(podman container inspect -f '{{.State.ExitCode}}' "$NAME")"
if [ "$stop_secs" -lt 5 ] && [ "$exit_code" = 0 ]; then
    pass "podman stop (SIGTERM): exit 0 in ${stop_secs} s"
else
    fail "podman stop took ${stop_secs} s, exit code $exit_code"
fi

# ------------------------------------------------------------ kube play --
# The Helm chart's Deployment, rendered by Helm's own library with this image, run by
# `podman kube play`: the closest thing to a cluster these machines have (no registry
# serves Kubernetes' node images). It exercises the chart's security context (non-root,
# read-only root, no capabilities, seccomp), its emptyDir volumes and its environment.
K8S_PY="$ROOT/.cache/clients/k8s/bin/python"
if [ ! -x "$K8S_PY" ]; then
    fail "kube play: $K8S_PY missing (run tests/prepare.sh)"
else
    KUBE_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    KUBE_YAML="$SCRATCH/deployment.yaml"
    if "$K8S_PY" "$ROOT/tests/helm/render.py" "${IMAGE%:*}" "${IMAGE##*:}" "$KUBE_PORT" >"$KUBE_YAML" \
        && podman kube play "$KUBE_YAML" >"$SCRATCH/kube.log" 2>&1; then
        # Up to 3 minutes: the first pod also builds podman's local pause image.
        kube_answer=""
        for _ in $(seq 1 1800); do
            kube_answer="$(curl -fsS --max-time 30 -H 'Content-Type: application/json' \
                --data-binary '{"code": "import os\nos.getuid(), 6 * 7"}' \
                "http://127.0.0.1:$KUBE_PORT/run" 2>/dev/null)" && break
            kube_answer=""
            sleep 0.1
        done
        ready="$(curl -fsS --max-time 5 "http://127.0.0.1:$KUBE_PORT/readyz" 2>/dev/null || true)"
        if jq -e '.result.data == [10001, 42] and .error == null' <<<"$kube_answer" >/dev/null 2>&1 \
            && jq -e '.status == "ok"' <<<"$ready" >/dev/null 2>&1; then
            pass "podman kube play of the chart's Deployment: /readyz ok, /run as UID 10001 -> 42"
        else
            fail "kube play: /run ${kube_answer:-no answer}, /readyz ${ready:-no answer}: $(podman ps -a --pod 2>&1; for c in $(podman ps -a -q --filter label=app.kubernetes.io/instance=smoke 2>/dev/null); do podman logs --tail 20 "$c" 2>&1; done)"
        fi
    else
        fail "kube play: $(tail -20 "$SCRATCH/kube.log" 2>/dev/null)"
    fi
    podman kube down "$KUBE_YAML" >/dev/null 2>&1 || true
fi

# The summary is printed by cleanup (trap), after the scratch folder is removed, also
# when a step above aborts the run.
[ "$FAILED" -eq 0 ]
