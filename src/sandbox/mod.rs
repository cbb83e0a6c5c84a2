//! The sandbox: the only door to wasm. It owns the runtimes (each with its engines, compiled
//! modules and snapshots), the limits and the single concurrency cap that HTTP, MCP and the
//! CLI all go through, so no face can starve another or bypass a limit.
//!
//! `Sandbox::load` does everything expensive once (find and verify the runtimes, compile or
//! load the cached modules, build or load the snapshots, link WASI); `Sandbox::run` is the
//! per-request path: admit, instantiate a pristine interpreter, run, classify.
//!
//! Each runtime has two engines, each with its own compiled module and snapshot: a plain one
//! (time, memory and output bounded) and a metered one (fuel on top), because counting
//! instructions is compiled into the code and slows CPU-bound Python by ~15-25%. A run
//! goes to the metered engine only when its limits carry fuel (see `limits`).

mod door;
mod engine;
mod io;
mod overlay;
mod quota;
mod run;
mod runtime;
mod seed;
mod session;
mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use wasmtime::{InstancePre, Linker};

pub use crate::outcome::{Image, Outcome, Stop};
pub use engine::{ModuleSource, WASMTIME_VERSION, default_cache_dir};
pub use run::{Job, Scratch, TMP, WORKSPACE};
pub use runtime::{Entry as RuntimeEntry, NAMES as RUNTIME_NAMES};
pub use session::{SessionCore, SessionStats, TurnError};

use crate::limits::{LimitError, LimitRequest, Limits, RunLimits};
use crate::tools::{Door, Toolbox};
use crate::workspace::{FileError, FileIn, WorkspaceLimits, check_path};
use run::{Entry, GuestState, Hosting};
use runtime::Runtime;

/// How to build a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The stdlib build's python.wasm; `None` searches the usual places.
    pub python_wasm: Option<PathBuf>,
    /// The scientific build's directory; `None` searches the usual places.
    pub scientific_dir: Option<PathBuf>,
    /// Load only these runtimes (each must be present); empty loads every one present.
    pub runtimes: Vec<String>,
    /// The runtime of a request that names none; `None`: scientific if loaded, else stdlib.
    pub default_runtime: Option<String>,
    /// Where compiled modules are cached; `None` compiles in memory every start.
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Start runs from a pre-initialised snapshot (falls back to cold starts if it fails).
    pub snapshot: bool,
    /// Where runs' scratch directories are made; `None`: the system's temporary directory.
    pub scratch_dir: Option<PathBuf>,
}

/// How runs enter a fresh interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// From a snapshot of an initialised interpreter (copy-on-write).
    Snapshot,
    /// CPython's own start-up in every run.
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

