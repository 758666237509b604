// SPDX-License-Identifier: GPL-2.0

//! Packets: building skbs around pinned pages, the call's completion, and
//! batched transmit.

use kernel::{alloc::KVec, bindings, prelude::*, types::ForeignOwnable};

use crate::{completion::AsyncCall, errno, ffi, net::NetDevice};

/// Most page fragments one packet may have (a 64 KiB payload across pages).
pub(crate) const MAX_FRAGS: usize = 17;

/// Packets handed to the driver under one TX lock.
pub(crate) const BATCH: usize = 64;

/// The completion of one call: every skb of the call holds a reference; the
/// device releasing the last one completes it (`ubuf_info` machinery).
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
}

impl Drop for CallDone {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `mdw_done_new` and is freed only here.
        unsafe { ffi::mdw_done_wait_free(self.0) };
    }
}

/// Skbs one call recycles: on devices that accept shared skbs
/// (`IFF_TX_SKB_SHARING`), the pool keeps a reference to each skb it hands
/// out, and `mdw_skb_build` rebuilds one the device has released for a
/// later packet instead of freeing and allocating (see `mdwrite_net.c`).
/// Packet `k` of the call uses slot `k % POOL`, so an skb has `POOL - 1`
/// packets' time to come back. Dropping the pool drops its references; it
/// must go before the `CallDone` that waits for the skbs.
pub(crate) struct SkbPool {
    slots: KVec<*mut bindings::sk_buff>,
    next: usize,
}

/// Slots in a call's skb pool.
pub(crate) const POOL: usize = 8 * BATCH;

impl SkbPool {
    /// An empty pool; `enabled` false never recycles (qdisc sends: the
    /// stack may modify the skbs it is given).
    pub(crate) fn new(enabled: bool) -> Result<Self> {
        let n = if enabled { POOL } else { 0 };
        Ok(Self { slots: KVec::from_elem(core::ptr::null_mut(), n, GFP_KERNEL)?, next: 0 })
    }

    /// The slot of the next packet, or null when the pool is disabled.
    #[inline(always)]
    fn next_slot(&mut self) -> *mut *mut bindings::sk_buff {
        let Some(slot) = self.slots.get_mut(self.next) else {
            return core::ptr::null_mut();
        };
        self.next = if self.next + 1 == POOL { 0 } else { self.next + 1 };
        slot
    }
}

impl Drop for SkbPool {
    fn drop(&mut self) {
        for &skb in self.slots.iter().filter(|s| !s.is_null()) {
            // SAFETY: the pool owns one reference to each skb in it.
            unsafe { ffi::mdw_skb_release(skb) };
        }
    }
}

/// One packet to build: its header bytes and the page fragments of its
/// payload.
pub(crate) struct PacketParts<'a> {
    /// Header bytes (Ethernet through UDP or RTP).
    pub(crate) header: &'a [u8],
    /// Offset of the IP header in `header`.
    pub(crate) l3_offset: usize,
    /// Offset of the UDP header in `header`.
    pub(crate) l4_offset: usize,
    /// Whether the IP header is IPv6.
    pub(crate) ipv6: bool,
    /// Whether the device completes the UDP checksum.
    pub(crate) csum_partial: bool,
    /// Payload fragments: pinned pages, offsets and lengths.
    pub(crate) frags: &'a [ffi::MdwFrag],
    /// Sum of the fragment lengths.
    pub(crate) payload_len: u32,
}

/// The native (`csum_partial`) sum of payload fragments.
pub(crate) fn payload_sum(frags: &[ffi::MdwFrag]) -> u32 {
    // SAFETY: every fragment names a pinned page range.
    unsafe { ffi::mdw_csum_frags(frags.as_ptr(), frags.len() as u32) }
}

/// Skbs built for one device, not yet handed to its driver.
pub(crate) struct TxBatch<'a> {
    dev: &'a NetDevice,
    qdisc: bool,
    skbs: [*mut bindings::sk_buff; BATCH],
    /// Payload bytes of each queued skb.
    bytes: [u32; BATCH],
    len: usize,
}

