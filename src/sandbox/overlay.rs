//! A session's memory between turns: the pages it has written since the snapshot, kept in
//! a memfd, with the live linear memory mapped copy-on-write over them.
//!
//! A session's interpreter is a fresh snapshot instance (whose memory wasmtime maps
//! copy-on-write from the compiled image) plus every page the session has written since.
//! Those pages live in this overlay's memfd, and the instance's memory maps them
//! `MAP_PRIVATE`: a turn writes to private copies, and the memfd keeps the state from
//! before the turn. Then:
//! - **commit** (a turn ended normally): the kernel says which pages hold private copies
//!   (`PAGEMAP_SCAN`, or `/proc/self/pagemap`: present and anonymous); those that differ
//!   from the memfd are copied into it. The private copies stay in the live memory (the
//!   "hot" pages: CPython writes much the same pages every turn, and a page mapped back
//!   from the memfd would cost a copy-on-write fault at its next write); a hot page left
//!   unchanged for [`EVICT_AFTER`] turns is mapped from the memfd again.
//! - **rollback** (a turn was stopped: a timeout, fuel, a trap, the memory limit): the
//!   instance is dropped, half-changed interpreter and all; the next turn maps the memfd
//!   into a new snapshot instance ([`Overlay::map_into`]), which is exactly the state
//!   before the failed turn.
//! - **suspend / fork**: the memfd's pages are the whole difference from the snapshot, so
//!   they are what is written to disk (compressed) or copied into a new memfd.
//!
//! Why this is sound: CPython's only mutable wasm global is the shadow-stack pointer
//! (checked when a runtime loads, see `sessions_supported`), which is back at its snapshot
//! value whenever a turn returns, so memory (and its size) is the interpreter's whole state.
//! A page this code cannot prove clean is treated as written: the error is only ever
//! copying too much.

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// The host page size this works in (x86-64 and aarch64 Linux with 4 KiB pages).
pub const PAGE: usize = 4096;

/// `/proc/self/pagemap` entry bits (Documentation/admin-guide/mm/pagemap.rst).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE_OR_SHARED: u64 = 1 << 61;

/// A hot page unchanged for this many commits is mapped from the memfd again.
pub const EVICT_AFTER: u8 = 4;
/// Most hot pages kept (64 MiB); past it the oldest are mapped from the memfd again.
const MAX_HOT: usize = 16 * 1024;

/// Committed pages of one session's linear memory.
pub struct Overlay {
    file: File,
    /// The memfd mapped shared and read-only in the host, `max_len` bytes, to compare pages.
    mirror: Mirror,
    /// One bit per page of linear memory: set if the page is in the memfd.
    pages: Vec<u64>,
    /// Byte size of the linear memory at the last commit (the memory never shrinks).
    len: usize,
    /// Pages of the live memory that hold private copies, and for how many commits each
    /// has been unchanged. Empty for a memory that was just mapped (`map_into`).
    hot: std::collections::HashMap<usize, u8>,
}

struct Mirror {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mirror is a plain shared mapping owned by its overlay; every access goes
// through `&mut Overlay` or `&Overlay` (reads).
unsafe impl Send for Mirror {}
unsafe impl Sync for Mirror {}

impl Drop for Mirror {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Committed {
    /// Pages the turn changed (copied into the memfd).
    pub pages: usize,
    /// Hot pages mapped from the memfd again.
    pub evicted: usize,
}

impl Overlay {
    /// An empty overlay (the session's memory is the snapshot's) for a memory of at most
    /// `max_len` bytes.
    pub fn new(max_len: usize) -> io::Result<Overlay> {
        let fd = memfd::MemfdOptions::default()
            .close_on_exec(true)
            .create("omcp-session")
            .map_err(io::Error::other)?;
        let file = fd.into_file();
        let max_len = max_len.div_ceil(PAGE).max(1) * PAGE;
        // SAFETY: a new shared mapping of our memfd; only bytes below its current size
        // are ever touched (past the end of the file would be SIGBUS).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                max_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Overlay {
            file,
            mirror: Mirror {
                base: base.cast(),
                len: max_len,
            },
            pages: Vec::new(),
            len: 0,
            hot: std::collections::HashMap::new(),
        })
    }

