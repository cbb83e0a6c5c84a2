//! The MCP face, served by [`SandboxTools`]: `run_python` (stateless, or a turn of a
//! session), the session tools (`create_session`, `close_session`, `fork_session`,
//! `upload_file`, `list_files`, in [`sessions`]) and session files as resources
//! (`omcp://sessions/{id}/files/{path}`). The handler knows nothing of transports;
//! `commands::mcp` serves it over stdio and `http` over streamable HTTP at `/mcp`, both
//! against the same [`Sandbox`] and [`Sessions`] (and so the same caps).
//!
//! Errors follow the spec: a Python exception, a limit, or a refusal the model can act on
//! (an unknown session, a busy one, a full workspace, a bad path) is a tool result with
//! `isError: true` and a text that starts with its type (`[session_busy] ...`); malformed
//! arguments and refusals before running (busy server, too large) are JSON-RPC errors.

mod code_mode;
pub mod frame;
mod sessions;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
    ReadResourceResponse, RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::api::{RunPythonArgs, RunResponse, SessionRunResponse};
use crate::outcome::{Display, Piece};
use crate::sandbox::{Outcome, RunError, Sandbox, Stop};
use crate::sessions::Sessions;

/// JSON-RPC error code for "the server is at capacity, retry" (implementation-defined range).
const BUSY: ErrorCode = ErrorCode(-32000);

/// Progress notifications start once a run has taken this long.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// `run_python`'s description: which runtimes this server has (the default first), what
/// each can import, stateless runs and sessions, files, and how results come back. Built
/// once from the loaded runtimes.
fn tool_description(sandbox: &Sandbox) -> String {
    let mut text = String::from(
        "Run Python code in an isolated interpreter (CPython compiled to WebAssembly) and \
         return what it printed and the value of its last expression, like a notebook cell.\n\n\
         By default (no `session_id`) every call starts from a pristine interpreter: \
         variables, imports and files from earlier calls are gone, so each call must be \
         self-contained. To keep state across calls, call `create_session` first and pass \
         its `session_id` here: variables, imports, functions and files in /workspace then \
         carry over from call to call (a call stopped by a limit is rolled back, and the \
         session goes on from its state before that call). Not available: network access, \
         host files, subprocesses, threads, pip.\n\n\
         Files: the working directory is /workspace (writable, like /tmp). `files` puts \
         files there before the code runs. Files the code creates or changes come back: \
         without a session as embedded resources (up to a size budget); in a session as \
         resource links (omcp://sessions/{session_id}/files/{path}) to read with \
         resources/read.\n\nRuntimes (`runtime` argument):\n",
    );
    for (i, info) in sandbox.runtimes().enumerate() {
        let default = if i == 0 { " (the default)" } else { "" };
        text.push_str(&format!(
            "- \"{}\"{default}: Python {}",
            info.name, info.python_version
        ));
        if info.packages.is_empty() {
            text.push_str(", the standard library only (no numpy/pandas).\n");
        } else {
            let listed: Vec<String> = info
                .packages
                .iter()
                .map(|(name, version)| format!("{name} {version}"))
                .collect();
            text.push_str(&format!(
                " with the standard library and: {}. numpy, pandas and matplotlib (Agg) are \
                 already imported in a fresh interpreter, so importing them is instant. \
                 matplotlib figures left open at the end (or shown with plt.show()) come back \
                 as PNG images.\n",
                listed.join(", "),
            ));
        }
    }
    text.push_str(
        "\nExamples:\n  {\"code\": \"print('hi')\\n2 + 2\"}  ->  output \"hi\\n\", result 4\n  \
         {\"code\": \"import statistics\\nstatistics.mean([1, 2, 3, 4])\"}  ->  result 2.5\n  \
         {\"code\": \"name = input()\\nf'hello {name}'\", \"stdin\": \"Ada\"}  ->  result \
         \"hello Ada\"\n  {\"code\": \"x = 41\", \"session_id\": \"<from create_session>\"}, \
         then {\"code\": \"x + 1\", \"session_id\": \"<the same>\"}  ->  result 42\n\n\
         The result is the value as data: JSON types as they are, numpy numbers as numbers, \
         arrays, DataFrames, tuples, sets, dates... as objects with a \"type\" (a DataFrame: \
         columns, index, data rows, dtypes, shape), anything else its repr(); the text shows \
         it as a notebook prints it (a DataFrame as an aligned table). display(obj, ...) \
         shows values, tables and figures in order among the printed output, as in a \
         notebook. An uncaught exception \
         returns its traceback in `error` (isError true). `seed` makes random numbers and \
         clocks deterministic (for a session, give it to create_session). Runs are bounded \
         in time, instructions, memory and output; `stopped` says which limit ended a run \
         early.",
    );
    if let Some(tools) = sandbox.tools() {
        let limits = sandbox.limits();
        text.push_str(&format!(
            "\n\nCode mode: `import tools` gives functions that call the tools of upstream MCP \
             servers this server's operator configured, so one program can call many tools, \
             loop, filter and combine their results, and return only the answer. \
             tools.<server>.<tool>(arg=...) returns the tool's structured content as data \
             (else its text) and raises tools.ToolError (with .kind) if it fails; arguments \
             are checked against the tool's schema first. A run may make {} calls of at most \
             {} ms each and receive {} bytes of results; each call is listed in the answer's \
             `tool_calls`. `list_tools` gives every signature and docstring. The functions \
             now:\n{}",
            limits.max_tool_calls,
            limits.tool_timeout.as_millis(),
            limits.max_tool_result_bytes,
            tools.summary(6000),
        ));
    }
    text
}

