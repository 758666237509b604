// SPDX-License-Identifier: GPL-2.0

//! Fan-outs (`MDW_ENTRY_SAME`): one payload, described and pinned once,
//! to many destinations, each with its own headers and RTP fields.

use mdwrite::{
    uapi::{MdwEntry, MDW_ENTRY_BUF, MDW_ENTRY_RTP_TS, MDW_ENTRY_SAME, MDW_FEAT_FANOUT},
    DestId, Device, Rtp,
};

use crate::{
    errors::{entry as head, foll_pins, raw_writev},
    net,
    raw::{errno_name, expect_errno},
    send::{check_bytes, pattern, sender, start_receivers, RECEIVERS},
    topo::Topology,
    TestResult,
};

/// An entry sending the data of the entry before it to `dest`.
pub(crate) fn same(dest: DestId) -> MdwEntry {
    MdwEntry {
        dest: dest.handle(),
        flags: MDW_ENTRY_SAME,
        ..Default::default()
    }
}

/// Sends `entries` in one call; fails unless all of it was sent.
pub(crate) fn send(dev: &Device, entries: &[MdwEntry]) -> Result<(u64, u64), String> {
    send_flags(dev, entries, 0)
}

/// [`send`] with `flags` (`MDW_WRITE_*`) in the call.
pub(crate) fn send_flags(
    dev: &Device,
    entries: &[MdwEntry],
    flags: u32,
) -> Result<(u64, u64), String> {
    let (r, req) = raw_writev(dev, entries, |req| req.flags |= flags);
    r.map_err(|e| format!("WRITEV: {}", errno_name(e)))?;
    if req.error != 0 {
        return Err(format!(
            "WRITEV stopped at entry {}: {}",
            req.error_index,
            errno_name(-req.error)
        ));
    }
    Ok((req.packets, req.bytes))
}

/// RTP fields of one received datagram: sequence number, timestamp, SSRC.
fn rtp_fields(d: &[u8]) -> (u16, u32, u32) {
    (
        u16::from_be_bytes([d[2], d[3]]),
        u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
    )
}

/// One 100,000-byte payload to 8 RTP receivers in one call, as a fan-out:
/// every receiver gets it byte for byte, with its own SSRC, sequence
/// numbers and timestamps (two of them from their entry's
/// `MDW_ENTRY_RTP_TS`), in packets no larger than the smallest payload of
/// the fan-out's destinations (two have a smaller packet size); the
/// payload's pages are pinned once; the call reports every destination's
/// packets. Then a call mixing a fan-out to half of them with entries of
/// their own for the others: both arrive, sequence numbers continuing.
pub(crate) fn fanout_rtp_per_destination() -> TestResult {
    let topo = Topology::new(RECEIVERS)?;
    let (dev, ids) = sender(&topo, false, |i, c| {
        if i % 4 == 3 {
            c.packet_size = Some(1000);
        }
        c.rtp = Some(
            Rtp::new(0x5000 + i as u32, 33)
                .with_seq(65000u16.wrapping_add(100 * i as u16))
                .with_timestamp(10_000 * i as u32)
                .with_ts_increment(90),
        );
    })?;
    let info = dev.info().map_err(|e| format!("INFO: {e}"))?;
    if info.features.bits() & MDW_FEAT_FANOUT == 0 {
        return Err(format!(
            "the module lacks MDW_FEAT_FANOUT: features {:#x}",
            info.features.bits()
        ));
    }
    // The smallest payload: a 1000-byte IPv4 packet with UDP and RTP.
    let max_payload = 1000 - 20 - 8 - 12;
    let region = pattern(100_000 + 8192, 21);
    let base = region.as_ptr().align_offset(4096) + 300;
    let payload = &region[base..base + 100_000];
    let pages = (300 + 100_000usize).div_ceil(4096) as u64;
    let per_dest = payload.len().div_ceil(max_payload) as u64;

    let second = pattern(30_000, 22);
    let own: Vec<Vec<u8>> = (0..RECEIVERS)
        .map(|i| pattern(5_000 + i, 40 + i as u32))
        .collect();
    let expect: Vec<usize> = (0..RECEIVERS)
        .map(|i| {
            payload.len()
                + if i < RECEIVERS / 2 {
                    second.len()
                } else {
                    own[i].len()
                }
        })
        .collect();
    let rx = start_receivers(&topo, false, &expect, 12)?;

    let mut entries = vec![head(ids[0], payload)];
    for (i, &id) in ids.iter().enumerate().skip(1) {
        let mut e = same(id);
        if i == 2 || i == 5 {
            e.flags |= MDW_ENTRY_RTP_TS;
            e.rtp_timestamp = 7_000_000 + i as u32;
        }
        entries.push(e);
    }
    let (acq0, _) = foll_pins()?;
    let (packets, bytes) = send(&dev, &entries)?;
    let (acq1, _) = foll_pins()?;
    if packets != per_dest * RECEIVERS as u64 || bytes != (payload.len() * RECEIVERS) as u64 {
        return Err(format!(
            "call reports {packets} packets, {bytes} bytes; want {} and {}",
            per_dest * RECEIVERS as u64,
            payload.len() * RECEIVERS
        ));
    }
    if acq1 - acq0 != pages {
        return Err(format!(
            "{} pages pinned for a {pages}-page payload to {RECEIVERS} destinations",
            acq1 - acq0
        ));
    }

    // Half of them get a second fan-out, the others an entry each, in one
    // call: the fan-out's entries first, then the others'.
    let mut entries = vec![head(ids[0], &second)];
    entries.extend(ids[1..RECEIVERS / 2].iter().map(|&id| same(id)));
    entries.extend((RECEIVERS / 2..RECEIVERS).map(|i| head(ids[i], &own[i])));
    send(&dev, &entries)?;

    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        let tail = if i < RECEIVERS / 2 { &second } else { &own[i] };
        let want = [payload, tail.as_slice()].concat();
        // The fan-outs' packets are within the smallest payload; the
        // entries of their own within each destination's.
        let own_max = if i % 4 == 3 {
            max_payload
        } else {
            1500 - 20 - 8 - 12
        };
        check_bytes(i, g, &want, 12, own_max)?;
        let fanned: usize = match i < RECEIVERS / 2 {
            true => g.datagrams.len(),
            false => per_dest as usize,
        };
        if let Some(d) = g.datagrams[..fanned.min(g.datagrams.len())]
            .iter()
            .find(|d| d.len() - 12 > max_payload)
        {
            return Err(format!(
                "receiver {i}: fan-out datagram of {} bytes > {max_payload}",
                d.len() - 12
            ));
        }
        let seq0 = 65000u16.wrapping_add(100 * i as u16);
        let ts0 = match i {
            2 | 5 => 7_000_000 + i as u32,
            _ => 10_000 * i as u32,
        };
        for (k, d) in g.datagrams.iter().enumerate() {
            let (seq, ts, ssrc) = rtp_fields(d);
            let want_seq = seq0.wrapping_add(k as u16);
            let want_ts = ts0.wrapping_add(90 * k as u32);
            if ssrc != 0x5000 + i as u32 || seq != want_seq || ts != want_ts {
                return Err(format!(
                    "receiver {i} packet {k}: seq {seq} ts {ts} ssrc {ssrc:#x}; want seq {want_seq} ts {want_ts} ssrc {:#x}",
                    0x5000 + i as u32
                ));
            }
        }
    }
    Ok(())
}

