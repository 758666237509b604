// SPDX-License-Identifier: GPL-2.0

//! Packets: building skbs around pinned pages, the call's completion, and
//! batched transmit.

use core::{cell::Cell, mem::MaybeUninit};

use kernel::{alloc::KVec, bindings, prelude::*, types::ForeignOwnable};

use crate::{
    callpages::CallPages,
    common::{
        interleave::{for_each_sent_place, sent_before},
        recycle::{BufState, RingCursor, Step},
    },
    completion::{AsyncCall, CallRelease},
    errno, ffi,
    net::NetDevice,
    pacer::Pacer,
};

/// Most page fragments one packet may have (a 64 KiB payload across pages).
pub(crate) const MAX_FRAGS: usize = 17;

/// Most packets handed to the driver under one TX lock.
pub(crate) const BATCH: usize = 64;

/// Fewest packets handed to the driver under one TX lock, unless the call
/// has no more.
const MIN_BATCH: usize = 32;

/// The completion of one call: every skb of the call that refers to its
/// pages holds a reference (and a paced call's linear copies: see
/// [`PacketParts::hold`]); the device releasing the last one completes it
/// (`ubuf_info` machinery).
///
/// Dropping it drops the call's own reference and waits until the device
/// has released every skb, so the pages those skbs point to may be unpinned
/// afterwards: keep it declared before the `PinnedPages` it protects.
pub(crate) struct CallDone(*mut ffi::MdwDone);

impl CallDone {
    /// A new completion holding only the call's reference.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: allocation only.
        let ptr = unsafe { ffi::mdw_done_new() };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        Ok(Self(ptr))
    }

    /// Completes the call asynchronously: drops the call's reference and,
    /// once the device has released every skb, hands `call` to
    /// `completion::mdw_async_complete` (perhaps before this returns).
    pub(crate) fn finish_async(self, call: KBox<AsyncCall>) {
        let this = core::mem::ManuallyDrop::new(self);
        let call = KBox::into_foreign(call).cast_mut();
        // SAFETY: `this.0` came from `mdw_done_new` and is not used again
        // here (no `Drop`); the C side frees it after completing `call`,
        // which is a `KBox<AsyncCall>` given up to `mdw_async_complete`.
        unsafe { ffi::mdw_done_finish_async(this.0, call) };
    }

    /// A synchronous call's end: drops the call's reference and waits,
    /// killably, until the device has released every skb, then runs the
    /// release in `release`, and returns what the file's next call can
    /// use again instead of allocating: the call's page arrays, empty,
    /// this completion, new, and `release`'s box, empty. On a fatal signal
    /// returns `EINTR` at once; the release then runs from the completion
    /// workqueue once the device lets go.
    pub(crate) fn wait_killable(
        self,
        release: KBox<Option<CallRelease>>,
    ) -> Result<(CallPages, Self, KBox<Option<CallRelease>>)> {
        let this = core::mem::ManuallyDrop::new(self);
        let ptr = KBox::into_foreign(release).cast_mut();
        // SAFETY: `this.0` came from `mdw_done_new`; on -EINTR the helper
        // hands it to the workqueue (not used again here: no `Drop`), on 0
        // it is ours again, made new. `ptr` is a
        // `KBox<Option<CallRelease>>` that the helper gives back (0) or
        // passes to `completion::mdw_call_release` (-EINTR).
        if unsafe { ffi::mdw_done_wait_killable(this.0, ptr) } != 0 {
            return Err(EINTR);
        }
        // SAFETY: the helper returned 0: `ptr` is still ours, from
        // `into_foreign` above.
        let mut release = unsafe { KBox::<Option<CallRelease>>::from_foreign(ptr) };
        let done = Self(this.0);
        let pages = release.take().ok_or(EINVAL)?.release();
        Ok((pages, done, release))
    }
}

impl Drop for CallDone {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `mdw_done_new` and is freed only here.
        unsafe { ffi::mdw_done_wait_free(self.0) };
    }
}

/// The file's keep: what the skbs its destinations' rings hold stay tied
/// to, between calls too (`mdw_keep_new`), so that a call neither ties the
/// skbs it recycles to itself nor unties them after. One reference is the
/// file's; each skb tied to it holds another. A ring keeps only skbs the
/// device has let go of; one still held at the end of a call, or replaced
/// while held, is tied to the call's completion before the ring lets go
/// of it (`mdw_skb_let_go`), so the call waits for it.
pub(crate) struct SkbKeep(*mut bindings::ubuf_info);

// SAFETY: a reference count; the C side frees it with its last reference,
// from any thread.
unsafe impl Send for SkbKeep {}
// SAFETY: shared references give no access to it.
unsafe impl Sync for SkbKeep {}

impl SkbKeep {
    /// A new keep holding only the file's reference.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: allocation only.
        let ptr = unsafe { ffi::mdw_keep_new() };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        Ok(Self(ptr))
    }
}

impl Drop for SkbKeep {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `mdw_keep_new`; the file's reference,
        // dropped only here (skbs still tied to it hold their own).
        unsafe { ffi::mdw_keep_put(self.0) };
    }
}

/// Whether the device has let go of `skb`, which a ring holds: only the
/// ring's reference is left (what `mdw_skb_rearm` checks first).
#[inline(always)]
fn released(skb: *mut bindings::sk_buff) -> bool {
    // SAFETY: the ring's reference keeps `skb` live; `users` is the count
    // the device drops when it lets go (`skb_unref`), read once.
    let users = unsafe { core::ptr::addr_of!((*skb).users.refs.counter).read_volatile() };
    // Pairs with the device's release, as `smp_acquire__after_ctrl_dep`
    // does in C: nothing of the call is freed before the device is done.
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
    users == 1
}

/// A call's recycling of skbs. On devices whose driver leaves shared skbs
/// alone (see `Which devices recycle` in Documentation/design.rst) and for
/// direct sends, each destination keeps a ring of the skbs it sent (one
/// reference each), and an skb the device has released carries the
/// destination's next packet with its header left in place
/// (`mdw_skb_reuse`): only the per-packet fields are rewritten
/// (`Template::patch_header`). A ring grows only while its least recently
/// used skb is still in flight (`common::recycle`), so it ends up as large
/// as what the device holds at once, and a call that sends few packets
/// sets up nothing it does not use.
pub(crate) struct SkbPool<'d> {
    enabled: bool,
    /// How many more skbs the rings may keep in this call.
    spare: usize,
    /// The file's keep ([`SkbKeep`]), which the rings' skbs are tied to.
    keep: *mut bindings::ubuf_info,
    /// The call's number, never 0: a ring adopted by the call has it.
    call: u64,
    /// The call's completion: what the skbs no ring keeps are tied to,
    /// and what a ring adopted by the call names.
    done: &'d CallDone,
}

