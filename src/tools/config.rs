//! `--tools-config FILE`: the upstream MCP servers whose tools the guest may call, in the
//! `mcpServers` format Claude Desktop, Cursor and VS Code read, so an existing client
//! configuration can be pointed at as it is:
//!
//! ```json
//! {"mcpServers": {
//!   "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"],
//!              "env": {"MEMORY_FILE_PATH": "/data/memory.jsonl"}, "deny": ["delete_entities"]},
//!   "search": {"url": "http://search.internal:8080/mcp",
//!              "headers": {"Authorization": "Bearer ..."}, "allow": ["query"]}
//! }}
//! ```
//!
//! Besides those keys, a server may have `allow` (only these tools) and `deny` (never these),
//! `cwd` for a child, `disabled: true` (Cursor's key) and `type` ("stdio", "http" or
//! "streamable-http"; inferred otherwise). Unknown keys are refused, so a typo does not
//! silently grant or hide anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<String, Entry>,
}

/// One server as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

/// How to reach one upstream.
#[derive(Clone)]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Added to a minimal environment (`PATH`, `HOME`, `LANG`): the server's own
        /// environment (its tokens) is not handed to every child.
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    /// Streamable HTTP at `url`, with these headers on every request.
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

/// Never prints `env` values or header values: they are tokens.
impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio {
                command, args, env, ..
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            Transport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// One configured upstream.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name in the file (`tools.<python name>` in the guest).
    pub name: String,
    pub transport: Transport,
    /// `Some`: only these tools; `None`: all but `deny`.
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

impl ServerConfig {
    /// Whether the operator lets the guest see and call `tool`.
    pub fn permits(&self, tool: &str) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|allow| allow.iter().any(|t| t == tool));
        allowed && !self.deny.iter().any(|t| t == tool)
    }

    /// Where the server is, for logs and `/healthz` (no headers, no environment).
    pub fn endpoint(&self) -> String {
        match &self.transport {
            Transport::Stdio { command, .. } => format!("stdio: {command}"),
            Transport::Http { url, .. } => url.clone(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("failed to read the tools config {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the tools config {path:?} is not a valid mcpServers file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("tool server {name:?} in {path:?}: {why}")]
    Server {
        path: PathBuf,
        name: String,
        why: String,
    },
}

/// Read and check a config file. Disabled servers are left out.
pub fn load(path: &Path) -> Result<Vec<ServerConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|err| match err {
        Parsed::Json(source) => ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        },
        Parsed::Server { name, why } => ConfigError::Server {
            path: path.to_path_buf(),
            name,
            why,
        },
    })
}

enum Parsed {
    Json(serde_json::Error),
    Server { name: String, why: String },
}

