// SPDX-License-Identifier: GPL-2.0

//! Per-destination packet header templates.
//!
//! A [`Template`] holds the complete header of a packet to one destination:
//! Ethernet (with an optional 802.1Q tag), IPv4 or IPv6, UDP and an optional
//! RTP header. Building a packet's header copies the template once and then
//! writes only what changes per packet: lengths, the IPv4 id and header
//! checksum, the UDP checksum and the RTP sequence number and timestamp.
//! Checksums start from sums precomputed in [`Template::new`].
//!
//! This file uses its sibling module `checksum`.

use super::checksum;

/// The largest header a template holds: Ethernet, VLAN tag, IPv6, UDP, RTP.
pub const MAX_HEADER_LEN: usize = ETH_LEN + VLAN_LEN + IPV6_LEN + UDP_LEN + RTP_LEN;

/// The offset of the UDP checksum field within the UDP header.
///
/// With [`UdpCsum::Partial`], this is Linux's `csum_offset`.
pub const UDP_CHECK_OFFSET: usize = 6;

/// The length of an Ethernet header without VLAN tag.
const ETH_LEN: usize = 14;
/// The length of an 802.1Q tag.
const VLAN_LEN: usize = 4;
/// The length of an IPv6 header.
const IPV6_LEN: usize = 40;
/// The length of a UDP header.
const UDP_LEN: usize = 8;
/// The length of an RTP header without CSRCs or extension.
const RTP_LEN: usize = 12;
/// The smallest packet size an IPv4 link must carry (RFC 791).
const IPV4_MIN_PACKET: u16 = 68;
/// The IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;

/// The IP addresses of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAddrs {
    /// IPv4 source and destination addresses, network order.
    V4 {
        /// The source address.
        src: [u8; 4],
        /// The destination address.
        dst: [u8; 4],
    },
    /// IPv6 source and destination addresses, network order.
    V6 {
        /// The source address.
        src: [u8; 16],
        /// The destination address.
        dst: [u8; 16],
    },
}

/// The RTP (RFC 3550) stream of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpSpec {
    /// The synchronization source identifier.
    pub ssrc: u32,
    /// The payload type, `0..=127`.
    pub payload_type: u8,
    /// The sequence number of the first packet.
    pub seq: u16,
    /// The timestamp of the first packet.
    pub timestamp: u32,
    /// The timestamp increment from one packet to the next.
    pub ts_increment: u32,
}

/// Everything needed to build the headers of packets to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestSpec {
    /// The Ethernet source address.
    pub src_mac: [u8; 6],
    /// The Ethernet destination address.
    pub dst_mac: [u8; 6],
    /// The 802.1Q tag control information (PCP, DEI, VID), if tagged.
    ///
    /// The VID (low 12 bits) must be in `1..=4094`.
    pub vlan_tci: Option<u16>,
    /// The IP version and addresses.
    pub ip: IpAddrs,
    /// The UDP source port; 0 is allowed (RFC 768: no reply port).
    pub src_port: u16,
    /// The UDP destination port, non-zero.
    pub dst_port: u16,
    /// The IPv4 TTL or IPv6 hop limit, non-zero.
    pub hop_limit: u8,
    /// The DSCP, `0..=63`; the ECN bits are always 0.
    pub dscp: u8,
    /// The largest packet at layer 3 (IP, UDP and RTP headers and payload).
    ///
    /// It must leave room for at least one payload byte, and be at least 68
    /// for IPv4.
    pub packet_size: u16,
    /// The RTP stream, if packets carry an RTP header.
    pub rtp: Option<RtpSpec>,
}

