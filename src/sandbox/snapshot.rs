//! A pre-initialised interpreter: CPython after start-up, with the runtime's common modules
//! imported, snapshotted (wasmtime-wizer) into a new module, so every run instantiates a
//! fresh copy-on-write image of a live interpreter instead of paying for start-up (~30 ms
//! for the stdlib build, seconds for numpy, pandas and matplotlib).
//!
//! A WASI *reactor* (the scientific runtime) is the simple case: `_initialize`, then a
//! `turn` that builds the driver and runs the warm-up imports; the turn returns, the stack
//! is back where it started, and the instance is snapshotted as it is. A run then calls
//! `turn("_omcp_run()")` in a fresh copy.
//!
//! The stdlib python.wasm is a WASI *command*: it exports `_start` and nothing that enters
//! an already running interpreter. So its snapshot is taken by hand:
//! 1. instrument the module (wizer exports its globals and memory),
//! 2. run `_start` with the driver in `snapshot` mode: it warms imports, reports the
//!    addresses of its `_omcp_run` function object, of that object's type, of the empty
//!    tuple and of `random`'s shared generator, then leaves with `os._exit(0)` (no
//!    finalisation: the interpreter stays live),
//! 3. rewind the shadow-stack pointer (global 0) to its value before `_start`, since the
//!    frames below it are gone, and snapshot memory and globals,
//! 4. export the function table, so the host can call the type's `tp_call` slot,
//!    `PyVectorcall_Call(callable, args, kwargs)`, with the reported addresses.
//!
//! Before each call the host writes fresh random words into that generator's Mersenne
//! Twister state: a snapshot would otherwise hand every run the same random sequence, and
//! `random.seed()` in the guest costs more (2.5 KB from WASI plus the seeding loop) than
//! the rest of a small run's set-up.
//!
//! This ties the snapshot to the exact python.wasm (pinned by SHA-256) and driver, both part
//! of its cache key. A snapshot is self-tested before use; if anything fails the sandbox
//! falls back to cold starts (slower, never less correct).

use serde::{Deserialize, Serialize};
use wasmtime::{Engine, Instance, Linker, Module, Result, Store, Val, bail, format_err};
use wasmtime_wasi::I32Exit;
use wasmtime_wizer::{WasmtimeWizer, Wizer};

use super::run::{Capture, Feed, Guest, GuestState, Hosting, Scratch, new_store, reactor_turn};
use super::runtime::{Entry, Runtime};
use super::seed::{SNAPSHOT_SEED, Seeded};

/// Version of how [`build`] makes a snapshot (part of its cache key): bump it with any
/// change here that changes the module it writes.
pub const FORMAT: u32 = 4;

/// What a reactor snapshot's run passes to `turn`.
const RUN_TURN: &str = "_omcp_run()";
/// What a reactor session's turn passes to `turn`: an expression, so it binds no name in
/// the session's `__main__`.
const SESSION_TURN: &str = "__import__('sys')._omcp_session()";

/// Bytes of a command snapshot's shadow stack, just below its top, that hold the frames
/// `_start` left when the snapshot was taken (see [`EntryPoint::restore_stack`]).
pub const KEPT_STACK: usize = 256 << 10;

/// Name under which the snapshot module exports its function table.
const TABLE_EXPORT: &str = "omcp_table";
/// Offsets in CPython 3.12's `PyTypeObject` on wasm32 (4-byte pointers, no Py_TRACE_REFS):
/// ob_refcnt, ob_type, ob_size, then tp_name at 12 ... tp_hash at 60, tp_call at 64.
const TP_NAME_OFFSET: usize = 12;
const TP_CALL_OFFSET: usize = 64;
/// `RandomObject` in CPython 3.12's _randommodule.c on wasm32: PyObject_HEAD (8 bytes),
/// `int index`, `uint32_t state[624]`.
const MT_INDEX_OFFSET: usize = 8;
const MT_STATE_OFFSET: usize = 12;
const MT_WORDS: usize = 624;