/// Facts about one loaded runtime, for /healthz, the tool description and logs.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub name: &'static str,
    pub python_version: &'static str,
    pub python_wasm: PathBuf,
    pub sha256: String,
    /// The runtime's other pinned files (stdlib zip, manifest, data) and their SHA-256.
    pub other_hashes: Vec<(String, String)>,
    /// Packages importable beyond the standard library, with versions.
    pub packages: Vec<(String, String)>,
    /// The guest gets a fresh writable directory here in every run.
    pub scratch: Option<&'static str>,
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
    #[error("unknown runtime {name:?}; this server has: {}", available.join(", "))]
    UnknownRuntime {
        name: String,
        available: Vec<&'static str>,
    },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Most a snapshot build may take (the scientific one takes ~1.5 minutes on a 2-core
/// machine, most of it compiling the instrumented module).
const SNAPSHOT_BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// One engine's way into a fresh interpreter.
struct Flavor {
    pre: InstancePre<GuestState>,
    entry: Entry,
}

/// A runtime ready to run: what every run is given, and its two flavors.
struct Loaded {
    info: RuntimeInfo,
    hosting: Hosting,
    plain: Flavor,
    metered: Flavor,
    /// The same two flavors on engines whose instances keep their own memory: sessions'
    /// (`None`: this runtime has no sessions here, see `load_sessions`).
    sessions: Option<SessionFlavors>,
    /// What a suspended session of this runtime must have been made against: the snapshot
    /// (runtime, driver, warm-up, format) and this wasmtime.
    session_key: String,
}

struct SessionFlavors {
    plain: Flavor,
    metered: Flavor,
    point: snapshot::EntryPoint,
}

pub struct Sandbox {
    runtimes: Vec<Loaded>,
    default: usize,
    limits: Limits,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    /// The upstream tools runs may call (code mode); `None`: none configured.
    tools: Option<Arc<Toolbox>>,
}

impl Sandbox {
    /// Find, verify and load every runtime, compiling only what the cache does not have.
    pub fn load(options: SandboxOptions) -> Result<Sandbox> {
        Self::load_inner(options).map_err(into_anyhow)
    }

    fn load_inner(options: SandboxOptions) -> wasmtime::Result<Sandbox> {
        use wasmtime::error::Context as _;
        options.limits.validate().context("invalid limits")?;
        let found = runtime::discover(&runtime::Search {
            stdlib: options.python_wasm.clone(),
            scientific: options.scientific_dir.clone(),
            only: options.runtimes.clone(),
        })?;
        let mut runtimes = Vec::new();
        for runtime in &found {
            if options.limits.memory_mb < runtime.min_memory_mb {
                let why = format!(
                    "the {:?} runtime needs --memory-mb {} or more (its interpreter snapshot \
                     alone is larger than {} MiB)",
                    runtime.name, runtime.min_memory_mb, options.limits.memory_mb
                );
                if options.runtimes.iter().any(|n| n == runtime.name) {
                    wasmtime::bail!("{why}");
                }
                tracing::warn!("not loading it: {why}");
                continue;
            }
            runtimes.push(
                load_runtime(runtime, &options)
                    .with_context(|| format!("failed to load the {:?} runtime", runtime.name))?,
            );
        }
        // Every flavor's artifacts were just loaded (and so marked as used): whatever else of
        // ours has gone unused that long belongs to an old version or setting.
        if let Some(dir) = options.cache_dir.as_deref() {
            engine::prune_cache(dir, engine::CACHE_UNUSED_FOR);
        }
        if runtimes.is_empty() {
            wasmtime::bail!(
                "no runtime can run under --memory-mb {}",
                options.limits.memory_mb
            );
        }
        let names: Vec<&'static str> = runtimes.iter().map(|r| r.info.name).collect();
        let default = match options.default_runtime.as_deref() {
            Some(name) => names.iter().position(|n| *n == name).ok_or_else(|| {
                wasmtime::format_err!(
                    "--default-runtime {name:?} is not loaded; loaded: {}",
                    names.join(", ")
                )
            })?,
            // The scientific runtime is what most data work needs; the stdlib one is the
            // fallback when it is not installed.
            None => names.iter().position(|n| *n == "scientific").unwrap_or(0),
        };
        Ok(Sandbox {
            runtimes,
            default,
            slots: Arc::new(Semaphore::new(options.limits.max_concurrency)),
            limits: options.limits,
            queued: AtomicUsize::new(0),
            tools: None,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Give every later run (and session turn) the door to these tools.
    pub fn with_tools(mut self, tools: Arc<Toolbox>) -> Sandbox {
        self.tools = Some(tools);
        self
    }

    /// The upstream tools, if any are configured.
    pub fn tools(&self) -> Option<&Arc<Toolbox>> {
        self.tools.as_ref()
    }

    /// A run's door to the tools, within its bounds.
    fn door(&self, job: &Job) -> Option<Door> {
        self.tools
            .as_ref()
            .map(|tools| Door::new(tools.clone(), job.limits.tools))
    }

    /// The default runtime's facts.
    pub fn info(&self) -> &RuntimeInfo {
        &self.runtimes[self.default].info
    }

    /// Every loaded runtime, the default first.
    pub fn runtimes(&self) -> impl Iterator<Item = &RuntimeInfo> {
        let default = std::iter::once(&self.runtimes[self.default].info);
        let others = self
            .runtimes
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != self.default)
            .map(|(_, r)| &r.info);
        default.chain(others)
    }

    /// Runs executing now.
    pub fn running(&self) -> usize {
        self.limits.max_concurrency - self.slots.available_permits()
    }

    /// Runs waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The runtime a request names (`None`: the default).
    pub fn runtime_index(&self, name: Option<&str>) -> Result<usize, RunError> {
        let Some(name) = name else {
            return Ok(self.default);
        };
        self.runtimes
            .iter()
            .position(|r| r.info.name == name)
            .ok_or_else(|| RunError::UnknownRuntime {
                name: name.chars().take(64).collect(),
                available: self.runtimes().map(|r| r.name).collect(),
            })
    }

    /// Check a request against the limits and turn it into a job.
    pub fn job(
        &self,
        code: String,
        stdin: Option<String>,
        asked: &LimitRequest,
        runtime: Option<&str>,
        seed: Option<u64>,
    ) -> Result<Job, RunError> {
        let runtime = self.runtime_index(runtime)?;
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
            runtime,
            seed,
            files: Vec::new(),
            files_out_bytes: self.limits.max_files_out_kb.saturating_mul(1024),
            workspace: self.limits.workspace(),
        })
    }

    /// Give a job files to put in its workspace, after checking every one (path, encoding,
    /// size, and all of them against the workspace's bounds): a bad one refuses them all.
    pub fn with_files(&self, mut job: Job, files: Vec<FileIn>) -> Result<Job, RunError> {
        check_files(&files, &job.workspace)?;
        job.files = files;
        Ok(job)
    }

    /// The name of the runtime a job runs in.
    pub fn runtime_name(&self, job: &Job) -> &'static str {
        self.runtimes[job.runtime].info.name
    }

    /// Run a job in a pristine interpreter, waiting for a slot if all are busy (up to the
    /// queue bound). Dropping the returned future cancels the run and frees its slot.
    pub async fn run(&self, job: &Job) -> Result<Outcome, RunError> {
        let _slot = self.admit(job.limits.timeout).await?;
        let runtime = &self.runtimes[job.runtime];
        let flavor = match job.limits.fuel {
            Some(_) => &runtime.metered,
            None => &runtime.plain,
        };
        let mut outcome = run::run(
            &flavor.pre,
            flavor.entry,
            &runtime.hosting,
            job,
            self.door(job),
        )
        .await
        .map_err(|e| RunError::Internal(into_anyhow(e)))?;
        outcome.runtime = runtime.info.name.to_string();
        tracing::info!(
            runtime = runtime.info.name,
            duration_ms = outcome.duration.as_secs_f64() * 1e3,
            fuel_used = outcome.fuel_used,
            stopped = outcome.stopped.map(Stop::as_str).unwrap_or("none"),
            exit_code = outcome.exit_code,
            code_bytes = job.code.len(),
            images = outcome.images.len(),
            "run finished"
        );
        Ok(outcome)
    }

    /// A slot now, or a place in the bounded queue, or a fast "busy".
    async fn admit(&self, patience: Duration) -> Result<OwnedSemaphorePermit, RunError> {
        let span = crate::telemetry::admit();
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            crate::metrics::queue_wait(Duration::ZERO);
            span.record("omcp.admission", "immediate");
            return Ok(permit);
        }
        let busy = || {
            span.record("omcp.admission", "busy");
            RunError::Busy {
                running: self.running(),
                queued: self.queued(),
            }
        };
        let spot = QueueSpot::take(&self.queued);
        if spot.position >= self.limits.max_queue {
            drop(spot);
            return Err(busy());
        }
        // Waiting longer than the run itself may take would double the caller's latency
        // budget; after that the caller is better served by a retry.
        let started = std::time::Instant::now();
        let waited = tokio::time::timeout(patience, self.slots.clone().acquire_owned())
            .instrument(span.clone())
            .await;
        drop(spot);
        match waited {
            Ok(Ok(permit)) => {
                crate::metrics::queue_wait(started.elapsed());
                span.record("omcp.admission", "queued");
                Ok(permit)
            }
            _ => Err(busy()),
        }
    }
}

