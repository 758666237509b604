// SPDX-License-Identifier: GPL-2.0

//! Network namespaces and devices: thin owners of C references.

use kernel::{bindings, error::to_result, prelude::*};

use crate::{errno, ffi};

/// A counted reference on a network namespace (`get_net`/`put_net`).
pub(crate) struct NetNs(*mut bindings::net);

// SAFETY: a `struct net` reference may be taken and dropped on any thread.
unsafe impl Send for NetNs {}
// SAFETY: `NetNs` only hands out the pointer to functions that are safe to
// call concurrently.
unsafe impl Sync for NetNs {}

impl NetNs {
    /// The calling task's network namespace.
    pub(crate) fn current() -> Self {
        // SAFETY: a task always has a network namespace; the helper takes a
        // reference on it.
        Self(unsafe { ffi::mdw_net_get_current() })
    }

    /// Whether the opener of `file` had `CAP_NET_RAW` in the user namespace
    /// that owns this network namespace: the file's credentials
    /// (`f_cred`), not the caller's, as for a socket.
    ///
    /// # Safety
    ///
    /// `file` must point to a valid `struct file` for the whole call.
    pub(crate) unsafe fn file_capable_net_raw(&self, file: *const bindings::file) -> bool {
        // SAFETY: `self.0` is a live reference; `file` is valid per the
        // function's contract.
        unsafe { ffi::mdw_file_capable_raw(file, self.0) }
    }

    /// Looks up the device `ifindex` in this namespace and holds it;
    /// `known`: its state, if read since the last device event
    /// ([`DevEvents::now`]).
    pub(crate) fn device(
        &self,
        ifindex: i32,
        known: Option<&ffi::MdwDevInfo>,
    ) -> Result<NetDevice> {
        // SAFETY: `self.0` is a live reference.
        let ptr = unsafe { ffi::mdw_dev_get(self.0, ifindex) };
        let ptr = errno::from_err_ptr(ptr)?;
        Ok(NetDevice {
            ptr,
            // SAFETY: `ptr` is a held device.
            info: unsafe { state_of(ptr, known) },
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // SAFETY: `self.0` holds a reference taken in `current`.
        unsafe { ffi::mdw_net_put(self.0) };
    }
}

/// A held network device (`netdev_hold` with a reference tracker), with
/// what the send path needs to know about it, read once.
pub(crate) struct NetDevice {
    ptr: *mut ffi::MdwDev,
    info: ffi::MdwDevInfo,
}

/// The room a [`NetDevice`] was held in, holding none: another device can
/// be held in it without allocating ([`DevRoom::hold`]).
pub(crate) struct DevRoom(*mut ffi::MdwDev);

// SAFETY: a room is plain memory; it may be freed on any thread.
unsafe impl Send for DevRoom {}
// SAFETY: shared references give no access.
unsafe impl Sync for DevRoom {}

impl DevRoom {
    /// Holds device `ifindex` of `net` here; `ENODEV`, with the room
    /// back, when there is no such device.
    pub(crate) fn hold(
        self,
        net: &NetNs,
        ifindex: i32,
        known: Option<&ffi::MdwDevInfo>,
    ) -> core::result::Result<NetDevice, (Error, Self)> {
        // SAFETY: `self.0` came from `mdw_dev_get` and holds no device
        // (`NetDevice::into_room`); `net.0` is a live reference.
        if let Err(e) = to_result(unsafe { ffi::mdw_dev_hold(self.0, net.0, ifindex) }) {
            return Err((e, self));
        }
        let this = core::mem::ManuallyDrop::new(self);
        Ok(NetDevice {
            ptr: this.0,
            // SAFETY: `this.0` holds a device now.
            info: unsafe { state_of(this.0, known) },
        })
    }
}

/// The state of the device `d` holds: `known` when given and the device
/// is up (the carrier, which device events report late, read now), else
/// read.
///
/// # Safety
///
/// `d` must hold a device.
unsafe fn state_of(d: *mut ffi::MdwDev, known: Option<&ffi::MdwDevInfo>) -> ffi::MdwDevInfo {
    if let Some(known) = known {
        // SAFETY: `d` holds a device, per the function's contract.
        if known.up && unsafe { ffi::mdw_dev_up(d) } {
            return *known;
        }
    }
    let mut info = ffi::MdwDevInfo::default();
    // SAFETY: `d` holds a device; `info` is writable.
    unsafe { ffi::mdw_dev_info(d, &mut info) };
    info
}

/// The module's count of device events (a netdevice notifier): whatever
/// a file read of a device's state stays true while the count does not
/// move, but for the carrier.
pub(crate) struct DevEvents(());

impl DevEvents {
    /// Registers the notifier (module load).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: called once, at load; undone by `Drop`.
        to_result(unsafe { ffi::mdw_dev_events_init() })?;
        Ok(Self(()))
    }

    /// The count now. A device state read after this is at least as new.
    pub(crate) fn now() -> u64 {
        // SAFETY: reads an atomic counter; callable from any context.
        unsafe { ffi::mdw_dev_events() }
    }
}

impl Drop for DevEvents {
    fn drop(&mut self) {
        // SAFETY: `new` registered the notifier; unregistered once, here.
        unsafe { ffi::mdw_dev_events_exit() };
    }
}

impl Drop for DevRoom {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `mdw_dev_get`, holds no device, and is
        // freed only here.
        unsafe { ffi::mdw_dev_put(self.0) };
    }
}

