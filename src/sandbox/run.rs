//! One run: a fresh store and instance of the pre-linked module, fed the driver protocol
//! through WASI stdin, bounded by every limit, and classified into an [`Outcome`].
//!
//! This is the one place where limits become wasmtime objects: fuel (`Store::set_fuel`),
//! time (epoch yields + an async timeout), memory (a `ResourceLimiter`), output (the
//! capture's budget). Nothing of a run outlives it: the store, instance, memory and pipes
//! are dropped at the end, so the next run starts from the pristine module.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::Instrument;
use wasmtime::error::Context;
use wasmtime::{Instance, InstancePre, ResourceLimiter, Result, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::door::DoorState;
pub use super::io::{Capture, Channel, Feed};
use super::quota::Quota;
use super::runtime::{self, Runtime};
use super::seed::Seeded;
use crate::limits::{self as limit, RunLimits};
pub use crate::outcome::Ended;
use crate::outcome::{Outcome, Quoted, Stop, assemble};
use crate::tools::Door;
use crate::workspace::{FileError, FileIn, Fingerprint, Workspace, WorkspaceLimits};

/// The in-guest driver (see driver.py for its protocol).
pub const DRIVER: &str = concat!(
    include_str!("values.py"),
    include_str!("tools.py"),
    include_str!("driver.py")
);

/// Length of the protocol header the driver reads first (`HEADER_LEN` in driver.py).
const HEADER_LEN: usize = 160;

/// The command runtime's argv around the driver: isolated mode (no environment, no user
/// site), unbuffered stdio so output written before a limit stops the run is not lost in a
/// buffer, UTF-8 mode. A reactor configures its interpreter itself and gets only argv[0].
const COMMAND_FLAGS: [&str; 6] = ["-I", "-u", "-X", "utf8", "-c", DRIVER];

/// How a run enters the interpreter.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// CPython starts up from scratch (~30 ms for the stdlib build), then runs the driver:
    /// `_start` of a command, `_initialize` and a `turn` of a reactor.
    Cold,
    /// A pre-initialised snapshot: call the driver's `_omcp_run` directly.
    Snapshot(super::snapshot::EntryPoint),
}

/// Where the guest sees its run's (or session's) two writable directories: the workspace,
/// its working directory, whose files clients send and fetch; and a temporary directory.
pub const WORKSPACE: &str = "/workspace";
pub const TMP: &str = "/tmp";

/// What every run of one runtime is given besides the job: argv, environment and
/// directories. Built once per runtime; a run adds only its own writable directories.
#[derive(Debug, Clone)]
pub struct Hosting {
    /// The runtime's name (for logs and traces).
    pub runtime: &'static str,
    pub entry: runtime::Entry,
    pub argv: Vec<String>,
    pub env: Vec<(&'static str, &'static str)>,
    pub grants: Vec<runtime::Grant>,
    /// Where runs' own directories are made on the host (`None`: runs get none).
    pub scratch: Option<PathBuf>,
    /// Runs' directories that were left empty, ready for the next run.
    pub pool: Arc<ScratchPool>,
}

/// Empty run directories kept for reuse: making and removing three directories per run
/// costs more than a `print(1+1)` (~0.4 ms on ext4), and most runs write no file.
#[derive(Debug, Default)]
pub struct ScratchPool {
    free: Mutex<Vec<PathBuf>>,
}

/// Empty run directories kept at most (as many as runs at once, in practice).
const POOLED_SCRATCH: usize = 64;

impl ScratchPool {
    /// A clean directory under `root`: a pooled one, or a new one.
    pub fn take(self: &Arc<Self>, root: &Path) -> Result<Scratch> {
        let pooled = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut scratch = match pooled {
            Some(path) => Scratch {
                path,
                owned: true,
                pool: None,
            },
            None => Scratch::new(root)?,
        };
        scratch.pool = Some(self.clone());
        Ok(scratch)
    }