/// Check files sent in with a request against the workspace's bounds, touching nothing.
pub fn check_files(files: &[FileIn], bounds: &WorkspaceLimits) -> Result<(), FileError> {
    if files.len() > bounds.max_files {
        return Err(FileError::Full(format!(
            "{} files sent, more than the {} a workspace may hold",
            files.len(),
            bounds.max_files
        )));
    }
    let mut total = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for file in files {
        let path = check_path(&file.path)?;
        if !seen.insert(path.clone()) {
            return Err(FileError::InvalidPath {
                path: path.chars().take(100).collect(),
                why: "given twice in the request",
            });
        }
        let size = file.decode()?.len() as u64;
        if size > bounds.max_upload_bytes {
            return Err(FileError::TooLarge {
                path: file.path.chars().take(100).collect(),
                size,
                max: bounds.max_upload_bytes,
            });
        }
        total += size;
    }
    for path in &seen {
        if path
            .match_indices('/')
            .any(|(i, _)| seen.contains(&path[..i]))
        {
            return Err(FileError::InvalidPath {
                path: path.chars().take(100).collect(),
                why: "a parent directory of it is also a file of the request",
            });
        }
    }
    if total > bounds.max_bytes {
        return Err(FileError::Full(format!(
            "the files sent hold {total} bytes, more than the {} bytes a workspace may hold",
            bounds.max_bytes
        )));
    }
    Ok(())
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

/// A runtime's two flavors. The snapshot is built once (on the plain engine) and its bytes
/// compiled for each engine that does not have it cached; the original module is compiled
/// only if a flavor has to start cold (the scientific build takes minutes to compile).
fn load_runtime(runtime: &Runtime, options: &SandboxOptions) -> wasmtime::Result<Loaded> {
    let started = Instant::now();
    let hosting = Hosting::new(runtime, options.scratch_dir.as_deref());
    let mut built: Option<(Vec<u8>, snapshot::EntryPoint)> = None;
    let (plain, plain_source) = load_flavor(runtime, &hosting, options, false, &mut built)?;
    let (metered, metered_source) = load_flavor(runtime, &hosting, options, true, &mut built)?;
    let sessions = match (plain.entry, metered.entry) {
        (Entry::Snapshot(point), Entry::Snapshot(_)) => {
            match load_sessions(runtime, &hosting, options, point, &built) {
                Ok(flavors) => Some(flavors),
                Err(err) => {
                    tracing::warn!("no sessions on the {:?} runtime: {err:#}", runtime.name);
                    None
                }
            }
        }
        _ => {
            tracing::warn!(
                "no sessions on the {:?} runtime: they need its snapshot",
                runtime.name
            );
            None
        }
    };
    drop(built);
    let snapshot = |flavor: &Flavor| matches!(flavor.entry, Entry::Snapshot(_));
    let info = RuntimeInfo {
        name: runtime.name,
        python_version: runtime.python_version,
        python_wasm: runtime.wasm_path.clone(),
        sha256: runtime.sha256.clone(),
        other_hashes: runtime.other_hashes.clone(),
        packages: runtime.packages.clone(),
        scratch: runtime.scratch,
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
    tracing::info!(
        runtime = runtime.name,
        load_ms = info.load_time.as_millis() as u64,
        start = info.start_mode.as_str(),
        "runtime ready"
    );
    Ok(Loaded {
        info,
        hosting,
        plain,
        metered,
        sessions,
        session_key: format!(
            "{}-{}-wasmtime{WASMTIME_VERSION}",
            env!("CARGO_PKG_VERSION"),
            snapshot_key(runtime)
        ),
    })
}

/// The key of a runtime's snapshot: the exact runtime, the driver, the warm-up code and how
/// the host builds it (engine settings are in the artifact's file name too).
fn snapshot_key(runtime: &Runtime) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!(
        "{}\n{}\n{}\n{}",
        runtime.sha256,
        snapshot::FORMAT,
        run::DRIVER,
        runtime.warm
    )))
}

