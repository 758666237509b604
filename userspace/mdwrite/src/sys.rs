// SPDX-License-Identifier: GPL-2.0

//! The one module that issues mdwrite ioctls.

use std::{io, os::fd::AsFd};

use mdwrite_uapi::{MdwInfo, MDW_IOC_INFO};
use rustix::ioctl::{self, Getter, Opcode};

/// `MDW_IOC_INFO`: what the loaded module implements.
pub(crate) fn info(fd: impl AsFd) -> io::Result<MdwInfo> {
    // SAFETY: `MDW_IOC_INFO` is `_IOR` of `struct mdw_info`, which `MdwInfo`
    // mirrors (checked against the C header by the uapi crate's tests).
    let getter = unsafe { Getter::<{ MDW_IOC_INFO as Opcode }, MdwInfo>::new() };
    // SAFETY: the getter's opcode and output type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, getter) }?)
}
