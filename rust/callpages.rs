// SPDX-License-Identifier: GPL-2.0

//! The pages of one call: pinned by the call itself (`pin`) or borrowed
//! from registered buffers (`buffer`) and from the file's pin cache
//! (`pincache`), in entry order.

use kernel::{alloc::KVVec, bindings, prelude::*, sync::Arc};

use crate::{
    buffer::RegisteredBuffer,
    pin::{pin_into, PinKind},
    pincache::CachedRun,
};

/// The pages of one call, indexed in entry order: pinned by the call for
/// plain entries, borrowed from registered buffers (which the call holds)
/// for `MDW_ENTRY_BUF` entries, borrowed from the pin cache's runs (which
/// the call holds too) for plain entries of a call with
/// `MDW_WRITE_KEEP_PINS`. Dropping it unpins what the call pinned and lets
/// go of the buffers and runs.
pub(crate) struct CallPages {
    /// Every page of the call.
    pages: KVVec<*mut bindings::page>,
    /// Ranges of `pages` the call pinned itself, merged when adjacent.
    pinned: KVVec<(usize, usize)>,
    /// The buffers the borrowed pages belong to, one reference each.
    buffers: KVec<Arc<RegisteredBuffer>>,
    /// The cached runs the borrowed pages belong to, one reference each.
    runs: KVec<Arc<CachedRun>>,
}

// SAFETY: pinned pages may be unpinned from any thread; the buffers are
// `Send`.
unsafe impl Send for CallPages {}

impl CallPages {
    /// An empty translation with room for `capacity` pages, in the arrays
    /// of `spare` (an earlier call's, [`CallPages::recycle`]d) when there
    /// is one: a call as large as the file's earlier ones allocates none.
    pub(crate) fn reuse(spare: Option<Self>, capacity: usize) -> Result<Self> {
        let mut this = spare.unwrap_or_else(|| Self {
            pages: KVVec::new(),
            pinned: KVVec::new(),
            buffers: KVec::new(),
            runs: KVec::new(),
        });
        this.pages.reserve(capacity, GFP_KERNEL_ACCOUNT)?;
        Ok(this)
    }

    /// Unpins what the call pinned and lets go of its buffers, keeping the
    /// arrays for another call ([`CallPages::reuse`]).
    pub(crate) fn recycle(mut self) -> Self {
        self.release();
        self
    }

    /// Unpins what the call pinned and lets go of its buffers and runs;
    /// empty after.
    fn release(&mut self) {
        for &(start, n) in self.pinned.iter() {
            if let Some(pages) = self.pages.get_mut(start..start + n) {
                // SAFETY: `pin` pinned exactly these pages for this call,
                // and `pinned` is emptied below, so never again.
                unsafe { bindings::unpin_user_pages(pages.as_mut_ptr(), n as _) };
            }
        }
        crate::vec::clear(&mut self.pinned);
        crate::vec::clear(&mut self.pages);
        crate::vec::clear(&mut self.buffers);
        crate::vec::clear(&mut self.runs);
    }

    /// Pins `nr` pages from the one holding `addr` for this call (see
    /// `PinnedPages::pin`); returns the index of the first.
    /// On failure, also says how many of the pages (the first ones) could
    /// be pinned before it.
    pub(crate) fn pin(
        &mut self,
        addr: u64,
        nr: usize,
    ) -> core::result::Result<usize, (Error, usize)> {
        self.pinned
            .reserve(1, GFP_KERNEL_ACCOUNT)
            .map_err(|e| (e.into(), 0))?;
        let base = pin_into(&mut self.pages, addr, nr, PinKind::Call)?;
        match self.pinned.last_mut() {
            Some((start, len)) if *start + *len == base => *len += nr,
            // Cannot fail: room was reserved.
            _ => self
                .pinned
                .push((base, nr), GFP_KERNEL_ACCOUNT)
                .map_err(|e| (e.into(), 0))?,
        }
        Ok(base)
    }

    /// Appends pages `first..first + nr` of registered buffer `buffer`
    /// (held by the call from now on); returns the index of the first.
    pub(crate) fn borrow(
        &mut self,
        buffer: &Arc<RegisteredBuffer>,
        first: usize,
        nr: usize,
    ) -> Result<usize> {
        let pages = borrowed(buffer.pages(), first, nr)?;
        if !self.buffers.iter().any(|b| Arc::ptr_eq(b, buffer)) {
            self.buffers.push(buffer.clone(), GFP_KERNEL_ACCOUNT)?;
        }
        self.append(pages)
    }

    /// Appends pages `first..first + nr` of the cached run `run` (held by
    /// the call from now on); returns the index of the first.
    pub(crate) fn borrow_run(
        &mut self,
        run: &Arc<CachedRun>,
        first: usize,
        nr: usize,
    ) -> Result<usize> {
        let pages = borrowed(run.pages(), first, nr)?;
        // One reference per stretch of the call from the same run: a
        // reference more is harmless, a search per run would not be.
        if !self.runs.last().is_some_and(|r| Arc::ptr_eq(r, run)) {
            self.runs.push(run.clone(), GFP_KERNEL_ACCOUNT)?;
        }
        self.append(pages)
    }

    /// Appends borrowed `pages`; returns the index of the first.
    fn append(&mut self, pages: &[*mut bindings::page]) -> Result<usize> {
        let base = self.pages.len();
        self.pages.extend_from_slice(pages, GFP_KERNEL_ACCOUNT)?;
        Ok(base)
    }

    /// Every page of the call.
    pub(crate) fn pages(&self) -> &[*mut bindings::page] {
        &self.pages
    }

    /// How many pages the page array has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.pages.capacity()
    }

    /// How many pages the call pinned itself.
    pub(crate) fn pinned(&self) -> usize {
        self.pinned.iter().map(|&(_, n)| n).sum()
    }
}

/// Pages `first..first + nr` of `pages`; `EFAULT` past its end.
fn borrowed(
    pages: &[*mut bindings::page],
    first: usize,
    nr: usize,
) -> Result<&[*mut bindings::page]> {
    let end = first.checked_add(nr).ok_or(EFAULT)?;
    pages.get(first..end).ok_or(EFAULT)
}

impl Drop for CallPages {
    fn drop(&mut self) {
        self.release();
    }
}
