#!/usr/bin/env python3
"""What OpenTelemetry traces cost a run: bench/run.sh runs it last (`bench/run.sh --traces-only`:
alone).

Two servers of the same binary run side by side, stdlib runtime:

- `off`: no OTEL_* variable, the default (no trace layer; every span a disabled callsite);
- `on`: `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a receiver in this script (a plain HTTP
  server that accepts `POST /v1/traces` and answers an empty protobuf), default sampler and
  batch settings: every request exported as a trace of ~5 spans.

With `--baseline-bin`, a third server: `before`, a build of the commit before traces came
in (its `off` must match it: the cost of the feature when it is off).

`POST /run` `print(1)` from one client on a kept-alive connection, the servers in
alternating rounds (so that a machine that gets busier or quieter during the run weighs on
both alike), p50 and p95 of each, and the ratio of the p50s. The receiver's count of export
requests and bytes shows that `on` really exported. Writes bench/out/traces.json and a
"## Traces" section at the end of bench/out/summary.md (replacing an earlier one). Every
socket is on 127.0.0.1; both servers are stopped (SIGTERM: the last batch is flushed) before
this exits. No timing is asserted.
"""

from __future__ import annotations

import datetime as dt
import http.server
import sys
import threading
import time
from typing import Any

from bench import Server, fmt, loadavg, log, part_args, post_run, stats, write_section

MARK = "## Traces"
CODE = "print(1)"


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP trace endpoint that counts what it is sent and keeps none of it."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.exports += 1
                    receiver.bytes += len(body)
                # An empty ExportTraceServiceResponse is zero bytes of protobuf.
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def main() -> int:
    parser = part_args(__doc__)
    parser.add_argument("--baseline-bin", help="a build without traces, measured as `before`")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rounds, per_round, warm = (4, 100, 50) if args.quick else (10, 300, 200)
    receiver = Receiver()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    results: dict[str, Any] = {"when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "load_start": loadavg(), "code": CODE, "rounds": rounds, "per_round": per_round}
    pids = args.out / "pids.txt"
    servers = {
        "off": Server(args.bin, args.cache_dir, [], args.out / "traces_off.log", pids),
        "on": Server(args.bin, args.cache_dir, [], args.out / "traces_on.log", pids,
                     env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "omcp-bench"}),
    }
    if args.baseline_bin:
        servers["before"] = Server(args.baseline_bin, args.cache_dir, [], args.out / "traces_before.log", pids)
    samples: dict[str, list[float]] = {name: [] for name in servers}
    try:
        conns = {name: server.conn() for name, server in servers.items()}
        for name, conn in conns.items():
            for _ in range(warm):
                post_run(conn, CODE)
        for r in range(rounds):
            # Which one goes first rotates too.
            names = list(servers)
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                conn = conns[name]
                for _ in range(per_round):
                    t = time.perf_counter()
                    answer = post_run(conn, CODE)
                    samples[name].append((time.perf_counter() - t) * 1e3)
                    if answer.get("output") != "1\n":
                        raise RuntimeError(f"unexpected answer from {name}: {answer}")
        for conn in conns.values():
            conn.close()
    finally:
        for server in servers.values():
            server.stop()
    results["load_end"] = loadavg()
    for name, values in samples.items():
        results[name] = stats(values)
    results["p50_ratio_on_off"] = round(results["on"]["p50_ms"] / results["off"]["p50_ms"], 3)
    if "before" in results:
        results["p50_ratio_off_before"] = round(results["off"]["p50_ms"] / results["before"]["p50_ms"], 3)
    results["exports"] = receiver.exports
    results["export_bytes"] = receiver.bytes
    receiver.shutdown()
    if receiver.exports == 0:
        log("the `on` server exported nothing: the figures would compare off with off")
        return 1
    write_section(args.out, "traces", results, MARK, report(results))
    return 0


def report(results: dict[str, Any]) -> str:
    n = results["rounds"] * results["per_round"]
    lines = [
        MARK,
        "",
        f"Measured {results['when']} (load {results['load_start']} at start, {results['load_end']} at end). "
        f"`POST /run` `{results['code']}`, one client, keep-alive, {n} calls per server in {results['rounds']} "
        "alternating rounds. `on` exported "
        f"{results['exports']} OTLP requests ({results['export_bytes']} bytes) to a local receiver.",
        "",
        "| traces | p50 ms | p95 ms |",
        "|---|---:|---:|",
    ]
    rows = [("before", "before (the build without traces)"), ("off", "off (no OTEL_* variable)"),
            ("on", "on (OTLP/HTTP to a local receiver)")]
    for name, label in rows:
        if name in results:
            lines.append(f"| {label} | {fmt(results[name]['p50_ms'], 3)} | {fmt(results[name]['p95_ms'], 3)} |")
    lines += ["", f"p50 on / off: {results['p50_ratio_on_off']:.3f}"]
    if "p50_ratio_off_before" in results:
        lines.append(f"p50 off / before: {results['p50_ratio_off_before']:.3f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