/// Why a template or a header could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateError {
    /// The DSCP is larger than 63.
    InvalidDscp,
    /// The VLAN id is 0 or 4095.
    InvalidVlanId,
    /// The UDP destination port is 0.
    ZeroPort,
    /// The TTL or hop limit is 0.
    ZeroHopLimit,
    /// The RTP payload type is larger than 127.
    InvalidPayloadType,
    /// The packet size leaves no room for payload (or is below 68 for IPv4).
    PacketSizeTooSmall,
    /// [`UdpCsum::Zero`] was asked for an IPv6 packet.
    ZeroChecksumIpv6,
    /// The payload length is 0 or larger than [`Template::max_payload`].
    InvalidPayloadLen,
    /// The output buffer is shorter than [`Template::header_len`].
    BufferTooShort,
}

/// How to fill the UDP checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpCsum {
    /// Checksum offload (Linux `CHECKSUM_PARTIAL`).
    ///
    /// The field gets the folded, not complemented, pseudo-header sum, as
    /// `~csum_tcpudp_magic()` or `~csum_ipv6_magic()` give in Linux; the
    /// device adds the rest. `csum_start` is [`Template::l4_offset`] and
    /// `csum_offset` is [`UDP_CHECK_OFFSET`].
    Partial,
    /// No checksum: the field is 0. IPv4 only.
    Zero,
    /// A complete checksum computed in software.
    Full {
        /// The sum of exactly the payload bytes, as
        /// [`checksum::sum_bytes`]`(0, payload)` gives it.
        payload_sum: u32,
    },
}

/// The fields that change from one packet to the next of a destination.
///
/// It continues across calls: the owner keeps it per destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketState {
    /// The IPv4 identification of the next packet (unused with IPv6).
    pub ip_id: u16,
    /// The RTP sequence number of the next packet (unused without RTP).
    pub rtp_seq: u16,
    /// The RTP timestamp of the next packet (unused without RTP).
    pub rtp_ts: u32,
}

/// The header template of one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The header bytes, with 0 in every per-packet field.
    bytes: [u8; MAX_HEADER_LEN],
    /// The length of the header in `bytes`.
    header_len: u8,
    /// The offset of the IP header.
    l3_offset: u8,
    /// The offset of the UDP header.
    l4_offset: u8,
    /// Whether the IP header is IPv6.
    ipv6: bool,
    /// Whether an RTP header follows the UDP header.
    rtp: bool,
    /// The IP, UDP and RTP header length.
    l3_header_len: u16,
    /// The UDP and RTP header length.
    l4_header_len: u16,
    /// The largest payload of one packet.
    max_payload: u16,
    /// The sum of the IPv4 header without length, id and checksum.
    ip_sum: u32,
    /// The sum of the pseudo-header without the UDP length.
    pseudo_sum: u32,
    /// `pseudo_sum` plus the UDP and RTP headers' constant fields.
    full_sum: u32,
    /// The RTP timestamp increment per packet (0 without RTP).
    ts_increment: u32,
    /// The state of a destination's first packet.
    initial: PacketState,
}

/// The per-packet writes of a destination's full-size packets, computed
/// once per call by [`Template::full_size_patch`].
///
/// With [`UdpCsum::Partial`] or [`UdpCsum::Zero`], every packet carrying
/// [`Template::max_payload`] bytes has the same length fields and the same
/// UDP checksum field, so turning an earlier header of the same template
/// into the next full-size packet's ([`FullSizePatch::patch`]) costs the
/// IPv4 id and header checksum and the RTP fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullSizePatch {
    /// The length of the header.
    header_len: u8,
    /// The offset of the IP header.
    l3_offset: u8,
    /// The offset of the UDP header.
    l4_offset: u8,
    /// Whether the IP header is IPv6.
    ipv6: bool,
    /// Whether an RTP header follows the UDP header.
    rtp: bool,
    /// The IPv4 total length or IPv6 payload length.
    l3_len: u16,
    /// The UDP length and checksum fields, as stored.
    udp_tail: [u8; 4],
    /// The IPv4 header sum without id and checksum (with the length),
    /// folded to 16 bits.
    ip_sum: u16,
    /// The RTP timestamp increment per packet.
    ts_increment: u32,
    /// For [`FullSizePatch::patch_summed`]: the UDP checksum's sum
    /// without the RTP fields and the payload (the pseudo-header, the
    /// constant header fields and the UDP length twice).
    udp_sum: u64,
}

