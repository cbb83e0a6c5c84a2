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
    /// The last expression's value as data: itself when it is JSON, its JSON form when it
    /// has one (numpy, pandas, tuples, dates... see the driver's values.py), otherwise its
    /// `repr()`.
    pub result: Option<Value>,
    /// `repr()` of the last expression's value, as a REPL would print it.
    pub result_repr: Option<String>,
    /// The value's Python type ("int", "numpy.ndarray", "pandas.DataFrame").
    pub result_type: Option<String>,
    /// What `display()` showed and the figures rendered, in order.
    pub displays: Vec<Display>,
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
    /// Code mode: the calls the run made to upstream tools, in order.
    pub tool_calls: Vec<ToolCall>,
}

/// One call the guest made to an upstream tool (code mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// The server's name in the operator's tools config.
    pub server: String,
    /// The tool's name upstream.
    pub tool: String,
    /// The tool answered without an error.
    pub ok: bool,
    /// Why it failed: "tool_error" (the tool's own error), "invalid_arguments" (refused
    /// here against the input schema, not forwarded), "unknown_tool", "unavailable",
    /// "timeout" or "limit" (calls or result bytes of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From the call leaving the guest to its answer, in milliseconds.
    pub duration_ms: f64,
    /// Bytes of the result (as JSON) handed to the guest.
    pub result_bytes: u64,
    /// A text result was cut to fit the run's result budget.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The arguments, when the request asked for `tool_call_details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::value_forms::any_json")]
    pub arguments: Option<Value>,
    /// The result (or the error message), when the request asked for `tool_call_details`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::value_forms::any_json")]
    pub result: Option<Value>,
}

/// A piece of what a run showed, in the order it happened: see [`Outcome::in_order`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Piece<'a> {
    /// Output printed between display items.
    Output(&'a str),
    Shown(&'a Display),
}

/// What a run showed, in the order a notebook shows it (see [`Outcome::in_order`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InOrder<'a> {
    /// The output and the display items interleaved as they happened.
    pub pieces: Vec<Piece<'a>>,
    /// The output after the last of them: the value or the error follows it.
    pub rest: &'a str,
    /// Figures left open when the cell ended: they come after the value.
    pub after: Vec<&'a Display>,
}

impl Outcome {
    /// The output and the display items as a notebook shows them.
    pub fn in_order(&self) -> InOrder<'_> {
        let mut pieces = Vec::with_capacity(2 * self.displays.len());
        let mut after = Vec::new();
        let mut printed = 0; // bytes of `output` already in `pieces`
        let (mut chars, mut at) = (0, 0); // an item's offset, in characters and in bytes
        for item in &self.displays {
            if let Display::Image { at_end: true, .. } = item {
                after.push(item);
                continue;
            }
            for ch in self.output[at..].chars() {
                if chars >= item.output_offset() {
                    break;
                }
                chars += 1;
                at += ch.len_utf8();
            }
            if at > printed {
                pieces.push(Piece::Output(&self.output[printed..at]));
                printed = at;
            }
            pieces.push(Piece::Shown(item));
        }
        InOrder {
            pieces,
            rest: &self.output[printed..],
            after,
        }
    }
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

/// One item a run showed, in order: an object given to `display()`, or a figure (shown with
/// `display(fig)` or `plt.show()`, or left open at the end). `output_offset` is where it
/// came in the run's `output`, in characters (Unicode code points): what was printed before
/// it is `output[:output_offset]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Display {
    /// An object: its data in the same JSON form as `result`, and the text a notebook
    /// prints for it.
    Value {
        #[schemars(schema_with = "crate::value_forms::schema")]
        value: Value,
        text: String,
        /// Its Python type ("pandas.DataFrame").
        value_type: String,
        /// Its text was cut at the output limit.
        truncated: bool,
        output_offset: usize,
    },
    /// A figure, rendered to PNG.
    Image {
        #[serde(flatten)]
        image: Image,
        output_offset: usize,
        /// Left open when the cell ended (not shown with `display()` or `plt.show()`):
        /// a notebook shows it after the cell's value.
        #[serde(default)]
        at_end: bool,
    },
    /// An item that is not there (past the output budget, a figure over the image bounds,
    /// an object that could not be shown), and why.
    Omitted {
        reason: String,
        output_offset: usize,
    },
}

impl Display {
    pub fn output_offset(&self) -> usize {
        match self {
            Display::Value { output_offset, .. }
            | Display::Image { output_offset, .. }
            | Display::Omitted { output_offset, .. } => *output_offset,
        }
    }
}

/// A run shows at most this many items; past it they are counted in one `omitted` item.
pub const MAX_DISPLAYS: usize = 1000;

/// A display item as the driver frames it (see `record` in driver.py).
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Record {
    Value {
        value: Value,
        text: String,
        value_type: String,
        #[serde(default)]
        truncated: bool,
    },
    /// The index of the image in the envelope's `images`.
    Image {
        index: usize,
        #[serde(default)]
        at_end: bool,
    },
    Omitted {
        reason: String,
    },
}

