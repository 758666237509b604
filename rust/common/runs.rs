// SPDX-License-Identifier: GPL-2.0

//! Page runs: where each entry's pages go in a call's page array.
//!
//! A call puts the pages of its entries in one array, entry after entry in
//! the caller's order. An entry whose pages start inside the pages of the
//! run before it, or right after them, in the same memory (user memory,
//! or the same registered buffer), joins that run: the run grows to cover
//! it and its pages are pinned (or borrowed) once. The same payload sent
//! to many destinations, or one buffer cut into consecutive chunks, is
//! one run; entries elsewhere start new runs. The array is the runs' pages
//! in order, and an entry's first page is at `page_base` in it.
//!
//! Since every entry of a run starts inside or right after the pages of
//! the entries before it, a run's pages are exactly the union of its
//! entries' pages, with no gap. That is what makes [`blame`] exact.

/// Where an entry's pages are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// User memory the call pins; pages numbered `addr >> PAGE_SHIFT`.
    User,
    /// Pages of the call's registered buffer with this index, numbered
    /// from the buffer's first page.
    Buffer(usize),
}

/// Pages of a call's page array taken from one source, in page order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Where the pages are.
    pub source: Source,
    /// The number of the run's first page.
    pub first: u64,
    /// Pages in the run.
    pub pages: u64,
    /// The index in the caller's vector of the run's first entry; the
    /// run's other entries follow it there.
    pub entry: u32,
}

/// What cannot be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunError {
    /// An entry without pages.
    NoPages,
    /// Page numbers or counts past `u64`.
    Overflow,
}

/// The runs of a call being laid out, entry by entry: the open run and
/// the page counts so far. Closed runs go to the caller, which keeps them.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunLayout {
    /// The run the next entry may join.
    open: Option<Run>,
    /// Where the open run starts in the page array.
    open_base: u64,
    /// Pages in all runs so far.
    total: u64,
    /// Of those, user pages (pinned by the call).
    pinned: u64,
    /// The run the last [`RunLayout::place_base`] closed, until taken.
    closed: Option<Run>,
}

/// Where [`RunLayout::place`] put an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The index of the entry's first page in the call's page array.
    pub page_base: u64,
    /// The run the entry closed by starting a new one, for the caller to
    /// keep.
    pub closed: Option<Run>,
}

impl RunLayout {
    /// Places entry `entry` (its index in the caller's vector), whose
    /// `pages` pages from page `first` are in `source`.
    #[inline]
    pub fn place(
        &mut self,
        source: Source,
        first: u64,
        pages: u64,
        entry: u32,
    ) -> Result<Placed, RunError> {
        let page_base = self.place_base(source, first, pages, entry)?;
        Ok(Placed {
            page_base,
            closed: self.closed.take(),
        })
    }

    /// [`RunLayout::place`] for a send path: returns where the entry's
    /// first page is and leaves the run it closed, if any, for
    /// [`RunLayout::take_closed`] (the small result stays in registers).
    /// An error changes nothing.
    #[inline]
    pub fn place_base(
        &mut self,
        source: Source,
        first: u64,
        pages: u64,
        entry: u32,
    ) -> Result<u64, RunError> {
        if pages == 0 {
            return Err(RunError::NoPages);
        }
        let end = first.checked_add(pages).ok_or(RunError::Overflow)?;
        let user = source == Source::User;
        if let Some(run) = self.open.as_mut() {
            let run_end = run.first.checked_add(run.pages).ok_or(RunError::Overflow)?;
            if run.source == source && first >= run.first && first <= run_end {
                let grow = end.saturating_sub(run_end);
                let run_pages = run.pages.checked_add(grow).ok_or(RunError::Overflow)?;
                let total = self.total.checked_add(grow).ok_or(RunError::Overflow)?;
                let pinned = match user {
                    true => self.pinned.checked_add(grow).ok_or(RunError::Overflow)?,
                    false => self.pinned,
                };
                // No underflow: `first >= run.first`.
                let offset = first.wrapping_sub(run.first);
                let page_base = self
                    .open_base
                    .checked_add(offset)
                    .ok_or(RunError::Overflow)?;
                run.pages = run_pages;
                self.total = total;
                self.pinned = pinned;
                return Ok(page_base);
            }
        }
        let total = self.total.checked_add(pages).ok_or(RunError::Overflow)?;
        let pinned = match user {
            true => self.pinned.checked_add(pages).ok_or(RunError::Overflow)?,
            false => self.pinned,
        };
        self.closed = self.open.replace(Run {
            source,
            first,
            pages,
            entry,
        });
        self.open_base = self.total;
        self.total = total;
        self.pinned = pinned;
        Ok(self.open_base)
    }

