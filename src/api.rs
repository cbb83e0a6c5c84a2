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
use crate::outcome::{Display, Image, Outcome, Stop, ToolCall};
use crate::workspace::{FileIn, FileOut};

/// `POST /run` body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Python source to run in a fresh interpreter. If the last statement is an
    /// expression, its value is returned as `result`.
    pub code: String,
    /// Text the program reads from standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Which runtime: "scientific" (CPython 3.15 with numpy, pandas, scipy, scikit-learn,
    /// statsmodels, matplotlib...) or "stdlib" (CPython 3.12, standard library only).
    /// Default: the server's `--default-runtime`. `/healthz` lists what this server has.
    #[serde(default)]
    pub runtime: Option<String>,
    /// Makes the run reproducible: random numbers (random, numpy, os.urandom, uuid4,
    /// secrets) and the clocks the code reads come from this seed, so the same code, stdin,
    /// seed and runtime give the same output and result every time.
    #[serde(default, deserialize_with = "seed_number::deserialize")]
    #[schemars(schema_with = "seed_number::schema")]
    pub seed: Option<u64>,
    /// Wall-clock limit in milliseconds; more than the server's limit means the server's.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub timeout_ms: Option<u64>,
    /// Instruction budget (fuel units); more than the server's means the server's. Setting
    /// it meters the run (deterministic, but CPU-bound code runs ~15-25% slower); without
    /// it the run is bounded by time alone, unless the server meters every run.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub fuel: Option<u64>,
    /// Memory limit in MiB; more than the server's means the server's.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub memory_mb: Option<u64>,
    /// Limit on stdout + stderr bytes; more than the server's means the server's.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::non_negative")]
    pub max_output_bytes: Option<u64>,
    /// Files written into the working directory (/workspace) before the code runs.
    #[serde(default)]
    pub files: Vec<FileIn>,
    /// Code mode: most calls to upstream tools (`import tools`) the run may make; more
    /// than the server's means the server's. 0 forbids tool calls.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::non_negative")]
    pub max_tool_calls: Option<u64>,
    /// Code mode: longest one tool call may take, in milliseconds (the run's own timeout
    /// still holds); more than the server's means the server's.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub tool_timeout_ms: Option<u64>,
    /// Code mode: bytes of tool results (as JSON) the run may receive in all; more than
    /// the server's means the server's.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::non_negative")]
    pub max_tool_result_bytes: Option<u64>,
    /// Code mode: list each tool call's arguments and result in `tool_calls` (by default
    /// only which tool, whether it succeeded, how long and how many bytes).
    #[serde(default)]
    pub tool_call_details: bool,
}

impl RunRequest {
    pub fn limits(&self) -> LimitRequest {
        LimitRequest {
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            memory_mb: self.memory_mb,
            max_output_bytes: self.max_output_bytes,
            max_tool_calls: self.max_tool_calls,
            tool_timeout_ms: self.tool_timeout_ms,
            max_tool_result_bytes: self.max_tool_result_bytes,
            tool_call_details: self.tool_call_details,
        }
    }
}

/// Arguments of the MCP tool `run_python`: the code and stdin, and of the limits only the
/// one a model can reason about (time).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPythonArgs {
    /// Python source code. The value of the last expression is returned as `result`;
    /// matplotlib figures left open (or shown) come back as images.
    pub code: String,
    /// Text the program reads from standard input (input(), sys.stdin).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Which runtime: "scientific" (numpy, pandas, scipy, scikit-learn, statsmodels,
    /// matplotlib...) or "stdlib" (standard library only). Default: the server's.
    #[serde(default)]
    pub runtime: Option<String>,
    /// Makes random numbers and clocks deterministic: same code + seed, same answer.
    #[serde(default, deserialize_with = "seed_number::deserialize")]
    #[schemars(schema_with = "seed_number::schema")]
    pub seed: Option<u64>,
    /// Wall-clock limit in milliseconds; more than the server's limit means the server's.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub timeout_ms: Option<u64>,
    /// Run in this session (from `create_session`): variables, imports, functions and
    /// files in /workspace from its earlier calls are still there. Without it the call
    /// starts from a pristine interpreter and keeps nothing.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Files written into the working directory (/workspace) before the code runs: each
    /// `{"path": "data/in.csv", "content": "...", "encoding": "utf-8" | "base64"}`.
    #[serde(default)]
    pub files: Vec<FileIn>,
}