/// `run_python`'s output schema: the `/run` object, plus the fields a session's turn adds
/// (present only with `session_id`).
fn run_output_schema() -> Arc<JsonObject> {
    const SESSION_FIELDS: [(&str, &str); 4] = [
        (
            "session_id",
            "The session this call ran in (only with session_id).",
        ),
        (
            "turn",
            "This call's number in the session, from 1 (only with session_id).",
        ),
        (
            "rolled_back",
            "A limit or a trap stopped this call and the session is back at its state before \
             it (variables, imports; files it wrote stay). Only with session_id.",
        ),
        (
            "files_changed",
            "Files in /workspace this call created or changed, also sent as resource_link \
             content (omcp://sessions/{session_id}/files/{path}). Only with session_id.",
        ),
    ];
    let mut schema =
        (*rmcp::handler::server::common::schema_for_output::<SessionRunResponse>()).clone();
    if let Some(serde_json::Value::Array(required)) = schema.get_mut("required") {
        required.retain(|field| {
            !SESSION_FIELDS
                .iter()
                .any(|(name, _)| field.as_str() == Some(name))
        });
    }
    if let Some(serde_json::Value::Object(properties)) = schema.get_mut("properties") {
        for (name, description) in SESSION_FIELDS {
            if let Some(serde_json::Value::Object(property)) = properties.get_mut(name) {
                property.insert("description".into(), description.into());
            }
        }
    }
    Arc::new(schema)
}

/// Decode a tool's arguments. Done by hand rather than through `Parameters<T>`, which turns
/// malformed arguments into an `isError` result: a call that does not match the input
/// schema is a protocol error (-32602) that the client should see as such.
fn decode<T: serde::de::DeserializeOwned>(
    tool: &str,
    arguments: JsonObject,
) -> Result<T, ErrorData> {
    serde_json::from_value(serde_json::Value::Object(arguments)).map_err(|err| {
        ErrorData::invalid_params(format!("invalid arguments for {tool}: {err}"), None)
    })
}

