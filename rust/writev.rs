// SPDX-License-Identifier: GPL-2.0

//! `MDW_IOC_WRITEV`: one multi-destination, zero-copy write.
//!
//! The stages, in order: validate every entry; group the entries by
//! destination (in order of first appearance) and look up each device; pin
//! every page; then walk the round-robin order (`common::interleave`), cut
//! each destination's data into packets (`common::segment`), build each
//! packet's header from the template and its payload from page fragments,
//! and hand them to the device in batches. A synchronous call returns after
//! the device has released every packet (one completion for the call), and
//! only then unpins; it waits killably, after its caller dropped the file's
//! lock and the call its device references ([`SyncWait`]). An asynchronous
//! one (`MDW_WRITE_ASYNC`) returns once its packets are queued and leaves
//! its pages to its completion (`completion.rs`).
//!
//! Every loop whose length the caller controls (entries, pages, packets,
//! the wait for a stopped queue) yields and stops on a fatal signal.

use core::cell::Cell;

use kernel::{
    alloc::{KVVec, KVec},
    page::PAGE_SHIFT,
    prelude::*,
    sync::{Arc, Mutex},
};

use crate::{
    abi::{
        MdwCompletion, MdwEntry, MdwRepeat, MdwWritev, MDW_ENTRY_BUF, MDW_ENTRY_GROUP,
        MDW_ENTRY_PACE, MDW_ENTRY_RTP_TS, MDW_ENTRY_SAME, MDW_ENTRY_SIZE_VER0, MDW_MAX_CALL_BYTES,
        MDW_MAX_CALL_DESTS, MDW_MAX_ENTRIES, MDW_MAX_ENTRY_SIZE, MDW_MAX_PACE_AHEAD,
        MDW_MAX_PACE_WINDOW, MDW_REPEAT_SIZE_VER0, MDW_WRITE_ASYNC, MDW_WRITE_KEEP_PINS,
        MDW_WRITE_PACE, MDW_WRITE_QDISC, MDW_WRITE_REPEAT,
    },
    buffer::{BufTable, RegisteredBuffer},
    calldevs::CallDevs,
    callpages::CallPages,
    common::{
        checksum::from_native_sum,
        group::{group_by_slot, Grouping, SlotRanges},
        interleave::{Burst, RoundRobin},
        pace::{Departures, EntryPace, PaceError, Window},
        runs::{self, Run, RunLayout, Source},
        segment::{
            packet_count, page_frags, pages_spanned, split_two, EntrySpan, EntrySpans, FullPacket,
            PagedCursor,
        },
        template::PacketState,
    },
    completion::{AsyncCall, CallRelease},
    dest::{CsumMode, DestTable, Destination, Prepared},
    ffi,
    groups::GroupTable,
    net::{yield_killable, NetDevice, NetNs},
    pacer::Pacer,
    pin::MemlockCharge,
    pincache::PinCache,
    records::{FileShared, Reservation},
    skb::{payload_sum, CallDone, PacketParts, SkbKeep, SkbPool, TwoFrags, TxBatch, MAX_FRAGS},
    stats::Stats,
    vec,
};

/// Most pages of a page array a file keeps between calls (128 KiB of
/// pointers, 64 MiB of payload).
const SPARE_PAGES_MAX: usize = 16384;

/// Entries validated between two checks for a fatal signal.
const ENTRIES_PER_YIELD: usize = 64;

/// `MDW_WRITE_*` bits this module knows.
const KNOWN_WRITE_FLAGS: u32 =
    MDW_WRITE_QDISC | MDW_WRITE_ASYNC | MDW_WRITE_PACE | MDW_WRITE_REPEAT | MDW_WRITE_KEEP_PINS;
/// `MDW_ENTRY_*` bits this module knows.
const KNOWN_ENTRY_FLAGS: u32 =
    MDW_ENTRY_RTP_TS | MDW_ENTRY_BUF | MDW_ENTRY_SAME | MDW_ENTRY_PACE | MDW_ENTRY_GROUP;
/// The entry flags that make an entry a fan-out's of its own.
const FANOUT_ENTRY_FLAGS: u32 = MDW_ENTRY_SAME | MDW_ENTRY_GROUP;

/// The clocks of a paced call's window (`pace_clock`): `CLOCK_MONOTONIC`
/// and `CLOCK_TAI` of `include/uapi/linux/time.h`.
const CLOCK_MONOTONIC: u32 = 1;
const CLOCK_TAI: u32 = 11;

/// A paced call's timing (`MDW_WRITE_PACE`).
#[derive(Clone, Copy)]
struct Pace {
    window: Window,
    /// The window is on `CLOCK_TAI` (else `CLOCK_MONOTONIC`).
    tai: bool,
}

impl Pace {
    /// The timing `req` asks for, checked against the time now: `None`
    /// for an unpaced call.
    fn of(req: &MdwWritev) -> Result<Option<Self>> {
        if req.flags & MDW_WRITE_PACE == 0 {
            return Ok(None);
        }
        let qdisc = req.flags & MDW_WRITE_QDISC != 0;
        // The module's own release (direct path) runs on CLOCK_MONOTONIC;
        // CLOCK_TAI times are for etf, through the qdisc.
        let tai = match (req.pace_clock, qdisc) {
            (CLOCK_MONOTONIC, _) => false,
            (CLOCK_TAI, true) => true,
            _ => return Err(EINVAL),
        };
        let now = crate::net::clock_ns(tai);
        let window = Window::new(
            req.pace_start,
            u64::from(req.pace_window),
            now,
            u64::from(MDW_MAX_PACE_WINDOW),
            MDW_MAX_PACE_AHEAD,
        )
        .map_err(pace_errno)?;
        Ok(Some(Self { window, tai }))
    }
}

/// The errno of a [`PaceError`].
fn pace_errno(e: PaceError) -> Error {
    match e {
        PaceError::Empty => EINVAL,
        PaceError::OutOfRange => ERANGE,
        PaceError::Ended => crate::errno::etime(),
    }
}

/// How a call times its packets: not at all ([`Unpaced`]) or by a paced
/// call's window ([`Pace`]). The send loop is compiled once for each, so an
/// unpaced call carries no pacing code and a paced one tests nothing per
/// packet to know that it is paced.
trait Timing: Copy {
    /// Starts `d`, a slot's departures, at its first turn, when all of its
    /// `packets` are left.
    fn start(self, d: &mut Departures, packets: u64);
    /// Enters a slot's next entry, timed by itself with `own`.
    fn enter(self, d: &mut Departures, own: Option<EntryPace>);
    /// The departure of a slot's next packet, left for [`Timing::advance`].
    fn peek(self, d: &Departures) -> Option<Departure>;
    /// Moves past a slot's next packet.
    fn advance(self, d: &mut Departures);
    /// The departure of a slot's next packet, taken.
    #[inline(always)]
    fn take(self, d: &mut Departures) -> Option<Departure> {
        let t = self.peek(d);
        self.advance(d);
        t
    }
}

/// The timing of an unpaced call: none.
#[derive(Clone, Copy)]
struct Unpaced;

impl Timing for Unpaced {
    #[inline(always)]
    fn start(self, _: &mut Departures, _: u64) {}
    #[inline(always)]
    fn enter(self, _: &mut Departures, _: Option<EntryPace>) {}
    #[inline(always)]
    fn peek(self, _: &Departures) -> Option<Departure> {
        None
    }
    #[inline(always)]
    fn advance(self, _: &mut Departures) {}
}

impl Timing for &Pace {
    #[inline(always)]
    fn start(self, d: &mut Departures, packets: u64) {
        d.start_once(&self.window, packets);
    }
    #[inline(always)]
    fn enter(self, d: &mut Departures, own: Option<EntryPace>) {
        d.enter(&self.window, own);
    }
    #[inline(always)]
    fn peek(self, d: &Departures) -> Option<Departure> {
        Some(Departure {
            ns: d.peek(),
            tai: self.tai,
        })
    }
    #[inline(always)]
    fn advance(self, d: &mut Departures) {
        d.take();
    }
}

/// A failure tied to the entry being handled when it happened.
pub(crate) struct EntryError {
    /// The errno.
    pub(crate) error: Error,
    /// Index of the entry in the caller's vector.
    pub(crate) index: u32,
}

/// One validated entry.
#[derive(Clone, Copy)]
struct Entry {
    /// Index in the caller's vector.
    index: u32,
    /// Slot of its destination (or of its fan-out) in this call.
    slot: u32,
    /// Handle of its destination.
    dest: u32,
    /// Index of its destination's device in the call's device list.
    dev: u32,
    len: u64,
    /// Offset of `addr` in its page.
    first_page_offset: u32,
    /// Index of its first page in the call's page array.
    page_base: usize,
    /// RTP timestamp of the entry's first packet, if the caller set one.
    rtp_ts: Option<u32>,
    /// Its own timing in a paced call (`MDW_ENTRY_PACE`), the gap
    /// resolved once the call is validated ([`resolve_pace`]).
    pace: Option<EntryPace>,
}

/// The registered buffers one call uses, looked up once each.
#[derive(Default)]
struct CallBuffers {
    held: KVec<(u32, Arc<RegisteredBuffer>)>,
}

