//! The sandbox: the only door to wasm. It owns the engine, the compiled python.wasm, the
//! limits and the single concurrency cap that HTTP, MCP and the CLI all go through, so no
//! face can starve another or bypass a limit.
//!
//! `Sandbox::load` does everything expensive once (verify the runtime, compile or load the
//! cached module, link WASI); `Sandbox::run` is the per-request path: admit, instantiate a
//! pristine interpreter, run, classify.
//!
//! There are two engines, each with its own compiled module and snapshot: a plain one
//! (time, memory and output bounded) and a metered one (fuel on top), because counting
//! instructions is compiled into the code and slows CPU-bound Python by ~15-25%. A run
//! goes to the metered engine only when its limits carry fuel (see `limits`).

mod engine;
mod io;
mod run;
mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{InstancePre, Linker};

pub use crate::outcome::{Outcome, Stop};
pub use engine::{ModuleSource, PYTHON_VERSION, WASMTIME_VERSION, default_cache_dir};
pub use run::Job;

use crate::limits::{LimitError, LimitRequest, Limits, RunLimits};
use run::{Entry, GuestState};

/// How to build a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// python.wasm; `None` searches the usual places (see `locate_python_wasm`).
    pub python_wasm: Option<PathBuf>,
    /// Where compiled modules are cached; `None` compiles in memory every start.
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Start runs from a pre-initialised snapshot (falls back to cold starts if it fails).
    pub snapshot: bool,
}

/// How runs enter a fresh interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// From a snapshot of an initialised interpreter (copy-on-write, sub-millisecond).
    Snapshot,
    /// CPython's own start-up in every run (~30 ms).
    Cold,
}

impl StartMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StartMode::Snapshot => "snapshot",
            StartMode::Cold => "cold",
        }
    }
}

/// Facts about the loaded runtime, for /healthz and logs.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub python_wasm: PathBuf,
    pub sha256: String,
    pub module_source: ModuleSource,
    pub load_time: Duration,
    pub start_mode: StartMode,
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

/// One engine's way into a fresh interpreter.
struct Flavor {
    pre: InstancePre<GuestState>,
    entry: Entry,
}

