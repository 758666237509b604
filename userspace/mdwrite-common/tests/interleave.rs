// SPDX-License-Identifier: GPL-2.0

//! Tests of `interleave` against a naive round-by-round reference.

use mdwrite_common::interleave::{
    for_each_sent_place, run_places, sent_before, Burst, InterleaveError, RoundRobin, Turn,
    DEFAULT_QUANTUM,
};
use proptest::{prelude::*, test_runner::TestCaseError};

/// Builds the order round by round: each non-empty queue, ascending, sends
/// `min(quantum, remaining)` packets; rounds end with `round_end`.
fn naive_order(counts: &[u64], quantum: u32) -> Vec<Turn> {
    let mut left = counts.to_vec();
    let mut order = Vec::new();
    loop {
        let round: Vec<usize> = (0..left.len()).filter(|&q| left[q] > 0).collect();
        if round.is_empty() {
            break;
        }
        for q in round {
            let n = left[q].min(u64::from(quantum));
            for _ in 0..n {
                order.push(Turn {
                    queue: q,
                    round_end: false,
                    last: false,
                });
            }
            left[q] -= n;
        }
        order.last_mut().unwrap().round_end = true;
    }
    if let Some(t) = order.last_mut() {
        t.last = true;
    }
    order
}

/// Runs `rr` to its end into `got`, turn by turn (`next_burst`) or, where
/// `singles` says so in turn, packet by packet (`next`), so that a turn
/// may start with `next` and end with `next_burst`; checks each turn's
/// `before` against `counts` and what `got` has already.
fn finish(
    rr: &mut RoundRobin<'_>,
    counts: &[u64],
    singles: &[bool],
    got: &mut Vec<Turn>,
) -> Result<(), TestCaseError> {
    let mut pick = singles.iter().cycle();
    loop {
        if singles.is_empty() || !*pick.next().unwrap() {
            let Some(Burst {
                queue,
                packets,
                round_end,
                last,
                before,
            }) = rr.next_burst()
            else {
                break;
            };
            prop_assert!(packets >= 1);
            // What the queue had left: all of its packets at its first
            // turn (paced calls start its clock then).
            let sent = got.iter().filter(|t| t.queue == queue).count() as u64;
            prop_assert_eq!(before, counts[queue] - sent);
            for k in 0..packets {
                let end = k + 1 == packets;
                got.push(Turn {
                    queue,
                    round_end: round_end && end,
                    last: last && end,
                });
            }
        } else {
            let Some(turn) = rr.next() else {
                break;
            };
            got.push(turn);
        }
    }
    prop_assert_eq!(rr.next_burst(), None);
    Ok(())
}

/// Runs the round robin over `counts` to the end.
fn run(counts: &[u64], quantum: u32) -> Vec<Turn> {
    let mut remaining = counts.to_vec();
    let mut active = vec![u32::MAX; counts.iter().filter(|&&c| c > 0).count()];
    let order: Vec<Turn> = RoundRobin::new(&mut remaining, &mut active, quantum)
        .unwrap()
        .collect();
    assert!(remaining.iter().all(|&r| r == 0));
    order
}

#[test]
fn examples() {
    let q = |order: Vec<Turn>| order.iter().map(|t| t.queue).collect::<Vec<_>>();
    assert_eq!(q(run(&[3, 0, 1, 2], 1)), [0, 2, 3, 0, 3, 0]);
    assert_eq!(q(run(&[3, 0, 1, 2], 2)), [0, 0, 2, 3, 3, 0]);
    assert_eq!(q(run(&[5], 2)), [0, 0, 0, 0, 0]);
    assert_eq!(run(&[], 1), []);
    assert_eq!(run(&[0, 0], 1), []);
    let order = run(&[1, 2], 1);
    let flags: Vec<(bool, bool)> = order.iter().map(|t| (t.round_end, t.last)).collect();
    assert_eq!(flags, [(false, false), (true, false), (true, true)]);
}

