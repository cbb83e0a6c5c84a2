//! Sessions and files over HTTP (the contract in the sessions design): state carried from
//! turn to turn, rollback of stopped turns, busy sessions, workspaces and their files,
//! hostile paths and symlinks, quotas, caps, expiry, suspension, restarts, corrupt
//! suspended state, forks. Real server, real sockets, real python.wasm.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{Server, repo};

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("bad base64 {text:?}: {e}"))
}

/// A request with an optional JSON body; returns the status and the parsed body (Null when
/// empty). Panics on a non-JSON, non-empty body.
async fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server
        .client
        .request(method.parse().unwrap(), server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} -> {status}: non-JSON body {text:?}: {e}"))
    };
    (status, value)
}

/// A typed JSON error of the contract's shape.
#[track_caller]
fn assert_error(status: u16, body: &Value, want_status: u16, want_type: &str) {
    assert_eq!(status, want_status, "expected {want_type}: {body}");
    assert_eq!(body["type"], want_type, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error message missing: {body}"
    );
}

#[track_caller]
fn assert_session_id(id: &str) {
    assert!(
        id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "session_id should be 32+ hex chars: {id:?}"
    );
}

/// POST /sessions; asserts 201 and returns the SessionInfo.
async fn create_info(server: &Server, body: Value) -> Value {
    let (status, info) = call(server, "POST", "/sessions", Some(body)).await;
    assert_eq!(status, 201, "create: {info}");
    assert_session_id(info["session_id"].as_str().expect("session_id"));
    info
}

/// POST /sessions with no options; returns the id.
async fn create(server: &Server) -> String {
    create_info(server, json!({})).await["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// POST /sessions/{id}/run with a full body; status and JSON.
async fn turn_json(server: &Server, id: &str, body: Value) -> (u16, Value) {
    call(server, "POST", &format!("/sessions/{id}/run"), Some(body)).await
}

/// A turn that must answer 200; returns the whole response.
async fn turn_with(server: &Server, id: &str, body: Value) -> Value {
    let (status, out) = turn_json(server, id, body).await;
    assert_eq!(status, 200, "turn: {out}");
    assert_eq!(out["session_id"], id, "{out}");
    out
}

async fn turn(server: &Server, id: &str, code: &str) -> Value {
    turn_with(server, id, json!({ "code": code })).await
}

/// A turn that must end normally (no error, not stopped, not rolled back); its result.
async fn eval(server: &Server, id: &str, code: &str) -> Value {
    let out = turn(server, id, code).await;
    assert_eq!(out["error"], Value::Null, "{code:?}: {out}");
    assert_eq!(out["stopped"], Value::Null, "{code:?}: {out}");
    assert_eq!(out["rolled_back"], false, "{code:?}: {out}");
    out["result"].clone()
}

async fn info(server: &Server, id: &str) -> (u16, Value) {
    call(server, "GET", &format!("/sessions/{id}"), None).await
}

async fn info_ok(server: &Server, id: &str) -> Value {
    let (status, body) = info(server, id).await;
    assert_eq!(status, 200, "GET /sessions/{id}: {body}");
    body
}

/// GET /sessions: the listed SessionInfos.
async fn list(server: &Server) -> Vec<Value> {
    let (status, body) = call(server, "GET", "/sessions", None).await;
    assert_eq!(status, 200, "{body}");
    body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {body}"))
        .clone()
}

/// The listed SessionInfo of `id`, if listed (listing does not count as using a session).
async fn listed(server: &Server, id: &str) -> Option<Value> {
    list(server)
        .await
        .into_iter()
        .find(|s| s["session_id"] == id)
}

async fn delete(server: &Server, id: &str) -> (u16, Value) {
    call(server, "DELETE", &format!("/sessions/{id}"), None).await
}

async fn put_file(server: &Server, id: &str, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = server
        .client
        .put(server.url(&format!("/sessions/{id}/files/{path}")))
        .body(bytes)
        .send()
        .await
        .expect("PUT failed");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("PUT {path}: {text:?}: {e}"));
    (status, value)
}

/// GET a workspace file: status, content type, raw bytes.
async fn get_file(server: &Server, id: &str, path: &str) -> (u16, String, Vec<u8>) {
    let response = server
        .client
        .get(server.url(&format!("/sessions/{id}/files/{path}")))
        .send()
        .await
        .expect("GET failed");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

/// GET /sessions/{id}/files: (path, size) of each listed file.
async fn list_files(server: &Server, id: &str) -> Vec<(String, u64)> {
    let (status, body) = call(server, "GET", &format!("/sessions/{id}/files"), None).await;
    assert_eq!(status, 200, "{body}");
    body["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files array: {body}"))
        .iter()
        .map(|f| {
            assert!(f["modified"].is_string(), "file without modified: {f}");
            (
                f["path"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Poll a condition every 200 ms until it holds; panics after `patience` (generous: this
/// waits for a background event, it does not time it). A macro, so the condition may borrow.
macro_rules! eventually {
    ($what:expr, $patience:expr, $check:expr) => {{
        let start = Instant::now();
        loop {
            if $check {
                break;
            }
            assert!(start.elapsed() < $patience, "never happened: {}", $what);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }};
}

/// A fresh directory under the target's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sessions-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every entry under `dir` (not following symlinks).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        out.push(path.clone());
        if is_dir {
            out.extend(walk(&path));
        }
    }
    out
}

/// SIGTERM the server (which suspends every session) and wait for it to exit.
async fn terminate(server: &mut Server) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "server exited with {exit:?} on SIGTERM");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Send a request byte for byte over a raw socket (no client-side URL normalisation:
/// `..` and `%2e%2e` reach the server as written). Reads while writing, so an early answer
/// to a large body is seen. Returns status and body bytes (de-chunked).
async fn raw_http(server: &Server, method: &str, target: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        body.len()
    );
    let write = async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
        let _ = writer.flush().await;
        writer
    };
    let read = async move {
        let mut response = Vec::new();
        let _ = reader.read_to_end(&mut response).await;
        response
    };
    let (_writer, response) = tokio::join!(write, read);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{method} {target}: no HTTP response: {:?}",
                String::from_utf8_lossy(&response)
            )
        });
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut payload = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut decoded = Vec::new();
        let mut rest = &payload[..];
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            rest = &rest[line_end + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            decoded.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        payload = decoded;
    }
    (status, payload)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::String(
        String::from_utf8_lossy(bytes).chars().take(300).collect(),
    ))
}

/// The `files` of a /run answer as path -> entry.
fn files_out(out: &Value) -> std::collections::BTreeMap<String, Value> {
    out["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files in answer: {out}"))
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

/// The content of one `files` entry, decoded by its encoding.
fn file_content(entry: &Value) -> Vec<u8> {
    let content = entry["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content: {entry}"));
    match entry["encoding"].as_str() {
        Some("utf-8") => content.as_bytes().to_vec(),
        Some("base64") => unb64(content),
        other => panic!("unknown encoding {other:?}: {entry}"),
    }
}

