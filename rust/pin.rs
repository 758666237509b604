// SPDX-License-Identifier: GPL-2.0

//! Pinned user pages (`pin_user_pages_fast`, FOLL_PIN): the zero-copy
//! translation from user virtual addresses to pages.

use kernel::{alloc::KVVec, bindings, page::PAGE_SHIFT, prelude::*};

/// Pages of user memory pinned for one call, unpinned on drop.
pub(crate) struct PinnedPages {
    pages: KVVec<*mut bindings::page>,
}

// SAFETY: pinned pages may be unpinned from any thread.
unsafe impl Send for PinnedPages {}

impl PinnedPages {
    /// An empty set with room for `capacity` pages.
    pub(crate) fn with_capacity(capacity: usize) -> Result<Self> {
        Ok(Self { pages: KVVec::with_capacity(capacity, GFP_KERNEL)? })
    }

    /// Number of pages pinned.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Pins the `nr` pages starting with the one holding `addr`, appending
    /// them; returns the index of the first. `EFAULT` when any page is not
    /// mapped readable (nothing of this range stays pinned then).
    pub(crate) fn pin(&mut self, addr: u64, nr: usize) -> Result<usize> {
        let base = self.pages.len();
        self.pages.reserve(nr, GFP_KERNEL)?;
        let start = (addr >> PAGE_SHIFT) << PAGE_SHIFT;
        let mut done = 0usize;
        while done < nr {
            let chunk = (nr - done).min(i32::MAX as usize);
            let at = start + ((done as u64) << PAGE_SHIFT);
            // SAFETY: `reserve` made room for `nr` more pointers after the
            // current length; the kernel writes at most `chunk` of them.
            let ret = unsafe {
                bindings::pin_user_pages_fast(
                    at as _,
                    chunk as i32,
                    0,
                    self.pages.as_mut_ptr().add(base + done),
                )
            };
            if ret <= 0 {
                self.unpin_from(base, done);
                return Err(if ret < 0 { Error::from_errno(ret) } else { EFAULT });
            }
            done += ret as usize;
            // SAFETY: the kernel initialized `ret` more entries.
            unsafe { self.pages.set_len(base + done) };
        }
        Ok(base)
    }

    /// The pinned pages, in pinning order.
    pub(crate) fn pages(&self) -> &[*mut bindings::page] {
        &self.pages
    }

    fn unpin_from(&mut self, base: usize, n: usize) {
        if n > 0 {
            // SAFETY: entries `base..base + n` hold pages pinned by `pin`.
            unsafe { bindings::unpin_user_pages(self.pages.as_mut_ptr().add(base), n as _) };
        }
        // SAFETY: shrinking to initialized entries only.
        unsafe { self.pages.set_len(base) };
    }
}

impl Drop for PinnedPages {
    fn drop(&mut self) {
        let n = self.pages.len();
        self.unpin_from(0, n);
    }
}
