// SPDX-License-Identifier: GPL-2.0

//! What is sent: destinations, bytes per destination, payload size, RTP, and
//! the buffer the payload comes from.

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4},
    ptr::NonNull,
};

/// Source address of the benchmark device (`dummy0`).
pub const SRC_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// UDP source port of the destinations mdwrite, AF_PACKET and pktgen build.
pub const SRC_PORT: u16 = 5000;
/// UDP destination port of every destination.
pub const DST_PORT: u16 = 9000;
/// Bytes of the RTP header (RFC 3550, no CSRC, no extension).
pub const RTP_HEADER: usize = 12;
/// RTP payload type of MPEG-TS (RFC 2250).
pub const RTP_PT_MP2T: u8 = 33;
/// Most UDP payload bytes one GSO send carries (IPv4: 65535 - 20 - 8).
pub const GSO_MAX_BYTES: usize = 65507;
/// Cap on distinct payload memory: destinations beyond it share buffers
/// (the cost per packet does not depend on which pages the bytes are in).
pub const POOL_CAP: usize = 64 << 20;

/// Destination `i`'s address: 10.1.0.1 upwards, contiguous (pktgen takes a
/// range).
pub fn dest_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + i as u32)
}

/// Destination `i`'s socket address.
pub fn dest_sockaddr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(dest_addr(i), DST_PORT)
}