// ---------------------------------------------------------------------------------------
// 1. State across turns, and the session's lifecycle
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn state_carries_across_turns_and_delete_ends_the_session() {
    let server = Server::start();
    let created = create_info(&server, json!({})).await;
    let id = created["session_id"].as_str().unwrap().to_string();
    assert_eq!(created["runtime"], "stdlib", "{created}");
    assert_eq!(created["state"], "active", "{created}");
    assert_eq!(created["turns"], 0, "{created}");
    for field in ["created_at", "last_used_at", "expires_at"] {
        let stamp = created[field].as_str().unwrap_or_default();
        assert!(
            stamp.contains('T') && (stamp.ends_with('Z') || stamp.ends_with("+00:00")),
            "{field} not RFC 3339 UTC: {created}"
        );
    }
    assert!(created["idle_timeout_s"].as_u64().is_some(), "{created}");
    assert!(created["lifetime_s"].as_u64().is_some(), "{created}");

    let out = turn(&server, &id, "x = 1").await;
    assert_eq!(out["turn"], 1, "{out}");
    assert_eq!(out["rolled_back"], false, "{out}");
    let out = turn(&server, &id, "x += 1").await;
    assert_eq!(out["turn"], 2, "{out}");
    let out = turn(&server, &id, "def f(): return x*10").await;
    assert_eq!(out["turn"], 3, "{out}");
    let out = turn(&server, &id, "f()").await;
    assert_eq!(out["result"], 20, "{out}");
    assert_eq!(out["turn"], 4, "{out}");
    // Imports and output carry on too.
    let out = turn(&server, &id, "import math, json as j\nprint('hi')").await;
    assert_eq!(out["output"], "hi\n", "{out}");
    let out = turn(&server, &id, "[math.isqrt(81), j.dumps({'x': x})]").await;
    assert_eq!(out["result"], json!([9, "{\"x\": 2}"]), "{out}");
    assert_eq!(out["turn"], 6, "{out}");

    let shown = info_ok(&server, &id).await;
    assert_eq!(shown["session_id"], id.as_str());
    assert_eq!(shown["turns"], 6, "{shown}");
    assert_eq!(shown["state"], "active", "{shown}");
    assert!(shown["memory_bytes"].as_u64().is_some(), "{shown}");
    assert!(shown["workspace_bytes"].as_u64().is_some(), "{shown}");
    assert!(shown["workspace_files"].as_u64().is_some(), "{shown}");
    let entry = listed(&server, &id).await.expect("session not listed");
    assert_eq!(entry["turns"], 6, "{entry}");

    let (status, body) = delete(&server, &id).await;
    assert_eq!(status, 204, "{body}");
    for (status, body) in [
        info(&server, &id).await,
        turn_json(&server, &id, json!({"code": "x"})).await,
        delete(&server, &id).await,
    ] {
        assert_error(status, &body, 404, "session_not_found");
        assert!(
            body["error"].as_str().unwrap().contains("POST /sessions"),
            "the message should say to create a new session: {body}"
        );
    }
    assert!(listed(&server, &id).await.is_none());
    // A well-formed id that never existed.
    let (status, body) = info(&server, &"0".repeat(32)).await;
    assert_error(status, &body, 404, "session_not_found");
    server.assert_healthy().await;
}

#[tokio::test]
async fn session_requests_are_validated() {
    let server = Server::start();
    // Unknown fields on create -> 422.
    let (status, body) = call(&server, "POST", "/sessions", Some(json!({"nope": 1}))).await;
    assert_error(status, &body, 422, "invalid_request");
    let id = create(&server).await;
    // A turn may not reseed or switch runtime.
    let (status, body) = turn_json(&server, &id, json!({"code": "1", "seed": 3})).await;
    assert_error(status, &body, 422, "invalid_request");
    let (status, body) =
        turn_json(&server, &id, json!({"code": "1", "runtime": "scientific"})).await;
    assert_error(status, &body, 422, "invalid_request");
    // Naming its own runtime is fine; refused turns did not count.
    let out = turn_with(&server, &id, json!({"code": "6*7", "runtime": "stdlib"})).await;
    assert_eq!(out["result"], 42, "{out}");
    assert_eq!(out["turn"], 1, "{out}");
    // A seeded session is deterministic from its creation.
    let a = create_info(&server, json!({"seed": 7})).await;
    let b = create_info(&server, json!({"seed": 7})).await;
    let code = "import random\nrandom.random()";
    let ra = eval(&server, a["session_id"].as_str().unwrap(), code).await;
    let rb = eval(&server, b["session_id"].as_str().unwrap(), code).await;
    assert_eq!(ra, rb);
}

// ---------------------------------------------------------------------------------------
// 2. Isolation between sessions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn two_sessions_are_isolated() {
    let server = Server::start();
    let a = create(&server).await;
    let b = create(&server).await;
    assert_ne!(a, b);
    eval(
        &server,
        &a,
        "secret = 42\nopen('only_a.txt', 'w').write('a')\nimport os",
    )
    .await;
    assert_eq!(eval(&server, &a, "secret").await, 42);
    let out = turn(&server, &b, "secret").await;
    assert!(
        out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("NameError"),
        "{out}"
    );
    assert_eq!(out["rolled_back"], false, "{out}");
    let seen = eval(
        &server,
        &b,
        "import os\n[os.path.exists('only_a.txt'), os.path.exists('/workspace/only_a.txt'), sorted(os.listdir('.'))]",
    )
    .await;
    assert_eq!(seen, json!([false, false, []]), "b sees a's workspace");
    let (status, _, body) = get_file(&server, &b, "only_a.txt").await;
    assert_error(status, &json_of(&body), 404, "file_not_found");
    assert!(list_files(&server, &b).await.is_empty());
    assert_eq!(
        list_files(&server, &a).await,
        vec![("only_a.txt".into(), 1)]
    );
    // And the other way round.
    eval(&server, &b, "secret = 'b'").await;
    assert_eq!(eval(&server, &a, "secret").await, 42);
}

// ---------------------------------------------------------------------------------------
// 3. Rollback of stopped turns; 4. exceptions are not rolled back
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stopped_turns_roll_back_to_the_state_before_them() {
    let server = Server::start();
    let id = create(&server).await;
    eval(&server, &id, "n = 1\nkept = ['first']").await;
    // (what stops it, code, request extras, expected `stopped`)
    let stoppers: [(&str, &str, Value, &str); 5] = [
        (
            "timeout",
            "y = 5\nn = 1000\nkept.append('half')\nwhile True: pass",
            json!({"timeout_ms": 300}),
            "timeout",
        ),
        (
            "fuel",
            "y = 5\nn = 1000\nkept.append('half')\nwhile True: pass",
            json!({"fuel": 200_000_000u64}),
            "fuel",
        ),
        (
            "memory",
            "y = 5\nn = 1000\nkept.append('half')\nl = []\nwhile True: l.append('x' * 100000)",
            json!({"memory_mb": 64}),
            "memory",
        ),
        (
            "trap",
            "import os\ny = 5\nn = 1000\nkept.append('half')\nos.abort()",
            json!({}),
            "trap",
        ),
        (
            "exit",
            "import os\ny = 5\nn = 1000\nkept.append('half')\nos._exit(3)",
            json!({}),
            "exit",
        ),
    ];
    let mut expected_n = 1;
    let mut expected_turn = 1;
    for (name, code, extras, stopped) in stoppers {
        let mut body = extras.clone();
        body["code"] = json!(code);
        let out = turn_with(&server, &id, body).await;
        expected_turn += 1;
        assert_eq!(out["stopped"], stopped, "{name}: {out}");
        assert_eq!(out["rolled_back"], true, "{name}: {out}");
        assert_eq!(out["turn"], expected_turn, "{name}: {out}");
        // The state is the one from before the stopped turn: the last kept `n`, no `y`, no
        // half-appended list.
        let out = turn(
            &server,
            &id,
            "[n, 'y' in globals(), 'l' in globals(), kept]",
        )
        .await;
        expected_turn += 1;
        assert_eq!(out["rolled_back"], false, "{name}: {out}");
        assert_eq!(out["error"], Value::Null, "{name}: {out}");
        assert_eq!(
            out["result"],
            json!([expected_n, false, false, ["first"]]),
            "after {name}"
        );
        // A kept turn moves the state on; the next rollback goes back to it, not further.
        let out = turn(&server, &id, "n += 1").await;
        expected_turn += 1;
        assert_eq!(out["rolled_back"], false, "{name}: {out}");
        expected_n += 1;
    }
    assert_eq!(eval(&server, &id, "n").await, json!(expected_n));
    server.assert_healthy().await;
}

