//! The gate in front of rmcp for `POST /mcp`: the body is read here (under the same limit
//! and timeout as `/run`, with the same JSON answers), each JSON-RPC frame is checked
//! (`mcp::frame`), and new sessions are capped.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::ApiError;
use crate::mcp::frame::{self, Frame};

/// What `check_mcp_frame` needs.
#[derive(Clone)]
pub struct McpGate {
    pub body_limit: usize,
    pub sessions: Arc<LocalSessionManager>,
    pub max_sessions: usize,
}

/// `POST /mcp`: read the body here (under the same limit and timeout as `/run`, with the
/// same JSON answers) and check the JSON-RPC frame before rmcp sees it (`mcp::frame`).
/// A request whose only fault is its params is still a request, answered like any other
/// with a JSON-RPC error (200); anything else is not a valid message, and the streamable
/// HTTP transport asks for a 400 then. A new session beyond `max_sessions` gets a typed
/// "busy" (503), like a run beyond the queue.
pub async fn check_mcp_frame(
    State(gate): State<McpGate>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, gate.body_limit).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let refusal = ApiError::from_body_error(&err).unwrap_or_else(|| {
                ApiError::InvalidRequest(format!("failed to read the request body: {err}"))
            });
            return refusal.into_response();
        }
    };
    let refusal = match frame::check_frame(&bytes) {
        Frame::Valid(text) => {
            let new_session = !parts.headers.contains_key("mcp-session-id");
            if new_session && gate.sessions.sessions.read().await.len() >= gate.max_sessions {
                let id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|m| m.get("id").cloned())
                    .unwrap_or_default();
                let refusal = frame::Refusal::new(
                    id,
                    -32000,
                    format!(
                        "the server has {} MCP sessions open, its limit; close one \
                         (DELETE /mcp) or retry later",
                        gate.max_sessions
                    ),
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        ),
                        (header::RETRY_AFTER, HeaderValue::from_static("5")),
                    ],
                    refusal.to_json(),
                )
                    .into_response();
            }
            let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            return next.run(request).await;
        }
        Frame::Blank => {
            frame::Refusal::new(serde_json::Value::Null, -32700, "parse error: empty body")
        }
        Frame::Refused(refusal) => refusal,
    };
    let status = if refusal.code == -32602 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        refusal.to_json(),
    )
        .into_response()
}