    /// Take back `path` if the run left both directories empty; `false`: remove it.
    fn give_back(&self, scratch: &Scratch) -> bool {
        let empty =
            |dir: PathBuf| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
        if !(empty(scratch.workspace()) && empty(scratch.tmp())) {
            return false;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() >= POOLED_SCRATCH {
            return false;
        }
        free.push(scratch.path.clone());
        true
    }
}

impl Hosting {
    /// `scratch_base`: where runs' scratch directories are made (`None`: the system's
    /// temporary directory). If it is not writable (a read-only root without a tmpfs), runs
    /// get no scratch directory: the rest still works, and writing there fails in the guest.
    pub fn new(runtime: &Runtime, scratch_base: Option<&Path>) -> Hosting {
        let mut argv = vec![runtime.argv0.to_string()];
        if runtime.entry == runtime::Entry::Command {
            argv.extend(COMMAND_FLAGS.iter().map(|s| s.to_string()));
        }
        let base = scratch_base.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let root = base.join(format!("omcp-scratch-{}", std::process::id()));
        let scratch = match std::fs::create_dir_all(&root) {
            Ok(()) => Some(root),
            Err(err) => {
                tracing::warn!(
                    "runs of {:?} get no writable {WORKSPACE} or {TMP}: cannot create \
                     {root:?} ({err}); pass --scratch-dir DIR, or mount a tmpfs on /tmp",
                    runtime.name
                );
                None
            }
        };
        Hosting {
            runtime: runtime.name,
            entry: runtime.entry,
            argv,
            env: runtime.env.clone(),
            grants: runtime.grants.clone(),
            scratch,
            pool: Arc::new(ScratchPool::default()),
        }
    }

    /// Source of the `turn` that runs the driver in a reactor, in `mode` ("run" or
    /// "snapshot", with the runtime's warm-up code).
    pub fn reactor_driver(mode: &str, warm: &str) -> String {
        format!(
            "_omcp_mode = {}\n_omcp_warm = {}\n{DRIVER}",
            py_str(mode),
            py_str(warm)
        )
    }
}

/// A Python string literal for `text` (JSON's escapes are valid Python).
fn py_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// A run's (or a session's) writable directories on the host: `workspace/` and `tmp/` in
/// one directory. A run's is removed with everything in it when dropped; a session's
/// belongs to the session and stays.
pub struct Scratch {
    path: PathBuf,
    owned: bool,
    /// Where an empty run directory goes back to instead of being removed.
    pool: Option<Arc<ScratchPool>>,
}

impl Scratch {
    /// A new directory with a random name under `root`, removed on drop.
    pub fn new(root: &Path) -> Result<Scratch> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("failed to create the scratch root {root:?}"))?;
        let mut name = [0u8; 16];
        getrandom::fill(&mut name).context("no randomness for a scratch directory name")?;
        let scratch = Scratch {
            path: root.join(hex::encode(name)),
            owned: true,
            pool: None,
        };
        create_private_dir(&scratch.path)?;
        create_private_dir(&scratch.workspace())?;
        create_private_dir(&scratch.tmp())?;
        Ok(scratch)
    }

    /// A session's directory (made if missing), left in place on drop.
    pub fn at(path: &Path) -> Result<Scratch> {
        let scratch = Scratch {
            path: path.to_path_buf(),
            owned: false,
            pool: None,
        };
        for dir in [scratch.path.clone(), scratch.workspace(), scratch.tmp()] {
            if !dir.is_dir() {
                create_private_dir(&dir)?;
            }
        }
        Ok(scratch)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host side of the guest's `/workspace`.
    pub fn workspace(&self) -> PathBuf {
        self.path.join("workspace")
    }

    /// The host side of the guest's `/tmp`.
    pub fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }
}

fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("failed to create the directory {path:?}"))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take()
            && pool.give_back(self)
        {
            return;
        }
        // std's remove_dir_all does not follow symlinks the guest may have made.
        if self.owned
            && let Err(err) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(
                "could not remove the scratch directory {:?}: {err}",
                self.path
            );
        }
    }
}

/// Per-store host state.
pub struct GuestState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    /// What the run may still write to its scratch directory.
    pub quota: Quota,
    /// The door to the upstream tools (code mode), if the run has one.
    pub door: DoorState,
}