impl CallBuffers {
    /// The index of buffer `id` in this call, looking it up in `table`
    /// the first time; `ENOENT` when the file has no such buffer. The
    /// buffer of the entry before, the usual case, is found at once.
    #[inline(always)]
    fn index(&mut self, id: u32, table: &Mutex<BufTable>) -> Result<usize> {
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

    fn get(&self, index: usize) -> Option<&Arc<RegisteredBuffer>> {
        Some(&self.held.get(index)?.1)
    }

    /// Lets go of the call's buffers, keeping the array.
    fn clear(&mut self) {
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
struct Slot {
    /// Handle of the destination (of a fan-out: of its first entry).
    handle: u32,
    /// A fan-out.
    fanout: bool,
    /// A group's fan-out (`MDW_ENTRY_GROUP`): its destinations' entries
    /// after the first are the group's, and the first's RTP timestamp is
    /// theirs.
    group: bool,
    /// Index of the device in the call's device list.
    dev: u32,
    /// Whether its skbs are recycled in this call: handed to the device
    /// shared (an audited driver, scatter-gather, direct sends).
    recycle: bool,
    /// The entries of this destination (of a fan-out: its destinations),
    /// as a range of `order`.
    first: usize,
    count: usize,
    cursor: PagedCursor,
    /// Index in the caller's vector of the entry being sent.
    current: u32,
    /// Index in the caller's vector of its first entry.
    first_index: u32,
    /// Its packets' departure times, in a paced call.
    departures: Departures,
    /// The send ([`CallArena::sends`]) it was last readied for: a slot
    /// kept for a call shaped like its own ([`Shape`]) is readied by the
    /// send loop at its first turn ([`Slot::begin`]), not in a pass of
    /// its own.
    started_in: u64,
}

impl Slot {
    /// Readies the slot for send `call`, at its first turn in it: nothing
    /// of it sent yet.
    #[inline(always)]
    fn begin(&mut self, call: u64) {
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
struct EntryShape {
    dest: u32,
    flags: u32,
    len: u64,
    buf: u32,
}

impl EntryShape {
    fn of(e: &MdwEntry) -> Self {
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
struct Shape {
    /// The arrays hold a validated call that a next call may reuse.
    valid: bool,
    /// The destination and group tables' generations then.
    table: (u64, u64),
    /// Its `MDW_WRITE_QDISC` and `MDW_WRITE_PACE` bits.
    flags: u32,
    /// Its destinations' entries came one after the other.
    grouped: bool,
    /// Every entry sent its own data, untimed: none had `MDW_ENTRY_SAME`,
    /// `MDW_ENTRY_GROUP` or `MDW_ENTRY_PACE` (nor has any entry of a call
    /// shaped like it: their flags are the same).
    plain: bool,
    /// No entry had `MDW_ENTRY_PACE` (some may be fan-outs'
    /// `MDW_ENTRY_SAME`): revalidated by [`relocate`].
    untimed: bool,
    /// Some entry sent from a registered buffer (`MDW_ENTRY_BUF`).
    buffers: bool,
    /// Plain, and every slot was one destination's one entry of one
    /// packet: sent by [`send_single`] when untimed.
    single: bool,
    /// The `call_id` of the entries last found shaped like this (the
    /// file keeps them: `client::Dests::raw`); 0 for none. A call that
    /// repeats them (`MDW_WRITE_REPEAT`) changed only their addresses,
    /// lengths and RTP timestamps: [`relocate`] compares only the lengths.
    matches: u64,
    /// The entries its groups added (`MDW_ENTRY_GROUP`: one per
    /// destination after a group's first), after the caller's in
    /// `entries`.
    members: usize,
    /// Its slots' destinations, each of a fan-out's counted: what the
    /// send's batches are sized for.
    destinations: usize,
    entries: KVVec<EntryShape>,
    /// Each slot's packets, before the send loop took them.
    plan: KVVec<u64>,
    /// Its devices' indices and the stamps of their states, in the order
    /// the call first used them.
    devs: KVVec<(i32, u64)>,
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
const SHAPE_FLAGS: u32 = MDW_WRITE_QDISC | MDW_WRITE_PACE;

/// A file's working arrays for its calls, kept from one call to the next
/// (emptied, not freed), so that a call in the steady state allocates
/// none of them: they grow to the largest call's size and stay. Calls on
/// a file run one at a time, under the lock this lives behind.
pub(crate) struct CallArena {
    /// Numbers the file's calls, for `Destination::slot_in`.
    calls: u64,
    /// Numbers the file's sends (every call, its validation reused or
    /// not), for [`Slot::begin`]; never 0.
    sends: u64,
    entries: KVVec<Entry>,
    slots: KVVec<Slot>,
    /// Entry indices grouped by slot (`Slot::first`, `Slot::count`).
    order: KVVec<u32>,
    /// Per slot: where its next entry goes in `order`, then the packets
    /// it has left to send (the plan).
    remaining: KVVec<u64>,
    /// Scratch space of the round-robin order.
    active: KVVec<u32>,
    runs: KVVec<Run>,
    devs: CallDevs,
    /// What the file's last synchronous call left for the next, so that
    /// a call in the steady state allocates none of it: its page arrays,
    /// empty (`CallPages::reuse`), its completion, new, and the box of its
    /// release, empty.
    spare_pages: Option<CallPages>,
    spare_done: Option<CallDone>,
    spare_release: Option<KBox<Option<CallRelease>>>,
    /// The file's keep, which its destinations' recycled skbs stay tied
    /// to ([`SkbKeep`]); made by the file's first call.
    keep: Option<SkbKeep>,
    /// The registered buffers a call uses, empty between calls (an
    /// `Option`: taking it for a call leaves nothing to drop when it is
    /// put back).
    buffers: Option<CallBuffers>,
    /// What `entries`, `slots` and `order` hold after a call, for the
    /// next call shaped like it.
    shape: Shape,
    /// The runs of user pages kept pinned for later calls
    /// (`MDW_WRITE_KEEP_PINS`).
    pins: PinCache,
    /// Scratch space for one packet's page fragments: kept, not made
    /// (zeroed) per call.
    frags: [ffi::MdwFrag; MAX_FRAGS],
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
    fn start(&mut self) {
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
        vec::clear(&mut self.active);
        vec::clear(&mut self.runs);
        self.devs.clear();
    }
}

/// The entry lengths of one destination, in order, for the segmenter:
/// `order[first..first + count]`, checked only when an entry is read (the
/// send loop builds one per packet and reads it once per entry).
struct SlotEntries<'a> {
    order: &'a [u32],
    first: usize,
    count: usize,
    entries: &'a [Entry],
}

impl SlotEntries<'_> {
    #[inline(always)]
    fn entry(&self, index: usize) -> Option<&Entry> {
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
    fn start_entry<T: Timing>(
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
    fn enter_next<T: Timing>(
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
    fn lens<'a>(&self, order: &'a [u32], entries: &'a [Entry]) -> SlotEntries<'a> {
        SlotEntries {
            order,
            first: self.first,
            // A fan-out's data is that of its first entry.
            count: if self.fanout { 1 } else { self.count },
            entries,
        }
    }
}

/// Fills `frags` with the page fragments (`common::segment::page_frags`)
/// of `len` payload bytes starting `offset` bytes into page `page` of the
/// call's pinned pages; returns their number, or `None` when they would not
/// fit, a page is missing or they would not cover the payload exactly
/// (never a silently short packet).
#[inline(always)]
fn fill_frags(
    frags: &mut [ffi::MdwFrag; MAX_FRAGS],
    pages: &[*mut kernel::bindings::page],
    page: usize,
    offset: u32,
    len: u16,
) -> Option<usize> {
    // The usual case, a payload in one page or across two.
    if let Some((first, second)) = split_two(offset, len as u32, PAGE_SHIFT as u32) {
        let [a, b, ..] = frags;
        *a = ffi::MdwFrag {
            page: *pages.get(page)?,
            off: offset,
            len: first,
        };
        if second == 0 {
            return Some(1);
        }
        *b = ffi::MdwFrag {
            page: *pages.get(page.checked_add(1)?)?,
            off: 0,
            len: second,
        };
        return Some(2);
    }
    let pieces = page_frags(offset, 0, len as u32, PAGE_SHIFT as u32).ok()?;
    let mut n = 0;
    let mut covered = 0u32;
    for f in pieces {
        let page = *pages.get(page.checked_add(f.page as usize)?)?;
        *frags.get_mut(n)? = ffi::MdwFrag {
            page,
            off: f.offset,
            len: f.len,
        };
        n += 1;
        covered += f.len;
    }
    (covered == len as u32).then_some(n)
}

/// An unused fragment slot.
const NO_FRAG: ffi::MdwFrag = ffi::MdwFrag {
    page: core::ptr::null_mut(),
    off: 0,
    len: 0,
};

/// Stage 5, the send: sends the call's packets in the round-robin order
/// `turns`, in batches per device. Stops at the first error, freeing what
/// is still batched.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn send_all<T: Timing>(
    turns: &mut RoundRobin<'_>,
    slots: &mut [Slot],
    dests: &mut DestTable,
    devs: &[NetDevice],
    order: &[u32],
    entries: &[Entry],
    pages: &[*mut kernel::bindings::page],
    frags: &mut [ffi::MdwFrag; MAX_FRAGS],
    pool: &mut SkbPool<'_>,
    qdisc: bool,
    flow: u32,
    timing: T,
    pacer: Option<&Pacer>,
    (call, destinations): (u64, usize),
) -> Outcome {
    let mut out = Outcome::default();
    let Some(mut batch) = first_batch(slots, devs, (qdisc, flow, pacer), destinations) else {
        out.error = Some(at(0)(EINVAL));
        return out;
    };
    let mut to = SendTo {
        dests,
        devs,
        order,
        entries,
        pages,
        pool,
        batch: &mut batch,
        frags,
        out: &mut out,
        qdisc,
        flow,
        destinations,
        timing,
        pacer,
    };
    // The entry of the call's last packet so far: a failing last flush
    // names it.
    let mut last = 0;
    'call: {
        // The rounds in which every slot sends and keeps packets (all of
        // a call's but the last when its destinations have as many), slot
        // by slot: no order to look up.
        if let Some((rounds, quantum, counts)) = turns
            .full_rounds()
            .filter(|(_, _, counts)| counts.len() == slots.len())
        {
            for _ in 0..rounds {
                for (slot, count) in slots.iter_mut().zip(counts.iter_mut()) {
                    let before = *count;
                    // No underflow: a full round leaves every slot some.
                    *count = before.wrapping_sub(quantum);
                    let burst = Burst {
                        // Not read: `send_turn` is given the slot.
                        queue: 0,
                        packets: quantum,
                        round_end: false,
                        last: false,
                        before,
                    };
                    if let Err(e) = send_turn(slot, &burst, call, &mut to) {
                        to.out.error = Some(e);
                        break 'call;
                    }
                    last = slot.current;
                }
            }
        }
        // Turn by turn: the order costs once per turn, the packets of a
        // turn go in an inner loop.
        while let Some(burst) = turns.next_burst() {
            let Some(slot) = slots.get_mut(burst.queue) else {
                to.out.error = Some(at(last)(EINVAL));
                break;
            };
            if let Err(e) = send_turn(slot, &burst, call, &mut to) {
                to.out.error = Some(e);
                break;
            }
            last = slot.current;
        }
    }
    out.finish(&mut batch, last);
    out
}

/// One turn of `slot`: its `burst.packets` next packets (of a fan-out,
/// to each of its destinations: [`send_fanout`]). At its first turn the
/// slot is readied and, after it, all of its packets are left.
#[inline(always)]
fn send_turn<T: Timing>(
    slot: &mut Slot,
    burst: &Burst,
    call: u64,
    to: &mut SendTo<'_, '_, '_, T>,
) -> Result<(), EntryError> {
    slot.begin(call);
    to.timing.start(&mut slot.departures, burst.before);
    if slot.fanout {
        return send_fanout(slot, burst.packets, burst.last, to);
    }
    let dest = to
        .dests
        .get_mut(slot.handle)
        .ok_or(at(slot.current)(EINVAL))?;
    // With one device (the usual case) the batch never switches.
    switch_to(
        to.batch,
        to.devs,
        slot.dev,
        to.out,
        (to.qdisc, to.flow, to.pacer),
        to.destinations,
    )
    .map_err(at(slot.current))?;
    let mut left = burst.packets;
    while left > 0 {
        left -= 1;
        if slot.cursor.at_entry_end() {
            slot.enter_next(&mut dest.state, to.order, to.entries, to.timing)?;
        }
        // A paced packet goes the fast way too, with its departure time.
        match send_fast(slot, dest, to.pages, to.batch, to.pool, to.timing) {
            Some(sent) => sent?,
            None => send_packet(
                slot, dest, to.order, to.entries, to.pages, to.frags, to.batch, to.pool, to.timing,
            )?,
        }
        make_room(to.batch, to.out, || left > 0 || !burst.last).map_err(at(slot.current))?;
    }
    Ok(())
}

/// Sends a call whose every slot is one destination's one packet, untimed
/// ([`Shape::single`]), slot by slot: the round-robin order of such a call
/// is its slots' order, and each packet is its entry's whole data, so there
/// is no order to walk, no cursor to rewind and no entry to move on to.
/// Stops at the first error, freeing what is still batched, as [`send_all`].
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn send_single(
    slots: &mut [Slot],
    dests: &mut DestTable,
    devs: &[NetDevice],
    entries: &[Entry],
    pages: &[*mut kernel::bindings::page],
    frags: &mut [ffi::MdwFrag; MAX_FRAGS],
    pool: &mut SkbPool<'_>,
    qdisc: bool,
    flow: u32,
) -> Outcome {
    let mut out = Outcome::default();
    let destinations = slots.len();
    let Some(mut batch) = first_batch(slots, devs, (qdisc, flow, None), destinations) else {
        out.error = Some(at(0)(EINVAL));
        return out;
    };
    let mut last = 0;
    for (k, slot) in slots.iter_mut().enumerate() {
        // The slot's one entry, its first: entries are in the caller's
        // order.
        let Some(entry) = entries.get(slot.first_index as usize) else {
            out.error = Some(at(last)(EINVAL));
            break;
        };
        let err = at(entry.index);
        // The slot's one turn, which leaves it as it is: a later send
        // through `send_all` has another number and readies it
        // (`Slot::begin`).
        last = entry.index;
        let Some(dest) = dests.get_mut(slot.handle) else {
            out.error = Some(err(EINVAL));
            break;
        };
        if let Err(e) = switch_to(
            &mut batch,
            devs,
            slot.dev,
            &mut out,
            (qdisc, flow, None),
            destinations,
        ) {
            out.error = Some(err(e));
            break;
        }
        // One packet: the entry fits the destination's payload (the plan
        // said so; checked again, it is what bounds the packet).
        let len = match u16::try_from(entry.len) {
            Ok(len) if len <= slot.cursor.max_payload() => len,
            _ => {
                out.error = Some(err(EINVAL));
                break;
            }
        };
        if let Some(ts) = entry.rtp_ts {
            dest.state.rtp_ts = ts;
        }
        let page = entry.page_base;
        let offset = entry.first_page_offset;
        let two = || {
            let (len0, len1) = split_two(offset, u32::from(len), PAGE_SHIFT as u32)?;
            let page1 = match len1 {
                0 => core::ptr::null_mut(),
                _ => *pages.get(page.wrapping_add(1))?,
            };
            Some(TwoFrags {
                page0: *pages.get(page)?,
                page1,
                off: offset,
                len0: u16::try_from(len0).ok()?,
                len1: u16::try_from(len1).ok()?,
            })
        };
        // `rearm_to` checks the destination recycles; checked here as well,
        // the loop compiles to 9 fewer instructions per packet.
        let fast = two()
            .filter(|_| slot.recycle)
            .and_then(|two| rearm_to(dest, &two, &mut batch, pool, None));
        let sent = match fast {
            Some(sent) => sent,
            // A linear copy the fast way, else any packet.
            None => match two().and_then(|two| copy_single(dest, &two, &mut batch, pool)) {
                Some(sent) => sent,
                None => match fill_frags(frags, pages, page, offset, len) {
                    Some(n) => match frags.get(..n) {
                        Some(frags) => {
                            build_to(dest, slot.recycle, frags, len, &mut batch, pool, None)
                        }
                        None => Err(EINVAL),
                    },
                    None => Err(EINVAL),
                },
            },
        };
        if let Err(e) = sent.and_then(|()| make_room(&mut batch, &mut out, || k + 1 < destinations))
        {
            out.error = Some(err(e));
            break;
        }
    }
    out.finish(&mut batch, last);
    out
}

/// The batch of the device of the call's first slot, sized for the
/// call's `destinations` (a fan-out's each counted);
/// `None` when there is no slot or no such device.
#[inline(always)]
fn first_batch<'d>(
    slots: &[Slot],
    devs: &'d [NetDevice],
    (qdisc, flow, pacer): (bool, u32, Option<&'d Pacer>),
    destinations: usize,
) -> Option<TxBatch<'d>> {
    let first = devs.get(slots.first()?.dev as usize)?;
    let mut batch = TxBatch::new(first, qdisc, flow, pacer);
    batch.limit_for(destinations);
    Some(batch)
}

/// Makes `batch` the batch of the call's device `dev` (flushing the one it
/// was for). With one device, the usual case, the batch never switches.
#[inline(always)]
fn switch_to<'d>(
    batch: &mut TxBatch<'d>,
    devs: &'d [NetDevice],
    dev: u32,
    out: &mut Outcome,
    (qdisc, flow, pacer): (bool, u32, Option<&'d Pacer>),
    destinations: usize,
) -> Result {
    if devs.len() <= 1 {
        return Ok(());
    }
    let dev = devs.get(dev as usize).ok_or(EINVAL)?;
    if !core::ptr::eq(batch.device(), dev) {
        out.count(batch.flush())?;
        *batch = TxBatch::new(dev, qdisc, flow, pacer);
        batch.limit_for(destinations);
    }
    Ok(())
}

/// Flushes `batch` when it is full; then, when `more` says packets are
/// to come (asked only then), stops on a signal (`EINTR`) and yields.
#[inline(always)]
fn make_room(batch: &mut TxBatch<'_>, out: &mut Outcome, more: impl FnOnce() -> bool) -> Result {
    if batch.is_full() {
        out.count(batch.flush())?;
        if more() && crate::net::signal_pending() {
            return Err(EINTR);
        }
        crate::net::cond_resched();
    }
    Ok(())
}

/// What a fan-out's burst sends with.
struct SendTo<'s, 'd, 'p, T> {
    dests: &'s mut DestTable,
    devs: &'d [NetDevice],
    order: &'s [u32],
    entries: &'s [Entry],
    pages: &'s [*mut kernel::bindings::page],
    pool: &'s mut SkbPool<'p>,
    batch: &'s mut TxBatch<'d>,
    frags: &'s mut [ffi::MdwFrag; MAX_FRAGS],
    out: &'s mut Outcome,
    qdisc: bool,
    flow: u32,
    destinations: usize,
    timing: T,
    pacer: Option<&'d Pacer>,
}

/// A turn of fan-out `slot`: each of its `packets` packets of its data to
/// every destination of the fan-out, in entry order, before the next
/// packet; `last`: the call's last turn. Each destination's ring is
/// adopted with its first packet ([`SkbPool::take`], [`SkbPool::rearm`]).
#[inline(never)]
fn send_fanout<T: Timing>(
    slot: &mut Slot,
    packets: u64,
    last: bool,
    to: &mut SendTo<'_, '_, '_, T>,
) -> Result<(), EntryError> {
    let members = to
        .order
        .get(slot.first..slot.first.saturating_add(slot.count))
        .ok_or(at(slot.current)(EINVAL))?;
    let lens = slot.lens(to.order, to.entries);
    // A group's destinations start at its entry's RTP timestamp.
    let group_ts = match slot.group {
        true => lens.entry(0).and_then(|e| e.rtp_ts),
        false => None,
    };
    let mut left = packets;
    while left > 0 {
        left -= 1;
        let err = at(slot.current);
        let first = slot.cursor.at_entry_end();
        if first {
            let index = slot.cursor.enter_next(&lens).ok_or(err(EINVAL))?;
            let entry = lens.entry(index).ok_or(err(EINVAL))?;
            to.timing.enter(&mut slot.departures, entry.pace);
        }
        // Every destination's copy of a packet departs at the same time.
        let departure = to.timing.take(&mut slot.departures);
        // Where the packet is: two fragments the fast way, else any.
        let mut next = slot.cursor;
        let (two, nfrags, len) = match next.peek_full::<{ PAGE_SHIFT as u32 }>() {
            Some(pkt) => {
                next.advance(&pkt);
                let two = two_frags(&pkt, to.pages).ok_or(err(EINVAL))?;
                let n = frags_of_two(&two, to.frags);
                (Some(two), n, slot.cursor.max_payload())
            }
            None => {
                let pkt = next.next_packet(&lens).ok_or(err(EINVAL))?;
                let n = fill_frags(to.frags, to.pages, pkt.page, pkt.offset, pkt.len)
                    .ok_or(err(EINVAL))?;
                (None, n, pkt.len)
            }
        };
        let frags = to.frags.get(..nfrags).ok_or(err(EINVAL))?;
        let start_ts = match (first, slot.group) {
            (false, _) => StartTs::Kept,
            (true, true) => group_ts.map_or(StartTs::Kept, StartTs::All),
            (true, false) => StartTs::Own,
        };
        let mut current = slot.current;
        for (k, &i) in members.iter().enumerate() {
            let e = to.entries.get(i as usize).ok_or(err(EINVAL))?;
            let err = at(e.index);
            let dest = to.dests.get_mut(e.dest).ok_or(err(EINVAL))?;
            match (start_ts, e.rtp_ts) {
                (StartTs::All(ts), _) | (StartTs::Own, Some(ts)) => dest.state.rtp_ts = ts,
                _ => {}
            }
            switch_to(
                to.batch,
                to.devs,
                e.dev,
                to.out,
                (to.qdisc, to.flow, to.pacer),
                to.destinations,
            )
            .map_err(&err)?;
            // `rearm_to` checks the destination and the call recycle.
            let fast = two
                .as_ref()
                .and_then(|two| rearm_to(dest, two, to.batch, to.pool, departure));
            match fast {
                Some(sent) => sent,
                None => {
                    let recycle = !to.qdisc && dest.prepared.as_ref().is_some_and(|p| p.recycle);
                    build_to(dest, recycle, frags, len, to.batch, to.pool, departure)
                }
            }
            .map_err(&err)?;
            let more = || left > 0 || k + 1 < members.len() || !last;
            make_room(to.batch, to.out, more).map_err(&err)?;
            current = e.index;
        }
        slot.current = current;
        slot.cursor = next;
    }
    Ok(())
}

/// Where the destinations of a fan-out's packet take their RTP timestamp
/// from.
#[derive(Clone, Copy)]
enum StartTs {
    /// Each goes on from its own (not the first packet of an entry, or a
    /// group entry without one).
    Kept,
    /// The first packet of a group's entry: all start at its timestamp.
    All(u32),
    /// The first packet of a fan-out's entries: each starts at its own
    /// entry's timestamp, if it has one.
    Own,
}

/// Writes `two` as page fragments; returns how many.
#[inline(always)]
fn frags_of_two(two: &TwoFrags, frags: &mut [ffi::MdwFrag; MAX_FRAGS]) -> usize {
    let [a, b, ..] = frags;
    *a = ffi::MdwFrag {
        page: two.page0,
        off: two.off,
        len: u32::from(two.len0),
    };
    if two.len1 == 0 {
        return 1;
    }
    *b = ffi::MdwFrag {
        page: two.page1,
        off: 0,
        len: u32::from(two.len1),
    };
    2
}

/// The usual packet, the fast way: a full-size packet of the current entry
/// in one page or across two ([`rearm_to`]). `None` when the packet is not
/// like that (nothing changed then): [`send_packet`] handles every case.
#[inline(always)]
fn send_fast<T: Timing>(
    slot: &mut Slot,
    dest: &mut Destination,
    pages: &[*mut kernel::bindings::page],
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool<'_>,
    timing: T,
) -> Option<Result<(), EntryError>> {
    let pkt = slot.cursor.peek_full::<{ PAGE_SHIFT as u32 }>()?;
    let two = two_frags(&pkt, pages)?;
    // The departure is taken only if the packet goes this way.
    let departure = timing.peek(&slot.departures);
    let sent = rearm_to(dest, &two, batch, pool, departure)?;
    timing.advance(&mut slot.departures);
    slot.cursor.advance(&pkt);
    Some(sent.map_err(at(slot.current)))
}

/// The page fragments of a full-size packet.
#[inline(always)]
fn two_frags(pkt: &FullPacket, pages: &[*mut kernel::bindings::page]) -> Option<TwoFrags> {
    let page1 = match pkt.len1 {
        0 => core::ptr::null_mut(),
        _ => *pages.get(pkt.page.wrapping_add(1))?,
    };
    Some(TwoFrags {
        page0: *pages.get(pkt.page)?,
        page1,
        off: pkt.offset,
        len0: u16::try_from(pkt.len0).ok()?,
        len1: u16::try_from(pkt.len1).ok()?,
    })
}

/// A full-size packet of `dest` carrying `two`, the fast way: with a
/// checksum that does not depend on the payload, in the destination's
/// least recently used skb, which the device has released; its header is
/// the destination's earlier one, patched with the writes computed for
/// the call; in a paced call, with its `departure` time. `None` when that is
/// not so (nothing changed then): the destination does not recycle (it has
/// no `Prepared::fast` then), the call does not (the pool is off for sends
/// through the qdisc), a packet tap is on the device, the skb is busy, or
/// the packet is not full-size for `dest`.
#[inline(always)]
fn rearm_to(
    dest: &mut Destination,
    two: &TwoFrags,
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool<'_>,
    departure: Option<Departure>,
) -> Option<Result> {
    let Destination {
        prepared:
            Some(Prepared {
                fast: Some(fast),
                layout,
                ..
            }),
        ring,
        state,
        template,
        ..
    } = dest
    else {
        return None;
    };
    if two.payload_len() != u32::from(template.max_payload()) {
        return None;
    }
    let mut skb = batch.build_rearmed(ring, layout.hdr_len, two, pool)?;
    // An error ends the call; dropping the skb frees it.
    Some(match fast.patch(skb.header(), state) {
        Ok(()) => {
            if let Some(d) = departure {
                skb.set_departure(d.ns, d.tai);
            }
            skb.queue();
            Ok(())
        }
        Err(_) => Err(EINVAL),
    })
}

/// The fast way for a destination whose packets are linear copies (its
/// device has no scatter-gather for them), in an unpaced call: a
/// full-size payload in one page or across two (`two`) is copied (and
/// summed as it is copied when the checksum is computed in software) into
/// the least recently used copy its ring kept, once the device has
/// released it, behind its earlier header, which the destination's
/// `Prepared::copy` turns into the packet's. `None` when that is not so
/// (nothing changed then): not such a destination, a payload not like
/// that, or no released copy in the ring. [`send_single`] tries it
/// straight after [`rearm_to`] (which is for zero-copy destinations),
/// [`build_to`] before building a packet any other way. Its checks are
/// `rearm_to`'s; shared in one helper, `rearm_to` made them for a linear
/// destination before finding it has no zero-copy patch (12 more per
/// packet on virtio-net).
#[inline(always)]
fn copy_to(
    dest: &mut Destination,
    two: &TwoFrags,
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool<'_>,
) -> Option<Result> {
    let Destination {
        prepared: Some(p),
        ring,
        state,
        template,
        ..
    } = dest
    else {
        return None;
    };
    // Only a destination that recycles linear copies has `copy`;
    // `build_copied` checks the batch recycles.
    let patch = p.copy.as_ref()?;
    if two.payload_len() != u32::from(template.max_payload()) {
        return None;
    }
    let software = matches!(p.csum, CsumMode::Software);
    let sum = Cell::new(0);
    let mut skb =
        batch.build_copied(ring, p.layout.hdr_len, two, pool, software.then_some(&sum))?;
    let written = match software {
        true => patch.patch_summed(skb.header(), state, from_native_sum(sum.get())),
        false => patch.patch(skb.header(), state),
    };
    // An error ends the call; dropping the skb frees it.
    Some(match written {
        Ok(()) => {
            skb.queue();
            Ok(())
        }
        Err(_) => Err(EINVAL),
    })
}

/// [`copy_to`] for [`send_single`], out of line: inlined there, it cost
/// the loop's zero-copy packets about 10 instructions each (the loop's
/// registers), for about 13 fewer per linear copy.
#[inline(never)]
fn copy_single(
    dest: &mut Destination,
    two: &TwoFrags,
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool<'_>,
) -> Option<Result> {
    copy_to(dest, two, batch, pool)
}

/// A payload's fragments as the fast ways take them: one page, or two
/// with the second from its start.
#[inline(always)]
fn as_two(frags: &[ffi::MdwFrag]) -> Option<TwoFrags> {
    match frags {
        [a] => Some(TwoFrags {
            page0: a.page,
            page1: core::ptr::null_mut(),
            off: a.off,
            len0: u16::try_from(a.len).ok()?,
            len1: 0,
        }),
        [a, b] if b.off == 0 => Some(TwoFrags {
            page0: a.page,
            page1: b.page,
            off: a.off,
            len0: u16::try_from(a.len).ok()?,
            len1: u16::try_from(b.len).ok()?,
        }),
        _ => None,
    }
}

/// Builds the next packet of `slot`, the call's slot of `dest`, and queues
/// it in `batch`, which must have room.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn send_packet<T: Timing>(
    slot: &mut Slot,
    dest: &mut Destination,
    order: &[u32],
    entries: &[Entry],
    pages: &[*mut kernel::bindings::page],
    frags: &mut [ffi::MdwFrag; MAX_FRAGS],
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool<'_>,
    timing: T,
) -> Result<(), EntryError> {
    let lens = slot.lens(order, entries);
    let Some(pkt) = slot.cursor.next_packet(&lens) else {
        return Err(at(slot.current)(EINVAL));
    };
    if pkt.first {
        slot.start_entry(&mut dest.state, &lens, pkt.entry, timing)?;
    }
    let err = at(slot.current);
    let n = fill_frags(frags, pages, pkt.page, pkt.offset, pkt.len).ok_or(err(EINVAL))?;
    let frags = frags.get(..n).ok_or(err(EINVAL))?;
    let departure = timing.take(&mut slot.departures);
    build_to(dest, slot.recycle, frags, pkt.len, batch, pool, departure).map_err(err)
}

/// A packet's departure time, in a paced call.
#[derive(Clone, Copy)]
struct Departure {
    /// Nanoseconds on `CLOCK_TAI` with `tai`, else on `CLOCK_MONOTONIC`.
    ns: u64,
    tai: bool,
}

/// Builds a packet of `dest` carrying `len` payload bytes in `frags` and
/// queues it in `batch`, which must have room: every case, in a recycled
/// skb when `recycle` allows and one is free, else a new one; with its
/// `departure` time in a paced call.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn build_to(
    dest: &mut Destination,
    recycle: bool,
    frags: &[ffi::MdwFrag],
    len: u16,
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool<'_>,
    departure: Option<Departure>,
) -> Result {
    let Some(p) = &dest.prepared else {
        return Err(EINVAL);
    };
    // A paced call's copies hold it until they have left; those are
    // never kept.
    let hold = p.linear && departure.is_some();
    let recycle = recycle && batch.recycling() && !hold;
    if recycle && p.copy.is_some() {
        if let Some(sent) = as_two(frags).and_then(|two| copy_to(dest, &two, batch, pool)) {
            return sent;
        }
    }
    let Destination {
        prepared: Some(p),
        template,
        state,
        ring,
        ..
    } = dest
    else {
        return Err(EINVAL);
    };
    let software = matches!(p.csum, CsumMode::Software);
    let copied_sum = Cell::new(0);
    let parts = PacketParts {
        layout: &p.layout,
        frags,
        payload_len: u32::from(len),
        recycle,
        linear: p.linear,
        hold,
        sum: (software && p.linear).then_some(&copied_sum),
    };
    let mut skb = batch.build(&parts, pool, ring)?;
    let csum = match (p.csum, p.linear) {
        // Only a software checksum reads the payload, while copying it
        // into a linear skb if it is copied.
        (CsumMode::Software, true) => p.csum.udp(from_native_sum(copied_sum.get())),
        (CsumMode::Software, false) => p.csum.udp(from_native_sum(payload_sum(frags))),
        (mode, _) => mode.udp(0),
    };
    // The header: the template's bytes in a new skb, or only the per-packet
    // fields in a recycled one (its earlier header stays); for a full-size
    // packet those were mostly computed once for the call.
    let written = match (skb.fresh(), &p.fast) {
        (true, _) => template.write_header(skb.header(), state, len, csum),
        (false, Some(fast)) if len == template.max_payload() => fast.patch(skb.header(), state),
        (false, _) => template.patch_header(skb.header(), state, len, csum),
    };
    // An error ends the call; dropping the skb frees it.
    written.map_err(|_| EINVAL)?;
    if let Some(d) = departure {
        skb.set_departure(d.ns, d.tai);
    }
    skb.queue();
    Ok(())
}

/// The entries of fan-out slot `s`: one per destination.
fn fanout_entries<'a>(
    s: &Slot,
    order: &'a [u32],
    entries: &'a [Entry],
) -> impl Iterator<Item = &'a Entry> {
    let range = order.get(s.first..s.first.saturating_add(s.count));
    range
        .unwrap_or(&[])
        .iter()
        .filter_map(|&i| entries.get(i as usize))
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
    fn count(&mut self, flushed: crate::skb::Flushed) -> Result {
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
    fn finish(&mut self, batch: &mut TxBatch<'_>, last: u32) {
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
    done: CallDone,
    /// Holds the call's release.
    release: KBox<Option<CallRelease>>,
}

/// What a synchronous call leaves for the file's next call
/// ([`CallArena::keep_spare`]).
pub(crate) struct CallSpare {
    pages: CallPages,
    done: CallDone,
    release: KBox<Option<CallRelease>>,
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
fn nomem<E>(_: E) -> EntryError {
    EntryError {
        error: ENOMEM,
        index: 0,
    }
}

fn at(index: u32) -> impl Fn(Error) -> EntryError {
    move |error| EntryError { error, index }
}

/// Validates the call header; returns the quantum.
pub(crate) fn check_header(req: &MdwWritev) -> Result<u32> {
    if req.flags & !KNOWN_WRITE_FLAGS != 0 || req.count == 0 {
        return Err(EINVAL);
    }
    if req.count > MDW_MAX_ENTRIES {
        return Err(E2BIG);
    }
    // Older callers' shorter entries read with the new fields zero.
    let smallest = match req.flags & MDW_WRITE_REPEAT {
        0 => MDW_ENTRY_SIZE_VER0,
        _ => MDW_REPEAT_SIZE_VER0,
    };
    if (req.entry_size as usize) < smallest {
        return Err(EINVAL);
    }
    if req.entry_size > MDW_MAX_ENTRY_SIZE {
        return Err(E2BIG);
    }
    if req.flags & MDW_WRITE_PACE == 0
        && (req.pace_start != 0 || req.pace_window != 0 || req.pace_clock != 0)
    {
        return Err(EINVAL);
    }
    Ok(req.quantum.max(1))
}

/// Stage 0 of a repeated call (`MDW_WRITE_REPEAT`): the last call's
/// entries (`raw`) given the new data of this one, index by index; `EINVAL`
/// when the counts differ. The entries are then checked as any call's.
pub(crate) fn repeat(raw: &mut [MdwEntry], new: &[MdwRepeat]) -> Result {
    if raw.len() != new.len() {
        return Err(EINVAL);
    }
    for (e, r) in raw.iter_mut().zip(new) {
        e.addr = r.addr;
        e.len = u64::from(r.len);
        e.rtp_timestamp = r.rtp_timestamp;
    }
    Ok(())
}

/// Runs one call over already copied entries, in the file's `arena`, stage
/// by stage: validation (or revalidation of a call shaped like the last
/// one), grouping, the plan, what the call holds ([`CallHold`]),
/// translation, the send, the rings kept and the end
/// ([`CallHold::complete`]).
/// Errors found before anything was sent come back as `Err`; an error
/// after some packets left is in the `Outcome`. A synchronous call comes
/// back with the wait for its completion, which the caller runs after
/// dropping the file's lock and emptying `arena` (its device references).
#[allow(clippy::too_many_arguments)]
pub(crate) fn writev(
    net: &NetNs,
    dests: &mut DestTable,
    groups: &GroupTable,
    arena: &mut CallArena,
    bufs: &Mutex<BufTable>,
    shared: &Arc<FileShared>,
    req: &MdwWritev,
    raw: &[MdwEntry],
    repeats: u64,
    quantum: u32,
    flow: u32,
    pacer: Option<&Pacer>,
) -> Result<(Outcome, Option<SyncWait>), EntryError> {
    let stats = &shared.stats;
    let is_async = req.flags & MDW_WRITE_ASYNC != 0;
    let qdisc = req.flags & MDW_WRITE_QDISC != 0;
    let pace = Pace::of(req).map_err(at(0))?;
    // Paced on the direct path: the file's pacer releases the packets.
    let pacer = match (&pace, qdisc) {
        (Some(_), false) => Some(pacer.ok_or(at(0)(EINVAL))?),
        _ => None,
    };
    // The file's array for them, empty, taken for the call.
    let mut buffers = arena.buffers.take().unwrap_or_default();
    let table = (dests.generation(), groups.generation());
    let shaped = req.flags & SHAPE_FLAGS;
    // A repeat of entries found shaped like the last call's: only their
    // lengths may differ from it.
    let known = repeats != 0 && core::mem::take(&mut arena.shape.matches) == repeats;
    let checked = match revalidate(
        net,
        arena,
        bufs,
        &mut buffers,
        raw,
        (table, shaped, known),
        pace.is_some(),
    )? {
        Some(checked) => checked,
        None => {
            arena.start();
            let checked = validate(
                net,
                (dests, groups),
                arena,
                bufs,
                &mut buffers,
                raw,
                qdisc,
                pace.is_some(),
            )?;
            record_shape(arena, raw, table, shaped, &checked);
            checked
        }
    };
    arena.shape.matches = req.call_id;
    let pages_needed = checked.pages;
    arena.sends = arena.sends.wrapping_add(1).max(1);
    let call_no = arena.sends;
    let CallArena {
        entries,
        slots,
        order,
        remaining,
        active,
        runs,
        devs,
        spare_pages,
        spare_done,
        spare_release,
        keep,
        buffers: spare_buffers,
        pins,
        frags,
        ..
    } = arena;
    let devs = devs.devices();
    if !checked.grouped {
        group(entries, slots, order, active)?;
    }
    if let Some(pace) = &pace {
        resolve_pace(&pace.window, entries, slots, checked.own_timing)?;
    }
    // One packet per slot, untimed: sent in slot order, without a plan.
    let single = checked.single && pace.is_none();
    let mut turns = match single {
        true => None,
        false => Some(plan(slots, remaining, active, quantum)?),
    };

    // A call that keeps its pins pins only what the file's pin cache
    // lacks: charged once known, after `translate`.
    let keep_pins = req.flags & MDW_WRITE_KEEP_PINS != 0;
    let charged = match keep_pins {
        true => 0,
        false => pages_needed.pinned,
    };
    let mut held = CallHold::take(shared, is_async, charged, spare_release, pins)?;
    let keep = match keep {
        Some(keep) => keep,
        None => keep.insert(SkbKeep::new().map_err(nomem)?),
    };

    let mut pages = CallPages::reuse(spare_pages.take(), pages_needed.total).map_err(nomem)?;
    translate(
        raw,
        runs,
        &buffers,
        keep_pins.then_some((pins, shared)),
        &mut pages,
    )?;
    if keep_pins {
        held.charge_pins(pages.pinned(), pins)?;
    }
    // The buffers stay held by the page array; the array goes back, empty.
    buffers.clear();
    *spare_buffers = Some(buffers);

    // Send. `done` is dropped (waiting for the device) before `pages`, or
    // handed the pages with the rest of an asynchronous call.
    let done = match spare_done.take() {
        Some(done) => done,
        None => CallDone::new().map_err(nomem)?,
    };
    let mut pool = SkbPool::new(!qdisc, keep, &done, call_no);
    // From here to `keep_rings` below nothing returns early: a ring's skb
    // the device still holds at the end of the send is tied to the call
    // only there (`mdw_skb_let_go`), and until then the call's completion
    // does not wait for it.
    let npinned = pages.pinned() as u64;
    Stats::add(&stats.pages_pinned, npinned);
    // The send loop as compiled for the call's timing.
    macro_rules! send_all_with {
        ($turns:expr, $timing:expr) => {
            send_all(
                $turns,
                slots,
                dests,
                devs,
                order,
                entries,
                pages.pages(),
                frags,
                &mut pool,
                qdisc,
                flow,
                $timing,
                pacer,
                (call_no, checked.destinations),
            )
        };
    }
    let out = match (&mut turns, &pace) {
        (Some(turns), Some(pace)) => send_all_with!(turns, pace),
        (Some(turns), None) => send_all_with!(turns, Unpaced),
        (None, _) => send_single(
            slots,
            dests,
            devs,
            entries,
            pages.pages(),
            frags,
            &mut pool,
            qdisc,
            flow,
        ),
    };
    // Usually the driver let go of every packet a ring keeps before the
    // flush that handed it over returned, and the rings have nothing to
    // do (the next call that adopts each readies it: `SkbPool::adopt`).
    if out.held {
        keep_rings(slots, order, entries, dests, &mut pool);
    }
    count(stats, &out);
    held.complete(req, shared, out, done, pages)
}

/// The `RLIMIT_MEMLOCK` charge of `pinned` pages a call pinned itself
/// (none for none), once the file's pin cache has given way if need be.
fn charge_pinned(pinned: usize, pins: &mut PinCache) -> Result<Option<MemlockCharge>, EntryError> {
    match pinned > 0 {
        true => pins.charge(pinned).map_err(at(0)),
        false => Ok(None),
    }
}

/// Stage 3b, what a call holds besides its pages, taken before it pins or
/// sends anything: an asynchronous call's completion slot (`EAGAIN` when
/// the file's queue is full) and the box its state will go to, a
/// synchronous call's release box (the file's spare one when it has it),
/// and the `RLIMIT_MEMLOCK` charge of the pages the call pins itself (for
/// a call that keeps its pins, taken after `translate`, when they are
/// known: [`CallHold::charge_pins`]).
/// Every call is charged as `MSG_ZEROCOPY` charges: an asynchronous call
/// keeps its pages past the system call, and so does a synchronous one
/// whose caller is killed while its packets wait in a queue.
struct CallHold<'a> {
    reservation: Option<Reservation<'a>>,
    charge: Option<MemlockCharge>,
    call: Option<KBox<core::mem::MaybeUninit<AsyncCall>>>,
    sync_release: Option<KBox<Option<CallRelease>>>,
}

impl<'a> CallHold<'a> {
    /// Takes what a call that pins `pinned` pages holds (see
    /// [`CallHold`]); `spare` is the file's spare release box.
    #[inline(always)]
    fn take(
        shared: &'a FileShared,
        is_async: bool,
        pinned: usize,
        spare: &mut Option<KBox<Option<CallRelease>>>,
        pins: &mut PinCache,
    ) -> Result<Self, EntryError> {
        let reservation = match is_async {
            true => Some(shared.completions.reserve().map_err(at(0))?),
            false => None,
        };
        let charge = charge_pinned(pinned, pins)?;
        let call = match is_async {
            true => Some(KBox::<AsyncCall>::new_uninit(GFP_KERNEL_ACCOUNT).map_err(nomem)?),
            false => None,
        };
        let sync_release = match (is_async, spare.take()) {
            (false, Some(spare)) => Some(spare),
            (false, None) => Some(KBox::new(None, GFP_KERNEL_ACCOUNT).map_err(nomem)?),
            (true, _) => None,
        };
        Ok(Self {
            reservation,
            charge,
            call,
            sync_release,
        })
    }

    /// Charges the `pinned` pages a call that keeps its pins
    /// (`MDW_WRITE_KEEP_PINS`) pinned itself, known after `translate`
    /// (`ENOBUFS` over `RLIMIT_MEMLOCK`, as for any call, once the file's
    /// pin cache has given way).
    fn charge_pins(&mut self, pinned: usize, pins: &mut PinCache) -> Result<(), EntryError> {
        self.charge = charge_pinned(pinned, pins)?;
        Ok(())
    }

    /// Stage 7, the end of a call that sent `out`: an asynchronous call
    /// that sent something hands its pages, charge and record to `done`
    /// (one completion, later); a synchronous one comes back with its wait
    /// (run after the file's lock is dropped); an asynchronous one that
    /// sent nothing is released at once. A call that stopped on an error
    /// before sending anything returns the error, once nothing is in
    /// flight.
    #[inline(always)]
    fn complete(
        self,
        req: &MdwWritev,
        shared: &Arc<FileShared>,
        out: Outcome,
        done: CallDone,
        pages: CallPages,
    ) -> Result<(Outcome, Option<SyncWait>), EntryError> {
        let release = CallRelease {
            shared: shared.clone(),
            pages,
            charge: self.charge,
        };
        let wait = match (self.call, self.reservation, self.sync_release) {
            (Some(call), Some(reservation), _) if out.packets > 0 => {
                // One completion for the call, later: it owns the pages now.
                let record = MdwCompletion {
                    cookie: req.cookie,
                    bytes: out.bytes,
                    packets: out.packets,
                    error: out.error.as_ref().map_or(0, |e| e.error.to_errno()),
                    error_index: out.error.as_ref().map_or(0, |e| e.index),
                };
                reservation.commit();
                let call = KBox::write(
                    call,
                    AsyncCall {
                        shared: shared.clone(),
                        record,
                        pages: release.pages,
                        charge: release.charge,
                    },
                );
                done.finish_async(call);
                None
            }
            (_, _, Some(mut sync_release)) => {
                *sync_release = Some(release);
                Some(SyncWait {
                    done,
                    release: sync_release,
                })
            }
            _ => {
                // An asynchronous call that queued nothing: nothing is in
                // flight, so the wait is immediate; its reservation goes
                // too.
                drop(done);
                release.release();
                None
            }
        };
        match out.error {
            Some(e) if out.packets == 0 => {
                // Nothing left: nothing can hold up the wait.
                if let Some(wait) = wait {
                    let _ = wait.wait();
                }
                Err(e)
            }
            _ => Ok((out, wait)),
        }
    }
}

/// Stage 6, after a send that found the device still holding a packet a
/// ring keeps (`Outcome::held`): each destination of the call keeps the
/// skbs the device is done with for its next call and lets go of the
/// others, tied to the call.
/// (Out of line: inlined into `writev`, the call cost 2 more per packet
/// at 64 x 1.)
#[inline(never)]
fn keep_rings(
    slots: &[Slot],
    order: &[u32],
    entries: &[Entry],
    dests: &mut DestTable,
    pool: &mut SkbPool<'_>,
) {
    for s in slots.iter() {
        if s.fanout {
            for e in fanout_entries(s, order, entries) {
                if let Some(d) = dests.get_mut(e.dest) {
                    pool.keep(&mut d.ring);
                }
            }
        } else if let (true, Some(d)) = (s.recycle, dests.get_mut(s.handle)) {
            pool.keep(&mut d.ring);
        }
    }
}

/// Counts what a call sent in the file's statistics.
#[inline(always)]
fn count(stats: &Stats, out: &Outcome) {
    Stats::add(&stats.packets, out.packets);
    Stats::add(&stats.bytes_zerocopy, out.bytes - out.copied);
    Stats::add(&stats.bytes_copied, out.copied);
    if out.packets > 0 {
        Stats::add(&stats.calls, 1);
    }
}

/// The pages a call needs in its page array.
struct PagesNeeded {
    /// Pages it pins itself (user memory), charged to `RLIMIT_MEMLOCK`.
    pinned: usize,
    /// All of them, with the registered buffers' pages it borrows.
    total: usize,
}

/// What validation found out about a call.
struct Checked {
    pages: PagesNeeded,
    /// Each destination's entries came one after the other: `order` is
    /// the identity and each slot's `first` is right, so there is nothing
    /// to group.
    grouped: bool,
    /// Some entry has its own timing (`MDW_ENTRY_PACE`).
    own_timing: bool,
    /// Every slot is one destination's one packet ([`Shape::single`]):
    /// the plan was not made (`remaining` is empty).
    single: bool,
    /// The entries its groups added ([`Shape::members`]).
    members: usize,
    /// Its destinations, each of a fan-out's counted ([`Shape::destinations`]).
    destinations: usize,
}

/// Stage 1, validation: checks every entry; gives each destination a slot
/// on its first entry (its device looked up once per call and device,
/// its prepared state checked against it); counts each destination's
/// packets (in `remaining`, the plan) and works out where each entry's
/// pages will be in the call's page array (`Run`).
fn validate(
    net: &NetNs,
    (dests, groups): (&mut DestTable, &GroupTable),
    arena: &mut CallArena,
    bufs: &Mutex<BufTable>,
    buffers: &mut CallBuffers,
    raw: &[MdwEntry],
    qdisc: bool,
    paced: bool,
) -> Result<Checked, EntryError> {
    let CallArena {
        calls,
        entries,
        slots,
        order,
        remaining,
        runs,
        devs,
        ..
    } = arena;
    let call = *calls;
    entries
        .reserve(raw.len(), GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    order
        .reserve(raw.len(), GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    // At most a slot per entry.
    slots
        .reserve(raw.len(), GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    remaining
        .reserve(raw.len(), GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    let mut total: u64 = 0;
    let mut grouping = Grouping::new();
    let mut layout = RunLayout::default();
    let mut own_timing = false;
    // The entries the groups add, after the caller's once all are known.
    let mut members = KVVec::<Entry>::new();
    // The fan-outs' destinations after their first.
    let mut fanned = 0usize;
    for (i, e) in raw.iter().enumerate() {
        let index = i as u32;
        let err = at(index);
        if i % ENTRIES_PER_YIELD == ENTRIES_PER_YIELD - 1 {
            yield_killable().map_err(&err)?;
        }
        if e.flags & MDW_ENTRY_SAME != 0 {
            // A group's fan-out is all its destinations.
            let after_group = i
                .checked_sub(1)
                .and_then(|b| raw.get(b))
                .is_some_and(|b| b.flags & MDW_ENTRY_GROUP != 0);
            if after_group {
                return Err(err(EINVAL));
            }
            let to = FanOutTo {
                net,
                dests,
                devs,
                slots,
                remaining,
            };
            let entry = to.add(e, index, entries.last()).map_err(&err)?;
            fanned += 1;
            grouping.entry(entry.slot as usize, slots.len());
            // Neither can fail: room was reserved.
            vec::push_reserved(entries, entry).map_err(nomem)?;
            vec::push_reserved(order, index).map_err(nomem)?;
            continue;
        }
        let from_buffer = e.flags & MDW_ENTRY_BUF != 0;
        if e.flags & !KNOWN_ENTRY_FLAGS != 0 || (e.buf != 0 && !from_buffer) || e.len == 0 {
            return Err(err(EINVAL));
        }
        let at = Located::of(e, paced, buffers, bufs).map_err(&err)?;
        own_timing |= at.pace.is_some();
        total = total.saturating_add(e.len);
        if total > MDW_MAX_CALL_BYTES {
            return Err(err(E2BIG));
        }
        // The entry's pages: in the open run if they continue it.
        let page_base = at.place(&mut layout, runs, index).map_err(&err)?;

        // A group's entry is its first destination's, which the others
        // join as a fan-out's.
        let group = match e.flags & MDW_ENTRY_GROUP {
            0 => None,
            _ => Some(groups.get(e.dest).ok_or(err(ENXIO))?.dests()),
        };
        let handle = match group {
            Some(group) => *group.first().ok_or(err(EINVAL))?,
            None => e.dest,
        };
        let dest = dests.get_mut(handle).ok_or(err(ENXIO))?;
        if e.flags & MDW_ENTRY_RTP_TS != 0 && !dest.rtp {
            return Err(err(EINVAL));
        }
        // The first entry of a fan-out gets a slot of its own, the others
        // their destination's.
        let fanout = group.is_some()
            || raw
                .get(i + 1)
                .is_some_and(|next| next.flags & MDW_ENTRY_SAME != 0);
        let slot = match fanout {
            true => Err(slots.len() as u32),
            false => dest.slot_in(call, slots.len() as u32),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(slot) => {
                let start = (order.len(), index);
                new_slot(
                    net,
                    dest,
                    handle,
                    devs,
                    slots,
                    qdisc,
                    start,
                    (fanout, group.is_some()),
                )
                .map_err(&err)?;
                vec::push_reserved(remaining, 0).map_err(nomem)?;
                slot
            }
        };
        grouping.entry(slot as usize, slots.len());
        let s = slots.get_mut(slot as usize).ok_or(err(EINVAL))?;
        s.count += 1;
        let dev = s.dev;
        let packets = packet_count(e.len, s.cursor.max_payload()).map_err(|_| err(EINVAL))?;
        let planned = remaining.get_mut(slot as usize).ok_or(err(EINVAL))?;
        *planned = planned.checked_add(packets).ok_or(err(EINVAL))?;
        let rtp_ts = (e.flags & MDW_ENTRY_RTP_TS != 0).then_some(e.rtp_timestamp);
        // Neither can fail: room was reserved.
        vec::push_reserved(
            entries,
            Entry {
                index,
                slot,
                dest: handle,
                dev,
                len: e.len,
                first_page_offset: at.offset,
                page_base,
                rtp_ts,
                pace: at.pace,
            },
        )
        .map_err(nomem)?;
        vec::push_reserved(order, index).map_err(nomem)?;
        let (Some(group), Some(&first)) = (group, entries.last()) else {
            continue;
        };
        // The group's further destinations, as `MDW_ENTRY_SAME` entries
        // with this one's RTP timestamp; their entries go after the
        // caller's, and in `order` after this one (room kept for the
        // caller's entries still to come).
        let later = raw.len().saturating_sub(i);
        order
            .reserve(group.len().saturating_add(later), GFP_KERNEL_ACCOUNT)
            .map_err(nomem)?;
        members
            .reserve(group.len(), GFP_KERNEL_ACCOUNT)
            .map_err(nomem)?;
        for (k, &member) in group.iter().enumerate().skip(1) {
            if k % ENTRIES_PER_YIELD == 0 {
                yield_killable().map_err(&err)?;
            }
            let position = raw.len().saturating_add(members.len());
            if position >= MDW_MAX_CALL_DESTS as usize {
                return Err(err(E2BIG));
            }
            let same = MdwEntry {
                dest: member,
                flags: MDW_ENTRY_SAME | (e.flags & MDW_ENTRY_RTP_TS),
                rtp_timestamp: e.rtp_timestamp,
                ..MdwEntry::default()
            };
            let to = FanOutTo {
                net,
                dests,
                devs,
                slots,
                remaining,
            };
            let entry = Entry {
                // Its timing is the fan-out's, its first entry's.
                pace: None,
                ..to.add(&same, index, Some(&first)).map_err(&err)?
            };
            fanned += 1;
            grouping.entry(entry.slot as usize, slots.len());
            // Neither can fail: room was reserved.
            vec::push_reserved(&mut members, entry).map_err(nomem)?;
            vec::push_reserved(order, position as u32).map_err(nomem)?;
        }
    }
    entries
        .extend_from_slice(&members, GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    if let Some(run) = layout.finish() {
        runs.push(run, GFP_KERNEL_ACCOUNT).map_err(nomem)?;
    }
    Ok(Checked {
        pages: PagesNeeded {
            pinned: layout.pinned_pages() as usize,
            total: layout.total_pages() as usize,
        },
        grouped: grouping.grouped(),
        own_timing,
        single: false,
        members: members.len(),
        destinations: slots.len().saturating_add(fanned),
    })
}

/// Entry `e`'s own timing and where its data is: the checks that depend on
/// its address and timing, made in this order by [`validate`] and
/// [`revalidate`] alike.
struct Located {
    pace: Option<EntryPace>,
    /// The offset of its first byte in its first page.
    offset: u32,
    source: Source,
    /// Its first page's number (of user memory or of the buffer).
    first_page: u64,
    /// The pages it spans.
    pages: u64,
}

impl Located {
    /// Checks `e`'s timing (`paced`: the call is) and address, and finds
    /// its pages.
    #[inline(always)]
    fn of(
        e: &MdwEntry,
        paced: bool,
        buffers: &mut CallBuffers,
        bufs: &Mutex<BufTable>,
    ) -> Result<Self> {
        let pace = entry_pace(e, paced)?;
        let end = e.addr.checked_add(e.len).ok_or(EFAULT)?;
        let (offset, source, first_page) = if e.flags & MDW_ENTRY_BUF == 0 {
            let offset = (e.addr & ((1 << PAGE_SHIFT) - 1)) as u32;
            (offset, Source::User, e.addr >> PAGE_SHIFT)
        } else {
            // Looked up in `bufs` once per call.
            let index = buffers.index(e.buf, bufs)?;
            let buffer = buffers.get(index).ok_or(ENOENT)?;
            if end > buffer.len() {
                return Err(EFAULT);
            }
            let (first_page, offset) = buffer.locate(e.addr);
            (offset, Source::Buffer(index), first_page as u64)
        };
        let pages = pages_spanned(offset, e.len, PAGE_SHIFT as u32).map_err(|_| EINVAL)?;
        Ok(Self {
            pace,
            offset,
            source,
            first_page,
            pages,
        })
    }

    /// Places its pages in the call's page array (a new run closed by it
    /// goes to `runs`); returns the index of its first page there.
    #[inline(always)]
    fn place(&self, layout: &mut RunLayout, runs: &mut KVVec<Run>, index: u32) -> Result<usize> {
        let page_base = layout
            .place_base(self.source, self.first_page, self.pages, index)
            .map_err(|_| EINVAL)?;
        if let Some(run) = layout.take_closed() {
            runs.push(run, GFP_KERNEL_ACCOUNT)?;
        }
        // No truncation: a call's pages are bounded by its 1 GiB.
        Ok(page_base as usize)
    }
}

/// Stage 1 for a call shaped like the file's last one ([`Shape`]): its
/// devices looked up and found in the same states, each entry compared
/// with the last call's and its pages worked out (the checks that depend
/// on its address and timing made again, in [`validate`]'s order); the
/// slots, their devices, the grouping and the plan are the last call's.
/// `Ok(None)` when the call is not shaped like it: [`validate`] then
/// starts over.
#[allow(clippy::too_many_arguments)]
fn revalidate(
    net: &NetNs,
    arena: &mut CallArena,
    bufs: &Mutex<BufTable>,
    buffers: &mut CallBuffers,
    raw: &[MdwEntry],
    (table, flags, known): ((u64, u64), u32, bool),
    paced: bool,
) -> Result<Option<Checked>, EntryError> {
    let CallArena {
        entries,
        remaining,
        active,
        runs,
        devs,
        shape,
        ..
    } = arena;
    if !shape.valid
        || shape.table != table
        || shape.flags != flags
        || shape.entries.len() != raw.len()
        || Some(entries.len()) != raw.len().checked_add(shape.members)
    {
        return Ok(None);
    }
    vec::clear(remaining);
    vec::clear(active);
    vec::clear(runs);
    devs.clear();
    for &(ifindex, stamp) in shape.devs.iter() {
        match devs.get(net, ifindex) {
            Ok((_, now)) if now == stamp => {}
            // Changed or gone: validation says what it means.
            _ => return Ok(None),
        }
    }
    let mut layout = RunLayout::default();
    let mut own_timing = false;
    if shape.untimed {
        let want = &shape.entries;
        let to = (
            &mut entries[..],
            &mut layout,
            &mut *runs,
            (&mut *buffers, bufs),
        );
        let relocated = match (shape.buffers, shape.plain, known) {
            (true, true, false) => relocate::<true, false, false>(raw, want, to),
            (false, true, false) => relocate::<false, false, false>(raw, want, to),
            (true, false, false) => relocate::<true, true, false>(raw, want, to),
            (false, false, false) => relocate::<false, true, false>(raw, want, to),
            (true, true, true) => relocate::<true, false, true>(raw, want, to),
            (false, true, true) => relocate::<false, false, true>(raw, want, to),
            (true, false, true) => relocate::<true, true, true>(raw, want, to),
            (false, false, true) => relocate::<false, true, true>(raw, want, to),
        };
        if !relocated? {
            return Ok(None);
        }
    } else {
        // Where the data of the entry before is, for an `MDW_ENTRY_SAME` one:
        // the offset in its first page, that page's index, its timing.
        let mut before: Option<(u32, usize, Option<EntryPace>)> = None;
        for (i, ((e, entry), want)) in raw
            .iter()
            .zip(entries.iter_mut())
            .zip(shape.entries.iter())
            .enumerate()
        {
            let index = i as u32;
            let err = at(index);
            if i % ENTRIES_PER_YIELD == ENTRIES_PER_YIELD - 1 {
                yield_killable().map_err(&err)?;
            }
            if EntryShape::of(e) != *want {
                return Ok(None);
            }
            let rtp_ts = (e.flags & MDW_ENTRY_RTP_TS != 0).then_some(e.rtp_timestamp);
            if e.flags & MDW_ENTRY_SAME != 0 {
                // The data of the entry before (the fan-out's first).
                let Some(data) = before else {
                    return Ok(None);
                };
                if e.addr != 0 || e.pace_offset != 0 || e.pace_gap != 0 {
                    return Ok(None);
                }
                (entry.first_page_offset, entry.page_base, entry.pace) = data;
                entry.rtp_ts = rtp_ts;
                continue;
            }
            let at = Located::of(e, paced, buffers, bufs).map_err(&err)?;
            own_timing |= at.pace.is_some();
            entry.page_base = at.place(&mut layout, runs, index).map_err(&err)?;
            entry.first_page_offset = at.offset;
            entry.rtp_ts = rtp_ts;
            entry.pace = at.pace;
            before = Some((entry.first_page_offset, entry.page_base, entry.pace));
        }
    }
    if let Some(run) = layout.finish() {
        runs.push(run, GFP_KERNEL_ACCOUNT).map_err(nomem)?;
    }
    // The slots are readied by the send loop (`Slot::begin`); one packet
    // per slot needs no plan.
    let single = shape.single && !paced;
    if !single {
        remaining
            .extend_from_slice(&shape.plan, GFP_KERNEL_ACCOUNT)
            .map_err(nomem)?;
    }
    Ok(Some(Checked {
        pages: PagesNeeded {
            pinned: layout.pinned_pages() as usize,
            total: layout.total_pages() as usize,
        },
        grouped: shape.grouped,
        own_timing,
        single,
        members: shape.members,
        destinations: shape.destinations,
    }))
}

/// Keeps what validation made of this call (`entries`, `slots`, `order`
/// and the plan in `remaining`) for the next call shaped like it
/// ([`revalidate`]), unless there is no memory to keep it in.
fn record_shape(
    arena: &mut CallArena,
    raw: &[MdwEntry],
    table: (u64, u64),
    flags: u32,
    checked: &Checked,
) {
    let grouped = checked.grouped;
    let CallArena {
        remaining,
        slots,
        devs,
        shape,
        ..
    } = arena;
    shape.valid = false;
    vec::clear(&mut shape.entries);
    vec::clear(&mut shape.plan);
    vec::clear(&mut shape.devs);
    let kept = shape.entries.reserve(raw.len(), GFP_KERNEL_ACCOUNT).is_ok()
        && raw
            .iter()
            .all(|e| vec::push_reserved(&mut shape.entries, EntryShape::of(e)).is_ok())
        && shape
            .plan
            .extend_from_slice(remaining, GFP_KERNEL_ACCOUNT)
            .is_ok()
        && devs
            .states()
            .all(|d| shape.devs.push(d, GFP_KERNEL_ACCOUNT).is_ok());
    shape.valid = kept;
    shape.table = table;
    shape.flags = flags;
    shape.grouped = grouped;
    shape.members = checked.members;
    shape.destinations = checked.destinations;
    shape.plain = raw
        .iter()
        .all(|e| e.flags & (FANOUT_ENTRY_FLAGS | MDW_ENTRY_PACE) == 0);
    shape.untimed = raw.iter().all(|e| e.flags & MDW_ENTRY_PACE == 0);
    shape.buffers = raw.iter().any(|e| e.flags & MDW_ENTRY_BUF != 0);
    shape.single = shape.plain
        && grouped
        && slots.iter().all(|s| s.count == 1 && !s.fanout)
        && remaining.iter().all(|&packets| packets == 1);
}

/// [`revalidate`]'s work per entry for an untimed call
/// ([`Shape::untimed`]): each entry compared with the last call's (`want`)
/// and its pages placed in `layout`, with the checks of [`Located::of`] in
/// its order (user memory written out, the usual case; a registered
/// buffer's slice through it, compiled in with `BUFFERS`, when some entry
/// was one: [`Shape::buffers`]); a fan-out's `MDW_ENTRY_SAME` entries
/// given the data of the entry before, compiled in with `SAME` (else the
/// shape is [`Shape::plain`]). `Ok(false)` when an entry is not shaped
/// like the last call's, or its fields want [`validate`]'s verdict. With
/// `KNOWN` the entries are a repeat of entries found shaped like `want`
/// ([`Shape::matches`]): only their lengths are compared, and the fields
/// a repeat cannot change (the paced timing) are not checked again.
#[inline(never)]
#[allow(clippy::type_complexity)]
fn relocate<const BUFFERS: bool, const SAME: bool, const KNOWN: bool>(
    raw: &[MdwEntry],
    want: &[EntryShape],
    (entries, layout, runs, (buffers, bufs)): (
        &mut [Entry],
        &mut RunLayout,
        &mut KVVec<Run>,
        (&mut CallBuffers, &Mutex<BufTable>),
    ),
) -> Result<bool, EntryError> {
    // Where the data of the entry before is, for an `MDW_ENTRY_SAME` one:
    // the offset in its first page and that page's index.
    let mut before: Option<(u32, usize)> = None;
    let n = raw.len().min(entries.len()).min(want.len());
    for i in 0..n {
        let index = i as u32;
        if i % ENTRIES_PER_YIELD == ENTRIES_PER_YIELD - 1 {
            yield_killable().map_err(at(index))?;
        }
        let (Some(e), Some(entry), Some(want)) = (raw.get(i), entries.get_mut(i), want.get(i))
        else {
            return Ok(false);
        };
        let shaped = match KNOWN {
            true => e.len == want.len,
            false => EntryShape::of(e) == *want,
        };
        if !shaped {
            return Ok(false);
        }
        let rtp_ts = (e.flags & MDW_ENTRY_RTP_TS != 0).then_some(e.rtp_timestamp);
        if SAME && e.flags & MDW_ENTRY_SAME != 0 {
            // The data of the entry before (the fan-out's first).
            let Some((offset, page_base)) = before else {
                return Ok(false);
            };
            if e.addr != 0 || (!KNOWN && (e.pace_offset != 0 || e.pace_gap != 0)) {
                return Ok(false);
            }
            entry.first_page_offset = offset;
            entry.page_base = page_base;
            entry.rtp_ts = rtp_ts;
            entry.pace = None;
            continue;
        }
        let located = if e.flags & MDW_ENTRY_BUF != 0 {
            if !BUFFERS {
                return Ok(false);
            }
            // No MDW_ENTRY_PACE (its flags are `want`'s): untimed.
            Located::of(e, false, buffers, bufs).map_err(at(index))?
        } else {
            // `Located::of` for user memory.
            if !KNOWN && (e.pace_offset != 0 || e.pace_gap != 0) {
                return Err(at(index)(EINVAL));
            }
            if e.addr.checked_add(e.len).is_none() {
                return Err(at(index)(EFAULT));
            }
            let offset = (e.addr & ((1 << PAGE_SHIFT) - 1)) as u32;
            Located {
                pace: None,
                offset,
                source: Source::User,
                first_page: e.addr >> PAGE_SHIFT,
                pages: pages_spanned(offset, e.len, PAGE_SHIFT as u32)
                    .map_err(|_| at(index)(EINVAL))?,
            }
        };
        let offset = located.offset;
        // The usual entry lies in or right after the pages of the one
        // before: it joins their run.
        entry.page_base = match layout.join(located.source, located.first_page, located.pages) {
            // No truncation: a call's pages are bounded by its 1 GiB.
            Some(base) => base as usize,
            None => located.place(layout, runs, index).map_err(at(index))?,
        };
        entry.first_page_offset = offset;
        entry.rtp_ts = rtp_ts;
        entry.pace = None;
        if SAME {
            before = Some((offset, entry.page_base));
        }
    }
    Ok(true)
}

/// The index of `dest`'s device in the call's device list (looked up
/// once per call and device), with the destination's prepared state
/// checked against it.
#[inline(always)]
fn call_device(net: &NetNs, dest: &mut Destination, devs: &mut CallDevs) -> Result<u32> {
    let (dev, stamp) = devs.get(net, dest.ifindex)?;
    let device = devs.devices().get(dev as usize).ok_or(EINVAL)?;
    dest.prepare(device, stamp)?;
    Ok(dev)
}

/// Gives `dest` (handle `handle`) the next slot of the call, on its device,
/// with its prepared state; its entries start at `first` in `order` if
/// they come one after the other, the first of them the caller's entry
/// `index`. With `fanout`, the slot of a fan-out whose first entry is
/// `dest`'s (with `group`, a group's).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn new_slot(
    net: &NetNs,
    dest: &mut Destination,
    handle: u32,
    devs: &mut CallDevs,
    slots: &mut KVVec<Slot>,
    qdisc: bool,
    (first, index): (usize, u32),
    (fanout, group): (bool, bool),
) -> Result {
    let dev = call_device(net, dest, devs)?;
    let recycle = dest.prepared.as_ref().is_some_and(|p| p.recycle) && !qdisc;
    let cursor =
        PagedCursor::new(dest.template.max_payload(), PAGE_SHIFT as u32).map_err(|_| EINVAL)?;
    vec::push_reserved(
        slots,
        Slot {
            handle,
            fanout,
            group,
            dev,
            recycle,
            first,
            count: 0,
            cursor,
            current: index,
            first_index: index,
            departures: Departures::default(),
            started_in: 0,
        },
    )
}

/// What a fan-out's further entries (`MDW_ENTRY_SAME`) are checked and
/// added with.
struct FanOutTo<'a> {
    net: &'a NetNs,
    dests: &'a mut DestTable,
    devs: &'a mut CallDevs,
    slots: &'a mut KVVec<Slot>,
    remaining: &'a mut KVVec<u64>,
}

impl FanOutTo<'_> {
    /// Checks `e`, entry `index`, an `MDW_ENTRY_SAME` entry after `before`
    /// (`EINVAL` without one, or with data of its own), and adds its
    /// destination to `before`'s fan-out: the fan-out's packets shrink to
    /// the destination's payload if it is smaller. Returns its entry.
    #[inline(never)]
    fn add(self, e: &MdwEntry, index: u32, before: Option<&Entry>) -> Result<Entry> {
        let before = *before.ok_or(EINVAL)?;
        if e.flags & !(MDW_ENTRY_SAME | MDW_ENTRY_RTP_TS) != 0 || e.addr != 0 || e.len != 0 {
            return Err(EINVAL);
        }
        // A fan-out's timing is that of its data, its first entry.
        if e.buf != 0 || e.pace_offset != 0 || e.pace_gap != 0 {
            return Err(EINVAL);
        }
        let dest = self.dests.get_mut(e.dest).ok_or(ENXIO)?;
        if e.flags & MDW_ENTRY_RTP_TS != 0 && !dest.rtp {
            return Err(EINVAL);
        }
        let dev = call_device(self.net, dest, self.devs)?;
        let max_payload = dest.template.max_payload();
        let s = self.slots.get_mut(before.slot as usize).ok_or(EINVAL)?;
        if !s.fanout {
            return Err(EINVAL);
        }
        s.count += 1;
        if max_payload < s.cursor.max_payload() {
            s.cursor = PagedCursor::new(max_payload, PAGE_SHIFT as u32).map_err(|_| EINVAL)?;
            let planned = self.remaining.get_mut(before.slot as usize).ok_or(EINVAL)?;
            *planned = packet_count(before.len, max_payload).map_err(|_| EINVAL)?;
        }
        Ok(Entry {
            index,
            dest: e.dest,
            dev,
            rtp_ts: (e.flags & MDW_ENTRY_RTP_TS != 0).then_some(e.rtp_timestamp),
            ..before
        })
    }
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

/// Stage 2, only when a destination's entries are not one after the
/// other (`common::group`): orders the entries by destination, each
/// destination's in the caller's order (`order`, `Slot::first`,
/// `Slot::count`); `fill` is scratch space.
#[cold]
fn group(
    entries: &[Entry],
    slots: &mut [Slot],
    order: &mut [u32],
    fill: &mut KVVec<u32>,
) -> Result<(), EntryError> {
    fill.extend_with(slots.len(), 0, GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    let slot_of = |i: usize| entries.get(i).map(|e| e.slot);
    let grouped = group_by_slot(slot_of, slots, order, fill);
    vec::clear(fill);
    grouped.map_err(|_| at(0)(EINVAL))
}

/// An entry's own timing (`MDW_ENTRY_PACE`, only in a `paced` call), as
/// given: its gap is resolved by [`resolve_pace`].
fn entry_pace(e: &MdwEntry, paced: bool) -> Result<Option<EntryPace>> {
    if e.flags & MDW_ENTRY_PACE == 0 {
        if e.pace_offset != 0 || e.pace_gap != 0 {
            return Err(EINVAL);
        }
        return Ok(None);
    }
    if !paced {
        return Err(EINVAL);
    }
    Ok(Some(EntryPace {
        offset: e.pace_offset,
        gap: e.pace_gap,
    }))
}

/// Stage 2b, only in a paced call: resolves the gap of each entry timed
/// by itself, now that its packets are counted (`ERANGE` when they would
/// not all depart inside `window`). `own_timing`: some entry has its own
/// timing (else there is nothing to do). Each slot's departure clock is
/// started by the send loop at its first turn (`Departures::start_once`):
/// at the window's start, its packets spread over the window.
#[cold]
fn resolve_pace(
    window: &Window,
    entries: &mut [Entry],
    slots: &[Slot],
    own_timing: bool,
) -> Result<(), EntryError> {
    if !own_timing {
        return Ok(());
    }
    for e in entries.iter_mut() {
        let Some(own) = e.pace.as_mut() else {
            continue;
        };
        let err = at(e.index);
        let s = slots.get(e.slot as usize).ok_or(err(EINVAL))?;
        let packets = packet_count(e.len, s.cursor.max_payload()).map_err(|_| err(EINVAL))?;
        let gap = window
            .entry_gap(u64::from(own.offset), u64::from(own.gap), packets)
            .map_err(|e| err(pace_errno(e)))?;
        // At most the window's length or the caller's own u32.
        own.gap = u32::try_from(gap).map_err(|_| err(ERANGE))?;
    }
    Ok(())
}

/// Stage 3, the plan: the round-robin order (`common::interleave`) over
/// each destination's packets, counted by validation in `remaining`.
fn plan<'a>(
    slots: &[Slot],
    remaining: &'a mut KVVec<u64>,
    active: &'a mut KVVec<u32>,
    quantum: u32,
) -> Result<RoundRobin<'a>, EntryError> {
    active
        .extend_with(slots.len(), 0, GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    RoundRobin::new(remaining, active, quantum).map_err(|_| at(0)(EINVAL))
}

/// Stage 4, translation: pins each run of user pages (or, with `pins`,
/// the file's pin cache and its owner, borrows it from the cache, cached
/// now if it was not), borrows each run of registered-buffer pages, in
/// order, so that every entry's `page_base` names its first page.
fn translate(
    raw: &[MdwEntry],
    runs: &[Run],
    buffers: &CallBuffers,
    mut pins: Option<(&mut PinCache, &Arc<FileShared>)>,
    pages: &mut CallPages,
) -> Result<(), EntryError> {
    if let Some((cache, _)) = pins.as_mut() {
        cache.begin_call();
    }
    for r in runs.iter() {
        let err = at(r.entry);
        yield_killable().map_err(&err)?;
        match r.source {
            Source::User => {
                if let Some((cache, shared)) = pins.as_mut() {
                    if let Some((run, at)) = cache.get(shared, r.first, r.pages) {
                        pages.borrow_run(run, at, r.pages as usize).map_err(&err)?;
                        continue;
                    }
                }
                // Errors are this pin's, as without the cache.
                pages
                    .pin(r.first << PAGE_SHIFT, r.pages as usize)
                    .map_err(|(e, pinned)| blame(raw, r, pinned as u64, e))?;
            }
            Source::Buffer(index) => {
                let buffer = buffers.get(index).ok_or(err(ENOENT))?;
                pages
                    .borrow(buffer, r.first as usize, r.pages as usize)
                    .map_err(&err)?;
            }
        }
    }
    Ok(())
}

/// The error of a run of user pages that could be pinned only up to page
/// `pinned` of it, tied to the entry a call pinning entry by entry would
/// have failed on (`common::runs::blame`).
#[cold]
fn blame(raw: &[MdwEntry], run: &Run, pinned: u64, error: Error) -> EntryError {
    let start = run.entry as usize;
    let tail = raw.get(start..).unwrap_or(&[]).iter().map(|e| {
        if e.flags & MDW_ENTRY_BUF != 0 {
            // Never the run's source: runs of user pages are blamed here.
            return (Source::Buffer(usize::MAX), 0, 0);
        }
        let first = e.addr >> PAGE_SHIFT;
        // Validated: `len > 0` and `addr + len` does not wrap.
        let last = e.addr.saturating_add(e.len).saturating_sub(1) >> PAGE_SHIFT;
        (
            Source::User,
            first,
            last.saturating_sub(first).saturating_add(1),
        )
    });
    let found = runs::blame(run, pinned, tail);
    at(found.map_or(run.entry, |i| start.saturating_add(i) as u32))(error)
}
