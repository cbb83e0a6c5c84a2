//! A session's files on disk: `meta.json` and `state.omcp`, each written whole to a
//! temporary name, synced and renamed over the old one (then the directory synced), so a
//! crash at any point leaves either the old or the new file, never half of one.
//!
//! `state.omcp` is one line `omcp-session <key>` (the server version, the runtime snapshot
//! and the wasmtime version the memory was taken against), the session's memory as the
//! overlay writes it, and a SHA-256 of everything before it. Any difference in the key is
//! "another build" (refused with its reason); a bad checksum, a missing line or a short
//! file is "damaged": the state is never read from a file that is not exactly what this
//! server wrote.

use std::fs::{self, File};
use std::io::{self, Cursor, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::Meta;
use crate::sandbox::SessionCore;

const META: &str = "meta.json";
const STATE: &str = "state.omcp";
const MAGIC: &str = "omcp-session ";

/// Why a saved state cannot be used.
#[derive(Debug)]
pub enum StateError {
    /// Written by another server version or runtime build (what it says it is).
    Incompatible(String),
    /// Not what this server writes: truncated, altered, unreadable.
    Damaged(String),
}

pub fn read_meta(dir: &Path) -> io::Result<Meta> {
    let bytes = fs::read(dir.join(META))?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn write_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    write_atomically(dir, META, &bytes)
}

/// Save `core`'s memory; returns the bytes written.
pub fn write_state(dir: &Path, key: &str, core: &SessionCore) -> io::Result<u64> {
    let mut bytes = format!("{MAGIC}{key}\n").into_bytes();
    core.save(&mut bytes)?;
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    write_atomically(dir, STATE, &bytes)?;
    Ok(bytes.len() as u64)
}

/// The saved memory (positioned after the header, checksum removed), `None` if the session
/// was never saved.
pub fn read_state(dir: &Path, key: &str) -> Result<Option<Cursor<Vec<u8>>>, StateError> {
    let mut bytes = match fs::read(dir.join(STATE)) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StateError::Damaged(format!("cannot read it: {err}"))),
    };
    let line_end = bytes
        .iter()
        .take(1024)
        .position(|&b| b == b'\n')
        .ok_or_else(|| StateError::Damaged("no header line".into()))?;
    let header = String::from_utf8_lossy(&bytes[..line_end]).into_owned();
    let found = header
        .strip_prefix(MAGIC)
        .ok_or_else(|| StateError::Damaged("not a session state file".into()))?;
    if found != key {
        return Err(StateError::Incompatible(format!(
            "saved against {found:?}, this server is {key:?}"
        )));
    }
    if bytes.len() < line_end + 1 + 32 {
        return Err(StateError::Damaged("truncated".into()));
    }
    let body_end = bytes.len() - 32;
    if Sha256::digest(&bytes[..body_end]).as_slice() != &bytes[body_end..] {
        return Err(StateError::Damaged("checksum mismatch".into()));
    }
    bytes.truncate(body_end);
    let mut cursor = Cursor::new(bytes);
    cursor.set_position(line_end as u64 + 1);
    Ok(Some(cursor))
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Remove a session's directory (std's remove_dir_all does not follow symlinks).
pub fn remove_dir(dir: &Path) {
    if let Err(err) = fs::remove_dir_all(dir)
        && err.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove the session directory {dir:?}: {err}");
    }
}

/// Copy a directory tree of regular files (a fork's workspace); symlinks and special files
/// the guest made are not copied.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
