#!/usr/bin/env bash
# tests/mcp/inspector.sh - drive omcp-sandbox with the MCP Inspector CLI (2.x, installed
# locally with Node 22 by tests/prepare.sh).
#
# Usage:
#   tests/mcp/inspector.sh stdio BIN [SERVER_ARG...]   spawns `BIN mcp [SERVER_ARG...]`
#   tests/mcp/inspector.sh http URL [--token TOKEN]    streamable HTTP, e.g. http://127.0.0.1:PORT/mcp
#
# Checks:
#   1. --method tools/list --strict                            lists run_python, exit 0 (6 would
#      mean an error-severity tool-schema portability problem; warnings are allowed)
#   2. --method tools/call --tool-name run_python code='6*7'   structuredContent result 42, exit 0
#   3. --method tools/call --tool-name run_python code='1/0'   exit 5 (the Inspector's
#      TOOL_ERROR: the result had isError true) and ZeroDivisionError in the output
# Prints each command and its outcome; exits 0 only if all are as expected.

set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_SH="$ROOT/.cache/clients/env.sh"
EXIT_TOOL_ERROR=5

usage() {
    echo "usage: $0 stdio BIN [SERVER_ARG...] | $0 http URL [--token TOKEN]" >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
MODE="$1"
shift

if [[ ! -f "$ENV_SH" ]]; then
    echo "inspector: $ENV_SH missing: run tests/prepare.sh first" >&2
    exit 2
fi
# shellcheck source=/dev/null
source "$ENV_SH"
INSPECTOR="$OMCP_CLIENTS/npm/node_modules/.bin/mcp-inspector"

case "$MODE" in
    stdio)
        BIN="$1"
        shift
        [[ -x "$BIN" ]] || { echo "inspector: $BIN is not an executable" >&2; exit 2; }
        BIN="$(cd -- "$(dirname -- "$BIN")" && pwd)/$(basename -- "$BIN")"
        # The server command goes last, after `--`, so its own flags are not read as the
        # Inspector's.
        TARGET_BEFORE=(--transport stdio)
        TARGET_AFTER=(-- "$BIN" mcp "$@")
        ;;
    http)
        URL="$1"
        shift
        # --stored-auth-only: never start an interactive OAuth flow on a 401.
        TARGET_BEFORE=(--transport http --server-url "$URL" --stored-auth-only)
        TARGET_AFTER=()
        if [[ $# -gt 0 ]]; then
            [[ $# -eq 2 && "$1" == --token ]] || usage
            TARGET_BEFORE+=(--header "Authorization: Bearer $2")
        fi
        ;;
    *) usage ;;
esac

# Keep the Inspector's catalog, client config and stored secrets out of $HOME.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/omcp-inspector.XXXXXX")"
trap 'rm -rf -- "$WORK"' EXIT
export MCP_CATALOG_PATH="$WORK/mcp.json"
export MCP_CLIENT_CONFIG_PATH="$WORK/client.json"
export MCP_STORAGE_DIR="$WORK/storage"
export MCP_INSPECTOR_SECRET_FILE="$WORK/secrets.json"

echo "inspector: $("$INSPECTOR" --cli --version 2>/dev/null | tail -n 1) (node $(node --version)), $MODE"

failed=0
passed=0
OUT="$WORK/out"

# run_inspector NAME WANT_EXIT GREP_PATTERN INSPECTOR_ARGS...
run_inspector() {
    local name="$1" want_exit="$2" pattern="$3"
    shift 3
    local cmd=("$INSPECTOR" --cli "${TARGET_BEFORE[@]}" "$@" "${TARGET_AFTER[@]}")
    local shown
    shown="$(printf '%q ' "${cmd[@]}")"
    echo "+ ${shown/#"$INSPECTOR"/mcp-inspector}"
    local rc=0
    (cd "$WORK" && timeout 120 "${cmd[@]}") >"$OUT" 2>"$OUT.err" </dev/null || rc=$?
    local problems=()
    [[ $rc -eq $want_exit ]] || problems+=("exit $rc, want $want_exit")
    if ! grep -qE -- "$pattern" "$OUT" "$OUT.err"; then
        problems+=("output lacks /$pattern/")
    fi
    if [[ ${#problems[@]} -eq 0 ]]; then
        echo "PASS $name (exit $rc)"
        passed=$((passed + 1))
    else
        echo "FAIL $name: ${problems[*]}"
        echo "  stdout:"
        head -c 3000 "$OUT" | sed 's/^/    /'
        echo "  stderr:"
        head -c 3000 "$OUT.err" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
}

# --strict: exit 6 if a tool schema has an error-severity portability problem (warnings pass).
run_inspector tools_list 0 '"name": "run_python"' --method tools/list --strict
run_inspector call_value 0 '"result": 42([^0-9.]|$)' \
    --method tools/call --tool-name run_python --tool-arg 'code=6*7'
run_inspector call_error "$EXIT_TOOL_ERROR" 'ZeroDivisionError' \
    --method tools/call --tool-name run_python --tool-arg 'code=1/0'

echo "inspector: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
