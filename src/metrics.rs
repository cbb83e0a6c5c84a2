//! Prometheus metrics: what the server did over time (runs by runtime, face and outcome,
//! their durations and queue waits, refusals, HTTP requests, sessions suspended and resumed)
//! and how busy it is now (slots, queue, connections, sessions, resident memory).
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade
//! (a no-op until [`install`] sets the recorder, so the CLI and the tests' in-process
//! benches pay nothing). Gauges of the present are read at scrape time by [`render`], from
//! the same state `/healthz` reads. The text format comes from `metrics-exporter-prometheus`;
//! every metric is described, as `promtool check metrics` asks.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::outcome::Outcome;

/// The face a run came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Http,
    Mcp,
    Cli,
}

impl Face {
    fn as_str(self) -> &'static str {
        match self {
            Face::Http => "http",
            Face::Mcp => "mcp",
            Face::Cli => "cli",
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Seconds: from a fraction of a millisecond (a pristine run) to the longest limits.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Install the process's recorder (once; later calls return the same handle).
pub fn install() -> anyhow::Result<&'static PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle))
}

fn describe() {
    describe_counter!(
        "omcp_runs_total",
        Unit::Count,
        "Runs finished (pristine runs and session turns), by runtime, face (http, mcp, cli) \
         and outcome (ok, error: a Python exception, or the stop: timeout, fuel, memory, \
         output, trap, exit)"
    );
    describe_histogram!(
        "omcp_run_duration_seconds",
        Unit::Seconds,
        "Time a run spent running (after it had a slot), by runtime"
    );
    describe_histogram!(
        "omcp_queue_wait_seconds",
        Unit::Seconds,
        "Time a run waited for a slot (0 when one was free)"
    );
    describe_counter!(
        "omcp_refusals_total",
        Unit::Count,
        "Requests refused before running, by reason (busy, too_large, unauthorized, host, \
         too_many_sessions)"
    );
    describe_counter!(
        "omcp_http_requests_total",
        Unit::Count,
        "HTTP requests answered, by route (the route's template) and status"
    );
    describe_counter!(
        "omcp_session_suspends_total",
        Unit::Count,
        "Sandbox sessions written to disk (idle, over the memory budget, or at shutdown)"
    );
    describe_histogram!(
        "omcp_session_suspend_seconds",
        Unit::Seconds,
        "Time to write a session's state to disk"
    );
    describe_histogram!(
        "omcp_session_checkpoint_seconds",
        Unit::Seconds,
        "Time to checkpoint a session to the shared directory after a turn (--shared-sessions)"
    );
    describe_counter!(
        "omcp_session_resumes_total",
        Unit::Count,
        "Sandbox sessions read back from disk for a call"
    );
    describe_histogram!(
        "omcp_session_resume_seconds",
        Unit::Seconds,
        "Time to read a session's state back and restore its interpreter"
    );
    describe_counter!(
        "omcp_tool_calls_total",
        Unit::Count,
        "Code mode: calls guests made to upstream tools, by server, tool and outcome (ok, \
         or the failure: tool_error, invalid_arguments, unknown_tool, unavailable, timeout, \
         limit)"
    );
    describe_histogram!(
        "omcp_tool_call_duration_seconds",
        Unit::Seconds,
        "Code mode: time from a guest's tool call to its answer, by server"
    );
    describe_gauge!("omcp_slots", Unit::Count, "Run slots (runs at once)");
    describe_gauge!(
        "omcp_slots_busy",
        Unit::Count,
        "Run slots running a run now"
    );
    describe_gauge!(
        "omcp_queue_depth",
        Unit::Count,
        "Runs waiting for a slot now"
    );
    describe_gauge!(
        "omcp_http_connections",
        Unit::Count,
        "Open HTTP connections"
    );
    describe_gauge!(
        "omcp_mcp_sessions",
        Unit::Count,
        "Open MCP sessions of the streamable HTTP transport"
    );
    describe_gauge!(
        "omcp_sessions",
        Unit::Count,
        "Sandbox sessions, by state (active, running, suspended)"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the server process"
    );
}

/// How a run ended, as `omcp_runs_total` and traces name it: ok, error (a Python
/// exception), or the stop (timeout, fuel, memory, output, trap, exit).
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match (outcome.stopped, &outcome.error) {
        (Some(stop), _) => stop.as_str(),
        (None, Some(_)) => "error",
        (None, None) => "ok",
    }
}

