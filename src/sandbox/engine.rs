//! The wasmtime engines: their configuration, the compiled modules and their on-disk cache,
//! and the epoch ticker.
//!
//! Compiling python.wasm with Cranelift takes 5-8 s for the stdlib build and about two
//! minutes for the scientific one, so it happens at most once per (wasm hash, wasmtime
//! version, engine settings): the artifact is cached on disk and later starts deserialize
//! it (mmap, milliseconds). Nothing here runs per request.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::error::Context;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Result,
};

use super::runtime::EngineProfile;
use crate::limits::Limits;

pub const WASMTIME_VERSION: &str = "48.0.8";

/// How often the epoch advances. Each tick is a point where a running guest yields to the
/// async runtime, so it bounds how long one guest can hold a worker thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Written bytes of each pooled memory (and table) kept mapped between runs and restored
/// from the image by copying, lowest addresses first; the rest is returned to the OS.
/// A `print(1+1)` from the snapshot writes 1-2 MiB (0 page faults per run at 2 MiB, ~56
/// at 1 MiB). Every kept page is copied back after every later run (the kernel reports
/// a page as written for as long as it stays mapped), so this also bounds what one heavy
/// run can add to all later resets (~0.4 ms at 4 MiB) and the idle RSS of a slot.
const KEEP_RESIDENT: usize = 4 << 20;

/// A cached artifact that no start has loaded for this long is deleted by the next start
/// (see `prune_cache`). Each artifact is ~30 MB and every wasmtime, driver or settings change
/// makes new ones, so without this the cache grows by ~120 MB per upgrade, forever.
pub const CACHE_UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How an engine's instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Pristine runs: a pool of slots reset to the snapshot image after every run.
    Pooled,
    /// Sessions: each instance maps its own memory and keeps it for as long as the session
    /// does. The pool's reset would undo the pages a session maps over its memory (see
    /// `overlay`), and a session would hold a pool slot while idle.
    OnDemand,
}

/// The engine configuration; `metered` adds fuel. Fuel and epochs both change generated
/// code, so they are part of the compiled-module cache key (via
/// `precompile_compatibility_hash`), and a sandbox keeps one engine of each kind. The
/// allocation does not change the code: both kinds load the same compiled artifacts.
pub fn new_engine(
    limits: &Limits,
    metered: bool,
    profile: &EngineProfile,
    allocation: Allocation,
) -> Result<Engine> {
    let mut config = Config::new();
    // Instances come from a pool of pre-reserved slots whose memories are reset to the
    // module's copy-on-write image after each run, instead of being mapped and populated
    // anew: this is most of what makes a fresh interpreter cheap. The semaphore admits at
    // most `max_concurrency` runs; the extra slots cover the start-up self-test and a store
    // still being dropped while the next run starts.
    let slots = u32::try_from(limits.max_concurrency + 2).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(slots)
        // A run of a module that throws wasm exceptions also has a GC heap (the exception
        // objects live there), which takes a memory of its own.
        .total_memories(slots.saturating_mul(2))
        .total_gc_heaps(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_core_instance_size(profile.max_instance_size)
        // The memory limit is enforced (and reported) by the store limiter; the pool only
        // needs room for the largest memory a run may have.
        .max_memory_size(
            usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        )
        .table_elements(profile.table_elements)
        // Keep the pages a run dirtied mapped and restore only those from the image
        // (found with Linux's PAGEMAP_SCAN; where it is missing, wasmtime falls back to
        // dropping the pages): the next run then takes no page faults there.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(2 << 20);
    config.allocation_strategy(match allocation {
        Allocation::Pooled => InstanceAllocationStrategy::Pooling(pool),
        Allocation::OnDemand => InstanceAllocationStrategy::OnDemand,
    });
    // Fuel bounds instructions independently of how loaded the machine is, but the counting
    // costs ~15-25% on CPU-bound code: only runs that ask for it (or a server started with
    // --fuel) use the metered engine.
    config.consume_fuel(metered);
    // Epochs let a CPU-bound guest yield every tick (see EPOCH_TICK) so the async timeout
    // around each run can fire and other requests keep being served.
    config.epoch_interruption(true);
    // Wasm backtraces are captured on every trap; hostile code traps often and nobody
    // reads the frames of a module without a name section.
    config.wasm_backtrace_max_frames(None);
    // The wasm stack stays well below the fiber stack: overflowing the host part of a fiber
    // stack would abort the whole process, so the fiber has 1 MiB more than wasm may use.
    config.max_wasm_stack(profile.max_wasm_stack);
    config.async_stack_size((profile.max_wasm_stack + (1 << 20)).max(2 << 20));
    // The scientific build's C++ (numpy, scipy...) throws wasm exceptions.
    config.wasm_exceptions(true);
    Engine::new(&config).context("failed to create the wasmtime engine")
}

/// Whether the compiled module came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleSource {
    Cache,
    Compiled,
}

