// SPDX-License-Identifier: GPL-2.0

//! Which buffer carries a destination's next packet when sent buffers are
//! recycled.
//!
//! A destination keeps the buffers (skbs) it sent in a ring, in the order
//! they were last used: the [`RingCursor`] points at the least recently
//! used one. For each packet, the owner of the ring asks the buffer there
//! whether it can carry the packet, and [`RingCursor::step`] says what to
//! do:
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
//! it does not use.

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

    /// Decides which buffer carries the next packet of a ring of `len`
    /// buffers, asking the least recently used one through `ask` (called at
    /// most once, with an index below `len`); `grow` says whether the ring
    /// may get one more buffer. The caller then does what the [`Step`]
    /// says, which keeps the ring's order of last use.
    #[inline(always)]
    pub fn step(&mut self, len: usize, grow: bool, ask: impl FnOnce(usize) -> BufState) -> Step {
        if len == 0 {
            self.pos = 0;
            return if grow { Step::Insert(0) } else { Step::Unkept };
        }
        let at = if self.pos < len { self.pos } else { 0 };
        match ask(at) {
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
