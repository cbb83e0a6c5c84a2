//! Sessions over MCP: the session tools (`create_session`, `close_session`,
//! `fork_session`, `upload_file`, `list_files`), `run_python` with a `session_id`, and
//! session files as resources (`omcp://sessions/{session_id}/files/{path}`).
//!
//! Each tool only translates between MCP and [`crate::sessions::Sessions`], which owns
//! every session. A refusal the model can act on (an unknown or expired session, a busy
//! one, a full workspace, a bad path) is a tool result with `isError: true` whose text
//! starts with its type; malformed arguments are JSON-RPC errors (-32602).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{
    CallToolResult, ContentBlock, ErrorData, JsonObject, ReadResourceResult, RequestMetaObject,
    Resource, ResourceContents, ResourceTemplate,
};
use rmcp::{Peer, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{SandboxTools, assemble, decode, failure, refusal, render, watch};
use crate::api::{
    CreateSessionArgs, CreateSessionRequest, RunPythonArgs, SessionIdArgs, SessionInfo,
    SessionRunResponse, UploadFileArgs,
};
use crate::sandbox::RunError;
use crate::sessions::{SessionError, TurnAnswer};
use crate::workspace::{Encoding, FileEntry, FileError, FileIn, FileOut};

/// The URI of a session's file: `omcp://sessions/{id}/files/{path}`.
const SESSION_PREFIX: &str = "omcp://sessions/";
/// The template of [`SESSION_PREFIX`] URIs.
const FILE_TEMPLATE: &str = "omcp://sessions/{session_id}/files/{path}";

/// `list_files`' structured answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileListing {
    /// The session's files: path under /workspace, size in bytes, last modification.
    pub files: Vec<FileEntry>,
}

/// `upload_file`'s structured answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Uploaded {
    /// Where the file is, relative to /workspace.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its resource URI (readable with resources/read).
    pub uri: String,
}