/// Fan-out entries that cannot be: `MDW_ENTRY_SAME` on the first entry,
/// with data of its own (address, length, buffer) or `MDW_ENTRY_BUF`, or
/// naming no destination; nothing is sent for any of them.
pub(crate) fn fanout_errors() -> TestResult {
    let topo = Topology::new(2)?;
    let (dev, ids) = sender(&topo, false, |_, _| {})?;
    let data = pattern(3000, 5);
    let ok = [head(ids[0], &data), same(ids[1])];
    let cases: [(&str, Vec<MdwEntry>, i32); 6] = [
        ("first entry", vec![same(ids[0])], libc::EINVAL),
        (
            "with an address",
            vec![ok[0], MdwEntry { addr: 1, ..ok[1] }],
            libc::EINVAL,
        ),
        (
            "with a length",
            vec![ok[0], MdwEntry { len: 1, ..ok[1] }],
            libc::EINVAL,
        ),
        (
            "with a buffer",
            vec![ok[0], MdwEntry { buf: 1, ..ok[1] }],
            libc::EINVAL,
        ),
        (
            "with MDW_ENTRY_BUF",
            vec![
                ok[0],
                MdwEntry {
                    flags: MDW_ENTRY_SAME | MDW_ENTRY_BUF,
                    ..ok[1]
                },
            ],
            libc::EINVAL,
        ),
        (
            "no such destination",
            vec![ok[0], MdwEntry { dest: 999, ..ok[1] }],
            libc::ENXIO,
        ),
    ];
    for (what, entries, errno) in cases {
        let (r, req) = raw_writev(&dev, &entries, |_| {});
        expect_errno(what, r, errno)?;
        if req.packets != 0 || req.error_index as usize != entries.len() - 1 {
            return Err(format!(
                "{what}: {} packets sent, error at entry {}; want none, entry {}",
                req.packets,
                req.error_index,
                entries.len() - 1
            ));
        }
    }
    // And the good call goes through: 3 packets to each.
    let (packets, _) = send(&dev, &ok)?;
    if packets != 6 {
        return Err(format!("{packets} packets, want 6"));
    }
    Ok(())
}
