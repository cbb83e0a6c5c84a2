//! Sessions: interpreters that keep their state across calls, each with a workspace, owned
//! here and nowhere else. HTTP and MCP are faces onto [`Sessions`]; the interpreter itself
//! (turns, rollback, fork, save and restore of memory) is the sandbox's `SessionCore`.
//!
//! A session is a small state machine:
//!
//! ```text
//!            create / fork
//!                 |
//!                 v        turn            turn ends
//!   +-------> active ------------> running ----------+
//!   |            |  ^                                  |
//!   |  idle, or  |  | next turn                        |
//!   |  memory,   v  | (resume)                         |
//!   |  SIGTERM  suspended                              |
//!   +--------------------------------------------------+
//!   closed: DELETE, idle timeout, lifetime  (files removed)
//! ```
//!
//! - **active**: the interpreter is in memory (a live instance, or only its committed
//!   pages after a rollback, resumed at the next turn).
//! - **running**: a turn holds the session; a second turn gets `session_busy` at once.
//! - **suspended**: its memory is on disk (`state.omcp`), nothing in memory; the next turn
//!   resumes it. Idle sessions are suspended after `--session-suspend-after`, the least
//!   recently used first when live sessions' memory passes `--sessions-memory-mb`, and
//!   all of them at shutdown.
//! - **closed**: removed with its directory.
//!
//! Each session has a directory under the session root (named by a hash of its id, so a
//! listing of the root does not reveal ids): `workspace/` and `tmp/` (the guest's
//! `/workspace` and `/tmp`), `meta.json` and, once suspended, `state.omcp`. Both files are
//! written to a temporary name, synced and renamed, so a crash mid-write leaves the last
//! good copy. `state.omcp` starts with a line naming the server version and the exact
//! runtime snapshot it was taken against, and ends with a SHA-256 of everything before it:
//! a file from another build, or a damaged one, is refused, never misread.

mod disk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::Instrument;

use crate::api::{CreateSessionRequest, SessionInfo, SessionState};
use crate::limits::LimitRequest;
use crate::outcome::Outcome;
use crate::sandbox::{Job, RunError, Sandbox, SessionCore, TurnError};
use crate::workspace::{FileEntry, FileError, FileIn, Workspace};

/// The operator's bounds on sessions (each a flag).
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Where sessions live; `None`: a temporary directory of this process (sessions then
    /// do not outlive it).
    pub dir: Option<PathBuf>,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub suspend_after: Duration,
    /// Written memory of live sessions, together, before idle ones are suspended.
    pub memory_bytes: u64,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            dir: None,
            max_sessions: 64,
            idle_timeout: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(24 * 60 * 60),
            suspend_after: Duration::from_secs(60),
            memory_bytes: 2048 << 20,
        }
    }
}

/// Why a session operation was refused.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(
        "no session {0:?} (it was closed, expired or never existed); create a new one \
         (POST /sessions, or the create_session tool)"
    )]
    NotFound(String),
    #[error("session {0:?} is running a turn; one turn at a time per session, retry when it ends")]
    Busy(String),
    #[error(
        "this server holds its maximum of {0} sessions; close one (DELETE /sessions/{{id}}) or retry later"
    )]
    TooMany(usize),
    #[error(
        "session {id:?} cannot go on: {why}; its files can still be read, and a new session \
         can be created"
    )]
    Lost { id: String, why: String },
    #[error(
        "session {id:?} was suspended by another server version or runtime build ({found}); \
         this server cannot resume it. Its files can still be read"
    )]
    Incompatible { id: String, found: String },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl From<TurnError> for SessionError {
    fn from(err: TurnError) -> Self {
        match err {
            TurnError::Run(err) => SessionError::Run(err),
            TurnError::Unavailable(name) => SessionError::Unavailable(format!(
                "the {name:?} runtime has no sessions on this server"
            )),
            TurnError::Lost(why) => SessionError::Lost {
                id: String::new(),
                why,
            },
        }
    }
}

