// SPDX-License-Identifier: GPL-2.0

//! Decoding of mdwrite ioctl numbers and copying of their argument structs.
//!
//! The module dispatches on type, number and direction; the size field of
//! the number is the caller's struct size, so structs can grow at their end
//! (see `uapi/mdwrite.h`).

use kernel::{
    alloc::KVec,
    prelude::*,
    types::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice, UserSliceReader},
};

use crate::abi::{
    self, ioc, MdwBufReg, MdwBufUnreg, MdwDest, MdwDestDel, MdwEventfd, MdwInfo,
    MDW_STATS_SIZE_VER0, MDW_WRITEV_SIZE_VER0,
};

/// A decoded mdwrite ioctl: what to do, and the user struct it names.
pub(crate) enum Command {
    /// `MDW_IOC_INFO`.
    Info(UserStruct),
    /// `MDW_IOC_DEST_ADD`.
    DestAdd(UserStruct),
    /// `MDW_IOC_DEST_DEL`.
    DestDel(UserStruct),
    /// `MDW_IOC_WRITEV`.
    Writev(UserStruct),
    /// `MDW_IOC_STATS`.
    Stats(UserStruct),
    /// `MDW_IOC_BUF_REGISTER`.
    BufRegister(UserStruct),
    /// `MDW_IOC_BUF_UNREGISTER`.
    BufUnregister(UserStruct),
    /// `MDW_IOC_SET_EVENTFD`.
    SetEventfd(UserStruct),
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
        const RW: u32 = ioc::READ | ioc::WRITE;
        match (ioc::nr(cmd), ioc::dir(cmd)) {
            (abi::MDW_IOC_INFO_NR, ioc::READ) => Ok(Self::Info(user(size_of::<MdwInfo>())?)),
            (abi::MDW_IOC_DEST_ADD_NR, RW) => Ok(Self::DestAdd(user(size_of::<MdwDest>())?)),
            (abi::MDW_IOC_DEST_DEL_NR, ioc::WRITE) => {
                Ok(Self::DestDel(user(size_of::<MdwDestDel>())?))
            }
            (abi::MDW_IOC_WRITEV_NR, RW) => Ok(Self::Writev(user(MDW_WRITEV_SIZE_VER0)?)),
            (abi::MDW_IOC_STATS_NR, ioc::READ) => Ok(Self::Stats(user(MDW_STATS_SIZE_VER0)?)),
            (abi::MDW_IOC_BUF_REGISTER_NR, RW) => {
                Ok(Self::BufRegister(user(size_of::<MdwBufReg>())?))
            }
            (abi::MDW_IOC_BUF_UNREGISTER_NR, ioc::WRITE) => {
                Ok(Self::BufUnregister(user(size_of::<MdwBufUnreg>())?))
            }
            (abi::MDW_IOC_SET_EVENTFD_NR, ioc::WRITE) => {
                Ok(Self::SetEventfd(user(size_of::<MdwEventfd>())?))
            }
            _ => Err(ENOTTY),
        }
    }
}

/// Reads one struct of `size` bytes (the caller's size) from `reader` into
/// a `T`: fields the caller does not know read as zero, bytes the module
/// does not know must be zero (`E2BIG`).
fn read_sized<T: FromBytes + AsBytes + Default>(
    reader: &mut UserSliceReader,
    size: usize,
) -> Result<T> {
    let mut value = T::default();
    let known = size.min(size_of::<T>());
    reader.read_slice(&mut abi::bytes_of_mut(&mut value)[..known])?;
    let mut extra = size - known;
    let mut buf = [0u8; 64];
    while extra > 0 {
        let n = extra.min(buf.len());
        reader.read_slice(&mut buf[..n])?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
        extra -= n;
    }
    Ok(value)
}

impl UserStruct {
    /// Reads the caller's struct (see [`read_sized`]).
    pub(crate) fn read<T: FromBytes + AsBytes + Default>(&self) -> Result<T> {
        read_sized(&mut UserSlice::new(self.ptr, self.size).reader(), self.size)
    }

    /// Writes `value` to the caller's struct: the first
    /// `min(caller size, size_of::<T>())` bytes of it.
    pub(crate) fn write<T: AsBytes>(&self, value: &T) -> Result {
        let bytes = abi::bytes_of(value);
        let len = self.size.min(bytes.len());
        UserSlice::new(self.ptr, len)
            .writer()
            .write_slice(&bytes[..len])
    }
}

/// Reads `count` structs of `size` bytes each (the caller's size) from user
/// address `ptr`, with the rule of [`read_sized`] for each.
pub(crate) fn read_array<T: FromBytes + AsBytes + Default>(
    ptr: u64,
    count: usize,
    size: usize,
) -> Result<KVec<T>> {
    let total = count.checked_mul(size).ok_or(EINVAL)?;
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    let mut reader = UserSlice::new(ptr, total).reader();
    let mut out = KVec::with_capacity(count, GFP_KERNEL)?;
    for _ in 0..count {
        out.push(read_sized(&mut reader, size)?, GFP_KERNEL)?;
    }
    Ok(out)
}
