//! The guest's stdout and stderr as WASI streams. What they do with the bytes (the shared
//! output budget, the envelope marker) is [`Captured`]'s business, in `crate::outcome`;
//! this module only adapts it to wasmtime-wasi: a refused write becomes a trap, so an output
//! flood stops the run at once (reported as `stopped: "output"`) instead of burning its
//! remaining time.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

pub use crate::outcome::{Captured, Channel};

/// The capture shared by a run's two streams and the host code that reads it afterwards.
#[derive(Debug, Clone)]
pub struct Capture(Arc<Mutex<Captured>>);

impl Capture {
    /// `budget`: bytes of stdout + stderr the program may write. `envelope_cap`: room for
    /// the driver's envelope, whose fields the driver itself clips to about `budget`.
    pub fn new(marker: Vec<u8>, budget: usize, envelope_cap: usize) -> Self {
        Capture(Arc::new(Mutex::new(Captured::new(
            marker,
            budget,
            envelope_cap,
        ))))
    }

    pub fn stream(&self, channel: Channel) -> GuestOutput {
        GuestOutput {
            capture: self.clone(),
            channel,
        }
    }

    /// Start over for a new turn of a session (whose store keeps these streams).
    pub fn reset(&self, marker: Vec<u8>, budget: usize, envelope_cap: usize) {
        *self.lock() = Captured::new(marker, budget, envelope_cap);
    }

    pub fn lock(&self) -> MutexGuard<'_, Captured> {
        // A poisoned lock only means a panic elsewhere mid-write; the bytes are still ours.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
        self.capture
            .lock()
            .write(self.channel, &bytes)
            .map_err(|overflow| StreamError::trap(&overflow.to_string()))
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

/// The guest's stdin: bytes the host puts in, read in order, then end of file. A session's
/// store keeps one for its life and the host refills it for every turn.
#[derive(Debug, Clone, Default)]
pub struct Feed(Arc<Mutex<Bytes>>);

impl Feed {
    pub fn new(bytes: Vec<u8>) -> Feed {
        Feed(Arc::new(Mutex::new(Bytes::from(bytes))))
    }

    /// Replace whatever is left unread with `bytes`.
    pub fn refill(&self, bytes: Vec<u8>) {
        *self.lock() = Bytes::from(bytes);
    }

    fn lock(&self) -> MutexGuard<'_, Bytes> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl InputStream for Feed {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut buffer = self.lock();
        if buffer.is_empty() {
            return Err(StreamError::Closed);
        }
        let size = size.min(buffer.len());
        Ok(buffer.split_to(size))
    }
}

#[async_trait::async_trait]
impl Pollable for Feed {
    async fn ready(&mut self) {}
}

impl IsTerminal for Feed {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for Feed {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncRead for Feed {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let mut buffer = self.lock();
        let size = buf.remaining().min(buffer.len());
        buf.put_slice(&buffer.split_to(size));
        std::task::Poll::Ready(Ok(()))
    }
}
