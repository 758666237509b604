// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note

//! Rust mirror of `uapi/mdwrite.h`, compiled by both the kernel module and the
//! userspace `mdwrite-uapi` crate.
//!
//! The including crate defines `abi_struct!`, which wraps each struct in the
//! derives it needs (`#[repr(C)]` always; `zerocopy` traits in userspace), so
//! one text serves both sides. A C probe test checks every size, offset and
//! ioctl number here against the header.

/// Version of this ABI; raised on incompatible changes only.
pub const MDW_ABI_VERSION: u32 = 1;

/// ioctl type byte of every mdwrite ioctl.
pub const MDW_IOC_MAGIC: u32 = 0xB9;

abi_struct! {
    /// What the loaded module implements (`MDW_IOC_INFO`).
    pub struct MdwInfo {
        /// `MDW_ABI_VERSION` of the module.
        pub abi_version: u32,
        /// `size_of::<MdwInfo>()` as the module knows it.
        pub info_size: u32,
        /// `MDW_FEAT_*` bits the module supports.
        pub features: u64,
    }
}

/// ioctl direction bits, as in `include/uapi/asm-generic/ioctl.h`.
pub mod ioc {
    /// No data transfer.
    pub const NONE: u32 = 0;
    /// Userspace writes, the kernel reads.
    pub const WRITE: u32 = 1;
    /// The kernel writes, userspace reads.
    pub const READ: u32 = 2;

    /// Encodes an ioctl number like the C `_IOC()` macro.
    pub const fn encode(dir: u32, nr: u32, size: usize) -> u32 {
        (dir << 30) | ((size as u32) << 16) | (super::MDW_IOC_MAGIC << 8) | nr
    }
    /// Direction bits of an ioctl number.
    pub const fn dir(cmd: u32) -> u32 {
        cmd >> 30
    }
    /// Type byte of an ioctl number.
    pub const fn kind(cmd: u32) -> u32 {
        (cmd >> 8) & 0xff
    }
    /// Sequence number of an ioctl number.
    pub const fn nr(cmd: u32) -> u32 {
        cmd & 0xff
    }
    /// Argument size encoded in an ioctl number.
    pub const fn size(cmd: u32) -> usize {
        ((cmd >> 16) & 0x3fff) as usize
    }
}

/// Sequence number of `MDW_IOC_INFO`.
pub const MDW_IOC_INFO_NR: u32 = 0x00;
/// `_IOR(MDW_IOC_MAGIC, 0x00, struct mdw_info)`.
pub const MDW_IOC_INFO: u32 =
    ioc::encode(ioc::READ, MDW_IOC_INFO_NR, core::mem::size_of::<MdwInfo>());
