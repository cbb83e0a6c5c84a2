//! A caller that goes away stops its run: the guest is interrupted and its slot freed.
//! The server runs with one slot and no queue, so a slot still held shows up as a 503.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::Server;

const SLOW: &str = "import time\ntime.sleep(15)";

fn one_slot_server() -> Server {
    Server::start_with(&[
        "--max-concurrency",
        "1",
        "--max-queue",
        "0",
        "--timeout-ms",
        "20000",
    ])
}

/// Poll until a run is admitted again; returns how long the slot stayed taken.
async fn wait_for_free_slot(server: &Server) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = server.run_json(json!({"code": "'free'"})).await;
        if status == 200 {
            assert_eq!(body["result"], "free");
            return started.elapsed();
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "the abandoned run still holds its slot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn slot_is_taken(server: &Server) {
    let (status, body) = server.run_json(json!({"code": "1"})).await;
    assert_eq!(
        status, 503,
        "the slow run should hold the only slot: {body}"
    );
}

#[tokio::test]
async fn http_client_disconnecting_from_run_cancels_the_guest() {
    let server = one_slot_server();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let url = server.url("/run");
    let abandoned = tokio::spawn(async move {
        impatient
            .post(url)
            .json(&json!({"code": SLOW}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    slot_is_taken(&server).await;
    assert!(
        abandoned.await.unwrap().is_err(),
        "the client should have timed out"
    );
    let held = wait_for_free_slot(&server).await;
    eprintln!("slot freed {held:?} after the client left");
}

/// An MCP session over streamable HTTP, spoken to with raw requests.
struct McpSession<'a> {
    server: &'a Server,
    id: String,
}

impl<'a> McpSession<'a> {
    async fn open(server: &'a Server) -> McpSession<'a> {
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let response = server
            .client
            .post(server.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init)
            .send()
            .await
            .unwrap();
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let _ = response.text().await;
        let session = McpSession { server, id };
        session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        session
    }

    async fn post(&self, body: serde_json::Value) -> reqwest::Response {
        self.server
            .client
            .post(self.server.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Start a slow tools/call and return its (open) SSE response.
    async fn start_slow_call(&self, id: i64, timeout_ms: u64) -> reqwest::Response {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "run_python", "arguments": {"code": SLOW, "timeout_ms": timeout_ms}}});
        let stream = self.post(call).await;
        assert_eq!(stream.status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
        slot_is_taken(self.server).await;
        stream
    }
}

#[tokio::test]
async fn mcp_cancelled_notification_stops_the_guest() {
    let server = one_slot_server();
    let session = McpSession::open(&server).await;
    let _stream = session.start_slow_call(2, 20_000).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2, "reason": "user changed their mind"}});
    assert_eq!(session.post(cancel).await.status(), 202);
    let held = wait_for_free_slot(&server).await;
    eprintln!("slot freed {held:?} after notifications/cancelled");
}

#[tokio::test]
async fn mcp_stream_dropped_mid_run_is_still_bounded() {
    // The MCP spec (streamable HTTP) says a dropped SSE stream SHOULD NOT be taken as
    // cancellation: the client may resume it. The run goes on, but only to its own limit.
    let server = one_slot_server();
    let session = McpSession::open(&server).await;
    let stream = session.start_slow_call(2, 2_000).await;
    drop(stream);
    let held = wait_for_free_slot(&server).await;
    eprintln!("slot freed {held:?} after the stream was dropped (run limit 2 s)");
}
