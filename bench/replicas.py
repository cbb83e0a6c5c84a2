#!/usr/bin/env python3
"""Replicas' benchmark: what sharing sessions between replicas and a load balancer cost
(`bench/run.sh --replicas-only`: alone).

One run, both runtimes, every baseline measured in the same run, one keep-alive client per
path, session turns `x += 1` after a first turn `x = 0` (checked on every call):

- `local`: `serve --session-dir DIR` (sessions kept in the server's memory): the baseline.
- `shared`: `serve --session-dir DIR --shared-sessions`, the same turn: each one is now
  checkpointed to the directory (memory and facts written, synced, renamed) under the
  session's lease before it is answered.
- `alternating`: two `--shared-sessions` servers on one directory, turns sent to each in
  turn: every turn resumes the newest checkpoint from disk (the worst case of a balancer
  that spreads a session's calls).
- `haproxy`: `POST /run` of `1 + 1`, direct to a server and through HAProxy with
  deploy/haproxy/haproxy.cfg in front of it (a new client connection per request on both
  paths, as HAProxy's `http-server-close` makes one to the server): the balancer's share.

Writes bench/out/replicas.json and a "## Replicas" section at the end of
bench/out/summary.md (replacing an earlier one). Every process binds 127.0.0.1 only and is
stopped before this exits. No timing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import CHILDREN, Server, fmt, new_results, part_args, section_runner, stats, write_section

ROOT = Path(__file__).resolve().parent.parent
MARK = "## Replicas"
RUNTIMES = ("stdlib", "scientific")


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    assert response.status == expect, (response.status, data[:500])
    return json.loads(data) if data else None


def turns(conns: list[http.client.HTTPConnection], runtime: str, warmup: int, n: int) -> dict[str, Any]:
    """A session made on the first connection; turn i goes to conns[i % len(conns)]."""
    sid = call(conns[0], "POST", "/sessions", {"runtime": runtime}, expect=201)["session_id"]
    assert call(conns[0], "POST", f"/sessions/{sid}/run", {"code": "x = 0"})["error"] is None
    client, server = [], []
    for i in range(warmup + n):
        conn = conns[i % len(conns)]
        t = time.perf_counter()
        answer = call(conn, "POST", f"/sessions/{sid}/run", {"code": "x += 1\nx"})
        took = (time.perf_counter() - t) * 1e3
        assert answer["result"] == i + 1, answer
        if i >= warmup:
            client.append(took)
            server.append(float(answer["duration_ms"]))
    call(conns[0], "DELETE", f"/sessions/{sid}", expect=204)
    return {"client": stats(client), "server": stats(server)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_runs(port: int, warmup: int, n: int) -> dict[str, Any]:
    samples = []
    for i in range(warmup + n):
        t = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        answer = call(conn, "POST", "/run", {"code": "1 + 1"})
        conn.close()
        took = (time.perf_counter() - t) * 1e3
        assert answer["result"] == 2, answer
        if i >= warmup:
            samples.append(took)
    return stats(samples)


def section_turns(args: argparse.Namespace, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="omcp-bench-replicas-", dir=args.out))
    try:
        for mode, flags in (("local", []), ("shared", ["--shared-sessions"])):
            d = base / mode
            d.mkdir()
            with Server(args.bin, args.cache_dir, ["--session-dir", str(d), *flags],
                        args.out / f"server-replicas-{mode}.log", args.out / "pids.txt",
                        runtimes="stdlib,scientific") as srv:
                for runtime in RUNTIMES:
                    out[f"{mode}_{runtime}"] = turns([srv.conn()], runtime, 10, n)
        d = base / "alternating"
        d.mkdir()
        flags = ["--session-dir", str(d), "--shared-sessions"]
        with Server(args.bin, args.cache_dir, flags, args.out / "server-replicas-a.log", args.out / "pids.txt",
                    runtimes="stdlib,scientific") as a, \
             Server(args.bin, args.cache_dir, flags, args.out / "server-replicas-b.log", args.out / "pids.txt",
                    runtimes="stdlib,scientific") as b:
            for runtime in RUNTIMES:
                out[f"alternating_{runtime}"] = turns([a.conn(), b.conn()], runtime, 4, max(n // 4, 10))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def section_haproxy(args: argparse.Namespace, n: int) -> dict[str, Any]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    with Server(args.bin, args.cache_dir, [], args.out / "server-replicas-lb.log", args.out / "pids.txt") as srv:
        front = free_port()
        env = dict(os.environ, OMCP_LB_BIND=f"127.0.0.1:{front}", OMCP_LB_ERRORS=str(ROOT / "deploy/haproxy/errors"),
                   OMCP_R1=srv.addr, OMCP_R2=srv.addr, OMCP_R3=srv.addr)
        log = open(args.out / "haproxy.log", "wb")
        lb = subprocess.Popen([haproxy, "-db", "-f", str(ROOT / "deploy/haproxy/haproxy.cfg")], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        CHILDREN.append(lb)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", front, timeout=5)
                    if call(conn, "GET", "/livez") == {"status": "ok"}:
                        break
                except (OSError, AssertionError):
                    pass
                assert time.time() < deadline, "haproxy did not come up"
                time.sleep(0.1)
            time.sleep(1.0)  # every server's health check passed (rise 2)
            return {"direct": fresh_runs(srv.port, 20, n), "haproxy": fresh_runs(front, 20, n)}
        finally:
            lb.terminate()
            lb.wait()
            CHILDREN.remove(lb)
            log.close()


def report(results: dict[str, Any]) -> str:
    s = results["sections"]
    t = s.get("turns", {})
    lines = [MARK, "",
             f"`bench/run.sh --replicas-only` ({results['when']}, load {results['load']}): a session "
             "turn `x += 1` over HTTP, p50 (p95) in ms, client round trip / the server's `duration_ms`.", "",
             "| sessions | stdlib | scientific |", "|---|---:|---:|"]
    names = {"local": "in one server's memory (baseline)",
             "shared": "`--shared-sessions`: checkpointed before each answer",
             "alternating": "two shared replicas in turn: each turn resumes from disk"}
    for mode, name in names.items():
        cells = []
        for runtime in RUNTIMES:
            r = t.get(f"{mode}_{runtime}")
            cells.append("-" if not r else f"{fmt(r['client']['p50_ms'])} ({fmt(r['client']['p95_ms'])}) / "
                                           f"{fmt(r['server']['p50_ms'])}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    h = s.get("haproxy")
    if h:
        lines += ["", "| `POST /run` `1 + 1`, a new connection each | p50 | p95 |", "|---|---:|---:|",
                  f"| direct to the server | {fmt(h['direct']['p50_ms'], 3)} | {fmt(h['direct']['p95_ms'], 3)} |",
                  f"| through HAProxy (deploy/haproxy/haproxy.cfg) | {fmt(h['haproxy']['p50_ms'], 3)} | "
                  f"{fmt(h['haproxy']['p95_ms'], 3)} |"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = part_args(__doc__)
    args = parser.parse_args()
    n = 30 if args.quick else 200
    results = new_results()
    run_section = section_runner(results)
    run_section("turns", lambda: section_turns(args, n))
    run_section("haproxy", lambda: section_haproxy(args, n))
    write_section(args.out, "replicas", results, MARK, report(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
