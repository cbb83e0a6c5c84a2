//! OpenTelemetry traces: one trace per request (an HTTP request, an MCP tool call, a CLI
//! run), with a span for each step of the request's path: admission and the queue,
//! instantiation, the guest's run, each tool call it makes, session resume, checkpoint and
//! suspend, and the encoding of the answer.
//!
//! The spans are ordinary `tracing` spans under one target ([`TARGET`]); a
//! `tracing-opentelemetry` layer turns them into OpenTelemetry spans, exported as OTLP over
//! HTTP/protobuf by a batch processor. Unless the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, none of it exists: the subscriber is the
//! plain log one, whose filter turns the target off, so each `info_span!` is a disabled
//! callsite (a cached check, no allocation), and the router has no trace layer.
//!
//! The rest of the standard variables are the SDK's: `OTEL_SERVICE_NAME` (default
//! `omcp-sandbox`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS` and timeouts; `OTEL_SDK_DISABLED=true` and
//! `OTEL_TRACES_EXPORTER=none` turn it off (the SDK does not read those two itself).
//!
//! A W3C `traceparent` (and `tracestate`) from the caller becomes the parent of the
//! request's root span: the HTTP header, or an MCP request's `_meta.traceparent`. One that
//! does not parse starts a new trace, never an error.
//!
//! What a span may carry: routes (templates, not paths), methods, statuses, runtimes, how
//! a run ended, tool server and tool names the server knows, byte and page counts, a
//! session id's redacted prefix. Never code, stdin, output, file contents, tool arguments
//! or results, tokens or whole session ids: a trace goes to another system, often with
//! wider access than the sandbox's callers.

use std::sync::OnceLock;

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{Layer, Registry};

/// The target of every span meant for traces. The log layer filters it out (a request's
/// log lines stay as they were) and the OpenTelemetry layer takes only it (no log event,
/// with whatever an error message holds, becomes part of a trace).
pub const TARGET: &str = "omcp_sandbox::spans";

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
const DEFAULT_SERVICE_NAME: &str = "omcp-sandbox";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether the environment asks for traces: an OTLP endpoint is set and the SDK is not
/// disabled.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The layer that exports this process's spans, if the environment asks for traces (the
/// first on the registry, under the log layer).
/// Call before any tokio runtime exists: the exporter's blocking HTTP client starts a
/// runtime of its own, which cannot be made inside another.
pub fn layer() -> anyhow::Result<Option<Box<dyn Layer<Registry> + Send + Sync>>> {
    use anyhow::Context as _;
    if !wanted() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("failed to set up the OTLP span exporter")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let _ = PROVIDER.set(provider);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Threads say nothing about a request that hops between tokio's workers.
        .with_threads(false)
        .with_filter(Targets::new().with_target(TARGET, LevelFilter::INFO));
    Ok(Some(Box::new(layer)))
}

/// `service.name` (the operator's, else [`DEFAULT_SERVICE_NAME`]) and `service.version`,
/// with whatever `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match named {
        true => builder.build(),
        false => builder.with_service_name(DEFAULT_SERVICE_NAME).build(),
    }
}

/// Whether traces are exported (the layer is installed).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// Export what is still buffered and stop the exporter: at the end of every command, so
/// the spans of the last requests (a SIGTERM's drain included) are not lost.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        tracing::warn!("could not export the last spans: {err}");
    }
}

/// A W3C trace context taken from the caller: `traceparent` and `tracestate`.
struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Make the caller's span (a W3C `traceparent`, with its `tracestate`) the parent of
/// `span`, a root span not yet entered. A missing or malformed one leaves `span` the root
/// of a new trace. Returns whether a parent was taken.
pub fn adopt_parent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) -> bool {
    let Some(traceparent) = traceparent else {
        return false;
    };
    if span.is_disabled() {
        return false;
    }
    let carrier = Carrier {
        traceparent: traceparent.trim(),
        tracestate,
    };
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

/// The current span as a W3C `traceparent` (and `tracestate`, if any) for a call this
/// server makes on a request's behalf; `None` outside a request's trace.
pub fn outgoing() -> Option<(String, Option<String>)> {
    if !in_request() {
        return None;
    }
    let cx = Span::current().context();
    let mut fields = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut fields));
    let traceparent = fields.remove("traceparent")?;
    Some((
        traceparent,
        fields.remove("tracestate").filter(|s| !s.is_empty()),
    ))
}

/// The same, from HTTP headers.
pub fn adopt_parent_from_headers(span: &Span, headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    adopt_parent(span, header("traceparent"), header("tracestate"))
}

// The spans, in the order a request meets them. Each is created here so that the names
// and attributes stay in one place; fields declared `Empty` are recorded when known.

