# The in-guest driver: the first Python code every run executes, embedded in the host binary
# and passed to CPython as `-c`. It runs the caller's code like one REPL cell and reports
# what happened in a JSON envelope that user output cannot forge.
#
# Protocol with the host (src/sandbox/run.rs):
#   stdin  = one JSON header line {"marker": hex, "code_len": n, "max_result": n}
#            + exactly code_len bytes of UTF-8 code + the caller's own stdin, untouched.
#   stdout = whatever the code prints, then the marker bytes in one write, then the
#            envelope. The host's stream switches to envelope mode only on a write that
#            equals the per-run random marker, so printed text can never become the result.
#   exit   = os._exit(0) once the envelope is out: skips interpreter finalisation (~5 ms).
#            The envelope carries the cell's own exit status (WASI cannot exit >= 126).
import sys


def _omcp_run():
    import ast
    import builtins
    import json
    import linecache
    import math
    import os
    import traceback

    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    marker = bytes.fromhex(header["marker"])
    max_result = header["max_result"]
    code = stdin.read(header["code_len"]).decode("utf-8")

    filename = "<cell>"
    # Tracebacks show the caller's own source lines, as they would from a file.
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)

    # The cell runs in __main__, like the REPL, so `import __main__`, pickling of
    # classes defined in the cell and `if __name__ == "__main__"` behave as expected.
    main = sys.modules["__main__"]
    scope = main.__dict__
    scope.pop("_omcp_run", None)
    sys.argv = [""]

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
            return math.isfinite(value)
        if depth > 64:
            return False
        if kind is list:
            return all(is_json(item, depth + 1) for item in value)
        if kind is dict:
            return all(type(k) is str and is_json(v, depth + 1) for k, v in value.items())
        return False

    def user_traceback(exc):
        # Drop the driver's own frame (the exec/eval call) so only the caller's code
        # and the library code it called appear.
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        return clip(text)

    def clip(text):
        if len(text) > max_result:
            envelope["truncated"] = True
            return text[:max_result] + "\n[... truncated]"
        return text

    envelope = {"result": None, "has_result": False, "repr": None, "error": None,
                "exit": False, "truncated": False}
    exit_code = 0
    try:
        try:
            tree = ast.parse(code, filename, "exec")
        except SyntaxError as exc:
            # Parse errors come from the compiler, not from a frame of the cell:
            # show them the way `python file.py` does.
            envelope["error"] = clip("".join(traceback.format_exception_only(type(exc), exc)))
            exit_code = 1
        else:
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, filename, "exec"), scope)
            if last is not None:
                value = eval(compile(last, filename, "eval"), scope)
                envelope["has_result"] = True
                try:
                    shown = repr(value)
                except BaseException as exc:  # a hostile __repr__ must not hide the run
                    shown = "<unrepresentable %s: %s>" % (type(value).__name__, type(exc).__name__)
                if is_json(value):
                    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
                    if len(text) <= max_result:
                        envelope["result"] = value
                    else:
                        envelope["result"] = clip(shown)
                else:
                    envelope["result"] = clip(shown)
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
        envelope["error"] = user_traceback(exc)
        exit_code = 1

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    envelope["exit_code"] = exit_code
    # "replace": a lone surrogate in an error message must not make the envelope unreadable.
    payload = json.dumps(envelope, ensure_ascii=False).encode("utf-8", "replace")
    os.write(1, marker)
    view = memoryview(payload)
    while view:
        view = view[os.write(1, view):]
    os._exit(0)


_omcp_run()