/// Where to enter the snapshot, `table[table_index](callable, args, NULL)`, and where the
/// state of `random`'s generator lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    /// How the snapshot is entered: the table call below, or `turn`.
    pub entry: Entry,
    pub table_index: u32,
    pub callable: u32,
    pub args: u32,
    /// Address of `random._inst` (a `RandomObject`).
    pub rng: u32,
    /// The driver's `session` function (entered like `callable`).
    pub session: u32,
    /// Top of the shadow stack (the stack pointer every call starts from).
    pub stack_top: u32,
}

impl EntryPoint {
    /// Reseed `random` (from `seeded` if given), then call the driver's `_omcp_run` in
    /// `instance`. Like `_start`, the driver ends with `os._exit`.
    pub async fn call(
        &self,
        store: &mut Store<GuestState>,
        instance: &Instance,
        seeded: Option<&Seeded>,
    ) -> Result<()> {
        self.reseed(store, instance, seeded)?;
        if self.entry == Entry::Reactor {
            reactor_turn(store, instance, false, RUN_TURN).await?;
            bail!("the driver returned instead of exiting");
        }
        self.call_function(store, instance, self.callable).await?;
        bail!("the driver returned instead of exiting")
    }

    /// A command snapshot's way into a driver function: `tp_call(function, (), NULL)`
    /// through the exported table. Returns the result object's address (0: an exception).
    async fn call_function(
        &self,
        store: &mut Store<GuestState>,
        instance: &Instance,
        function: u32,
    ) -> Result<i32> {
        let table = instance
            .get_table(&mut *store, TABLE_EXPORT)
            .ok_or_else(|| format_err!("snapshot module does not export {TABLE_EXPORT:?}"))?;
        let func = table
            .get(&mut *store, u64::from(self.table_index))
            .and_then(|r| r.as_func().flatten().copied())
            .ok_or_else(|| format_err!("no function at table index {}", self.table_index))?;
        let args = [
            Val::I32(function as i32),
            Val::I32(self.args as i32),
            Val::I32(0),
        ];
        let mut result = [Val::I32(0)];
        func.call_async(&mut *store, &args, &mut result).await?;
        Ok(result[0].unwrap_i32())
    }

    /// Run one turn of a session in `instance`: like [`Self::call`], but the driver's
    /// `session` returns after its envelope (an error here means the turn broke the
    /// interpreter's control flow: a trap, a limit, an exit). `first`: give `random` its
    /// fresh state (later turns keep what earlier ones made of it).
    pub async fn call_session(
        &self,
        store: &mut Store<GuestState>,
        instance: &Instance,
        first: bool,
        seeded: Option<&Seeded>,
    ) -> Result<()> {
        if first {
            self.reseed(store, instance, seeded)?;
        }
        if self.entry == Entry::Reactor {
            return match reactor_turn(store, instance, false, SESSION_TURN).await? {
                0 => Ok(()),
                status => bail!("the session turn returned status {status}"),
            };
        }
        if self.call_function(store, instance, self.session).await? == 0 {
            bail!("the session turn raised in the driver");
        }
        Ok(())
    }

    /// The span of memory [`Self::restore_stack`] puts back (empty for a reactor).
    pub fn kept_stack(&self) -> std::ops::Range<usize> {
        match self.entry {
            Entry::Reactor => 0..0,
            Entry::Command => {
                let top = self.stack_top as usize;
                top.saturating_sub(KEPT_STACK)..top
            }
        }
    }

