// SPDX-License-Identifier: GPL-2.0

//! Tests of `recycle`: a ring of buffers driven by `RingCursor` against a
//! model device that holds each buffer for a while after it is sent.

use mdwrite_common::recycle::{BufState, RingCursor, Step};
use proptest::prelude::*;

/// One buffer of the model ring.
#[derive(Debug, Clone, Copy)]
struct Buf {
    /// When it was last sent.
    used: u64,
    /// Until when (exclusive) the device holds it.
    held_until: u64,
    /// Whether it can no longer be used.
    spoiled: bool,
}

/// What a run of the model saw.
struct Run {
    /// The ring's length after each packet.
    lens: Vec<usize>,
    /// The step of each packet.
    steps: Vec<Step>,
    /// The ring and its cursor at the end.
    ring: Vec<Buf>,
    cursor: RingCursor,
}

/// Sends `holds.len()` packets through a ring that may hold `cap` buffers;
/// packet `t`'s buffer is held by the device for `holds[t]` packets' time
/// and spoiled when `spoil[t]`. Checks the cursor's contract on the way.
fn run(holds: &[u64], spoil: &[bool], cap: usize) -> Result<Run, TestCaseError> {
    let mut ring: Vec<Buf> = Vec::new();
    let mut cursor = RingCursor::new();
    let mut out = Run {
        lens: Vec::new(),
        steps: Vec::new(),
        ring: Vec::new(),
        cursor: RingCursor::new(),
    };
    for (t, &hold) in holds.iter().enumerate() {
        let now = t as u64;
        let len = ring.len();
        let asked = cursor.peek(len);
        let state = match asked {
            None => BufState::Spoiled,
            Some(at) => {
                let b = ring[at];
                if b.held_until > now {
                    BufState::Busy
                } else if b.spoiled {
                    BufState::Spoiled
                } else {
                    BufState::Taken
                }
            }
        };
        let step = cursor.step(len, len < cap, state);
        if let Some(at) = asked {
            prop_assert!(at < len);
            // The one asked is the least recently used.
            let oldest = ring.iter().map(|b| b.used).min();
            prop_assert_eq!(Some(ring[at].used), oldest, "asked {} of {:?}", at, ring);
        } else {
            prop_assert_eq!(len, 0, "a non-empty ring was not asked");
        }
        let fresh = Buf {
            used: now,
            held_until: now + hold,
            spoiled: spoil.get(t).copied().unwrap_or(false),
        };
        match step {
            Step::Reuse(at) => {
                prop_assert_eq!(asked, Some(at));
                let b = ring[at];
                prop_assert!(b.held_until <= now && !b.spoiled);
                ring[at] = fresh;
            }
            Step::Insert(at) => {
                prop_assert!(len < cap, "grew past the cap");
                prop_assert!(at <= len);
                if len > 0 {
                    prop_assert_eq!(asked, Some(at));
                    prop_assert!(ring[at].held_until > now, "grew though the buffer was free");
                }
                ring.insert(at, fresh);
            }
            Step::Replace(at) => {
                prop_assert_eq!(asked, Some(at));
                let b = ring[at];
                prop_assert!(b.spoiled || (b.held_until > now && len >= cap));
                ring[at] = fresh;
            }
            Step::Unkept => prop_assert!(len == 0 && cap == 0),
        }
        out.lens.push(ring.len());
        out.steps.push(step);
    }
    out.ring = ring;
    out.cursor = cursor;
    Ok(out)
}

proptest! {
    #[test]
    fn contract_holds(holds in prop::collection::vec(0u64..40, 0..300),
                      spoil in prop::collection::vec(prop::bool::weighted(0.05), 0..300),
                      cap in 0usize..50) {
        run(&holds, &spoil, cap)?;
    }

    /// Whatever the packets did to a ring, its buffers are in their
    /// order of last use from the cursor on, round the ring: rotated left
    /// by `peek`'s index, least recently used first (how `SkbPool::keep`
    /// tidies a ring).
    #[test]
    fn peek_starts_the_order_of_last_use(
        holds in prop::collection::vec(0u64..40, 0..300),
        spoil in prop::collection::vec(prop::bool::weighted(0.05), 0..300),
        cap in 0usize..50,
    ) {
        let Run { mut ring, cursor, .. } = run(&holds, &spoil, cap)?;
        let at = cursor.peek(ring.len()).unwrap_or(0);
        ring.rotate_left(at);
        prop_assert!(ring.windows(2).all(|w| w[0].used < w[1].used), "{:?}", ring);
    }

    #[test]
    fn grows_to_what_the_device_holds(hold in 0u64..100, n in 1usize..500) {
        let holds = vec![hold; n];
        let r = run(&holds, &[], usize::MAX)?;
        let want = (hold.max(1) as usize).min(n);
        // Never more buffers than the device holds at once, plus the one
        // being filled.
        prop_assert!(r.lens.iter().all(|&l| l <= want));
        prop_assert_eq!(r.lens.last().copied(), Some(want));
        // Once grown, every packet reuses a buffer.
        prop_assert!(r.steps[want..].iter().all(|s| matches!(s, Step::Reuse(_))));
        prop_assert_eq!(r.steps.iter().filter(|s| matches!(s, Step::Insert(_))).count(), want);
    }

    #[test]
    fn capped_ring_replaces(hold in 2u64..100, cap in 1usize..10, n in 1usize..300) {
        let holds = vec![hold; n];
        let r = run(&holds, &[], cap)?;
        prop_assert!(r.lens.iter().all(|&l| l <= cap));
    }
}

#[test]
fn empty_ring_that_may_not_grow_keeps_nothing() {
    let mut c = RingCursor::new();
    assert_eq!(c.peek(0), None);
    assert_eq!(c.step(0, false, BufState::Taken), Step::Unkept);
    assert_eq!(c.step(0, true, BufState::Busy), Step::Insert(0));
}

#[test]
fn spoiled_buffer_is_replaced_in_place() {
    let mut c = RingCursor::new();
    assert_eq!(c.step(3, true, BufState::Taken), Step::Reuse(0));
    assert_eq!(c.step(3, true, BufState::Spoiled), Step::Replace(1));
    assert_eq!(c.peek(3), Some(2));
    assert_eq!(c.step(3, true, BufState::Taken), Step::Reuse(2));
    assert_eq!(c.step(3, true, BufState::Taken), Step::Reuse(0));
    // A ring that shrank under the cursor starts again at 0.
    assert_eq!(c.peek(1), Some(0));
    assert_eq!(c.step(1, true, BufState::Busy), Step::Insert(0));
}

proptest! {
    /// `reused` is `step` for a buffer that was taken.
    #[test]
    fn reused_is_step_taken(len in 1usize..50, moves in prop::collection::vec(any::<bool>(), 0..100)) {
        let mut a = RingCursor::new();
        let mut b = RingCursor::new();
        for m in moves {
            let at = a.peek(len).unwrap();
            if m {
                a.reused(at, len);
                prop_assert_eq!(b.step(len, false, BufState::Taken), Step::Reuse(at));
            } else {
                a.step(len, false, BufState::Spoiled);
                b.step(len, false, BufState::Spoiled);
            }
            prop_assert_eq!(a, b);
        }
    }
}