pub struct Sandbox {
    plain: Flavor,
    metered: Flavor,
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
        let (plain, plain_source) = load_flavor(&wasm, &options, false)?;
        let (metered, metered_source) = load_flavor(&wasm, &options, true)?;
        // Both flavors' artifacts were just loaded (and so marked as used): whatever else of
        // ours has gone unused that long belongs to an old version or setting.
        if let Some(dir) = options.cache_dir.as_deref() {
            engine::prune_cache(dir, engine::CACHE_UNUSED_FOR);
        }
        let snapshot = |flavor: &Flavor| matches!(flavor.entry, Entry::Snapshot(_));
        let info = RuntimeInfo {
            python_wasm: path,
            sha256: wasm.sha256,
            module_source: match (plain_source, metered_source) {
                (ModuleSource::Cache, ModuleSource::Cache) => ModuleSource::Cache,
                _ => ModuleSource::Compiled,
            },
            load_time: started.elapsed(),
            // "snapshot" only if every run gets one, metered or not.
            start_mode: match snapshot(&plain) && snapshot(&metered) {
                true => StartMode::Snapshot,
                false => StartMode::Cold,
            },
        };
        Ok(Sandbox {
            plain,
            metered,
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

    /// Runs executing now.
    pub fn running(&self) -> usize {
        self.limits.max_concurrency - self.slots.available_permits()
    }

    /// Runs waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
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
        let flavor = match job.limits.fuel {
            Some(_) => &self.metered,
            None => &self.plain,
        };
        let outcome = run::run(&flavor.pre, flavor.entry, job)
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
            running: self.running(),
            queued: self.queued(),
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

/// One engine (`metered`: with fuel), its compiled module, and its snapshot if asked for
/// and it passes its self-test (otherwise cold starts, with a warning).
fn load_flavor(
    wasm: &engine::PythonWasm,
    options: &SandboxOptions,
    metered: bool,
) -> wasmtime::Result<(Flavor, ModuleSource)> {
    use wasmtime::error::Context as _;
    let engine = engine::new_engine(&options.limits, metered)?;
    let (module, module_source) = engine::load_module(&engine, wasm, options.cache_dir.as_deref())?;
    let mut linker: Linker<GuestState> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, GuestState::wasi)
        .context("failed to link WASI")?;
    let cold = linker
        .instantiate_pre(&module)
        .context("python.wasm needs imports this host does not provide")?;
    engine::spawn_epoch_ticker(engine.clone());
    let kind = if metered { "metered" } else { "plain" };
    let (pre, entry) = match options.snapshot {
        false => (cold, Entry::Cold),
        true => match prepare_snapshot(&engine, &linker, wasm, options, metered) {
            Ok((pre, point)) => (pre, Entry::Snapshot(point)),
            Err(err) => {
                tracing::warn!(
                    "snapshot unavailable, every {kind} run starts CPython cold: {err:#}"
                );
                (cold, Entry::Cold)
            }
        },
    };
    Ok((Flavor { pre, entry }, module_source))
}

/// Load the snapshot from the cache or build it (once), then prove it before use.
fn prepare_snapshot(
    engine: &wasmtime::Engine,
    linker: &Linker<GuestState>,
    wasm: &engine::PythonWasm,
    options: &SandboxOptions,
    metered: bool,
) -> wasmtime::Result<(InstancePre<GuestState>, snapshot::EntryPoint)> {
    use sha2::{Digest, Sha256};
    // The snapshot depends on the exact runtime, the driver, how the host builds it (engine
    // settings are in the file name too).
    let key = hex::encode(Sha256::digest(format!(
        "{}\n{}\n{}",
        wasm.sha256,
        snapshot::FORMAT,
        run::DRIVER
    )));
    let name = engine::cache_file_name(engine, "snapshot", &key);
    let (module, meta, source) =
        engine::load_cached(engine, options.cache_dir.as_deref(), &name, || {
            let started = Instant::now();
            tracing::info!(
                "building the interpreter snapshot (once per runtime, driver and settings)"
            );
            let (bytes, point) = on_fresh_runtime(|| snapshot::build(engine, linker, &wasm.bytes))?;
            let module = wasmtime::Module::new(engine, &bytes)?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "built the snapshot"
            );
            Ok((module, serde_json::to_vec(&point)?))
        })?;
    let point: snapshot::EntryPoint = serde_json::from_slice(&meta)?;
    let pre = linker.instantiate_pre(&module)?;
    on_fresh_runtime(|| self_test(&pre, point, &options.limits, metered))?;
    tracing::info!(module = ?source, "runs start from the interpreter snapshot");
    Ok((pre, point))
}

/// A bad snapshot must cost speed, never correctness: it has to give the right answers,
/// fresh state and fresh randomness before any caller sees it.
async fn self_test(
    pre: &InstancePre<GuestState>,
    point: snapshot::EntryPoint,
    limits: &Limits,
    metered: bool,
) -> wasmtime::Result<()> {
    // Fuel exactly when the engine has it: a metered engine traps at once without fuel,
    // a plain one refuses to set any.
    let limits = RunLimits {
        fuel: metered.then_some(limits.fuel),
        ..limits.resolve(&LimitRequest::default())?
    };
    let run = |code: &str| {
        let job = Job {
            code: code.to_string(),
            stdin: b"in".to_vec(),
            limits,
        };
        async move { run::run(pre, Entry::Snapshot(point), &job).await }
    };
    let out = run("import sys\nprint(1+1)\nleft = 'behind'\n[2+2, sys.stdin.read()]").await?;
    let expected = serde_json::json!([4, "in"]);
    if out.output != "2\n" || out.result.as_ref() != Some(&expected) || out.error.is_some() {
        wasmtime::bail!("self-test: unexpected outcome {out:?}");
    }
    let out = run("'left' in globals()").await?;
    if out.result != Some(serde_json::json!(false)) {
        wasmtime::bail!("self-test: state leaked between runs: {out:?}");
    }
    let out = run("1/0").await?;
    let error = out.error.unwrap_or_default();
    if !error.contains("File \"<cell>\", line 1")
        || !error.ends_with("ZeroDivisionError: division by zero\n")
    {
        wasmtime::bail!("self-test: unexpected traceback {error:?}");
    }
    let first = run("import random\nrandom.random()").await?.result;
    let second = run("import random\nrandom.random()").await?.result;
    if first.is_none() || first == second {
        wasmtime::bail!("self-test: random state repeats across runs ({first:?})");
    }
    Ok(())
}

/// Drive `make()`'s future to completion on a private runtime on its own thread, so this
/// works whether or not the caller is already inside a tokio runtime.
fn on_fresh_runtime<F, T>(make: impl FnOnce() -> F + Send) -> wasmtime::Result<T>
where
    F: std::future::Future<Output = wasmtime::Result<T>>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(make())
            })
            .join()
            .unwrap_or_else(|_| wasmtime::bail!("the snapshot thread panicked"))
    })
}

/// wasmtime 48 has its own error type; the rest of the program speaks anyhow.
fn into_anyhow(err: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{err:#}")
}
