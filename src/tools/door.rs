//! One run's side of the guest's door to the tools: it reads the guest's JSON frames,
//! applies the run's bounds (calls, time per call, bytes of results), forwards calls to
//! the [`Toolbox`] and records each one. The wasm side (which import or descriptor carries
//! the frames) is `src/sandbox/door.rs`; the guest's side is `src/sandbox/tools.py`.
//!
//! Frames, one JSON object each way:
//! - `{"v":1,"id":n,"op":"list"}` -> `{"v":1,"id":n,"ok":true,"servers":[...]}`
//! - `{"v":1,"id":n,"op":"call","server":s,"tool":t,"args":{...}}` ->
//!   `{"v":1,"id":n,"ok":true,"value":...}` or
//!   `{"v":1,"id":n,"ok":false,"error":{"kind":k,"message":m}}`

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use super::{Failure, FailureKind, Toolbox};
use crate::limits::ToolBounds;
use crate::outcome::ToolCall;

/// Largest frame the guest may send (a call's arguments).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// A run's (or a session turn's) door.
pub struct Door {
    toolbox: Arc<Toolbox>,
    bounds: ToolBounds,
    calls: Vec<ToolCall>,
    /// Bytes of results handed to the guest so far.
    result_bytes: u64,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    id: Value,
    op: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    args: Option<Value>,
}

impl Door {
    pub fn new(toolbox: Arc<Toolbox>, bounds: ToolBounds) -> Door {
        Door {
            toolbox,
            bounds,
            calls: Vec::new(),
            result_bytes: 0,
        }
    }

    /// The calls made so far, leaving the record empty (a session's next turn starts anew).
    pub fn take_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    /// Answer one frame. Never fails: a bad frame gets an error frame.
    pub async fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        if frame.len() > MAX_REQUEST_BYTES {
            return answer(
                &Value::Null,
                Err(Failure {
                    kind: FailureKind::InvalidArguments,
                    message: format!(
                        "the call's arguments are {} bytes; at most {MAX_REQUEST_BYTES} may be sent",
                        frame.len()
                    ),
                }),
            );
        }
        let request: Request = match serde_json::from_slice(frame) {
            Ok(request) => request,
            Err(err) => {
                return answer(
                    &Value::Null,
                    Err(Failure {
                        kind: FailureKind::InvalidArguments,
                        message: format!("not a tool frame: {err}"),
                    }),
                );
            }
        };
        match request.op.as_str() {
            "list" => {
                let mut listing = self.toolbox.guest_listing();
                listing["v"] = json!(1);
                listing["id"] = request.id;
                serde_json::to_vec(&listing).expect("a listing serializes")
            }
            "call" => {
                let result = self.call(&request).await;
                answer(&request.id, result)
            }
            other => answer(
                &request.id,
                Err(Failure {
                    kind: FailureKind::InvalidArguments,
                    message: format!("unknown op {}", super::quoted(other)),
                }),
            ),
        }
    }

    async fn call(&mut self, request: &Request) -> Result<Value, Failure> {
        let span = crate::telemetry::tool_call();
        let started = Instant::now();
        let args = request.args.clone().unwrap_or_else(|| json!({}));
        let mut record = ToolCall {
            server: super::clip(&request.server, 200),
            tool: super::clip(&request.tool, 200),
            ok: false,
            error: None,
            duration_ms: 0.0,
            result_bytes: 0,
            truncated: false,
            arguments: self.bounds.details.then(|| args.clone()),
            result: None,
        };
        let result = if self.calls.len() as u64 >= self.bounds.max_calls {
            Err(Failure {
                kind: FailureKind::Limit,
                message: format!(
                    "this run may make at most {} tool calls (max_tool_calls)",
                    self.bounds.max_calls
                ),
            })
        } else {
            self.toolbox
                .call(
                    &request.server,
                    &request.tool,
                    args,
                    self.bounds.call_timeout,
                )
                .instrument(span.clone())
                .await
                .and_then(|value| self.fit(value, &mut record))
        };
        record.duration_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        match &result {
            Ok(value) => {
                record.ok = true;
                if self.bounds.details {
                    record.result = Some(value.clone());
                }
            }
            Err(failure) => {
                record.error = Some(failure.kind.as_str().into());
                if self.bounds.details {
                    record.result = Some(Value::String(failure.message.clone()));
                }
            }
        }
        tracing::info!(
            server = %record.server,
            tool = %record.tool,
            ok = record.ok,
            error = record.error.as_deref().unwrap_or(""),
            duration_ms = record.duration_ms,
            result_bytes = record.result_bytes,
            "tool call"
        );
        crate::metrics::tool_call(&record);
        crate::telemetry::tool_call_done(&span, &record);
        self.calls.push(record);
        result
    }

    /// Charge a result to the run's byte budget: a text result is cut to what is left (and
    /// says so at its end), anything else that does not fit is refused.
    fn fit(&mut self, value: Value, record: &mut ToolCall) -> Result<Value, Failure> {
        let left = self
            .bounds
            .max_result_bytes
            .saturating_sub(self.result_bytes);
        let size = serde_json::to_vec(&value).map_or(u64::MAX, |v| v.len() as u64);
        if size <= left {
            self.result_bytes += size;
            record.result_bytes = size;
            return Ok(value);
        }
        match value {
            Value::String(text) => {
                let note = format!(
                    "\n[cut: the result was {size} bytes; the run's tool results may total {} \
                     bytes (max_tool_result_bytes)]",
                    self.bounds.max_result_bytes
                );
                let json_len =
                    |text: &str| serde_json::to_vec(text).map_or(usize::MAX, |v| v.len());
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                if json_len(&note) > left {
                    return Err(Failure {
                        kind: FailureKind::Limit,
                        message: format!(
                            "the result is {size} bytes and {left} are left of the run's tool \
                             result budget (max_tool_result_bytes)"
                        ),
                    });
                }
                // Cut by what is over (escapes can make a byte cost up to six), then again
                // until the quoted text with its note fits.
                let mut end = text.len().min(left);
                let mut kept = loop {
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    let candidate = format!("{}{note}", &text[..end]);
                    let over = json_len(&candidate).saturating_sub(left);
                    if over == 0 {
                        break candidate;
                    }
                    end = end.saturating_sub(over);
                };
                kept.shrink_to_fit();
                let cut = Value::String(kept);
                let size = serde_json::to_vec(&cut).map_or(0, |v| v.len() as u64);
                self.result_bytes += size;
                record.result_bytes = size;
                record.truncated = true;
                Ok(cut)
            }
            _ => Err(Failure {
                kind: FailureKind::Limit,
                message: format!(
                    "the result is {size} bytes and {left} are left of the run's tool result \
                     budget (max_tool_result_bytes)"
                ),
            }),
        }
    }
}

fn answer(id: &Value, result: Result<Value, Failure>) -> Vec<u8> {
    let frame = match result {
        Ok(value) => json!({"v": 1, "id": id, "ok": true, "value": value}),
        Err(failure) => json!({
            "v": 1,
            "id": id,
            "ok": false,
            "error": {"kind": failure.kind.as_str(), "message": failure.message},
        }),
    };
    serde_json::to_vec(&frame).expect("a frame serializes")
}
