//! Load and fault tests, a test binary of their own so that nothing else competes for the
//! CPU while they run (cargo runs test binaries one after another).
//!
//! - `mixed_hostile_load`: 4x the concurrency limit for `OMCP_LOAD_SECS` (default 60) of
//!   normal and hostile runs over `/run` and `/mcp`, in both runtimes (each answer must come
//!   from the runtime its request named), plus callers that hang up mid-run and a
//!   crowd of slowloris connections. Every answer must be a success, a typed Python error,
//!   a typed limit or a typed "busy"; the server-side time of accepted runs stays within
//!   their time limit plus a margin; afterwards no run, queue place, connection, file
//!   descriptor or thread is left behind, and anonymous RSS is within 10% (+16 MiB of pool
//!   slots' resident pages) of before.
//! - `graceful_shutdown_under_load`: SIGTERM while runs are in flight: each finishes with a
//!   whole answer, new connections are refused, the process exits 0.
//! - `session_churn`: 4x the concurrency limit of callers, each `OMCP_SESSION_CHURN_ITERS`
//!   (default 50) times: open a session, three turns, fork it, a turn in the fork, close
//!   both. Every answer must be the expected one (no busy, no 5xx); afterwards written
//!   memory (anonymous + shared: a session's memory is a memfd) is within 10% (+16 MiB)
//!   of before, at most 8 more file descriptors are open, and the session directory is
//!   empty again.
//!
//! The figures are printed (`cargo test --release --test load -- --nocapture`); the only
//! time bounds asserted are limit-enforcement margins, generous for a shared machine.

#[path = "../integration/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use helpers::Server;

/// The two tests run one after the other: each measures a server that has the CPU to itself.
static ALONE: Mutex<()> = Mutex::const_new(());

/// The server's concurrency limit; the load uses four times as many callers.
const SLOTS: usize = 4;
/// Allowed overrun of a run's time limit, measured by the server: the limit is enforced
/// by a 5 ms epoch tick, the margin covers a loaded machine descheduling the process.
const LIMIT_MARGIN_MS: f64 = 1000.0;

