// SPDX-License-Identifier: GPL-2.0

//! Departure times of a paced call (`MDW_WRITE_PACE`).
//!
//! A paced call has a window: a start on its clock and a length, in
//! nanoseconds. Every packet of the call gets a departure time from it:
//!
//! - an entry with its own timing (`MDW_ENTRY_PACE`: an offset into the
//!   window and a gap) sends its packets `gap` apart from `start + offset`;
//!   a gap of 0 spreads them evenly from there to the window's end. Each of
//!   its packets must depart inside the window;
//! - the packets of a destination's other entries are spread evenly over
//!   the window, `len / P` apart (`P`: the destination's packets in the
//!   call), the first at the window's start, each entry continuing where
//!   the one before it left off;
//! - a destination's departure times never go back: an entry starting
//!   before the destination's next time starts then.
//!
//! All in integer nanoseconds; no division per packet.

/// Why a paced call or one of its entries is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaceError {
    /// A window of length 0 (`EINVAL`).
    Empty,
    /// A window longer than allowed, starting too far ahead, or an entry
    /// whose packets would depart after the window's end (`ERANGE`).
    OutOfRange,
    /// The window ended before the call (`ETIME`).
    Ended,
}

/// A paced call's window, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Nanoseconds on the call's clock.
    start: u64,
    /// Nanoseconds, at least 1.
    len: u64,
}

impl Window {
    /// The window `[start, start + len)` of a call made at `now` (on the
    /// same clock): `len` in `1..=max_len`, `start` at most `max_ahead`
    /// after `now`, and not over yet.
    pub fn new(
        start: u64,
        len: u64,
        now: u64,
        max_len: u64,
        max_ahead: u64,
    ) -> Result<Self, PaceError> {
        if len == 0 {
            return Err(PaceError::Empty);
        }
        if len > max_len || start > now.saturating_add(max_ahead) {
            return Err(PaceError::OutOfRange);
        }
        if start.saturating_add(len) <= now {
            return Err(PaceError::Ended);
        }
        Ok(Self { start, len })
    }

    /// Its start.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Its length.
    pub fn length(&self) -> u64 {
        self.len
    }

    /// The gap between the `packets` packets of an entry timed by itself
    /// from `offset` with `gap` (0: spread evenly to the window's end),
    /// checked: every one of them departs inside the window.
    pub fn entry_gap(&self, offset: u64, gap: u64, packets: u64) -> Result<u64, PaceError> {
        if offset >= self.len {
            return Err(PaceError::OutOfRange);
        }
        let packets = packets.max(1);
        // `offset < len`: no underflow.
        let rest = self.len.saturating_sub(offset);
        if gap == 0 {
            // The last at offset + (n - 1) * (rest / n) < offset + rest.
            return Ok(rest.checked_div(packets).unwrap_or(0));
        }
        let last = gap
            .checked_mul(packets.saturating_sub(1))
            .and_then(|span| span.checked_add(offset))
            .ok_or(PaceError::OutOfRange)?;
        if last >= self.len {
            return Err(PaceError::OutOfRange);
        }
        Ok(gap)
    }

    /// The even gap of a destination with `packets` packets in the call.
    pub fn even_gap(&self, packets: u64) -> u64 {
        self.len.checked_div(packets).unwrap_or(self.len)
    }
}

/// An entry's own timing, checked against its window
/// ([`Window::entry_gap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPace {
    /// Nanoseconds after the window's start of its first packet.
    pub offset: u32,
    /// Nanoseconds between its packets.
    pub gap: u32,
}

/// One destination's (or fan-out's) departure times in a paced call:
/// started by [`Departures::new`], or made unstarted ([`Default`]) and
/// started at its first packet ([`Departures::start_once`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Departures {
    /// The next packet's departure time.
    next: u64,
    /// The gap after it.
    gap: u64,
    /// The gap of the destination's plain entries.
    even: u64,
    /// Started: the fields above hold.
    started: bool,
}

impl Departures {
    /// A destination with `packets` packets in the call, its first at the
    /// window's start.
    pub fn new(window: &Window, packets: u64) -> Self {
        let even = window.even_gap(packets);
        Self {
            next: window.start,
            gap: even,
            even,
            started: true,
        }
    }

    /// Starts an unstarted destination as [`Departures::new`] would, with
    /// `packets` packets in the call; nothing if it has started. Lets a
    /// send loop start each destination when it reaches it, which costs
    /// one test per turn, instead of a pass over every destination before.
    #[inline(always)]
    pub fn start_once(&mut self, window: &Window, packets: u64) {
        if !self.started {
            *self = Self::new(window, packets);
        }
    }

    /// Enters the destination's next entry: with its own timing `own`
    /// from `start + offset` (or the destination's next time, if later),
    /// else at the even gap, continuing.
    pub fn enter(&mut self, window: &Window, own: Option<EntryPace>) {
        match own {
            Some(own) => {
                self.next = self
                    .next
                    .max(window.start.saturating_add(u64::from(own.offset)));
                self.gap = u64::from(own.gap);
            }
            None => self.gap = self.even,
        }
    }

    /// The departure time of the destination's next packet, left for
    /// [`Departures::take`].
    #[inline(always)]
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// The departure time of the destination's next packet.
    #[inline(always)]
    pub fn take(&mut self) -> u64 {
        let t = self.next;
        self.next = t.saturating_add(self.gap);
        t
    }
}
