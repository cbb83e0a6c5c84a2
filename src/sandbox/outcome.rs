//! What happened in one run, as typed data: the last expression's value, what was printed,
//! the error, and which limit (if any) stopped it. Shared by every face (HTTP, MCP, CLI).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a run ended other than by finishing its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// The wall-clock limit (`timeout_ms`) ran out.
    Timeout,
    /// The instruction budget (`fuel`) ran out.
    Fuel,
    /// The memory limit (`memory_mb`) refused an allocation the program did not survive.
    Memory,
    /// The program wrote more than `max_output_bytes`; its output is cut there.
    Output,
    /// The WebAssembly machine trapped (stack overflow, `os.abort()`, ...); see `error`.
    Trap,
    /// The program called `sys.exit()` / `os._exit()`; see `exit_code`.
    Exit,
}

impl Stop {
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Timeout => "timeout",
            Stop::Fuel => "fuel",
            Stop::Memory => "memory",
            Stop::Output => "output",
            Stop::Trap => "trap",
            Stop::Exit => "exit",
        }
    }

    /// A limit stopped the run (as opposed to the program ending itself or crashing).
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            Stop::Timeout | Stop::Fuel | Stop::Memory | Stop::Output
        )
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The last expression's value: JSON when it is JSON (str, int, float, bool, None, and
    /// lists/dicts of those), otherwise its `repr()`.
    pub result: Option<Value>,
    /// `repr()` of the last expression's value, as a REPL would print it.
    pub result_repr: Option<String>,
    pub output: String,
    pub stderr: String,
    /// The traceback of an uncaught exception, or why a limit stopped the run.
    pub error: Option<String>,
    /// The program's exit status; `None` when it did not get to exit (a limit or a trap).
    pub exit_code: Option<i32>,
    pub stopped: Option<Stop>,
    /// Output (or the value or traceback) was cut at `max_output_bytes`.
    pub truncated: bool,
    pub duration: Duration,
    pub fuel_used: u64,
}

/// The driver's report, as it writes it after the marker (see driver.py).
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    pub result: Option<Value>,
    pub has_result: bool,
    pub repr: Option<String>,
    pub error: Option<String>,
    pub exit: bool,
    pub exit_code: i32,
    pub truncated: bool,
}
