// SPDX-License-Identifier: GPL-2.0

//! Counters of one open file (`MDW_IOC_STATS`), readable while a call runs.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::abi::MdwStats;

/// The counters; see `struct mdw_stats` in `uapi/mdwrite.h`.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) calls: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) bytes_zerocopy: AtomicU64,
    pub(crate) bytes_copied: AtomicU64,
    pub(crate) completions: AtomicU64,
    pub(crate) pages_pinned: AtomicU64,
}

impl Stats {
    /// A snapshot for userspace (the completion queue's fields are 0; see
    /// `FileShared::snapshot`).
    pub(crate) fn snapshot(&self) -> MdwStats {
        MdwStats {
            calls: self.calls.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes_zerocopy: self.bytes_zerocopy.load(Relaxed),
            bytes_copied: self.bytes_copied.load(Relaxed),
            completions: self.completions.load(Relaxed),
            pages_pinned: self.pages_pinned.load(Relaxed),
            ..Default::default()
        }
    }

    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Subtracts `n` from `counter`.
    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }
}
