// SPDX-License-Identifier: GPL-2.0

//! Which buffer carries a destination's next packet when sent buffers are
//! recycled.
//!
//! A destination keeps the buffers (skbs) it sent in a ring, in the order
//! they were last used: the [`RingCursor`] points at the least recently
//! used one. For each packet, the owner of the ring asks the buffer there
//! ([`RingCursor::peek`]) whether it can carry the packet, and
//! [`RingCursor::step`] says what to do:
//!
//! - the buffer is free: reuse it ([`Step::Reuse`]);
//! - the device still holds it: add a new buffer in front of it, so that it
//!   stays the least recently used one ([`Step::Insert`]); the ring grows
//!   only this way, to as many buffers as the device holds at once plus
//!   one;
//! - it cannot be used any more, or still held and the ring may not grow:
//!   put a new buffer in its place ([`Step::Replace`]);
//! - the ring is empty and may not grow: a new buffer that the ring does
//!   not keep ([`Step::Unkept`]).
//!
//! A ring starts empty, so a call that sends few packets sets up nothing
//! it does not use. Its buffers are always in their order of last use
//! from the cursor on, round the ring: rotated left by the index
//! [`RingCursor::peek`] gives, a ring is least recently used first (what
//! its owner does when it tidies the ring).

/// What the buffer at the cursor says when asked to carry the next packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufState {
    /// It is free and now carries the packet.
    Taken,
    /// The device still holds it.
    Busy,
    /// It can never carry a packet again.
    Spoiled,
}

/// What to do for the next packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The buffer at this index carries it (it said [`BufState::Taken`]).
    Reuse(usize),
    /// A new buffer carries it, inserted at this index (at most the ring's
    /// length): the buffers from there on move up by one.
    Insert(usize),
    /// A new buffer carries it and takes this index; the one there is let
    /// go.
    Replace(usize),
    /// A new buffer carries it, not kept in the ring.
    Unkept,
}

/// The position of the least recently used buffer of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingCursor {
    /// The index of the least recently used buffer; below the ring's
    /// length when the ring is not empty.
    pos: usize,
}

impl RingCursor {
    /// Returns the cursor of an empty ring.
    pub const fn new() -> Self {
        Self { pos: 0 }
    }

    /// Returns the index of the least recently used buffer of a ring of
    /// `len` buffers, the one to ask whether it can carry the next packet;
    /// `None` when the ring is empty.
    #[inline(always)]
    pub fn peek(&self, len: usize) -> Option<usize> {
        match len {
            0 => None,
            _ if self.pos < len => Some(self.pos),
            _ => Some(0),
        }
    }

    /// Moves past the buffer at `at`, which [`RingCursor::peek`] returned
    /// for a ring of `len` buffers and which said [`BufState::Taken`]: the
    /// same as [`RingCursor::step`] then, for the send path's usual case.
    #[inline(always)]
    pub fn reused(&mut self, at: usize, len: usize) {
        self.pos = next(at, len);
    }

    /// Decides which buffer carries the next packet of a ring of `len`
    /// buffers, given what the buffer at [`RingCursor::peek`] answered
    /// (ignored when the ring is empty); `grow` says whether the ring may
    /// get one more buffer. The caller then does what the [`Step`] says,
    /// which keeps the ring's order of last use.
    #[inline(always)]
    pub fn step(&mut self, len: usize, grow: bool, state: BufState) -> Step {
        let Some(at) = self.peek(len) else {
            self.pos = 0;
            if !grow {
                return Step::Unkept;
            }
            return Step::Insert(0);
        };
        match state {
            BufState::Taken => {
                self.pos = next(at, len);
                Step::Reuse(at)
            }
            BufState::Busy if grow => {
                // The ring is now `len + 1` long and `at + 1 <= len`: the
                // busy buffer stays the least recently used one.
                self.pos = at.wrapping_add(1);
                Step::Insert(at)
            }
            BufState::Busy | BufState::Spoiled => {
                self.pos = next(at, len);
                Step::Replace(at)
            }
        }
    }
}

/// The index after `at` in a ring of `len` buffers, `at < len`.
#[inline(always)]
fn next(at: usize, len: usize) -> usize {
    // No overflow: `at < len`.
    let n = at.wrapping_add(1);
    if n == len {
        0
    } else {
        n
    }
}
