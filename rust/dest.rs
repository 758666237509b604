// SPDX-License-Identifier: GPL-2.0

//! Destinations (`MDW_IOC_DEST_ADD`): validation, the header template,
//! and what its packets need from its device ([`Prepared`]), worked out
//! once and again only when the device changes.

use kernel::prelude::*;

use crate::{
    abi::{
        MdwDest, MDW_DEST_IPV6, MDW_DEST_RTP, MDW_DEST_UDP_CSUM_ZERO, MDW_DEST_VLAN, MDW_MAX_DESTS,
    },
    common::template::{
        DestSpec, FullSizePatch, IpAddrs, PacketState, RtpSpec, Template, TemplateError, UdpCsum,
    },
    errno, ffi,
    net::{NetDevice, NetNs},
    skb::SkbRing,
    table::Table,
};

/// The destinations of one file, by handle.
pub(crate) type DestTable = Table<KBox<Destination>, { MDW_MAX_DESTS as usize }>;

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
    /// Its skbs: those of the current call, and between calls those
    /// kept for the next (`SkbPool::adopt`, `SkbPool::keep`).
    pub(crate) ring: SkbRing,
    /// What its packets need from its device, for the device state it was
    /// worked out for: set by [`Destination::prepare`], which a call runs
    /// before it sends to the destination.
    pub(crate) prepared: Option<Prepared>,
    /// The call that last gave this destination a slot, and the slot: a
    /// call finds an entry's slot in O(1).
    mark: CallMark,
}

/// A call's slot for a destination (`Destination::slot_in`).
#[derive(Clone, Copy, Default)]
struct CallMark {
    call: u64,
    slot: u32,
}

/// How a destination's UDP checksums are made.
#[derive(Clone, Copy)]
pub(crate) enum CsumMode {
    /// By the device (`CHECKSUM_PARTIAL`).
    Partial,
    /// Not at all: 0 (IPv4, `MDW_DEST_UDP_CSUM_ZERO`).
    Zero,
    /// By the module, over the payload.
    Software,
}

impl CsumMode {
    /// The template's checksum mode for a packet whose payload sums to
    /// `payload_sum` (used only by `Software`).
    #[inline(always)]
    pub(crate) fn udp(self, payload_sum: u32) -> UdpCsum {
        match self {
            CsumMode::Partial => UdpCsum::Partial,
            CsumMode::Zero => UdpCsum::Zero,
            CsumMode::Software => UdpCsum::Full { payload_sum },
        }
    }
}

/// What a destination's packets need from its device: worked out when a
/// call first sends to the device (the device checked, its features
/// probed for the packet's shape), then reused while the device is in
/// exactly the same state (`MdwDevInfo`: index, features, MTU, MAC,
/// flags; compared once per call and device, which gives the state a
/// stamp: `calldevs::CallDevs`), so that a call pays a comparison of
/// stamps per destination, not a probe.
#[derive(Clone, Copy)]
pub(crate) struct Prepared {
    /// The stamp of the device state this was worked out for
    /// (`calldevs::CallDevs`).
    stamp: u64,
    /// Header length and offsets of its packets, and the checksum mode.
    pub(crate) layout: ffi::MdwLayout,
    pub(crate) csum: CsumMode,
    /// Its skbs may be recycled on direct sends (an audited driver): page
    /// fragments of the call's pages, or linear copies (`linear`).
    pub(crate) recycle: bool,
    /// Its packets are copied into linear skbs: no scatter-gather for
    /// them (`bytes_copied`).
    pub(crate) linear: bool,
    /// The header writes of its full-size packets in recycled skbs, when
    /// they do not depend on the payload; `None` unless it recycles page
    /// fragments (`recycle` and not `linear`: the send path's fast way
    /// checks only this).
    pub(crate) fast: Option<FullSizePatch>,
    /// The header writes of its full-size packets in recycled linear
    /// copies (with a software checksum, given the payload's sum).
    pub(crate) copy: Option<FullSizePatch>,
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

