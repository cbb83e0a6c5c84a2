//! The request and response types every face speaks: `POST /run` takes a [`RunRequest`], the
//! MCP tool `run_python` takes [`RunPythonArgs`], and both answer a [`RunResponse`] (as does
//! `run --json`). Decoding these from untrusted bytes is fuzzed (`fuzz/`).
//!
//! The response keeps the original project's contract, `{"result", "output", "error"}`, and
//! adds fields a client may ignore.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::LimitRequest;
use crate::outcome::{Outcome, Stop};

/// `POST /run` body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Python 3.12 source to run in a fresh interpreter. If the last statement is an
    /// expression, its value is returned as `result`.
    pub code: String,
    /// Text the program reads from standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Wall-clock limit in milliseconds; more than the server's limit means the server's.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Instruction budget (fuel units); more than the server's means the server's.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub fuel: Option<u64>,
    /// Memory limit in MiB; more than the server's means the server's.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub memory_mb: Option<u64>,
    /// Limit on stdout + stderr bytes; more than the server's means the server's.
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
}

impl RunRequest {
    pub fn limits(&self) -> LimitRequest {
        LimitRequest {
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            memory_mb: self.memory_mb,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

/// Arguments of the MCP tool `run_python`: the code and stdin, and of the limits only the
/// one a model can reason about (time).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPythonArgs {
    /// Python 3.12 source code. The value of the last expression is returned as `result`.
    pub code: String,
    /// Text the program reads from standard input (input(), sys.stdin).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Wall-clock limit in milliseconds; more than the server's limit means the server's.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
}

impl RunPythonArgs {
    pub fn limits(&self) -> LimitRequest {
        LimitRequest {
            timeout_ms: self.timeout_ms,
            ..LimitRequest::default()
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunResponse {
    /// The value of the last expression: JSON if it is a str, int, float, bool, None or a
    /// list/dict of those; otherwise its repr() as a string. null when there is none.
    pub result: Option<Value>,
    /// What the program wrote to stdout.
    pub output: String,
    /// The traceback of an uncaught exception, or why a limit stopped the run; null if none.
    pub error: Option<String>,
    /// What the program wrote to stderr.
    pub stderr: String,
    /// The program's exit status; null when a limit or trap stopped it first.
    pub exit_code: Option<i32>,
    /// Why the run stopped early: timeout, fuel, memory, output, trap or exit; null if the
    /// code ran to its end.
    pub stopped: Option<Stop>,
    /// Output, the value or the traceback was cut at the output limit.
    pub truncated: bool,
    /// Time spent running, in milliseconds.
    pub duration_ms: f64,
    /// Instructions (fuel units) used.
    pub fuel_used: u64,
}

impl From<Outcome> for RunResponse {
    fn from(outcome: Outcome) -> Self {
        RunResponse {
            result: outcome.result,
            output: outcome.output,
            error: outcome.error,
            stderr: outcome.stderr,
            exit_code: outcome.exit_code,
            stopped: outcome.stopped,
            truncated: outcome.truncated,
            duration_ms: (outcome.duration.as_secs_f64() * 1e6).round() / 1e3,
            fuel_used: outcome.fuel_used,
        }
    }
}