/// What is known of a session without its interpreter (kept in `meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    id: String,
    runtime: String,
    created_at: u64,
    last_used_at: u64,
    idle_timeout_s: u64,
    lifetime_s: u64,
    turns: u64,
    limits: SavedLimits,
    seed: Option<u64>,
    /// A turn has been kept (the saved state is not the snapshot's).
    started: bool,
    /// Written memory at the last look.
    memory_bytes: u64,
    /// Not saved: whether the interpreter is only on disk.
    #[serde(skip)]
    suspended: bool,
    #[serde(skip)]
    running: bool,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct SavedLimits {
    timeout_ms: Option<u64>,
    fuel: Option<u64>,
    memory_mb: Option<u64>,
    max_output_bytes: Option<u64>,
}

impl Meta {
    fn state(&self) -> SessionState {
        if self.running {
            SessionState::Running
        } else if self.suspended {
            SessionState::Suspended
        } else {
            SessionState::Active
        }
    }

    fn expires_at(&self) -> u64 {
        (self.last_used_at + self.idle_timeout_s).min(self.created_at + self.lifetime_s)
    }
}

/// One session: its facts (quick to read, even while a turn runs) and its interpreter
/// (held by a turn; `None` while suspended).
struct Slot {
    dir: PathBuf,
    meta: Mutex<Meta>,
    core: tokio::sync::Mutex<Option<SessionCore>>,
}

impl Slot {
    fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every session of this server.
pub struct Sessions {
    sandbox: Arc<Sandbox>,
    options: SessionOptions,
    root: PathBuf,
    /// The root is ours alone (no `--session-dir`): removed when the server ends.
    temporary: bool,
    table: Mutex<HashMap<String, Arc<Slot>>>,
}

/// A turn's answer: the outcome and what it did to the session.
pub struct TurnAnswer {
    pub outcome: Outcome,
    pub session_id: String,
    pub turn: u64,
    pub rolled_back: bool,
    /// Workspace files the turn created or changed.
    pub changed: Vec<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new session id: 128 random bits, hex.
fn new_id() -> Result<String, SessionError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(bytes))
}

/// What the logs show of an id: enough to follow one session, not enough to use it.
pub fn redact(id: &str) -> String {
    format!("{}…", id.chars().take(6).collect::<String>())
}

fn internal(why: impl std::fmt::Display) -> SessionError {
    SessionError::Run(RunError::Internal(anyhow::anyhow!("{why}")))
}

impl Sessions {
    /// Sessions over `sandbox`, with the ones a previous server left in `options.dir`
    /// (resumed on their next call).
    pub fn new(sandbox: Arc<Sandbox>, options: SessionOptions) -> anyhow::Result<Sessions> {
        use anyhow::Context as _;
        let (root, temporary) = match &options.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("omcp-sessions-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("failed to create the session directory {root:?}"))?;
        let sessions = Sessions {
            sandbox,
            options,
            root,
            temporary,
            table: Mutex::new(HashMap::new()),
        };
        if !temporary {
            sessions.adopt();
        }
        Ok(sessions)
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        self.root
            .join(&hex::encode(Sha256::digest(id.as_bytes()))[..32])
    }

    /// Take over the sessions a previous server left in the root: each is suspended until
    /// its next call. A directory that cannot be read is left alone (and logged).
    fn adopt(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut adopted = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            match disk::read_meta(&dir) {
                Ok(mut meta) if self.dir_of(&meta.id) == dir => {
                    meta.suspended = true;
                    if meta.expires_at() <= now() {
                        disk::remove_dir(&dir);
                        continue;
                    }
                    let slot = Arc::new(Slot {
                        dir,
                        meta: Mutex::new(meta.clone()),
                        core: tokio::sync::Mutex::new(None),
                    });
                    self.table().insert(meta.id, slot);
                    adopted += 1;
                }
                Ok(_) => tracing::warn!("ignoring {dir:?}: its name does not match its session"),
                Err(err) => tracing::debug!("not a session directory {dir:?}: {err}"),
            }
        }
        if adopted > 0 {
            tracing::info!(sessions = adopted, "took over suspended sessions");
        }
    }