/// Most skbs one call's rings keep (a few hundred KiB to a few MiB of skb
/// heads); past it, an skb still in flight is replaced, not kept.
const KEPT_MAX: usize = 4096;

/// Skbs a ring has room for when it first grows.
const RING_START: usize = 4;

/// Skbs a destination keeps between calls, at most this many.
const CACHED_MAX: usize = 8;

/// The skbs one destination sent, least recently used at the cursor. A
/// destination owns its ring for its whole life (`Destination::ring`):
/// its skbs stay tied to the file's keep ([`SkbKeep`]), in a call and
/// between calls, each with the header of one of the destination's
/// packets still in place, so that its next call recycles at once
/// instead of allocating. Between calls the device holds none of them: an
/// skb still held at the end of a call goes, tied to the call
/// (`mdw_skb_let_go`, [`SkbPool::keep`], which also trims the ring to
/// `CACHED_MAX`). Dropping it frees them; a ring is only dropped between
/// calls.
///
/// A destination whose packets are copied into linear skbs (its device
/// has no scatter-gather for them) keeps a ring of those instead: they
/// refer to no page and are never tied to a call, so the ring keeps them
/// as they are, in flight or not, and one the device has released takes
/// a copy of the next payload (`mdw_skb_reuse_linear`).
pub(crate) struct SkbRing {
    skbs: KVec<*mut bindings::sk_buff>,
    cursor: RingCursor,
    /// Its skbs are linear copies (`SkbRing::set_layout`).
    linear: bool,
    /// The number of the call that adopted it last ([`SkbPool::adopt`]),
    /// 0 once that call's end has kept it ([`SkbPool::keep`]).
    call: u64,
    /// `mdw_skb_rearm`'s arguments for this destination in this call:
    /// the destination's layout ([`SkbRing::set_layout`]), the file's
    /// keep and the call's device ([`SkbPool::adopt`]).
    rearm: ffi::MdwRearm,
}

// SAFETY: the ring alone holds its references to its skbs; they may be
// released from any thread.
unsafe impl Send for SkbRing {}
// SAFETY: shared references give no access to the skbs.
unsafe impl Sync for SkbRing {}

impl Default for SkbRing {
    fn default() -> Self {
        Self {
            skbs: KVec::new(),
            cursor: RingCursor::new(),
            linear: false,
            call: 0,
            rearm: ffi::MdwRearm {
                layout: ffi::MdwLayout {
                    hdr_len: 0,
                    l3_off: 0,
                    l4_off: 0,
                    ipv6: false,
                    vlan: false,
                    csum_partial: false,
                },
                keep: core::ptr::null_mut(),
                dev: core::ptr::null(),
            },
        }
    }
}

impl SkbRing {
    /// Gives the ring its destination's `layout`, the one every skb it
    /// holds was made for, and whether they are `linear` copies: when the
    /// destination's state is worked out again
    /// (`Destination::prepare_again`), which empties the ring first.
    pub(crate) fn set_layout(&mut self, layout: &ffi::MdwLayout, linear: bool) {
        self.rearm.layout = *layout;
        self.linear = linear;
    }
}

impl Drop for SkbRing {
    fn drop(&mut self) {
        for &skb in self.skbs.iter() {
            // SAFETY: the ring owns one reference to each skb in it.
            unsafe { ffi::mdw_skb_release(skb) };
        }
    }
}

/// What [`SkbPool::take`] gives: an skb with one reference for the
/// caller.
struct Taken {
    skb: *mut bindings::sk_buff,
    /// Its header bytes are new (zeroed), not an earlier packet's.
    fresh: bool,
    /// A ring holds it, tied to the file's keep: the call's end must see
    /// the device let go of it ([`TxBatch::flush`], [`SkbPool::keep`]).
    kept: bool,
}

impl Taken {
    fn new(skb: *mut bindings::sk_buff, fresh: bool, kept: bool) -> Self {
        Self { skb, fresh, kept }
    }
}

impl<'d> SkbPool<'d> {
    /// A pool for one call whose rings' skbs are tied to the file's
    /// `keep`; `enabled` false never recycles (qdisc sends: the stack may
    /// modify the skbs it is given).
    pub(crate) fn new(enabled: bool, keep: &SkbKeep, done: &'d CallDone, call: u64) -> Self {
        Self {
            enabled,
            spare: KEPT_MAX,
            keep: keep.0,
            call,
            done,
        }
    }

    /// An skb carrying `parts`, with one reference for the caller, whether
    /// its header bytes (at `*hdr`) are new (zeroed) rather than those of
    /// the destination's earlier packet, and whether it is a packet a ring
    /// keeps, tied to the file's keep (`Taken::kept`); `ring` is the
    /// destination's.
    fn take(
        &mut self,
        dev: &NetDevice,
        parts: &PacketParts<'_>,
        hdr: &mut *mut u8,
        ring: &mut SkbRing,
    ) -> Result<Taken> {
        let done = self.done;
        // A copy that holds the call is never kept (see `SkbRing`).
        if !self.enabled || !parts.recycle || parts.hold {
            let skb = new_any_skb(dev, parts, done, None, hdr)?;
            return Ok(Taken::new(skb, true, false));
        }
        self.adopt(ring, dev);
        let Some(&skb) = ring
            .cursor
            .peek(ring.skbs.len())
            .and_then(|at| ring.skbs.get(at))
        else {
            return self.settle(dev, parts, hdr, BufState::Spoiled, ring);
        };
        let (frags, nfrags) = (parts.frags.as_ptr(), parts.frags.len() as u32);
        let reused = match parts.linear {
            // SAFETY: the ring holds a reference to `skb`, a linear copy
            // of this destination (its ring holds no other kind while its
            // packets are copied: `SkbRing::set_layout`), tied to no call;
            // `rearm` holds the call's held device (set by `adopt`), the
            // fragments are valid for the call and their pages stay pinned
            // while this copies them, and `hdr` and the sum (if any) are
            // writable.
            true => unsafe {
                ffi::mdw_skb_reuse_linear(
                    skb,
                    &ring.rearm,
                    frags,
                    nfrags,
                    parts.payload_len,
                    parts.sum.map_or(core::ptr::null_mut(), Cell::as_ptr),
                    hdr,
                )
            },
            // SAFETY: the ring holds a reference to `skb`, a packet of this
            // destination; `rearm` holds the file's keep and the call's
            // held device (set by `adopt`), the fragments are valid for the
            // call and their pages stay pinned until the call's end sees
            // the device let go of the skb (`SkbPool::keep`), and `hdr` is
            // writable.
            false => unsafe {
                ffi::mdw_skb_reuse(skb, &ring.rearm, frags, nfrags, parts.payload_len, hdr)
            },
        };
        let state = match reused {
            ffi::MDW_SKB_REUSED => BufState::Taken,
            ffi::MDW_SKB_BUSY => BufState::Busy,
            _ => BufState::Spoiled,
        };
        self.settle(dev, parts, hdr, state, ring)
    }