/// Load the compiled module from `cache_dir` or compile it (once) and store it there.
pub fn load_module(
    engine: &Engine,
    wasm: &[u8],
    sha256: &str,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Module, ModuleSource)> {
    let name = cache_file_name(engine, "python", sha256);
    let (module, _, source) = load_cached(engine, cache_dir, &name, || {
        Ok((compile(engine, wasm, path)?, Vec::new()))
    })?;
    Ok((module, source))
}

/// A compiled artifact `name` (plus a small sidecar of metadata) from `cache_dir`, or made
/// by `create` and stored there. Without a usable cache directory, `create` runs every time.
pub fn load_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    name: &str,
    create: impl FnOnce() -> Result<(Module, Vec<u8>)>,
) -> Result<(Module, Vec<u8>, ModuleSource)> {
    let Some(dir) = cache_dir else {
        let (module, meta) = create()?;
        return Ok((module, meta, ModuleSource::Compiled));
    };
    let path = dir.join(name);
    if let Some((module, meta)) = try_load(engine, &path) {
        return Ok((module, meta, ModuleSource::Cache));
    }
    if let Err(err) = fs::create_dir_all(dir) {
        tracing::warn!("compile cache {dir:?} unusable ({err}); compiling without it");
        let (module, meta) = create()?;
        return Ok((module, meta, ModuleSource::Compiled));
    }
    // Several processes starting at once (tests, replicas) would each spend seconds of CPU
    // compiling the same thing: the first takes the lock, the others wait and then load.
    let lock = fs::File::create(dir.join(".compile.lock"))
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|err| tracing::warn!("cannot lock compile cache {dir:?}: {err}"))
        .ok();
    if let Some((module, meta)) = try_load(engine, &path) {
        return Ok((module, meta, ModuleSource::Cache));
    }
    let (module, meta) = create()?;
    if let Err(err) = store_artifact(&module, &meta, &path) {
        tracing::warn!("could not write compile cache {path:?}: {err:#}");
    }
    drop(lock);
    Ok((module, meta, ModuleSource::Compiled))
}

fn compile(engine: &Engine, wasm: &[u8], path: &Path) -> Result<Module> {
    let started = Instant::now();
    tracing::info!("compiling {path:?} (happens once per wasmtime version and settings)");
    let module =
        Module::from_binary(engine, wasm).with_context(|| format!("failed to compile {path:?}"))?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compiled python.wasm"
    );
    Ok(module)
}

fn meta_path(path: &Path) -> PathBuf {
    path.with_extension("meta")
}

fn try_load(engine: &Engine, path: &Path) -> Option<(Module, Vec<u8>)> {
    // The sidecar is written before the module, so a module without one is incomplete.
    let meta = fs::read(meta_path(path)).ok()?;
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is one this program serialized with an engine of the same
    // compatibility hash (it is in the file name) into the operator's own cache directory.
    // wasmtime still checks the header and refuses artifacts from other versions/settings.
    match unsafe { Module::deserialize_file(engine, path) } {
        Ok(module) => {
            // The mtime says when an artifact was last used, for `prune_cache` (in every
            // process sharing the directory, whatever its version). A read-only cache (a
            // baked image) cannot be touched and is never pruned either.
            let _ = fs::File::options()
                .write(true)
                .open(path)
                .and_then(|file| file.set_modified(SystemTime::now()));
            Some((module, meta))
        }
        Err(err) => {
            tracing::warn!("ignoring unusable compile cache {path:?}: {err:#}");
            None
        }
    }
}

