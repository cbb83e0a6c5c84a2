//! Replicas behind a real load balancer: three servers sharing one session directory
//! (`--shared-sessions`) behind HAProxy, run with the configuration shipped in
//! `deploy/haproxy/`, and scraped by a real Prometheus (both from Debian's packages,
//! installed by tests/prepare.sh). Everything listens on 127.0.0.1.
//!
//! One test walks the whole story on one cluster, in order: stateless calls spread (each
//! replica's `/metrics` shows its share, and Prometheus' sum over the three is the client's
//! count); MCP clients stay on their replica (and, as a control, a balancer without the
//! stick table breaks them); sandbox sessions opened over HTTP and over MCP keep their state
//! across 20 turns that land on every replica; a rolling restart under traffic answers
//! every request with its result or a typed refusal and loses no turn; a replica killed
//! with SIGKILL mid-turn costs exactly that turn, answered with a typed error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Killed, command, free_port, repo, start_prometheus, which};

/// One replica: a `serve` on a fixed port (so a restart comes back where HAProxy looks).
struct Replica {
    name: &'static str,
    port: u16,
    child: Option<Child>,
}

impl Replica {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self, sessions: &Path) {
        let mut child = command()
            .args(["serve", "--listen", &self.addr()])
            .arg("--session-dir")
            .arg(sessions)
            .args(["--shared-sessions", "--drain-delay-ms", "1500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start a replica");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let name = self.name;
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
                if std::env::var_os("OMCP_TEST_LOG").is_some() {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        self.child = Some(child);
        rx.recv_timeout(Duration::from_secs(600))
            .unwrap_or_else(|_| panic!("{} did not start listening", self.name));
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then wait for a clean exit (it drains first).
    async fn stop(&mut self) {
        self.signal("-TERM");
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(exit) = child.try_wait().unwrap() {
                assert!(exit.success(), "{} exited with {exit:?}", self.name);
                break;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = None;
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An answer through the balancer: status, the replica that served it (HAProxy's
/// `X-Omcp-Replica`), the JSON body.
struct Answer {
    status: u16,
    replica: Option<String>,
    body: Value,
    mcp_session: Option<String>,
}

impl Answer {
    /// A refusal the client may act on: JSON with a `type`, from the server or from the
    /// balancer's error files.
    fn typed_refusal(&self) -> Option<&str> {
        if self.status >= 400 {
            self.body["type"].as_str()
        } else {
            None
        }
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the balancer answers");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (replica, mcp_session) = (header("x-omcp-replica"), header("mcp-session-id"));
    let text = response.text().await.unwrap_or_default();
    // A JSON body, or the first JSON `data:` line of an SSE answer (MCP).
    let json_text = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .unwrap_or(text.trim());
    Answer {
        status,
        replica,
        body: serde_json::from_str(json_text).unwrap_or(Value::Null),
        mcp_session,
    }
}

/// A client that opens a new connection per request, like many agents' HTTP stacks (and
/// so that nothing but the balancer decides where a request goes).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Answer {
    send(client.post(url).json(&body)).await
}

async fn mcp(client: &reqwest::Client, url: &str, session: Option<&str>, body: Value) -> Answer {
    let mut request = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    send(request).await
}

/// A turn of sandbox session `id`, through the balancer at `front`.
async fn turn(client: &reqwest::Client, front: &str, id: &str, code: &str) -> Answer {
    post(
        client,
        &format!("{front}/sessions/{id}/run"),
        json!({"code": code}),
    )
    .await
}

/// `initialize` + `notifications/initialized`: the MCP session id and the replica that
/// answered. `strict`: the notification must be accepted (it is not, through a balancer
/// that sends it to another replica).
async fn mcp_open(client: &reqwest::Client, url: &str, strict: bool) -> (String, String) {
    let answer = mcp(
        client,
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "replicas-test", "version": "1"}}}),
    )
    .await;
    assert_eq!(answer.status, 200, "initialize: {}", answer.body);
    let session = answer.mcp_session.expect("an Mcp-Session-Id");
    let notified = mcp(
        client,
        url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    if strict {
        assert_eq!(notified.status, 202, "initialized: {}", notified.body);
    }
    // The control frontend names no replica.
    (session, answer.replica.unwrap_or_default())
}

async fn mcp_call(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    tool: &str,
    arguments: Value,
) -> Answer {
    mcp(
        client,
        url,
        Some(session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}}),
    )
    .await
}

/// One replica's `/metrics`, straight from it (not through the balancer).
async fn metrics(client: &reqwest::Client, replica: &Replica) -> String {
    client
        .get(format!("http://{}/metrics", replica.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `omcp_runs_total` samples of one replica's `/metrics`, summed by `face`.
async fn runs_by_face(client: &reqwest::Client, replica: &Replica) -> BTreeMap<String, f64> {
    let text = metrics(client, replica).await;
    let mut faces = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("omcp_runs_total{")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let face = series
            .split("face=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        *faces.entry(face.to_string()).or_insert(0.0) += value.parse::<f64>().unwrap();
    }
    faces
}

/// Wait until `replica` runs a session's turn (its `/metrics` gauge).
async fn until_busy(client: &reqwest::Client, replica: &Replica) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = metrics(client, replica)
            .await
            .lines()
            .find_map(|l| l.strip_prefix("omcp_sessions{state=\"running\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if busy > 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never ran its turn",
            replica.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the balancer has every replica in rotation (each serves a `/livez`).
async fn until_all_in_rotation(client: &reqwest::Client, front: &str, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut recent: Vec<String> = vec![];
    loop {
        // HAProxy itself may not be listening yet.
        if let Ok(response) = client.get(format!("{front}/livez")).send().await
            && let Some(replica) = response.headers().get("x-omcp-replica")
        {
            recent.push(replica.to_str().unwrap().to_string());
        }
        let window = &recent[recent.len().saturating_sub(names.len() * 2)..];
        if names.iter().all(|n| window.iter().any(|r| r == n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the balancer never had all of {names:?} in rotation: {recent:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PromQL instant query's single value, once the answer is `want` (bounded wait).
async fn until_promql(client: &reqwest::Client, web: &str, query: &str, want: f64, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = Value::Null;
    loop {
        if let Ok(response) = client
            .get(format!("http://{web}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await
            && let Ok(body) = response.json::<Value>().await
        {
            let value = body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if value == Some(want) {
                return;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never answered {want} to {query}: {last}; its log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the background traffic of the rolling restart saw.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    refused: BTreeMap<String, u64>,
    wrong: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_behind_haproxy_share_work_and_sessions_and_lose_nothing() {
    let haproxy = which("haproxy");
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "replicas-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&work);
    let sessions = work.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();

    let mut replicas: Vec<Replica> = ["r1", "r2", "r3"]
        .into_iter()
        .map(|name| Replica {
            name,
            port: free_port(),
            child: None,
        })
        .collect();
    for replica in &mut replicas {
        replica.start(&sessions);
    }
    let names: Vec<&str> = replicas.iter().map(|r| r.name).collect();

    // HAProxy with the shipped configuration, plus (in a second file) a plain round-robin
    // frontend without the stick table: the control that shows stickiness is needed.
    let front_port = free_port();
    let plain_port = free_port();
    let control = work.join("control.cfg");
    std::fs::write(
        &control,
        format!(
            "frontend plain\n    bind 127.0.0.1:{plain_port}\n    default_backend plain\n\
             backend plain\n    balance roundrobin\n    option httpchk GET /readyz\n\
             {}",
            replicas
                .iter()
                .map(|r| format!("    server {} {} check inter 250ms\n", r.name, r.addr()))
                .collect::<String>()
        ),
    )
    .unwrap();
    let lb = Command::new(&haproxy)
        .args(["-db", "-f"])
        .arg(repo().join("deploy/haproxy/haproxy.cfg"))
        .arg("-f")
        .arg(&control)
        .env("OMCP_LB_BIND", format!("127.0.0.1:{front_port}"))
        .env("OMCP_LB_ERRORS", repo().join("deploy/haproxy/errors"))
        .env("OMCP_R1", replicas[0].addr())
        .env("OMCP_R2", replicas[1].addr())
        .env("OMCP_R3", replicas[2].addr())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("haproxy.log")).unwrap())
        .spawn()
        .expect("failed to start haproxy");
    let _lb = Killed(lb);

    // Prometheus scrapes each replica directly (as a ServiceMonitor does in a cluster).
    let (_scraper, web) = start_prometheus(
        &work,
        "replicas",
        &replicas.iter().map(Replica::addr).collect::<Vec<_>>(),
    );
    let prometheus_log = work.join("prometheus.log");

    let http = client();
    let front = format!("http://127.0.0.1:{front_port}");
    let plain = format!("http://127.0.0.1:{plain_port}");
    until_all_in_rotation(&http, &front, &names).await;
    // Scraped before the runs, so each replica's counter rises between its samples.
    until_promql(
        &http,
        &web,
        "count(up{job=\"replicas\"} == 1)",
        3.0,
        &prometheus_log,
    )
    .await;

    // 1. Stateless runs spread: each replica counts its share; the sum is what was sent.
    // Spread over a few seconds, so Prometheus sees each counter rise (a rate).
    let sent = 30;
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..sent {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = post(
            &http,
            &format!("{front}/run"),
            json!({"code": format!("{i} * 3")}),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["result"], i * 3, "{}", answer.body);
        *served.entry(answer.replica.unwrap()).or_default() += 1;
    }
    assert_eq!(
        served.len(),
        3,
        "round robin reaches every replica: {served:?}"
    );
    let mut total = 0.0;
    for replica in &replicas {
        let runs = runs_by_face(&http, replica).await;
        let http_runs = runs.get("http").copied().unwrap_or(0.0);
        assert_eq!(
            http_runs,
            f64::from(served[replica.name]),
            "{}'s /metrics counts the runs it served ({served:?})",
            replica.name
        );
        total += http_runs;
    }
    assert_eq!(total, f64::from(sent));
    // Prometheus, scraping the three, adds up to the client's count.
    until_promql(
        &http,
        &web,
        "sum(omcp_runs_total{job=\"replicas\",face=\"http\"})",
        f64::from(sent),
        &prometheus_log,
    )
    .await;
    until_promql(
        &http,
        &web,
        "count(sum by (instance) (rate(omcp_runs_total{job=\"replicas\",face=\"http\"}[1m])) > 0)",
        3.0,
        &prometheus_log,
    )
    .await;

    // 2. MCP clients stay on the replica that answered their `initialize`.
    let (session, home) = mcp_open(&http, &format!("{front}/mcp"), true).await;
    for i in 0..6 {
        let answer = mcp_call(
            &http,
            &format!("{front}/mcp"),
            &session,
            "run_python",
            json!({"code": format!("{i} + 100")}),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.body["result"]["structuredContent"]["result"],
            i + 100,
            "{}",
            answer.body
        );
        assert_eq!(answer.replica.as_deref(), Some(home.as_str()));
    }
    // The control: without the stick table, calls land on replicas that do not know the
    // MCP session, which refuse them.
    let (session, _) = mcp_open(&http, &format!("{plain}/mcp"), false).await;
    let mut refused = 0;
    for _ in 0..6 {
        let answer = mcp_call(
            &http,
            &format!("{plain}/mcp"),
            &session,
            "run_python",
            json!({"code": "1"}),
        )
        .await;
        if answer.status != 200 {
            assert!((400..500).contains(&answer.status), "{}", answer.status);
            refused += 1;
        }
    }
    assert!(refused > 0, "plain round robin should break MCP sessions");

    // 3. Sandbox sessions reachable from any replica: 20 turns over HTTP...
    let created = post(&http, &format!("{front}/sessions"), json!({})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let over_http = created.body["session_id"].as_str().unwrap().to_string();
    let mut landed = BTreeSet::new();
    for n in 1..=20 {
        let answer = turn(
            &http,
            &front,
            &over_http,
            "n = globals().get('n', 0) + 1\nn",
        )
        .await;
        assert_eq!(answer.status, 200, "turn {n}: {}", answer.body);
        assert_eq!(answer.body["result"], n, "turn {n}: {}", answer.body);
        landed.insert(answer.replica.unwrap());
    }
    assert_eq!(landed.len(), 3, "turns landed on {landed:?}");
    // ...and over MCP, from a client that opens a new MCP session for every call.
    let (opener, _) = mcp_open(&http, &format!("{front}/mcp"), true).await;
    let created = mcp_call(
        &http,
        &format!("{front}/mcp"),
        &opener,
        "create_session",
        json!({}),
    )
    .await;
    let over_mcp = created.body["result"]["structuredContent"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("create_session: {}", created.body))
        .to_string();
    let mut landed = BTreeSet::new();
    for n in 1..=20 {
        let (fresh, _) = mcp_open(&http, &format!("{front}/mcp"), true).await;
        let answer = mcp_call(
            &http,
            &format!("{front}/mcp"),
            &fresh,
            "run_python",
            json!({"code": "m = globals().get('m', 0) + 1\nm", "session_id": over_mcp}),
        )
        .await;
        assert_eq!(answer.status, 200, "turn {n}: {}", answer.body);
        assert_eq!(
            answer.body["result"]["structuredContent"]["result"], n,
            "turn {n}: {}",
            answer.body
        );
        landed.insert(answer.replica.unwrap());
    }
    assert!(landed.len() >= 2, "MCP turns landed on {landed:?}");
    // Every replica lists both, with the turns the others ran.
    for _ in 0..3 {
        let listed = send(http.get(format!("{front}/sessions"))).await;
        let sessions = listed.body["sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (id, turns) in [(&over_http, 20), (&over_mcp, 20)] {
            let found = sessions.iter().find(|s| s["session_id"] == id.as_str());
            assert_eq!(
                found.map(|s| s["turns"].clone()),
                Some(json!(turns)),
                "{:?} lists {}",
                listed.replica,
                listed.body
            );
        }
    }

    // 4. A rolling restart under steady traffic: stateless runs and a session's turns keep
    // going; every answer is its result or a typed refusal, and no acknowledged turn is lost.
    let stop = Arc::new(AtomicBool::new(false));
    let stateless = tokio::spawn({
        let (stop, http, url) = (stop.clone(), http.clone(), format!("{front}/run"));
        async move {
            let mut tally = Tally::default();
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let answer = post(&http, &url, json!({"code": format!("{i} * {i}")})).await;
                match answer.typed_refusal() {
                    _ if answer.status == 200 && answer.body["result"] == i * i => tally.ok += 1,
                    Some(kind) => *tally.refused.entry(kind.to_string()).or_default() += 1,
                    None => tally
                        .wrong
                        .push(format!("run {i}: {} {}", answer.status, answer.body)),
                }
            }
            tally
        }
    });
    let turns = tokio::spawn({
        let (stop, http) = (stop.clone(), http.clone());
        let url = format!("{front}/sessions/{over_http}/run");
        async move {
            let mut tally = Tally::default();
            let mut n: u64 = 20;
            while !stop.load(Ordering::Relaxed) {
                let answer = post(
                    &http,
                    &url,
                    json!({"code": "n = globals().get('n', 0) + 1\nn"}),
                )
                .await;
                match answer.typed_refusal() {
                    _ if answer.status == 200 && answer.body["result"] == n + 1 => {
                        n += 1;
                        tally.ok += 1;
                    }
                    // Refused before it ran: the same turn is sent again.
                    Some(kind @ ("unavailable" | "session_busy" | "busy" | "session_unsaved")) => {
                        *tally.refused.entry(kind.to_string()).or_default() += 1
                    }
                    _ => {
                        tally.wrong.push(format!(
                            "turn {}: {} {}",
                            n + 1,
                            answer.status,
                            answer.body
                        ));
                        break;
                    }
                }
            }
            (tally, n)
        }
    });
    for replica in &mut replicas {
        tokio::time::sleep(Duration::from_millis(500)).await;
        replica.stop().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        replica.start(&sessions);
        until_all_in_rotation(&http, &front, &names).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let stateless = stateless.await.unwrap();
    let (turned, n) = turns.await.unwrap();
    assert!(stateless.wrong.is_empty(), "stateless: {stateless:?}");
    assert!(turned.wrong.is_empty(), "turns: {turned:?}");
    assert!(
        stateless.ok > 0 && turned.ok > 0,
        "{stateless:?} {turned:?}"
    );
    eprintln!("rolling restart: runs {stateless:?}; turns {turned:?}");
    // The session is exactly where its acknowledged turns left it.
    let answer = turn(&http, &front, &over_http, "n").await;
    assert_eq!(answer.body["result"], n, "{}", answer.body);

    // 5. SIGKILL mid-turn. Three sessions each start a slow turn at once (round robin: one
    // per replica); one replica is killed while it runs its turn. Its client gets the balancer's
    // typed `replica_failed`, and its session resumes elsewhere from its last checkpoint,
    // the turn before; the other two keep theirs.
    let mut ids = vec![];
    for _ in 0..3 {
        let created = post(&http, &format!("{front}/sessions"), json!({})).await;
        let id = created.body["session_id"].as_str().unwrap().to_string();
        let answer = turn(&http, &front, &id, "k = 1\nk").await;
        assert_eq!(answer.body["result"], 1, "{}", answer.body);
        ids.push(id);
    }
    let slow: Vec<_> = ids
        .iter()
        .map(|id| {
            let (http, url) = (http.clone(), format!("{front}/sessions/{id}/run"));
            tokio::spawn(async move {
                post(
                    &http,
                    &url,
                    json!({"code": "import time\nk += 1\ntime.sleep(4)\nk", "timeout_ms": 20000}),
                )
                .await
            })
        })
        .collect();
    // Killed only once it is running its turn (not before it got one: the balancer would
    // then send that turn elsewhere).
    until_busy(&http, &replicas[1]).await;
    replicas[1].kill();
    let mut failed = 0;
    for (id, task) in ids.iter().zip(slow) {
        let answer = task.await.unwrap();
        let kept = if answer.status == 200 {
            assert_eq!(answer.body["result"], 2, "{}", answer.body);
            2
        } else {
            assert_eq!(answer.status, 502, "{}", answer.body);
            assert_eq!(answer.typed_refusal(), Some("replica_failed"));
            failed += 1;
            1
        };
        let next = turn(&http, &front, id, "k").await;
        assert_eq!(next.status, 200, "{}", next.body);
        assert_eq!(next.body["result"], kept, "{}", next.body);
    }
    assert_eq!(failed, 1, "exactly the killed replica's turn fails");
    // The survivors serve everything, sessions included.
    for i in 0..6 {
        let answer = post(
            &http,
            &format!("{front}/run"),
            json!({"code": format!("{i} - 1")}),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_ne!(answer.replica.as_deref(), Some("r2"));
    }
    let answer = turn(&http, &front, &over_http, "n").await;
    assert_eq!(answer.body["result"], n, "{}", answer.body);
    let _ = std::fs::remove_dir_all(&work);
}
