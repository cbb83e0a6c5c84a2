//! A session's interpreter: one instance of the runtime's snapshot that lives from turn to
//! turn, its state kept safe between turns by an [`Overlay`].
//!
//! A turn runs the cell in the live instance, through the driver's `session` entry, which
//! returns instead of exiting. Then:
//! - the turn ended normally (an envelope, whatever the cell did, a Python exception
//!   included): the pages it wrote are committed, and the instance carries on;
//! - a limit or a trap stopped it (timeout, fuel, memory, output, an exit that skipped the
//!   driver): the instance is dropped where it stopped, and the next turn starts from a new
//!   snapshot instance with the committed pages mapped in: the state from before the
//!   failed turn, at the cost of an instantiation (no copy).
//!
//! The live instance is also dropped to suspend the session (its committed pages go to
//! disk) and to switch between the plain and the metered engine; each of these "resumes"
//! the same way. Nothing here knows about ids, expiry or HTTP: that is `crate::sessions`.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::Instrument;
use wasmtime::{Instance, Store};

use super::overlay::{Committed, Overlay};
use super::run::{
    Capture, CellInput, CellKind, Ended, Feed, Guest, GuestState, Hosting, Job, Scratch,
    classify_error, conclude, new_store,
};
use super::seed::Seeded;
use super::{Flavor, RunError, Sandbox, SessionFlavors, into_anyhow};
use crate::limits::{LimitRequest, Limits};
use crate::outcome::{Outcome, Stop};
use crate::workspace::Workspace;

/// Why a session turn (or opening, forking, restoring one) did not happen.
#[derive(Debug, Error)]
pub enum TurnError {
    #[error(transparent)]
    Run(#[from] RunError),
    /// The runtime has no sessions on this server (see the server's log for why).
    #[error("the {0:?} runtime has no sessions on this server")]
    Unavailable(&'static str),
    /// The session's state could not be kept or brought back; it cannot go on.
    #[error("the session's state was lost: {0}")]
    Lost(String),
}

/// A session's interpreter and its state.
pub struct SessionCore {
    runtime: usize,
    overlay: Overlay,
    live: Option<Live>,
    feed: Feed,
    capture: Capture,
    scratch: Scratch,
    seed: Option<u64>,
    /// Whether a turn has been kept (the first turn gives the runtime's generators a fresh
    /// state; later ones carry on).
    started: bool,
    /// The command snapshot's kept stack (see `EntryPoint::restore_stack`).
    stack: Vec<u8>,
    /// Set while a turn runs in the live instance: still set at the next turn means that
    /// turn's future was dropped half way (a cancelled caller), so its instance is not
    /// to be trusted.
    in_turn: bool,
}

/// The instance between turns.
struct Live {
    store: Store<GuestState>,
    instance: Instance,
    metered: bool,
}

/// What a turn did to the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnReport {
    /// The turn was stopped and the session is back at its state before it.
    pub rolled_back: bool,
    /// It started from a new instance (after a suspension, a rollback, a fork, an engine
    /// switch), and how long mapping the session back in took.
    pub resumed: Option<Duration>,
    /// Pages the turn wrote, kept.
    pub committed: Committed,
}

/// Facts about a session's interpreter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionStats {
    /// Bytes of memory the session has written since the snapshot (what it costs to keep).
    pub written_bytes: u64,
    /// Size of its linear memory.
    pub memory_bytes: u64,
    /// Whether an instance is live (not suspended or waiting to be resumed).
    pub live: bool,
}

impl SessionCore {
    pub fn runtime(&self) -> usize {
        self.runtime
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            written_bytes: self.overlay.bytes(),
            memory_bytes: self.overlay.len() as u64,
            live: self.live.is_some(),
        }
    }

    /// Drop the live instance (its state is all committed): what stays is the overlay.
    pub fn release(&mut self) {
        self.live = None;
        self.overlay.forget_hot();
    }

    /// Write the session's memory (what a restore reads back).
    pub fn save(&self, out: &mut impl Write) -> io::Result<()> {
        self.overlay.save(out)
    }
}

