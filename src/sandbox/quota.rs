//! The quota of a run's scratch directory, enforced as the guest writes: a run may write at
//! most `scratch_bytes` to files in total and create at most [`MAX_ENTRIES`] files,
//! directories and links. Past either, the write or the creation fails with `ENOSPC`, which
//! Python raises as `OSError: [Errno 51] No space left on device` (WASI's number for
//! `ENOSPC`), and the host never
//! stores more than the quota.
//!
//! It is kept by shadowing single WASI imports in the linker (wasmtime's `Linker` lets a
//! later definition replace an earlier one): each shadow checks and charges the quota, then
//! hands the call on to wasmtime-wasi's own implementation. The count is of bytes written,
//! not of bytes currently stored: overwriting or deleting does not give any back. That is
//! stricter than a disk quota and needs no bookkeeping of the directory's contents.

use wasmtime::{Caller, Linker, Memory, Result};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};

use super::door;
use super::run::GuestState;

/// Files, directories and links one run may create in its scratch directory.
pub const MAX_ENTRIES: u32 = 4096;

/// WASI's errno for "no space left on device".
const ENOSPC: i32 = 51;
/// `path_open`'s `oflags` bit that creates the file.
const O_CREAT: i32 = 1;
/// Descriptors below this are stdin, stdout and stderr, which have budgets of their own.
const FIRST_FILE_FD: i32 = 3;

/// What is left of a run's quota.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub bytes_left: u64,
    pub entries_left: u32,
}

impl Quota {
    pub fn new(bytes: u64) -> Quota {
        Quota {
            bytes_left: bytes,
            entries_left: MAX_ENTRIES,
        }
    }

    /// At most `entries` new files, directories and links (the workspace's file bound).
    pub fn limit_entries(&mut self, entries: usize) {
        self.entries_left = self
            .entries_left
            .min(u32::try_from(entries).unwrap_or(u32::MAX));
    }

    fn take_bytes(&mut self, bytes: u64) -> bool {
        match self.bytes_left.checked_sub(bytes) {
            Some(left) => {
                self.bytes_left = left;
                true
            }
            None => false,
        }
    }

    fn take_entry(&mut self) -> bool {
        match self.entries_left.checked_sub(1) {
            Some(left) => {
                self.entries_left = left;
                true
            }
            None => false,
        }
    }
}

/// Hand a call on to wasmtime-wasi with the guest's memory, as its own linker glue does.
macro_rules! forward {
    ($caller:ident, $func:ident ( $($arg:expr),* )) => {{
        let fuel = wasmtime::AsContextMut::as_context_mut(&mut $caller).hostcall_fuel();
        let memory = guest_memory(&mut $caller)?;
        let (bytes, state) = memory.data_and_store_mut(&mut $caller);
        let wasi = state.wasi();
        wasi.set_hostcall_fuel(fuel);
        let mut memory = wiggle::GuestMemory::Unshared(bytes);
        p1::$func(wasi, &mut memory $(, $arg)*).await
    }};
}

fn guest_memory(caller: &mut Caller<'_, GuestState>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(wasmtime::Extern::Memory(memory)) => Ok(memory),
        _ => wasmtime::bail!("the guest exports no memory"),
    }
}

/// Total length of a WASI iovec array (`{ptr: u32, len: u32}` each), or `None` if it does not
/// lie in memory (wasmtime-wasi then answers the call with a fault, as it should).
fn iovec_len(caller: &mut Caller<'_, GuestState>, iovs: i32, count: i32) -> Option<u64> {
    let memory = guest_memory(caller).ok()?;
    let data = memory.data(&*caller);
    let start = usize::try_from(iovs.cast_unsigned()).ok()?;
    let count = usize::try_from(count.cast_unsigned()).ok()?;
    let table = data.get(start..start.checked_add(count.checked_mul(8)?)?)?;
    Some(
        table
            .chunks_exact(8)
            .map(|iov| u64::from(u32::from_le_bytes(iov[4..8].try_into().expect("4 bytes"))))
            .sum(),
    )
}