impl RunPythonArgs {
    pub fn limits(&self) -> LimitRequest {
        LimitRequest {
            timeout_ms: self.timeout_ms,
            ..LimitRequest::default()
        }
    }
}

/// Arguments of the MCP tool `create_session`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionArgs {
    /// Which runtime the session runs (see run_python's description); default: the
    /// server's. Every call in the session uses it.
    #[serde(default)]
    pub runtime: Option<String>,
    /// Close the session after this many seconds without a call (at most the server's
    /// idle timeout, which is also the default).
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub idle_timeout_s: Option<u64>,
    /// Makes the session's random numbers and clocks deterministic.
    #[serde(default, deserialize_with = "seed_number::deserialize")]
    #[schemars(schema_with = "seed_number::schema")]
    pub seed: Option<u64>,
}

/// Arguments of the MCP tools that name a session: `close_session`, `fork_session` and
/// `list_files`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionIdArgs {
    /// The session's handle, as `create_session` (or `fork_session`) returned it.
    pub session_id: String,
}

/// Arguments of the MCP tool `upload_file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadFileArgs {
    /// The session's handle, as `create_session` returned it.
    pub session_id: String,
    /// Relative path under /workspace, `/`-separated ("data/in.csv"); parent directories
    /// are created. An existing file is replaced.
    pub path: String,
    /// The content: the text itself (`utf-8`) or its base64 (`base64`, for binary files).
    pub content: String,
    /// How `content` is encoded; `utf-8` when left out.
    #[serde(default)]
    pub encoding: crate::workspace::Encoding,
}

/// A non-negative integer as clients write it: `2000`, but also `2000.0` (JSON Schema's
/// `integer` includes it, and Python's and JavaScript's encoders produce it). Shared by
/// limits and seeds, which differ only in what a number beyond 64 bits means.
mod whole_number {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error};

    /// A whole number that fits in 64 bits, or one beyond.
    pub enum Whole {
        Fits(u64),
        Beyond,
    }

    /// Fractions, negatives and other types are errors that say what was `expected`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
        expected: &str,
    ) -> Result<Option<Whole>, D::Error> {
        let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if let Some(n) = number.as_u64() {
            return Ok(Some(Whole::Fits(n)));
        }
        match number.as_f64() {
            // Below 2^64 (exactly representable as an f64), `as` is exact.
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0 => {
                Ok(Some(Whole::Fits(f as u64)))
            }
            Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(Some(Whole::Beyond)),
            _ => Err(D::Error::custom(format_args!(
                "invalid value: {number}, expected {expected}"
            ))),
        }
    }
}

/// A limit: a number beyond `u64`, like any value above the server's limit, means the
/// server's limit. Fractions and negative numbers are refused.
mod limit_number {
    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::de::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        use super::whole_number::{Whole, deserialize};
        Ok(match deserialize(deserializer, "a non-negative integer")? {
            None => None,
            Some(Whole::Fits(n)) => Some(n),
            Some(Whole::Beyond) => Some(u64::MAX),
        })
    }

    pub fn at_least_one(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["integer", "null"], "minimum": 1 })
    }

    pub fn at_least_a_minute(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["integer", "null"], "minimum": 60 })
    }

    pub fn non_negative(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["integer", "null"], "minimum": 0 })
    }
}

/// A seed: an integer from 0 to 2^64 - 1. Unlike a limit, a seed out of range cannot mean
/// "the most": it is refused.
mod seed_number {
    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::de::{Deserializer, Error};

