//! A pre-initialised interpreter: CPython after start-up, with common modules imported,
//! snapshotted (wasmtime-wizer) into a new module, so every run instantiates a fresh
//! copy-on-write image of a live interpreter instead of paying ~30 ms of start-up.
//!
//! python.wasm is a WASI *command*: it exports `_start` and nothing that enters an already
//! running interpreter. So the snapshot is taken by hand:
//! 1. instrument the module (wizer exports its globals and memory),
//! 2. run `_start` with the driver in `snapshot` mode: it warms imports, reports the
//!    addresses of its `_omcp_run` function object, of that object's type and of the empty
//!    tuple, then leaves with `os._exit(0)` (no finalisation: the interpreter stays live),
//! 3. rewind the shadow-stack pointer (global 0) to its value before `_start`, since the
//!    frames below it are gone, and snapshot memory and globals,
//! 4. export the function table, so the host can call the type's `tp_call` slot,
//!    `PyVectorcall_Call(callable, args, kwargs)`, with the reported addresses.
//!
//! This ties the snapshot to the exact python.wasm (pinned by SHA-256) and driver, both part
//! of its cache key. A snapshot is self-tested before use; if anything fails the sandbox
//! falls back to cold starts (slower, never less correct).

use serde::{Deserialize, Serialize};
use wasmtime::{Engine, Instance, Linker, Module, Result, Store, Val, bail, format_err};
use wasmtime_wasi::I32Exit;
use wasmtime_wizer::{WasmtimeWizer, Wizer};

use super::run::{ARGV, Capture, GuestState, new_store};

/// Name under which the snapshot module exports its function table.
const TABLE_EXPORT: &str = "omcp_table";
/// Offsets in CPython 3.12's `PyTypeObject` on wasm32 (4-byte pointers, no Py_TRACE_REFS):
/// ob_refcnt, ob_type, ob_size, then tp_name at 12 ... tp_hash at 60, tp_call at 64.
const TP_NAME_OFFSET: usize = 12;
const TP_CALL_OFFSET: usize = 64;

/// Where to enter the snapshot: `table[table_index](callable, args, NULL)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    pub table_index: u32,
    pub callable: u32,
    pub args: u32,
}

impl EntryPoint {
    /// Call the driver's `_omcp_run` in `instance`. Like `_start`, it ends with `os._exit`.
    pub async fn call(&self, store: &mut Store<GuestState>, instance: &Instance) -> Result<()> {
        let table = instance
            .get_table(&mut *store, TABLE_EXPORT)
            .ok_or_else(|| format_err!("snapshot module does not export {TABLE_EXPORT:?}"))?;
        let func = table
            .get(&mut *store, u64::from(self.table_index))
            .and_then(|r| r.as_func().flatten().copied())
            .ok_or_else(|| format_err!("no function at table index {}", self.table_index))?;
        let args = [
            Val::I32(self.callable as i32),
            Val::I32(self.args as i32),
            Val::I32(0),
        ];
        let mut result = [Val::I32(0)];
        func.call_async(&mut *store, &args, &mut result).await?;
        bail!("the driver returned instead of exiting")
    }
}

/// Build a snapshot of `wasm` (the verified python.wasm): its bytes and entry point.
pub async fn build(
    engine: &Engine,
    linker: &Linker<GuestState>,
    wasm: &[u8],
) -> Result<(Vec<u8>, EntryPoint)> {
    let wizer = Wizer::new();
    let (context, instrumented) = wizer.instrument(wasm)?;
    let module = Module::new(engine, &instrumented)?;

    let mut marker = vec![0u8; 16];
    getrandom::fill(&mut marker).map_err(|e| format_err!("no randomness: {e}"))?;
    let capture = Capture::new(marker, 1 << 20, 0);
    let mut argv = ARGV.to_vec();
    argv.push("snapshot");
    let mut store = new_store(engine, &argv, Vec::new(), &capture, 1024);
    store.set_fuel(u64::MAX)?;
    let instance = linker.instantiate_async(&mut store, &module).await?;

    let stack_pointer = instance
        .get_global(&mut store, "__wizer_global_0")
        .ok_or_else(|| format_err!("python.wasm has no mutable global 0 (the stack pointer)"))?;
    let initial_sp = stack_pointer.get(&mut store);
    if !matches!(initial_sp, Val::I32(sp) if sp > 0) {
        bail!("global 0 is not a plausible stack pointer: {initial_sp:?}");
    }

    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    let ended = start.call_async(&mut store, ()).await;
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
    let [callable, type_object, args] = report[..] else {
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
    let type_object = type_object as usize;
    // Check the layout assumption before trusting the slot: tp_name must be "function".
    let name_at = word(type_object + TP_NAME_OFFSET)? as usize;
    let name = data.get(name_at..name_at + 9).unwrap_or_default();
    if name != b"function\0" {
        bail!(
            "unexpected PyTypeObject layout: tp_name is {:?}",
            String::from_utf8_lossy(name)
        );
    }
    let table_index = word(type_object + TP_CALL_OFFSET)?;

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
    let snapshot = export_table(&snapshot)?;
    Ok((
        snapshot,
        EntryPoint {
            table_index,
            callable,
            args,
        },
    ))
}

/// Copy `wasm`, adding an export of table 0 under [`TABLE_EXPORT`].
fn export_table(wasm: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{ExportKind, ExportSection, RawSection};
    use wasmparser::{ExternalKind, Parser, Payload};

    let mut module = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let Payload::ExportSection(reader) = &payload {
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
        } else if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection {
                id,
                data: &wasm[range],
            });
        }
    }
    Ok(module.finish())
}
