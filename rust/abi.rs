// SPDX-License-Identifier: GPL-2.0

//! The uapi structures, compiled from the same text as userspace's mirror.

use kernel::types::{AsBytes, FromBytes};

/// Declares a uapi struct: `#[repr(C)]`, plain integer fields, no implicit
/// padding (checked at compile time), so it may be copied to and from user
/// memory byte for byte.
macro_rules! abi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Default, Debug)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        const _: () = assert!(
            core::mem::size_of::<$name>() == 0 $(+ core::mem::size_of::<$ty>())*,
            "uapi struct has implicit padding"
        );

        // SAFETY: `$name` is `repr(C)`, its fields are integers and the
        // assertion above proves it has no padding, so all its bytes are
        // initialized.
        unsafe impl kernel::types::AsBytes for $name {}

        // SAFETY: `$name` is `repr(C)` with only integer fields, for which
        // every bit pattern is valid.
        unsafe impl kernel::types::FromBytes for $name {}
    };
}

#[allow(unreachable_pub, dead_code)]
#[path = "../uapi/mdwrite.rs"]
mod uapi;

pub(crate) use uapi::*;

/// Views a uapi value as the bytes it is made of.
pub(crate) fn bytes_of<T: AsBytes>(value: &T) -> &[u8] {
    // SAFETY: `T: AsBytes` guarantees every byte of `value` is initialized;
    // the slice covers exactly `value` and borrows it.
    unsafe { core::slice::from_raw_parts(core::ptr::from_ref(value).cast::<u8>(), size_of::<T>()) }
}

/// Views uninitialised room for uapi values as uninitialised bytes, to
/// read them from user memory in one copy.
pub(crate) fn uninit_bytes_mut<T: FromBytes>(
    values: &mut [core::mem::MaybeUninit<T>],
) -> &mut [core::mem::MaybeUninit<u8>] {
    // SAFETY: the slice covers exactly the memory of `values` and borrows
    // it mutably; `MaybeUninit<u8>` has no validity requirement, and
    // `T: FromBytes` makes whatever bytes get written a valid `T`.
    unsafe {
        core::slice::from_raw_parts_mut(
            values.as_mut_ptr().cast::<core::mem::MaybeUninit<u8>>(),
            core::mem::size_of_val(values),
        )
    }
}

/// Views a uapi value as mutable bytes, to read it from user memory.
pub(crate) fn bytes_of_mut<T: AsBytes + FromBytes>(value: &mut T) -> &mut [u8] {
    // SAFETY: `T: AsBytes` makes every byte initialized and `T: FromBytes`
    // makes any byte pattern written through the slice a valid `T`; the
    // slice covers exactly `value` and borrows it mutably.
    unsafe {
        core::slice::from_raw_parts_mut(core::ptr::from_mut(value).cast::<u8>(), size_of::<T>())
    }
}