#[tokio::test]
async fn a_python_exception_is_not_a_rollback() {
    let server = Server::start();
    let id = create(&server).await;
    let out = turn(&server, &id, "a = 1\n1/0").await;
    assert!(
        out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ZeroDivisionError"),
        "{out}"
    );
    assert_eq!(out["rolled_back"], false, "{out}");
    assert_eq!(out["stopped"], Value::Null, "{out}");
    assert_eq!(eval(&server, &id, "a").await, 1);
    // A caught MemoryError is an ordinary turn too.
    let out = turn_with(
        &server,
        &id,
        json!({"code": "b = 2\ntry:\n    bytearray(10**9)\nexcept MemoryError:\n    r = 'survived'\nr", "memory_mb": 64}),
    )
    .await;
    assert_eq!(out["result"], "survived", "{out}");
    assert_eq!(out["rolled_back"], false, "{out}");
    assert_eq!(
        eval(&server, &id, "[a, b, r]").await,
        json!([1, 2, "survived"])
    );
}

// ---------------------------------------------------------------------------------------
// 5. One turn at a time
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_turn_while_one_runs_is_busy() {
    let server = Server::start();
    let id = create(&server).await;
    let long = turn_json(
        &server,
        &id,
        json!({"code": "import time\ntime.sleep(3)\n'done'", "timeout_ms": 60000}),
    );
    let probe = async {
        // Wait until the session says it is running, then knock.
        eventually!(
            "the session shows state running",
            Duration::from_secs(60),
            info_ok(&server, &id).await["state"] == "running"
        );
        turn_json(&server, &id, json!({"code": "'second'"})).await
    };
    let ((status, out), (probe_status, probe_body)) = tokio::join!(long, probe);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["result"], "done", "{out}");
    assert_eq!(out["turn"], 1, "{out}");
    assert_error(probe_status, &probe_body, 409, "session_busy");
    // The refused turn did not count; the session goes on.
    let out = turn(&server, &id, "'third'").await;
    assert_eq!(out["result"], "third", "{out}");
    assert_eq!(out["turn"], 2, "{out}");
    assert_eq!(info_ok(&server, &id).await["state"], "active");
}

// ---------------------------------------------------------------------------------------
// 6. Files
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn session_files_go_in_and_out() {
    let server = Server::start();
    let id = create(&server).await;
    let (status, body) = put_file(&server, &id, "data/in.txt", b"hello\nworld".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"path": "data/in.txt", "size": 11}));
    let seen = eval(
        &server,
        &id,
        "import os\n[os.getcwd(), open('data/in.txt').read(), open('/workspace/data/in.txt').read()]",
    )
    .await;
    assert_eq!(seen, json!(["/workspace", "hello\nworld", "hello\nworld"]));

    // A turn writes a file: it shows in the listing and on GET.
    let out = turn(
        &server,
        &id,
        "import csv\nwith open('out.csv', 'w', newline='') as f:\n    csv.writer(f).writerows([['a', 'b'], [1, 2]])",
    )
    .await;
    assert_eq!(out["error"], Value::Null, "{out}");
    let csv = b"a,b\r\n1,2\r\n".to_vec();
    let listing: BTreeSet<_> = list_files(&server, &id).await.into_iter().collect();
    assert_eq!(
        listing,
        BTreeSet::from([("data/in.txt".to_string(), 11), ("out.csv".to_string(), 10)])
    );
    let (status, content_type, bytes) = get_file(&server, &id, "out.csv").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/octet-stream"),
        "{content_type}"
    );
    assert_eq!(bytes, csv);

    // Binary in through a turn's `files` (base64), out through GET, exact.
    let all: Vec<u8> = (0..=255u8).collect();
    let out = turn_with(
        &server,
        &id,
        json!({"code": "d = open('bin.dat', 'rb').read()\nlist(d) == list(range(256))",
               "files": [{"path": "bin.dat", "content": b64(&all), "encoding": "base64"}]}),
    )
    .await;
    assert_eq!(out["result"], true, "{out}");
    let (status, _, bytes) = get_file(&server, &id, "bin.dat").await;
    assert_eq!(status, 200);
    assert_eq!(bytes, all);
    // Binary in through PUT, binary written by the guest out through GET.
    let (status, body) = put_file(&server, &id, "raw.bin", all.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], 256);
    let out = turn(
        &server,
        &id,
        "d = open('raw.bin', 'rb').read()\nopen('rev.bin', 'wb').write(d[::-1])\nlen(d)",
    )
    .await;
    assert_eq!(out["result"], 256, "{out}");
    let reversed: Vec<u8> = all.iter().rev().copied().collect();
    let (_, _, bytes) = get_file(&server, &id, "rev.bin").await;
    assert_eq!(bytes, reversed);
    // Bad base64 is refused.
    let (status, body) = turn_json(
        &server,
        &id,
        json!({"code": "1", "files": [{"path": "x.bin", "content": "!!!not base64", "encoding": "base64"}]}),
    )
    .await;
    assert_error(status, &body, 400, "invalid_content");

    // A directory is not a file; a missing file is file_not_found.
    let (status, _, body) = get_file(&server, &id, "data").await;
    assert_error(status, &json_of(&body), 409, "not_a_file");
    let (status, _, body) = get_file(&server, &id, "nope.txt").await;
    assert_error(status, &json_of(&body), 404, "file_not_found");

    // DELETE a file: 204, then it is gone for the client and the guest.
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("/sessions/{id}/files/out.csv"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = get_file(&server, &id, "out.csv").await;
    assert_error(status, &json_of(&body), 404, "file_not_found");
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("/sessions/{id}/files/out.csv"),
        None,
    )
    .await;
    assert_error(status, &body, 404, "file_not_found");
    assert_eq!(
        eval(&server, &id, "import os\nos.path.exists('out.csv')").await,
        false
    );
    assert!(
        !list_files(&server, &id)
            .await
            .iter()
            .any(|(p, _)| p == "out.csv")
    );
    // The file endpoints of an unknown session.
    let ghost = "f".repeat(32);
    let (status, body) = put_file(&server, &ghost, "a.txt", b"a".to_vec()).await;
    assert_error(status, &body, 404, "session_not_found");
    let (status, body) = call(&server, "GET", &format!("/sessions/{ghost}/files"), None).await;
    assert_error(status, &body, 404, "session_not_found");
    // Files given at creation.
    let created = create_info(
        &server,
        json!({"files": [{"path": "seed.txt", "content": "seeded"}]}),
    )
    .await;
    let other = created["session_id"].as_str().unwrap();
    assert_eq!(
        eval(&server, other, "open('seed.txt').read()").await,
        "seeded"
    );
}