/// Whether a step's span belongs in a trace: only inside a request's (the same code runs
/// in the start-up self-tests, which are no request). The callsite check comes first: with
/// traces off it is all this costs.
fn in_request() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
        && Span::current()
            .metadata()
            .is_some_and(|meta| meta.target() == TARGET)
}

/// The root of an HTTP request: `route` is the route's template (`/sessions/{id}/run`),
/// never the path asked for (it would carry session ids).
pub fn http_request(method: &str, route: Option<&str>) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "http request",
        otel.name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Record an HTTP answer's status on its root span (5xx: the span failed).
pub fn http_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// The root of an MCP `tools/call`. `tool` only if it is one of this server's tools (a
/// made-up name is the client's text).
pub fn mcp_tool_call(tool: Option<&str>) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "mcp tools/call",
        otel.name = match tool {
            Some(tool) => format!("tools/call {tool}"),
            None => "tools/call".to_string(),
        },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        mcp.method.name = "tools/call",
        gen_ai.tool.name = tool,
        omcp.outcome = tracing::field::Empty,
    )
}

/// The root of `omcp-sandbox run`.
pub fn cli_run() -> Span {
    tracing::info_span!(target: TARGET, parent: None, "cli run", otel.name = "omcp-sandbox run")
}

/// Waiting for a run slot: `omcp.admission` is `immediate`, `queued` or `busy`.
pub fn admit() -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "admit",
        omcp.admission = tracing::field::Empty,
    )
}

/// A fresh instance of `runtime` (`start`: `snapshot`, `cold`, or `session` for a
/// session's interpreter brought back from its pages).
pub fn instantiate(runtime: &str, start: &str) -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "instantiate",
        omcp.runtime = runtime,
        omcp.start = start,
    )
}

/// The guest's code running, until its outcome is known.
pub fn guest_run(runtime: &str) -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "guest run",
        omcp.runtime = runtime,
        omcp.outcome = tracing::field::Empty,
        omcp.exit_code = tracing::field::Empty,
        omcp.fuel_used = tracing::field::Empty,
        omcp.tool_calls = tracing::field::Empty,
    )
}

/// Record how a run ended on its `guest run` span.
pub fn run_ended(span: &Span, outcome: &crate::outcome::Outcome) {
    span.record("omcp.outcome", crate::metrics::outcome_label(outcome));
    if let Some(code) = outcome.exit_code {
        span.record("omcp.exit_code", code);
    }
    if let Some(fuel) = outcome.fuel_used {
        span.record("omcp.fuel_used", fuel);
    }
    span.record("omcp.tool_calls", outcome.tool_calls.len());
}

/// One call the guest made to an upstream tool (code mode).
pub fn tool_call() -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "tool call",
        otel.kind = "client",
        omcp.tool.server = tracing::field::Empty,
        omcp.tool.name = tracing::field::Empty,
        omcp.tool.outcome = tracing::field::Empty,
        omcp.tool.result_bytes = tracing::field::Empty,
    )
}

/// Record a tool call's answer. The names only when the server knows them: names the
/// guest made up are the guest's text.
pub fn tool_call_done(span: &Span, call: &crate::outcome::ToolCall) {
    if call.error.as_deref() != Some("unknown_tool") {
        span.record("omcp.tool.server", call.server.as_str());
        span.record("omcp.tool.name", call.tool.as_str());
    }
    span.record("omcp.tool.outcome", call.error.as_deref().unwrap_or("ok"));
    span.record("omcp.tool.result_bytes", call.result_bytes);
}

/// Turning an outcome into the answer's bytes (`omcp.response.bytes` when known).
pub fn encode() -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "encode",
        omcp.response.bytes = tracing::field::Empty,
    )
}

/// A turn of session `id` (only its redacted prefix, as the logs show it).
pub fn session_turn(id: &str) -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "session turn",
        omcp.session = crate::sessions::redact(id),
        omcp.turn = tracing::field::Empty,
        omcp.rolled_back = tracing::field::Empty,
    )
}

/// A suspended session's state read back from disk.
pub fn session_resume(id: &str) -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "session resume", omcp.session = crate::sessions::redact(id))
}

/// Keeping a turn's memory: its written pages committed to the session.
pub fn session_checkpoint() -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "session checkpoint",
        omcp.pages = tracing::field::Empty,
        omcp.evicted_pages = tracing::field::Empty,
    )
}

/// A session written to disk (idle, over the memory budget, or at shutdown).
/// `--shared-sessions`: waiting for a session's lease (another replica's turn).
pub fn session_lease() -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "session lease")
}

/// `--shared-sessions`: writing a turn's state to the shared directory before its answer.
pub fn session_save() -> Span {
    if !in_request() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "session save", omcp.bytes = tracing::field::Empty)
}

pub fn session_suspend(id: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "session suspend",
        omcp.session = crate::sessions::redact(id),
        omcp.bytes = tracing::field::Empty,
    )
}
