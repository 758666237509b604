// SPDX-License-Identifier: GPL-2.0

//! The multi-destination write: entries, options and the report.

use std::io;

use mdwrite_uapi::{MdwEntry, MdwStats, MDW_ENTRY_RTP_TS, MDW_WRITE_QDISC};

use crate::DestId;

/// One chunk of data for one destination; any size, any alignment.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Where it goes.
    pub dest: DestId,
    /// What is sent (by reference: the module pins these pages).
    pub data: &'a [u8],
    /// RTP timestamp of the entry's first packet (RTP destinations only).
    pub rtp_timestamp: Option<u32>,
}

impl<'a> Entry<'a> {
    /// `data` for `dest`.
    pub fn new(dest: DestId, data: &'a [u8]) -> Self {
        Self {
            dest,
            data,
            rtp_timestamp: None,
        }
    }

    pub(crate) fn to_abi(self) -> MdwEntry {
        MdwEntry {
            dest: self.dest.0,
            flags: if self.rtp_timestamp.is_some() {
                MDW_ENTRY_RTP_TS
            } else {
                0
            },
            addr: self.data.as_ptr() as u64,
            len: self.data.len() as u64,
            rtp_timestamp: self.rtp_timestamp.unwrap_or(0),
            buf: 0,
        }
    }
}

/// How a write is sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Packets per destination per round (0 or 1: strict round-robin).
    pub quantum: u32,
    /// Through the qdisc rather than straight onto the TX queue.
    pub qdisc: bool,
}

impl WriteOptions {
    pub(crate) fn flags(&self) -> u32 {
        if self.qdisc {
            MDW_WRITE_QDISC
        } else {
            0
        }
    }
}

/// What a write did.
#[derive(Debug)]
pub struct WriteReport {
    /// Payload bytes handed to the device.
    pub bytes: u64,
    /// Packets handed to the device.
    pub packets: u64,
    /// Why the call stopped early, and the index of the entry being sent.
    pub error: Option<(io::Error, usize)>,
}

/// The module's counters for one open device (`MDW_IOC_STATS`).
pub type Stats = MdwStats;
