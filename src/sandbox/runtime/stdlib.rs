//! The `stdlib` runtime: VMware Wasm Labs' CPython 3.12.0 for WASI, a single WASI command
//! with the standard library inside the module's own memory image (wasi-vfs). It needs no
//! host directory at all, which makes it the smallest grant we offer: nothing of the host
//! is visible, not even a scratch directory.

use std::path::{Path, PathBuf};

use wasmtime::{Result, bail};

use super::{EngineProfile, Entry, Pinned, Runtime, read_pinned, search_dirs};

pub const NAME: &str = "stdlib";

/// The file fetch-python.sh writes under `wasm/`, pinned: python/3.12.0+20231211-040d5a6.
pub const WASM: Pinned = Pinned {
    path: "python-3.12.0.wasm",
    size: 26_267_204,
    sha256: "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
};

/// Imported once in the snapshot: what the run path and common programs use.
const WARM: &str = "\
import collections, datetime, decimal, fractions, functools, itertools, json, linecache
import math, random, re, statistics, string, textwrap, traceback, typing
";

/// An explicit path wins; otherwise the usual places (see `search_dirs`).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!(
            "python runtime not found at {path:?} (from --python-wasm / OMCP_PYTHON_WASM); \
             run ./fetch-python.sh --runtime stdlib --dest {path:?} to fetch it"
        );
    }
    let candidates: Vec<PathBuf> = search_dirs().iter().map(|d| d.join(WASM.path)).collect();
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => bail!(
            "python runtime not found at {:?}; run ./fetch-python.sh in the repository \
             (or pass --python-wasm PATH / set OMCP_PYTHON_WASM)",
            candidates[0]
        ),
    }
}

pub fn load(path: &Path) -> Result<Runtime> {
    let (wasm, sha256) = read_pinned(path, &WASM)?;
    Ok(Runtime {
        name: NAME,
        python_version: "3.12.0",
        wasm,
        wasm_path: path.to_path_buf(),
        sha256,
        other_hashes: Vec::new(),
        entry: Entry::Command,
        // Isolated mode (no environment, no user site), unbuffered stdio so output written
        // before a limit stops the run is not lost in a buffer, UTF-8 mode.
        argv0: "python",
        env: Vec::new(),
        grants: Vec::new(),
        scratch: Some("/tmp"),
        warm: WARM,
        packages: Vec::new(),
        // The snapshot's memory is 20 MiB.
        min_memory_mb: 32,
        engine: EngineProfile {
            // Stays well below the fiber stack: overflowing the host part of a fiber stack
            // would abort the whole process. CPython 3.12 raises RecursionError long before.
            max_wasm_stack: 1 << 20,
            // CPython's function table has about 10k entries.
            table_elements: 1 << 16,
            max_instance_size: 1 << 20,
        },
    })
}
