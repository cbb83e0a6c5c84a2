//! The HTTP contract for bad requests, health, and concurrency.

use serde_json::{Value, json};

use crate::helpers::Server;

#[tokio::test]
async fn bad_requests_get_typed_json_errors() {
    let server = Server::start_with(&["--max-code-bytes", "1000"]);
    // method, path, content type, body, expected status, expected error type
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/run",
            Some("application/json"),
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            b"".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            b"{}".to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            br#"{"code": 5}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            br#"{"code": "1", "timeout": 5}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            br#"{"code": "1", "fuel": -1}"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            br#"[1, 2]"#.to_vec(),
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/run",
            Some("application/json"),
            format!(r#"{{"code": "{}"}}"#, "x".repeat(2000)).into_bytes(),
            413,
            "too_large",
        ),
        ("GET", "/run", None, vec![], 405, "method_not_allowed"),
        ("POST", "/healthz", None, vec![], 405, "method_not_allowed"),
        ("GET", "/nope", None, vec![], 404, "not_found"),
    ];
    for (method, path, content_type, body, status, kind) in cases {
        let (got, _headers, text) = server.raw(method, path, content_type, body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON error body: {text:?}"));
        assert_eq!(value["type"], kind, "{method} {path}: {text}");
        assert!(value["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // A body far over the limit is refused without reading it all.
    // (The body limit makes room for code, stdin and one 16 MiB file in base64.)
    let huge = format!(r#"{{"code": "{}"}}"#, "x".repeat(40_000_000)).into_bytes();
    let (status, body) = server.post_streaming("/run", huge).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large"), "{body}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn json_body_without_content_type_is_accepted() {
    // `curl -d '{"code": ...}'` sends a form content type; the body is still JSON.
    let server = Server::start();
    let (status, _, text) = server
        .raw(
            "POST",
            "/run",
            Some("application/x-www-form-urlencoded"),
            br#"{"code": "6*7"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["result"], 42);
}

#[tokio::test]
async fn healthz_reports_the_runtime() {
    let server = Server::start();
    let response = server.healthz().await;
    assert_eq!(response.status(), 200);
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["status"], "ok");
    assert_eq!(value["runtime"]["python"], "3.12.0");
    assert_eq!(
        value["runtime"]["sha256"],
        "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
    );
}

#[tokio::test]
async fn fifty_simultaneous_requests_all_answer() {
    let server = Server::start();
    let calls = (0..50).map(|i| {
        let server = &server;
        async move {
            (
                i,
                server
                    .run_json(json!({"code": format!("print({i})\n{i} * 2")}))
                    .await,
            )
        }
    });
    for (i, (status, out)) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["output"], format!("{i}\n"));
        assert_eq!(out["result"], json!(i * 2));
    }
}

#[tokio::test]
async fn beyond_the_queue_callers_get_busy() {
    let server = Server::start_with(&["--max-concurrency", "1", "--max-queue", "1"]);
    let slow = json!({"code": "import time\ntime.sleep(2)\n'done'", "timeout_ms": 5000});
    let calls = (0..6).map(|_| server.run_json(slow.clone()));
    let results = futures::future::join_all(calls).await;
    let done = results
        .iter()
        .filter(|(s, v)| *s == 200 && v["result"] == "done")
        .count();
    let busy: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert!(done >= 1, "{results:?}");
    assert!(!busy.is_empty(), "{results:?}");
    assert_eq!(done + busy.len(), 6, "{results:?}");
    for (_, body) in busy {
        assert_eq!(body["type"], "busy");
    }
    server.assert_healthy().await;
}

#[tokio::test]
async fn busy_answers_carry_retry_after() {
    let server = Server::start_with(&["--max-concurrency", "1", "--max-queue", "0"]);
    let slow = server.run_json(json!({"code": "import time\ntime.sleep(1.5)"}));
    let probe = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        server
            .raw(
                "POST",
                "/run",
                Some("application/json"),
                br#"{"code": "1"}"#.to_vec(),
            )
            .await
    };
    let ((status, _), (probe_status, headers, _)) = tokio::join!(slow, probe);
    assert_eq!(status, 200);
    assert_eq!(probe_status, 503);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_runs_finish_then_exits() {
    let mut server = Server::start();
    let in_flight = server.run_json(json!({"code": "import time\ntime.sleep(1.5)\n'finished'"}));
    let terminate = async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let ((status, body), ()) = tokio::join!(in_flight, terminate);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "finished");
    let exit = tokio::task::block_in_place(|| server.child.wait()).unwrap();
    assert!(exit.success(), "server exited with {exit:?}");
    // The listener is gone: new clients are refused rather than left hanging.
    assert!(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .is_err()
    );
}
