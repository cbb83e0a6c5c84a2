//! Workspaces: the writable host directory the guest sees at `/workspace` (its working
//! directory) for one run or one session.
//!
//! Clients put files in before a run, list, read and delete them between turns, and a
//! stateless run sends back what it created or changed. The guest can leave anything in
//! that directory (symlinks to `/etc` or to `../..`, deep trees, huge names), so every
//! host-side access goes through a capability, a [`cap_std::fs::Dir`] opened on the root:
//! no path (`..`, an absolute one, a symlink the guest made) can reach outside it. On top of
//! that this module never follows a symlink at all: each component of a path is checked
//! with `symlink_metadata` before it is entered, and what was opened is compared (device
//! and inode) with what was checked, so a symlink swapped in meanwhile is refused rather
//! than followed even within the workspace.
//!
//! Paths from clients are checked first ([`check_path`]): a bad path is a typed error
//! ([`FileError::InvalidPath`]) that never touches the file system. Each [`FileError`]
//! carries the stable code and HTTP status the API reports.
//!
//! Bounds: [`WorkspaceLimits`] caps the stored bytes, the number of files and the size of
//! one upload; walks (listing, usage, fingerprints) descend at most [`MAX_DEPTH`]
//! directories and visit at most [`MAX_ENTRIES`] entries, and [`Workspace::changes`]
//! reports at most [`MAX_CHANGES`] files.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cap_std::fs::{Dir, Metadata, MetadataExt, OpenOptions};
use sha2::{Digest, Sha256};

/// How deep a walk of the workspace descends (directories below are not visited).
pub const MAX_DEPTH: usize = 64;
/// How many directory entries one walk visits at most (the rest are not seen).
pub const MAX_ENTRIES: usize = 100_000;
/// How many files [`Workspace::changes`] reports at most.
pub const MAX_CHANGES: usize = 1000;

/// Longest client path, in bytes.
const MAX_PATH_BYTES: usize = 1024;
/// Longest component of a client path, in bytes (`NAME_MAX`).
const MAX_COMPONENT_BYTES: usize = 255;
/// How much of a rejected path an error message quotes, in characters.
const QUOTED_PATH_CHARS: usize = 100;

/// Bounds of one workspace (each is a server flag).
#[derive(Debug, Clone, Copy)]
pub struct WorkspaceLimits {
    /// Bytes of regular files the workspace may hold.
    pub max_bytes: u64,
    /// Regular files the workspace may hold.
    pub max_files: usize,
    /// Largest single file a client may send in.
    pub max_upload_bytes: u64,
}

/// What went wrong with a workspace file; [`code`](FileError::code) and
/// [`status`](FileError::status) are what the API reports.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// 400 `invalid_path`: `why` names the rule, `path` is (at most 100 characters of) it.
    #[error("invalid path {path:?}: {why}")]
    InvalidPath { path: String, why: &'static str },
    /// 400 `invalid_content`: bad base64.
    #[error("{0}")]
    InvalidContent(String),
    /// 413 `too_large`.
    #[error("file {path:?} is {size} bytes, more than the upload limit of {max} bytes")]
    TooLarge { path: String, size: u64, max: u64 },
    /// 507 `workspace_full`: bytes or file count.
    #[error("the workspace is full: {0}")]
    Full(String),
    /// 404 `file_not_found`.
    #[error("no file {0:?} in the workspace")]
    NotFound(String),
    /// 409 `not_a_file`: a directory, a symlink, a special file (or a path through one).
    #[error("{0:?} is not a regular file")]
    NotAFile(String),
    /// 500 `internal`.
    #[error("workspace error: {0}")]
    Io(String),
}

impl FileError {
    /// The stable error code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::InvalidPath { .. } => "invalid_path",
            FileError::InvalidContent(_) => "invalid_content",
            FileError::TooLarge { .. } => "too_large",
            FileError::Full(_) => "workspace_full",
            FileError::NotFound(_) => "file_not_found",
            FileError::NotAFile(_) => "not_a_file",
            FileError::Io(_) => "internal",
        }
    }

    /// The HTTP status that goes with [`code`](FileError::code).
    pub fn status(&self) -> u16 {
        match self {
            FileError::InvalidPath { .. } | FileError::InvalidContent(_) => 400,
            // The path is fine; what the workspace holds there now is in the way.
            FileError::NotAFile(_) => 409,
            FileError::NotFound(_) => 404,
            FileError::TooLarge { .. } => 413,
            FileError::Full(_) => 507,
            FileError::Io(_) => 500,
        }
    }
}

/// A file sent in with a run or a session turn (the JSON shape of the API).
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIn {
    /// Relative path under `/workspace`, `/`-separated ("data/in.csv").
    pub path: String,
    /// The content: the text itself (`utf-8`) or its base64 (`base64`).
    pub content: String,
    /// How `content` is encoded; `utf-8` when left out.
    #[serde(default)]
    pub encoding: Encoding,
}

/// How a file's content travels in JSON.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The content is the text itself.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// The content is standard base64 (with padding) of the bytes.
    Base64,
}

impl FileIn {
    /// The bytes to store.
    pub fn decode(&self) -> Result<Vec<u8>, FileError> {
        match self.encoding {
            Encoding::Utf8 => Ok(self.content.as_bytes().to_vec()),
            Encoding::Base64 => STANDARD.decode(self.content.as_bytes()).map_err(|e| {
                FileError::InvalidContent(format!(
                    "file {:?}: content is not valid base64: {e}",
                    quote(&self.path)
                ))
            }),
        }
    }

    /// The decoded size, computed without decoding (an upper bound for bad base64).
    fn decoded_len(&self) -> u64 {
        match self.encoding {
            Encoding::Utf8 => self.content.len() as u64,
            Encoding::Base64 => {
                let trimmed = self.content.trim_end_matches('=');
                (trimmed.len() as u64) * 3 / 4
            }
        }
    }
}

