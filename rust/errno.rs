// SPDX-License-Identifier: GPL-2.0

//! Errnos that Linux 6.12's `kernel::error::code` does not declare, and
//! `ERR_PTR` decoding.

use kernel::{bindings, error::Error, prelude::*};

macro_rules! errnos {
    ($($fn:ident = $name:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`.")]
        pub(crate) fn $fn() -> Error {
            Error::from_errno(-(bindings::$name as i32))
        }
    )*};
}

errnos!(
    emsgsize = EMSGSIZE,
    enetdown = ENETDOWN,
    enobufs = ENOBUFS,
    eopnotsupp = EOPNOTSUPP,
    eloop = ELOOP,
    etime = ETIME,
    enodata = ENODATA,
);

/// Turns a C pointer that may be an `ERR_PTR` (or NULL: `ENOMEM`) into a
/// `Result`.
pub(crate) fn from_err_ptr<T>(ptr: *mut T) -> Result<*mut T> {
    if ptr.is_null() {
        return Err(ENOMEM);
    }
    kernel::error::from_err_ptr(ptr)
}
