//! The HTTP face: `fn app(state) -> Router` with `POST /run`, MCP over streamable HTTP at
//! `/mcp`, `GET /healthz` and `GET /openapi.json`; one JSON error type for every refusal;
//! `serve` with connection bounds and graceful shutdown (`server`). Host/Origin checks and
//! the optional bearer token live in `guard`; the OpenAPI document in `openapi`.
//!
//! Every answer is JSON, including 404/405/413: a client never has to parse an HTML page.
//! Python errors and limits are normal 200 answers (the run happened; its outcome says how
//! it ended); 4xx/5xx mean the run did not happen.

mod guard;
mod health;
mod mcp_gate;
mod openapi;
mod probes;
mod server;
mod sessions;

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
pub use health::Health;
pub use server::{Connections, ServeOptions};

use crate::api::{RunRequest, RunResponse};
use crate::mcp::SandboxTools;
use crate::sandbox::{RunError, Sandbox};
use crate::sessions::{SessionError, Sessions};
use crate::workspace::FileError;

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub sandbox: Arc<Sandbox>,
    pub sessions: Arc<Sessions>,
    pub guard: Arc<Guard>,
    /// Cancelled at shutdown: ends MCP sessions and their long-lived SSE streams, which
    /// graceful shutdown would otherwise wait for forever.
    pub shutdown: CancellationToken,
    pub options: ServeOptions,
    pub connections: Arc<Connections>,
    /// The streamable HTTP transport's sessions (shared with the gate that caps them).
    pub mcp_sessions: Arc<LocalSessionManager>,
    /// Where `/metrics` reads what was recorded; `None`: not recorded (404).
    pub metrics: Option<&'static metrics_exporter_prometheus::PrometheusHandle>,
    /// Set at SIGTERM: `/readyz` says "draining" from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(sessions: Arc<Sessions>, guard: Guard, options: ServeOptions) -> Self {
        AppState {
            sandbox: sessions.sandbox().clone(),
            sessions,
            guard: Arc::new(guard),
            shutdown: CancellationToken::new(),
            connections: Arc::new(Connections::new(options.max_connections)),
            mcp_sessions: Arc::new(LocalSessionManager::default()),
            options,
            metrics: None,
            draining: Arc::default(),
        }
    }

    /// Serve what the process's metrics recorder holds at `/metrics`.
    pub fn with_metrics(
        mut self,
        handle: &'static metrics_exporter_prometheus::PrometheusHandle,
    ) -> Self {
        self.metrics = Some(handle);
        self
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
    #[error(transparent)]
    File(FileError),
    #[error(transparent)]
    Session(SessionError),
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
            ApiError::File(err) => {
                StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::Session(err) => match err {
                SessionError::NotFound(_) => StatusCode::NOT_FOUND,
                SessionError::Busy(_) => StatusCode::CONFLICT,
                SessionError::TooMany(_) => StatusCode::SERVICE_UNAVAILABLE,
                SessionError::Lost { .. } => StatusCode::GONE,
                SessionError::Unsaved { .. } => StatusCode::SERVICE_UNAVAILABLE,
                SessionError::Incompatible { .. } => StatusCode::CONFLICT,
                SessionError::Unavailable(_) => StatusCode::NOT_IMPLEMENTED,
                SessionError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                SessionError::File(_) | SessionError::Run(_) => {
                    unreachable!("unwrapped by From<SessionError>")
                }
            },
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
            ApiError::File(err) => match err {
                FileError::InvalidPath { .. } => ErrorKind::InvalidPath,
                FileError::InvalidContent(_) => ErrorKind::InvalidContent,
                FileError::TooLarge { .. } => ErrorKind::TooLarge,
                FileError::Full(_) => ErrorKind::WorkspaceFull,
                FileError::NotFound(_) => ErrorKind::FileNotFound,
                FileError::NotAFile(_) => ErrorKind::NotAFile,
                FileError::Io(_) => ErrorKind::Internal,
            },
            ApiError::Session(err) => match err {
                SessionError::NotFound(_) => ErrorKind::SessionNotFound,
                SessionError::Busy(_) => ErrorKind::SessionBusy,
                SessionError::TooMany(_) => ErrorKind::TooManySessions,
                SessionError::Lost { .. } => ErrorKind::SessionLost,
                SessionError::Unsaved { .. } => ErrorKind::SessionUnsaved,
                SessionError::Incompatible { .. } => ErrorKind::SessionIncompatible,
                SessionError::Unavailable(_) => ErrorKind::SessionsUnavailable,
                SessionError::Invalid(_) => ErrorKind::InvalidRequest,
                SessionError::File(_) | SessionError::Run(_) => ErrorKind::Internal,
            },
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

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::File(err) => ApiError::File(err),
            SessionError::Run(err) => ApiError::from(err),
            other => ApiError::Session(other),
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
            RunError::Limit(_) | RunError::UnknownRuntime { .. } => {
                ApiError::InvalidRequest(err.to_string())
            }
            RunError::File(err) => ApiError::File(err),
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
    /// 404: no such session (closed, expired or never created): create a new one.
    SessionNotFound,
    /// 409: the session is running another turn.
    SessionBusy,
    /// 503: the server holds its maximum of sessions.
    TooManySessions,
    /// 410: the session's state could not be kept or restored; its files remain readable.
    SessionLost,
    /// 503: the session's turn could not be checkpointed (`--shared-sessions`); the
    /// session is as it was before the turn: retry it.
    SessionUnsaved,
    /// 409: the session was suspended by another server version or runtime build.
    SessionIncompatible,
    /// 501: the runtime has no sessions on this server.
    SessionsUnavailable,
    /// 400: a workspace path breaks a rule (`..`, absolute, NUL, too long...).
    InvalidPath,
    /// 400: file content that does not decode (bad base64).
    InvalidContent,
    /// 404: no such file in the workspace.
    FileNotFound,
    /// 409: the path is (or goes through) a directory, a symlink or a file in the
    /// workspace where a regular file (or directory) is needed.
    NotAFile,
    /// 507: the workspace would pass its byte or file-count bound.
    WorkspaceFull,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Busy(_) => crate::metrics::refused("busy"),
            ApiError::TooLarge(_) | ApiError::File(FileError::TooLarge { .. }) => {
                crate::metrics::refused("too_large")
            }
            ApiError::Session(SessionError::TooMany(_)) => {
                crate::metrics::refused("too_many_sessions")
            }
            _ => {}
        }
        let body = ErrorBody {
            error: self.to_string(),
            kind: self.kind(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(
            self,
            ApiError::Busy(_)
                | ApiError::Session(SessionError::TooMany(_) | SessionError::Unsaved { .. })
        ) {
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
    // Files sent in come base64 (4/3) inside the JSON: room for one of the largest upload
    // (more go by PUT to a session).
    let files_limit = usize::try_from(limits.workspace().max_upload_bytes).unwrap_or(usize::MAX);
    let body_limit = (2 * (limits.max_code_bytes + limits.max_stdin_bytes) + 64 * 1024)
        .saturating_add(files_limit.saturating_mul(3) / 2);

    let sessions = state.sessions.clone();
    let mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(state.shutdown.child_token())
        // Host and Origin are checked by `guard` for /run and /mcp alike (one list, one
        // flag); an empty list turns rmcp's own copy of that check off.
        .with_allowed_hosts(Vec::<String>::new())
        .with_max_request_body_bytes(body_limit);
    let mcp_sessions = state.mcp_sessions.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(SandboxTools::new(sessions.clone())),
        mcp_sessions.clone(),
        mcp_config,
    );
    let gate = mcp_gate::McpGate {
        body_limit,
        sessions: mcp_sessions,
        max_sessions: state.options.max_sessions,
    };
    let mcp = tower::Layer::layer(
        &axum::middleware::from_fn_with_state(gate, mcp_gate::check_mcp_frame),
        mcp,
    );

    let guarded = Router::new()
        .route("/run", post(run))
        // What the operator's upstreams offer is for callers, not for anyone who can probe.
        .route("/tools", get(health::tools))
        .merge(sessions::routes(&state))
        .nest_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            guard::enforce,
        ));
    let router = Router::new()
        .merge(guarded)
        .route("/healthz", get(health::healthz))
        .route("/livez", get(probes::livez))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(probes::count_requests));
    // Only with traces on: a layer costs every request a boxed future even when it does
    // nothing.
    let router = match crate::telemetry::enabled() {
        true => router.layer(axum::middleware::from_fn(probes::trace_requests)),
        false => router,
    };
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyTimeoutLayer::new(state.options.body_timeout))
        .with_state(state)
}

