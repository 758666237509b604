// SPDX-License-Identifier: GPL-2.0

//! The pin cache's bookkeeping (`MDW_WRITE_KEEP_PINS`, `pincache.rs`):
//! which cached run of pages serves a call's run, and which cached runs go
//! to make room for a new one.
//!
//! A [`RunCache`] holds at most `N` values (the module's: pinned runs of
//! user pages), each for a run of page numbers, with the number of the
//! lookup that last used it. Its owner says which values are still valid
//! (the module: the memory still maps the pages, and is the caller's);
//! an invalid value is never found again. To make room for a new run the
//! invalid values go first, then the least recently used ones, but never
//! one used since the current call began ([`RunCache::begin_call`]): a
//! call of more runs than the cache holds keeps its first ones rather than
//! replacing each run by the next.

/// A cached value and its run of pages.
struct Cached<T> {
    /// The value (the module's: the pinned run).
    value: T,
    /// The number of its first page.
    first: u64,
    /// How many pages it holds.
    pages: u64,
    /// The number of the lookup that last used it.
    used: u64,
}

impl<T> Cached<T> {
    /// The index in this run of page `first` when the run holds pages
    /// `first..first + n`.
    fn holds(&self, first: u64, n: u64) -> Option<u64> {
        let at = first.checked_sub(self.first)?;
        (at.checked_add(n)? <= self.pages).then_some(at)
    }
}

/// At most `N` cached values, each for a run of pages.
pub struct RunCache<T, const N: usize> {
    /// The values, in no order.
    slots: [Option<Cached<T>>; N],
    /// Numbers the lookups.
    clock: u64,
    /// The number of the current call's first lookup.
    call_start: u64,
}

impl<T, const N: usize> Default for RunCache<T, N> {
    fn default() -> Self {
        Self {
            slots: core::array::from_fn(|_| None),
            clock: 0,
            call_start: 0,
        }
    }
}

impl<T, const N: usize> RunCache<T, N> {
    /// Starts a call: the values it uses from now on are not evicted
    /// for it.
    pub fn begin_call(&mut self) {
        self.call_start = self.clock.wrapping_add(1);
    }

    /// The slot of a value that `valid` accepts whose run holds pages
    /// `first..first + n`, and the index of page `first` in that run;
    /// the value counts as used by this lookup.
    pub fn find(
        &mut self,
        first: u64,
        n: u64,
        mut valid: impl FnMut(&T) -> bool,
    ) -> Option<(usize, u64)> {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        self.slots.iter_mut().enumerate().find_map(|(i, slot)| {
            let c = slot.as_mut()?;
            let at = c.holds(first, n)?;
            if !valid(&c.value) {
                return None;
            }
            c.used = clock;
            Some((i, at))
        })
    }

    /// The value in slot `slot`.
    pub fn get(&self, slot: usize) -> Option<&T> {
        Some(&self.slots.get(slot)?.as_ref()?.value)
    }

    /// Makes room for a run of `n` pages with at most `max_pages` pages
    /// in all: drops every value `valid` refuses, then the least recently
    /// used values not used by this call, until a slot is free and the
    /// pages fit. The free slot, or `None` when no room can be made that
    /// way (what was dropped stays dropped).
    pub fn make_room(
        &mut self,
        n: u64,
        max_pages: u64,
        mut valid: impl FnMut(&T) -> bool,
    ) -> Option<usize> {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|c| !valid(&c.value)) {
                *slot = None;
            }
        }
        if n > max_pages {
            return None;
        }
        loop {
            let free = self.slots.iter().position(Option::is_none);
            if let Some(free) = free {
                if self.pages() <= max_pages.saturating_sub(n) {
                    return Some(free);
                }
            }
            let call_start = self.call_start;
            let oldest = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| Some((i, slot.as_ref()?.used)))
                .filter(|&(_, used)| used < call_start)
                .min_by_key(|&(_, used)| used)?
                .0;
            *self.slots.get_mut(oldest)? = None;
        }
    }

    /// Puts `value`, for pages `first..first + pages`, in the free slot
    /// `slot` ([`RunCache::make_room`]), used by the last lookup; `false`
    /// (nothing changed, `value` dropped) when the slot is not free.
    pub fn put(&mut self, slot: usize, first: u64, pages: u64, value: T) -> bool {
        let used = self.clock;
        match self.slots.get_mut(slot) {
            Some(s @ None) => {
                *s = Some(Cached {
                    value,
                    first,
                    pages,
                    used,
                });
                true
            }
            _ => false,
        }
    }

    /// Drops every value; whether there was one.
    pub fn clear(&mut self) -> bool {
        let mut any = false;
        for slot in self.slots.iter_mut() {
            any |= slot.take().is_some();
        }
        any
    }

    /// The pages of every cached run.
    pub fn pages(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .fold(0u64, |sum, c| sum.saturating_add(c.pages))
    }

    /// How many values are cached.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
