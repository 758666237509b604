// SPDX-License-Identifier: GPL-2.0

//! MPEG transport stream packets (ISO/IEC 13818-1): the fields a sender
//! needs to check alignment, find PCRs and mark discontinuities.

/// Size of one transport stream packet.
pub const TS_PACKET_SIZE: usize = 188;

/// The sync byte every TS packet starts with.
pub const SYNC_BYTE: u8 = 0x47;

/// TS packets per UDP payload by default (RFC 2250 and SMPTE 2022 use 7:
/// 1316 bytes, which fits a 1500-byte MTU with IP, UDP and RTP headers).
pub const DEFAULT_TS_PER_PACKET: usize = 7;

/// The default UDP payload size for MPEG-TS, [`DEFAULT_TS_PER_PACKET`]
/// whole TS packets (1316 bytes).
pub const DEFAULT_PAYLOAD_SIZE: usize = DEFAULT_TS_PER_PACKET * TS_PACKET_SIZE;

/// The PCR's clock: 27 MHz.
pub const PCR_HZ: u64 = 27_000_000;

/// PCRs wrap at 2^33 ticks of the 90 kHz base times 300.
pub const PCR_WRAP: u64 = (1 << 33) * 300;

/// Not MPEG-TS where MPEG-TS was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// The byte at `offset` should have been the sync byte 0x47.
    #[error(
        "not MPEG-TS: byte {found:#04x} at offset {offset} where a TS packet should start \
         with the sync byte 0x47"
    )]
    Sync {
        /// Offset from the start of the input.
        offset: u64,
        /// The byte found there.
        found: u8,
    },
    /// The input ends `len` bytes into a TS packet that starts at `offset`.
    #[error(
        "not MPEG-TS: the input ends {len} bytes into the TS packet at offset {offset} \
         (its size is not a multiple of 188)"
    )]
    Truncated {
        /// Offset of the incomplete packet.
        offset: u64,
        /// Bytes of it present.
        len: usize,
    },
}

impl From<TsError> for std::io::Error {
    fn from(e: TsError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// One 188-byte TS packet, borrowed.
///
/// Only the fields a sender needs are decoded: PID, continuity counter,
/// and the adaptation field's discontinuity indicator and PCR.
#[derive(Clone, Copy, Debug)]
pub struct TsPacket<'a>(&'a [u8; TS_PACKET_SIZE]);

impl<'a> TsPacket<'a> {
    /// The packet in `bytes` (exactly 188 bytes), which starts at `offset`
    /// of the input (for the error message).
    pub fn parse(bytes: &'a [u8], offset: u64) -> Result<Self, TsError> {
        match bytes.first() {
            Some(&b) if b != SYNC_BYTE => return Err(TsError::Sync { offset, found: b }),
            _ => {}
        }
        <&[u8; TS_PACKET_SIZE]>::try_from(bytes)
            .map(Self)
            .map_err(|_| TsError::Truncated {
                offset,
                len: bytes.len(),
            })
    }

    /// The packet identifier (13 bits).
    pub fn pid(&self) -> u16 {
        u16::from_be_bytes([self.0[1] & 0x1f, self.0[2]])
    }

    /// The continuity counter (4 bits).
    pub fn continuity_counter(&self) -> u8 {
        self.0[3] & 0x0f
    }

    /// The adaptation field's bytes after its length byte, if it has any.
    fn adaptation(&self) -> Option<&'a [u8]> {
        adaptation_range(self.0).map(|r| &self.0[r])
    }

    /// Whether the adaptation field's discontinuity_indicator is set.
    pub fn discontinuity(&self) -> bool {
        self.adaptation().is_some_and(|a| a[0] & 0x80 != 0)
    }

    /// The program clock reference in 27 MHz ticks, if the packet has one.
    pub fn pcr(&self) -> Option<u64> {
        let a = self.adaptation()?;
        if a[0] & 0x10 == 0 || a.len() < 7 {
            return None;
        }
        let base = (u64::from(a[1]) << 25)
            | (u64::from(a[2]) << 17)
            | (u64::from(a[3]) << 9)
            | (u64::from(a[4]) << 1)
            | (u64::from(a[5]) >> 7);
        let ext = (u64::from(a[5] & 1) << 8) | u64::from(a[6]);
        Some(base * 300 + ext)
    }
}