    /// The fast way to an skb for the destination's next packet, a payload
    /// in one page or across two: the least recently used skb of its
    /// `ring`, rearmed in one call when the device has released it. `None`
    /// when that is not so (the ring is empty, its skb busy or spoiled):
    /// [`SkbPool::take`] then does what the ring needs. Only for a batch
    /// that recycles ([`TxBatch::build_rearmed`]), as the pool does (it is
    /// off for the same sends, through the qdisc). A ring the call has not
    /// used yet is adopted first, for `dev`, the device its destination
    /// sends on in this call.
    #[inline(always)]
    fn rearm(
        &mut self,
        ring: &mut SkbRing,
        two: &TwoFrags,
        dev: &NetDevice,
    ) -> Option<(*mut bindings::sk_buff, *mut u8)> {
        self.adopt(ring, dev);
        rearm_lru(ring, two, |skb, rearm, lens| {
            // SAFETY: the ring holds a reference to `skb`, a packet of
            // this destination; the pages stay pinned until the call's end
            // sees the device let go of the skb (`SkbPool::keep`), and
            // `rearm` holds the layout, the file's keep and the call's
            // held device, set when the ring was adopted.
            unsafe { ffi::mdw_skb_rearm(skb, rearm, two.page0, two.page1, two.off, lens) }
        })
    }

    /// [`SkbPool::rearm`] for a destination whose packets are linear
    /// copies: the least recently used copy of its `ring`, when the device
    /// has released it, takes a copy of `two` behind its header, and the
    /// payload's native sum goes to `sum` if asked. `None` when that is
    /// not so: [`SkbPool::take`] then does what the ring needs. Only for a
    /// batch that recycles ([`TxBatch::build_copied`]).
    #[inline(always)]
    fn rearm_linear(
        &mut self,
        ring: &mut SkbRing,
        two: &TwoFrags,
        sum: Option<&Cell<u32>>,
        dev: &NetDevice,
    ) -> Option<(*mut bindings::sk_buff, *mut u8)> {
        if !ring.linear {
            return None;
        }
        self.adopt(ring, dev);
        let sum = sum.map_or(core::ptr::null_mut(), Cell::as_ptr);
        rearm_lru(ring, two, |skb, rearm, lens| {
            // SAFETY: the ring holds a reference to `skb`, a linear copy of
            // this destination tied to no call (its ring holds no other
            // kind: `ring.linear`); the pages stay pinned while this copies
            // them, `rearm` holds the layout and the call's held device,
            // set when the ring was adopted, and the sum (if any) is
            // writable.
            unsafe {
                ffi::mdw_skb_rearm_linear(skb, rearm, two.page0, two.page1, two.off, lens, sum)
            }
        })
    }

    /// Does what the destination's `ring` says for `state`, the answer of
    /// its least recently used skb (ignored when the ring is empty).
    #[inline(never)]
    fn settle(
        &mut self,
        dev: &NetDevice,
        parts: &PacketParts<'_>,
        hdr: &mut *mut u8,
        state: BufState,
        ring: &mut SkbRing,
    ) -> Result<Taken> {
        let done = self.done;
        let grow = self.spare > 0;
        let SkbRing {
            skbs,
            cursor,
            linear,
            ..
        } = ring;
        // A linear copy is tied to nothing: the call's end need not look
        // at it.
        let kept = !*linear;
        match cursor.step(skbs.len(), grow, state) {
            Step::Reuse(at) => Ok(Taken::new(*skbs.get(at).ok_or(EINVAL)?, false, kept)),
            Step::Insert(at) => {
                if skbs.len() == skbs.capacity() {
                    // Room for a few at once: most rings hold one to a few.
                    skbs.reserve(skbs.len().max(RING_START), GFP_KERNEL_ACCOUNT)?;
                }
                let skb = new_any_skb(dev, parts, done, Some(self.keep), hdr)?;
                // Cannot fail: room was reserved.
                let _ = skbs.push(skb, GFP_KERNEL_ACCOUNT);
                if let Some(tail) = skbs.get_mut(at..) {
                    tail.rotate_right(1);
                }
                self.spare -= 1;
                Ok(Taken::new(skb, true, kept))
            }
            Step::Replace(at) => {
                let skb = new_any_skb(dev, parts, done, Some(self.keep), hdr)?;
                if let Some(slot) = skbs.get_mut(at) {
                    let old = core::mem::replace(slot, skb);
                    // SAFETY: the ring owned one reference to `old`, which
                    // the device may still hold; `done` is the call's, live.
                    unsafe { ffi::mdw_skb_let_go(old, done.0, self.keep) };
                }
                Ok(Taken::new(skb, true, kept))
            }
            Step::Unkept => Ok(Taken::new(
                new_any_skb(dev, parts, done, None, hdr)?,
                true,
                false,
            )),
        }
    }

