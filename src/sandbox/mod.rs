//! The sandbox: the only door to wasm. It owns the engine, the compiled python.wasm, the
//! limits and the single concurrency cap that HTTP, MCP and the CLI all go through, so no
//! face can starve another or bypass a limit.
//!
//! `Sandbox::load` does everything expensive once (verify the runtime, compile or load the
//! cached module, link WASI); `Sandbox::run` is the per-request path: admit, instantiate a
//! pristine interpreter, run, classify.

mod engine;
mod io;
mod outcome;
mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{InstancePre, Linker};

pub use engine::{ModuleSource, PYTHON_VERSION, WASMTIME_VERSION, default_cache_dir};
pub use outcome::{Outcome, Stop};
pub use run::Job;

use crate::limits::{LimitError, LimitRequest, Limits};
use run::GuestState;

/// How to build a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// python.wasm; `None` searches the usual places (see `locate_python_wasm`).
    pub python_wasm: Option<PathBuf>,
    /// Where compiled modules are cached; `None` compiles in memory every start.
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
}

/// Facts about the loaded runtime, for /healthz and logs.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub python_wasm: PathBuf,
    pub sha256: String,
    pub module_source: ModuleSource,
    pub load_time: Duration,
}

/// A request the sandbox refuses before running anything.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("the sandbox is busy: {running} runs in progress and {queued} waiting; retry shortly")]
    Busy { running: usize, queued: usize },
    #[error("code is {len} bytes, more than the limit of {max} bytes")]
    CodeTooLarge { len: usize, max: usize },
    #[error("stdin is {len} bytes, more than the limit of {max} bytes")]
    StdinTooLarge { len: usize, max: usize },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

pub struct Sandbox {
    pre: InstancePre<GuestState>,
    limits: Limits,
    info: RuntimeInfo,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl Sandbox {
    /// Verify and load the runtime, compiling it only if the cache has no usable artifact.
    pub fn load(options: SandboxOptions) -> Result<Sandbox> {
        Self::load_inner(options).map_err(into_anyhow)
    }

    fn load_inner(options: SandboxOptions) -> wasmtime::Result<Sandbox> {
        use wasmtime::error::Context as _;
        let started = Instant::now();
        options.limits.validate().context("invalid limits")?;
        let path = engine::locate_python_wasm(options.python_wasm.as_deref())?;
        let wasm = engine::load_python_wasm(&path)?;
        let engine = engine::new_engine()?;
        let (module, module_source) =
            engine::load_module(&engine, &wasm, options.cache_dir.as_deref())?;
        let mut linker: Linker<GuestState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, GuestState::wasi)
            .context("failed to link WASI")?;
        let pre = linker
            .instantiate_pre(&module)
            .context("python.wasm needs imports this host does not provide")?;
        engine::spawn_epoch_ticker(engine);
        let info = RuntimeInfo {
            python_wasm: path,
            sha256: wasm.sha256,
            module_source,
            load_time: started.elapsed(),
        };
        Ok(Sandbox {
            pre,
            slots: Arc::new(Semaphore::new(options.limits.max_concurrency)),
            limits: options.limits,
            info,
            queued: AtomicUsize::new(0),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    /// Check a request against the limits and turn it into a job.
    pub fn job(
        &self,
        code: String,
        stdin: Option<String>,
        asked: &LimitRequest,
    ) -> Result<Job, RunError> {
        if code.len() > self.limits.max_code_bytes {
            return Err(RunError::CodeTooLarge {
                len: code.len(),
                max: self.limits.max_code_bytes,
            });
        }
        let stdin = stdin.map(String::into_bytes).unwrap_or_default();
        if stdin.len() > self.limits.max_stdin_bytes {
            return Err(RunError::StdinTooLarge {
                len: stdin.len(),
                max: self.limits.max_stdin_bytes,
            });
        }
        let limits = self.limits.resolve(asked)?;
        Ok(Job {
            code,
            stdin,
            limits,
        })
    }

    /// Run a job in a pristine interpreter, waiting for a slot if all are busy (up to the
    /// queue bound). Dropping the returned future cancels the run and frees its slot.
    pub async fn run(&self, job: &Job) -> Result<Outcome, RunError> {
        let _slot = self.admit(job.limits.timeout).await?;
        let outcome = run::run(&self.pre, job)
            .await
            .map_err(|e| RunError::Internal(into_anyhow(e)))?;
        tracing::info!(
            duration_ms = outcome.duration.as_secs_f64() * 1e3,
            fuel_used = outcome.fuel_used,
            stopped = outcome.stopped.map(Stop::as_str).unwrap_or("none"),
            exit_code = outcome.exit_code,
            code_bytes = job.code.len(),
            "run finished"
        );
        Ok(outcome)
    }

    /// A slot now, or a place in the bounded queue, or a fast "busy".
    async fn admit(&self, patience: Duration) -> Result<OwnedSemaphorePermit, RunError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = || RunError::Busy {
            running: self.limits.max_concurrency - self.slots.available_permits(),
            queued: self.queued.load(Ordering::Relaxed),
        };
        let spot = QueueSpot::take(&self.queued);
        if spot.position >= self.limits.max_queue {
            drop(spot);
            return Err(busy());
        }
        // Waiting longer than the run itself may take would double the caller's latency
        // budget; after that the caller is better served by a retry.
        let waited = tokio::time::timeout(patience, self.slots.clone().acquire_owned()).await;
        drop(spot);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy()),
        }
    }
}

/// A place in the queue, given back on drop, so a caller that disconnects while waiting
/// does not leave a phantom entry behind.
struct QueueSpot<'a> {
    queued: &'a AtomicUsize,
    position: usize,
}

impl<'a> QueueSpot<'a> {
    fn take(queued: &'a AtomicUsize) -> Self {
        let position = queued.fetch_add(1, Ordering::AcqRel);
        QueueSpot { queued, position }
    }
}

impl Drop for QueueSpot<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// wasmtime 48 has its own error type; the rest of the program speaks anyhow.
fn into_anyhow(err: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{err:#}")
}
