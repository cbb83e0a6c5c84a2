#!/usr/bin/env python3
"""Code mode's benchmark: bench/run.sh runs it after the sessions (`bench/run.sh --code-mode-only`:
alone).

One run, one upstream: `@modelcontextprotocol/server-everything` over stdio (installed by
tests/prepare.sh), its `echo` tool with a short message. Measured:

- `direct`: the baseline. A minimal client of our own (newline-delimited JSON-RPC on the
  child's pipes, no SDK) starts the same server and calls `echo` back to back: the round trip
  of the upstream itself, with as little client cost as a client can have.
- `guest`: `serve --runtimes stdlib,scientific --tools-config` with that server; one run per
  runtime calls `tools.everything.echo(message=...)` N times in a loop and times each call
  inside the guest (`time.perf_counter_ns` around the call). The answer's `tool_calls` give
  the host's own time per call (frame decoded to answer encoded: schema check, rmcp's client,
  the upstream). Overhead = guest p50 - direct p50 (what code mode adds to a call: the door,
  the frame in both directions, argument checks, the guest's Python around it).
- `loop100`: the server's `duration_ms` of a run that makes 100 calls (one cell), per runtime,
  beside the same cell without the calls.

Writes bench/out/code_mode.json and a "## Code mode" section at the end of
bench/out/summary.md (replacing an earlier one). Every process binds 127.0.0.1 only (the
upstream is a child on pipes) and is stopped before this exits. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import Server, fmt, new_results, part_args, section_runner, stats, write_section

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / ".cache/clients"
NODE = CLIENTS / "node22/node_modules/node/bin/node"
EVERYTHING = CLIENTS / "upstream/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
MARK = "## Code mode"
MESSAGE = "ping"


def direct(calls: int) -> dict[str, Any]:
    """The upstream's own round trip, from a minimal JSON-RPC client on its pipes."""
    proc = subprocess.Popen([str(NODE), str(EVERYTHING)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin and proc.stdout

    def send(msg: dict[str, Any]) -> None:
        proc.stdin.write((json.dumps(msg) + "\n").encode())
        proc.stdin.flush()

    def answer(want: int) -> dict[str, Any]:
        while True:
            msg = json.loads(proc.stdout.readline())
            if msg.get("id") == want and ("result" in msg or "error" in msg):
                return msg

    try:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}})
        answer(0)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        samples = []
        for i in range(1, calls + 1):
            t = time.perf_counter_ns()
            send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                  "params": {"name": "echo", "arguments": {"message": MESSAGE}}})
            msg = answer(i)
            samples.append((time.perf_counter_ns() - t) / 1e6)
            assert msg["result"]["content"][0]["text"] == f"Echo: {MESSAGE}", msg
        return stats(samples[5:])
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def post(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    conn = server.conn()
    conn.request("POST", "/run", json.dumps(body), {"content-type": "application/json"})
    response = json.loads(conn.getresponse().read())
    conn.close()
    return response


def guest(server: Server, runtime: str, calls: int) -> dict[str, Any]:
    code = f"""import time, tools
samples = []
for i in range({calls}):
    t = time.perf_counter_ns()
    tools.everything.echo(message={MESSAGE!r})
    samples.append((time.perf_counter_ns() - t) / 1e6)
samples"""
    answer = post(server, {"code": code, "runtime": runtime, "max_tool_calls": calls})
    assert answer["error"] is None, answer["error"]
    calls_made = answer["tool_calls"]
    assert len(calls_made) == calls and all(c["ok"] for c in calls_made), calls_made[-3:]
    return {
        "guest": stats(answer["result"][5:]),
        "host": stats([c["duration_ms"] for c in calls_made][5:]),
    }


def loop100(server: Server, runtime: str, repeats: int) -> dict[str, Any]:
    with_calls = "import tools\nfor i in range(100):\n    tools.everything.echo(message='x')\n"
    without = "import tools\nfor i in range(100):\n    pass\n"
    out: dict[str, Any] = {}
    for name, code in (("calls", with_calls), ("none", without)):
        samples = []
        for _ in range(repeats):
            answer = post(server, {"code": code, "runtime": runtime})
            assert answer["error"] is None, answer["error"]
            assert len(answer.get("tool_calls", [])) == (100 if name == "calls" else 0)
            samples.append(answer["duration_ms"])
        out[name] = stats(samples)
    return out


def report(results: dict[str, Any]) -> str:
    s = results["sections"]
    d = s.get("direct", {})
    lines = [MARK, "",
             f"`bench/run.sh --code-mode-only` ({results['when']}, load {results['load']}): one "
             "upstream, `@modelcontextprotocol/server-everything` over stdio, its `echo` tool. "
             "Per call, p50 (p95) in ms; overhead = guest p50 - direct p50.", "",
             "| path | p50 | p95 | overhead |", "|---|---:|---:|---:|",
             f"| direct: a minimal JSON-RPC client on the server's pipes (baseline) | {fmt(d.get('p50_ms'), 3)} | "
             f"{fmt(d.get('p95_ms'), 3)} | - |"]
    for runtime in ("stdlib", "scientific"):
        g = s.get(f"guest_{runtime}", {})
        if not g:
            continue
        over = None if d.get("p50_ms") is None else g["guest"]["p50_ms"] - d["p50_ms"]
        lines.append(f"| {runtime}: `tools.everything.echo()` timed in the guest | {fmt(g['guest']['p50_ms'], 3)} | "
                     f"{fmt(g['guest']['p95_ms'], 3)} | {fmt(over, 3)} |")
        lines.append(f"| {runtime}: the host's time for the same calls (`tool_calls[].duration_ms`) | "
                     f"{fmt(g['host']['p50_ms'], 3)} | {fmt(g['host']['p95_ms'], 3)} | - |")
    lines += ["", "| 100 calls in one cell (server `duration_ms`, p50) | with calls | the loop alone |",
              "|---|---:|---:|"]
    for runtime in ("stdlib", "scientific"):
        loop = s.get(f"loop100_{runtime}")
        if loop:
            lines.append(f"| {runtime} | {fmt(loop['calls']['p50_ms'])} | {fmt(loop['none']['p50_ms'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = part_args(__doc__)
    args = parser.parse_args()
    calls = 50 if args.quick else 300
    repeats = 3 if args.quick else 10
    results = new_results()
    run_section = section_runner(results)
    config = args.out / "code_mode_tools.json"
    config.write_text(json.dumps({"mcpServers": {"everything": {"command": str(NODE), "args": [str(EVERYTHING)]}}}))
    run_section("direct", lambda: direct(calls))
    server = Server(args.bin, args.cache_dir, ["--tools-config", str(config), "--max-tool-calls", "1000"], args.out / "code_mode_server.log",
                    args.out / "pids.txt", runtimes="stdlib,scientific")
    try:
        for runtime in ("stdlib", "scientific"):
            post(server, {"code": "import tools\ntools.everything.echo(message='warm')", "runtime": runtime})
            run_section(f"guest_{runtime}", lambda r=runtime: guest(server, r, calls))
            run_section(f"loop100_{runtime}", lambda r=runtime: loop100(server, r, repeats))
    finally:
        server.stop()
    write_section(args.out, "code_mode", results, MARK, report(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
