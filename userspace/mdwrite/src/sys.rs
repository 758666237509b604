// SPDX-License-Identifier: GPL-2.0

//! The one module that issues mdwrite ioctls.

use std::{io, os::fd::AsFd, time::Duration};

use mdwrite_uapi::{
    MdwBufReg, MdwBufUnreg, MdwDest, MdwDestDel, MdwEventfd, MdwGroup, MdwGroupDel, MdwInfo,
    MdwStats, MdwWritev, MDW_IOC_BUF_REGISTER, MDW_IOC_BUF_UNREGISTER, MDW_IOC_DEST_ADD,
    MDW_IOC_DEST_DEL, MDW_IOC_GROUP_DEL, MDW_IOC_GROUP_SET, MDW_IOC_INFO, MDW_IOC_SET_EVENTFD,
    MDW_IOC_STATS, MDW_IOC_WRITEV,
};
use rustix::{
    event::{poll, PollFd, PollFlags, Timespec},
    ioctl::{self, Getter, Opcode, Setter, Updater},
};

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

/// `MDW_IOC_GROUP_SET`: makes group `handle` (0: a new one) of `dests`;
/// returns its handle.
pub(crate) fn group_set(fd: impl AsFd, handle: u32, dests: &[u32]) -> io::Result<u32> {
    let mut req = MdwGroup {
        dests: dests.as_ptr() as u64,
        count: u32::try_from(dests.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        handle,
        flags: 0,
        reserved: 0,
    };
    // SAFETY: `_IOWR` of `struct mdw_group`, mirrored by `MdwGroup`.
    let updater = unsafe { Updater::<{ MDW_IOC_GROUP_SET as Opcode }, MdwGroup>::new(&mut req) };
    // SAFETY: opcode and value type match; `req.dests` names `req.count`
    // handles, which the module only reads during the call.
    unsafe { ioctl::ioctl(fd, updater) }?;
    Ok(req.handle)
}

/// `MDW_IOC_GROUP_DEL`.
pub(crate) fn group_del(fd: impl AsFd, handle: u32) -> io::Result<()> {
    let req = MdwGroupDel { handle, flags: 0 };
    // SAFETY: `_IOW` of `struct mdw_group_del`, mirrored by `MdwGroupDel`.
    let setter = unsafe { Setter::<{ MDW_IOC_GROUP_DEL as Opcode }, MdwGroupDel>::new(req) };
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

/// `MDW_IOC_BUF_REGISTER`: registers `len` bytes at `addr`, returns the id.
///
/// Safe for any range: the module pins the pages it finds there (or fails
/// with `EFAULT`), and only ever reads them.
pub(crate) fn buf_register(fd: impl AsFd, addr: u64, len: u64) -> io::Result<u32> {
    let mut req = MdwBufReg {
        addr,
        len,
        id: 0,
        flags: 0,
    };
    // SAFETY: `_IOWR` of `struct mdw_buf_reg`, mirrored by `MdwBufReg`.
    let updater =
        unsafe { Updater::<{ MDW_IOC_BUF_REGISTER as Opcode }, MdwBufReg>::new(&mut req) };
    // SAFETY: opcode and value type match, see above.
    unsafe { ioctl::ioctl(fd, updater) }?;
    Ok(req.id)
}

/// `MDW_IOC_BUF_UNREGISTER`.
pub(crate) fn buf_unregister(fd: impl AsFd, id: u32) -> io::Result<()> {
    let req = MdwBufUnreg { id, flags: 0 };
    // SAFETY: `_IOW` of `struct mdw_buf_unreg`, mirrored by `MdwBufUnreg`.
    let setter = unsafe { Setter::<{ MDW_IOC_BUF_UNREGISTER as Opcode }, MdwBufUnreg>::new(req) };
    // SAFETY: opcode and input type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, setter) }?)
}

/// `MDW_IOC_SET_EVENTFD`: `fd` -1 stops signalling.
pub(crate) fn set_eventfd(fd: impl AsFd, eventfd: i32) -> io::Result<()> {
    let req = MdwEventfd {
        fd: eventfd,
        flags: 0,
    };
    // SAFETY: `_IOW` of `struct mdw_eventfd`, mirrored by `MdwEventfd`.
    let setter = unsafe { Setter::<{ MDW_IOC_SET_EVENTFD as Opcode }, MdwEventfd>::new(req) };
    // SAFETY: opcode and input type match, see above.
    Ok(unsafe { ioctl::ioctl(fd, setter) }?)
}

/// `read()` of completion records into `buf`: blocks while asynchronous
/// calls are in flight and none is queued, returns 0 when none is in
/// flight.
pub(crate) fn read_records(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// Waits up to `timeout` (`None`: forever) for `fd` to be readable.
/// `EINTR` is returned as is.
pub(crate) fn poll_readable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<bool> {
    let ts = timeout.map(|t| Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let n = poll(&mut fds, ts.as_ref())?;
    Ok(n > 0 && fds[0].revents().intersects(PollFlags::IN))
}
