// SPDX-License-Identifier: GPL-2.0

//! Destination groups (`MDW_IOC_GROUP_SET`, `MDW_ENTRY_GROUP`): one entry
//! described once, a fan-out to every destination of its group.

use std::os::fd::AsFd;

use mdwrite::{
    uapi::{
        MdwEntry, MdwGroup, MdwGroupDel, MdwRepeat, MDW_ENTRY_GROUP, MDW_ENTRY_RTP_TS,
        MDW_ENTRY_SAME, MDW_FEAT_GROUP, MDW_IOC_GROUP_DEL, MDW_IOC_GROUP_SET, MDW_MAX_GROUPS,
        MDW_MAX_GROUP_DESTS,
    },
    DestId, Device, Entry, WriteOptions,
};

use crate::{
    capture::{capture_dests, datagram, drain, Module},
    errors::{entry, raw_writev},
    fanout::{same, send},
    net,
    raw::{errno_name, expect_errno, ioctl},
    repeat::raw_repeat,
    send::{check_bytes, pattern, sender, start_receivers},
    topo::Topology,
    TestResult,
};

/// RTP header length.
const RTP: usize = 12;
/// The RTP payload of a full-size packet at MTU 1500.
const FULL_RTP: usize = 1500 - 20 - 8 - RTP;
/// The UDP payload of a full-size packet at MTU 1500.
const FULL: usize = 1500 - 20 - 8;

/// A raw `MDW_IOC_GROUP_SET` of `dests` (group `handle`, 0 for a new one),
/// `tweak` applied; the result and the struct as the module left it.
fn raw_group_set(
    dev: &Device,
    handle: u32,
    dests: &[u32],
    tweak: impl Fn(&mut MdwGroup),
) -> (Result<i32, i32>, MdwGroup) {
    let mut req = MdwGroup {
        dests: dests.as_ptr() as u64,
        count: dests.len() as u32,
        handle,
        flags: 0,
        reserved: 0,
    };
    tweak(&mut req);
    let r = ioctl(
        dev.as_fd(),
        MDW_IOC_GROUP_SET,
        &mut req as *mut MdwGroup as usize,
    );
    (r, req)
}

/// A raw `MDW_IOC_GROUP_DEL`.
fn raw_group_del(dev: &Device, handle: u32, flags: u32) -> Result<i32, i32> {
    let mut req = MdwGroupDel { handle, flags };
    ioctl(
        dev.as_fd(),
        MDW_IOC_GROUP_DEL,
        &mut req as *mut MdwGroupDel as usize,
    )
}

/// An entry of `data` to every destination of group `group`.
fn group_entry(group: u32, data: &[u8]) -> MdwEntry {
    MdwEntry {
        dest: group,
        flags: MDW_ENTRY_GROUP,
        ..entry(DestId::from_handle(0), data)
    }
}

/// `group`'s entry with `ts` as its RTP timestamp.
fn with_ts(mut e: MdwEntry, ts: u32) -> MdwEntry {
    e.flags |= MDW_ENTRY_RTP_TS;
    e.rtp_timestamp = ts;
    e
}

/// One frame as the capture NIC saw it: the destination (port - 5000),
/// its RTP sequence number and timestamp (destinations with RTP), and the
/// payload after the RTP header.
struct Frame {
    k: usize,
    rtp: Option<(u16, u32)>,
    payload: Vec<u8>,
}

/// The frames captured since the last drain, checked (lengths and
/// checksums) and taken apart.
fn frames(what: &str) -> Result<Vec<Frame>, String> {
    drain()?
        .iter()
        .map(|f| {
            let (port, udp) = datagram(f).map_err(|e| format!("{what}: {e}"))?;
            let k = usize::from(port.wrapping_sub(5000));
            let (rtp, payload) = match k % 2 {
                1 => {
                    let h = udp
                        .get(..RTP)
                        .ok_or(format!("{what}: short RTP datagram"))?;
                    (
                        Some((
                            u16::from_be_bytes([h[2], h[3]]),
                            u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        )),
                        udp[RTP..].to_vec(),
                    )
                }
                _ => (None, udp.to_vec()),
            };
            Ok(Frame { k, rtp, payload })
        })
        .collect()
}

