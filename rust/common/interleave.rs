// SPDX-License-Identifier: GPL-2.0

//! The transmit order of the packets of one call.
//!
//! Each destination of a call is a queue, numbered from 0, holding a number
//! of packets that leave in their own order. [`RoundRobin`] only says which
//! queue sends next. This order is ABI:
//!
//! - Sending goes in rounds, until every queue is empty.
//! - In each round, every queue that still has packets at the start of the
//!   round, in ascending queue index, sends `min(quantum, remaining)`
//!   packets in a row, `remaining` being its packets not yet sent.
//! - `quantum` is at least 1. With the default of 1, the first packet of
//!   every queue leaves before the second packet of any.
//! - A queue with no packets never sends.
//!
//! The iterator allocates nothing: the caller lends the packet counts and a
//! list of active queues. Queues that run dry are removed from that list in
//! place, keeping its order, so each packet costs O(1).

/// The default number of packets a queue sends in a row.
pub const DEFAULT_QUANTUM: u32 = 1;

/// Why a transmit order could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterleaveError {
    /// The quantum is 0.
    ZeroQuantum,
    /// The active list is shorter than the number of non-empty queues.
    ActiveTooShort,
    /// A non-empty queue's index does not fit in a `u32`.
    TooManyQueues,
}

/// One packet of the transmit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// The queue that sends this packet.
    pub queue: usize,
    /// Whether this is the last packet of its round.
    pub round_end: bool,
    /// Whether this is the last packet of all (it also ends its round).
    pub last: bool,
}

/// One turn of the transmit order: a queue's packets in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// The queue that sends.
    pub queue: usize,
    /// How many packets it sends in a row, at least 1.
    pub packets: u64,
    /// Whether this turn ends its round.
    pub round_end: bool,
    /// Whether this is the last turn of all (it also ends its round).
    pub last: bool,
    /// The packets the queue had left before this turn: at its first
    /// turn, all of them.
    pub before: u64,
}

/// The round-robin transmit order described in the module doc.
#[derive(Debug)]
pub struct RoundRobin<'a> {
    /// The packets not yet sent, per queue.
    remaining: &'a mut [u64],
    /// The queues of this round in `active[..len]`, ascending; the queues
    /// kept for the next round are moved to `active[..write]`.
    active: &'a mut [u32],
    /// The number of queues in this round.
    len: usize,
    /// The index in `active` of the queue sending now.
    read: usize,
    /// The number of queues kept for the next round so far.
    write: usize,
    /// The packets left in the current queue's turn; 0 before its start.
    burst: u32,
    /// The packets a queue sends in a row, non-zero.
    quantum: u32,
}

impl<'a> RoundRobin<'a> {
    /// Sets up the order of queues holding `remaining[i]` packets.
    ///
    /// `active` is scratch space with room for every non-empty queue. As the
    /// iterator runs, `remaining[i]` counts the packets of queue `i` not yet
    /// yielded, so a caller that stops early can read what is left.
    pub fn new(
        remaining: &'a mut [u64],
        active: &'a mut [u32],
        quantum: u32,
    ) -> Result<Self, InterleaveError> {
        if quantum == 0 {
            return Err(InterleaveError::ZeroQuantum);
        }
        let mut len = 0usize;
        if remaining.len() <= active.len() && u32::try_from(remaining.len()).is_ok() {
            // The usual case, without a test per queue: room for every
            // queue, and every index fits. Each queue's index is written
            // at the end of the list, kept only if it has packets.
            for (queue, &count) in remaining.iter().enumerate() {
                // In bounds: `len <= queue < active.len()`.
                if let Some(slot) = active.get_mut(len) {
                    *slot = queue as u32;
                }
                // No overflow: `len <= queue`.
                len = len.wrapping_add(usize::from(count != 0));
            }
        } else {
            for (queue, &count) in remaining.iter().enumerate() {
                if count != 0 {
                    let queue = u32::try_from(queue).map_err(|_| InterleaveError::TooManyQueues)?;
                    let slot = active.get_mut(len).ok_or(InterleaveError::ActiveTooShort)?;
                    *slot = queue;
                    // No overflow: `len < active.len()`.
                    len = len.wrapping_add(1);
                }
            }
        }
        Ok(Self {
            remaining,
            active,
            len,
            read: 0,
            write: 0,
            burst: 0,
            quantum,
        })
    }
}

