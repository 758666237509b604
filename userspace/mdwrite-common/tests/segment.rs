// SPDX-License-Identifier: GPL-2.0

//! Tests of `segment` against naive references.

use mdwrite_common::segment::{
    packet_count, page_frags, pages_spanned, split_two, total_packets, EntryLens, EntrySpan, Frag,
    Packet, PagedCursor, SegmentCursor, SegmentError, Segments, MAX_PAGE_SHIFT,
};
use proptest::prelude::*;

/// Entry lengths for the paged cursor's tests: empty, short and long.
fn entry_lens() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(prop_oneof![Just(0u64), 1u64..20, 1u64..20_000], 0..10)
}

/// Cuts every entry into chunks of `max` bytes, one by one.
fn naive_packets(lens: &[u64], max: u16) -> Vec<Packet> {
    let mut out = Vec::new();
    for (entry, &len) in lens.iter().enumerate() {
        let mut offset = 0;
        while offset < len {
            let chunk = (len - offset).min(u64::from(max));
            out.push(Packet {
                entry,
                offset,
                len: chunk as u16,
            });
            offset += chunk;
        }
    }
    out
}

/// The byte a virtual address space holds at `addr`.
fn memory(addr: u64) -> u8 {
    (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// Entries as the kernel might hold them: structs with more than a length.
struct Entry {
    /// Unused here; stands for the kernel's other fields.
    _addr: u64,
    /// The entry's length.
    len: u64,
}

/// The kernel's kind of implementation of `EntryLens`.
struct Entries<'a>(&'a [Entry]);

impl EntryLens for Entries<'_> {
    fn entry_len(&self, index: usize) -> Option<u64> {
        self.0.get(index).map(|e| e.len)
    }
}

#[test]
fn packet_count_examples() {
    assert_eq!(packet_count(0, 1400), Err(SegmentError::ZeroLength));
    assert_eq!(packet_count(1, 0), Err(SegmentError::ZeroMaxPayload));
    assert_eq!(packet_count(0, 0), Err(SegmentError::ZeroLength));
    assert_eq!(packet_count(1, 1400), Ok(1));
    assert_eq!(packet_count(1400, 1400), Ok(1));
    assert_eq!(packet_count(1401, 1400), Ok(2));
    assert_eq!(packet_count(u64::MAX, 1), Ok(u64::MAX));
    assert_eq!(packet_count(u64::MAX, 2), Ok(1 << 63));
    assert_eq!(packet_count(u64::MAX, u16::MAX), Ok(u64::MAX / 65535));
}

#[test]
fn cursor_examples() {
    assert_eq!(SegmentCursor::new(0), Err(SegmentError::ZeroMaxPayload));
    assert!(Segments::new(&[1u64][..], 0).is_err());
    let lens = [0u64, 5, 0, 0, 2, 0];
    let got: Vec<Packet> = Segments::new(&lens[..], 2).unwrap().collect();
    let p = |entry, offset, len| Packet { entry, offset, len };
    assert_eq!(got, [p(1, 0, 2), p(1, 2, 2), p(1, 4, 1), p(4, 0, 2)]);
    assert_eq!(total_packets(&lens[..], 2), Ok(4));
    assert_eq!(total_packets(&[0u64; 3][..], 2), Ok(0));
    assert_eq!(
        total_packets(&lens[..], 0),
        Err(SegmentError::ZeroMaxPayload)
    );
    assert_eq!(
        total_packets(&[u64::MAX, 1][..], 1),
        Err(SegmentError::Overflow)
    );
    // Huge entries: the cursor never overflows.
    let huge = [u64::MAX];
    let mut c = SegmentCursor::new(u16::MAX).unwrap();
    assert_eq!(c.next_packet(&huge[..]), Some(p(0, 0, u16::MAX)));
    let mut c = SegmentCursor::new(1).unwrap();
    assert_eq!(c.next_packet(&[][..] as &[u64]), None);
    assert_eq!(c.next_packet(&[3u64][..]), Some(p(0, 0, 1)));
}

