// SPDX-License-Identifier: GPL-2.0

//! Destinations (`MDW_IOC_DEST_ADD`): validation and the header template.

use kernel::prelude::*;

use crate::{
    abi::{MdwDest, MDW_DEST_IPV6, MDW_DEST_RTP, MDW_DEST_UDP_CSUM_ZERO, MDW_DEST_VLAN},
    common::template::{DestSpec, IpAddrs, PacketState, RtpSpec, Template, TemplateError},
    errno, ffi,
    net::{NetDevice, NetNs},
    skb::SkbCache,
};

/// `MDW_DEST_*` bits this module knows.
const KNOWN_FLAGS: u32 = MDW_DEST_IPV6 | MDW_DEST_RTP | MDW_DEST_VLAN | MDW_DEST_UDP_CSUM_ZERO;

/// Hop limit used when the caller gives 0.
const DEFAULT_HOP_LIMIT: u8 = 64;

/// A registered destination: where packets go, their prebuilt headers, and
/// the per-packet state that continues across calls.
pub(crate) struct Destination {
    /// Egress device, looked up again by each call.
    pub(crate) ifindex: i32,
    /// Largest IP packet.
    pub(crate) packet_size: u16,
    /// Send UDP checksum 0 (IPv4).
    pub(crate) csum_zero: bool,
    /// Whether packets carry an RTP header.
    pub(crate) rtp: bool,
    /// The combined header template.
    pub(crate) template: Template,
    /// IPv4 id, RTP sequence number and timestamp of the next packet.
    pub(crate) state: PacketState,
    /// Skbs kept from the last call for the next (`SkbPool::keep`).
    pub(crate) skbs: SkbCache,
    /// What the device does with this destination's packets, and the
    /// device state it was probed for.
    caps: Option<ProbedCaps>,
}

/// A device's answer for one destination's packets (`NetDevice::probe`),
/// valid while the device's index and features stay as they were.
#[derive(Clone, Copy)]
struct ProbedCaps {
    ifindex: u32,
    features: u64,
    vlan_features: u64,
    caps: ffi::MdwDevCaps,
}

fn template_errno(e: TemplateError) -> Error {
    match e {
        TemplateError::PacketSizeTooSmall => errno::emsgsize(),
        _ => EINVAL,
    }
}

impl Destination {
    /// Validates `req` and builds the destination's template. The device
    /// must be in `net`, an Ethernet device and up, and the file's opener
    /// must have had `CAP_NET_RAW` over `net` (`net_raw`).
    pub(crate) fn new(net: &NetNs, req: &MdwDest, net_raw: bool) -> Result<Self> {
        if !net_raw {
            return Err(EPERM);
        }
        if req.flags & !KNOWN_FLAGS != 0 || req.pad0 != 0 || req.src_port == 0 {
            return Err(EINVAL);
        }
        let ipv6 = req.flags & MDW_DEST_IPV6 != 0;
        let csum_zero = req.flags & MDW_DEST_UDP_CSUM_ZERO != 0;
        if ipv6 && csum_zero {
            return Err(EINVAL);
        }

        let dev = net.device(req.ifindex)?;
        let info = *dev.info();
        if !info.ethernet {
            return Err(EINVAL);
        }
        if !info.up {
            return Err(errno::enetdown());
        }
        if req.flags & MDW_DEST_VLAN != 0 && info.vlan_challenged {
            return Err(errno::eopnotsupp());
        }
        let mtu = u16::try_from(info.mtu).unwrap_or(u16::MAX);
        let packet_size = match req.packet_size {
            0 => mtu,
            n if n > mtu => return Err(errno::emsgsize()),
            n => n,
        };
        let dst_mac = if req.dst_mac == [0; 6] {
            dev.resolve(ipv6, &req.dst_addr)?
        } else {
            req.dst_mac
        };

        let ip = if ipv6 {
            IpAddrs::V6 {
                src: req.src_addr,
                dst: req.dst_addr,
            }
        } else {
            let v4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
            if req.src_addr[4..] != [0; 12] || req.dst_addr[4..] != [0; 12] {
                return Err(EINVAL);
            }
            IpAddrs::V4 {
                src: v4(&req.src_addr),
                dst: v4(&req.dst_addr),
            }
        };
        let rtp = req.flags & MDW_DEST_RTP != 0;
        let spec = DestSpec {
            src_mac: info.mac,
            dst_mac,
            vlan_tci: (req.flags & MDW_DEST_VLAN != 0).then_some(req.vlan_tci),
            ip,
            src_port: req.src_port,
            dst_port: req.dst_port,
            hop_limit: if req.hop_limit == 0 {
                DEFAULT_HOP_LIMIT
            } else {
                req.hop_limit
            },
            dscp: req.dscp,
            packet_size,
            rtp: rtp.then_some(RtpSpec {
                ssrc: req.rtp_ssrc,
                payload_type: req.rtp_payload_type,
                seq: req.rtp_seq,
                timestamp: req.rtp_timestamp,
                ts_increment: req.rtp_ts_increment,
            }),
        };
        let template = Template::new(&spec).map_err(template_errno)?;
        let state = template.initial_state();
        Ok(Self {
            ifindex: req.ifindex,
            packet_size,
            csum_zero,
            rtp,
            template,
            state,
            skbs: SkbCache::default(),
            caps: None,
        })
    }

    /// Checks that `dev`, the destination's device as a call looked it up,
    /// still fits the template: an Ethernet device (`ENODEV`: its index
    /// now names another kind of device), taking 802.1Q frames if the
    /// destination is tagged (`EOPNOTSUPP`). A changed MAC address is
    /// taken into the template (and the skbs kept with the old header
    /// are dropped).
    pub(crate) fn revalidate(&mut self, dev: &NetDevice) -> Result {
        let info = dev.info();
        if !info.ethernet {
            return Err(ENODEV);
        }
        if self.template.is_vlan() && info.vlan_challenged {
            return Err(errno::eopnotsupp());
        }
        if self.template.src_mac() != info.mac {
            self.template.set_src_mac(info.mac);
            self.skbs = SkbCache::default();
        }
        Ok(())
    }

    /// What `dev` does with this destination's packets (`layout`):
    /// scatter-gather and checksum offload, probed again only when the
    /// device's index or features changed since the last call.
    pub(crate) fn caps(
        &mut self,
        dev: &NetDevice,
        layout: &ffi::MdwLayout,
    ) -> Result<ffi::MdwDevCaps> {
        let info = dev.info();
        match self.caps {
            Some(p)
                if p.ifindex == info.ifindex
                    && p.features == info.features
                    && p.vlan_features == info.vlan_features =>
            {
                Ok(p.caps)
            }
            _ => {
                let caps = dev.probe(layout, self.template.header())?;
                self.caps = Some(ProbedCaps {
                    ifindex: info.ifindex,
                    features: info.features,
                    vlan_features: info.vlan_features,
                    caps,
                });
                Ok(caps)
            }
        }
    }
}