/// What a snippet must end as.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Result(i64),
    Raises(&'static str),
    Stopped(&'static str),
}

struct Case {
    name: &'static str,
    code: &'static str,
    /// Extra request fields (limits).
    limits: Value,
    expect: Expect,
    /// Only the time limit exists on the MCP tool; cases needing others stay on /run.
    mcp: bool,
}

fn cases() -> Vec<Case> {
    let case = |name, code, limits, expect, mcp| Case {
        name,
        code,
        limits,
        expect,
        mcp,
    };
    vec![
        case(
            "normal",
            "print(1+1)\n2+2",
            json!({}),
            Expect::Result(4),
            true,
        ),
        case(
            "compute",
            "sum(i % 7 for i in range(200_000))",
            json!({}),
            Expect::Result(599_994),
            true,
        ),
        case(
            "exception",
            "1/0",
            json!({}),
            Expect::Raises("ZeroDivisionError"),
            true,
        ),
        case(
            "recursion",
            "def f(): return f()\nf()",
            json!({}),
            Expect::Raises("RecursionError"),
            true,
        ),
        case(
            "busy loop",
            "while True: pass",
            json!({"timeout_ms": 300}),
            Expect::Stopped("timeout"),
            true,
        ),
        case(
            "sleep forever",
            "import time\ntime.sleep(10**6)",
            json!({"timeout_ms": 300}),
            Expect::Stopped("timeout"),
            true,
        ),
        case(
            "fuel",
            "while True: pass",
            json!({"fuel": 20_000_000}),
            Expect::Stopped("fuel"),
            false,
        ),
        case(
            "memory bomb",
            "bytearray(10**9)",
            json!({"memory_mb": 64}),
            Expect::Stopped("memory"),
            false,
        ),
        case(
            "list growth",
            "l = []\nwhile True: l.append([0] * 10000)",
            json!({"memory_mb": 64}),
            Expect::Stopped("memory"),
            false,
        ),
        case(
            "output flood",
            "while True: print('x' * 1000)",
            json!({"max_output_bytes": 20_000}),
            Expect::Stopped("output"),
            false,
        ),
        case(
            "exit",
            "import sys\nsys.exit(3)",
            json!({}),
            Expect::Stopped("exit"),
            true,
        ),
        // Both runtimes in one server: each answer must come from the one asked for.
        case(
            "stdlib by name",
            "import sys\nsys.version_info[1]",
            json!({"runtime": "stdlib"}),
            Expect::Result(12),
            true,
        ),
        case(
            "scientific by name",
            "import sys\nsys.version_info[1]",
            json!({"runtime": "scientific"}),
            Expect::Result(15),
            true,
        ),
        case(
            "numpy",
            "import numpy as np\nint((np.arange(100) ** 2).sum())",
            json!({"runtime": "scientific"}),
            Expect::Result(328_350),
            true,
        ),
        case(
            "numpy in a loop",
            "import numpy as np\na = np.random.rand(100, 100)\nwhile True: a = a @ a / 100",
            json!({"runtime": "scientific", "timeout_ms": 300}),
            Expect::Stopped("timeout"),
            true,
        ),
        case(
            "plot",
            "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2), dpi=50)\nplt.plot([1, 2])\n7",
            json!({"runtime": "scientific"}),
            Expect::Result(7),
            true,
        ),
    ]
}

/// Check one accepted answer (the /run body or the MCP structuredContent) against its case.
fn check(case: &Case, answer: &Value) -> Result<(), String> {
    let ok = match case.expect {
        Expect::Result(n) => answer["result"] == n && answer["error"].is_null(),
        Expect::Raises(name) => answer["error"]
            .as_str()
            .is_some_and(|e| e.contains(name) && answer["stopped"].is_null()),
        Expect::Stopped(stop) => answer["stopped"] == stop,
    };
    // No mix-ups: the run happened in the runtime the request named (the default: stdlib).
    let runtime = case.limits["runtime"].as_str().unwrap_or("stdlib");
    if answer["runtime"] != runtime {
        return Err(format!("{}: ran in the wrong runtime: {answer}", case.name));
    }
    if ok {
        Ok(())
    } else {
        Err(format!("{}: unexpected answer {answer}", case.name))
    }
}

fn limit_ms(case: &Case, server_timeout_ms: f64) -> f64 {
    case.limits["timeout_ms"]
        .as_f64()
        .unwrap_or(server_timeout_ms)
}

#[derive(Default)]
struct Tally {
    /// Case name -> (server duration_ms, client round trip ms) of accepted runs.
    accepted: BTreeMap<&'static str, Vec<(f64, f64)>>,
    busy: usize,
    hung_up: usize,
    failures: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// One MCP session over streamable HTTP.
struct Mcp {
    client: reqwest::Client,
    url: String,
    session: String,
}

impl Mcp {
    async fn open(server: &Server) -> Mcp {
        // The server closes a keep-alive connection that has been idle for its header timeout
        // (2 s here); a client must not reuse one that old, or its request races the close.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_millis(1000))
            .build()
            .unwrap();
        let url = server.url("/mcp");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "load", "version": "1"}}});
        let response = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .unwrap();
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        response.text().await.unwrap();
        let mcp = Mcp {
            client,
            url,
            session,
        };
        mcp.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .unwrap();
        mcp
    }

    async fn post(&self, message: &Value) -> Result<(u16, String), reqwest::Error> {
        let response = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(message)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// Call run_python; the JSON-RPC answer with `id`.
    async fn call(&self, id: u64, case: &Case) -> Result<Value, String> {
        let mut arguments = json!({"code": case.code});
        for field in ["timeout_ms", "runtime"] {
            if let Some(value) = case.limits.get(field) {
                arguments[field] = value.clone();
            }
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "run_python", "arguments": arguments}});
        let (status, body) = self.post(&message).await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("MCP tools/call answered HTTP {status}: {body}"));
        }
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|m| m["id"] == id)
            .ok_or_else(|| format!("no answer with id {id} in {body:?}"))
    }
}