#[test]
fn page_examples() {
    let f = |page, offset, len| Frag { page, offset, len };
    let frags: Vec<Frag> = page_frags(4000, 0, 200, 12).unwrap().collect();
    assert_eq!(frags, [f(0, 4000, 96), f(1, 0, 104)]);
    let frags: Vec<Frag> = page_frags(100, 8192, 4096, 12).unwrap().collect();
    assert_eq!(frags, [f(2, 100, 3996), f(3, 0, 100)]);
    assert_eq!(page_frags(0, 5, 0, 12).unwrap().count(), 0);
    assert_eq!(page_frags(0, 0, 1, 32), Err(SegmentError::InvalidPageShift));
    assert_eq!(
        page_frags(4096, 0, 1, 12),
        Err(SegmentError::InvalidPageOffset)
    );
    assert_eq!(page_frags(1, u64::MAX, 0, 12), Err(SegmentError::Overflow));
    assert_eq!(page_frags(0, u64::MAX, 1, 12), Err(SegmentError::Overflow));
    let frags: Vec<Frag> = page_frags(0, u64::MAX - 1, 1, 0).unwrap().collect();
    assert_eq!(frags, [f(u64::MAX - 1, 0, 1)]);
    let frags: Vec<Frag> = page_frags(1 << 30, 0, u32::MAX, 31).unwrap().collect();
    assert_eq!(
        frags,
        [
            f(0, 1 << 30, 1 << 30),
            f(1, 0, 1 << 31),
            f(2, 0, (1 << 30) - 1)
        ]
    );

    assert_eq!(pages_spanned(0, 0, 12), Ok(0));
    assert_eq!(pages_spanned(4095, 0, 12), Ok(0));
    assert_eq!(pages_spanned(0, 4096, 12), Ok(1));
    assert_eq!(pages_spanned(1, 4096, 12), Ok(2));
    assert_eq!(pages_spanned(4095, 1, 12), Ok(1));
    assert_eq!(pages_spanned(4095, 2, 12), Ok(2));
    assert_eq!(pages_spanned(0, u64::MAX, 0), Ok(u64::MAX));
    assert_eq!(pages_spanned(1, u64::MAX, 1), Err(SegmentError::Overflow));
    assert_eq!(
        pages_spanned(0, 1, MAX_PAGE_SHIFT + 1),
        Err(SegmentError::InvalidPageShift)
    );
    assert_eq!(
        pages_spanned(4096, 1, 12),
        Err(SegmentError::InvalidPageOffset)
    );
}

