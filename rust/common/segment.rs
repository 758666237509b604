// SPDX-License-Identifier: GPL-2.0

//! Segmentation of a destination's data into packets, and of a packet's
//! payload into page fragments.
//!
//! A destination's data in one call is an ordered list of entries, each a
//! byte buffer. Packets never span two entries: each entry is cut into
//! packets of `max_payload` bytes, the last one possibly shorter. Entries of
//! length 0 are skipped: they yield no packet.

use core::iter::FusedIterator;

/// The largest page shift: a page's size must fit in a `u32`.
pub const MAX_PAGE_SHIFT: u32 = 31;

/// Why a segmentation could not be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentError {
    /// The data length is 0.
    ZeroLength,
    /// The largest payload is 0.
    ZeroMaxPayload,
    /// The page shift is larger than [`MAX_PAGE_SHIFT`].
    InvalidPageShift,
    /// The offset into the first page is not smaller than the page size.
    InvalidPageOffset,
    /// A byte position or a count does not fit in a `u64`.
    Overflow,
}

/// Returns how many packets of at most `max_payload` bytes carry `len`
/// bytes.
pub fn packet_count(len: u64, max_payload: u16) -> Result<u64, SegmentError> {
    if len == 0 {
        return Err(SegmentError::ZeroLength);
    }
    let max = u64::from(max_payload);
    let (Some(full), Some(rest)) = (len.checked_div(max), len.checked_rem(max)) else {
        return Err(SegmentError::ZeroMaxPayload);
    };
    // No overflow: `full == len` only when `max == 1`, and then `rest == 0`.
    Ok(full.wrapping_add(u64::from(rest != 0)))
}

/// The lengths of a destination's entries, as the segmentation sees them.
///
/// The owner of the entries implements it, for example on a slice of its own
/// entry structs; it is implemented for `[u64]`.
pub trait EntryLens {
    /// Returns the length in bytes of entry `index`, or `None` past the last.
    fn entry_len(&self, index: usize) -> Option<u64>;
}

impl EntryLens for [u64] {
    fn entry_len(&self, index: usize) -> Option<u64> {
        self.get(index).copied()
    }
}

/// Returns how many packets carry all the entries of `lens`.
///
/// Entries of length 0 count for no packet, so the result may be 0.
pub fn total_packets<L: EntryLens + ?Sized>(
    lens: &L,
    max_payload: u16,
) -> Result<u64, SegmentError> {
    if max_payload == 0 {
        return Err(SegmentError::ZeroMaxPayload);
    }
    let mut total = 0u64;
    let mut index = 0usize;
    while let Some(len) = lens.entry_len(index) {
        if len != 0 {
            let count = packet_count(len, max_payload)?;
            total = total.checked_add(count).ok_or(SegmentError::Overflow)?;
        }
        index = index.checked_add(1).ok_or(SegmentError::Overflow)?;
    }
    Ok(total)
}

/// One packet's payload: `len` bytes at `offset` of entry `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// The index of the entry.
    pub entry: usize,
    /// The offset of the payload in the entry.
    pub offset: u64,
    /// The payload length, `1..=max_payload`.
    pub len: u16,
}

/// The position of a destination's next packet.
///
/// It holds no reference to the entries: each call of
/// [`SegmentCursor::next_packet`] is given their lengths, which must not
/// change between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCursor {
    /// The entry of the next packet.
    entry: usize,
    /// The offset of the next packet in `entry`.
    offset: u64,
    /// The largest payload of a packet, non-zero.
    max_payload: u16,
}

impl SegmentCursor {
    /// Returns a cursor at the start of the first entry.
    pub fn new(max_payload: u16) -> Result<Self, SegmentError> {
        if max_payload == 0 {
            return Err(SegmentError::ZeroMaxPayload);
        }
        Ok(Self {
            entry: 0,
            offset: 0,
            max_payload,
        })
    }

