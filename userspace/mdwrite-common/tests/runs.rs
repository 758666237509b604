// SPDX-License-Identifier: GPL-2.0

//! Tests of `runs`: every entry finds its own pages in the page array the
//! runs describe, each page is counted once per run, and `blame` names the
//! entry that pinning entry by entry would have failed on.

use mdwrite_common::runs::{blame, Placed, Run, RunError, RunLayout, Source};
use proptest::prelude::*;

/// An entry: where its pages are, its first page and page count.
type Entry = (Source, u64, u64);

/// Lays out `entries`; returns each entry's page base and the runs.
fn lay_out(entries: &[Entry]) -> (Vec<u64>, Vec<Run>, RunLayout) {
    let mut layout = RunLayout::default();
    let mut bases = Vec::new();
    let mut runs = Vec::new();
    for (i, &(source, first, pages)) in entries.iter().enumerate() {
        let Placed { page_base, closed } = layout.place(source, first, pages, i as u32).unwrap();
        bases.push(page_base);
        runs.extend(closed);
    }
    runs.extend(layout.finish());
    (bases, runs, layout)
}

/// The page array the runs describe: (source, page number) per page.
fn page_array(runs: &[Run]) -> Vec<(Source, u64)> {
    runs.iter()
        .flat_map(|r| (r.first..r.first + r.pages).map(move |p| (r.source, p)))
        .collect()
}

/// The open run of `layout`, left as it is.
fn open_run(mut layout: RunLayout) -> Option<Run> {
    layout.finish()
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        3 => Just(Source::User),
        1 => (0usize..2).prop_map(Source::Buffer),
    ]
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec((source(), 0u64..40, 1u64..6), 1..40)
}

proptest! {
    #[test]
    fn every_entry_finds_its_pages(entries in entries()) {
        let (bases, runs, layout) = lay_out(&entries);
        let array = page_array(&runs);
        prop_assert_eq!(array.len() as u64, layout.total_pages());
        let user: u64 = runs.iter().filter(|r| r.source == Source::User).map(|r| r.pages).sum();
        prop_assert_eq!(user, layout.pinned_pages());
        for (i, &(source, first, pages)) in entries.iter().enumerate() {
            for k in 0..pages {
                let at = (bases[i] + k) as usize;
                prop_assert_eq!(array.get(at), Some(&(source, first + k)), "entry {} page {}", i, k);
            }
        }
        // A run is its entries' pages, without gaps or extra pages.
        for (r, next) in runs.iter().zip(runs.iter().skip(1).map(|n| n.entry as usize).chain([entries.len()])) {
            let covered: std::collections::BTreeSet<u64> = entries[r.entry as usize..next]
                .iter()
                .flat_map(|&(_, f, n)| f..f + n)
                .collect();
            let want: std::collections::BTreeSet<u64> = (r.first..r.first + r.pages).collect();
            prop_assert_eq!(covered, want);
        }
    }

    #[test]
    fn blame_matches_pinning_entry_by_entry(
        entries in entries(),
        bad in prop::collection::btree_set(0u64..46, 0..4),
    ) {
        let (_, runs, _) = lay_out(&entries);
        // Entry by entry: the first user entry with a bad page fails.
        let model = entries.iter().position(|&(s, f, n)| {
            s == Source::User && (f..f + n).any(|p| bad.contains(&p))
        });
        // By runs: the first user run with a bad page fails at its
        // lowest bad page (pages are pinned in order).
        let by_runs = runs.iter().find_map(|r| {
            let failing = (r.first..r.first + r.pages).find(|p| bad.contains(p));
            match (r.source, failing) {
                (Source::User, Some(p)) => {
                    let tail = entries[r.entry as usize..].iter().copied();
                    blame(r, p - r.first, tail).map(|i| r.entry as usize + i)
                }
                _ => None,
            }
        });
        prop_assert_eq!(by_runs, model);
    }

    /// `join` is `place_base` for an entry that joins the open run: the
    /// same page base and the same layout after it; otherwise it changes
    /// nothing. Page numbers near `u64::MAX` check the overflow cases.
    #[test]
    fn join_is_place_base_when_it_joins(
        entries in entries(),
        high in any::<bool>(),
        pages in prop_oneof![1u64..6, Just(0), Just(u64::MAX)],
    ) {
        let shift = if high { u64::MAX - 48 } else { 0 };
        let mut layout = RunLayout::default();
        for (i, &(source, first, n)) in entries.iter().enumerate() {
            let (first, n) = match i + 1 == entries.len() {
                true => (first + shift, pages),
                false => (first + shift, n),
            };
            let before = layout;
            let mut placed = layout;
            let want = placed.place_base(source, first, n, i as u32);
            match layout.join(source, first, n) {
                Some(base) => {
                    prop_assert_eq!(Ok(base), want);
                    prop_assert_eq!(placed.take_closed(), None);
                    prop_assert_eq!(layout.total_pages(), placed.total_pages());
                    prop_assert_eq!(layout.pinned_pages(), placed.pinned_pages());
                    prop_assert_eq!(open_run(layout), open_run(placed));
                }
                None => {
                    prop_assert_eq!(layout.total_pages(), before.total_pages());
                    prop_assert_eq!(layout.pinned_pages(), before.pinned_pages());
                    prop_assert_eq!(open_run(layout), open_run(before));
                    layout = placed;
                    if want.is_err() {
                        break;
                    }
                    layout.take_closed();
                }
            }
        }
    }
}

