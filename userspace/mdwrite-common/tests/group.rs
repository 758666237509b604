// SPDX-License-Identifier: GPL-2.0

//! Tests of `group`: grouping a call's entries by destination slot.

use mdwrite_common::group::{group_by_slot, GroupError, Grouping, SlotRanges};
use proptest::prelude::*;

/// Slots as the module keeps them: entries counted, first position set.
#[derive(Debug, Default)]
struct Slots {
    counts: Vec<usize>,
    firsts: Vec<usize>,
}

impl SlotRanges for Slots {
    fn slots(&self) -> usize {
        self.counts.len()
    }
    fn count(&self, slot: usize) -> usize {
        self.counts[slot]
    }
    fn set_first(&mut self, slot: usize, first: usize) {
        self.firsts[slot] = first;
    }
}

/// The slot of each entry, as the module gives them: in order of first
/// appearance of each destination in `dests`; and whether `Grouping` said
/// the entries came grouped.
fn slots_of(dests: &[u8]) -> (Vec<u32>, Slots, bool) {
    let mut seen: Vec<u8> = Vec::new();
    let mut slots = Slots::default();
    let mut g = Grouping::new();
    let mut out = Vec::new();
    for &d in dests {
        let slot = match seen.iter().position(|&x| x == d) {
            Some(s) => s,
            None => {
                seen.push(d);
                slots.counts.push(0);
                slots.firsts.push(usize::MAX);
                seen.len() - 1
            }
        };
        g.entry(slot, seen.len());
        slots.counts[slot] += 1;
        out.push(slot as u32);
    }
    (out, slots, g.grouped())
}

proptest! {
    /// `Grouping` says grouped exactly when each destination's entries are
    /// one after the other.
    #[test]
    fn grouping_is_contiguity(dests in prop::collection::vec(0u8..6, 0..40)) {
        let (_, _, grouped) = slots_of(&dests);
        let mut runs: Vec<u8> = dests.clone();
        runs.dedup();
        let mut distinct = runs.clone();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(grouped, runs.len() == distinct.len());
    }

    /// The grouped order is the stable sort of the entries by slot, and
    /// each slot's range starts at its `first`; when `Grouping` said
    /// grouped, that order is the identity and the firsts are each slot's
    /// first entry.
    #[test]
    fn group_is_stable_sort(dests in prop::collection::vec(0u8..8, 0..60)) {
        let (slot_of, mut slots, grouped) = slots_of(&dests);
        let mut order = vec![u32::MAX; dests.len()];
        let mut fill = vec![0u32; slots.counts.len()];
        group_by_slot(|i| slot_of.get(i).copied(), &mut slots, &mut order, &mut fill).unwrap();
        let mut want: Vec<u32> = (0..dests.len() as u32).collect();
        want.sort_by_key(|&i| slot_of[i as usize]);
        prop_assert_eq!(&order, &want);
        for (s, &first) in slots.firsts.iter().enumerate() {
            let range = &order[first..first + slots.counts[s]];
            prop_assert!(range.iter().all(|&i| slot_of[i as usize] == s as u32));
        }
        if grouped {
            prop_assert!(order.iter().enumerate().all(|(i, &e)| e == i as u32));
            for (s, &first) in slots.firsts.iter().enumerate() {
                prop_assert_eq!(slot_of.iter().position(|&x| x == s as u32), Some(first));
            }
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let mut slots = Slots {
        counts: vec![1, 1],
        firsts: vec![0, 0],
    };
    let mut order = [0u32; 2];
    let mut fill = [0u32; 2];
    // An entry naming a slot that does not exist.
    assert_eq!(
        group_by_slot(
            |i| [0, 2].get(i).copied(),
            &mut slots,
            &mut order,
            &mut fill
        ),
        Err(GroupError::BadSlot)
    );
    // Counts that do not match the entries' slots.
    assert_eq!(
        group_by_slot(
            |i| [1, 1].get(i).copied(),
            &mut slots,
            &mut order,
            &mut fill
        ),
        Err(GroupError::BadCounts)
    );
    // Counts that do not add up to the entries.
    assert_eq!(
        group_by_slot(
            |i| [0, 1].get(i).copied(),
            &mut slots,
            &mut order[..1],
            &mut fill
        ),
        Err(GroupError::BadCounts)
    );
    // Scratch space too short.
    assert_eq!(
        group_by_slot(
            |i| [0, 1].get(i).copied(),
            &mut slots,
            &mut order,
            &mut fill[..1]
        ),
        Err(GroupError::BadCounts)
    );
}
