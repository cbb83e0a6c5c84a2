//! `omcp-sandbox run`: run code once, print what it printed (stdout to stdout, stderr to
//! stderr), then its last value like the REPL does, and exit with its status.
//! Exit codes: the program's own status; 124 when a limit stopped it; 125 on a trap.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use tracing::Instrument;

use super::{EXIT_LIMIT, EXIT_TRAP};
use crate::api::RunResponse;
use crate::cli::RunArgs;
use crate::limits::LimitRequest;
use crate::outcome::{Display, Piece};
use crate::sandbox::{Outcome, Sandbox, Stop};

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (code, stdin) = read_code(&args)?;
    let mut options = args.runtimes.sandbox_options(args.limits.limits());
    // One run needs one runtime: load only the one asked for.
    if let (Some(name), true) = (&args.runtime, options.runtimes.is_empty()) {
        options.runtimes = vec![name.clone()];
    }
    let servers = super::tool_servers(args.runtimes.tools_config.as_deref())?;
    let runtime = super::runtime()?;
    let sandbox = super::with_tools(Sandbox::load(options)?, servers, &runtime);
    let job = sandbox.job(
        code,
        stdin,
        &LimitRequest::default(),
        args.runtime.as_deref(),
        args.seed,
    )?;
    let outcome = runtime.block_on(sandbox.run(&job).instrument(crate::telemetry::cli_run()))?;
    crate::metrics::run_finished(crate::metrics::Face::Cli, &outcome);
    let status = exit_status(&outcome);
    if args.json {
        let response = RunResponse::from(outcome);
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        print_like_a_repl(&outcome)?;
    }
    Ok(ExitCode::from(status))
}

fn read_code(args: &RunArgs) -> anyhow::Result<(String, Option<String>)> {
    match (&args.code, &args.file) {
        (Some(code), _) => Ok((code.clone(), args.stdin.clone())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            anyhow::ensure!(
                args.stdin.is_none(),
                "--stdin cannot be used when the code itself comes from stdin"
            );
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .context("failed to read code from stdin")?;
            Ok((code, None))
        }
        (None, Some(path)) => {
            let code = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read {path:?}"))?;
            Ok((code, args.stdin.clone()))
        }
        (None, None) => {
            anyhow::bail!("nothing to run: pass -c CODE, a FILE, or - to read code from stdin")
        }
    }
}

fn print_like_a_repl(outcome: &Outcome) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let shown = outcome.in_order();
    for piece in &shown.pieces {
        match piece {
            Piece::Output(text) => out.write_all(text.as_bytes())?,
            Piece::Shown(item) => print_display(&mut out, item)?,
        }
    }
    out.write_all(shown.rest.as_bytes())?;
    if let Some(repr) = &outcome.result_repr {
        // The REPL shows nothing for None.
        if repr != "None" {
            writeln!(out, "{repr}")?;
        }
    }
    for item in &shown.after {
        print_display(&mut out, item)?;
    }
    out.flush()?;
    let mut err = std::io::stderr().lock();
    err.write_all(outcome.stderr.as_bytes())?;
    if let Some(error) = &outcome.error {
        err.write_all(error.as_bytes())?;
        if !error.ends_with('\n') {
            writeln!(err)?;
        }
    }
    Ok(())
}

/// A display item in a terminal: a value's text; a figure only named (`--json` has it).
fn print_display(out: &mut impl Write, item: &Display) -> std::io::Result<()> {
    match item {
        Display::Value { text, .. } => writeln!(out, "{text}"),
        Display::Image { image, .. } => writeln!(
            out,
            "[figure: {}x{} PNG; `run --json` returns it]",
            image.width, image.height
        ),
        Display::Omitted { reason, .. } => writeln!(out, "[left out: {reason}]"),
    }
}

fn exit_status(outcome: &Outcome) -> u8 {
    match outcome.stopped {
        Some(stop) if stop.is_limit() => EXIT_LIMIT,
        Some(Stop::Trap) => EXIT_TRAP,
        _ => outcome
            .exit_code
            .map(|code| (code & 0xff) as u8)
            .unwrap_or(EXIT_TRAP),
    }
}