/// A run (or a session's turn) finished with `outcome`.
pub fn run_finished(face: Face, outcome: &Outcome) {
    let result = outcome_label(outcome);
    counter!(
        "omcp_runs_total",
        "runtime" => outcome.runtime.clone(),
        "face" => face.as_str(),
        "outcome" => result
    )
    .increment(1);
    histogram!("omcp_run_duration_seconds", "runtime" => outcome.runtime.clone())
        .record(outcome.duration.as_secs_f64());
}

/// A guest's tool call was answered (code mode). Names the guest made up (an unknown
/// server or tool) are not labels: each would be a new time series.
pub fn tool_call(call: &crate::outcome::ToolCall) {
    let known = call.error.as_deref() != Some("unknown_tool");
    let (server, tool) = if known {
        (call.server.clone(), call.tool.clone())
    } else {
        ("unknown".to_string(), "unknown".to_string())
    };
    let outcome = call.error.clone().unwrap_or_else(|| "ok".into());
    counter!("omcp_tool_calls_total", "server" => server.clone(), "tool" => tool, "outcome" => outcome)
        .increment(1);
    histogram!("omcp_tool_call_duration_seconds", "server" => server)
        .record(call.duration_ms / 1e3);
}

pub fn queue_wait(waited: Duration) {
    histogram!("omcp_queue_wait_seconds").record(waited.as_secs_f64());
}

/// A request refused before it ran; `reason` is one of those `omcp_refusals_total` lists.
pub fn refused(reason: &'static str) {
    counter!("omcp_refusals_total", "reason" => reason).increment(1);
}

pub fn http_request(route: String, status: u16) {
    counter!("omcp_http_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
}

pub fn session_suspended(took: Duration) {
    counter!("omcp_session_suspends_total").increment(1);
    histogram!("omcp_session_suspend_seconds").record(took.as_secs_f64());
}

pub fn session_checkpointed(took: Duration) {
    histogram!("omcp_session_checkpoint_seconds").record(took.as_secs_f64());
}

pub fn session_resumed(took: Duration) {
    counter!("omcp_session_resumes_total").increment(1);
    histogram!("omcp_session_resume_seconds").record(took.as_secs_f64());
}

/// The present, read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Now {
    pub slots: usize,
    pub slots_busy: usize,
    pub queued: usize,
    pub connections: usize,
    pub mcp_sessions: usize,
    pub sessions_active: usize,
    pub sessions_running: usize,
    pub sessions_suspended: usize,
}

/// The text a scrape gets: the gauges of `now`, then everything recorded so far.
pub fn render(handle: &PrometheusHandle, now: Now) -> String {
    gauge!("omcp_slots").set(now.slots as f64);
    gauge!("omcp_slots_busy").set(now.slots_busy as f64);
    gauge!("omcp_queue_depth").set(now.queued as f64);
    gauge!("omcp_http_connections").set(now.connections as f64);
    gauge!("omcp_mcp_sessions").set(now.mcp_sessions as f64);
    for (state, count) in [
        ("active", now.sessions_active),
        ("running", now.sessions_running),
        ("suspended", now.sessions_suspended),
    ] {
        gauge!("omcp_sessions", "state" => state).set(count as f64);
    }
    if let Some(bytes) = resident_bytes() {
        gauge!("process_resident_memory_bytes").set(bytes as f64);
    }
    handle.render()
}

/// Resident set size from /proc/self/statm (pages) times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
