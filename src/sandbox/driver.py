# The in-guest driver: the first Python code every run executes, embedded in the host binary
# and passed to CPython as `-c`. It runs the caller's code like one REPL cell and reports
# what happened in a JSON envelope that user output cannot forge.
#
# Protocol with the host (src/sandbox/run.rs):
#   stdin  = one header line "omcp1 <marker hex> <code_len> <max_result>\n"
#            + exactly code_len bytes of UTF-8 code + the caller's own stdin, untouched.
#   stdout = whatever the code prints, then the marker bytes in one write, then the
#            envelope. The host's stream switches to envelope mode only on a write that
#            equals the per-run random marker, so printed text can never become the result.
#   exit   = os._exit(0) once the envelope is out: skips interpreter finalisation (~5 ms).
#            The envelope carries the cell's own exit status (WASI cannot exit >= 126).
#
# Two ways in (src/sandbox/snapshot.rs):
#   cold      `python -c DRIVER`: runs one cell at once.
#   snapshot  `python -c DRIVER snapshot`: warms the interpreter, reports where `_omcp_run`
#             lives and exits without finalising; the host snapshots that live interpreter
#             and later calls `_omcp_run` directly in a fresh copy of it for every run.
#
# Start-up cost matters on the cold path: the driver imports only built-in C modules there.
# `json`, `ast` and `traceback` are pure-Python packages that together cost more than the
# interpreter's own start-up; `traceback` is imported only when there is an error to format.
# The driver leaves no names behind in __main__ (it imports inside its functions).


def _omcp_run():
    import os

    try:
        _omcp_cell()
    except BaseException:
        pass
    # Only reached when the cell broke the driver's own reporting (closed stdout, a
    # builtin the driver needs replaced...): the host reads status 125 without an envelope
    # as "no result could be reported".
    os._exit(125)


