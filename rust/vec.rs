// SPDX-License-Identifier: GPL-2.0

//! What `kernel::alloc::Vec` of 6.12 lacks and the module needs: emptying
//! a vector while keeping its memory (newer kernels have `Vec::clear`),
//! taking its last element (`Vec::pop`), and an inlined push into
//! reserved room (`push_within_capacity`).

use kernel::alloc::{Allocator, Vec};

/// Drops every element of `v` and sets its length to 0; its capacity
/// stays, so refilling it up to that allocates nothing.
pub(crate) fn clear<T, A: Allocator>(v: &mut Vec<T, A>) {
    let len = v.len();
    let elems = core::ptr::slice_from_raw_parts_mut(v.as_mut_ptr(), len);
    // SAFETY: the length goes to 0 first, so a panicking `Drop` below
    // cannot lead to a double drop; `elems` are the `len` initialised
    // elements, dropped once each here and never read again.
    unsafe {
        v.set_len(0);
        core::ptr::drop_in_place(elems);
    }
}

/// Appends `value` to `v` if it has room for it, as a few inlined
/// instructions (`Vec::push` of 6.12 is an out-of-line call that may
/// allocate): for vectors reserved beforehand. `ENOMEM`, with `v`
/// unchanged, when there is no room.
#[inline(always)]
pub(crate) fn push_reserved<T, A: Allocator>(v: &mut Vec<T, A>, value: T) -> kernel::error::Result {
    let len = v.len();
    let Some(slot) = v.spare_capacity_mut().first_mut() else {
        return Err(kernel::error::code::ENOMEM);
    };
    slot.write(value);
    // SAFETY: the element at `len`, the first of the spare capacity, was
    // just initialised.
    unsafe { v.set_len(len + 1) };
    Ok(())
}

/// Removes the last element of `v` and returns it; `None` when `v` is
/// empty.
pub(crate) fn pop<T, A: Allocator>(v: &mut Vec<T, A>) -> Option<T> {
    let last = v.len().checked_sub(1)?;
    // SAFETY: `last` is in bounds; the element is read out once and the
    // length shortened right after, so it is neither dropped nor read
    // again from the vector.
    let value = unsafe { core::ptr::read(v.as_ptr().add(last)) };
    // SAFETY: `last` is below the length; the element past it was moved
    // out above.
    unsafe { v.set_len(last) };
    Some(value)
}
