//! Code mode: the tools of upstream MCP servers, as a Python library the guest calls.
//!
//! - [`config`]: `--tools-config FILE`, the `mcpServers` format desktop clients use.
//! - [`upstream`]: one supervised connection per server (rmcp's client side): started,
//!   listed, relisted on `tools/list_changed`, restarted with backoff when it fails.
//! - [`python`]: each tool as a Python function (identifiers, annotations, docstrings).
//! - [`door`]: one run's side of the guest's door: the JSON frames, the run's bounds
//!   (calls, time per call, bytes of results) and the record of its calls.
//!
//! The [`Toolbox`] ties them together: its [`Catalog`] is what the guest, the MCP tool
//! description and `GET /tools` see, and [`Toolbox::call`] checks a call's arguments
//! against the tool's schema on this side before anything is forwarded.
//!
//! A tool runs with this server's authority, not the guest's: the defaults configure none.

pub mod config;
pub mod door;
pub mod python;
pub mod upstream;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ContentBlock};
use serde::Serialize;
use serde_json::{Map, Value, json};

pub use config::{ConfigError, ServerConfig};
pub use door::Door;
use python::Function;
use upstream::{Status, Upstream};

/// The configured upstreams and what the guest sees of them.
pub struct Toolbox {
    upstreams: Vec<Arc<Upstream>>,
    /// Bumped on every change of an upstream's state (see [`Toolbox::subscribe`]).
    changed: tokio::sync::watch::Sender<u64>,
    /// The catalog and the upstreams' `since` stamps it was built from.
    cache: Mutex<Option<(Vec<Instant>, Arc<Catalog>)>>,
}

/// Why a call failed, in words the guest may see: the tool's own message, or what this
/// side refused. Transport details go to the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The tool ran and reported an error (`isError`), or the upstream refused the call.
    ToolError,
    /// The arguments do not match the tool's input schema (checked here).
    InvalidArguments,
    /// No such server or tool (or the operator's allow/deny list hides it).
    UnknownTool,
    /// The server is not connected (starting, failed, restarting) or the call was lost.
    Unavailable,
    /// The call took longer than the run's time per call.
    Timeout,
    /// A bound of the run: too many calls, or results over the byte budget.
    Limit,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ToolError => "tool_error",
            FailureKind::InvalidArguments => "invalid_arguments",
            FailureKind::UnknownTool => "unknown_tool",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Timeout => "timeout",
            FailureKind::Limit => "limit",
        }
    }
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// Every server and tool as the guest and clients see them, built from the upstreams'
/// latest listings.
pub struct Catalog {
    pub servers: Vec<ServerEntry>,
}

pub struct ServerEntry {
    pub name: String,
    pub py_name: String,
    pub status: Status,
    pub error: Option<String>,
    pub tools: Vec<ToolEntry>,
}

pub struct ToolEntry {
    pub name: String,
    pub function: Function,
    /// `None` when the schema cannot be compiled: the call is refused, with why.
    validator: Result<Arc<jsonschema::Validator>, String>,
}

/// One upstream in `/healthz`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ServerHealth {
    pub name: String,
    /// "starting", "ready" or "failed" (retrying with backoff).
    pub status: String,
    /// Tools the guest can call.
    pub tools: usize,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times it connected since start (more than 1: it was restarted).
    pub connections: u64,
}

