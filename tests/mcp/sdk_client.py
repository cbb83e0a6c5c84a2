#!/usr/bin/env python3
"""Real-client test of omcp-sandbox's MCP server with the official Python SDK (mcp 2.3.x).

Usage:
    sdk_client.py stdio -- CMD [ARGS...]          spawn the server, speak MCP over its stdio
    sdk_client.py http URL [--token TOKEN | --token-file FILE]   streamable HTTP at URL

Run it with the venv from tests/prepare.sh (`source .cache/clients/env.sh` puts its python
first on PATH).

Prints one JSON object on stdout:
    {"passed": [names], "failed": [{"name", "detail"}], "latency_ms": {"p50", "p95", "n"},
     "info": {...}}
and exits 0 only if every check passed. The server's own stderr (stdio mode) goes to stderr.

Assumption: the server is started with `--max-concurrency 1`. The cancellation check cancels
a 30 s sleep after 0.5 s and then needs a follow-up call to finish in < 5 s: with one slot
that proves the server stopped the cancelled run; with more slots the check still runs but
proves less (the follow-up may get another slot).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import ClientSession, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

TOOL = "run_python"
CHECK_TIMEOUT_S = 60.0
INVALID_PARAMS = -32602
LATENCY_CALLS = 30
CANCEL_AFTER_S = 0.5
FOLLOW_UP_LIMIT_S = 5.0


class CheckFailed(Exception):
    pass


def expect(cond: bool, detail: str) -> None:
    if not cond:
        raise CheckFailed(detail)


def dump(model: Any) -> Any:
    """A pydantic model as the camelCase JSON the server sent."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "type", "") == "text")


def short(value: Any, limit: int = 600) -> str:
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    return s if len(s) <= limit else s[:limit] + "..."


