//! MCP with real clients, installed by tests/prepare.sh: the official Python SDK, the MCP
//! Inspector CLI and the MCP conformance suite, over stdio and streamable HTTP.

use crate::helpers::{Server, bin, cache_dir, prepare, with_clients};

pub fn assert_sdk_report(code: i32, stdout: &str, stderr: &str) {
    let report: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("sdk_client printed no report ({e}): {stdout}\n{stderr}"));
    eprintln!(
        "sdk report: passed {} / latency {}",
        report["passed"], report["latency_ms"]
    );
    assert_eq!(report["failed"], serde_json::json!([]), "{report:#}");
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn python_sdk_over_stdio() {
    prepare();
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_client.py stdio -- {} mcp --max-concurrency 1 --cache-dir {:?}",
        bin(),
        cache_dir()
    ));
    assert_sdk_report(code, &stdout, &stderr);
}

#[test]
fn python_sdk_over_http() {
    let server = Server::start_with(&["--max-concurrency", "1"]);
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_client.py http {}",
        server.url("/mcp")
    ));
    assert_sdk_report(code, &stdout, &stderr);
}

#[test]
fn python_sdk_over_http_with_a_token() {
    let token_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-token");
    std::fs::write(&token_file, "sdk-test-token\n").unwrap();
    let server = Server::start_with(&[
        "--max-concurrency",
        "1",
        "--auth-token-file",
        token_file.to_str().unwrap(),
    ]);
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_client.py http {} --token-file {}",
        server.url("/mcp"),
        token_file.display()
    ));
    assert_sdk_report(code, &stdout, &stderr);
    // Without the token the client cannot even connect.
    let (code, stdout, _) = with_clients(&format!(
        "python tests/mcp/sdk_client.py http {}",
        server.url("/mcp")
    ));
    assert_ne!(code, 0, "{stdout}");
}

#[test]
fn inspector_cli_over_stdio() {
    prepare();
    // MCP clients start stdio servers with a minimal environment (no OMCP_CACHE_DIR), so
    // the test cache is passed as a flag; otherwise the first start compiles everything
    // into ~/.cache and outlasts the Inspector's 15 s connect timeout.
    let (code, stdout, stderr) = with_clients(&format!(
        "tests/mcp/inspector.sh stdio {} --cache-dir {:?}",
        bin(),
        cache_dir()
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

#[test]
fn inspector_cli_over_http() {
    let server = Server::start();
    let (code, stdout, stderr) = with_clients(&format!(
        "tests/mcp/inspector.sh http {}",
        server.url("/mcp")
    ));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

#[test]
fn conformance_suite_over_http() {
    let server = Server::start();
    let (code, stdout, stderr) =
        with_clients(&format!("tests/mcp/conformance.sh {}", server.url("/mcp")));
    eprintln!("{stdout}");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

/// The scientific runtime through the official SDK: the tool names runtimes and packages,
/// a plot is an `image` content block, `runtime` and `seed` work, unknown runtimes -32602.
#[test]
fn python_sdk_scientific_over_stdio() {
    prepare();
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_scientific.py stdio -- {} mcp --runtimes stdlib,scientific --cache-dir {:?}",
        bin(),
        cache_dir()
    ));
    assert_sdk_report(code, &stdout, &stderr);
}

#[test]
fn python_sdk_scientific_over_http() {
    let server = Server::scientific(&[]);
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_scientific.py http {}",
        server.url("/mcp")
    ));
    assert_sdk_report(code, &stdout, &stderr);
}

/// Sessions through the official SDK: create_session, state across run_python calls,
/// changed files as resource links readable with resources/read, upload_file, list_files,
/// fork_session, close_session, rollback, the isError answers that say to call
/// create_session, and a stateless run's files as embedded resources.
#[test]
fn python_sdk_sessions_over_stdio() {
    prepare();
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_sessions.py stdio -- {} mcp --cache-dir {:?}",
        bin(),
        cache_dir()
    ));
    assert_sdk_report(code, &stdout, &stderr);
}

#[test]
fn python_sdk_sessions_over_http() {
    let server = Server::start();
    let (code, stdout, stderr) = with_clients(&format!(
        "python tests/mcp/sdk_sessions.py http {}",
        server.url("/mcp")
    ));
    assert_sdk_report(code, &stdout, &stderr);
}
