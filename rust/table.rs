// SPDX-License-Identifier: GPL-2.0

//! A table of objects named by small integers (index + 1, never 0), with
//! freed names reused first, like file descriptors: the destinations and
//! the registered buffers of a file.

use kernel::{alloc::KVVec, prelude::*};

/// Up to `MAX` objects of type `T`, by name.
pub(crate) struct Table<T, const MAX: usize> {
    slots: KVVec<Option<T>>,
}

impl<T, const MAX: usize> Default for Table<T, MAX> {
    fn default() -> Self {
        Self {
            slots: KVVec::new(),
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

    /// Stores `value`; returns its name. `ENOSPC` when `MAX` are stored.
    pub(crate) fn add(&mut self, value: T) -> Result<u32> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.slots[i] = Some(value);
            return Ok(i as u32 + 1);
        }
        if self.slots.len() >= MAX {
            return Err(ENOSPC);
        }
        self.slots.push(Some(value), GFP_KERNEL_ACCOUNT)?;
        Ok(self.slots.len() as u32)
    }

    /// Takes the object `name` names out of the table; `None` when none.
    pub(crate) fn remove(&mut self, name: u32) -> Option<T> {
        self.slots.get_mut(Self::index(name)?)?.take()
    }
}
