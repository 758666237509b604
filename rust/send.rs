// SPDX-License-Identifier: GPL-2.0

//! Stage 5 of `MDW_IOC_WRITEV`, the send: the call's packets in the
//! round-robin order, each cut from its destination's data
//! (`common::segment`), its header patched or built from the template,
//! its payload as page fragments, handed to the device in batches; the
//! fast way rearms a destination's recycled skb.

use core::cell::Cell;

use kernel::{page::PAGE_SHIFT, prelude::*};

use crate::{
    arena::{at, Entry, EntryError, Outcome, Slot},
    common::{
        checksum::from_native_sum,
        interleave::{Burst, RoundRobin},
        segment::{page_frags, split_two, FullPacket},
    },
    dest::{CsumMode, DestTable, Destination, Prepared},
    ffi,
    net::NetDevice,
    pacer::Pacer,
    skb::{payload_sum, PacketParts, SkbPool, TwoFrags, TxBatch, MAX_FRAGS},
    timing::{Departure, Timing},
};

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

/// Stage 5, the send: sends the call's packets in the round-robin order
/// `turns`, in batches per device. Stops at the first error, freeing what
/// is still batched.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_all<T: Timing>(
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
        // A call whose destinations have as many packets, all fitting in
        // the batch (a live call to a few destinations): each
        // destination's in a row, the order's cost once per destination,
        // each packet queued in its place in the transmit order.
        if let Some(count) = in_a_row(turns, slots, &mut to) {
            for (k, slot) in slots.iter_mut().enumerate() {
                // Never false: every run queues its `count`.
                if !to.batch.band_run(k) {
                    to.out.error = Some(at(last)(EINVAL));
                    break 'call;
                }
                if let Err(e) = send_run(slot, count, call, &mut to) {
                    to.out.error = Some(e);
                    break 'call;
                }
                last = slot.current;
            }
        }
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
                    if let Err(e) = send_turn::<T, false>(slot, &burst, call, &mut to) {
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
            if let Err(e) = send_turn::<T, false>(slot, &burst, call, &mut to) {
                to.out.error = Some(e);
                break;
            }
            last = slot.current;
        }
    }
    out.finish(&mut batch, last);
    out
}

/// Whether the call's packets can go each destination's in a row, each
/// queued in its place in the transmit order ([`send_all`],
/// [`TxBatch::begin_band`]): one packet per turn (quantum 1), every slot
/// one destination's (no fan-out) with as many packets, all on one
/// device, unpaced on the direct path (no departure times beside the
/// batch), all of them fitting in the batch. Then the order is taken whole
/// and the batch's band begun: returns the packets of each slot.
#[inline(always)]
fn in_a_row<T: Timing>(
    turns: &mut RoundRobin<'_>,
    slots: &[Slot],
    to: &mut SendTo<'_, '_, '_, T>,
) -> Option<u64> {
    let room = to.batch.room();
    if slots.len() > room || to.pacer.is_some() || to.devs.len() > 1 {
        return None;
    }
    let (count, quantum) = turns.equal_counts(room as u64)?;
    if quantum != 1
        || slots.iter().any(|s| s.fanout)
        || !to
            .batch
            .begin_band(slots.len(), usize::try_from(count).ok()?, quantum)
    {
        return None;
    }
    turns.take_all();
    Some(count)
}