/// The contract: a turn answers "the /run response plus session_id, turn, rolled_back", and
/// the /run response carries `files` (created or changed, with content).
#[tokio::test]
async fn session_turns_return_the_files_they_changed() {
    let server = Server::start();
    let id = create(&server).await;
    let (status, body) = put_file(&server, &id, "untouched.txt", b"same".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    let out = turn(
        &server,
        &id,
        "open('out.csv', 'w').write('a,b\\n')\nopen('rev.bin', 'wb').write(bytes([255, 0, 7]))",
    )
    .await;
    assert_eq!(out["error"], Value::Null, "{out}");
    let files = files_out(&out);
    let paths: BTreeSet<_> = files.keys().cloned().collect();
    assert_eq!(
        paths,
        BTreeSet::from(["out.csv".to_string(), "rev.bin".to_string()]),
        "{out}"
    );
    assert_eq!(files["out.csv"]["encoding"], "utf-8", "{out}");
    assert_eq!(file_content(&files["out.csv"]), b"a,b\n");
    assert_eq!(files["rev.bin"]["encoding"], "base64", "{out}");
    assert_eq!(file_content(&files["rev.bin"]), [255, 0, 7]);
    assert_eq!(files["rev.bin"]["size"], 3, "{out}");
}

#[tokio::test]
async fn stateless_runs_take_and_return_files() {
    let server = Server::start();
    let out = server
        .run_with(json!({
            "code": "import os\nt = open('in.txt', encoding='utf-8').read()\nr = open('raw.bin', 'rb').read()\n\
                     open('in.txt', 'a', encoding='utf-8').write('!')\n\
                     open('new.txt', 'w', encoding='utf-8').write('créé')\n\
                     open('new.bin', 'wb').write(bytes([0, 255, 128, 10]))\n\
                     open('/tmp/scratch.txt', 'w').write('tmp is writable')\n\
                     [t, list(r), os.getcwd()]",
            "files": [
                {"path": "in.txt", "content": "héllo"},
                {"path": "raw.bin", "content": b64(&[0, 255, 1]), "encoding": "base64"},
                {"path": "untouched.txt", "content": "same", "encoding": "utf-8"},
            ],
        }))
        .await;
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["result"], json!(["héllo", [0, 255, 1], "/workspace"]));
    let files = files_out(&out);
    let paths: BTreeSet<_> = files.keys().cloned().collect();
    assert_eq!(
        paths,
        BTreeSet::from(["in.txt".into(), "new.bin".into(), "new.txt".into()]),
        "created and changed files only: {out}"
    );
    assert_eq!(files["in.txt"]["encoding"], "utf-8");
    assert_eq!(file_content(&files["in.txt"]), "héllo!".as_bytes());
    assert_eq!(files["new.txt"]["encoding"], "utf-8");
    assert_eq!(file_content(&files["new.txt"]), "créé".as_bytes());
    assert_eq!(files["new.txt"]["size"], "créé".len());
    assert_eq!(files["new.bin"]["encoding"], "base64");
    assert_eq!(file_content(&files["new.bin"]), [0, 255, 128, 10]);
    assert_eq!(files["new.bin"]["size"], 4);
    // Stateless: the next run starts from an empty workspace.
    let out = server.run("import os\nos.listdir('.')").await;
    assert_eq!(out["result"], json!([]), "{out}");
    assert!(
        out.get("files").is_none_or(|f| f == &json!([])),
        "a run that wrote nothing returns files: {out}"
    );
    // Past the byte budget (1 MiB by default) a file is listed without content.
    let out = server
        .run("open('big.txt', 'w').write('z' * (2 * 1024 * 1024))")
        .await;
    let files = files_out(&out);
    let big = &files["big.txt"];
    assert_eq!(big["size"], 2 * 1024 * 1024, "{big}");
    assert_eq!(big["omitted"], true, "{big}");
    assert!(big.get("content").is_none_or(Value::is_null), "{big}");
    // A symlink the guest makes is not followed when files come back.
    let out = server
        .run("import os\ntry:\n    os.symlink('/etc/passwd', 'p')\nexcept OSError:\n    pass\n'ok'")
        .await;
    assert!(!out["files"].to_string().contains("root:"), "{out}");
    assert!(
        !out["files"].to_string().contains(&b64(b"root:")[..4]),
        "{out}"
    );
    // Bad base64 is refused.
    let (status, body) = server
        .run_json(
            json!({"code": "1", "files": [{"path": "x", "content": "%%%", "encoding": "base64"}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_content");
}

// ---------------------------------------------------------------------------------------
// 7. Hostile paths and symlinks
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "omcphostiletok";

/// Paths written into URLs as is (percent-encoding included), each of which must be refused.
fn hostile_url_paths() -> Vec<String> {
    vec![
        "..".into(),
        format!("../{TOKEN}"),
        format!("../../../../../../../../{TOKEN}"),
        "../../../../../../../../etc/passwd".into(),
        "%2e%2e".into(),
        format!("%2e%2e/{TOKEN}"),
        format!("%2E%2E/%2e%2e/%2e%2e/{TOKEN}"),
        format!(".%2e/{TOKEN}"),
        format!("%2e%2e%2f{TOKEN}"),
        format!("a/../../{TOKEN}"),
        format!("a/%2e%2e/%2e%2e/{TOKEN}"),
        format!("%2fetc%2f{TOKEN}"),
        "%2fetc%2fpasswd".into(),
        format!("a%00b{TOKEN}"),
        format!("a%5c..%5c{TOKEN}"),
        format!("./{TOKEN}"),
        format!("a%01{TOKEN}"),
        "x".repeat(10 * 1024),
        format!("{}/{TOKEN}", "d".repeat(300)),
    ]
}

/// Paths given in JSON `files`, each of which must be refused.
fn hostile_json_paths() -> Vec<String> {
    vec![
        "..".into(),
        format!("../{TOKEN}"),
        format!("../../../../../../../../{TOKEN}"),
        "/etc/passwd".into(),
        format!("/tmp/{TOKEN}"),
        format!("/workspace/../{TOKEN}"),
        format!("a\u{0}b{TOKEN}"),
        "x".repeat(10 * 1024),
        format!("a/../../{TOKEN}"),
        format!("%2e%2e/{TOKEN}"),
        format!("a\\..\\{TOKEN}"),
        String::new(),
        ".".into(),
        format!("./{TOKEN}"),
        format!("a//{TOKEN}"),
        format!("a\u{1}{TOKEN}"),
        format!("{}/{TOKEN}", "d".repeat(300)),
    ]
}

/// A refused path: 400 invalid_path, or a 404 from a route that cannot match; never 2xx.
#[track_caller]
fn assert_refused_path(what: &str, status: u16, body: &[u8]) {
    let value = json_of(body);
    let ok = (status == 400 && value["type"] == "invalid_path")
        || (status == 404 && value["type"] == "not_found");
    assert!(
        ok,
        "{what}: expected 400 invalid_path, got {status} {value}"
    );
}

/// No file named with TOKEN anywhere it could have escaped to.
fn assert_no_token_outside(root: &Path) {
    let mut places: Vec<PathBuf> = walk(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(TOKEN))
        .collect();
    let mut dir = Some(root);
    while let Some(d) = dir {
        let candidate = d.join(TOKEN);
        if std::fs::symlink_metadata(&candidate).is_ok() {
            places.push(candidate);
        }
        dir = d.parent();
    }
    for extra in [repo().join(TOKEN), PathBuf::from("/etc").join(TOKEN)] {
        if std::fs::symlink_metadata(&extra).is_ok() {
            places.push(extra);
        }
    }
    assert!(
        places.is_empty(),
        "files written from hostile paths: {places:?}"
    );
}

#[tokio::test]
async fn hostile_paths_are_refused_on_every_file_endpoint() {
    let root = TempDir::new("hostile");
    let session_dir = root.path().join("sessions");
    let server = Server::start_with(&["--session-dir", session_dir.to_str().unwrap()]);
    let id = create(&server).await;
    eval(&server, &id, "ran = 0").await;

    for path in hostile_url_paths() {
        let short: String = path.chars().take(60).collect();
        let target = format!("/sessions/{id}/files/{path}");
        let (status, body) = raw_http(&server, "PUT", &target, TOKEN.as_bytes().to_vec()).await;
        assert_refused_path(&format!("PUT {short}"), status, &body);
        let (status, body) = raw_http(&server, "GET", &target, vec![]).await;
        assert_refused_path(&format!("GET {short}"), status, &body);
        assert!(
            !String::from_utf8_lossy(&body).contains("root:"),
            "GET {short} returned a host file"
        );
        let (status, body) = raw_http(&server, "DELETE", &target, vec![]).await;
        assert_refused_path(&format!("DELETE {short}"), status, &body);
    }

    let before = list(&server).await.len();
    for path in hostile_json_paths() {
        let short: String = path.chars().take(60).collect();
        let file = json!([{"path": path, "content": TOKEN}]);
        let (status, body) = server
            .run_json(json!({"code": "'ran'", "files": file}))
            .await;
        assert_error(status, &body, 400, "invalid_path");
        let (status, body) =
            turn_json(&server, &id, json!({"code": "ran += 1", "files": file})).await;
        assert!(
            status == 400 && body["type"] == "invalid_path",
            "session run with {short:?}: {status} {body}"
        );
        let (status, body) = call(&server, "POST", "/sessions", Some(json!({"files": file}))).await;
        assert!(
            status == 400 && body["type"] == "invalid_path",
            "create with {short:?}: {status} {body}"
        );
    }
    // Nothing ran, nothing was created, nothing was written.
    assert_eq!(eval(&server, &id, "ran").await, 0);
    assert_eq!(info_ok(&server, &id).await["turns"], 2);
    assert_eq!(list(&server).await.len(), before);
    assert!(list_files(&server, &id).await.is_empty());
    assert_no_token_outside(root.path());
    server.assert_healthy().await;
}

#[tokio::test]
async fn symlinks_in_a_workspace_are_never_followed_by_the_host() {
    let root = TempDir::new("symlinks");
    let session_dir = root.path().join("sessions");
    let host = root.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret.txt"), "TOP-SECRET-HOST").unwrap();
    let server = Server::start_with(&["--session-dir", session_dir.to_str().unwrap()]);
    let id = create(&server).await;
    let probe = "probe-symlink-test.txt".to_string();
    let (status, body) = put_file(&server, &id, &probe, b"probe".to_vec()).await;
    assert_eq!(status, 201, "{body}");

    // The guest tries to plant links (WASI may refuse some: fine).
    let code = format!(
        "import os\nmade = []\nfor target, name in [('/etc', 'etc_link'), ('..', 'up'), ({host:?}, 'host_link'), \
         ('/etc/passwd', 'passwd_link'), ({secret:?}, 'secret_link')]:\n    try:\n        os.symlink(target, name)\n        made.append(name)\n    except OSError:\n        pass\nmade",
        host = host.to_str().unwrap(),
        secret = host.join("secret.txt").to_str().unwrap(),
    );
    let made: Vec<String> = serde_json::from_value(eval(&server, &id, &code).await).unwrap();
    let mut links: Vec<String> = made.clone();
    // Links planted on the host side, straight into the workspace directory (found by the
    // probe file), as a buggy or hostile guest runtime could leave them.
    let workspace = walk(&session_dir)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == probe.as_str()))
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(ws) = &workspace {
        use std::os::unix::fs::symlink;
        for (target, name) in [
            (PathBuf::from("/etc"), "h_etc"),
            (PathBuf::from(".."), "h_up"),
            (host.clone(), "h_host"),
            (PathBuf::from("/etc/passwd"), "h_passwd"),
            (host.join("secret.txt"), "h_secret"),
        ] {
            symlink(&target, ws.join(name)).unwrap();
            links.push(name.to_string());
        }
    } else {
        eprintln!("note: no workspace directory found under {session_dir:?}; guest links only");
    }
    eprintln!("links tried: {links:?}");

    let mut reads = vec![];
    for link in &links {
        reads.push(link.clone());
        for leaf in ["passwd", "secret.txt", "hosts", &probe] {
            reads.push(format!("{link}/{leaf}"));
        }
    }
    // Whatever sits next to the workspace on the host, reached through `..` links.
    if let Some(ws) = &workspace
        && let Some(parent) = ws.parent()
    {
        for entry in std::fs::read_dir(parent).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            reads.push(format!("h_up/{name}"));
            if made.iter().any(|m| m == "up") {
                reads.push(format!("up/{name}"));
            }
        }
    }
    for path in &reads {
        let (status, _, body) = get_file(&server, &id, path).await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            (400..500).contains(&status),
            "GET {path} through a symlink: {status} {:?}",
            text.chars().take(200).collect::<String>()
        );
        assert!(
            !text.contains("root:") && !text.contains("TOP-SECRET"),
            "GET {path}: {text}"
        );
    }
    // Writes and deletes through links do not reach the host.
    for link in links
        .iter()
        .filter(|l| !l.contains("etc") && !l.contains("passwd"))
    {
        let (status, body) =
            put_file(&server, &id, &format!("{link}/{TOKEN}"), b"x".to_vec()).await;
        assert!(
            (400..500).contains(&status),
            "PUT through {link}: {status} {body}"
        );
        let (status, body) = call(
            &server,
            "DELETE",
            &format!("/sessions/{id}/files/{link}/secret.txt"),
            None,
        )
        .await;
        assert!(
            (400..500).contains(&status),
            "DELETE through {link}: {status} {body}"
        );
    }
    // Deleting or overwriting a link itself touches the link at most, never its target.
    for link in ["secret_link", "h_secret"] {
        if links.iter().any(|l| l == link) {
            let (status, body) = put_file(&server, &id, link, b"overwritten".to_vec()).await;
            assert!(
                status == 201 || (400..500).contains(&status),
                "{status} {body}"
            );
        }
    }
    for link in ["host_link", "h_host"] {
        if links.iter().any(|l| l == link) {
            let (status, body) = call(
                &server,
                "DELETE",
                &format!("/sessions/{id}/files/{link}"),
                None,
            )
            .await;
            assert!(
                status == 204 || (400..500).contains(&status),
                "{status} {body}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(host.join("secret.txt")).unwrap(),
        "TOP-SECRET-HOST"
    );
    assert!(!host.join(TOKEN).exists());
    assert!(
        std::fs::read_dir(&host).unwrap().count() == 1,
        "the host directory changed"
    );
    // The listing does not descend into links.
    for (path, _) in list_files(&server, &id).await {
        assert!(
            !links.iter().any(|l| path.starts_with(&format!("{l}/"))),
            "listed through a link: {path}"
        );
    }
    // Nor can the guest read through them.
    let out = turn(
        &server,
        &id,
        "out = []\nfor p in ['etc_link/passwd', 'h_etc/passwd', 'h_passwd', 'passwd_link', 'host_link/secret.txt', 'h_secret', 'h_host/secret.txt']:\n    try:\n        out.append(open(p).read()[:20])\n    except OSError:\n        pass\nout",
    )
    .await;
    let text = out["result"].to_string();
    assert!(
        !text.contains("root:") && !text.contains("TOP-SECRET"),
        "{out}"
    );
    assert_no_token_outside(root.path());
    server.assert_healthy().await;
}

// ---------------------------------------------------------------------------------------
// 8. Workspace quota and upload size
// ---------------------------------------------------------------------------------------

const FILL_10MB: &str = "import errno\nerr = None\nwritten = 0\ntry:\n    with open(PATH, 'wb', buffering=0) as f:\n\
    \x20       while written < 10 * 1024 * 1024:\n            written += f.write(b'x' * 65536)\n\
    except OSError as e:\n    err = e.errno\n[err == errno.ENOSPC, err, written]";

#[tokio::test]
async fn the_workspace_quota_holds() {
    let server = Server::start_with(&["--scratch-mb", "1"]);
    let id = create(&server).await;
    let out = turn(&server, &id, &FILL_10MB.replace("PATH", "'big.bin'")).await;
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["rolled_back"], false, "{out}");
    assert_eq!(out["result"][0], true, "ENOSPC expected: {out}");
    assert!(out["result"][2].as_u64().unwrap() <= 1 << 20, "{out}");
    let shown = info_ok(&server, &id).await;
    let used = shown["workspace_bytes"].as_u64().unwrap();
    assert!(
        used <= 1 << 20,
        "workspace_bytes {used} over the 1 MiB quota: {shown}"
    );
    // The session goes on (an OSError is no rollback); freeing space frees the quota.
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("/sessions/{id}/files/big.bin"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // /tmp shares the budget.
    let out = turn(&server, &id, &FILL_10MB.replace("PATH", "'/tmp/big.bin'")).await;
    assert_eq!(out["result"][0], true, "ENOSPC expected in /tmp: {out}");
    assert!(out["result"][2].as_u64().unwrap() <= 1 << 20, "{out}");
    let shown = info_ok(&server, &id).await;
    assert!(
        shown["workspace_bytes"].as_u64().unwrap() <= 1 << 20,
        "{shown}"
    );
    eval(
        &server,
        &id,
        "import os
if os.path.exists('/tmp/big.bin'): os.remove('/tmp/big.bin')",
    )
    .await;
    // Uploads count against the same quota.
    let (status, body) = put_file(&server, &id, "a.bin", vec![1; 700 * 1024]).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_file(&server, &id, "b.bin", vec![2; 700 * 1024]).await;
    assert_error(status, &body, 507, "workspace_full");
    let shown = info_ok(&server, &id).await;
    assert!(
        shown["workspace_bytes"].as_u64().unwrap() <= 1 << 20,
        "{shown}"
    );
    assert_eq!(shown["workspace_files"], 1, "{shown}");
    // Stateless runs have the same quota.
    let out = server.run(&FILL_10MB.replace("PATH", "'big.bin'")).await;
    assert_eq!(out["result"][0], true, "ENOSPC expected in /run: {out}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn uploads_over_the_size_limit_are_refused() {
    let server = Server::start_with(&["--max-upload-mb", "1"]);
    let id = create(&server).await;
    let (status, body) = raw_http(
        &server,
        "PUT",
        &format!("/sessions/{id}/files/huge.bin"),
        vec![0; 2 * 1024 * 1024],
    )
    .await;
    assert_error(status, &json_of(&body), 413, "too_large");
    assert!(
        !list_files(&server, &id)
            .await
            .iter()
            .any(|(p, _)| p == "huge.bin")
    );
    let (status, body) = put_file(&server, &id, "ok.bin", vec![0; 512 * 1024]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], 512 * 1024);
    server.assert_healthy().await;
}

#[tokio::test]
async fn workspace_file_count_is_capped_for_uploads() {
    let server = Server::start_with(&["--workspace-max-files", "5"]);
    let id = create(&server).await;
    for i in 0..5 {
        let (status, body) = put_file(&server, &id, &format!("f{i}.txt"), b"x".to_vec()).await;
        assert_eq!(status, 201, "{body}");
    }
    // Replacing a file adds none.
    let (status, body) = put_file(&server, &id, "f0.txt", b"yy".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put_file(&server, &id, "extra.txt", b"x".to_vec()).await;
    assert_error(status, &body, 507, "workspace_full");
    let (status, body) = turn_json(
        &server,
        &id,
        json!({"code": "1", "files": [{"path": "extra2.txt", "content": "x"}]}),
    )
    .await;
    assert_error(status, &body, 507, "workspace_full");
    assert_eq!(info_ok(&server, &id).await["workspace_files"], 5);
    // A stateless run sending more files than a workspace holds.
    let many: Vec<Value> = (0..6)
        .map(|i| json!({"path": format!("m{i}"), "content": "x"}))
        .collect();
    let (status, body) = server.run_json(json!({"code": "1", "files": many})).await;
    assert_error(status, &body, 507, "workspace_full");
}

// ---------------------------------------------------------------------------------------
// 9. Session cap
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sessions_beyond_the_cap_are_refused() {
    let server = Server::start_with(&["--max-sessions", "2"]);
    let a = create(&server).await;
    let _b = create(&server).await;
    let (status, body) = call(&server, "POST", "/sessions", Some(json!({}))).await;
    assert_error(status, &body, 503, "too_many_sessions");
    let (status, body) = call(&server, "POST", &format!("/sessions/{a}/fork"), None).await;
    assert_error(status, &body, 503, "too_many_sessions");
    assert_eq!(list(&server).await.len(), 2);
    // Stateless runs are not affected.
    server.assert_healthy().await;
    let (status, _) = delete(&server, &a).await;
    assert_eq!(status, 204);
    let c = create(&server).await;
    assert_eq!(eval(&server, &c, "1 + 1").await, 2);
}

// ---------------------------------------------------------------------------------------
// 10. Idle expiry and lifetime
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn idle_sessions_expire_with_their_files() {
    let dir = TempDir::new("idle");
    let server = Server::start_with(&["--session-idle-timeout", "2", "--session-dir", dir.str()]);
    let capped = create_info(&server, json!({"idle_timeout_s": 100000})).await;
    assert_eq!(
        capped["idle_timeout_s"], 2,
        "not capped at the server's: {capped}"
    );
    let id = create(&server).await;
    assert_eq!(info_ok(&server, &id).await["idle_timeout_s"], 2);
    eval(&server, &id, "x = 1").await;
    let marker = format!("idle-{TOKEN}.txt");
    let (status, body) = put_file(&server, &id, &marker, b"m".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    let on_disk = |dir: &Path| {
        walk(dir)
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == marker.as_str()))
    };
    // Left alone (listing does not use it), it goes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    eventually!("the idle session expires", Duration::from_secs(60), {
        listed(&server, &id).await.is_none()
    });
    let (status, body) = info(&server, &id).await;
    assert_error(status, &body, 404, "session_not_found");
    let (status, body) = turn_json(&server, &id, json!({"code": "x"})).await;
    assert_error(status, &body, 404, "session_not_found");
    assert!(
        body["error"].as_str().unwrap().contains("POST /sessions"),
        "{body}"
    );
    eventually!("its files are removed", Duration::from_secs(30), {
        !on_disk(dir.path())
    });
    server.assert_healthy().await;
}

