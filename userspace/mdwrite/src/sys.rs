// SPDX-License-Identifier: GPL-2.0

//! The one module that issues mdwrite ioctls.

use std::{io, os::fd::AsFd};

use mdwrite_uapi::{
    MdwDest, MdwDestDel, MdwInfo, MdwStats, MdwWritev, MDW_IOC_DEST_ADD, MDW_IOC_DEST_DEL,
    MDW_IOC_INFO, MDW_IOC_STATS, MDW_IOC_WRITEV,
};
use rustix::ioctl::{self, Getter, Opcode, Setter, Updater};

/// `MDW_IOC_INFO`: what the loaded module implements.
pub(crate) fn info(fd: impl AsFd) -> io::Result<MdwInfo> {
    // SAFETY: `MDW_IOC_INFO` is `_IOR` of `struct mdw_info`, which `MdwInfo`
    // mirrors (checked against the C header by the uapi crate's tests).
    let getter = unsafe { Getter::<{ MDW_IOC_INFO as Opcode }, MdwInfo>::new() };
    // SAFETY: the getter's opcode and output type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, getter) }?)
}

/// `MDW_IOC_DEST_ADD`: registers `dest`, filling in its handle.
pub(crate) fn dest_add(fd: impl AsFd, dest: &mut MdwDest) -> io::Result<()> {
    // SAFETY: `_IOWR` of `struct mdw_dest`, mirrored by `MdwDest`.
    let updater = unsafe { Updater::<{ MDW_IOC_DEST_ADD as Opcode }, MdwDest>::new(dest) };
    // SAFETY: opcode and value type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, updater) }?)
}

/// `MDW_IOC_DEST_DEL`.
pub(crate) fn dest_del(fd: impl AsFd, handle: u32) -> io::Result<()> {
    let req = MdwDestDel { handle, flags: 0 };
    // SAFETY: `_IOW` of `struct mdw_dest_del`, mirrored by `MdwDestDel`.
    let setter = unsafe { Setter::<{ MDW_IOC_DEST_DEL as Opcode }, MdwDestDel>::new(req) };
    // SAFETY: opcode and input type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, setter) }?)
}

/// `MDW_IOC_WRITEV`. The module writes the outcome into `req` also when it
/// fails (the error and the entry it concerns).
///
/// # Safety
///
/// `req.entries` points to `req.count` valid `MdwEntry` values of
/// `req.entry_size` bytes each, whose `addr`/`len` name readable memory
/// that stays mapped for the call.
pub(crate) unsafe fn writev(fd: impl AsFd, req: &mut MdwWritev) -> io::Result<()> {
    // SAFETY: `_IOWR` of `struct mdw_writev`, mirrored by `MdwWritev`.
    let updater = unsafe { Updater::<{ MDW_IOC_WRITEV as Opcode }, MdwWritev>::new(req) };
    // SAFETY: opcode and value type match; the entries are valid per the
    // caller's contract.
    Ok(unsafe { ioctl::ioctl(fd, updater) }?)
}

/// `MDW_IOC_STATS`.
pub(crate) fn stats(fd: impl AsFd) -> io::Result<MdwStats> {
    // SAFETY: `_IOR` of `struct mdw_stats`, mirrored by `MdwStats`.
    let getter = unsafe { Getter::<{ MDW_IOC_STATS as Opcode }, MdwStats>::new() };
    // SAFETY: opcode and output type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, getter) }?)
}