    /// Returns the next packet and moves past it, or `None` at the end.
    ///
    /// O(1), plus one step per skipped empty entry.
    pub fn next_packet<L: EntryLens + ?Sized>(&mut self, lens: &L) -> Option<Packet> {
        loop {
            let left = lens.entry_len(self.entry)?.saturating_sub(self.offset);
            if left != 0 {
                let len = u16::try_from(left).map_or(self.max_payload, |l| l.min(self.max_payload));
                let packet = Packet {
                    entry: self.entry,
                    offset: self.offset,
                    len,
                };
                // No overflow: the new offset is at most the entry's length.
                self.offset = self.offset.wrapping_add(u64::from(len));
                return Some(packet);
            }
            self.entry = self.entry.checked_add(1)?;
            self.offset = 0;
        }
    }
}

/// Where an entry's bytes are in memory, as the send path sees them: its
/// length, the index of its first page in the call's page array, and its
/// offset into that page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntrySpan {
    /// The length in bytes.
    pub len: u64,
    /// The index of the first page in the page array of the call.
    pub first_page: usize,
    /// The offset into the first page, below the page size.
    pub page_offset: u32,
}

/// The spans of a destination's entries, in order.
pub trait EntrySpans {
    /// Returns the span of entry `index`, or `None` past the last.
    fn entry_span(&self, index: usize) -> Option<EntrySpan>;
}

impl EntrySpans for [EntrySpan] {
    fn entry_span(&self, index: usize) -> Option<EntrySpan> {
        self.get(index).copied()
    }
}

/// One packet's payload by page position: `len` bytes from byte `offset`
/// of page `page` of the call's page array (continuing into the following
/// pages), taken from entry `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedPacket {
    /// The index of the entry.
    pub entry: usize,
    /// Whether the packet is the entry's first.
    pub first: bool,
    /// The payload length, `1..=max_payload`.
    pub len: u16,
    /// The page of the payload's first byte.
    pub page: usize,
    /// The offset of the payload's first byte in `page`.
    pub offset: u32,
}

/// A full-size packet within two pages ([`PagedCursor::peek_full`]):
/// `len0` bytes from byte `offset` of page `page`, then `len1` bytes (0:
/// none) from the start of page `page + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullPacket {
    /// The page of the payload's first byte.
    pub page: usize,
    /// The offset of the payload's first byte in `page`.
    pub offset: u32,
    /// The bytes in `page`.
    pub len0: u32,
    /// The bytes in the next page.
    pub len1: u32,
    /// The page of the byte after the packet.
    next_page: usize,
    /// The offset of the byte after the packet in `next_page`.
    next_offset: u32,
}

/// The position of a destination's next packet, kept as a page position so
/// that the per-packet step is a few additions: the packets are those of
/// [`SegmentCursor`], located in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedCursor {
    /// The current entry; meaningless before the first packet.
    entry: usize,
    /// Whether `entry` is valid.
    started: bool,
    /// The bytes of `entry` not yet sent.
    left: u64,
    /// The page of the next byte.
    page: usize,
    /// The offset of the next byte in `page`.
    offset: u32,
    /// The largest payload of a packet, non-zero.
    max_payload: u16,
    /// The page shift, at most [`MAX_PAGE_SHIFT`].
    page_shift: u32,
}

impl PagedCursor {
    /// Returns a cursor before the first entry.
    pub fn new(max_payload: u16, page_shift: u32) -> Result<Self, SegmentError> {
        if max_payload == 0 {
            return Err(SegmentError::ZeroMaxPayload);
        }
        if page_shift > MAX_PAGE_SHIFT {
            return Err(SegmentError::InvalidPageShift);
        }
        Ok(Self {
            entry: 0,
            started: false,
            left: 0,
            page: 0,
            offset: 0,
            max_payload,
            page_shift,
        })
    }

    /// Moves the cursor back before the first entry, as
    /// [`PagedCursor::new`] made it with its payload size and page shift
    /// (checked then): for another call over entries of the same lengths.
    #[inline(always)]
    pub fn rewind(&mut self) {
        self.entry = 0;
        self.started = false;
        self.left = 0;
        self.page = 0;
        self.offset = 0;
    }