impl GuestState {
    pub fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    /// Set up a session's next turn: its memory cap, and what it may still write (bytes,
    /// and new files, directories and links).
    pub fn prepare_turn(&mut self, memory_mb: u64, writable_bytes: u64, entries: usize) {
        self.limiter.max_bytes =
            usize::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        self.limiter.refused = false;
        self.quota = Quota::new(writable_bytes);
        self.quota.limit_entries(entries);
    }

    /// Give the next turn its door to the tools (`None`: no tools).
    pub fn set_door(&mut self, door: Option<Door>) {
        self.door.set(door);
    }

    /// The tool calls made since the door was set.
    pub fn take_tool_calls(&mut self) -> Vec<crate::outcome::ToolCall> {
        self.door
            .door
            .as_mut()
            .map(Door::take_calls)
            .unwrap_or_default()
    }

    /// Whether the memory cap refused a growth since the last `prepare_turn`.
    pub fn memory_refused(&self) -> bool {
        self.limiter.refused
    }
}

/// Caps linear memory and remembers whether it had to refuse, so that a MemoryError (or a
/// crash after a failed allocation) is reported as the memory limit, not as a bug.
struct MemoryLimiter {
    max_bytes: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > self.max_bytes {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        // CPython grows its function table only at start-up; this bound just keeps a
        // hostile module path from reserving host memory through tables.
        Ok(desired <= 1 << 20)
    }
}

/// What the caller hands a run.
#[derive(Debug, Clone)]
pub struct Job {
    pub code: String,
    pub stdin: Vec<u8>,
    pub limits: RunLimits,
    /// Which runtime (an index into the sandbox's list).
    pub runtime: usize,
    /// Makes the run deterministic: its random source and clocks come from this seed.
    pub seed: Option<u64>,
    /// Files to put in the workspace first (checked by `Sandbox::check_files`).
    pub files: Vec<FileIn>,
    /// Bytes of file content a stateless run returns (0: none listed).
    pub files_out_bytes: u64,
    /// The workspace's bounds.
    pub workspace: WorkspaceLimits,
}

/// What one store is given besides its runtime's [`Hosting`].
pub struct Guest<'a> {
    /// The run's own writable directories.
    pub scratch: Option<&'a Scratch>,
    /// All of stdin: the driver's header, the code, the caller's stdin.
    pub stdin: Feed,
    pub capture: &'a Capture,
    pub memory_mb: u64,
    /// Bytes the guest may write to its scratch directory (see `quota`).
    pub scratch_bytes: u64,
    /// Seeded randomness and clocks instead of the host's.
    pub seeded: Option<&'a Seeded>,
    /// The door to the upstream tools (code mode).
    pub door: Option<Door>,
}