/// A linker with everything a runtime's guest imports: WASI (with the workspace quota's
/// wrappers) and `host.call`.
fn linker_for(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<GuestState>> {
    use wasmtime::error::Context as _;
    let mut linker: Linker<GuestState> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, GuestState::wasi)
        .context("failed to link WASI")?;
    // The scientific build's door to the tools (code mode); a run without tools answers -1,
    // which the guest sees as ConnectionRefusedError.
    door::add_host_call(&mut linker).context("failed to link host.call")?;
    quota::add_to_linker(&mut linker).context("failed to link the workspace quota")?;
    Ok(linker)
}

/// Sessions' engines load the snapshot artifacts the pooled engines just loaded (the
/// allocation strategy does not change the compiled code); they compile only if the snapshot
/// was built in memory this start without a cache to share it through.
fn load_sessions(
    runtime: &Runtime,
    hosting: &Hosting,
    options: &SandboxOptions,
    point: snapshot::EntryPoint,
    built: &Option<(Vec<u8>, snapshot::EntryPoint)>,
) -> wasmtime::Result<SessionFlavors> {
    overlay::available().map_err(|e| wasmtime::format_err!("{e}"))?;
    if !session::supported(&runtime.wasm)? {
        wasmtime::bail!("python.wasm has mutable globals besides its stack pointer");
    }
    let flavor = |metered: bool| -> wasmtime::Result<Flavor> {
        let engine = engine::new_engine(
            &options.limits,
            metered,
            &runtime.engine,
            engine::Allocation::OnDemand,
        )?;
        let linker = linker_for(&engine)?;
        engine::spawn_epoch_ticker(engine.clone());
        let name = engine::cache_file_name(&engine, "snapshot", &snapshot_key(runtime));
        let (module, _, source) =
            engine::load_cached(&engine, options.cache_dir.as_deref(), &name, || {
                let (bytes, point) = built.as_ref().ok_or_else(|| {
                    wasmtime::format_err!("the snapshot {name} is not in the cache")
                })?;
                Ok((
                    wasmtime::Module::new(&engine, bytes)?,
                    serde_json::to_vec(point)?,
                ))
            })?;
        tracing::debug!(runtime = runtime.name, metered, module = ?source, "session engine ready");
        Ok(Flavor {
            pre: linker.instantiate_pre(&module)?,
            entry: Entry::Snapshot(point),
        })
    };
    let flavors = SessionFlavors {
        plain: flavor(false)?,
        metered: flavor(true)?,
        point,
    };
    on_fresh_runtime(|| session::self_test(&flavors, hosting, &options.limits))?;
    Ok(flavors)
}

