// SPDX-License-Identifier: GPL-2.0

//! Destinations: where packets go and how their headers look.

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use mdwrite_common::template::{DestSpec, IpAddrs, RtpSpec, Template, TemplateError};

use mdwrite_uapi::{MdwDest, MDW_DEST_IPV6, MDW_DEST_RTP, MDW_DEST_UDP_CSUM_ZERO, MDW_DEST_VLAN};

/// A registered destination, named in [`Entry`](crate::Entry)s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DestId(pub(crate) u32);

impl DestId {
    /// A destination id from a raw module handle (for tests and FFI).
    pub fn from_handle(handle: u32) -> Self {
        Self(handle)
    }

    /// The module's handle for this destination.
    pub fn handle(self) -> u32 {
        self.0
    }
}

/// A destination group (`MDW_IOC_GROUP_SET`,
/// [`Device::set_group`](crate::Device::set_group)): one entry
/// ([`Entry::to_group`](crate::Entry::to_group)) sends its data to every
/// destination of the group, described once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(pub(crate) u32);

impl GroupId {
    /// A group id from a raw module handle (for tests and FFI).
    pub fn from_handle(handle: u32) -> Self {
        Self(handle)
    }

    /// The module's handle for this group.
    pub fn handle(self) -> u32 {
        self.0
    }
}

/// RTP header fields (RFC 3550) of a destination's packets.
///
/// Build one with [`Rtp::new`] or [`Rtp::random`] and the `with_*`
/// methods; the fields stay public for reading and changing.
///
/// ```
/// let rtp = mdwrite::Rtp::new(0x1234, 33).with_seq(7).with_ts_increment(90);
/// assert_eq!((rtp.ssrc, rtp.payload_type, rtp.seq, rtp.timestamp), (0x1234, 33, 7, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rtp {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload type, 0..=127 (33 is MPEG-TS, RFC 2250).
    pub payload_type: u8,
    /// Sequence number of the first packet.
    pub seq: u16,
    /// Timestamp of the first packet.
    pub timestamp: u32,
    /// Added to the timestamp for each packet.
    pub ts_increment: u32,
}

impl Rtp {
    /// Source `ssrc`, payload type `payload_type`; sequence number,
    /// timestamp and increment 0.
    pub fn new(ssrc: u32, payload_type: u8) -> Self {
        Self {
            ssrc,
            payload_type,
            ..Self::default()
        }
    }

    /// Payload type `payload_type` with a random SSRC, first sequence
    /// number and first timestamp, as RFC 3550 5.1 asks (from the kernel's
    /// random source, `getrandom(2)`).
    pub fn random(payload_type: u8) -> std::io::Result<Self> {
        let mut b = [0u8; 10];
        getrandom::fill(&mut b).map_err(std::io::Error::from)?;
        Ok(Self {
            ssrc: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            payload_type,
            seq: u16::from_ne_bytes([b[4], b[5]]),
            timestamp: u32::from_ne_bytes([b[6], b[7], b[8], b[9]]),
            ts_increment: 0,
        })
    }

    /// With `seq` as the first packet's sequence number.
    pub fn with_seq(mut self, seq: u16) -> Self {
        self.seq = seq;
        self
    }

    /// With `timestamp` as the first packet's timestamp.
    pub fn with_timestamp(mut self, timestamp: u32) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// With `ts_increment` added to the timestamp for each packet.
    pub fn with_ts_increment(mut self, ts_increment: u32) -> Self {
        self.ts_increment = ts_increment;
        self
    }
}

