//! What happened in one run, as typed data: the last expression's value, what was printed,
//! the error, and which limit (if any) stopped it. Shared by every face (HTTP, MCP, CLI).
//!
//! This is also where the guest's raw bytes become that data: [`Captured`] splits what the
//! guest writes into the program's output and the driver's result envelope (enforcing the
//! output budget), and [`assemble`] turns those bytes and how the run ended into an
//! [`Outcome`]. Both take bytes a hostile program controls, so they are plain functions with
//! no wasm in sight: the fuzz targets in `fuzz/` drive them directly.

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
    /// Instructions used; `None` when the run was not metered.
    pub fuel_used: Option<u64>,
    /// The runtime it ran in.
    pub runtime: String,
    /// Figures the run left open or showed, as PNG.
    pub images: Vec<Image>,
    /// Figures that were not returned, each with the reason (a bound, a render error).
    pub images_omitted: Vec<String>,
    /// Files of the workspace a stateless run created or changed.
    pub files: Vec<crate::workspace::FileOut>,
}

/// One figure, rendered by the guest. Width and height are read from the PNG itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Image {
    /// Always "image/png".
    pub mime_type: String,
    /// The image, base64 (standard alphabet, padded).
    pub data: String,
    pub width: u32,
    pub height: u32,
}

impl Image {
    /// Accept `data` only if it is base64 of a PNG: the signature, then an IHDR chunk whose
    /// width and height become the image's. A hostile guest can send anything here.
    pub fn from_base64(data: String) -> Result<Image, String> {
        use base64::Engine as _;
        const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
        // Enough for the signature and the IHDR chunk's length, type, width and height.
        let head_chars = 32.min(data.len() / 4 * 4);
        let head = base64::engine::general_purpose::STANDARD
            .decode(&data[..head_chars])
            .map_err(|e| format!("not base64: {e}"))?;
        if head.len() < 24 || &head[..8] != SIGNATURE || &head[12..16] != b"IHDR" {
            return Err("not a PNG image".into());
        }
        base64::engine::general_purpose::STANDARD
            .decode(&data)
            .map_err(|e| format!("not base64: {e}"))?;
        let width = u32::from_be_bytes(head[16..20].try_into().expect("4 bytes"));
        let height = u32::from_be_bytes(head[20..24].try_into().expect("4 bytes"));
        Ok(Image {
            mime_type: "image/png".into(),
            data,
            width,
            height,
        })
    }
}

/// The driver's report, as it writes it after the marker (see driver.py).
#[derive(Debug, Deserialize)]
struct Envelope {
    pub result: Option<Value>,
    pub has_result: bool,
    pub repr: Option<String>,
    pub error: Option<String>,
    pub exit: bool,
    pub exit_code: i32,
    pub truncated: bool,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub images_omitted: Vec<String>,
}

/// Exit status of the driver when the program broke the channel it reports through.
pub const DRIVER_COULD_NOT_REPORT: i32 = 125;

/// Which of the guest's two output streams a write came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// A write the guest may not make: it went past the output budget (what fit was kept) or
/// past the room for the driver's envelope. The run is stopped there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overflow {
    #[error("output limit exceeded")]
    Output,
    #[error("result envelope exceeds its limit")]
    Envelope,
}

/// Everything a run wrote, as the host saw it.
///
/// Both streams share one budget, so a run cannot get twice the limit by using both. The
/// envelope: the driver writes a per-run random marker to stdout in one write, then the
/// envelope. Only a write equal to the marker switches the stream, so nothing a program
/// prints, however it imitates the envelope, can change the reported result.
#[derive(Debug, Default)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `Some` once the driver sent the marker; the bytes after it.
    pub envelope: Option<Vec<u8>>,
    /// The run tried to write beyond its output budget (or an oversized envelope).
    pub overflowed: bool,
    marker: Vec<u8>,
    budget: usize,
    envelope_cap: usize,
}

impl Captured {
    /// `budget`: bytes of stdout + stderr the program may write. `envelope_cap`: room for
    /// the driver's envelope, whose fields the driver itself clips to about `budget`.
    pub fn new(marker: Vec<u8>, budget: usize, envelope_cap: usize) -> Self {
        Captured {
            marker,
            budget,
            envelope_cap,
            ..Captured::default()
        }
    }

    /// Take one write from the guest. A write that does not fit is cut at the limit and
    /// refused, which stops the run at once instead of letting it burn its remaining time.
    pub fn write(&mut self, channel: Channel, bytes: &[u8]) -> Result<(), Overflow> {
        if channel == Channel::Stdout {
            if let Some(envelope) = &mut self.envelope {
                if envelope.len() + bytes.len() > self.envelope_cap {
                    self.overflowed = true;
                    return Err(Overflow::Envelope);
                }
                envelope.extend_from_slice(bytes);
                return Ok(());
            }
            if !self.marker.is_empty() && bytes == self.marker.as_slice() {
                self.envelope = Some(Vec::new());
                return Ok(());
            }
        }
        let take = bytes.len().min(self.budget);
        self.budget -= take;
        let sink = match channel {
            Channel::Stdout => &mut self.stdout,
            Channel::Stderr => &mut self.stderr,
        };
        sink.extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            self.overflowed = true;
            return Err(Overflow::Output);
        }
        Ok(())
    }
}

/// How the guest's `_start` ended, before looking at what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned (status 0) or called `proc_exit(status)`.
    Exited(i32),
    /// A limit or trap; the optional text is the trap's own message.
    Stopped(Stop, Option<String>),
}

/// The limits a run had, as its messages quote them.
#[derive(Debug, Clone, Copy)]
pub struct Quoted {
    pub timeout_ms: u128,
    pub fuel: u64,
    pub memory_mb: u64,
    pub max_output_bytes: usize,
}

