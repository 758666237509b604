// SPDX-License-Identifier: GPL-2.0

//! Tests of `pace`: a paced call's window and departure times.

use mdwrite_common::pace::{Departures, EntryPace, PaceError, Window};
use proptest::prelude::*;

const MS: u64 = 1_000_000;
const MAX: u64 = 1_000 * MS;

fn window(start: u64, len: u64) -> Window {
    Window::new(start, len, start, MAX, MAX).unwrap()
}

#[test]
fn window_errors() {
    let now = 10_000 * MS;
    assert_eq!(Window::new(now, 0, now, MAX, MAX), Err(PaceError::Empty));
    assert_eq!(
        Window::new(now, MAX + 1, now, MAX, MAX),
        Err(PaceError::OutOfRange)
    );
    assert_eq!(
        Window::new(now + MAX + 1, 20 * MS, now, MAX, MAX),
        Err(PaceError::OutOfRange)
    );
    // Ended: its end is now or before.
    assert_eq!(
        Window::new(now - 20 * MS, 20 * MS, now, MAX, MAX),
        Err(PaceError::Ended)
    );
    assert_eq!(Window::new(0, 1, now, MAX, MAX), Err(PaceError::Ended));
    // Started, not ended: the late part still goes.
    assert!(Window::new(now - 20 * MS, 20 * MS + 1, now, MAX, MAX).is_ok());
    assert!(Window::new(now + MAX, MAX, now, MAX, MAX).is_ok());
    // No overflow near the top of the clock.
    assert!(Window::new(u64::MAX - 1, MAX, u64::MAX - 2, MAX, MAX).is_ok());
}

#[test]
fn even_spread_of_one_destination() {
    let w = window(1_000, 20 * MS);
    let mut d = Departures::new(&w, 4);
    d.enter(&w, None);
    let times: Vec<u64> = (0..4).map(|_| d.take()).collect();
    assert_eq!(
        times,
        [1_000, 1_000 + 5 * MS, 1_000 + 10 * MS, 1_000 + 15 * MS]
    );
}

/// A destination started at its first turn (`start_once`, as the module's
/// send loop does) departs as one started before the call; a later
/// `start_once` (its next turn, fewer packets left) changes nothing.
#[test]
fn started_at_first_turn() {
    let w = window(1_000, 20 * MS);
    let mut lazy = Departures::default();
    lazy.start_once(&w, 4);
    assert_eq!(lazy, Departures::new(&w, 4));
    lazy.enter(&w, None);
    let first = lazy.take();
    lazy.start_once(&w, 3);
    let rest: Vec<u64> = (0..3).map(|_| lazy.take()).collect();
    assert_eq!(
        (first, rest),
        (
            1_000,
            vec![1_000 + 5 * MS, 1_000 + 10 * MS, 1_000 + 15 * MS]
        )
    );
}

#[test]
fn entries_continue_and_never_go_back() {
    let w = window(0, 10 * MS);
    let mut d = Departures::new(&w, 10);
    d.enter(&w, None);
    assert_eq!((d.take(), d.take()), (0, MS));
    // A second plain entry continues.
    d.enter(&w, None);
    assert_eq!(d.take(), 2 * MS);
    // An entry timed to start before the destination's next time starts
    // then, at its own gap.
    d.enter(
        &w,
        Some(EntryPace {
            offset: MS as u32,
            gap: 100,
        }),
    );
    assert_eq!((d.take(), d.take()), (3 * MS, 3 * MS + 100));
    // One timed later starts at its offset.
    d.enter(
        &w,
        Some(EntryPace {
            offset: 8 * MS as u32,
            gap: 0,
        }),
    );
    assert_eq!(d.take(), 8 * MS);
}

#[test]
fn entry_gap_bounds() {
    let w = window(0, 10 * MS);
    assert_eq!(w.entry_gap(10 * MS, 0, 1), Err(PaceError::OutOfRange));
    assert_eq!(w.entry_gap(0, 0, 4), Ok(10 * MS / 4));
    assert_eq!(w.entry_gap(2 * MS, 0, 4), Ok(2 * MS));
    // 10 packets 1 ms apart from 0: the last at 9 ms, inside.
    assert_eq!(w.entry_gap(0, MS, 10), Ok(MS));
    // 11: the last at 10 ms, the window's end.
    assert_eq!(w.entry_gap(0, MS, 11), Err(PaceError::OutOfRange));
    assert_eq!(w.entry_gap(0, u64::MAX, 3), Err(PaceError::OutOfRange));
    // A single packet needs no gap.
    assert_eq!(w.entry_gap(9 * MS, u64::MAX, 1), Ok(u64::MAX));
}

proptest! {
    /// Plain entries: every packet departs inside the window, evenly,
    /// in order.
    #[test]
    fn plain_departures_inside_the_window(
        start in 0u64..u64::MAX / 2,
        len in 1u64..=MAX,
        splits in prop::collection::vec(1u64..50, 1..6),
    ) {
        let w = window(start, len);
        let packets: u64 = splits.iter().sum();
        let mut d = Departures::new(&w, packets);
        let mut last = None;
        for n in splits {
            d.enter(&w, None);
            for _ in 0..n {
                let t = d.take();
                prop_assert!(t >= start && t < start + len);
                if let Some(l) = last {
                    prop_assert!(t >= l);
                    prop_assert_eq!(t - l, len / packets);
                }
                last = Some(t);
            }
        }
    }

    /// An entry timed by itself with a checked gap departs inside the
    /// window, from its offset on.
    #[test]
    fn timed_entries_inside_the_window(
        start in 0u64..u64::MAX / 2,
        len in 1u64..=MAX,
        offset_frac in 0u64..1000,
        gap in 0u64..=MAX,
        packets in 1u64..100,
    ) {
        let w = window(start, len);
        let offset = len * offset_frac / 1000;
        match w.entry_gap(offset, gap, packets) {
            Ok(g) => {
                let mut d = Departures::new(&w, packets);
                d.enter(&w, Some(EntryPace { offset: offset as u32, gap: g as u32 }));
                for k in 0..packets {
                    let t = d.take();
                    prop_assert_eq!(t, start + offset + k * g);
                    prop_assert!(t < start + len);
                }
            }
            Err(e) => {
                prop_assert_eq!(e, PaceError::OutOfRange);
                prop_assert!(gap > 0 && offset + gap * (packets - 1) >= len);
            }
        }
    }
}
