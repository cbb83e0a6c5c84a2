//! Resource limits as plain data: the server's defaults (which are also its maximums), and
//! how one request's optional overrides are resolved against them.
//!
//! A request may lower any limit but never raise it above what the operator configured, so
//! a caller can ask for a tighter sandbox and nothing more. Converting these numbers into
//! wasmtime objects (fuel, epoch deadline, store limiter, pipe capacity) happens in one
//! place, `sandbox::run`.

use std::time::Duration;

use thiserror::Error;

/// Default wall-clock limit per run.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Most fuel a metered run may get unless the operator says otherwise. Interpreter start-up
/// alone costs about 0.25 G units, and `sum(i*i for i in range(3_000_000))` about 13.4 G.
///
/// Metering is not free: counting instructions slows CPU-bound code by ~15-25% on this
/// build of CPython (on top of ~14% for the epoch checks that enforce the time limit). So
/// a run is metered only where asked: when its request sets `fuel`, or for every run when
/// the operator starts the server with `--fuel`. Other runs are bounded by wall-clock time.
pub const DEFAULT_FUEL: u64 = 40_000_000_000;
/// Default linear-memory cap per run. The stdlib interpreter needs about 20 MiB to start,
/// the scientific one (with its stack imported) about 160 MiB; the rest is the program's.
/// It is a cap, not a reservation: a run's memory is the snapshot's pages it touches.
pub const DEFAULT_MEMORY_MB: u64 = 512;
/// Default cap on what a run may write to stdout and stderr together.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Default cap on the size of submitted code.
pub const DEFAULT_MAX_CODE_BYTES: usize = 1 << 20;
/// Default cap on the stdin a request may hand the guest.
pub const DEFAULT_MAX_STDIN_BYTES: usize = 1 << 20;
/// Runs executing at once. These machines behave like one core, so more parallel runs only
/// share the CPU; a small number keeps latency predictable.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Runs allowed to wait for a slot before callers get a typed "busy" answer.
pub const DEFAULT_MAX_QUEUE: usize = 64;
/// Default cap on what a run may write to its scratch directory (runtimes that have one).
pub const DEFAULT_SCRATCH_MB: u64 = 64;
/// Files a workspace may hold.
pub const DEFAULT_WORKSPACE_MAX_FILES: usize = 1000;
/// Largest file a client may send in, in MiB.
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 16;
/// Bytes of file content a stateless run sends back, in KiB.
pub const DEFAULT_MAX_FILES_OUT_KB: u64 = 1024;
/// Tool calls one run (or session turn) may make (code mode).
pub const DEFAULT_MAX_TOOL_CALLS: u64 = 100;
/// Longest one tool call may take; the run's own timeout still holds while it waits.
pub const DEFAULT_TOOL_TIMEOUT_MS: u64 = 30_000;
/// Bytes of tool results (as JSON) one run may receive.
pub const DEFAULT_MAX_TOOL_RESULT_BYTES: u64 = 1 << 20;
/// Below this the interpreter cannot even start.
pub const MIN_MEMORY_MB: u64 = 1;

/// Figures a run may return as images; more are listed as omitted.
pub const MAX_IMAGES: usize = 16;
/// Pixels of one image (width x height): a 4000 x 4000 figure, 64 MB of RGBA while it is
/// drawn. A larger figure is not rendered at all, so it costs neither time nor memory.
pub const MAX_IMAGE_PIXELS: u64 = 16_000_000;
/// PNG bytes of all the images of one run together (base64 makes them 4/3 as large on the
/// wire); an image that would pass it is omitted, with the reason.
pub const MAX_IMAGE_BYTES: usize = 8 << 20;

