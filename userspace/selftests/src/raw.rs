// SPDX-License-Identifier: GPL-2.0

//! Raw ioctls with arbitrary numbers and pointers, to test the module's
//! handling of bad input (the library cannot express these on purpose).

use std::os::fd::{AsRawFd, BorrowedFd};

/// Issues `ioctl(fd, cmd, arg)`; returns the result or the errno.
pub(crate) fn ioctl(fd: BorrowedFd<'_>, cmd: u32, arg: usize) -> Result<i32, i32> {
    // SAFETY: the kernel validates `arg` as a user pointer; an invalid one
    // yields EFAULT. When `arg` points to memory of this process, the
    // callers own a buffer at least `_IOC_SIZE(cmd)` bytes long there.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as libc::c_ulong, arg) };
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// Names an errno for failure messages.
pub(crate) fn errno_name(e: i32) -> String {
    format!("{} ({})", std::io::Error::from_raw_os_error(e), e)
}

/// Checks that `result` failed with `want`.
pub(crate) fn expect_errno(what: &str, result: Result<i32, i32>, want: i32) -> crate::TestResult {
    match result {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!(
            "{what}: got {}, want {}",
            errno_name(e),
            errno_name(want)
        )),
        Ok(r) => Err(format!(
            "{what}: succeeded ({r}), want {}",
            errno_name(want)
        )),
    }
}