/// A display item as the host received it: where it came in stdout, and its bytes, or
/// how large it was when it did not fit the output budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Bytes of stdout written before it.
    pub at: usize,
    pub body: Result<Vec<u8>, usize>,
}

/// The driver's report, as it writes it after the marker (see driver.py).
#[derive(Debug, Deserialize)]
struct Envelope {
    pub result: Option<Value>,
    pub has_result: bool,
    pub repr: Option<String>,
    #[serde(default, rename = "type")]
    pub value_type: Option<String>,
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
///
/// Display items come the same way, before the envelope: one write of the marker, `D` and
/// the item's length in ten digits, then that many bytes. An item is charged to the same
/// budget as the output; one that does not fit is not kept, and the answer says so (the
/// run goes on: like a figure over its bounds, it is a thing left out, not a flood).
#[derive(Debug, Default)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `Some` once the driver sent the marker; the bytes after it.
    pub envelope: Option<Vec<u8>>,
    /// The run tried to write beyond its output budget (or an oversized envelope).
    pub overflowed: bool,
    /// Display items, in order (at most [`MAX_DISPLAYS`]).
    pub shown: Vec<Shown>,
    /// Display items past [`MAX_DISPLAYS`], not kept.
    pub shown_dropped: usize,
    /// Bytes of the display item being received still to come (and whether it is kept).
    pending: Option<(usize, bool)>,
    marker: Vec<u8>,
    budget: usize,
    envelope_cap: usize,
}