/// The operator's limits: each is the default for a run and the most a request may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    /// The instruction budget of a metered run, and the most a request may ask for.
    pub fuel: u64,
    /// Meter every run (the operator passed `--fuel`), not only those that ask.
    pub meter_all: bool,
    pub memory_mb: u64,
    pub max_output_bytes: usize,
    pub max_code_bytes: usize,
    pub max_stdin_bytes: usize,
    pub max_concurrency: usize,
    pub max_queue: usize,
    /// Bytes a run's or session's workspace (with its /tmp) may hold, in MiB.
    pub scratch_mb: u64,
    /// Files a workspace may hold.
    pub workspace_max_files: usize,
    /// Largest file a client may send in, in MiB.
    pub max_upload_mb: u64,
    /// Bytes of file content a stateless run sends back, in KiB.
    pub max_files_out_kb: u64,
    /// Code mode: tool calls per run, time per call, bytes of results per run.
    pub max_tool_calls: u64,
    pub tool_timeout: Duration,
    pub max_tool_result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            fuel: DEFAULT_FUEL,
            meter_all: false,
            memory_mb: DEFAULT_MEMORY_MB,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_code_bytes: DEFAULT_MAX_CODE_BYTES,
            max_stdin_bytes: DEFAULT_MAX_STDIN_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
            scratch_mb: DEFAULT_SCRATCH_MB,
            workspace_max_files: DEFAULT_WORKSPACE_MAX_FILES,
            max_upload_mb: DEFAULT_MAX_UPLOAD_MB,
            max_files_out_kb: DEFAULT_MAX_FILES_OUT_KB,
            max_tool_calls: DEFAULT_MAX_TOOL_CALLS,
            tool_timeout: Duration::from_millis(DEFAULT_TOOL_TIMEOUT_MS),
            max_tool_result_bytes: DEFAULT_MAX_TOOL_RESULT_BYTES,
        }
    }
}

/// What one request asked for; `None` means "the server's default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitRequest {
    pub timeout_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub max_tool_calls: Option<u64>,
    pub tool_timeout_ms: Option<u64>,
    pub max_tool_result_bytes: Option<u64>,
    /// Not a limit: whether the run's record of tool calls keeps arguments and results.
    pub tool_call_details: bool,
}

/// The limits one run actually gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub timeout: Duration,
    /// `Some(budget)`: the run is metered (fuel); `None`: bounded by time alone.
    pub fuel: Option<u64>,
    pub memory_mb: u64,
    pub max_output_bytes: usize,
    /// Bytes the run may write to its scratch directory.
    pub scratch_bytes: u64,
    /// Code mode's bounds (see [`ToolBounds`]).
    pub tools: ToolBounds,
}

/// What one run may do with the upstream tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolBounds {
    pub max_calls: u64,
    /// Longest one call may take (the run's timeout also holds).
    pub call_timeout: Duration,
    /// Bytes of results, as JSON, the run may receive in all.
    pub max_result_bytes: u64,
    /// Keep each call's arguments and result in the record.
    pub details: bool,
}

/// A request's limit that cannot be honoured (a zero where a positive number is needed).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field} must be at least {min}, got {value}")]
pub struct LimitError {
    pub field: &'static str,
    pub value: u64,
    pub min: u64,
}

impl Limits {
    /// Check the operator's own settings once, at start-up.
    pub fn validate(&self) -> Result<(), LimitError> {
        at_least("timeout_ms", self.timeout.as_millis() as u64, 1)?;
        at_least("fuel", self.fuel, 1)?;
        at_least("memory_mb", self.memory_mb, MIN_MEMORY_MB)?;
        at_least("max_concurrency", self.max_concurrency as u64, 1)?;
        Ok(())
    }

    /// The bounds of every workspace.
    pub fn workspace(&self) -> crate::workspace::WorkspaceLimits {
        crate::workspace::WorkspaceLimits {
            max_bytes: self.scratch_mb.saturating_mul(1 << 20),
            max_files: self.workspace_max_files,
            max_upload_bytes: self.max_upload_mb.saturating_mul(1 << 20),
        }
    }

    /// How this server meters instructions, in words for a client (tool and API docs).
    pub fn fuel_policy(&self) -> String {
        if self.meter_all {
            format!("every run metered with {} fuel units", self.fuel)
        } else {
            format!(
                "a run is metered only if it sets `fuel` (at most {} units)",
                self.fuel
            )
        }
    }

