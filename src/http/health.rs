//! `GET /healthz`: liveness, the runtime the server loaded, its limits and its load right
//! now (runs, queue, connections, MCP sessions) and its sandbox sessions. Typed, so
//! `/openapi.json` documents it.

use axum::extract::State;
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use crate::sandbox::{RuntimeInfo, WASMTIME_VERSION};

/// `GET /healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// Always "ok" when the server answers: it loaded and self-tested its runtime at start.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// The default runtime (a request that names none runs here).
    pub runtime: RuntimeHealth,
    /// Every runtime loaded, the default first; a request chooses one with `runtime`.
    pub runtimes: Vec<RuntimeHealth>,
    /// The server's limits: the default for each run and the most a request may ask for.
    pub limits: LimitsHealth,
    pub load: LoadHealth,
    pub sessions: SessionsHealth,
    /// Code mode: each upstream MCP server of `--tools-config` (empty without one). A
    /// failed server is retried with backoff; its tools are unavailable meanwhile, the
    /// others' are not.
    pub tools: Vec<crate::tools::ServerHealth>,
}

/// `GET /tools`: code mode's upstream servers and the Python API their tools make.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ToolsListing {
    /// Each upstream server, as in `/healthz`.
    pub servers: Vec<crate::tools::ServerHealth>,
    /// The `tools` module's functions as a Python stub file: each signature and docstring.
    pub stubs: String,
}

pub async fn tools(State(state): State<AppState>) -> axum::Json<ToolsListing> {
    let tools = state.sandbox.tools();
    axum::Json(ToolsListing {
        servers: tools.map(|t| t.health()).unwrap_or_default(),
        stubs: tools.map_or_else(
            || "# No tool servers are configured on this server.\n".to_string(),
            |t| t.stubs(),
        ),
    })
}

/// A Python runtime the server loaded.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RuntimeHealth {
    /// What a request's `runtime` field says to run here.
    pub name: String,
    pub python: String,
    /// SHA-256 of the python.wasm in use.
    pub sha256: String,
    /// The runtime's other pinned files and their SHA-256 (stdlib zip, manifest, data).
    pub files: std::collections::BTreeMap<String, String>,
    pub wasmtime: String,
    /// "snapshot" (pre-initialised interpreter) or "cold" (CPython start-up per run).
    pub start: String,
    /// Packages beyond the standard library, name -> version.
    pub packages: std::collections::BTreeMap<String, String>,
    /// Guest path of the writable directory each run gets (empty for none).
    pub scratch: String,
}

impl RuntimeHealth {
    fn new(info: &RuntimeInfo) -> RuntimeHealth {
        RuntimeHealth {
            name: info.name.into(),
            python: info.python_version.into(),
            sha256: info.sha256.clone(),
            files: info.other_hashes.iter().cloned().collect(),
            wasmtime: WASMTIME_VERSION.into(),
            start: info.start_mode.as_str().into(),
            packages: info.packages.iter().cloned().collect(),
            scratch: info.scratch.unwrap_or_default().into(),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LimitsHealth {
    pub timeout_ms: u64,
    /// Fuel of a metered run, and the most a request may ask for.
    pub fuel: u64,
    /// Whether every run is metered (`--fuel`), or only those that set `fuel`.
    pub meter_all: bool,
    pub memory_mb: u64,
    pub max_output_bytes: u64,
    pub max_code_bytes: u64,
    pub max_stdin_bytes: u64,
    pub max_concurrency: u64,
    pub max_queue: u64,
    /// MiB a run may write to its scratch directory.
    pub scratch_mb: u64,
    pub max_connections: u64,
    /// MCP transport sessions (streamable HTTP) open at most (`--max-mcp-sessions`); the
    /// sandbox sessions' bound is `sessions.max`.
    pub max_sessions: u64,
}

/// What the server is doing right now.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LoadHealth {
    /// Runs executing.
    pub running: u64,
    /// Runs waiting for a slot.
    pub queued: u64,
    /// Open HTTP connections (this one included).
    pub connections: u64,
    /// Connections closed at accept because `max_connections` was reached, since start.
    pub connections_refused: u64,
    /// Open MCP sessions (streamable HTTP).
    pub mcp_sessions: u64,
}

/// Sandbox sessions (`/sessions`, the MCP session tools).
#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionsHealth {
    /// Sessions open now (active, running or suspended).
    pub open: u64,
    /// Sessions this server holds at most (`--max-sessions`); one more is refused.
    pub max: u64,
}

pub async fn healthz(State(state): State<AppState>) -> axum::Json<Health> {
    let info = state.sandbox.info();
    let limits = state.sandbox.limits();
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        runtime: RuntimeHealth::new(info),
        runtimes: state.sandbox.runtimes().map(RuntimeHealth::new).collect(),
        limits: LimitsHealth {
            timeout_ms: limits.timeout.as_millis() as u64,
            fuel: limits.fuel,
            meter_all: limits.meter_all,
            memory_mb: limits.memory_mb,
            max_output_bytes: limits.max_output_bytes as u64,
            max_code_bytes: limits.max_code_bytes as u64,
            max_stdin_bytes: limits.max_stdin_bytes as u64,
            max_concurrency: limits.max_concurrency as u64,
            max_queue: limits.max_queue as u64,
            scratch_mb: limits.scratch_mb,
            max_connections: state.connections.max() as u64,
            max_sessions: state.options.max_sessions as u64,
        },
        load: LoadHealth {
            running: state.sandbox.running() as u64,
            queued: state.sandbox.queued() as u64,
            connections: state.connections.open() as u64,
            connections_refused: state.connections.refused(),
            mcp_sessions: state.mcp_sessions.sessions.read().await.len() as u64,
        },
        sessions: SessionsHealth {
            open: state.sessions.count() as u64,
            max: state.sessions.options().max_sessions as u64,
        },
        tools: state
            .sandbox
            .tools()
            .map(|t| t.health())
            .unwrap_or_default(),
    })
}