impl FullSizePatch {
    /// Turns `out[..header_len()]`, which holds a header its template
    /// wrote for an earlier packet, into the header
    /// [`Template::write_header`] writes for a packet of
    /// [`Template::max_payload`] bytes with the checksum mode the patch was
    /// made for, and advances `state` the same way.
    #[inline(always)]
    pub fn patch(&self, out: &mut [u8], state: &mut PacketState) -> Result<(), TemplateError> {
        // Checked first, so that an error changes nothing.
        let out = out
            .get_mut(..usize::from(self.header_len))
            .ok_or(TemplateError::BufferTooShort)?;
        let l3 = usize::from(self.l3_offset);
        let l4 = usize::from(self.l4_offset);
        if self.ipv6 {
            let ip = chunk::<6>(out, l3).ok_or(TemplateError::BufferTooShort)?;
            put16(ip, 4, self.l3_len);
        } else {
            let ip = chunk::<12>(out, l3).ok_or(TemplateError::BufferTooShort)?;
            put16(ip, 2, self.l3_len);
            put16(ip, 4, state.ip_id);
            put16(ip, 10, checksum::finish_add16(self.ip_sum, state.ip_id));
        }
        if self.rtp {
            let l4h = chunk::<{ UDP_LEN + 8 }>(out, l4).ok_or(TemplateError::BufferTooShort)?;
            let [.., l0, l1, c0, c1] =
                chunk::<UDP_LEN>(l4h, 0).ok_or(TemplateError::BufferTooShort)?;
            [*l0, *l1, *c0, *c1] = self.udp_tail;
            put16(l4h, UDP_LEN + 2, state.rtp_seq);
            put32(l4h, UDP_LEN + 4, state.rtp_ts);
            // Only with RTP: unused without.
            state.rtp_seq = state.rtp_seq.wrapping_add(1);
            state.rtp_ts = state.rtp_ts.wrapping_add(self.ts_increment);
        } else {
            let [.., l0, l1, c0, c1] =
                chunk::<UDP_LEN>(out, l4).ok_or(TemplateError::BufferTooShort)?;
            [*l0, *l1, *c0, *c1] = self.udp_tail;
        }
        state.ip_id = state.ip_id.wrapping_add(1);
        Ok(())
    }

    /// [`FullSizePatch::patch`] for a patch made by
    /// [`Template::full_size_patch_summed`]: the header
    /// [`Template::write_header`] writes for a packet of
    /// [`Template::max_payload`] bytes with
    /// [`UdpCsum::Full`]` { payload_sum }`.
    #[inline(always)]
    pub fn patch_summed(
        &self,
        out: &mut [u8],
        state: &mut PacketState,
        payload_sum: u32,
    ) -> Result<(), TemplateError> {
        let rtp_sum = match self.rtp {
            true => u64::from(state.rtp_seq).wrapping_add(u64::from(state.rtp_ts)),
            false => 0,
        };
        let sum = self
            .udp_sum
            .wrapping_add(rtp_sum)
            .wrapping_add(u64::from(payload_sum));
        let check = match checksum::finish(checksum::fold64(sum)) {
            0 => 0xffff,
            c => c,
        };
        // `patch` checks the buffer before it writes (an error changes
        // nothing) and writes the UDP length and a checksum field of 0.
        self.patch(out, state)?;
        if let Some(udp) = chunk::<UDP_LEN>(out, usize::from(self.l4_offset)) {
            put16(udp, UDP_CHECK_OFFSET, check);
        }
        Ok(())
    }
}

/// Appends bytes to a header under construction.
struct Builder {
    /// The header bytes.
    bytes: [u8; MAX_HEADER_LEN],
    /// How many bytes are used.
    len: usize,
}

