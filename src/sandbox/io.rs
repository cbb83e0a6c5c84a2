//! The guest's stdout and stderr: host-side streams that enforce the output limit and keep
//! the driver's result envelope apart from what the user's code printed.
//!
//! Both streams share one budget, so a run cannot get twice the limit by using both. A write
//! that does not fit is cut at the limit and then traps the guest: an output flood stops the
//! run at once (reported as `stopped: "output"`) instead of burning its remaining time.
//!
//! The envelope: the driver writes a per-run random marker to stdout in one write, then the
//! envelope. Only a write equal to the marker switches the stream, so nothing a program
//! prints, however it imitates the envelope, can change the reported result.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Everything a run wrote, as the host saw it.
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
    fn write(&mut self, channel: Channel, bytes: &[u8]) -> StreamResult<()> {
        if channel == Channel::Stdout {
            if let Some(envelope) = &mut self.envelope {
                if envelope.len() + bytes.len() > self.envelope_cap {
                    self.overflowed = true;
                    return Err(StreamError::trap("result envelope exceeds its limit"));
                }
                envelope.extend_from_slice(bytes);
                return Ok(());
            }
            if bytes == self.marker.as_slice() {
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
            return Err(StreamError::trap("output limit exceeded"));
        }
        Ok(())
    }
}

/// The capture shared by a run's two streams and the host code that reads it afterwards.
#[derive(Debug, Clone)]
pub struct Capture(Arc<Mutex<Captured>>);

impl Capture {
    /// `budget`: bytes of stdout + stderr the program may write. `envelope_cap`: room for
    /// the driver's envelope, whose fields the driver itself clips to about `budget`.
    pub fn new(marker: Vec<u8>, budget: usize, envelope_cap: usize) -> Self {
        Capture(Arc::new(Mutex::new(Captured {
            marker,
            budget,
            envelope_cap,
            ..Captured::default()
        })))
    }

    pub fn stream(&self, channel: Channel) -> GuestOutput {
        GuestOutput {
            capture: self.clone(),
            channel,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Captured> {
        // A poisoned lock only means a panic elsewhere mid-write; the bytes are still ours.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stdout,
    Stderr,
}

/// One of the guest's output streams (implements the WASI stream traits).
#[derive(Debug, Clone)]
pub struct GuestOutput {
    capture: Capture,
    channel: Channel,
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture.lock().write(self.channel, &bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: the limit is enforced in `write`, where it can cut precisely.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        // Only the p2 stream is used by WASI preview 1's fd_write; this path exists for
        // completeness and shares the same budget.
        Box::new(AsyncOutput(self.clone()))
    }
}

struct AsyncOutput(GuestOutput);

impl AsyncWrite for AsyncOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = self.0.capture.lock().write(self.0.channel, buf);
        std::task::Poll::Ready(match result {
            Ok(()) => Ok(buf.len()),
            Err(_) => Err(std::io::Error::other("output limit exceeded")),
        })
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_cut_exactly() {
        let capture = Capture::new(b"MARK".to_vec(), 10, 100);
        let mut out = capture.stream(Channel::Stdout);
        let mut err = capture.stream(Channel::Stderr);
        out.write(Bytes::from_static(b"123456")).unwrap();
        assert!(err.write(Bytes::from_static(b"abcdef")).is_err());
        let c = capture.lock();
        assert_eq!(c.stdout, b"123456");
        assert_eq!(c.stderr, b"abcd");
        assert!(c.overflowed);
    }

    #[test]
    fn only_the_exact_marker_opens_the_envelope() {
        let capture = Capture::new(b"MARK".to_vec(), 100, 100);
        let mut out = capture.stream(Channel::Stdout);
        out.write(Bytes::from_static(b"MARK{\"result\": 1}"))
            .unwrap();
        assert!(capture.lock().envelope.is_none());
        out.write(Bytes::from_static(b"MARK")).unwrap();
        out.write(Bytes::from_static(b"{}")).unwrap();
        let c = capture.lock();
        assert_eq!(c.envelope.as_deref(), Some(&b"{}"[..]));
        assert_eq!(c.stdout, b"MARK{\"result\": 1}");
    }
}