/// The MCP tool handler.
#[derive(Clone)]
pub struct SandboxTools {
    sandbox: Arc<Sandbox>,
    sessions: Arc<Sessions>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl SandboxTools {
    pub fn new(sessions: Arc<Sessions>) -> Self {
        let sandbox = sessions.sandbox().clone();
        let mut tool_router = Self::tool_router() + Self::session_tool_router();
        if sandbox.tools().is_some() {
            tool_router += Self::code_mode_router();
        }
        let names: Vec<serde_json::Value> = sandbox
            .runtimes()
            .map(|r| r.name.into())
            .chain([serde_json::Value::Null])
            .collect();
        if let Some(route) = tool_router.map.get_mut("run_python") {
            route.attr.description = Some(tool_description(&sandbox).into());
        }
        // The type says "a string"; this server accepts only the runtimes it loaded.
        for tool in ["run_python", "create_session"] {
            let Some(route) = tool_router.map.get_mut(tool) else {
                continue;
            };
            let mut schema = (*route.attr.input_schema).clone();
            if let Some(serde_json::Value::Object(runtime)) = schema
                .get_mut("properties")
                .and_then(|p| p.get_mut("runtime"))
            {
                runtime.insert("enum".into(), names.clone().into());
            }
            route.attr.input_schema = Arc::new(schema);
        }
        SandboxTools {
            sandbox,
            sessions,
            tool_router,
        }
    }

    #[tool(
        name = "run_python",
        description = "Run Python in a sandboxed interpreter (see the server's description).",
        input_schema = rmcp::handler::server::common::schema_for_input::<RunPythonArgs>()
            .expect("RunPythonArgs has a valid input schema"),
        output_schema = run_output_schema(),
        annotations(
            title = "Run Python (sandboxed)",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn run_python(
        &self,
        arguments: JsonObject,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancelled: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        let args: RunPythonArgs = decode("run_python", arguments)?;
        if let Some(id) = args.session_id.clone() {
            return self.run_in_session(id, args, meta, peer, cancelled).await;
        }
        let asked = args.limits();
        let job = self
            .sandbox
            .job(
                args.code,
                args.stdin,
                &asked,
                args.runtime.as_deref(),
                args.seed,
            )
            .map_err(refusal)?;
        let job = match self.sandbox.with_files(job, args.files) {
            Ok(job) => job,
            Err(err) => return run_failure(err),
        };
        let total_secs = job.limits.timeout.as_secs_f64();
        // Dropping the run (the client cancelled) stops the guest at once and frees its slot.
        let outcome = watch(
            self.sandbox.run(&job),
            total_secs,
            &meta,
            &peer,
            &cancelled,
            "run cancelled by the client",
        )
        .await?;
        match outcome {
            Ok(outcome) => {
                crate::metrics::run_finished(crate::metrics::Face::Mcp, &outcome);
                Ok(crate::telemetry::encode().in_scope(|| stateless_result(outcome)))
            }
            Err(err) => run_failure(err),
        }
    }
}

/// Wait for `work`, sending progress notifications (when the client asked for them with a
/// progress token) while it takes long; a cancellation by the client returns at once,
/// dropping `work`.
async fn watch<F: Future>(
    work: F,
    total_secs: f64,
    meta: &RequestMetaObject,
    peer: &Peer<RoleServer>,
    cancelled: &CancellationToken,
    on_cancel: &str,
) -> Result<F::Output, ErrorData> {
    let progress_token = meta.get_progress_token();
    let started = Instant::now();
    tokio::pin!(work);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_AFTER, PROGRESS_AFTER);
    let mut reported = false;
    let output = loop {
        tokio::select! {
            output = &mut work => break output,
            () = cancelled.cancelled() => {
                return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, on_cancel.to_string(), None));
            }
            _ = ticks.tick(), if progress_token.is_some() => {
                let token = progress_token.clone().expect("guarded by the select condition");
                let elapsed = started.elapsed().as_secs_f64();
                let note = ProgressNotificationParam::new(token, elapsed.min(total_secs))
                    .with_total(total_secs)
                    .with_message(format!("running for {elapsed:.0} s"));
                reported |= peer.notify_progress(note).await.is_ok();
            }
        }
    };
    if let (true, Some(token)) = (reported, progress_token) {
        let done = ProgressNotificationParam::new(token, total_secs)
            .with_total(total_secs)
            .with_message("finished");
        let _ = peer.notify_progress(done).await;
    }
    Ok(output)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SandboxTools {
    /// Every tool call is the root of a trace (see `telemetry`): its parent is the caller's
    /// `_meta.traceparent`, else (streamable HTTP) the POST's `traceparent` header.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let known = self.tool_router.has_route(&request.name);
        let span = crate::telemetry::mcp_tool_call(known.then_some(&*request.name));
        if !span.is_disabled()
            && !crate::telemetry::adopt_parent(
                &span,
                context.meta.get_traceparent(),
                context.meta.get_tracestate(),
            )
            && let Some(parts) = context.extensions.get::<axum::http::request::Parts>()
        {
            crate::telemetry::adopt_parent_from_headers(&span, &parts.headers);
        }
        let call = ToolCallContext::new(self, request, context);
        let result = self.tool_router.call(call).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => {
                span.record("otel.status_code", "error");
                "protocol_error"
            }
        };
        span.record("omcp.outcome", outcome);
        result
    }

    fn get_info(&self) -> ServerConfig {
        let limits = self.sandbox.limits();
        let sessions = self.sessions.options();
        let instructions = format!(
            "This server runs Python code in a sandbox through the `run_python` tool: {}. \
             No network, no access to host files, no subprocesses or threads. By default \
             every call gets a fresh interpreter: nothing persists between calls, so include \
             all imports and definitions in each call. To keep state across calls (variables, \
             imports, functions, files), call `create_session` first and pass its \
             `session_id` to `run_python`; `upload_file` and `list_files` manage the \
             session's files in /workspace, `fork_session` copies a session and \
             `close_session` ends it. A session closes after {} without a call, and after {} \
             at the latest. The value of the last expression is returned as `result` (like a \
             notebook cell); printed text is in `output`; matplotlib figures come back as \
             images; files the code writes to /workspace come back as embedded resources \
             (stateless) or resource links (sessions, readable with resources/read). Limits \
             per call: {} ms wall-clock, {} MiB of memory, {} bytes of output; {}.",
            self.sandbox
                .runtimes()
                .map(|r| match r.packages.is_empty() {
                    true => format!("\"{}\" (Python {}, standard library only)", r.name, r.python_version),
                    false => format!(
                        "\"{}\" (Python {} with numpy, pandas, scipy, scikit-learn, statsmodels, matplotlib and more)",
                        r.name, r.python_version
                    ),
                })
                .collect::<Vec<_>>()
                .join(" and "),
            sessions::span(sessions.idle_timeout.as_secs()),
            sessions::span(sessions.lifetime.as_secs()),
            limits.timeout.as_millis(),
            limits.memory_mb,
            limits.max_output_bytes,
            limits.fuel_policy()
        );
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                // Code mode: run_python's description lists the upstream tools.
                .enable_tool_list_changed()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("omcp-sandbox", env!("CARGO_PKG_VERSION"))
                .with_title("omcp-sandbox: sandboxed Python"),
        )
        .with_instructions(instructions)
    }

    /// The tools, with `run_python`'s description built now: with code mode it lists the
    /// upstream tools as they are at this moment, not as they were when the session began.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        if self.sandbox.tools().is_some()
            && let Some(run) = tools.iter_mut().find(|t| t.name == "run_python")
        {
            run.description = Some(tool_description(&self.sandbox).into());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    /// With code mode, tell the client whenever an upstream connects, fails or changes its
    /// tools, so it lists them (and run_python's description) again. The watch ends with
    /// the session: the first notification that cannot be sent.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let Some(tools) = self.sandbox.tools() else {
            return;
        };
        let mut changed = tools.subscribe();
        let peer = context.peer;
        tokio::spawn(async move {
            while changed.changed().await.is_ok() {
                if peer.notify_tool_list_changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// Session files are resources, but a session's id is a private handle: listing them
    /// would give every client the ids of every session. The template says how to name one.
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::default())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            sessions::file_template(),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read_session_file(&request.uri).map(Into::into)
    }
}

