// SPDX-License-Identifier: GPL-2.0

//! Internet checksum (RFC 1071) arithmetic.
//!
//! A running sum is a `u32` accumulator. Any `u32` is a valid accumulator:
//! it stands for its value modulo `0xffff`, the ones-complement sum of
//! 16-bit words. Words are big-endian (network order), so a sum's folded
//! value is the number to store big-endian in a checksum field.
//!
//! Chaining rule: [`sum_bytes`] treats its slice as starting at an even
//! offset of the summed message and pads an odd last byte with a zero. So
//! `sum_bytes(sum_bytes(0, a), b)` equals `sum_bytes(0, a ++ b)` when `a`
//! has even length. For a piece that may start at an odd offset, use
//! [`sum_bytes_at`] with the piece's offset in the message.

/// Adds two 64-bit values with end-around carry.
///
/// The result is congruent to `a + b` modulo `0xffff`.
fn add64(a: u64, b: u64) -> u64 {
    let (sum, carry) = a.overflowing_add(b);
    // With a carry, `sum <= u64::MAX - 1`, so adding it back cannot wrap.
    sum.wrapping_add(u64::from(carry))
}

/// Folds a 64-bit sum to a 32-bit accumulator of the same value.
pub fn fold64(sum: u64) -> u32 {
    // Truncations are intended: the two halves are added back together.
    add32(sum as u32, (sum >> 32) as u32)
}

/// Adds two accumulators with end-around carry (ones-complement addition).
pub fn add32(a: u32, b: u32) -> u32 {
    let (sum, carry) = a.overflowing_add(b);
    // With a carry, `sum <= u32::MAX - 1`, so adding it back cannot wrap.
    sum.wrapping_add(u32::from(carry))
}

/// Adds one 16-bit word to an accumulator.
pub fn add16(acc: u32, word: u16) -> u32 {
    add32(acc, u32::from(word))
}

/// Folds an accumulator to 16 bits, not complemented.
///
/// The result is 0 only for an accumulator of 0; any other multiple of
/// `0xffff` folds to `0xffff`.
pub fn fold(acc: u32) -> u16 {
    // Each step leaves a value congruent modulo 0xffff and no larger than
    // 0x1fffe, then 0xffff: the additions cannot wrap.
    let x = (acc & 0xffff).wrapping_add(acc >> 16);
    let x = (x & 0xffff).wrapping_add(x >> 16);
    x as u16
}

/// [`finish`] of [`add16`] of `word` to `sum`, a sum folded to 16 bits:
/// their total is at most `0x1fffe`, so one folding step suffices.
pub fn finish_add16(sum: u16, word: u16) -> u16 {
    // No overflow: both are at most 0xffff, and so is the folded total.
    let x = u32::from(sum).wrapping_add(u32::from(word));
    !(x & 0xffff).wrapping_add(x >> 16) as u16
}

/// Finishes a sum into a checksum field value: the complement of [`fold`].
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Adds the bytes of `data` to `acc`, `data` starting at an even offset.
///
/// An odd-length `data` is padded with one zero byte. See the module doc for
/// chaining.
pub fn sum_bytes(acc: u32, data: &[u8]) -> u32 {
    let mut sum = u64::from(acc);
    let mut rest = data;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        sum = add64(sum, u64::from_be_bytes(*word));
        rest = tail;
    }
    // The last 0..=7 bytes, padded with zeros to a word; `rest` starts at an
    // even offset, so the padding lands where RFC 1071 puts it.
    let mut last = [0u8; 8];
    for (dst, src) in last.iter_mut().zip(rest) {
        *dst = *src;
    }
    fold64(add64(sum, u64::from_be_bytes(last)))
}

/// Adds the bytes of `data` to `acc`, `data` starting at byte `offset` of
/// the summed message.
///
/// Only the parity of `offset` matters: a piece at an odd offset contributes
/// its even-offset sum with the two bytes swapped.
pub fn sum_bytes_at(acc: u32, data: &[u8], offset: u64) -> u32 {
    let sum = fold(sum_bytes(0, data));
    let sum = if offset & 1 == 0 {
        sum
    } else {
        sum.swap_bytes()
    };
    add16(acc, sum)
}

/// Converts a sum of native-endian words to this module's big-endian sums.
///
/// Linux's `csum_partial()` returns such a sum (`__wsum`); on a big-endian
/// CPU this is the identity after folding, on a little-endian one it swaps
/// the folded sum's bytes.
pub fn from_native_sum(native: u32) -> u32 {
    u32::from(u16::from_be(fold(native)))
}