    /// Returns the largest payload of a packet.
    pub fn max_payload(&self) -> u16 {
        self.max_payload
    }

    /// Returns the next packet when it is a full-size packet
    /// (`max_payload` bytes) of the current entry within two pages, the
    /// common case, for a page size of `1 << SHIFT` (the cursor's); `None`
    /// otherwise (call [`PagedCursor::next_packet`] then). It does not move
    /// the cursor: [`PagedCursor::advance`] does. What it returns is what
    /// [`PagedCursor::next_packet`] and [`split_two`] would: the same
    /// packet, not the entry's first.
    #[inline(always)]
    pub fn peek_full<const SHIFT: u32>(&self) -> Option<FullPacket> {
        let len = u32::from(self.max_payload);
        if self.left < u64::from(len) || self.page_shift != SHIFT || SHIFT > MAX_PAGE_SHIFT {
            return None;
        }
        let page_size = 1u32 << SHIFT;
        // No overflow: `offset < page_size <= 2^31`, `len < 2^16`.
        let end = self.offset.wrapping_add(len);
        let (len0, len1) = if end <= page_size {
            (len, 0)
        } else {
            // No overflow: `offset < page_size < end`.
            let len1 = end.wrapping_sub(page_size);
            if len1 > page_size {
                return None;
            }
            (page_size.wrapping_sub(self.offset), len1)
        };
        Some(FullPacket {
            page: self.page,
            offset: self.offset,
            len0,
            len1,
            next_page: self.page.checked_add((end >> SHIFT) as usize)?,
            next_offset: end & page_size.wrapping_sub(1),
        })
    }

    /// Returns whether the cursor is at the end of its entry (or before
    /// the first): its next packet is the first of the next entry.
    #[inline(always)]
    pub fn at_entry_end(&self) -> bool {
        self.left == 0
    }

    /// Moves a cursor at the end of its entry ([`PagedCursor::at_entry_end`])
    /// to the start of the next entry with bytes and returns that entry's
    /// index; then [`PagedCursor::peek_full`] can return its first packet.
    /// `None` when there is no such entry or a span is invalid (offset not
    /// below the page size, an index overflowing); the cursor may then
    /// have moved past empty entries. A cursor inside an entry stays
    /// there and returns its entry.
    ///
    /// O(1), plus one step per skipped empty entry.
    #[inline(always)]
    pub fn enter_next<S: EntrySpans + ?Sized>(&mut self, spans: &S) -> Option<usize> {
        while self.left == 0 {
            let next = if self.started {
                self.entry.checked_add(1)?
            } else {
                0
            };
            let span = spans.entry_span(next)?;
            if u64::from(span.page_offset) >> self.page_shift != 0 {
                return None;
            }
            self.started = true;
            self.entry = next;
            self.left = span.len;
            self.page = span.first_page;
            self.offset = span.page_offset;
        }
        Some(self.entry)
    }

    /// Returns the entry [`PagedCursor::enter_next`] looks at first: the
    /// one after the current, or the first before any. `None` on overflow.
    #[inline(always)]
    pub fn next_entry(&self) -> Option<usize> {
        if self.started {
            self.entry.checked_add(1)
        } else {
            Some(0)
        }
    }

    /// [`PagedCursor::enter_next`] for its usual case, the caller having
    /// looked the span up: a cursor at the end of its entry enters entry
    /// `index`, [`PagedCursor::next_entry`], of span `span`, when that has
    /// bytes and a valid offset. Returns false otherwise, the cursor
    /// unchanged (`enter_next` then handles every case).
    #[inline(always)]
    pub fn enter(&mut self, index: usize, span: &EntrySpan) -> bool {
        if self.left != 0
            || span.len == 0
            || u64::from(span.page_offset) >> self.page_shift != 0
            || self.next_entry() != Some(index)
        {
            return false;
        }
        self.started = true;
        self.entry = index;
        self.left = span.len;
        self.page = span.first_page;
        self.offset = span.page_offset;
        true
    }