/// A refusal before running is a JSON-RPC error, typed so a client can tell busy from bad.
fn refusal(err: RunError) -> ErrorData {
    match &err {
        RunError::Busy { .. } => crate::metrics::refused("busy"),
        RunError::CodeTooLarge { .. } | RunError::StdinTooLarge { .. } => {
            crate::metrics::refused("too_large")
        }
        _ => {}
    }
    match err {
        RunError::Busy { .. } => ErrorData::new(
            BUSY,
            err.to_string(),
            Some(serde_json::json!({"type": "busy"})),
        ),
        RunError::CodeTooLarge { .. } | RunError::StdinTooLarge { .. } | RunError::Limit(_) => {
            ErrorData::invalid_params(err.to_string(), None)
        }
        RunError::UnknownRuntime { ref available, .. } => ErrorData::invalid_params(
            err.to_string(),
            Some(serde_json::json!({"type": "unknown_runtime", "runtimes": available})),
        ),
        RunError::File(ref file) => ErrorData::invalid_params(
            err.to_string(),
            Some(serde_json::json!({"type": file.code()})),
        ),
        RunError::Internal(_) => {
            tracing::error!("{err:#}");
            ErrorData::internal_error(err.to_string(), None)
        }
    }
}

/// A run that did not happen: a problem with its files (a bad path, a full workspace) is
/// a tool error the model can fix; the rest are [`refusal`]s.
fn run_failure(err: RunError) -> Result<CallToolResult, ErrorData> {
    match err {
        RunError::File(file) => Ok(failure(file.code(), &file.to_string())),
        err => Err(refusal(err)),
    }
}