/// Everything the module needs to build a destination's packets.
///
/// Build one with [`DestConfig::route`] (as the kernel would route it) or
/// [`DestConfig::new`], then the `with_*` methods; the fields stay public
/// for reading and changing.
///
/// ```
/// use mdwrite::{DestConfig, Rtp};
/// let d = DestConfig::new(1, "10.0.0.1:5000".parse().unwrap(), "239.1.1.1:5000".parse().unwrap())
///     .with_hop_limit(1)
///     .with_dscp(46)
///     .with_rtp(Rtp::new(1, 33));
/// assert_eq!((d.hop_limit, d.dscp), (Some(1), 46));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DestConfig {
    /// Egress Ethernet device (`if_nametoindex`).
    pub ifindex: u32,
    /// Source IP address; must be the same family as `to`.
    pub from: IpAddr,
    /// UDP source port (non-zero).
    pub src_port: u16,
    /// Destination address and UDP port.
    pub to: SocketAddr,
    /// Next hop's MAC; `None` looks it up in the neighbour table.
    pub dst_mac: Option<[u8; 6]>,
    /// Largest IP packet; `None` is the device MTU.
    pub packet_size: Option<u16>,
    /// TTL / hop limit; `None` is 64.
    pub hop_limit: Option<u8>,
    /// DSCP, 0..=63.
    pub dscp: u8,
    /// 802.1Q tag control information.
    pub vlan_tci: Option<u16>,
    /// RTP header, if any.
    pub rtp: Option<Rtp>,
    /// IPv4 only: send UDP checksum 0.
    pub udp_csum_zero: bool,
}

impl DestConfig {
    /// A destination `to`, from `from:src_port`, leaving `ifindex`, with
    /// every other field at its default.
    pub fn new(ifindex: u32, from: SocketAddr, to: SocketAddr) -> Self {
        Self {
            ifindex,
            from: from.ip(),
            src_port: from.port(),
            to,
            dst_mac: None,
            packet_size: None,
            hop_limit: None,
            dscp: 0,
            vlan_tci: None,
            rtp: None,
            udp_csum_zero: false,
        }
    }

    /// With `ifindex` as the egress device.
    pub fn with_ifindex(mut self, ifindex: u32) -> Self {
        self.ifindex = ifindex;
        self
    }

    /// With `from` as the source address and port.
    pub fn with_source(mut self, from: SocketAddr) -> Self {
        self.from = from.ip();
        self.src_port = from.port();
        self
    }

    /// With `port` as the UDP source port.
    pub fn with_src_port(mut self, port: u16) -> Self {
        self.src_port = port;
        self
    }

    /// With `mac` as the next hop's MAC.
    pub fn with_dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = Some(mac);
        self
    }

    /// With `size` as the largest IP packet.
    pub fn with_packet_size(mut self, size: u16) -> Self {
        self.packet_size = Some(size);
        self
    }

    /// With `hops` as the TTL / hop limit.
    pub fn with_hop_limit(mut self, hops: u8) -> Self {
        self.hop_limit = Some(hops);
        self
    }

    /// With `dscp` (0..=63) as the DSCP.
    pub fn with_dscp(mut self, dscp: u8) -> Self {
        self.dscp = dscp;
        self
    }

    /// With the 802.1Q tag control information `tci`.
    pub fn with_vlan(mut self, tci: u16) -> Self {
        self.vlan_tci = Some(tci);
        self
    }

    /// With an RTP header.
    pub fn with_rtp(mut self, rtp: Rtp) -> Self {
        self.rtp = Some(rtp);
        self
    }

    /// With UDP checksum 0 (IPv4 only).
    pub fn with_udp_csum_zero(mut self, zero: bool) -> Self {
        self.udp_csum_zero = zero;
        self
    }

    /// The uapi struct for `MDW_IOC_DEST_ADD`.
    pub(crate) fn to_abi(&self) -> MdwDest {
        let mut d = MdwDest {
            ifindex: self.ifindex as i32,
            src_port: self.src_port,
            dst_port: self.to.port(),
            dst_mac: self.dst_mac.unwrap_or_default(),
            packet_size: self.packet_size.unwrap_or(0),
            hop_limit: self.hop_limit.unwrap_or(0),
            dscp: self.dscp,
            ..Default::default()
        };
        let addr = |ip: IpAddr| -> [u8; 16] {
            let mut a = [0u8; 16];
            match ip {
                IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => a = v6.octets(),
            }
            a
        };
        d.src_addr = addr(self.from);
        d.dst_addr = addr(self.to.ip());
        if self.to.is_ipv6() {
            d.flags |= MDW_DEST_IPV6;
        }
        if let Some(tci) = self.vlan_tci {
            d.flags |= MDW_DEST_VLAN;
            d.vlan_tci = tci;
        }
        if let Some(rtp) = self.rtp {
            d.flags |= MDW_DEST_RTP;
            d.rtp_ssrc = rtp.ssrc;
            d.rtp_payload_type = rtp.payload_type;
            d.rtp_seq = rtp.seq;
            d.rtp_timestamp = rtp.timestamp;
            d.rtp_ts_increment = rtp.ts_increment;
        }
        if self.udp_csum_zero {
            d.flags |= MDW_DEST_UDP_CSUM_ZERO;
        }
        d
    }
}

