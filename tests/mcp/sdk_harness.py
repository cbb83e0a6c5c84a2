"""What the official-SDK check scripts (sdk_scientific.py, sdk_sessions.py) share: the two
transports, the command line, the report, and the small assertion helpers.

A script defines `run_checks(session) -> {"passed": [...], "failed": [...]}` and ends with
`sys.exit(serve_checks(sys.argv[1:], __doc__, run_checks))`. The script prints the report as
JSON and exits 0 only if at least one check ran and none failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

Checks = Callable[[ClientSession], Awaitable[dict[str, Any]]]


class CheckFailed(Exception):
    pass


def expect(cond: bool, detail: str) -> None:
    if not cond:
        raise CheckFailed(detail)


def blocks(result: Any, kind: str) -> list[Any]:
    return [b for b in result.content if getattr(b, "type", "") == kind]


async def run_named(checks: list[tuple[str, Callable[[], Awaitable[Any]]]],
                    limit_s: float = 120) -> dict[str, Any]:
    """Run each named check (at most `limit_s` each); a failure is reported, not raised."""
    passed: list[str] = []
    failed: list[dict[str, str]] = []
    for name, fn in checks:
        try:
            with anyio.fail_after(limit_s):
                await fn()
            passed.append(name)
        except BaseException as exc:  # noqa: BLE001 - a failed check is reported, not raised
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed.append({"name": name, "detail": "".join(traceback.format_exception(exc))[-2000:]})
    return {"passed": passed, "failed": failed}


async def run_stdio(run_checks: Checks, cmd: list[str], message_handler: Any = None) -> dict[str, Any]:
    params = StdioServerParameters(command=cmd[0], args=cmd[1:])
    async with stdio_client(params, errlog=sys.stderr) as (read, write):
        async with ClientSession(read, write, message_handler=message_handler) as session:
            return await run_checks(session)


async def run_http(run_checks: Checks, url: str, message_handler: Any = None) -> dict[str, Any]:
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write, message_handler=message_handler) as session:
            return await run_checks(session)


def serve_checks(argv: list[str], doc: str | None, run_checks: Checks, message_handler: Any = None) -> int:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    stdio = sub.add_parser("stdio")
    stdio.add_argument("cmd", nargs=argparse.REMAINDER)
    http = sub.add_parser("http")
    http.add_argument("url")
    args = parser.parse_args(argv)
    try:
        if args.mode == "stdio":
            cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
            report = anyio.run(run_stdio, run_checks, cmd, message_handler)
        else:
            report = anyio.run(run_http, run_checks, args.url, message_handler)
    except BaseException as exc:  # noqa: BLE001 - transport failures: report, do not crash
        if isinstance(exc, KeyboardInterrupt):
            raise
        report = {"passed": [], "failed": [{"name": "connect", "detail": "".join(traceback.format_exception(exc))}]}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if not report["failed"] and report["passed"] else 1
