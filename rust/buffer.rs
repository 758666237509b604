// SPDX-License-Identifier: GPL-2.0

//! Registered translation buffers (`MDW_IOC_BUF_REGISTER`): user memory
//! pinned once, long-term, whose page array the module keeps, so that a
//! write from it needs no page-table walk and no pinning.
//!
//! A buffer is reference counted: the file's table holds one reference and
//! every call that sends from it holds another until its packets have left,
//! so unregistering (or closing the file) while packets are in flight
//! releases the pages only after the last of them.

use kernel::{bindings, page::PAGE_SHIFT, prelude::*, sync::Arc};

use crate::{
    abi::{MDW_MAX_BUFS, MDW_MAX_BUF_BYTES},
    common::segment::pages_spanned,
    pin::{MemlockCharge, PinKind, PinnedPages},
    records::FileShared,
    stats::Stats,
    table::Table,
};

/// One registered buffer.
pub(crate) struct RegisteredBuffer {
    /// Returned to `RLIMIT_MEMLOCK` after the pages are unpinned.
    pages: PinnedPages,
    _charge: Option<MemlockCharge>,
    /// Offset of the buffer's first byte in its first page.
    offset: u32,
    len: u64,
    /// Where `pages_pinned` is counted.
    shared: Arc<FileShared>,
}

impl RegisteredBuffer {
    /// Charges and pins the `len` bytes at user address `addr`.
    pub(crate) fn new(shared: &Arc<FileShared>, addr: u64, len: u64) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        if len > MDW_MAX_BUF_BYTES {
            return Err(E2BIG);
        }
        addr.checked_add(len).ok_or(EFAULT)?;
        let offset = (addr & ((1 << PAGE_SHIFT) - 1)) as u32;
        let nr = pages_spanned(offset, len, PAGE_SHIFT as u32).map_err(|_| EINVAL)? as usize;
        let charge = MemlockCharge::new(nr)?;
        let mut pages = PinnedPages::with_capacity(nr, PinKind::LongTerm)?;
        pages.pin(addr, nr)?;
        Stats::add(&shared.stats.pages_pinned, nr as u64);
        Ok(Self {
            pages,
            _charge: charge,
            offset,
            len,
            shared: shared.clone(),
        })
    }

    /// Bytes in the buffer.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The offset of the buffer's first byte in its first page.
    pub(crate) fn start(&self) -> u32 {
        self.offset
    }

    /// Where byte `at` of the buffer is: the index of its page in
    /// [`Self::pages`] and its offset in that page.
    pub(crate) fn locate(&self, at: u64) -> (usize, u32) {
        let pos = self.offset as u64 + at;
        (
            (pos >> PAGE_SHIFT) as usize,
            (pos & ((1 << PAGE_SHIFT) - 1)) as u32,
        )
    }

    /// The buffer's pages, in address order.
    pub(crate) fn pages(&self) -> &[*mut bindings::page] {
        self.pages.pages()
    }
}

impl Drop for RegisteredBuffer {
    fn drop(&mut self) {
        Stats::sub(&self.shared.stats.pages_pinned, self.pages.len() as u64);
    }
}

/// The registered buffers of one file, by id.
pub(crate) type BufTable = Table<Arc<RegisteredBuffer>, { MDW_MAX_BUFS as usize }>;