    const EXPECTED: &str = "an integer from 0 to 18446744073709551615";

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        use super::whole_number::{Whole, deserialize};
        match deserialize(deserializer, EXPECTED)? {
            None => Ok(None),
            Some(Whole::Fits(n)) => Ok(Some(n)),
            Some(Whole::Beyond) => Err(D::Error::custom(format_args!(
                "invalid seed: beyond 64 bits, expected {EXPECTED}"
            ))),
        }
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": 18_446_744_073_709_551_615u64
        })
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunResponse {
    /// The value of the last expression, as data (null when there is none): itself when
    /// it is JSON (str, int, float, bool, None, lists and str-keyed dicts); numpy scalars
    /// as numbers; non-finite floats as "nan", "inf", "-inf"; ndarrays, DataFrames,
    /// Series, tuples, sets, bytes, dates, Decimals... as objects with a "type" (see the
    /// README, "Values"); anything else as its repr() string. `result_type` names the
    /// Python type, `result_text` is what a notebook prints.
    #[schemars(schema_with = "crate::value_forms::schema")]
    pub result: Option<Value>,
    /// The value as a notebook prints it: its repr() (a DataFrame's is an aligned table),
    /// cut at the output limit. null when there is no value.
    pub result_text: Option<String>,
    /// The value's Python type: "int", "tuple", "numpy.ndarray", "pandas.DataFrame"...
    /// null when there is no value.
    pub result_type: Option<String>,
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
    /// Instructions (fuel units) used; null when the run was not metered (it is only when
    /// the request sets `fuel` or the server runs with `--fuel`).
    pub fuel_used: Option<u64>,
    /// The runtime the code ran in.
    pub runtime: String,
    /// matplotlib figures the run left open or showed (`plt.show()`), rendered to PNG.
    pub images: Vec<Image>,
    /// Figures that were not returned, each with why (too many, too large, over the byte
    /// budget, or rendering failed): nothing is dropped silently.
    pub images_omitted: Vec<String>,
    /// What the run showed, in order: each object given to `display()` (its data, in the
    /// same forms as `result`, and its text), and each figure (`display(fig)`,
    /// `plt.show()`, or left open at the end; also in `images`). `output_offset` places an
    /// item in `output`: `output[:output_offset]` was printed before it (in characters).
    /// Items count against the output limit; one past it is an `omitted` item saying so.
    pub displays: Vec<Display>,
    /// Files in /workspace the run created or changed (a stateless run's workspace is gone
    /// afterwards): text as "utf-8", the rest "base64"; past the server's byte budget a
    /// file is listed without `content` and with `omitted: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileOut>,
    /// Code mode: each call the code made to an upstream tool, in order (absent when it
    /// made none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl From<Outcome> for RunResponse {
    fn from(outcome: Outcome) -> Self {
        RunResponse {
            result: outcome.result,
            result_text: outcome.result_repr,
            result_type: outcome.result_type,
            output: outcome.output,
            error: outcome.error,
            stderr: outcome.stderr,
            exit_code: outcome.exit_code,
            stopped: outcome.stopped,
            truncated: outcome.truncated,
            duration_ms: (outcome.duration.as_secs_f64() * 1e6).round() / 1e3,
            fuel_used: outcome.fuel_used,
            runtime: outcome.runtime,
            images: outcome.images,
            images_omitted: outcome.images_omitted,
            displays: outcome.displays,
            files: outcome.files,
            tool_calls: outcome.tool_calls,
        }
    }
}

/// `POST /sessions` body (and the `create_session` tool's arguments, in part).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// Which runtime the session runs (default: the server's).
    #[serde(default)]
    pub runtime: Option<String>,
    /// Per-turn wall-clock limit in milliseconds (a turn may ask for less or more, up to
    /// the server's limit).
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub timeout_ms: Option<u64>,
    /// Per-turn instruction budget (meters every turn).
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub fuel: Option<u64>,
    /// Memory limit in MiB for every turn (the session's memory included).
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_one")]
    pub memory_mb: Option<u64>,
    /// Per-turn limit on stdout + stderr bytes.
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::non_negative")]
    pub max_output_bytes: Option<u64>,
    /// Seconds without a call after which the session is closed (at least 60, at most the
    /// server's).
    #[serde(default, deserialize_with = "limit_number::deserialize")]
    #[schemars(schema_with = "limit_number::at_least_a_minute")]
    pub idle_timeout_s: Option<u64>,
    /// Makes the session's random numbers and clocks deterministic.
    #[serde(default, deserialize_with = "seed_number::deserialize")]
    #[schemars(schema_with = "seed_number::schema")]
    pub seed: Option<u64>,
    /// Files to put in the session's /workspace.
    #[serde(default)]
    pub files: Vec<FileIn>,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Its interpreter is in memory, ready for a turn.
    Active,
    /// A turn is running.
    Running,
    /// Its interpreter is saved to disk; the next turn resumes it.
    Suspended,
}

