//! `GET /openapi.json`, and schemathesis (installed by tests/prepare.sh) fuzzing the HTTP API
//! from it: no 5xx, every answer as documented (status, content type, headers, schema),
//! schema-valid requests accepted, invalid ones refused.

use std::process::Command;

use crate::helpers::{Server, repo};

#[tokio::test]
async fn the_document_describes_the_api_as_served() {
    let server = Server::start_with(&["--timeout-ms", "3000"]);
    let response = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let run = &doc["paths"]["/run"]["post"];
    for status in ["200", "400", "408", "413", "422", "503"] {
        assert!(run["responses"][status].is_object(), "no {status} in {run}");
    }
    // The live limits are quoted.
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("3000 ms"), "{description}");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["RunResponse"]["required"],
        serde_json::json!([
            "result",
            "result_text",
            "result_type",
            "output",
            "error",
            "stderr",
            "exit_code",
            "stopped",
            "truncated",
            "duration_ms",
            "fuel_used",
            "runtime",
            "images",
            "images_omitted",
            "displays"
        ])
    );
    assert!(doc["paths"]["/mcp"].is_null(), "MCP has its own spec");
    // Every route the server has is described (`/mcp` aside), and nothing more.
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/livez",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/run",
            "/sessions",
            "/sessions/{id}",
            "/sessions/{id}/files",
            "/sessions/{id}/files/{path}",
            "/sessions/{id}/fork",
            "/sessions/{id}/run",
            "/tools",
        ]
    );
    assert_eq!(
        schemas["Health"]["properties"]["sessions"]["$ref"],
        "#/components/schemas/SessionsHealth"
    );
}

/// The one rule of a request JSON Schema cannot state: the paths of `files` are distinct
/// and none is a parent directory of another (the server refuses such a request with 400
/// `invalid_path`). Generated bodies that break it are left out.
const HOOKS: &str = r#"
import schemathesis


def clashing_paths(body):
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        return False
    paths = [f.get("path") for f in files if isinstance(f, dict)]
    paths = [p for p in paths if isinstance(p, str)]
    seen = set(paths)
    if len(seen) != len(paths):
        return True
    return any(p[:i] in seen for p in paths for i, c in enumerate(p) if c == "/")


@schemathesis.hook
def filter_body(ctx, body):
    return not clashing_paths(body)
"#;

#[test]
fn schemathesis_finds_nothing() {
    let st = repo().join(".cache/clients/schemathesis/bin/st");
    assert!(
        st.is_file(),
        "{st:?} missing: run tests/prepare.sh (installs schemathesis locally)"
    );
    // Short limits keep the runs of generated code (and limits) quick. The fuzzer opens
    // hundreds of sessions and closes few: room for them all, so a 503 is a finding.
    let server = Server::start_with(&[
        "--timeout-ms",
        "2000",
        "--memory-mb",
        "64",
        "--max-sessions",
        "100000",
        "--sessions-memory-mb",
        "512",
    ]);
    let workdir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    std::fs::create_dir_all(&workdir).unwrap();
    let hooks = workdir.join("omcp_hooks.py");
    std::fs::write(&hooks, HOOKS).unwrap();
    let output = Command::new(&st)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .args(["run", &server.url("/openapi.json")])
        .args([
            "--checks",
            "all",
            "--seed",
            "20261127",
            "--max-examples",
            "150",
        ])
        .args(["--generation-database", "none", "--no-color"])
        // "Missing test data": it cannot guess a file path that exists in a session's
        // workspace, so GET /sessions/{id}/files/{path} answers 404 (the sessions tests
        // cover that route).
        .args(["--warnings", "off"])
        // One worker: with two, CPython 3.11's AST state (shared by threads) can raise
        // "AST constructor recursion depth mismatch" inside schemathesis itself (seen once
        // in a full run, never reproduced alone): a race of the tool, not a finding.
        .args(["--request-timeout", "30", "--workers", "1"])
        .current_dir(&workdir)
        .output()
        .expect("failed to run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("issues found") || l.contains("Seed"))
        .collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("No issues found"), "{stdout}");
}