/// Range of the adaptation field after its length byte, when the packet
/// has an adaptation field of at least one byte (the flags).
fn adaptation_range(p: &[u8; TS_PACKET_SIZE]) -> Option<std::ops::Range<usize>> {
    let control = (p[3] >> 4) & 0x3;
    if control & 0x2 == 0 {
        return None;
    }
    let len = usize::from(p[4]);
    if len == 0 || 5 + len > TS_PACKET_SIZE {
        return None;
    }
    Some(5..5 + len)
}

/// Sets the adaptation field's discontinuity_indicator of the TS packet
/// `p` if it has an adaptation field with a flags byte; returns whether it
/// could.
///
/// A packet without one is left alone: adding an adaptation field would
/// change the packet's payload.
pub fn set_discontinuity(p: &mut [u8; TS_PACKET_SIZE]) -> bool {
    match adaptation_range(p) {
        Some(r) => {
            p[r.start] |= 0x80;
            true
        }
        None => false,
    }
}

/// Whether `bytes` (the start of a file) looks like MPEG-TS: a sync byte at
/// every packet start it covers, up to 3 packets, and at least one packet.
pub fn looks_like_ts(bytes: &[u8]) -> bool {
    bytes.len() >= TS_PACKET_SIZE
        && bytes
            .chunks(TS_PACKET_SIZE)
            .take(3)
            .all(|p| p[0] == SYNC_BYTE)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TS packet of `pid` with continuity counter `cc` and, if given, a
    /// PCR in its adaptation field.
    pub(crate) fn packet(pid: u16, cc: u8, pcr: Option<u64>) -> [u8; TS_PACKET_SIZE] {
        let mut p = [0xffu8; TS_PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        match pcr {
            None => p[3] = 0x10 | (cc & 0xf),
            Some(pcr) => {
                p[3] = 0x30 | (cc & 0xf);
                p[4] = 7;
                p[5] = 0x10;
                let (base, ext) = (pcr / 300, pcr % 300);
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = ((base & 1) << 7) as u8 | 0x7e | (ext >> 8) as u8;
                p[11] = ext as u8;
            }
        }
        p
    }

    #[test]
    fn fields_round_trip() {
        let pcr = PCR_WRAP - 12345;
        let p = packet(0x1abc, 9, Some(pcr));
        let t = TsPacket::parse(&p, 0).unwrap();
        assert_eq!(t.pid(), 0x1abc);
        assert_eq!(t.continuity_counter(), 9);
        assert_eq!(t.pcr(), Some(pcr));
        assert!(!t.discontinuity());
        let q = packet(17, 3, None);
        let t = TsPacket::parse(&q, 0).unwrap();
        assert_eq!((t.pid(), t.continuity_counter(), t.pcr()), (17, 3, None));
    }

    #[test]
    fn discontinuity_only_where_an_adaptation_field_is() {
        let mut p = packet(256, 0, Some(1000));
        assert!(set_discontinuity(&mut p));
        let t = TsPacket::parse(&p, 0).unwrap();
        assert!(t.discontinuity());
        assert_eq!(t.pcr(), Some(1000), "the PCR survives the flag");
        let mut q = packet(256, 0, None);
        let before = q;
        assert!(!set_discontinuity(&mut q));
        assert_eq!(q, before);
    }

    #[test]
    fn errors_name_the_offset() {
        let mut p = packet(1, 0, None);
        p[0] = 0x48;
        let e = TsPacket::parse(&p, 376).unwrap_err();
        assert_eq!(
            e,
            TsError::Sync {
                offset: 376,
                found: 0x48
            }
        );
        assert!(e.to_string().contains("offset 376"), "{e}");
        let e = TsPacket::parse(&p[..100], 188).unwrap_err();
        assert!(
            matches!(e, TsError::Sync { .. }),
            "the sync byte first: {e}"
        );
        p[0] = SYNC_BYTE;
        let e = TsPacket::parse(&p[..100], 188).unwrap_err();
        assert!(e.to_string().contains("100 bytes into"), "{e}");
    }

    #[test]
    fn probe() {
        let mut v = Vec::new();
        for cc in 0..3 {
            v.extend_from_slice(&packet(1, cc, None));
        }
        assert!(looks_like_ts(&v));
        assert!(looks_like_ts(&v[..200]));
        assert!(!looks_like_ts(&v[..100]));
        v[376] = 0;
        assert!(!looks_like_ts(&v));
        assert!(!looks_like_ts(b"hello world"));
    }
}