impl DestConfig {
    /// The IP packet size that carries `payload` bytes of data per packet
    /// to this destination: `payload` plus the IP, UDP and (if any) RTP
    /// headers. Set [`DestConfig::packet_size`] to it so that every packet
    /// carries exactly `payload` bytes, for example 1316 (7 MPEG-TS
    /// packets).
    ///
    /// ```
    /// let mut d = mdwrite::DestConfig::new(1, "10.0.0.1:5000".parse().unwrap(),
    ///     "10.0.0.2:5000".parse().unwrap());
    /// assert_eq!(d.packet_size_for(1316), 1316 + 20 + 8);
    /// d.rtp = Some(mdwrite::Rtp::default());
    /// assert_eq!(d.packet_size_for(1316), 1316 + 20 + 8 + 12);
    /// ```
    pub fn packet_size_for(&self, payload: usize) -> u16 {
        let ip = if self.to.is_ipv6() { 40 } else { 20 };
        let rtp = if self.rtp.is_some() { 12 } else { 0 };
        u16::try_from(payload + ip + 8 + rtp).unwrap_or(u16::MAX)
    }

    /// The header template the module would build for this destination,
    /// with `mtu` as the packet size when none is set: validates the
    /// fields as `MDW_IOC_DEST_ADD` does, with its errnos.
    pub(crate) fn template(&self, mtu: u32) -> io::Result<Template> {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let emsgsize = || io::Error::from_raw_os_error(libc::EMSGSIZE);
        let ip = match (self.from, self.to.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => IpAddrs::V4 {
                src: src.octets(),
                dst: dst.octets(),
            },
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpAddrs::V6 {
                src: src.octets(),
                dst: dst.octets(),
            },
            _ => return Err(einval()),
        };
        if self.src_port == 0 {
            return Err(einval());
        }
        let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
        let packet_size = match self.packet_size {
            None | Some(0) => mtu,
            Some(n) if n > mtu => return Err(emsgsize()),
            Some(n) => n,
        };
        let spec = DestSpec {
            src_mac: [0; 6],
            dst_mac: self.dst_mac.unwrap_or_default(),
            vlan_tci: self.vlan_tci,
            ip,
            src_port: self.src_port,
            dst_port: self.to.port(),
            hop_limit: match self.hop_limit {
                None | Some(0) => 64,
                Some(n) => n,
            },
            dscp: self.dscp,
            packet_size,
            rtp: self.rtp.map(|r| RtpSpec {
                ssrc: r.ssrc,
                payload_type: r.payload_type,
                seq: r.seq,
                timestamp: r.timestamp,
                ts_increment: r.ts_increment,
            }),
        };
        if self.udp_csum_zero && self.to.is_ipv6() {
            return Err(einval());
        }
        Template::new(&spec).map_err(|e| match e {
            TemplateError::PacketSizeTooSmall => emsgsize(),
            _ => einval(),
        })
    }
}
