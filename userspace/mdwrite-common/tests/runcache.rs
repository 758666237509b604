// SPDX-License-Identifier: GPL-2.0

//! Tests of `runcache`: the pin cache's bookkeeping driven by random
//! calls against a plain model of what it must keep.

use mdwrite_common::runcache::RunCache;
use proptest::prelude::*;

/// Slots of the cache under test.
const N: usize = 4;

/// What a call does with the cache.
#[derive(Debug, Clone)]
enum Op {
    /// A call starts.
    Begin,
    /// A run of pages `first..first + n` is looked up and, if missing,
    /// cached (within `max` pages in all).
    Get { first: u64, n: u64, max: u64 },
    /// The memory of the value with this id changes: it is invalid from
    /// now on.
    Invalidate(u32),
    /// The cache gives way.
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Begin),
        6 => (0u64..24, 1u64..6, 4u64..16).prop_map(|(first, n, max)| Op::Get { first, n, max }),
        1 => (0u32..40).prop_map(Op::Invalidate),
        1 => Just(Op::Clear),
    ]
}

/// A model value: an id, with the run it was cached for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Val {
    id: u32,
    first: u64,
    pages: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the calls: a found value is valid and its run holds the
    /// pages asked for, at the index given; a lookup misses only when no
    /// valid cached value holds them; making room never drops a valid
    /// value the current call used, keeps the pages within the limit and
    /// at most N values, and fails only when every value is the call's
    /// own (or the run is larger than the limit).
    #[test]
    fn finds_valid_runs_and_spares_the_call(ops in prop::collection::vec(op(), 1..80)) {
        let mut cache: RunCache<Val, N> = RunCache::default();
        // The model: what is cached, and which ids are invalid.
        let mut model: Vec<Val> = Vec::new();
        let mut invalid: Vec<u32> = Vec::new();
        let mut mine: Vec<u32> = Vec::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Begin => {
                    cache.begin_call();
                    mine.clear();
                }
                Op::Invalidate(id) => invalid.push(id),
                Op::Clear => {
                    prop_assert_eq!(cache.clear(), !model.is_empty());
                    model.clear();
                }
                Op::Get { first, n, max } => {
                    let valid = |v: &Val| !invalid.contains(&v.id);
                    let holds = |v: &Val| first >= v.first && first + n <= v.first + v.pages;
                    match cache.find(first, n, valid) {
                        Some((slot, at)) => {
                            let v = *cache.get(slot).expect("a found slot has a value");
                            prop_assert!(valid(&v) && holds(&v), "{v:?} for {first}+{n}");
                            prop_assert_eq!(at, first - v.first);
                            prop_assert!(model.contains(&v));
                            mine.push(v.id);
                        }
                        None => {
                            prop_assert!(!model.iter().any(|v| valid(v) && holds(v)));
                            let before = model.clone();
                            let room = cache.make_room(n, max, valid);
                            // The model after: invalid values dropped, and
                            // whatever else the cache let go of.
                            model.retain(|v| valid(v));
                            let kept: Vec<Val> = model
                                .iter()
                                .copied()
                                .filter(|v| (0..N).any(|s| cache.get(s) == Some(v)))
                                .collect();
                            for v in &before {
                                if valid(v) && mine.contains(&v.id) {
                                    prop_assert!(kept.contains(v), "the call's own {v:?} dropped");
                                }
                            }
                            model = kept;
                            prop_assert_eq!(cache.len(), model.len());
                            match room {
                                Some(slot) => {
                                    prop_assert!(cache.get(slot).is_none());
                                    let pages: u64 = model.iter().map(|v| v.pages).sum();
                                    prop_assert!(pages + n <= max);
                                    let v = Val { id: next_id, first, pages: n };
                                    next_id += 1;
                                    prop_assert!(cache.put(slot, first, n, v));
                                    prop_assert!(!cache.put(slot, first, n, v));
                                    model.push(v);
                                    mine.push(v.id);
                                }
                                None => {
                                    // Only the call's own are left, or the
                                    // run cannot fit at all.
                                    prop_assert!(
                                        n > max || model.iter().all(|v| mine.contains(&v.id)),
                                        "no room with {model:?}, the call's {mine:?}"
                                    );
                                }
                            }
                        }
                    }
                    prop_assert!(cache.len() <= N);
                    prop_assert_eq!(cache.pages(), model.iter().map(|v| v.pages).sum::<u64>());
                }
            }
        }
    }
}

/// A call of more runs than the cache holds keeps its first ones: the
/// next runs find no room rather than evicting them.
#[test]
fn a_long_call_keeps_its_first_runs() {
    let mut cache: RunCache<u32, 2> = RunCache::default();
    cache.begin_call();
    for (id, first) in [(0u32, 0u64), (1, 10)] {
        assert_eq!(cache.find(first, 1, |_| true), None);
        let slot = cache.make_room(1, 100, |_| true).expect("room");
        assert!(cache.put(slot, first, 1, id));
    }
    assert_eq!(cache.find(20, 1, |_| true), None);
    assert_eq!(cache.make_room(1, 100, |_| true), None);
    // The next call may evict them, the least recently used first.
    cache.begin_call();
    assert!(cache.find(10, 1, |_| true).is_some());
    let slot = cache.make_room(1, 100, |_| true).expect("room");
    assert!(cache.put(slot, 20, 1, 2));
    assert!(cache.find(0, 1, |_| true).is_none());
    assert!(cache.find(10, 1, |_| true).is_some());
    // A run inside a cached one is found at its offset.
    assert_eq!(cache.find(10, 1, |&v| v == 1).map(|(_, at)| at), Some(0));
}
