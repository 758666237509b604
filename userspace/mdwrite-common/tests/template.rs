// SPDX-License-Identifier: GPL-2.0

//! Tests of `template`: headers written into packets that etherparse then
//! parses back, field by field.

use etherparse::{EtherType, IpNumber, LinkExtHeader, NetHeaders, PacketHeaders, TransportHeader};
use mdwrite_common::checksum;
use mdwrite_common::template::{
    DestSpec, IpAddrs, PacketState, RtpSpec, Template, TemplateError, UdpCsum, MAX_HEADER_LEN,
    UDP_CHECK_OFFSET,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The sum of big-endian 16-bit words of `data`, odd byte zero-padded.
fn naive_words(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|p| (u64::from(p[0]) << 8) | p.get(1).copied().map_or(0, u64::from))
        .sum()
}

/// Folds a wide sum with end-around carries until it fits 16 bits.
fn naive_fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The UDP pseudo-header of a packet with `udp_len` UDP bytes.
fn pseudo_header(ip: &IpAddrs, udp_len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match ip {
        IpAddrs::V4 { src, dst } => {
            p.extend_from_slice(src);
            p.extend_from_slice(dst);
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
        }
        IpAddrs::V6 { src, dst } => {
            p.extend_from_slice(src);
            p.extend_from_slice(dst);
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
        }
    }
    p
}

/// Deterministic payload bytes.
fn payload_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The IP, UDP and RTP header length of `spec`, counted independently.
fn l3_headers(spec: &DestSpec) -> usize {
    let ip = match spec.ip {
        IpAddrs::V4 { .. } => 20,
        IpAddrs::V6 { .. } => 40,
    };
    ip + 8 + if spec.rtp.is_some() { 12 } else { 0 }
}

/// The smallest valid packet size of `spec`.
fn min_packet_size(spec: &DestSpec) -> u16 {
    let min = l3_headers(spec) as u16 + 1;
    match spec.ip {
        IpAddrs::V4 { .. } => min.max(68),
        IpAddrs::V6 { .. } => min,
    }
}

/// A valid RTP stream.
fn arb_rtp() -> impl Strategy<Value = RtpSpec> {
    (
        any::<u32>(),
        0u8..=127,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(ssrc, payload_type, seq, timestamp, ts_increment)| RtpSpec {
                ssrc,
                payload_type,
                seq,
                timestamp,
                ts_increment,
            },
        )
}

/// A valid destination, packet size included.
fn arb_spec() -> impl Strategy<Value = DestSpec> {
    let ip = prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(src, dst)| IpAddrs::V4 { src, dst }),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(src, dst)| IpAddrs::V6 { src, dst }),
    ];
    let tci = (0u16..8, any::<bool>(), 1u16..=4094)
        .prop_map(|(pcp, dei, vid)| (pcp << 13) | (u16::from(dei) << 12) | vid);
    let extra = prop_oneof![0u16..64, 0u16..9000, any::<u16>()];
    (
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            proptest::option::of(tci),
            ip,
        ),
        (any::<u16>(), 1u16.., 1u8.., 0u8..=63),
        (proptest::option::of(arb_rtp()), extra),
    )
        .prop_map(
            |(
                (src_mac, dst_mac, vlan_tci, ip),
                (src_port, dst_port, hop_limit, dscp),
                (rtp, extra),
            )| {
                let mut spec = DestSpec {
                    src_mac,
                    dst_mac,
                    vlan_tci,
                    ip,
                    src_port,
                    dst_port,
                    hop_limit,
                    dscp,
                    packet_size: 0,
                    rtp,
                };
                spec.packet_size = min_packet_size(&spec).saturating_add(extra);
                spec
            },
        )
}

/// One packet to write: how to pick its length, its checksum mode, its
/// payload seed.
fn arb_packet() -> impl Strategy<Value = (u8, prop::sample::Index, u8, u64)> {
    (0u8..4, any::<prop::sample::Index>(), 0u8..3, any::<u64>())
}

