// SPDX-License-Identifier: GPL-2.0

//! The pin cache (`MDW_WRITE_KEEP_PINS`): runs of user pages a call pinned,
//! kept pinned after it for the file's later calls from the same memory. A
//! sender that sends from the same buffers call after call then pins them
//! once, as if it had registered them (`buffer.rs`), without naming them.
//!
//! A run is used only while the memory still maps the pages it pinned: a
//! watch on its range (`mdwrite_pin.c`, an `mmu_interval_notifier`) marks
//! it stale at the first change to the mapping (unmap, remap, protection
//! change, fork, exit), and a stale run is never used again. It is let go
//! at the file's next miss, when it is evicted, or when the file is closed;
//! its pages are unpinned once the last call sending from it has completed.
//!
//! Runs are charged to `RLIMIT_MEMLOCK` and pinned long-term; a run that
//! cannot be charged, pinned long-term or watched is not cached (the call
//! pins it for itself, as without the flag).

use core::ptr::NonNull;

use kernel::{bindings, page::PAGE_SHIFT, prelude::*, sync::Arc};

use crate::{
    abi::MDW_MAX_CALL_BYTES,
    common::runcache::RunCache,
    errno, ffi,
    pin::{MemlockCharge, PinKind, PinnedPages},
    records::FileShared,
    stats::Stats,
};

/// Runs kept per file: a lookup walks them.
const MAX_RUNS: usize = 16;

/// Pages kept per file: as many as one call may send from.
const MAX_PAGES: u64 = MDW_MAX_CALL_BYTES >> PAGE_SHIFT;

/// Times a run is pinned before the cache gives up on it, when its
/// mapping changes while it is being pinned.
const PIN_ATTEMPTS: usize = 2;

/// A watch on a range of the calling task's memory (`struct mdw_watch`).
struct Watch(NonNull<ffi::MdwWatch>);

// SAFETY: the watch may be checked and freed from any thread (in process
// context); its callback only writes its own flag.
unsafe impl Send for Watch {}
// SAFETY: `valid` only reads.
unsafe impl Sync for Watch {}

impl Watch {
    /// Watches pages `first..first + pages` of the calling task's memory;
    /// `EOPNOTSUPP` without MMU notifiers.
    fn new(first: u64, pages: u64) -> Result<Self> {
        let start = first.checked_mul(1 << PAGE_SHIFT).ok_or(EFAULT)?;
        let len = pages.checked_mul(1 << PAGE_SHIFT).ok_or(EFAULT)?;
        start.checked_add(len).ok_or(EFAULT)?;
        // SAFETY: process context (an ioctl), holding no lock that the
        // mm's invalidations take (the file's lock only).
        let ptr = unsafe { ffi::mdw_watch_new(start as usize, len as usize) };
        Ok(Self(NonNull::new(errno::from_err_ptr(ptr)?).ok_or(ENOMEM)?))
    }

    /// Whether the range still maps what it mapped when the watch began,
    /// and is the calling task's memory.
    fn valid(&self) -> bool {
        // SAFETY: `self.0` came from `mdw_watch_new` and is freed only on
        // drop.
        unsafe { ffi::mdw_watch_valid(self.0.as_ptr()) }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `mdw_watch_new`, freed once, here. No
        // watch is dropped in atomic context: runs are dropped by the file
        // (under its mutex) and by calls' completions, in process context.
        unsafe { ffi::mdw_watch_free(self.0.as_ptr()) };
    }
}

/// One cached run: pages of user memory pinned long-term, watched.
pub(crate) struct CachedRun {
    /// Dropped before the pages: no callback comes after they are unpinned.
    watch: Watch,
    pages: PinnedPages,
    /// Returned after the pages are unpinned.
    _charge: Option<MemlockCharge>,
    /// Where `pages_pinned` is counted.
    shared: Arc<FileShared>,
}

