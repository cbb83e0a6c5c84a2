//! MCP at the wire level: malformed JSON-RPC over stdio and HTTP gets JSON-RPC errors and
//! the server lives on; the HTTP face's Host/Origin and bearer-token checks.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Server, command};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"wire-test","version":"1"}}}"#;

/// A `omcp-sandbox mcp` child spoken to line by line.
struct Stdio_ {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    skipped: Vec<Value>,
}

impl Stdio_ {
    fn start() -> Self {
        let mut child = command()
            .arg("mcp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Stdio_ {
            child,
            stdin,
            lines,
            skipped: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("no answer from the server");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"))
    }

    fn request(&mut self, line: &str) -> Value {
        self.send(line);
        self.recv()
    }
}

impl Drop for Stdio_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not a JSON-RPC error: {answer}"))
}

#[test]
fn stdio_bad_input_gets_json_rpc_errors_and_the_server_lives_on() {
    let mut mcp = Stdio_::start();
    // A request before initialize.
    let early = mcp.request(r#"{"jsonrpc":"2.0","id":0,"method":"tools/list"}"#);
    assert!(early["error"].is_object(), "{early}");

    let init = mcp.request(INIT);
    assert_eq!(
        init["result"]["serverInfo"]["name"], "omcp-sandbox",
        "{init}"
    );
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);

    // Unparseable frames get a parse error; each is followed by a ping that must still be
    // answered.
    let mut errors = Vec::new();
    for (n, garbage) in [
        "{not json",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/ca"#,
        "\u{1}\u{2}",
    ]
    .into_iter()
    .enumerate()
    {
        mcp.send(garbage);
        let pong = mcp.ping(20 + n as i64);
        assert!(pong["result"].is_object(), "{pong}");
        errors.append(&mut mcp.skipped);
    }
    // Error frames and rmcp's answers reach stdout through two channels, so the last error
    // may trail its ping's answer: one more round trip collects it.
    mcp.ping(29);
    errors.append(&mut mcp.skipped);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| error_code(e) == -32700 && e["id"].is_null()),
        "{errors:?}"
    );
    assert_eq!(
        error_code(&mcp.request(r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#)),
        -32601
    );
    let unknown_tool =
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#;
    assert_eq!(error_code(&mcp.request(unknown_tool)), -32602);
    for arguments in [
        json!({}),
        json!({"code": 5}),
        json!({"code": "1", "bogus": true}),
        json!({"code": "1", "timeout_ms": "soon"}),
    ] {
        let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "run_python", "arguments": arguments}});
        let answer = mcp.request(&call.to_string());
        assert_eq!(error_code(&answer), -32602, "{arguments}: {answer}");
    }
    let huge_id = r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#;
    mcp.send(huge_id);
    let batch =
        r#"[{"jsonrpc":"2.0","id":30,"method":"ping"},{"jsonrpc":"2.0","id":31,"method":"ping"}]"#;
    assert_eq!(error_code(&mcp.request(batch)), -32600);
    assert_eq!(error_code(&mcp.request("42")), -32600);

    // Still serving, and a Python error is a tool result, not a protocol error.
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"run_python","arguments":{"code":"print(6*7)\n1/0"}}}"#;
    let mut answer = mcp.recv_until_id(call, 9);
    let result = answer["result"].take();
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(result["structuredContent"]["output"], "42\n");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError")
    );
}

impl Stdio_ {
    /// Send `line` and collect answers to earlier messages (in `skipped`) until the one
    /// with `id`.
    /// A ping with `id`, answered after everything sent before it (collected in `skipped`).
    fn ping(&mut self, id: i64) -> Value {
        self.recv_until_id(
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
            id,
        )
    }

    fn recv_until_id(&mut self, line: &str, id: i64) -> Value {
        self.send(line);
        loop {
            let answer = self.recv();
            if answer["id"] == id {
                return answer;
            }
            self.skipped.push(answer);
        }
    }
}

