//! omcp-sandbox as a library: the sandbox engine and the faces that serve it. The binary
//! (`main.rs`) is a thin CLI over these modules; benches and embedders use them directly.
//!
//! - [`sandbox`]: the only door to wasm (engine, per-run store, limits, outcome, driver).
//! - [`api`]: request/response types shared by HTTP, MCP and the CLI.
//! - [`http`]: `POST /run`, `/mcp` and `/healthz` on one axum router.
//! - [`mcp`]: the `run_python` tool handler, apart from its transports.
//! - [`cli`] and [`commands`]: argument parsing and one module per command.

pub mod api;
pub mod cli;
pub mod commands;
pub mod http;
pub mod limits;
pub mod mcp;
pub mod sandbox;