proptest! {
    #[test]
    fn packet_count_matches_reference(len in any::<u64>(), max in any::<u16>()) {
        let expected = if len == 0 {
            Err(SegmentError::ZeroLength)
        } else if max == 0 {
            Err(SegmentError::ZeroMaxPayload)
        } else {
            Ok(u128::from(len).div_ceil(u128::from(max)) as u64)
        };
        prop_assert_eq!(packet_count(len, max), expected);
    }

    #[test]
    fn segments_match_reference(
        lens in proptest::collection::vec(prop_oneof![Just(0u64), 0u64..20, 0u64..5000], 0..12),
        max in prop_oneof![1u16..4, 1u16..2000, Just(u16::MAX)],
    ) {
        let expected = naive_packets(&lens, max);
        let got: Vec<Packet> = Segments::new(&lens[..], max).unwrap().collect();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(total_packets(&lens[..], max), Ok(expected.len() as u64));

        // The same through a cursor over the kernel's kind of entries.
        let entries: Vec<Entry> = lens.iter().map(|&len| Entry { _addr: 0, len }).collect();
        let mut cursor = SegmentCursor::new(max).unwrap();
        let mut via_cursor = Vec::new();
        while let Some(p) = cursor.next_packet(&Entries(&entries)) {
            via_cursor.push(p);
        }
        prop_assert_eq!(cursor.next_packet(&Entries(&entries)), None);
        prop_assert_eq!(&via_cursor, &expected);

        // The properties, stated directly.
        for (i, p) in got.iter().enumerate() {
            prop_assert!(p.len >= 1 && p.len <= max);
            let len = lens[p.entry];
            prop_assert!(p.offset + u64::from(p.len) <= len);
            let last_of_entry = p.offset + u64::from(p.len) == len;
            if !last_of_entry {
                prop_assert_eq!(p.len, max);
                prop_assert_eq!(got[i + 1], Packet { entry: p.entry, offset: p.offset + u64::from(p.len), len: got[i + 1].len });
            }
            if p.offset == 0 && i > 0 {
                prop_assert!(got[i - 1].entry < p.entry);
            }
        }
        for (entry, &len) in lens.iter().enumerate() {
            let count = got.iter().filter(|p| p.entry == entry).count() as u64;
            let expected = if len == 0 { 0 } else { packet_count(len, max).unwrap() };
            prop_assert_eq!(count, expected);
        }
    }

    #[test]
    fn page_frags_cover_the_range(
        shift in prop_oneof![0u32..4, 12u32..13, 0u32..=MAX_PAGE_SHIFT],
        first in any::<u32>(),
        offset in prop_oneof![0u64..10_000, any::<u64>().prop_map(|x| x >> 2)],
        len in prop_oneof![0u32..10_000, any::<u32>()],
    ) {
        let page_size = 1u64 << shift;
        let first = u64::from(first) % page_size;
        // At most 10,000 frags.
        let len = (u64::from(len) % (page_size * 10_000)) as u32;
        let frags = page_frags(first as u32, offset, len, shift).unwrap();
        let hint = frags.len();
        // The entry's byte i lives at virtual address base + first + i, the
        // entry's page p at base + p * page_size, base page-aligned.
        let base = 7 << 40;
        let mut pos = offset;
        let mut count = 0;
        let mut highest = None;
        for (i, f) in frags.enumerate() {
            prop_assert!(f.len > 0);
            prop_assert!(u64::from(f.offset) + u64::from(f.len) <= page_size, "crosses a page");
            if i > 0 {
                prop_assert_eq!(f.offset, 0, "not maximal");
            }
            if u64::from(f.offset) + u64::from(f.len) < page_size {
                prop_assert_eq!(pos + u64::from(f.len), offset + u64::from(len), "not maximal");
            }
            let frag_addr = base + (f.page << shift) + u64::from(f.offset);
            prop_assert_eq!(frag_addr, base + first + pos, "not contiguous");
            // Compare a few bytes of the frag (all of them when small).
            for j in [0, f.len / 2, f.len - 1] {
                let j = u64::from(j);
                prop_assert_eq!(memory(frag_addr + j), memory(base + first + pos + j));
            }
            pos += u64::from(f.len);
            count += 1;
            highest = Some(f.page);
        }
        prop_assert_eq!(pos, offset + u64::from(len), "does not cover len bytes");
        prop_assert_eq!(hint, count);
        if offset == 0 {
            prop_assert_eq!(pages_spanned(first as u32, u64::from(len), shift), Ok(highest.map_or(0, |h| h + 1)));
        }
    }

    #[test]
    fn small_frags_reproduce_bytes(
        shift in 0u32..6,
        first in any::<u32>(),
        offset in 0u64..300,
        len in 0u32..300,
    ) {
        let page_size = 1u64 << shift;
        let first = u64::from(first) % page_size;
        // Pinned pages: copies of the virtual pages of the entry.
        let base = 3 << 20;
        let pages: Vec<Vec<u8>> = (0..pages_spanned(first as u32, offset + u64::from(len), shift).unwrap())
            .map(|p| (0..page_size).map(|o| memory(base + p * page_size + o)).collect())
            .collect();
        let mut bytes = Vec::new();
        for f in page_frags(first as u32, offset, len, shift).unwrap() {
            let page = &pages[f.page as usize];
            bytes.extend_from_slice(&page[f.offset as usize..(f.offset + f.len) as usize]);
        }
        let expected: Vec<u8> = (0..u64::from(len)).map(|i| memory(base + first + offset + i)).collect();
        prop_assert_eq!(bytes, expected);
    }

    #[test]
    fn pages_spanned_matches_reference(shift in 0u32..=MAX_PAGE_SHIFT, first in any::<u32>(), len in any::<u64>()) {
        let page_size = 1u128 << shift;
        let first = (u128::from(first) % page_size) as u32;
        let end = u128::from(first) + u128::from(len);
        let expected = if end > u128::from(u64::MAX) {
            Err(SegmentError::Overflow)
        } else if len == 0 {
            Ok(0)
        } else {
            Ok(end.div_ceil(page_size) as u64)
        };
        prop_assert_eq!(pages_spanned(first, len, shift), expected);
    }
}

/// The spans of entries laid out one after another in a page array, each
/// starting `offsets[i]` bytes into its first page.
fn spans_for(lens: &[u64], offsets: &[u32], shift: u32) -> Vec<EntrySpan> {
    let mut page = 0usize;
    lens.iter()
        .zip(offsets.iter().cycle())
        .map(|(&len, &off)| {
            let page_offset = off % (1 << shift);
            let span = EntrySpan {
                len,
                first_page: page,
                page_offset,
            };
            page += pages_spanned(page_offset, len, shift).unwrap() as usize;
            span
        })
        .collect()
}

