// SPDX-License-Identifier: GPL-2.0

//! RTP (RFC 3550) headers, and the parameters of an MPEG-TS stream over RTP
//! (RFC 2250).

use std::io;

use crate::Rtp;

/// Payload type of MPEG-TS over RTP (RFC 3551, RFC 2250).
pub const PT_MP2T: u8 = 33;

/// The first dynamic payload type (RFC 3551), used for opaque data.
pub const PT_DYNAMIC: u8 = 96;

/// RTP's timestamp clock for MPEG-TS, and the usual video clock: 90 kHz.
pub const CLOCK_90KHZ: u32 = 90_000;

/// The fixed RTP header, without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;

/// The timestamp step between two packets of `payload_size` bytes at
/// `bitrate` bits per second, on a `clock_hz` clock, rounded to the
/// nearest tick: `clock_hz * payload_size * 8 / bitrate`.
///
/// # Panics
///
/// If `bitrate` is 0.
///
/// # Examples
///
/// ```
/// use mdwrite::media::rtp::{ts_increment, CLOCK_90KHZ};
/// // 7 TS packets at 3.76 Mb/s last 2.8 ms, 252 ticks of 90 kHz.
/// assert_eq!(ts_increment(1316, 3_760_000, CLOCK_90KHZ), 252);
/// ```
pub fn ts_increment(payload_size: usize, bitrate: u64, clock_hz: u32) -> u32 {
    assert!(bitrate > 0, "bitrate 0");
    let bits = payload_size as u128 * 8;
    let t = (u128::from(clock_hz) * bits + u128::from(bitrate) / 2) / u128::from(bitrate);
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// A random 32-bit number from the kernel (`getrandom(2)`), for SSRCs and
/// initial sequence numbers and timestamps (RFC 3550 5.1 asks for random
/// ones).
pub fn random_u32() -> io::Result<u32> {
    Ok(getrandom::u32()?)
}

/// RTP fields for one destination of a stream: random SSRC, first sequence
/// number and first timestamp, payload type `payload_type`, and the
/// timestamp increment of one `payload_size` packet at `bitrate` on a 90 kHz
/// clock.
pub fn destination_rtp(payload_type: u8, bitrate: u64, payload_size: usize) -> io::Result<Rtp> {
    Ok(Rtp::random(payload_type)?.with_ts_increment(ts_increment(
        payload_size,
        bitrate,
        CLOCK_90KHZ,
    )))
}

/// A parsed RTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// Why a datagram is not an RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the headers it announces.
    #[error("{0}-byte datagram is shorter than its RTP header")]
    Short(usize),
    /// The version is not 2.
    #[error("RTP version {0}, not 2")]
    Version(u8),
    /// The padding length is larger than the payload.
    #[error("RTP padding longer than the payload")]
    Padding,
}

impl RtpHeader {
    /// Parses the RTP packet `datagram`; returns the header and the payload
    /// (after CSRCs and header extension, without padding).
    pub fn parse(datagram: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
        let short = RtpError::Short(datagram.len());
        if datagram.len() < RTP_HEADER_LEN {
            return Err(short);
        }
        let b0 = datagram[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::Version(b0 >> 6));
        }
        let mut start = RTP_HEADER_LEN + 4 * usize::from(b0 & 0x0f);
        if b0 & 0x10 != 0 {
            let ext = datagram.get(start..start + 4).ok_or(short)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = datagram.len();
        if start > end {
            return Err(short);
        }
        if b0 & 0x20 != 0 {
            let pad = usize::from(datagram[end - 1]);
            if pad == 0 || pad > end - start {
                return Err(RtpError::Padding);
            }
            end -= pad;
        }
        let header = RtpHeader {
            marker: datagram[1] & 0x80 != 0,
            payload_type: datagram[1] & 0x7f,
            seq: u16::from_be_bytes([datagram[2], datagram[3]]),
            timestamp: u32::from_be_bytes(datagram[4..8].try_into().expect("4 bytes")),
            ssrc: u32::from_be_bytes(datagram[8..12].try_into().expect("4 bytes")),
        };
        Ok((header, &datagram[start..end]))
    }

    /// The 12-byte header (version 2, no padding, extension or CSRCs).
    pub fn to_bytes(&self) -> [u8; RTP_HEADER_LEN] {
        let mut b = [0u8; RTP_HEADER_LEN];
        b[0] = 0x80;
        b[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        b[2..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments() {
        // 1316 bytes = 10528 bits; at 10528 b/s one packet is one second.
        assert_eq!(ts_increment(1316, 10_528, CLOCK_90KHZ), 90_000);
        assert_eq!(ts_increment(1316, 2_000_000, CLOCK_90KHZ), 474); // 473.76
        assert_eq!(ts_increment(1316, 100_000_000, CLOCK_90KHZ), 9); // 9.47
        assert_eq!(ts_increment(188, u64::MAX, CLOCK_90KHZ), 0);
    }

    #[test]
    fn header_round_trip() {
        let h = RtpHeader {
            marker: true,
            payload_type: PT_MP2T,
            seq: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        let mut d = h.to_bytes().to_vec();
        assert_eq!(
            &d[..],
            &[
                0x80,
                0x80 | 33,
                0xff,
                0xfe,
                0xde,
                0xad,
                0xbe,
                0xef,
                1,
                2,
                3,
                4
            ]
        );
        d.extend_from_slice(b"payload");
        let (p, payload) = RtpHeader::parse(&d).unwrap();
        assert_eq!(p, h);
        assert_eq!(payload, b"payload");
    }

    #[test]
    fn csrc_extension_padding() {
        let mut d = vec![0x80 | 0x20 | 0x10 | 2, 33, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        d.extend_from_slice(&[0xaa; 8]); // 2 CSRCs
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // 1-word extension
        d.extend_from_slice(b"data");
        d.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let (h, payload) = RtpHeader::parse(&d).unwrap();
        assert_eq!((h.seq, h.timestamp, h.ssrc), (1, 2, 3));
        assert_eq!(payload, b"data");
    }

    #[test]
    fn not_rtp() {
        assert_eq!(RtpHeader::parse(&[0x80; 11]), Err(RtpError::Short(11)));
        assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        let mut d = vec![0x81, 33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RtpHeader::parse(&d), Err(RtpError::Short(12)));
        d.extend_from_slice(&[0; 4]);
        assert!(RtpHeader::parse(&d).is_ok());
        let d = [0xa0, 33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5];
        assert_eq!(RtpHeader::parse(&d), Err(RtpError::Padding));
    }

    #[test]
    fn random_destinations_differ() {
        let a = destination_rtp(PT_MP2T, 2_000_000, 1316).unwrap();
        let b = destination_rtp(PT_MP2T, 2_000_000, 1316).unwrap();
        assert_eq!((a.payload_type, a.ts_increment), (33, 474));
        // 2^-32 chance of a false failure per run.
        assert_ne!(a.ssrc, b.ssrc);
    }
}
