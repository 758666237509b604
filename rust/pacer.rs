// SPDX-License-Identifier: GPL-2.0

//! A file's paced release on the direct path (`MDW_WRITE_PACE` without
//! `MDW_WRITE_QDISC`): the C scheduler of `mdwrite_pace.c` (an hrtimer
//! and an rbtree of skbs by departure time), owned by the file.

use core::ptr::NonNull;

use kernel::{bindings, prelude::*};

use crate::ffi;

/// The pacer of one open file; dropping it (the file's release) stops its
/// timer and drops the packets it still holds, which completes their
/// calls.
pub(crate) struct Pacer(NonNull<ffi::MdwPacer>);

// SAFETY: the C pacer is used from any thread: its queue has its own
// spinlock, its timer runs in softirq context.
unsafe impl Send for Pacer {}

// SAFETY: as above; `enqueue` takes the pacer's lock.
unsafe impl Sync for Pacer {}

impl Pacer {
    /// A pacer sending on the TX queue of `flow` of each device.
    pub(crate) fn new(flow: u32) -> Result<Self> {
        // SAFETY: allocates and initialises a pacer, or returns NULL.
        let p = unsafe { ffi::mdw_pacer_new(flow) };
        NonNull::new(p).map(Self).ok_or(ENOMEM)
    }

    /// Hands `skbs` to the pacer, each with its device set, `skbs[i]` to
    /// depart at `times[i]` (`CLOCK_MONOTONIC`); returns false, having
    /// consumed none, when their device is not running.
    ///
    /// # Safety
    ///
    /// `skbs` are built skbs owned by the caller, not yet handed to any
    /// driver, all on one device; on `true` the pacer owns them.
    pub(crate) unsafe fn enqueue(
        &self,
        skbs: &mut [*mut bindings::sk_buff],
        times: &[u64],
    ) -> bool {
        let n = skbs.len().min(times.len()) as u32;
        // SAFETY: the caller's contract; `self.0` is a live pacer, `times`
        // has at least `n` elements.
        unsafe {
            ffi::mdw_pacer_enqueue(self.0.as_ptr(), skbs.as_mut_ptr(), times.as_ptr(), n) == n
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        // SAFETY: `self.0` is the live pacer this owns; not used again.
        unsafe { ffi::mdw_pacer_free(self.0.as_ptr()) }
    }
}

/// The pacer's fault injection point for the module's life:
/// `/sys/kernel/debug/fail_mdwrite_pace` on kernels with
/// `CONFIG_FAULT_INJECTION_DEBUG_FS` (nothing elsewhere), which makes a
/// release find the device's queue stopped halfway through a burst.
pub(crate) struct PaceFaults(());

impl PaceFaults {
    pub(crate) fn new() -> Self {
        // SAFETY: called once, at module init; undone by `drop`.
        unsafe { ffi::mdw_pace_faults_init() };
        Self(())
    }
}

impl Drop for PaceFaults {
    fn drop(&mut self) {
        // SAFETY: after `new`, at module exit, when no file (so no pacer)
        // is left.
        unsafe { ffi::mdw_pace_faults_exit() }
    }
}