    /// Resolve a request's overrides: each is clamped to the server's limit.
    pub fn resolve(&self, req: &LimitRequest) -> Result<RunLimits, LimitError> {
        let timeout_ms = self.timeout.as_millis() as u64;
        let timeout = pick("timeout_ms", req.timeout_ms, timeout_ms, 1)?;
        Ok(RunLimits {
            timeout: Duration::from_millis(timeout),
            fuel: match req.fuel {
                Some(_) => Some(pick("fuel", req.fuel, self.fuel, 1)?),
                None => self.meter_all.then_some(self.fuel),
            },
            memory_mb: pick("memory_mb", req.memory_mb, self.memory_mb, MIN_MEMORY_MB)?,
            max_output_bytes: pick(
                "max_output_bytes",
                req.max_output_bytes,
                self.max_output_bytes as u64,
                0,
            )? as usize,
            scratch_bytes: self.scratch_mb.saturating_mul(1 << 20),
            tools: ToolBounds {
                max_calls: pick("max_tool_calls", req.max_tool_calls, self.max_tool_calls, 0)?,
                call_timeout: Duration::from_millis(pick(
                    "tool_timeout_ms",
                    req.tool_timeout_ms,
                    self.tool_timeout.as_millis() as u64,
                    1,
                )?),
                max_result_bytes: pick(
                    "max_tool_result_bytes",
                    req.max_tool_result_bytes,
                    self.max_tool_result_bytes,
                    0,
                )?,
                details: req.tool_call_details,
            },
        })
    }
}

fn pick(field: &'static str, asked: Option<u64>, server: u64, min: u64) -> Result<u64, LimitError> {
    match asked {
        None => Ok(server),
        Some(value) => {
            at_least(field, value, min)?;
            Ok(value.min(server))
        }
    }
}

fn at_least(field: &'static str, value: u64, min: u64) -> Result<(), LimitError> {
    if value < min {
        return Err(LimitError { field, value, min });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_can_lower_but_not_raise() {
        let limits = Limits::default();
        let run = limits
            .resolve(&LimitRequest {
                timeout_ms: Some(500),
                fuel: Some(u64::MAX),
                memory_mb: Some(64),
                max_output_bytes: None,
                max_tool_calls: Some(u64::MAX),
                tool_timeout_ms: Some(250),
                max_tool_result_bytes: Some(0),
                tool_call_details: true,
            })
            .unwrap();
        assert_eq!(run.timeout, Duration::from_millis(500));
        assert_eq!(run.fuel, Some(DEFAULT_FUEL));
        assert_eq!(run.memory_mb, 64);
        assert_eq!(run.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
        assert_eq!(run.tools.max_calls, DEFAULT_MAX_TOOL_CALLS);
        assert_eq!(run.tools.call_timeout, Duration::from_millis(250));
        assert_eq!(run.tools.max_result_bytes, 0);
        assert!(run.tools.details);
        let zero = LimitRequest {
            tool_timeout_ms: Some(0),
            ..LimitRequest::default()
        };
        assert_eq!(limits.resolve(&zero).unwrap_err().field, "tool_timeout_ms");
    }

    #[test]
    fn runs_are_metered_only_where_asked() {
        let limits = Limits::default();
        let unasked = LimitRequest::default();
        assert_eq!(limits.resolve(&unasked).unwrap().fuel, None);
        let asked = LimitRequest {
            fuel: Some(1_000),
            ..Default::default()
        };
        assert_eq!(limits.resolve(&asked).unwrap().fuel, Some(1_000));
        let operator = Limits {
            fuel: 5_000,
            meter_all: true,
            ..Limits::default()
        };
        assert_eq!(operator.resolve(&unasked).unwrap().fuel, Some(5_000));
        assert_eq!(operator.resolve(&asked).unwrap().fuel, Some(1_000));
    }

    #[test]
    fn zero_limits_are_rejected() {
        let limits = Limits::default();
        let err = limits
            .resolve(&LimitRequest {
                timeout_ms: Some(0),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.field, "timeout_ms");
        assert!(
            limits
                .resolve(&LimitRequest {
                    fuel: Some(0),
                    ..Default::default()
                })
                .is_err()
        );
    }
}