    /// Moves past `packet`, which [`PagedCursor::peek_full`] returned
    /// for the cursor as it is.
    #[inline(always)]
    pub fn advance(&mut self, packet: &FullPacket) {
        self.page = packet.next_page;
        self.offset = packet.next_offset;
        // No overflow: `peek_full` checked `left >= max_payload`.
        self.left = self.left.wrapping_sub(u64::from(self.max_payload));
    }

    /// Returns the next packet and moves past it, or `None` at the end or
    /// when a span is invalid (offset not below the page size, or a page
    /// index overflowing).
    ///
    /// O(1), plus one step per skipped empty entry.
    #[inline(always)]
    pub fn next_packet<S: EntrySpans + ?Sized>(&mut self, spans: &S) -> Option<PagedPacket> {
        let first = self.left == 0;
        if first {
            self.enter_next(spans)?;
        }
        let len = u16::try_from(self.left).map_or(self.max_payload, |l| l.min(self.max_payload));
        let packet = PagedPacket {
            entry: self.entry,
            first,
            len,
            page: self.page,
            offset: self.offset,
        };
        // No overflow: `len <= left`; `offset` is below the page size, at
        // most 2^31, and `len` below 2^16.
        self.left = self.left.wrapping_sub(u64::from(len));
        let end = u64::from(self.offset).wrapping_add(u64::from(len));
        let pages = usize::try_from(end >> self.page_shift).ok()?;
        self.page = self.page.checked_add(pages)?;
        // Below the page size, which fits in a u32.
        self.offset = (end & (1u64 << self.page_shift).wrapping_sub(1)) as u32;
        Some(packet)
    }
}

/// The packets of a destination's entries, as an iterator.
#[derive(Debug)]
pub struct Segments<'a, L: EntryLens + ?Sized> {
    /// The position of the next packet.
    cursor: SegmentCursor,
    /// The entry lengths.
    lens: &'a L,
}

impl<'a, L: EntryLens + ?Sized> Segments<'a, L> {
    /// Returns the packets of `lens` with at most `max_payload` bytes each.
    pub fn new(lens: &'a L, max_payload: u16) -> Result<Self, SegmentError> {
        Ok(Self {
            cursor: SegmentCursor::new(max_payload)?,
            lens,
        })
    }
}

impl<L: EntryLens + ?Sized> Iterator for Segments<'_, L> {
    type Item = Packet;

    fn next(&mut self) -> Option<Packet> {
        self.cursor.next_packet(self.lens)
    }
}

/// Checks a page shift and an offset into the first page.
fn check_page(first_page_offset: u32, page_shift: u32) -> Result<(), SegmentError> {
    if page_shift > MAX_PAGE_SHIFT {
        return Err(SegmentError::InvalidPageShift);
    }
    if u64::from(first_page_offset) >> page_shift != 0 {
        return Err(SegmentError::InvalidPageOffset);
    }
    Ok(())
}

/// Returns how many pages hold `len` bytes starting `first_page_offset`
/// bytes into the first page: the number of pages to pin.
///
/// The page size is `1 << page_shift`; `first_page_offset` must be smaller,
/// and `first_page_offset + len` must fit in a `u64`. No bytes need no page.
#[inline]
pub fn pages_spanned(
    first_page_offset: u32,
    len: u64,
    page_shift: u32,
) -> Result<u64, SegmentError> {
    check_page(first_page_offset, page_shift)?;
    let end = len
        .checked_add(u64::from(first_page_offset))
        .ok_or(SegmentError::Overflow)?;
    if len == 0 {
        return Ok(0);
    }
    // No overflow: `end >= 1`, and `(end - 1) >> page_shift < u64::MAX`.
    Ok((end.wrapping_sub(1) >> page_shift).wrapping_add(1))
}

