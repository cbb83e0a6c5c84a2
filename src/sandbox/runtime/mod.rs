//! A runtime: one pinned CPython build and everything that says how to host it. Its files
//! and their hashes, the host directories it is granted (read-only, through cap-std), the
//! environment it starts with, how a cell enters it (a WASI command's `_start`, or a
//! reactor's `turn`), what its snapshot imports ahead of time, and the engine settings it
//! needs. One file per runtime (`stdlib.rs`, `scientific.rs`) says all of that as data;
//! the engine, the pool, the limits and the outcome are shared, so a second runtime adds
//! a description, not branches across the sandbox.

mod scientific;
mod stdlib;

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::error::Context;
use wasmtime::{Result, bail};

/// Names a request may use, in the order `/healthz` lists them.
pub const NAMES: [&str; 2] = [stdlib::NAME, scientific::NAME];

/// A file of a runtime, pinned by size and SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    /// Path below the runtime's directory (the stdlib build is a single file).
    pub path: &'static str,
    pub size: u64,
    pub sha256: &'static str,
}

/// How a cell enters the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Entry {
    /// A WASI command: `_start` runs CPython's start-up and then the driver (`-c`); a
    /// snapshot is entered through the driver function's `tp_call` slot.
    Command,
    /// A WASI reactor: `_initialize` starts the interpreter, and `turn(ptr, len)` runs a
    /// piece of source in `__main__` (the driver; in a snapshot, a call into it).
    Reactor,
}

/// A read-only host directory the guest sees at `guest`.
#[derive(Debug, Clone)]
pub struct Grant {
    pub host: PathBuf,
    pub guest: &'static str,
}

/// Engine settings a runtime needs (each runtime gets engines of its own).
#[derive(Debug, Clone, Copy)]
pub struct EngineProfile {
    /// Most wasm stack a run may use.
    pub max_wasm_stack: usize,
    /// Elements of the function table.
    pub table_elements: usize,
    /// Bytes of per-instance metadata (the vmctx grows with exported and tabled functions).
    pub max_instance_size: usize,
}

/// A runtime as found on disk and verified: what the sandbox needs to load and run it.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub name: &'static str,
    pub python_version: &'static str,
    /// python.wasm, read and verified.
    pub wasm: Vec<u8>,
    pub wasm_path: PathBuf,
    pub sha256: String,
    /// SHA-256 of every other pinned file (and of matplotlib's data tree), for /healthz.
    pub other_hashes: Vec<(String, String)>,
    pub entry: Entry,
    /// WASI argv (the driver adds nothing to it for a reactor).
    pub argv0: &'static str,
    pub env: Vec<(&'static str, &'static str)>,
    /// Read-only directories, in the order they are preopened (the snapshot records the
    /// descriptor numbers, so every run must preopen the same list in the same order).
    pub grants: Vec<Grant>,
    /// Each run gets a fresh, empty, writable directory at this guest path (`None`: none).
    pub scratch: Option<&'static str>,
    /// Python run once in the snapshot after the driver is built: the imports every run
    /// then finds done.
    pub warm: &'static str,
    /// Packages importable in the guest, with versions (from the build's manifest).
    pub packages: Vec<(String, String)>,
    pub engine: EngineProfile,
    /// The least memory limit it is useful under: its snapshot's memory plus room to work.
    pub min_memory_mb: u64,
}

/// Where to look for runtimes when no path is given.
pub struct Search {
    /// `--python-wasm`: the stdlib build's file.
    pub stdlib: Option<PathBuf>,
    /// `--scientific-dir`: the scientific build's directory.
    pub scientific: Option<PathBuf>,
    /// Which runtimes to load (`--runtimes`); empty means every one that is present.
    pub only: Vec<String>,
}

