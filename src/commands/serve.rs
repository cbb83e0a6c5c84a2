//! `omcp-sandbox serve`: HTTP `POST /run` and MCP at `/mcp` on one listener, one sandbox.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::http::{self, AppState, Guard};
use crate::sandbox::Sandbox;
use crate::sessions::Sessions;

pub fn main(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.auth_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read auth token file {path:?}"))?;
            let token = token.trim().to_string();
            anyhow::ensure!(!token.is_empty(), "auth token file {path:?} is empty");
            Some(token)
        }
        None => None,
    };
    let guard = Guard::new(&args.allowed_hosts, token.as_deref());
    if !args.listen.ip().is_loopback() && !guard.requires_token() {
        tracing::warn!(
            "listening on {} without --auth-token-file: anyone who can reach it can run code",
            args.listen
        );
    }

    let servers = super::tool_servers(args.runtime.tools_config.as_deref())?;
    let runtime = super::runtime()?;
    let sandbox = Sandbox::load(args.runtime.sandbox_options(args.limits.limits()))?;
    let sandbox = super::with_tools(sandbox, servers, &runtime);
    tracing::info!(
        runtimes = ?sandbox.runtimes().map(|r| r.name).collect::<Vec<_>>(),
        default = sandbox.info().name,
        auth = guard.requires_token(),
        "sandbox ready"
    );
    let options = args.serve_options();
    raise_open_file_limit(options.max_connections);
    let sessions = Sessions::new(Arc::new(sandbox), args.sessions.options())?;
    let state = AppState::new(Arc::new(sessions), guard, options)
        .with_metrics(crate::metrics::install().context("failed to set up metrics")?);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        if let Some(addr) = args.metrics_listen {
            let metrics = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to listen on {addr} (--metrics-listen)"))?;
            let state = state.clone();
            tokio::spawn(async move {
                if let Err(err) = http::serve_metrics(metrics, state).await {
                    tracing::error!("{err:#}");
                }
            });
        }
        http::serve(listener, state).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Each connection is a file descriptor; the common soft limit of 1024 would make the
/// connection cap unreachable and let a flood exhaust descriptors before it. Raise the soft
/// limit to the hard one (no privilege needed) and say so if it is still short.
fn raise_open_file_limit(max_connections: usize) {
    // Room for the listener, logs, the compile cache and the runtime's own files.
    let wanted = max_connections as u64 + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => tracing::warn!(
            open_file_limit = limit,
            "the open-file limit is below --max-connections + 64; connections may fail at accept"
        ),
        Ok(limit) => tracing::debug!(open_file_limit = limit),
        Err(err) => tracing::warn!("cannot raise the open-file limit: {err}"),
    }
}
