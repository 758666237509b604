// SPDX-License-Identifier: GPL-2.0

//! The userspace fallback backend: UDP sockets and `sendmmsg`.

use std::io;

use crate::{DestConfig, DestId, Entry, Stats, WriteOptions, WriteReport};

/// The fallback's state: destinations, their sockets and counters.
#[derive(Debug, Default)]
pub(crate) struct Fallback {
    stats: Stats,
}

impl Fallback {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn connect(&mut self, _dest: &DestConfig) -> io::Result<DestId> {
        todo!()
    }

    pub(crate) fn disconnect(&mut self, _id: DestId) -> io::Result<()> {
        todo!()
    }

    pub(crate) fn max_payload(&self, _id: DestId) -> Option<u16> {
        todo!()
    }

    pub(crate) fn send_vectored(
        &mut self,
        _entries: &[Entry<'_>],
        _opts: &WriteOptions,
    ) -> io::Result<WriteReport> {
        todo!()
    }
}
