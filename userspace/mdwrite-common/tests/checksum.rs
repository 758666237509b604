// SPDX-License-Identifier: GPL-2.0

//! Tests of `checksum` against a naive RFC 1071 reference.

use mdwrite_common::checksum::{
    add16, add32, finish, finish_add16, fold, fold64, from_native_sum, sum_bytes, sum_bytes_at,
};
use proptest::prelude::*;

/// Folds a wide sum with end-around carries until it fits 16 bits.
fn naive_fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The RFC 1071 sum of `data`: big-endian 16-bit words, an odd last byte
/// padded with a zero, added in a u64 and folded.
fn naive_sum(data: &[u8]) -> u16 {
    let mut sum = 0u64;
    for pair in data.chunks(2) {
        let hi = u64::from(pair[0]);
        let lo = pair.get(1).copied().map_or(0, u64::from);
        sum += (hi << 8) | lo;
    }
    naive_fold(sum)
}

/// The sum of `data` as a little-endian CPU's `csum_partial()` computes it:
/// native-endian words, folded.
fn native_sum(data: &[u8]) -> u32 {
    let mut sum = 0u64;
    for pair in data.chunks(2) {
        let word = [pair[0], pair.get(1).copied().unwrap_or(0)];
        sum += u64::from(u16::from_ne_bytes(word));
    }
    u32::from(naive_fold(sum))
}

#[test]
fn rfc1071_example() {
    // RFC 1071 section 3: the sum of these bytes is 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(fold(sum_bytes(0, &data)), 0xddf2);
    assert_eq!(finish(sum_bytes(0, &data)), 0x220d);
}

#[test]
fn small_cases() {
    assert_eq!(fold(sum_bytes(0, &[])), 0);
    assert_eq!(fold(sum_bytes(0, &[0xab])), 0xab00);
    assert_eq!(fold(sum_bytes(0, &[0xff, 0xff, 0x00, 0x01])), 0x0001);
    assert_eq!(finish(0), 0xffff);
    assert_eq!(fold(0xffff_ffff), 0xffff);
    assert_eq!(fold(0x0001_ffff), 0x0001);
    assert_eq!(add32(0xffff_ffff, 1), 1);
    assert_eq!(add32(0x8000_0000, 0x8000_0000), 1);
    assert_eq!(add16(0xffff_ffff, 0xffff), 0xffff);
    assert_eq!(fold64(u64::MAX), u32::MAX);
    assert_eq!(fold64(0x1_0000_0000), 1);
    assert_eq!(sum_bytes_at(0, &[0x12, 0x34], 1), 0x3412);
}

proptest! {
    #[test]
    fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert_eq!(fold(sum_bytes(0, &data)), naive_sum(&data));
    }

    #[test]
    fn sum_adds_to_accumulator(acc in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let expected = naive_fold(u64::from(acc) + u64::from(naive_sum(&data)));
        prop_assert_eq!(fold(sum_bytes(acc, &data)), expected);
    }

    #[test]
    fn all_ones_words(words in 1usize..200, odd in any::<bool>()) {
        // Maximal carries: every word is 0xffff.
        let mut data = vec![0xff; words * 2];
        if odd {
            data.push(0xff);
        }
        prop_assert_eq!(fold(sum_bytes(0, &data)), naive_sum(&data));
    }

    #[test]
    fn chaining_at_even_split(data in proptest::collection::vec(any::<u8>(), 0..300), split in any::<prop::sample::Index>()) {
        let at = split.index(data.len() + 1) & !1;
        let (a, b) = data.split_at(at);
        prop_assert_eq!(fold(sum_bytes(sum_bytes(0, a), b)), naive_sum(&data));
    }

    #[test]
    fn chaining_at_any_split(data in proptest::collection::vec(any::<u8>(), 0..300), splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let mut cuts: Vec<usize> = splits.iter().map(|s| s.index(data.len() + 1)).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut acc = 0;
        for pair in cuts.windows(2) {
            acc = sum_bytes_at(acc, &data[pair[0]..pair[1]], pair[0] as u64);
        }
        prop_assert_eq!(fold(acc), naive_sum(&data));
    }

    #[test]
    fn add_and_fold_agree_with_reference(a in any::<u32>(), b in any::<u32>(), w in any::<u16>()) {
        prop_assert_eq!(fold(add32(a, b)), naive_fold(u64::from(a) + u64::from(b)));
        prop_assert_eq!(fold(add16(a, w)), naive_fold(u64::from(a) + u64::from(w)));
        prop_assert_eq!(fold(a), naive_fold(u64::from(a)));
        prop_assert_eq!(finish(a), !naive_fold(u64::from(a)));
    }

    /// A word added to a sum already folded, then finished, is what the
    /// word added to the unfolded sum gives (`FullSizePatch::patch`'s
    /// IPv4 checksum).
    #[test]
    fn finish_add16_of_a_folded_sum(a in any::<u32>(), w in any::<u16>()) {
        prop_assert_eq!(finish_add16(fold(a), w), finish(add16(a, w)));
        prop_assert_eq!(finish_add16(fold(a), w), !naive_fold(u64::from(a) + u64::from(w)));
    }

    #[test]
    fn fold64_keeps_the_value(x in any::<u64>()) {
        prop_assert_eq!(fold(fold64(x)), naive_fold(x));
    }

    #[test]
    fn native_sums_convert(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(fold(from_native_sum(native_sum(&data))), naive_sum(&data));
    }
}