/// Splits `len` bytes starting `offset` bytes into a page into the bytes
/// in that page and those in the next one (0 when none): the fragments
/// [`page_frags`]`(offset, 0, len, page_shift)` gives when it gives at most
/// two, as a send path's fast case. `None` when the bytes span more than
/// two pages, `len` is 0, `offset` is not below the page size or the page
/// shift is larger than [`MAX_PAGE_SHIFT`].
#[inline(always)]
pub fn split_two(offset: u32, len: u32, page_shift: u32) -> Option<(u32, u32)> {
    if page_shift > MAX_PAGE_SHIFT || len == 0 {
        return None;
    }
    let page = 1u64.wrapping_shl(page_shift);
    let room = page.checked_sub(u64::from(offset)).filter(|&r| r != 0)?;
    let len64 = u64::from(len);
    if len64 <= room {
        return Some((len, 0));
    }
    // No overflow: `room < len64`.
    let rest = len64.wrapping_sub(room);
    if rest > page {
        return None;
    }
    // Both below `len`, a u32.
    Some((room as u32, rest as u32))
}

/// One piece of a payload within one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frag {
    /// The index of the page in the entry's page array (0: the first page).
    pub page: u64,
    /// The offset of the piece within the page.
    pub offset: u32,
    /// The length of the piece, non-zero.
    pub len: u32,
}

/// The page fragments of a payload, in order; see [`page_frags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageFrags {
    /// The page of the next fragment.
    page: u64,
    /// The offset of the next fragment within its page.
    offset: u32,
    /// The bytes not yet covered.
    left: u32,
    /// The page shift, at most [`MAX_PAGE_SHIFT`].
    page_shift: u32,
}

/// Returns the page fragments of `len` bytes at byte `offset` of an entry
/// whose buffer begins `first_page_offset` bytes into its first page.
///
/// Fragments are non-empty, split only at page boundaries and cover exactly
/// `len` bytes; `len == 0` gives none. The page size is `1 << page_shift`;
/// `first_page_offset` must be smaller, and `first_page_offset + offset +
/// len` must fit in a `u64`.
pub fn page_frags(
    first_page_offset: u32,
    offset: u64,
    len: u32,
    page_shift: u32,
) -> Result<PageFrags, SegmentError> {
    check_page(first_page_offset, page_shift)?;
    let start = offset
        .checked_add(u64::from(first_page_offset))
        .ok_or(SegmentError::Overflow)?;
    start
        .checked_add(u64::from(len))
        .ok_or(SegmentError::Overflow)?;
    let mask = (1u64 << page_shift).wrapping_sub(1);
    Ok(PageFrags {
        page: start >> page_shift,
        // Below the page size, which fits in a u32.
        offset: (start & mask) as u32,
        left: len,
        page_shift,
    })
}

impl Iterator for PageFrags {
    type Item = Frag;

    fn next(&mut self) -> Option<Frag> {
        if self.left == 0 {
            return None;
        }
        // At least 1: `offset` is below the page size. The shift is at most
        // MAX_PAGE_SHIFT; `wrapping_shl` only spares a panic branch.
        let page_size = 1u64.wrapping_shl(self.page_shift);
        let room = page_size.wrapping_sub(u64::from(self.offset));
        let len = u32::try_from(room).map_or(self.left, |room| room.min(self.left));
        let frag = Frag {
            page: self.page,
            offset: self.offset,
            len,
        };
        self.left = self.left.wrapping_sub(len);
        // No overflow: `page_frags` checked that the end position fits.
        self.page = self.page.wrapping_add(1);
        self.offset = 0;
        Some(frag)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let count = match self.left.checked_sub(1) {
            None => 0,
            Some(last) => {
                let last = u64::from(self.offset).wrapping_add(u64::from(last));
                last.wrapping_shr(self.page_shift).wrapping_add(1)
            }
        };
        // At most `u32::MAX` fragments, which fits in a usize on Linux.
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        (count, Some(count))
    }
}

impl ExactSizeIterator for PageFrags {}

impl FusedIterator for PageFrags {}