/// A file sent back (stateless `/run` returns what it created or changed).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq)]
pub struct FileOut {
    /// Relative path under `/workspace`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// `utf-8` for text (valid UTF-8 without NUL), else `base64`.
    pub encoding: Encoding,
    /// The content in `encoding`; left out when `omitted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// true when the content was left out (over the byte budget)
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub omitted: bool,
}

/// An entry of a listing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq)]
pub struct FileEntry {
    /// Relative path under `/workspace`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, RFC 3339 UTC to the second ("2026-11-29T19:30:00Z").
    pub modified: String,
}

/// The state of every regular file at one moment (see [`Workspace::fingerprint`]).
#[derive(Debug, Clone, Default)]
pub struct Fingerprint(BTreeMap<String, FileSig>);

impl Fingerprint {
    /// How many files it covers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it covers no file.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileSig {
    size: u64,
    /// Kept for diagnostics: changes are decided by size and content, since a guest can set
    /// any modification time.
    #[allow(dead_code)]
    mtime_ns: i128,
    sha256: [u8; 32],
}

/// Check a client-given relative path; returns it normalised ("a/b.txt").
///
/// Percent-encoding is not decoded here (the HTTP layer decodes a URL once), but a
/// component that would become `.` or `..` if decoded again is refused too.
pub fn check_path(path: &str) -> Result<String, FileError> {
    let bad = |why: &'static str| FileError::InvalidPath {
        path: quote(path),
        why,
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad("longer than 1024 bytes"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(bad("absolute (starts with '/')"));
    }
    if path.contains('\\') {
        return Err(bad("contains a backslash"));
    }
    if path.chars().any(|c| (c as u32) < 0x20 || c == '\x7f') {
        return Err(bad("contains a control character"));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(bad("has an empty component ('//' or a trailing '/')"));
        }
        if component == "." || component == ".." {
            return Err(bad("has a '.' or '..' component"));
        }
        let lower = component.to_ascii_lowercase();
        if matches!(lower.as_str(), "%2e%2e" | "%2e." | ".%2e") {
            return Err(bad("encoded dot-dot"));
        }
        if lower == "%2e" {
            return Err(bad("encoded dot"));
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(bad("has a component longer than 255 bytes"));
        }
    }
    Ok(path.to_owned())
}

/// At most [`QUOTED_PATH_CHARS`] characters of a path, for messages.
fn quote(path: &str) -> String {
    path.chars().take(QUOTED_PATH_CHARS).collect()
}

/// An io error about `path`: not-found becomes [`FileError::NotFound`].
fn io_err(what: &str, path: &str, e: io::Error) -> FileError {
    if e.kind() == io::ErrorKind::NotFound {
        FileError::NotFound(quote(path))
    } else {
        FileError::Io(format!("cannot {what} {:?}: {e}", quote(path)))
    }
}

/// What to do about a missing directory on the way to a file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// It is an error ([`FileError::NotFound`]).
    Fail,
    /// Fine: it would be created (checking only, nothing is touched).
    Allow,
    /// Create it.
    Create,
}