/// A store with the deny-by-default WASI context: only the runtime's read-only grants and
/// the run's own scratch directory (if the runtime has them), the runtime's fixed
/// environment, no sockets; these three streams, the clocks and a random source (seeded
/// ones when `seeded`). Fuel and the epoch yield are set; the caller sets the amount of fuel.
pub fn new_store(
    engine: &wasmtime::Engine,
    hosting: &Hosting,
    guest: Guest<'_>,
) -> Result<Store<GuestState>> {
    let Guest {
        scratch,
        stdin,
        capture,
        memory_mb,
        scratch_bytes,
        seeded,
        door,
    } = guest;
    let mut builder = WasiCtxBuilder::new();
    // Filesystem calls (the read-only grants, the scratch directory: local files, small
    // reads) run on the calling thread instead of tokio's blocking pool, which would start
    // a thread per concurrent call and keep it for 10 s. Set before the preopens: each
    // directory takes the setting when it is opened.
    builder.allow_blocking_current_thread(true);
    builder
        .args(&hosting.argv)
        .envs(&hosting.env)
        .stdin(stdin)
        .stdout(capture.stream(Channel::Stdout))
        .stderr(capture.stream(Channel::Stderr));
    // The order is the descriptor numbering a snapshot has recorded: grants, then /tmp,
    // then /workspace. wasmtime-wasi opens each with cap-std, which keeps every path the
    // guest uses (`..`, symlinks) inside it.
    for grant in &hosting.grants {
        builder
            .preopened_dir(&grant.host, grant.guest, FsPerms::ReadOnly)
            .with_context(|| format!("failed to grant {:?} to the guest", grant.host))?;
    }
    if let Some(scratch) = scratch {
        for (host, guest) in [(scratch.tmp(), TMP), (scratch.workspace(), WORKSPACE)] {
            builder
                .preopened_dir(&host, guest, FsPerms::ReadWrite)
                .with_context(|| format!("failed to grant {host:?} to the guest"))?;
        }
    }
    if let Some(seeded) = seeded {
        seeded.configure(&mut builder);
    }
    let wasi = builder.build_p1();
    let max_bytes = usize::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let state = GuestState {
        wasi,
        limiter: MemoryLimiter {
            max_bytes,
            refused: false,
        },
        quota: Quota::new(scratch_bytes),
        door: DoorState::default(),
    };
    let mut store = Store::new(engine, state);
    store.data_mut().set_door(door);
    store.limiter(|state| &mut state.limiter);
    // Yield to the async runtime at every epoch tick: the guest never holds a worker thread
    // for long, and a timeout around the call can fire even while wasm is spinning.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    Ok(store)
}

/// Start a reactor's interpreter (`_initialize`) and run `source` with `turn`, as a cold
/// run and the snapshot build do.
pub async fn reactor_turn(
    store: &mut Store<GuestState>,
    instance: &Instance,
    initialize: bool,
    source: &str,
) -> Result<i32> {
    if initialize {
        let init = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")?;
        init.call_async(&mut *store, ()).await?;
    }
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "host_alloc")?;
    let turn = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "turn")?;
    let len = i32::try_from(source.len()).context("turn source over 2 GiB")?;
    let at = alloc.call_async(&mut *store, len).await?;
    if at == 0 {
        wasmtime::bail!("host_alloc({len}) returned NULL");
    }
    let memory = instance
        .get_memory(&mut *store, "memory")
        .context("the reactor exports no memory")?;
    memory.write(&mut *store, at.cast_unsigned() as usize, source.as_bytes())?;
    turn.call_async(&mut *store, (at, len)).await
}

