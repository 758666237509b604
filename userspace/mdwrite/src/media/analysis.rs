// SPDX-License-Identifier: GPL-2.0

//! Receive-side analysis of one RTP stream (one SSRC): sequence
//! continuity, loss, duplicates, reordering and interarrival jitter.
//!
//! Definitions, all per SSRC:
//!
//! - sequence numbers are extended to 64 bits as in RFC 3550 A.1: a packet
//!   is placed at the extended number nearest to the highest seen so far
//!   (a step of up to 32767 either way);
//! - `expected` is highest - lowest extended number + 1 (A.3);
//! - `lost` is `expected` less the distinct sequence numbers received, so a
//!   late packet that fills a gap is not lost, and a duplicate does not
//!   hide a loss;
//! - `duplicates` are packets whose sequence number was already received
//!   (tracked over the last [`WINDOW`] numbers);
//! - `reordered` are packets that arrive after a packet with a higher
//!   number (duplicates excluded);
//! - `seq_errors` are packets whose number is not the previous arrival's
//!   plus one, as Wireshark's RTP analysis counts "wrong sequence number";
//! - `jitter` is RFC 3550 A.8's estimate: for consecutive arrivals i, j,
//!   `D = (Rj - Ri) - (Sj - Si)` in timestamp units and
//!   `J += (|D| - J) / 16`.

use std::time::Duration;

use super::rtp::RtpHeader;

/// Sequence numbers remembered for duplicate detection.
pub const WINDOW: u64 = 4096;

/// The analysis of one RTP stream.
#[derive(Clone, Debug)]
pub struct RtpAnalyzer {
    clock_hz: u32,
    ssrc: u32,
    payload_type: u8,
    packets: u64,
    payload_bytes: u64,
    unique: u64,
    min_ext: u64,
    max_ext: u64,
    last_seq: u16,
    seen: Vec<bool>,
    duplicates: u64,
    reordered: u64,
    seq_errors: u64,
    /// Previous arrival (seconds) and RTP timestamp.
    prev: Option<(f64, u32)>,
    jitter: f64,
}

/// What [`RtpAnalyzer::report`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RtpReport {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload type of the first packet.
    pub payload_type: u8,
    /// Packets received, duplicates included.
    pub packets: u64,
    /// Payload bytes received (headers and padding excluded).
    pub payload_bytes: u64,
    /// Sequence numbers from the lowest to the highest received.
    pub expected: u64,
    /// Sequence numbers in that range never received.
    pub lost: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Packets whose sequence number does not follow the previous arrival's.
    pub seq_errors: u64,
    /// First and highest sequence number (16 bits).
    pub first_seq: u16,
    /// Highest sequence number received.
    pub last_seq: u16,
    /// Interarrival jitter in timestamp units.
    pub jitter: f64,
    /// The timestamp clock, Hz.
    pub clock_hz: u32,
}

impl RtpReport {
    /// The jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_hz)
    }
}

