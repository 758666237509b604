// SPDX-License-Identifier: GPL-2.0

//! The multi-destination write: entries, options and the report.

use std::{collections::HashSet, io};

use mdwrite_uapi::{
    MdwEntry, MdwStats, MDW_ENTRY_BUF, MDW_ENTRY_GROUP, MDW_ENTRY_PACE, MDW_ENTRY_RTP_TS,
    MDW_ENTRY_SAME, MDW_WRITE_KEEP_PINS, MDW_WRITE_PACE, MDW_WRITE_QDISC,
};

use crate::{buffer::BufferTable, DestId, EntryPace, GroupId, PaceWindow};

/// One chunk of data for one destination; any size, any alignment.
///
/// `data` may be any memory, or a slice of a
/// [`RegisteredBuffer`](crate::RegisteredBuffer) registered on the sender:
/// the sender then names it by buffer id and offset (`MDW_ENTRY_BUF`) and
/// the module pins nothing.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Where it goes.
    pub dest: DestId,
    /// What is sent (by reference: the module pins these pages, or uses
    /// those of the registered buffer the slice lies in).
    pub data: &'a [u8],
    /// RTP timestamp of the entry's first packet (RTP destinations only).
    pub rtp_timestamp: Option<u32>,
    /// Its own timing in a paced call ([`WriteOptions::pace`]); `None`
    /// spreads the destination's packets evenly over the window.
    pub pace: Option<EntryPace>,
    /// With a group, the entry goes to every destination of the group
    /// (`MDW_ENTRY_GROUP`, [`Entry::to_group`]) and `dest` is not used.
    pub group: Option<GroupId>,
}

impl<'a> Entry<'a> {
    /// `data` for `dest`.
    pub fn new(dest: DestId, data: &'a [u8]) -> Self {
        Self {
            dest,
            data,
            rtp_timestamp: None,
            pace: None,
            group: None,
        }
    }

    /// `data` for every destination of `group`, in the group's order, as a
    /// fan-out described once (`MDW_ENTRY_GROUP`): each packet goes to all
    /// of them, with each one's own headers, before the next. Only
    /// [`Device`](crate::Device) calls and a [`Sender`](crate::Sender) on a
    /// module with `MDW_FEAT_GROUP` that paces in the kernel (or not at
    /// all) send it; otherwise `EOPNOTSUPP`.
    pub fn to_group(group: GroupId, data: &'a [u8]) -> Self {
        Self {
            group: Some(group),
            ..Self::new(DestId(0), data)
        }
    }

    /// With `ts` as the RTP timestamp of its first packet.
    pub fn with_rtp_timestamp(mut self, ts: u32) -> Self {
        self.rtp_timestamp = Some(ts);
        self
    }

    /// With its own timing in a paced call (`MDW_ENTRY_PACE`).
    pub fn with_pace(mut self, pace: EntryPace) -> Self {
        self.pace = Some(pace);
        self
    }

    pub(crate) fn to_abi(self) -> MdwEntry {
        let mut flags = 0;
        if self.rtp_timestamp.is_some() {
            flags |= MDW_ENTRY_RTP_TS;
        }
        let (pace_offset, pace_gap) = match self.pace {
            Some(p) => {
                flags |= MDW_ENTRY_PACE;
                p.abi()
            }
            None => (0, 0),
        };
        let dest = match self.group {
            Some(group) => {
                flags |= MDW_ENTRY_GROUP;
                group.0
            }
            None => self.dest.0,
        };
        MdwEntry {
            dest,
            flags,
            addr: self.data.as_ptr() as u64,
            len: self.data.len() as u64,
            rtp_timestamp: self.rtp_timestamp.unwrap_or(0),
            pace_offset,
            pace_gap,
            ..Default::default()
        }
    }

    /// As [`to_abi`](Entry::to_abi), naming the registered buffer the data
    /// lies in, if any.
    pub(crate) fn to_abi_in(self, table: &BufferTable) -> MdwEntry {
        let mut e = self.to_abi();
        if let Some((id, offset)) = table.lookup(self.data) {
            e.flags |= MDW_ENTRY_BUF;
            e.addr = offset;
            e.buf = id;
        }
        e
    }
}

/// How a write is sent: [`WriteOptions::default`] and the `with_*`
/// methods.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Packets per destination per round (0 or 1: strict round-robin).
    pub quantum: u32,
    /// Through the qdisc rather than straight onto the TX queue.
    pub qdisc: bool,
    /// A paced call: every packet departs at its own time inside this
    /// window (`MDW_WRITE_PACE`; see [`Sender::send_vectored`](crate::Sender::send_vectored)
    /// for who releases them).
    pub pace: Option<PaceWindow>,
    /// Send runs of entries with the same data as fan-outs
    /// ([`with_fanout`](WriteOptions::with_fanout)).
    pub fanout: bool,
    /// Keep the user pages of the call pinned for later calls from the
    /// same memory ([`with_keep_pins`](WriteOptions::with_keep_pins)).
    pub keep_pins: bool,
}

impl WriteOptions {
    /// With `quantum` packets per destination per round.
    pub fn with_quantum(mut self, quantum: u32) -> Self {
        self.quantum = quantum;
        self
    }

    /// Through the qdisc (`true`) or straight onto the TX queue.
    pub fn with_qdisc(mut self, qdisc: bool) -> Self {
        self.qdisc = qdisc;
        self
    }

    /// Paced in `window` (`None`: as fast as the device takes them).
    pub fn with_pace(mut self, window: Option<PaceWindow>) -> Self {
        self.pace = window;
        self
    }

