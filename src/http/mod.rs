//! The HTTP face: `fn app(state) -> Router` with `POST /run`, MCP over streamable HTTP at
//! `/mcp`, `GET /healthz` and `GET /openapi.json`; one JSON error type for every refusal;
//! `serve` with connection bounds and graceful shutdown (`server`). Host/Origin checks and
//! the optional bearer token live in `guard`; the OpenAPI document in `openapi`.
//!
//! Every answer is JSON, including 404/405/413: a client never has to parse an HTML page.
//! Python errors and limits are normal 200 answers (the run happened; its outcome says how
//! it ended); 4xx/5xx mean the run did not happen.

mod guard;
mod openapi;
mod server;

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
use schemars::JsonSchema;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use guard::Guard;
pub use server::{Connections, ServeOptions};

use crate::api::{RunRequest, RunResponse};
use crate::mcp::SandboxTools;
use crate::mcp::frame::{self, Frame};
use crate::sandbox::{PYTHON_VERSION, RunError, Sandbox, WASMTIME_VERSION};

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub sandbox: Arc<Sandbox>,
    pub guard: Arc<Guard>,
    /// Cancelled at shutdown: ends MCP sessions and their long-lived SSE streams, which
    /// graceful shutdown would otherwise wait for forever.
    pub shutdown: CancellationToken,
    pub options: ServeOptions,
    pub connections: Arc<Connections>,
    /// The streamable HTTP transport's sessions (shared with the gate that caps them).
    pub mcp_sessions: Arc<LocalSessionManager>,
}

impl AppState {
    pub fn new(sandbox: Arc<Sandbox>, guard: Guard, options: ServeOptions) -> Self {
        AppState {
            sandbox,
            guard: Arc::new(guard),
            shutdown: CancellationToken::new(),
            connections: Arc::new(Connections::new(options.max_connections)),
            mcp_sessions: Arc::new(LocalSessionManager::default()),
            options,
        }
    }
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
    BodyTimeout(String),
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
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ApiError::InvalidJson(_) => ErrorKind::InvalidJson,
            ApiError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            ApiError::TooLarge(_) => ErrorKind::TooLarge,
            ApiError::BodyTimeout(_) => ErrorKind::RequestTimeout,
            ApiError::Busy(_) => ErrorKind::Busy,
            ApiError::NotFound(_) => ErrorKind::NotFound,
            ApiError::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            ApiError::Internal(_) => ErrorKind::Internal,
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
            return ApiError::TooLarge(format!(
                "request body too large: {}",
                rejection.body_text()
            ));
        }
        Self::from_body_error(&rejection)
            .unwrap_or_else(|| ApiError::InvalidRequest(rejection.body_text()))
    }

    /// The body limit and the body timeout (tower layers) surface as a body error somewhere
    /// down the chain.
    fn from_body_error(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut source = Some(err);
        while let Some(err) = source {
            if err.is::<tower_http::timeout::TimeoutError>() {
                return Some(ApiError::BodyTimeout(
                    "the request body did not arrive within the server's body timeout".into(),
                ));
            }
            if err.is::<http_body_util::LengthLimitError>() {
                return Some(ApiError::TooLarge(format!("request body too large: {err}")));
            }
            source = err.source();
        }
        None
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

/// Every refusal's body: a message for people and a type for programs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs.
    #[serde(rename = "type")]
    pub kind: ErrorKind,
}

/// The machine-readable kind of a refusal; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 422: JSON of the wrong shape, or a limit below its minimum.
    InvalidRequest,
    /// 413: the body, the code or stdin is larger than the server allows.
    TooLarge,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 503: every slot and queue place is taken; retry after `Retry-After` seconds.
    Busy,
    /// 401: a bearer token is required and was missing or wrong.
    Unauthorized,
    /// 403: the Host or Origin header names a host this server does not answer for.
    Forbidden,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists with another method.
    MethodNotAllowed,
    /// 500: a fault of the server, not of the request.
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.to_string(),
            kind: self.kind(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Busy(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // 405: axum adds the route's own `Allow` header, as RFC 9110 asks.
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
    let sessions = state.mcp_sessions.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(SandboxTools::new(sandbox.clone())),
        sessions.clone(),
        mcp_config,
    );
    let gate = McpGate {
        body_limit,
        sessions,
        max_sessions: state.options.max_sessions,
    };
    let mcp = tower::Layer::layer(
        &axum::middleware::from_fn_with_state(gate, check_mcp_frame),
        mcp,
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
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyTimeoutLayer::new(state.options.body_timeout))
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

/// `GET /healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// Always "ok" when the server answers: it loaded and self-tested its runtime at start.
    pub status: String,
    /// The server's version.
    pub version: String,
    pub runtime: RuntimeHealth,
    /// The server's limits: the default for each run and the most a request may ask for.
    pub limits: LimitsHealth,
    pub load: LoadHealth,
}

/// The Python runtime the server loaded.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RuntimeHealth {
    pub python: String,
    /// SHA-256 of the python.wasm in use.
    pub sha256: String,
    pub wasmtime: String,
    /// "snapshot" (pre-initialised interpreter) or "cold" (CPython start-up per run).
    pub start: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LimitsHealth {
    pub timeout_ms: u64,
    pub fuel: u64,
    pub memory_mb: u64,
    pub max_output_bytes: u64,
    pub max_code_bytes: u64,
    pub max_stdin_bytes: u64,
    pub max_concurrency: u64,
    pub max_queue: u64,
    pub max_connections: u64,
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

/// What `check_mcp_frame` needs.
#[derive(Clone)]
struct McpGate {
    body_limit: usize,
    sessions: Arc<LocalSessionManager>,
    max_sessions: usize,
}

/// `POST /mcp`: read the body here (under the same limit and timeout as `/run`, with the
/// same JSON answers) and check the JSON-RPC frame before rmcp sees it (`mcp::frame`).
/// A request whose only fault is its params is still a request, answered like any other
/// with a JSON-RPC error (200); anything else is not a valid message, and the streamable
/// HTTP transport asks for a 400 then. A new session beyond `max_sessions` gets a typed
/// "busy" (503), like a run beyond the queue.
async fn check_mcp_frame(
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

async fn healthz(State(state): State<AppState>) -> axum::Json<Health> {
    let info = state.sandbox.info();
    let limits = state.sandbox.limits();
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        runtime: RuntimeHealth {
            python: PYTHON_VERSION.into(),
            sha256: info.sha256.clone(),
            wasmtime: WASMTIME_VERSION.into(),
            start: info.start_mode.as_str().into(),
        },
        limits: LimitsHealth {
            timeout_ms: limits.timeout.as_millis() as u64,
            fuel: limits.fuel,
            memory_mb: limits.memory_mb,
            max_output_bytes: limits.max_output_bytes as u64,
            max_code_bytes: limits.max_code_bytes as u64,
            max_stdin_bytes: limits.max_stdin_bytes as u64,
            max_concurrency: limits.max_concurrency as u64,
            max_queue: limits.max_queue as u64,
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
    })
}

async fn openapi_json(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document(state.sandbox.limits()))
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
    let addr: SocketAddr = listener.local_addr().context("listener has no address")?;
    let shutdown = state.shutdown.clone();
    let options = state.options.clone();
    let connections = state.connections.clone();
    tracing::info!("listening on http://{addr} (POST /run, MCP at /mcp)");
    server::run(listener, app(state), &options, connections, async move {
        shutdown_signal().await;
        shutdown.cancel();
    })
    .await;
    Ok(())
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
