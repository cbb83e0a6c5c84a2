//! Observability: `GET /metrics` in Prometheus' text format (counted right, clean for
//! `promtool check metrics`, scraped by a real Prometheus and answered in PromQL), on the
//! main listener and on `--metrics-listen`; `/livez` and `/readyz` for orchestrators.
//! Prometheus and promtool come from Debian's `prometheus` package (tests/prepare.sh).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Server, free_port, start_prometheus, which};

async fn scrape(server: &Server, url: &str) -> String {
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    response.text().await.unwrap()
}

/// Samples of the text format, `name{labels}` -> value (HELP/TYPE lines skipped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[tokio::test]
async fn metrics_count_runs_refusals_and_sessions() {
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = Server::start_with(&["--metrics-listen", &metrics_addr]);
    assert_eq!(server.run("1 + 1").await["result"], 2);
    server.run("1 / 0").await;
    let out = server
        .run_with(json!({"code": "while True: pass", "timeout_ms": 200}))
        .await;
    assert_eq!(out["stopped"], "timeout");
    let (status, _) = server.run_json(json!({"code": "x".repeat(2 << 20)})).await;
    assert_eq!(status, 413);
    assert_eq!(server.post("/sessions", json!({})).await.0, 201);
    let (status, _, _) = server.raw("GET", "/no/such/route", None, vec![]).await;
    assert_eq!(status, 404);

    // The main listener and the metrics one serve the same text.
    let main = samples(&scrape(&server, &server.url("/metrics")).await);
    let text = scrape(&server, &format!("http://{metrics_addr}/metrics")).await;
    let all = samples(&text);
    for (outcome, n) in [("ok", 1.0), ("error", 1.0), ("timeout", 1.0)] {
        let series =
            format!("omcp_runs_total{{runtime=\"stdlib\",face=\"http\",outcome=\"{outcome}\"}}");
        assert_eq!(value(&all, &series), n, "{series}");
        assert_eq!(value(&main, &series), n, "{series}");
    }
    assert_eq!(
        value(&all, "omcp_run_duration_seconds_count{runtime=\"stdlib\"}"),
        3.0
    );
    assert_eq!(value(&all, "omcp_queue_wait_seconds_count"), 3.0);
    assert_eq!(
        value(&all, "omcp_refusals_total{reason=\"too_large\"}"),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "omcp_http_requests_total{route=\"/run\",status=\"200\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &all,
            "omcp_http_requests_total{route=\"/run\",status=\"413\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "omcp_http_requests_total{route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(value(&all, "omcp_sessions{state=\"active\"}"), 1.0);
    assert_eq!(value(&all, "omcp_slots_busy"), 0.0);
    assert_eq!(value(&all, "omcp_queue_depth"), 0.0);
    assert!(value(&all, "omcp_slots") >= 1.0);
    assert!(value(&all, "process_resident_memory_bytes") > 1e6);
    // Every metric has its help text and type.
    for name in all.keys().map(|s| s.split(['{', ' ']).next().unwrap()) {
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# HELP {base} ")) || text.contains(&format!("# HELP {name} ")),
            "{name} has no help text"
        );
    }

    // Clean for Prometheus' own linter.
    let promtool = which("promtool");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test]
async fn livez_and_readyz_answer_for_orchestrators() {
    let server = Server::start_with(&["--max-concurrency", "1", "--max-queue", "0"]);
    let get = |path: &'static str| {
        let server = &server;
        async move {
            let (status, _, body) = server.raw("GET", path, None, vec![]).await;
            (status, serde_json::from_str::<Value>(&body).unwrap())
        }
    };
    assert_eq!(get("/livez").await, (200, json!({"status": "ok"})));
    assert_eq!(get("/readyz").await, (200, json!({"status": "ok"})));
    // Every slot and queue place taken: not ready for more (but alive).
    let busy = {
        let client = server.client.clone();
        let url = server.url("/run");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"code": "import time\ntime.sleep(3)", "timeout_ms": 5000}))
                .send()
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get("/readyz").await;
        if status == 503 {
            assert_eq!(body, json!({"status": "busy"}));
            break;
        }
        assert!(Instant::now() < deadline, "readyz never said busy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("/livez").await.0, 200);
    busy.await.unwrap().unwrap();
    assert_eq!(get("/readyz").await, (200, json!({"status": "ok"})));
}

/// With `--drain-delay-ms`, SIGTERM first makes `/readyz` say "draining" while the server
/// still accepts and runs work (a load balancer's time to notice), then it stops accepting
/// and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_before_closing() {
    let mut server = Server::start_with(&["--drain-delay-ms", "3000"]);
    assert_eq!(server.raw("GET", "/readyz", None, vec![]).await.0, 200);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, _, body) = server.raw("GET", "/readyz", None, vec![]).await;
        if status == 503 {
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap()["status"],
                "draining"
            );
            break;
        }
        assert!(Instant::now() < deadline, "readyz never said draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still serving, on new connections too, while draining.
    let fresh = reqwest::Client::new();
    let answer: Value = fresh
        .post(server.url("/run"))
        .json(&json!({"code": "6 * 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"], 42);
    assert_eq!(server.raw("GET", "/livez", None, vec![]).await.0, 200);
    let exit = tokio::task::block_in_place(|| server.child.wait()).unwrap();
    assert!(exit.success(), "server exited with {exit:?}");
}

/// A real Prometheus scrapes the server's metrics listener and answers PromQL about it.
#[tokio::test]
async fn prometheus_scrapes_the_server() {
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = Server::start_with(&["--metrics-listen", &metrics_addr]);
    for i in 0..5 {
        assert_eq!(server.run(&format!("{i} * 2")).await["result"], i * 2);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_prometheus, web) = start_prometheus(&dir, "omcp", &[metrics_addr]);

    let query = format!("http://{web}/api/v1/query");
    let deadline = Instant::now() + Duration::from_secs(90);
    let answer = loop {
        let response = server
            .client
            .get(&query)
            .query(&[("query", "sum by (outcome) (omcp_runs_total{job=\"omcp\"})")])
            .send()
            .await;
        if let Ok(response) = response
            && let Ok(body) = response.json::<Value>().await
            && body["status"] == "success"
            && body["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not answer with the server's metrics; its log: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let result = &answer["data"]["result"][0];
    assert_eq!(result["metric"]["outcome"], "ok", "{answer}");
    assert_eq!(result["value"][1], "5", "{answer}");
}
