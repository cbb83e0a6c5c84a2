//! One upstream MCP server, kept connected by a supervisor task: it starts the child (or
//! opens the HTTP session), lists the tools, lists them again on
//! `notifications/tools/list_changed`, and when the connection ends (the child died, the
//! HTTP server went away) reconnects with exponential backoff. What it knows is published
//! as a [`Snapshot`] that calls read without waiting on the supervisor.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, Tool};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, watch};

use super::config::{ServerConfig, Transport};

/// How long connecting and the first listing may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff between reconnection attempts: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE_FOR: Duration = Duration::from_secs(30);
/// Largest JSON answer read from an HTTP upstream.
const MAX_HTTP_RESPONSE: usize = 32 << 20;
/// A child's stderr line is logged up to this many bytes.
const MAX_LOG_LINE: usize = 2048;
/// Variables of this server's environment a stdio child inherits (the config's `env` is
/// added): enough to find and run the program, nothing that could hold a secret.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// Where an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The first attempt has not finished.
    Starting,
    /// Connected; its tools are listed.
    Ready,
    /// Not connected; retrying after a backoff.
    Failed,
}

/// What is known of an upstream right now.
#[derive(Clone)]
pub struct Snapshot {
    pub status: Status,
    /// Why it is not ready (for `/healthz` and the log; never the config's secrets).
    pub error: Option<String>,
    pub tools: Arc<Vec<Tool>>,
    pub peer: Option<Peer<RoleClient>>,
    /// Connections made since start (1 after the first success).
    pub connections: u64,
    pub since: Instant,
}

/// An upstream and its supervisor's latest news.
pub struct Upstream {
    pub config: ServerConfig,
    state: RwLock<Snapshot>,
    /// Counts the changes of every upstream's state: start-up waits on it, and MCP
    /// sessions tell their clients the tool list changed.
    changed: watch::Sender<u64>,
}