/// One engine (`metered`: with fuel) and its way in: the snapshot if asked for and it passes
/// its self-test, otherwise the compiled module started cold (with a warning).
fn load_flavor(
    runtime: &Runtime,
    hosting: &Hosting,
    options: &SandboxOptions,
    metered: bool,
    built: &mut Option<(Vec<u8>, snapshot::EntryPoint)>,
) -> wasmtime::Result<(Flavor, ModuleSource)> {
    use wasmtime::error::Context as _;
    let engine = engine::new_engine(
        &options.limits,
        metered,
        &runtime.engine,
        engine::Allocation::Pooled,
    )?;
    let linker = linker_for(&engine)?;
    engine::spawn_epoch_ticker(engine.clone());
    let kind = if metered { "metered" } else { "plain" };
    if options.snapshot {
        match prepare_snapshot(&engine, &linker, runtime, hosting, options, metered, built) {
            Ok((pre, point, source)) => {
                return Ok((
                    Flavor {
                        pre,
                        entry: Entry::Snapshot(point),
                    },
                    source,
                ));
            }
            Err(err) => tracing::warn!(
                "snapshot unavailable, every {kind} run of {:?} starts CPython cold: {err:#}",
                runtime.name
            ),
        }
    }
    let (module, source) = engine::load_module(
        &engine,
        &runtime.wasm,
        &runtime.sha256,
        &runtime.wasm_path,
        options.cache_dir.as_deref(),
    )?;
    let pre = linker
        .instantiate_pre(&module)
        .context("python.wasm needs imports this host does not provide")?;
    Ok((
        Flavor {
            pre,
            entry: Entry::Cold,
        },
        source,
    ))
}

