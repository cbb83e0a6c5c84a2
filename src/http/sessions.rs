//! The session routes: `POST /sessions`, `GET /sessions`, `GET|DELETE /sessions/{id}`,
//! `POST /sessions/{id}/run`, `POST /sessions/{id}/fork` and the workspace files under
//! `/sessions/{id}/files`. Each handler only translates between HTTP and
//! [`crate::sessions::Sessions`], which owns every session.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{ApiError, AppState};
use crate::api::{
    CreateSessionRequest, RunRequest, RunResponse, SessionInfo, SessionList, SessionRunResponse,
};
use crate::workspace::FileError;

/// The routes, with a body limit for uploads of their own (`--max-upload-mb`).
pub fn routes(state: &AppState) -> Router<AppState> {
    let upload_limit = state.sandbox.limits().workspace().max_upload_bytes;
    let upload_limit = usize::try_from(upload_limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    Router::new()
        .route("/sessions", post(create).get(list))
        .route("/sessions/{id}", get(info).delete(close))
        .route("/sessions/{id}/run", post(run))
        .route("/sessions/{id}/fork", post(fork))
        .route("/sessions/{id}/files", get(list_files))
        .route(
            "/sessions/{id}/files/{*path}",
            get(get_file)
                .put(put_file)
                .delete(delete_file)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
}

fn json_body<T: serde::de::DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let body = body.map_err(ApiError::from_body)?;
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    object(&body)
}

/// A request body: serde reads a struct from a JSON array too (fields by position), so
/// only an object is accepted. (Checked on the first byte rather than by parsing into a
/// `Value` first, which would round numbers through serde_json's fast float parser.)
pub(super) fn object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let parsed = serde_json::from_slice(body).map_err(ApiError::from_json)?;
    if first != Some(&b'{') {
        return Err(ApiError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    }
    Ok(parsed)
}

/// A path that does not decode (invalid UTF-8 after percent-decoding) is a bad path.
fn path_of<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::File(FileError::InvalidPath {
            path: String::new(),
            why: match rejection {
                PathRejection::FailedToDeserializePathParams(_) => "not valid UTF-8",
                _ => "missing",
            },
        })
    })
}

async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<SessionInfo>), ApiError> {
    let request: CreateSessionRequest = json_body(body, true)?;
    let info = state.sessions.create(request).await?;
    Ok((StatusCode::CREATED, axum::Json(info)))
}

async fn list(State(state): State<AppState>) -> axum::Json<SessionList> {
    axum::Json(SessionList {
        sessions: state.sessions.list(),
    })
}

async fn info(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<SessionInfo>, ApiError> {
    let id = path_of(id)?;
    Ok(axum::Json(state.sessions.info(&id)?))
}

async fn close(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_of(id)?;
    state.sessions.close(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn run(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = path_of(id)?;
    let body = body.map_err(ApiError::from_body)?;
    let request: RunRequest = object(&body)?;
    if request.seed.is_some() {
        return Err(ApiError::InvalidRequest(
            "seed is set when a session is created (POST /sessions), not per turn".into(),
        ));
    }
    let limits = request.limits();
    let expected = state.sessions.info(&id)?.runtime;
    if let Some(runtime) = &request.runtime
        && *runtime != expected
    {
        return Err(ApiError::InvalidRequest(format!(
            "this session runs the {expected:?} runtime, not {:?}",
            runtime.chars().take(64).collect::<String>()
        )));
    }
    let answer = state
        .sessions
        .turn(&id, request.code, request.stdin, limits, request.files)
        .await?;
    crate::metrics::run_finished(crate::metrics::Face::Http, &answer.outcome);
    Ok(super::encode(SessionRunResponse {
        run: RunResponse::from(answer.outcome),
        session_id: answer.session_id,
        turn: answer.turn,
        rolled_back: answer.rolled_back,
        files_changed: answer.changed,
    }))
}

async fn fork(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, axum::Json<SessionInfo>), ApiError> {
    let id = path_of(id)?;
    let info = state.sessions.fork(&id).await?;
    Ok((StatusCode::CREATED, axum::Json(info)))
}

async fn list_files(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id = path_of(id)?;
    let files = state.sessions.list_files(&id)?;
    Ok(axum::Json(serde_json::json!({ "files": files })))
}

async fn get_file(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, path) = path_of(path)?;
    let bytes = state.sessions.get_file(&id, &path)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn put_file(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let (id, path) = path_of(path)?;
    let body = body.map_err(ApiError::from_body)?;
    let size = state.sessions.put_file(&id, &path, &body)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "path": path, "size": size })),
    ))
}

async fn delete_file(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (id, path) = path_of(path)?;
    state.sessions.delete_file(&id, &path)?;
    Ok(StatusCode::NO_CONTENT)
}