    /// A ring's first use in a call ([`SkbPool::take`], [`SkbPool::rearm`]):
    /// readies `ring` for this call (its completion, on `dev`). Its skbs
    /// stay tied to the file's keep. The call sees the device let
    /// go of each skb it sends: each flush looks at those it has just
    /// handed to the driver (`mdw_xmit_direct`), and if one was still
    /// held, the call's end hands every ring it adopted to
    /// [`SkbPool::keep`]. A ring adopted already by this call (a
    /// destination in several slots of it) is left as it is.
    ///
    /// Only the call's part is written: the ring's layout is its
    /// destination's ([`SkbRing::set_layout`], whenever that changes), and
    /// its cursor stays where its last call left it (the ring is in order
    /// of last use from there on).
    #[inline(always)]
    fn adopt(&mut self, ring: &mut SkbRing, dev: &NetDevice) {
        if ring.call == self.call {
            return;
        }
        ring.call = self.call;
        ring.rearm.keep = self.keep;
        ring.rearm.dev = dev.as_ptr();
    }

    /// End of a call that found the device still holding a packet a ring
    /// keeps after the flush that sent it: keeps the skbs of `ring` that
    /// the device has released (up to `CACHED_MAX`, least recently used
    /// first) for the destination's next call; lets go of the others,
    /// tied to the call (`mdw_skb_let_go`: the device may still hold its
    /// own references, and the call waits for them). A ring not adopted
    /// by the call, or kept already, is left as it is.
    #[inline(always)]
    pub(crate) fn keep(&mut self, ring: &mut SkbRing) {
        if ring.call != self.call {
            return;
        }
        ring.call = 0;
        Self::keep_ring(ring, self.done, self.keep);
    }

    /// [`SkbPool::keep`] for a ring of this call, whose completion is
    /// `done`; `keep` is the file's.
    #[inline(never)]
    fn keep_ring(ring: &mut SkbRing, done: &CallDone, keep: *mut bindings::ubuf_info) {
        let SkbRing {
            skbs,
            cursor,
            linear,
            ..
        } = ring;
        // A ring's skbs are in their order of last use from the cursor on,
        // round the ring (`common::recycle`): least recently used first.
        let len = skbs.len();
        if let Some(at) = cursor.peek(len) {
            if at != 0 {
                skbs.rotate_left(at);
            }
        }
        let mut n = 0;
        for i in 0..len {
            let skb = skbs[i];
            // A linear copy is tied to no call: kept as it is, in flight
            // or not. An skb the call did not use was released by the
            // end of its last call.
            if *linear || released(skb) {
                skbs[n] = skb;
                n += 1;
            } else {
                // SAFETY: the ring's reference to a packet of this call,
                // given up here (the device may still hold its own);
                // `done` is the call's live completion and `keep` the
                // file's.
                unsafe { ffi::mdw_skb_let_go(skb, done.0, keep) };
            }
        }
        for &skb in skbs.get(CACHED_MAX.min(n)..n).unwrap_or(&[]) {
            // SAFETY: the ring's reference, given up here; the device has
            // let go of it.
            unsafe { ffi::mdw_skb_release(skb) };
        }
        // SAFETY: `n` is at most the length; the entries from `n` on are
        // plain pointers whose references were given up or moved below
        // `n`, and those past `CACHED_MAX` were released just above.
        unsafe { skbs.set_len(n.min(CACHED_MAX)) };
        *cursor = RingCursor::new();
    }
}

/// The ring's least recently used skb given to `rearm` with the ring's
/// `mdw_skb_rearm` arguments and the lengths of `two` packed as
/// `mdw_skb_rearm` takes them; when it returns the skb's header (not
/// null), the skb is the ring's most recently used and is returned with
/// it.
#[inline(always)]
fn rearm_lru(
    ring: &mut SkbRing,
    two: &TwoFrags,
    rearm: impl FnOnce(*mut bindings::sk_buff, &ffi::MdwRearm, u32) -> *mut u8,
) -> Option<(*mut bindings::sk_buff, *mut u8)> {
    let len = ring.skbs.len();
    let at = ring.cursor.peek(len)?;
    let skb = *ring.skbs.get(at)?;
    let hdr = rearm(skb, &ring.rearm, two.lens());
    if hdr.is_null() {
        return None;
    }
    ring.cursor.reused(at, len);
    Some((skb, hdr))
}

/// A new skb carrying `parts`, with one reference for the caller and,
/// with `keep` (the file's keep, [`SkbKeep`]), one more for a ring; its
/// header bytes at `*hdr`, zeroed. The payload by reference, tied to the
/// call's `done`, or to `keep` for a ring; or copied into a linear skb
/// (`parts.linear`: a device without scatter-gather for it), which holds
/// the call's completion only if `parts.hold` says so.
fn new_any_skb(
    dev: &NetDevice,
    parts: &PacketParts<'_>,
    done: &CallDone,
    keep: Option<*mut bindings::ubuf_info>,
    hdr: &mut *mut u8,
) -> Result<*mut bindings::sk_buff> {
    let (frags, nfrags) = (parts.frags.as_ptr(), parts.frags.len() as u32);
    let skb = match parts.linear {
        // SAFETY: the device is held, the layout and fragments are valid
        // for the call and their pages stay pinned while this copies them,
        // `done` is live, and `hdr` and the sum (if any) are writable.
        true => unsafe {
            ffi::mdw_skb_new_linear(
                dev.as_ptr(),
                parts.layout,
                frags,
                nfrags,
                parts.payload_len,
                done.0,
                parts.hold,
                keep.is_some(),
                parts.sum.map_or(core::ptr::null_mut(), Cell::as_ptr),
                hdr,
            )
        },
        // SAFETY: the device is held, the layout and fragments are valid
        // for the call and their pages stay pinned until `done` completes
        // (or, for a ring's skb, until the call's end sees the device let
        // go of it: `SkbPool::keep`); `done` and `keep` (if any) are live
        // and `hdr` is writable.
        false => unsafe {
            ffi::mdw_skb_new(
                dev.as_ptr(),
                parts.layout,
                frags,
                nfrags,
                parts.payload_len,
                done.0,
                keep.unwrap_or(core::ptr::null_mut()),
                hdr,
            )
        },
    };
    if skb.is_null() {
        Err(ENOMEM)
    } else {
        Ok(skb)
    }
}

/// A payload in one page or across two, the usual packet: `len0` bytes
/// from `off` in `page0`, then `len1` bytes (0: none) from the start of
/// `page1`.
#[derive(Clone, Copy)]
pub(crate) struct TwoFrags {
    pub(crate) page0: *mut bindings::page,
    pub(crate) page1: *mut bindings::page,
    pub(crate) off: u32,
    pub(crate) len0: u16,
    pub(crate) len1: u16,
}

