//! omcp-sandbox as a library: the sandbox engine and the faces that serve it. The binary
//! (`main.rs`) is a thin CLI over these modules; benches and embedders use them directly.
//!
//! - [`sandbox`]: the only door to wasm (engine, per-run store, limits, outcome, driver).
//! - [`api`]: request/response types shared by HTTP, MCP and the CLI.
//! - [`outcome`]: how a run ended, and how the guest's raw output becomes that.
//! - [`value_forms`]: the JSON forms of values that are not JSON (numpy, pandas, tuples,
//!   dates...), as the guest's driver writes them.
//! - [`limits`]: the operator's limits and how a request's overrides resolve against them.
//! - [`http`]: `POST /run`, `/mcp` and `/healthz` on one axum router.
//! - [`mcp`]: the `run_python` tool handler, apart from its transports.
//! - [`metrics`]: Prometheus metrics, recorded where things happen, served at `/metrics`.
//! - [`telemetry`]: OpenTelemetry traces of each request's path, exported over OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set (off otherwise).
//! - [`cli`] and [`commands`]: argument parsing and one module per command.
//! - [`workspace`]: the writable `/workspace` directory of a run or session, reached only
//!   through a capability (client paths checked, guest symlinks never followed).
//! - [`tools`]: code mode: upstream MCP servers' tools as a Python library in the guest
//!   (`import tools`), their supervision, and each run's bounded, recorded door to them.
//! - [`sessions`]: interpreters that live across calls, their workspaces, suspension to
//!   disk and the bounds on them (the faces' one door to session state).
//!
//! `api`, `outcome`, `value_forms`, `limits` and `workspace` parse and check untrusted bytes and need nothing of the
//! runtime; everything else is behind the default `runtime` feature, so the fuzz targets
//! build (and instrument) only the parsing code, not wasmtime.

pub mod api;
pub mod limits;
pub mod outcome;
pub mod value_forms;
pub mod workspace;

#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod commands;
#[cfg(feature = "runtime")]
pub mod http;
#[cfg(feature = "runtime")]
pub mod mcp;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod sandbox;
#[cfg(feature = "runtime")]
pub mod sessions;
#[cfg(feature = "runtime")]
pub mod telemetry;
#[cfg(feature = "runtime")]
pub mod tools;
