// SPDX-License-Identifier: GPL-2.0

//! A call's working state: its validated entries, one slot per destination
//! (or fan-out) with its progress through its data, the shape a call like
//! the next one is revalidated against, and the file's arena that keeps
//! all of it between calls (no allocation per call in the steady state);
//! what a call did ([`Outcome`]) and what a synchronous one leaves to wait
//! for.

use kernel::{
    alloc::{KVVec, KVec},
    prelude::*,
    sync::{Arc, Mutex},
};

use crate::{
    abi::{MdwEntry, MDW_ENTRY_GROUP, MDW_ENTRY_SAME, MDW_WRITE_PACE, MDW_WRITE_QDISC},
    buffer::{BufTable, RegisteredBuffer},
    calldevs::CallDevs,
    callpages::CallPages,
    common::{
        group::SlotRanges,
        pace::{Departures, EntryPace},
        runs::Run,
        segment::{EntrySpan, EntrySpans, PagedCursor},
        template::PacketState,
    },
    completion::CallRelease,
    ffi,
    pincache::PinCache,
    skb::{CallDone, SkbKeep, TxBatch, MAX_FRAGS},
    timing::Timing,
    vec,
};

/// Most pages of a page array a file keeps between calls (128 KiB of
/// pointers, 64 MiB of payload).
const SPARE_PAGES_MAX: usize = 16384;

/// Entries validated between two checks for a fatal signal.
pub(crate) const ENTRIES_PER_YIELD: usize = 64;

/// An unused fragment slot.
const NO_FRAG: ffi::MdwFrag = ffi::MdwFrag {
    page: core::ptr::null_mut(),
    off: 0,
    len: 0,
};

/// The entry flags that make an entry a fan-out's of its own.
pub(crate) const FANOUT_ENTRY_FLAGS: u32 = MDW_ENTRY_SAME | MDW_ENTRY_GROUP;

/// A failure tied to the entry being handled when it happened.
pub(crate) struct EntryError {
    /// The errno.
    pub(crate) error: Error,
    /// Index of the entry in the caller's vector.
    pub(crate) index: u32,
}

/// One validated entry.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// Index in the caller's vector.
    pub(crate) index: u32,
    /// Slot of its destination (or of its fan-out) in this call.
    pub(crate) slot: u32,
    /// Handle of its destination.
    pub(crate) dest: u32,
    /// Index of its destination's device in the call's device list.
    pub(crate) dev: u32,
    pub(crate) len: u64,
    /// Offset of `addr` in its page.
    pub(crate) first_page_offset: u32,
    /// Index of its first page in the call's page array.
    pub(crate) page_base: usize,
    /// RTP timestamp of the entry's first packet, if the caller set one.
    pub(crate) rtp_ts: Option<u32>,
    /// Its own timing in a paced call (`MDW_ENTRY_PACE`), the gap
    /// resolved once the call is validated ([`resolve_pace`]).
    pub(crate) pace: Option<EntryPace>,
}

/// The registered buffers one call uses, looked up once each.
#[derive(Default)]
pub(crate) struct CallBuffers {
    pub(crate) held: KVec<(u32, Arc<RegisteredBuffer>)>,
}

impl CallBuffers {
    /// The index of buffer `id` in this call, looking it up in `table`
    /// the first time; `ENOENT` when the file has no such buffer. The
    /// buffer of the entry before, the usual case, is found at once.
    #[inline(always)]
    pub(crate) fn index(&mut self, id: u32, table: &Mutex<BufTable>) -> Result<usize> {
        match self.held.len().checked_sub(1) {
            Some(last) if self.held.get(last).is_some_and(|(held, _)| *held == id) => Ok(last),
            _ => self.index_slow(id, table),
        }
    }

    /// [`CallBuffers::index`] for a buffer other than the last one found.
    #[inline(never)]
    fn index_slow(&mut self, id: u32, table: &Mutex<BufTable>) -> Result<usize> {
        if let Some(i) = self.held.iter().position(|(held, _)| *held == id) {
            return Ok(i);
        }
        let buffer = table.lock().get(id).ok_or(ENOENT)?.clone();
        self.held.push((id, buffer), GFP_KERNEL_ACCOUNT)?;
        Ok(self.held.len() - 1)
    }