#[test]
fn same_payload_to_many_destinations_is_one_run() {
    let entries: Vec<Entry> = (0..512).map(|_| (Source::User, 100, 1)).collect();
    let (bases, runs, layout) = lay_out(&entries);
    assert_eq!(runs.len(), 1);
    assert!(bases.iter().all(|&b| b == 0));
    assert_eq!(layout.pinned_pages(), 1);
}

#[test]
fn consecutive_chunks_are_one_run_and_gaps_are_not() {
    // Three chunks in touching pages, then one after a gap.
    let entries = [
        (Source::User, 10, 2),
        (Source::User, 11, 2),
        (Source::User, 13, 1),
        (Source::User, 20, 1),
        (Source::Buffer(0), 13, 1),
    ];
    let (bases, runs, layout) = lay_out(&entries);
    assert_eq!(bases, vec![0, 1, 3, 4, 5]);
    assert_eq!(runs.len(), 3);
    assert_eq!(layout.total_pages(), 6);
    assert_eq!(layout.pinned_pages(), 5);
}

#[test]
fn bad_input() {
    let mut layout = RunLayout::default();
    assert_eq!(layout.place(Source::User, 1, 0, 0), Err(RunError::NoPages));
    assert_eq!(
        layout.place(Source::User, u64::MAX, 2, 0),
        Err(RunError::Overflow)
    );
    assert_eq!(layout.finish(), None);
}

/// An error leaves the layout as it was: the open run, the counts, and no
/// closed run to take.
#[test]
fn error_changes_nothing() {
    let mut layout = RunLayout::default();
    let big = u64::MAX - 5;
    assert_eq!(layout.place_base(Source::Buffer(0), 0, big, 0), Ok(0));
    assert_eq!(layout.take_closed(), None);
    assert_eq!(layout.place_base(Source::User, 10, 2, 1), Ok(big));
    assert_eq!(
        layout.take_closed(),
        Some(Run {
            source: Source::Buffer(0),
            first: 0,
            pages: big,
            entry: 0,
        })
    );
    // Growing the open run past a u64 of pages in all.
    assert_eq!(
        layout.place_base(Source::User, 11, 10, 2),
        Err(RunError::Overflow)
    );
    assert_eq!((layout.total_pages(), layout.pinned_pages()), (big + 2, 2));
    // A new run past it: the open run is not closed.
    assert_eq!(
        layout.place_base(Source::Buffer(1), 0, 10, 3),
        Err(RunError::Overflow)
    );
    assert_eq!(layout.take_closed(), None);
    // The open run is still entry 1's: the next entry joins it.
    assert_eq!(layout.place_base(Source::User, 11, 2, 4), Ok(big + 1));
    assert_eq!(layout.take_closed(), None);
    assert_eq!((layout.total_pages(), layout.pinned_pages()), (big + 3, 3));
    assert_eq!(
        layout.finish(),
        Some(Run {
            source: Source::User,
            first: 10,
            pages: 3,
            entry: 1,
        })
    );
}
