// SPDX-License-Identifier: GPL-2.0

//! Decoding of mdwrite ioctl numbers and copying of their argument structs.
//!
//! The module dispatches on type, number and direction; the size field of
//! the number is the caller's struct size, so structs can grow at their end
//! (see `uapi/mdwrite.h`).

use kernel::{
    alloc::KVVec,
    bindings,
    ffi::c_void,
    prelude::*,
    types::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice},
};

use crate::abi::{
    self, ioc, MdwBufReg, MdwBufUnreg, MdwDest, MdwDestDel, MdwEventfd, MdwGroup, MdwGroupDel,
    MdwInfo, MDW_STATS_SIZE_VER0, MDW_WRITEV_SIZE_VER0,
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
    /// `MDW_IOC_GROUP_SET`.
    GroupSet(UserStruct),
    /// `MDW_IOC_GROUP_DEL`.
    GroupDel(UserStruct),
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
            (abi::MDW_IOC_GROUP_SET_NR, RW) => Ok(Self::GroupSet(user(size_of::<MdwGroup>())?)),
            (abi::MDW_IOC_GROUP_DEL_NR, ioc::WRITE) => {
                Ok(Self::GroupDel(user(size_of::<MdwGroupDel>())?))
            }
            _ => Err(ENOTTY),
        }
    }
}

/// `E2BIG` unless the `len` user bytes at `ptr` are all zero
/// (`check_zeroed_user`: word-sized reads, no copy).
fn check_zeroed(ptr: UserPtr, len: usize) -> Result {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: `check_zeroed_user` reads user memory only through the
    // uaccess routines, which fail with `-EFAULT` instead of faulting.
    match unsafe { bindings::check_zeroed_user(ptr as *const c_void, len) } {
        1 => Ok(()),
        0 => Err(E2BIG),
        e => Err(Error::from_errno(e)),
    }
}

/// Reads one struct of `size` bytes (the caller's size) at user address
/// `ptr` into a `T`: fields the caller does not know read as zero, bytes
/// the module does not know must be zero (`E2BIG`).
fn read_sized<T: FromBytes + AsBytes + Default>(ptr: UserPtr, size: usize) -> Result<T> {
    let mut value = T::default();
    let known = size.min(size_of::<T>());
    UserSlice::new(ptr, known)
        .reader()
        .read_slice(&mut abi::bytes_of_mut(&mut value)[..known])?;
    check_zeroed(ptr.checked_add(known).ok_or(EFAULT)?, size - known)?;
    Ok(value)
}

impl UserStruct {
    /// Reads the caller's struct (see [`read_sized`]).
    pub(crate) fn read<T: FromBytes + AsBytes + Default>(&self) -> Result<T> {
        read_sized(self.ptr, self.size)
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

/// Structs read between two checks for a fatal signal.
const READS_PER_YIELD: usize = 64;

/// Reads `count` structs of `size` bytes each (the caller's size) from user
/// address `ptr` into `out` (emptied first; its memory is reused), with the
/// rule of [`read_sized`] for each. The caller bounds `count` and `size`;
/// this yields and stops on a fatal signal (`EINTR`) every few structs.
/// Structs of exactly the module's size, the usual case, are copied
/// `READS_PER_YIELD` at a time.
pub(crate) fn read_array_into<T: FromBytes + AsBytes + Default>(
    out: &mut KVVec<T>,
    ptr: u64,
    count: usize,
    size: usize,
) -> Result {
    count.checked_mul(size).ok_or(EINVAL)?;
    let ptr = usize::try_from(ptr).map_err(|_| EFAULT)?;
    crate::vec::clear(out);
    out.reserve(count, GFP_KERNEL_ACCOUNT)?;
    if size == size_of::<T>() {
        let mut done = 0;
        while done < count {
            if done > 0 {
                crate::net::yield_killable()?;
            }
            let n = (count - done).min(READS_PER_YIELD);
            let at = ptr.checked_add(done * size).ok_or(EFAULT)?;
            let room = out.spare_capacity_mut().get_mut(..n).ok_or(EINVAL)?;
            UserSlice::new(at, n * size)
                .reader()
                .read_raw(abi::uninit_bytes_mut(room))?;
            // SAFETY: the `n` structs after the length were just written in
            // full, and any bytes are a valid `T` (`T: FromBytes`).
            unsafe { out.set_len(out.len() + n) };
            done += n;
        }
        return Ok(());
    }
    for i in 0..count {
        if i % READS_PER_YIELD == READS_PER_YIELD - 1 {
            crate::net::yield_killable()?;
        }
        let at = ptr.checked_add(i * size).ok_or(EFAULT)?;
        out.push(read_sized(at, size)?, GFP_KERNEL_ACCOUNT)?;
    }
    Ok(())
}