    pub(crate) fn get(&self, index: usize) -> Option<&Arc<RegisteredBuffer>> {
        Some(&self.held.get(index)?.1)
    }

    /// Lets go of the call's buffers, keeping the array.
    pub(crate) fn clear(&mut self) {
        vec::clear(&mut self.held);
    }
}

/// One destination of this call, or one fan-out: its progress through
/// the call. What its packets need from its device is with the
/// destination (`Destination::prepared`), as are its template, packet
/// state and skb ring.
///
/// A fan-out's slot (`fanout`) sends the data of its first entry to the
/// destination of each of its entries (`MDW_ENTRY_SAME`): its cursor walks
/// that one entry, each packet goes to every destination in turn.
pub(crate) struct Slot {
    /// Handle of the destination (of a fan-out: of its first entry).
    pub(crate) handle: u32,
    /// A fan-out.
    pub(crate) fanout: bool,
    /// A group's fan-out (`MDW_ENTRY_GROUP`): its destinations' entries
    /// after the first are the group's, and the first's RTP timestamp is
    /// theirs.
    pub(crate) group: bool,
    /// Index of the device in the call's device list.
    pub(crate) dev: u32,
    /// Whether its skbs are recycled in this call: handed to the device
    /// shared (an audited driver, scatter-gather, direct sends).
    pub(crate) recycle: bool,
    /// The entries of this destination (of a fan-out: its destinations),
    /// as a range of `order`.
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) cursor: PagedCursor,
    /// Index in the caller's vector of the entry being sent.
    pub(crate) current: u32,
    /// Index in the caller's vector of its first entry.
    pub(crate) first_index: u32,
    /// Its packets' departure times, in a paced call.
    pub(crate) departures: Departures,
    /// The send ([`CallArena::sends`]) it was last readied for: a slot
    /// kept for a call shaped like its own ([`Shape`]) is readied by the
    /// send loop at its first turn ([`Slot::begin`]), not in a pass of
    /// its own.
    pub(crate) started_in: u64,
}

impl Slot {
    /// Readies the slot for send `call`, at its first turn in it: nothing
    /// of it sent yet.
    #[inline(always)]
    pub(crate) fn begin(&mut self, call: u64) {
        if self.started_in == call {
            return;
        }
        self.started_in = call;
        self.cursor.rewind();
        self.current = self.first_index;
        self.departures = Departures::default();
    }
}

/// An entry as far as the work of validating it goes: what a call shaped
/// like the last one ([`Shape`]) must repeat. Its address, RTP timestamp
/// and paced timing may differ (they are checked again).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryShape {
    pub(crate) dest: u32,
    pub(crate) flags: u32,
    pub(crate) len: u64,
    pub(crate) buf: u32,
}

impl EntryShape {
    pub(crate) fn of(e: &MdwEntry) -> Self {
        Self {
            dest: e.dest,
            flags: e.flags,
            len: e.len,
            buf: e.buf,
        }
    }
}