    /// A command snapshot was taken inside `_start`, whose frames were abandoned, and
    /// CPython still points at one of them (the C frame it was evaluating in). Every call
    /// from the host starts at the top of the stack and overwrites that memory, so before
    /// each turn of a session it is put back as the snapshot had it (`kept`, read from a
    /// fresh instance): each turn then enters exactly as a pristine run does.
    pub fn restore_stack(
        &self,
        store: &mut Store<GuestState>,
        instance: &Instance,
        kept: &[u8],
    ) -> Result<()> {
        let span = self.kept_stack();
        if span.is_empty() {
            return Ok(());
        }
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| format_err!("snapshot module exports no memory"))?;
        let now = memory
            .data_mut(&mut *store)
            .get_mut(span)
            .ok_or_else(|| format_err!("the kept stack is outside linear memory"))?;
        // Page by page, writing only what differs: untouched pages stay clean (the session
        // then does not commit them).
        for (now, kept) in now.chunks_mut(4096).zip(kept.chunks(4096)) {
            if now != kept {
                now.copy_from_slice(kept);
            }
        }
        Ok(())
    }

    /// Give this run's `random` a fresh state, as `random.seed()` would from os.urandom:
    /// 624 random words with the index at the end (the next draw regenerates the block).
    fn reseed(
        &self,
        store: &mut Store<GuestState>,
        instance: &Instance,
        seeded: Option<&Seeded>,
    ) -> Result<()> {
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| format_err!("snapshot module exports no memory"))?;
        let mut fresh = [0u8; 4 + 4 * MT_WORDS];
        fresh[..4].copy_from_slice(&(MT_WORDS as u32).to_le_bytes());
        match seeded {
            Some(seeded) => seeded.fill(&mut fresh[4..]),
            None => {
                getrandom::fill(&mut fresh[4..]).map_err(|e| format_err!("no randomness: {e}"))?
            }
        }
        // As CPython's init_by_array does: the top bit of the first word makes sure the
        // state is never all zero (the generator's one invalid state).
        fresh[7] |= 0x80;
        memory.write(&mut *store, self.rng as usize + MT_INDEX_OFFSET, &fresh)?;
        Ok(())
    }
}