/// Destination `i`'s (made-up, locally administered) MAC address; the
/// benchmark adds it to the neighbour table.
pub fn dest_mac(i: usize) -> [u8; 6] {
    let n = (i + 1) as u32;
    [0x02, 0x00, 0x00, (n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// Formats a MAC address the way `ip` and pktgen read it.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One workload: every destination gets `bytes` of payload in packets of
/// `payload` bytes (the last one of each destination may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Number of destinations.
    pub dests: usize,
    /// Payload bytes per destination per call.
    pub bytes: usize,
    /// Payload bytes per packet (without the RTP header).
    pub payload: usize,
    /// Whether each packet carries an RTP header in front of its payload.
    pub rtp: bool,
    /// Fan-out: every destination gets the same payload (the same memory),
    /// as a relay or a multicast-to-unicast gateway sends it.
    pub fanout: bool,
}

impl Workload {
    /// Packets per destination.
    pub fn packets_per_dest(&self) -> usize {
        self.bytes.div_ceil(self.payload)
    }

    /// Packets of the whole workload.
    pub fn packets(&self) -> u64 {
        (self.packets_per_dest() * self.dests) as u64
    }

    /// Payload bytes of the whole workload (RTP headers not counted).
    pub fn total_bytes(&self) -> u64 {
        (self.bytes * self.dests) as u64
    }

    /// Payload bytes of packet `k` of a destination.
    pub fn packet_len(&self, k: usize) -> usize {
        self.payload.min(self.bytes - k * self.payload)
    }

    /// Bytes of the RTP header of each packet (0 without RTP).
    pub fn rtp_len(&self) -> usize {
        if self.rtp {
            RTP_HEADER
        } else {
            0
        }
    }

    /// UDP payload bytes of one packet (RTP header included).
    pub fn segment(&self) -> usize {
        self.payload + self.rtp_len()
    }

    /// Packets one UDP GSO send carries (at most 64 KB of UDP payload).
    pub fn gso_segments(&self) -> usize {
        GSO_MAX_BYTES / self.segment()
    }

    /// Packets one zero-copy UDP GSO send carries: with RTP, every packet
    /// is a header and a payload iovec, up to 3 page fragments, and a
    /// zero-copy skb holds at most `MAX_SKB_FRAGS` (17) of them, else
    /// `EMSGSIZE`.
    pub fn gso_segments_zerocopy(&self) -> usize {
        if self.rtp {
            17 / 3
        } else {
            self.gso_segments()
        }
    }

    /// IPv4 packet size (IP + UDP [+ RTP] headers + payload).
    pub fn ip_size(&self) -> usize {
        20 + 8 + self.segment()
    }

    /// Size of the distinct payload memory the workload uses.
    pub fn pool_size(&self) -> usize {
        if self.fanout {
            return self.bytes;
        }
        let per_pool = (POOL_CAP / self.bytes).clamp(1, self.dests);
        per_pool * self.bytes
    }

    /// Offset of destination `d`'s payload in the pool.
    pub fn offset(&self, d: usize) -> usize {
        (d * self.bytes) % self.pool_size()
    }

    /// Short name, e.g. `1472` or `1316+rtp`.
    pub fn payload_name(&self) -> String {
        if self.rtp {
            format!("{}+rtp", self.payload)
        } else {
            self.payload.to_string()
        }
    }
}

/// Page-aligned, pre-faulted anonymous memory holding the payload.
pub struct Pool {
    ptr: NonNull<u8>,
    len: usize,
}

impl Pool {
    /// Maps `len` bytes and writes a pattern word into every page, so each
    /// page is faulted in (private and dirty) before anything is timed. The
    /// contents do not matter: no method's cost depends on them.
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut pool = Self {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL"),
            len,
        };
        for (i, page) in pool.as_mut_slice().chunks_mut(4096).enumerate() {
            page[0] = i as u8 | 1;
        }
        Ok(pool)
    }

    /// The whole pool.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for the pool's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Destination `d`'s payload under `wl`.
    pub fn dest_data(&self, wl: &Workload, d: usize) -> &[u8] {
        let off = wl.offset(d);
        &self.as_slice()[off..off + wl.bytes]
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Per-destination RTP state of the methods without a header template: a
/// 12-byte header written per packet in userspace.
#[derive(Clone, Copy, Debug)]
pub struct RtpState {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
}

/// RTP timestamp increment per packet (90 kHz clock, arbitrary rate).
pub const RTP_TS_INCREMENT: u32 = 90;

impl RtpState {
    /// Destination `d`'s initial state.
    pub fn new(d: usize) -> Self {
        Self {
            ssrc: 0x1000 + d as u32,
            seq: 0,
            timestamp: 0,
        }
    }

    /// Writes the next packet's header into `h` and advances.
    #[inline]
    pub fn next(&mut self, h: &mut [u8; RTP_HEADER]) {
        h[0] = 0x80;
        h[1] = RTP_PT_MP2T;
        h[2..4].copy_from_slice(&self.seq.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(RTP_TS_INCREMENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_packet_count() {
        let wl = Workload {
            dests: 64,
            bytes: 256 << 10,
            payload: 1472,
            rtp: false,
            fanout: false,
        };
        assert_eq!(wl.packets(), 11_456);
        assert_eq!(wl.packet_len(178), (256 << 10) - 178 * 1472);
        assert_eq!(wl.gso_segments(), 44);
    }

    #[test]
    fn fanout_sends_the_same_memory_to_every_destination() {
        let wl = Workload {
            dests: 512,
            bytes: 1316,
            payload: 1316,
            rtp: true,
            fanout: true,
        };
        assert_eq!(wl.pool_size(), 1316);
        assert!((0..512).all(|d| wl.offset(d) == 0));
        assert_eq!(wl.packets(), 512);
    }

    #[test]
    fn pool_is_capped_and_offsets_fit() {
        let wl = Workload {
            dests: 512,
            bytes: 1 << 20,
            payload: 1316,
            rtp: true,
            fanout: false,
        };
        assert_eq!(wl.pool_size(), POOL_CAP);
        for d in 0..wl.dests {
            assert!(wl.offset(d) + wl.bytes <= wl.pool_size());
        }
        assert_eq!(wl.gso_segments(), 49);
        assert_eq!(wl.ip_size(), 1356);
    }

    #[test]
    fn addresses_are_contiguous() {
        assert_eq!(dest_addr(0), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(dest_addr(511), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(mac_string(dest_mac(255)), "02:00:00:00:01:00");
    }
}