def _omcp_cell():
    import _ast
    import builtins
    import os
    import sys
    from _json import encode_basestring as quote

    # The cell may replace builtins; the driver keeps its own references.
    (all, bool, compile, dict, eval, exec, float, int, isinstance, len, list, map,
     memoryview, print, repr, str, type) = (
        builtins.all, builtins.bool, builtins.compile, builtins.dict, builtins.eval,
        builtins.exec, builtins.float, builtins.int, builtins.isinstance, builtins.len,
        builtins.list, builtins.map, builtins.memoryview, builtins.print, builtins.repr,
        builtins.str, builtins.type)

    stdin = sys.stdin.buffer
    magic, marker_hex, code_len, max_result = stdin.readline().split()
    if magic != b"omcp1":
        raise SystemExit("omcp driver: unexpected protocol header")
    marker = bytes.fromhex(marker_hex.decode())
    max_result = int(max_result)
    code = stdin.read(int(code_len)).decode("utf-8")

    filename = "<cell>"
    MAX_FRAMES = 1000

    # The cell runs in __main__, like the REPL, so `import __main__`, pickling of
    # classes defined in the cell and `if __name__ == "__main__"` behave as expected.
    main = sys.modules["__main__"]
    scope = main.__dict__
    for name in ("_omcp_run", "_omcp_cell", "_omcp_prepare"):
        scope.pop(name, None)
    sys.argv = [""]
    # A snapshot froze the PRNG state seeded when `random` was imported: reseed it from
    # the OS so two runs never share a random sequence.
    if "random" in sys.modules:
        sys.modules["random"].seed()

    def is_json(value, depth=0):
        # Exact types only: a tuple or an int subclass (e.g. a bool-like enum) is shown
        # as its repr rather than silently converted into something else. Integers
        # outside 64 bits are not JSON numbers every client can read back exactly.
        kind = type(value)
        if value is None or kind is bool:
            return True
        if kind is str:
            # Lone surrogates are valid Python but not valid JSON text.
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False
            return True
        if kind is int:
            return -(2**63) <= value < 2**64
        if kind is float:
            return value == value and value not in (float("inf"), float("-inf"))
        if depth > 64:
            return False
        if kind is list:
            return all(is_json(item, depth + 1) for item in value)
        if kind is dict:
            return all(type(k) is str and is_json(v, depth + 1) for k, v in value.items())
        return False

    def to_json(value):
        # Only called on values is_json accepted. Floats and ints use their repr, which
        # is valid JSON for finite values; strings use the C encoder from `_json`.
        kind = type(value)
        if value is None:
            return "null"
        if kind is bool:
            return "true" if value else "false"
        if kind is str:
            return quote(value)
        if kind is int:
            return int.__repr__(value)
        if kind is float:
            return float.__repr__(value)
        if kind is list:
            return "[" + ", ".join(map(to_json, value)) + "]"
        return "{" + ", ".join(quote(k) + ": " + to_json(v) for k, v in value.items()) + "}"

    def clip(text):
        if len(text) > max_result:
            envelope["truncated"] = True
            return text[:max_result] + "\n[... truncated]"
        return text

    def formatted(exc, skip_driver_frame):
        # Never let reporting an error fail the run: a program that exhausted memory or
        # recursed ten million frames deep still gets a readable error.
        try:
            return format_error(exc, skip_driver_frame)
        except BaseException as failure:
            reason = type(failure).__name__
        exc.__traceback__ = None
        if reason == "MemoryError" or type(exc).__name__ == "MemoryError":
            # Out of memory: drop what the program left behind before retrying small.
            scope.clear()
            try:
                import gc

                gc.collect()
            except BaseException:
                pass
        try:
            text = "%s: %s" % (type(exc).__name__, exc)
        except BaseException:
            text = type(exc).__name__
        return clip(text + "\n(the traceback could not be formatted: %s)\n" % reason)

    def format_error(exc, skip_driver_frame):
        import linecache
        import traceback

        # Tracebacks show the caller's own source lines, as they would from a file.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        if not skip_driver_frame:
            # Parse errors come from the compiler, not from a frame of the cell:
            # show them the way `python file.py` does.
            return clip("".join(traceback.format_exception_only(type(exc), exc)))
        # Drop the driver's own frame (the exec/eval call) so only the caller's code
        # and the library code it called appear.
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        # Walking millions of frames (deep recursion) would take longer than the run:
        # show the outermost ones and say how deep it went.
        depth, probe = 0, tb
        while probe is not None and depth <= MAX_FRAMES:
            depth, probe = depth + 1, probe.tb_next
        if depth <= MAX_FRAMES:
            return clip("".join(traceback.format_exception(type(exc), exc, tb)))
        lines = traceback.format_exception(type(exc), exc, tb, limit=MAX_FRAMES)
        lines.insert(-1, "  [... more than %d frames omitted]\n" % MAX_FRAMES)
        return clip("".join(lines))

    envelope = {"result": None, "has_result": False, "repr": None, "error": None,
                "exit": False, "truncated": False}
    exit_code = 0
    try:
        try:
            tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST)
        except (SyntaxError, ValueError) as exc:
            envelope["error"] = formatted(exc, skip_driver_frame=False)
            exit_code = 1
        else:
            last = None
            if tree.body and isinstance(tree.body[-1], _ast.Expr):
                last = _ast.Expression(tree.body.pop().value)
            exec(compile(tree, filename, "exec"), scope)
            if last is not None:
                value = eval(compile(last, filename, "eval"), scope)
                envelope["has_result"] = True
                try:
                    shown = repr(value)
                except BaseException as exc:  # a hostile __repr__ must not hide the run
                    shown = "<unrepresentable %s: %s>" % (type(value).__name__, type(exc).__name__)
                text = to_json(value) if is_json(value) else None
                if text is not None and len(text) <= max_result:
                    envelope["result"] = text
                else:
                    envelope["result"] = quote(clip(shown))
                envelope["repr"] = clip(shown)
    except SystemExit as exc:
        code_ = exc.code
        if code_ is None:
            exit_code = 0
        elif isinstance(code_, int):
            exit_code = int(code_)
        else:
            # Like the interpreter: a non-integer exit code is printed to stderr.
            try:
                print(code_, file=sys.stderr)
            except BaseException:
                pass
            exit_code = 1
        envelope["exit"] = True
    except BaseException as exc:
        envelope["error"] = formatted(exc, skip_driver_frame=True)
        exit_code = 1

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    envelope["exit_code"] = exit_code
    # "result" is already JSON text; the rest are plain values.
    fields = []
    for key, value in envelope.items():
        if key == "result":
            fields.append('"result": ' + (value or "null"))
        elif type(value) is str:
            fields.append(quote(key) + ": " + quote(value))
        else:
            fields.append(quote(key) + ": " + to_json(value))
    # "replace": a lone surrogate in an error message must not make the envelope unreadable.
    payload = ("{" + ", ".join(fields) + "}").encode("utf-8", "replace")
    os.write(1, marker)
    view = memoryview(payload)
    while view:
        view = view[os.write(1, view):]
    os._exit(0)


def _omcp_prepare():
    import os
    import sys

    # Import what the run path and common programs use, and compile once (the first
    # compile() call is expensive), so every run starts with them warm.
    import _ast
    import _json
    import collections
    import datetime
    import decimal
    import fractions
    import functools
    import itertools
    import json
    import linecache
    import math
    import random
    import re
    import statistics
    import string
    import textwrap
    import traceback
    import typing

    compile("x = [i * 2 for i in range(3)]\nx", "<warm>", "exec", _ast.PyCF_ONLY_AST)
    exec(compile("x = [i * 2 for i in range(3)]", "<warm>", "exec"), {})
    traceback.format_exception(ValueError, ValueError("warm"), None)
    # id() is the object's address in linear memory: the host calls the function through
    # its type's tp_call slot, PyVectorcall_Call(callable, args, kwargs).
    entry = sys.modules["__main__"].__dict__["_omcp_run"]
    report = "omcp-snapshot %d %d %d\n" % (id(entry), id(type(entry)), id(()))
    os.write(1, report.encode())
    os._exit(0)


if __import__("sys").argv[1:] == ["snapshot"]:
    _omcp_prepare()
else:
    _omcp_run()
