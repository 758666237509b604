// SPDX-License-Identifier: GPL-2.0

//! Decoding of mdwrite ioctl numbers and copying of their argument structs.
//!
//! The module dispatches on type, number and direction; the size field of
//! the number is the caller's struct size, so structs can grow at their end
//! (see `uapi/mdwrite.h`).

use kernel::{
    prelude::*,
    types::AsBytes,
    uaccess::{UserPtr, UserSlice},
};

use crate::abi::{self, ioc, MdwInfo};

/// A decoded mdwrite ioctl: what to do, and the user struct it names.
pub(crate) enum Command {
    /// `MDW_IOC_INFO`.
    Info(UserStruct),
}

/// A user-space argument struct: its address and the caller's idea of its
/// size (`_IOC_SIZE` of the ioctl number).
pub(crate) struct UserStruct {
    ptr: UserPtr,
    size: usize,
}

impl Command {
    /// Decodes `cmd`; unknown or malformed numbers give `ENOTTY`.
    pub(crate) fn decode(cmd: u32, arg: UserPtr) -> Result<Self> {
        if ioc::kind(cmd) != abi::MDW_IOC_MAGIC {
            return Err(ENOTTY);
        }
        let user = |min: usize| {
            let size = ioc::size(cmd);
            if size < min {
                return Err(ENOTTY);
            }
            Ok(UserStruct { ptr: arg, size })
        };
        match (ioc::nr(cmd), ioc::dir(cmd)) {
            (abi::MDW_IOC_INFO_NR, ioc::READ) => Ok(Self::Info(user(size_of::<MdwInfo>())?)),
            _ => Err(ENOTTY),
        }
    }
}

impl UserStruct {
    /// Writes `value` to the caller's struct: the first
    /// `min(caller size, size_of::<T>())` bytes of it.
    pub(crate) fn write<T: AsBytes>(&self, value: &T) -> Result {
        let bytes = abi::bytes_of(value);
        let len = self.size.min(bytes.len());
        UserSlice::new(self.ptr, len).writer().write_slice(&bytes[..len])
    }
}
