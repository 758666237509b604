// SPDX-License-Identifier: GPL-2.0

//! Grouping a call's entries by destination.
//!
//! A call's destinations get slots in order of their first entry. The send
//! loop walks each slot's entries in the caller's order, as a range of one
//! array (`order`) of entry indices grouped by slot. Callers almost always
//! list a destination's entries one after the other (most often one entry
//! per destination): then `order` is the entries' own order and nothing
//! needs sorting, which [`Grouping`] finds out entry by entry; otherwise
//! [`group_by_slot`] sorts them, stably, in linear time.

/// Whether a call's entries so far came grouped by slot: each slot's
/// entries one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// No entry so far came after another slot's entries than its own.
    grouped: bool,
}

impl Default for Grouping {
    fn default() -> Self {
        Self::new()
    }
}

impl Grouping {
    /// Returns the state before the first entry.
    pub const fn new() -> Self {
        Self { grouped: true }
    }

    /// Records the next entry, of slot `slot`, when the call has `slots`
    /// slots (counting the entry's own, if the entry created it: slots are
    /// created in order of first entry).
    #[inline(always)]
    pub fn entry(&mut self, slot: usize, slots: usize) {
        // The newest slot's entries are all those since its first: any
        // other slot's entry comes after someone else's.
        self.grouped &= slot.checked_add(1) == Some(slots);
    }

    /// Returns whether the entries so far came grouped by slot.
    pub fn grouped(&self) -> bool {
        self.grouped
    }
}

/// Why entries could not be grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// An entry names a slot past the slots given.
    BadSlot,
    /// The arrays are too short for the entries, or the slots' counts do
    /// not add up to the number of entries.
    BadCounts,
}

/// A call's slots as [`group_by_slot`] sees them: how many entries each
/// has, and where its range of the grouped order starts.
pub trait SlotRanges {
    /// Returns the number of slots.
    fn slots(&self) -> usize;
    /// Returns the number of entries of slot `slot`, below [`SlotRanges::slots`].
    fn count(&self, slot: usize) -> usize;
    /// Sets where the entries of slot `slot` start in the grouped order.
    fn set_first(&mut self, slot: usize, first: usize);
}

/// Sorts the entries by slot, stably: `slot_of(i)` is entry `i`'s slot
/// for `i` in `0..order.len()`. Sets each slot's first position in
/// `order` and writes the entry indices to `order`, slot after slot, each
/// slot's in entry order; `fill` is scratch space of a position per slot.
/// Fails, with `order` in no particular state, when an entry's slot is
/// not one of `slots` or the slots' counts do not match their entries.
pub fn group_by_slot<S: SlotRanges + ?Sized>(
    slot_of: impl Fn(usize) -> Option<u32>,
    slots: &mut S,
    order: &mut [u32],
    fill: &mut [u32],
) -> Result<(), GroupError> {
    let n = slots.slots();
    let fill = fill.get_mut(..n).ok_or(GroupError::BadCounts)?;
    let mut next = 0usize;
    for (s, f) in fill.iter_mut().enumerate() {
        slots.set_first(s, next);
        *f = u32::try_from(next).map_err(|_| GroupError::BadCounts)?;
        next = next
            .checked_add(slots.count(s))
            .ok_or(GroupError::BadCounts)?;
    }
    if next != order.len() {
        return Err(GroupError::BadCounts);
    }
    for i in 0..order.len() {
        let slot = slot_of(i).ok_or(GroupError::BadSlot)?;
        let f = fill.get_mut(slot as usize).ok_or(GroupError::BadSlot)?;
        let at = order.get_mut(*f as usize).ok_or(GroupError::BadCounts)?;
        *at = u32::try_from(i).map_err(|_| GroupError::BadCounts)?;
        // No overflow: below `order.len()`, a `u32`.
        *f = f.wrapping_add(1);
    }
    // Each slot's range filled exactly: a slot with more entries than its
    // count spills into the next one's range, and then some slot ends
    // short of its range's end.
    let mut end = 0usize;
    for (s, f) in fill.iter().enumerate() {
        end = end
            .checked_add(slots.count(s))
            .ok_or(GroupError::BadCounts)?;
        if *f as usize != end {
            return Err(GroupError::BadCounts);
        }
    }
    Ok(())
}