fn parse(text: &str) -> Result<Vec<ServerConfig>, Parsed> {
    let file: File = serde_json::from_str(text).map_err(Parsed::Json)?;
    let mut servers = Vec::new();
    for (name, entry) in file.mcp_servers {
        if entry.disabled {
            continue;
        }
        let fail = |why: String| Parsed::Server {
            name: name.clone(),
            why,
        };
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(fail(
                "a server's name must be 1-64 printable characters".into(),
            ));
        }
        let kind = entry.kind.as_deref();
        let transport = match (kind, &entry.command, &entry.url) {
            (None | Some("stdio"), Some(command), None) => {
                if !entry.headers.is_empty() {
                    return Err(fail("`headers` is for HTTP servers (`url`)".into()));
                }
                if command.is_empty() {
                    return Err(fail("`command` is empty".into()));
                }
                Transport::Stdio {
                    command: command.clone(),
                    args: entry.args.clone(),
                    env: entry.env.clone(),
                    cwd: entry.cwd.clone(),
                }
            }
            (
                None | Some("http") | Some("streamable-http") | Some("streamableHttp"),
                None,
                Some(url),
            ) => {
                if !entry.args.is_empty() || !entry.env.is_empty() || entry.cwd.is_some() {
                    return Err(fail(
                        "`args`, `env` and `cwd` are for stdio servers (`command`)".into(),
                    ));
                }
                if !url.starts_with("http://") {
                    return Err(fail(format!(
                        "url {url:?}: only http:// upstreams are supported (a sidecar or \
                         cluster service; put a TLS-terminating proxy in front of remote ones)"
                    )));
                }
                for (header, value) in &entry.headers {
                    let valid = reqwest_like_header_name(header)
                        && !value.chars().any(|c| c.is_control() && c != '\t');
                    if !valid {
                        return Err(fail(format!(
                            "header {header:?} is not a valid HTTP header"
                        )));
                    }
                }
                Transport::Http {
                    url: url.clone(),
                    headers: entry.headers.clone(),
                }
            }
            (Some("sse"), _, _) => {
                return Err(fail(
                    "the deprecated SSE transport is not supported; use streamable HTTP".into(),
                ));
            }
            (Some(other), _, _)
                if !matches!(
                    other,
                    "stdio" | "http" | "streamable-http" | "streamableHttp"
                ) =>
            {
                return Err(fail(format!("unknown type {other:?}")));
            }
            (_, Some(_), Some(_)) => {
                return Err(fail(
                    "give either `command` (stdio) or `url` (HTTP), not both".into(),
                ));
            }
            _ => {
                return Err(fail(
                    "needs `command` (a stdio server) or `url` (a streamable HTTP server), \
                     matching its `type`"
                        .into(),
                ));
            }
        };
        servers.push(ServerConfig {
            name,
            transport,
            allow: entry.allow,
            deny: entry.deny,
        });
    }
    Ok(servers)
}

/// RFC 9110 token characters.
fn reqwest_like_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(text: &str) -> Vec<ServerConfig> {
        match parse(text) {
            Ok(servers) => servers,
            Err(Parsed::Json(err)) => panic!("json: {err}"),
            Err(Parsed::Server { name, why }) => panic!("{name}: {why}"),
        }
    }

    fn refusal(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted {text}"),
            Err(Parsed::Json(err)) => err.to_string(),
            Err(Parsed::Server { why, .. }) => why,
        }
    }

    #[test]
    fn reads_a_claude_desktop_file() {
        let got = servers(
            r#"{"mcpServers": {
                "memory": {"command": "npx", "args": ["-y", "m"], "env": {"K": "secret"},
                           "deny": ["delete_entities"]},
                "search": {"type": "http", "url": "http://127.0.0.1:9/mcp",
                           "headers": {"Authorization": "Bearer t"}, "allow": ["query"]},
                "off": {"command": "x", "disabled": true}
            }}"#,
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "memory");
        assert!(got[0].permits("create_entities"));
        assert!(!got[0].permits("delete_entities"));
        assert!(got[1].permits("query"));
        assert!(!got[1].permits("other"));
        // Tokens never show in Debug output (logs).
        let debug = format!("{got:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("Bearer"),
            "{debug}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert!(refusal(r#"{"mcpServers": {"a": {"command": "x", "alow": []}}}"#).contains("alow"));
        assert!(refusal(r#"{"servers": {}}"#).contains("servers"));
        assert!(refusal(r#"{"mcpServers": {"a": {}}}"#).contains("needs"));
        assert!(
            refusal(r#"{"mcpServers": {"a": {"command": "x", "url": "http://h"}}}"#)
                .contains("not both")
        );
        assert!(refusal(r#"{"mcpServers": {"a": {"url": "https://h/mcp"}}}"#).contains("http://"));
        assert!(
            refusal(r#"{"mcpServers": {"a": {"type": "sse", "url": "http://h"}}}"#).contains("SSE")
        );
        assert!(
            refusal(r#"{"mcpServers": {"a": {"type": "ws", "command": "x"}}}"#)
                .contains("unknown type")
        );
        assert!(
            refusal(r#"{"mcpServers": {"a": {"url": "http://h", "headers": {"a b": "c"}}}}"#)
                .contains("header")
        );
        assert!(
            refusal(r#"{"mcpServers": {"a": {"command": "x", "headers": {"a": "b"}}}}"#)
                .contains("HTTP servers")
        );
        assert!(refusal(r#"{"mcpServers": {"": {"command": "x"}}}"#).contains("name"));
    }
}