    /// Open a new session.
    pub async fn create(&self, request: CreateSessionRequest) -> Result<SessionInfo, SessionError> {
        let runtime = self.sandbox.runtime_index(request.runtime.as_deref())?;
        if !self.sandbox.sessions_available(runtime) {
            return Err(SessionError::Unavailable(format!(
                "the {:?} runtime has no sessions on this server",
                self.sandbox.runtime_name_at(runtime)
            )));
        }
        // The limits must resolve now, so a bad one is refused at creation, not at a turn.
        let limits = LimitRequest {
            timeout_ms: request.timeout_ms,
            fuel: request.fuel,
            memory_mb: request.memory_mb,
            max_output_bytes: request.max_output_bytes,
            ..LimitRequest::default()
        };
        self.sandbox
            .limits()
            .resolve(&limits)
            .map_err(RunError::from)?;
        crate::sandbox::check_files(&request.files, &self.sandbox.limits().workspace())?;
        let idle = match request.idle_timeout_s {
            // Shorter would expire a session between an agent's two thoughts.
            Some(s) if s < 60 => {
                return Err(SessionError::Invalid(format!(
                    "idle_timeout_s must be at least 60, got {s}"
                )));
            }
            Some(s) => s.min(self.options.idle_timeout.as_secs()),
            None => self.options.idle_timeout.as_secs(),
        };
        let id = new_id()?;
        let dir = self.dir_of(&id);
        {
            let table = self.table();
            if table.len() >= self.options.max_sessions {
                return Err(SessionError::TooMany(self.options.max_sessions));
            }
        }
        let core = self
            .sandbox
            .open_session(runtime, &dir, request.seed)
            .map_err(SessionError::from)?;
        if !request.files.is_empty() {
            let workspace = Workspace::open(&core.scratch().workspace())?;
            workspace.write_all(&request.files, &self.sandbox.limits().workspace())?;
        }
        let at = now();
        let meta = Meta {
            id: id.clone(),
            runtime: self.sandbox.runtime_name_at(runtime).to_string(),
            created_at: at,
            last_used_at: at,
            idle_timeout_s: idle,
            lifetime_s: self.options.lifetime.as_secs(),
            turns: 0,
            limits: SavedLimits {
                timeout_ms: limits.timeout_ms,
                fuel: limits.fuel,
                memory_mb: limits.memory_mb,
                max_output_bytes: limits.max_output_bytes,
            },
            seed: request.seed,
            started: false,
            memory_bytes: 0,
            suspended: false,
            running: false,
        };
        disk::write_meta(&dir, &meta).map_err(internal)?;
        let slot = Arc::new(Slot {
            dir,
            meta: Mutex::new(meta),
            core: tokio::sync::Mutex::new(Some(core)),
        });
        {
            let mut table = self.table();
            // Checked again: creates run concurrently.
            if table.len() >= self.options.max_sessions {
                drop(table);
                disk::remove_dir(&slot.dir);
                return Err(SessionError::TooMany(self.options.max_sessions));
            }
            table.insert(id.clone(), slot.clone());
        }
        tracing::info!(session = redact(&id), "session created");
        Ok(self.info_of(&slot))
    }

    /// The session `id`, unless it is unknown or has expired (then it is removed).
    fn slot(&self, id: &str) -> Result<Arc<Slot>, SessionError> {
        let not_found = || SessionError::NotFound(id.chars().take(64).collect());
        let slot = self.table().get(id).cloned().ok_or_else(not_found)?;
        let expired = {
            let meta = slot.meta();
            !meta.running && meta.expires_at() <= now()
        };
        if expired {
            self.remove(id, &slot);
            return Err(not_found());
        }
        Ok(slot)
    }

