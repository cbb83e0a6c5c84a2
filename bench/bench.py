#!/usr/bin/env python3
"""The measurements behind bench/run.sh (run that script, not this one directly).

Measures omcp-sandbox end to end (cold start, POST /run over real loopback sockets, MCP over
stdio and streamable HTTP), merges the in-process engine bench (bench/out/engine.json,
written by `cargo bench --bench engine` before this runs), measures two baselines in the same
run (python.wasm through the `wasmtime` PyPI package, and native `python3 -c`), and writes:

    bench/out/results.json   everything, raw
    bench/out/summary.md     markdown tables for the README
    bench/latency.png        S1 p50 per system (bar chart, log scale)

Snippets: S1 `print(1+1)`, S2 `sum(i*i for i in range(3_000_000))`. Percentiles are nearest
rank over sequential calls from one client unless a row says otherwise. Every server binds
127.0.0.1 only and is stopped before this exits (also on SIGINT/SIGTERM).

Every server and `prepare` here loads the stdlib runtime only (`--runtimes stdlib`): the
baseline runs the same python-3.12.0.wasm, and an empty cache compiles in about a minute
rather than the scientific runtime's several. bench/scientific.py measures that one.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import json
import logging
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

S1 = "print(1+1)"
S2 = "sum(i*i for i in range(3_000_000))"
S2_RESULT = 8_999_995_500_000_500_000
# The baselines run `python -c`, which prints nothing for a bare expression: print the sum so
# the answer can be checked. Same work; one short line of output more.
S2_PRINTED = f"print({S2})"
# A tenth of S2, timed inside the guest: the CPU-bound A/B compares the loop itself, without
# either side's start-up (a snapshot run has none, a fresh wasmtime-py instance starts
# CPython), in samples short enough that many alternating rounds fit in half a minute.
S2_TENTH = "sum(i*i for i in range(300_000))"
S2_TIMED = f"import time\n_t = time.perf_counter()\n_ = {S2_TENTH}\nprint((time.perf_counter() - _t) * 1e3)"

ROOT = Path(__file__).resolve().parent.parent
# The runtime every row of this script measures (see the docstring).
STDLIB = ["--runtimes", "stdlib"]


class Plan:
    """Sample counts. --quick shrinks them for a smoke test of this script."""

    def __init__(self, quick: bool) -> None:
        q = quick
        self.warmup = 2 if q else 5
        self.s1 = 15 if q else 100           # our HTTP /run, S1
        self.s2 = 2 if q else 5              # our HTTP /run, S2
        self.mcp = 10 if q else 50           # MCP tool calls per transport
        self.base_s1 = 10 if q else 30       # baselines, S1 (each call starts a fresh interpreter)
        self.base_s2 = 2 if q else 5
        self.clients = 4
        self.load_s = 3.0 if q else 10.0     # our throughput run
        self.base_load_s = 2.0 if q else 5.0 # baselines' throughput run
        self.warm_prepares = 2 if q else 3
        self.first_run_repeats = 2 if q else 3
        self.ab_rounds = 3 if q else 24       # CPU-bound A/B: rounds of (ours, wasmtime-py, metered)


# --------------------------------------------------------------------------------------------
# small helpers


def pct(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile (as tests/mcp/sdk_client.py)."""
    if not samples:
        return None
    s = sorted(samples)
    rank = max(1, -(-len(s) * p // 100))
    return s[int(rank) - 1]


def stats(samples: list[float]) -> dict[str, Any]:
    r = lambda x: None if x is None else round(x, 3)  # noqa: E731
    return {
        "n": len(samples),
        "p50_ms": r(pct(samples, 50)),
        "p95_ms": r(pct(samples, 95)),
        "min_ms": r(min(samples)) if samples else None,
        "max_ms": r(max(samples)) if samples else None,
    }


def section_runner(results: dict[str, Any]) -> Callable[[str, Callable[[], Any]], None]:
    """`run_section(name, fn)`: run one section into `results`, with its time and the load
    before it; a failure is recorded and the run goes on (it fails at the end)."""

    def run_section(name: str, fn: Callable[[], Any]) -> None:
        t = time.perf_counter()
        la = loadavg()
        try:
            results["sections"][name] = fn()
        except Exception as exc:  # noqa: BLE001 - record, go on with the others, fail at the end
            import traceback
            results["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            log(f"{name}: FAILED: {exc}")
        results["section_seconds"][name] = {"s": round(time.perf_counter() - t, 1), "loadavg_before": la}

    return run_section


def timed(fn: Callable[[], Any], warmup: int, n: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def part_args(doc: str) -> argparse.ArgumentParser:
    """The arguments every bench part bench/run.sh calls takes (add a part's own after)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    return parser


def new_results() -> dict[str, Any]:
    """A part's results: when, the load then, and its sections (see `section_runner`)."""
    return {"when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": loadavg(), "sections": {}, "errors": {}, "section_seconds": {}}


def write_section(out: Path, name: str, results: dict[str, Any], mark: str, text: str) -> None:
    """Write `out/NAME.json`, and `text` (which starts with `mark`) as the last section of
    out/summary.md, replacing the one an earlier run of the same bench put there (and what
    followed it)."""
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    summary = out / "summary.md"
    old = summary.read_text() if summary.exists() else ""
    if mark in old:
        old = old[: old.index(mark)]
    summary.write_text(old.rstrip() + "\n\n" + text if old else text)
    print(text)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def concurrent_for(fn: Callable[[], Any], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` threads call fn back to back for `seconds`; runs/s over the time until the
    last call finished. For the baselines (their calls release the GIL: a subprocess wait,
    or wasmtime's C API through ctypes)."""
    deadline = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def worker(i: int) -> None:
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                fn()
                lat[i].append((time.perf_counter() - t) * 1e3)
        except Exception as exc:  # noqa: BLE001 - reported, and the row marked failed
            errors.append(f"{type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    samples = [x for xs in lat for x in xs]
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]}")
    return {
        "tool": "python threads",
        "clients": clients,
        "seconds": round(elapsed, 3),
        "runs": len(samples),
        "runs_per_s": round(len(samples) / elapsed, 2),
        "latency_ms": stats(samples),
    }


# --------------------------------------------------------------------------------------------
# our server


CHILDREN: list[subprocess.Popen] = []


def kill_children() -> None:
    for p in CHILDREN:
        if p.poll() is None:
            p.terminate()
    for p in CHILDREN:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    CHILDREN.clear()


def _on_signal(signum: int, _frame: Any) -> None:
    kill_children()
    sys.exit(128 + signum)


atexit.register(kill_children)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)

LISTENING = re.compile(rb"listening on http://(127\.0\.0\.1:\d+)")


class Server:
    """`omcp-sandbox serve --listen 127.0.0.1:0 --runtimes RUNTIMES`; the port is read from its log."""

    def __init__(self, binary: str, cache_dir: Path, flags: list[str], log_path: Path, pids: Path,
                 runtimes: str = "stdlib", env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.logf = open(log_path, "wb")
        cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--cache-dir", str(cache_dir), "--runtimes", runtimes,
               *flags]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.logf,
                                     env={**os.environ, **env} if env else None)
        CHILDREN.append(self.proc)
        with open(pids, "a") as f:
            f.write(f"{self.proc.pid}\n")
        self.addr = self._wait_for_port()
        self.listening_ms = (time.perf_counter() - self.started) * 1e3

    def _wait_for_port(self, timeout: float = 300.0) -> str:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            m = LISTENING.search(self.log_path.read_bytes())
            if m:
                return m.group(1).decode()
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            time.sleep(0.002)
        raise RuntimeError(f"server did not listen within {timeout} s")

    @property
    def host(self) -> str:
        return self.addr.split(":")[0]

    @property
    def port(self) -> int:
        return int(self.addr.split(":")[1])

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc in CHILDREN:
            CHILDREN.remove(self.proc)
        self.logf.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def post_run(conn: http.client.HTTPConnection, code: str, **fields: Any) -> dict[str, Any]:
    body = json.dumps({"code": code, **fields})
    conn.request("POST", "/run", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"/run answered {resp.status}: {data[:500]!r}")
    return json.loads(data)


def check_answer(code: str, answer: dict[str, Any]) -> None:
    ok = answer.get("error") is None and answer.get("stopped") is None
    if code == S1:
        ok = ok and answer.get("output") == "2\n"
    elif code == S2:
        ok = ok and answer.get("result") == S2_RESULT
    if not ok:
        raise RuntimeError(f"unexpected answer for {code!r}: {json.dumps(answer)[:500]}")


def get_json(server: Server, path: str) -> Any:
    conn = server.conn()
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return json.loads(resp.read())
    finally:
        conn.close()


def find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = find_key(v, key)
            if found is not None:
                return found
    return None


def start_mode(health: Any, server_log: str, flags: list[str]) -> str:
    """How the server starts runs: /healthz says so if it knows; otherwise its start-up log."""
    said = find_key(health, "start_mode")
    if said:
        return str(said)
    if "snapshot unavailable" in server_log:
        return "cold: snapshot failed"
    if "runs start from the interpreter snapshot" in server_log:
        return "snapshot"
    return "cold"


def http_sequential(server: Server, code: str, warmup: int, n: int) -> dict[str, Any]:
    conn = server.conn()  # one keep-alive connection, as a real client would hold
    try:
        def call() -> None:
            check_answer(code, post_run(conn, code))
        return stats(timed(call, warmup, n))
    finally:
        conn.close()


WRK_LUA = r"""
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "status_errors": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def http_throughput(server: Server, code: str, clients: int, seconds: float, out_dir: Path) -> dict[str, Any]:
    """`clients` keep-alive connections posting `code` back to back for `seconds`: wrk when
    installed (C, one thread, light on a one-core machine), else Python threads."""
    wrk = shutil.which("wrk")
    if wrk:
        script = out_dir / "wrk-run.lua"
        body = json.dumps({"code": code})
        script.write_text(WRK_LUA % json.dumps(body))  # a JSON string is a valid Lua string here
        cmd = [wrk, "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "60s", "-s", str(script),
               f"http://{server.addr}/run"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        m = re.search(r"WRK_JSON (\{.*\})", res.stdout)
        if res.returncode != 0 or not m:
            raise RuntimeError(f"wrk failed ({res.returncode}): {res.stdout[-1000:]} {res.stderr[-1000:]}")
        w = json.loads(m.group(1))
        errors = sum(w[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
        if errors:
            raise RuntimeError(f"wrk saw {errors} failed requests: {w}")
        secs = w["duration_us"] / 1e6
        return {
            "tool": "wrk",
            "clients": clients,
            "seconds": round(secs, 3),
            "runs": w["requests"],
            "runs_per_s": round(w["requests"] / secs, 2),
            "latency_ms": {"n": w["requests"], "p50_ms": w["p50_us"] / 1e3, "p95_ms": w["p95_us"] / 1e3,
                           "p99_ms": w["p99_us"] / 1e3, "max_ms": w["max_us"] / 1e3},
        }
    local = threading.local()

    def call() -> None:
        if not hasattr(local, "conn"):
            local.conn = server.conn()
        check_answer(code, post_run(local.conn, code))

    return concurrent_for(call, clients, seconds)


# --------------------------------------------------------------------------------------------
# sections


def section_cold_start(args: argparse.Namespace, plan: Plan, cache: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)

    def prepare() -> tuple[float, str]:
        t = time.perf_counter()
        p = subprocess.run([args.bin, "prepare", *STDLIB, "--cache-dir", str(cache)], capture_output=True,
                           text=True, timeout=900)
        ms = (time.perf_counter() - t) * 1e3
        if p.returncode != 0:
            raise RuntimeError(f"prepare failed ({p.returncode}): {p.stderr[-2000:]}")
        return ms, p.stdout.strip()

    log("cold start: prepare with an empty cache (compiles python.wasm; may take a while)")
    ms, line = prepare()
    res["prepare_empty_cache_ms"] = round(ms, 1)
    res["prepare_empty_cache_said"] = line
    log(f"cold start: {ms / 1e3:.1f} s: {line}")
    warm = []
    for _ in range(plan.warm_prepares):
        ms, line = prepare()
        warm.append(ms)
    res["prepare_warm_cache"] = stats(warm)
    res["prepare_warm_cache_said"] = line

    log("cold start: process start -> first /run answered (warm cache)")
    firsts, listens = [], []
    for i in range(plan.first_run_repeats):
        server = Server(args.bin, cache, [], args.out / f"server-first-{i}.log", args.pids)
        try:
            conn = server.conn()
            while True:
                try:
                    answer = post_run(conn, S1)
                    break
                except (ConnectionError, http.client.HTTPException):
                    conn.close()
                    conn = server.conn()
                    time.sleep(0.002)
            first_ms = (time.perf_counter() - server.started) * 1e3
            check_answer(S1, answer)
            conn.close()
            firsts.append(first_ms)
            listens.append(server.listening_ms)
        finally:
            server.stop()
    res["start_to_first_run"] = stats(firsts)
    res["start_to_listening"] = stats(listens)
    return res


def section_http(args: argparse.Namespace, plan: Plan, cache: Path, flags: list[str], tag: str,
                 with_mcp: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"flags": flags}
    with Server(args.bin, cache, flags, args.out / f"server-{tag}.log", args.pids) as server:
        health = get_json(server, "/healthz")
        res["healthz"] = health
        res["start_mode"] = start_mode(health, server.log_path.read_text(errors="replace"), flags)
        log(f"http [{tag}]: S1 x{plan.s1} (+{plan.warmup} warm-up), one keep-alive client")
        res["s1"] = http_sequential(server, S1, plan.warmup, plan.s1)
        log(f"http [{tag}]: S2 x{plan.s2}")
        res["s2"] = http_sequential(server, S2, 0, plan.s2)
        log(f"http [{tag}]: S1 with {plan.clients} concurrent clients for {plan.load_s:.0f} s")
        res["s1_concurrent"] = http_throughput(server, S1, plan.clients, plan.load_s, args.out)
        # Every run after the load still answers correctly.
        conn = server.conn()
        check_answer(S1, post_run(conn, S1))
        conn.close()
        if with_mcp:
            log(f"mcp http [{tag}]: run_python x{plan.mcp} (+{plan.warmup} warm-up)")
            res["mcp_http"] = mcp_latency("http", f"http://{server.addr}/mcp", None, plan)
            for warning in res["mcp_http"]["sdk_warnings"]:
                log(f"mcp http [{tag}]: the SDK warned: {warning}")
    return res


def section_mcp_stdio(args: argparse.Namespace, plan: Plan, cache: Path) -> dict[str, Any]:
    log(f"mcp stdio: run_python x{plan.mcp} (+{plan.warmup} warm-up)")
    cmd = [args.bin, "mcp", *STDLIB, "--cache-dir", str(cache)]
    return mcp_latency("stdio", None, cmd, plan, errlog=args.out / "mcp-stdio.log")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def mcp_latency(mode: str, url: str | None, cmd: list[str] | None, plan: Plan,
                errlog: Path | None = None) -> dict[str, Any]:
    """run_python S1 latency with the official SDK, after initialize and warm-up calls. The
    SDK's own warnings (e.g. about how the session ended) are kept in the result, not printed."""
    import anyio
    from mcp import ClientSession

    async def calls(session: ClientSession) -> list[float]:
        await session.initialize()

        async def one() -> None:
            res = await session.call_tool("run_python", {"code": S1})
            sc = res.structured_content or {}
            if res.is_error or sc.get("output") != "2\n":
                raise RuntimeError(f"unexpected MCP result: {res}")

        for _ in range(plan.warmup):
            await one()
        out = []
        for _ in range(plan.mcp):
            t = time.perf_counter()
            await one()
            out.append((time.perf_counter() - t) * 1e3)
        return out

    async def main() -> list[float]:
        if mode == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client
            assert cmd is not None and errlog is not None
            with open(errlog, "w") as err:
                params = StdioServerParameters(command=cmd[0], args=cmd[1:])
                async with stdio_client(params, errlog=err) as (read, write):
                    async with ClientSession(read, write) as session:
                        return await calls(session)
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
        assert url is not None
        async with create_mcp_http_client() as client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    return await calls(session)

    sdk_log = logging.getLogger("mcp")
    collect = _Collect()
    sdk_log.addHandler(collect)
    propagate, sdk_log.propagate = sdk_log.propagate, False
    try:
        samples = anyio.run(main)
    finally:
        sdk_log.removeHandler(collect)
        sdk_log.propagate = propagate
    return {"s1": stats(samples), "sdk_warnings": collect.messages}


class WasmtimePy:
    """Baseline: the same python.wasm through the `wasmtime` PyPI package, no pre-initialisation:
    a fresh store + instance per call (from an InstancePre), module compiled once and cached
    with Module.serialize. Fuel and epochs off (the defaults): the cheapest fair way to run it."""

    def __init__(self, wasm: Path, cache_dir: Path) -> None:
        import wasmtime as wt
        self.wt = wt
        self.version = _dist_version("wasmtime")
        self.engine = wt.Engine(wt.Config())
        cache_dir.mkdir(parents=True, exist_ok=True)
        cached = cache_dir / f"python-3.12.0-wasmtime-py{self.version}.cwasm"
        t = time.perf_counter()
        if cached.is_file():
            module = wt.Module.deserialize_file(self.engine, str(cached))
            self.module_source = "cache"
        else:
            module = wt.Module.from_file(self.engine, str(wasm))
            tmp = cached.with_suffix(".tmp")
            tmp.write_bytes(module.serialize())
            tmp.replace(cached)
            self.module_source = "compiled"
        self.load_ms = (time.perf_counter() - t) * 1e3
        linker = wt.Linker(self.engine)
        linker.define_wasi()
        self.pre = linker.instantiate_pre(module)

    def run(self, code: str) -> bytes:
        wt = self.wt
        out: list[bytes] = []
        err: list[bytes] = []
        store = wt.Store(self.engine)
        wasi = wt.WasiConfig()
        wasi.argv = ["python", "-c", code]
        wasi.stdout_custom = out.append
        wasi.stderr_custom = err.append
        store.set_wasi(wasi)
        instance = self.pre.instantiate(store)
        start = instance.exports(store)["_start"]
        try:
            start(store)
        except wt.ExitTrap as exc:
            if exc.code != 0:
                raise RuntimeError(f"python.wasm exited {exc.code}: {b''.join(err)[-500:]!r}") from exc
        return b"".join(out)


def _dist_version(name: str) -> str:
    import importlib.metadata as md
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "?"


def section_wasmtime_py(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    log("baseline wasmtime-py: loading python.wasm (compiles once, then cached)")
    base = WasmtimePy(ROOT / "wasm" / "python-3.12.0.wasm", args.out / "wasmtime-py-cache")
    res: dict[str, Any] = {"wasmtime_py": base.version, "module_source": base.module_source,
                           "load_ms": round(base.load_ms, 1)}

    def s1() -> None:
        if base.run(S1) != b"2\n":
            raise RuntimeError("wasmtime-py S1: wrong output")

    def s2() -> None:
        if base.run(S2_PRINTED).strip() != str(S2_RESULT).encode():
            raise RuntimeError("wasmtime-py S2: wrong output")

    log(f"baseline wasmtime-py: S1 x{plan.base_s1}, S2 x{plan.base_s2}, {plan.clients} threads for {plan.base_load_s:.0f} s")
    res["s1"] = stats(timed(s1, 2, plan.base_s1))
    res["s2"] = stats(timed(s2, 0, plan.base_s2))
    res["s1_concurrent"] = concurrent_for(s1, plan.clients, plan.base_load_s)
    return res


def section_cpu_ab(args: argparse.Namespace, plan: Plan, cache: Path) -> dict[str, Any]:
    """The CPU-bound slowdown as the target states it: the same S2 loop, timed inside the guest,
    in our server as shipped (epoch checks for the time limit; and metered, with `fuel`)
    against the same python.wasm in wasmtime-py with no limits. Alternating run by run, so
    the machine's drift from minute to minute hits every side alike. On these shared
    machines noise only ever adds time (a sample is 1.0-2x its best), so the headline is
    the ratio of each side's fastest sample (as `timeit` advises); the median of the
    per-round ratios is reported beside it."""
    base = WasmtimePy(ROOT / "wasm" / "python-3.12.0.wasm", args.out / "wasmtime-py-cache")

    with Server(args.bin, cache, [], args.out / "server-ab.log", args.pids) as server:
        conn = server.conn()

        def ours(**fields: Any) -> float:
            answer = post_run(conn, S2_TIMED, **fields)
            if answer.get("error") is not None or answer.get("stopped") is not None:
                raise RuntimeError(f"unexpected answer for the timed S2: {json.dumps(answer)[:500]}")
            if ("fuel" in fields) != (answer.get("fuel_used") is not None):
                raise RuntimeError(f"metered run mismatch: {json.dumps(answer)[:500]}")
            return float(answer["output"])  # the loop's time in ms, as the guest printed it

        def theirs() -> float:
            return float(base.run(S2_TIMED))

        log(f"cpu a/b: {plan.ab_rounds} rounds of S2/10 timed in the guest: /run, wasmtime-py, /run metered")
        ours(), theirs()  # warm-up: first-touch costs on both sides
        samples: dict[str, list[float]] = {"ours": [], "wasmtime_py": [], "metered": []}
        for _ in range(plan.ab_rounds):
            samples["ours"].append(ours())
            samples["wasmtime_py"].append(theirs())
            samples["metered"].append(ours(fuel=10**15))  # the server's cap applies
    res: dict[str, Any] = {"rounds": plan.ab_rounds, "samples_ms": samples}
    for side in ("ours", "metered"):
        ratios = sorted(a / b for a, b in zip(samples[side], samples["wasmtime_py"]))
        res[f"{side}_ratio"] = {"fastest": round(min(samples[side]) / min(samples["wasmtime_py"]), 3),
                                "median": round(statistics.median(ratios), 3)}
    res["fastest_ms"] = {k: round(min(v), 1) for k, v in samples.items()}
    res["median_ms"] = {k: round(statistics.median(v), 1) for k, v in samples.items()}
    return res


def section_native(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    py = args.native_python
    version = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                             text=True).stdout.strip()
    res: dict[str, Any] = {"python": py, "version": version}

    def run(code: str) -> str:
        p = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"python3 failed: {p.stderr[-500:]}")
        return p.stdout

    def s1() -> None:
        if run(S1) != "2\n":
            raise RuntimeError("native S1: wrong output")

    def s2() -> None:
        if run(S2_PRINTED).strip() != str(S2_RESULT):
            raise RuntimeError("native S2: wrong output")

    log(f"baseline native python3 -c ({version}): S1 x{plan.base_s1}, S2 x{plan.base_s2}, {plan.clients} threads for {plan.base_load_s:.0f} s")
    res["s1"] = stats(timed(s1, 2, plan.base_s1))
    res["s2"] = stats(timed(s2, 0, plan.base_s2))
    res["s1_concurrent"] = concurrent_for(s1, plan.clients, plan.base_load_s)
    return res


# --------------------------------------------------------------------------------------------
# report


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system: S1/S2 p50/p95 and S1 runs/s with 4 clients (None when not measured)."""
    rows: list[dict[str, Any]] = []

    def add(system: str, kind: str, s1: Any, s2: Any = None, conc: Any = None, note: str = "") -> None:
        g = lambda d, k: (d or {}).get(k)  # noqa: E731
        rows.append({
            "system": system, "kind": kind, "note": note,
            "s1_p50": g(s1, "p50_ms"), "s1_p95": g(s1, "p95_ms"),
            "s2_p50": g(s2, "p50_ms"), "s2_p95": g(s2, "p95_ms"),
            "runs_per_s": g(conc, "runs_per_s"),
            "conc_p50": g(g(conc, "latency_ms"), "p50_ms"),
        })

    sec = results["sections"]
    https = [h for h in sec.get("http", {}).values() if isinstance(h, dict) and "s1" in h]
    for http in https:
        add(f"omcp-sandbox POST /run ({http.get('start_mode')})", "ours", http["s1"], http.get("s2"),
            http.get("s1_concurrent"), "HTTP, 1 keep-alive client; runs/s with 4 clients")
    default_mode = https[0].get("start_mode") if https else "default"
    stdio = sec.get("mcp_stdio")
    if isinstance(stdio, dict) and "s1" in stdio:
        add(f"omcp-sandbox MCP stdio ({default_mode})", "ours", stdio["s1"], note="official Python SDK")
    for http in https:
        if "mcp_http" in http:
            add(f"omcp-sandbox MCP streamable HTTP ({http.get('start_mode')})", "ours", http["mcp_http"]["s1"],
                note="official Python SDK, tools/call run_python")
    engine = sec.get("engine")
    if isinstance(engine, dict):
        for m in engine.get("modes", []):
            r = m["results"]
            start = m['load'].get('start_mode', m['label'])
            label = m['label'] if m['label'].startswith(start) else f"{start}: {m['label']}"
            add(f"omcp-sandbox in-process engine ({label})", "ours",
                r["s1"], r["s2"], r["s1_concurrent"], "Sandbox::run, no HTTP (cargo bench)")
    wt = sec.get("wasmtime_py")
    if isinstance(wt, dict) and "s1" in wt:
        add(f"baseline: wasmtime-py {wt['wasmtime_py']} + python.wasm, fresh instance", "baseline",
            wt["s1"], wt["s2"], wt["s1_concurrent"], "no pre-initialisation, fuel off, cached module")
    nat = sec.get("native")
    if isinstance(nat, dict) and "s1" in nat:
        add(f"floor: native python3 -c ({nat['version']})", "baseline", nat["s1"], nat["s2"],
            nat["s1_concurrent"], "fresh process per call, no sandbox")
    return rows


def fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{max(digits, 2)}f}"


def ratio(ours: Any, base: Any, inverse: bool = False) -> str:
    if not ours or not base:
        return "-"
    r = (ours / base) if inverse else (base / ours)
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def summary_tables(results: dict[str, Any]) -> tuple[str, str]:
    """(markdown, plain text) of the latency table and the start-up table."""
    rows = rows_of(results)
    base = next((r for r in rows if r["system"].startswith("baseline: wasmtime-py")), None)
    b = base or {}
    head = ["system", "S1 p50 ms", "S1 p95 ms", "S2 p50 ms", "S2 p95 ms", "runs/s (4 clients, S1)",
            "S1 speed-up vs wasmtime-py", "S2 speed-up", "runs/s vs wasmtime-py"]
    body = []
    for r in rows:
        body.append([
            r["system"], fmt(r["s1_p50"]), fmt(r["s1_p95"]), fmt(r["s2_p50"]), fmt(r["s2_p95"]),
            fmt(r["runs_per_s"]),
            ratio(r["s1_p50"], b.get("s1_p50")), ratio(r["s2_p50"], b.get("s2_p50")),
            ratio(r["runs_per_s"], b.get("runs_per_s"), inverse=True),
        ])
    cs = results["sections"].get("cold_start", {})
    start_rows = []
    if isinstance(cs, dict) and "prepare_empty_cache_ms" in cs:
        start_rows = [
            ["`prepare`, empty cache (first start ever: compile)", fmt(cs["prepare_empty_cache_ms"])],
            ["`prepare`, warm cache", fmt(cs["prepare_warm_cache"]["p50_ms"])],
            ["`serve` start -> listening (warm cache)", fmt(cs["start_to_listening"]["p50_ms"])],
            ["`serve` start -> first `/run` answered (warm cache)", fmt(cs["start_to_first_run"]["p50_ms"])],
        ]
    engine = results["sections"].get("engine")
    if isinstance(engine, dict):
        for m in engine.get("modes", []):
            start_rows.append([f"`Sandbox::load`, warm cache, in-process ({m['label']})",
                               fmt(m["load"]["cached"]["p50_ms"])])
    wt = results["sections"].get("wasmtime_py")
    if isinstance(wt, dict) and "load_ms" in wt:
        start_rows.append([f"wasmtime-py module load ({wt['module_source']})", fmt(wt["load_ms"])])

    def md(head: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)

    def txt(head: list[str], body: list[list[str]]) -> str:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        line = lambda row: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)  # noqa: E731
                                     for i, (x, w) in enumerate(zip(row, widths)))
        return "\n".join([line(head), line(["-" * w for w in widths]), *[line(r) for r in body]])

    env = results["env"]
    la = lambda v: v[0] if v else "?"  # noqa: E731 - the 1-minute figure
    preface = (f"Measured {env['when']} on {env['cpu']} ({env['nproc']} vCPUs, shared; 1-min load "
               f"average {la(env['loadavg_start'])} at start, {la(env.get('loadavg_end'))} at end), "
               f"{env['omcp_version']} (runtime `stdlib`, CPython 3.12), wasmtime-py {env.get('wasmtime_py', '?')}. "
               f"S1 `{S1}`, S2 `{S2}`; fresh interpreter per call everywhere; "
               "p50/p95 over sequential calls from one client; runs/s with 4 concurrent clients "
               f"({env['throughput_tool']} for HTTP, threads for the baselines). Speed-up = wasmtime-py p50 / row p50.")
    ab_head = [f"`{S2_TENTH}` timed inside the guest", "fastest ms", "p50 ms",
               "slowdown vs wasmtime-py (fastest)", "median of per-round ratios"]
    ab_rows = []
    ab = results["sections"].get("cpu_ab")
    if isinstance(ab, dict) and "fastest_ms" in ab:
        ab_rows = [
            [name, fmt(ab["fastest_ms"][key]), fmt(ab["median_ms"][key]),
             f"{ab[key + '_ratio']['fastest']:.2f}x" if key != "wasmtime_py" else "1.00x",
             f"{ab[key + '_ratio']['median']:.2f}x" if key != "wasmtime_py" else "-"]
            for name, key in [("omcp-sandbox POST /run (epochs on: the time limit)", "ours"),
                              ("omcp-sandbox POST /run with `fuel` (metered)", "metered"),
                              ("wasmtime-py, no limits", "wasmtime_py")]
        ]
    ab_md: list[str] = []
    if ab_rows:
        ab_md = [f"## CPU-bound, alternating ({ab['rounds']} rounds; slowdown = our time / wasmtime-py's, lower is better)",
                 "", md(ab_head, ab_rows), ""]
    markdown = "\n".join([
        "## Latency and throughput", "", preface, "", md(head, body), "",
        *ab_md,
        "## Start-up", "", md(["step", "p50 ms"], start_rows), "",
    ])
    text = "\n".join([txt(head, body), "", *([txt(ab_head, ab_rows), ""] if ab_rows else []),
                      txt(["start-up step", "p50 ms"], start_rows)])
    return markdown, text


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in rows_of(results) if r["s1_p50"]]
    rows.sort(key=lambda r: r["s1_p50"])
    labels = [r["system"] for r in rows]
    values = [r["s1_p50"] for r in rows]
    colors = ["#2f7ed8" if r["kind"] == "ours" else "#999999" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.6), dpi=110)
    y = range(len(rows))
    ax.barh(list(y), values, color=colors)
    ax.set_yticks(list(y), labels, fontsize=9)
    ax.invert_yaxis()
    if max(values) / max(min(values), 1e-9) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    for i, v in enumerate(values):
        ax.text(v * 1.05, i, f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms", va="center", fontsize=9)
    if ax.get_xscale() == "log":
        ax.set_xlim(left=min(1.0, min(values) / 1.5))
    ax.set_xlim(right=max(values) * 3)
    ax.set_xlabel("p50 latency per call, ms (log scale; lower is better)" if ax.get_xscale() == "log"
                  else "p50 latency per call, ms (lower is better)")
    env = results["env"]
    ax.set_title(f"print(1+1) in a fresh Python interpreter per call\n"
                 f"{env['nproc']} vCPUs, shared machine, medians; {env['when'][:10]}", fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.25)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="#2f7ed8", label="omcp-sandbox"),
                       Patch(color="#999999", label="baselines (same run)")],
              loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "omcp-sandbox"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--png", type=Path, default=ROOT / "bench" / "latency.png")
    ap.add_argument("--native-python", default="python3")
    ap.add_argument("--engine-json", type=Path, help="the engine bench's JSON to merge")
    ap.add_argument("--quick", action="store_true", help="few samples: a smoke test of this script")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: cold,http,cold-http,mcp,wasmtime,native,ab")
    ap.add_argument("--report-only", action="store_true",
                    help="measure nothing: redo summary.md and the chart from results.json")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        markdown, text = summary_tables(results)
        (args.out / "summary.md").write_text(markdown)
        chart(results, args.png)
        print(text)
        return 0
    args.pids = args.out / "pids.txt"
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    plan = Plan(args.quick)
    cache = args.out / "cache"  # emptied, filled by the cold-start section, then warm for the rest

    started = time.perf_counter()
    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    serve_help = subprocess.run([args.bin, "serve", "--help"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    results: dict[str, Any] = {
        "env": {
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "cpu": cpu, "nproc": os.cpu_count(),
            "kernel": platform.release(), "loadavg_start": loadavg(),
            "omcp_version": version, "wasmtime_py": _dist_version("wasmtime"),
            "throughput_tool": "wrk" if shutil.which("wrk") else "python threads",
            "quick": args.quick,
        },
        "snippets": {"s1": S1, "s2": S2},
        "sections": {},
        "errors": {},
        "section_seconds": {},
    }
    sec = results["sections"]

    run_section = section_runner(results)

    if "cold" not in skip:
        run_section("cold_start", lambda: section_cold_start(args, plan, cache))
    elif not cache.is_dir():
        subprocess.run([args.bin, "prepare", *STDLIB, "--cache-dir", str(cache)], check=True, capture_output=True)
    sec["http"] = {}
    if "http" not in skip:
        run_section("http_default", lambda: section_http(args, plan, cache, [], "default", "mcp" not in skip))
        if "http_default" in sec:
            sec["http"]["default"] = sec.pop("http_default")
    if "cold-http" not in skip and "--no-snapshot" in serve_help:
        run_section("http_cold", lambda: section_http(args, plan, cache, ["--no-snapshot"], "cold", False))
        if "http_cold" in sec:
            sec["http"]["no-snapshot"] = sec.pop("http_cold")
    if "mcp" not in skip:
        run_section("mcp_stdio", lambda: section_mcp_stdio(args, plan, cache))
    if args.engine_json and args.engine_json.is_file():
        sec["engine"] = json.loads(args.engine_json.read_text())
    if "wasmtime" not in skip:
        run_section("wasmtime_py", lambda: section_wasmtime_py(args, plan))
    if "native" not in skip:
        run_section("native", lambda: section_native(args, plan))
    if "ab" not in skip:
        run_section("cpu_ab", lambda: section_cpu_ab(args, plan, cache))

    results["env"]["loadavg_end"] = loadavg()
    results["total_s"] = round(time.perf_counter() - started, 1)
    markdown, text = summary_tables(results)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "summary.md").write_text(markdown)
    try:
        chart(results, args.png)
    except Exception as exc:  # noqa: BLE001
        results["errors"]["chart"] = f"{type(exc).__name__}: {exc}"
    print()
    print(text)
    print()
    for name, err in results["errors"].items():
        print(f"ERROR in {name}: {err.splitlines()[0]}", file=sys.stderr)
    log(f"measurements took {results['total_s']:.0f} s; wrote {args.out / 'results.json'}, "
        f"{args.out / 'summary.md'}, {args.png}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