/// The shape of a file's last call, whose validation is in its arena's
/// `entries`, `slots` and `order`: a call with the same entries but for
/// their addresses, RTP timestamps and paced timing ([`EntryShape`]), the
/// same `MDW_WRITE_QDISC` and `MDW_WRITE_PACE`, the same destination table
/// and its devices in the same states, needs none of the per-destination
/// work of validation again (its slots, devices, plan), only its pages
/// worked out: the steady state of a sender calling once per interval.
pub(crate) struct Shape {
    /// The arrays hold a validated call that a next call may reuse.
    pub(crate) valid: bool,
    /// The destination and group tables' generations then.
    pub(crate) table: (u64, u64),
    /// Its `MDW_WRITE_QDISC` and `MDW_WRITE_PACE` bits.
    pub(crate) flags: u32,
    /// Its destinations' entries came one after the other.
    pub(crate) grouped: bool,
    /// Every entry sent its own data, untimed: none had `MDW_ENTRY_SAME`,
    /// `MDW_ENTRY_GROUP` or `MDW_ENTRY_PACE` (nor has any entry of a call
    /// shaped like it: their flags are the same).
    pub(crate) plain: bool,
    /// No entry had `MDW_ENTRY_PACE` (some may be fan-outs'
    /// `MDW_ENTRY_SAME`): revalidated by [`relocate`].
    pub(crate) untimed: bool,
    /// Some entry sent from a registered buffer (`MDW_ENTRY_BUF`).
    pub(crate) buffers: bool,
    /// Plain, and every slot was one destination's one entry of one
    /// packet: sent by [`send_single`] when untimed.
    pub(crate) single: bool,
    /// The `call_id` of the entries last found shaped like this (the
    /// file keeps them: `client::Dests::raw`); 0 for none. A call that
    /// repeats them (`MDW_WRITE_REPEAT`) changed only their addresses,
    /// lengths and RTP timestamps: [`relocate`] compares only the lengths.
    pub(crate) matches: u64,
    /// The entries its groups added (`MDW_ENTRY_GROUP`: one per
    /// destination after a group's first), after the caller's in
    /// `entries`.
    pub(crate) members: usize,
    /// Its slots' destinations, each of a fan-out's counted: what the
    /// send's batches are sized for.
    pub(crate) destinations: usize,
    pub(crate) entries: KVVec<EntryShape>,
    /// Each slot's packets, before the send loop took them.
    pub(crate) plan: KVVec<u64>,
    /// Its devices' indices and the stamps of their states, in the order
    /// the call first used them.
    pub(crate) devs: KVVec<(i32, u64)>,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            valid: false,
            table: (0, 0),
            flags: 0,
            grouped: false,
            plain: false,
            untimed: false,
            buffers: false,
            single: false,
            matches: 0,
            members: 0,
            destinations: 0,
            entries: KVVec::new(),
            plan: KVVec::new(),
            devs: KVVec::new(),
        }
    }
}

/// The write flags a call's shape depends on.
pub(crate) const SHAPE_FLAGS: u32 = MDW_WRITE_QDISC | MDW_WRITE_PACE;

/// A file's working arrays for its calls, kept from one call to the next
/// (emptied, not freed), so that a call in the steady state allocates
/// none of them: they grow to the largest call's size and stay. Calls on
/// a file run one at a time, under the lock this lives behind.
pub(crate) struct CallArena {
    /// Numbers the file's calls, for `Destination::slot_in`.
    pub(crate) calls: u64,
    /// Numbers the file's sends (every call, its validation reused or
    /// not), for [`Slot::begin`]; never 0.
    pub(crate) sends: u64,
    pub(crate) entries: KVVec<Entry>,
    pub(crate) slots: KVVec<Slot>,
    /// Entry indices grouped by slot (`Slot::first`, `Slot::count`).
    pub(crate) order: KVVec<u32>,
    /// Per slot: where its next entry goes in `order`, then the packets
    /// it has left to send (the plan).
    pub(crate) remaining: KVVec<u64>,
    /// Scratch space of the round-robin order (and of the grouping, which
    /// leaves it empty); its length is kept from call to call (`plan`).
    pub(crate) active: KVVec<u32>,
    pub(crate) runs: KVVec<Run>,
    pub(crate) devs: CallDevs,
    /// What the file's last synchronous call left for the next, so that
    /// a call in the steady state allocates none of it: its page arrays,
    /// empty (`CallPages::reuse`), its completion, new, and the box of its
    /// release, empty.
    pub(crate) spare_pages: Option<CallPages>,
    pub(crate) spare_done: Option<CallDone>,
    pub(crate) spare_release: Option<KBox<Option<CallRelease>>>,
    /// The file's keep, which its destinations' recycled skbs stay tied
    /// to ([`SkbKeep`]); made by the file's first call.
    pub(crate) keep: Option<SkbKeep>,
    /// The registered buffers a call uses, empty between calls (an
    /// `Option`: taking it for a call leaves nothing to drop when it is
    /// put back).
    pub(crate) buffers: Option<CallBuffers>,
    /// What `entries`, `slots` and `order` hold after a call, for the
    /// next call shaped like it.
    pub(crate) shape: Shape,
    /// The runs of user pages kept pinned for later calls
    /// (`MDW_WRITE_KEEP_PINS`).
    pub(crate) pins: PinCache,
    /// Scratch space for one packet's page fragments: kept, not made
    /// (zeroed) per call.
    pub(crate) frags: [ffi::MdwFrag; MAX_FRAGS],
}