/// Turn what the guest wrote and how it ended into an [`Outcome`] (duration and fuel are
/// the caller's to fill in). `memory_refused`: the store's limiter refused a memory grow,
/// so a failure is reported as the memory limit rather than as the symptom the program
/// showed.
pub fn assemble(
    captured: &Captured,
    ended: Ended,
    memory_refused: bool,
    limits: Quoted,
) -> Outcome {
    let mut outcome = Outcome {
        output: String::from_utf8_lossy(&captured.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
        truncated: captured.overflowed,
        ..Outcome::default()
    };
    let envelope: Option<Envelope> = captured
        .envelope
        .as_deref()
        .and_then(|bytes| serde_json::from_slice(bytes).ok());

    // An output overflow traps from inside a write, so it must be recognised before the
    // trap is taken at face value.
    let ended = match ended {
        Ended::Stopped(_, _) if captured.overflowed => Ended::Stopped(Stop::Output, None),
        other => other,
    };

    match ended {
        Ended::Exited(status) => match envelope {
            Some(env) => {
                outcome.result = env.has_result.then_some(env.result).flatten();
                outcome.result_repr = env.repr;
                outcome.truncated |= env.truncated;
                outcome.exit_code = Some(env.exit_code);
                if env.exit {
                    outcome.stopped = Some(Stop::Exit);
                }
                if env.error.is_some() && memory_refused {
                    outcome.stopped = Some(Stop::Memory);
                }
                outcome.error = env.error;
                outcome.images_omitted = env.images_omitted;
                for (number, data) in env.images.into_iter().enumerate() {
                    match Image::from_base64(data) {
                        Ok(image) => outcome.images.push(image),
                        Err(why) => outcome
                            .images_omitted
                            .push(format!("image {}: dropped by the host, {why}", number + 1)),
                    }
                }
            }
            // The program left without the driver reporting: `os._exit(n)`, or it broke
            // the driver's own channel (closed stdout, ...), or memory ran out so badly
            // that even the driver could not report.
            None if memory_refused => {
                outcome.stopped = Some(Stop::Memory);
                outcome.error = Some(stop_message(Stop::Memory, None, limits));
            }
            None if status == DRIVER_COULD_NOT_REPORT => {
                outcome.exit_code = Some(status);
                outcome.stopped = Some(Stop::Exit);
                outcome.error = Some(
                    "the program broke the sandbox's result channel (closed stdout, replaced \
                     what the driver needs...): no value or traceback could be reported"
                        .into(),
                );
            }
            None => {
                outcome.exit_code = Some(status);
                outcome.stopped = Some(Stop::Exit);
            }
        },
        Ended::Stopped(stop, detail) => {
            outcome.stopped = Some(stop);
            outcome.error = Some(stop_message(stop, detail, limits));
        }
    }
    outcome
}

fn stop_message(stop: Stop, detail: Option<String>, limits: Quoted) -> String {
    match stop {
        Stop::Timeout => format!(
            "timeout: the run exceeded its time limit of {} ms",
            limits.timeout_ms
        ),
        Stop::Fuel => format!(
            "fuel: the run used up its instruction budget of {} units",
            limits.fuel
        ),
        Stop::Memory => format!(
            "memory: the run exceeded its memory limit of {} MiB{}",
            limits.memory_mb,
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        Stop::Output => format!(
            "output: the run wrote more than its limit of {} bytes; output is cut there",
            limits.max_output_bytes
        ),
        Stop::Trap => format!("trap: {}", detail.unwrap_or_else(|| "unknown".into())),
        Stop::Exit => format!(
            "exit: {}",
            detail.unwrap_or_else(|| "the program exited".into())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_cut_exactly() {
        let mut c = Captured::new(b"MARK".to_vec(), 10, 100);
        c.write(Channel::Stdout, b"123456").unwrap();
        assert_eq!(c.write(Channel::Stderr, b"abcdef"), Err(Overflow::Output));
        assert_eq!(c.stdout, b"123456");
        assert_eq!(c.stderr, b"abcd");
        assert!(c.overflowed);
    }

    #[test]
    fn only_the_exact_marker_opens_the_envelope() {
        let mut c = Captured::new(b"MARK".to_vec(), 100, 100);
        c.write(Channel::Stdout, b"MARK{\"result\": 1}").unwrap();
        assert!(c.envelope.is_none());
        c.write(Channel::Stderr, b"MARK").unwrap();
        assert!(c.envelope.is_none(), "the marker counts on stdout only");
        c.write(Channel::Stdout, b"MARK").unwrap();
        c.write(Channel::Stdout, b"{}").unwrap();
        assert_eq!(c.envelope.as_deref(), Some(&b"{}"[..]));
        assert_eq!(c.stdout, b"MARK{\"result\": 1}");
    }

    #[test]
    fn a_driver_report_becomes_the_outcome() {
        let mut c = Captured::new(b"M".to_vec(), 100, 1000);
        c.write(Channel::Stdout, b"2\n").unwrap();
        c.write(Channel::Stdout, b"M").unwrap();
        let report = br#"{"result": 4, "has_result": true, "repr": "4", "error": null, "exit": false, "exit_code": 0, "truncated": false}"#;
        c.write(Channel::Stdout, report).unwrap();
        let limits = Quoted {
            timeout_ms: 1,
            fuel: 1,
            memory_mb: 1,
            max_output_bytes: 100,
        };
        let outcome = assemble(&c, Ended::Exited(0), false, limits);
        assert_eq!(outcome.output, "2\n");
        assert_eq!(outcome.result, Some(serde_json::json!(4)));
        assert_eq!(outcome.stopped, None);
        assert_eq!(outcome.error, None);
    }
}
