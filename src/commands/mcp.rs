//! `omcp-sandbox mcp`: the MCP tool handler served over stdio, for desktop agents and IDEs.
//! stdout carries only protocol messages; logs go to stderr (set up in `main`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rmcp::ServiceExt;

use crate::cli::McpArgs;
use crate::mcp::SandboxTools;
use crate::sandbox::Sandbox;

pub fn main(args: McpArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Arc::new(Sandbox::load(args.runtime.sandbox_options(args.limits.limits()))?);
    super::runtime()?.block_on(async {
        let service = SandboxTools::new(sandbox)
            .serve(rmcp::transport::stdio())
            .await
            .context("MCP initialization over stdio failed")?;
        service.waiting().await.context("MCP stdio service failed")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
