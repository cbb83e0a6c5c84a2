//! The guest's door to the tools, on the wasm side: how a frame of `src/sandbox/tools.py`
//! reaches the run's [`Door`] and its answer comes back, for both runtimes.
//!
//! - The scientific build imports `host.call(req_ptr, req_len, out_ptr_ptr, out_len_ptr)`:
//!   the host reads the request, allocates the answer with the guest's `host_alloc`
//!   export, writes it and stores its pointer and length (u32 LE); it returns 0, -1 when
//!   the run has no door (no tools configured) and -2 on a fault.
//! - The stdlib build cannot gain an import, so its door is a positioned write and read on
//!   stdout at one offset ([`DOOR_OFFSET`]): the shadowed `fd_pwrite` takes a whole frame
//!   and makes the call; the shadowed `fd_pread` hands back an 8-byte little-endian length
//!   and the answer. (Its C library answers made-up descriptor numbers itself, without
//!   asking the host, so the door has to be a call on a descriptor that exists; stdout is
//!   a stream, where positioned calls mean nothing else.) Everything else goes to
//!   wasmtime-wasi as before (quota.rs).
//!
//! Printing is `fd_write` and reading files is `fd_read` or `fd_pread` on a file, so what
//! the code prints or reads never becomes a call. Code that uses the door itself
//! (`os.pwrite(1, frame, DOOR_OFFSET)`) gets exactly what `import tools` gives it.

use wasmtime::{Caller, Linker, Memory, Result};

use super::run::GuestState;
use crate::tools::Door;
use crate::tools::door::MAX_REQUEST_BYTES;

/// The stdlib runtime's door (`DOOR_FD` and `DOOR_OFFSET` in tools.py): stdout, at an
/// offset spelling "omcpdoor" (a stream has no offsets; no real call uses one).
pub const DOOR_FD: i32 = 1;
pub const DOOR_OFFSET: i64 = 0x6F6D_6370_646F_6F72;

/// Whether a positioned call is the door.
pub fn is_door(fd: i32, offset: i64) -> bool {
    fd == DOOR_FD && offset == DOOR_OFFSET
}

/// WASI's errno for a bad descriptor: what the door is when the run has none.
const EBADF: i32 = 8;
/// WASI's errno for an invalid argument (a frame too large, bad iovecs).
const EINVAL: i32 = 28;

/// A store's door and the answer the guest has not read yet.
#[derive(Default)]
pub struct DoorState {
    pub door: Option<Door>,
    pending: Vec<u8>,
    read: usize,
}

impl DoorState {
    pub fn set(&mut self, door: Option<Door>) {
        self.door = door;
        self.pending.clear();
        self.read = 0;
    }
}

fn guest_memory(caller: &mut Caller<'_, GuestState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(wasmtime::Extern::Memory(memory)) => Some(memory),
        _ => None,
    }
}

/// The `(ptr, len)` pairs of a WASI iovec array, if it lies in memory.
fn iovecs(data: &[u8], iovs: i32, count: i32) -> Option<Vec<(usize, usize)>> {
    let start = usize::try_from(iovs.cast_unsigned()).ok()?;
    let count = usize::try_from(count.cast_unsigned()).ok()?;
    let table = data.get(start..start.checked_add(count.checked_mul(8)?)?)?;
    table
        .chunks_exact(8)
        .map(|iov| {
            let ptr = u32::from_le_bytes(iov[0..4].try_into().ok()?) as usize;
            let len = u32::from_le_bytes(iov[4..8].try_into().ok()?) as usize;
            data.get(ptr..ptr.checked_add(len)?)?;
            Some((ptr, len))
        })
        .collect()
}

fn write_u32(data: &mut [u8], at: i32, value: u32) -> Option<()> {
    let at = usize::try_from(at.cast_unsigned()).ok()?;
    data.get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&value.to_le_bytes());
    Some(())
}