/// Hostile connections beside the load: `count` sockets that send half a request line and
/// stall; each is replaced when the server's header timeout closes it.
fn slowloris(
    server: &Server,
    count: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let addr = server.addr;
    tokio::spawn(async move {
        let mut opened = 0;
        let mut held = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            while held.len() < count {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    let _ = s.write_all(b"POST /run HTTP/1.1\r\nHost: 1").await;
                    held.push(s);
                    opened += 1;
                }
            }
            // Drop the ones the server closed (a zero-byte read or an error).
            let mut alive = Vec::new();
            for s in held.drain(..) {
                let mut buf = [0u8; 64];
                match s.try_read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive.push(s),
                    _ => {}
                }
            }
            held = alive;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        opened
    })
}

async fn caller(
    server: Arc<Server>,
    worker: usize,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
    server_timeout_ms: f64,
) {
    let cases = cases();
    let mcp = if worker % 4 == 3 {
        Some(Mcp::open(&server).await)
    } else {
        None
    };
    let mut n = worker * 7;
    let mut id = 1u64;
    while Instant::now() < until {
        n += 1;
        // One call in 25 from /run callers hangs up mid-run.
        if mcp.is_none() && n.is_multiple_of(25) {
            let impatient = reqwest::Client::new();
            let _ = tokio::time::timeout(
                Duration::from_millis(150),
                impatient
                    .post(server.url("/run"))
                    .json(&json!({"code": "while True: pass", "timeout_ms": 5000}))
                    .send(),
            )
            .await;
            tally.lock().await.hung_up += 1;
            continue;
        }
        let case = match &mcp {
            Some(_) => {
                let mcp_cases: Vec<&Case> = cases.iter().filter(|c| c.mcp).collect();
                mcp_cases[n % mcp_cases.len()]
            }
            None => &cases[n % cases.len()],
        };
        let started = Instant::now();
        let outcome: Result<Option<Value>, String> = match &mcp {
            Some(mcp) => {
                id += 1;
                match mcp.call(id, case).await {
                    Ok(answer) if answer["error"]["code"] == -32000 => Ok(None),
                    Ok(answer) if answer["result"]["structuredContent"].is_object() => {
                        Ok(Some(answer["result"]["structuredContent"].clone()))
                    }
                    Ok(answer) => Err(format!("{}: MCP answer {answer}", case.name)),
                    Err(e) => Err(format!("{}: {e}", case.name)),
                }
            }
            None => {
                let mut body = case.limits.clone();
                body["code"] = json!(case.code);
                match server
                    .client
                    .post(server.url("/run"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_default();
                        match serde_json::from_str::<Value>(&text) {
                            Ok(v) if status == 200 => Ok(Some(v)),
                            Ok(v) if status == 503 && v["type"] == "busy" => Ok(None),
                            _ => Err(format!("{}: HTTP {status} {text:?}", case.name)),
                        }
                    }
                    Err(e) => Err(format!("{}: request failed: {e}", case.name)),
                }
            }
        };
        let round_trip = started.elapsed().as_secs_f64() * 1e3;
        let mut t = tally.lock().await;
        match outcome {
            Ok(None) => {
                t.busy += 1;
                drop(t);
                // A typed 503 asks for a retry; back off a little as a client would.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Some(answer)) => {
                if let Err(e) = check(case, &answer) {
                    t.failures.push(e);
                }
                let duration = answer["duration_ms"].as_f64().unwrap_or(f64::NAN);
                if duration > limit_ms(case, server_timeout_ms) + LIMIT_MARGIN_MS {
                    t.failures.push(format!(
                        "{}: ran {duration:.0} ms, limit {} ms",
                        case.name,
                        limit_ms(case, server_timeout_ms)
                    ));
                }
                t.accepted
                    .entry(case.name)
                    .or_default()
                    .push((duration, round_trip));
            }
            Err(e) => t.failures.push(e),
        }
    }
}

