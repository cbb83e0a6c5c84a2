//! Small helpers: start the real server on 127.0.0.1:0, read its address back, post JSON.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_omcp-sandbox")
}

/// A compile cache private to the tests, filled once per test binary, so the servers the
/// tests start only deserialize the module.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("omcp-cache")
}

pub fn prepare() {
    static PREPARE: Once = Once::new();
    PREPARE.call_once(|| {
        let status = Command::new(bin())
            .arg("prepare")
            .env("OMCP_CACHE_DIR", cache_dir())
            .stdout(Stdio::null())
            .status()
            .expect("failed to run omcp-sandbox prepare");
        assert!(
            status.success(),
            "omcp-sandbox prepare failed (is wasm/python-3.12.0.wasm fetched?)"
        );
    });
}

/// A command for the binary with the test cache configured. It loads the stdlib runtime
/// only, which the tests written before the scientific runtime expect (and it starts
/// faster); scientific tests pass `OMCP_RUNTIMES` themselves (see `Server::scientific`).
pub fn command() -> Command {
    prepare();
    let mut cmd = Command::new(bin());
    cmd.env("OMCP_CACHE_DIR", cache_dir())
        .env("OMCP_RUNTIMES", "stdlib")
        .env_remove("OMCP_DEFAULT_RUNTIME")
        .env_remove("OMCP_LISTEN");
    cmd
}

/// A running `omcp-sandbox serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// A server with both runtimes, the scientific one the default.
    pub fn scientific(args: &[&str]) -> Server {
        Server::start_with_env(args, &[("OMCP_RUNTIMES", "stdlib,scientific")])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        // Generous: a server whose settings have no cached module compiles at start, and
        // on a 2-core CI machine that can wait behind another test compiling the
        // scientific runtime (minutes).
        Server::start_within(args, env, Duration::from_secs(600))
    }

    /// Like `start_with_env`, waiting up to `patience` for the server to listen: a server
    /// that must compile at start (the scientific runtime cold: minutes) needs more.
    pub fn start_within(args: &[&str], env: &[(&str, &str)], patience: Duration) -> Server {
        let mut child = command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start omcp-sandbox serve");
        let stderr = child.stderr.take().unwrap();
        // Killed on drop even if the address never shows up (the panic below).
        let mut child = KillOnDrop(Some(child));
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
                if std::env::var_os("OMCP_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(patience)
            .expect("server did not report its address")
            .parse()
            .expect("bad address in log");
        Server {
            child: child.0.take().expect("child present"),
            addr,
            // Never reuse a connection idle for long enough that the server may be closing
            // it (its header timeout, 2 s in the load test): the request would race the close.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_millis(1000))
                .build()
                .expect("a reqwest client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST a JSON value to /run; returns status and parsed JSON body.
    pub async fn run_json(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/run"))
            .json(&body)
            .send()
            .await
            .expect("request failed");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"));
        (status, value)
    }

    /// POST a JSON value to any path; returns status and parsed JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, _, text) = self
            .raw(
                "POST",
                path,
                Some("application/json"),
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"));
        (status, value)
    }

    /// Run code with default limits; asserts a 200 answer.
    pub async fn run(&self, code: &str) -> Value {
        self.run_with(serde_json::json!({ "code": code })).await
    }

    pub async fn run_with(&self, body: Value) -> Value {
        let (status, value) = self.run_json(body).await;
        assert_eq!(status, 200, "unexpected status, body: {value}");
        value
    }

    /// Send raw bytes to a path with a method; returns status, headers and body text.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self
            .client
            .request(method.parse().unwrap(), self.url(path))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("request failed");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// Like a client that keeps reading while it writes (as curl does): POST a large body
    /// over a raw socket, ignoring write errors once the server answered early.
    pub async fn post_streaming(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        let write = async move {
            let _ = writer.write_all(head.as_bytes()).await;
            let _ = writer.write_all(&body).await;
        };
        let read = async move {
            let mut response = Vec::new();
            let _ = reader.read_to_end(&mut response).await;
            response
        };
        let ((), response) = tokio::join!(write, read);
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// GET /healthz (from a loopback Host, no token).
    /// GET `path` (no token).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    pub async fn healthz(&self) -> reqwest::Response {
        self.client
            .get(self.url("/healthz"))
            .send()
            .await
            .expect("request failed")
    }

    /// The server still answers a normal run correctly.
    pub async fn assert_healthy(&self) {
        let out = self.run("print('ok')\n40 + 2").await;
        assert_eq!(out["output"], "ok\n");
        assert_eq!(out["result"], 42);
        assert_eq!(out["error"], Value::Null);
    }
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now on 127.0.0.1 (bound, then released for a child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository root (tests run with it as the working directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where tests/prepare.sh installs the real MCP clients; fails with the fix if missing.
pub fn clients_env() -> PathBuf {
    let env = repo().join(".cache/clients/env.sh");
    assert!(
        env.is_file(),
        "{env:?} missing: run tests/prepare.sh (installs the MCP test clients locally)"
    );
    env
}

/// Run a shell command with the client environment sourced; returns exit code and output.
pub fn with_clients(script: &str) -> (i32, String, String) {
    let env = clients_env();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {env:?} && {script}"))
        .current_dir(repo())
        .env("OMCP_CACHE_DIR", cache_dir())
        .env("OMCP_RUNTIMES", "stdlib")
        .stdin(Stdio::null())
        .output()
        .expect("failed to run bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process (HAProxy, Prometheus...) killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tool tests/prepare.sh installs from Debian's packages (prometheus, promtool, haproxy):
/// its path, or a panic that says how to get it (a test that cannot run must not pass).
pub fn which(tool: &str) -> String {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/bin",
    ] {
        let path = std::path::Path::new(dir).join(tool);
        if path.is_file() {
            return path.display().to_string();
        }
    }
    panic!("{tool} is missing: run tests/prepare.sh (installs Debian's prometheus and haproxy)");
}

/// A real Prometheus scraping `targets` every second as job `job`, its data and its log
/// (`prometheus.log`) in `dir`. Returns it and the address of its HTTP API.
pub fn start_prometheus(dir: &std::path::Path, job: &str, targets: &[String]) -> (Killed, String) {
    let config = dir.join("prometheus.yml");
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let child = Command::new(which("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("failed to start prometheus");
    (Killed(child), web)
}