async fn run(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(ApiError::from_body)?;
    let request: RunRequest = sessions::object(&body)?;
    let limits = request.limits();
    let job = state.sandbox.job(
        request.code,
        request.stdin,
        &limits,
        request.runtime.as_deref(),
        request.seed,
    )?;
    let job = state.sandbox.with_files(job, request.files)?;
    let outcome = state.sandbox.run(&job).await?;
    crate::metrics::run_finished(crate::metrics::Face::Http, &outcome);
    Ok(encode(RunResponse::from(outcome)))
}

/// A run's answer as JSON, serialized here (not after the handler returns) so that its
/// trace has the encoding as a step of its own.
fn encode(answer: impl Serialize) -> Response {
    use axum::body::HttpBody;
    let span = crate::telemetry::encode();
    let _entered = span.enter();
    let response = axum::Json(answer).into_response();
    if let Some(bytes) = response.body().size_hint().exact() {
        span.record("omcp.response.bytes", bytes);
    }
    response
}

async fn openapi_json(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let runtimes: Vec<&str> = state.sandbox.runtimes().map(|r| r.name).collect();
    axum::Json(openapi::document(state.sandbox.limits(), &runtimes))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `/metrics` alone, for a listener of its own (`--metrics-listen`), so that the main one
/// need not expose it; until shutdown.
pub async fn serve_metrics(listener: TcpListener, state: AppState) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("listener has no address")?;
    tracing::info!("metrics on http://{addr}/metrics");
    let shutdown = state.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(probes::metrics))
        .fallback(not_found)
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the metrics listener failed")
}

/// Serve `app` on `listener` until SIGINT/SIGTERM; in-flight runs then finish (each is
/// bounded by its own limits) while new connections are refused.
pub async fn serve(listener: TcpListener, state: AppState) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr().context("listener has no address")?;
    let shutdown = state.shutdown.clone();
    let options = state.options.clone();
    let connections = state.connections.clone();
    let sessions = state.sessions.clone();
    tracing::info!("listening on http://{addr} (POST /run, /sessions, MCP at /mcp)");
    tokio::spawn(sessions.clone().housekeeping(shutdown.clone()));
    let draining = state.draining.clone();
    let drain_delay = options.drain_delay;
    server::run(listener, app(state), &options, connections, async move {
        shutdown_signal().await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if !drain_delay.is_zero() {
            tracing::info!(
                drain_ms = drain_delay.as_millis() as u64,
                "draining: /readyz says so; still serving until the delay is over"
            );
            tokio::time::sleep(drain_delay).await;
        }
        shutdown.cancel();
    })
    .await;
    // In-flight requests are done: save every session for the next start.
    sessions.suspend_all().await;
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