impl Toolbox {
    /// Start a supervisor per server (inside a tokio runtime) and wait, up to `wait`, until
    /// each has connected or failed once, so the first runs see the tools.
    pub async fn start(configs: Vec<ServerConfig>, wait: Duration) -> Arc<Toolbox> {
        let (changed, mut seen) = tokio::sync::watch::channel(0u64);
        let upstreams: Vec<Arc<Upstream>> = configs
            .into_iter()
            .map(|config| Upstream::new(config, changed.clone()))
            .collect();
        for upstream in &upstreams {
            tokio::spawn(upstream.clone().supervise());
        }
        let toolbox = Arc::new(Toolbox {
            upstreams,
            changed,
            cache: Mutex::new(None),
        });
        let deadline = tokio::time::Instant::now() + wait;
        while toolbox
            .upstreams
            .iter()
            .any(|u| u.snapshot().status == Status::Starting)
        {
            if !matches!(
                tokio::time::timeout_at(deadline, seen.changed()).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
        toolbox
    }

    /// Changes whenever an upstream connects, fails or lists different tools: what a
    /// client was told of the tools may be out of date.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn health(&self) -> Vec<ServerHealth> {
        self.upstreams
            .iter()
            .map(|u| {
                let s = u.snapshot();
                ServerHealth {
                    name: u.config.name.clone(),
                    status: status_word(s.status).into(),
                    tools: s.tools.len(),
                    error: s.error,
                    connections: s.connections,
                }
            })
            .collect()
    }

    /// The catalog, rebuilt only when an upstream's state changed since the last one.
    pub fn catalog(&self) -> Arc<Catalog> {
        let snapshots: Vec<_> = self.upstreams.iter().map(|u| u.snapshot()).collect();
        let stamps: Vec<Instant> = snapshots.iter().map(|s| s.since).collect();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built, catalog)) = cache.as_ref()
            && *built == stamps
        {
            return catalog.clone();
        }
        let mut servers: Vec<ServerEntry> = Vec::new();
        let mut taken: Vec<String> = Vec::new();
        for (upstream, snapshot) in self.upstreams.iter().zip(&snapshots) {
            let server = &upstream.config.name;
            let py_name = python::identifier(server, &taken);
            taken.push(py_name.clone());
            let mut names: Vec<String> = Vec::new();
            let tools = snapshot
                .tools
                .iter()
                .map(|tool| {
                    let py = python::identifier(&tool.name, &names);
                    names.push(py.clone());
                    let output = tool.output_schema.as_deref();
                    let function = Function::new(
                        py,
                        &tool.name,
                        server,
                        tool.description.as_deref(),
                        &tool.input_schema,
                        output,
                    );
                    let schema = Value::Object((*tool.input_schema).clone());
                    let validator = jsonschema::options()
                        .build(&schema)
                        .map(Arc::new)
                        .map_err(|err| format!("its input schema is not valid: {err}"));
                    ToolEntry {
                        name: tool.name.to_string(),
                        function,
                        validator,
                    }
                })
                .collect();
            servers.push(ServerEntry {
                name: server.clone(),
                py_name,
                status: snapshot.status,
                error: snapshot.error.clone(),
                tools,
            });
        }
        let catalog = Arc::new(Catalog { servers });
        *cache = Some((stamps, catalog.clone()));
        catalog
    }

    /// Call `tool` of `server` with `args`, checked against its schema first, waiting at
    /// most `timeout`: the tool's `structuredContent`, else its content as one value (see
    /// [`content_value`]). Dropping the future cancels the call upstream
    /// (`notifications/cancelled`).
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let Some(upstream) = self.upstreams.iter().find(|u| u.config.name == server) else {
            return Err(Failure::new(
                FailureKind::UnknownTool,
                format!("no tool server is named {}", quoted(server)),
            ));
        };
        let catalog = self.catalog();
        let entry = catalog
            .servers
            .iter()
            .find(|s| s.name == server)
            .and_then(|s| s.tools.iter().find(|t| t.name == tool));
        let snapshot = upstream.snapshot();
        let (Some(entry), Some(peer)) = (entry, snapshot.peer) else {
            if snapshot.status != Status::Ready {
                return Err(Failure::new(
                    FailureKind::Unavailable,
                    format!(
                        "the tool server {} is {}",
                        quoted(server),
                        status_word(snapshot.status)
                    ),
                ));
            }
            return Err(Failure::new(
                FailureKind::UnknownTool,
                format!("the server {} has no tool {}", quoted(server), quoted(tool)),
            ));
        };
        let Value::Object(arguments) = args else {
            return Err(Failure::new(
                FailureKind::InvalidArguments,
                "arguments must be an object",
            ));
        };
        check_arguments(entry, &arguments)?;

        let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        // With traces on, the upstream hears this call's span as its caller (`_meta`, as
        // MCP's SEP-414 puts it), so its own trace joins the request's.
        if let Some((traceparent, tracestate)) = crate::telemetry::outgoing() {
            let mut meta = rmcp::model::RequestMetaObject::new();
            meta.set_traceparent(traceparent);
            if let Some(tracestate) = tracestate {
                meta.set_tracestate(tracestate);
            }
            params.meta = Some(meta);
        }
        let result = match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    format!("the tool did not answer within {} ms", timeout.as_millis()),
                ));
            }
            Ok(Err(rmcp::ServiceError::McpError(error))) => {
                return Err(Failure::new(
                    FailureKind::ToolError,
                    clip(&error.message, MAX_MESSAGE),
                ));
            }
            Ok(Err(err)) => {
                tracing::warn!(server, tool, "tool call failed: {err}");
                return Err(Failure::new(
                    FailureKind::Unavailable,
                    format!("the tool server {} did not answer the call", quoted(server)),
                ));
            }
            Ok(Ok(result)) => result,
        };
        if result.is_error == Some(true) {
            let text = match content_value(&result.content) {
                Value::String(text) => text,
                other => other.to_string(),
            };
            return Err(Failure::new(
                FailureKind::ToolError,
                clip(&text, MAX_MESSAGE),
            ));
        }
        Ok(match result.structured_content {
            Some(value) => value,
            None => content_value(&result.content),
        })
    }

    /// The `list` frame's answer: every server with its functions' source.
    pub fn guest_listing(&self) -> Value {
        let catalog = self.catalog();
        let servers: Vec<Value> = catalog
            .servers
            .iter()
            .map(|s| {
                let functions: Vec<Value> = s
                    .tools
                    .iter()
                    .map(|t| {
                        json!({
                            "py_name": t.function.py_name,
                            "source": t.function.source(&s.name, &t.name, true),
                        })
                    })
                    .collect();
                json!({
                    "name": s.name,
                    "py_name": s.py_name,
                    "status": status_word(s.status),
                    "error": s.error,
                    "doc": format!("The tools of the MCP server {}.", quoted(&s.name)),
                    "functions": functions,
                })
            })
            .collect();
        json!({ "ok": true, "servers": servers })
    }

    /// The API the model codes against, as a Python stub file (`...` bodies).
    pub fn stubs(&self) -> String {
        let catalog = self.catalog();
        let mut out = String::from(
            "# import tools  -- the tools of upstream MCP servers, as functions.\n\
             # A call returns the tool's structured content (else its text) and raises\n\
             # tools.ToolError(kind, message) if it fails.\n",
        );
        if catalog.servers.is_empty() {
            out.push_str("# No tool servers are configured on this server.\n");
        }
        for server in &catalog.servers {
            out.push_str(&format!(
                "\n# --- tools.{} (server {}, {}) ---\n",
                server.py_name,
                quoted(&server.name),
                status_word(server.status)
            ));
            if let Some(error) = &server.error {
                out.push_str(&format!("# unavailable: {}\n", one_line(error)));
            }
            out.push_str(&format!("class {}:\n", server.py_name));
            if server.tools.is_empty() {
                out.push_str("    pass  # no tools\n");
            }
            for tool in &server.tools {
                for line in tool
                    .function
                    .source(&server.name, &tool.name, false)
                    .lines()
                {
                    out.push_str("    ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// One line per tool, `tools.server.fn(sig)`: for `run_python`'s description.
    pub fn summary(&self, max_chars: usize) -> String {
        let catalog = self.catalog();
        let mut out = String::new();
        for server in &catalog.servers {
            for tool in &server.tools {
                let description = tool.function.doc.lines().next().unwrap_or("");
                let line = format!(
                    "- tools.{}.{}: {}\n",
                    server.py_name,
                    tool.function.signature(),
                    clip(description, 160)
                );
                if out.len() + line.len() > max_chars {
                    out.push_str("- ... (the rest: call list_tools)\n");
                    return out;
                }
                out.push_str(&line);
            }
            if server.status != Status::Ready {
                out.push_str(&format!(
                    "- tools.{}: server {} is {}\n",
                    server.py_name,
                    quoted(&server.name),
                    status_word(server.status)
                ));
            }
        }
        out
    }
}

/// Longest tool error message passed on to the guest.
const MAX_MESSAGE: usize = 4096;
/// Validation errors reported per call.
const MAX_SCHEMA_ERRORS: usize = 5;

fn check_arguments(entry: &ToolEntry, args: &Map<String, Value>) -> Result<(), Failure> {
    let validator = entry
        .validator
        .as_ref()
        .map_err(|why| Failure::new(FailureKind::InvalidArguments, why.clone()))?;
    let instance = Value::Object(args.clone());
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .take(MAX_SCHEMA_ERRORS)
        .map(|err| {
            let at = err.instance_path().to_string();
            let at = if at.is_empty() {
                "arguments".to_string()
            } else {
                at
            };
            clip(&format!("{at}: {err}"), 300)
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        FailureKind::InvalidArguments,
        format!(
            "arguments do not match the input schema of {}: {}",
            quoted(&entry.name),
            errors.join("; ")
        ),
    ))
}

/// A result's content as one value: the text when every block is text (joined by
/// newlines), otherwise a list with text blocks as strings and other blocks (images,
/// resources) as their JSON.
pub fn content_value(content: &[ContentBlock]) -> Value {
    let texts: Option<Vec<&str>> = content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect();
    match texts {
        Some(texts) => Value::String(texts.join("\n")),
        None => Value::Array(
            content
                .iter()
                .map(|block| match block {
                    ContentBlock::Text(text) => Value::String(text.text.clone()),
                    other => serde_json::to_value(other).unwrap_or(Value::Null),
                })
                .collect(),
        ),
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Starting => "starting",
        Status::Ready => "ready",
        Status::Failed => "failed",
    }
}

fn quoted(name: &str) -> String {
    python::py_str(&clip(name, 200))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` bytes of `text`, cut on a character boundary.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
