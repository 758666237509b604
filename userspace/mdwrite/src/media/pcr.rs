// SPDX-License-Identifier: GPL-2.0

//! The bitrate of an MPEG-TS stream, from its program clock references.
//!
//! A transport stream carries, on one PID per program, a 27 MHz PCR
//! stamped with the time its byte should arrive at the decoder. Between two
//! PCRs of the same PID, `bytes * 8 * 27e6 / (pcr2 - pcr1)` is the rate the
//! multiplexer meant. [`PcrEstimator`] uses the first PID that carries PCRs
//! and measures from its first to its last PCR; a discontinuity (the
//! adaptation field's discontinuity_indicator, a PCR going backwards or
//! jumping more than [`MAX_PCR_GAP`]) ends one measured segment and starts
//! the next, and the segments' bytes and times are added up.

use std::{io, io::Read, time::Duration};

use super::ts::{TsError, TsPacket, PCR_HZ, PCR_WRAP, TS_PACKET_SIZE};

/// A PCR step larger than this is a discontinuity, not elapsed time
/// (ISO/IEC 13818-1 asks for a PCR at least every 100 ms).
pub const MAX_PCR_GAP: Duration = Duration::from_secs(10);

/// What the PCRs say about a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcrEstimate {
    /// The PID whose PCRs were used.
    pub pid: u16,
    /// The bitrate, bits per second.
    pub bitrate: u64,
    /// PCRs used.
    pub pcrs: u64,
    /// Bytes between the first and last PCR packets of every segment.
    pub bytes: u64,
    /// Time between the first and last PCR of every segment, in 27 MHz
    /// ticks.
    pub ticks: u64,
}

/// Why there is no estimate.
#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The input is not MPEG-TS.
    #[error("{0}")]
    Ts(#[source] TsError),
    /// No PID carries two PCRs that span some time: the bitrate must be
    /// given.
    #[error("no PCRs to estimate the bitrate from in {packets} TS packets; give the bitrate")]
    NoPcr {
        /// TS packets read.
        packets: u64,
    },
}

impl From<io::Error> for EstimateError {
    fn from(e: io::Error) -> Self {
        match e.get_ref().and_then(|i| i.downcast_ref::<TsError>()) {
            Some(ts) => EstimateError::Ts(ts.clone()),
            None => EstimateError::Io(e),
        }
    }
}

/// Collects the PCRs of a stream fed one TS packet at a time.
#[derive(Clone, Debug, Default)]
pub struct PcrEstimator {
    pid: Option<u16>,
    /// (offset, pcr) of the current segment's first and last PCR.
    first: Option<(u64, u64)>,
    last: (u64, u64),
    bytes: u64,
    ticks: u64,
    pcrs: u64,
    packets: u64,
}

impl PcrEstimator {
    /// An estimator that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the packet that starts at `offset` of the stream.
    pub fn push(&mut self, packet: &TsPacket<'_>, offset: u64) {
        self.packets += 1;
        let Some(pcr) = packet.pcr() else { return };
        let pid = *self.pid.get_or_insert(packet.pid());
        if packet.pid() != pid {
            return;
        }
        self.pcrs += 1;
        let max_gap = MAX_PCR_GAP.as_secs() * PCR_HZ;
        match self.first {
            Some(_) => {
                let (last_off, last_pcr) = self.last;
                let step = (pcr + PCR_WRAP - last_pcr) % PCR_WRAP;
                if packet.discontinuity() || step == 0 || step > max_gap {
                    self.close_segment();
                    self.first = Some((offset, pcr));
                } else {
                    debug_assert!(offset > last_off);
                }
            }
            None => self.first = Some((offset, pcr)),
        }
        self.last = (offset, pcr);
    }

    fn close_segment(&mut self) {
        if let Some((off, pcr)) = self.first.take() {
            self.bytes += self.last.0 - off;
            self.ticks += (self.last.1 + PCR_WRAP - pcr) % PCR_WRAP;
        }
    }

    /// The estimate from everything fed so far.
    pub fn estimate(&self) -> Result<PcrEstimate, EstimateError> {
        let mut done = self.clone();
        done.close_segment();
        match done.pid {
            Some(pid) if done.ticks > 0 && done.bytes > 0 => Ok(PcrEstimate {
                pid,
                bitrate: (u128::from(done.bytes) * 8 * u128::from(PCR_HZ) / u128::from(done.ticks))
                    as u64,
                pcrs: done.pcrs,
                bytes: done.bytes,
                ticks: done.ticks,
            }),
            _ => Err(EstimateError::NoPcr {
                packets: done.packets,
            }),
        }
    }
}