#[tokio::test]
async fn sessions_end_at_their_lifetime_even_when_used() {
    let server = Server::start_with(&["--session-lifetime", "3"]);
    let id = create(&server).await;
    assert_eq!(info_ok(&server, &id).await["lifetime_s"], 3);
    let start = Instant::now();
    let mut kept = 0;
    loop {
        let (status, body) = turn_json(&server, &id, json!({"code": "1"})).await;
        if status == 404 {
            assert_error(status, &body, 404, "session_not_found");
            break;
        }
        assert_eq!(status, 200, "{body}");
        kept += 1;
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the session outlived its lifetime ({kept} turns)"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(kept >= 1);
    let (status, body) = info(&server, &id).await;
    assert_error(status, &body, 404, "session_not_found");
}

// ---------------------------------------------------------------------------------------
// 11. Suspend and resume
// ---------------------------------------------------------------------------------------

const BIG_STATE: &str = "import json, collections\nbig = list(range(200000))\nd = {str(i): [i, i * i] for i in range(5000)}\n\
    c = collections.Counter('mississippi')\ndef g(k): return d[str(k)][1] + big[-1]\n\
    open('kept.txt', 'w').write('kept across')";
const BIG_CHECK: &str =
    "[sum(big), len(d), d['4999'], c['s'], g(3), open('kept.txt').read(), json.dumps([1])]";

fn big_expected() -> Value {
    json!([
        19999900000u64,
        5000,
        [4999, 24990001],
        4,
        200008,
        "kept across",
        "[1]"
    ])
}

#[tokio::test]
async fn idle_sessions_suspend_and_resume_intact() {
    let server = Server::start_with(&["--session-suspend-after", "1"]);
    let id = create(&server).await;
    eval(&server, &id, BIG_STATE).await;
    eventually!("the session is suspended", Duration::from_secs(60), {
        listed(&server, &id)
            .await
            .is_some_and(|s| s["state"] == "suspended")
    });
    assert_eq!(info_ok(&server, &id).await["state"], "suspended");
    let (status, _, bytes) = get_file(&server, &id, "kept.txt").await;
    assert_eq!((status, bytes), (200, b"kept across".to_vec()));
    let out = turn(&server, &id, BIG_CHECK).await;
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["result"], big_expected(), "{out}");
    assert_eq!(out["turn"], 2, "{out}");
    assert_eq!(out["rolled_back"], false, "{out}");
    let state = info_ok(&server, &id).await["state"].clone();
    assert!(state == "active" || state == "suspended", "{state}");
    // It suspends again and resumes again (twice in a row is not a special case).
    eval(&server, &id, "big.append(-1)").await;
    eventually!("suspended again", Duration::from_secs(60), {
        listed(&server, &id)
            .await
            .is_some_and(|s| s["state"] == "suspended")
    });
    assert_eq!(
        eval(&server, &id, "[big[-1], len(big)]").await,
        json!([-1, 200001])
    );
    assert_eq!(info_ok(&server, &id).await["turns"], 4);
}