/// Whether sessions can keep this module's state in its memory alone: its only mutable
/// global must be the stack pointer (global 0), which every completed call leaves as it
/// found it.
pub fn supported(wasm: &[u8]) -> wasmtime::Result<bool> {
    use wasmparser::{Parser, Payload};
    let mut mutable = Vec::new();
    let mut imported = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let wasmparser::TypeRef::Global(ty) = import?.ty {
                        if ty.mutable {
                            return Ok(false);
                        }
                        imported += 1;
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (index, global) in reader.into_iter().enumerate() {
                    if global?.ty.mutable {
                        mutable.push(imported + index as u32);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(mutable == [0])
}

impl Sandbox {
    /// The largest linear memory a turn may have.
    fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// Whether the runtime `index` has sessions here.
    pub fn sessions_available(&self, index: usize) -> bool {
        self.runtimes[index].sessions.is_some()
    }

    /// What a suspended session of the runtime `index` must have been saved against.
    pub fn session_key(&self, index: usize) -> &str {
        &self.runtimes[index].session_key
    }

    /// The name of runtime `index`.
    pub fn runtime_name_at(&self, index: usize) -> &'static str {
        self.runtimes[index].info.name
    }

    fn session_flavors(&self, index: usize) -> Result<&SessionFlavors, TurnError> {
        let runtime = &self.runtimes[index];
        runtime
            .sessions
            .as_ref()
            .ok_or(TurnError::Unavailable(runtime.info.name))
    }

    /// A new session of runtime `index` whose directories are `dir` (made if missing). No
    /// instance yet: the first turn makes it.
    pub fn open_session(
        &self,
        index: usize,
        dir: &Path,
        seed: Option<u64>,
    ) -> Result<SessionCore, TurnError> {
        self.session_flavors(index)?;
        let overlay =
            Overlay::new(self.max_memory_bytes()).map_err(|e| RunError::Internal(e.into()))?;
        new_core(index, overlay, dir, seed, false)
    }

    /// A session brought back from what [`SessionCore::save`] wrote.
    pub fn restore_session(
        &self,
        index: usize,
        dir: &Path,
        seed: Option<u64>,
        started: bool,
        saved: &mut impl Read,
    ) -> Result<SessionCore, TurnError> {
        self.session_flavors(index)?;
        let max =
            usize::try_from(self.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let overlay = Overlay::load(saved, max).map_err(|e| TurnError::Lost(e.to_string()))?;
        new_core(index, overlay, dir, seed, started)
    }

    /// A new session with a copy of `core`'s state, its directories at `dir` (the caller
    /// copies the files).
    pub fn fork_session(&self, core: &SessionCore, dir: &Path) -> Result<SessionCore, TurnError> {
        let overlay = core
            .overlay
            .duplicate()
            .map_err(|e| RunError::Internal(e.into()))?;
        let mut fork = new_core(core.runtime, overlay, dir, core.seed, core.started)?;
        fork.stack = core.stack.clone();
        Ok(fork)
    }

    /// Run one turn of `job` in the session, waiting for a run slot like any run.
    pub async fn session_turn(
        &self,
        core: &mut SessionCore,
        job: &Job,
    ) -> Result<(Outcome, TurnReport), TurnError> {
        let flavors = self.session_flavors(core.runtime)?;
        let hosting = &self.runtimes[core.runtime].hosting;
        let _slot = self.admit(job.limits.timeout).await?;
        let door = self.door(job);
        let (mut outcome, report) = turn(flavors, hosting, &self.limits, core, job, door)
            .await
            .map_err(|e| TurnError::Lost(format!("{e:#}")))?;
        outcome.runtime = self.runtimes[core.runtime].info.name.to_string();
        tracing::info!(
            runtime = outcome.runtime,
            duration_ms = outcome.duration.as_secs_f64() * 1e3,
            stopped = outcome.stopped.map(Stop::as_str).unwrap_or("none"),
            rolled_back = report.rolled_back,
            resumed_ms = report.resumed.map(|d| d.as_secs_f64() * 1e3),
            committed_pages = report.committed.pages,
            evicted_pages = report.committed.evicted,
            "session turn finished"
        );
        Ok((outcome, report))
    }
}

fn new_core(
    runtime: usize,
    overlay: Overlay,
    dir: &Path,
    seed: Option<u64>,
    started: bool,
) -> Result<SessionCore, TurnError> {
    let scratch = Scratch::at(dir).map_err(|e| RunError::Internal(into_anyhow(e)))?;
    Ok(SessionCore {
        runtime,
        overlay,
        live: None,
        feed: Feed::default(),
        capture: Capture::new(Vec::new(), 0, 0),
        scratch,
        seed,
        started,
        stack: Vec::new(),
        in_turn: false,
    })
}

/// One turn (the caller holds a run slot). An error means the session cannot go on.
async fn turn(
    flavors: &SessionFlavors,
    hosting: &Hosting,
    server: &Limits,
    core: &mut SessionCore,
    job: &Job,
    door: Option<crate::tools::Door>,
) -> wasmtime::Result<(Outcome, TurnReport)> {
    let started = Instant::now();
    let limits = job.limits;
    let metered = limits.fuel.is_some();
    let mut report = TurnReport::default();
    if core.in_turn
        || core
            .live
            .as_ref()
            .is_some_and(|live| live.metered != metered)
    {
        core.live = None;
        core.overlay.forget_hot();
        core.in_turn = false;
    }
    let kind = if core.started {
        CellKind::Next
    } else {
        CellKind::First
    };
    let cell = CellInput::new(job, kind)?;
    core.feed.refill(cell.input);
    core.capture
        .reset(cell.marker, limits.max_output_bytes, cell.envelope_cap);

    if core.live.is_none() {
        let flavor = if metered {
            &flavors.metered
        } else {
            &flavors.plain
        };
        core.live = Some(
            instantiate(flavor, flavors, hosting, server, core, metered)
                .instrument(crate::telemetry::instantiate(hosting.runtime, "session"))
                .await?,
        );
        report.resumed = Some(started.elapsed());
    }
    // What the session's directories hold now counts against the workspace's bounds: the
    // guest may write the rest (bytes, and new files, directories and links).
    let (bytes_now, files_now) = [core.scratch.workspace(), core.scratch.tmp()]
        .iter()
        .map(|dir| {
            Workspace::open(dir)
                .and_then(|w| w.usage())
                .unwrap_or((0, 0))
        })
        .fold((0, 0), |(b, f), (db, df)| (b + db, f + df));
    let writable_bytes = job.workspace.max_bytes.saturating_sub(bytes_now);
    let entries = job.workspace.max_files.saturating_sub(files_now);
    let live = core.live.as_mut().expect("made above");
    live.store
        .data_mut()
        .prepare_turn(limits.memory_mb, writable_bytes, entries);
    live.store.data_mut().set_door(door);
    if let Some(fuel) = limits.fuel {
        live.store.set_fuel(fuel)?;
    }
    flavors
        .point
        .restore_stack(&mut live.store, &live.instance, &core.stack)?;
    let seeded = core.seed.map(Seeded::new);
    let first = kind == CellKind::First;
    let prepared = started.elapsed();
    core.in_turn = true;
    let guest = crate::telemetry::guest_run(hosting.runtime);
    let execution = tokio::time::timeout(
        limits.timeout,
        flavors
            .point
            .call_session(&mut live.store, &live.instance, first, seeded.as_ref())
            .instrument(guest.clone()),
    )
    .await;

    let called = started.elapsed();
    core.in_turn = false;
    let fuel_used = limits
        .fuel
        .map(|fuel| fuel.saturating_sub(live.store.get_fuel().unwrap_or(0)));
    let memory_refused = live.store.data().memory_refused();
    let tool_calls = live.store.data_mut().take_tool_calls();
    live.store.data_mut().set_door(None);
    let ended = match &execution {
        Err(_elapsed) => Ended::Stopped(Stop::Timeout, None),
        Ok(Ok(())) => Ended::Exited(0),
        Ok(Err(err)) => classify_error(err, memory_refused),
    };
    let reported = core.capture.lock().envelope.is_some();
    let normal = matches!(ended, Ended::Exited(0)) && reported;
    let mut outcome = conclude(&core.capture, ended, memory_refused, &limits);
    crate::telemetry::run_ended(&guest, &outcome);
    drop(guest);
    // A turn is kept when the driver reported normally, whatever the cell did (a Python
    // exception, `sys.exit()`), except when memory ran out: then the interpreter may have
    // been left half way through an allocation, so it goes back too.
    if normal && outcome.stopped != Some(Stop::Memory) {
        let memory = live
            .instance
            .get_memory(&mut live.store, "memory")
            .ok_or_else(|| wasmtime::format_err!("the snapshot exports no memory"))?;
        let (base, size) = (memory.data_ptr(&live.store), memory.data_size(&live.store));
        let checkpoint = crate::telemetry::session_checkpoint();
        let _entered = checkpoint.enter();
        // SAFETY: the whole accessible memory of this session's live instance, whose
        // committed pages come from this overlay; no wasm runs until the next turn.
        match unsafe { core.overlay.commit(base, size) } {
            Ok(committed) => {
                checkpoint.record("omcp.pages", committed.pages);
                checkpoint.record("omcp.evicted_pages", committed.evicted);
                report.committed = committed;
            }
            Err(err) => {
                core.live = None;
                core.overlay.forget_hot();
                wasmtime::bail!("could not keep the turn's memory: {err}");
            }
        }
        core.started = true;
    } else {
        core.live = None;
        core.overlay.forget_hot();
        report.rolled_back = true;
    }
    outcome.duration = started.elapsed();
    outcome.fuel_used = fuel_used;
    outcome.tool_calls = tool_calls;
    tracing::debug!(
        prepared_us = prepared.as_micros() as u64,
        called_us = called.as_micros() as u64,
        committed_us = (outcome.duration - called).as_micros() as u64,
        pages = report.committed.pages,
        evicted = report.committed.evicted,
        "session turn"
    );
    Ok((outcome, report))
}

/// A new instance of the snapshot with the session's committed pages mapped in.
async fn instantiate(
    flavor: &Flavor,
    flavors: &SessionFlavors,
    hosting: &Hosting,
    server: &Limits,
    core: &mut SessionCore,
    metered: bool,
) -> wasmtime::Result<Live> {
    let seeded = core.seed.map(Seeded::new);
    let mut store = new_store(
        flavor.pre.module().engine(),
        hosting,
        Guest {
            scratch: Some(&core.scratch),
            stdin: core.feed.clone(),
            capture: &core.capture,
            // Room for the session's memory as it was: the turn's own limit is set after.
            memory_mb: server.memory_mb,
            scratch_bytes: 0,
            seeded: seeded.as_ref(),
            door: None,
        },
    )?;
    if metered {
        store.set_fuel(u64::MAX)?;
    }
    let instance = flavor.pre.instantiate_async(&mut store).await?;
    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or_else(|| wasmtime::format_err!("the snapshot exports no memory"))?;
    if core.stack.is_empty() {
        let span = flavors.point.kept_stack();
        if let Some(kept) = memory.data(&store).get(span) {
            core.stack = kept.to_vec();
        }
    }
    let size = memory.data_size(&store);
    let wanted = core.overlay.len();
    if wanted > size {
        let pages = ((wanted - size) / (64 << 10)) as u64;
        memory.grow_async(&mut store, pages).await.map_err(|e| {
            wasmtime::format_err!("could not grow memory back to the session's {wanted} bytes: {e}")
        })?;
    }
    // SAFETY: the accessible memory of a fresh instance of the snapshot the overlay was
    // made over, at least as large as the session's.
    unsafe {
        core.overlay
            .map_into(memory.data_ptr(&store), memory.data_size(&store))
            .map_err(|e| wasmtime::format_err!("could not map the session's memory: {e}"))?;
    }
    Ok(Live {
        store,
        instance,
        metered,
    })
}

/// Sessions must keep state, roll back a failed turn and survive a save and restore before
/// any caller relies on them: a short session proves it on this machine at start-up.
pub async fn self_test(
    flavors: &SessionFlavors,
    hosting: &Hosting,
    limits: &Limits,
) -> wasmtime::Result<()> {
    let root = hosting
        .scratch
        .as_ref()
        .ok_or_else(|| wasmtime::format_err!("sessions need a writable directory"))?;
    let dir = Scratch::new(root)?;
    let resolved = limits.resolve(&LimitRequest::default())?;
    let job = |code: &str| Job {
        code: code.to_string(),
        stdin: Vec::new(),
        limits: resolved,
        runtime: 0,
        seed: None,
        files: Vec::new(),
        files_out_bytes: 0,
        workspace: limits.workspace(),
    };
    let lost = |e: TurnError| wasmtime::format_err!("{e}");
    let max = usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut core = new_core(0, Overlay::new(max)?, dir.path(), None, false).map_err(lost)?;
    let check = |what: &str, got: &Outcome, want: serde_json::Value| {
        if got.result.as_ref() != Some(&want) || got.error.is_some() {
            wasmtime::bail!("session self-test ({what}): unexpected outcome {got:?}");
        }
        Ok(())
    };
    let code = "x = 41\nopen('kept.txt', 'w').write('k')";
    turn(flavors, hosting, limits, &mut core, &job(code), None).await?;
    let (out, _) = turn(flavors, hosting, limits, &mut core, &job("x + 1"), None).await?;
    check("state across turns", &out, serde_json::json!(42))?;
    let code = "y = 1\nx = 0\nimport os\nos._exit(3)";
    let (out, report) = turn(flavors, hosting, limits, &mut core, &job(code), None).await?;
    if !report.rolled_back {
        wasmtime::bail!("session self-test: a turn that exited was kept: {out:?}");
    }
    let code = "[x, 'y' in globals(), open('kept.txt').read()]";
    let (out, report) = turn(flavors, hosting, limits, &mut core, &job(code), None).await?;
    check("rollback", &out, serde_json::json!([41, false, "k"]))?;
    if report.resumed.is_none() {
        wasmtime::bail!("session self-test: no new instance after a rollback");
    }
    let mut saved = Vec::new();
    core.save(&mut saved)?;
    let overlay = Overlay::load(&mut saved.as_slice(), max)?;
    let mut restored = new_core(0, overlay, dir.path(), None, true).map_err(lost)?;
    let (out, _) = turn(flavors, hosting, limits, &mut restored, &job("x * 2"), None).await?;
    check("save and restore", &out, serde_json::json!(82))?;
    Ok(())
}
