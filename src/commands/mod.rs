//! One module per command. Each takes its parsed arguments and returns the process exit code.

pub mod mcp;
pub mod prepare;
pub mod run;
pub mod serve;

/// The host failed (bad arguments, missing runtime, internal error): nothing ran.
pub const EXIT_INTERNAL: u8 = 2;
/// `run`: a limit (timeout, fuel, memory, output) stopped the program, like timeout(1).
pub const EXIT_LIMIT: u8 = 124;
/// `run`: the WebAssembly machine trapped (stack overflow, os.abort()).
pub const EXIT_TRAP: u8 = 125;

/// A multi-threaded runtime: guests yield at every epoch tick, so a few workers are enough.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The upstream tool servers `--tools-config` names (checked before anything slow starts).
pub fn tool_servers(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Vec<crate::tools::ServerConfig>> {
    match path {
        Some(path) => Ok(crate::tools::config::load(path)?),
        None => Ok(Vec::new()),
    }
}

/// Give `sandbox` code mode's tools: start a supervisor per upstream on `runtime` and wait
/// (at most 20 s) for each to connect or fail once, so the first runs see their tools.
/// Without servers the sandbox has no door at all (`import tools` says none are configured).
pub fn with_tools(
    sandbox: crate::sandbox::Sandbox,
    servers: Vec<crate::tools::ServerConfig>,
    runtime: &tokio::runtime::Runtime,
) -> crate::sandbox::Sandbox {
    if servers.is_empty() {
        return sandbox;
    }
    let toolbox = runtime.block_on(crate::tools::Toolbox::start(
        servers,
        std::time::Duration::from_secs(20),
    ));
    for server in toolbox.health() {
        tracing::info!(server = %server.name, status = %server.status, tools = server.tools, "tool server");
    }
    sandbox.with_tools(toolbox)
}