impl Default for CallArena {
    fn default() -> Self {
        Self {
            calls: 0,
            sends: 0,
            entries: KVVec::new(),
            slots: KVVec::new(),
            order: KVVec::new(),
            remaining: KVVec::new(),
            active: KVVec::new(),
            runs: KVVec::new(),
            devs: CallDevs::default(),
            spare_pages: None,
            spare_done: None,
            spare_release: None,
            keep: None,
            buffers: None,
            shape: Shape::default(),
            pins: PinCache::default(),
            frags: [NO_FRAG; MAX_FRAGS],
        }
    }
}

impl CallArena {
    /// Lets go of the file's cached pins (`MDW_WRITE_KEEP_PINS`), for a
    /// charge over `RLIMIT_MEMLOCK`; whether there were any.
    pub(crate) fn clear_pins(&mut self) -> bool {
        self.pins.clear()
    }

    /// Empties every array for a new call (capacity kept) and numbers it.
    pub(crate) fn start(&mut self) {
        self.calls = self.calls.wrapping_add(1);
        self.shape.valid = false;
        vec::clear(&mut self.entries);
        vec::clear(&mut self.slots);
        vec::clear(&mut self.order);
        self.clear();
    }

    /// Keeps what a finished synchronous call leaves for the next call:
    /// its completion and release box, and its page arrays unless they
    /// grew past `SPARE_PAGES_MAX` pages (a file that once sent a large
    /// call does not keep its array for ever).
    pub(crate) fn keep_spare(&mut self, spare: CallSpare) {
        if spare.pages.capacity() <= SPARE_PAGES_MAX {
            self.spare_pages = Some(spare.pages);
        }
        self.spare_done = Some(spare.done);
        self.spare_release = Some(spare.release);
    }

    /// Drops what the last call left but its shape: its device references
    /// above all.
    pub(crate) fn clear(&mut self) {
        vec::clear(&mut self.remaining);
        vec::clear(&mut self.runs);
        self.devs.clear();
    }
}

/// The entry lengths of one destination, in order, for the segmenter:
/// `order[first..first + count]`, checked only when an entry is read (the
/// send loop builds one per packet and reads it once per entry).
pub(crate) struct SlotEntries<'a> {
    pub(crate) order: &'a [u32],
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) entries: &'a [Entry],
}

impl SlotEntries<'_> {
    #[inline(always)]
    pub(crate) fn entry(&self, index: usize) -> Option<&Entry> {
        if index >= self.count {
            return None;
        }
        self.entries
            .get(*self.order.get(self.first.checked_add(index)?)? as usize)
    }
}

impl EntrySpans for SlotEntries<'_> {
    #[inline(always)]
    fn entry_span(&self, index: usize) -> Option<EntrySpan> {
        let e = self.entry(index)?;
        Some(EntrySpan {
            len: e.len,
            first_page: e.page_base,
            page_offset: e.first_page_offset,
        })
    }
}

impl Slot {
    /// Moves on to the destination's entry `index` (of `lens`): the one
    /// errors now name, and its RTP timestamp if the caller set one.
    #[inline(always)]
    pub(crate) fn start_entry<T: Timing>(
        &mut self,
        state: &mut PacketState,
        lens: &SlotEntries<'_>,
        index: usize,
        timing: T,
    ) -> Result<(), EntryError> {
        let entry = lens.entry(index).ok_or(at(self.current)(EINVAL))?;
        self.begin_entry(state, entry, timing);
        Ok(())
    }

    /// What moving on to `entry` means for the destination.
    #[inline(always)]
    fn begin_entry<T: Timing>(&mut self, state: &mut PacketState, entry: &Entry, timing: T) {
        self.current = entry.index;
        if let Some(ts) = entry.rtp_ts {
            state.rtp_ts = ts;
        }
        timing.enter(&mut self.departures, entry.pace);
    }

