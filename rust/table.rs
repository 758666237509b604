// SPDX-License-Identifier: GPL-2.0

//! A table of objects named by small integers (index + 1, never 0), with
//! freed names reused before new ones are made: the destinations and the
//! registered buffers of a file. Adding, finding and removing are O(1):
//! freed names wait on a stack, the most recently freed reused first.

use kernel::{alloc::KVVec, prelude::*};

use crate::vec;

/// Up to `MAX` objects of type `T`, by name.
pub(crate) struct Table<T, const MAX: usize> {
    slots: KVVec<Option<T>>,
    /// The indices of the empty `slots`. Its capacity is kept at least
    /// `slots.len()`, so that [`Table::remove`] never allocates.
    free: KVVec<u32>,
    /// Counts the objects added and removed: what a name names is the
    /// same while it is.
    generation: u64,
}

impl<T, const MAX: usize> Default for Table<T, MAX> {
    fn default() -> Self {
        Self {
            slots: KVVec::new(),
            free: KVVec::new(),
            generation: 0,
        }
    }
}

impl<T, const MAX: usize> Table<T, MAX> {
    fn index(name: u32) -> Option<usize> {
        (name as usize).checked_sub(1)
    }

    /// The object `name` names.
    pub(crate) fn get(&self, name: u32) -> Option<&T> {
        self.slots.get(Self::index(name)?)?.as_ref()
    }

    /// The object `name` names, mutably.
    pub(crate) fn get_mut(&mut self, name: u32) -> Option<&mut T> {
        self.slots.get_mut(Self::index(name)?)?.as_mut()
    }

    /// Changes whenever an object is added or removed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Stores `value`; returns its name. `ENOSPC` when `MAX` are stored.
    pub(crate) fn add(&mut self, value: T) -> Result<u32> {
        self.generation = self.generation.wrapping_add(1);
        if let Some(i) = vec::pop(&mut self.free) {
            if let Some(slot @ None) = self.slots.get_mut(i as usize) {
                *slot = Some(value);
                return Ok(i + 1);
            }
            // Never: only empty slots are on the stack.
            return Err(EINVAL);
        }
        if self.slots.len() >= MAX {
            return Err(ENOSPC);
        }
        // Room on the (empty) stack for every slot's name, this one's too.
        self.free
            .reserve(self.slots.len() + 1, GFP_KERNEL_ACCOUNT)?;
        self.slots.push(Some(value), GFP_KERNEL_ACCOUNT)?;
        Ok(self.slots.len() as u32)
    }

    /// Puts `value` in the place of the object `name` names, which it
    /// returns; `None` (and `value` dropped) when there is none.
    pub(crate) fn replace(&mut self, name: u32, value: T) -> Option<T> {
        let slot = self.slots.get_mut(Self::index(name)?)?;
        let old = slot.take()?;
        *slot = Some(value);
        self.generation = self.generation.wrapping_add(1);
        Some(old)
    }

    /// Takes the object `name` names out of the table; `None` when none.
    pub(crate) fn remove(&mut self, name: u32) -> Option<T> {
        let i = Self::index(name)?;
        let value = self.slots.get_mut(i)?.take()?;
        self.generation = self.generation.wrapping_add(1);
        // Cannot fail: the stack has room for every slot.
        let _ = vec::push_reserved(&mut self.free, i as u32);
        Some(value)
    }
}
