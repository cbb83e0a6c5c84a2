# Code mode, the guest's half (prepended to driver.py by the host, like values.py):
# `import tools` builds a module with one namespace per upstream MCP server the operator
# configured and one function per tool, from one `list` frame sent through the door.
#
# The door: a request is one JSON frame; the answer is one JSON frame.
#   - The scientific runtime has a wasm import for it (`host.call`, seen here as the builtin
#     `_host.call(bytes) -> bytes`).
#   - The stdlib runtime cannot gain an import, so its door is a positioned write and read
#     on stdout at one offset: `os.pwrite(1, frame, DOOR_OFFSET)` makes the call, then
#     `os.pread(1, n, DOOR_OFFSET)` reads an 8-byte little-endian length and that many bytes
#     of answer. The host's `fd_pwrite` and `fd_pread` answer it (src/sandbox/door.rs).
# Printing is a plain write and reading a file reads a file, so nothing the code prints or
# reads can become a call.
# User code may use the door directly; that grants nothing the `tools` module does not.
#
# Frames (src/tools/door.rs): {"v":1,"id":n,"op":"list"} and
# {"v":1,"id":n,"op":"call","server":s,"tool":t,"args":{...}}; answers
# {"v":1,"id":n,"ok":true,...} or {"ok":false,"error":{"kind":k,"message":m}}.

def _omcp_tools():
    import builtins
    import os
    import sys
    from _json import encode_basestring_ascii as quote

    DOOR_FD, DOOR_OFFSET = 1, 0x6F6D_6370_646F_6F72
    pread, pwrite = os.pread, os.pwrite
    str, bytes, dict, len, isinstance, list = (
        builtins.str, builtins.bytes, builtins.dict, builtins.len, builtins.isinstance,
        builtins.list)

    try:
        import _host

        raw_call = _host.call
    except ImportError:
        raw_call = None

    def exchange(frame):
        if raw_call is not None:
            try:
                return raw_call(frame)
            except ConnectionRefusedError:
                return b'{"ok":false,"error":{"kind":"unavailable","message":"this server has no tools configured"}}'
        try:
            pwrite(DOOR_FD, frame, DOOR_OFFSET)
        except OSError:
            return b'{"ok":false,"error":{"kind":"unavailable","message":"this server has no tools configured"}}'
        head = pread(DOOR_FD, 8, DOOR_OFFSET)
        n = int.from_bytes(head, "little")
        parts, got = [], 0
        while got < n:
            part = pread(DOOR_FD, min(n - got, 1 << 20), DOOR_OFFSET)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    counter = [0]
    codec = []

    def request(payload):
        # json is pure Python and slow to import at this build's speed: once, on first use.
        if not codec:
            import json

            encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                                       separators=(",", ":"))
            codec.extend((encoder.encode, json.loads))
        encode, decode = codec
        counter[0] += 1
        payload["v"] = 1
        payload["id"] = counter[0]
        try:
            frame = encode(payload).encode()
        except (TypeError, ValueError) as err:
            raise TypeError("tool arguments must be JSON data: %s" % err) from None
        return decode(exchange(frame))

    class ToolError(Exception):
        """A tool call failed: the tool reported an error, its arguments did not match its
        schema, it timed out, a bound was reached, or its server is unavailable.

        `kind` says which ("tool_error", "invalid_arguments", "timeout", "limit",
        "unavailable", "unknown_tool"); `server` and `tool` name the call."""

        def __init__(self, message, kind="tool_error", server=None, tool=None):
            super().__init__(message)
            self.kind, self.server, self.tool = kind, server, tool

    def call(server, tool, args):
        answer = request({
            "op": "call",
            "server": server,
            "tool": tool,
            "args": {k: v for k, v in args.items() if v is not None},
        })
        if answer.get("ok"):
            return answer.get("value")
        error = answer.get("error") or {}
        raise ToolError(error.get("message", "the tool call failed"),
                        error.get("kind", "tool_error"), server, tool)

    class Finder:
        # First on sys.meta_path: `tools` is this module, whatever else the path holds.
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "tools":
                return None
            from importlib.machinery import ModuleSpec

            return ModuleSpec(name, Finder)

        @staticmethod
        def create_module(spec):
            return None

        @staticmethod
        def exec_module(module):
            build(module)

    def build(module):
        import types
        from typing import Any, Literal

        answer = request({"op": "list"})
        servers = answer.get("servers", []) if answer.get("ok") else []
        module.ToolError = ToolError
        lines = ["The tools of the MCP servers this sandbox's operator configured, as functions.",
                 "",
                 "Call them like any function: tools.<server>.<tool>(arg=...). A call returns",
                 "the tool's structured content as data when it has some, else its text, and",
                 "raises tools.ToolError if it fails. Every call is bounded (count, time, bytes)",
                 "and listed in the run's answer."]
        if not answer.get("ok"):
            message = (answer.get("error") or {}).get("message", "")
            lines += ["", "No tools: " + message]
        elif not servers:
            lines += ["", "No tool servers are configured on this server."]
        names = []
        for server in servers:
            space = types.ModuleType("tools." + server["py_name"], server.get("doc"))
            namespace = {"_call": call, "Any": Any, "Literal": Literal}
            functions = []
            for entry in server.get("functions", []):
                exec(entry["source"], namespace)
                function = namespace[entry["py_name"]]
                function.__module__ = space.__name__
                function.__qualname__ = entry["py_name"]
                setattr(space, entry["py_name"], function)
                functions.append(entry["py_name"])
            space.__all__ = functions
            state = server.get("status", "ready")

            def missing(name, server=server, functions=functions):
                if server.get("status") != "ready":
                    raise ToolError("the tool server %r is %s: %s" % (
                        server["name"], server.get("status"), server.get("error") or ""),
                        "unavailable", server["name"], name)
                raise AttributeError("tools.%s has no tool %r; it has: %s" % (
                    server["py_name"], name, ", ".join(functions) or "none"))

            space.__getattr__ = missing
            setattr(module, server["py_name"], space)
            names.append(server["py_name"])
            lines += ["", "tools.%s (server %s, %s): %s" % (
                server["py_name"], quote(server["name"]), state,
                ", ".join(functions) or "no tools")]
        module.__all__ = names + ["ToolError"]
        module.__doc__ = "\n".join(lines)

    return Finder