/// One workspace directory, reached only through a capability.
pub struct Workspace {
    dir: Dir,
    root: PathBuf,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Workspace {
    /// Open an existing host directory as a workspace.
    pub fn open(root: &Path) -> Result<Workspace, FileError> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|e| {
            FileError::Io(format!("cannot open the workspace {}: {e}", root.display()))
        })?;
        Ok(Workspace {
            dir,
            root: root.to_path_buf(),
        })
    }

    /// The host directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write one file (creating parent directories), atomically: written to a temporary
    /// name in the same directory, synced, renamed over. Refuses a bad path, a file over
    /// `max_upload_bytes` ([`FileError::TooLarge`]), a write that would take the workspace
    /// over `max_bytes` or `max_files` ([`FileError::Full`]; a replaced file's old size
    /// counts as freed), and a path through a symlink or a file, or onto a directory or a
    /// symlink ([`FileError::NotAFile`]).
    pub fn write(
        &self,
        path: &str,
        bytes: &[u8],
        limits: &WorkspaceLimits,
    ) -> Result<(), FileError> {
        let path = check_path(path)?;
        let size = bytes.len() as u64;
        if size > limits.max_upload_bytes {
            return Err(FileError::TooLarge {
                path: quote(&path),
                size,
                max: limits.max_upload_bytes,
            });
        }
        let old = self.existing_size(&path)?;
        self.check_budget(&[(size, old)], limits)?;
        self.write_unchecked(&path, bytes)
    }

    /// Write the files of a request: every one is checked first (paths, sizes, content,
    /// the total budget), then they are written; nothing is written if any check fails.
    pub fn write_all(&self, files: &[FileIn], limits: &WorkspaceLimits) -> Result<(), FileError> {
        let mut checked: Vec<(String, Vec<u8>)> = Vec::with_capacity(files.len());
        let mut seen = BTreeSet::new();
        for file in files {
            let path = check_path(&file.path)?;
            let estimate = file.decoded_len();
            if estimate > limits.max_upload_bytes {
                return Err(FileError::TooLarge {
                    path: quote(&path),
                    size: estimate,
                    max: limits.max_upload_bytes,
                });
            }
            let bytes = file.decode()?;
            let size = bytes.len() as u64;
            if size > limits.max_upload_bytes {
                return Err(FileError::TooLarge {
                    path: quote(&path),
                    size,
                    max: limits.max_upload_bytes,
                });
            }
            if !seen.insert(path.clone()) {
                return Err(FileError::InvalidPath {
                    path: quote(&path),
                    why: "given twice in the request",
                });
            }
            checked.push((path, bytes));
        }
        for (path, _) in &checked {
            let clash = path
                .match_indices('/')
                .any(|(i, _)| seen.contains(&path[..i]));
            if clash {
                return Err(FileError::InvalidPath {
                    path: quote(path),
                    why: "a parent directory of it is also a file of the request",
                });
            }
        }
        let mut sizes = Vec::with_capacity(checked.len());
        for (path, bytes) in &checked {
            sizes.push((bytes.len() as u64, self.existing_size(path)?));
        }
        self.check_budget(&sizes, limits)?;
        for (path, bytes) in &checked {
            self.write_unchecked(path, bytes)?;
        }
        Ok(())
    }

    /// Read a regular file (not through a symlink), at most `max` bytes else
    /// [`FileError::TooLarge`].
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, FileError> {
        let path = check_path(path)?;
        self.read_regular(&path, max)
    }

    /// Delete a regular file, or a symlink itself (never what it points to). A directory
    /// (or a special file) is [`FileError::NotAFile`], a missing file
    /// [`FileError::NotFound`].
    pub fn delete(&self, path: &str) -> Result<(), FileError> {
        let path = check_path(path)?;
        let (dir, name) = self.parent(&path, Missing::Fail)?;
        let dir = dir.ok_or_else(|| FileError::NotFound(quote(&path)))?;
        let meta = dir
            .symlink_metadata(name)
            .map_err(|e| io_err("inspect", &path, e))?;
        if !(meta.is_file() || meta.is_symlink()) {
            return Err(FileError::NotAFile(quote(&path)));
        }
        dir.remove_file(name)
            .map_err(|e| io_err("delete", &path, e))
    }

    /// Every regular file, recursively, sorted by path. Symlinks and special files are
    /// skipped (never followed), as are names that are not UTF-8; the walk stops at
    /// [`MAX_DEPTH`] and [`MAX_ENTRIES`].
    pub fn list(&self) -> Result<Vec<FileEntry>, FileError> {
        let mut out = Vec::new();
        self.walk(&mut |_, _, path, meta| {
            if let Some(path) = path {
                out.push(FileEntry {
                    path: path.to_owned(),
                    size: meta.len(),
                    modified: rfc3339(meta.mtime()),
                });
            }
            Ok(())
        })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// (bytes, files) of the regular files now stored (all of them, whatever their names).
    pub fn usage(&self) -> Result<(u64, usize), FileError> {
        let (mut bytes, mut files) = (0u64, 0usize);
        self.walk(&mut |_, _, _, meta| {
            bytes = bytes.saturating_add(meta.len());
            files += 1;
            Ok(())
        })?;
        Ok((bytes, files))
    }

    /// Size, modification time and SHA-256 of every regular file, taken before a run so
    /// that [`changes`](Workspace::changes) can tell what the run did.
    pub fn fingerprint(&self) -> Result<Fingerprint, FileError> {
        let mut map = BTreeMap::new();
        self.walk(&mut |dir, name, path, meta| {
            let Some(path) = path else { return Ok(()) };
            // A file removed or swapped meanwhile is simply not part of the picture.
            let Some(sha256) = hash_entry(dir, name, path)? else {
                return Ok(());
            };
            let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            map.insert(
                path.to_owned(),
                FileSig {
                    size: meta.len(),
                    mtime_ns,
                    sha256,
                },
            );
            Ok(())
        })?;
        Ok(Fingerprint(map))
    }

    /// Files created or changed since `before` (by size and content), in path order, at
    /// most [`MAX_CHANGES`]. Text (valid UTF-8 without NUL) comes as `utf-8`, the rest as
    /// `base64`. Contents are included while their total (as encoded in the response)
    /// stays within `budget`; from the first that does not fit on, files come with
    /// `content: None` and `omitted: true`.
    pub fn changes(&self, before: &Fingerprint, budget: u64) -> Result<Vec<FileOut>, FileError> {
        let now = self.fingerprint()?;
        let mut out = Vec::new();
        let mut used = 0u64;
        let mut full = false;
        for (path, sig) in &now.0 {
            if out.len() >= MAX_CHANGES {
                break;
            }
            let changed = match before.0.get(path) {
                None => true,
                Some(old) => old.size != sig.size || old.sha256 != sig.sha256,
            };
            if !changed {
                continue;
            }
            // Base64 is never shorter than the text, so a file whose raw size does not fit
            // will not fit either way: it is not read again.
            let mut file = FileOut {
                path: path.clone(),
                size: sig.size,
                encoding: Encoding::Base64,
                content: None,
                omitted: true,
            };
            let bytes = if !full && sig.size <= budget - used {
                match self.read_regular(path, budget - used) {
                    Ok(bytes) => Some(bytes),
                    Err(
                        FileError::NotFound(_)
                        | FileError::NotAFile(_)
                        | FileError::TooLarge { .. },
                    ) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            match bytes {
                Some(bytes) => {
                    let (encoding, content) = encode(bytes);
                    file.encoding = encoding;
                    if content.len() as u64 <= budget - used {
                        used += content.len() as u64;
                        file.content = Some(content);
                        file.omitted = false;
                    } else {
                        full = true;
                    }
                }
                None => {
                    full = true;
                    file.encoding = self.sniff_encoding(path)?;
                }
            }
            out.push(file);
        }
        Ok(out)
    }

    /// The encoding an omitted file would have had (read in chunks, not kept).
    fn sniff_encoding(&self, path: &str) -> Result<Encoding, FileError> {
        let Some((mut file, _)) = self.open_regular(path)? else {
            return Ok(Encoding::Base64);
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = file.read(&mut buf).map_err(|e| io_err("read", path, e))?;
            if n == 0 {
                return Ok(if carry.is_empty() {
                    Encoding::Utf8
                } else {
                    Encoding::Base64
                });
            }
            if buf[..n].contains(&0) {
                return Ok(Encoding::Base64);
            }
            carry.extend_from_slice(&buf[..n]);
            match std::str::from_utf8(&carry) {
                Ok(_) => carry.clear(),
                // An incomplete sequence at the end may finish in the next chunk.
                Err(e) if e.error_len().is_none() => {
                    carry.drain(..e.valid_up_to());
                }
                Err(_) => return Ok(Encoding::Base64),
            }
        }
    }

    /// The size of the regular file now at `path` (`None` if there is none, with its
    /// parents either directories or missing); refuses paths through or onto anything else.
    fn existing_size(&self, path: &str) -> Result<Option<u64>, FileError> {
        let (dir, name) = self.parent(path, Missing::Allow)?;
        let Some(dir) = dir else { return Ok(None) };
        match dir.symlink_metadata(name) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Err(FileError::NotAFile(quote(path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", path, e)),
        }
    }

    /// Refuse writes (new size, replaced size) that would take the workspace over its
    /// bounds.
    fn check_budget(
        &self,
        writes: &[(u64, Option<u64>)],
        limits: &WorkspaceLimits,
    ) -> Result<(), FileError> {
        let (bytes, files) = self.usage()?;
        let freed: u64 = writes.iter().filter_map(|(_, old)| *old).sum();
        let added: u64 = writes.iter().map(|(new, _)| *new).sum();
        let new_files = writes.iter().filter(|(_, old)| old.is_none()).count();
        let bytes_after = bytes.saturating_sub(freed).saturating_add(added);
        if bytes_after > limits.max_bytes {
            return Err(FileError::Full(format!(
                "writing {added} bytes would make {bytes_after} bytes, more than its limit of {}",
                limits.max_bytes
            )));
        }
        let files_after = files.saturating_add(new_files);
        if files_after > limits.max_files {
            return Err(FileError::Full(format!(
                "writing {new_files} new files would make {files_after} files, more than its limit of {}",
                limits.max_files
            )));
        }
        Ok(())
    }

    /// Write a checked path: parents created, temporary file synced and renamed over.
    fn write_unchecked(&self, path: &str, bytes: &[u8]) -> Result<(), FileError> {
        let (dir, name) = self.parent(path, Missing::Create)?;
        let dir =
            dir.ok_or_else(|| FileError::Io(format!("no parent directory for {:?}", quote(path))))?;
        match dir.symlink_metadata(name) {
            Ok(meta) if !meta.is_file() => return Err(FileError::NotAFile(quote(path))),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", path, e)),
        }
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| FileError::Io(format!("no randomness for a temporary name: {e}")))?;
        let tmp = format!(".omcp-upload-{:016x}.tmp", u64::from_le_bytes(random));
        // `create_new` is O_CREAT|O_EXCL: it never opens through a symlink.
        let written = (|| {
            let mut file = dir.open_with(&tmp, OpenOptions::new().write(true).create_new(true))?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            dir.rename(&tmp, &dir, name)
        })();
        if let Err(e) = written {
            let _ = dir.remove_file(&tmp);
            return Err(io_err("write", path, e));
        }
        Ok(())
    }

    /// Read the regular file at a path already split on '/' (checked, or found by a walk).
    fn read_regular(&self, path: &str, max: u64) -> Result<Vec<u8>, FileError> {
        let (file, meta) = self
            .open_regular(path)?
            .ok_or_else(|| FileError::NotFound(quote(path)))?;
        if meta.len() > max {
            return Err(FileError::TooLarge {
                path: quote(path),
                size: meta.len(),
                max,
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_err("read", path, e))?;
        if bytes.len() as u64 > max {
            return Err(FileError::TooLarge {
                path: quote(path),
                size: bytes.len() as u64,
                max,
            });
        }
        Ok(bytes)
    }

    /// Open the regular file at `path` without following any symlink. `None` if a
    /// directory on the way or the file itself is missing.
    fn open_regular(&self, path: &str) -> Result<Option<(cap_std::fs::File, Metadata)>, FileError> {
        let (dir, name) = match self.parent(path, Missing::Fail) {
            Ok(found) => found,
            Err(FileError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(dir) = dir else { return Ok(None) };
        open_entry(&dir, OsStr::new(name), path)
    }

    /// The directory holding the last component of `path` (split on '/'), entered one
    /// component at a time without following symlinks, and that last component.
    /// With [`Missing::Allow`], `None` when a directory on the way does not exist yet.
    fn parent<'p>(
        &self,
        path: &'p str,
        missing: Missing,
    ) -> Result<(Option<Dir>, &'p str), FileError> {
        let (dirs, name) = match path.rsplit_once('/') {
            Some((dirs, name)) => (Some(dirs), name),
            None => (None, path),
        };
        let mut cur = self.dir.try_clone().map_err(|e| io_err("open", ".", e))?;
        let Some(dirs) = dirs else {
            return Ok((Some(cur), name));
        };
        for component in dirs.split('/') {
            let meta = match cur.symlink_metadata(component) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => match missing {
                    Missing::Fail => return Err(FileError::NotFound(quote(path))),
                    Missing::Allow => return Ok((None, name)),
                    Missing::Create => {
                        match cur.create_dir(component) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(io_err("create a directory for", path, e)),
                        }
                        cur.symlink_metadata(component)
                            .map_err(|e| io_err("inspect", path, e))?
                    }
                },
                Err(e) => return Err(io_err("inspect", path, e)),
            };
            if meta.is_symlink() {
                return Err(FileError::NotAFile(quote(path)));
            }
            if !meta.is_dir() {
                return Err(match missing {
                    Missing::Fail => FileError::NotFound(quote(path)),
                    _ => FileError::NotAFile(quote(path)),
                });
            }
            cur = open_dir_checked(&cur, OsStr::new(component), &meta).map_err(|e| match e {
                DirOpen::Swapped => FileError::NotAFile(quote(path)),
                DirOpen::Io(e) => io_err("open a directory of", path, e),
            })?;
        }
        Ok((Some(cur), name))
    }

    /// Call `f(dir, name, path, metadata)` for every regular file (path `None` when it is
    /// not UTF-8), never following symlinks, within [`MAX_DEPTH`] and [`MAX_ENTRIES`].
    fn walk(&self, f: &mut Visit<'_>) -> Result<(), FileError> {
        let mut visited = 0usize;
        let root = self.dir.try_clone().map_err(|e| io_err("open", ".", e))?;
        walk_dir(&root, &mut Vec::new(), 0, &mut visited, f)
    }
}

/// What a walk calls for each regular file: `(dir, name, path, metadata)`, the path
/// `None` when it is not UTF-8.
type Visit<'a> = dyn FnMut(&Dir, &OsStr, Option<&str>, &Metadata) -> Result<(), FileError> + 'a;

/// Why a directory could not be entered.
enum DirOpen {
    /// What was opened is not what was inspected (swapped meanwhile).
    Swapped,
    Io(io::Error),
}

/// Open `name` in `dir` as a directory and check it is the one `meta` describes.
fn open_dir_checked(dir: &Dir, name: &OsStr, meta: &Metadata) -> Result<Dir, DirOpen> {
    let sub = dir.open_dir(name).map_err(DirOpen::Io)?;
    let opened = sub.dir_metadata().map_err(DirOpen::Io)?;
    if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err(DirOpen::Swapped);
    }
    Ok(sub)
}

/// Open the regular file `name` of `dir` without following a symlink: inspected first, and
/// what was opened must be that same file. `None` if it is missing.
fn open_entry(
    dir: &Dir,
    name: &OsStr,
    path: &str,
) -> Result<Option<(cap_std::fs::File, Metadata)>, FileError> {
    let meta = match dir.symlink_metadata(name) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("inspect", path, e)),
    };
    if !meta.is_file() {
        return Err(FileError::NotAFile(quote(path)));
    }
    let file = match dir.open(name) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path, e)),
    };
    let opened = file.metadata().map_err(|e| io_err("inspect", path, e))?;
    if !opened.is_file() || opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err(FileError::NotAFile(quote(path)));
    }
    Ok(Some((file, opened)))
}