impl TwoFrags {
    /// The payload's length.
    #[inline(always)]
    pub(crate) fn payload_len(&self) -> u32 {
        u32::from(self.len0) + u32::from(self.len1)
    }

    /// The lengths as `mdw_skb_rearm` takes them: `len0` in the low 16
    /// bits, `len1` in the high ones.
    #[inline(always)]
    fn lens(&self) -> u32 {
        u32::from(self.len0) | u32::from(self.len1) << 16
    }
}

/// One packet to build: the layout of its destination's packets, the page
/// fragments of its payload, and where to recycle its skb.
pub(crate) struct PacketParts<'a> {
    /// Header length and offsets, and the checksum mode.
    pub(crate) layout: &'a ffi::MdwLayout,
    /// Payload fragments: pinned pages, offsets and lengths.
    pub(crate) frags: &'a [ffi::MdwFrag],
    /// Sum of the fragment lengths.
    pub(crate) payload_len: u32,
    /// Whether the skb may be recycled (handed over shared).
    pub(crate) recycle: bool,
    /// Whether the payload is copied into a linear skb.
    pub(crate) linear: bool,
    /// A linear copy holds the call's completion (a paced call: it
    /// completes when its last packet has left). Otherwise a copy refers
    /// to none of the call's pages and the call does not wait for it.
    pub(crate) hold: bool,
    /// With a linear copy: where to put the payload's native
    /// (`csum_partial`) sum, computed as it is copied, when the UDP
    /// checksum is computed in software.
    pub(crate) sum: Option<&'a Cell<u32>>,
}

/// The native (`csum_partial`) sum of payload fragments.
pub(crate) fn payload_sum(frags: &[ffi::MdwFrag]) -> u32 {
    // SAFETY: every fragment names a pinned page range.
    unsafe { ffi::mdw_csum_frags(frags.as_ptr(), frags.len() as u32) }
}

/// What one flush of a batch sent.
pub(crate) struct Flushed {
    pub(crate) packets: usize,
    /// Payload bytes sent.
    pub(crate) bytes: u64,
    /// Of those, bytes copied into linear skbs.
    pub(crate) copied: u64,
    /// The device still holds a packet that a ring keeps: the call's end
    /// must let go of it (`SkbPool::keep`).
    pub(crate) held: bool,
    pub(crate) result: Result,
}

/// Skbs built for one device, not yet handed to its driver.
///
/// (In this order, `repr(C)`: with the arrays, left uninitialised, next
/// to fields made zero, the compiler zeroed them all with them, hundreds
/// of instructions per batch.)
#[repr(C)]
pub(crate) struct TxBatch<'a> {
    /// The queued skbs, `skbs[..len]`; the rest uninitialised (a batch
    /// is made per call and per device switch: zeroing would cost an
    /// instruction per byte under `-icount`).
    skbs: [MaybeUninit<*mut bindings::sk_buff>; BATCH],
    /// Payload bytes of each queued skb.
    lens: [MaybeUninit<u32>; BATCH],
    /// With a pacer: each queued skb's departure time (`CLOCK_MONOTONIC`),
    /// handed to the pacer beside it rather than in the skb.
    times: [MaybeUninit<u64>; BATCH],
    dev: &'a NetDevice,
    qdisc: bool,
    /// A paced call on the direct path: the file's pacer releases the
    /// skbs at their departure times.
    pacer: Option<&'a Pacer>,
    /// The file's flow: picks the device's TX queue.
    flow: u32,
    /// Straight to the driver, and no packet tap on the device when the
    /// batch started: its skbs may be recycled. Through the qdisc, or with
    /// a tap, fresh skbs, which the stack may change and a tap's clone can
    /// copy.
    recycling: bool,
    /// Which queued skbs are linear copies (bit `i` for `skbs[i]`).
    linear: u64,
    /// Which queued skbs no ring keeps (not `Taken::kept`): the others,
    /// but for linear copies, are tied to the file's keep, and a flush
    /// sees whether the driver let go of them (`mdw_xmit_direct`).
    unkept: u64,
    /// Payload bytes of the queued skbs.
    bytes: u64,
    /// The queued skbs are `skbs[..len]`; in a band, until its end, the
    /// place of the skb being queued ([`TxBatch::band_next`]).
    len: usize,
    /// Packets to queue before a flush, at most `BATCH`.
    limit: usize,
    /// A band ([`TxBatch::begin_band`]), from its start until the batch
    /// holds its skbs in order again ([`TxBatch::end_band`]); the place
    /// of its next skb, and the step from a run's place to its next (the
    /// band's runs).
    band: Option<Band>,
    band_at: usize,
    band_step: usize,
}

/// Skbs queued each in its place in the call's transmit order
/// ([`TxBatch::begin_band`]): `queues` runs of `count`, one packet per
/// turn (quantum 1), so run `k`'s `j`-th skb is the `j * queues + k`-th
/// handed over.
#[derive(Clone, Copy)]
struct Band {
    queues: usize,
    count: usize,
    /// The batch's limit before the band (the band's is its size).
    limit: usize,
    /// The run being queued.
    run: usize,
}

impl<'a> TxBatch<'a> {
    /// An empty batch for `dev`; `qdisc` sends through the qdisc instead of
    /// straight to the TX queue (of the file's `flow`), `pacer` (direct
    /// path) releases its skbs at their departure times.
    #[inline(always)]
    pub(crate) fn new(
        dev: &'a NetDevice,
        qdisc: bool,
        flow: u32,
        pacer: Option<&'a Pacer>,
    ) -> Self {
        Self {
            dev,
            qdisc,
            pacer,
            flow,
            recycling: !qdisc && !dev.nit_active(),
            skbs: [MaybeUninit::uninit(); BATCH],
            lens: [MaybeUninit::uninit(); BATCH],
            times: [MaybeUninit::uninit(); BATCH],
            linear: 0,
            unkept: 0,
            bytes: 0,
            len: 0,
            limit: BATCH,
            band: None,
            band_at: 0,
            band_step: 0,
        }
    }

    /// Whether skbs queued in this batch may be recycled: it sends straight
    /// to the driver and no packet tap was active on the device when the
    /// batch started (checked again for each batch).
    #[inline(always)]
    pub(crate) fn recycling(&self) -> bool {
        self.recycling
    }

