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
//!
//! This file runs the stages in order ([`writev`]) and owns the call's
//! header check, its copy-in of a repeat, the plan, translation and the
//! end of the call; the others are in the files that own them:
//! validation and revalidation in `validate.rs`, the send in `send.rs`,
//! a paced call's timing in `timing.rs`, and the state they all work on
//! (entries, slots, the file's call arena, the outcome) in `arena.rs`.

use kernel::{
    alloc::KVVec,
    page::PAGE_SHIFT,
    prelude::*,
    sync::{Arc, Mutex},
};

use crate::{
    abi::{
        MdwCompletion, MdwEntry, MdwRepeat, MdwWritev, MDW_ENTRY_BUF, MDW_ENTRY_SIZE_VER0,
        MDW_MAX_ENTRIES, MDW_MAX_ENTRY_SIZE, MDW_REPEAT_SIZE_VER0, MDW_WRITE_ASYNC,
        MDW_WRITE_KEEP_PINS, MDW_WRITE_PACE, MDW_WRITE_QDISC, MDW_WRITE_REPEAT,
    },
    arena::{at, nomem, CallArena, CallBuffers, EntryError, Outcome, Slot, SyncWait, SHAPE_FLAGS},
    buffer::BufTable,
    callpages::CallPages,
    common::{
        interleave::RoundRobin,
        runs::{self, Run, Source},
    },
    completion::{AsyncCall, CallRelease},
    dest::DestTable,
    groups::GroupTable,
    net::{yield_killable, NetNs},
    pacer::Pacer,
    pin::MemlockCharge,
    pincache::PinCache,
    records::{FileShared, Reservation},
    send::{keep_rings, send_all, send_single},
    skb::{CallDone, SkbKeep, SkbPool},
    stats::Stats,
    timing::{Pace, Unpaced},
    validate::{group, record_shape, resolve_pace, revalidate, validate, KNOWN_WRITE_FLAGS},
};

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

/// Stage 3, the plan: the round-robin order (`common::interleave`) over
/// each destination's packets, counted by validation in `remaining`.
/// `active`, the order's scratch, keeps its length from call to call
/// (its contents are the order's to write): only a call with more slots
/// than any before it grows it.
fn plan<'a>(
    slots: &[Slot],
    remaining: &'a mut KVVec<u64>,
    active: &'a mut KVVec<u32>,
    quantum: u32,
) -> Result<RoundRobin<'a>, EntryError> {
    if let Some(more) = slots.len().checked_sub(active.len()).filter(|&m| m > 0) {
        active
            .extend_with(more, 0, GFP_KERNEL_ACCOUNT)
            .map_err(nomem)?;
    }
    let active = active.get_mut(..slots.len()).ok_or(at(0)(EINVAL))?;
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