impl RtpAnalyzer {
    /// An analyzer whose stream starts with `first`, arriving at `arrival`
    /// (any fixed origin), with `payload_len` payload bytes; timestamps
    /// count at `clock_hz`.
    pub fn new(clock_hz: u32, first: &RtpHeader, payload_len: usize, arrival: Duration) -> Self {
        // Start high so that numbers below the first one stay positive.
        let ext = (1 << 32) + u64::from(first.seq);
        let mut a = Self {
            clock_hz,
            ssrc: first.ssrc,
            payload_type: first.payload_type,
            packets: 0,
            payload_bytes: 0,
            unique: 0,
            min_ext: ext,
            max_ext: ext,
            last_seq: first.seq,
            seen: vec![false; WINDOW as usize],
            duplicates: 0,
            reordered: 0,
            seq_errors: 0,
            prev: None,
            jitter: 0.0,
        };
        a.count(first, payload_len, arrival, ext);
        a
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Adds a packet of this stream.
    pub fn push(&mut self, h: &RtpHeader, payload_len: usize, arrival: Duration) {
        let delta = i64::from(h.seq.wrapping_sub(self.max_ext as u16) as i16);
        let ext = self.max_ext.saturating_add_signed(delta);
        if h.seq != self.last_seq.wrapping_add(1) {
            self.seq_errors += 1;
        }
        self.count(h, payload_len, arrival, ext);
    }

    fn count(&mut self, h: &RtpHeader, payload_len: usize, arrival: Duration, ext: u64) {
        self.packets += 1;
        self.payload_bytes += payload_len as u64;
        self.last_seq = h.seq;
        let slot = |e: u64| (e % WINDOW) as usize;
        if ext > self.max_ext {
            // Forget the numbers that leave the window.
            for e in (self.max_ext + 1..=ext).take(WINDOW as usize) {
                self.seen[slot(e)] = false;
            }
            self.max_ext = ext;
            self.seen[slot(ext)] = true;
            self.unique += 1;
        } else if self.max_ext - ext >= WINDOW {
            // Too old to tell a duplicate from a late packet: call it late.
            self.reordered += 1;
            if ext < self.min_ext {
                self.min_ext = ext;
            }
            self.unique += 1;
        } else if self.packets > 1 && self.seen[slot(ext)] && ext >= self.min_ext {
            self.duplicates += 1;
        } else {
            if self.packets > 1 {
                self.reordered += 1;
            }
            self.seen[slot(ext)] = true;
            self.min_ext = self.min_ext.min(ext);
            self.unique += 1;
        }
        let r = arrival.as_secs_f64() * f64::from(self.clock_hz);
        if let Some((pr, pts)) = self.prev {
            let d = (r - pr) - f64::from(h.timestamp.wrapping_sub(pts) as i32);
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.prev = Some((r, h.timestamp));
    }

    /// The figures so far.
    pub fn report(&self) -> RtpReport {
        let expected = self.max_ext - self.min_ext + 1;
        RtpReport {
            ssrc: self.ssrc,
            payload_type: self.payload_type,
            packets: self.packets,
            payload_bytes: self.payload_bytes,
            expected,
            lost: expected.saturating_sub(self.unique),
            duplicates: self.duplicates,
            reordered: self.reordered,
            seq_errors: self.seq_errors,
            first_seq: self.min_ext as u16,
            last_seq: self.max_ext as u16,
            jitter: self.jitter,
            clock_hz: self.clock_hz,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, timestamp: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 33,
            seq,
            timestamp,
            ssrc: 7,
        }
    }

    /// Feeds packets `seqs` (timestamps 100 per number, arrivals exactly on
    /// time at 90 kHz).
    fn run(seqs: &[u16]) -> RtpReport {
        let at = |s: u16| {
            let ts = u32::from(s.wrapping_sub(seqs[0])) * 100;
            (
                hdr(s, ts),
                Duration::from_secs_f64(f64::from(ts) / 90_000.0),
            )
        };
        let (h, t) = at(seqs[0]);
        let mut a = RtpAnalyzer::new(90_000, &h, 1316, t);
        for &s in &seqs[1..] {
            let (h, t) = at(s);
            a.push(&h, 1316, t);
        }
        a.report()
    }

    #[test]
    fn clean_across_the_wrap() {
        let seqs: Vec<u16> = (0..1000u16).map(|i| 65000u16.wrapping_add(i)).collect();
        let r = run(&seqs);
        assert_eq!(
            (
                r.packets,
                r.expected,
                r.lost,
                r.duplicates,
                r.reordered,
                r.seq_errors
            ),
            (1000, 1000, 0, 0, 0, 0)
        );
        assert_eq!(
            (r.first_seq, r.last_seq),
            (65000, 65000u16.wrapping_add(999))
        );
        assert_eq!(r.payload_bytes, 1000 * 1316);
        assert!(r.jitter < 1e-3, "{}", r.jitter); // nanosecond rounding of arrivals
    }

    #[test]
    fn loss() {
        let r = run(&[1, 2, 3, 6, 7, 9]);
        assert_eq!(
            (r.expected, r.lost, r.seq_errors, r.reordered),
            (9, 3, 2, 0)
        );
    }

    #[test]
    fn reorder() {
        // 4 arrives after 5: not lost, reordered once, 3 sequence errors
        // (5 after 3, 4 after 5, 6 after 4).
        let r = run(&[1, 2, 3, 5, 4, 6]);
        assert_eq!(
            (r.expected, r.lost, r.reordered, r.duplicates, r.seq_errors),
            (6, 0, 1, 0, 3)
        );
        // The first packet is late: the range grows downwards.
        let r = run(&[10, 9, 11]);
        assert_eq!((r.expected, r.lost, r.reordered, r.first_seq), (3, 0, 1, 9));
    }

    #[test]
    fn duplicates() {
        let r = run(&[1, 2, 2, 3, 1, 4]);
        assert_eq!(
            (r.packets, r.expected, r.lost, r.duplicates, r.reordered),
            (6, 4, 0, 2, 0)
        );
        // A duplicate does not hide a loss.
        let r = run(&[1, 2, 2, 4]);
        assert_eq!((r.lost, r.duplicates), (1, 1));
    }

    #[test]
    fn jitter_rfc3550() {
        // Packets every 100 ticks, arriving alternately 0 and 90 ticks late
        // (1 ms): |D| is 90 for every pair after the first.
        let mut a = RtpAnalyzer::new(90_000, &hdr(0, 0), 10, Duration::ZERO);
        let mut j = 0.0f64;
        for i in 1..200u32 {
            let late = if i % 2 == 1 { 90.0 } else { 0.0 };
            let r = (f64::from(i * 100) + late) / 90_000.0;
            a.push(&hdr(i as u16, i * 100), 10, Duration::from_secs_f64(r));
            j += (90.0 - j) / 16.0;
        }
        let r = a.report();
        assert!((r.jitter - j).abs() < 1e-3, "{} vs {j}", r.jitter);
        assert!((r.jitter - 90.0).abs() < 0.1);
        assert!((r.jitter_ms() - 1.0).abs() < 0.01);
    }

    #[test]
    fn timestamp_wrap_is_no_jitter() {
        let mut a = RtpAnalyzer::new(90_000, &hdr(0, u32::MAX - 50), 10, Duration::ZERO);
        a.push(&hdr(1, 49), 10, Duration::from_secs_f64(100.0 / 90_000.0));
        assert!(a.report().jitter < 1e-3);
    }
}
