//! The MCP face: one tool, `run_python`, served by [`SandboxTools`]. The handler knows
//! nothing of transports; `commands::mcp` serves it over stdio and `http` over streamable
//! HTTP at `/mcp`, both against the same [`Sandbox`] (and so the same concurrency cap).
//!
//! Errors follow the spec: a Python exception or a limit is a tool result with
//! `isError: true` (the model can read the traceback and fix its code); malformed arguments
//! and refusals before running (busy, too large) are JSON-RPC errors.

pub mod frame;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, ErrorCode, Implementation, JsonObject, ProgressNotificationParam,
    RequestMetaObject, ServerCapabilities, ServerConfig,
};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use tokio_util::sync::CancellationToken;

use crate::api::{RunPythonArgs, RunResponse};
use crate::sandbox::{Outcome, RunError, Sandbox, Stop};

/// JSON-RPC error code for "the server is at capacity, retry" (implementation-defined range).
const BUSY: ErrorCode = ErrorCode(-32000);

/// Progress notifications start once a run has taken this long.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// The tool's description: which runtimes this server has (the default first), what each
/// can import, and how results and figures come back. Built once from the loaded runtimes.
fn tool_description(sandbox: &Sandbox) -> String {
    let mut text = String::from(
        "Run Python code in a fresh, isolated interpreter (CPython compiled to WebAssembly) and \
         return what it printed and the value of its last expression, like a notebook cell.\n\n\
         Every call starts from a pristine interpreter: variables, imports and files from \
         earlier calls are gone, so each call must be self-contained. Not available: network \
         access, host files, subprocesses, threads, pip.\n\nRuntimes (`runtime` argument):\n",
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
                 as PNG images. {} is a writable scratch directory for this call only.\n",
                listed.join(", "),
                info.scratch.unwrap_or("/tmp")
            ));
        }
    }
    text.push_str(
        "\nExamples:\n  {\"code\": \"print('hi')\\n2 + 2\"}  ->  output \"hi\\n\", result 4\n  \
         {\"code\": \"import statistics\\nstatistics.mean([1, 2, 3, 4])\"}  ->  result 2.5\n  \
         {\"code\": \"name = input()\\nf'hello {name}'\", \"stdin\": \"Ada\"}  ->  result \
         \"hello Ada\"\n\nThe result is JSON when the value is a str, int, float, bool, None, \
         or a list/dict of those, otherwise its repr() as a string. An uncaught exception \
         returns its traceback in `error` (isError true). `seed` makes random numbers and \
         clocks deterministic. Runs are bounded in time, instructions, memory and output; \
         `stopped` says which limit ended a run early.",
    );
    text
}

/// The MCP tool handler.
#[derive(Clone)]
pub struct SandboxTools {
    sandbox: Arc<Sandbox>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl SandboxTools {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        let mut tool_router = Self::tool_router();
        if let Some(route) = tool_router.map.get_mut("run_python") {
            route.attr.description = Some(tool_description(&sandbox).into());
            // The type says "a string"; this server accepts only the runtimes it loaded.
            let mut schema = (*route.attr.input_schema).clone();
            if let Some(serde_json::Value::Object(runtime)) = schema
                .get_mut("properties")
                .and_then(|p| p.get_mut("runtime"))
            {
                let mut names: Vec<serde_json::Value> =
                    sandbox.runtimes().map(|r| r.name.into()).collect();
                names.push(serde_json::Value::Null);
                runtime.insert("enum".into(), names.into());
            }
            route.attr.input_schema = std::sync::Arc::new(schema);
        }
        SandboxTools {
            sandbox,
            tool_router,
        }
    }

    #[tool(
        name = "run_python",
        description = "Run Python in a fresh sandboxed interpreter (see the server's description).",
        input_schema = rmcp::handler::server::common::schema_for_input::<RunPythonArgs>()
            .expect("RunPythonArgs has a valid input schema"),
        output_schema = rmcp::handler::server::common::schema_for_output::<RunResponse>(),
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
        // Decoded here rather than through `Parameters<T>`, which turns malformed arguments
        // into an `isError` result: a call that does not match the input schema is a
        // protocol error (-32602) that the client should see as such.
        let args: RunPythonArgs = serde_json::from_value(serde_json::Value::Object(arguments))
            .map_err(|err| {
                ErrorData::invalid_params(format!("invalid arguments for run_python: {err}"), None)
            })?;
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
        let progress_token = meta.get_progress_token();
        let started = Instant::now();
        let total_secs = job.limits.timeout.as_secs_f64();

        let run = self.sandbox.run(&job);
        tokio::pin!(run);
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_AFTER, PROGRESS_AFTER);
        let mut reported = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome.map_err(refusal)?,
                // Dropping `run` cancels the guest at once and frees its slot.
                () = cancelled.cancelled() => {
                    return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "run cancelled by the client", None));
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
        Ok(tool_result(outcome))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SandboxTools {
    fn get_info(&self) -> ServerConfig {
        let limits = self.sandbox.limits();
        let instructions = format!(
            "This server runs Python code in a sandbox through the `run_python` tool: {}. \
             No network, no access to host files, no subprocesses or threads. Every call gets \
             a fresh interpreter: nothing persists between calls, so include all imports and \
             definitions in each call. The value of the last expression is returned as \
             `result` (like a notebook cell); printed text is in `output`; matplotlib \
             figures come back as images. Limits per call: {} ms wall-clock, {} MiB of \
             memory, {} bytes of output; {}.",
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
            limits.timeout.as_millis(),
            limits.memory_mb,
            limits.max_output_bytes,
            limits.fuel_policy()
        );
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("omcp-sandbox", env!("CARGO_PKG_VERSION"))
                    .with_title("omcp-sandbox: sandboxed Python"),
            )
            .with_instructions(instructions)
    }
}

/// A refusal before running is a JSON-RPC error, typed so a client can tell busy from bad.
fn refusal(err: RunError) -> ErrorData {
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
        RunError::Internal(_) => {
            tracing::error!("{err:#}");
            ErrorData::internal_error(err.to_string(), None)
        }
    }
}

/// Structured content (the same object `/run` returns) plus a text block a model can read:
/// the output, then the value or the traceback / stop reason.
fn tool_result(outcome: Outcome) -> CallToolResult {
    let failed = outcome.error.is_some()
        || match outcome.stopped {
            Some(Stop::Exit) => outcome.exit_code != Some(0),
            Some(_) => true,
            None => false,
        };
    let mut text = String::new();
    if !outcome.output.is_empty() {
        text.push_str(&outcome.output);
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
        text.push_str(&format!("Result: {repr}"));
    } else if let Some(Stop::Exit) = outcome.stopped {
        text.push_str(&format!(
            "Exited with status {}",
            outcome.exit_code.unwrap_or(0)
        ));
    } else if text.is_empty() {
        text.push_str("(no output and no value)");
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
    let images: Vec<ContentBlock> = outcome
        .images
        .iter()
        .map(|image| ContentBlock::image(image.data.clone(), image.mime_type.clone()))
        .collect();
    let mut response = RunResponse::from(outcome);
    for image in &mut response.images {
        image.data = String::new();
    }
    let structured = serde_json::to_value(response).expect("RunResponse serializes");
    let mut result = if failed {
        CallToolResult::error(vec![])
    } else {
        CallToolResult::success(vec![])
    };
    result.content = vec![ContentBlock::text(text)];
    result.content.extend(images);
    result.structured_content = Some(structured);
    result
}