    fn remove(&self, id: &str, slot: &Arc<Slot>) {
        let removed = {
            let mut table = self.table();
            match table.get(id) {
                Some(current) if Arc::ptr_eq(current, slot) => table.remove(id).is_some(),
                _ => false,
            }
        };
        if removed {
            if let Ok(mut core) = slot.core.try_lock() {
                *core = None;
            }
            disk::remove_dir(&slot.dir);
            tracing::info!(session = redact(id), "session closed");
        }
    }

    fn info_of(&self, slot: &Slot) -> SessionInfo {
        let meta = slot.meta().clone();
        let (workspace_bytes, workspace_files) = Workspace::open(&slot.dir.join("workspace"))
            .and_then(|w| w.usage())
            .unwrap_or((0, 0));
        SessionInfo {
            session_id: meta.id.clone(),
            runtime: meta.runtime.clone(),
            state: meta.state(),
            created_at: crate::workspace::rfc3339(meta.created_at as i64),
            last_used_at: crate::workspace::rfc3339(meta.last_used_at as i64),
            expires_at: crate::workspace::rfc3339(meta.expires_at() as i64),
            idle_timeout_s: meta.idle_timeout_s,
            lifetime_s: meta.lifetime_s,
            turns: meta.turns,
            memory_bytes: meta.memory_bytes,
            workspace_bytes,
            workspace_files: workspace_files as u64,
        }
    }

    pub fn info(&self, id: &str) -> Result<SessionInfo, SessionError> {
        let slot = self.slot(id)?;
        Ok(self.info_of(&slot))
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        let ids: Vec<String> = self.table().keys().cloned().collect();
        let mut infos: Vec<SessionInfo> = ids.iter().filter_map(|id| self.info(id).ok()).collect();
        infos.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        infos
    }

    pub fn count(&self) -> usize {
        self.table().len()
    }

    /// How many sessions are in each state, without reading their workspaces (what a
    /// metrics scrape needs, often).
    pub fn states(&self) -> Vec<SessionState> {
        let slots: Vec<Arc<Slot>> = self.table().values().cloned().collect();
        slots.iter().map(|slot| slot.meta().state()).collect()
    }

    /// Close a session and remove its files. A running turn makes this `Busy`.
    pub fn close(&self, id: &str) -> Result<(), SessionError> {
        let slot = self.slot(id)?;
        let guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        drop(guard);
        self.remove(id, &slot);
        Ok(())
    }

    /// The interpreter of `slot`, resumed from disk if suspended.
    fn resume(
        &self,
        id: &str,
        slot: &Slot,
        core: &mut Option<SessionCore>,
    ) -> Result<(), SessionError> {
        if core.is_some() {
            return Ok(());
        }
        let meta = slot.meta().clone();
        let runtime = self.sandbox.runtime_index(Some(&meta.runtime))?;
        let key = self.sandbox.session_key(runtime).to_string();
        let lost = |why: String| SessionError::Lost {
            id: redact(id),
            why,
        };
        let span = crate::telemetry::session_resume(id);
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let state = disk::read_state(&slot.dir, &key);
        let read = started.elapsed();
        let restored = match state {
            Ok(Some(mut saved)) => {
                let core = self
                    .sandbox
                    .restore_session(runtime, &slot.dir, meta.seed, meta.started, &mut saved)
                    .map_err(|e| lost(format!("its saved memory could not be restored ({e})")))?;
                crate::metrics::session_resumed(started.elapsed());
                core
            }
            // Never suspended: a server that stopped without saving it (a crash).
            Ok(None) if !meta.started => self
                .sandbox
                .open_session(runtime, &slot.dir, meta.seed)
                .map_err(SessionError::from)?,
            Ok(None) => {
                return Err(lost(
                    "the server stopped without saving its interpreter".to_string(),
                ));
            }
            Err(disk::StateError::Incompatible(found)) => {
                return Err(SessionError::Incompatible {
                    id: redact(id),
                    found,
                });
            }
            Err(disk::StateError::Damaged(why)) => {
                return Err(lost(format!("its saved state is damaged ({why})")));
            }
        };
        *core = Some(restored);
        slot.meta().suspended = false;
        tracing::debug!(
            session = redact(id),
            read_ms = read.as_secs_f64() * 1e3,
            restored_ms = started.elapsed().as_secs_f64() * 1e3,
            "session resumed from disk"
        );
        Ok(())
    }