/// Find, read and verify every runtime that is present (or asked for). A runtime given by
/// an explicit path or named in `only` must load; others are skipped when absent.
pub fn discover(search: &Search) -> Result<Vec<Runtime>> {
    for name in &search.only {
        if !NAMES.contains(&name.as_str()) {
            bail!(
                "unknown runtime {name:?} in --runtimes; the runtimes are: {}",
                NAMES.join(", ")
            );
        }
    }
    let wanted = |name: &str| search.only.is_empty() || search.only.iter().any(|n| n == name);
    let mut found = Vec::new();
    if wanted(stdlib::NAME) {
        let required = search.stdlib.is_some() || !search.only.is_empty();
        match stdlib::locate(search.stdlib.as_deref()) {
            Ok(path) => found.push(stdlib::load(&path)?),
            Err(err) if required => return Err(err),
            Err(err) => tracing::info!("runtime {:?} not loaded: {err:#}", stdlib::NAME),
        }
    }
    if wanted(scientific::NAME) {
        let required = search.scientific.is_some() || !search.only.is_empty();
        match scientific::locate(search.scientific.as_deref()) {
            Ok(dir) => found.push(scientific::load(&dir)?),
            Err(err) if required => return Err(err),
            Err(err) => tracing::info!("runtime {:?} not loaded: {err:#}", scientific::NAME),
        }
    }
    if found.is_empty() {
        bail!(
            "no Python runtime found; run ./fetch-python.sh in the repository (or pass \
             --python-wasm PATH / --scientific-dir DIR)"
        );
    }
    Ok(found)
}

/// Directories that may hold `wasm/` contents: `./wasm`, `wasm/` beside any ancestor of
/// the executable (so `target/release/omcp-sandbox` finds the repository's copy), and the
/// image's system path.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("wasm")];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            dirs.push(dir.join("wasm"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/share/omcp-sandbox"));
    dirs
}

/// Read `path` and check it is exactly `pin`: the hash, not the path, is what we trust.
fn read_pinned(path: &Path, pin: &Pinned) -> Result<(Vec<u8>, String)> {
    let bytes = fs::read(path).with_context(|| format!("failed to read {path:?}"))?;
    if bytes.len() as u64 != pin.size {
        bail!(
            "{path:?} is {} bytes, expected {}: a partial or different file; \
             run ./fetch-python.sh to replace it",
            bytes.len(),
            pin.size
        );
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if sha256 != pin.sha256 {
        bail!(
            "{path:?} has SHA-256 {sha256}, expected {}; run ./fetch-python.sh to replace it",
            pin.sha256
        );
    }
    Ok((bytes, sha256))
}

/// SHA-256 of a directory tree, the way fetch-python.sh pins it: one line
/// `<sha256 hex>  <relative path>\n` per regular file, sorted by path bytes, hashed
/// together. Anything but plain files and directories (a symlink) is refused.
fn tree_sha256(root: &Path) -> Result<(String, usize)> {
    fn walk(root: &Path, dir: &Path, lines: &mut Vec<(String, String)>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("failed to list {dir:?}"))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &path, lines)?;
            } else if kind.is_file() {
                let relative = path
                    .strip_prefix(root)?
                    .to_str()
                    .with_context(|| format!("{path:?} is not UTF-8"))?
                    .to_string();
                let bytes = fs::read(&path).with_context(|| format!("failed to read {path:?}"))?;
                lines.push((relative, hex::encode(Sha256::digest(&bytes))));
            } else {
                bail!("{path:?} is neither a file nor a directory");
            }
        }
        Ok(())
    }
    let mut lines = Vec::new();
    walk(root, root, &mut lines)?;
    lines.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Sha256::new();
    for (path, sha) in &lines {
        hasher.update(format!("{sha}  {path}\n"));
    }
    Ok((hex::encode(hasher.finalize()), lines.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_matches_sha256sum_listing() {
        let dir = std::env::temp_dir().join(format!("omcp-tree-{}", std::process::id()));
        fs::create_dir_all(dir.join("b")).unwrap();
        fs::write(dir.join("b/z.txt"), b"z").unwrap();
        fs::write(dir.join("a.txt"), b"a").unwrap();
        // `find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`
        let listing = format!(
            "{}  a.txt\n{}  b/z.txt\n",
            hex::encode(Sha256::digest(b"a")),
            hex::encode(Sha256::digest(b"z"))
        );
        let expected = hex::encode(Sha256::digest(listing.as_bytes()));
        assert_eq!(tree_sha256(&dir).unwrap(), (expected, 2));
        std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
        assert!(
            tree_sha256(&dir).is_err(),
            "a symlink in the tree is refused"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