/// Past `--sessions-memory-mb`, the least recently used idle session is suspended (not the
/// one just used), and resumes intact.
#[tokio::test]
async fn the_memory_budget_suspends_the_least_recently_used_session() {
    let server = Server::start_with(&["--sessions-memory-mb", "6"]);
    let older = create(&server).await;
    let newer = create(&server).await;
    // ~4 MiB written in each: together past the budget.
    let fill = "data = bytes(range(256)) * 16384\nlen(data)";
    assert_eq!(eval(&server, &older, fill).await, json!(4194304));
    assert_eq!(info_ok(&server, &older).await["state"], "active");
    assert_eq!(eval(&server, &newer, fill).await, json!(4194304));
    assert_eq!(info_ok(&server, &older).await["state"], "suspended");
    assert_eq!(info_ok(&server, &newer).await["state"], "active");
    assert_eq!(
        eval(&server, &older, "[len(data), data[-1]]").await,
        json!([4194304, 255])
    );
}

#[tokio::test]
async fn scientific_state_survives_turns_and_suspension() {
    let server = Server::scientific(&["--session-suspend-after", "1"]);
    let created = create_info(&server, json!({"runtime": "scientific"})).await;
    assert_eq!(created["runtime"], "scientific", "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    eval(
        &server,
        &id,
        "import numpy as np, pandas as pd\narr = np.arange(10) * 2\n\
         df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})",
    )
    .await;
    let check =
        "[int(arr.sum()), arr.dtype.kind, int(df['a'].sum()), list(df['b']), list(df.columns)[:2]]";
    let expected = json!([90, "i", 6, ["x", "y", "z"], ["a", "b"]]);
    assert_eq!(eval(&server, &id, check).await, expected);
    eval(&server, &id, "df['c'] = df['a'] * arr[:3]").await;
    eventually!("the session is suspended", Duration::from_secs(120), {
        listed(&server, &id)
            .await
            .is_some_and(|s| s["state"] == "suspended")
    });
    assert_eq!(eval(&server, &id, check).await, expected);
    assert_eq!(
        eval(&server, &id, "[int(v) for v in df['c']]").await,
        json!([0, 4, 12])
    );
    assert_eq!(
        eval(&server, &id, "float(np.linalg.norm(arr.astype(float)))")
            .await
            .as_f64()
            .map(|v| (v * 1000.0).round()),
        Some((2.0f64 * (285f64).sqrt() * 1000.0).round())
    );
}

