//! OpenTelemetry traces, received as real OTLP: each test starts a receiver (an axum
//! `POST /v1/traces` on 127.0.0.1 decoding the exporter's protobuf) and a server whose
//! `OTEL_EXPORTER_OTLP_ENDPOINT` points at it, then checks the spans of its requests: one
//! trace each, under the caller's `traceparent`, with the steps as children and no code,
//! output, token or session id in any attribute. Spans arrive in batches: every wait is
//! bounded and polls, none asserts a timing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use serde_json::{Value, json};

use super::helpers::{Server, repo};
use super::mcp_protocol::{open_mcp, post_mcp};

/// One received span, with its resource's attributes.
#[derive(Debug, Clone)]
struct Got {
    resource: Vec<KeyValue>,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attributes: Vec<KeyValue>,
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        find(&self.attributes, key)
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}

/// An OTLP/HTTP receiver: every span it was sent, and how many export requests came.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    exports: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let exports: Arc<Mutex<usize>> = Arc::default();
        let (into, counted) = (spans.clone(), exports.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let (into, counted) = (into.clone(), counted.clone());
                async move {
                    *counted.lock().unwrap() += 1;
                    let request = ExportTraceServiceRequest::decode(body)
                        .expect("the body is an OTLP ExportTraceServiceRequest");
                    let mut spans = into.lock().unwrap();
                    for resource_spans in request.resource_spans {
                        let resource = resource_spans
                            .resource
                            .map(|r| r.attributes)
                            .unwrap_or_default();
                        for scope in resource_spans.scope_spans {
                            for span in scope.spans {
                                spans.push(Got {
                                    resource: resource.clone(),
                                    trace_id: hex(&span.trace_id),
                                    span_id: hex(&span.span_id),
                                    parent: hex(&span.parent_span_id),
                                    name: span.name,
                                    attributes: span.attributes,
                                });
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            spans,
            exports,
        }
    }

    /// The environment of a server exporting here (batches every 100 ms).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", self.addr),
            ),
            ("OTEL_SERVICE_NAME", "omcp-traces-test".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ]
    }

    /// Every span received so far, once `done` says they are enough (at most 20 s).
    async fn wait_for(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "never received {what}; received: {:#?}",
                spans
                    .iter()
                    .map(|s| (&s.name, &s.trace_id, &s.span_id, &s.parent))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn start(receiver: &Receiver, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut all: Vec<(&str, String)> = receiver.env();
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with_env(args, &all)
}

/// A trace id and a parent span id of the caller, distinct per use.
fn caller(n: u8) -> (String, String, String) {
    let trace = format!("4bf92f3577b34da6a3ce929d0e0e47{n:02x}");
    let parent = format!("00f067aa0ba902{n:02x}");
    let header = format!("00-{trace}-{parent}-01");
    (trace, parent, header)
}

/// The span of `trace` named `name` whose parent is `parent`.
fn one<'a>(spans: &'a [Got], trace: &str, name: &str, parent: &str) -> &'a Got {
    let found: Vec<&Got> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name && s.parent == parent)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name:?} under {parent} in trace {trace}; the trace: {:#?}",
        spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .map(|s| (&s.name, &s.span_id, &s.parent))
            .collect::<Vec<_>>()
    );
    found[0]
}

/// No attribute of any span or resource holds any of `secrets`.
fn assert_nothing_leaks(spans: &[Got], secrets: &[&str]) {
    for span in spans {
        for kv in span.attributes.iter().chain(&span.resource) {
            let value = text(&kv.value);
            for secret in secrets {
                assert!(
                    !value.contains(secret) && !kv.key.contains(secret),
                    "span {:?} carries {secret:?} in {} = {value:?}",
                    span.name,
                    kv.key
                );
            }
        }
        for secret in secrets {
            assert!(!span.name.contains(secret), "span name {:?}", span.name);
        }
    }
}

/// A tools config with the everything server over stdio (installed by tests/prepare.sh),
/// what this server sends it copied to `heard`.
fn everything_config(heard: &std::path::Path) -> std::path::PathBuf {
    let clients = repo().join(".cache/clients");
    let js =
        clients.join("upstream/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(js.is_file(), "{js:?} missing: run tests/prepare.sh");
    let node = clients.join("node22/node_modules/node/bin/node");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("traces-tools-{}.json", std::process::id()));
    let pipe = format!("tee -a {heard:?} | {node:?} {js:?}");
    let config = json!({"mcpServers": {"everything": {"command": "bash", "args": ["-c", pipe]}}});
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

const TOKEN: &str = "tok-secret-7d2e91";

fn token_file() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("traces-token-{}", std::process::id()));
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

