#!/usr/bin/env python3
"""Sessions over MCP, with the official Python SDK (mcp 2.3.x).

Usage:
    sdk_sessions.py stdio -- CMD [ARGS...]     spawn the server, speak MCP over its stdio
    sdk_sessions.py http URL                   streamable HTTP at URL

Checks the session tools (create_session, run_python with session_id, upload_file,
list_files, fork_session, close_session), files of a turn as resource_link blocks readable
with resources/read, a rolled-back turn, errors (an unknown or closed session is a tool
result with isError true that says to call create_session; a bad path is an isError
`[invalid_path]`; malformed arguments are JSON-RPC -32602; a bad resource -32002), and a
stateless run with files in and an embedded resource out.
Prints {"passed": [...], "failed": [{"name", "detail"}]} and exits 0 only if all passed.
Checks run in order and later ones use the sessions earlier ones made.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import traceback
from typing import Any

import anyio
from mcp import ClientSession, MCPError
from sdk_harness import CheckFailed, blocks, expect, serve_checks

INVALID_PARAMS = -32602
RESOURCE_NOT_FOUND = -32002
SESSION_TOOLS = {"run_python", "create_session", "close_session", "fork_session", "upload_file", "list_files"}
FIRST_FILE_TEXT = "hello from turn 1"


def dump(model: Any) -> str:
    s = json.dumps(model.model_dump(by_alias=True, mode="json", exclude_none=True), default=str)
    return s if len(s) <= 1500 else s[:1500] + "..."


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in blocks(result, "text"))


async def run_checks(s: ClientSession) -> dict[str, Any]:
    passed: list[str] = []
    failed: list[dict[str, str]] = []
    state: dict[str, Any] = {}

    async def check(name: str, fn: Any) -> None:
        try:
            with anyio.fail_after(120):
                await fn()
            passed.append(name)
        except BaseException as exc:  # noqa: BLE001 - a failed check is reported, not raised
            if isinstance(exc, KeyboardInterrupt):
                raise
            detail = "".join(traceback.format_exception(exc))[-2000:]
            if isinstance(exc, MCPError):
                detail = f"MCP error {exc.code}: {exc.message}\n{detail}"
            failed.append({"name": name, "detail": detail})

    async def tool(name: str, arguments: dict[str, Any]) -> Any:
        return await s.call_tool(name, arguments)

    async def ok(name: str, arguments: dict[str, Any]) -> Any:
        result = await tool(name, arguments)
        expect(not result.is_error, f"{name} {arguments}: isError: {dump(result)}")
        return result

    async def run(code: str, sid: str | None = None, **extra: Any) -> Any:
        arguments: dict[str, Any] = {"code": code, **extra}
        if sid is not None:
            arguments["session_id"] = sid
        return await tool("run_python", arguments)

    async def value(code: str, sid: str) -> Any:
        result = await run(code, sid)
        expect(not result.is_error, f"isError: {dump(result)}")
        return result.structured_content["result"]

    async def expect_error(code: int, fn: Any) -> MCPError:
        try:
            result = await fn()
        except MCPError as exc:
            expect(exc.code == code, f"JSON-RPC error {exc.code} ({exc.message}), want {code}")
            return exc
        raise CheckFailed(f"no JSON-RPC error {code}; got {dump(result)}")

    init = await s.initialize()

    async def advertised() -> None:
        expect(init.capabilities.resources is not None, "no resources capability")
        instructions = init.instructions or ""
        for needle in ("fresh", "create_session", "session_id"):
            expect(needle in instructions, f"instructions lack {needle!r}: {instructions}")
        tools = {t.name: t for t in (await s.list_tools()).tools}
        expect(SESSION_TOOLS <= set(tools), f"tools: {sorted(tools)}")
        props = tools["run_python"].input_schema.get("properties", {})
        expect("session_id" in props and "files" in props, f"run_python inputs: {sorted(props)}")
        description = tools["run_python"].description or ""
        expect("create_session" in description and "pristine" in description, description[:600])
        for name in ("create_session", "fork_session", "list_files", "upload_file"):
            expect(tools[name].output_schema is not None, f"{name} has no outputSchema")
        templates = (await s.list_resource_templates()).resource_templates
        expect(
            [t.uri_template for t in templates] == ["omcp://sessions/{session_id}/files/{path}"],
            f"templates: {templates}",
        )
        listed = (await s.list_resources()).resources
        expect(listed == [], f"resources/list should not reveal sessions: {listed}")

    async def create() -> None:
        result = await ok("create_session", {})
        info = result.structured_content or {}
        sid = info.get("session_id", "")
        expect(re.fullmatch(r"[0-9a-f]{32,}", sid) is not None, f"session_id {sid!r}")
        expect(info.get("turns") == 0 and info.get("state") in ("active", "suspended"), f"{info}")
        text = text_of(result)
        expect(sid in text and "persist" in text and "idle" in text, text)
        state["sid"] = sid

    async def first_turn() -> None:
        sid = state["sid"]
        code = f"x = 1\nwith open('out.txt', 'w') as f:\n    f.write({FIRST_FILE_TEXT!r})\n'ok'"
        result = await run(code, sid)
        expect(not result.is_error, f"isError: {dump(result)}")
        sc = result.structured_content
        expect(sc["result"] == "ok" and sc["session_id"] == sid, f"{sc}")
        expect(sc["turn"] == 1 and sc["rolled_back"] is False, f"{sc}")
        expect(sc["files_changed"] == ["out.txt"], f"files_changed {sc['files_changed']}")
        links = blocks(result, "resource_link")
        expect(len(links) == 1, f"want one resource_link: {dump(result)}")
        link = links[0]
        uri = str(link.uri)
        expect(uri == f"omcp://sessions/{sid}/files/out.txt", f"uri {uri}")
        expect(link.name == "out.txt" and link.mime_type == "text/plain", dump(result))
        expect(link.size == len(FIRST_FILE_TEXT), f"size {link.size}")
        state["link"] = uri

    async def second_turn() -> None:
        result = await run("x + 1", state["sid"])
        expect(not result.is_error, f"isError: {dump(result)}")
        expect(result.structured_content["result"] == 2, f"{result.structured_content}")
        expect(result.structured_content["turn"] == 2, f"{result.structured_content}")

    async def read_link() -> None:
        read = await s.read_resource(state["link"])
        expect(len(read.contents) == 1, f"{read}")
        contents = read.contents[0]
        expect(getattr(contents, "text", None) == FIRST_FILE_TEXT, f"{read}")
        expect(str(contents.uri) == state["link"], f"{read}")

    async def upload_then_read() -> None:
        sid = state["sid"]
        result = await ok("upload_file", {"session_id": sid, "path": "data/in.csv", "content": "a,b\n1,2\n"})
        expect(result.structured_content["size"] == 8, f"{result.structured_content}")
        got = await value("open('data/in.csv').read()", sid)
        expect(got == "a,b\n1,2\n", f"read back {got!r}")
        raw = bytes(range(256))
        encoded = base64.b64encode(raw).decode()
        await ok("upload_file", {"session_id": sid, "path": "bin.dat", "content": encoded, "encoding": "base64"})
        got = await value("list(open('bin.dat', 'rb').read()) == list(range(256))", sid)
        expect(got is True, f"binary upload read back as {got!r}")
        read = await s.read_resource(f"omcp://sessions/{sid}/files/bin.dat")
        blob = getattr(read.contents[0], "blob", None)
        expect(blob is not None and base64.b64decode(blob) == raw, f"{read}")

    async def listed() -> None:
        result = await ok("list_files", {"session_id": state["sid"]})
        files = {f["path"]: f for f in result.structured_content["files"]}
        expect({"out.txt", "data/in.csv", "bin.dat"} <= set(files), f"{files}")
        expect(files["data/in.csv"]["size"] == 8 and files["data/in.csv"]["modified"].endswith("Z"), f"{files}")
        expect("data/in.csv" in text_of(result), text_of(result))

    async def fork() -> None:
        sid = state["sid"]
        result = await ok("fork_session", {"session_id": sid})
        copy = result.structured_content["session_id"]
        expect(copy != sid and copy in text_of(result), f"{result.structured_content}")
        state["fork"] = copy
        expect(await value("x", copy) == 1, "the fork lacks x")
        await ok("run_python", {"code": "x = 100\nopen('fork_only.txt', 'w').write('f')", "session_id": copy})
        expect(await value("x", sid) == 1, "the fork's change reached the original")
        expect(await value("x", copy) == 100, "the fork lost its own change")
        expect(await value("import os\nos.path.exists('fork_only.txt')", sid) is False, "file leaked")
        expect(await value("open('out.txt').read()", copy) == FIRST_FILE_TEXT, "the fork lacks the files")

    async def rolled_back() -> None:
        sid = state["sid"]
        result = await run("y = 5\nwhile True: pass", sid, timeout_ms=500)
        expect(result.is_error is True, f"isError {result.is_error}: {dump(result)}")
        sc = result.structured_content
        expect(sc["rolled_back"] is True and sc["stopped"] == "timeout", f"{sc}")
        expect("back at its state before this call" in text_of(result), text_of(result))
        expect(await value("'y' in globals()", sid) is False, "the rolled-back turn's y is there")
        expect(await value("x", sid) == 1, "the rollback lost x")

    async def bad_path() -> None:
        result = await tool("upload_file", {"session_id": state["sid"], "path": "../escape", "content": "x"})
        expect(result.is_error is True, dump(result))
        expect(text_of(result).startswith("[invalid_path]"), text_of(result))

    async def malformed() -> None:
        await expect_error(INVALID_PARAMS, lambda: tool("create_session", {"bogus": 1}))
        await expect_error(INVALID_PARAMS, lambda: tool("run_python", {"code": "1", "session_id": 7}))
        await expect_error(INVALID_PARAMS, lambda: tool("list_files", {}))

    async def bad_resources() -> None:
        sid = state["sid"]
        await expect_error(RESOURCE_NOT_FOUND, lambda: s.read_resource("omcp://nothing/here"))
        await expect_error(RESOURCE_NOT_FOUND, lambda: s.read_resource(f"omcp://sessions/{sid}/files/missing.txt"))
        await expect_error(RESOURCE_NOT_FOUND, lambda: s.read_resource("omcp://sessions/" + "0" * 32 + "/files/a"))

    async def closed() -> None:
        sid = state["sid"]
        result = await ok("close_session", {"session_id": sid})
        expect(sid in text_of(result), text_of(result))
        result = await run("x", sid)
        expect(result.is_error is True, f"isError {result.is_error}: {dump(result)}")
        expect("create_session" in text_of(result), text_of(result))
        expect(text_of(result).startswith("[session_not_found]"), text_of(result))
        await expect_error(RESOURCE_NOT_FOUND, lambda: s.read_resource(state["link"]))
        # The fork outlives its original.
        expect(await value("x", state["fork"]) == 100, "the fork went with its original")
        await ok("close_session", {"session_id": state["fork"]})

    async def unknown() -> None:
        for name, arguments in [
            ("run_python", {"code": "1", "session_id": "f" * 32}),
            ("list_files", {"session_id": "nope"}),
            ("fork_session", {"session_id": "nope"}),
            ("close_session", {"session_id": "nope"}),
            ("upload_file", {"session_id": "nope", "path": "a.txt", "content": "a"}),
        ]:
            result = await tool(name, arguments)
            expect(result.is_error is True, f"{name}: {dump(result)}")
            expect("create_session" in text_of(result), f"{name}: {text_of(result)}")

    async def stateless_files() -> None:
        code = "data = open('in.txt').read()\nopen('result.txt', 'w').write(data.upper())\nlen(data)"
        result = await run(code, files=[{"path": "in.txt", "content": "abc"}])
        expect(not result.is_error, f"isError: {dump(result)}")
        expect(result.structured_content["result"] == 3, f"{result.structured_content}")
        embedded = {str(b.resource.uri): b.resource for b in blocks(result, "resource")}
        got = embedded.get("omcp://run/files/result.txt")
        expect(got is not None, f"no embedded result.txt: {dump(result)}")
        expect(getattr(got, "text", None) == "ABC", f"{got}")
        expect(not blocks(result, "resource_link"), "a stateless run has nothing to link to")
        # Still stateless: the next call sees none of it.
        again = await run("import os\nos.path.exists('result.txt')")
        expect(again.structured_content["result"] is False, f"{again.structured_content}")

    for name, fn in [
        ("advertised", advertised),
        ("create", create),
        ("first_turn", first_turn),
        ("second_turn", second_turn),
        ("read_link", read_link),
        ("upload_then_read", upload_then_read),
        ("list_files", listed),
        ("fork", fork),
        ("rolled_back", rolled_back),
        ("bad_path", bad_path),
        ("malformed", malformed),
        ("bad_resources", bad_resources),
        ("closed", closed),
        ("unknown", unknown),
        ("stateless_files", stateless_files),
    ]:
        await check(name, fn)
    return {"passed": passed, "failed": failed}


if __name__ == "__main__":
    sys.exit(serve_checks(sys.argv[1:], __doc__, run_checks))
