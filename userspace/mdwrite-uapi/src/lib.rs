// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note

//! The mdwrite kernel ABI as Rust types.
//!
//! The text of the definitions is `uapi/mdwrite.rs`, shared with the kernel
//! module; this crate only adds the `zerocopy` derives that make the structs
//! safe to pass to `ioctl`. `tests/abi_probe.rs` checks every size, offset and
//! ioctl number against the C header `uapi/mdwrite.h`.

#![no_std]

/// Declares a uapi struct with the derives userspace needs.
macro_rules! abi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
        )]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

#[path = "../../../uapi/mdwrite.rs"]
mod abi;

pub use abi::*;