impl RoundRobin<'_> {
    /// Ends the turn of `queue`, which has `left` packets after it: keeps
    /// it for the next round if it has any, and moves to the next queue.
    /// Returns whether the turn ended its round.
    #[inline(always)]
    fn end_turn(&mut self, queue: u32, left: u64) -> bool {
        if left != 0 {
            if let Some(slot) = self.active.get_mut(self.write) {
                *slot = queue;
            }
            // No overflow: `write <= read < len`.
            self.write = self.write.wrapping_add(1);
        }
        self.read = self.read.wrapping_add(1);
        if self.read != self.len {
            return false;
        }
        self.len = self.write;
        self.read = 0;
        self.write = 0;
        true
    }

    /// Returns the rest of the current turn, or the next one, as a whole:
    /// the packets [`Iterator::next`] would yield one by one until the
    /// turn ends. A send loop that handles a turn's packets in an inner
    /// loop pays for the order once per turn.
    #[inline(always)]
    pub fn next_burst(&mut self) -> Option<Burst> {
        if self.read >= self.len {
            return None;
        }
        let queue = *self.active.get(self.read)?;
        let index = usize::try_from(queue).ok()?;
        let count = self.remaining.get_mut(index)?;
        let before = *count;
        let packets = match self.burst {
            0 => before.min(u64::from(self.quantum)),
            rest => u64::from(rest),
        };
        // Every queue in `active[..len]` has packets left, and a turn
        // started by `next` has at most `before` left.
        let left = before.checked_sub(packets).filter(|_| packets != 0)?;
        *count = left;
        self.burst = 0;
        let round_end = self.end_turn(queue, left);
        Some(Burst {
            queue: index,
            packets,
            round_end,
            last: round_end && self.len == 0,
            before,
        })
    }
}

impl RoundRobin<'_> {
    /// Whether the order has not started and every queue has packets
    /// (then its first rounds are all the queues, in index order).
    #[inline(always)]
    fn fresh_with_every_queue(&self) -> bool {
        self.len != 0
            && self.len == self.remaining.len()
            && self.read == 0
            && self.write == 0
            && self.burst == 0
    }

    /// The rounds at the start of the order in which every queue sends
    /// `quantum` packets and keeps some, for a caller that sends them
    /// itself: their number, the quantum, and the queues' counts. The
    /// caller sends them round by round, each queue in index order, and
    /// takes each turn's packets off its queue's count; the order then
    /// goes on after the rounds it sent. `None` unless every queue has
    /// packets and the order has not started (then the queues of the
    /// first rounds are all of them, in index order). O(queues).
    pub fn full_rounds(&mut self) -> Option<(u64, u64, &mut [u64])> {
        if !self.fresh_with_every_queue() {
            return None;
        }
        let smallest = *self.remaining.iter().min()?;
        let quantum = u64::from(self.quantum);
        // Every queue has packets (`None` else); `quantum` is not 0.
        let rounds = smallest.checked_sub(1)?.checked_div(quantum)?;
        Some((rounds, quantum, &mut *self.remaining))
    }
}

