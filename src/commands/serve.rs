//! `omcp-sandbox serve`: HTTP `POST /run` and MCP at `/mcp` on one listener, one sandbox.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::http::{self, AppState, Guard};
use crate::sandbox::Sandbox;

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

    let sandbox = Sandbox::load(args.runtime.sandbox_options(args.limits.limits()))?;
    let info = sandbox.info();
    tracing::info!(
        python_wasm = ?info.python_wasm,
        module = ?info.module_source,
        load_ms = info.load_time.as_millis() as u64,
        auth = guard.requires_token(),
        "runtime ready"
    );
    let state = AppState {
        sandbox: Arc::new(sandbox),
        guard: Arc::new(guard),
        shutdown: CancellationToken::new(),
    };
    super::runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        http::serve(listener, state).await
    })?;
    Ok(ExitCode::SUCCESS)
}