/// SHA-256 of a regular file found by a walk (`None` if it went away or was swapped).
fn hash_entry(dir: &Dir, name: &OsStr, path: &str) -> Result<Option<[u8; 32]>, FileError> {
    let mut file = match open_entry(dir, name, path) {
        Ok(Some((file, _))) => file,
        Ok(None) | Err(FileError::NotAFile(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hasher.finalize().into()))
}

/// One directory of a walk; `prefix` is the path of `dir` as bytes (empty at the root).
fn walk_dir(
    dir: &Dir,
    prefix: &mut Vec<u8>,
    depth: usize,
    visited: &mut usize,
    f: &mut Visit<'_>,
) -> Result<(), FileError> {
    let entries = dir
        .entries()
        .map_err(|e| io_err("list", &shown(prefix), e))?;
    for entry in entries {
        if *visited >= MAX_ENTRIES {
            return Ok(());
        }
        *visited += 1;
        let entry = entry.map_err(|e| io_err("list", &shown(prefix), e))?;
        let name = entry.file_name();
        let meta = match dir.symlink_metadata(&name) {
            Ok(meta) => meta,
            // Removed since it was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("inspect", &shown(prefix), e)),
        };
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(name.as_bytes());
        let result = if meta.is_file() {
            let path = std::str::from_utf8(prefix).ok();
            f(dir, &name, path, &meta)
        } else if meta.is_dir() && depth + 1 < MAX_DEPTH {
            match open_dir_checked(dir, &name, &meta) {
                Ok(sub) => walk_dir(&sub, prefix, depth + 1, visited, f),
                // Removed or swapped since it was inspected: not part of the picture.
                Err(DirOpen::Swapped) => Ok(()),
                Err(DirOpen::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(DirOpen::Io(e)) => Err(io_err("open a directory of", &shown(prefix), e)),
            }
        } else {
            // Symlinks, special files, directories too deep.
            Ok(())
        };
        prefix.truncate(len);
        result?;
    }
    Ok(())
}

/// A walked path for messages.
fn shown(prefix: &[u8]) -> String {
    String::from_utf8_lossy(prefix).into_owned()
}

/// Bytes as JSON content: text (valid UTF-8 without NUL) as is, the rest as base64.
fn encode(bytes: Vec<u8>) -> (Encoding, String) {
    if !bytes.contains(&0) {
        match String::from_utf8(bytes) {
            Ok(text) => return (Encoding::Utf8, text),
            Err(e) => return (Encoding::Base64, STANDARD.encode(e.into_bytes())),
        }
    }
    (Encoding::Base64, STANDARD.encode(bytes))
}

/// UNIX seconds as RFC 3339 UTC ("2026-11-29T19:30:00Z").
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fresh directory under the system temp dir, removed on drop. The workspace is
    /// `<base>/a/ws`, so `../..` from it is still inside `<base>`.
    struct Temp {
        base: PathBuf,
        ws: PathBuf,
    }

    impl Temp {
        fn new() -> Temp {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).unwrap();
            let base = std::env::temp_dir().join(format!(
                "omcp-workspace-test-{:016x}",
                u64::from_le_bytes(random)
            ));
            let ws = base.join("a").join("ws");
            std::fs::create_dir_all(&ws).unwrap();
            std::fs::create_dir_all(base.join("outside")).unwrap();
            std::fs::write(base.join("outside").join("secret"), b"secret").unwrap();
            Temp { base, ws }
        }

        fn open(&self) -> Workspace {
            Workspace::open(&self.ws).unwrap()
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            // remove_dir_all removes symlinks themselves, never what they point to.
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    const LIMITS: WorkspaceLimits = WorkspaceLimits {
        max_bytes: 1000,
        max_files: 5,
        max_upload_bytes: 400,
    };

    fn why(path: &str) -> &'static str {
        match check_path(path) {
            Err(FileError::InvalidPath { why, .. }) => why,
            other => panic!("{path:?} was not refused: {other:?}"),
        }
    }

    fn text(path: &str, content: &str) -> FileIn {
        FileIn {
            path: path.into(),
            content: content.into(),
            encoding: Encoding::Utf8,
        }
    }

    #[test]
    fn path_rules() {
        assert_eq!(check_path("a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(check_path("x").unwrap(), "x");
        assert_eq!(check_path("..a/b..").unwrap(), "..a/b..");
        assert_eq!(check_path("%2e%2e.txt").unwrap(), "%2e%2e.txt");
        assert_eq!(why(""), "empty");
        assert_eq!(why(&"a".repeat(10 * 1024)), "longer than 1024 bytes");
        assert_eq!(why("a\0b"), "contains a NUL byte");
        assert_eq!(why("/etc/passwd"), "absolute (starts with '/')");
        assert_eq!(why("a\\b"), "contains a backslash");
        assert_eq!(
            why(&format!("a/{}", "b".repeat(256))),
            "has a component longer than 255 bytes"
        );
        assert_eq!(
            why("a//b"),
            "has an empty component ('//' or a trailing '/')"
        );
        assert_eq!(why("a/"), "has an empty component ('//' or a trailing '/')");
        assert_eq!(why("."), "has a '.' or '..' component");
        assert_eq!(why("../x"), "has a '.' or '..' component");
        assert_eq!(why("a/../../x"), "has a '.' or '..' component");
        assert_eq!(why("a/./b"), "has a '.' or '..' component");
        assert_eq!(why("a\nb"), "contains a control character");
        assert_eq!(why("a\x7fb"), "contains a control character");
        assert_eq!(why("%2e%2e/x"), "encoded dot-dot");
        assert_eq!(why("a/%2E%2e/x"), "encoded dot-dot");
        assert_eq!(why("%2e"), "encoded dot");
    }

    #[test]
    fn invalid_path_quotes_at_most_100_chars() {
        let err = check_path(&"é".repeat(600)).unwrap_err();
        match &err {
            FileError::InvalidPath { path, .. } => assert_eq!(path.chars().count(), 100),
            other => panic!("{other:?}"),
        }
        assert_eq!((err.code(), err.status()), ("invalid_path", 400));
    }

    #[test]
    fn codes_and_statuses() {
        let cases = [
            (
                FileError::InvalidContent("x".into()),
                "invalid_content",
                400,
            ),
            (
                FileError::TooLarge {
                    path: "x".into(),
                    size: 2,
                    max: 1,
                },
                "too_large",
                413,
            ),
            (FileError::Full("x".into()), "workspace_full", 507),
            (FileError::NotFound("x".into()), "file_not_found", 404),
            (FileError::NotAFile("x".into()), "not_a_file", 409),
            (FileError::Io("x".into()), "internal", 500),
        ];
        for (err, code, status) in cases {
            assert_eq!((err.code(), err.status()), (code, status), "{err}");
        }
    }

    #[test]
    fn file_in_json_and_decode() {
        let f: FileIn =
            serde_json::from_str(r#"{"path":"a.bin","content":"AAEC","encoding":"base64"}"#)
                .unwrap();
        assert_eq!(f.decode().unwrap(), vec![0, 1, 2]);
        let f: FileIn = serde_json::from_str(r#"{"path":"a.txt","content":"hé"}"#).unwrap();
        assert_eq!(f.encoding, Encoding::Utf8);
        assert_eq!(f.decode().unwrap(), "hé".as_bytes());
        let f: FileIn =
            serde_json::from_str(r#"{"path":"a","content":"x","encoding":"utf-8"}"#).unwrap();
        assert_eq!(f.encoding, Encoding::Utf8);
        assert!(
            serde_json::from_str::<FileIn>(r#"{"path":"a","content":"x","encoding":"hex"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<FileIn>(r#"{"path":"a","content":"x","mode":1}"#).is_err());
        let bad = FileIn {
            path: "a".into(),
            content: "!!!".into(),
            encoding: Encoding::Base64,
        };
        assert_eq!(bad.decode().unwrap_err().code(), "invalid_content");
        let out = FileOut {
            path: "a".into(),
            size: 1,
            encoding: Encoding::Base64,
            content: None,
            omitted: true,
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"path":"a","size":1,"encoding":"base64","omitted":true}"#
        );
        let out = FileOut {
            path: "a".into(),
            size: 1,
            encoding: Encoding::Utf8,
            content: Some("x".into()),
            omitted: false,
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"path":"a","size":1,"encoding":"utf-8","content":"x"}"#
        );
    }

    #[test]
    fn rfc3339_by_hand() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_980_600), "2026-11-29T19:30:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn write_read_roundtrip() {
        let t = Temp::new();
        let ws = t.open();
        assert_eq!(ws.root(), t.ws.as_path());
        ws.write("dir/sub/a.txt", b"hello", &LIMITS).unwrap();
        assert_eq!(ws.read("dir/sub/a.txt", 100).unwrap(), b"hello");
        assert_eq!(std::fs::read(t.ws.join("dir/sub/a.txt")).unwrap(), b"hello");
        assert!(matches!(
            ws.read("dir/sub/a.txt", 4),
            Err(FileError::TooLarge {
                size: 5,
                max: 4,
                ..
            })
        ));
        assert!(matches!(ws.read("nope", 100), Err(FileError::NotFound(_))));
        assert!(matches!(
            ws.read("nope/x", 100),
            Err(FileError::NotFound(_))
        ));
        assert!(matches!(ws.read("dir", 100), Err(FileError::NotAFile(_))));
        assert!(matches!(
            ws.read("../x", 100),
            Err(FileError::InvalidPath { .. })
        ));
        assert_eq!(ws.usage().unwrap(), (5, 1));
        let list = ws.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].path.as_str(), list[0].size), ("dir/sub/a.txt", 5));
        assert_eq!(list[0].modified.len(), "2026-11-29T19:30:00Z".len());
        // A write through a file, or onto a directory, is refused.
        assert!(matches!(
            ws.write("dir/sub/a.txt/b", b"x", &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        assert!(matches!(
            ws.write("dir/sub", b"x", &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        // Delete.
        assert!(matches!(ws.delete("dir"), Err(FileError::NotAFile(_))));
        assert!(matches!(
            ws.delete("dir/missing"),
            Err(FileError::NotFound(_))
        ));
        ws.delete("dir/sub/a.txt").unwrap();
        assert!(matches!(
            ws.read("dir/sub/a.txt", 100),
            Err(FileError::NotFound(_))
        ));
        assert_eq!(ws.usage().unwrap(), (0, 0));
    }

    #[test]
    fn atomic_replace() {
        let t = Temp::new();
        let ws = t.open();
        ws.write("a.txt", b"first version", &LIMITS).unwrap();
        let before = std::fs::metadata(t.ws.join("a.txt")).unwrap();
        ws.write("a.txt", b"second", &LIMITS).unwrap();
        assert_eq!(ws.read("a.txt", 100).unwrap(), b"second");
        let after = std::fs::metadata(t.ws.join("a.txt")).unwrap();
        // A new inode renamed over the old one, and no temporary file left behind.
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&before),
            std::os::unix::fs::MetadataExt::ino(&after)
        );
        let names: Vec<_> = std::fs::read_dir(&t.ws)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
        assert_eq!(ws.usage().unwrap(), (6, 1));
    }

    #[test]
    fn quota_refusal_writes_nothing() {
        let t = Temp::new();
        let ws = t.open();
        ws.write("big", &[b'x'; 400], &LIMITS).unwrap();
        ws.write("big2", &[b'x'; 400], &LIMITS).unwrap();
        // Bytes: 800 + 300 > 1000.
        let err = ws.write("more", &[b'x'; 300], &LIMITS).unwrap_err();
        assert_eq!((err.code(), err.status()), ("workspace_full", 507), "{err}");
        assert!(!t.ws.join("more").exists());
        // Replacing counts the old size as freed: 400 + 400 - 400 + 300 fits.
        ws.write("big", &[b'y'; 300], &LIMITS).unwrap();
        assert_eq!(ws.usage().unwrap(), (700, 2));
        // Files: at most 5.
        for name in ["c", "d", "e"] {
            ws.write(name, b"1", &LIMITS).unwrap();
        }
        let err = ws.write("f", b"1", &LIMITS).unwrap_err();
        assert!(matches!(err, FileError::Full(_)), "{err}");
        assert!(!t.ws.join("f").exists());
        // A replacement adds no file.
        ws.write("c", b"22", &LIMITS).unwrap();
        assert_eq!(ws.usage().unwrap(), (704, 5));
        // Upload limit.
        let err = ws.write("g", &[0; 401], &LIMITS).unwrap_err();
        assert!(
            matches!(
                err,
                FileError::TooLarge {
                    size: 401,
                    max: 400,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.status(), 413);
        assert!(!t.ws.join("g").exists());
    }

    #[test]
    fn write_all_is_all_or_nothing() {
        let t = Temp::new();
        let ws = t.open();
        let files = [
            text("a.txt", "one"),
            FileIn {
                path: "b/c.bin".into(),
                content: STANDARD.encode([0u8, 1, 2]),
                encoding: Encoding::Base64,
            },
        ];
        ws.write_all(&files, &LIMITS).unwrap();
        assert_eq!(ws.read("b/c.bin", 10).unwrap(), vec![0, 1, 2]);
        assert_eq!(ws.read("a.txt", 10).unwrap(), b"one");

        let refused: [&[FileIn]; 6] = [
            // A bad path last.
            &[text("new1", "x"), text("../x", "y")],
            // Bad base64 last.
            &[
                text("new1", "x"),
                FileIn {
                    path: "new2".into(),
                    content: "%%".into(),
                    encoding: Encoding::Base64,
                },
            ],
            // Too large.
            &[text("new1", "x"), text("new2", &"z".repeat(401))],
            // Over the byte budget together, though each fits.
            &[
                text("new1", &"x".repeat(400)),
                text("new2", &"x".repeat(400)),
                text("new3", &"x".repeat(400)),
            ],
            // Over the file count (2 stored + 4 new > 5).
            &[
                text("new1", "x"),
                text("new2", "x"),
                text("new3", "x"),
                text("new4", "x"),
            ],
            // A path through a file of the same request.
            &[text("new1", "x"), text("new1/y", "x")],
        ];
        for files in refused {
            let err = ws.write_all(files, &LIMITS).unwrap_err();
            assert_ne!(err.code(), "internal", "{err}");
            assert!(!t.ws.join("new1").exists(), "{err}");
            assert!(!t.ws.join("new2").exists(), "{err}");
        }
        // Through an existing file.
        let err = ws
            .write_all(&[text("new1", "x"), text("a.txt/z", "x")], &LIMITS)
            .unwrap_err();
        assert!(matches!(err, FileError::NotAFile(_)), "{err}");
        assert!(!t.ws.join("new1").exists());
        // Twice the same path.
        let err = ws
            .write_all(&[text("new1", "x"), text("new1", "y")], &LIMITS)
            .unwrap_err();
        assert!(matches!(err, FileError::InvalidPath { .. }), "{err}");
        assert!(!t.ws.join("new1").exists());
        assert_eq!(ws.usage().unwrap(), (6, 2));
    }

    #[test]
    fn symlinks_never_lead_outside() {
        let t = Temp::new();
        let ws = t.open();
        ws.write("real.txt", b"mine", &LIMITS).unwrap();
        // What a guest could leave behind.
        symlink("/etc", t.ws.join("link")).unwrap();
        symlink("../..", t.ws.join("link2")).unwrap();
        symlink("/etc/passwd", t.ws.join("f")).unwrap();
        symlink(t.base.join("outside"), t.ws.join("out")).unwrap();
        symlink("real.txt", t.ws.join("inner")).unwrap();

        assert!(matches!(
            ws.read("link/passwd", 1 << 20),
            Err(FileError::NotAFile(_))
        ));
        assert!(matches!(ws.read("f", 1 << 20), Err(FileError::NotAFile(_))));
        assert!(matches!(
            ws.read("link2/outside/secret", 1 << 20),
            Err(FileError::NotAFile(_))
        ));
        assert!(matches!(
            ws.read("out/secret", 1 << 20),
            Err(FileError::NotAFile(_))
        ));
        // Not even a symlink that stays inside is followed.
        assert!(matches!(
            ws.read("inner", 1 << 20),
            Err(FileError::NotAFile(_))
        ));

        let marker = format!(
            "omcp-workspace-test-{}",
            t.base.file_name().unwrap().to_string_lossy()
        );
        assert!(matches!(
            ws.write(&format!("link/{marker}"), b"x", &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        assert!(!Path::new("/etc").join(&marker).exists());
        assert!(matches!(
            ws.write("link2/x", b"x", &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        assert!(!t.base.join("x").exists());
        assert!(matches!(
            ws.write("out/secret", b"x", &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        assert!(matches!(
            ws.write("f", b"x", &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        assert!(matches!(
            ws.write_all(&[text("link2/y", "x")], &LIMITS),
            Err(FileError::NotAFile(_))
        ));
        assert!(!t.base.join("y").exists());
        assert_eq!(
            std::fs::read(t.base.join("outside/secret")).unwrap(),
            b"secret"
        );

        // Listing and usage skip symlinks.
        let list = ws.list().unwrap();
        assert_eq!(
            list.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            vec!["real.txt"]
        );
        assert_eq!(ws.usage().unwrap(), (4, 1));

        // Deleting a symlink removes the link, not its target.
        ws.delete("out").unwrap();
        assert!(t.base.join("outside/secret").exists());
        assert!(matches!(
            ws.delete("out/secret"),
            Err(FileError::NotFound(_))
        ));
        ws.delete("link2").unwrap();
        assert!(t.base.join("outside/secret").exists());
    }

    #[test]
    fn changes_reports_new_and_modified_only() {
        let t = Temp::new();
        let ws = t.open();
        ws.write("same.txt", b"unchanged", &LIMITS).unwrap();
        ws.write("mod.txt", b"old", &LIMITS).unwrap();
        let before = ws.fingerprint().unwrap();
        assert_eq!(before.len(), 2);

        std::fs::write(t.ws.join("mod.txt"), b"new").unwrap(); // same size, new content
        std::fs::create_dir(t.ws.join("out")).unwrap();
        std::fs::write(t.ws.join("out/bin.dat"), [0u8, 159, 146, 150]).unwrap();
        std::fs::write(t.ws.join("out/z.txt"), "é".repeat(10)).unwrap();
        symlink("/etc/passwd", t.ws.join("pw")).unwrap();
        // Touched but not changed.
        std::fs::write(t.ws.join("same.txt"), b"unchanged").unwrap();

        let changes = ws.changes(&before, 1 << 20).unwrap();
        assert_eq!(
            changes,
            vec![
                FileOut {
                    path: "mod.txt".into(),
                    size: 3,
                    encoding: Encoding::Utf8,
                    content: Some("new".into()),
                    omitted: false
                },
                FileOut {
                    path: "out/bin.dat".into(),
                    size: 4,
                    encoding: Encoding::Base64,
                    content: Some(STANDARD.encode([0u8, 159, 146, 150])),
                    omitted: false,
                },
                FileOut {
                    path: "out/z.txt".into(),
                    size: 20,
                    encoding: Encoding::Utf8,
                    content: Some("é".repeat(10)),
                    omitted: false,
                },
            ]
        );

        // A budget of 12: "new" (3) and the base64 of bin.dat (8) fit, z.txt (20) does not.
        let changes = ws.changes(&before, 12).unwrap();
        assert_eq!(changes.len(), 3);
        assert!(!changes[0].omitted && !changes[1].omitted);
        assert_eq!(
            changes[2],
            FileOut {
                path: "out/z.txt".into(),
                size: 20,
                encoding: Encoding::Utf8,
                content: None,
                omitted: true
            }
        );
        // Nothing fits: everything omitted, encodings still told.
        let changes = ws.changes(&before, 0).unwrap();
        assert!(changes.iter().all(|c| c.omitted && c.content.is_none()));
        assert_eq!(changes[1].encoding, Encoding::Base64);
        assert_eq!(changes[2].encoding, Encoding::Utf8);
        // Against an empty fingerprint every file is new.
        assert_eq!(
            ws.changes(&Fingerprint::default(), 1 << 20).unwrap().len(),
            4
        );
    }
}