impl RoundRobin<'_> {
    /// Whether the whole order can go at once, for a caller that sends
    /// each queue's packets in a row, each in its place ([`run_places`]):
    /// when the order has not started, every queue has the same number of
    /// packets and all of them number at most `most`, returns that number
    /// and the quantum. The caller that sends them ends the order with
    /// [`RoundRobin::take_all`]. O(queues), and O(1) when the packets
    /// number more than `most`.
    pub fn equal_counts(&self, most: u64) -> Option<(u64, u32)> {
        if !self.fresh_with_every_queue() {
            return None;
        }
        let count = *self.remaining.first()?;
        let total = u64::try_from(self.len).ok()?.checked_mul(count)?;
        if total > most || self.remaining.iter().any(|&c| c != count) {
            return None;
        }
        Some((count, self.quantum))
    }

    /// Ends the order, for a caller that sent every packet itself: every
    /// count is 0.
    pub fn take_all(&mut self) {
        self.remaining.iter_mut().for_each(|c| *c = 0);
        self.len = 0;
        self.read = 0;
        self.write = 0;
        self.burst = 0;
    }
}

/// Where the packets of queue `queue` go in the transmit order of
/// `queues` queues of `count` packets each with the quantum 1 (the order
/// [`RoundRobin`] gives them: round `k` is every queue's `k`-th packet),
/// for a caller that sends each queue's packets in a row and puts each in
/// its place: its `k`-th packet in place `first + k * step` (from 0).
/// `None` for a queue past the last, or when the places would not fit a
/// `usize`. Over all queues, every place below `queues * count` once.
#[inline(always)]
pub fn run_places(queues: usize, count: usize, queue: usize) -> Option<(usize, usize)> {
    queues.checked_mul(count)?;
    (queue < queues).then_some((queue, queues))
}

/// The places ([`run_places`]) of the first `sent` packets of
/// `queues` queues of `count` packets each sent queue by queue, each
/// queue's in a row: `f` is given each, in the order they were sent.
/// (What a send that stopped early placed.) At most `queues * count`.
#[inline(always)]
pub fn for_each_sent_place(queues: usize, count: usize, sent: usize, mut f: impl FnMut(usize)) {
    let mut left = sent;
    for queue in 0..queues {
        let Some((mut place, step)) = run_places(queues, count, queue) else {
            return;
        };
        for _ in 0..count {
            if left == 0 {
                return;
            }
            f(place);
            // No overflow: the places are below `queues * count`.
            place = place.wrapping_add(step);
            left = left.wrapping_sub(1);
        }
    }
}

/// How many packets a send queue by queue ([`for_each_sent_place`]) of
/// `queues` queues of `count` packets each had placed when it stopped in
/// queue `queue`, which was given the places before `next` (its next
/// place: `queue + given * queues`), the last of them holding a packet
/// when `filled` says so (the others of the queue, and every earlier
/// queue's, do). At most `queues * count`.
#[inline(always)]
pub fn sent_before(queues: usize, count: usize, queue: usize, next: usize, filled: bool) -> usize {
    let given = next.saturating_sub(queue).checked_div(queues).unwrap_or(0);
    let in_queue = match filled {
        true => given,
        false => given.saturating_sub(1),
    }
    .min(count);
    queue
        .saturating_mul(count)
        .saturating_add(in_queue)
        .min(queues.saturating_mul(count))
}

impl Iterator for RoundRobin<'_> {
    type Item = Turn;

    #[inline(always)]
    fn next(&mut self) -> Option<Turn> {
        if self.read >= self.len {
            return None;
        }
        let queue = *self.active.get(self.read)?;
        let index = usize::try_from(queue).ok()?;
        let count = self.remaining.get_mut(index)?;
        let before = *count;
        // Every queue in `active[..len]` has packets left.
        let left = before.checked_sub(1)?;
        *count = left;
        if self.burst == 0 {
            self.burst = u32::try_from(before).map_or(self.quantum, |b| b.min(self.quantum));
        }
        // No overflow: `burst` was at least 1.
        self.burst = self.burst.wrapping_sub(1);

        let round_end = self.burst == 0 && self.end_turn(queue, left);
        Some(Turn {
            queue: index,
            round_end,
            last: round_end && self.len == 0,
        })
    }
}