    /// [`RunLayout::place_base`]'s usual case, on its own for a send
    /// path's loop: the entry starts inside the open run's pages or right
    /// after them, in the same memory, and joins the run. Returns where its
    /// first page is, as `place_base` would; `None` when the entry does not
    /// join the open run that way or a count would overflow (nothing
    /// changed then: `place_base` says what it is).
    #[inline(always)]
    pub fn join(&mut self, source: Source, first: u64, pages: u64) -> Option<u64> {
        let run = self.open.as_mut()?;
        // Below the run's first page this wraps past `run.pages`: the run
        // ends below `u64::MAX` (`place_base` checks it).
        let offset = first.wrapping_sub(run.first);
        if offset > run.pages || run.source != source || pages == 0 {
            return None;
        }
        // The entry's pages past the run's end, and the run's end after it
        // (`run.first + offset + pages = first + pages`) within `u64`.
        let grow = offset.checked_add(pages)?.saturating_sub(run.pages);
        first.checked_add(pages)?;
        let total = self.total.checked_add(grow)?;
        let pinned = match source {
            Source::User => self.pinned.checked_add(grow)?,
            Source::Buffer(_) => self.pinned,
        };
        // No overflow: the open run's pages are the last of `total`, so
        // `open_base + offset <= open_base + run.pages <= total`, and
        // `run.pages + grow <= total`.
        run.pages = run.pages.wrapping_add(grow);
        self.total = total;
        self.pinned = pinned;
        Some(self.open_base.wrapping_add(offset))
    }

    /// The run the last [`RunLayout::place_base`] closed by starting a new
    /// one, for the caller to keep; `None` when it joined the open run.
    #[inline(always)]
    pub fn take_closed(&mut self) -> Option<Run> {
        self.closed.take()
    }

    /// Ends the layout: the last run, if any entry was placed.
    pub fn finish(&mut self) -> Option<Run> {
        self.open.take()
    }

    /// Pages in all runs: the length of the call's page array.
    pub fn total_pages(&self) -> u64 {
        self.total
    }

    /// User pages in all runs: what the call pins.
    pub fn pinned_pages(&self) -> u64 {
        self.pinned
    }
}

/// The entry to blame when pinning `run` failed after its first `pinned`
/// pages: the first of the run's entries, in the caller's order, whose
/// pages include the one that failed. It is the entry a call pinning
/// entry by entry would have failed on: every page before the failing
/// one belongs to an earlier entry of the run (a run has no gap), so no
/// earlier entry has a page that fails. `entries` yields the source,
/// first page and page count of the caller's entries from the run's first
/// on; returns the offset of the entry to blame from the run's first, or
/// `None` when no entry has that page.
pub fn blame<I>(run: &Run, pinned: u64, entries: I) -> Option<usize>
where
    I: IntoIterator<Item = (Source, u64, u64)>,
{
    let page = run.first.checked_add(pinned)?;
    entries.into_iter().position(|(source, first, pages)| {
        source == run.source
            && first <= page
            && first.checked_add(pages).is_some_and(|end| page < end)
    })
}
