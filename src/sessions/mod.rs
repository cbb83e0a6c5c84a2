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
mod lease;

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
use lease::Lease;

/// How long a call waits for a session's lease held by another replica (or a sweep's
/// look) before it is refused as busy.
const LEASE_WAIT: Duration = Duration::from_secs(5);

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
    /// `dir` is shared by several replicas: each session is checkpointed to disk at the end
    /// of every turn and used under its lease, so any replica can serve its next call.
    pub shared: bool,
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
            shared: false,
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
    #[error(
        "session {id:?} could not be saved after its turn ({why}); the turn's effects on its \
         interpreter are not kept (its workspace files may be), retry the turn"
    )]
    Unsaved { id: String, why: String },
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
    /// Bumped at every checkpoint (`--shared-sessions`): which saved state is the newest.
    #[serde(default)]
    checkpoint: u64,
    /// The interpreter was taken from `state.omcp` into a server's memory and not saved
    /// since: if that server dies, the file is older than what its client saw, and the
    /// next server must say so rather than resume it.
    #[serde(default)]
    live: bool,
    /// Not saved: the checkpoint the interpreter in memory was taken from or saved as.
    #[serde(skip)]
    loaded: u64,
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

/// Whether `id` could be a session id (what [`new_id`] makes): anything else is not looked
/// up on disk.
fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Shared mode: take what `meta.json` says (another replica may have used the session),
/// keeping what only this replica knows. Not while a turn here holds it: its own facts are
/// newer, and about to be written.
fn sync_meta(slot: &Slot, saved: Meta) {
    let mut meta = slot.meta();
    if meta.running {
        return;
    }
    let (suspended, loaded) = (meta.suspended, meta.loaded);
    *meta = saved;
    meta.suspended = suspended;
    meta.loaded = loaded;
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
            None if options.shared => {
                anyhow::bail!(
                    "--shared-sessions needs --session-dir (the directory the replicas share)"
                )
            }
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
            if self.adopt_one(&entry.path()).is_some() {
                adopted += 1;
            }
        }
        if adopted > 0 {
            tracing::info!(sessions = adopted, "took over suspended sessions");
        }
    }

    /// Take in the session in `dir` (suspended until its next call), unless it is already
    /// known here; an expired one is removed instead.
    fn adopt_one(&self, dir: &Path) -> Option<Arc<Slot>> {
        let mut meta = match disk::read_meta(dir) {
            Ok(meta) if self.dir_of(&meta.id) == dir => meta,
            Ok(_) => {
                tracing::warn!("ignoring {dir:?}: its name does not match its session");
                return None;
            }
            Err(err) => {
                tracing::debug!("not a session directory {dir:?}: {err}");
                return None;
            }
        };
        let known = self.table().get(&meta.id).cloned();
        if let Some(known) = known {
            if self.options.shared {
                // What the file says is newer than this replica's view.
                sync_meta(&known, meta);
            }
            return Some(known);
        }
        meta.suspended = true;
        let id = meta.id.clone();
        let slot = Arc::new(Slot {
            dir: dir.to_path_buf(),
            meta: Mutex::new(meta),
            core: tokio::sync::Mutex::new(None),
        });
        let slot = self.table().entry(id.clone()).or_insert(slot).clone();
        if slot.meta().expires_at() <= now() {
            self.expire(&id, &slot);
            // Still here if, held under its lease, it proved alive.
            return self.table().get(&id).cloned();
        }
        Some(slot)
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
        if self.count() >= self.options.max_sessions {
            return Err(SessionError::TooMany(self.options.max_sessions));
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
            checkpoint: 0,
            live: false,
            loaded: 0,
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
            // Checked again: creates run concurrently (in shared mode the directory's count
            // above is the bound, and already includes this one).
            if !self.options.shared && table.len() >= self.options.max_sessions {
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
    ///
    /// With `--shared-sessions` the directory is the truth: a session another replica
    /// created is taken in here on its first call, and one it used or closed is seen so.
    fn slot(&self, id: &str) -> Result<Arc<Slot>, SessionError> {
        let not_found = || SessionError::NotFound(id.chars().take(64).collect());
        let found = self.table().get(id).cloned();
        let slot = match found {
            Some(slot) => slot,
            None if self.options.shared && is_id(id) => {
                self.adopt_one(&self.dir_of(id)).ok_or_else(not_found)?
            }
            None => return Err(not_found()),
        };
        if self.options.shared {
            match disk::read_meta(&slot.dir) {
                Ok(saved) => sync_meta(&slot, saved),
                Err(_) => {
                    self.forget(id, &slot);
                    return Err(not_found());
                }
            }
        }
        let expired = {
            let meta = slot.meta();
            !meta.running && meta.expires_at() <= now()
        };
        if expired {
            self.expire(id, &slot);
            return Err(not_found());
        }
        Ok(slot)
    }

    /// What `state.omcp`'s first line must say: the build's key, and in shared mode the
    /// checkpoint, so a state file that is not the one `meta.json` names (a write that
    /// failed half way through a checkpoint) is refused, never resumed as the newest.
    fn state_key(&self, meta: &Meta, checkpoint: u64) -> Result<String, SessionError> {
        let runtime = self.sandbox.runtime_index(Some(&meta.runtime))?;
        let key = self.sandbox.session_key(runtime);
        Ok(if self.options.shared {
            format!("{key} checkpoint {checkpoint}")
        } else {
            key.to_string()
        })
    }

    /// Drop `slot` from the table, leaving its files (another replica removed them, or
    /// holds the session).
    fn forget(&self, id: &str, slot: &Arc<Slot>) {
        let mut table = self.table();
        if matches!(table.get(id), Some(current) if Arc::ptr_eq(current, slot)) {
            table.remove(id);
        }
    }

    /// Remove an expired session. Shared: only under its lease and if the directory agrees
    /// it has expired (this replica's view of its last use may be old).
    fn expire(&self, id: &str, slot: &Arc<Slot>) {
        if !self.options.shared {
            self.remove(id, slot);
            return;
        }
        let Ok(Some(_lease)) = Lease::try_take(&slot.dir) else {
            // Someone is using it, or it is gone: either way not ours to remove now.
            self.forget(id, slot);
            return;
        };
        match disk::read_meta(&slot.dir) {
            Ok(saved) if saved.expires_at() > now() => sync_meta(slot, saved),
            _ => self.remove(id, slot),
        }
    }

    /// Shared mode: take `slot`'s lease (waiting a little for another replica's turn to
    /// end), then bring this replica's view up to date: an interpreter in memory older than
    /// the newest checkpoint is dropped, so the turn resumes the newest one.
    async fn lease(
        &self,
        id: &str,
        slot: &Arc<Slot>,
        core: &mut Option<SessionCore>,
    ) -> Result<Lease, SessionError> {
        let not_found = || SessionError::NotFound(redact(id));
        let span = crate::telemetry::session_lease();
        let lease = match Lease::take(&slot.dir, LEASE_WAIT).instrument(span).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Err(SessionError::Busy(redact(id))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.forget(id, slot);
                return Err(not_found());
            }
            Err(err) => return Err(internal(format!("cannot take the session's lease: {err}"))),
        };
        // Read again under the lease: it may have been closed or used meanwhile.
        let saved = match disk::read_meta(&slot.dir) {
            Ok(saved) => saved,
            Err(_) => {
                self.forget(id, slot);
                return Err(not_found());
            }
        };
        if core.is_some() && slot.meta().loaded != saved.checkpoint {
            *core = None;
            tracing::debug!(
                session = redact(id),
                "another replica ran the session since: resuming its newest checkpoint"
            );
        }
        sync_meta(slot, saved);
        slot.meta().suspended = core.is_none();
        Ok(lease)
    }

    /// Shared mode, at the end of a kept turn and under the lease: write the interpreter and
    /// the facts, so whichever replica gets the next call resumes exactly this.
    /// A rolled-back turn left the interpreter as the last checkpoint has it (`kept`
    /// false): only the facts are written (its last use matters to every replica's expiry).
    fn checkpoint(
        &self,
        id: &str,
        slot: &Slot,
        core: &mut Option<SessionCore>,
        kept: bool,
    ) -> Result<(), SessionError> {
        let started = std::time::Instant::now();
        let span = crate::telemetry::session_save();
        let _entered = span.enter();
        let mut meta = slot.meta().clone();
        let written = match core.as_ref() {
            Some(live) if kept => {
                meta.checkpoint += 1;
                let key = self.state_key(&meta, meta.checkpoint)?;
                disk::write_state(&slot.dir, &key, live).and_then(|bytes| {
                    disk::write_meta(&slot.dir, &meta)?;
                    Ok(bytes)
                })
            }
            _ => disk::write_meta(&slot.dir, &meta).map(|()| 0),
        };
        match written {
            Ok(bytes) => {
                span.record("omcp.bytes", bytes);
                let mut current = slot.meta();
                current.checkpoint = meta.checkpoint;
                current.loaded = meta.checkpoint;
                drop(current);
                crate::metrics::session_checkpointed(started.elapsed());
                tracing::debug!(
                    session = redact(id),
                    bytes,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "session checkpointed"
                );
                Ok(())
            }
            Err(err) => {
                // The state on disk is still the previous checkpoint (files are replaced
                // whole): drop what disk does not have, so no replica serves it.
                *core = None;
                slot.meta().suspended = true;
                tracing::warn!(
                    session = redact(id),
                    "could not checkpoint the session: {err}"
                );
                Err(SessionError::Unsaved {
                    id: redact(id),
                    why: err.to_string(),
                })
            }
        }
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
        if self.options.shared {
            // Sessions other replicas opened are as much this server's.
            self.adopt();
        }
        let ids: Vec<String> = self.table().keys().cloned().collect();
        let mut infos: Vec<SessionInfo> = ids.iter().filter_map(|id| self.info(id).ok()).collect();
        infos.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        infos
    }

    /// Open sessions: this server's, or with `--shared-sessions` the directory's (the
    /// bound then holds for all the replicas together).
    pub fn count(&self) -> usize {
        if self.options.shared {
            return std::fs::read_dir(&self.root)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|entry| entry.path().join("meta.json").exists())
                        .count()
                })
                .unwrap_or(0);
        }
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
        let _lease = self.try_lease(id, &slot)?;
        drop(guard);
        self.remove(id, &slot);
        Ok(())
    }

    /// Shared mode, for quick operations that answer `Busy` at once when a turn holds the
    /// session (as they do on one server): the lease if it is free now.
    fn try_lease(&self, id: &str, slot: &Arc<Slot>) -> Result<Option<Lease>, SessionError> {
        if !self.options.shared {
            return Ok(None);
        }
        match Lease::try_take(&slot.dir) {
            Ok(Some(lease)) if slot.dir.join("meta.json").exists() => Ok(Some(lease)),
            Ok(Some(_)) => {
                self.forget(id, slot);
                Err(SessionError::NotFound(redact(id)))
            }
            Ok(None) => Err(SessionError::Busy(redact(id))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.forget(id, slot);
                Err(SessionError::NotFound(redact(id)))
            }
            Err(err) => Err(internal(format!("cannot take the session's lease: {err}"))),
        }
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
        let key = self.state_key(&meta, meta.checkpoint)?;
        let lost = |why: String| SessionError::Lost {
            id: redact(id),
            why,
        };
        if meta.live && !self.options.shared {
            return Err(lost(
                "the server that held it stopped without saving it (killed or crashed); \
                 its state since it was last suspended is gone"
                    .to_string(),
            ));
        }
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
        if !self.options.shared && meta.started {
            // From now on the file is older than the interpreter: mark it taken, so a
            // server that finds it after a crash refuses it instead of rewinding.
            let mut taken = meta.clone();
            taken.live = true;
            disk::write_meta(&slot.dir, &taken)
                .map_err(|e| internal(format!("cannot mark the session as resumed: {e}")))?;
            slot.meta().live = true;
        }
        *core = Some(restored);
        {
            let mut current = slot.meta();
            current.suspended = false;
            current.loaded = meta.checkpoint;
        }
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
        let lease = match self.options.shared {
            true => Some(self.lease(id, &slot, &mut guard).await?),
            false => None,
        };
        slot.meta().running = true;
        let mut answer = self
            .turn_locked(id, &slot, &mut guard, code, stdin, asked, files)
            .await;
        {
            let mut meta = slot.meta();
            meta.last_used_at = now();
            if let Some(core) = guard.as_ref() {
                meta.memory_bytes = core.stats().written_bytes;
            }
        }
        if lease.is_some()
            && let Ok(done) = &answer
        {
            // Before the answer leaves: what the client is told is what any replica resumes.
            if let Err(err) = self.checkpoint(id, &slot, &mut guard, !done.rolled_back) {
                answer = Err(err);
            }
        }
        slot.meta().running = false;
        drop(lease);
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
        let first_kept = {
            let mut meta = slot.meta();
            meta.turns = turn_number;
            let first = !report.rolled_back && !meta.started;
            if !report.rolled_back {
                meta.started = true;
            }
            first.then(|| meta.clone())
        };
        // The file must say that the interpreter has moved past the snapshot: a server that
        // finds the session after a crash then refuses it rather than start it afresh.
        if let Some(meta) = first_kept
            && !self.options.shared
            && let Err(err) = disk::write_meta(&slot.dir, &meta)
        {
            tracing::warn!(
                session = redact(id),
                "could not record the first kept turn: {err}"
            );
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
        let lease = match self.options.shared {
            true => Some(self.lease(id, &slot, &mut guard).await?),
            false => None,
        };
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
        drop(lease);
        drop(guard);
        let at = now();
        let mut meta = slot.meta().clone();
        meta.id = new_id.clone();
        meta.created_at = at;
        meta.last_used_at = at;
        meta.running = false;
        meta.suspended = false;
        meta.live = false;
        meta.memory_bytes = fork.stats().written_bytes;
        if self.options.shared {
            // Its first checkpoint, so another replica can serve its first call.
            meta.checkpoint = 1;
            meta.loaded = 1;
            let key = self.state_key(&meta, 1)?;
            disk::write_state(&dir, &key, &fork).map_err(internal)?;
        }
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
        if self.options.shared {
            // Every kept turn is on disk already (and writing now, without the lease,
            // could overwrite a newer checkpoint of another replica): only let go of it.
            *guard = None;
            slot.meta().suspended = true;
            return true;
        }
        let mut meta = slot.meta().clone();
        meta.live = false;
        let Ok(key) = self.state_key(&meta, meta.checkpoint) else {
            return false;
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
                {
                    let mut current = slot.meta();
                    current.suspended = true;
                    current.live = false;
                }
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
                    self.expire(&id, &slot);
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
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    ticks += 1;
                    if self.options.shared && ticks.is_multiple_of(30) {
                        // Sessions another replica opened and nobody calls expire too:
                        // every replica looks, the lease makes one of them remove each.
                        self.adopt();
                    }
                    self.sweep().await
                }
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

    /// A use that is not a turn. `save`: under the lease in shared mode, where the other
    /// replicas learn of it only from `meta.json` (a failed write only shortens its life).
    fn touch(&self, slot: &Slot, save: bool) {
        let meta = {
            let mut meta = slot.meta();
            meta.last_used_at = now();
            meta.clone()
        };
        if save && let Err(err) = disk::write_meta(&slot.dir, &meta) {
            tracing::warn!(session = redact(&meta.id), "could not record a use: {err}");
        }
    }

    pub fn put_file(&self, id: &str, path: &str, bytes: &[u8]) -> Result<u64, SessionError> {
        crate::workspace::check_path(path)?;
        let slot = self.slot(id)?;
        let _guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        let lease = self.try_lease(id, &slot)?;
        self.workspace_of(&slot)?
            .write(path, bytes, &self.sandbox.limits().workspace())?;
        self.touch(&slot, lease.is_some());
        Ok(bytes.len() as u64)
    }

    pub fn get_file(&self, id: &str, path: &str) -> Result<Vec<u8>, SessionError> {
        crate::workspace::check_path(path)?;
        let slot = self.slot(id)?;
        let max = self.sandbox.limits().workspace().max_bytes;
        let bytes = self.workspace_of(&slot)?.read(path, max)?;
        self.touch(&slot, false);
        Ok(bytes)
    }

    pub fn delete_file(&self, id: &str, path: &str) -> Result<(), SessionError> {
        crate::workspace::check_path(path)?;
        let slot = self.slot(id)?;
        let _guard = slot
            .core
            .try_lock()
            .map_err(|_| SessionError::Busy(redact(id)))?;
        let lease = self.try_lease(id, &slot)?;
        self.workspace_of(&slot)?.delete(path)?;
        self.touch(&slot, lease.is_some());
        Ok(())
    }

    pub fn list_files(&self, id: &str) -> Result<Vec<FileEntry>, SessionError> {
        let slot = self.slot(id)?;
        let files = self.workspace_of(&slot)?.list()?;
        self.touch(&slot, false);
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