// ---------------------------------------------------------------------------------------
// 12. Restart survival; 13. corrupt suspended state
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sessions_survive_a_restart_on_the_same_session_dir() {
    let dir = TempDir::new("restart");
    let mut first = Server::start_with(&["--session-dir", dir.str()]);
    let id = create(&first).await;
    eval(&first, &id, BIG_STATE).await;
    let (status, body) = put_file(&first, &id, "up.bin", vec![7, 0, 7]).await;
    assert_eq!(status, 201, "{body}");
    terminate(&mut first).await;
    drop(first);

    let second = Server::start_with(&["--session-dir", dir.str()]);
    let shown = info_ok(&second, &id).await;
    assert_eq!(shown["turns"], 1, "{shown}");
    assert!(listed(&second, &id).await.is_some());
    let (status, _, bytes) = get_file(&second, &id, "up.bin").await;
    assert_eq!((status, bytes), (200, vec![7, 0, 7]));
    let out = turn(&second, &id, BIG_CHECK).await;
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["result"], big_expected(), "{out}");
    assert_eq!(out["turn"], 2, "{out}");
    assert_eq!(
        eval(&second, &id, "list(open('up.bin', 'rb').read())").await,
        json!([7, 0, 7])
    );
}

/// SIGKILL gives no chance to suspend. A session the killed server had resumed from disk
/// (its file is older than what its client saw) and one it never suspended are refused as
/// `session_lost` by the next server, every time, never rewound; one that stayed suspended
/// the whole time resumes with its state.
#[tokio::test]
async fn sessions_a_killed_server_held_are_lost_not_rewound() {
    let dir = TempDir::new("sigkill");
    let mut first = Server::start_with(&["--session-dir", dir.str()]);
    let (resumed, untouched) = (create(&first).await, create(&first).await);
    assert_eq!(eval(&first, &resumed, "n = 1\nn").await, 1);
    assert_eq!(eval(&first, &untouched, "m = 10\nm").await, 10);
    terminate(&mut first).await;
    drop(first);

    let mut second = Server::start_with(&["--session-dir", dir.str()]);
    // Resumed from its file, then moved on past it.
    assert_eq!(eval(&second, &resumed, "n += 1\nn").await, 2);
    let fresh = create(&second).await;
    assert_eq!(eval(&second, &fresh, "k = 5\nk").await, 5);
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    drop(second);

    let third = Server::start_with(&["--session-dir", dir.str()]);
    for id in [&resumed, &fresh] {
        for _ in 0..2 {
            let (status, body) = turn_json(&third, id, json!({"code": "n"})).await;
            assert_error(status, &body, 410, "session_lost");
        }
    }
    assert_eq!(eval(&third, &untouched, "m + 1").await, 11);
    third.assert_healthy().await;
}