/// Estimates the bitrate of the MPEG-TS stream `input` from its PCRs,
/// reading at most `limit` bytes (all of it with `None`).
///
/// Fails on a byte that should be a sync byte and is not, on a truncated
/// last packet, and with [`EstimateError::NoPcr`] when there are no two
/// PCRs to measure between.
pub fn estimate_bitrate(
    input: impl Read,
    limit: Option<u64>,
) -> Result<PcrEstimate, EstimateError> {
    let mut input = input.take(limit.unwrap_or(u64::MAX));
    let mut est = PcrEstimator::new();
    let mut buf = vec![0u8; TS_PACKET_SIZE * 1024];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf)?;
        for p in buf[..n].chunks(TS_PACKET_SIZE) {
            if p.len() < TS_PACKET_SIZE && limit.is_some() {
                // The limit cut this packet, not the input.
                break;
            }
            let packet = TsPacket::parse(p, offset).map_err(EstimateError::Ts)?;
            est.push(&packet, offset);
            offset += TS_PACKET_SIZE as u64;
        }
        if n < buf.len() {
            return est.estimate();
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ts::tests::packet;

    /// A stream at `bitrate` with a PCR on PID 256 every `every` packets and
    /// filler on PID 257, `n` packets, the first PCR at `start`.
    fn stream(bitrate: u64, every: usize, n: usize, start: u64) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            let p = if i % every == 0 {
                let bits = (i * TS_PACKET_SIZE * 8) as u64;
                let pcr = (start + bits * PCR_HZ / bitrate) % PCR_WRAP;
                packet(256, (i / every) as u8, Some(pcr))
            } else {
                packet(257, i as u8, None)
            };
            v.extend_from_slice(&p);
        }
        v
    }

    #[test]
    fn constant_bitrate() {
        for bitrate in [500_000, 3_750_000, 20_000_000] {
            let s = stream(bitrate, 10, 1001, 1_000_000);
            let e = estimate_bitrate(&s[..], None).unwrap();
            assert_eq!(e.pid, 256);
            assert_eq!(e.pcrs, 101);
            assert_eq!(e.bytes, 1000 * 188);
            let err = e.bitrate.abs_diff(bitrate);
            assert!(err <= 1, "{bitrate}: {e:?}");
        }
    }

    #[test]
    fn across_the_pcr_wrap() {
        let s = stream(2_000_000, 5, 501, PCR_WRAP - 27_000_000 / 10);
        let e = estimate_bitrate(&s[..], None).unwrap();
        assert!(e.bitrate.abs_diff(2_000_000) <= 1, "{e:?}");
    }

    #[test]
    fn discontinuity_splits_segments() {
        let a = stream(1_000_000, 10, 101, 0);
        let mut b = stream(1_000_000, 10, 101, 5 * PCR_HZ);
        crate::media::ts::set_discontinuity((&mut b[..188]).try_into().unwrap());
        // Without the flag the jump back would also be a discontinuity; with
        // it, the 2 segments count 100 packets each and no time between.
        let s = [a.clone(), b, a].concat();
        let e = estimate_bitrate(&s[..], None).unwrap();
        assert_eq!(e.bytes, 3 * 100 * 188);
        assert!(e.bitrate.abs_diff(1_000_000) <= 1, "{e:?}");
    }

    #[test]
    fn prefix() {
        let s = stream(1_000_000, 10, 1001, 0);
        let e = estimate_bitrate(&s[..], Some(188 * 505)).unwrap();
        assert_eq!(e.bytes, 500 * 188);
        let e = estimate_bitrate(&s[..], Some(188 * 505 + 100)).unwrap();
        assert_eq!(
            e.bytes,
            500 * 188,
            "a partial packet cut by the limit is ignored"
        );
    }

    #[test]
    fn no_pcr() {
        let s: Vec<u8> = (0..50).flat_map(|i| packet(100, i, None)).collect();
        let e = estimate_bitrate(&s[..], None).unwrap_err();
        assert!(matches!(e, EstimateError::NoPcr { packets: 50 }), "{e}");
        assert!(e.to_string().contains("give the bitrate"));
        // One PCR is not enough either.
        let s = packet(100, 0, Some(5));
        assert!(matches!(
            estimate_bitrate(&s[..], None),
            Err(EstimateError::NoPcr { packets: 1 })
        ));
    }

    #[test]
    fn not_ts() {
        let mut s = stream(1_000_000, 10, 20, 0);
        s[188 * 7] = 0x00;
        match estimate_bitrate(&s[..], None) {
            Err(EstimateError::Ts(TsError::Sync { offset, found: 0 })) => {
                assert_eq!(offset, 188 * 7)
            }
            other => panic!("{other:?}"),
        }
        let s2 = stream(1_000_000, 10, 3, 0);
        let s3 = [&s2[..], &s2[..50]].concat();
        assert!(matches!(
            estimate_bitrate(&s3[..], None),
            Err(EstimateError::Ts(TsError::Truncated {
                offset: 564,
                len: 50
            }))
        ));
    }
}