impl NetDevice {
    /// Lets go of the device, keeping its room for another.
    pub(crate) fn into_room(self) -> DevRoom {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this.ptr` holds the device, let go of here once (no
        // `Drop` runs for `this`).
        unsafe { ffi::mdw_dev_unhold(this.ptr) };
        DevRoom(this.ptr)
    }

    /// The device's properties when it was looked up.
    pub(crate) fn info(&self) -> &ffi::MdwDevInfo {
        &self.info
    }

    /// The MAC address of the next hop for `daddr` (4 or 16 bytes), from
    /// the multicast mapping or the neighbour table. `EHOSTUNREACH` when the
    /// neighbour is not resolved yet (resolution is started).
    pub(crate) fn resolve(&self, ipv6: bool, daddr: &[u8; 16]) -> Result<[u8; 6]> {
        let mut mac = [0u8; 6];
        // SAFETY: `self.ptr` is held; `daddr` has 16 readable bytes, `mac` 6
        // writable ones.
        to_result(unsafe {
            ffi::mdw_neigh_resolve(self.ptr, ipv6, daddr.as_ptr(), mac.as_mut_ptr())
        })?;
        Ok(mac)
    }

    /// What the device does with packets of `layout` whose header is
    /// `hdr` (`netif_skb_features` of such a packet): scatter-gather and
    /// checksum offload.
    pub(crate) fn probe(&self, layout: &ffi::MdwLayout, hdr: &[u8]) -> Result<ffi::MdwDevCaps> {
        if hdr.len() != layout.hdr_len as usize {
            return Err(EINVAL);
        }
        let mut caps = ffi::MdwDevCaps::default();
        // SAFETY: `self.ptr` is held; `layout` and the `hdr_len` bytes at
        // `hdr` are readable, `caps` writable.
        to_result(unsafe { ffi::mdw_dev_probe(self.ptr, layout, hdr.as_ptr(), &mut caps) })?;
        Ok(caps)
    }

    /// Whether a packet tap (tcpdump, an `AF_PACKET` socket) sees this
    /// device's packets now.
    pub(crate) fn nit_active(&self) -> bool {
        // SAFETY: `self.ptr` is held.
        unsafe { ffi::mdw_dev_nit_active(self.ptr) }
    }

    /// The C handle, for `skb.rs`.
    pub(crate) fn as_ptr(&self) -> *const ffi::MdwDev {
        self.ptr
    }

    /// Waits a little for a stopped TX queue; `ENETDOWN` when the device
    /// went down meanwhile.
    pub(crate) fn wait_tx(&self) -> Result {
        // SAFETY: `self.ptr` is held.
        if unsafe { ffi::mdw_xmit_wait(self.ptr) } {
            Ok(())
        } else {
            Err(errno::enetdown())
        }
    }
}

impl Drop for NetDevice {
    fn drop(&mut self) {
        // SAFETY: `self.ptr` came from `mdw_dev_get` and holds the
        // reference taken there or in `DevRoom::hold`; both go here.
        unsafe { ffi::mdw_dev_put(self.ptr) };
    }
}

/// Whether the calling task has a signal pending.
pub(crate) fn signal_pending() -> bool {
    // SAFETY: reads the current task's state only.
    unsafe { ffi::mdw_signal_pending() }
}

/// Now on `CLOCK_MONOTONIC` or, with `tai`, `CLOCK_TAI`, in nanoseconds.
pub(crate) fn clock_ns(tai: bool) -> u64 {
    // SAFETY: reads the time only; callable from any context.
    unsafe { ffi::mdw_clock_ns(tai) }
}

/// A random `u32` (`get_random_u32`).
pub(crate) fn random_u32() -> u32 {
    // SAFETY: callable from any context; no arguments.
    unsafe { bindings::get_random_u32() }
}

/// Whether the calling task is being killed (`SIGKILL`).
pub(crate) fn fatal_signal_pending() -> bool {
    // SAFETY: reads the current task's state only.
    unsafe { ffi::mdw_fatal_signal_pending() }
}

/// Lets other tasks run if this one has used its share (process context).
pub(crate) fn cond_resched() {
    // SAFETY: called from process context without spinlocks held (every
    // caller is an ioctl path holding at most mutexes).
    unsafe { ffi::mdw_cond_resched() }
}

/// A long loop's check, every so many steps: yields, and stops with
/// `EINTR` when the task is being killed.
pub(crate) fn yield_killable() -> Result {
    cond_resched();
    if fatal_signal_pending() {
        return Err(EINTR);
    }
    Ok(())
}