    /// Sizes the batch for a call to `destinations` destinations: one
    /// packet per destination, within `MIN_BATCH..=BATCH`. A destination's
    /// skbs are in flight from their push to the flush, so its ring grows
    /// to about `limit / destinations + 1` skbs: with few destinations, a
    /// shorter batch lets a call of few packets recycle sooner, and costs a
    /// TX lock per `MIN_BATCH` packets at most.
    pub(crate) fn limit_for(&mut self, destinations: usize) {
        self.limit = destinations.clamp(MIN_BATCH, BATCH);
    }

    /// The device this batch sends on.
    pub(crate) fn device(&self) -> &'a NetDevice {
        self.dev
    }

    /// Whether the batch is full and must be flushed before the next push.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// How many more skbs may be queued before the batch is full.
    #[inline(always)]
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    /// Starts a band in this empty batch: the next `queues * count` skbs
    /// are queued as `queues` runs of `count`, in run order (each run one
    /// destination's packets in a row: [`TxBatch::band_run`] before each,
    /// [`TxBatch::band_next`] before each skb), each in its place in the
    /// call's transmit order with `quantum`
    /// (`common::interleave::run_places`), so that a flush hands them over
    /// in that order. `false` (nothing changed) when the batch is not
    /// empty or they do not fit in it, or unless `quantum` is 1 (with a
    /// larger one the places are in run order, or not evenly spaced). No
    /// flush before they are all queued; the flush, or dropping the batch,
    /// ends the band ([`TxBatch::end_band`]). Not for a batch with a pacer
    /// (their departure times are queued in order).
    pub(crate) fn begin_band(&mut self, queues: usize, count: usize, quantum: u32) -> bool {
        let n = match queues.checked_mul(count) {
            Some(n) if n > 0 && n <= self.room() => n,
            _ => return false,
        };
        if quantum != 1 || self.len != 0 || self.band.is_some() || self.pacer.is_some() {
            return false;
        }
        self.band = Some(Band {
            queues,
            count,
            limit: self.limit,
            run: 0,
        });
        self.band_at = 0;
        self.band_step = queues;
        // Full once they are all queued: a run's skb past its `count`
        // would have a place past the band, and finds the batch full.
        self.limit = n;
        true
    }

    /// Starts run `queue` of the band: `false` unless it is the next run
    /// and the one before was given its `count` places (never: the caller
    /// then stops, and the band's end frees what it queued).
    #[inline(always)]
    pub(crate) fn band_run(&mut self, queue: usize) -> bool {
        let Some(b) = self.band.as_mut() else {
            return false;
        };
        // Run `r`'s `j`-th place is `r + j * queues` (`run_places`), so
        // past run `queue - 1`'s last is `count * queues + queue - 1`,
        // and only there.
        let end = match queue {
            0 => 0,
            _ => b.count.wrapping_mul(b.queues).wrapping_add(queue - 1),
        };
        if self.band_at != end || queue >= b.queues {
            return false;
        }
        b.run = queue;
        self.band_at = queue;
        true
    }

    /// Gives the next skb queued in the band its place; the run's next.
    /// Each skb of a band is queued right after its place is given, or
    /// not at all (the call then stops).
    #[inline(always)]
    pub(crate) fn band_next(&mut self) {
        // Where `Building::queue` writes it: the batch's end, for now.
        self.len = self.band_at;
        // No overflow: the places are below `BATCH`; one past the band
        // finds the batch full (its limit is the band's size).
        self.band_at = self.band_at.wrapping_add(self.band_step);
    }

    /// Ends the band, if any: the batch holds its skbs in `skbs[..len]`, in
    /// their places, and queues at its end again. A band ended before all
    /// its skbs were queued (the call stopped on an error; they are to be
    /// freed) has those queued moved to the batch's first places. Called
    /// by the flush and on drop.
    #[inline(always)]
    fn end_band(&mut self) {
        let Some(b) = self.band.take() else {
            return;
        };
        self.limit = b.limit;
        let n = b.queues.saturating_mul(b.count);
        // The usual end: the last run was given all its places (past its
        // last, `n - 1`, comes `n - 1 + queues`) and the last was queued.
        if b.run.wrapping_add(1) == b.queues
            && self.len == n
            && self.band_at == n.wrapping_add(b.queues).wrapping_sub(1)
        {
            return;
        }
        self.end_band_early(b, n);
    }

    /// [`TxBatch::end_band`] for a band that stopped before its end.
    #[cold]
    #[inline(never)]
    fn end_band_early(&mut self, b: Band, n: usize) {
        // The last place given holds an skb if it was queued (`queue`
        // raised the end past it).
        let last = self.band_at.wrapping_sub(b.queues);
        let filled = self.band_at > b.run && self.len == last.wrapping_add(1);
        let queued = sent_before(b.queues, b.count, b.run, self.band_at, filled);
        if queued == n {
            self.len = n;
            return;
        }
        // Runs `..run` were queued whole, run `run` up to `in_run`: moved
        // down to `[..queued]` in the order they were queued, through a
        // copy.
        let (skbs, lens) = (self.skbs, self.lens);
        let (linear, unkept) = (self.linear, self.unkept);
        self.linear = 0;
        self.unkept = 0;
        let mut i = 0usize;
        for_each_sent_place(b.queues, b.count, queued, |p| {
            if let (Some(ts), Some(tl), Some(s), Some(l)) = (
                self.skbs.get_mut(i),
                self.lens.get_mut(i),
                skbs.get(p),
                lens.get(p),
            ) {
                *ts = *s;
                *tl = *l;
                // No overflow: `i` and `p` are below `BATCH` (64).
                self.linear |= ((linear >> p) & 1) << i;
                self.unkept |= ((unkept >> p) & 1) << i;
                i += 1;
            }
        });
        self.len = i;
    }

    /// Builds one skb (payload by reference) for the batch; the caller
    /// writes its header bytes in place and queues it
    /// ([`Building::queue`]), or drops it. The batch must not be full.
    #[inline(always)]
    pub(crate) fn build<'b>(
        &'b mut self,
        parts: &PacketParts<'_>,
        pool: &mut SkbPool<'_>,
        ring: &mut SkbRing,
    ) -> Result<Building<'b, 'a>> {
        if self.is_full() || parts.frags.len() > MAX_FRAGS {
            return Err(EINVAL);
        }
        let mut hdr = core::ptr::null_mut();
        let taken = pool.take(self.dev, parts, &mut hdr, ring)?;
        Ok(Building {
            batch: self,
            skb: taken.skb,
            hdr,
            hdr_len: parts.layout.hdr_len as usize,
            fresh: taken.fresh,
            linear: parts.linear,
            kept: taken.kept,
            payload_len: parts.payload_len,
        })
    }

    /// [`TxBatch::build`]'s fast way, for a payload in one page or across
    /// two on a destination whose device accepts shared skbs: `None` when
    /// the batch does not recycle ([`TxBatch::recycling`]) or
    /// [`SkbPool::rearm`] says no (nothing was changed then). The header is
    /// that of the destination's earlier packet.
    #[inline(always)]
    pub(crate) fn build_rearmed<'b>(
        &'b mut self,
        ring: &mut SkbRing,
        hdr_len: u32,
        two: &TwoFrags,
        pool: &mut SkbPool<'_>,
    ) -> Option<Building<'b, 'a>> {
        if self.is_full() || !self.recycling {
            return None;
        }
        let (skb, hdr) = pool.rearm(ring, two, self.dev)?;
        Some(Building {
            batch: self,
            skb,
            hdr,
            hdr_len: hdr_len as usize,
            fresh: false,
            linear: false,
            kept: true,
            payload_len: two.payload_len(),
        })
    }

    /// [`TxBatch::build_rearmed`] for a destination whose packets are
    /// linear copies ([`SkbPool::rearm_linear`]); with `sum`, the
    /// payload's native sum is put there.
    #[inline(always)]
    pub(crate) fn build_copied<'b>(
        &'b mut self,
        ring: &mut SkbRing,
        hdr_len: u32,
        two: &TwoFrags,
        pool: &mut SkbPool<'_>,
        sum: Option<&Cell<u32>>,
    ) -> Option<Building<'b, 'a>> {
        if self.is_full() || !self.recycling {
            return None;
        }
        let (skb, hdr) = pool.rearm_linear(ring, two, sum, self.dev)?;
        Some(Building {
            batch: self,
            skb,
            hdr,
            hdr_len: hdr_len as usize,
            fresh: false,
            linear: true,
            kept: false,
            payload_len: two.payload_len(),
        })
    }

    /// Hands every queued skb to the device, waiting while its queue is
    /// stopped. Returns how many packets and payload bytes the device
    /// accepted: all of them unless the device went down (`ENETDOWN`), the
    /// transmit recursion limit was reached (`ELOOP`), a signal arrived
    /// (`EINTR`), or the qdisc dropped some (`ENOBUFS`).
    pub(crate) fn flush(&mut self) -> Flushed {
        self.end_band();
        let n = self.len;
        if n == 0 {
            // The usual end of a call whose last packet filled the batch
            // (flushed then): nothing to hand over, nothing to reset.
            return Flushed {
                packets: 0,
                bytes: 0,
                copied: 0,
                held: false,
                result: Ok(()),
            };
        }
        let mut sent = 0;
        let mut result = Ok(());
        if let (Some(pacer), false) = (self.pacer, self.qdisc) {
            let skbs = self
                .skbs
                .get_mut(..n)
                .map(|s| s.as_mut_ptr().cast::<*mut bindings::sk_buff>());
            let times = self.times.get(..n).map(|t| t.as_ptr().cast::<u64>());
            // SAFETY: `skbs[..n]` are built skbs owned by the batch, for
            // `self.dev`, and `times[..n]` their departure times (every
            // skb of a batch with a pacer was given one before it was
            // queued); on success the pacer owns them, else they stay the
            // batch's.
            let queued = match (skbs, times) {
                (Some(s), Some(t)) => unsafe {
                    pacer.enqueue(
                        core::slice::from_raw_parts_mut(s, n),
                        core::slice::from_raw_parts(t, n),
                    )
                },
                _ => false,
            };
            if queued {
                let flushed = Flushed {
                    packets: n,
                    bytes: self.bytes,
                    copied: self.linear_bytes(n),
                    // The pacer holds them all.
                    held: self.watched(n) != 0,
                    result: Ok(()),
                };
                self.reset();
                return flushed;
            }
            // Not running: nothing queued, the skbs freed.
            return self.give_up(0, Err(errno::enetdown()), false);
        }
        if self.qdisc {
            let mut bytes = 0u64;
            // SAFETY: `skbs[..n]` are built skbs owned by the batch and
            // `lens[..n]` their payload lengths; the helper consumes all of
            // them.
            let ok = unsafe {
                ffi::mdw_xmit_qdisc(
                    self.skbs.as_mut_ptr().cast(),
                    self.lens.as_ptr().cast(),
                    n as u32,
                    &mut bytes,
                )
            } as usize;
            let flushed = Flushed {
                packets: ok,
                bytes,
                // Every skb was consumed: count the copies of those sent
                // as if all were (a qdisc drop is reported as ENOBUFS).
                copied: self.linear_bytes(n).min(bytes),
                held: self.watched(n) != 0,
                result: if ok == n {
                    Ok(())
                } else {
                    Err(errno::enobufs())
                },
            };
            self.reset();
            return flushed;
        }
        let watched = self.watched(n);
        let mut held = false;
        while sent < n {
            let mut why = 0;
            // SAFETY: `skbs[sent..n]` are built skbs owned by the batch; the
            // helper consumes the first ones it returns the count of. Those
            // watched are held by their rings too, so they stay live.
            let k = unsafe {
                ffi::mdw_xmit_direct(
                    self.dev.as_ptr(),
                    self.skbs
                        .as_mut_ptr()
                        .cast::<*mut bindings::sk_buff>()
                        .add(sent),
                    (n - sent) as u32,
                    self.flow,
                    watched.checked_shr(sent as u32).unwrap_or(0),
                    &mut held,
                    &mut why,
                )
            } as usize;
            sent += k;
            if sent == n {
                break;
            }
            match why {
                ffi::MDW_TX_DOWN => {
                    result = Err(errno::enetdown());
                    break;
                }
                ffi::MDW_TX_LOOP => {
                    result = Err(errno::eloop());
                    break;
                }
                _ => {}
            }
            // The queue is stopped: wait for it, killably.
            if let Err(e) = self.dev.wait_tx() {
                result = Err(e);
                break;
            }
            if crate::net::signal_pending() {
                result = Err(EINTR);
                break;
            }
        }
        self.give_up(sent, result, held)
    }

    /// Which of the first `n` queued skbs a ring keeps tied to the file's
    /// keep: those whose release the end of the call must see.
    #[inline(always)]
    fn watched(&self, n: usize) -> u64 {
        let queued = match n {
            BATCH.. => u64::MAX,
            _ => (1u64 << n) - 1,
        };
        !(self.unkept | self.linear) & queued
    }

    /// Ends a flush that handed the first `sent` queued skbs to the
    /// device: frees the others and reports, with whether the device
    /// still `held` one of those a ring keeps.
    fn give_up(&mut self, sent: usize, result: Result, held: bool) -> Flushed {
        let mut bytes = self.bytes;
        let (skbs, lens) = self.queued();
        let unsent = skbs.get(sent..).unwrap_or(&[]).iter();
        for (&skb, &len) in unsent.zip(lens.get(sent..).unwrap_or(&[])) {
            bytes = bytes.saturating_sub(u64::from(len));
            // SAFETY: not handed to the driver, still owned by the batch.
            unsafe { ffi::mdw_skb_free(skb) };
        }
        let flushed = Flushed {
            packets: sent,
            bytes,
            copied: self.linear_bytes(sent),
            held,
            result,
        };
        self.reset();
        flushed
    }

    /// Payload bytes of the linear skbs among the first `n` queued.
    fn linear_bytes(&self, n: usize) -> u64 {
        if self.linear == 0 {
            return 0;
        }
        self.queued()
            .1
            .get(..n)
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.linear & (1 << i) != 0)
            .map(|(_, &len)| u64::from(len))
            .sum()
    }

    /// The queued skbs and their payload lengths.
    fn queued(&self) -> (&[*mut bindings::sk_buff], &[u32]) {
        let n = self.len.min(BATCH);
        // SAFETY: `skbs[..len]` and `lens[..len]` were written by
        // `Building::queue` (each queue writes both at `len`, then raises
        // it); `MaybeUninit<T>` has `T`'s layout.
        unsafe {
            (
                core::slice::from_raw_parts(self.skbs.as_ptr().cast(), n),
                core::slice::from_raw_parts(self.lens.as_ptr().cast(), n),
            )
        }
    }

    /// Empties the batch (its skbs were consumed or freed) and checks
    /// again for a packet tap.
    fn reset(&mut self) {
        self.len = 0;
        self.bytes = 0;
        self.linear = 0;
        self.unkept = 0;
        self.recycling = !self.qdisc && !self.dev.nit_active();
    }
}