    /// Run a turn in session `id`. The turn runs in a task of its own: a caller that goes
    /// away (a closed connection) does not cut it half way; it ends within its limits.
    pub async fn turn(
        self: &Arc<Self>,
        id: &str,
        code: String,
        stdin: Option<String>,
        asked: LimitRequest,
        files: Vec<FileIn>,
    ) -> Result<TurnAnswer, SessionError> {
        let this = self.clone();
        let id = id.to_string();
        // The task is the request's too: its trace goes on inside it.
        let span = crate::telemetry::session_turn(&id);
        let turn = async move { this.turn_now(&id, code, stdin, asked, files).await };
        tokio::spawn(turn.instrument(span))
            .await
            .map_err(|e| internal(format!("the turn's task failed: {e}")))?
    }

    async fn turn_now(
        &self,
        id: &str,
        code: String,
        stdin: Option<String>,
        asked: LimitRequest,
        files: Vec<FileIn>,
    ) -> Result<TurnAnswer, SessionError> {
        let slot = self.slot(id)?;
        let mut guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        slot.meta().running = true;
        let answer = self
            .turn_locked(id, &slot, &mut guard, code, stdin, asked, files)
            .await;
        {
            let mut meta = slot.meta();
            meta.running = false;
            meta.last_used_at = now();
            if let Some(core) = guard.as_ref() {
                meta.memory_bytes = core.stats().written_bytes;
            }
        }
        drop(guard);
        if answer.is_ok() {
            self.keep_within_memory(id).await;
        }
        answer
    }

    #[allow(clippy::too_many_arguments)]
    async fn turn_locked(
        &self,
        id: &str,
        slot: &Slot,
        core: &mut Option<SessionCore>,
        code: String,
        stdin: Option<String>,
        asked: LimitRequest,
        files: Vec<FileIn>,
    ) -> Result<TurnAnswer, SessionError> {
        let meta = slot.meta().clone();
        // The session's own defaults, then the turn's.
        let limits = LimitRequest {
            timeout_ms: asked.timeout_ms.or(meta.limits.timeout_ms),
            fuel: asked.fuel.or(meta.limits.fuel),
            memory_mb: asked.memory_mb.or(meta.limits.memory_mb),
            max_output_bytes: asked.max_output_bytes.or(meta.limits.max_output_bytes),
            max_tool_calls: asked.max_tool_calls,
            tool_timeout_ms: asked.tool_timeout_ms,
            max_tool_result_bytes: asked.max_tool_result_bytes,
            tool_call_details: asked.tool_call_details,
        };
        let job = self
            .sandbox
            .job(code, stdin, &limits, Some(&meta.runtime), None)?;
        let job: Job = self.sandbox.with_files(job, files)?;
        self.resume(id, slot, core)?;
        let session = core.as_mut().expect("resumed above");
        let workspace = Workspace::open(&session.scratch().workspace())?;
        if !job.files.is_empty() {
            workspace.write_all(&job.files, &job.workspace)?;
        }
        let before = workspace.fingerprint()?;
        let turn_number = meta.turns + 1;
        tracing::Span::current().record("omcp.turn", turn_number);
        let result = self.sandbox.session_turn(session, &job).await;
        let (outcome, report) = match result {
            Ok(done) => done,
            Err(TurnError::Lost(why)) => {
                *core = None;
                tracing::error!(session = redact(id), "session lost: {why}");
                return Err(SessionError::Lost {
                    id: redact(id),
                    why,
                });
            }
            Err(err) => return Err(err.into()),
        };
        let mut outcome = outcome;
        outcome.files = workspace
            .changes(&before, job.files_out_bytes)
            .unwrap_or_default();
        let changed = outcome.files.iter().map(|f| f.path.clone()).collect();
        tracing::Span::current().record("omcp.rolled_back", report.rolled_back);
        {
            let mut meta = slot.meta();
            meta.turns = turn_number;
            if !report.rolled_back {
                meta.started = true;
            }
        }
        Ok(TurnAnswer {
            outcome,
            session_id: id.to_string(),
            turn: turn_number,
            rolled_back: report.rolled_back,
            changed,
        })
    }

