// SPDX-License-Identifier: GPL-2.0

//! Stage 1 of `MDW_IOC_WRITEV`, validation: every entry checked and given
//! its destination's slot and its pages' place in the call's runs; or, for
//! a call shaped like the file's last one, the quicker revalidation; then
//! the grouping of a destination's entries and a paced call's timing.

use kernel::{alloc::KVVec, page::PAGE_SHIFT, prelude::*, sync::Mutex};

use crate::{
    abi::{
        MdwEntry, MDW_ENTRY_BUF, MDW_ENTRY_GROUP, MDW_ENTRY_PACE, MDW_ENTRY_RTP_TS, MDW_ENTRY_SAME,
        MDW_MAX_CALL_BYTES, MDW_MAX_CALL_DESTS, MDW_WRITE_ASYNC, MDW_WRITE_KEEP_PINS,
        MDW_WRITE_PACE, MDW_WRITE_QDISC, MDW_WRITE_REPEAT,
    },
    arena::{
        at, nomem, CallArena, CallBuffers, Entry, EntryError, EntryShape, Slot, ENTRIES_PER_YIELD,
        FANOUT_ENTRY_FLAGS,
    },
    buffer::BufTable,
    calldevs::CallDevs,
    common::{
        group::{group_by_slot, Grouping},
        pace::{Departures, EntryPace, Window},
        runs::{Run, RunLayout, Source},
        segment::{packet_count, pages_spanned, PagedCursor},
    },
    dest::{DestTable, Destination},
    groups::GroupTable,
    net::{yield_killable, NetNs},
    timing::pace_errno,
    vec,
};

/// `MDW_WRITE_*` bits this module knows.
pub(crate) const KNOWN_WRITE_FLAGS: u32 =
    MDW_WRITE_QDISC | MDW_WRITE_ASYNC | MDW_WRITE_PACE | MDW_WRITE_REPEAT | MDW_WRITE_KEEP_PINS;
/// `MDW_ENTRY_*` bits this module knows.
const KNOWN_ENTRY_FLAGS: u32 =
    MDW_ENTRY_RTP_TS | MDW_ENTRY_BUF | MDW_ENTRY_SAME | MDW_ENTRY_PACE | MDW_ENTRY_GROUP;

/// The pages a call needs in its page array.
pub(crate) struct PagesNeeded {
    /// Pages it pins itself (user memory), charged to `RLIMIT_MEMLOCK`.
    pub(crate) pinned: usize,
    /// All of them, with the registered buffers' pages it borrows.
    pub(crate) total: usize,
}

/// What validation found out about a call.
pub(crate) struct Checked {
    pub(crate) pages: PagesNeeded,
    /// Each destination's entries came one after the other: `order` is
    /// the identity and each slot's `first` is right, so there is nothing
    /// to group.
    pub(crate) grouped: bool,
    /// Some entry has its own timing (`MDW_ENTRY_PACE`).
    pub(crate) own_timing: bool,
    /// Every slot is one destination's one packet ([`Shape::single`]):
    /// the plan was not made (`remaining` is empty).
    pub(crate) single: bool,
    /// The entries its groups added ([`Shape::members`]).
    pub(crate) members: usize,
    /// Its destinations, each of a fan-out's counted ([`Shape::destinations`]).
    pub(crate) destinations: usize,
}

/// Stage 1, validation: checks every entry; gives each destination a slot
/// on its first entry (its device looked up once per call and device,
/// its prepared state checked against it); counts each destination's
/// packets (in `remaining`, the plan) and works out where each entry's
/// pages will be in the call's page array (`Run`).
pub(crate) fn validate(
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
    pub(crate) pace: Option<EntryPace>,
    /// The offset of its first byte in its first page.
    pub(crate) offset: u32,
    pub(crate) source: Source,
    /// Its first page's number (of user memory or of the buffer).
    pub(crate) first_page: u64,
    /// The pages it spans.
    pub(crate) pages: u64,
}

impl Located {
    /// Checks `e`'s timing (`paced`: the call is) and address, and finds
    /// its pages.
    #[inline(always)]
    pub(crate) fn of(
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
pub(crate) fn revalidate(
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
pub(crate) fn record_shape(
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
    // The registered buffer of the last entry in one: its id, and its
    // index in the call's buffers, length and first byte's page offset.
    let mut last_buf: Option<(u32, (usize, u64, u32))> = None;
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
            // `Located::of` for a registered buffer's slice, in its order:
            // no MDW_ENTRY_PACE (its flags are `want`'s), so untimed.
            if !KNOWN && (e.pace_offset != 0 || e.pace_gap != 0) {
                return Err(at(index)(EINVAL));
            }
            let Some(end) = e.addr.checked_add(e.len) else {
                return Err(at(index)(EFAULT));
            };
            // The buffer of the entry before, the usual case, as found.
            let (source, len, start) = match last_buf {
                Some((id, found)) if id == e.buf => found,
                _ => {
                    let source = buffers.index(e.buf, bufs).map_err(at(index))?;
                    let Some(buffer) = buffers.get(source) else {
                        return Err(at(index)(ENOENT));
                    };
                    let found = (source, buffer.len(), buffer.start());
                    last_buf = Some((e.buf, found));
                    found
                }
            };
            if end > len {
                return Err(at(index)(EFAULT));
            }
            // `RegisteredBuffer::locate`. No overflow: `addr < len`,
            // which a buffer's bound keeps far below `u64::MAX`.
            let at_byte = u64::from(start).wrapping_add(e.addr);
            let offset = (at_byte & ((1 << PAGE_SHIFT) - 1)) as u32;
            Located {
                pace: None,
                offset,
                source: Source::Buffer(source),
                first_page: at_byte >> PAGE_SHIFT,
                pages: pages_spanned(offset, e.len, PAGE_SHIFT as u32)
                    .map_err(|_| at(index)(EINVAL))?,
            }
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
    pub(crate) net: &'a NetNs,
    pub(crate) dests: &'a mut DestTable,
    pub(crate) devs: &'a mut CallDevs,
    pub(crate) slots: &'a mut KVVec<Slot>,
    pub(crate) remaining: &'a mut KVVec<u64>,
}

impl FanOutTo<'_> {
    /// Checks `e`, entry `index`, an `MDW_ENTRY_SAME` entry after `before`
    /// (`EINVAL` without one, or with data of its own), and adds its
    /// destination to `before`'s fan-out: the fan-out's packets shrink to
    /// the destination's payload if it is smaller. Returns its entry.
    #[inline(never)]
    pub(crate) fn add(self, e: &MdwEntry, index: u32, before: Option<&Entry>) -> Result<Entry> {
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

/// Stage 2, only when a destination's entries are not one after the
/// other (`common::group`): orders the entries by destination, each
/// destination's in the caller's order (`order`, `Slot::first`,
/// `Slot::count`); `fill` is scratch space.
#[cold]
pub(crate) fn group(
    entries: &[Entry],
    slots: &mut [Slot],
    order: &mut [u32],
    fill: &mut KVVec<u32>,
) -> Result<(), EntryError> {
    // Zeroed: the plan's scratch keeps its length between calls.
    vec::clear(fill);
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
pub(crate) fn resolve_pace(
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