proptest! {
    /// The paged cursor yields the segment cursor's packets, each located
    /// where `page_frags` puts its bytes.
    #[test]
    fn paged_cursor_matches_segments_and_frags(
        lens in entry_lens(),
        offsets in proptest::collection::vec(0u32..5000, 1..4),
        max in prop_oneof![1u16..4, 1u16..3000, Just(u16::MAX)],
        shift in prop_oneof![Just(12u32), 0u32..14],
    ) {
        let spans = spans_for(&lens, &offsets, shift);
        let mut cursor = PagedCursor::new(max, shift).unwrap();
        let mut last_entry = None;
        for expected in Segments::new(&lens[..], max).unwrap() {
            let got = cursor.next_packet(&spans[..]).expect("a packet");
            prop_assert_eq!(got.entry, expected.entry);
            prop_assert_eq!(got.len, expected.len);
            prop_assert_eq!(got.first, last_entry != Some(expected.entry));
            prop_assert_eq!(got.first, expected.offset == 0);
            last_entry = Some(expected.entry);
            let span = spans[expected.entry];
            let first = page_frags(span.page_offset, expected.offset, u32::from(expected.len), shift)
                .unwrap()
                .next()
                .unwrap();
            prop_assert_eq!(got.page, span.first_page + first.page as usize);
            prop_assert_eq!(got.offset, first.offset);
        }
        prop_assert_eq!(cursor.next_packet(&spans[..]), None);
    }
}

proptest! {
    /// `enter` does what `enter_next` does whenever it accepts, and accepts
    /// exactly for the next entry with bytes and a valid offset.
    #[test]
    fn enter_matches_enter_next(
        lens in entry_lens(),
        offsets in proptest::collection::vec(0u32..9000, 1..4),
        max in 1u16..3000,
        wrong in any::<bool>(),
    ) {
        const SHIFT: u32 = 12;
        // Offsets up to 9000: some spans are invalid (not below the page).
        let spans: Vec<EntrySpan> = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| EntrySpan { len, first_page: i * 3, page_offset: offsets[i % offsets.len()] })
            .collect();
        let mut cursor = PagedCursor::new(max, SHIFT).unwrap();
        loop {
            if cursor.at_entry_end() {
                let Some(next) = cursor.next_entry() else { break };
                let mut general = cursor;
                let expected = general.enter_next(&spans[..]);
                let Some(span) = spans.get(next) else {
                    prop_assert_eq!(expected, None);
                    break;
                };
                let mut fast = cursor;
                let index = if wrong { next + 1 } else { next };
                let valid = span.len != 0 && span.page_offset >> SHIFT == 0 && !wrong;
                prop_assert_eq!(fast.enter(index, span), valid);
                if valid {
                    prop_assert_eq!(expected, Some(next));
                    prop_assert_eq!(fast, general);
                } else {
                    prop_assert_eq!(fast, cursor);
                }
                if expected.is_none() {
                    break;
                }
                cursor = general;
            }
            if cursor.next_packet(&spans[..]).is_none() {
                break;
            }
        }
    }
}

proptest! {
    /// A rewound cursor is the cursor `new` makes, wherever it was, and
    /// yields the same packets again.
    #[test]
    fn rewind_starts_over(
        lens in entry_lens(),
        offsets in proptest::collection::vec(0u32..5000, 1..4),
        max in 1u16..3000,
        shift in 0u32..14,
        taken in 0usize..40,
    ) {
        let spans = spans_for(&lens, &offsets, shift);
        let fresh = PagedCursor::new(max, shift).unwrap();
        let mut cursor = fresh;
        let mut first = Vec::new();
        while let Some(p) = cursor.next_packet(&spans[..]) {
            first.push(p);
        }
        let mut again = fresh;
        for _ in 0..taken {
            again.next_packet(&spans[..]);
        }
        again.rewind();
        prop_assert_eq!(again, fresh);
        let mut second = Vec::new();
        while let Some(p) = again.next_packet(&spans[..]) {
            second.push(p);
        }
        prop_assert_eq!(first, second);
    }
}

proptest! {
    /// The fast case gives what the general step and `split_two` give, and
    /// declines exactly when the packet is not a full-size one of the
    /// current entry within two pages.
    #[test]
    fn peek_full_matches_next_packet(
        lens in entry_lens(),
        offsets in proptest::collection::vec(0u32..5000, 1..4),
        max in prop_oneof![1u16..4, 1u16..3000, 4000u16..9000],
        peek_first in any::<bool>(),
    ) {
        const SHIFT: u32 = 12;
        let spans = spans_for(&lens, &offsets, SHIFT);
        let mut cursor = PagedCursor::new(max, SHIFT).unwrap();
        loop {
            // A cursor of another page size never takes the fast case.
            prop_assert_eq!(cursor.peek_full::<13>(), None);
            let fast = cursor.peek_full::<SHIFT>();
            let mut general = cursor;
            let Some(expected) = general.next_packet(&spans[..]) else {
                prop_assert_eq!(fast, None);
                break;
            };
            let split = split_two(expected.offset, u32::from(expected.len), SHIFT);
            let full = !expected.first && expected.len == max && split.is_some();
            match fast {
                Some(p) => {
                    prop_assert!(full, "fast case for {:?}", expected);
                    let (len0, len1) = split.unwrap();
                    prop_assert_eq!((p.page, p.offset, p.len0, p.len1), (expected.page, expected.offset, len0, len1));
                    if peek_first {
                        // Peeking twice changes nothing.
                        prop_assert_eq!(cursor.peek_full::<SHIFT>(), Some(p));
                    }
                    cursor.advance(&p);
                    prop_assert_eq!(cursor, general);
                }
                None => {
                    prop_assert!(!full || expected.first, "no fast case for {:?}", expected);
                    cursor = general;
                }
            }
        }
    }
}