async fn post_run(server: &Server, body: Value, traceparent: Option<&str>) -> Value {
    let mut request = server
        .client
        .post(server.url("/run"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn traces_of_a_run_follow_the_callers_traceparent_and_hold_no_code_or_output() {
    let receiver = Receiver::start().await;
    let heard = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("traces-heard-{}", std::process::id()));
    let _ = std::fs::remove_file(&heard);
    let config = everything_config(&heard);
    let token = token_file();
    let server = start(
        &receiver,
        &[
            "--auth-token-file",
            token.to_str().unwrap(),
            "--tools-config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    // The markers are built at run time, so the source holds none of the output's text.
    let code = "# src-mark-2b7f\nimport tools\necho = tools.everything.echo(message='arg-' + 'mark-5e11')\nprint('out-' + 'mark-61d3')\n'val-' + 'mark-0c9a'";
    let (trace, parent, header) = caller(1);
    let out = post_run(&server, json!({"code": code}), Some(&header)).await;
    assert_eq!(out["output"], "out-mark-61d3\n", "{out}");
    assert_eq!(out["result"], "val-mark-0c9a");

    let spans = receiver
        .wait_for("the run's trace", |spans| {
            [
                "POST /run",
                "admit",
                "instantiate",
                "guest run",
                "tool call",
                "encode",
            ]
            .iter()
            .all(|name| spans.iter().any(|s| s.trace_id == trace && s.name == *name))
        })
        .await;
    let root = one(&spans, &trace, "POST /run", &parent);
    assert_eq!(root.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(root.attr("http.route").as_deref(), Some("/run"));
    assert_eq!(
        root.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        find(&root.resource, "service.name").as_deref(),
        Some("omcp-traces-test")
    );
    assert_eq!(
        find(&root.resource, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let admit = one(&spans, &trace, "admit", &root.span_id);
    assert_eq!(admit.attr("omcp.admission").as_deref(), Some("immediate"));
    let instantiate = one(&spans, &trace, "instantiate", &root.span_id);
    assert_eq!(instantiate.attr("omcp.runtime").as_deref(), Some("stdlib"));
    assert_eq!(instantiate.attr("omcp.start").as_deref(), Some("snapshot"));
    let guest = one(&spans, &trace, "guest run", &root.span_id);
    assert_eq!(guest.attr("omcp.runtime").as_deref(), Some("stdlib"));
    assert_eq!(guest.attr("omcp.outcome").as_deref(), Some("ok"));
    assert_eq!(guest.attr("omcp.tool_calls").as_deref(), Some("1"));
    let tool = one(&spans, &trace, "tool call", &guest.span_id);
    assert_eq!(tool.attr("omcp.tool.server").as_deref(), Some("everything"));
    assert_eq!(tool.attr("omcp.tool.name").as_deref(), Some("echo"));
    assert_eq!(tool.attr("omcp.tool.outcome").as_deref(), Some("ok"));
    // The upstream heard the tool call's span as its caller.
    let heard = std::fs::read_to_string(&heard).unwrap();
    let sent = format!("\"traceparent\":\"00-{trace}-{}-01\"", tool.span_id);
    assert!(heard.contains(&sent), "{sent} not in {heard}");
    let encode = one(&spans, &trace, "encode", &root.span_id);
    let bytes: u64 = encode.attr("omcp.response.bytes").unwrap().parse().unwrap();
    assert!(bytes > 0);

    // A traceparent that does not parse: the run happens, in a trace of its own.
    let out = post_run(
        &server,
        json!({"code": "print('again')"}),
        Some("00-not-a-trace-01"),
    )
    .await;
    assert_eq!(out["output"], "again\n");
    let spans = receiver
        .wait_for("the second run's root", |spans| {
            spans.iter().filter(|s| s.name == "POST /run").count() == 2
        })
        .await;
    let fresh = spans
        .iter()
        .find(|s| s.name == "POST /run" && s.trace_id != trace)
        .unwrap();
    assert_eq!(fresh.parent, "", "a malformed traceparent is no parent");
    assert_eq!(fresh.trace_id.len(), 32);
    assert_ne!(fresh.trace_id, "0".repeat(32));

    assert_nothing_leaks(
        &spans,
        &[
            "src-mark-2b7f",
            "arg-mark-5e11",
            "out-mark-61d3",
            "val-mark-0c9a",
            TOKEN,
        ],
    );
}

#[tokio::test]
async fn traces_of_session_turns_and_mcp_tool_calls() {
    let receiver = Receiver::start().await;
    let server = start(&receiver, &["--session-suspend-after", "1"], &[]);

    let (status, created) = server.post("/sessions", json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let turn = |traceparent: String, code: &'static str| {
        let request = server
            .client
            .post(server.url(&format!("/sessions/{id}/run")))
            .header("traceparent", traceparent)
            .json(&json!({"code": code}));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let (trace, parent, header) = caller(2);
    let out = turn(header, "x = 'kept-' + 'mark-77aa'").await;
    assert_eq!(out["turn"], 1, "{out}");
    let spans = receiver
        .wait_for("the first turn's trace", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "session checkpoint")
                && spans
                    .iter()
                    .any(|s| s.trace_id == trace && s.name == "encode")
        })
        .await;
    let root = one(&spans, &trace, "POST /sessions/{id}/run", &parent);
    assert_eq!(
        root.attr("http.route").as_deref(),
        Some("/sessions/{id}/run")
    );
    let turn_span = one(&spans, &trace, "session turn", &root.span_id);
    assert_eq!(turn_span.attr("omcp.turn").as_deref(), Some("1"));
    assert_eq!(turn_span.attr("omcp.rolled_back").as_deref(), Some("false"));
    let shown = turn_span.attr("omcp.session").unwrap();
    assert!(
        id.starts_with(shown.trim_end_matches('…')) && shown.len() < 12,
        "{shown}"
    );
    one(&spans, &trace, "admit", &turn_span.span_id);
    let instantiate = one(&spans, &trace, "instantiate", &turn_span.span_id);
    assert_eq!(instantiate.attr("omcp.start").as_deref(), Some("session"));
    let guest = one(&spans, &trace, "guest run", &turn_span.span_id);
    assert_eq!(guest.attr("omcp.outcome").as_deref(), Some("ok"));
    one(&spans, &trace, "session checkpoint", &turn_span.span_id);
    one(&spans, &trace, "encode", &root.span_id);

    // Idle for a second, the session goes to disk (a trace of the housekeeping's own);
    // the next turn reads it back.
    receiver
        .wait_for("the session's suspension", |spans| {
            spans.iter().any(|s| s.name == "session suspend")
        })
        .await;
    let (trace, parent, header) = caller(3);
    let out = turn(header, "x").await;
    assert_eq!(out["result"], "kept-mark-77aa", "{out}");
    let spans = receiver
        .wait_for("the second turn's trace", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "session resume")
                && spans
                    .iter()
                    .any(|s| s.trace_id == trace && s.name == "encode")
        })
        .await;
    let root = one(&spans, &trace, "POST /sessions/{id}/run", &parent);
    let turn_span = one(&spans, &trace, "session turn", &root.span_id);
    assert_eq!(turn_span.attr("omcp.turn").as_deref(), Some("2"));
    one(&spans, &trace, "session resume", &turn_span.span_id);

    // MCP over streamable HTTP: `_meta.traceparent` is the tool call's parent; without
    // it, the POST's header is.
    let session = open_mcp(&server).await;
    let (trace, parent, header) = caller(4);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "run_python",
        "arguments": {"code": "print('mcp-' + 'mark-3f3f')"},
        "_meta": {"traceparent": header},
    }});
    let (status, _, answer) = post_mcp(&server, &call.to_string(), Some(&session), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let (header_trace, header_parent, header_only) = caller(5);
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "run_python", "arguments": {"code": "1"},
    }});
    let (status, _, _) = post_mcp(
        &server,
        &call.to_string(),
        Some(&session),
        &[("traceparent", &header_only)],
    )
    .await;
    assert_eq!(status, 200);
    let spans = receiver
        .wait_for("the MCP calls' traces", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "encode")
                && spans
                    .iter()
                    .any(|s| s.trace_id == header_trace && s.name == "encode")
        })
        .await;
    let root = one(&spans, &trace, "tools/call run_python", &parent);
    assert_eq!(root.attr("mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(root.attr("gen_ai.tool.name").as_deref(), Some("run_python"));
    assert_eq!(root.attr("omcp.outcome").as_deref(), Some("ok"));
    for step in ["admit", "instantiate", "guest run", "encode"] {
        one(&spans, &trace, step, &root.span_id);
    }
    let root = one(
        &spans,
        &header_trace,
        "tools/call run_python",
        &header_parent,
    );
    one(&spans, &header_trace, "guest run", &root.span_id);

    assert_nothing_leaks(&spans, &[&id, "kept-mark-77aa", "mcp-mark-3f3f"]);
}

#[tokio::test]
async fn traces_stay_off_when_the_sdk_is_disabled() {
    let receiver = Receiver::start().await;
    let server = start(&receiver, &[], &[("OTEL_SDK_DISABLED", "true")]);
    let (trace, _, header) = caller(6);
    post_run(&server, json!({"code": "print(1)"}), Some(&header)).await;
    // Batches go every 100 ms when on: two seconds is twenty of them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*receiver.exports.lock().unwrap(), 0, "{trace}");
    assert!(receiver.spans.lock().unwrap().is_empty());
}

/// Spans still in the batch when SIGTERM comes are sent before the process ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_last_spans() {
    let receiver = Receiver::start().await;
    // A batch every minute: only the flush at exit can send this run's spans in time.
    let mut server = start(&receiver, &[], &[("OTEL_BSP_SCHEDULE_DELAY", "60000")]);
    let (trace, parent, header) = caller(7);
    post_run(&server, json!({"code": "print(1)"}), Some(&header)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *receiver.exports.lock().unwrap(),
        0,
        "exported before the exit"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::block_in_place(|| server.child.wait()).unwrap();
    assert!(exit.success(), "server exited with {exit:?}");
    let spans = receiver
        .wait_for("the run's trace after SIGTERM", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "encode")
        })
        .await;
    let root = one(&spans, &trace, "POST /run", &parent);
    one(&spans, &trace, "guest run", &root.span_id);
}
