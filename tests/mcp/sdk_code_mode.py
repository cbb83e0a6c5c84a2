#!/usr/bin/env python3
"""Code mode over MCP, with the official Python SDK (mcp 2.3.x).

Usage:
    sdk_code_mode.py stdio -- CMD [ARGS...]     spawn the server, speak MCP over its stdio
    sdk_code_mode.py http URL                   streamable HTTP at URL

The server runs with a --tools-config naming real upstream servers (server-everything,
server-memory, mcp-server-time). Checks that `run_python`'s description lists the tool
functions with their signatures, that `list_tools` gives the stubs, that the memory program
(ten entities in a loop, read back, filtered, counted) and the checked answers come out the
same as over /run in both runtimes, with each call in `tool_calls` of the structured
content, that a tool error is a ToolError the program catches, that the same works in a
session, and that when an upstream dies and comes back the server says
`notifications/tools/list_changed` and lists the tools again.
Prints {"passed": [...], "failed": [{"name", "detail"}]}; exits 0 only if all passed.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import anyio
from mcp import ClientSession
from sdk_harness import expect, run_named, serve_checks

TOOL = "run_python"
PREFIX = f"sdk{os.getpid()}_"
# The everything server's pid (tests/integration/code_mode.rs writes it): the last check
# kills it and waits for the server to say its tools changed.
PID_FILE = os.environ.get("OMCP_EVERYTHING_PID_FILE")
CHANGES: list[float] = []


async def on_message(message: Any) -> None:
    method = getattr(getattr(message, "root", message), "method", None)
    if method == "notifications/tools/list_changed":
        CHANGES.append(time.monotonic())


def memory_program(prefix: str) -> str:
    return f"""import tools
for i in range(10):
    tools.memory.create_entities(entities=[{{"name": f"{prefix}{{i}}", "entityType": "even" if i % 2 == 0 else "odd", "observations": [f"n={{i}}"]}}])
graph = tools.memory.read_graph()
mine = [e for e in graph["entities"] if e["name"].startswith("{prefix}")]
odd = [e["name"] for e in mine if e["entityType"] == "odd"]
[len(mine), len(odd)]"""


async def run_checks(s: ClientSession) -> dict[str, Any]:
    await s.initialize()

    async def description() -> None:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        expect("list_tools" in tools, f"no list_tools tool: {sorted(tools)}")
        text = tools[TOOL].description or ""
        for needle in ("import tools", "tools.memory.create_entities(entities: list[dict]) -> dict",
                       "tools.everything.get_sum(a: float, b: float)", "tools.ToolError", "tool_calls"):
            expect(needle in text, f"the description does not mention {needle!r}: {text[-1500:]}")

    async def stubs() -> None:
        result = await s.call_tool("list_tools", {})
        expect(not result.is_error, f"isError: {result}")
        text = result.content[0].text
        for needle in ("class memory:", "def read_graph() -> dict:", "class time:",
                       "def get_current_time(timezone: str) -> dict:"):
            expect(needle in text, f"{needle!r} not in the stubs: {text[:1500]}")

    async def memory_in_both_runtimes() -> None:
        for runtime in ("scientific", "stdlib"):
            result = await s.call_tool(TOOL, {"code": memory_program(PREFIX + runtime), "runtime": runtime})
            expect(not result.is_error, f"{runtime}: isError: {result}")
            data = result.structured_content
            expect(data["result"] == [10, 5], f"{runtime}: {data['result']}")
            calls = data["tool_calls"]
            expect(len(calls) == 11 and all(c["ok"] for c in calls), f"{runtime}: {calls}")
            expect({c["tool"] for c in calls} == {"create_entities", "read_graph"}, f"{calls}")

    async def errors_are_caught() -> None:
        code = """import tools
try:
    tools.memory.add_observations(observations=[{"entityName": "Nobody", "contents": ["x"]}])
except tools.ToolError as e:
    caught = [e.kind, str(e)]
[tools.everything.echo(message="hi"), tools.everything.get_sum(a=2, b=3), caught]"""
        result = await s.call_tool(TOOL, {"code": code, "runtime": "stdlib"})
        data = result.structured_content
        expect(data["result"] == ["Echo: hi", "The sum of 2 and 3 is 5.",
                                  ["tool_error", "Entity with name Nobody not found"]], f"{data}")
        expect([c["ok"] for c in data["tool_calls"]] == [False, True, True], f"{data['tool_calls']}")

    async def in_a_session() -> None:
        created = await s.call_tool("create_session", {"runtime": "scientific"})
        sid = created.structured_content["session_id"]
        first = await s.call_tool(TOOL, {"code": "import tools\nnow = tools.time.get_current_time(timezone='UTC')\nnow['timezone']", "session_id": sid})
        expect(first.structured_content["result"] == "UTC", f"{first.structured_content}")
        second = await s.call_tool(TOOL, {"code": "sorted(now)", "session_id": sid})
        expect(second.structured_content["result"] == ["datetime", "day_of_week", "is_dst", "timezone"],
               f"{second.structured_content}")
        expect("tool_calls" not in second.structured_content, f"{second.structured_content}")
        await s.call_tool("close_session", {"session_id": sid})

    async def list_changed() -> None:
        expect(PID_FILE is not None, "OMCP_EVERYTHING_PID_FILE not set")
        def description(tools: Any) -> str:
            return next(t for t in tools.tools if t.name == TOOL).description or ""

        before = len(CHANGES)
        os.kill(int(open(PID_FILE).read().strip()), signal.SIGKILL)
        # Down, then restarted: the server says so (twice, or once if the two came close
        # together), and the description, listed again after each notification, says
        # where the server is; it ends ready.
        seen, text = before, ""
        while True:
            while len(CHANGES) == seen:
                await anyio.sleep(0.05)
            seen = len(CHANGES)
            text = description(await s.list_tools())
            if 'server "everything" is' not in text:
                break
        expect("tools.everything.echo(message: str)" in text, f"not listed again: {text[:800]}")
        result = await s.call_tool(TOOL, {"code": "import tools\ntools.everything.echo(message='back')",
                                          "runtime": "stdlib"})
        expect(result.structured_content["result"] == "Echo: back", f"{result.structured_content}")

    return await run_named([
        ("description", description),
        ("stubs", stubs),
        ("memory_in_both_runtimes", memory_in_both_runtimes),
        ("errors_are_caught", errors_are_caught),
        ("in_a_session", in_a_session),
        ("list_changed", list_changed),
    ])


if __name__ == "__main__":
    sys.exit(serve_checks(sys.argv[1:], __doc__, run_checks, on_message))