        let dev = net.device(req.ifindex, None)?;
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
            ring: SkbRing::default(),
            prepared: None,
            mark: CallMark::default(),
        })
    }

    /// The slot of this destination in call `call` (a number no other
    /// call of the file has): `Ok(slot)` when the call gave it one
    /// already, `Err(next)` after giving it `next`, which the caller then
    /// creates.
    #[inline(always)]
    pub(crate) fn slot_in(&mut self, call: u64, next: u32) -> core::result::Result<u32, u32> {
        if self.mark.call == call {
            return Ok(self.mark.slot);
        }
        self.mark = CallMark { call, slot: next };
        Err(next)
    }

    /// What this destination's packets need from `dev`, its device as a
    /// call looked it up in the state of stamp `stamp`: the last answer
    /// while the device is in the same state, else worked out again
    /// ([`Destination::prepare_again`]).
    #[inline(always)]
    pub(crate) fn prepare(&mut self, dev: &NetDevice, stamp: u64) -> Result<&Prepared> {
        if !matches!(&self.prepared, Some(p) if p.stamp == stamp) {
            self.prepared = None;
            let p = self.prepare_again(dev, stamp)?;
            self.prepared = Some(p);
        }
        self.prepared.as_ref().ok_or(EINVAL)
    }

    /// Checks `dev` for this destination and works out what its packets
    /// need: an Ethernet device (`ENODEV`: its index now names another
    /// kind of device), taking 802.1Q frames if the destination is tagged
    /// (`EOPNOTSUPP`), up (`ENETDOWN`), with an MTU that fits the
    /// destination's packets (`EMSGSIZE`). A changed MAC address is taken
    /// into the template (and the skbs kept with the old header are
    /// dropped). The device's features for a packet of this shape decide
    /// scatter-gather and checksum offload: never a packet its features do
    /// not cover.
    ///
    /// The skbs kept from earlier calls go: every skb of a destination's
    /// ring has the header, shape and checksum fields of the destination's
    /// current layout, and a kept skb is tied to a call without writing
    /// them again (`mdw_skb_tie`). This runs only when the device's state
    /// changed.
    #[cold]
    fn prepare_again(&mut self, dev: &NetDevice, stamp: u64) -> Result<Prepared> {
        self.ring = SkbRing::default();
        let info = *dev.info();
        if !info.ethernet {
            return Err(ENODEV);
        }
        if self.template.is_vlan() && info.vlan_challenged {
            return Err(errno::eopnotsupp());
        }
        if self.template.src_mac() != info.mac {
            self.template.set_src_mac(info.mac);
        }
        if !info.up {
            return Err(errno::enetdown());
        }
        if info.mtu < self.packet_size as u32 {
            return Err(errno::emsgsize());
        }
        let mut layout = ffi::MdwLayout {
            hdr_len: self.template.header_len() as u32,
            l3_off: self.template.l3_offset() as u32,
            l4_off: self.template.l4_offset() as u32,
            ipv6: self.template.is_ipv6(),
            vlan: self.template.is_vlan(),
            csum_partial: false,
        };
        let caps = dev.probe(&layout, self.template.header())?;
        let csum = match (self.csum_zero, caps.csum) {
            (true, _) => CsumMode::Zero,
            (false, true) => CsumMode::Partial,
            (false, false) => CsumMode::Software,
        };
        layout.csum_partial = matches!(csum, CsumMode::Partial);
        let recycle = info.recycle_ok;
        let linear = !caps.sg;
        // The ring's skbs, all made from now on, have this layout.
        self.ring.set_layout(&layout, linear);
        Ok(Prepared {
            stamp,
            layout,
            csum,
            recycle,
            linear,
            // Only recycled skbs keep an earlier header; the fast way
            // rearms page fragments, not copies.
            fast: match recycle && !linear {
                true => self.template.full_size_patch(csum.udp(0)),
                false => None,
            },
            copy: match (recycle && linear, csum) {
                (true, CsumMode::Software) => self.template.full_size_patch_summed(),
                (true, mode) => self.template.full_size_patch(mode.udp(0)),
                (false, _) => None,
            },
        })
    }
}
