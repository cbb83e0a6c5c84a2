//! `omcp-sandbox mcp`: the MCP tool handler served over stdio, for desktop agents and IDEs.
//! stdout carries only protocol messages; logs go to stderr (set up in `main`).
//!
//! Between the pipes and rmcp sits a small framing layer: each line is checked by
//! `mcp::frame` (bad frames are answered there, with the caller's id when it has one), and
//! only valid messages reach rmcp.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{
    AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead, FramedWrite, LinesCodec,
};

use crate::cli::McpArgs;
use crate::mcp::SandboxTools;
use crate::mcp::frame::{Frame, Refusal, check_frame};
use crate::sandbox::Sandbox;
use crate::sessions::Sessions;

/// Longest accepted line: code and stdin at their limits, JSON-escaped, plus the envelope.
const MAX_LINE: usize = 16 << 20;

pub fn main(args: McpArgs) -> anyhow::Result<ExitCode> {
    let servers = super::tool_servers(args.runtime.tools_config.as_deref())?;
    let runtime = super::runtime()?;
    let sandbox = Sandbox::load(args.runtime.sandbox_options(args.limits.limits()))?;
    let sandbox = Arc::new(super::with_tools(sandbox, servers, &runtime));
    let sessions = Arc::new(Sessions::new(sandbox, args.sessions.options())?);
    runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(sessions.clone().housekeeping(stop.clone()));
        let (to_rmcp, rmcp_in) = tokio::io::duplex(1 << 16);
        let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 16);
        let (errors_tx, errors_rx) = tokio::sync::mpsc::channel::<String>(16);
        let reader = tokio::spawn(forward_stdin(to_rmcp, errors_tx));
        let writer = tokio::spawn(write_stdout(from_rmcp, errors_rx));

        let service = SandboxTools::new(sessions.clone())
            .serve((rmcp_in, rmcp_out))
            .await
            .context("MCP initialization over stdio failed")?;
        service
            .waiting()
            .await
            .context("MCP stdio service failed")?;
        reader.abort();
        // rmcp's side of the pipe is closed now; let the writer drain what is left.
        let _ = writer.await;
        stop.cancel();
        sessions.suspend_all().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// stdin -> rmcp, line by line; lines that are not a valid message get an error answer.
async fn forward_stdin(
    mut to_rmcp: tokio::io::DuplexStream,
    errors: tokio::sync::mpsc::Sender<String>,
) {
    // Lines as bytes, not `String`s: a line that is not UTF-8 must cost the client one
    // error answer, not the session.
    let mut lines = FramedRead::new(
        tokio::io::stdin(),
        AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_LINE),
    );
    while let Some(line) = lines.next().await {
        let verdict = match &line {
            Ok(line) => check_frame(line),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Frame::Refused(Refusal::new(
                Value::Null,
                -32600,
                "message exceeds the maximum frame size",
            )),
            Err(AnyDelimiterCodecError::Io(err)) => {
                tracing::warn!("reading stdin failed: {err}");
                break;
            }
        };
        match verdict {
            Frame::Blank => {}
            Frame::Refused(refusal) => {
                let _ = errors.send(refusal.to_json()).await;
            }
            Frame::Valid(line) => {
                if to_rmcp.write_all(line.as_bytes()).await.is_err()
                    || to_rmcp.write_all(b"\n").await.is_err()
                {
                    break;
                }
            }
        }
    }
    // Dropping `to_rmcp` tells rmcp the client is gone.
}

/// rmcp's answers and our own error frames -> stdout, one whole line at a time.
async fn write_stdout(
    from_rmcp: tokio::io::DuplexStream,
    mut errors: tokio::sync::mpsc::Receiver<String>,
) {
    let mut answers = FramedRead::new(from_rmcp, LinesCodec::new());
    let mut stdout = FramedWrite::new(tokio::io::stdout(), LinesCodec::new());
    loop {
        let line = tokio::select! {
            // Error frames first: each answers a line read before whatever rmcp is
            // answering at that moment, so answers stay close to the order of the requests.
            biased;
            Some(frame) = errors.recv() => frame,
            answer = answers.next() => match answer {
                Some(Ok(line)) => line,
                _ => break,
            },
        };
        if stdout.send(line).await.is_err() {
            break;
        }
    }
    let _ = SinkExt::<String>::flush(&mut stdout).await;
}