/// A session, as `POST /sessions`, `GET /sessions/{id}` and `create_session` describe it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    /// The handle to pass to later calls (128 random bits, hex).
    pub session_id: String,
    pub runtime: String,
    pub state: SessionState,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub last_used_at: String,
    /// When the session closes unless used before (idle timeout), or at the latest (its
    /// lifetime); RFC 3339 UTC.
    pub expires_at: String,
    pub idle_timeout_s: u64,
    pub lifetime_s: u64,
    /// Turns run so far.
    pub turns: u64,
    /// Memory the session has written (what keeping it costs), in bytes.
    pub memory_bytes: u64,
    /// Bytes and number of files in its /workspace.
    pub workspace_bytes: u64,
    pub workspace_files: u64,
}

/// `GET /sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// `POST /sessions/{id}/run`: the `/run` answer and what the turn did to the session.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionRunResponse {
    #[serde(flatten)]
    pub run: RunResponse,
    pub session_id: String,
    /// This turn's number, from 1.
    pub turn: u64,
    /// A limit or a trap stopped the turn and the session is back at its state before it
    /// (variables, imports; files it wrote stay).
    pub rolled_back: bool,
    /// Workspace files this turn created or changed (fetch them with
    /// `GET /sessions/{id}/files/{path}`).
    pub files_changed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<RunRequest, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn limits_accept_integral_numbers_in_any_spelling() {
        let r = decode(r#"{"code": "1", "timeout_ms": 2000.0, "fuel": 1e30, "memory_mb": 64}"#)
            .unwrap();
        assert_eq!(r.timeout_ms, Some(2000));
        assert_eq!(r.fuel, Some(u64::MAX));
        assert_eq!(r.memory_mb, Some(64));
        let r =
            decode(r#"{"code": "1", "max_output_bytes": 123456789012345678901234567890}"#).unwrap();
        assert_eq!(r.max_output_bytes, Some(u64::MAX));
        let r = decode(r#"{"code": "1", "timeout_ms": null}"#).unwrap();
        assert_eq!(r.timeout_ms, None);
    }

    #[test]
    fn seeds_are_integers_in_64_bits() {
        let seed = |json: &str| decode(json).map(|r| r.seed);
        assert_eq!(seed(r#"{"code": "1", "seed": 42}"#).unwrap(), Some(42));
        assert_eq!(
            seed(r#"{"code": "1", "seed": 424373.0}"#).unwrap(),
            Some(424373)
        );
        assert_eq!(seed(r#"{"code": "1", "seed": null}"#).unwrap(), None);
        assert_eq!(
            seed(r#"{"code": "1", "seed": 18446744073709551615}"#).unwrap(),
            Some(u64::MAX)
        );
        for bad in ["-1", "1.5", "1e30", "18446744073709551616", "\"7\""] {
            let json = format!(r#"{{"code": "1", "seed": {bad}}}"#);
            assert!(seed(&json).is_err(), "{json}");
        }
    }

    #[test]
    fn limits_refuse_fractions_negatives_and_other_types() {
        for bad in [
            r#"{"code": "1", "timeout_ms": 1.5}"#,
            r#"{"code": "1", "fuel": -1}"#,
            r#"{"code": "1", "memory_mb": -0.5}"#,
            r#"{"code": "1", "timeout_ms": "100"}"#,
            r#"{"code": "1", "timeout_ms": [1]}"#,
        ] {
            let err = decode(bad).unwrap_err();
            assert!(err.is_data(), "{bad}: {err}");
        }
    }
}