    /// Moves the cursor, at the end of an entry, to the start of the
    /// destination's next one ([`Slot::start_entry`]), so that its first
    /// packet can go the fast way too.
    #[inline(always)]
    pub(crate) fn enter_next<T: Timing>(
        &mut self,
        state: &mut PacketState,
        order: &[u32],
        entries: &[Entry],
        timing: T,
    ) -> Result<(), EntryError> {
        let lens = self.lens(order, entries);
        // The usual case, the next entry has bytes: looked up once.
        if let Some(next) = self.cursor.next_entry() {
            if let Some(entry) = lens.entry(next) {
                let span = EntrySpan {
                    len: entry.len,
                    first_page: entry.page_base,
                    page_offset: entry.first_page_offset,
                };
                if self.cursor.enter(next, &span) {
                    self.begin_entry(state, entry, timing);
                    return Ok(());
                }
            }
        }
        let index = self
            .cursor
            .enter_next(&lens)
            .ok_or(at(self.current)(EINVAL))?;
        self.start_entry(state, &lens, index, timing)
    }

    #[inline(always)]
    pub(crate) fn lens<'a>(&self, order: &'a [u32], entries: &'a [Entry]) -> SlotEntries<'a> {
        SlotEntries {
            order,
            first: self.first,
            // A fan-out's data is that of its first entry.
            count: if self.fanout { 1 } else { self.count },
            entries,
        }
    }
}

/// What a call did: its counters and, if it stopped early, why.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Payload bytes sent.
    pub(crate) bytes: u64,
    /// Of those, bytes copied into linear skbs.
    pub(crate) copied: u64,
    pub(crate) packets: u64,
    pub(crate) error: Option<EntryError>,
    /// The device still held a packet that a ring keeps after the flush
    /// that sent it: the call's end lets go of such packets (`keep_rings`).
    pub(crate) held: bool,
}

impl Outcome {
    /// Counts what a batch flush sent; passes its error on.
    pub(crate) fn count(&mut self, flushed: crate::skb::Flushed) -> Result {
        self.packets += flushed.packets as u64;
        self.bytes += flushed.bytes;
        self.copied += flushed.copied;
        self.held |= flushed.held;
        flushed.result
    }
    /// The end of a send loop: unless it stopped on an error, flushes
    /// `batch` (a failure names entry `last`, the last one sent from).
    /// Anything still batched after an error is freed, not sent, when the
    /// caller drops the batch. (By reference: moving a `TxBatch` copies it,
    /// a few hundred instructions per call.)
    #[inline(always)]
    pub(crate) fn finish(&mut self, batch: &mut TxBatch<'_>, last: u32) {
        if self.error.is_none() {
            if let Err(e) = self.count(batch.flush()) {
                self.error = Some(at(last)(e));
            }
        }
    }
}

/// The end of a synchronous call, after the file's lock and the call's
/// device references are dropped: the wait until the device has released
/// every packet, then the release of the call's pages.
pub(crate) struct SyncWait {
    pub(crate) done: CallDone,
    /// Holds the call's release.
    pub(crate) release: KBox<Option<CallRelease>>,
}

/// What a synchronous call leaves for the file's next call
/// ([`CallArena::keep_spare`]).
pub(crate) struct CallSpare {
    pub(crate) pages: CallPages,
    pub(crate) done: CallDone,
    pub(crate) release: KBox<Option<CallRelease>>,
}

impl SyncWait {
    /// Waits, killably; returns what the file's next call may use again.
    /// On a fatal signal returns `EINTR` at once and the pages are
    /// released later, when the device lets go of the packets.
    pub(crate) fn wait(self) -> Result<CallSpare> {
        let (pages, done, release) = self.done.wait_killable(self.release)?;
        Ok(CallSpare {
            pages,
            done,
            release,
        })
    }
}

/// An allocation failure, not tied to an entry.
pub(crate) fn nomem<E>(_: E) -> EntryError {
    EntryError {
        error: ENOMEM,
        index: 0,
    }
}

pub(crate) fn at(index: u32) -> impl Fn(Error) -> EntryError {
    move |error| EntryError { error, index }
}

impl SlotRanges for [Slot] {
    fn slots(&self) -> usize {
        self.len()
    }

    fn count(&self, slot: usize) -> usize {
        self.get(slot).map_or(0, |s| s.count)
    }

    fn set_first(&mut self, slot: usize, first: usize) {
        if let Some(s) = self.get_mut(slot) {
            s.first = first;
        }
    }
}