#[test]
fn errors() {
    let mut remaining = [1, 0, 2];
    let mut active = [0u32; 3];
    assert_eq!(
        RoundRobin::new(&mut remaining, &mut active, 0).err(),
        Some(InterleaveError::ZeroQuantum)
    );
    let mut short = [0u32; 1];
    assert_eq!(
        RoundRobin::new(&mut remaining, &mut short, DEFAULT_QUANTUM).err(),
        Some(InterleaveError::ActiveTooShort)
    );
    let mut exact = [0u32; 2];
    assert!(RoundRobin::new(&mut remaining, &mut exact, DEFAULT_QUANTUM).is_ok());
}

#[test]
fn stopping_early_leaves_the_counts() {
    let mut remaining = [3, 1, 2];
    let mut active = [0u32; 3];
    let first: Vec<usize> = RoundRobin::new(&mut remaining, &mut active, 1)
        .unwrap()
        .take(4)
        .map(|t| t.queue)
        .collect();
    assert_eq!(first, [0, 1, 2, 0]);
    assert_eq!(remaining, [1, 0, 1]);
}

proptest! {
    #[test]
    fn matches_reference(
        counts in proptest::collection::vec(prop_oneof![Just(0u64), 0u64..5, 0u64..40], 0..24),
        quantum in prop_oneof![Just(1u32), 1u32..6, Just(u32::MAX)],
        spare in 0usize..3,
    ) {
        let expected = naive_order(&counts, quantum);
        let mut remaining = counts.clone();
        let mut active = vec![u32::MAX; counts.iter().filter(|&&c| c > 0).count() + spare];
        let got: Vec<Turn> = RoundRobin::new(&mut remaining, &mut active, quantum).unwrap().collect();
        prop_assert_eq!(&got, &expected);
        prop_assert!(remaining.iter().all(|&r| r == 0));

        // Each queue sends exactly its count.
        for (q, &c) in counts.iter().enumerate() {
            prop_assert_eq!(got.iter().filter(|t| t.queue == q).count() as u64, c);
        }
        // Only the very last turn is `last`, and it ends a round.
        prop_assert_eq!(got.iter().filter(|t| t.last).count(), usize::from(!got.is_empty()));
        if let Some(t) = got.last() {
            prop_assert!(t.last && t.round_end);
        }
        // With quantum 1, every queue's first packet leaves before any
        // queue's second.
        if quantum == 1 {
            let mut seen = vec![0u64; counts.len()];
            let mut second_seen = false;
            for t in &got {
                seen[t.queue] += 1;
                if seen[t.queue] == 1 {
                    prop_assert!(!second_seen, "a first packet after a second");
                } else {
                    second_seen = true;
                }
            }
        }
    }

    #[test]
    fn short_active_is_rejected(counts in proptest::collection::vec(0u64..3, 1..20)) {
        let nonempty = counts.iter().filter(|&&c| c > 0).count();
        prop_assume!(nonempty > 0);
        let mut remaining = counts.clone();
        let mut active = vec![0u32; nonempty - 1];
        prop_assert_eq!(RoundRobin::new(&mut remaining, &mut active, 1).err(), Some(InterleaveError::ActiveTooShort));
    }
}