#[tool_router(router = session_tool_router, vis = "pub(super)")]
impl SandboxTools {
    #[tool(
        name = "create_session",
        description = "Start a Python session: an interpreter that keeps its state between \
            run_python calls. Returns a session_id; pass it to run_python and variables, \
            imports, functions and files in /workspace persist from call to call (a call \
            stopped by a limit is rolled back; the session goes on). Use it for work in \
            several steps: load or compute something once, then use it in later calls. A \
            session closes after a while without calls (idle timeout) and at the end of its \
            lifetime (both are in the answer); call close_session when done. Without a \
            session, run_python starts from a pristine interpreter every time.",
        input_schema = rmcp::handler::server::common::schema_for_input::<CreateSessionArgs>()
            .expect("CreateSessionArgs has a valid input schema"),
        output_schema = rmcp::handler::server::common::schema_for_output::<SessionInfo>(),
        annotations(
            title = "Create a Python session",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_session(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let args: CreateSessionArgs = decode("create_session", arguments)?;
        let request = CreateSessionRequest {
            runtime: args.runtime,
            idle_timeout_s: args.idle_timeout_s,
            seed: args.seed,
            ..CreateSessionRequest::default()
        };
        let info = match self.sessions.create(request).await {
            Ok(info) => info,
            Err(err) => return session_failure(err),
        };
        let text = format!(
            "Created session {id} (runtime \"{runtime}\"). Pass \"session_id\": \"{id}\" to \
             run_python: variables, imports, functions and files in /workspace persist across \
             calls with this session_id. It closes after {idle} without a call (idle timeout) \
             and after {lifetime} in total (lifetime); now it expires at {expires} unless used \
             again. Call close_session when done.",
            id = info.session_id,
            runtime = info.runtime,
            idle = span(info.idle_timeout_s),
            lifetime = span(info.lifetime_s),
            expires = info.expires_at,
        );
        Ok(structured(text, &info, vec![]))
    }

    #[tool(
        name = "close_session",
        description = "Close a session (from create_session): its interpreter, variables and \
            files are discarded at once, and later calls with its session_id fail.",
        input_schema = rmcp::handler::server::common::schema_for_input::<SessionIdArgs>()
            .expect("SessionIdArgs has a valid input schema"),
        annotations(
            title = "Close a Python session",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn close_session(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let args: SessionIdArgs = decode("close_session", arguments)?;
        match self.sessions.close(&args.session_id) {
            Ok(()) => Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                "Closed session {}: its variables and files are gone.",
                args.session_id
            ))])),
            Err(err) => session_failure(err),
        }
    }

    #[tool(
        name = "fork_session",
        description = "Copy a session: a new session with the same variables, imports and \
            files as this one, independent from then on (what one does is not seen by the \
            other). Returns the new session_id. Useful to try something on a copy and keep \
            the original state.",
        input_schema = rmcp::handler::server::common::schema_for_input::<SessionIdArgs>()
            .expect("SessionIdArgs has a valid input schema"),
        output_schema = rmcp::handler::server::common::schema_for_output::<SessionInfo>(),
        annotations(
            title = "Fork a Python session",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn fork_session(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let args: SessionIdArgs = decode("fork_session", arguments)?;
        let info = match self.sessions.fork(&args.session_id).await {
            Ok(info) => info,
            Err(err) => return session_failure(err),
        };
        let text = format!(
            "Forked session {} into a new session {id}, with a copy of its variables, imports \
             and files; the two are independent from now on. Pass \"session_id\": \"{id}\" to \
             run_python to use the copy. It closes after {} without a call, and expires at {} \
             unless used again.",
            args.session_id,
            span(info.idle_timeout_s),
            info.expires_at,
            id = info.session_id,
        );
        Ok(structured(text, &info, vec![]))
    }

    #[tool(
        name = "upload_file",
        description = "Write a file into a session's /workspace (the working directory of its \
            code), e.g. data for the code to read with open(\"data.csv\"). Text goes as it is \
            (encoding \"utf-8\", the default), binary files as base64 (encoding \"base64\"). \
            Parent directories are created; an existing file is replaced. For a call without \
            a session, pass `files` to run_python instead.",
        input_schema = rmcp::handler::server::common::schema_for_input::<UploadFileArgs>()
            .expect("UploadFileArgs has a valid input schema"),
        output_schema = rmcp::handler::server::common::schema_for_output::<Uploaded>(),
        annotations(
            title = "Upload a file to a session",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn upload_file(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let args: UploadFileArgs = decode("upload_file", arguments)?;
        let file = FileIn {
            path: args.path,
            content: args.content,
            encoding: args.encoding,
        };
        let bytes = match file.decode() {
            Ok(bytes) => bytes,
            Err(err) => return file_failure(&err),
        };
        let size = match self.sessions.put_file(&args.session_id, &file.path, &bytes) {
            Ok(size) => size,
            Err(err) => return session_failure(err),
        };
        let uploaded = Uploaded {
            uri: file_uri(&args.session_id, &file.path),
            path: file.path,
            size,
        };
        let text = format!(
            "Wrote {} bytes to /workspace/{} in session {}; the code can open it as {:?}.",
            uploaded.size, uploaded.path, args.session_id, uploaded.path
        );
        let link = file_link(&uploaded.uri, &uploaded.path, Some(size));
        Ok(structured(text, &uploaded, vec![link]))
    }

    #[tool(
        name = "list_files",
        description = "List the files in a session's /workspace: path, size in bytes and last \
            modification time (UTC). Read one with resources/read at \
            omcp://sessions/{session_id}/files/{path}, or open it from run_python code.",
        input_schema = rmcp::handler::server::common::schema_for_input::<SessionIdArgs>()
            .expect("SessionIdArgs has a valid input schema"),
        output_schema = rmcp::handler::server::common::schema_for_output::<FileListing>(),
        annotations(
            title = "List a session's files",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_files(&self, arguments: JsonObject) -> Result<CallToolResult, ErrorData> {
        let args: SessionIdArgs = decode("list_files", arguments)?;
        let files = match self.sessions.list_files(&args.session_id) {
            Ok(files) => files,
            Err(err) => return session_failure(err),
        };
        let mut text = match files.len() {
            0 => format!("Session {}: /workspace is empty.", args.session_id),
            n => format!(
                "Session {}: {n} file(s) in /workspace (path, bytes, modified):",
                args.session_id
            ),
        };
        for file in &files {
            text.push_str(&format!(
                "\n{}\t{}\t{}",
                file.path, file.size, file.modified
            ));
        }
        Ok(structured(text, &FileListing { files }, vec![]))
    }
}

impl SandboxTools {
    /// `run_python` with a `session_id`: a turn of that session. The turn runs in a task of
    /// its own: a turn stopped half way would leave the session's interpreter in a state
    /// that is neither before nor after it, so a client's cancellation returns at once but
    /// the turn goes on to its end (bounded by its limits), and its effects are kept.
    pub(super) async fn run_in_session(
        &self,
        id: String,
        args: RunPythonArgs,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancelled: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        if args.seed.is_some() {
            return Ok(failure(
                "invalid_request",
                "`seed` is set for a whole session by create_session, not per call; leave it \
                 out when passing session_id",
            ));
        }
        let info = match self.sessions.info(&id) {
            Ok(info) => info,
            Err(err) => return session_failure(err),
        };
        if let Some(runtime) = &args.runtime
            && *runtime != info.runtime
        {
            return Ok(failure(
                "invalid_request",
                &format!(
                    "session {id} runs the {:?} runtime, not {:?}: leave `runtime` out when \
                     passing session_id (or create another session with that runtime)",
                    info.runtime,
                    runtime.chars().take(64).collect::<String>()
                ),
            ));
        }
        let asked = args.limits();
        let limits = self.sandbox.limits();
        let total_secs = limits
            .resolve(&asked)
            .map(|resolved| resolved.timeout)
            .unwrap_or(limits.timeout)
            .as_secs_f64();
        let sessions = self.sessions.clone();
        let turn_id = id.clone();
        // The task goes on with this call's trace.
        let turn = tokio::spawn(
            async move {
                sessions
                    .turn(&turn_id, args.code, args.stdin, asked, args.files)
                    .await
            }
            .instrument(tracing::Span::current()),
        );
        let answer = watch(
            turn,
            total_secs,
            &meta,
            &peer,
            &cancelled,
            "run cancelled by the client; the session finishes this call on its own (within \
             its time limit) and keeps its effects",
        )
        .await?
        .map_err(|err| {
            tracing::error!("a session turn failed: {err}");
            ErrorData::internal_error(format!("the session's call failed: {err}"), None)
        })?;
        match answer {
            Ok(answer) => Ok(crate::telemetry::encode().in_scope(|| self.turn_result(answer))),
            Err(err) => session_failure(err),
        }
    }

    /// A turn's result: the run's text, images and structured object plus the session's
    /// facts; the files it created or changed as resource links.
    fn turn_result(&self, answer: TurnAnswer) -> CallToolResult {
        crate::metrics::run_finished(crate::metrics::Face::Mcp, &answer.outcome);
        let TurnAnswer {
            outcome,
            session_id,
            turn,
            rolled_back,
            changed,
        } = answer;
        let super::Rendered {
            failed,
            lead,
            mut text,
            images: mut blocks,
            response,
        } = render(outcome);
        if rolled_back {
            text.push_str(
                "\n[rolled back: a limit stopped this call, so the session is back at its \
                 state before this call (variables, imports, functions); files it wrote \
                 stay]",
            );
        }
        if !changed.is_empty() {
            let sizes: HashMap<String, u64> = self
                .sessions
                .list_files(&session_id)
                .map(|files| files.into_iter().map(|f| (f.path, f.size)).collect())
                .unwrap_or_default();
            for path in &changed {
                let uri = file_uri(&session_id, path);
                blocks.push(file_link(&uri, path, sizes.get(path).copied()));
            }
            text.push_str(&format!(
                "\n[{} file(s) created or changed in /workspace, kept in the session (linked \
                 as omcp://sessions/{session_id}/files/...): {}]",
                changed.len(),
                changed.join(", ")
            ));
        }
        let response = SessionRunResponse {
            run: response,
            session_id,
            turn,
            rolled_back,
            files_changed: changed,
        };
        let structured = serde_json::to_value(&response).expect("SessionRunResponse serializes");
        assemble(failed, lead, text, blocks, structured)
    }

    /// `resources/read` of `omcp://sessions/{id}/files/{path}`: text contents when the file
    /// is text, else its base64. Anything else is "resource not found" (-32002).
    pub(super) fn read_session_file(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        // Neither the message nor the data repeats the URI or the id: rmcp logs error
        // responses, and a session's id is a secret handle the logs must not hold.
        let not_found = |why: String, kind: &str| {
            ErrorData::resource_not_found(why, Some(serde_json::json!({"type": kind})))
        };
        let Some((id, path)) = parse_file_uri(uri) else {
            return Err(not_found(
                format!(
                    "no such resource: this server's resources are session files, \
                     {FILE_TEMPLATE}"
                ),
                "invalid_uri",
            ));
        };
        let bytes = match self.sessions.get_file(&id, &path) {
            Ok(bytes) => bytes,
            Err(SessionError::NotFound(_)) => {
                return Err(not_found(
                    "no such session (it was closed, expired or never existed); create one \
                     with the create_session tool"
                        .to_string(),
                    "session_not_found",
                ));
            }
            Err(SessionError::File(FileError::Io(why))) => {
                tracing::error!("reading a session file: {why}");
                return Err(ErrorData::internal_error(
                    format!("workspace error: {why}"),
                    None,
                ));
            }
            Err(SessionError::File(err)) => return Err(not_found(err.to_string(), err.code())),
            Err(err) => {
                tracing::error!("reading a session file: {err}");
                return Err(ErrorData::internal_error(err.to_string(), None));
            }
        };
        let mime = mime_type(&path);
        let contents = match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => {
                ResourceContents::text(text, uri).with_mime_type(mime.unwrap_or("text/plain"))
            }
            Ok(text) => binary_contents(text.as_bytes(), uri, mime),
            Err(err) => binary_contents(err.as_bytes(), uri, mime),
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }
}

fn binary_contents(bytes: &[u8], uri: &str, mime: Option<&str>) -> ResourceContents {
    ResourceContents::blob(STANDARD.encode(bytes), uri)
        .with_mime_type(mime.unwrap_or("application/octet-stream"))
}

/// The one resource template: a session's file.
pub(super) fn file_template() -> ResourceTemplate {
    ResourceTemplate::new(FILE_TEMPLATE, "session-file")
        .with_title("A file in a session's /workspace")
        .with_description(
            "A file in the /workspace of a session (from create_session); path is relative \
             to /workspace, percent-encoded. Text files read as text, others as base64 \
             blobs. run_python links the files a call creates or changes; list_files lists \
             them all.",
        )
}

/// A stateless run's file, embedded in the result: text as text, the rest as base64.
pub(super) fn embedded_file(file: &FileOut, content: &str) -> ContentBlock {
    let uri = format!("omcp://run/files/{}", encode_path(&file.path));
    let mime = mime_type(&file.path);
    let contents = match file.encoding {
        Encoding::Utf8 => {
            ResourceContents::text(content, uri).with_mime_type(mime.unwrap_or("text/plain"))
        }
        Encoding::Base64 => ResourceContents::blob(content, uri)
            .with_mime_type(mime.unwrap_or("application/octet-stream")),
    };
    ContentBlock::resource(contents)
}

/// A link to a session's file.
fn file_link(uri: &str, path: &str, size: Option<u64>) -> ContentBlock {
    let mut resource = Resource::new(uri, path)
        .with_mime_type(mime_type(path).unwrap_or("application/octet-stream"))
        .with_description("A file in the session's /workspace (read it with resources/read)");
    if let Some(size) = size {
        resource = resource.with_size(size);
    }
    ContentBlock::resource_link(resource)
}

/// A successful result with `value` as its structured content: `text` first, then `blocks`.
fn structured<T: Serialize>(text: String, value: &T, blocks: Vec<ContentBlock>) -> CallToolResult {
    let mut content = vec![ContentBlock::text(text)];
    content.extend(blocks);
    let mut result = CallToolResult::success(content);
    result.structured_content = Some(serde_json::to_value(value).expect("the answer serializes"));
    result
}

fn file_failure(err: &FileError) -> Result<CallToolResult, ErrorData> {
    match err {
        FileError::Io(why) => {
            tracing::error!("workspace error: {why}");
            Err(ErrorData::internal_error(err.to_string(), None))
        }
        _ => Ok(failure(err.code(), &err.to_string())),
    }
}

/// A session operation that did not happen. What the model can act on (create a new
/// session, wait for a busy one, fix a path) is a tool error whose text starts with its
/// type; malformed requests, a server at its session cap (`-32000`, like a busy server)
/// and internal failures are JSON-RPC errors.
fn session_failure(err: SessionError) -> Result<CallToolResult, ErrorData> {
    let (kind, text) = match err {
        SessionError::NotFound(id) => (
            "session_not_found",
            format!(
                "no session {id:?}: it was closed, expired or never existed, and its variables \
                 and files are gone. Call create_session to start a new session and pass its \
                 session_id (or leave session_id out for a one-off run)."
            ),
        ),
        SessionError::Busy(_) => (
            "session_busy",
            "this session is running another call (one call at a time per session); wait \
             for it to finish, then retry"
                .to_string(),
        ),
        // At capacity, like a busy server: a JSON-RPC error the client can retry on.
        SessionError::TooMany(max) => {
            return Err(ErrorData::new(
                super::BUSY,
                format!(
                    "this server holds its maximum of {max} sessions; close one you no longer \
                     need with close_session, or retry later"
                ),
                Some(serde_json::json!({"type": "too_many_sessions"})),
            ));
        }
        err @ SessionError::Lost { .. } => (
            "session_lost",
            format!("{err}; call create_session to start a new session"),
        ),
        err @ SessionError::Unsaved { .. } => ("session_unsaved", err.to_string()),
        err @ SessionError::Incompatible { .. } => (
            "session_incompatible",
            format!("{err}; call create_session to start a new session"),
        ),
        SessionError::Unavailable(why) => ("sessions_unavailable", why),
        SessionError::Invalid(why) => return Err(ErrorData::invalid_params(why, None)),
        SessionError::File(file) | SessionError::Run(RunError::File(file)) => {
            return file_failure(&file);
        }
        SessionError::Run(run) => return Err(refusal(run)),
    };
    Ok(failure(kind, &text))
}

/// A duration for people: "30 min", "24 h", "90 s".
pub(super) fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `omcp://sessions/{id}/files/{path}`, the path percent-encoded.
fn file_uri(id: &str, path: &str) -> String {
    format!("{SESSION_PREFIX}{id}/files/{}", encode_path(path))
}

/// The session id and the (decoded) path of a file URI; `None` if it is not one.
fn parse_file_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix(SESSION_PREFIX)?;
    let (id, path) = rest.split_once("/files/")?;
    if id.is_empty() || id.contains('/') || path.is_empty() {
        return None;
    }
    Some((decode_percent(id)?, decode_percent(path)?))
}

/// Percent-encode everything but unreserved characters and `/`.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Undo percent-encoding; `None` for a bad escape or bytes that are not UTF-8.
fn decode_percent(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The MIME type a file's extension suggests, if it is a common one.
fn mime_type(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "txt" | "log" | "text" => "text/plain",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "md" | "markdown" => "text/markdown",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "py" => "text/x-python",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/jsonl",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "toml" => "application/toml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "parquet" => "application/vnd.apache.parquet",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_round_trip() {
        for path in ["out.txt", "data/in put.csv", "ü/100%.bin", "a?b#c"] {
            let uri = file_uri("abc123", path);
            assert!(
                !uri[SESSION_PREFIX.len()..].contains(['?', '#', ' ']),
                "{uri}"
            );
            assert_eq!(
                parse_file_uri(&uri),
                Some(("abc123".to_string(), path.to_string()))
            );
        }
        for bad in [
            "omcp://sessions/abc/files/",
            "omcp://sessions//files/x",
            "omcp://sessions/abc/other/x",
            "omcp://run/files/x",
            "omcp://sessions/abc/files/%zz",
            "omcp://sessions/abc/files/%ff",
            "omcp://sessions/abc/files/%+f",
        ] {
            assert_eq!(parse_file_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(span(1800), "30 min");
        assert_eq!(span(86400), "24 h");
        assert_eq!(span(90), "90 s");
    }

    #[test]
    fn mime_types_come_from_extensions() {
        assert_eq!(mime_type("a/b.CSV"), Some("text/csv"));
        assert_eq!(mime_type("plot.png"), Some("image/png"));
        assert_eq!(mime_type("noext"), None);
        assert_eq!(mime_type("dir.d/noext"), None);
    }
}
