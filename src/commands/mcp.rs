//! `omcp-sandbox mcp`: the MCP tool handler served over stdio, for desktop agents and IDEs.
//! stdout carries only protocol messages; logs go to stderr (set up in `main`).
//!
//! Between the pipes and rmcp sits a small framing layer: rmcp silently drops a line that
//! is not JSON, but JSON-RPC asks for a parse error (-32700) so the client learns its frame
//! was lost. The layer answers those itself and passes every other line through untouched.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec, LinesCodecError};

use crate::cli::McpArgs;
use crate::mcp::SandboxTools;
use crate::sandbox::Sandbox;

/// Longest accepted line: code and stdin at their limits, JSON-escaped, plus the envelope.
const MAX_LINE: usize = 16 << 20;

pub fn main(args: McpArgs) -> anyhow::Result<ExitCode> {
    let sandbox = Arc::new(Sandbox::load(
        args.runtime.sandbox_options(args.limits.limits()),
    )?);
    super::runtime()?.block_on(async {
        let (to_rmcp, rmcp_in) = tokio::io::duplex(1 << 16);
        let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 16);
        let (errors_tx, errors_rx) = tokio::sync::mpsc::channel::<String>(16);
        let reader = tokio::spawn(forward_stdin(to_rmcp, errors_tx));
        let writer = tokio::spawn(write_stdout(from_rmcp, errors_rx));

        let service = SandboxTools::new(sandbox)
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
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// stdin -> rmcp, line by line; lines that are not a JSON object get an error answer.
async fn forward_stdin(
    mut to_rmcp: tokio::io::DuplexStream,
    errors: tokio::sync::mpsc::Sender<String>,
) {
    let mut lines = FramedRead::new(
        tokio::io::stdin(),
        LinesCodec::new_with_max_length(MAX_LINE),
    );
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                let _ = errors
                    .send(error_frame(
                        -32600,
                        "message exceeds the maximum frame size",
                    ))
                    .await;
                continue;
            }
            Err(LinesCodecError::Io(err)) => {
                tracing::warn!("reading stdin failed: {err}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let problem = match serde_json::from_str::<Value>(&line) {
            Err(err) => Some(error_frame(-32700, &format!("parse error: {err}"))),
            // Batches were removed from MCP in 2025-06-18.
            Ok(Value::Array(_)) => Some(error_frame(-32600, "batches are not supported")),
            Ok(Value::Object(_)) => None,
            Ok(_) => Some(error_frame(-32600, "a JSON-RPC message must be an object")),
        };
        match problem {
            Some(frame) => {
                let _ = errors.send(frame).await;
            }
            None => {
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
            answer = answers.next() => match answer {
                Some(Ok(line)) => line,
                _ => break,
            },
            Some(frame) = errors.recv() => frame,
        };
        if stdout.send(line).await.is_err() {
            break;
        }
    }
    let _ = SinkExt::<String>::flush(&mut stdout).await;
}

fn error_frame(code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}).to_string()
}
