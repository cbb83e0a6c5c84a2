#!/usr/bin/env bash
# bench/run.sh - the whole benchmark in one go (about 3-5 minutes once the release build and
# the test clients are in place; the first run also compiles and installs those).
#
#   bench/run.sh            full run
#   bench/run.sh --quick    few samples: checks that everything works (~1-2 min)
#
# Steps: release build (if needed) -> tests/prepare.sh (idempotent) -> bench-only Python
# packages into the same venv (wasmtime, matplotlib), wrk from Debian if missing ->
# `cargo bench --bench engine` (in-process) -> bench/bench.py (cold start, POST /run,
# MCP stdio + HTTP, wasmtime-py and native baselines, summary, chart).
#
# Writes bench/out/{engine.json,results.json,summary.md,*.log} (gitignored) and
# bench/latency.png (committed, shown in the README). Every server listens on 127.0.0.1 only
# and is stopped on exit, including on Ctrl-C.

set -euo pipefail

readonly WASMTIME_PY_VERSION="50.0.1"
readonly MATPLOTLIB_VERSION="3.11.2"

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly OUT="$ROOT/bench/out"
readonly BIN="$ROOT/target/release/omcp-sandbox"
QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

log() { printf 'bench/run.sh: %s\n' "$*" >&2; }

cd "$ROOT"
mkdir -p "$OUT"
: >"$OUT/pids.txt"
started=$SECONDS
BENCH_PID=""

# Stop whatever this run started and is still alive: bench.py (which stops its own servers on
# SIGTERM) and, should it have died hard, the servers it recorded in pids.txt.
cleanup() {
    local pid
    if [[ -n "$BENCH_PID" ]] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    while read -r pid; do
        [[ -n "$pid" ]] || continue
        # Only our own server processes: a recycled pid is left alone.
        if kill -0 "$pid" 2>/dev/null && grep -qa omcp-sandbox "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done <"$OUT/pids.txt"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The native floor: the distribution's python3 when there is one; otherwise the real
# interpreter behind `python3` on PATH (resolved, so a pyenv shim's ~60 ms is not counted).
if [[ -x /usr/bin/python3 ]]; then
    NATIVE_PY=/usr/bin/python3
else
    NATIVE_PY="$(python3 -c 'import sys; print(sys.executable)')"
fi

log "release build (no-op when up to date)"
cargo build --release --quiet
log "compiling the engine bench"
cargo bench --bench engine --no-run --quiet

log "test clients: tests/prepare.sh"
tests/prepare.sh >"$OUT/prepare.log" 2>&1 || { cat "$OUT/prepare.log" >&2; exit 1; }
# shellcheck source=/dev/null
source "$ROOT/.cache/clients/env.sh"
VENV_PY="$OMCP_CLIENTS/venv/bin/python"

if ! "$VENV_PY" - "$WASMTIME_PY_VERSION" "$MATPLOTLIB_VERSION" <<'EOF' 2>/dev/null; then
import importlib.metadata as m, sys
assert m.version("wasmtime") == sys.argv[1] and m.version("matplotlib") == sys.argv[2]
EOF
    log "installing wasmtime==$WASMTIME_PY_VERSION and matplotlib==$MATPLOTLIB_VERSION into the test venv"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check \
        "wasmtime==$WASMTIME_PY_VERSION" "matplotlib==$MATPLOTLIB_VERSION"
fi

# wrk drives the 4-client throughput run (C, one thread: light on a one-core machine).
# Without it bench.py falls back to Python threads.
if ! command -v wrk >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing wrk (Debian package)"
        apt-get install -y -qq wrk >"$OUT/apt.log" 2>&1 \
            || { apt-get update -qq >>"$OUT/apt.log" 2>&1 && apt-get install -y -qq wrk >>"$OUT/apt.log" 2>&1; } \
            || log "wrk unavailable; using the Python client for throughput"
    else
        log "wrk not installed; using the Python client for throughput"
    fi
fi

log "in-process engine bench: cargo bench --bench engine"
engine_env=()
[[ "$QUICK" == 1 ]] && engine_env=(OMCP_BENCH_QUICK=1)
env "${engine_env[@]}" cargo bench --bench engine --quiet 2>&1 | tee "$OUT/engine.log"

log "end-to-end measurements and baselines: bench/bench.py"
bench_args=(--bin "$BIN" --out "$OUT" --png "$ROOT/bench/latency.png"
    --engine-json "$OUT/engine.json" --native-python "$NATIVE_PY")
[[ "$QUICK" == 1 ]] && bench_args+=(--quick)
status=0
"$VENV_PY" "$ROOT/bench/bench.py" "${bench_args[@]}" &
BENCH_PID=$!
wait "$BENCH_PID" || status=$?
BENCH_PID=""

log "total wall time: $((SECONDS - started)) s (status $status)"
exit "$status"
