//! Code mode against real MCP servers no one here wrote (installed by tests/prepare.sh):
//! `@modelcontextprotocol/server-everything` (stdio and streamable HTTP),
//! `@modelcontextprotocol/server-memory` and `mcp-server-time`. The same programs run over
//! `/run` in both runtimes, in a session, and (tests/mcp/sdk_code_mode.py) over MCP.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::helpers::{Server, bin, cache_dir, free_port, repo, with_clients};

fn clients() -> PathBuf {
    repo().join(".cache/clients")
}

fn node() -> PathBuf {
    clients().join("node22/node_modules/node/bin/node")
}

fn upstream_js(package: &str) -> PathBuf {
    let js = clients().join(format!(
        "upstream/node_modules/@modelcontextprotocol/{package}/dist/index.js"
    ));
    assert!(js.is_file(), "{js:?} missing: run tests/prepare.sh");
    js
}

/// The everything server over streamable HTTP, killed on drop.
struct HttpUpstream(std::process::Child, u16);

impl HttpUpstream {
    fn start() -> HttpUpstream {
        let port = free_port();
        let child = std::process::Command::new(node())
            .arg(upstream_js("server-everything"))
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("failed to start server-everything over HTTP");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server-everything never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpUpstream(child, port)
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tools config in `dir`: everything (stdio, its pid written to `dir/everything.pid` so
/// a test can kill it), memory (its file in `dir`), time, an HTTP upstream if given, and a
/// server whose command does not exist.
fn write_config(dir: &Path, http_port: Option<u16>) -> PathBuf {
    let pid_file = dir.join("everything.pid");
    let mut servers = json!({
        "everything": {
            "command": "bash",
            "args": ["-c", format!("echo $$ > {:?}; exec {:?} {:?}", pid_file, node(), upstream_js("server-everything"))],
            // It needs task augmentation, which this client does not do.
            "deny": ["simulate-research-query"]
        },
        "memory": {
            "command": node(),
            "args": [upstream_js("server-memory")],
            "env": {"MEMORY_FILE_PATH": dir.join("memory.jsonl"), "SECRET_TOKEN": "tok-3f9a"}
        },
        "time": {
            "command": clients().join("time/bin/python"),
            "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]
        },
        "broken": {"command": dir.join("no-such-program")},
        // The same server, with everything this server sends it copied to a file: the
        // cancellations a test expects to reach it.
        "watched": {
            "command": "bash",
            "args": ["-c", format!("tee -a {:?} | {:?} {:?}", dir.join("watched.in"), node(), upstream_js("server-everything"))],
            "allow": ["trigger-long-running-operation"]
        }
    });
    if let Some(port) = http_port {
        servers["web"] = json!({
            "url": format!("http://127.0.0.1:{port}/mcp"),
            "headers": {"X-Api-Key": "hdr-77c1"},
            "allow": ["echo", "get-sum"]
        });
    }
    let path = dir.join("tools.json");
    std::fs::write(&path, json!({"mcpServers": servers}).to_string()).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("code-mode-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The issue's program: ten entities created in a loop, read back, filtered, counted.
fn memory_program(prefix: &str) -> String {
    format!(
        r#"import tools
for i in range(10):
    tools.memory.create_entities(entities=[{{"name": f"{prefix}{{i}}", "entityType": "even" if i % 2 == 0 else "odd", "observations": [f"n={{i}}"]}}])
graph = tools.memory.read_graph()
mine = [e for e in graph["entities"] if e["name"].startswith("{prefix}")]
odd = [e["name"] for e in mine if e["entityType"] == "odd"]
[len(mine), len(odd)]"#
    )
}

const CHECKED_ANSWERS: &str = r#"import tools
echo = tools.everything.echo(message="hi")
total = tools.everything.get_sum(a=2, b=3)
weather = tools.everything.get_structured_content(location="Chicago")
try:
    tools.memory.add_observations(observations=[{"entityName": "Nobody", "contents": ["x"]}])
    failed = None
except tools.ToolError as e:
    failed = [e.kind, str(e), e.server, e.tool]
try:
    tools.everything.get_sum(a="x", b=3)
    invalid = None
except tools.ToolError as e:
    invalid = [e.kind, str(e)]
now = tools.time.get_current_time(timezone="UTC")
[echo, total, weather, failed, invalid, sorted(now), "after the errors"]"#;

fn check_answers(answer: &Value, runtime: &str) {
    assert!(answer["error"].is_null(), "{runtime}: {answer}");
    let r = &answer["result"];
    assert_eq!(r[0], "Echo: hi", "{runtime}: {answer}");
    assert_eq!(r[1], "The sum of 2 and 3 is 5.");
    assert_eq!(
        r[2],
        json!({"temperature": 36, "conditions": "Light rain / drizzle", "humidity": 82})
    );
    assert_eq!(
        r[3],
        json!([
            "tool_error",
            "Entity with name Nobody not found",
            "memory",
            "add_observations"
        ])
    );
    assert_eq!(r[4][0], "invalid_arguments");
    assert!(r[4][1].as_str().unwrap().contains("/a"), "{}", r[4]);
    assert_eq!(
        r[5],
        json!(["datetime", "day_of_week", "is_dst", "timezone"])
    );
    assert_eq!(r[6], "after the errors");
    let calls = answer["tool_calls"].as_array().expect("tool_calls");
    let summary: Vec<(String, String, bool, Option<String>)> = calls
        .iter()
        .map(|c| {
            (
                c["server"].as_str().unwrap().into(),
                c["tool"].as_str().unwrap().into(),
                c["ok"].as_bool().unwrap(),
                c["error"].as_str().map(String::from),
            )
        })
        .collect();
    let expect = |s: &str, t: &str, ok: bool, e: Option<&str>| {
        (s.to_string(), t.to_string(), ok, e.map(String::from))
    };
    assert_eq!(
        summary,
        vec![
            expect("everything", "echo", true, None),
            expect("everything", "get-sum", true, None),
            expect("everything", "get-structured-content", true, None),
            expect("memory", "add_observations", false, Some("tool_error")),
            expect("everything", "get-sum", false, Some("invalid_arguments")),
            expect("time", "get_current_time", true, None),
        ],
        "{runtime}"
    );
    for call in calls {
        assert!(call["duration_ms"].as_f64().unwrap() >= 0.0);
        // Not asked for: no arguments or results echoed.
        assert!(
            call.get("arguments").is_none() && call.get("result").is_none(),
            "{call}"
        );
    }
    assert_eq!(calls[0]["result_bytes"], json!(10)); // "Echo: hi" as JSON
}

/// The whole HTTP face with every upstream kind: both runtimes, checked answers, errors
/// that let the run go on, schema checks on this side, a failing upstream in /healthz,
/// the stubs, records, details on request, and a session that calls tools across turns.
#[tokio::test]
async fn code_mode_over_http_in_both_runtimes_and_a_session() {
    let dir = temp_dir("http");
    let web = HttpUpstream::start();
    let config = write_config(&dir, Some(web.1));
    let server = Server::scientific(&["--tools-config", config.to_str().unwrap()]);

    // /healthz: the broken server is reported, the others are ready.
    let health: Value = server.healthz().await.json().await.unwrap();
    let tools = health["tools"].as_array().unwrap();
    let state = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {health}"))
            .clone()
    };
    assert_eq!(state("broken")["status"], "failed", "{health}");
    assert!(
        state("broken")["error"]
            .as_str()
            .unwrap()
            .contains("no-such-program")
    );
    for name in ["everything", "memory", "time", "web"] {
        assert_eq!(state(name)["status"], "ready", "{health}");
    }
    assert_eq!(state("web")["tools"], 2, "allow list: {health}");
    assert_eq!(state("time")["tools"], 2);
    // Secrets from the config never show.
    let text = health.to_string();
    assert!(
        !text.contains("tok-3f9a") && !text.contains("hdr-77c1"),
        "{text}"
    );

    // GET /tools: the stubs the model codes against.
    let listing: Value = server.get("/tools").await.json().await.unwrap();
    let stubs = listing["stubs"].as_str().unwrap();
    for needle in [
        "class memory:",
        "def create_entities(entities: list[dict]) -> dict:",
        "def get_sum(a: float, b: float) -> Any:",
        "def get_structured_content(location: Literal[\"New York\", \"Chicago\", \"Los Angeles\"])",
        "def convert_time(source_timezone: str, time: str, target_timezone: str)",
        "class web:",
        "class broken:",
    ] {
        assert!(stubs.contains(needle), "{needle:?} not in:\n{stubs}");
    }
    assert!(
        !stubs.contains("simulate_research_query"),
        "denied tool listed"
    );
    assert!(!stubs.contains("tok-3f9a"));

    for runtime in ["scientific", "stdlib"] {
        // Ten entities in a loop, read back, filtered, counted.
        let answer = server
            .run_with(json!({"code": memory_program(runtime), "runtime": runtime}))
            .await;
        assert_eq!(answer["result"], json!([10, 5]), "{runtime}: {answer}");
        assert_eq!(answer["tool_calls"].as_array().unwrap().len(), 11);

        let answer = server
            .run_with(json!({"code": CHECKED_ANSWERS, "runtime": runtime}))
            .await;
        check_answers(&answer, runtime);

        // The HTTP upstream, its allow list, and help() from the generated signature.
        let answer = server
            .run_with(json!({"runtime": runtime, "code": r#"import tools, io, contextlib
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    help(tools.memory.create_entities)
try:
    tools.web.get_tiny_image()
    hidden = None
except AttributeError as e:
    hidden = str(e)
try:
    tools.broken.anything()
    down = None
except tools.ToolError as e:
    down = e.kind
[tools.web.echo(message="over http"), tools.web.get_sum(a=1.5, b=2), hidden, down, buf.getvalue()]"#}))
            .await;
        let r = &answer["result"];
        assert_eq!(r[0], "Echo: over http", "{runtime}: {answer}");
        assert_eq!(r[1], "The sum of 1.5 and 2 is 3.5.");
        assert!(
            r[2].as_str()
                .unwrap()
                .contains("has no tool 'get_tiny_image'"),
            "{r}"
        );
        assert_eq!(r[3], "unavailable");
        let help = r[4].as_str().unwrap();
        assert!(
            help.contains("create_entities(entities: list[dict]) -> dict")
                && help.contains("Create multiple new entities")
                && help.contains("Raises tools.ToolError"),
            "{help}"
        );
    }

    // Details on request.
    let answer = server
        .run_with(
            json!({"code": "import tools\ntools.everything.echo(message='x')",
                         "runtime": "stdlib", "tool_call_details": true}),
        )
        .await;
    let call = &answer["tool_calls"][0];
    assert_eq!(call["arguments"], json!({"message": "x"}), "{answer}");
    assert_eq!(call["result"], "Echo: x");

    // A session calls tools across turns; each turn lists its own calls.
    let (status, created) = server
        .post("/sessions", json!({"runtime": "scientific"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap();
    let path = format!("/sessions/{id}/run");
    let turn = |code: &str| server.post(&path, json!({"code": code}));
    let (_, first) = turn("import tools\nzone = tools.time.get_current_time(timezone='Europe/Warsaw')['timezone']\nzone").await;
    assert_eq!(first["result"], "Europe/Warsaw", "{first}");
    assert_eq!(first["tool_calls"].as_array().unwrap().len(), 1);
    let (_, second) =
        turn("converted = tools.time.convert_time(source_timezone=zone, time='12:00', target_timezone='UTC')\nconverted['source']['timezone']").await;
    assert_eq!(second["result"], "Europe/Warsaw", "{second}");
    assert_eq!(second["tool_calls"][0]["tool"], "convert_time");
    let (_, third) = turn("1 + 1").await;
    assert!(third.get("tool_calls").is_none(), "{third}");
}

/// Every bound, and the ways a call can go wrong without the run going wrong.
#[tokio::test]
async fn code_mode_bounds_hold() {
    let dir = temp_dir("bounds");
    let config = write_config(&dir, None);
    let server = Server::start_with(&["--tools-config", config.to_str().unwrap()]);

    // Calls per run: the third is refused, and the run goes on.
    let answer = server
        .run_with(json!({"max_tool_calls": 2, "code": r#"import tools
got = []
for i in range(3):
    try:
        got.append(tools.everything.get_sum(a=i, b=i))
    except tools.ToolError as e:
        got.append([e.kind, str(e)])
got"#}))
        .await;
    let r = &answer["result"];
    assert_eq!(r[2][0], "limit", "{answer}");
    assert!(r[2][1].as_str().unwrap().contains("max_tool_calls"));
    assert_eq!(answer["tool_calls"].as_array().unwrap().len(), 3);
    assert_eq!(answer["tool_calls"][2]["error"], "limit");

    // A slow tool past the time per call: a timeout (had it waited, the call would have
    // answered), and the run goes on.
    let answer = server
        .run_with(json!({"tool_timeout_ms": 500, "code": r#"import tools
try:
    tools.everything.trigger_long_running_operation(duration=5, steps=5)
except tools.ToolError as e:
    kind = e.kind
[kind, tools.everything.echo(message="still here")]"#}))
        .await;
    assert_eq!(
        answer["result"],
        json!(["timeout", "Echo: still here"]),
        "{answer}"
    );

    // The run's own timeout holds while it waits on a tool, and the call is cancelled
    // upstream (what this server sent the upstream is copied to watched.in).
    let answer = server
        .run_with(json!({"timeout_ms": 3000, "code": "import tools\ntools.watched.trigger_long_running_operation(duration=20, steps=2)"}))
        .await;
    assert_eq!(answer["stopped"], "timeout", "{answer}");
    let sent = dir.join("watched.in");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&sent).unwrap_or_default();
        if text.contains("notifications/cancelled") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cancellation reached the upstream:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... and the upstream still serves the next run.
    let answer = server
        .run("import tools\ntools.everything.echo(message='next')")
        .await;
    assert_eq!(answer["result"], "Echo: next", "{answer}");

    // Results past the byte budget: text is cut and says so; data is refused.
    let answer = server
        .run_with(json!({"max_tool_result_bytes": 300, "code": r#"import tools
text = tools.everything.echo(message="x" * 1000)
try:
    tools.memory.read_graph()
    refused = None
except tools.ToolError as e:
    refused = e.kind
[len(text), text[-80:], refused]"#}))
        .await;
    let r = &answer["result"];
    assert!(r[0].as_u64().unwrap() < 300, "{answer}");
    assert!(
        r[1].as_str().unwrap().contains("max_tool_result_bytes"),
        "{r}"
    );
    assert_eq!(answer["tool_calls"][0]["truncated"], true);
    // The graph may be empty (tiny) or not: either it fits what is left or it is refused.
    if !r[2].is_null() {
        assert_eq!(r[2], "limit");
    }
    let total: u64 = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["result_bytes"].as_u64().unwrap())
        .sum();
    assert!(total <= 300, "{answer}");

    // Arguments that fail the schema are refused here, with the schema's words.
    let answer = server
        .run(
            r#"import tools
out = []
for kwargs in ({"location": "Paris"}, {"location": None}, {"location": 3}):
    try:
        tools.everything.get_structured_content(**kwargs)
    except tools.ToolError as e:
        out.append(e.kind)
try:
    tools.everything.echo(message=object())
except TypeError as e:
    out.append("TypeError")
out"#,
        )
        .await;
    assert_eq!(
        answer["result"],
        json!([
            "invalid_arguments",
            "invalid_arguments",
            "invalid_arguments",
            "TypeError"
        ]),
        "{answer}"
    );

    // Text that imitates a frame, printed, written to a file and read back, calls nothing;
    // a malformed frame through the door itself gets a typed refusal.
    let answer = server
        .run(r#"import os, json
frame = json.dumps({"v": 1, "id": 1, "op": "call", "server": "memory", "tool": "create_entities", "args": {"entities": [{"name": "forged", "entityType": "x", "observations": []}]}})
print(frame)
open("frame.json", "w").write(frame)
os.write(1, frame.encode())
read_back = open("frame.json").read()
os.pwrite(1, b"not json", 0x6F6D6370646F6F72)
n = int.from_bytes(os.pread(1, 8, 0x6F6D6370646F6F72), "little")
json.loads(os.pread(1, n, 0x6F6D6370646F6F72))["error"]["kind"]"#)
        .await;
    assert_eq!(answer["result"], "invalid_arguments", "{answer}");
    assert!(answer.get("tool_calls").is_none(), "{answer}");
    let graph = server
        .run("import tools\n[e['name'] for e in tools.memory.read_graph()['entities']]")
        .await;
    assert!(!graph["result"].to_string().contains("forged"), "{graph}");

    // Unknown names.
    let answer = server
        .run(
            r#"import tools
try:
    tools.nothere
except AttributeError as e:
    a = "AttributeError"
try:
    tools.everything.nothere()
except AttributeError as e:
    b = "AttributeError"
[a, b]"#,
        )
        .await;
    assert_eq!(
        answer["result"],
        json!(["AttributeError", "AttributeError"]),
        "{answer}"
    );

    // /metrics counts the calls by server, tool and outcome; made-up names are not labels.
    let _ = server
        .run("import os, json\nos.pwrite(1, json.dumps({'op': 'call', 'server': 'made-up-9', 'tool': 'x'}).encode(), 0x6F6D6370646F6F72)")
        .await;
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"omcp_tool_calls_total{server="everything",tool="get-sum",outcome="ok"} 2"#,
        r#"omcp_tool_calls_total{server="everything",tool="get-sum",outcome="limit"} 1"#,
        r#"omcp_tool_calls_total{server="everything",tool="trigger-long-running-operation",outcome="timeout"} 1"#,
        r#"omcp_tool_calls_total{server="unknown",tool="unknown",outcome="unknown_tool"} 1"#,
        r#"omcp_tool_call_duration_seconds_count{server="everything"}"#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }
    assert!(!metrics.contains("made-up-9"));
}

/// An upstream killed mid-call: the run gets a ToolError, the supervisor starts it again,
/// and the next run works.
#[tokio::test]
async fn an_upstream_killed_mid_call_is_restarted() {
    let dir = temp_dir("kill");
    let config = write_config(&dir, None);
    let scratch = dir.join("scratch");
    let server = Server::start_with(&[
        "--tools-config",
        config.to_str().unwrap(),
        "--scratch-dir",
        scratch.to_str().unwrap(),
    ]);
    let pid: i32 = std::fs::read_to_string(dir.join("everything.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The guest leaves a file in its workspace just before the call: the kill comes after
    // it, whatever the machine's load (the upstream takes longer than that to restart).
    let call = server.run_with(json!({"code": r#"import tools
open("calling", "w").close()
try:
    tools.everything.trigger_long_running_operation(duration=20, steps=4)
    r = "answered"
except tools.ToolError as e:
    r = e.kind
r"#}));
    let kill = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !marker_exists(&scratch, "calling") {
            assert!(Instant::now() < deadline, "the guest never got to its call");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: a plain kill(2) of the child this test's config started.
        unsafe { libc_kill(pid, 9) };
    };
    let (answer, ()) = tokio::join!(call, kill);
    assert_eq!(answer["result"], "unavailable", "{answer}");
    assert_eq!(answer["tool_calls"][0]["error"], "unavailable");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health: Value = server.healthz().await.json().await.unwrap();
        let everything = health["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "everything")
            .unwrap()
            .clone();
        if everything["status"] == "ready" && everything["connections"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = server
        .run("import tools\ntools.everything.echo(message='back')")
        .await;
    assert_eq!(answer["result"], "Echo: back", "{answer}");
}

/// Whether some run's workspace under `scratch` holds a file named `name`.
fn marker_exists(scratch: &Path, name: &str) -> bool {
    let Ok(roots) = std::fs::read_dir(scratch) else {
        return false;
    };
    roots.flatten().any(|root| {
        std::fs::read_dir(root.path()).is_ok_and(|runs| {
            runs.flatten()
                .any(|run| run.path().join("workspace").join(name).exists())
        })
    })
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Without --tools-config there is no door: `import tools` says so, and nothing is called.
#[tokio::test]
async fn without_a_config_there_are_no_tools() {
    let server = Server::start();
    let answer = server
        .run("import tools\n[tools.__all__, 'No tool servers' in tools.__doc__ or 'no tools' in tools.__doc__]")
        .await;
    assert_eq!(answer["result"], json!([["ToolError"], true]), "{answer}");
    let (status, _) = server
        .run_json(json!({"code": "1", "max_tool_calls": -1}))
        .await;
    assert_eq!(status, 422);
}

/// A bad config is refused at start with the file and the reason.
#[test]
fn a_bad_config_stops_the_server_at_start() {
    let dir = temp_dir("bad");
    let path = dir.join("tools.json");
    std::fs::write(
        &path,
        r#"{"mcpServers": {"x": {"command": "a", "alow": ["b"]}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--tools-config"])
        .arg(&path)
        .env("OMCP_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tools.json") && stderr.contains("alow"),
        "{stderr}"
    );
}

/// The same programs over MCP with the official Python SDK, over stdio and HTTP.
#[test]
fn python_sdk_code_mode() {
    let dir = temp_dir("sdk");
    let config = write_config(&dir, None);
    let pid_file = dir.join("everything.pid");
    let (code, stdout, stderr) = with_clients(&format!(
        "OMCP_EVERYTHING_PID_FILE={pid_file:?} python tests/mcp/sdk_code_mode.py stdio -- {} mcp --runtimes stdlib,scientific --cache-dir {:?} --tools-config {:?}",
        bin(),
        cache_dir(),
        config
    ));
    super::mcp_clients::assert_sdk_report(code, &stdout, &stderr);
    let server = Server::scientific(&["--tools-config", config.to_str().unwrap()]);
    let (code, stdout, stderr) = with_clients(&format!(
        "OMCP_EVERYTHING_PID_FILE={pid_file:?} python tests/mcp/sdk_code_mode.py http {}",
        server.url("/mcp")
    ));
    super::mcp_clients::assert_sdk_report(code, &stdout, &stderr);
}