/// `fd_pwrite` at the door: one whole frame per write; the call is made before it returns.
pub async fn pwrite(
    caller: &mut Caller<'_, GuestState>,
    iovs: i32,
    count: i32,
    written: i32,
) -> Result<i32> {
    if caller.data().door.door.is_none() {
        return Ok(EBADF);
    }
    let Some(memory) = guest_memory(caller) else {
        return Ok(EINVAL);
    };
    let frame = {
        let data = memory.data(&*caller);
        let Some(parts) = iovecs(data, iovs, count) else {
            return Ok(EINVAL);
        };
        let total: usize = parts.iter().map(|(_, len)| len).sum();
        if total > MAX_REQUEST_BYTES + 1 {
            // Still answered (with a typed refusal), never buffered whole.
            b"{}".repeat(MAX_REQUEST_BYTES / 2 + 1)
        } else {
            let mut frame = Vec::with_capacity(total);
            for (ptr, len) in parts {
                frame.extend_from_slice(&data[ptr..ptr + len]);
            }
            frame
        }
    };
    let total = frame.len();
    let answer = {
        let door = caller.data_mut().door.door.as_mut().expect("checked above");
        door.handle(&frame).await
    };
    let state = &mut caller.data_mut().door;
    state.pending.clear();
    state
        .pending
        .extend_from_slice(&(answer.len() as u64).to_le_bytes());
    state.pending.extend_from_slice(&answer);
    state.read = 0;
    let data = memory.data_mut(&mut *caller);
    if write_u32(data, written, u32::try_from(total).unwrap_or(u32::MAX)).is_none() {
        return Ok(EINVAL);
    }
    Ok(0)
}

/// `fd_pread` at the door: the rest of the last answer (0 bytes once it is all read).
pub fn pread(caller: &mut Caller<'_, GuestState>, iovs: i32, count: i32, nread: i32) -> i32 {
    if caller.data().door.door.is_none() {
        return EBADF;
    }
    let Some(memory) = guest_memory(caller) else {
        return EINVAL;
    };
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    let state = &mut state.door;
    let Some(parts) = iovecs(data, iovs, count) else {
        return EINVAL;
    };
    let mut copied = 0usize;
    for (ptr, len) in parts {
        let rest = &state.pending[state.read..];
        let n = rest.len().min(len);
        data[ptr..ptr + n].copy_from_slice(&rest[..n]);
        state.read += n;
        copied += n;
        if state.read == state.pending.len() {
            break;
        }
    }
    if write_u32(data, nread, copied as u32).is_none() {
        return EINVAL;
    }
    0
}

/// `host.call`, the scientific build's import.
pub fn add_host_call(linker: &mut Linker<GuestState>) -> Result<()> {
    linker.func_wrap_async(
        "host",
        "call",
        |mut caller: Caller<'_, GuestState>,
         (req_ptr, req_len, out_ptr_ptr, out_len_ptr): (i32, i32, i32, i32)| {
            Box::new(async move {
                if caller.data().door.door.is_none() {
                    return Ok(-1);
                }
                let Some(memory) = guest_memory(&mut caller) else {
                    return Ok(-2);
                };
                let start = req_ptr.cast_unsigned() as usize;
                let len = req_len.cast_unsigned() as usize;
                let frame = if len > MAX_REQUEST_BYTES + 1 {
                    b"{}".repeat(MAX_REQUEST_BYTES / 2 + 1)
                } else {
                    match memory.data(&caller).get(start..start.saturating_add(len)) {
                        Some(bytes) => bytes.to_vec(),
                        None => return Ok(-2),
                    }
                };
                let answer = {
                    let door = caller.data_mut().door.door.as_mut().expect("checked above");
                    door.handle(&frame).await
                };
                let Some(wasmtime::Extern::Func(alloc)) = caller.get_export("host_alloc") else {
                    return Ok(-2);
                };
                let alloc = alloc.typed::<i32, i32>(&caller)?;
                let Ok(n) = i32::try_from(answer.len()) else {
                    return Ok(-2);
                };
                let at = alloc.call_async(&mut caller, n).await?;
                if at == 0 {
                    return Ok(-2);
                }
                let data = memory.data_mut(&mut caller);
                let at_usize = at.cast_unsigned() as usize;
                let Some(target) = data.get_mut(at_usize..at_usize.saturating_add(answer.len()))
                else {
                    return Ok(-2);
                };
                target.copy_from_slice(&answer);
                if write_u32(data, out_ptr_ptr, at.cast_unsigned()).is_none()
                    || write_u32(data, out_len_ptr, n.cast_unsigned()).is_none()
                {
                    return Ok(-2);
                }
                Ok(0)
            })
        },
    )?;
    Ok(())
}