class Checks:
    def __init__(self, session: ClientSession) -> None:
        self.s = session
        self.passed: list[str] = []
        self.failed: list[dict[str, str]] = []
        self.info: dict[str, Any] = {}
        self.latency: dict[str, Any] = {"p50": None, "p95": None, "n": 0}

    async def check(self, name: str, fn: Callable[[], Awaitable[None]], timeout: float = CHECK_TIMEOUT_S) -> bool:
        try:
            with anyio.fail_after(timeout):
                await fn()
        except CheckFailed as exc:
            self.failed.append({"name": name, "detail": str(exc)})
            return False
        except TimeoutError:
            self.failed.append({"name": name, "detail": f"no answer within {timeout} s"})
            return False
        except MCPError as exc:
            self.failed.append(
                {"name": name, "detail": f"MCP error {exc.code}: {exc.message} (data={short(exc.data)})"}
            )
            return False
        except Exception as exc:  # noqa: BLE001 - every other failure is a failed check
            self.failed.append({"name": name, "detail": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})
            return False
        self.passed.append(name)
        return True

    async def call(self, arguments: dict[str, Any]) -> Any:
        return await self.s.call_tool(TOOL, arguments)

    async def call_ok(self, code: str) -> Any:
        """A call that must succeed with output "2\\n" (used after other checks)."""
        res = await self.call({"code": code})
        sc = res.structured_content or {}
        expect(not res.is_error, f"isError true: {short(dump(res))}")
        expect(sc.get("output") == "2\n", f"output {sc.get('output')!r}, want '2\\n': {short(dump(res))}")
        return res

    # -- the checks ----------------------------------------------------------------

    async def initialize(self) -> None:
        init = await self.s.initialize()
        self.info["protocol_version"] = init.protocol_version
        self.info["server_info"] = dump(init.server_info)
        self.info["capabilities"] = dump(init.capabilities)
        expect(init.server_info.name == "omcp-sandbox", f"server name {init.server_info.name!r}")
        instructions = (init.instructions or "").lower()
        expect(bool(instructions), "no instructions")
        for word in ("fresh", "network"):
            expect(word in instructions, f"instructions do not mention {word!r}: {init.instructions!r}")
        expect(init.capabilities.tools is not None, f"tools capability missing: {dump(init.capabilities)}")

    async def tools_list(self) -> None:
        listing = await self.s.list_tools()
        names = [t.name for t in listing.tools]
        self.info["tools"] = names
        tool = next((t for t in listing.tools if t.name == TOOL), None)
        expect(tool is not None, f"{TOOL} not listed: {names}")
        assert tool is not None
        schema = tool.input_schema
        expect(schema.get("type") == "object", f"inputSchema type {schema.get('type')!r}")
        expect("code" in (schema.get("required") or []), f"inputSchema does not require code: {short(schema)}")
        expect("code" in (schema.get("properties") or {}), f"inputSchema has no code property: {short(schema)}")
        expect(tool.output_schema is not None, "no outputSchema")
        props = (tool.output_schema or {}).get("properties") or {}
        for field in ("result", "output", "error", "stderr", "exit_code", "stopped", "truncated", "duration_ms",
                      "fuel_used"):
            expect(field in props, f"outputSchema lacks {field!r}: {sorted(props)}")
        ann = tool.annotations
        expect(ann is not None, "no annotations")
        assert ann is not None
        expect(ann.destructive_hint is False, f"destructiveHint {ann.destructive_hint!r}, want false")
        expect(ann.open_world_hint is False, f"openWorldHint {ann.open_world_hint!r}, want false")

    async def call_value(self) -> None:
        # call_tool also validates structuredContent against the listed outputSchema.
        res = await self.call({"code": "print(1+1)\n2+2"})
        sc = res.structured_content
        expect(not res.is_error, f"isError true: {short(dump(res))}")
        expect(isinstance(sc, dict), f"no structuredContent: {short(dump(res))}")
        assert isinstance(sc, dict)
        expect(sc.get("result") == 4 and type(sc.get("result")) is int, f"result {sc.get('result')!r}, want 4")
        expect(sc.get("output") == "2\n", f"output {sc.get('output')!r}, want '2\\n'")
        expect(sc.get("error") is None, f"error {sc.get('error')!r}")
        expect(sc.get("stopped") is None, f"stopped {sc.get('stopped')!r}")
        text = text_of(res)
        expect("4" in text, f"text content lacks 4: {text!r}")

    async def call_exception(self) -> None:
        res = await self.call({"code": "1/0"})
        sc = res.structured_content or {}
        expect(res.is_error is True, f"isError {res.is_error!r}, want true: {short(dump(res))}")
        expect("ZeroDivisionError" in (sc.get("error") or ""), f"structuredContent.error {sc.get('error')!r}")
        text = text_of(res)
        expect("Traceback" in text and "ZeroDivisionError" in text, f"text lacks the traceback: {text!r}")

    async def call_timeout(self) -> None:
        t0 = time.monotonic()
        res = await self.call({"code": "while True: pass", "timeout_ms": 500})
        took = time.monotonic() - t0
        self.info["timeout_call_s"] = round(took, 3)
        sc = res.structured_content or {}
        expect(res.is_error is True, f"isError {res.is_error!r}, want true: {short(dump(res))}")
        expect(sc.get("stopped") == "timeout", f"stopped {sc.get('stopped')!r}, want 'timeout': {short(sc)}")
        expect(took < 10, f"a 500 ms timeout took {took:.1f} s")

    async def cancellation(self) -> None:
        # Leaving the scope cancels call_tool; the SDK then sends notifications/cancelled.
        t0 = time.monotonic()
        with anyio.move_on_after(CANCEL_AFTER_S) as scope:
            res = await self.call({"code": "import time\ntime.sleep(30)", "timeout_ms": 20000})
        if not scope.cancelled_caught:
            raise CheckFailed(f"the 30 s sleep returned before the cancel: {short(dump(res))}")
        self.info["cancel_s"] = round(time.monotonic() - t0, 3)
        t1 = time.monotonic()
        await self.call_ok("print(1+1)")
        took = time.monotonic() - t1
        self.info["after_cancel_call_s"] = round(took, 3)
        expect(
            took < FOLLOW_UP_LIMIT_S,
            f"follow-up call took {took:.1f} s: the cancelled run seems to still hold its slot "
            "(assumes the server runs with --max-concurrency 1)",
        )

    async def progress(self) -> None:
        # A run longer than a second, with a progress token (the SDK sends one when a
        # callback is given): at least one notification while running and a final one.
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        res = await self.s.call_tool(
            TOOL, {"code": "import time\ntime.sleep(2.5)\n'slept'"}, progress_callback=on_progress
        )
        self.info["progress"] = seen
        expect(not res.is_error, f"isError true: {short(dump(res))}")
        expect(len(seen) >= 2, f"want a start and an end progress notification, got {seen}")
        expect(seen[-1][2] == "finished", f"last progress message {seen[-1][2]!r}, want 'finished'")
        expect(all(a[0] <= b[0] for a, b in zip(seen, seen[1:])), f"progress went backwards: {seen}")

    async def unknown_tool(self) -> None:
        try:
            res = await self.s.call_tool("no_such_tool", {"code": "1"})
        except MCPError as exc:
            self.info["unknown_tool"] = {"kind": "jsonrpc_error", "code": exc.code, "message": exc.message}
            return
        self.info["unknown_tool"] = {"kind": "tool_result", "isError": res.is_error, "text": text_of(res)}
        expect(res.is_error is True, f"unknown tool gave a successful result: {short(dump(res))}")

    async def _invalid_params(self, key: str, arguments: dict[str, Any]) -> None:
        try:
            res = await self.call(arguments)
        except MCPError as exc:
            self.info[key] = {"code": exc.code, "message": exc.message}
            expect(exc.code == INVALID_PARAMS, f"JSON-RPC error {exc.code} ({exc.message}), want {INVALID_PARAMS}")
            return
        raise CheckFailed(f"no JSON-RPC error; got a tool result: {short(dump(res))}")

    async def missing_code(self) -> None:
        await self._invalid_params("missing_code", {})

    async def code_wrong_type(self) -> None:
        await self._invalid_params("code_wrong_type", {"code": 123})

    async def after_bad_input(self) -> None:
        await self.call_ok("print(1+1)")

    async def latencies(self) -> None:
        samples: list[float] = []
        for _ in range(LATENCY_CALLS):
            t0 = time.perf_counter()
            await self.call_ok("print(1+1)")
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()

        def pct(p: float) -> float:  # nearest rank
            rank = max(1, -(-len(samples) * p // 100))
            return round(samples[int(rank) - 1], 2)

        self.latency = {"p50": pct(50), "p95": pct(95), "n": len(samples)}

    async def run(self) -> dict[str, Any]:
        await self.check("initialize", self.initialize)
        if self.s.initialize_result is None:  # no handshake: nothing else can run
            for name in ("tools_list", "call_value", "call_exception", "call_timeout", "progress", "cancellation",
                         "unknown_tool", "missing_code", "code_wrong_type", "after_bad_input", "latency"):
                self.failed.append({"name": name, "detail": "skipped: the initialize handshake failed"})
            return self.report()
        await self.check("tools_list", self.tools_list)
        await self.check("call_value", self.call_value)
        await self.check("call_exception", self.call_exception)
        await self.check("call_timeout", self.call_timeout)
        await self.check("progress", self.progress)
        await self.check("cancellation", self.cancellation)
        await self.check("unknown_tool", self.unknown_tool)
        await self.check("missing_code", self.missing_code)
        await self.check("code_wrong_type", self.code_wrong_type)
        await self.check("after_bad_input", self.after_bad_input)
        await self.check("latency", self.latencies, timeout=120)
        return self.report()

    def report(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "latency_ms": self.latency, "info": self.info}


async def run_stdio(cmd: list[str]) -> dict[str, Any]:
    params = StdioServerParameters(command=cmd[0], args=cmd[1:])
    async with stdio_client(params, errlog=sys.stderr) as (read, write):
        async with ClientSession(read, write) as session:
            return await Checks(session).run()


async def run_http(url: str, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                return await Checks(session).run()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    stdio = sub.add_parser("stdio", help="spawn the server: stdio -- CMD ARGS...")
    stdio.add_argument("cmd", nargs=argparse.REMAINDER)
    http = sub.add_parser("http", help="streamable HTTP: http URL [--token TOKEN]")
    http.add_argument("url")
    http.add_argument("--token")
    http.add_argument("--token-file")
    args = parser.parse_args(argv)
    if args.mode == "stdio":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        if not args.cmd:
            parser.error("stdio needs a command: stdio -- CMD ARGS...")
    elif args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            args.token = f.read().strip()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        if args.mode == "stdio":
            report = anyio.run(run_stdio, args.cmd)
        else:
            report = anyio.run(run_http, args.url, args.token)
    except BaseException as exc:  # noqa: BLE001 - transport failures: report, do not crash
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception(exc))
        report = {
            "passed": [],
            "failed": [{"name": "connect", "detail": detail}],
            "latency_ms": {"p50": None, "p95": None, "n": 0},
            "info": {},
        }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if not report["failed"] and report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