    /// With `fanout`, consecutive entries whose data is the same slice
    /// (same address and length) for different destinations go to the
    /// module as one fan-out (`MDW_ENTRY_SAME`): the data is checked and
    /// pinned once, and each of its packets goes to every destination of
    /// the run before the next packet. Needs a module with
    /// `MDW_FEAT_FANOUT`; [`Sender`](crate::Sender) ignores it otherwise,
    /// and the fallback sends such entries as they are (the same packets:
    /// for entries of one packet, in the same order).
    pub fn with_fanout(mut self, fanout: bool) -> Self {
        self.fanout = fanout;
        self
    }

    /// With `keep_pins`, the module keeps the pages of the call's data
    /// pinned after the call (`MDW_WRITE_KEEP_PINS`, charged to
    /// `RLIMIT_MEMLOCK`), and later calls with it that send from the same
    /// memory use them without pinning again, as long as the memory stays
    /// mapped as it was: for a sender that sends from the same buffers
    /// call after call. A [`Sender`](crate::Sender) on a module without
    /// `MDW_FEAT_KEEP_PINS`, or on the fallback, ignores it; a
    /// [`Device`](crate::Device) call on such a module fails with
    /// `EINVAL`.
    pub fn with_keep_pins(mut self, keep_pins: bool) -> Self {
        self.keep_pins = keep_pins;
        self
    }

    pub(crate) fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.keep_pins {
            flags |= MDW_WRITE_KEEP_PINS;
        }
        if self.qdisc {
            flags |= MDW_WRITE_QDISC;
        }
        if self.pace.is_some() {
            flags |= MDW_WRITE_PACE;
        }
        flags
    }
}

/// Whether the fan-out `run` can go as one group entry (`MDW_ENTRY_GROUP`):
/// every entry with the first one's RTP timestamp (a group entry gives
/// its destinations one), none timed by itself.
pub(crate) fn groupable(run: &[Entry<'_>]) -> bool {
    let ts = run.first().map(|e| e.rtp_timestamp);
    run.iter()
        .all(|e| Some(e.rtp_timestamp) == ts && e.pace.is_none() && e.group.is_none())
}

/// Turns each entry of `entries` whose data is the previous entry's (the
/// same address and length) for a destination not yet in that run into an
/// `MDW_ENTRY_SAME` entry of `raw` (their ABI form): a fan-out.
pub(crate) fn mark_fanouts(raw: &mut [MdwEntry], entries: &[Entry<'_>]) {
    let mut members = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        // A group's entry is a fan-out of its own.
        let same = i > 0 && e.group.is_none() && entries[i - 1].group.is_none() && {
            let prev = entries[i - 1].data;
            std::ptr::eq(prev.as_ptr(), e.data.as_ptr()) && prev.len() == e.data.len()
        };
        if !same {
            members.clear();
        }
        if members.insert(e.dest.0) && same {
            let r = &mut raw[i];
            r.flags = (r.flags & (MDW_ENTRY_RTP_TS | MDW_ENTRY_PACE)) | MDW_ENTRY_SAME;
            r.addr = 0;
            r.len = 0;
            r.buf = 0;
        } else if same {
            // A destination twice in a run starts a new run.
            members.clear();
            members.insert(e.dest.0);
        }
    }
}

/// What a write did (for an asynchronous one: what it queued).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_the_same_data_are_fanouts() {
        let a = vec![1u8; 100];
        let b = a.clone();
        let d = DestId::from_handle;
        let entries = [
            Entry::new(d(1), &a),
            Entry::new(d(2), &a),
            Entry {
                rtp_timestamp: Some(7),
                ..Entry::new(d(3), &a)
            },
            // Same contents, other memory: a new entry.
            Entry::new(d(1), &b),
            Entry::new(d(2), &b[..50]),
            Entry::new(d(3), &b[..50]),
            // A destination twice: a new run.
            Entry::new(d(3), &b[..50]),
            Entry::new(d(1), &b[..50]),
        ];
        let mut raw: Vec<MdwEntry> = entries.iter().map(|e| e.to_abi()).collect();
        mark_fanouts(&mut raw, &entries);
        let same: Vec<bool> = raw.iter().map(|r| r.flags & MDW_ENTRY_SAME != 0).collect();
        assert_eq!(same, [false, true, true, false, false, true, false, true]);
        assert_eq!(
            (raw[2].flags, raw[2].addr, raw[2].len),
            (MDW_ENTRY_SAME | MDW_ENTRY_RTP_TS, 0, 0)
        );
        assert_eq!(raw[3].len, 100);
    }

    #[test]
    fn entries_in_registered_buffers_name_the_buffer() {
        let mem = vec![0u8; 4096];
        let plain = vec![0u8; 16];
        let mut table = BufferTable::default();
        table.insert(mem.as_ptr() as usize, mem.len(), 5);
        let dest = DestId::from_handle(3);
        let e = Entry {
            dest,
            data: &mem[100..300],
            rtp_timestamp: Some(9),
            pace: None,
            group: None,
        }
        .to_abi_in(&table);
        assert_eq!(
            e,
            MdwEntry {
                dest: 3,
                flags: MDW_ENTRY_RTP_TS | MDW_ENTRY_BUF,
                addr: 100,
                len: 200,
                rtp_timestamp: 9,
                buf: 5,
                ..Default::default()
            }
        );
        let e = Entry::new(dest, &plain).to_abi_in(&table);
        assert_eq!((e.flags, e.buf), (0, 0));
        assert_eq!(e.addr, plain.as_ptr() as u64);
    }
}