fn store_artifact(module: &Module, meta: &[u8], path: &Path) -> Result<()> {
    fs::write(meta_path(path), meta).with_context(|| format!("failed to write {path:?}.meta"))?;
    let bytes = module.serialize()?;
    // Write then rename, so a concurrent reader never maps a half-written file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp).with_context(|| format!("failed to create {tmp:?}"))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("failed to rename {tmp:?} to {path:?}"))?;
    Ok(())
}

/// The changes to wasmtime's code generation in `vendor/` (their README says what and why).
/// Bump it when they change, so cached machine code from before is compiled again.
const CODEGEN_PATCHES: &str = "leaf-functions-skip-epoch-entry-check/1";

/// `{kind}-{content hash}-wasmtime{version}-{engine settings hash}.cwasm`: a change to the
/// input or to any engine setting that affects code generation picks another file.
pub fn cache_file_name(engine: &Engine, kind: &str, content_sha256: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // wasmtime's own compatibility check sees version 48.0.8 either way; this keeps an
    // artifact compiled without the vendored translator change from being reused.
    CODEGEN_PATCHES.hash(&mut hasher);
    format!(
        "{kind}-{}-wasmtime{WASMTIME_VERSION}-{:016x}.cwasm",
        &content_sha256[..16],
        hasher.finish()
    )
}

/// Delete what this program left in `dir` and no start has used for `unused_for`: compiled
/// modules and snapshots of other python.wasm builds, wasmtime versions or settings, their
/// sidecars, and temporaries of interrupted writes. Only names this program writes
/// (`python-*` and `snapshot-*`) are considered, so a cache directory shared with other
/// files is safe. Returns (files deleted, bytes freed); failures are logged, never fatal.
pub fn prune_cache(dir: &Path, unused_for: Duration) -> (usize, u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, 0);
    };
    let now = SystemTime::now();
    let unused = |path: &Path| {
        let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
        Some(now.duration_since(modified).unwrap_or_default())
    };
    // Decide for every file before deleting any: a sidecar's fate depends on its module's.
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.starts_with("python-") || name.starts_with("snapshot-");
        let artifact = name.ends_with(".cwasm") || name.ends_with(".meta") || name.contains(".tmp");
        if !(ours && artifact) {
            continue;
        }
        let path = entry.path();
        // An artifact's age is its module's (the sidecar is written first and never
        // touched); a sidecar without a module, or a temporary, goes by its own.
        let module = path.with_extension("cwasm");
        let age = match name.ends_with(".meta") && module.is_file() {
            true => unused(&module),
            false => unused(&path),
        };
        if age.is_some_and(|age| age >= unused_for) {
            stale.push(path);
        }
    }
    let (mut files, mut bytes) = (0, 0);
    for path in stale {
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {
                files += 1;
                bytes += size;
            }
            Err(err) => tracing::warn!("could not prune {path:?} from the compile cache: {err}"),
        }
    }
    if files > 0 {
        tracing::info!(
            files,
            mb = bytes >> 20,
            "pruned compile-cache files no start had used for {} days",
            unused_for.as_secs() / 86_400
        );
    }
    (files, bytes)
}

/// The default cache directory: `$XDG_CACHE_HOME/omcp-sandbox` or `~/.cache/omcp-sandbox`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("omcp-sandbox"))
}

