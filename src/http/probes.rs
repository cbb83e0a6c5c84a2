//! What orchestrators and monitoring read: `GET /livez` (the process serves), `GET /readyz`
//! (it should be sent work: not while draining after SIGTERM, nor while every slot and queue
//! place is taken) and `GET /metrics` (Prometheus text). The server listens only once its
//! runtimes are loaded and self-tested, so there is no "still loading" answer to give: until
//! then the connection is refused, which a probe reads as not ready. Also the layers that
//! count HTTP requests by route and status and start each request's trace.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use tracing::Instrument;

use super::AppState;
use crate::api::SessionState;
use crate::metrics::{self, Now};
use crate::telemetry;

/// `GET /livez` and `GET /readyz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Probe {
    /// "ok", or why not: "draining" (shutting down), "busy" (every slot and queue place
    /// taken).
    pub status: String,
}

pub async fn livez() -> axum::Json<Probe> {
    axum::Json(Probe {
        status: "ok".into(),
    })
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Probe>) {
    let limits = state.sandbox.limits();
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let status = if draining || state.shutdown.is_cancelled() {
        "draining"
    } else if state.sandbox.running() >= limits.max_concurrency
        && state.sandbox.queued() >= limits.max_queue
    {
        "busy"
    } else {
        "ok"
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(Probe {
            status: status.into(),
        }),
    )
}

/// Prometheus' text format, version 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = state.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not recorded by this server\n",
        )
            .into_response();
    };
    let mut now = Now {
        slots: state.sandbox.limits().max_concurrency,
        slots_busy: state.sandbox.running(),
        queued: state.sandbox.queued(),
        connections: state.connections.open(),
        mcp_sessions: state.mcp_sessions.sessions.read().await.len(),
        ..Now::default()
    };
    for session in state.sessions.states() {
        match session {
            SessionState::Active => now.sessions_active += 1,
            SessionState::Running => now.sessions_running += 1,
            SessionState::Suspended => now.sessions_suspended += 1,
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(handle, now),
    )
        .into_response()
}

/// The root span of every HTTP request's trace (see `telemetry`), child of the caller's
/// `traceparent` header if it has a valid one. Not for probes and `/metrics` (polled every
/// few seconds, they would bury the requests), nor for `/mcp`, whose tool calls are traces
/// of their own (`mcp::SandboxTools::call_tool`) and take this header as a fallback parent.
pub async fn trace_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if matches!(route, Some("/livez" | "/readyz" | "/healthz" | "/metrics"))
        || request.uri().path().starts_with("/mcp")
    {
        return next.run(request).await;
    }
    let span = telemetry::http_request(request.method().as_str(), route);
    if span.is_disabled() {
        return next.run(request).await;
    }
    telemetry::adopt_parent_from_headers(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    telemetry::http_status(&span, response.status().as_u16());
    response
}

/// Count every answer by its route's template (not the path asked for: ids would make a
/// series each) and status.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics::http_request(route, response.status().as_u16());
    response
}
