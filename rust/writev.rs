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

use kernel::{
    alloc::{KVVec, KVec},
    page::PAGE_SHIFT,
    prelude::*,
    sync::{Arc, Mutex},
};

use crate::{
    abi::{
        MdwCompletion, MdwEntry, MdwWritev, MDW_ENTRY_BUF, MDW_ENTRY_RTP_TS, MDW_MAX_CALL_BYTES,
        MDW_MAX_ENTRIES, MDW_MAX_ENTRY_SIZE, MDW_WRITE_ASYNC, MDW_WRITE_QDISC,
    },
    buffer::{BufTable, RegisteredBuffer},
    client::DestTable,
    common::{
        checksum::from_native_sum,
        interleave::RoundRobin,
        runs::{self, Run, RunLayout, Source},
        segment::{
            page_frags, pages_spanned, split_two, total_packets, EntryLens, EntrySpan, EntrySpans,
            PagedCursor,
        },
        template::{FullSizePatch, PacketState},
    },
    completion::{AsyncCall, CallRelease, FileShared},
    dest::{CsumMode, Destination},
    ffi,
    net::{yield_killable, NetDevice, NetNs},
    pin::{CallPages, MemlockCharge},
    skb::{payload_sum, CallDone, PacketParts, SkbPool, TwoFrags, TxBatch, MAX_FRAGS},
    stats::Stats,
    vec,
};

/// Entries validated between two checks for a fatal signal.
const ENTRIES_PER_YIELD: usize = 64;

/// `MDW_WRITE_*` bits this module knows.
const KNOWN_WRITE_FLAGS: u32 = MDW_WRITE_QDISC | MDW_WRITE_ASYNC;
/// `MDW_ENTRY_*` bits this module knows.
const KNOWN_ENTRY_FLAGS: u32 = MDW_ENTRY_RTP_TS | MDW_ENTRY_BUF;

/// A failure tied to the entry being handled when it happened.
pub(crate) struct EntryError {
    /// The errno.
    pub(crate) error: Error,
    /// Index of the entry in the caller's vector.
    pub(crate) index: u32,
}

/// One validated entry.
struct Entry {
    /// Index in the caller's vector.
    index: u32,
    /// Slot of its destination in this call.
    slot: u32,
    len: u64,
    /// Offset of `addr` in its page.
    first_page_offset: u32,
    /// Index of its first page in the call's page array.
    page_base: usize,
    /// RTP timestamp of the entry's first packet, if the caller set one.
    rtp_ts: Option<u32>,
}

/// The registered buffers one call uses, looked up once each.
#[derive(Default)]
struct CallBuffers {
    held: KVec<(u32, Arc<RegisteredBuffer>)>,
}

impl CallBuffers {
    /// The index of buffer `id` in this call, looking it up in `table`
    /// the first time; `ENOENT` when the file has no such buffer.
    fn index(&mut self, id: u32, table: &Mutex<BufTable>) -> Result<usize> {
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
}

/// One destination of this call: what the send loop needs of its
/// prepared state (`dest::Prepared`), and its progress through the call.
/// Its template, packet state and skb ring stay with the destination.
struct Slot {
    /// Handle of the destination.
    handle: u32,
    csum: CsumMode,
    /// Index of the device in the call's device list.
    dev: usize,
    /// The entries of this destination, as a range of `order`.
    first: usize,
    count: usize,
    cursor: PagedCursor,
    /// Index in the caller's vector of the entry being sent.
    current: u32,
    /// The largest payload of its packets.
    max_payload: u16,
    /// Header length and offsets of its packets, and the checksum mode.
    layout: ffi::MdwLayout,
    /// Whether its skbs may be recycled: handed to the device shared
    /// (an audited driver, scatter-gather, direct sends).
    recycle: bool,
    /// Whether its packets are copied into linear skbs: the device has no
    /// scatter-gather for them (`bytes_copied`).
    linear: bool,
    /// The header writes of its full-size packets, when they do not depend
    /// on the payload and its packets are recycled skbs (`send_fast`).
    fast: Option<FullSizePatch>,
}

/// A file's working arrays for its calls, kept from one call to the next
/// (emptied, not freed), so that a call in the steady state allocates
/// none of them: they grow to the largest call's size and stay. Calls on
/// a file run one at a time, under the lock this lives behind.
pub(crate) struct CallArena {
    /// Numbers the file's calls, for `Destination::slot_in`.
    calls: u64,
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
    devs: KVec<NetDevice>,
}

impl Default for CallArena {
    fn default() -> Self {
        Self {
            calls: 0,
            entries: KVVec::new(),
            slots: KVVec::new(),
            order: KVVec::new(),
            remaining: KVVec::new(),
            active: KVVec::new(),
            runs: KVVec::new(),
            devs: KVec::new(),
        }
    }
}

impl CallArena {
    /// Empties every array for a new call (capacity kept) and numbers it.
    fn start(&mut self) {
        self.calls = self.calls.wrapping_add(1);
        self.clear();
    }

