//! Every limit stops the guest with the right `stopped` value, and the server then answers
//! the next request normally.

use serde_json::{Value, json};

use crate::helpers::Server;

async fn stopped_by(server: &Server, body: Value) -> Value {
    let out = server.run_with(body).await;
    server.assert_healthy().await;
    out
}

#[tokio::test]
async fn busy_loop_hits_the_time_limit() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "print('started')\nwhile True: pass", "timeout_ms": 500}),
    )
    .await;
    assert_eq!(out["stopped"], "timeout", "{out}");
    assert_eq!(
        out["output"], "started\n",
        "output written before the stop is kept"
    );
    assert_eq!(out["exit_code"], Value::Null);
    assert!(
        out["error"].as_str().unwrap().starts_with("timeout:"),
        "{out}"
    );
    let ms = out["duration_ms"].as_f64().unwrap();
    assert!(ms >= 500.0, "stopped before its limit: {ms} ms");
}

#[tokio::test]
async fn busy_loop_hits_the_fuel_limit() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "while True: pass", "fuel": 1_000_000_000u64}),
    )
    .await;
    assert_eq!(out["stopped"], "fuel", "{out}");
    assert_eq!(out["fuel_used"], json!(1_000_000_000u64));
    assert!(out["error"].as_str().unwrap().starts_with("fuel:"));
}

#[tokio::test]
async fn sleeping_in_a_host_call_hits_the_time_limit() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "import time\ntime.sleep(100)", "timeout_ms": 300}),
    )
    .await;
    assert_eq!(out["stopped"], "timeout", "{out}");
    assert!(out["duration_ms"].as_f64().unwrap() < 5_000.0);
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "x = bytearray(10**9)", "memory_mb": 128}),
    )
    .await;
    assert_eq!(out["stopped"], "memory", "{out}");
    assert!(
        out["error"].as_str().unwrap().contains("MemoryError"),
        "{out}"
    );

    // Growth by small steps ends the same way.
    let out = stopped_by(
        &server,
        json!({"code": "l = []\nwhile True: l.append('x' * 100000)", "memory_mb": 64}),
    )
    .await;
    assert_eq!(out["stopped"], "memory", "{out}");

    // A program that survives a refused allocation is not reported as stopped.
    let out = stopped_by(&server, json!({"code": "try:\n    bytearray(10**9)\nexcept MemoryError:\n    r = 'survived'\nr", "memory_mb": 64})).await;
    assert_eq!(out["result"], "survived");
    assert_eq!(out["stopped"], Value::Null);
}

#[tokio::test]
async fn output_flood_hits_the_output_limit() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "print('x' * 10**8)", "max_output_bytes": 1000}),
    )
    .await;
    assert_eq!(out["stopped"], "output", "{out}");
    assert_eq!(out["truncated"], true);
    assert_eq!(out["output"].as_str().unwrap(), "x".repeat(1000));

    // stdout and stderr share one budget.
    let out = stopped_by(&server, json!({"code": "import sys\nwhile True:\n    print('o' * 100)\n    print('e' * 100, file=sys.stderr)", "max_output_bytes": 5000})).await;
    assert_eq!(out["stopped"], "output");
    let total = out["output"].as_str().unwrap().len() + out["stderr"].as_str().unwrap().len();
    assert_eq!(total, 5000);

    // Under the limit nothing is cut.
    let out = stopped_by(
        &server,
        json!({"code": "print('y' * 999, end='')", "max_output_bytes": 1000}),
    )
    .await;
    assert_eq!(out["stopped"], Value::Null);
    assert_eq!(out["truncated"], false);
}

#[tokio::test]
async fn huge_results_and_tracebacks_are_cut() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "'z' * 10**6", "max_output_bytes": 2000}),
    )
    .await;
    assert_eq!(out["truncated"], true, "{out}");
    assert!(out["result"].as_str().unwrap().len() < 3000);
    let out = stopped_by(
        &server,
        json!({"code": "raise ValueError('v' * 10**6)", "max_output_bytes": 2000}),
    )
    .await;
    assert_eq!(out["truncated"], true);
    assert!(out["error"].as_str().unwrap().len() < 3000);
}

#[tokio::test]
async fn deep_recursion_is_contained() {
    let server = Server::start();
    let out = stopped_by(&server, json!({"code": "def f(n): return f(n + 1)\nf(0)"})).await;
    assert!(
        out["error"].as_str().unwrap().contains("RecursionError"),
        "{out}"
    );

    // With the interpreter's guard lifted, Python frames (heap-allocated in 3.12) grow until
    // the memory limit stops them; the error still says what happened, briefly.
    let out = stopped_by(&server, json!({"code": "import sys\nsys.setrecursionlimit(10**9)\ndef f(n): return f(n + 1)\nf(0)", "memory_mb": 64})).await;
    assert_eq!(out["stopped"], "memory", "{out}");
    // CPython's own report varies here (MemoryError, or a SystemError when even the
    // exception could not be allocated); the traceback is cut to a readable size.
    assert!(
        out["error"].as_str().unwrap().contains("frames omitted"),
        "{out}"
    );

    // Recursion through C (repr of a deeply nested list) hits the C recursion guard.
    let out = stopped_by(
        &server,
        json!({"code": "x = []\nfor _ in range(100000):\n    x = [x]\nrepr(x)"}),
    )
    .await;
    assert!(
        out["error"].as_str().unwrap().contains("RecursionError"),
        "{out}"
    );
}

#[tokio::test]
async fn abort_is_a_trap() {
    let server = Server::start();
    let out = stopped_by(
        &server,
        json!({"code": "import os\nprint('going', flush=True)\nos.abort()"}),
    )
    .await;
    assert_eq!(out["stopped"], "trap", "{out}");
    assert!(
        out["error"].as_str().unwrap().contains("unreachable"),
        "{out}"
    );
    assert_eq!(out["output"], "going\n");
}

#[tokio::test]
async fn requests_cannot_raise_limits_above_the_servers() {
    let server = Server::start_with(&["--timeout-ms", "400"]);
    let out = server
        .run_with(json!({"code": "while True: pass", "timeout_ms": 60_000}))
        .await;
    assert_eq!(out["stopped"], "timeout");
    assert!(out["duration_ms"].as_f64().unwrap() < 10_000.0, "{out}");
    let (status, body) = server.run_json(json!({"code": "1", "timeout_ms": 0})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "invalid_request");
}