/// Build a snapshot of `runtime` (its verified python.wasm): its bytes and entry point.
/// It is built seeded (see `SNAPSHOT_SEED`), so the same runtime and driver give the same
/// snapshot on every machine.
pub async fn build(
    engine: &Engine,
    linker: &Linker<GuestState>,
    runtime: &Runtime,
    hosting: &Hosting,
) -> Result<(Vec<u8>, EntryPoint)> {
    let wizer = Wizer::new();
    let (context, instrumented) = wizer.instrument(&runtime.wasm)?;
    let module = Module::new(engine, &instrumented)?;

    let mut marker = vec![0u8; 16];
    getrandom::fill(&mut marker).map_err(|e| format_err!("no randomness: {e}"))?;
    let capture = Capture::new(marker, 1 << 20, 0);
    let mut hosting = hosting.clone();
    if runtime.entry == Entry::Command {
        hosting.argv.push("snapshot".into());
        hosting.argv.push(runtime.warm.into());
    }
    // The snapshot's scratch directory only lives while it is built; runs get their own
    // at the same guest path (and descriptor number).
    let scratch = match &hosting.scratch {
        Some(root) => Some(Scratch::new(root)?),
        None => None,
    };
    let seeded = Seeded::new(SNAPSHOT_SEED);
    let mut store = new_store(
        engine,
        &hosting,
        Guest {
            scratch: scratch.as_ref(),
            stdin: Feed::default(),
            capture: &capture,
            memory_mb: 4096,
            scratch_bytes: 1 << 30,
            seeded: Some(&seeded),
            door: None,
        },
    )?;
    // Only a metered engine has fuel to set (elsewhere this is an error, and no matter).
    let _ = store.set_fuel(u64::MAX);
    let instance = linker.instantiate_async(&mut store, &module).await?;

    let stack_pointer = instance
        .get_global(&mut store, "__wizer_global_0")
        .ok_or_else(|| format_err!("python.wasm has no mutable global 0 (the stack pointer)"))?;
    let initial_sp = stack_pointer.get(&mut store);
    if !matches!(initial_sp, Val::I32(sp) if sp > 0) {
        bail!("global 0 is not a plausible stack pointer: {initial_sp:?}");
    }

    let ended = match runtime.entry {
        Entry::Command => {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }
        Entry::Reactor => {
            let driver = Hosting::reactor_driver("snapshot", runtime.warm);
            match reactor_turn(&mut store, &instance, true, &driver).await {
                // The command leaves with `os._exit(0)`; a turn returns its status.
                Ok(0) => Err(I32Exit(0).into()),
                Ok(status) => Err(format_err!("the snapshot turn returned status {status}")),
                Err(err) => Err(err),
            }
        }
    };
    let (stdout, stderr) = {
        let captured = capture.lock();
        (
            String::from_utf8_lossy(&captured.stdout).into_owned(),
            String::from_utf8_lossy(&captured.stderr).into_owned(),
        )
    };
    match ended {
        Err(err) if err.downcast_ref::<I32Exit>().is_some_and(|e| e.0 == 0) => {}
        Err(err) => bail!("snapshot init failed: {err:#}; stderr: {stderr}"),
        Ok(()) => bail!("snapshot init returned without exiting; stderr: {stderr}"),
    }
    let report: Vec<u32> = stdout
        .lines()
        .find_map(|line| line.strip_prefix("omcp-snapshot "))
        .ok_or_else(|| format_err!("snapshot init printed no report: {stdout:?} {stderr:?}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format_err!("bad snapshot report {stdout:?}: {e}"))?;
    let [
        callable,
        type_object,
        args,
        rng,
        first_word,
        last_word,
        index,
        session,
    ] = report[..]
    else {
        bail!("bad snapshot report {stdout:?}");
    };

    let memory = instance
        .get_memory(&mut store, "memory")
        .ok_or_else(|| format_err!("python.wasm exports no memory"))?;
    let data = memory.data(&store);
    let word = |at: usize| -> Result<u32> {
        let bytes = data
            .get(at..at + 4)
            .ok_or_else(|| format_err!("address {at} outside linear memory"))?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    };
    // Only a command is entered through the function type's `tp_call` slot.
    let table_index = match runtime.entry {
        Entry::Reactor => 0,
        Entry::Command => {
            let type_object = type_object as usize;
            // Check the layout assumption before trusting the slot: tp_name must be
            // "function".
            let name_at = word(type_object + TP_NAME_OFFSET)? as usize;
            let name = data.get(name_at..name_at + 9).unwrap_or_default();
            if name != b"function\0" {
                bail!(
                    "unexpected PyTypeObject layout: tp_name is {:?}",
                    String::from_utf8_lossy(name)
                );
            }
            word(type_object + TP_CALL_OFFSET)?
        }
    };
    // Check the RandomObject layout the same way: the words the guest reported from
    // `random.getstate()` must be where the host will write fresh ones.
    let rng_at = rng as usize;
    let seen = (
        word(rng_at + MT_INDEX_OFFSET)?,
        word(rng_at + MT_STATE_OFFSET)?,
        word(rng_at + MT_STATE_OFFSET + 4 * (MT_WORDS - 1))?,
    );
    if seen != (index, first_word, last_word) {
        bail!(
            "unexpected RandomObject layout: found {seen:?}, the guest reported {:?}",
            (index, first_word, last_word)
        );
    }

    // `_start`'s frames are gone: the next call must start at the top of the stack.
    stack_pointer.set(&mut store, initial_sp)?;
    let snapshot = wizer
        .snapshot(
            &context,
            &mut WasmtimeWizer {
                store: &mut store,
                instance,
            },
        )
        .await?;
    let snapshot = finish(&snapshot)?;
    Ok((
        snapshot,
        EntryPoint {
            entry: runtime.entry,
            table_index,
            callable,
            args,
            rng,
            session,
            stack_top: match initial_sp {
                Val::I32(sp) => sp.cast_unsigned(),
                _ => 0,
            },
        },
    ))
}

/// Largest span of linear memory the snapshot's data may be merged over (zeros included).
const MAX_MERGED_SPAN: u64 = 256 << 20;

/// Copy `wasm` for use: export table 0 under [`TABLE_EXPORT`], and leave one data segment.
///
/// wasmtime serves the memory from a copy-on-write image either way, but it records every
/// data segment's address and length in each new instance's context, and this module had
/// 34,000 of them: python.wasm's own 24,171 (its embedded files; wizer keeps them as empty
/// passive segments, their contents being in the snapshot already) plus up to 10,000 that
/// wizer writes for the snapshot. That was ~100 us of every run's instantiation.
/// Passive segments are only reachable through `memory.init`/`data.drop`, which a module
/// without a data count section cannot contain (validation requires it), so they are
/// dropped; the active ones are merged into one spanning them all (zeros between them
/// included), which makes the same image.
fn finish(wasm: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{ExportKind, ExportSection, RawSection};
    use wasmparser::{ExternalKind, Parser, Payload};

    let mut module = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        match &payload {
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader.clone() {
                    let export = export?;
                    let kind = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        ExternalKind::Tag => ExportKind::Tag,
                    };
                    exports.export(export.name, kind, export.index);
                }
                exports.export(TABLE_EXPORT, ExportKind::Table, 0);
                module.section(&exports);
            }
            Payload::DataSection(reader) => {
                module.section(&merge_data(reader.clone())?);
            }
            Payload::DataCountSection { .. } => {
                bail!("snapshot has a data count section: merging its segments would break it");
            }
            _ => {
                if let Some((id, range)) = payload.as_section() {
                    module.section(&RawSection {
                        id,
                        data: &wasm[range],
                    });
                }
            }
        }
    }
    Ok(module.finish())
}