/// Advance the engine's epoch forever on a plain thread. A tokio task would itself be
/// starved by the guests it is meant to interrupt when the runtime is saturated.
pub fn spawn_epoch_ticker(engine: Engine) {
    std::thread::Builder::new()
        .name("omcp-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("failed to spawn the epoch ticker thread");
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction,
        TypeSection, ValType,
    };

    #[test]
    fn prune_cache_deletes_only_our_long_unused_files() {
        let dir = std::env::temp_dir().join(format!("omcp-prune-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(40 * 24 * 60 * 60);
        let file = |name: &str, modified: SystemTime| {
            fs::write(dir.join(name), b"x").unwrap();
            let f = fs::File::options()
                .write(true)
                .open(dir.join(name))
                .unwrap();
            f.set_modified(modified).unwrap();
        };
        // An old artifact whose sidecar is new: the module's age decides for both.
        file("python-old.meta", SystemTime::now());
        file("python-old.cwasm", long_ago);
        file("snapshot-old.tmp123", long_ago);
        file("snapshot-orphan.meta", long_ago);
        // Used recently (by this or another version): kept.
        file("python-new.cwasm", SystemTime::now());
        file("python-new.meta", long_ago);
        // Not ours: kept however old.
        file("notes.txt", long_ago);
        file(".compile.lock", long_ago);
        file("python-3.12.0.wasm", long_ago);

        assert_eq!(prune_cache(&dir, CACHE_UNUSED_FOR), (4, 4));
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".compile.lock",
                "notes.txt",
                "python-3.12.0.wasm",
                "python-new.cwasm",
                "python-new.meta"
            ]
        );
        assert_eq!(prune_cache(&dir, CACHE_UNUSED_FOR), (0, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A module of three `() -> i32` functions: `leaf` (straight-line, one forward branch),
    /// `caller` (calls `leaf`) and `looper` (has a loop, returns at once).
    fn three_functions() -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], [ValType::I32]);
        let mut funcs = FunctionSection::new();
        let mut exports = ExportSection::new();
        for (index, name) in ["leaf", "caller", "looper"].into_iter().enumerate() {
            funcs.function(0);
            exports.export(name, ExportKind::Func, index as u32);
        }
        let mut code = CodeSection::new();
        let mut leaf = Function::new([]);
        leaf.instruction(&Instruction::Block(BlockType::Empty))
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::BrIf(0))
            .instruction(&Instruction::End)
            .instruction(&Instruction::I32Const(7))
            .instruction(&Instruction::End);
        code.function(&leaf);
        let mut caller = Function::new([]);
        caller
            .instruction(&Instruction::Call(0))
            .instruction(&Instruction::End);
        code.function(&caller);
        let mut looper = Function::new([]);
        looper
            .instruction(&Instruction::Loop(BlockType::Empty))
            .instruction(&Instruction::End)
            .instruction(&Instruction::I32Const(7))
            .instruction(&Instruction::End);
        code.function(&looper);
        let mut module = wasm_encoder::Module::new();
        module
            .section(&types)
            .section(&funcs)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    /// The vendored translator change (vendor/README.md): with the epoch deadline already
    /// passed, a straight-line leaf still runs (it has no check of its own), while a function
    /// that calls or loops is interrupted at its entry. If the patch is lost the leaf traps;
    /// if it went too far the others would return.
    #[tokio::test]
    async fn only_straight_line_leaf_functions_skip_the_epoch_entry_check() {
        let profile = EngineProfile {
            max_wasm_stack: 1 << 20,
            table_elements: 1 << 10,
            max_instance_size: 1 << 20,
        };
        let engine = new_engine(&Limits::default(), false, &profile, Allocation::Pooled).unwrap();
        let module = Module::new(&engine, three_functions()).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
            .await
            .unwrap();
        store.set_epoch_deadline(0);
        for (name, interrupted) in [("leaf", false), ("caller", true), ("looper", true)] {
            let func = instance
                .get_typed_func::<(), i32>(&mut store, name)
                .unwrap();
            let result = func.call_async(&mut store, ()).await;
            match (result, interrupted) {
                (Ok(7), false) => {}
                (Err(err), true) => assert_eq!(
                    err.downcast_ref::<wasmtime::Trap>(),
                    Some(&wasmtime::Trap::Interrupt),
                    "{name}: {err:?}"
                ),
                (other, _) => panic!("{name}: expected interrupted={interrupted}, got {other:?}"),
            }
        }
    }
}