impl Captured {
    /// `budget`: bytes of stdout + stderr (and display items) the program may write.
    /// `envelope_cap`: room for the driver's envelope, whose fields the driver itself clips
    /// to about `budget`.
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
                self.pending = None;
                self.envelope = Some(Vec::new());
                return Ok(());
            }
            if let Some((left, keep)) = self.pending {
                let take = left.min(bytes.len());
                if keep && let Some(Shown { body: Ok(body), .. }) = self.shown.last_mut() {
                    body.extend_from_slice(&bytes[..take]);
                }
                self.pending = (take < left).then_some((left - take, keep));
                return match &bytes[take..] {
                    [] => Ok(()),
                    rest => self.write(channel, rest),
                };
            }
            if let Some(len) = self.display_header(bytes) {
                self.start_display(len);
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

    /// The length a display item's header announces: the marker, `D`, ten digits.
    fn display_header(&self, bytes: &[u8]) -> Option<usize> {
        let m = self.marker.len();
        if m == 0 || bytes.len() != m + 11 || !bytes.starts_with(&self.marker) {
            return None;
        }
        let (tag, digits) = bytes[m..].split_first()?;
        if *tag != b'D' || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    fn start_display(&mut self, len: usize) {
        let keep = if self.shown.len() >= MAX_DISPLAYS {
            self.shown_dropped += 1;
            false
        } else if len <= self.budget {
            self.budget -= len;
            self.shown.push(Shown {
                at: self.stdout.len(),
                body: Ok(Vec::with_capacity(len.min(64 * 1024))),
            });
            true
        } else {
            self.shown.push(Shown {
                at: self.stdout.len(),
                body: Err(len),
            });
            false
        };
        self.pending = (len > 0).then_some((len, keep));
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
    let (output, offsets) = decode_in_pieces(&captured.stdout, &captured.shown);
    // Where each image of the envelope went in `outcome.images` (a bad one is dropped).
    let mut slots: Vec<Option<usize>> = Vec::new();
    let mut reported = false;
    let mut outcome = Outcome {
        output,
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
                reported = true;
                outcome.result = env.has_result.then_some(env.result).flatten();
                outcome.result_repr = env.repr;
                outcome.result_type = env.has_result.then_some(env.value_type).flatten();
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
                        Ok(image) => {
                            slots.push(Some(outcome.images.len()));
                            outcome.images.push(image);
                        }
                        Err(why) => {
                            slots.push(None);
                            outcome
                                .images_omitted
                                .push(format!("image {}: dropped by the host, {why}", number + 1))
                        }
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
    outcome.displays = displays(captured, &offsets, &slots, &outcome.images, reported);
    if captured.shown_dropped > 0 || captured.shown.iter().any(|s| s.body.is_err()) {
        outcome.truncated = true;
    }
    outcome
}

/// The program's stdout as text, decoded piece by piece between display items, so that
/// each item's offset (in characters) is exact even where the bytes are not UTF-8.
fn decode_in_pieces(stdout: &[u8], shown: &[Shown]) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(stdout.len());
    let mut offsets = Vec::with_capacity(shown.len());
    let (mut done, mut chars) = (0, 0);
    for item in shown {
        let at = item.at.clamp(done, stdout.len());
        if at > done {
            let piece = String::from_utf8_lossy(&stdout[done..at]);
            chars += piece.chars().count();
            text.push_str(&piece);
            done = at;
        }
        offsets.push(chars);
    }
    text.push_str(&String::from_utf8_lossy(&stdout[done..]));
    (text, offsets)
}

/// The display items, from what the driver framed: images looked up in the envelope's
/// (`slots`: where each went in `images`), what could not be kept named and explained.
fn displays(
    captured: &Captured,
    offsets: &[usize],
    slots: &[Option<usize>],
    images: &[Image],
    reported: bool,
) -> Vec<Display> {
    let mut items = Vec::with_capacity(captured.shown.len() + 1);
    for (shown, &output_offset) in captured.shown.iter().zip(offsets) {
        let omitted = |reason: String| Display::Omitted {
            reason,
            output_offset,
        };
        let body = match &shown.body {
            Ok(body) => body,
            Err(size) => {
                items.push(omitted(format!(
                    "display: an item of {size} bytes was left out, past the run's output limit"
                )));
                continue;
            }
        };
        items.push(match serde_json::from_slice::<Record>(body) {
            Ok(Record::Value {
                value,
                text,
                value_type,
                truncated,
            }) => Display::Value {
                value,
                text,
                value_type,
                truncated,
                output_offset,
            },
            Ok(Record::Image { index, at_end }) => match slots.get(index) {
                Some(Some(slot)) => Display::Image {
                    image: images[*slot].clone(),
                    output_offset,
                    at_end,
                },
                Some(None) => omitted(format!("image {}: dropped by the host", index + 1)),
                None if !reported => omitted(
                    "figure: rendered, but the run stopped before its images were returned".into(),
                ),
                None => omitted(format!("image {}: no such image", index + 1)),
            },
            Ok(Record::Omitted { reason }) => omitted(reason),
            Err(_) => omitted("display: an item the host could not read".into()),
        });
    }
    if captured.shown_dropped > 0 {
        items.push(Display::Omitted {
            reason: format!(
                "display: {} more item(s) left out, a run shows at most {MAX_DISPLAYS}",
                captured.shown_dropped
            ),
            output_offset: offsets.last().copied().unwrap_or(0),
        });
    }
    items
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

    fn quoted(max_output_bytes: usize) -> Quoted {
        Quoted {
            timeout_ms: 1,
            fuel: 1,
            memory_mb: 1,
            max_output_bytes,
        }
    }

    fn display_header(marker: &[u8], len: usize) -> Vec<u8> {
        [marker, format!("D{len:010}").as_bytes()].concat()
    }

    #[test]
    fn display_items_share_the_budget_and_keep_their_place() {
        let mut c = Captured::new(b"MARK".to_vec(), 100, 1000);
        let item = br#"{"kind": "value", "value": [1], "text": "[1]", "value_type": "list"}"#;
        c.write(Channel::Stdout, "tö\n".as_bytes()).unwrap();
        c.write(Channel::Stdout, &display_header(b"MARK", item.len()))
            .unwrap();
        // A body may come in several writes.
        c.write(Channel::Stdout, &item[..10]).unwrap();
        c.write(Channel::Stdout, &item[10..]).unwrap();
        // Past the budget: left out, and the run goes on.
        c.write(Channel::Stdout, &display_header(b"MARK", 500))
            .unwrap();
        c.write(Channel::Stdout, &[b'x'; 500]).unwrap();
        c.write(Channel::Stdout, b"end").unwrap();
        // A look-alike header (wrong length, no marker) is only output.
        c.write(Channel::Stdout, b"D0000000001").unwrap();
        c.write(Channel::Stdout, b"MARK").unwrap();
        c.write(
            Channel::Stdout,
            br#"{"result": null, "has_result": false, "repr": null, "error": null, "exit": false, "exit_code": 0, "truncated": false}"#,
        )
        .unwrap();
        assert_eq!(c.stdout, "tö\nendD0000000001".as_bytes());
        assert_eq!(c.shown.len(), 2);
        assert_eq!(c.shown[1].body, Err(500));
        let outcome = assemble(&c, Ended::Exited(0), false, quoted(100));
        assert!(outcome.truncated);
        assert_eq!(
            outcome.displays[0],
            Display::Value {
                value: serde_json::json!([1]),
                text: "[1]".into(),
                value_type: "list".into(),
                truncated: false,
                output_offset: 3,
            }
        );
        let Display::Omitted {
            reason,
            output_offset,
        } = &outcome.displays[1]
        else {
            panic!("{:?}", outcome.displays[1]);
        };
        assert_eq!(*output_offset, 3);
        assert!(reason.contains("500 bytes"), "{reason}");
        let shown = outcome.in_order();
        assert_eq!(shown.pieces.len(), 3);
        assert_eq!(shown.pieces[0], Piece::Output("tö\n"));
        assert_eq!(shown.rest, "endD0000000001");
    }

    #[test]
    fn a_driver_report_becomes_the_outcome() {
        let mut c = Captured::new(b"M".to_vec(), 100, 1000);
        c.write(Channel::Stdout, b"2\n").unwrap();
        c.write(Channel::Stdout, b"M").unwrap();
        let report = br#"{"result": 4, "has_result": true, "repr": "4", "error": null, "exit": false, "exit_code": 0, "truncated": false}"#;
        c.write(Channel::Stdout, report).unwrap();
        let outcome = assemble(&c, Ended::Exited(0), false, quoted(100));
        assert_eq!(outcome.output, "2\n");
        assert_eq!(outcome.result, Some(serde_json::json!(4)));
        assert_eq!(outcome.stopped, None);
        assert_eq!(outcome.error, None);
    }
}
