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
        let id = 20 + n as i64;
        let pong = mcp.recv_until_id(
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
            id,
        );
        assert!(pong["result"].is_object(), "{pong}");
        errors.append(&mut mcp.skipped);
    }
    // Error frames and rmcp's answers reach stdout through two channels, so the last error
    // may trail its ping's answer: one more round trip collects it.
    mcp.recv_until_id(r#"{"jsonrpc":"2.0","id":29,"method":"ping"}"#, 29);
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
async fn post_mcp(
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