    /// A new session with a copy of `id`'s interpreter and files.
    pub async fn fork(&self, id: &str) -> Result<SessionInfo, SessionError> {
        let slot = self.slot(id)?;
        let mut guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        if self.count() >= self.options.max_sessions {
            return Err(SessionError::TooMany(self.options.max_sessions));
        }
        self.resume(id, &slot, &mut guard)?;
        let source = guard.as_ref().expect("resumed above");
        let new_id = new_id()?;
        let dir = self.dir_of(&new_id);
        let fork = self
            .sandbox
            .fork_session(source, &dir)
            .map_err(SessionError::from)?;
        for sub in ["workspace", "tmp"] {
            disk::copy_tree(&slot.dir.join(sub), &dir.join(sub)).map_err(internal)?;
        }
        drop(guard);
        let at = now();
        let mut meta = slot.meta().clone();
        meta.id = new_id.clone();
        meta.created_at = at;
        meta.last_used_at = at;
        meta.running = false;
        meta.suspended = false;
        meta.memory_bytes = fork.stats().written_bytes;
        disk::write_meta(&dir, &meta).map_err(internal)?;
        let forked = Arc::new(Slot {
            dir,
            meta: Mutex::new(meta),
            core: tokio::sync::Mutex::new(Some(fork)),
        });
        self.table().insert(new_id.clone(), forked.clone());
        tracing::info!(
            session = redact(id),
            fork = redact(&new_id),
            "session forked"
        );
        Ok(self.info_of(&forked))
    }

    /// Suspend `slot` to disk unless a turn holds it. Returns whether it was written.
    async fn suspend(&self, id: &str, slot: &Slot) -> bool {
        let Ok(mut guard) = slot.core.try_lock() else {
            return false;
        };
        let Some(core) = guard.as_mut() else {
            return false;
        };
        let meta = slot.meta().clone();
        let key = match self.sandbox.runtime_index(Some(&meta.runtime)) {
            Ok(runtime) => self.sandbox.session_key(runtime).to_string(),
            Err(_) => return false,
        };
        let span = crate::telemetry::session_suspend(id);
        let started = std::time::Instant::now();
        let written = span.in_scope(|| {
            disk::write_state(&slot.dir, &key, core).and_then(|bytes| {
                disk::write_meta(&slot.dir, &meta)?;
                Ok(bytes)
            })
        });
        match written {
            Ok(bytes) => {
                span.record("omcp.bytes", bytes);
                *guard = None;
                slot.meta().suspended = true;
                crate::metrics::session_suspended(started.elapsed());
                tracing::info!(
                    session = redact(id),
                    bytes,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "session suspended"
                );
                true
            }
            Err(err) => {
                // The live interpreter is still good: keep it (and the older file).
                tracing::warn!(session = redact(id), "could not suspend the session: {err}");
                false
            }
        }
    }

