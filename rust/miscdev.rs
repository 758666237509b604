// SPDX-License-Identifier: GPL-2.0

//! Registration of the `/dev/mdwrite` misc device.
//!
//! Linux 6.12 has no Rust abstraction for misc devices, so the `miscdevice`
//! and its `file_operations` are static C objects in `mdwrite_helpers.c`;
//! this file owns their registration.

use kernel::{error::to_result, prelude::*};

extern "C" {
    fn mdw_misc_register() -> core::ffi::c_int;
    fn mdw_misc_deregister();
}

/// The registered `/dev/mdwrite` device; deregistered on drop.
///
/// The device is a single static C object, so at most one `Registration` may
/// exist: the module creates it once in `init`.
pub(crate) struct Registration(());

impl Registration {
    /// Registers `/dev/mdwrite`; from here on `open` can be called.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the C miscdevice is static and not registered yet: the
        // only `Registration` is created once, in module init.
        to_result(unsafe { mdw_misc_register() })?;
        Ok(Self(()))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `self` proves the device is registered. Open files keep
        // the module (and so this registration) alive through fops.owner.
        unsafe { mdw_misc_deregister() };
    }
}
