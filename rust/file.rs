// SPDX-License-Identifier: GPL-2.0

//! The `file_operations` entry points of `/dev/mdwrite`.
//!
//! Each trampoline turns the raw pointers it gets from the VFS into safe
//! types at once, calls a safe method of [`Client`], and converts the
//! `Result` into an errno only here.

use kernel::{
    bindings,
    ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void},
    prelude::*,
    types::ForeignOwnable,
};

use crate::{
    client::{Access, Client},
    net::NetNs,
    records::PollTable,
};

/// `FMODE_WRITE` (`include/linux/fs.h`; bindgen cannot see its `__force`
/// cast).
const FMODE_WRITE: u32 = 1 << 1;

/// The `private_data` of an open `/dev/mdwrite` file.
type ClientBox = Pin<KBox<Client>>;

/// `open` of `/dev/mdwrite`: creates the file's [`Client`].
///
/// # Safety
///
/// Called by the VFS with a valid `file` that nobody else uses yet.
#[no_mangle]
unsafe extern "C" fn mdw_fop_open(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    let net = NetNs::current();
    // SAFETY: `file` is valid per the function's contract.
    let (f_mode, net_raw) = unsafe { ((*file).f_mode, net.file_capable_net_raw(file)) };
    let access = Access {
        write: f_mode & FMODE_WRITE != 0,
        net_raw,
    };
    match Client::new(net, access) {
        Ok(client) => {
            let ptr = ClientBox::into_foreign(client);
            // SAFETY: `file` is valid per the function's contract and not yet
            // shared; `misc_open` left the miscdevice in `private_data`,
            // which mdwrite does not need.
            unsafe { (*file).private_data = ptr.cast_mut() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// `release` of `/dev/mdwrite`: drops the file's [`Client`].
///
/// # Safety
///
/// Called by the VFS once, after the last user of `file` is gone; `file`
/// was set up by [`mdw_fop_open`].
#[no_mangle]
unsafe extern "C" fn mdw_fop_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: `file` is valid per the function's contract.
    let ptr = unsafe { (*file).private_data };
    // SAFETY: `ptr` came from `into_foreign` in `mdw_fop_open`, and release
    // runs once, after every ioctl on the file has returned.
    drop(unsafe { ClientBox::from_foreign(ptr) });
    0
}

/// `unlocked_ioctl` (and, through `compat_ptr_ioctl`, `compat_ioctl`).
///
/// # Safety
///
/// Called by the VFS with a valid `file` set up by [`mdw_fop_open`] and not
/// yet released.
#[no_mangle]
unsafe extern "C" fn mdw_fop_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `file` is valid per the function's contract.
    let ptr: *const c_void = unsafe { (*file).private_data };
    // SAFETY: `ptr` came from `into_foreign` in `mdw_fop_open`, and the file
    // cannot be released while this ioctl runs.
    let client = unsafe { ClientBox::borrow(ptr) };
    match client.ioctl(cmd, arg as usize) {
        Ok(ret) => ret as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// `read`: completion records of asynchronous calls.
///
/// # Safety
///
/// Called by the VFS with a valid `file` set up by [`mdw_fop_open`] and not
/// yet released.
#[no_mangle]
unsafe extern "C" fn mdw_fop_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: `file` is valid per the function's contract.
    let (ptr, flags) = unsafe { ((*file).private_data, (*file).f_flags) };
    // SAFETY: `ptr` came from `into_foreign` in `mdw_fop_open`, and the file
    // cannot be released while this read runs.
    let client = unsafe { ClientBox::borrow(ptr) };
    let nonblock = flags & bindings::O_NONBLOCK != 0;
    match client.read(buf as usize, count, nonblock) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// `poll`.
///
/// # Safety
///
/// Called by the VFS with a valid `file` set up by [`mdw_fop_open`] and not
/// yet released, and the `poll_table` of this poll.
#[no_mangle]
unsafe extern "C" fn mdw_fop_poll(
    file: *mut bindings::file,
    pt: *mut bindings::poll_table_struct,
) -> c_uint {
    // SAFETY: `file` is valid per the function's contract.
    let ptr = unsafe { (*file).private_data };
    // SAFETY: `ptr` came from `into_foreign` in `mdw_fop_open`, and the file
    // cannot be released while this poll runs.
    let client = unsafe { ClientBox::borrow(ptr) };
    // SAFETY: `file` and `pt` are this poll's, and `table` lives only
    // during it.
    let table = unsafe { PollTable::new(file, pt) };
    client.poll(&table)
}