#[tokio::test]
async fn corrupt_suspended_state_is_refused_cleanly() {
    let dir = TempDir::new("corrupt");
    let mut first = Server::start_with(&["--session-dir", dir.str()]);
    let mut ids = vec![];
    for i in 0..4 {
        let id = create(&first).await;
        eval(&first, &id, &format!("v = {i}\nbig = list(range(50000))")).await;
        let (status, body) = put_file(&first, &id, &format!("marker-{i}.txt"), vec![]).await;
        assert_eq!(status, 201, "{body}");
        ids.push(id);
    }
    terminate(&mut first).await;
    drop(first);

    let states: Vec<PathBuf> = walk(dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "state.omcp"))
        .collect();
    // The state file sitting in the same session directory as the session's marker file.
    let state_of = |id: &String| -> PathBuf {
        let i = ids.iter().position(|x| x == id).unwrap();
        let marker = format!("marker-{i}.txt");
        states
            .iter()
            .find(|p| {
                walk(p.parent().unwrap())
                    .iter()
                    .any(|f| f.file_name().is_some_and(|n| n == marker.as_str()))
            })
            .unwrap_or_else(|| panic!("no state.omcp next to {marker}: {states:?}"))
            .clone()
    };
    let (flipped, truncated, reversioned, intact) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // (a) bytes flipped in the middle.
    let path = state_of(flipped);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 200, "state file too small: {}", bytes.len());
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    // (b) truncated.
    let path = state_of(truncated);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    // (c) another version's header.
    let path = state_of(reversioned);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.starts_with(b"omcp-session "),
        "state file header: {:?}",
        String::from_utf8_lossy(&bytes[..40.min(bytes.len())])
    );
    let eol = bytes
        .iter()
        .position(|&b| b == b'\n')
        .expect("a header line");
    let mut rewritten = b"omcp-session 0.0.0-other".to_vec();
    rewritten.extend_from_slice(&bytes[eol..]);
    std::fs::write(&path, rewritten).unwrap();

    let second = Server::start_with(&["--session-dir", dir.str()]);
    second.assert_healthy().await;
    for (name, id) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("reversioned", reversioned),
    ] {
        // Twice: the first refusal must not turn into a wrong state on the second try.
        for attempt in 0..2 {
            let (status, body) = turn_json(&second, id, json!({"code": "[v, len(big)]"})).await;
            assert!(
                (400..600).contains(&status),
                "{name} (attempt {attempt}): {status} {body}"
            );
            let kind = body["type"].as_str().unwrap_or_default();
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{body}"
            );
            if attempt == 0 {
                if *id == *reversioned {
                    assert_error(status, &body, 409, "session_incompatible");
                } else {
                    assert!(
                        kind == "session_lost" || kind == "session_incompatible",
                        "{name}: {status} {body}"
                    );
                }
            } else {
                assert!(
                    ["session_lost", "session_incompatible", "session_not_found"].contains(&kind),
                    "{name} (again): {status} {body}"
                );
            }
        }
        second.assert_healthy().await;
    }
    // The intact session next to them is fine.
    assert_eq!(
        eval(&second, intact, "[v, len(big)]").await,
        json!([3, 50000])
    );
    let out = second.run("sum(range(10))").await;
    assert_eq!(out["result"], 45);
}

// ---------------------------------------------------------------------------------------
// 14. Fork
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fork_copies_state_and_files() {
    let server = Server::start();
    let id = create(&server).await;
    eval(&server, &id, "x = [1]\nopen('f.txt', 'w').write('orig')").await;
    let (status, forked) = call(&server, "POST", &format!("/sessions/{id}/fork"), None).await;
    assert_eq!(status, 201, "{forked}");
    let fork = forked["session_id"].as_str().unwrap().to_string();
    assert_session_id(&fork);
    assert_ne!(fork, id);
    assert_eq!(forked["runtime"], "stdlib");
    assert_eq!(eval(&server, &fork, "x.append(2)\nx").await, json!([1, 2]));
    assert_eq!(eval(&server, &id, "x").await, json!([1]));
    // Files are copied, not shared: a change on either side stays there.
    assert_eq!(eval(&server, &fork, "open('f.txt').read()").await, "orig");
    eval(
        &server,
        &fork,
        "open('f.txt', 'w').write('fork')\nopen('new.txt', 'w').write('n')",
    )
    .await;
    let (status, body) = put_file(&server, &id, "orig_only.txt", b"o".to_vec()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        eval(
            &server,
            &id,
            "import os\n[open('f.txt').read(), os.path.exists('new.txt')]"
        )
        .await,
        json!(["orig", false])
    );
    let (_, _, bytes) = get_file(&server, &id, "f.txt").await;
    assert_eq!(bytes, b"orig");
    let (_, _, bytes) = get_file(&server, &fork, "f.txt").await;
    assert_eq!(bytes, b"fork");
    let (status, _, body) = get_file(&server, &fork, "orig_only.txt").await;
    assert_error(status, &json_of(&body), 404, "file_not_found");
    // Closing one leaves the other.
    let (status, _) = delete(&server, &id).await;
    assert_eq!(status, 204);
    assert_eq!(eval(&server, &fork, "x").await, json!([1, 2]));
    let (status, body) = call(&server, "POST", &format!("/sessions/{id}/fork"), None).await;
    assert_error(status, &body, 404, "session_not_found");
}
