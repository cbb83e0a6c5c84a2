#!/usr/bin/env bash
# tests/mcp/conformance.sh URL - run the MCP conformance suite (@modelcontextprotocol/conformance,
# installed locally by tests/prepare.sh) against a streamable HTTP MCP endpoint, e.g.
# http://127.0.0.1:PORT/mcp (no auth token: the suite cannot send one).
#
# Scenarios: the protocol behaviour any server must get right. Not logging-set-level (the
# server does not advertise logging) and not the fixture-based ones (tools-call-*, resources-*,
# prompts-*), which expect test tools a product server does not have.
#
# Prints each scenario's summary line ("Passed: N/M, F failed, W warnings"); exits 0 only if
# every scenario exited 0 with no FAILURE check in its checks.json (warnings are allowed).
# Per-scenario results (checks.json) go to a temp dir (kept, its path is printed);
# set CONFORMANCE_OUT=DIR to choose it.

set -euo pipefail

SCENARIOS=(server-initialize ping tools-list dns-rebinding-protection)

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)"
ENV_SH="$ROOT/.cache/clients/env.sh"

if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
    echo "usage: $0 URL   (e.g. http://127.0.0.1:8000/mcp)" >&2
    exit 2
fi
URL="$1"

if [[ ! -f "$ENV_SH" ]]; then
    echo "conformance: $ENV_SH missing: run tests/prepare.sh first" >&2
    exit 2
fi
# shellcheck source=/dev/null
source "$ENV_SH"
CONFORMANCE="$OMCP_CLIENTS/npm/node_modules/.bin/conformance"

OUT="${CONFORMANCE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/omcp-conformance.XXXXXX")}"
mkdir -p "$OUT"
echo "conformance: $("$CONFORMANCE" --version) (node $(node --version)) against $URL; results in $OUT"

failed=0
for scenario in "${SCENARIOS[@]}"; do
    log="$OUT/$scenario.log"
    rc=0
    # Keep the suite's own working files out of the repo: run from the output dir.
    (cd "$OUT" && timeout 120 "$CONFORMANCE" server --url "$URL" --scenario "$scenario" \
        --output-dir "$OUT/$scenario") >"$log" 2>&1 || rc=$?
    # A single-scenario run ends with "Passed: N/M, F failed, W warnings".
    summary="$(grep -E "^Passed: [0-9]+/[0-9]+" "$log" | tail -n 1 || true)"
    # checks.json is the source of truth: any FAILURE check fails the scenario.
    failures=0
    checks_found=0
    while IFS= read -r checks; do
        checks_found=1
        n="$(grep -c '"status": *"FAILURE"' "$checks" || true)"
        failures=$((failures + n))
    done < <(find "$OUT/$scenario" -name checks.json 2>/dev/null)
    if [[ -z "$summary" ]]; then
        summary="(no summary line; see $log)"
    fi
    if [[ $rc -eq 0 && $checks_found -eq 1 && $failures -eq 0 ]] && grep -qE ", 0 failed" <<<"$summary"; then
        echo "PASS $scenario: $summary"
    else
        echo "FAIL $scenario (exit $rc, $failures failed checks in checks.json): $summary"
        # Show the failing checks (the log has one line per check).
        sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E "FAILURE|WARNING|[Ee]rror" | head -n 20 | sed 's/^/    /' || true
        failed=$((failed + 1))
    fi
done

passed=$(( ${#SCENARIOS[@]} - failed ))
echo "conformance: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
