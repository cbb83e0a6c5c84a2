//! omcp-sandbox: run untrusted Python in a fresh CPython-on-WASI interpreter per call, inside
//! wasmtime, served over HTTP (`POST /run`), MCP, or once from the command line.
//!
//! `main` only parses arguments, sets up logging (always stderr: in MCP stdio mode stdout
//! belongs to the protocol) and dispatches to one module per command.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use omcp_sandbox::cli::{Cli, Command, LogFormat};
use omcp_sandbox::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A one-off `run` prints the program's own output; per-run log lines would only be noise.
    let quiet = matches!(cli.command, Command::Run(_) | Command::Prepare(_));
    // rmcp logs every session's full client info at INFO: keep it to warnings by default.
    init_tracing(
        cli.log_format,
        if quiet { "warn" } else { "info,rmcp=warn" },
    );
    let result = match cli.command {
        Command::Serve(args) => commands::serve::main(args),
        Command::Mcp(args) => commands::mcp::main(args),
        Command::Run(args) => commands::run::main(args),
        Command::Prepare(args) => commands::prepare::main(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::EXIT_INTERNAL)
        }
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("OMCP_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