async fn run_load(server: &Arc<Server>, secs: u64, server_timeout_ms: f64) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs(secs);
    let callers: Vec<_> = (0..4 * SLOTS)
        .map(|w| {
            tokio::spawn(caller(
                server.clone(),
                w,
                until,
                tally.clone(),
                server_timeout_ms,
            ))
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    Arc::try_unwrap(tally).ok().unwrap().into_inner()
}

/// From the server's `/metrics`: runs counted (every face and outcome) and busy refusals.
async fn counted(server: &Server) -> (f64, f64) {
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    (
        sum("omcp_runs_total{"),
        sum("omcp_refusals_total{reason=\"busy\"}"),
    )
}

/// Wait until the server reports nothing running or queued (abandoned runs end at their
/// own time limit at the latest).
async fn settle(server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health: Value = server.healthz().await.json().await.unwrap();
        let load = &health["load"];
        if load["running"] == 0 && load["queued"] == 0 && load["connections"].as_u64() <= Some(2) {
            return load.clone();
        }
        assert!(Instant::now() < deadline, "server never settled: {load}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_hostile_load() {
    let _alone = ALONE.lock().await;
    let secs: u64 = std::env::var("OMCP_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let server = Arc::new(Server::start_with_env(
        &[
            "--max-concurrency",
            &SLOTS.to_string(),
            "--max-queue",
            &SLOTS.to_string(),
            "--header-timeout-ms",
            "2000",
            "--default-runtime",
            "stdlib",
        ],
        &[("OMCP_RUNTIMES", "stdlib,scientific")],
    ));
    let pid = server.child.id();
    let server_timeout_ms = 10_000.0;
    let rss_start = proc_status(pid, "VmRSS:");

    // Warm-up with the same load (slowloris crowd included): every pool slot, allocator
    // arena, worker thread and connection buffer reaches its high-water mark once, so the
    // "before" figure is the server's steady state rather than its first breath. Growth
    // after that is what a leak would show.
    let stop = Arc::new(AtomicBool::new(false));
    let loris = slowloris(&server, 100, stop.clone());
    let warm = run_load(&server, 10, server_timeout_ms).await;
    stop.store(true, Ordering::Relaxed);
    loris.await.unwrap();
    assert!(warm.failures.is_empty(), "{:?}", warm.failures);
    settle(&server).await;
    // Anonymous memory is what a leak grows. The file-backed part of RSS is the compiled
    // code mapped from the cache (over 400 MB for the scientific runtime), paged in as runs
    // reach code paths no earlier run took: reclaimable, and no leak.
    let rss_before = proc_status(pid, "RssAnon:");
    let file_before = proc_status(pid, "RssFile:");
    let fds_before = open_fds(pid);
    let threads_before = proc_status(pid, "Threads:");
    let (runs_before, busy_before) = counted(&server).await;

    let stop = Arc::new(AtomicBool::new(false));
    let loris = slowloris(&server, 100, stop.clone());
    let started = Instant::now();
    let tally = run_load(&server, secs, server_timeout_ms).await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let loris_opened = loris.await.unwrap();
    let load_after = settle(&server).await;
    let rss_after = proc_status(pid, "RssAnon:");
    let file_after = proc_status(pid, "RssFile:");
    let fds_after = open_fds(pid);
    let threads_after = proc_status(pid, "Threads:");
    let (runs_after, busy_after) = counted(&server).await;

    let accepted: usize = tally.accepted.values().map(Vec::len).sum();
    eprintln!(
        "\nload: {} callers ({}x the {SLOTS} slots) for {:.1} s: {accepted} runs accepted \
         ({:.0}/s), {} typed busy answers, {} callers hung up mid-run, {} slowloris \
         connections opened",
        4 * SLOTS,
        4,
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64(),
        tally.busy,
        tally.hung_up,
        loris_opened
    );
    eprintln!(
        "{:<14} {:>6} {:>12} {:>12} {:>12} {:>12}",
        "case", "runs", "server p50", "server p99", "client p50", "client p99"
    );
    for (name, samples) in &tally.accepted {
        let mut server_ms: Vec<f64> = samples.iter().map(|s| s.0).collect();
        let mut client_ms: Vec<f64> = samples.iter().map(|s| s.1).collect();
        server_ms.sort_by(f64::total_cmp);
        client_ms.sort_by(f64::total_cmp);
        eprintln!(
            "{name:<14} {:>6} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>9.1} ms",
            samples.len(),
            percentile(&server_ms, 50.0),
            percentile(&server_ms, 99.0),
            percentile(&client_ms, 50.0),
            percentile(&client_ms, 99.0)
        );
    }
    eprintln!(
        "RSS: {} kB at start; anonymous {rss_before} kB after warm-up, {rss_after} kB after \
         the load ({:+.1}%); file-backed {file_before} -> {file_after} kB; fds {fds_before} \
         -> {fds_after}; threads {threads_before} -> {threads_after}; after: {load_after}",
        rss_start,
        (rss_after as f64 / rss_before as f64 - 1.0) * 100.0
    );

    assert!(
        tally.failures.is_empty(),
        "{} bad answers, first ones: {:#?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(10)]
    );
    for case in cases() {
        assert!(
            tally.accepted.get(case.name).is_some_and(|v| !v.is_empty()),
            "case {} never ran",
            case.name
        );
    }
    // The metrics agree with what was sent: every answered run is counted once, and every
    // typed busy answer as a busy refusal. The callers that hung up got no answer: each of
    // theirs was either run (and counted) or refused busy, so they bound the difference.
    let (runs, busy) = (runs_after - runs_before, busy_after - busy_before);
    let hung_up = tally.hung_up as f64;
    eprintln!(
        "metrics: {runs} runs and {busy} busy refusals counted; the clients saw {accepted} \
         runs, {} busy answers and hung up {hung_up} times",
        tally.busy
    );
    assert!(
        runs >= accepted as f64 && runs <= accepted as f64 + hung_up,
        "omcp_runs_total rose by {runs}; {accepted} runs answered, {hung_up} hung up"
    );
    assert!(
        busy >= tally.busy as f64 && busy <= tally.busy as f64 + hung_up,
        "busy refusals rose by {busy}; {} busy answers, {hung_up} hung up",
        tally.busy
    );
    assert!(
        runs + busy <= (accepted + tally.busy) as f64 + hung_up,
        "each call hung up on is counted once at most"
    );
    // Each pooled memory keeps up to 4 MiB of what a run wrote resident for the next run in
    // that slot (KEEP_RESIDENT), and there are 24 slots now (2 runtimes x 2 engines x 6): a
    // slot reached for the first time after the warm-up adds up to that much, bounded, so
    // 16 MiB are allowed beyond the 10%. (Before, the check was 10% of all of RSS, file-
    // backed code included: ~25 MB of slack.)
    assert!(
        rss_after as f64 <= rss_before as f64 * 1.10 + 16.0 * 1024.0,
        "anonymous RSS grew more than 10% + 16 MiB: {rss_before} kB -> {rss_after} kB"
    );
    assert!(
        fds_after <= fds_before + 4,
        "fds {fds_before} -> {fds_after}"
    );
    assert!(
        threads_after <= threads_before + 2,
        "threads {threads_before} -> {threads_after}"
    );
    server.assert_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_under_load() {
    let _alone = ALONE.lock().await;
    let server = Server::start_with(&["--max-concurrency", &SLOTS.to_string()]);
    let pid = server.child.id();
    let url = server.url("/run");
    let term_sent = Arc::new(AtomicBool::new(false));

    // Runs that are surely in flight when SIGTERM arrives: they sleep, then answer.
    let slow: Vec<_> = (0..SLOTS)
        .map(|i| {
            let client = reqwest::Client::new();
            let url = url.clone();
            tokio::spawn(async move {
                let code = format!("import time\ntime.sleep(1.5)\n{i} + 40");
                let response = client.post(url).json(&json!({"code": code})).send().await;
                (i, response)
            })
        })
        .collect();
    // And a stream of short runs from other callers, before and after the signal.
    let busy_callers: Vec<_> = (0..2 * SLOTS)
        .map(|_| {
            let url = url.clone();
            let term_sent = term_sent.clone();
            tokio::spawn(async move {
                // A fresh connection per request, as a client after shutdown would have.
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let (mut answered, mut refused) = (0, 0);
                let until = Instant::now() + Duration::from_secs(4);
                while Instant::now() < until {
                    let sent_after_term = term_sent.load(Ordering::SeqCst);
                    match client.post(&url).json(&json!({"code": "6*7"})).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            // Headers arrived: the body must arrive whole.
                            let body = response.text().await.expect("an answer cut off mid-body");
                            let v: Value = serde_json::from_str(&body)
                                .unwrap_or_else(|e| panic!("cut or bad body {body:?}: {e}"));
                            assert!(
                                (status == 200 && v["result"] == 42)
                                    || (status == 503 && v["type"] == "busy"),
                                "{status} {v}"
                            );
                            answered += 1;
                        }
                        Err(e) => {
                            assert!(
                                sent_after_term || term_sent.load(Ordering::SeqCst),
                                "request failed before shutdown: {e}"
                            );
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (answered, refused)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    term_sent.store(true, Ordering::SeqCst);
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    for task in slow {
        let (i, response) = task.await.unwrap();
        let response = response.unwrap_or_else(|e| panic!("in-flight run {i} lost: {e}"));
        assert_eq!(response.status(), 200);
        let v: Value = response.json().await.expect("whole body");
        assert_eq!(v["result"], i as i64 + 40, "{v}");
    }
    let (mut answered, mut refused) = (0, 0);
    for task in busy_callers {
        let (a, r) = task.await.unwrap();
        answered += a;
        refused += r;
    }
    // The process exits by itself, with status 0.
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "\nshutdown: {SLOTS} in-flight runs answered whole; {answered} short runs answered, \
         {refused} refused after SIGTERM; exited {status} {:?} after the signal",
        signalled.elapsed()
    );
    assert!(status.success(), "{status}");
    assert!(
        refused > 0,
        "new requests should be refused once shutdown began"
    );
}

/// Written memory of the server: anonymous pages plus shared ones (each session keeps the
/// pages its turns changed in a memfd of its own), in kB.
fn written_kb(pid: u32) -> u64 {
    proc_status(pid, "RssAnon:") + proc_status(pid, "RssShmem:")
}

/// Entries (files and directories, recursively) and bytes under `dir`.
fn tree_size(dir: &std::path::Path) -> (usize, u64) {
    let (mut entries, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        entries += 1;
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let (e, b) = tree_size(&entry.path());
            entries += e;
            bytes += b;
        } else {
            bytes += meta.len();
        }
    }
    (entries, bytes)
}

/// A JSON request to the server: its status and body.
async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut request = server.client.request(method.clone(), server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{method} {path}: body cut off: {e}"))?;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .map_err(|e| format!("{method} {path}: HTTP {status}, not JSON ({e}): {text:?}"))?
    };
    Ok((status, value))
}

/// `call`, which must answer `expected`.
async fn expect(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    expected: u16,
) -> Result<Value, String> {
    let (status, value) = call(server, method.clone(), path, body).await?;
    if status == expected {
        Ok(value)
    } else {
        Err(format!(
            "{method} {path}: HTTP {status} (expected {expected}): {value}"
        ))
    }
}

/// One turn, which must end normally with `result`.
async fn turn(server: &Server, id: &str, code: &str, result: Value) -> Result<(), String> {
    let path = format!("/sessions/{id}/run");
    let answer = expect(
        server,
        reqwest::Method::POST,
        &path,
        Some(json!({ "code": code })),
        200,
    )
    .await?;
    if answer["result"] == result
        && answer["error"].is_null()
        && answer["stopped"].is_null()
        && answer["rolled_back"] == false
        && answer["session_id"] == id
    {
        Ok(())
    } else {
        Err(format!("{code:?} in {id}: expected {result}, got {answer}"))
    }
}

/// One life: open, three turns, fork, a turn in the fork, close both. Whatever happens,
/// the sessions it opened are closed (so a failure does not also show as a leak).
async fn session_life(server: &Server, n: u64) -> Result<(), String> {
    let info = expect(
        server,
        reqwest::Method::POST,
        "/sessions",
        Some(json!({})),
        201,
    )
    .await?;
    let id = info["session_id"]
        .as_str()
        .ok_or_else(|| format!("no session_id in {info}"))?
        .to_string();
    let mut opened = vec![id.clone()];
    let outcome = async {
        turn(server, &id, &format!("x = [{n}] * 1000"), Value::Null).await?;
        turn(server, &id, "x.append(1)", Value::Null).await?;
        turn(server, &id, "len(x)", json!(1001)).await?;
        let fork = expect(
            server,
            reqwest::Method::POST,
            &format!("/sessions/{id}/fork"),
            None,
            201,
        )
        .await?;
        let fork = fork["session_id"]
            .as_str()
            .ok_or_else(|| format!("no session_id in {fork}"))?
            .to_string();
        opened.push(fork.clone());
        if fork == id {
            return Err(format!("the fork of {id} has its id"));
        }
        turn(
            server,
            &fork,
            "x.append(2)\n[len(x), x[0], x[-1]]",
            json!([1002, n, 2]),
        )
        .await
    }
    .await;
    let mut closed = Ok(());
    for id in opened {
        let done = expect(
            server,
            reqwest::Method::DELETE,
            &format!("/sessions/{id}"),
            None,
            204,
        )
        .await;
        if closed.is_ok() {
            closed = done.map(drop);
        }
    }
    outcome.and(closed)
}

/// `callers` callers, each living `lives` session lives; the failures.
async fn churn(server: &Arc<Server>, callers: usize, lives: u64) -> Vec<String> {
    let tasks: Vec<_> = (0..callers)
        .map(|worker| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for life in 0..lives {
                    let n = worker as u64 * 1_000_000 + life;
                    if let Err(e) = session_life(&server, n).await {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.unwrap());
    }
    failures
}

/// `settle`, and no session open.
async fn settle_sessions(server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let load = settle(server).await;
        let health: Value = server.healthz().await.json().await.unwrap();
        if health["sessions"]["open"] == 0 {
            // A moment for closed connections and freed memory to show in /proc.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return load;
        }
        assert!(
            Instant::now() < deadline,
            "sessions still open: {}",
            health["sessions"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_churn() {
    let _alone = ALONE.lock().await;
    let lives: u64 = std::env::var("OMCP_SESSION_CHURN_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let callers = 4 * SLOTS;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("load-sessions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Each caller has one request in flight: a queue as long as the callers are many, and
    // room for every session, so that a busy answer or too_many_sessions is a failure.
    let server = Arc::new(Server::start_with(&[
        "--max-concurrency",
        &SLOTS.to_string(),
        "--max-queue",
        &callers.to_string(),
        "--max-sessions",
        &(4 * callers).to_string(),
        "--header-timeout-ms",
        "2000",
        "--session-dir",
        dir.to_str().unwrap(),
    ]));
    let pid = server.child.id();

    // Warm-up: pool slots, allocator arenas and connection buffers reach their high-water
    // mark, so that "before" is the steady state and growth after it is what a leak shows.
    let warm = churn(&server, callers, 3).await;
    assert!(warm.is_empty(), "{:?}", &warm[..warm.len().min(10)]);
    settle_sessions(&server).await;
    let written_before = written_kb(pid);
    let anon_before = proc_status(pid, "RssAnon:");
    let fds_before = open_fds(pid);
    let (entries_before, bytes_before) = tree_size(&dir);

    let started = Instant::now();
    let failures = churn(&server, callers, lives).await;
    let elapsed = started.elapsed();
    let load_after = settle_sessions(&server).await;
    let written_after = written_kb(pid);
    let anon_after = proc_status(pid, "RssAnon:");
    let fds_after = open_fds(pid);
    let (entries_after, bytes_after) = tree_size(&dir);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .take(10)
        .collect();

    let sessions = callers as u64 * lives * 2;
    eprintln!(
        "\nsession churn: {callers} callers ({}x the {SLOTS} slots) x {lives} lives: {sessions} \
         sessions (half of them forks) and {} turns in {:.1} s ({:.0} sessions/s); written \
         memory {written_before} -> {written_after} kB ({:+.1}%), of it anonymous \
         {anon_before} -> {anon_after} kB; fds {fds_before} -> {fds_after}; session dir \
         {entries_before} entries / {bytes_before} bytes -> {entries_after} / {bytes_after}; \
         after: {load_after}",
        callers / SLOTS,
        callers as u64 * lives * 4,
        elapsed.as_secs_f64(),
        sessions as f64 / elapsed.as_secs_f64(),
        (written_after as f64 / written_before as f64 - 1.0) * 100.0,
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} bad lives, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // The bound of `mixed_hostile_load`: 10% plus the resident pages pool slots may keep.
    assert!(
        written_after as f64 <= written_before as f64 * 1.10 + 16.0 * 1024.0,
        "written memory grew more than 10% + 16 MiB: {written_before} kB -> {written_after} kB"
    );
    assert!(
        fds_after <= fds_before + 8,
        "fds {fds_before} -> {fds_after}"
    );
    assert_eq!(
        (entries_after, bytes_after),
        (0, 0),
        "the session directory is not empty: {leftovers:?}"
    );
    server.assert_healthy().await;
}