/// Load the snapshot from the cache or build it (once per runtime, driver and settings),
/// then prove it before use.
fn prepare_snapshot(
    engine: &wasmtime::Engine,
    linker: &Linker<GuestState>,
    runtime: &Runtime,
    hosting: &Hosting,
    options: &SandboxOptions,
    metered: bool,
    built: &mut Option<(Vec<u8>, snapshot::EntryPoint)>,
) -> wasmtime::Result<(InstancePre<GuestState>, snapshot::EntryPoint, ModuleSource)> {
    let name = engine::cache_file_name(engine, "snapshot", &snapshot_key(runtime));
    let (module, meta, source) =
        engine::load_cached(engine, options.cache_dir.as_deref(), &name, || {
            if built.is_none() {
                let started = Instant::now();
                tracing::info!(
                    runtime = runtime.name,
                    "building the interpreter snapshot (once per runtime, driver and settings)"
                );
                *built = Some(on_fresh_runtime(|| async {
                    // Warm-up code that hangs must cost a cold start, not a server that
                    // never starts (the guest yields at every epoch, so this can fire).
                    tokio::time::timeout(
                        SNAPSHOT_BUILD_TIMEOUT,
                        snapshot::build(engine, linker, runtime, hosting),
                    )
                    .await
                    .map_err(|_| {
                        wasmtime::format_err!(
                            "the snapshot build took more than {} s",
                            SNAPSHOT_BUILD_TIMEOUT.as_secs()
                        )
                    })?
                })?);
                tracing::info!(
                    runtime = runtime.name,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "built the snapshot"
                );
            }
            let (bytes, point) = built.as_ref().expect("built above");
            let started = Instant::now();
            let module = wasmtime::Module::new(engine, bytes)?;
            tracing::info!(
                runtime = runtime.name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compiled the snapshot"
            );
            Ok((module, serde_json::to_vec(point)?))
        })?;
    let point: snapshot::EntryPoint = serde_json::from_slice(&meta)?;
    let pre = linker.instantiate_pre(&module)?;
    on_fresh_runtime(|| self_test(&pre, point, hosting, &options.limits, metered))?;
    tracing::info!(runtime = runtime.name, module = ?source, "runs start from the interpreter snapshot");
    Ok((pre, point, source))
}

/// A bad snapshot must cost speed, never correctness: it has to give the right answers,
/// fresh state and fresh randomness before any caller sees it.
async fn self_test(
    pre: &InstancePre<GuestState>,
    point: snapshot::EntryPoint,
    hosting: &Hosting,
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
            runtime: 0,
            seed: None,
            files: Vec::new(),
            files_out_bytes: 0,
            workspace: crate::limits::Limits::default().workspace(),
        };
        async move { run::run(pre, Entry::Snapshot(point), hosting, &job, None).await }
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