/// The data section of [`finish`]: passive segments dropped, active ones (memory 0,
/// constant offsets) merged into one.
fn merge_data(reader: wasmparser::DataSectionReader<'_>) -> Result<wasm_encoder::DataSection> {
    use wasm_encoder::ConstExpr;
    use wasmparser::{DataKind, Operator};

    let mut active: Vec<(u64, &[u8])> = Vec::new();
    for segment in reader {
        let segment = segment?;
        match segment.kind {
            // Unreachable without a data count section (`finish` refuses one).
            DataKind::Passive => {}
            DataKind::Active {
                memory_index: 0,
                offset_expr,
            } => {
                let mut ops = offset_expr.get_operators_reader();
                let (Operator::I32Const { value }, Operator::End) = (ops.read()?, ops.read()?)
                else {
                    bail!("snapshot data segment with a non-constant offset");
                };
                active.push((u64::from(value.cast_unsigned()), segment.data));
            }
            DataKind::Active { .. } => bail!("snapshot data segment for a memory other than 0"),
        }
    }
    let start = active.iter().map(|&(offset, _)| offset).min().unwrap_or(0);
    let end = active
        .iter()
        .map(|&(offset, data)| offset + data.len() as u64)
        .max()
        .unwrap_or(0);
    if end - start > MAX_MERGED_SPAN {
        bail!("snapshot data spans {} bytes", end - start);
    }
    // Copied in their original order: a later segment wins where two overlap, as when wasm
    // instantiates them.
    let mut merged = vec![0u8; (end - start) as usize];
    for (offset, data) in &active {
        let at = (offset - start) as usize;
        merged[at..at + data.len()].copy_from_slice(data);
    }
    let mut section = wasm_encoder::DataSection::new();
    if !merged.is_empty() {
        let offset = ConstExpr::i32_const(u32::try_from(start)?.cast_signed());
        section.active(0, &offset, merged);
    }
    Ok(section)
}
