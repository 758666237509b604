// SPDX-License-Identifier: GPL-2.0

//! The end of a call: what a call keeps until the device has released its
//! last packet, and what runs then.
//!
//! Flow: an asynchronous call (`MDW_WRITE_ASYNC`) reserves a record slot
//! (`records::Completions::reserve`), queues its packets, and hands an
//! [`AsyncCall`] to its `ubuf_info` completion (`skb::CallDone`). When the
//! device releases the last skb, `mdwrite_net.c` runs
//! [`mdw_async_complete`] from a workqueue: the call unpins, uncharges and
//! queues its record, then wakes readers. A synchronous call waits and
//! releases its [`CallRelease`] itself, unless its caller was killed while
//! waiting ([`mdw_call_release`]). Everything here runs in process context.

use kernel::{error::to_result, ffi::c_void, prelude::*, sync::Arc, types::ForeignOwnable};

use crate::{
    abi::MdwCompletion, callpages::CallPages, ffi, pin::MemlockCharge, records::FileShared,
    stats::Stats,
};

/// What an asynchronous call keeps until its last packet has left.
pub(crate) struct AsyncCall {
    pub(crate) shared: Arc<FileShared>,
    pub(crate) record: MdwCompletion,
    /// Unpinned (and buffers let go of) at completion.
    pub(crate) pages: CallPages,
    /// Returned after the pages are unpinned.
    pub(crate) charge: Option<MemlockCharge>,
}

impl AsyncCall {
    /// Releases the call's pages and charge, then queues its record: a
    /// reader that sees the record may reuse the memory and the charge.
    fn complete(self) {
        let AsyncCall {
            shared,
            record,
            pages,
            charge,
        } = self;
        let pinned = pages.pinned() as u64;
        drop(pages);
        drop(charge);
        Stats::sub(&shared.stats.pages_pinned, pinned);
        Stats::add(&shared.stats.completions, 1);
        shared.completions.complete(record);
    }
}

/// What a synchronous call holds until the device has released its last
/// packet: its pages and their `RLIMIT_MEMLOCK` charge. Released by the
/// call after its wait, or, when its caller was killed while waiting, by
/// [`mdw_call_release`] once the device lets go.
pub(crate) struct CallRelease {
    pub(crate) shared: Arc<FileShared>,
    /// Unpinned (and buffers let go of) at release.
    pub(crate) pages: CallPages,
    /// Returned after the pages are unpinned.
    pub(crate) charge: Option<MemlockCharge>,
}

impl CallRelease {
    /// Unpins, returns the charge, and counts the call's completion;
    /// returns the call's page arrays, empty, for another call.
    pub(crate) fn release(self) -> CallPages {
        let CallRelease {
            shared,
            pages,
            charge,
        } = self;
        let pinned = pages.pinned() as u64;
        let pages = pages.recycle();
        drop(charge);
        Stats::sub(&shared.stats.pages_pinned, pinned);
        Stats::add(&shared.stats.completions, 1);
        pages
    }
}

/// Releases a synchronous call whose caller was killed while it waited:
/// called once by `mdwrite_net.c` from its workqueue, after the device
/// released the call's last skb.
///
/// # Safety
///
/// `release` came from `KBox::<Option<CallRelease>>::into_foreign` in
/// `skb::CallDone::wait_killable`, which gave it up, and is passed here
/// exactly once.
#[no_mangle]
unsafe extern "C" fn mdw_call_release(release: *mut c_void) {
    // SAFETY: per the function's contract.
    let mut release = unsafe { KBox::<Option<CallRelease>>::from_foreign(release) };
    if let Some(release) = release.take() {
        release.release();
    }
}

/// Completes an asynchronous call: called once per call by `mdwrite_net.c`
/// from its workqueue, after the device released the call's last skb.
///
/// # Safety
///
/// `call` came from `KBox::<AsyncCall>::into_foreign` in
/// `skb::CallDone::finish_async` and is passed here exactly once.
#[no_mangle]
unsafe extern "C" fn mdw_async_complete(call: *mut c_void) {
    // SAFETY: per the function's contract.
    let call = unsafe { KBox::<AsyncCall>::from_foreign(call) };
    KBox::into_inner(call).complete();
}

/// The module-wide part: the completion workqueue. Dropping it (module
/// unload) waits until every asynchronous call of every (closed) file has
/// completed.
pub(crate) struct Runtime(());

impl Runtime {
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: called once, at module init.
        to_result(unsafe { ffi::mdw_async_init() })?;
        Ok(Self(()))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: `mdw_async_init` succeeded; called once, at unload.
        unsafe { ffi::mdw_async_exit() };
    }
}
