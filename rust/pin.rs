// SPDX-License-Identifier: GPL-2.0

//! Pinned user pages (`pin_user_pages_fast`, FOLL_PIN): the zero-copy
//! translation from user virtual addresses to pages, and the
//! `RLIMIT_MEMLOCK` charge of pins that outlive a system call.

use kernel::{alloc::KVVec, bindings, page::PAGE_SHIFT, prelude::*};

use crate::{errno, ffi};

/// Pages pinned between two checks for a fatal signal.
const PIN_CHUNK: usize = 1024;

/// How long pages stay pinned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinKind {
    /// For one call: released when its packets have left.
    Call,
    /// For a registered buffer (`FOLL_LONGTERM`: the pages are first
    /// migrated out of movable memory, and memory that cannot be pinned for
    /// long, such as DAX files, is refused).
    LongTerm,
}

/// Pages of user memory, pinned in order and unpinned on drop.
pub(crate) struct PinnedPages {
    pages: KVVec<*mut bindings::page>,
    kind: PinKind,
}

// SAFETY: pinned pages may be unpinned from any thread.
unsafe impl Send for PinnedPages {}
// SAFETY: shared references only read the page pointers.
unsafe impl Sync for PinnedPages {}

impl PinnedPages {
    /// An empty set with room for `capacity` pages.
    pub(crate) fn with_capacity(capacity: usize, kind: PinKind) -> Result<Self> {
        Ok(Self {
            pages: KVVec::with_capacity(capacity, GFP_KERNEL_ACCOUNT)?,
            kind,
        })
    }

    /// Number of pages pinned.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Pins the `nr` pages starting with the one holding `addr`, appending
    /// them; returns the index of the first (see [`pin_into`]).
    pub(crate) fn pin(&mut self, addr: u64, nr: usize) -> Result<usize> {
        pin_into(&mut self.pages, addr, nr, self.kind).map_err(|(e, _)| e)
    }

    /// The pinned pages, in pinning order.
    pub(crate) fn pages(&self) -> &[*mut bindings::page] {
        &self.pages
    }
}

impl Drop for PinnedPages {
    fn drop(&mut self) {
        unpin_tail(&mut self.pages, 0);
    }
}

/// Pins the `nr` pages starting with the one holding `addr` and appends
/// them to `pages`; returns the index of the first. `EFAULT` when any page
/// is not mapped readable (nothing of this range stays pinned then).
pub(crate) fn pin_into(
    pages: &mut KVVec<*mut bindings::page>,
    addr: u64,
    nr: usize,
    kind: PinKind,
) -> core::result::Result<usize, (Error, usize)> {
    let base = pages.len();
    pages
        .reserve(nr, GFP_KERNEL_ACCOUNT)
        .map_err(|e| (e.into(), 0))?;
    let start = (addr >> PAGE_SHIFT) << PAGE_SHIFT;
    let flags = match kind {
        PinKind::Call => 0,
        PinKind::LongTerm => bindings::FOLL_LONGTERM,
    };
    let mut done = 0usize;
    while done < nr {
        // A chunk at a time, yielding in between: an entry may span up to
        // `MDW_MAX_CALL_BYTES`.
        if done > 0 {
            if let Err(e) = crate::net::yield_killable() {
                unpin_tail(pages, base);
                return Err((e, done));
            }
        }
        let chunk = (nr - done).min(PIN_CHUNK);
        let at = start + ((done as u64) << PAGE_SHIFT);
        // SAFETY: `reserve` made room for `nr` more pointers after the
        // current length; the kernel writes at most `chunk` of them.
        let ret = unsafe {
            bindings::pin_user_pages_fast(
                at as _,
                chunk as i32,
                flags,
                pages.as_mut_ptr().add(base + done),
            )
        };
        if ret <= 0 {
            unpin_tail(pages, base);
            // A range whose page-rounded end wraps past the top of the
            // address space is `EOVERFLOW` to GUP: for the caller it is
            // memory that is not mapped, `EFAULT` as documented.
            let error = match ret {
                0 => EFAULT,
                e if e == -(bindings::EOVERFLOW as i32) => EFAULT,
                e => Error::from_errno(e),
            };
            return Err((error, done));
        }
        done += ret as usize;
        // SAFETY: the kernel initialized `ret` more entries.
        unsafe { pages.set_len(base + done) };
    }
    Ok(base)
}

/// Unpins the pages of `pages` from index `base` on and drops them from it.
fn unpin_tail(pages: &mut KVVec<*mut bindings::page>, base: usize) {
    let n = pages.len().saturating_sub(base);
    if n > 0 {
        // SAFETY: entries `base..` hold pages pinned by `pin_into`.
        unsafe { bindings::unpin_user_pages(pages.as_mut_ptr().add(base), n as _) };
    }
    // SAFETY: shrinking to initialized entries (plain pointers, nothing to
    // drop).
    unsafe { pages.set_len(base.min(pages.len())) };
}

/// Pages charged to the caller's `RLIMIT_MEMLOCK` (as `MSG_ZEROCOPY`
/// charges them: the user's `locked_vm`, nothing with `CAP_IPC_LOCK`);
/// returned on drop, from any context.
pub(crate) struct MemlockCharge(*mut ffi::MdwMmpin);

// SAFETY: the charge may be returned from any thread.
unsafe impl Send for MemlockCharge {}
// SAFETY: no method takes `&self`.
unsafe impl Sync for MemlockCharge {}

impl MemlockCharge {
    /// Charges `pages` pages to the calling task's user; `ENOBUFS` over the
    /// limit. `None` when nothing was charged (`CAP_IPC_LOCK`, an unlimited
    /// `RLIMIT_MEMLOCK`, no pages): nothing to return, nothing allocated.
    pub(crate) fn new(pages: usize) -> Result<Option<Self>> {
        let bytes = (pages as u64)
            .checked_shl(PAGE_SHIFT as u32)
            .ok_or(EINVAL)?;
        // SAFETY: called in the task that is charged, as the helper requires.
        let ptr = unsafe { ffi::mdw_memlock_charge(bytes) };
        if ptr.is_null() {
            return Ok(None);
        }
        Ok(Some(Self(errno::from_err_ptr(ptr)?)))
    }
}

impl Drop for MemlockCharge {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `mdw_memlock_charge`, returned once.
        unsafe { ffi::mdw_memlock_uncharge(self.0) };
    }
}