/// Checks that `got` is, in order, each packet of `data` (cut at
/// `payload` bytes) to every destination of `members` in turn, before the
/// next packet; with `ts`, every RTP destination's packets start at that
/// timestamp (90 apart). RTP sequence numbers go on by one per packet
/// from `seq` (updated).
fn expect_fanout(
    what: &str,
    got: &[Frame],
    members: &[usize],
    data: &[u8],
    payload: usize,
    ts: Option<u32>,
    seq: &mut [Option<u16>],
) -> TestResult {
    let packets: Vec<&[u8]> = data.chunks(payload).collect();
    let want = packets.len() * members.len();
    if got.len() != want {
        let ks: Vec<usize> = got.iter().map(|f| f.k).collect();
        return Err(format!(
            "{what}: {} frames (to {ks:?}), want {want}",
            got.len()
        ));
    }
    for (j, f) in got.iter().enumerate() {
        let (p, k) = (j / members.len(), members[j % members.len()]);
        if f.k != k || f.payload != packets[p] {
            return Err(format!(
                "{what}: frame {j} went to destination {} with {} bytes; want packet {p} ({} bytes) to destination {k}",
                f.k,
                f.payload.len(),
                packets[p].len()
            ));
        }
        if let Some((s, t)) = f.rtp {
            if let Some(before) = seq[k] {
                if s != before.wrapping_add(1) {
                    return Err(format!(
                        "{what}: frame {j}: destination {k}'s RTP sequence {s} after {before}"
                    ));
                }
            }
            seq[k] = Some(s);
            if let Some(ts) = ts {
                let want = ts.wrapping_add(90 * p as u32);
                if t != want {
                    return Err(format!(
                        "{what}: frame {j}: destination {k}'s RTP timestamp {t}, want {want}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A group's fan-out on the wire (the capture NIC: bytes, headers and
/// order): a group of four RTP destinations in an order of its own gets
/// each packet of one entry's data in the group's order before the next,
/// every destination at the entry's RTP timestamp; a repeated call
/// (`MDW_WRITE_REPEAT`: the group's one entry, new data, a new timestamp)
/// does the same with the new timestamp for every destination (not the
/// first call's); the group replaced by one with a destination without
/// RTP refuses the repeat with `EINVAL`; replaced again, it takes turns
/// with another destination's entry in one call (one packet of the other,
/// then one of the group's to each of its destinations); a group naming a
/// destination twice sends it each packet twice; a destination removed
/// from the file makes the next call fail with `ENXIO` at the group's
/// entry, as does the group's removal, and nothing is sent for them.
pub(crate) fn group_fanout_order() -> TestResult {
    let _module = Module::load()?;
    let (_topo, dev, ids) = capture_dests()?;
    let features = dev.info().map_err(|e| format!("INFO: {e}"))?.features;
    if features.bits() & MDW_FEAT_GROUP == 0 {
        return Err(format!(
            "no MDW_FEAT_GROUP: features {:#x}",
            features.bits()
        ));
    }
    let mut seq = vec![None; 8];
    let of = |ks: &[usize]| ks.iter().map(|&k| ids[k]).collect::<Vec<_>>();

    // A group of four RTP destinations, in an order of its own.
    let odd = [3, 1, 5, 7];
    let group = dev
        .set_group(&of(&odd))
        .map_err(|e| format!("GROUP_SET: {e}"))?
        .handle();
    let data1 = pattern(2 * FULL_RTP + 500, 1);
    let first = [with_ts(group_entry(group, &data1), 50_000)];
    let (r, req) = raw_writev(&dev, &first, |_| {});
    r.map_err(|e| format!("group call: {}", errno_name(e)))?;
    if req.packets != 12 || req.bytes != 4 * data1.len() as u64 || req.error != 0 {
        return Err(format!(
            "group call: {} packets, {} bytes, error {}; want 12, {}, none",
            req.packets,
            req.bytes,
            req.error,
            4 * data1.len()
        ));
    }
    let got = frames("group call")?;
    expect_fanout(
        "group call",
        &got,
        &odd,
        &data1,
        FULL_RTP,
        Some(50_000),
        &mut seq,
    )?;

    // Repeated: new data of the same length (the call's validation
    // reused), a new timestamp for all of them.
    let data2 = pattern(data1.len(), 2);
    let again = [MdwRepeat {
        addr: data2.as_ptr() as u64,
        len: data2.len() as u32,
        rtp_timestamp: 80_000,
    }];
    let (r, req) = raw_repeat(&dev, req.call_id, &again, |_| {});
    r.map_err(|e| format!("repeated group call: {}", errno_name(e)))?;
    if req.packets != 12 || req.error != 0 {
        return Err(format!(
            "repeated group call: {} packets, error {}; want 12, none",
            req.packets, req.error
        ));
    }
    let got = frames("repeated group call")?;
    expect_fanout(
        "repeated group call",
        &got,
        &odd,
        &data2,
        FULL_RTP,
        Some(80_000),
        &mut seq,
    )?;

    // Replaced by a group with a destination without RTP: the repeat's
    // timestamp is refused.
    dev.replace_group(mdwrite_group(group), &of(&[1, 2]))
        .map_err(|e| format!("GROUP_SET (replace): {e}"))?;
    let (r, req2) = raw_repeat(&dev, req.call_id, &again, |_| {});
    expect_errno("a timestamp for a destination without RTP", r, libc::EINVAL)?;
    if req2.packets != 0 || req2.error_index != 0 || !frames("refused call")?.is_empty() {
        return Err(format!(
            "a timestamp for a destination without RTP: {} packets, error at entry {}; want none, entry 0",
            req2.packets, req2.error_index
        ));
    }

    // Taking turns with another destination's entry.
    dev.replace_group(mdwrite_group(group), &of(&[1, 3]))
        .map_err(|e| format!("GROUP_SET (replace): {e}"))?;
    let own = pattern(FULL + 40, 3);
    let data3 = pattern(FULL_RTP + 70, 4);
    send(
        &dev,
        &[
            entry(ids[2], &own),
            with_ts(group_entry(group, &data3), 200_000),
        ],
    )
    .map_err(|e| format!("mixed call: {e}"))?;
    let got = frames("mixed call")?;
    let want: Vec<(usize, &[u8])> = vec![
        (2, &own[..FULL]),
        (1, &data3[..FULL_RTP]),
        (3, &data3[..FULL_RTP]),
        (2, &own[FULL..]),
        (1, &data3[FULL_RTP..]),
        (3, &data3[FULL_RTP..]),
    ];
    let order: Vec<(usize, usize)> = got.iter().map(|f| (f.k, f.payload.len())).collect();
    let want_order: Vec<(usize, usize)> = want.iter().map(|(k, d)| (*k, d.len())).collect();
    if order != want_order || got.iter().zip(&want).any(|(f, (_, d))| f.payload != *d) {
        return Err(format!(
            "mixed call: frames (destination, bytes) {order:?}, want {want_order:?} with the entries' bytes"
        ));
    }
    for (j, f) in got.iter().enumerate() {
        if let (Some((_, t)), true) = (f.rtp, j % 3 != 0) {
            let want = 200_000 + 90 * (j / 3) as u32;
            if t != want {
                return Err(format!(
                    "mixed call: frame {j}: RTP timestamp {t}, want {want}"
                ));
            }
        }
    }

    // A destination twice.
    dev.replace_group(mdwrite_group(group), &of(&[6, 0, 4, 0]))
        .map_err(|e| format!("GROUP_SET (replace): {e}"))?;
    let data4 = pattern(FULL + 10, 5);
    send(&dev, &[group_entry(group, &data4)]).map_err(|e| format!("twice: {e}"))?;
    let got = frames("a destination twice")?;
    expect_fanout(
        "a destination twice",
        &got,
        &[6, 0, 4, 0],
        &data4,
        FULL,
        None,
        &mut seq,
    )?;

    // A destination gone, then the group.
    dev.remove_destination(ids[4])
        .map_err(|e| format!("DEST_DEL: {e}"))?;
    let call = [group_entry(group, &data4)];
    let (r, req) = raw_writev(&dev, &call, |_| {});
    expect_errno("a group naming a removed destination", r, libc::ENXIO)?;
    dev.remove_group(mdwrite_group(group))
        .map_err(|e| format!("GROUP_DEL: {e}"))?;
    let (r2, req2) = raw_writev(&dev, &call, |_| {});
    expect_errno("a removed group", r2, libc::ENXIO)?;
    if req.packets + req2.packets != 0
        || req.error_index + req2.error_index != 0
        || !frames("refused calls")?.is_empty()
    {
        return Err("calls to a broken or removed group sent packets".into());
    }
    Ok(())
}

/// The library's id of group handle `handle`.
fn mdwrite_group(handle: u32) -> mdwrite::GroupId {
    mdwrite::GroupId::from_handle(handle)
}

/// A bad `MDW_IOC_GROUP_SET`: what it is, the handle, the destinations,
/// what spoils the request, the errno.
type SetCase = (&'static str, u32, Vec<u32>, fn(&mut MdwGroup), i32);

/// Every bad group and group entry gets its errno, and nothing is sent:
/// `MDW_IOC_GROUP_SET` with flags or reserved bits (`EINVAL`), no
/// destination (`EINVAL`), more than `MDW_MAX_GROUP_DESTS` (`E2BIG`), a
/// handle naming no destination (`ENXIO`), a group to replace that is not
/// there (`ENXIO`), handles at a bad address (`EFAULT`), the
/// `MDW_MAX_GROUPS`+1st group (`ENOSPC`, and a handle again once one is
/// removed); `MDW_IOC_GROUP_DEL` of no group (`ENXIO`) or with flags
/// (`EINVAL`); a call naming no group (`ENXIO`), `MDW_ENTRY_GROUP` with
/// `MDW_ENTRY_SAME` (`EINVAL`), an `MDW_ENTRY_SAME` entry after a group's
/// (`EINVAL`), an RTP timestamp for a group with a destination without RTP
/// (`EINVAL`), a call whose groups add up to more than
/// `MDW_MAX_CALL_DESTS` entries (`E2BIG`). Good calls then send what they
/// should, a group's entry first, last or between others.
pub(crate) fn group_errors() -> TestResult {
    let topo = Topology::new(2)?;
    let (dev, ids) = sender(&topo, false, |_, _| {})?;
    let handles: Vec<u32> = ids.iter().map(|d| d.handle()).collect();
    let set_cases: [SetCase; 7] = [
        ("flags", 0, handles.clone(), |g| g.flags = 1, libc::EINVAL),
        (
            "reserved",
            0,
            handles.clone(),
            |g| g.reserved = 1,
            libc::EINVAL,
        ),
        ("no destination", 0, Vec::new(), |_| {}, libc::EINVAL),
        (
            "too many destinations",
            0,
            vec![handles[0]; MDW_MAX_GROUP_DESTS as usize + 1],
            |_| {},
            libc::E2BIG,
        ),
        (
            "no such destination",
            0,
            vec![handles[0], 999],
            |_| {},
            libc::ENXIO,
        ),
        (
            "no such group to replace",
            77,
            handles.clone(),
            |_| {},
            libc::ENXIO,
        ),
        (
            "handles at a bad address",
            0,
            handles.clone(),
            |g| g.dests = 8,
            libc::EFAULT,
        ),
    ];
    for (what, handle, dests, tweak, errno) in set_cases {
        expect_errno(
            &format!("GROUP_SET: {what}"),
            raw_group_set(&dev, handle, &dests, tweak).0,
            errno,
        )?;
    }
    expect_errno(
        "GROUP_DEL: no such group",
        raw_group_del(&dev, 77, 0),
        libc::ENXIO,
    )?;
    let (r, g) = raw_group_set(&dev, 0, &handles, |_| {});
    r.map_err(|e| format!("GROUP_SET: {}", errno_name(e)))?;
    let group = g.handle;
    expect_errno(
        "GROUP_DEL: flags",
        raw_group_del(&dev, group, 1),
        libc::EINVAL,
    )?;

    let data = pattern(3000, 9);
    let ok = group_entry(group, &data);
    let big_group = vec![handles[0]; MDW_MAX_GROUP_DESTS as usize];
    let (r, big) = raw_group_set(&dev, 0, &big_group, |_| {});
    r.map_err(|e| format!("GROUP_SET of {}: {}", big_group.len(), errno_name(e)))?;
    let call_cases: [(&str, Vec<MdwEntry>, i32, u32); 5] = [
        (
            "no such group",
            vec![group_entry(999, &data)],
            libc::ENXIO,
            0,
        ),
        (
            "with MDW_ENTRY_SAME",
            vec![MdwEntry {
                flags: MDW_ENTRY_GROUP | MDW_ENTRY_SAME,
                ..ok
            }],
            libc::EINVAL,
            0,
        ),
        (
            "an MDW_ENTRY_SAME entry after it",
            vec![ok, same(ids[0])],
            libc::EINVAL,
            1,
        ),
        (
            "an RTP timestamp for destinations without RTP",
            vec![with_ts(ok, 5)],
            libc::EINVAL,
            0,
        ),
        (
            "more than MDW_MAX_CALL_DESTS entries",
            vec![group_entry(big.handle, &data); 17],
            libc::E2BIG,
            15,
        ),
    ];
    for (what, entries, errno, index) in call_cases {
        let (r, req) = raw_writev(&dev, &entries, |_| {});
        expect_errno(what, r, errno)?;
        if req.packets != 0 || req.error_index != index {
            return Err(format!(
                "{what}: {} packets sent, error at entry {}; want none, entry {index}",
                req.packets, req.error_index
            ));
        }
    }
    // The good calls: 3 packets to each, the group's after an entry of
    // dest 0's own too.
    let (packets, _) = send(&dev, &[ok]).map_err(|e| format!("group call: {e}"))?;
    let (packets2, _) = send(&dev, &[entry(ids[0], &data), ok])
        .map_err(|e| format!("entry and group call: {e}"))?;
    let (packets3, _) = send(&dev, &[ok, entry(ids[1], &data), ok])
        .map_err(|e| format!("group, entry and group call: {e}"))?;
    if (packets, packets2, packets3) != (6, 9, 15) {
        return Err(format!(
            "{packets}, {packets2} and {packets3} packets, want 6, 9 and 15"
        ));
    }

    // As many groups as a file may have, then ENOSPC; a removed one's
    // handle comes back.
    let mut made = 2;
    while made < MDW_MAX_GROUPS {
        let (r, _) = raw_group_set(&dev, 0, &handles[..1], |_| {});
        r.map_err(|e| format!("group {}: {}", made + 1, errno_name(e)))?;
        made += 1;
    }
    expect_errno(
        "one group too many",
        raw_group_set(&dev, 0, &handles[..1], |_| {}).0,
        libc::ENOSPC,
    )?;
    raw_group_del(&dev, group, 0).map_err(|e| format!("GROUP_DEL: {}", errno_name(e)))?;
    let (r, again) = raw_group_set(&dev, 0, &handles[..1], |_| {});
    r.map_err(|e| format!("GROUP_SET after a removal: {}", errno_name(e)))?;
    if again.handle != group {
        return Err(format!(
            "GROUP_SET after removing group {group} gave handle {}",
            again.handle
        ));
    }
    Ok(())
}

/// The library sends a fan-out (`WriteOptions::with_fanout`) as one group
/// entry on a module with `MDW_FEAT_GROUP`, the group made once and kept:
/// two calls of one payload to four receivers (the second a repeat) make
/// one group; removing a destination removes the groups naming it (its
/// handle may name another destination next), and the next fan-outs to
/// the other three make a new group; every receiver gets the payload once
/// per call it was in, byte for byte.
pub(crate) fn group_library_fanout() -> TestResult {
    let topo = Topology::new(4)?;
    let (dev, ids) = sender(&topo, false, |_, _| {})?;
    let data = pattern(3000, 31);
    let expect = [
        4 * data.len(),
        4 * data.len(),
        4 * data.len(),
        2 * data.len(),
    ];
    let rx = start_receivers(&topo, false, &expect, 0)?;
    let fan = WriteOptions::default().with_fanout(true);
    let call = |ids: &[DestId], what: &str| -> TestResult {
        let entries: Vec<Entry<'_>> = ids.iter().map(|&id| Entry::new(id, &data)).collect();
        let report = dev
            .write_vectored(&entries, fan)
            .map_err(|e| format!("{what}: {e}"))?;
        if report.error.is_some() || report.packets != 3 * ids.len() as u64 {
            return Err(format!(
                "{what}: {} packets, error {:?}; want {}, none",
                report.packets,
                report.error,
                3 * ids.len()
            ));
        }
        Ok(())
    };
    for c in 0..2 {
        call(&ids, &format!("fan-out to four, call {}", c + 1))?;
    }
    if dev.fanout_groups() != 1 {
        return Err(format!(
            "{} groups after two fan-outs to the same four, want 1",
            dev.fanout_groups()
        ));
    }
    dev.remove_destination(ids[3])
        .map_err(|e| format!("DEST_DEL: {e}"))?;
    if dev.fanout_groups() != 0 {
        return Err(format!(
            "{} groups after removing one of their destinations, want 0",
            dev.fanout_groups()
        ));
    }
    for c in 0..2 {
        call(&ids[..3], &format!("fan-out to three, call {}", c + 1))?;
    }
    if dev.fanout_groups() != 1 {
        return Err(format!(
            "{} groups after fan-outs to three, want 1",
            dev.fanout_groups()
        ));
    }
    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        let want = data.repeat(expect[i] / data.len());
        check_bytes(i, g, &want, 0, 1472)?;
    }
    Ok(())
}