impl Upstream {
    pub fn new(config: ServerConfig, changed: watch::Sender<u64>) -> Arc<Upstream> {
        Arc::new(Upstream {
            config,
            state: RwLock::new(Snapshot {
                status: Status::Starting,
                error: None,
                tools: Arc::new(Vec::new()),
                peer: None,
                connections: 0,
                since: Instant::now(),
            }),
            changed,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Apply `update`; only a change someone can see (state, error, tools, connection)
    /// counts as one: a server that keeps failing the same way does not make every MCP
    /// client list the tools again at each retry.
    fn publish(&self, update: impl FnOnce(&mut Snapshot)) {
        let changed = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let before = (
                state.status,
                state.error.clone(),
                state.tools.clone(),
                state.connections,
            );
            update(&mut state);
            let changed = before.0 != state.status
                || before.1 != state.error
                || *before.2 != *state.tools
                || before.3 != state.connections;
            if changed {
                state.since = Instant::now();
            }
            changed
        };
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Keep the upstream connected until the process ends.
    pub async fn supervise(self: Arc<Self>) {
        let name = self.config.name.clone();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let started = Instant::now();
            let relist = Arc::new(Notify::new());
            let handler = Listener {
                relist: relist.clone(),
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(handler)).await {
                Ok(Ok(service)) => {
                    let why = self.serve(service, relist).await;
                    tracing::warn!(server = %name, "tool server disconnected: {why}");
                    self.publish(|s| {
                        s.status = Status::Failed;
                        s.error = Some(why);
                        s.peer = None;
                        s.tools = Arc::new(Vec::new());
                    });
                }
                Ok(Err(why)) => {
                    tracing::warn!(server = %name, "tool server failed to start: {why}");
                    self.publish(|s| {
                        s.status = Status::Failed;
                        s.error = Some(why);
                    });
                }
                Err(_) => {
                    let why = format!("did not answer within {} s", CONNECT_TIMEOUT.as_secs());
                    tracing::warn!(server = %name, "tool server failed to start: {why}");
                    self.publish(|s| {
                        s.status = Status::Failed;
                        s.error = Some(why);
                    });
                }
            }
            if started.elapsed() >= STABLE_FOR {
                backoff = BACKOFF_FIRST;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connect and list the tools; the error is a one-line reason.
    async fn connect(
        &self,
        handler: Listener,
    ) -> Result<RunningService<RoleClient, Listener>, String> {
        let service = match &self.config.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).env_clear().kill_on_drop(true);
                for key in INHERITED_ENV {
                    if let Some(value) = std::env::var_os(key) {
                        cmd.env(key, value);
                    }
                }
                cmd.envs(env);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|err| format!("failed to start {command:?}: {err}"))?;
                if let Some(stderr) = stderr {
                    tokio::spawn(log_stderr(self.config.name.clone(), stderr));
                }
                handler
                    .serve(transport)
                    .await
                    .map_err(|err| format!("initialization failed: {err}"))?
            }
            Transport::Http { url, headers } => {
                let mut custom = HashMap::new();
                for (name, value) in headers {
                    let name = axum::http::HeaderName::try_from(name.as_str())
                        .map_err(|_| format!("invalid header name {name:?}"))?;
                    // The value is a secret: the error does not repeat it.
                    let value = axum::http::HeaderValue::try_from(value.as_str())
                        .map_err(|_| format!("invalid value for the header {name}"))?;
                    custom.insert(name, value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom)
                    .max_json_response_size(MAX_HTTP_RESPONSE)
                    .max_sse_event_size(MAX_HTTP_RESPONSE);
                let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
                handler
                    .serve(transport)
                    .await
                    .map_err(|err| format!("initialization failed: {err}"))?
            }
        };
        let tools = list(service.peer(), &self.config).await?;
        let count = tools.len();
        self.publish(|s| {
            s.status = Status::Ready;
            s.error = None;
            s.tools = Arc::new(tools);
            s.peer = Some(service.peer().clone());
            s.connections += 1;
        });
        tracing::info!(server = %self.config.name, tools = count, endpoint = %self.config.endpoint(), "tool server ready");
        Ok(service)
    }

    /// Serve a connection until it ends, listing the tools again when they change.
    async fn serve(
        &self,
        service: RunningService<RoleClient, Listener>,
        relist: Arc<Notify>,
    ) -> String {
        let peer = service.peer().clone();
        let mut closed = std::pin::pin!(service.waiting());
        loop {
            tokio::select! {
                quit = &mut closed => {
                    return match quit {
                        Ok(reason) => format!("connection ended ({reason:?})"),
                        Err(err) => format!("connection task failed: {err}"),
                    };
                }
                () = relist.notified() => {
                    match list(&peer, &self.config).await {
                        Ok(tools) => {
                            tracing::info!(server = %self.config.name, tools = tools.len(), "tool list changed");
                            self.publish(|s| s.tools = Arc::new(tools));
                        }
                        Err(err) => tracing::warn!(server = %self.config.name, "listing the changed tools failed: {err}"),
                    }
                }
            }
        }
    }
}

/// Every tool of `peer` the config permits.
async fn list(peer: &Peer<RoleClient>, config: &ServerConfig) -> Result<Vec<Tool>, String> {
    let tools = peer
        .list_all_tools()
        .await
        .map_err(|err| format!("tools/list failed: {err}"))?;
    Ok(tools
        .into_iter()
        .filter(|tool| config.permits(&tool.name))
        .collect())
}

/// Log a child's stderr, line by line, under its server's name.
async fn log_stderr(server: String, stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LOG_LINE)]);
        tracing::info!(server = %server, "upstream stderr: {}", text.trim_end());
    }
}

/// The client side's handler: this server declares no client capabilities (no sampling,
/// roots or elicitation to offer an upstream) and only listens for tool-list changes.
#[derive(Clone)]
pub struct Listener {
    relist: Arc<Notify>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.relist.notify_one();
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("omcp-sandbox", env!("CARGO_PKG_VERSION")),
        )
    }
}
