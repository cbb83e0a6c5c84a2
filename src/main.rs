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
use omcp_sandbox::{commands, telemetry};

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
    // The spans still buffered go out before the process ends (after a SIGTERM's drain too).
    telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::EXIT_INTERNAL)
        }
    }
}

/// Logs (text or JSON lines on stderr, filtered by `OMCP_LOG`) and, when the environment
/// asks for them, OpenTelemetry traces (see `telemetry`). The log filter turns the trace
/// spans off: log lines stay as they are whether traces are on or off, and with traces off
/// the subscriber is the plain one it always was, each trace span a disabled callsite.
fn init_tracing(format: LogFormat, default_level: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter =
        EnvFilter::try_from_env("OMCP_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let filter = filter.add_directive(
        format!("{}=off", telemetry::TARGET)
            .parse()
            .expect("a valid directive"),
    );
    let ansi = std::io::stderr().is_terminal();
    // Traces that cannot be set up (a bad endpoint URL) must not stop the server.
    let traces = match telemetry::layer() {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("warning: OpenTelemetry traces are off: {err:#}");
            None
        }
    };
    let Some(traces) = traces else {
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        match format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
        return;
    };
    // Two layers, each with a filter of its own: the log filter must not hide the trace
    // spans from the trace layer (nor `rmcp=warn` anything it needs).
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .init();
}