impl Builder {
    /// Appends `data`; the callers never exceed [`MAX_HEADER_LEN`] in total.
    fn push(&mut self, data: &[u8]) {
        let rest = self.bytes.get_mut(self.len..).unwrap_or_default();
        if let Some(dst) = rest.get_mut(..data.len()) {
            dst.copy_from_slice(data);
            // No overflow: the new length is at most MAX_HEADER_LEN.
            self.len = self.len.wrapping_add(data.len());
        }
    }

    /// Returns the bytes appended since offset `from`.
    fn since(&self, from: usize) -> &[u8] {
        self.bytes.get(from..self.len).unwrap_or(&[])
    }
}

/// Writes `value` big-endian at `buf[at..at + 2]`, if in bounds.
#[inline(always)]
fn put16(buf: &mut [u8], at: usize, value: u16) {
    if let Some(dst) = buf.get_mut(at..at.wrapping_add(2)) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

/// Writes `value` big-endian at `buf[at..at + 4]`, if in bounds.
#[inline(always)]
fn put32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(dst) = buf.get_mut(at..at.wrapping_add(4)) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

/// The `N` bytes of `buf` from `at`, if in bounds.
#[inline(always)]
fn chunk<const N: usize>(buf: &mut [u8], at: usize) -> Option<&mut [u8; N]> {
    buf.get_mut(at..)?.first_chunk_mut::<N>()
}

/// Converts a header offset or length (at most [`MAX_HEADER_LEN`]) to `u8`.
fn small(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

impl Template {
    /// Validates `spec` and builds its template.
    pub fn new(spec: &DestSpec) -> Result<Template, TemplateError> {
        if spec.dscp > 63 {
            return Err(TemplateError::InvalidDscp);
        }
        if spec.dst_port == 0 {
            return Err(TemplateError::ZeroPort);
        }
        if spec.hop_limit == 0 {
            return Err(TemplateError::ZeroHopLimit);
        }
        if let Some(tci) = spec.vlan_tci {
            let vid = tci & 0x0fff;
            if vid == 0 || vid == 0x0fff {
                return Err(TemplateError::InvalidVlanId);
            }
        }
        if let Some(rtp) = &spec.rtp {
            if rtp.payload_type > 127 {
                return Err(TemplateError::InvalidPayloadType);
            }
        }

        let mut b = Builder {
            bytes: [0; MAX_HEADER_LEN],
            len: 0,
        };
        b.push(&spec.dst_mac);
        b.push(&spec.src_mac);
        if let Some(tci) = spec.vlan_tci {
            b.push(&[0x81, 0x00]);
            b.push(&tci.to_be_bytes());
        }
        let ipv6 = matches!(spec.ip, IpAddrs::V6 { .. });
        b.push(if ipv6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });

        let l3_offset = b.len;
        let tos = spec.dscp << 2;
        let mut pseudo_sum = u32::from(IPPROTO_UDP);
        match &spec.ip {
            IpAddrs::V4 { src, dst } => {
                // Version/IHL, TOS, total length, id, DF, TTL, protocol,
                // header checksum.
                b.push(&[0x45, tos, 0, 0, 0, 0, 0x40, 0]);
                b.push(&[spec.hop_limit, IPPROTO_UDP, 0, 0]);
                b.push(src);
                b.push(dst);
                pseudo_sum = checksum::sum_bytes(pseudo_sum, src);
                pseudo_sum = checksum::sum_bytes(pseudo_sum, dst);
            }
            IpAddrs::V6 { src, dst } => {
                // Version, traffic class, flow label 0, payload length, next
                // header, hop limit.
                b.push(&[0x60 | (tos >> 4), (tos & 0x0f) << 4, 0, 0]);
                b.push(&[0, 0, IPPROTO_UDP, spec.hop_limit]);
                b.push(src);
                b.push(dst);
                pseudo_sum = checksum::sum_bytes(pseudo_sum, src);
                pseudo_sum = checksum::sum_bytes(pseudo_sum, dst);
            }
        }
        let ip_sum = if ipv6 {
            0
        } else {
            checksum::sum_bytes(0, b.since(l3_offset))
        };

        let l4_offset = b.len;
        b.push(&spec.src_port.to_be_bytes());
        b.push(&spec.dst_port.to_be_bytes());
        b.push(&[0, 0, 0, 0]);
        let mut initial = PacketState::default();
        let mut ts_increment = 0;
        if let Some(rtp) = &spec.rtp {
            // V=2, P=0, X=0, CC=0; M=0, PT; sequence number; timestamp.
            b.push(&[0x80, rtp.payload_type, 0, 0, 0, 0, 0, 0]);
            b.push(&rtp.ssrc.to_be_bytes());
            initial.rtp_seq = rtp.seq;
            initial.rtp_ts = rtp.timestamp;
            ts_increment = rtp.ts_increment;
        }
        let full_sum = checksum::sum_bytes(pseudo_sum, b.since(l4_offset));

        let header_len = b.len;
        let l3_header_len = header_len.saturating_sub(l3_offset);
        let l4_header_len = header_len.saturating_sub(l4_offset);
        // All three are at most MAX_HEADER_LEN.
        let l3_header_len = u16::from(small(l3_header_len));
        let l4_header_len = u16::from(small(l4_header_len));
        let max_payload = spec.packet_size.saturating_sub(l3_header_len);
        if max_payload == 0 || (!ipv6 && spec.packet_size < IPV4_MIN_PACKET) {
            return Err(TemplateError::PacketSizeTooSmall);
        }

        Ok(Template {
            bytes: b.bytes,
            header_len: small(header_len),
            l3_offset: small(l3_offset),
            l4_offset: small(l4_offset),
            ipv6,
            rtp: spec.rtp.is_some(),
            l3_header_len,
            l4_header_len,
            max_payload,
            ip_sum,
            pseudo_sum,
            full_sum,
            ts_increment,
            initial,
        })
    }

    /// Returns the number of header bytes before the payload.
    pub fn header_len(&self) -> usize {
        usize::from(self.header_len)
    }

    /// Returns the largest payload of one packet.
    ///
    /// This is the packet size less the IP, UDP and RTP headers.
    pub fn max_payload(&self) -> u16 {
        self.max_payload
    }

    /// Returns the offset of the IP header (the skb network header).
    pub fn l3_offset(&self) -> usize {
        usize::from(self.l3_offset)
    }

    /// Returns the offset of the UDP header (the skb transport header).
    pub fn l4_offset(&self) -> usize {
        usize::from(self.l4_offset)
    }

    /// Returns whether packets are IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// Returns whether packets carry an 802.1Q tag.
    pub fn is_vlan(&self) -> bool {
        self.l3_offset() == ETH_LEN + VLAN_LEN
    }

    /// Returns the header bytes, with 0 in every per-packet field.
    pub fn header(&self) -> &[u8] {
        self.bytes.get(..self.header_len()).unwrap_or(&[])
    }

    /// Returns the source MAC address of the Ethernet header.
    pub fn src_mac(&self) -> [u8; 6] {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.bytes[6..12]);
        mac
    }

    /// Replaces the source MAC address (the device's changed).
    ///
    /// No checksum covers the Ethernet header, so the template stays as
    /// [`Template::new`] would build it with `mac` in the spec.
    pub fn set_src_mac(&mut self, mac: [u8; 6]) {
        self.bytes[6..12].copy_from_slice(&mac);
    }

    /// Returns the state of the destination's first packet.
    ///
    /// The IPv4 id starts at 0 (any value is valid for unfragmented
    /// datagrams, RFC 6864; the owner may set another), RTP sequence number
    /// and timestamp as in the spec's [`RtpSpec`].
    pub fn initial_state(&self) -> PacketState {
        self.initial
    }

    /// Returns the per-packet writes of this template's full-size packets
    /// with checksum mode `csum`, or `None` for [`UdpCsum::Full`] (the
    /// checksum depends on the payload) and for what
    /// [`Template::write_header`] refuses ([`UdpCsum::Zero`] with IPv6).
    pub fn full_size_patch(&self, csum: UdpCsum) -> Option<FullSizePatch> {
        let payload_len = self.max_payload;
        self.check(payload_len, csum).ok()?;
        // No overflow: max_payload = packet_size - l3_header_len.
        let udp_len = self.l4_header_len.wrapping_add(payload_len);
        let check = match csum {
            UdpCsum::Partial => checksum::fold(checksum::add16(self.pseudo_sum, udp_len)),
            UdpCsum::Zero => 0,
            UdpCsum::Full { .. } => return None,
        };
        let (l3_len, ip_sum) = if self.ipv6 {
            (udp_len, 0)
        } else {
            let total_len = self.l3_header_len.wrapping_add(payload_len);
            (
                total_len,
                checksum::fold(checksum::add16(self.ip_sum, total_len)),
            )
        };
        let [l0, l1] = udp_len.to_be_bytes();
        let [c0, c1] = check.to_be_bytes();
        Some(FullSizePatch {
            header_len: self.header_len,
            l3_offset: self.l3_offset,
            l4_offset: self.l4_offset,
            ipv6: self.ipv6,
            rtp: self.rtp,
            l3_len,
            udp_tail: [l0, l1, c0, c1],
            ip_sum,
            ts_increment: self.ts_increment,
            // The UDP length counts twice: pseudo-header and header.
            udp_sum: u64::from(self.full_sum).wrapping_add(u64::from(udp_len) << 1),
        })
    }

    /// The per-packet writes of this template's full-size packets with a
    /// checksum computed in software ([`UdpCsum::Full`]), whose payload
    /// sum [`FullSizePatch::patch_summed`] takes per packet.
    pub fn full_size_patch_summed(&self) -> Option<FullSizePatch> {
        // The same writes as with `Zero` but for the checksum field; IPv6
        // has no `Zero`, so ask for `Partial` there (its field is rewritten).
        let base = match self.ipv6 {
            true => UdpCsum::Partial,
            false => UdpCsum::Zero,
        };
        let mut patch = self.full_size_patch(base)?;
        let [l0, l1, ..] = patch.udp_tail;
        patch.udp_tail = [l0, l1, 0, 0];
        Some(patch)
    }

    /// Writes the header of one packet carrying `payload_len` bytes into
    /// `out[..header_len()]` and advances `state`.
    ///
    /// `state` advances only on success: the IPv4 id by 1, the RTP sequence
    /// number by 1 and the RTP timestamp by the spec's increment, all
    /// wrapping. Bytes of `out` past the header are not touched.
    #[inline(always)]
    pub fn write_header(
        &self,
        out: &mut [u8],
        state: &mut PacketState,
        payload_len: u16,
        csum: UdpCsum,
    ) -> Result<(), TemplateError> {
        self.check(payload_len, csum)?;
        let len = usize::from(self.header_len);
        let (Some(hdr), Some(template)) = (out.get_mut(..len), self.bytes.get(..len)) else {
            return Err(TemplateError::BufferTooShort);
        };
        // Both slices are `len` long.
        hdr.copy_from_slice(template);
        self.patch(hdr, state, payload_len, csum);
        Ok(())
    }

    /// Turns `out[..header_len()]`, which holds a header this template
    /// wrote for an earlier packet (any packet, any checksum mode), into
    /// the header [`Template::write_header`] would write, rewriting only
    /// the fields that change from packet to packet: the constant bytes
    /// are already in place, so nothing is copied.
    ///
    /// Errors and `state` are as for [`Template::write_header`].
    #[inline(always)]
    pub fn patch_header(
        &self,
        out: &mut [u8],
        state: &mut PacketState,
        payload_len: u16,
        csum: UdpCsum,
    ) -> Result<(), TemplateError> {
        self.check(payload_len, csum)?;
        let Some(hdr) = out.get_mut(..usize::from(self.header_len)) else {
            return Err(TemplateError::BufferTooShort);
        };
        self.patch(hdr, state, payload_len, csum);
        Ok(())
    }

    /// The checks of [`Template::write_header`] that do not depend on the
    /// output buffer.
    #[inline(always)]
    fn check(&self, payload_len: u16, csum: UdpCsum) -> Result<(), TemplateError> {
        if payload_len == 0 || payload_len > self.max_payload {
            return Err(TemplateError::InvalidPayloadLen);
        }
        if self.ipv6 && csum == UdpCsum::Zero {
            return Err(TemplateError::ZeroChecksumIpv6);
        }
        Ok(())
    }

    /// Writes every per-packet field of `hdr` (the template's constant
    /// bytes are already there) and advances `state`; `payload_len` and
    /// `csum` passed [`Template::check`].
    #[inline(always)]
    fn patch(&self, hdr: &mut [u8], state: &mut PacketState, payload_len: u16, csum: UdpCsum) {
        // No overflow: payload_len <= max_payload = packet_size - l3_header_len,
        // and the offsets are below MAX_HEADER_LEN.
        let udp_len = self.l4_header_len.wrapping_add(payload_len);
        let l3 = usize::from(self.l3_offset);
        let l4 = usize::from(self.l4_offset);
        // Each header is taken as a fixed-size array, bounds-checked once:
        // the writes into it need no further checks.
        if self.ipv6 {
            if let Some(ip) = chunk::<6>(hdr, l3) {
                put16(ip, 4, udp_len);
            }
        } else if let Some(ip) = chunk::<12>(hdr, l3) {
            let total_len = self.l3_header_len.wrapping_add(payload_len);
            let sum = u64::from(self.ip_sum)
                .wrapping_add(u64::from(total_len))
                .wrapping_add(u64::from(state.ip_id));
            put16(ip, 2, total_len);
            put16(ip, 4, state.ip_id);
            put16(ip, 10, checksum::finish(checksum::fold64(sum)));
        }

        let mut rtp_sum = 0u64;
        if self.rtp {
            if let Some(rtp) = chunk::<8>(hdr, l4.wrapping_add(UDP_LEN)) {
                put16(rtp, 2, state.rtp_seq);
                put32(rtp, 4, state.rtp_ts);
            }
            rtp_sum = u64::from(state.rtp_seq).wrapping_add(u64::from(state.rtp_ts));
        }
        let check = match csum {
            UdpCsum::Partial => checksum::fold(checksum::add16(self.pseudo_sum, udp_len)),
            UdpCsum::Zero => 0,
            UdpCsum::Full { payload_sum } => {
                // The UDP length counts twice: pseudo-header and header.
                let sum = u64::from(self.full_sum)
                    .wrapping_add(u64::from(udp_len) << 1)
                    .wrapping_add(rtp_sum)
                    .wrapping_add(u64::from(payload_sum));
                match checksum::finish(checksum::fold64(sum)) {
                    0 => 0xffff,
                    c => c,
                }
            }
        };
        if let Some(udp) = chunk::<UDP_LEN>(hdr, l4) {
            put16(udp, 4, udp_len);
            put16(udp, UDP_CHECK_OFFSET, check);
        }

        state.ip_id = state.ip_id.wrapping_add(1);
        // Only with RTP: unused without.
        if self.rtp {
            state.rtp_seq = state.rtp_seq.wrapping_add(1);
            state.rtp_ts = state.rtp_ts.wrapping_add(self.ts_increment);
        }
    }
}