#[test]
fn exhausted_queues_are_not_rescanned() {
    // 100,000 queues of one packet, then one of 1,000,000: rescanning the
    // exhausted queues every round would take 10^11 steps.
    let mut remaining = vec![1u64; 100_001];
    remaining[100_000] = 1_000_000;
    let mut active = vec![0u32; remaining.len()];
    let start = std::time::Instant::now();
    let rr = RoundRobin::new(&mut remaining, &mut active, 1).unwrap();
    assert_eq!(rr.count(), 1_100_000);
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

proptest! {
    /// Turn by turn, the order is the same as packet by packet, also when
    /// a caller starts a turn with `next` and finishes it with
    /// `next_burst`.
    #[test]
    fn bursts_flatten_to_the_order(
        counts in proptest::collection::vec(prop_oneof![Just(0u64), 0u64..5, 0u64..40], 0..24),
        quantum in prop_oneof![Just(1u32), 1u32..6, Just(u32::MAX)],
        singles in proptest::collection::vec(any::<bool>(), 0..64),
    ) {
        let expected = naive_order(&counts, quantum);
        let mut remaining = counts.clone();
        let mut active = vec![u32::MAX; counts.iter().filter(|&&c| c > 0).count()];
        let mut rr = RoundRobin::new(&mut remaining, &mut active, quantum).unwrap();
        let mut got: Vec<Turn> = Vec::new();
        finish(&mut rr, &counts, &singles, &mut got)?;
        prop_assert_eq!(&got, &expected);
        prop_assert!(remaining.iter().all(|&r| r == 0));
    }
}

proptest! {
    /// A caller that sends the full rounds itself (`full_rounds`), queue
    /// by queue, then the rest of the order turn by turn, sends the
    /// reference order; the full rounds are all rounds in which every
    /// queue keeps packets.
    #[test]
    fn full_rounds_then_bursts_match_reference(
        base in 1u64..40,
        extra in proptest::collection::vec(prop_oneof![Just(None), (0u64..6).prop_map(Some)], 0..24),
        quantum in prop_oneof![Just(1u32), 1u32..6, Just(u32::MAX)],
        singles in proptest::collection::vec(any::<bool>(), 0..8),
    ) {
        let counts: Vec<u64> = extra.iter().map(|e| e.map_or(0, |x| base + x)).collect();
        let expected = naive_order(&counts, quantum);
        let mut remaining = counts.clone();
        let mut active = vec![u32::MAX; counts.iter().filter(|&&c| c > 0).count()];
        let mut rr = RoundRobin::new(&mut remaining, &mut active, quantum).unwrap();
        let mut got: Vec<Turn> = Vec::new();
        let every_queue = !counts.is_empty() && counts.iter().all(|&c| c > 0);
        match rr.full_rounds() {
            Some((rounds, q, left)) => {
                prop_assert!(every_queue);
                prop_assert_eq!(q, u64::from(quantum));
                let smallest = *counts.iter().min().unwrap();
                // The most rounds in which every queue keeps packets.
                prop_assert!(rounds * q < smallest);
                prop_assert!((rounds + 1) * q >= smallest);
                for _ in 0..rounds {
                    let n = left.len();
                    for (queue, count) in left.iter_mut().enumerate() {
                        *count -= q;
                        for k in 0..q {
                            let end = k + 1 == q && queue + 1 == n;
                            got.push(Turn { queue, round_end: end, last: false });
                        }
                    }
                }
            }
            None => prop_assert!(!every_queue),
        }
        finish(&mut rr, &counts, &singles, &mut got)?;
        prop_assert_eq!(&got, &expected);
        prop_assert!(remaining.iter().all(|&r| r == 0));
    }
}

#[test]
fn full_rounds_only_at_the_start_with_every_queue() {
    let mut remaining = [3u64, 0, 2];
    let mut active = [0u32; 3];
    let mut rr = RoundRobin::new(&mut remaining, &mut active, 1).unwrap();
    assert_eq!(rr.full_rounds().map(|(r, q, _)| (r, q)), None);

    let mut remaining = [3u64, 5, 2];
    let mut active = [0u32; 3];
    let mut rr = RoundRobin::new(&mut remaining, &mut active, 1).unwrap();
    assert_eq!(rr.full_rounds().map(|(r, q, _)| (r, q)), Some((1, 1)));
    // Mid-round: none.
    assert_eq!(rr.next_burst().map(|b| b.queue), Some(0));
    assert_eq!(rr.full_rounds().map(|(r, q, _)| (r, q)), None);
}

proptest! {
    /// Queues of equal counts sent each in a row, each packet put in the
    /// place `run_places` gives it, are in the reference order of one
    /// packet per turn: every
    /// packet of every queue once, each queue's in its order. `take_all`
    /// ends the order.
    #[test]
    fn equal_queues_in_a_row_then_placed_match_reference(
        queues in 1usize..40,
        count in 1u64..20,
        quantum in prop_oneof![Just(1u32), 1u32..6, Just(u32::MAX)],
    ) {
        let counts = vec![count; queues];
        // The places are those of one packet per turn.
        let expected = naive_order(&counts, 1);
        let mut remaining = counts.clone();
        let mut active = vec![0u32; queues];
        let mut rr = RoundRobin::new(&mut remaining, &mut active, quantum).unwrap();
        let total = queues as u64 * count;
        // Too many for the caller: none.
        prop_assert_eq!(rr.equal_counts(total - 1), None);
        prop_assert_eq!(rr.equal_counts(total), Some((count, quantum)));
        rr.take_all();
        prop_assert_eq!(rr.next_burst(), None);
        prop_assert_eq!(rr.next(), None);
        prop_assert!(remaining.iter().all(|&r| r == 0));
        // Packet `k` of queue `q`, sent `q * count + k`-th, goes to the
        // place `run_places` gives it.
        let n = queues * count as usize;
        let mut places = Vec::new();
        for q in 0..queues {
            let (first, step) = run_places(queues, count as usize, q).unwrap();
            places.extend((0..count as usize).map(|k| first + k * step));
        }
        prop_assert_eq!(run_places(queues, count as usize, queues), None);
        prop_assert_eq!(places.len(), n);
        let mut placed = vec![None; n];
        for (sent, &to) in places.iter().enumerate() {
            prop_assert!(to < n);
            prop_assert!(placed[to].is_none());
            placed[to] = Some(sent);
        }
        let order: Vec<usize> = placed.into_iter().map(Option::unwrap).collect();
        // Queue `i / count`, and each queue's packets in their order.
        let got: Vec<usize> = order.iter().map(|&i| i / count as usize).collect();
        let want: Vec<usize> = expected.iter().map(|t| t.queue).collect();
        prop_assert_eq!(got, want);
        for q in 0..queues {
            let mine: Vec<usize> = order.iter().copied().filter(|&i| i / count as usize == q).collect();
            prop_assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

#[test]
fn equal_counts_only_for_equal_counts_at_the_start() {
    // Unequal counts, or an empty queue: none, the order as it was.
    for counts in [[3u64, 2, 3], [3, 0, 3]] {
        let mut remaining = counts;
        let mut active = [0u32; 3];
        let rr = RoundRobin::new(&mut remaining, &mut active, 1).unwrap();
        assert_eq!(rr.equal_counts(64), None);
        assert_eq!(rr.count() as u64, counts.iter().sum::<u64>());
    }
    // Started: none.
    let mut remaining = [2u64, 2];
    let mut active = [0u32; 2];
    let mut rr = RoundRobin::new(&mut remaining, &mut active, 1).unwrap();
    assert_eq!(rr.next().map(|t| t.queue), Some(0));
    assert_eq!(rr.equal_counts(64), None);
    // No queues: none.
    let rr = RoundRobin::new(&mut [], &mut [], 1).unwrap();
    assert_eq!(rr.equal_counts(64), None);
}

proptest! {
    /// A send queue by queue that stopped after `sent` packets placed
    /// them where `run_places` puts the first `sent`, in that order.
    #[test]
    fn sent_places_are_the_first_given(
        queues in 1usize..20,
        count in 1usize..10,
        cut in 0.0f64..1.2,
    ) {
        let n = queues * count;
        let sent = ((n as f64) * cut) as usize;
        let mut all = Vec::new();
        for q in 0..queues {
            let (first, step) = run_places(queues, count, q).unwrap();
            all.extend((0..count).map(|k| first + k * step));
        }
        let mut got = Vec::new();
        for_each_sent_place(queues, count, sent, |p| got.push(p));
        prop_assert_eq!(&got[..], &all[..sent.min(n)]);
    }
}

proptest! {
    /// A send queue by queue that stopped in queue `q` after `given`
    /// places of it, the last of them filled or not: `sent_before` counts
    /// what it placed, from where its next place is.
    #[test]
    fn sent_before_counts_what_was_placed(
        queues in 1usize..20,
        count in 1usize..10,
        q_pick in 0usize..1000,
        given_pick in 0usize..1000,
        filled in any::<bool>(),
    ) {
        let q = q_pick % queues;
        let given = given_pick % (count + 1);
        let (first, step) = run_places(queues, count, q).unwrap();
        let next = first + given * step;
        let placed = q * count + match (given, filled) {
            (0, _) => 0,
            (g, true) => g,
            (g, false) => g - 1,
        };
        prop_assert_eq!(sent_before(queues, count, q, next, filled && given > 0), placed);
    }
}