#[test]
fn paged_cursor_rejects_bad_input() {
    assert_eq!(PagedCursor::new(0, 12), Err(SegmentError::ZeroMaxPayload));
    assert_eq!(PagedCursor::new(1, 32), Err(SegmentError::InvalidPageShift));
    let bad = [EntrySpan {
        len: 10,
        first_page: 0,
        page_offset: 4096,
    }];
    assert_eq!(
        PagedCursor::new(1472, 12).unwrap().next_packet(&bad[..]),
        None
    );
}

proptest! {
    #[test]
    fn split_two_is_page_frags_fast_case(shift in 0u32..=13, offset in any::<u32>(), len in 0u32..20000) {
        let offset = offset & ((1u32 << shift) - 1);
        let frags: Vec<Frag> = page_frags(offset, 0, len, shift).map_err(|e| TestCaseError::fail(format!("{e:?}")))?.collect();
        let want = match frags.as_slice() {
            [a] => Some((a.len, 0)),
            [a, b] => Some((a.len, b.len)),
            _ => None,
        };
        prop_assert_eq!(split_two(offset, len, shift), want);
        if let Some((a, b)) = want {
            prop_assert_eq!((frags[0].page, frags[0].offset), (0, offset));
            prop_assert_eq!(a + b, len);
        }
    }
}

#[test]
fn split_two_rejects_bad_input() {
    assert_eq!(split_two(4096, 1, 12), None);
    assert_eq!(split_two(0, 0, 12), None);
    assert_eq!(split_two(0, 1, 32), None);
    assert_eq!(split_two(4095, 4097, 12), Some((1, 4096)));
    assert_eq!(split_two(4095, 4098, 12), None);
    assert_eq!(split_two(0, 1, 31), Some((1, 0)));
    assert_eq!(split_two(0x7fff_ffff, u32::MAX, 31), None);
    assert_eq!(
        split_two(0x7fff_ffff, 0x8000_0001, 31),
        Some((1, 0x8000_0000))
    );
}

proptest! {
    /// Entering each entry explicitly, then taking the fast case where it
    /// applies and the general step elsewhere, gives the packets the
    /// general step alone gives: the send path's order of calls.
    #[test]
    fn enter_next_then_fast_matches_next_packet(
        lens in entry_lens(),
        offsets in proptest::collection::vec(0u32..5000, 1..4),
        max in prop_oneof![1u16..4, 1u16..3000, 4000u16..9000],
    ) {
        const SHIFT: u32 = 12;
        let spans = spans_for(&lens, &offsets, SHIFT);
        let mut general = PagedCursor::new(max, SHIFT).unwrap();
        let mut cursor = general;
        while let Some(expected) = general.next_packet(&spans[..]) {
            if cursor.at_entry_end() {
                prop_assert!(expected.first);
                prop_assert_eq!(cursor.enter_next(&spans[..]), Some(expected.entry));
                prop_assert!(!cursor.at_entry_end());
            } else {
                prop_assert!(!expected.first);
                // Inside an entry, entering changes nothing.
                let before = cursor;
                prop_assert_eq!(cursor.enter_next(&spans[..]), Some(expected.entry));
                prop_assert_eq!(cursor, before);
            }
            match cursor.peek_full::<SHIFT>() {
                Some(p) => {
                    prop_assert_eq!((p.page, p.offset), (expected.page, expected.offset));
                    prop_assert_eq!(p.len0 + p.len1, u32::from(expected.len));
                    cursor.advance(&p);
                }
                None => {
                    let mut again = cursor;
                    let got = again.next_packet(&spans[..]).unwrap();
                    prop_assert_eq!((got.page, got.offset, got.len), (expected.page, expected.offset, expected.len));
                    cursor = again;
                }
            }
            prop_assert_eq!(cursor, general);
        }
        // At the end, nothing more to enter.
        prop_assert_eq!(cursor.enter_next(&spans[..]), None);
    }
}