/// POST one JSON-RPC message to /mcp; returns status, session id and the JSON answer
/// (from a JSON body or the first SSE `data:` line).
pub(crate) async fn post_mcp(
    server: &Server,
    body: &str,
    session: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = server
        .client
        .post(server.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let json_text = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .unwrap_or(text.trim())
        .to_string();
    (
        status,
        session,
        serde_json::from_str(&json_text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn http_bad_input_gets_json_rpc_errors_and_the_server_lives_on() {
    let server = Server::start();
    let (status, _, answer) = post_mcp(&server, "{not json", None, &[]).await;
    assert!((400..500).contains(&status), "{status} {answer}");

    let (status, session, init) = post_mcp(&server, INIT, None, &[]).await;
    assert_eq!(status, 200, "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "omcp-sandbox");
    let session = session.expect("a session id");
    let (status, _, _) = post_mcp(
        &server,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        Some(&session),
        &[],
    )
    .await;
    assert_eq!(status, 202);

    let (_, _, answer) = post_mcp(
        &server,
        r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#,
        Some(&session),
        &[],
    )
    .await;
    assert_eq!(error_code(&answer), -32601, "{answer}");
    let (_, _, answer) = post_mcp(
        &server,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
        Some(&session),
        &[],
    )
    .await;
    assert_eq!(error_code(&answer), -32602, "{answer}");
    let (_, _, answer) = post_mcp(&server, r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"run_python","arguments":{"code":[]}}}"#, Some(&session), &[]).await;
    assert_eq!(error_code(&answer), -32602, "{answer}");
    let (status, _, _) = post_mcp(
        &server,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/li"#,
        Some(&session),
        &[],
    )
    .await;
    assert!((400..500).contains(&status));

    let (_, _, answer) = post_mcp(&server, r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_python","arguments":{"code":"6*7"}}}"#, Some(&session), &[]).await;
    assert_eq!(
        answer["result"]["structuredContent"]["result"], 42,
        "{answer}"
    );
    server.assert_healthy().await;
}

#[tokio::test]
async fn host_and_origin_checks_guard_run_and_mcp() {
    let server = Server::start_with(&["--allowed-host", "sandbox.example"]);
    let run = br#"{"code": "1"}"#.to_vec();
    for (host, origin, want) in [
        ("evil.example", None, 403),
        ("evil.example:8000", None, 403),
        ("127.0.0.1", Some("http://evil.example"), 403),
        ("127.0.0.1", Some("null"), 403),
        ("sandbox.example:8000", None, 200),
        ("localhost", Some("http://localhost:3000"), 200),
    ] {
        let mut headers = vec![("host", host)];
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        let response = server
            .client
            .post(server.url("/run"))
            .header("host", host)
            .headers(
                headers
                    .iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            )
            .body(run.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            want,
            "/run host {host} origin {origin:?}"
        );
        let (status, _, _) = post_mcp(&server, INIT, None, &headers).await;
        assert_eq!(status, want, "/mcp host {host} origin {origin:?}");
    }
    // Probes stay open.
    let response = server
        .client
        .get(server.url("/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bearer_token_guards_run_and_mcp_but_not_healthz() {
    let token_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wire-token");
    std::fs::write(&token_file, "correct horse\n").unwrap();
    let server = Server::start_with(&["--auth-token-file", token_file.to_str().unwrap()]);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic Y29ycmVjdCBob3JzZQ=="),
        Some("Bearer correct horsE"),
    ] {
        let mut request = server
            .client
            .post(server.url("/run"))
            .body(r#"{"code": "1"}"#);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "unauthorized");
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let (status, _, _) = post_mcp(&server, INIT, None, &headers).await;
        assert_eq!(status, 401, "/mcp {auth:?}");
    }
    let response = server
        .client
        .post(server.url("/run"))
        .header("authorization", "Bearer correct horse")
        .body(r#"{"code": "6*7"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["result"], 42);
    let (status, _, init) = post_mcp(
        &server,
        INIT,
        None,
        &[("authorization", "Bearer correct horse")],
    )
    .await;
    assert_eq!(status, 200, "{init}");
    let response = server.healthz().await;
    assert_eq!(response.status(), 200);
}

/// A tiny deterministic generator, so a failing frame can be reproduced from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Frames a fuzzer would send: valid messages (each with its own id) cut short, with bytes
/// flipped or inserted (not always UTF-8), with ids, methods, params or the version of the
/// wrong type, batched, or nested deeply. Never a newline inside a frame.
fn mutated_frames(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut frames = Vec::new();
    for n in 0..count {
        let id = 100 + n as i64;
        let base = match rng.below(5) {
            0 => json!({"jsonrpc": "2.0", "id": id, "method": "ping"}),
            1 => json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}}),
            2 => json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": "run_python", "arguments": {"code": "1+1"}}}),
            3 => json!({"jsonrpc": "2.0", "id": id, "method": "resources/list"}),
            _ => json!({"jsonrpc": "2.0", "id": id, "method": "initialize",
                        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                   "clientInfo": {"name": "fuzz", "version": "1"}}}),
        };
        let odd_values = [
            json!(null),
            json!(true),
            json!(-1),
            json!(1.5),
            json!("x"),
            json!([]),
            json!({}),
            json!(5),
            json!(u64::MAX),
            json!("\u{0}"),
        ];
        let mut frame = match rng.below(9) {
            0 => {
                let text = base.to_string().into_bytes();
                let cut = rng.below(text.len());
                text[..cut].to_vec()
            }
            1 => {
                let mut text = base.to_string().into_bytes();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(text.len());
                    text[at] = rng.next() as u8;
                }
                text
            }
            2 => {
                let mut text = base.to_string().into_bytes();
                let at = rng.below(text.len());
                let junk: Vec<u8> = (0..=rng.below(8)).map(|_| rng.next() as u8).collect();
                text.splice(at..at, junk);
                text
            }
            3 => {
                let mut v = base.clone();
                v["id"] = odd_values[rng.below(odd_values.len())].clone();
                if rng.below(4) == 0 {
                    // A number no 64-bit type holds.
                    return_huge_id(&v)
                } else {
                    v.to_string().into_bytes()
                }
            }
            4 => {
                let mut v = base.clone();
                v["method"] = odd_values[rng.below(odd_values.len())].clone();
                v.to_string().into_bytes()
            }
            5 => {
                let mut v = base.clone();
                v["params"] = odd_values[rng.below(odd_values.len())].clone();
                v.to_string().into_bytes()
            }
            6 => json!([base.clone(), base]).to_string().into_bytes(),
            7 => {
                let depth = 50 + rng.below(5000);
                let mut text = "[".repeat(depth);
                text.push_str(&"]".repeat(depth));
                text.into_bytes()
            }
            _ => {
                let mut v = base.clone();
                v["jsonrpc"] = odd_values[rng.below(odd_values.len())].clone();
                v.to_string().into_bytes()
            }
        };
        for b in frame.iter_mut() {
            if *b == b'\n' {
                *b = b' ';
            }
        }
        frames.push(frame);
    }
    frames
}

fn return_huge_id(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    v["id"] = json!("HUGE");
    v.to_string()
        .replace("\"HUGE\"", "123456789012345678901234567890")
        .into_bytes()
}

/// The ids of frames that are well-formed requests: each of these must get an answer.
fn owed_answer(frame: &[u8]) -> Option<i64> {
    let v: Value = serde_json::from_slice(frame).ok()?;
    let method = v.get("method")?.as_str()?;
    if v.get("jsonrpc")? != "2.0" || method.starts_with("notifications/") {
        return None;
    }
    v.get("id")?.as_i64()
}

/// Every line the server writes is a JSON-RPC response: an object, version 2.0, an id that
/// is a number, a string or null, and exactly one of result and error (with an integer code).
fn assert_json_rpc_answer(answer: &Value) {
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    assert!(
        matches!(
            answer.get("id"),
            Some(Value::Number(_) | Value::String(_) | Value::Null)
        ),
        "id missing or of a bad type: {answer}"
    );
    let has_result = answer.get("result").is_some();
    let has_error = answer.get("error").is_some();
    assert!(has_result != has_error, "{answer}");
    if has_error {
        assert!(answer["error"]["code"].is_i64(), "{answer}");
    }
}

#[test]
fn stdio_survives_mutated_frames_and_answers_every_request() {
    let mut mcp = Stdio_::start();
    mcp.request(INIT);
    mcp.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let frames = mutated_frames(0x5eed_0001, 300);
    let mut owed = std::collections::BTreeSet::new();
    let mut answers = Vec::new();
    for (n, frame) in frames.iter().enumerate() {
        owed.extend(owed_answer(frame));
        mcp.stdin.write_all(frame).unwrap();
        mcp.stdin.write_all(b"\n").unwrap();
        // A ping after every frame proves the session survived it.
        let pong = mcp.ping(1_000_000 + n as i64);
        assert!(pong["result"].is_object(), "after frame {n}: {pong}");
        answers.append(&mut mcp.skipped);
    }
    // Answers to tool calls may trail; one last round trip after a pause collects them.
    std::thread::sleep(Duration::from_millis(500));
    mcp.ping(2_000_000);
    answers.append(&mut mcp.skipped);

    answers.iter().for_each(assert_json_rpc_answer);
    let answered: std::collections::BTreeSet<i64> =
        answers.iter().filter_map(|a| a["id"].as_i64()).collect();
    let lost: Vec<_> = owed.difference(&answered).collect();
    assert!(lost.is_empty(), "requests never answered: {lost:?}");
    eprintln!(
        "stdio: {} mutated frames, {} answers, {} requests owed an answer, all answered",
        frames.len(),
        answers.len(),
        owed.len()
    );
}

/// An initialized MCP session over streamable HTTP: its id.
pub(crate) async fn open_mcp(server: &Server) -> String {
    let (status, session, answer) = post_mcp(server, INIT, None, &[]).await;
    assert_eq!(status, 200, "{answer}");
    let session = session.expect("an MCP session id");
    post_mcp(
        server,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        Some(&session),
        &[],
    )
    .await;
    session
}

#[tokio::test]
async fn http_survives_mutated_frames() {
    let server = Server::start();
    let session = open_mcp(&server).await;
    let frames = mutated_frames(0x5eed_0002, 150);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (n, frame) in frames.iter().enumerate() {
        let response = server
            .client
            .post(server.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(frame.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        *statuses.entry(status).or_default() += 1;
        let text = response.text().await.unwrap();
        let shown = String::from_utf8_lossy(frame);
        assert!(status < 500, "frame {n} {shown:?} -> {status} {text}");
        if let Some(id) = owed_answer(frame) {
            // A well-formed request gets its answer (result or error) with its own id.
            let answer = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .find(|l| l.starts_with('{'))
                .unwrap_or(text.trim());
            let answer: Value = serde_json::from_str(answer)
                .unwrap_or_else(|e| panic!("frame {n} {shown:?} -> {status} {text:?}: {e}"));
            assert_json_rpc_answer(&answer);
            assert_eq!(answer["id"], id, "frame {n} {shown:?}");
        }
        let (_, _, pong) = post_mcp(
            &server,
            r#"{"jsonrpc":"2.0","id":999999,"method":"ping"}"#,
            Some(&session),
            &[],
        )
        .await;
        assert!(
            pong["result"].is_object(),
            "after frame {n} {shown:?}: {pong}"
        );
    }
    eprintln!(
        "http: {} mutated frames, statuses {statuses:?}",
        frames.len()
    );
    server.assert_healthy().await;
}

#[tokio::test]
async fn sessions_beyond_the_cap_get_busy_until_one_closes() {
    let server = Server::start_with(&["--max-mcp-sessions", "2"]);
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (status, session, init) = post_mcp(&server, INIT, None, &[]).await;
        assert_eq!(status, 200, "{init}");
        sessions.push(session.expect("a session id"));
    }
    let (status, session, answer) = post_mcp(&server, INIT, None, &[]).await;
    assert_eq!(status, 503, "{answer}");
    assert!(session.is_none());
    assert_eq!(error_code(&answer), -32000, "{answer}");
    assert_eq!(
        answer["id"], 1,
        "the refusal carries the request's id: {answer}"
    );
    let health: Value = server.healthz().await.json().await.unwrap();
    assert_eq!(health["load"]["mcp_sessions"], 2, "{health}");

    // Existing sessions keep working, and closing one makes room.
    let (_, _, pong) = post_mcp(
        &server,
        r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#,
        Some(&sessions[0]),
        &[],
    )
    .await;
    assert!(pong["result"].is_object(), "{pong}");
    let deleted = server
        .client
        .delete(server.url("/mcp"))
        .header("mcp-session-id", &sessions[1])
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (status, session, init) = post_mcp(&server, INIT, None, &[]).await;
    assert_eq!(status, 200, "{init}");
    assert!(session.is_some());
}

/// Sandbox sessions past `--max-sessions`: `create_session` answers a JSON-RPC error
/// (-32000, typed `too_many_sessions`), as a busy server does; after `close_session` there
/// is room again.
#[tokio::test]
async fn create_session_beyond_the_cap_is_a_json_rpc_error() {
    let server = Server::start_with(&["--max-sessions", "1"]);
    let (status, mcp, init) = post_mcp(&server, INIT, None, &[]).await;
    assert_eq!(status, 200, "{init}");
    let mcp = mcp.expect("an MCP session id");
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    post_mcp(&server, initialized, Some(&mcp), &[]).await;
    let create = |id: u32| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "create_session", "arguments": {}}})
        .to_string()
    };
    let (_, _, first) = post_mcp(&server, &create(2), Some(&mcp), &[]).await;
    let handle = first["result"]["structuredContent"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {first}"))
        .to_string();
    let (_, _, second) = post_mcp(&server, &create(3), Some(&mcp), &[]).await;
    assert_eq!(error_code(&second), -32000, "{second}");
    assert_eq!(
        second["error"]["data"]["type"], "too_many_sessions",
        "{second}"
    );
    let close = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                       "params": {"name": "close_session", "arguments": {"session_id": handle}}})
    .to_string();
    let (_, _, closed) = post_mcp(&server, &close, Some(&mcp), &[]).await;
    assert!(
        closed["result"].is_object() && closed["result"]["isError"] != true,
        "{closed}"
    );
    let (_, _, again) = post_mcp(&server, &create(5), Some(&mcp), &[]).await;
    assert!(
        again["result"]["structuredContent"]["session_id"].is_string(),
        "{again}"
    );
}