    /// Forget the hot pages: the live memory they were in is gone.
    pub fn forget_hot(&mut self) {
        self.hot.clear();
    }

    /// Byte size of the memory at the last commit.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Pages held (the session's written memory).
    pub fn page_count(&self) -> usize {
        self.pages.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Bytes held in the memfd.
    pub fn bytes(&self) -> u64 {
        (self.page_count() * PAGE) as u64
    }

    fn has(&self, page: usize) -> bool {
        self.pages
            .get(page / 64)
            .is_some_and(|w| w & (1 << (page % 64)) != 0)
    }

    fn set(&mut self, page: usize) {
        let word = page / 64;
        if self.pages.len() <= word {
            self.pages.resize(word + 1, 0);
        }
        self.pages[word] |= 1 << (page % 64);
    }

    /// Runs of committed pages, in page indices.
    fn runs(&self) -> Vec<Range<usize>> {
        let total = self.pages.len() * 64;
        let mut runs = Vec::new();
        let mut page = 0;
        while page < total {
            if !self.has(page) {
                page += 1;
                continue;
            }
            let start = page;
            while page < total && self.has(page) {
                page += 1;
            }
            runs.push(start..page);
        }
        runs
    }

    /// Make the memfd hold the memory's current contents wherever the last turn wrote, and
    /// map it there again, so the next turn's writes are private copies once more.
    ///
    /// # Safety
    /// `base..base + len` must be the whole accessible linear memory of an instance whose
    /// committed pages were mapped from this overlay, and nothing may run in it meanwhile.
    pub unsafe fn commit(&mut self, base: *mut u8, len: usize) -> io::Result<Committed> {
        if len > self.mirror.len {
            return Err(io::Error::other(format!(
                "memory of {len} bytes is larger than the session's bound of {} bytes",
                self.mirror.len
            )));
        }
        let written = written_pages(base, len)?;
        if len > self.len {
            self.file.set_len(len as u64)?;
            self.len = len;
        }
        let mut done = Committed::default();
        let mut still_hot = std::collections::HashMap::with_capacity(self.hot.len());
        let mut changed = Vec::new();
        for run in &written {
            for page in run.clone() {
                // SAFETY: inside the accessible memory, per the caller.
                let live = unsafe { std::slice::from_raw_parts(base.add(page * PAGE), PAGE) };
                debug_assert!((page + 1) * PAGE <= self.len);
                // SAFETY: the memfd's copy of the page, inside the mirror and the file
                // (below `len`); read only where the page is in the memfd (no hole).
                let unchanged = self.has(page)
                    && live
                        == unsafe {
                            std::slice::from_raw_parts(self.mirror.base.add(page * PAGE), PAGE)
                        };
                let age = if unchanged {
                    self.hot.get(&page).copied().unwrap_or(0).saturating_add(1)
                } else {
                    changed.push(page);
                    0
                };
                still_hot.insert(page, age);
            }
        }
        // Written with pwrite, not through the mirror: memory the kernel cannot give the
        // memfd is then an error (the session is lost) rather than a SIGBUS (the server).
        for run in runs_of(&changed) {
            let offset = run.start * PAGE;
            // SAFETY: inside the accessible memory, per the caller.
            let live = unsafe {
                std::slice::from_raw_parts(base.add(offset), (run.end - run.start) * PAGE)
            };
            self.file.write_all_at(live, offset as u64)?;
        }
        for &page in &changed {
            self.set(page);
        }
        done.pages = changed.len();
        // Pages unchanged for a while, or the oldest past the bound, go back to the memfd.
        let mut cold: Vec<usize> = still_hot
            .iter()
            .filter(|&(_, &age)| age >= EVICT_AFTER)
            .map(|(&page, _)| page)
            .collect();
        if still_hot.len() - cold.len() > MAX_HOT {
            let mut by_age: Vec<(u8, usize)> = still_hot
                .iter()
                .filter(|&(_, &age)| age < EVICT_AFTER)
                .map(|(&page, &age)| (age, page))
                .collect();
            by_age.sort_unstable_by(|a, b| b.cmp(a));
            let excess = still_hot.len() - cold.len() - MAX_HOT;
            cold.extend(by_age.into_iter().take(excess).map(|(_, page)| page));
        }
        cold.sort_unstable();
        for &page in &cold {
            still_hot.remove(&page);
        }
        for run in runs_of(&cold) {
            // SAFETY: replaces pages of the caller's memory with the same contents.
            unsafe { self.map_run(base, run)? };
        }
        done.evicted = cold.len();
        self.hot = still_hot;
        Ok(done)
    }

    /// Map every committed page into a fresh instance's memory (grown to [`Self::len`]).
    ///
    /// # Safety
    /// `base..base + len` must be the accessible memory of a fresh instance of the
    /// snapshot this overlay was made over, with `len >= self.len()`.
    pub unsafe fn map_into(&mut self, base: *mut u8, len: usize) -> io::Result<usize> {
        if len < self.len {
            return Err(io::Error::other(format!(
                "memory of {len} bytes is smaller than the session's {} bytes",
                self.len
            )));
        }
        let runs = self.runs();
        for run in &runs {
            // SAFETY: per the caller.
            unsafe { self.map_run(base, run.clone())? };
        }
        self.hot.clear();
        Ok(runs.len())
    }

    unsafe fn map_run(&self, base: *mut u8, run: Range<usize>) -> io::Result<()> {
        let offset = run.start * PAGE;
        let bytes = (run.end - run.start) * PAGE;
        // SAFETY: MAP_FIXED over pages the caller owns; the memfd is at least this long.
        let mapped = unsafe {
            libc::mmap(
                base.add(offset).cast(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                self.file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// An independent copy (a fork's memory).
    pub fn duplicate(&self) -> io::Result<Overlay> {
        let mut copy = Overlay::new(self.mirror.len)?;
        copy.file.set_len(self.len as u64)?;
        copy.len = self.len;
        let mut buffer = vec![0u8; 256 * PAGE];
        for run in self.runs() {
            let mut offset = run.start * PAGE;
            let end = run.end * PAGE;
            while offset < end {
                let n = (end - offset).min(buffer.len());
                self.file.read_exact_at(&mut buffer[..n], offset as u64)?;
                copy.file.write_all_at(&buffer[..n], offset as u64)?;
                offset += n;
            }
        }
        copy.pages = self.pages.clone();
        Ok(copy)
    }

    /// Write the overlay (length, runs, then the pages, zstd-compressed) to `out`.
    pub fn save(&self, out: &mut impl Write) -> io::Result<()> {
        let runs = self.runs();
        out.write_all(&(self.len as u64).to_le_bytes())?;
        out.write_all(&(runs.len() as u64).to_le_bytes())?;
        for run in &runs {
            out.write_all(&(run.start as u64).to_le_bytes())?;
            out.write_all(&(run.end as u64).to_le_bytes())?;
        }
        let mut encoder = zstd::Encoder::new(out, 1)?;
        let mut buffer = vec![0u8; 256 * PAGE];
        for run in &runs {
            let mut offset = run.start * PAGE;
            let end = run.end * PAGE;
            while offset < end {
                let n = (end - offset).min(buffer.len());
                self.file.read_exact_at(&mut buffer[..n], offset as u64)?;
                encoder.write_all(&buffer[..n])?;
                offset += n;
            }
        }
        encoder.finish()?;
        Ok(())
    }

    /// Read what [`Self::save`] wrote. `max_len`: the largest memory this server allows;
    /// anything claiming more (or runs out of order, or too few bytes) is refused.
    pub fn load(input: &mut impl Read, max_len: usize) -> io::Result<Overlay> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        let mut word = [0u8; 8];
        let mut next = |input: &mut dyn Read| -> io::Result<u64> {
            input.read_exact(&mut word)?;
            Ok(u64::from_le_bytes(word))
        };
        let len = usize::try_from(next(input)?).map_err(|_| bad("memory size"))?;
        if len > max_len || len % PAGE != 0 {
            return Err(bad("memory size out of bounds"));
        }
        let count = next(input)?;
        if count > (len / PAGE) as u64 {
            return Err(bad("more runs than pages"));
        }
        let mut runs = Vec::with_capacity(count as usize);
        let mut last_end = 0usize;
        for _ in 0..count {
            let start = next(input)? as usize;
            let end = next(input)? as usize;
            if start < last_end || end <= start || end * PAGE > len {
                return Err(bad("page runs out of order or bounds"));
            }
            last_end = end;
            runs.push(start..end);
        }
        let mut overlay = Overlay::new(max_len)?;
        overlay.file.set_len(len as u64)?;
        overlay.len = len;
        let mut decoder = zstd::Decoder::new(input)?;
        let mut buffer = vec![0u8; 256 * PAGE];
        for run in &runs {
            let mut offset = run.start * PAGE;
            let end = run.end * PAGE;
            while offset < end {
                let n = (end - offset).min(buffer.len());
                decoder.read_exact(&mut buffer[..n])?;
                overlay.file.write_all_at(&buffer[..n], offset as u64)?;
                offset += n;
            }
            for page in run.clone() {
                overlay.set(page);
            }
        }
        // Trailing bytes mean this is not what `save` wrote.
        if decoder.read(&mut [0u8; 1])? != 0 {
            return Err(bad("trailing data after the pages"));
        }
        Ok(overlay)
    }
}

/// Sorted page indices as runs.
fn runs_of(pages: &[usize]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for &page in pages {
        match runs.last_mut() {
            Some(run) if run.end == page => run.end += 1,
            _ => runs.push(page..page + 1),
        }
    }
    runs
}

/// Pages of `base..base + len` that hold private (written) copies, as runs of page indices:
/// present and not backed by a file or shared memory, or swapped out.
fn written_pages(base: *const u8, len: usize) -> io::Result<Vec<Range<usize>>> {
    static NO_SCAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !NO_SCAN.load(std::sync::atomic::Ordering::Relaxed) {
        match scan::written(pagemap()?, base, len) {
            Ok(runs) => return Ok(runs),
            // Linux before 6.7: read the page map entry by entry instead.
            Err(_) => NO_SCAN.store(true, std::sync::atomic::Ordering::Relaxed),
        }
    }
    read_pagemap(base, len)
}

/// `PAGEMAP_SCAN` (Linux 6.7+): the kernel reports the matching ranges itself, skipping
/// unpopulated page tables, instead of 8 bytes for every page.
mod scan {
    use std::fs::File;
    use std::io;
    use std::ops::Range;
    use std::os::fd::AsRawFd;

    use super::PAGE;

    const PAGE_IS_FILE: u64 = 1 << 2;
    const PAGE_IS_PRESENT: u64 = 1 << 3;
    const PAGE_IS_SWAPPED: u64 = 1 << 4;
    const PAGE_IS_PFNZERO: u64 = 1 << 5;

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct PageRegion {
        start: u64,
        end: u64,
        categories: u64,
    }

    #[repr(C)]
    struct PmScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }

    /// `_IOWR('f', 16, struct pm_scan_arg)`.
    const PAGEMAP_SCAN: u64 =
        (3 << 30) | ((size_of::<PmScanArg>() as u64) << 16) | (0x66 << 8) | 16;

    pub fn written(pagemap: &File, base: *const u8, len: usize) -> io::Result<Vec<Range<usize>>> {
        let first = base as u64;
        let end = first + len as u64;
        let mut regions = vec![PageRegion::default(); 1024];
        let mut runs: Vec<Range<usize>> = Vec::new();
        let mut at = first;
        while at < end {
            let mut arg = PmScanArg {
                size: size_of::<PmScanArg>() as u64,
                flags: 0,
                start: at,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                // Not a file (or shared memory) page and not the shared zero page...
                category_inverted: PAGE_IS_FILE | PAGE_IS_PFNZERO,
                category_mask: PAGE_IS_FILE | PAGE_IS_PFNZERO,
                // ...and present or swapped out: a private copy.
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: 0,
            };
            // SAFETY: the argument and the region buffer outlive the call; the kernel
            // writes at most `vec_len` regions.
            let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if found < 0 {
                return Err(io::Error::last_os_error());
            }
            for region in &regions[..found as usize] {
                let start = (region.start - first) as usize / PAGE;
                let stop = (region.end - first) as usize / PAGE;
                match runs.last_mut() {
                    Some(run) if run.end == start => run.end = stop,
                    _ => runs.push(start..stop),
                }
            }
            if arg.walk_end <= at {
                break;
            }
            at = arg.walk_end;
        }
        Ok(runs)
    }
}

/// The same from `/proc/self/pagemap` entries.
fn read_pagemap(base: *const u8, len: usize) -> io::Result<Vec<Range<usize>>> {
    let pagemap = pagemap()?;
    let first = base as usize / PAGE;
    let count = len.div_ceil(PAGE);
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut entries = vec![0u8; 8 * 8192];
    let mut page = 0;
    while page < count {
        let n = (count - page).min(8192);
        let buf = &mut entries[..n * 8];
        pagemap.read_exact_at(buf, ((first + page) * 8) as u64)?;
        for (i, entry) in buf.chunks_exact(8).enumerate() {
            let bits = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            let written =
                (bits & PM_PRESENT != 0 && bits & PM_FILE_OR_SHARED == 0) || bits & PM_SWAPPED != 0;
            if !written {
                continue;
            }
            let at = page + i;
            match runs.last_mut() {
                Some(run) if run.end == at => run.end += 1,
                _ => runs.push(at..at + 1),
            }
        }
        page += n;
    }
    Ok(runs)
}

/// This process's page map, opened once.
fn pagemap() -> io::Result<&'static File> {
    static PAGEMAP: std::sync::OnceLock<Result<File, String>> = std::sync::OnceLock::new();
    PAGEMAP
        .get_or_init(|| File::open("/proc/self/pagemap").map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot read /proc/self/pagemap: {e}")))
}

/// Whether sessions can work here (Linux with a readable page map).
pub fn available() -> io::Result<()> {
    pagemap().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An anonymous private mapping stands in for a linear memory.
    struct Region(*mut u8, usize);
    impl Region {
        fn new(pages: usize) -> Region {
            let len = pages * PAGE;
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            Region(ptr.cast(), len)
        }
        #[allow(clippy::mut_from_ref)]
        fn bytes(&self) -> &mut [u8] {
            unsafe { std::slice::from_raw_parts_mut(self.0, self.1) }
        }
    }
    impl Drop for Region {
        fn drop(&mut self) {
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    #[test]
    fn commit_keeps_what_was_written_and_a_fresh_memory_gets_it_back() {
        let region = Region::new(64);
        let mut overlay = Overlay::new(1 << 30).unwrap();
        region.bytes()[5 * PAGE] = 7;
        region.bytes()[6 * PAGE + 9] = 8;
        region.bytes()[40 * PAGE] = 9;
        let done = unsafe { overlay.commit(region.0, region.1) }.unwrap();
        assert_eq!((done.pages, done.evicted), (3, 0));
        // After a commit nothing has changed until the next write.
        let again = unsafe { overlay.commit(region.0, region.1) }.unwrap();
        assert_eq!(again.pages, 0);
        region.bytes()[5 * PAGE + 1] = 1;
        let third = unsafe { overlay.commit(region.0, region.1) }.unwrap();
        assert_eq!(third.pages, 1);
        // Pages left unchanged go back to the memfd after a few commits: two of them
        // unchanged since the second commit, the one written again a commit later.
        let evicted: Vec<usize> = (0..EVICT_AFTER)
            .map(|_| {
                let done = unsafe { overlay.commit(region.0, region.1) }.unwrap();
                assert_eq!(done.pages, 0);
                done.evicted
            })
            .collect();
        assert_eq!(evicted.iter().sum::<usize>(), 3, "{evicted:?}");
        assert_eq!(evicted.last(), Some(&1), "{evicted:?}");
        assert_eq!(region.bytes()[5 * PAGE + 1], 1);
        assert_eq!(region.bytes()[40 * PAGE], 9);
        assert!(written_pages(region.0, region.1).unwrap().is_empty());

        // A failed turn's writes are dropped with its memory; a fresh one maps the overlay.
        let fresh = Region::new(64);
        unsafe { overlay.map_into(fresh.0, fresh.1) }.unwrap();
        assert_eq!(fresh.bytes()[5 * PAGE], 7);
        assert_eq!(fresh.bytes()[5 * PAGE + 1], 1);
        assert_eq!(fresh.bytes()[6 * PAGE + 9], 8);
        assert_eq!(fresh.bytes()[40 * PAGE], 9);
        // Writing there does not change the overlay.
        fresh.bytes()[40 * PAGE] = 10;
        let other = Region::new(64);
        unsafe { overlay.map_into(other.0, other.1) }.unwrap();
        assert_eq!(other.bytes()[40 * PAGE], 9);
    }

    /// Both ways of finding written pages (PAGEMAP_SCAN where the kernel has it, the page
    /// map read entry by entry where not) see the same pages.
    #[test]
    fn both_page_scans_agree() {
        let region = Region::new(256);
        for page in [0, 1, 2, 9, 100, 101, 255] {
            region.bytes()[page * PAGE + 7] = 1;
        }
        let read = read_pagemap(region.0, region.1).unwrap();
        assert_eq!(read, vec![0..3, 9..10, 100..102, 255..256]);
        if let Ok(scanned) = scan::written(pagemap().unwrap(), region.0, region.1) {
            assert_eq!(scanned, read);
        }
    }

    #[test]
    fn save_load_and_duplicate_roundtrip() {
        let region = Region::new(32);
        let mut overlay = Overlay::new(1 << 30).unwrap();
        for (i, b) in region.bytes().iter_mut().enumerate().step_by(3 * PAGE + 1) {
            *b = (i % 251) as u8 + 1;
        }
        unsafe { overlay.commit(region.0, region.1) }.unwrap();
        let mut saved = Vec::new();
        overlay.save(&mut saved).unwrap();
        let loaded = Overlay::load(&mut saved.as_slice(), 1 << 30).unwrap();
        let copy = loaded.duplicate().unwrap();
        for mut restored in [loaded, copy] {
            let fresh = Region::new(32);
            unsafe { restored.map_into(fresh.0, fresh.1) }.unwrap();
            assert_eq!(fresh.bytes(), region.bytes());
        }
        // Truncated, oversized or padded files are refused.
        assert!(Overlay::load(&mut &saved[..saved.len() - 3], 1 << 30).is_err());
        assert!(Overlay::load(&mut saved.as_slice(), PAGE).is_err());
        let mut padded = saved.clone();
        padded.extend_from_slice(b"junk");
        assert!(Overlay::load(&mut padded.as_slice(), 1 << 30).is_err());
    }
}

/// What a scan costs over a fully populated 256 MiB mapping, both ways (a figure, not a
/// check): `cargo test --release --lib scan_costs -- --ignored --nocapture`.
#[cfg(test)]
mod timing {
    use super::*;

    #[test]
    #[ignore]
    fn scan_costs() {
        let len = 256 << 20;
        let fd = memfd::MemfdOptions::default()
            .create("t")
            .unwrap()
            .into_file();
        fd.set_len(len as u64).unwrap();
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                fd.as_raw_fd(),
                0,
            )
        } as *mut u8;
        let mem = unsafe { std::slice::from_raw_parts_mut(base, len) };
        let mut sum = 0u64;
        for i in (0..len).step_by(PAGE) {
            sum += mem[i] as u64;
        }
        for i in (0..300).map(|i| i * 97 * PAGE) {
            mem[i] = 1;
        }
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let a = scan::written(pagemap().unwrap(), base, len);
            let t1 = t.elapsed();
            let t = std::time::Instant::now();
            let b = read_pagemap(base, len).unwrap();
            let t2 = t.elapsed();
            eprintln!(
                "scan {:?} {:?} read {:?} {} sum {sum}",
                t1,
                a.as_ref().map(|r| r.len()),
                t2,
                b.len()
            );
        }
    }
}