/// All `count` packets of `slot` in a row, each in its place in the
/// batch's band (no flush in between: it has room for them all). The
/// usual packet (full-size, in a recycled skb: [`rearm_to`]) goes in a
/// loop with what holds for the whole run checked once: the
/// destination's fast patch, the batch recycling, the packets' size; the
/// others, and the rest of the run after one, as any turn's
/// ([`send_turn`]). Out of line: inlined, the send loop's registers cost
/// its packets more.
#[inline(never)]
fn send_run<T: Timing>(
    slot: &mut Slot,
    count: u64,
    call: u64,
    to: &mut SendTo<'_, '_, '_, T>,
) -> Result<(), EntryError> {
    slot.begin(call);
    to.timing.start(&mut slot.departures, count);
    let mut left = count;
    if to.batch.recycling() {
        let dest = to
            .dests
            .get_mut(slot.handle)
            .ok_or(at(slot.current)(EINVAL))?;
        if let Destination {
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
        } = &mut **dest
        {
            // Every full-size packet of the slot is one of the template's.
            let full = slot.cursor.max_payload() == template.max_payload();
            while full && left > 0 {
                if slot.cursor.at_entry_end() {
                    slot.enter_next(state, to.order, to.entries, to.timing)?;
                }
                let Some(pkt) = slot.cursor.peek_full::<{ PAGE_SHIFT as u32 }>() else {
                    break;
                };
                let Some(two) = two_frags(&pkt, to.pages) else {
                    break;
                };
                let departure = to.timing.peek(&slot.departures);
                let Some(mut skb) = to.batch.build_rearmed(ring, layout.hdr_len, &two, to.pool)
                else {
                    break;
                };
                // An error ends the call; dropping the skb frees it.
                fast.patch(skb.header(), state)
                    .map_err(|_| at(slot.current)(EINVAL))?;
                if let Some(d) = departure {
                    skb.set_departure(d.ns, d.tai);
                }
                skb.queue_in_band();
                to.timing.advance(&mut slot.departures);
                slot.cursor.advance(&pkt);
                left -= 1;
            }
        }
    }
    if left == 0 {
        return Ok(());
    }
    let burst = Burst {
        // Not read: `send_turn` is given the slot.
        queue: 0,
        packets: left,
        round_end: false,
        last: false,
        before: count,
    };
    send_turn::<T, true>(slot, &burst, call, to)
}

/// One turn of `slot`: its `burst.packets` next packets (of a fan-out,
/// to each of its destinations: [`send_fanout`]). At its first turn the
/// slot is readied and, after it, all of its packets are left. In a band
/// (`BAND`, [`TxBatch::begin_band`]) each packet is given its place before
/// it is queued, and the batch holds them all; else room is made in the
/// batch after each packet (flushed when full).
#[inline(always)]
fn send_turn<T: Timing, const BAND: bool>(
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
        if BAND {
            to.batch.band_next();
        }
        // A paced packet goes the fast way too, with its departure time.
        match send_fast(slot, dest, to.pages, to.batch, to.pool, to.timing) {
            Some(sent) => sent?,
            None => send_packet(
                slot, dest, to.order, to.entries, to.pages, to.frags, to.batch, to.pool, to.timing,
            )?,
        }
        if !BAND {
            make_room(to.batch, to.out, || left > 0 || !burst.last).map_err(at(slot.current))?;
        }
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
pub(crate) fn send_single(
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
pub(crate) fn make_room(
    batch: &mut TxBatch<'_>,
    out: &mut Outcome,
    more: impl FnOnce() -> bool,
) -> Result {
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
    pub(crate) dests: &'s mut DestTable,
    pub(crate) devs: &'d [NetDevice],
    pub(crate) order: &'s [u32],
    pub(crate) entries: &'s [Entry],
    pub(crate) pages: &'s [*mut kernel::bindings::page],
    pub(crate) pool: &'s mut SkbPool<'p>,
    pub(crate) batch: &'s mut TxBatch<'d>,
    pub(crate) frags: &'s mut [ffi::MdwFrag; MAX_FRAGS],
    pub(crate) out: &'s mut Outcome,
    pub(crate) qdisc: bool,
    pub(crate) flow: u32,
    pub(crate) destinations: usize,
    pub(crate) timing: T,
    pub(crate) pacer: Option<&'d Pacer>,
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

/// Stage 6, after a send that found the device still holding a packet a
/// ring keeps (`Outcome::held`): each destination of the call keeps the
/// skbs the device is done with for its next call and lets go of the
/// others, tied to the call.
/// (Out of line: inlined into `writev`, the call cost 2 more per packet
/// at 64 x 1.)
#[inline(never)]
pub(crate) fn keep_rings(
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