impl CachedRun {
    /// Watches and pins pages `first..first + n` of the calling task's
    /// memory, charged with `charge`. `EAGAIN` when the mapping changed
    /// while they were being pinned, at every attempt.
    fn new(
        shared: &Arc<FileShared>,
        first: u64,
        n: u64,
        charge: Option<MemlockCharge>,
    ) -> Result<Self> {
        let count = usize::try_from(n).map_err(|_| E2BIG)?;
        // Pinning may itself change the mapping, once: a page shared
        // copy-on-write (after a fork, or the zero page) is first made the
        // task's own. The next attempt then finds the pages in place.
        for _ in 0..PIN_ATTEMPTS {
            // Watched before it is pinned: a change after the pin is seen.
            let watch = Watch::new(first, n)?;
            let mut pages = PinnedPages::with_capacity(count, PinKind::LongTerm)?;
            pages.pin(first << PAGE_SHIFT, count)?;
            if watch.valid() {
                Stats::add(&shared.stats.pages_pinned, n);
                return Ok(Self {
                    watch,
                    pages,
                    _charge: charge,
                    shared: shared.clone(),
                });
            }
        }
        Err(EAGAIN)
    }

    /// The run's pages, in address order.
    pub(crate) fn pages(&self) -> &[*mut bindings::page] {
        self.pages.pages()
    }
}

impl Drop for CachedRun {
    fn drop(&mut self) {
        Stats::sub(&self.shared.stats.pages_pinned, self.pages.len() as u64);
    }
}

/// A file's cached runs (the bookkeeping: `common::runcache`).
#[derive(Default)]
pub(crate) struct PinCache {
    runs: RunCache<Arc<CachedRun>, MAX_RUNS>,
    /// This kernel cannot watch memory: nothing is cached.
    off: bool,
}

impl PinCache {
    /// Starts a call's lookups: the runs the call uses are not evicted
    /// for it.
    pub(crate) fn begin_call(&mut self) {
        self.runs.begin_call();
    }

    /// A run holding pages `first..first + n` of the calling task's
    /// memory, and the index of page `first` in it: a cached one, or one
    /// pinned and cached now. `None` when the pages cannot be cached (the
    /// caller then pins them for itself, and reports its errors).
    pub(crate) fn get(
        &mut self,
        shared: &Arc<FileShared>,
        first: u64,
        n: u64,
    ) -> Option<(&Arc<CachedRun>, usize)> {
        let (slot, at) = match self.runs.find(first, n, |run| run.watch.valid()) {
            Some(found) => found,
            None => (self.insert(shared, first, n)?, 0),
        };
        // No truncation: a run's pages are bounded by `MAX_PAGES`.
        Some((self.runs.get(slot)?, at as usize))
    }

    /// Charges `pages` pages to the calling task's `RLIMIT_MEMLOCK` (see
    /// [`MemlockCharge::new`]). Over the limit, the cache gives way: it lets
    /// go of its runs and tries once more (the runs that calls still send
    /// from return their charge when the last of those calls completes).
    pub(crate) fn charge(&mut self, pages: usize) -> Result<Option<MemlockCharge>> {
        match MemlockCharge::new(pages) {
            Err(e) if e == errno::enobufs() && self.clear() => MemlockCharge::new(pages),
            charged => charged,
        }
    }

    /// Lets go of every run; whether there was one.
    pub(crate) fn clear(&mut self) -> bool {
        self.runs.clear()
    }

    /// Pins and caches pages `first..first + n`, making room (stale runs
    /// and runs of another task's memory first); the slot of the new run.
    #[cold]
    fn insert(&mut self, shared: &Arc<FileShared>, first: u64, n: u64) -> Option<usize> {
        if self.off {
            return None;
        }
        let slot = self.runs.make_room(n, MAX_PAGES, |run| run.watch.valid())?;
        let charge = self.charge(usize::try_from(n).ok()?).ok()?;
        let run = match CachedRun::new(shared, first, n, charge) {
            Ok(run) => run,
            Err(e) => {
                if e == errno::eopnotsupp() {
                    self.off = true;
                }
                return None;
            }
        };
        let run = Arc::new(run, GFP_KERNEL_ACCOUNT).ok()?;
        // The charge's giving way may have emptied the cache: the slot is
        // still free.
        self.runs.put(slot, first, n, run).then_some(slot)
    }
}