/// Run `job` in a fresh instance. Errors are host failures only; everything the guest does,
/// including hitting a limit, is an `Outcome`.
pub async fn run(
    pre: &InstancePre<GuestState>,
    entry: Entry,
    hosting: &Hosting,
    job: &Job,
    door: Option<Door>,
) -> Result<Outcome> {
    let started = Instant::now();
    let limits = job.limits;
    // Page faults are the first thing to look at when runs get slower (see
    // vendor/README.md); counted process-wide, so only meaningful one run at a time.
    let faults_before = tracing::enabled!(tracing::Level::DEBUG).then(minor_faults);

    let cell = CellInput::new(job, CellKind::Run)?;
    let seeded = job.seed.map(Seeded::new);
    let capture = Capture::new(cell.marker, limits.max_output_bytes, cell.envelope_cap);

    // The instance's making: its directories and files, its store, the instance itself.
    let instantiating = crate::telemetry::instantiate(
        hosting.runtime,
        match entry {
            Entry::Snapshot(_) => "snapshot",
            Entry::Cold => "cold",
        },
    );
    let entered = instantiating.enter();
    let scratch = match &hosting.scratch {
        Some(root) => Some(hosting.pool.take(root)?),
        None => None,
    };
    // The workspace is opened (a capability) only when there is something to put in it or
    // take out of it: most runs write no file.
    let before = match &scratch {
        Some(scratch) if !job.files.is_empty() => {
            let workspace = Workspace::open(&scratch.workspace()).map_err(file_error)?;
            workspace
                .write_all(&job.files, &job.workspace)
                .map_err(file_error)?;
            workspace.fingerprint().map_err(file_error)?
        }
        _ => Fingerprint::default(),
    };
    let mut store = new_store(
        pre.module().engine(),
        hosting,
        Guest {
            scratch: scratch.as_ref(),
            stdin: Feed::new(cell.input),
            capture: &capture,
            memory_mb: limits.memory_mb,
            scratch_bytes: limits.scratch_bytes,
            seeded: seeded.as_ref(),
            door,
        },
    )?;
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel)?;
    }
    store
        .data_mut()
        .quota
        .limit_entries(job.workspace.max_files.saturating_sub(job.files.len()));
    drop(entered);

    // The outer timeout also covers a guest blocked in a host call (`time.sleep`), which
    // neither fuel nor epochs interrupt. Dropping the future cancels the guest.
    let guest = crate::telemetry::guest_run(hosting.runtime);
    let execution = tokio::time::timeout(limits.timeout, async {
        let instance = pre
            .instantiate_async(&mut store)
            .instrument(instantiating)
            .await?;
        tracing::debug!(instantiated_us = started.elapsed().as_micros() as u64);
        let call = async {
            match (entry, hosting.entry) {
                (Entry::Cold, runtime::Entry::Command) => {
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call_async(&mut store, ()).await
                }
                (Entry::Cold, runtime::Entry::Reactor) => {
                    let driver = Hosting::reactor_driver("run", "");
                    reactor_turn(&mut store, &instance, true, &driver).await?;
                    wasmtime::bail!("the driver returned instead of exiting")
                }
                (Entry::Snapshot(point), _) => {
                    point.call(&mut store, &instance, seeded.as_ref()).await
                }
            }
        };
        // Tool calls the guest makes are entered from inside this call: their spans are
        // children of this one.
        call.instrument(guest.clone()).await
    })
    .await;

    let fuel_used = limits
        .fuel
        .map(|fuel| fuel.saturating_sub(store.get_fuel().unwrap_or(0)));
    let memory_refused = store.data().limiter.refused;
    let tool_calls = store.data_mut().take_tool_calls();
    let called = started.elapsed();
    drop(store);
    let files = match &scratch {
        Some(scratch)
            if job.files_out_bytes > 0
                && std::fs::read_dir(scratch.workspace())
                    .is_ok_and(|mut entries| entries.next().is_some()) =>
        {
            Workspace::open(&scratch.workspace())
                .and_then(|workspace| workspace.changes(&before, job.files_out_bytes))
                .map_err(file_error)?
        }
        _ => Vec::new(),
    };
    drop(scratch);
    tracing::debug!(
        called_us = called.as_micros() as u64,
        dropped_us = started.elapsed().as_micros() as u64,
        faults = faults_before.map(|before| minor_faults().saturating_sub(before)),
    );

    let ended = match execution {
        Err(_elapsed) => Ended::Stopped(Stop::Timeout, None),
        Ok(Ok(())) => Ended::Exited(0),
        Ok(Err(err)) => classify_error(&err, memory_refused),
    };
    let mut outcome = conclude(&capture, ended, memory_refused, &limits);
    outcome.duration = started.elapsed();
    outcome.fuel_used = fuel_used;
    outcome.files = files;
    outcome.tool_calls = tool_calls;
    crate::telemetry::run_ended(&guest, &outcome);
    Ok(outcome)
}

fn file_error(err: FileError) -> wasmtime::Error {
    wasmtime::format_err!("workspace: {err}")
}

/// The outcome of a cell from what it wrote and how it ended.
pub fn conclude(
    capture: &Capture,
    ended: Ended,
    memory_refused: bool,
    limits: &RunLimits,
) -> Outcome {
    let quoted = Quoted {
        timeout_ms: limits.timeout.as_millis(),
        fuel: limits.fuel.unwrap_or(0),
        memory_mb: limits.memory_mb,
        max_output_bytes: limits.max_output_bytes,
    };
    assemble(&capture.lock(), ended, memory_refused, quoted)
}

/// What the driver does with a cell (the header's last word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// A pristine run: report, then exit without finalising.
    Run,
    /// A session's first turn: fresh state for the runtime's own generators, then return.
    First,
    /// A later turn of a session: everything carries on; return.
    Next,
}