    /// Live sessions' written memory over the budget: suspend the least recently used
    /// idle ones (never `except`, which was just used).
    async fn keep_within_memory(&self, except: &str) {
        let mut live: Vec<(u64, u64, String, Arc<Slot>)> = self
            .table()
            .iter()
            .filter_map(|(id, slot)| {
                let meta = slot.meta();
                (!meta.suspended).then(|| {
                    (
                        meta.last_used_at,
                        meta.memory_bytes,
                        id.clone(),
                        slot.clone(),
                    )
                })
            })
            .collect();
        let mut total: u64 = live.iter().map(|(_, bytes, _, _)| bytes).sum();
        if total <= self.options.memory_bytes {
            return;
        }
        live.sort_by_key(|(used, _, _, _)| *used);
        for (_, bytes, id, slot) in live {
            if total <= self.options.memory_bytes {
                break;
            }
            if id != except && self.suspend(&id, &slot).await {
                total = total.saturating_sub(bytes);
            }
        }
    }

    /// One pass of housekeeping: remove expired sessions, suspend idle ones.
    pub async fn sweep(&self) {
        let at = now();
        let slots: Vec<(String, Arc<Slot>)> = self
            .table()
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect();
        for (id, slot) in slots {
            let (expired, idle_for, suspended) = {
                let meta = slot.meta();
                (
                    !meta.running && meta.expires_at() <= at,
                    at.saturating_sub(meta.last_used_at),
                    meta.suspended,
                )
            };
            if expired {
                if slot.core.try_lock().is_ok() {
                    self.remove(&id, &slot);
                }
                continue;
            }
            if !suspended && idle_for >= self.options.suspend_after.as_secs() {
                self.suspend(&id, &slot).await;
            }
        }
    }

    /// Run [`Self::sweep`] every second until `stop` is cancelled.
    pub async fn housekeeping(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.sweep().await,
            }
        }
    }

    /// At shutdown: suspend every session (waiting for running turns, each bounded by its
    /// own limits), so a server started on the same directory resumes them.
    pub async fn suspend_all(&self) {
        if self.temporary {
            return;
        }
        let slots: Vec<(String, Arc<Slot>)> = self
            .table()
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect();
        let mut written = 0;
        for (id, slot) in slots {
            // Wait for a running turn to end.
            drop(slot.core.lock().await);
            if self.suspend(&id, &slot).await {
                written += 1;
            }
        }
        tracing::info!(
            sessions = written,
            "suspended every session for the next start"
        );
    }

    // Files.

    fn workspace_of(&self, slot: &Slot) -> Result<Workspace, SessionError> {
        Ok(Workspace::open(&slot.dir.join("workspace"))?)
    }

    fn touch(&self, slot: &Slot) {
        slot.meta().last_used_at = now();
    }

    pub fn put_file(&self, id: &str, path: &str, bytes: &[u8]) -> Result<u64, SessionError> {
        crate::workspace::check_path(path)?;
        let slot = self.slot(id)?;
        let _guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        self.workspace_of(&slot)?
            .write(path, bytes, &self.sandbox.limits().workspace())?;
        self.touch(&slot);
        Ok(bytes.len() as u64)
    }

    pub fn get_file(&self, id: &str, path: &str) -> Result<Vec<u8>, SessionError> {
        crate::workspace::check_path(path)?;
        let slot = self.slot(id)?;
        let max = self.sandbox.limits().workspace().max_bytes;
        let bytes = self.workspace_of(&slot)?.read(path, max)?;
        self.touch(&slot);
        Ok(bytes)
    }

    pub fn delete_file(&self, id: &str, path: &str) -> Result<(), SessionError> {
        crate::workspace::check_path(path)?;
        let slot = self.slot(id)?;
        let _guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        self.workspace_of(&slot)?.delete(path)?;
        self.touch(&slot);
        Ok(())
    }

    pub fn list_files(&self, id: &str) -> Result<Vec<FileEntry>, SessionError> {
        let slot = self.slot(id)?;
        let files = self.workspace_of(&slot)?.list()?;
        self.touch(&slot);
        Ok(files)
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
