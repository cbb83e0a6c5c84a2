//! Code mode on the MCP face: `list_tools`, which gives the model the Python API of the
//! upstream tools (`import tools`) as stub source, live from the upstreams' current
//! listings. Present only when the operator configured tool servers; `run_python`'s
//! description carries a one-line summary of each function.

use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ErrorData, tool, tool_router};

use super::SandboxTools;

#[tool_router(router = code_mode_router, vis = "pub(super)")]
impl SandboxTools {
    #[tool(
        name = "list_tools",
        description = "The Python functions `import tools` gives code run by run_python: one \
            per tool of the upstream MCP servers this server's operator configured, as a \
            stub file with each signature and docstring (tools.<server>.<tool>(...)). Read \
            it before writing code that calls them.",
        annotations(
            title = "List the tool functions for code mode",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_tools(&self) -> Result<CallToolResult, ErrorData> {
        let stubs = match self.sandbox.tools() {
            Some(tools) => tools.stubs(),
            None => "# No tool servers are configured on this server.\n".to_string(),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(stubs)]))
    }
}