/// Fails the test case with a message.
fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

/// A header buffer (with 3 bytes past the header) that holds the header
/// of the last of the `earlier` packets `t` wrote from `state`, each of
/// one of three lengths (1, full size, or picked by its index) and with
/// `csum`, or a software checksum for the third kind; `state` advances
/// past them. What a recycled skb of the destination holds.
fn recycled_header(
    t: &Template,
    state: &mut PacketState,
    earlier: &[(u8, prop::sample::Index)],
    csum: UdpCsum,
) -> Result<Vec<u8>, TestCaseError> {
    let max = usize::from(t.max_payload());
    let mut recycled = vec![0x5a; t.header_len() + 3];
    for (pick, index) in earlier {
        let len = match pick {
            0 => 1,
            1 => max,
            _ => 1 + index.index(max),
        } as u16;
        let old = match pick {
            2 => UdpCsum::Full {
                payload_sum: index.index(1 << 20) as u32,
            },
            _ => csum,
        };
        t.write_header(&mut recycled, state, len, old)
            .map_err(|e| fail(format!("{e:?}")))?;
    }
    Ok(recycled)
}

/// Parses `frame` and checks every header field against `spec`, the state
/// the packet was written with and the checksum mode.
fn check_frame(
    spec: &DestSpec,
    t: &Template,
    frame: &[u8],
    st: PacketState,
    payload: &[u8],
    csum: UdpCsum,
) -> Result<(), TestCaseError> {
    let v6 = matches!(spec.ip, IpAddrs::V6 { .. });
    let rtp_len = if spec.rtp.is_some() { 12 } else { 0 };
    let vlan_len = if spec.vlan_tci.is_some() { 4 } else { 0 };
    let ip_len = if v6 { 40 } else { 20 };
    let l4 = 14 + vlan_len + ip_len;
    prop_assert_eq!(t.l3_offset(), 14 + vlan_len);
    prop_assert_eq!(t.l4_offset(), l4);
    prop_assert_eq!(t.header_len(), l4 + 8 + rtp_len);
    prop_assert!(t.header_len() <= MAX_HEADER_LEN);
    prop_assert_eq!(
        usize::from(t.max_payload()),
        usize::from(spec.packet_size) - l3_headers(spec)
    );
    prop_assert_eq!(t.is_ipv6(), v6);

    let h = PacketHeaders::from_ethernet_slice(frame).map_err(|e| fail(format!("{e:?}")))?;
    let eth = h
        .link
        .clone()
        .and_then(|l| l.ethernet2())
        .ok_or_else(|| fail("no ethernet"))?;
    prop_assert_eq!(eth.source, spec.src_mac);
    prop_assert_eq!(eth.destination, spec.dst_mac);
    let inner = if v6 { EtherType::IPV6 } else { EtherType::IPV4 };
    match spec.vlan_tci {
        None => {
            prop_assert!(h.link_exts.is_empty());
            prop_assert_eq!(eth.ether_type, inner);
        }
        Some(tci) => {
            prop_assert_eq!(eth.ether_type, EtherType::VLAN_TAGGED_FRAME);
            prop_assert_eq!(h.link_exts.len(), 1);
            let LinkExtHeader::Vlan(vlan) = &h.link_exts[0] else {
                return Err(fail("no vlan header"));
            };
            prop_assert_eq!(vlan.pcp.value(), (tci >> 13) as u8);
            prop_assert_eq!(vlan.drop_eligible_indicator, tci & 0x1000 != 0);
            prop_assert_eq!(vlan.vlan_id.value(), tci & 0x0fff);
            prop_assert_eq!(vlan.ether_type, inner);
        }
    }

    let udp_len = 8 + rtp_len + payload.len();
    let l3 = &frame[14 + vlan_len..l4];
    match (&h.net, &spec.ip) {
        (Some(NetHeaders::Ipv4(ip, exts)), IpAddrs::V4 { src, dst }) => {
            prop_assert_eq!(l3[0], 0x45);
            prop_assert!(ip.options.is_empty());
            prop_assert!(exts.is_empty());
            prop_assert_eq!(ip.dscp.value(), spec.dscp);
            prop_assert_eq!(ip.ecn.value(), 0);
            prop_assert_eq!(usize::from(ip.total_len), 20 + udp_len);
            prop_assert_eq!(ip.identification, st.ip_id);
            prop_assert!(ip.dont_fragment);
            prop_assert!(!ip.more_fragments);
            prop_assert_eq!(ip.fragment_offset.value(), 0);
            prop_assert_eq!(ip.time_to_live, spec.hop_limit);
            prop_assert_eq!(ip.protocol, IpNumber::UDP);
            prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            prop_assert_eq!(naive_fold(naive_words(l3)), 0xffff);
            prop_assert_eq!(&ip.source, src);
            prop_assert_eq!(&ip.destination, dst);
        }
        (Some(NetHeaders::Ipv6(ip, exts)), IpAddrs::V6 { src, dst }) => {
            prop_assert_eq!(l3[0] >> 4, 6);
            prop_assert!(exts.is_empty());
            prop_assert_eq!(ip.traffic_class, spec.dscp << 2);
            prop_assert_eq!(ip.flow_label.value(), 0);
            prop_assert_eq!(usize::from(ip.payload_length), udp_len);
            prop_assert_eq!(ip.next_header, IpNumber::UDP);
            prop_assert_eq!(ip.hop_limit, spec.hop_limit);
            prop_assert_eq!(&ip.source, src);
            prop_assert_eq!(&ip.destination, dst);
        }
        (net, _) => return Err(fail(format!("wrong network header {net:?}"))),
    }

    let Some(TransportHeader::Udp(udp)) = &h.transport else {
        return Err(fail("no udp header"));
    };
    prop_assert_eq!(udp.source_port, spec.src_port);
    prop_assert_eq!(udp.destination_port, spec.dst_port);
    prop_assert_eq!(usize::from(udp.length), udp_len);
    let udp_payload = h.payload.slice();
    prop_assert_eq!(udp_payload.len(), rtp_len + payload.len());
    prop_assert_eq!(&udp_payload[rtp_len..], payload);

    // The reference checksum, computed by etherparse.
    let reference = match spec.ip {
        IpAddrs::V4 { src, dst } => udp.calc_checksum_ipv4_raw(src, dst, udp_payload),
        IpAddrs::V6 { src, dst } => udp.calc_checksum_ipv6_raw(src, dst, udp_payload),
    }
    .map_err(|e| fail(format!("{e:?}")))?;
    let pseudo = pseudo_header(&spec.ip, udp_len);
    let segment = &frame[l4..];
    match csum {
        UdpCsum::Partial => {
            prop_assert_eq!(udp.checksum, naive_fold(naive_words(&pseudo)));
            // What the device does: sum from csum_start to the end, the
            // check field holding the pseudo-header sum, and complement.
            let device = match !naive_fold(naive_words(segment)) {
                0 => 0xffff,
                c => c,
            };
            prop_assert_eq!(device, reference);
        }
        UdpCsum::Zero => prop_assert_eq!(udp.checksum, 0),
        UdpCsum::Full { .. } => {
            prop_assert_eq!(udp.checksum, reference);
            prop_assert_ne!(udp.checksum, 0);
            let total = naive_words(&pseudo) + naive_words(segment);
            prop_assert_eq!(naive_fold(total), 0xffff);
        }
    }

    if let Some(rtp) = &spec.rtp {
        let r = &udp_payload[..12];
        prop_assert_eq!(r[0], 0x80, "V=2 P=0 X=0 CC=0");
        prop_assert_eq!(r[1], rtp.payload_type, "M=0 PT");
        prop_assert_eq!(u16::from_be_bytes([r[2], r[3]]), st.rtp_seq);
        prop_assert_eq!(u32::from_be_bytes([r[4], r[5], r[6], r[7]]), st.rtp_ts);
        prop_assert_eq!(u32::from_be_bytes([r[8], r[9], r[10], r[11]]), rtp.ssrc);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn packets_parse_back(
        spec in arb_spec(),
        start in proptest::option::of((any::<u16>(), any::<u16>(), any::<u32>())),
        packets in proptest::collection::vec(arb_packet(), 1..5),
    ) {
        let t = Template::new(&spec).map_err(|e| fail(format!("{e:?}")))?;
        let first = match start {
            None => t.initial_state(),
            Some((ip_id, rtp_seq, rtp_ts)) => PacketState { ip_id, rtp_seq, rtp_ts },
        };
        if start.is_none() {
            let rtp = spec.rtp.unwrap_or(RtpSpec { ssrc: 0, payload_type: 0, seq: 0, timestamp: 0, ts_increment: 0 });
            prop_assert_eq!(first, PacketState { ip_id: 0, rtp_seq: rtp.seq, rtp_ts: rtp.timestamp });
        }
        let inc = spec.rtp.map_or(0, |r| r.ts_increment);
        let max = usize::from(t.max_payload());
        let mut state = first;
        for (k, (pick, index, mode, seed)) in packets.into_iter().enumerate() {
            let len = match pick {
                0 => 1,
                1 => max,
                _ => 1 + index.index(max),
            };
            let payload = payload_bytes(seed, len);
            let csum = match (mode, t.is_ipv6()) {
                (0, _) => UdpCsum::Partial,
                (1, false) => UdpCsum::Zero,
                _ => UdpCsum::Full { payload_sum: checksum::sum_bytes(0, &payload) },
            };
            let hl = t.header_len();
            let mut frame = vec![0xa5; hl + len];
            let before = state;
            let k32 = k as u32;
            // The RTP fields advance only with RTP (unused without).
            let rtp_k = if spec.rtp.is_some() { k32 } else { 0 };
            prop_assert_eq!(before, PacketState {
                ip_id: first.ip_id.wrapping_add(k as u16),
                rtp_seq: first.rtp_seq.wrapping_add(rtp_k as u16),
                rtp_ts: first.rtp_ts.wrapping_add(inc.wrapping_mul(rtp_k)),
            });
            t.write_header(&mut frame, &mut state, len as u16, csum).map_err(|e| fail(format!("{e:?}")))?;
            prop_assert!(frame[hl..].iter().all(|&b| b == 0xa5), "wrote past the header");
            frame[hl..].copy_from_slice(&payload);
            check_frame(&spec, &t, &frame, before, &payload, csum)?;
        }
    }

    #[test]
    fn patched_headers_equal_written_ones(
        spec in arb_spec(),
        start in (any::<u16>(), any::<u16>(), any::<u32>()),
        packets in proptest::collection::vec((0u8..3, any::<prop::sample::Index>(), 0u8..3, any::<u32>()), 1..8),
    ) {
        // A recycled skb keeps the header of its destination's earlier
        // packet: patching it must give exactly what writing gives.
        let t = Template::new(&spec).map_err(|e| fail(format!("{e:?}")))?;
        let (ip_id, rtp_seq, rtp_ts) = start;
        let mut written_state = PacketState { ip_id, rtp_seq, rtp_ts };
        let mut patched_state = written_state;
        let hl = t.header_len();
        let mut recycled = vec![0x5a; hl + 3];
        let max = usize::from(t.max_payload());
        for (k, (pick, index, mode, sum)) in packets.into_iter().enumerate() {
            let len = match pick {
                0 => 1,
                1 => max,
                _ => 1 + index.index(max),
            } as u16;
            let csum = match (mode, t.is_ipv6()) {
                (0, _) => UdpCsum::Partial,
                (1, false) => UdpCsum::Zero,
                _ => UdpCsum::Full { payload_sum: sum },
            };
            let mut written = vec![0x5a; hl + 3];
            t.write_header(&mut written, &mut written_state, len, csum).map_err(|e| fail(format!("{e:?}")))?;
            if k == 0 {
                t.write_header(&mut recycled, &mut patched_state, len, csum).map_err(|e| fail(format!("{e:?}")))?;
            } else {
                t.patch_header(&mut recycled, &mut patched_state, len, csum).map_err(|e| fail(format!("{e:?}")))?;
            }
            prop_assert_eq!(&recycled, &written, "packet {}", k);
            prop_assert_eq!(patched_state, written_state);
        }
        // Errors change nothing, as for write_header.
        let before = (recycled.clone(), patched_state);
        prop_assert_eq!(
            t.patch_header(&mut recycled, &mut patched_state, 0, UdpCsum::Partial),
            Err(TemplateError::InvalidPayloadLen)
        );
        prop_assert_eq!(
            t.patch_header(&mut recycled[..hl - 1], &mut patched_state, 1, UdpCsum::Partial),
            Err(TemplateError::BufferTooShort)
        );
        prop_assert_eq!((recycled, patched_state), before);
    }

    #[test]
    fn full_size_patch_equals_written_header(
        spec in arb_spec(),
        start in (any::<u16>(), any::<u16>(), any::<u32>()),
        earlier in proptest::collection::vec((0u8..3, any::<prop::sample::Index>()), 1..4),
        zero in any::<bool>(),
        count in 1usize..6,
    ) {
        // The send path's fast case: a recycled header of any earlier packet
        // of the destination (any length, any checksum mode), turned into
        // full-size packets by the patch computed once for the call.
        let t = Template::new(&spec).map_err(|e| fail(format!("{e:?}")))?;
        let csum = if zero && !t.is_ipv6() { UdpCsum::Zero } else { UdpCsum::Partial };
        let patch = t.full_size_patch(csum).ok_or_else(|| fail("no patch"))?;
        let (ip_id, rtp_seq, rtp_ts) = start;
        let mut state = PacketState { ip_id, rtp_seq, rtp_ts };
        let hl = t.header_len();
        let mut recycled = recycled_header(&t, &mut state, &earlier, csum)?;
        for k in 0..count {
            let mut written_state = state;
            let mut written = vec![0x5a; hl + 3];
            t.write_header(&mut written, &mut written_state, t.max_payload(), csum).map_err(|e| fail(format!("{e:?}")))?;
            patch.patch(&mut recycled, &mut state).map_err(|e| fail(format!("{e:?}")))?;
            prop_assert_eq!(&recycled, &written, "packet {}", k);
            prop_assert_eq!(state, written_state);
        }
        // A short buffer is refused and changes nothing.
        let before = (recycled.clone(), state);
        prop_assert_eq!(patch.patch(&mut recycled[..hl - 1], &mut state), Err(TemplateError::BufferTooShort));
        prop_assert_eq!((recycled, state), before);
    }

    #[test]
    fn full_size_patch_summed_equals_written_header(
        spec in arb_spec(),
        start in (any::<u16>(), any::<u16>(), any::<u32>()),
        earlier in proptest::collection::vec((0u8..3, any::<prop::sample::Index>()), 1..4),
        sums in proptest::collection::vec(any::<u32>(), 1..6),
    ) {
        // A destination's linear copies with a software checksum: a
        // recycled header of any earlier packet (any length, any checksum
        // mode), turned into full-size packets by the patch computed once,
        // with each packet's payload sum.
        let t = Template::new(&spec).map_err(|e| fail(format!("{e:?}")))?;
        let patch = t.full_size_patch_summed().ok_or_else(|| fail("no patch"))?;
        let (ip_id, rtp_seq, rtp_ts) = start;
        let mut state = PacketState { ip_id, rtp_seq, rtp_ts };
        let hl = t.header_len();
        let mut recycled = recycled_header(&t, &mut state, &earlier, UdpCsum::Partial)?;
        for (k, &payload_sum) in sums.iter().enumerate() {
            let csum = UdpCsum::Full { payload_sum };
            let mut written_state = state;
            let mut written = vec![0x5a; hl + 3];
            t.write_header(&mut written, &mut written_state, t.max_payload(), csum).map_err(|e| fail(format!("{e:?}")))?;
            patch.patch_summed(&mut recycled, &mut state, payload_sum).map_err(|e| fail(format!("{e:?}")))?;
            prop_assert_eq!(&recycled, &written, "packet {}", k);
            prop_assert_eq!(state, written_state);
        }
        // A short buffer is refused and changes nothing.
        let before = (recycled.clone(), state);
        prop_assert_eq!(patch.patch_summed(&mut recycled[..hl - 1], &mut state, 7), Err(TemplateError::BufferTooShort));
        prop_assert_eq!((recycled, state), before);
    }

    #[test]
    fn too_small_packet_sizes_fail(spec in arb_spec(), short in 1u16..100) {
        let spec = DestSpec { packet_size: min_packet_size(&spec).saturating_sub(short), ..spec };
        prop_assert_eq!(Template::new(&spec), Err(TemplateError::PacketSizeTooSmall));
    }

    #[test]
    fn invalid_payload_lengths_fail(spec in arb_spec(), over in 1u16..100) {
        let t = Template::new(&spec).map_err(|e| fail(format!("{e:?}")))?;
        let mut frame = [0u8; MAX_HEADER_LEN];
        let mut state = t.initial_state();
        for len in [0, t.max_payload().saturating_add(over)] {
            if len == 0 || u32::from(t.max_payload()) + u32::from(over) <= 0xffff {
                prop_assert_eq!(
                    t.write_header(&mut frame, &mut state, len, UdpCsum::Partial),
                    Err(TemplateError::InvalidPayloadLen)
                );
            }
        }
        prop_assert_eq!(state, t.initial_state());
        prop_assert_eq!(frame, [0u8; MAX_HEADER_LEN]);
    }
}

/// A valid IPv4 destination without VLAN or RTP.
fn base_spec() -> DestSpec {
    DestSpec {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        vlan_tci: None,
        ip: IpAddrs::V4 {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
        },
        src_port: 5000,
        dst_port: 5004,
        hop_limit: 64,
        dscp: 46,
        packet_size: 1500,
        rtp: None,
    }
}

/// An RTP stream with the given first sequence number and timestamp.
fn rtp(seq: u16, timestamp: u32, ts_increment: u32) -> RtpSpec {
    RtpSpec {
        ssrc: 0x1234_5678,
        payload_type: 96,
        seq,
        timestamp,
        ts_increment,
    }
}

/// An IPv6 destination.
fn v6() -> IpAddrs {
    IpAddrs::V6 {
        src: [0xfe; 16],
        dst: [0x20; 16],
    }
}

#[test]
fn invalid_specs_fail() {
    let new = |f: &dyn Fn(&mut DestSpec)| {
        let mut spec = base_spec();
        f(&mut spec);
        Template::new(&spec).map(|_| ())
    };
    assert_eq!(new(&|_| ()), Ok(()));
    assert_eq!(new(&|s| s.dscp = 63), Ok(()));
    assert_eq!(new(&|s| s.dscp = 64), Err(TemplateError::InvalidDscp));
    assert_eq!(new(&|s| s.dscp = 255), Err(TemplateError::InvalidDscp));
    for tci in [0x0000, 0x0fff, 0xe000, 0xffff, 0x1fff] {
        assert_eq!(
            new(&|s| s.vlan_tci = Some(tci)),
            Err(TemplateError::InvalidVlanId),
            "{tci:#x}"
        );
    }
    for tci in [0x0001, 0x0ffe, 0xeffe, 0xf001] {
        assert_eq!(new(&|s| s.vlan_tci = Some(tci)), Ok(()), "{tci:#x}");
    }
    assert_eq!(new(&|s| s.dst_port = 0), Err(TemplateError::ZeroPort));
    assert_eq!(new(&|s| s.src_port = 0), Ok(()));
    assert_eq!(new(&|s| s.hop_limit = 0), Err(TemplateError::ZeroHopLimit));
    assert_eq!(
        new(&|s| s.rtp = Some(RtpSpec {
            payload_type: 128,
            ..rtp(0, 0, 0)
        })),
        Err(TemplateError::InvalidPayloadType)
    );
    assert_eq!(
        new(&|s| s.rtp = Some(RtpSpec {
            payload_type: 127,
            ..rtp(0, 0, 0)
        })),
        Ok(())
    );
}

#[test]
fn packet_size_limits() {
    let max_payload = |f: &dyn Fn(&mut DestSpec)| {
        let mut spec = base_spec();
        f(&mut spec);
        Template::new(&spec).map(|t| t.max_payload())
    };
    // IPv4: at least 68 bytes.
    assert_eq!(
        max_payload(&|s| s.packet_size = 67),
        Err(TemplateError::PacketSizeTooSmall)
    );
    assert_eq!(max_payload(&|s| s.packet_size = 68), Ok(40));
    assert_eq!(
        max_payload(&|s| s.packet_size = 0),
        Err(TemplateError::PacketSizeTooSmall)
    );
    assert_eq!(
        max_payload(&|s| {
            s.packet_size = 68;
            s.rtp = Some(rtp(0, 0, 0))
        }),
        Ok(28)
    );
    assert_eq!(max_payload(&|s| s.packet_size = 1500), Ok(1472));
    assert_eq!(max_payload(&|s| s.packet_size = 65535), Ok(65507));
    // IPv6: headers plus one byte.
    assert_eq!(
        max_payload(&|s| {
            s.ip = v6();
            s.packet_size = 48
        }),
        Err(TemplateError::PacketSizeTooSmall)
    );
    assert_eq!(
        max_payload(&|s| {
            s.ip = v6();
            s.packet_size = 49
        }),
        Ok(1)
    );
    assert_eq!(
        max_payload(&|s| {
            s.ip = v6();
            s.packet_size = 60;
            s.rtp = Some(rtp(0, 0, 0))
        }),
        Err(TemplateError::PacketSizeTooSmall)
    );
    assert_eq!(
        max_payload(&|s| {
            s.ip = v6();
            s.packet_size = 61;
            s.rtp = Some(rtp(0, 0, 0))
        }),
        Ok(1)
    );
    assert_eq!(
        max_payload(&|s| {
            s.ip = v6();
            s.packet_size = 1500;
            s.vlan_tci = Some(5)
        }),
        Ok(1452)
    );
}

#[test]
fn write_errors_change_nothing() {
    let t4 = Template::new(&base_spec()).unwrap();
    let t6 = Template::new(&DestSpec {
        ip: v6(),
        ..base_spec()
    })
    .unwrap();
    for t in [t4, t6] {
        let mut out = [0u8; MAX_HEADER_LEN];
        let mut state = t.initial_state();
        let hl = t.header_len();
        let cases = [
            (hl, 0, UdpCsum::Partial, TemplateError::InvalidPayloadLen),
            (
                hl,
                t.max_payload() + 1,
                UdpCsum::Partial,
                TemplateError::InvalidPayloadLen,
            ),
            (hl - 1, 1, UdpCsum::Partial, TemplateError::BufferTooShort),
            (
                0,
                1,
                UdpCsum::Full { payload_sum: 0 },
                TemplateError::BufferTooShort,
            ),
        ];
        for (out_len, len, csum, err) in cases {
            assert_eq!(
                t.write_header(&mut out[..out_len], &mut state, len, csum),
                Err(err)
            );
        }
        let zero = t.write_header(&mut out[..hl], &mut state, 1, UdpCsum::Zero);
        if t.is_ipv6() {
            assert_eq!(zero, Err(TemplateError::ZeroChecksumIpv6));
            assert_eq!(out, [0u8; MAX_HEADER_LEN]);
            assert_eq!(state, t.initial_state());
        } else {
            assert_eq!(zero, Ok(()));
            assert_eq!(out[t.l4_offset() + UDP_CHECK_OFFSET..][..2], [0, 0]);
            assert_eq!(state.ip_id, 1);
        }
        assert_eq!(
            t.write_header(
                &mut out[..hl],
                &mut state,
                t.max_payload(),
                UdpCsum::Partial
            ),
            Ok(())
        );
    }
}

#[test]
fn counters_wrap() {
    let spec = DestSpec {
        rtp: Some(rtp(0xfffe, 0xffff_fffe, 3)),
        ..base_spec()
    };
    let t = Template::new(&spec).unwrap();
    let mut state = t.initial_state();
    state.ip_id = 0xffff;
    let mut out = [0u8; MAX_HEADER_LEN];
    let l3 = t.l3_offset();
    let rtp = t.l4_offset() + 8;
    let mut seen = Vec::new();
    for _ in 0..3 {
        t.write_header(&mut out, &mut state, 10, UdpCsum::Partial)
            .unwrap();
        let o = &out;
        seen.push((
            u16::from_be_bytes([o[l3 + 4], o[l3 + 5]]),
            u16::from_be_bytes([o[rtp + 2], o[rtp + 3]]),
            u32::from_be_bytes([o[rtp + 4], o[rtp + 5], o[rtp + 6], o[rtp + 7]]),
        ));
    }
    assert_eq!(
        seen,
        [(0xffff, 0xfffe, 0xffff_fffe), (0, 0xffff, 1), (1, 0, 4)]
    );
    assert_eq!(
        state,
        PacketState {
            ip_id: 2,
            rtp_seq: 1,
            rtp_ts: 7
        }
    );
}

#[test]
fn full_checksum_zero_is_sent_as_ffff() {
    // Find a payload word that makes the sum 0xffff, so that the computed
    // checksum is 0 and must be sent as 0xffff.
    let t = Template::new(&base_spec()).unwrap();
    let mut out = [0u8; MAX_HEADER_LEN];
    let mut state = t.initial_state();
    t.write_header(&mut out, &mut state, 2, UdpCsum::Full { payload_sum: 0 })
        .unwrap();
    let check_off = t.l4_offset() + UDP_CHECK_OFFSET;
    let c = u16::from_be_bytes([out[check_off], out[check_off + 1]]);
    // With payload word `c`, the ones-complement sum becomes 0xffff.
    let mut state = t.initial_state();
    t.write_header(
        &mut out,
        &mut state,
        2,
        UdpCsum::Full {
            payload_sum: u32::from(c),
        },
    )
    .unwrap();
    assert_eq!(out[check_off..][..2], [0xff, 0xff]);
}

#[test]
fn full_size_patch_only_for_payload_independent_checksums() {
    let t = Template::new(&base_spec()).unwrap();
    assert!(t.full_size_patch(UdpCsum::Partial).is_some());
    assert!(t.full_size_patch(UdpCsum::Zero).is_some());
    assert!(t
        .full_size_patch(UdpCsum::Full { payload_sum: 0 })
        .is_none());
    let t6 = Template::new(&DestSpec {
        ip: v6(),
        ..base_spec()
    })
    .unwrap();
    assert!(t6.full_size_patch(UdpCsum::Partial).is_some());
    assert!(t6.full_size_patch(UdpCsum::Zero).is_none());
}

proptest! {
    /// A template whose source MAC was replaced (the device's MAC changed)
    /// is the template built with the new MAC; the accessors describe it.
    #[test]
    fn set_src_mac_is_rebuild(spec in arb_spec(), mac in any::<[u8; 6]>()) {
        let mut t = Template::new(&spec).unwrap();
        prop_assert_eq!(t.src_mac(), spec.src_mac);
        prop_assert_eq!(t.header().len(), t.header_len());
        prop_assert_eq!(&t.header()[..6], &spec.dst_mac[..]);
        prop_assert_eq!(t.is_vlan(), spec.vlan_tci.is_some());
        t.set_src_mac(mac);
        let rebuilt = Template::new(&DestSpec { src_mac: mac, ..spec }).unwrap();
        prop_assert_eq!(t, rebuilt);
        prop_assert_eq!(t.src_mac(), mac);
    }
}