impl CellKind {
    fn word(self) -> &'static str {
        match self {
            CellKind::Run => "run",
            CellKind::First => "first",
            CellKind::Next => "next",
        }
    }
}

/// The driver's stdin for one cell, the marker its envelope starts with, and how large
/// that envelope may be.
pub struct CellInput {
    pub marker: Vec<u8>,
    pub input: Vec<u8>,
    pub envelope_cap: usize,
}

impl CellInput {
    pub fn new(job: &Job, kind: CellKind) -> Result<CellInput> {
        let limits = job.limits;
        let mut marker = vec![0u8; 16];
        getrandom::fill(&mut marker).context("failed to get randomness for the envelope marker")?;
        let header = header(
            &marker,
            job.code.len(),
            limits.max_output_bytes.max(1024),
            kind,
        );
        let mut input = Vec::with_capacity(header.len() + job.code.len() + job.stdin.len());
        input.extend_from_slice(header.as_bytes());
        input.extend_from_slice(job.code.as_bytes());
        input.extend_from_slice(&job.stdin);
        // The envelope holds up to three fields the driver clips to `max_result` characters
        // (result, repr, error); JSON escaping can grow text up to 6x. Images come base64
        // (4/3 of their bytes), and each omitted one with a short reason.
        let envelope_cap = 64 * 1024
            + 18 * limits.max_output_bytes.max(1024)
            + limit::MAX_IMAGE_BYTES / 3 * 4
            + 1024 * limit::MAX_IMAGES;
        Ok(CellInput {
            marker,
            input,
            envelope_cap,
        })
    }
}

/// Minor page faults of this process so far (0 where /proc is unavailable).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) in parentheses; minflt is
    // the 10th field of the line, the 8th after the name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}

/// The driver's protocol header: fixed length, so the driver reads it with one `os.read`
/// and not a byte of the code or the caller's stdin after it.
fn header(marker: &[u8], code_len: usize, max_result: usize, kind: CellKind) -> String {
    let fields = format!(
        "omcp4 {} {code_len} {max_result} {} {} {} {}",
        hex::encode(marker),
        limit::MAX_IMAGES,
        limit::MAX_IMAGE_PIXELS,
        limit::MAX_IMAGE_BYTES,
        kind.word()
    );
    format!("{fields:<width$}\n", width = HEADER_LEN - 1)
}

pub fn classify_error(err: &wasmtime::Error, memory_refused: bool) -> Ended {
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Ended::Exited(exit.0);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Ended::Stopped(Stop::Fuel, None),
            Trap::Interrupt => Ended::Stopped(Stop::Timeout, None),
            _ if memory_refused => Ended::Stopped(Stop::Memory, Some(trap.to_string())),
            _ => Ended::Stopped(Stop::Trap, Some(trap.to_string())),
        };
    }
    // A host-side error raised inside a WASI call: the output stream refusing a write
    // (classified from the capture below), or e.g. `os._exit(200)`, which WASI refuses.
    let text = format!("{err:#}");
    if text.contains("invalid exit status") {
        return Ended::Stopped(Stop::Exit, Some(text));
    }
    if memory_refused {
        return Ended::Stopped(Stop::Memory, Some(text));
    }
    Ended::Stopped(Stop::Trap, Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_length_the_driver_reads() {
        assert!(DRIVER.contains(&format!("HEADER_LEN = {HEADER_LEN}\n")));
        let widest = header(&[0xff; 16], usize::MAX, usize::MAX, CellKind::First);
        assert_eq!(widest.len(), HEADER_LEN);
        assert!(widest.ends_with('\n'));
        let small = header(&[0; 16], 0, 1024, CellKind::Run);
        assert_eq!(small.len(), HEADER_LEN);
        let fields: Vec<&str> = small.split_whitespace().collect();
        assert_eq!(
            fields[..4],
            ["omcp4", "00000000000000000000000000000000", "0", "1024"]
        );
        assert_eq!(fields.len(), 8);
        assert_eq!(fields[7], "run");
    }
}