/// An skb built for a batch, owned (one reference) until queued.
pub(crate) struct Building<'b, 'a> {
    batch: &'b mut TxBatch<'a>,
    skb: *mut bindings::sk_buff,
    /// The header bytes in the skb's linear part.
    hdr: *mut u8,
    hdr_len: usize,
    fresh: bool,
    /// A linear copy (counted in `bytes_copied`).
    linear: bool,
    /// A ring keeps it (`Taken::kept`).
    kept: bool,
    payload_len: u32,
}

impl Building<'_, '_> {
    /// Whether the header bytes are new (zeroed) rather than the header of
    /// the destination's earlier packet.
    #[inline(always)]
    pub(crate) fn fresh(&self) -> bool {
        self.fresh
    }

    /// The header bytes, to write in place.
    #[inline(always)]
    pub(crate) fn header(&mut self) -> &mut [u8] {
        // SAFETY: `hdr` points to the `hdr_len` header bytes of the skb's
        // linear part (initialised: zeroed when new, an earlier header
        // when reused). Only this call writes them while `self` lives: the
        // skb is not handed to the device yet and its head is not shared
        // (`mdw_skb_reuse` checked).
        unsafe { core::slice::from_raw_parts_mut(self.hdr, self.hdr_len) }
    }

    /// Gives the skb its departure time `ns` (on `CLOCK_TAI` with `tai`,
    /// else `CLOCK_MONOTONIC`): beside it in the batch for the pacer (the
    /// skb goes in the batch's next place), in the skb for a time-based
    /// qdisc.
    #[inline(always)]
    pub(crate) fn set_departure(&mut self, ns: u64, tai: bool) {
        let batch = &mut *self.batch;
        if batch.pacer.is_some() && !batch.qdisc {
            if let Some(t) = batch.times.get_mut(batch.len) {
                t.write(ns);
            }
            return;
        }
        // SAFETY: the skb is ours alone until queued (see `header`);
        // only its time stamp fields are written.
        unsafe { ffi::mdw_skb_set_departure(self.skb, ns, tai) }
    }