impl<'a> TxBatch<'a> {
    /// An empty batch for `dev`; `qdisc` sends through the qdisc instead of
    /// straight to the TX queue.
    pub(crate) fn new(dev: &'a NetDevice, qdisc: bool) -> Self {
        Self { dev, qdisc, skbs: [core::ptr::null_mut(); BATCH], bytes: [0; BATCH], len: 0 }
    }

    /// The device this batch sends on.
    pub(crate) fn device(&self) -> &'a NetDevice {
        self.dev
    }

    /// Whether the batch is full and must be flushed before the next push.
    pub(crate) fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// Builds one skb (header copied, payload by reference) and queues it
    /// in the batch. The batch must not be full.
    #[inline(always)]
    pub(crate) fn push(&mut self, parts: &PacketParts<'_>, done: &CallDone, pool: &mut SkbPool) -> Result {
        if self.is_full() || parts.frags.len() > MAX_FRAGS {
            return Err(EINVAL);
        }
        let pkt = ffi::MdwPkt {
            hdr: parts.header.as_ptr(),
            hdr_len: parts.header.len() as u32,
            l3_off: parts.l3_offset as u32,
            l4_off: parts.l4_offset as u32,
            payload_len: parts.payload_len,
            nfrags: parts.frags.len() as u32,
            ipv6: parts.ipv6,
            csum_partial: parts.csum_partial,
        };
        let slot = pool.next_slot();
        // SAFETY: the device is held, `pkt` and the fragments are valid for
        // the call, the fragments' pages stay pinned until `done` completes,
        // `done` is live, and `slot` is null or a slot of the call's pool.
        let skb = unsafe { ffi::mdw_skb_build(self.dev.as_ptr(), &pkt, parts.frags.as_ptr(), done.0, slot) };
        if skb.is_null() {
            return Err(ENOMEM);
        }
        self.skbs[self.len] = skb;
        self.bytes[self.len] = parts.payload_len;
        self.len += 1;
        Ok(())
    }

    /// Hands every queued skb to the device, waiting while its queue is
    /// stopped. Returns how many packets and payload bytes the device
    /// accepted: all of them unless the device went down (`ENETDOWN`), a
    /// signal arrived (`EINTR`), or the qdisc dropped some (`ENOBUFS`).
    pub(crate) fn flush(&mut self) -> (usize, u64, Result) {
        let n = self.len;
        if self.qdisc {
            // SAFETY: `skbs[..n]` are built skbs owned by the batch; the
            // helper consumes all of them.
            let mut bytes = 0u64;
            // SAFETY: as above; `bytes[..n]` are the skbs' payload sizes.
            let ok = unsafe {
                ffi::mdw_xmit_qdisc(self.skbs.as_mut_ptr(), self.bytes.as_ptr(), n as u32, &mut bytes)
            } as usize;
            self.len = 0;
            let result = if ok == n { Ok(()) } else { Err(errno::enobufs()) };
            return (ok, bytes, result);
        }
        let mut sent = 0;
        let mut result = Ok(());
        while sent < n {
            // SAFETY: `skbs[sent..n]` are built skbs owned by the batch; the
            // helper consumes the first ones it returns the count of.
            let k = unsafe {
                ffi::mdw_xmit_direct(self.dev.as_ptr(), self.skbs.as_mut_ptr().add(sent), (n - sent) as u32)
            } as usize;
            sent += k;
            if sent == n {
                break;
            }
            if let Err(e) = self.dev.wait_tx() {
                result = Err(e);
                break;
            }
            if crate::net::signal_pending() {
                result = Err(EINTR);
                break;
            }
        }
        for &skb in &self.skbs[sent..n] {
            // SAFETY: not handed to the driver, still owned by the batch.
            unsafe { ffi::mdw_skb_free(skb) };
        }
        self.len = 0;
        (sent, self.sum_bytes(sent), result)
    }

    fn sum_bytes(&self, n: usize) -> u64 {
        self.bytes[..n].iter().map(|&b| b as u64).sum()
    }
}

impl Drop for TxBatch<'_> {
    fn drop(&mut self) {
        for &skb in &self.skbs[..self.len] {
            // SAFETY: skbs still in the batch are owned by it.
            unsafe { ffi::mdw_skb_free(skb) };
        }
    }
}
