//! The HTTP face: `fn app(state) -> Router` with `POST /run`, MCP over streamable HTTP at
//! `/mcp` and `GET /healthz`; one JSON error type for every refusal; `serve` with graceful
//! shutdown. Host/Origin checks and the optional bearer token live in `guard`.
//!
//! Every answer is JSON, including 404/405/413: a client never has to parse an HTML page.
//! Python errors and limits are normal 200 answers (the run happened; its outcome says how
//! it ended); 4xx/5xx mean the run did not happen.

mod guard;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use guard::Guard;

use crate::api::{RunRequest, RunResponse};
use crate::mcp::SandboxTools;
use crate::sandbox::{PYTHON_VERSION, RunError, Sandbox, WASMTIME_VERSION};

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub sandbox: Arc<Sandbox>,
    pub guard: Arc<Guard>,
    /// Cancelled at shutdown: ends MCP sessions and their long-lived SSE streams, which
    /// graceful shutdown would otherwise wait for forever.
    pub shutdown: CancellationToken,
}

/// Why a request was refused, as a status and a JSON body `{"error", "type"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Busy(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Busy(_) => "busy",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }

    fn from_json(err: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            // Well-formed JSON of the wrong shape: missing or ill-typed `code`, unknown field.
            Category::Data => ApiError::InvalidRequest(err.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::InvalidJson(err.to_string())
            }
        }
    }

    fn from_body(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body too large: {}", rejection.body_text()))
        } else {
            ApiError::InvalidRequest(rejection.body_text())
        }
    }
}

impl From<RunError> for ApiError {
    fn from(err: RunError) -> Self {
        match err {
            RunError::Busy { .. } => ApiError::Busy(err.to_string()),
            RunError::CodeTooLarge { .. } | RunError::StdinTooLarge { .. } => {
                ApiError::TooLarge(err.to_string())
            }
            RunError::Limit(_) => ApiError::InvalidRequest(err.to_string()),
            RunError::Internal(_) => {
                tracing::error!("{err:#}");
                ApiError::Internal(err.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": self.to_string(), "type": self.kind() });
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            ApiError::Busy(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::MethodNotAllowed => {
                // Every route here takes exactly one method; say which, as RFC 9110 asks.
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            }
            _ => {}
        }
        response
    }
}

/// The router. Tests drive it over a real socket via [`serve`].
pub fn app(state: AppState) -> Router {
    let limits = state.sandbox.limits();
    // JSON escaping can make the body larger than the code it carries; the code and stdin
    // limits themselves are checked exactly after parsing.
    let body_limit = 2 * (limits.max_code_bytes + limits.max_stdin_bytes) + 64 * 1024;

    let sandbox = state.sandbox.clone();
    let mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(state.shutdown.child_token())
        // Host and Origin are checked by `guard` for /run and /mcp alike (one list, one
        // flag); an empty list turns rmcp's own copy of that check off.
        .with_allowed_hosts(Vec::<String>::new())
        .with_max_request_body_bytes(body_limit);
    let mcp = StreamableHttpService::new(
        move || Ok(SandboxTools::new(sandbox.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );

    let guarded = Router::new()
        .route("/run", post(run))
        .nest_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            guard::enforce,
        ));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn run(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<RunResponse>, ApiError> {
    let body = body.map_err(ApiError::from_body)?;
    let request: RunRequest = serde_json::from_slice(&body).map_err(ApiError::from_json)?;
    let limits = request.limits();
    let job = state.sandbox.job(request.code, request.stdin, &limits)?;
    let outcome = state.sandbox.run(&job).await?;
    Ok(axum::Json(RunResponse::from(outcome)))
}

async fn healthz(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let info = state.sandbox.info();
    let limits = state.sandbox.limits();
    axum::Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "runtime": {
            "python": PYTHON_VERSION,
            "sha256": info.sha256,
            "wasmtime": WASMTIME_VERSION,
            // "snapshot" (pre-initialised interpreter) or "cold" (CPython start-up per run).
            "start": info.start_mode.as_str(),
        },
        "limits": {
            "timeout_ms": limits.timeout.as_millis() as u64,
            "fuel": limits.fuel,
            "memory_mb": limits.memory_mb,
            "max_output_bytes": limits.max_output_bytes,
            "max_code_bytes": limits.max_code_bytes,
            "max_stdin_bytes": limits.max_stdin_bytes,
            "max_concurrency": limits.max_concurrency,
            "max_queue": limits.max_queue,
        },
    }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serve `app` on `listener` until SIGINT/SIGTERM; in-flight runs then finish (each is
/// bounded by its own limits) while new connections are refused.
pub async fn serve(listener: TcpListener, state: AppState) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let shutdown = state.shutdown.clone();
    tracing::info!("listening on http://{addr} (POST /run, MCP at /mcp)");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutdown.cancel();
        })
        .await
        .context("HTTP server failed")
}

/// Resolves on SIGINT or SIGTERM (as PID 1 in a container, SIGTERM has no default action).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight runs, refusing new ones");
}