    /// [`Building::queue`] in the batch's band: in the run's next place
    /// ([`TxBatch::band_next`]). The caller queues a run's `count` at
    /// most, so the place is in the band (checked, for other callers, by
    /// the build's `is_full` after [`TxBatch::band_next`]).
    #[inline(always)]
    pub(crate) fn queue_in_band(self) {
        self.batch.band_next();
        self.queue();
    }

    /// Queues the skb in the batch.
    #[inline(always)]
    pub(crate) fn queue(self) {
        let mut this = core::mem::ManuallyDrop::new(self);
        let (skb, payload_len, linear, kept) = (this.skb, this.payload_len, this.linear, this.kept);
        let batch = &mut this.batch;
        // `build` checked that the batch has room.
        if let (Some(slot), Some(len)) =
            (batch.skbs.get_mut(batch.len), batch.lens.get_mut(batch.len))
        {
            slot.write(skb);
            len.write(payload_len);
            if linear {
                batch.linear |= 1 << batch.len;
            }
            if !kept {
                batch.unkept |= 1 << batch.len;
            }
            // No overflow: `len < BATCH`, and a call's bytes fit a u64.
            batch.len = batch.len.wrapping_add(1);
            batch.bytes = batch.bytes.wrapping_add(u64::from(payload_len));
        }
    }
}

impl Drop for Building<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: not queued, so not handed to the driver; the caller's
        // reference.
        unsafe { ffi::mdw_skb_free(self.skb) };
    }
}

impl Drop for TxBatch<'_> {
    fn drop(&mut self) {
        // A band not all queued: its skbs to `skbs[..len]`.
        self.end_band();
        for &skb in self.queued().0 {
            // SAFETY: skbs still in the batch are owned by it.
            unsafe { ffi::mdw_skb_free(skb) };
        }
    }
}