/// A tool result with `isError: true` whose text starts with the error's type.
fn failure(kind: &str, message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("[{kind}] {message}"))])
}

/// What a run's outcome shows: whether it failed; `lead`, the blocks of what it printed and
/// displayed, in the order it happened (empty when it displayed nothing); a text block a
/// model can read (the rest of the output, then the value or the traceback / stop reason);
/// image blocks of figures not already in `lead`; and the `/run` object for the structured
/// content.
struct Rendered {
    failed: bool,
    lead: Vec<ContentBlock>,
    text: String,
    images: Vec<ContentBlock>,
    response: RunResponse,
}

fn render(outcome: Outcome) -> Rendered {
    let failed = outcome.error.is_some()
        || match outcome.stopped {
            Some(Stop::Exit) => outcome.exit_code != Some(0),
            Some(_) => true,
            None => false,
        };
    // Output and displays interleaved as they happened: the output printed before each
    // display item, then the item (its text, or its image).
    let shown = outcome.in_order();
    let output = shown.rest;
    let mut lead = Vec::with_capacity(shown.pieces.len());
    let mut shown_images = std::collections::HashSet::new();
    for piece in &shown.pieces {
        lead.push(match piece {
            Piece::Output(text) => ContentBlock::text(*text),
            Piece::Shown(item) => display_block(item, &mut shown_images),
        });
    }
    // Figures left open at the end come after the value, as in a notebook.
    let mut images: Vec<ContentBlock> = shown
        .after
        .iter()
        .map(|item| display_block(item, &mut shown_images))
        .collect();
    let mut text = String::new();
    if !output.is_empty() {
        text.push_str(output);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if !outcome.stderr.is_empty() {
        text.push_str("[stderr]\n");
        text.push_str(&outcome.stderr);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    if let Some(error) = &outcome.error {
        text.push_str(error);
    } else if let Some(repr) = &outcome.result_repr {
        // A table or a multi-line array starts on a line of its own, its columns aligned.
        let gap = if repr.contains('\n') { "\n" } else { " " };
        text.push_str(&format!("Result:{gap}{repr}"));
    } else if let Some(Stop::Exit) = outcome.stopped {
        text.push_str(&format!(
            "Exited with status {}",
            outcome.exit_code.unwrap_or(0)
        ));
    } else if text.is_empty() {
        text.push_str(if lead.is_empty() {
            "(no output and no value)"
        } else {
            "(no value)"
        });
    }
    if outcome.truncated {
        text.push_str("\n[output truncated at the server's limit]");
    }
    if !outcome.images.is_empty() {
        text.push_str(&format!(
            "\n[{} figure(s) returned as image content]",
            outcome.images.len()
        ));
    }
    for omitted in &outcome.images_omitted {
        text.push_str(&format!("\n[figure not returned: {omitted}]"));
    }
    // Images travel as `image` content blocks; in the structured copy they would repeat
    // megabytes of base64 that the model cannot look at as a picture.
    images.extend(
        outcome
            .images
            .iter()
            .filter(|image| !shown_images.contains(image.data.as_str()))
            .map(|image| ContentBlock::image(image.data.clone(), image.mime_type.clone())),
    );
    let mut response = RunResponse::from(outcome);
    for image in &mut response.images {
        image.data = String::new();
    }
    for item in &mut response.displays {
        if let Display::Image { image, .. } = item {
            image.data = String::new();
        }
    }
    Rendered {
        failed,
        lead,
        text,
        images,
        response,
    }
}

/// A display item as a content block: a value's text, a figure's image, or why an item is
/// not there. `shown` collects the images already sent.
fn display_block<'a>(
    item: &'a Display,
    shown: &mut std::collections::HashSet<&'a str>,
) -> ContentBlock {
    match item {
        Display::Value { text, .. } => ContentBlock::text(text),
        Display::Image { image, .. } => {
            shown.insert(image.data.as_str());
            ContentBlock::image(image.data.clone(), image.mime_type.clone())
        }
        Display::Omitted { reason, .. } => ContentBlock::text(format!("[left out: {reason}]")),
    }
}

/// A result of `failed`'s kind: `lead`, the text, then `blocks`, and the structured copy.
fn assemble(
    failed: bool,
    lead: Vec<ContentBlock>,
    text: String,
    blocks: Vec<ContentBlock>,
    structured: serde_json::Value,
) -> CallToolResult {
    let mut result = if failed {
        CallToolResult::error(vec![])
    } else {
        CallToolResult::success(vec![])
    };
    result.content = lead;
    result.content.push(ContentBlock::text(text));
    result.content.extend(blocks);
    result.structured_content = Some(structured);
    result
}

/// A stateless run's result: the files it created or changed travel as embedded
/// resources (`omcp://run/files/{path}`: its workspace is gone once it returns), the ones
/// over the byte budget are only named in the text.
fn stateless_result(outcome: Outcome) -> CallToolResult {
    let Rendered {
        failed,
        lead,
        mut text,
        images: mut blocks,
        response,
    } = render(outcome);
    let mut returned = Vec::new();
    let mut omitted = Vec::new();
    for file in &response.files {
        match (&file.content, file.omitted) {
            (Some(content), false) => {
                blocks.push(sessions::embedded_file(file, content));
                returned.push(file.path.as_str());
            }
            _ => omitted.push(format!("{} ({} bytes)", file.path, file.size)),
        }
    }
    if !returned.is_empty() {
        text.push_str(&format!(
            "\n[{} file(s) created or changed in /workspace, returned as embedded resources \
             (the workspace of a call without session_id is gone afterwards): {}]",
            returned.len(),
            returned.join(", ")
        ));
    }
    if !omitted.is_empty() {
        text.push_str(&format!(
            "\n[{} file(s) created or changed but not returned (past the server's byte budget \
             for returned files; in a session, files stay and can be read one by one): {}]",
            omitted.len(),
            omitted.join(", ")
        ));
    }
    let structured = serde_json::to_value(&response).expect("RunResponse serializes");
    assemble(failed, lead, text, blocks, structured)
}