/// Shadow the WASI calls that store bytes or create entries with quota-checked ones (and
/// the two that carry the stdlib runtime's door to the tools, see door.rs).
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, GuestState>, (fd, iovs, count, written): (i32, i32, i32, i32)| {
            Box::new(async move {
                if fd >= FIRST_FILE_FD
                    && let Some(len) = iovec_len(&mut caller, iovs, count)
                    && !caller.data_mut().quota.take_bytes(len)
                {
                    return Ok(ENOSPC);
                }
                forward!(caller, fd_write(fd, iovs, count, written))
            })
        },
    )?;
    // Reads are not charged; only the tools' door answers here (see door.rs).
    linker.func_wrap_async(
        WASI,
        "fd_pread",
        |mut caller: Caller<'_, GuestState>,
         (fd, iovs, count, offset, nread): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                if door::is_door(fd, offset) {
                    return Ok(door::pread(&mut caller, iovs, count, nread));
                }
                forward!(caller, fd_pread(fd, iovs, count, offset, nread))
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "fd_pwrite",
        |mut caller: Caller<'_, GuestState>,
         (fd, iovs, count, offset, written): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                if door::is_door(fd, offset) {
                    return door::pwrite(&mut caller, iovs, count, written).await;
                }
                if fd >= FIRST_FILE_FD
                    && let Some(len) = iovec_len(&mut caller, iovs, count)
                    && !caller.data_mut().quota.take_bytes(len)
                {
                    return Ok(ENOSPC);
                }
                forward!(caller, fd_pwrite(fd, iovs, count, offset, written))
            })
        },
    )?;
    // Growing a file by truncation stores nothing yet (a sparse file), but its size counts:
    // whatever later copies or lists the directory must not meet a file of terabytes.
    linker.func_wrap_async(
        WASI,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, GuestState>, (fd, size): (i32, i64)| {
            Box::new(async move {
                if !caller.data_mut().quota.take_bytes(size.cast_unsigned()) {
                    return Ok(ENOSPC);
                }
                forward!(caller, fd_filestat_set_size(fd, size))
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_open",
        |mut caller: Caller<'_, GuestState>,
         (fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                if oflags & O_CREAT != 0 && !caller.data_mut().quota.take_entry() {
                    return Ok(ENOSPC);
                }
                forward!(
                    caller,
                    path_open(
                        fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened
                    )
                )
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_create_directory",
        |mut caller: Caller<'_, GuestState>, (fd, path, path_len): (i32, i32, i32)| {
            Box::new(async move {
                if !caller.data_mut().quota.take_entry() {
                    return Ok(ENOSPC);
                }
                forward!(caller, path_create_directory(fd, path, path_len))
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_symlink",
        |mut caller: Caller<'_, GuestState>,
         (old, old_len, fd, new, new_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                if !caller.data_mut().quota.take_entry() {
                    return Ok(ENOSPC);
                }
                forward!(caller, path_symlink(old, old_len, fd, new, new_len))
            })
        },
    )?;
    linker.func_wrap_async(
        WASI,
        "path_link",
        |mut caller: Caller<'_, GuestState>,
         (old_fd, flags, old, old_len, fd, new, new_len): (i32, i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                if !caller.data_mut().quota.take_entry() {
                    return Ok(ENOSPC);
                }
                forward!(caller, path_link(old_fd, flags, old, old_len, fd, new, new_len))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_refuses_what_does_not_fit_and_keeps_what_is_left() {
        let mut quota = Quota::new(10);
        assert!(quota.take_bytes(6));
        assert!(!quota.take_bytes(5));
        assert!(quota.take_bytes(4));
        assert!(!quota.take_bytes(1));
        for _ in 0..MAX_ENTRIES {
            assert!(quota.take_entry());
        }
        assert!(!quota.take_entry());
    }
}