    /// Drops what the last call left: its device references above all.
    pub(crate) fn clear(&mut self) {
        vec::clear(&mut self.entries);
        vec::clear(&mut self.slots);
        vec::clear(&mut self.order);
        vec::clear(&mut self.remaining);
        vec::clear(&mut self.active);
        vec::clear(&mut self.runs);
        vec::clear(&mut self.devs);
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

impl EntryLens for SlotEntries<'_> {
    fn entry_len(&self, index: usize) -> Option<u64> {
        Some(self.entry(index)?.len)
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
    #[cold]
    fn start_entry(
        &mut self,
        state: &mut PacketState,
        lens: &SlotEntries<'_>,
        index: usize,
    ) -> Result<(), EntryError> {
        let entry = lens.entry(index).ok_or(at(self.current)(EINVAL))?;
        self.current = entry.index;
        if let Some(ts) = entry.rtp_ts {
            state.rtp_ts = ts;
        }
        Ok(())
    }

    #[inline(always)]
    fn lens<'a>(&self, order: &'a [u32], entries: &'a [Entry]) -> SlotEntries<'a> {
        SlotEntries {
            order,
            first: self.first,
            count: self.count,
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

/// Sends the call's packets in the round-robin order `turns`, in batches
/// per device. Stops at the first error, freeing what is still batched.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn send_all(
    turns: &mut RoundRobin<'_>,
    slots: &mut [Slot],
    dests: &mut DestTable,
    devs: &[NetDevice],
    order: &[u32],
    entries: &[Entry],
    pages: &[*mut kernel::bindings::page],
    done: &CallDone,
    pool: &mut SkbPool,
    qdisc: bool,
    flow: u32,
) -> Outcome {
    let mut out = Outcome {
        bytes: 0,
        copied: 0,
        packets: 0,
        error: None,
    };
    let destinations = slots.len();
    let Some(first) = slots.first().and_then(|s| devs.get(s.dev)) else {
        out.error = Some(at(0)(EINVAL));
        return out;
    };
    let mut batch = TxBatch::new(first, qdisc, flow);
    batch.limit_for(destinations);
    let mut frags = [NO_FRAG; MAX_FRAGS];
    // Turn by turn: the order costs once per turn, the packets of a turn
    // go in an inner loop.
    let mut last = 0;
    'call: while let Some(burst) = turns.next_burst() {
        let Some(slot) = slots.get_mut(burst.queue) else {
            out.error = Some(at(last)(EINVAL));
            break;
        };
        let Some(dest) = dests.get_mut(slot.handle) else {
            out.error = Some(at(slot.current)(EINVAL));
            break;
        };
        // With one device (the usual case) the batch never switches.
        if devs.len() > 1 {
            let Some(dev) = devs.get(slot.dev) else {
                out.error = Some(at(slot.current)(EINVAL));
                break;
            };
            if !core::ptr::eq(batch.device(), dev) {
                if let Err(e) = out.count(batch.flush()) {
                    out.error = Some(at(slot.current)(e));
                    break;
                }
                batch = TxBatch::new(dev, qdisc, flow);
                batch.limit_for(destinations);
            }
        }
        let mut left = burst.packets;
        while left > 0 {
            left -= 1;
            let sent = match send_fast(slot, dest, pages, &mut batch, pool) {
                Some(sent) => sent,
                None => send_packet(
                    slot, dest, order, entries, pages, &mut frags, &mut batch, done, pool,
                ),
            };
            if let Err(e) = sent {
                out.error = Some(e);
                break 'call;
            }
            if batch.is_full() {
                if let Err(e) = out.count(batch.flush()) {
                    out.error = Some(at(slot.current)(e));
                    break 'call;
                }
                let more = left > 0 || !burst.last;
                if more && crate::net::signal_pending() {
                    out.error = Some(at(slot.current)(EINTR));
                    break 'call;
                }
                crate::net::cond_resched();
            }
        }
        // The entry of the call's last packet so far: a failing last flush
        // names it.
        last = slot.current;
    }
    if out.error.is_none() {
        if let Err(e) = out.count(batch.flush()) {
            out.error = Some(at(last)(e));
        }
    }
    // Anything still batched after an error is freed, not sent (dropping
    // the batch).
    out
}

/// The usual packet, the fast way: a full-size packet of the current entry
/// in one page or across two, with a checksum that does not depend on the
/// payload, in the destination's least recently used skb, which the device
/// has released; its header is the destination's earlier one, patched
/// with the writes computed for the call. `None` when the packet is not
/// like that (nothing changed then): [`send_packet`] handles every case.
#[inline(always)]
fn send_fast(
    slot: &mut Slot,
    dest: &mut Destination,
    pages: &[*mut kernel::bindings::page],
    batch: &mut TxBatch<'_>,
    pool: &mut SkbPool,
) -> Option<Result<(), EntryError>> {
    let Slot {
        fast: Some(fast),
        cursor,
        layout,
        current,
        ..
    } = slot
    else {
        return None;
    };
    // A packet tap on the device: fresh skbs, which it can clone.
    if !batch.recycling() {
        return None;
    }
    let pkt = cursor.peek_full::<{ PAGE_SHIFT as u32 }>()?;
    let page1 = match pkt.len1 {
        0 => core::ptr::null_mut(),
        _ => *pages.get(pkt.page.wrapping_add(1))?,
    };
    let two = TwoFrags {
        page0: *pages.get(pkt.page)?,
        page1,
        off: pkt.offset,
        len0: pkt.len0,
        len1: pkt.len1,
    };
    let mut skb = batch.build_rearmed(&mut dest.ring, layout.hdr_len, &two, pool)?;
    cursor.advance(&pkt);
    // An error ends the call; dropping the skb frees it.
    Some(match fast.patch(skb.header(), &mut dest.state) {
        Ok(()) => {
            skb.queue();
            Ok(())
        }
        Err(_) => Err(at(*current)(EINVAL)),
    })
}

/// Builds the next packet of `slot`, the call's slot of `dest`, and queues
/// it in `batch`, which must have room.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn send_packet(
    slot: &mut Slot,
    dest: &mut Destination,
    order: &[u32],
    entries: &[Entry],
    pages: &[*mut kernel::bindings::page],
    frags: &mut [ffi::MdwFrag; MAX_FRAGS],
    batch: &mut TxBatch<'_>,
    done: &CallDone,
    pool: &mut SkbPool,
) -> Result<(), EntryError> {
    let lens = slot.lens(order, entries);
    let Some(pkt) = slot.cursor.next_packet(&lens) else {
        return Err(at(slot.current)(EINVAL));
    };
    if pkt.first {
        slot.start_entry(&mut dest.state, &lens, pkt.entry)?;
    }
    let err = at(slot.current);
    let n = fill_frags(frags, pages, pkt.page, pkt.offset, pkt.len).ok_or(err(EINVAL))?;
    let frags = frags.get(..n).ok_or(err(EINVAL))?;
    let csum = match slot.csum {
        // Only a software checksum reads the payload.
        CsumMode::Software => slot.csum.udp(from_native_sum(payload_sum(frags))),
        mode => mode.udp(0),
    };
    let parts = PacketParts {
        layout: &slot.layout,
        frags,
        payload_len: pkt.len as u32,
        recycle: slot.recycle && batch.recycling(),
        linear: slot.linear,
    };
    let Destination {
        template,
        state,
        ring,
        ..
    } = dest;
    let mut skb = batch.build(&parts, done, pool, ring).map_err(&err)?;
    // The header: the template's bytes in a new skb, or only the per-packet
    // fields in a recycled one (its earlier header stays); for a full-size
    // packet those were mostly computed once for the call.
    let written = match (skb.fresh(), &slot.fast) {
        (true, _) => template.write_header(skb.header(), state, pkt.len, csum),
        (false, Some(fast)) if pkt.len == slot.max_payload => fast.patch(skb.header(), state),
        (false, _) => template.patch_header(skb.header(), state, pkt.len, csum),
    };
    // An error ends the call; dropping the skb frees it.
    written.map_err(|_| err(EINVAL))?;
    skb.queue();
    Ok(())
}

/// What a call did: its counters and, if it stopped early, why.
pub(crate) struct Outcome {
    /// Payload bytes sent.
    pub(crate) bytes: u64,
    /// Of those, bytes copied into linear skbs.
    pub(crate) copied: u64,
    pub(crate) packets: u64,
    pub(crate) error: Option<EntryError>,
}

impl Outcome {
    /// Counts what a batch flush sent; passes its error on.
    fn count(&mut self, flushed: crate::skb::Flushed) -> Result {
        self.packets += flushed.packets as u64;
        self.bytes += flushed.bytes;
        self.copied += flushed.copied;
        flushed.result
    }
}

/// The end of a synchronous call, after the file's lock and the call's
/// device references are dropped: the wait until the device has released
/// every packet, then the release of the call's pages.
pub(crate) struct SyncWait {
    done: CallDone,
    release: KBox<CallRelease>,
}

impl SyncWait {
    /// Waits, killably. On a fatal signal returns `EINTR` at once and the
    /// pages are released later, when the device lets go of the packets.
    pub(crate) fn wait(self) -> Result {
        self.done.wait_killable(self.release)
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
    if (req.entry_size as usize) < size_of::<MdwEntry>() {
        return Err(EINVAL);
    }
    if req.entry_size > MDW_MAX_ENTRY_SIZE {
        return Err(E2BIG);
    }
    Ok(req.quantum.max(1))
}

/// Runs one call over already copied entries, in the file's `arena`.
/// Errors found before anything was sent come back as `Err`; an error
/// after some packets left is in the `Outcome`. A synchronous call comes
/// back with the wait for its completion, which the caller runs after
/// dropping the file's lock and emptying `arena` (its device references).
#[allow(clippy::too_many_arguments)]
pub(crate) fn writev(
    net: &NetNs,
    dests: &mut DestTable,
    arena: &mut CallArena,
    bufs: &Mutex<BufTable>,
    shared: &Arc<FileShared>,
    req: &MdwWritev,
    raw: &[MdwEntry],
    quantum: u32,
    flow: u32,
) -> Result<(Outcome, Option<SyncWait>), EntryError> {
    let stats = &shared.stats;
    let is_async = req.flags & MDW_WRITE_ASYNC != 0;
    let qdisc = req.flags & MDW_WRITE_QDISC != 0;
    arena.start();
    let mut buffers = CallBuffers::default();
    let pages_needed = validate(net, dests, arena, bufs, &mut buffers, raw, qdisc)?;
    let CallArena {
        entries,
        slots,
        order,
        remaining,
        active,
        runs,
        devs,
        ..
    } = arena;
    group(entries, slots, order, remaining)?;
    let mut turns = plan(entries, slots, order, remaining, active, quantum)?;

    // An asynchronous call takes a completion slot (EAGAIN when the file's
    // queue is full). Every call charges what it pins to RLIMIT_MEMLOCK as
    // MSG_ZEROCOPY does: an asynchronous call keeps its pages past the
    // system call, and so does a synchronous one whose caller is killed
    // while its packets wait in a queue.
    let reservation = if is_async {
        Some(shared.completions.reserve().map_err(at(0))?)
    } else {
        None
    };
    let charge = match pages_needed.pinned > 0 {
        true => Some(MemlockCharge::new(pages_needed.pinned).map_err(at(0))?),
        false => None,
    };
    let call = match is_async {
        true => Some(KBox::<AsyncCall>::new_uninit(GFP_KERNEL_ACCOUNT).map_err(nomem)?),
        false => None,
    };
    let sync_release = match is_async {
        false => Some(KBox::<CallRelease>::new_uninit(GFP_KERNEL_ACCOUNT).map_err(nomem)?),
        true => None,
    };

    let mut pages = CallPages::with_capacity(pages_needed.total).map_err(nomem)?;
    translate(raw, runs, &buffers, &mut pages)?;
    drop(buffers);

    // Send. `done` is dropped (waiting for the device) before `pages`, or
    // handed the pages with the rest of an asynchronous call.
    let done = CallDone::new().map_err(nomem)?;
    let mut pool = SkbPool::new(!qdisc);
    // From here to the end of `keep` below nothing returns early: adopted
    // rings hold the call's completion until kept.
    // Each destination's skbs from its last call, header in place.
    for s in slots.iter() {
        if let (true, Some(d), Some(dev)) = (s.recycle, dests.get_mut(s.handle), devs.get(s.dev)) {
            pool.adopt(&mut d.ring, dev, &s.layout, &done);
        }
    }
    let npinned = pages.pinned() as u64;
    Stats::add(&stats.pages_pinned, npinned);
    let out = send_all(
        &mut turns,
        slots,
        dests,
        devs,
        order,
        entries,
        pages.pages(),
        &done,
        &mut pool,
        qdisc,
        flow,
    );
    // Each destination keeps the skbs the device is done with for its next
    // call and lets go of the others.
    for s in slots.iter() {
        if let (true, Some(d)) = (s.recycle, dests.get_mut(s.handle)) {
            pool.keep(&mut d.ring);
        }
    }
    Stats::add(&stats.packets, out.packets);
    Stats::add(&stats.bytes_zerocopy, out.bytes - out.copied);
    Stats::add(&stats.bytes_copied, out.copied);
    if out.packets > 0 {
        Stats::add(&stats.calls, 1);
    }
    let release = CallRelease {
        shared: shared.clone(),
        pages,
        charge,
    };
    let wait = match (call, reservation, sync_release) {
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
        (_, _, Some(sync_release)) => Some(SyncWait {
            done,
            release: KBox::write(sync_release, release),
        }),
        _ => {
            // An asynchronous call that queued nothing: nothing is in
            // flight, so the wait is immediate; its reservation goes too.
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

/// The pages a call needs in its page array.
struct PagesNeeded {
    /// Pages it pins itself (user memory), charged to `RLIMIT_MEMLOCK`.
    pinned: usize,
    /// All of them, with the registered buffers' pages it borrows.
    total: usize,
}

/// Stage 1, validation: checks every entry; gives each destination a slot
/// on its first entry (its device looked up once per call and device,
/// its prepared state checked against it); works out where each entry's
/// pages will be in the call's page array (`Run`).
fn validate(
    net: &NetNs,
    dests: &mut DestTable,
    arena: &mut CallArena,
    bufs: &Mutex<BufTable>,
    buffers: &mut CallBuffers,
    raw: &[MdwEntry],
    qdisc: bool,
) -> Result<PagesNeeded, EntryError> {
    let CallArena {
        calls,
        entries,
        slots,
        runs,
        devs,
        ..
    } = arena;
    let call = *calls;
    entries
        .reserve(raw.len(), GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    let mut total: u64 = 0;
    let mut layout = RunLayout::default();
    for (i, e) in raw.iter().enumerate() {
        let index = i as u32;
        let err = at(index);
        if i % ENTRIES_PER_YIELD == ENTRIES_PER_YIELD - 1 {
            yield_killable().map_err(&err)?;
        }
        let from_buffer = e.flags & MDW_ENTRY_BUF != 0;
        if e.flags & !KNOWN_ENTRY_FLAGS != 0 || (e.buf != 0 && !from_buffer) || e.len == 0 {
            return Err(err(EINVAL));
        }
        let end = e.addr.checked_add(e.len).ok_or(err(EFAULT))?;
        let (first_page_offset, source, first_page) = if from_buffer {
            let index = buffers.index(e.buf, bufs).map_err(&err)?;
            let buffer = buffers.get(index).ok_or(err(ENOENT))?;
            if end > buffer.len() {
                return Err(err(EFAULT));
            }
            let (first_page, offset) = buffer.locate(e.addr);
            (offset, Source::Buffer(index), first_page as u64)
        } else {
            (
                (e.addr & ((1 << PAGE_SHIFT) - 1)) as u32,
                Source::User,
                e.addr >> PAGE_SHIFT,
            )
        };
        let npages =
            pages_spanned(first_page_offset, e.len, PAGE_SHIFT as u32).map_err(|_| err(EINVAL))?;
        total = total.saturating_add(e.len);
        if total > MDW_MAX_CALL_BYTES {
            return Err(err(E2BIG));
        }
        // The entry's pages: in the open run if they continue it.
        let placed = layout
            .place(source, first_page, npages, index)
            .map_err(|_| err(EINVAL))?;
        if let Some(run) = placed.closed {
            runs.push(run, GFP_KERNEL_ACCOUNT).map_err(nomem)?;
        }
        // No truncation: a call's pages are bounded by its 1 GiB.
        let page_base = placed.page_base as usize;

        let dest = dests.get_mut(e.dest).ok_or(err(ENXIO))?;
        if e.flags & MDW_ENTRY_RTP_TS != 0 && !dest.rtp {
            return Err(err(EINVAL));
        }
        let slot = match dest.slot_in(call, slots.len() as u32) {
            Ok(slot) => slot,
            Err(slot) => {
                new_slot(net, dest, e.dest, devs, slots, qdisc, index).map_err(&err)?;
                slot
            }
        };
        let s = slots.get_mut(slot as usize).ok_or(err(EINVAL))?;
        s.count += 1;
        let rtp_ts = (e.flags & MDW_ENTRY_RTP_TS != 0).then_some(e.rtp_timestamp);
        // Cannot fail: room was reserved.
        entries
            .push(
                Entry {
                    index,
                    slot,
                    len: e.len,
                    first_page_offset,
                    page_base,
                    rtp_ts,
                },
                GFP_KERNEL_ACCOUNT,
            )
            .map_err(nomem)?;
    }
    if let Some(run) = layout.finish() {
        runs.push(run, GFP_KERNEL_ACCOUNT).map_err(nomem)?;
    }
    Ok(PagesNeeded {
        pinned: layout.pinned_pages() as usize,
        total: layout.total_pages() as usize,
    })
}

/// Gives `dest` (handle `handle`) the next slot of the call, on its device
/// (looked up once per call), with its prepared state.
#[inline(never)]
fn new_slot(
    net: &NetNs,
    dest: &mut Destination,
    handle: u32,
    devs: &mut KVec<NetDevice>,
    slots: &mut KVVec<Slot>,
    qdisc: bool,
    index: u32,
) -> Result {
    let dev = match devs
        .iter()
        .position(|d| d.info().ifindex as i32 == dest.ifindex)
    {
        Some(d) => d,
        None => {
            devs.push(net.device(dest.ifindex)?, GFP_KERNEL_ACCOUNT)?;
            devs.len() - 1
        }
    };
    let device = devs.get(dev).ok_or(EINVAL)?;
    let p = *dest.prepare(device)?;
    let recycle = p.recycle && !qdisc;
    let max_payload = dest.template.max_payload();
    let cursor = PagedCursor::new(max_payload, PAGE_SHIFT as u32).map_err(|_| EINVAL)?;
    slots.push(
        Slot {
            handle,
            csum: p.csum,
            dev,
            first: 0,
            count: 0,
            cursor,
            current: index,
            max_payload,
            layout: p.layout,
            recycle,
            linear: p.linear,
            fast: if recycle { p.fast } else { None },
        },
        GFP_KERNEL_ACCOUNT,
    )?;
    Ok(())
}

/// Stage 2: orders the entries by destination, each destination's in the
/// caller's order (`order`, `Slot::first`, `Slot::count`).
fn group(
    entries: &[Entry],
    slots: &mut [Slot],
    order: &mut KVVec<u32>,
    fill: &mut KVVec<u64>,
) -> Result<(), EntryError> {
    let mut next = 0;
    for s in slots.iter_mut() {
        s.first = next;
        next += s.count;
        fill.push(s.first as u64, GFP_KERNEL_ACCOUNT)
            .map_err(nomem)?;
    }
    order
        .extend_with(entries.len(), 0, GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    for (i, e) in entries.iter().enumerate() {
        let f = fill.get_mut(e.slot as usize).ok_or(at(e.index)(EINVAL))?;
        *order.get_mut(*f as usize).ok_or(at(e.index)(EINVAL))? = i as u32;
        *f += 1;
    }
    vec::clear(fill);
    Ok(())
}

/// Stage 3, the plan: each destination's packets, then the round-robin
/// order over them (`common::interleave`).
fn plan<'a>(
    entries: &[Entry],
    slots: &[Slot],
    order: &[u32],
    remaining: &'a mut KVVec<u64>,
    active: &'a mut KVVec<u32>,
    quantum: u32,
) -> Result<RoundRobin<'a>, EntryError> {
    for s in slots.iter() {
        let n = total_packets(&s.lens(order, entries), s.max_payload).map_err(|_| {
            let first = order.get(s.first).and_then(|&i| entries.get(i as usize));
            at(first.map_or(0, |e| e.index))(EINVAL)
        })?;
        remaining.push(n, GFP_KERNEL_ACCOUNT).map_err(nomem)?;
    }
    active
        .extend_with(slots.len(), 0, GFP_KERNEL_ACCOUNT)
        .map_err(nomem)?;
    RoundRobin::new(remaining, active, quantum).map_err(|_| at(0)(EINVAL))
}

/// Stage 4, translation: pins each run of user pages, borrows each run of
/// registered-buffer pages, in order, so that every entry's `page_base`
/// names its first page.
fn translate(
    raw: &[MdwEntry],
    runs: &[Run],
    buffers: &CallBuffers,
    pages: &mut CallPages,
) -> Result<(), EntryError> {
    for r in runs.iter() {
        let err = at(r.entry);
        yield_killable().map_err(&err)?;
        match r.source {
            Source::User => {
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
