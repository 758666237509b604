// SPDX-License-Identifier: GPL-2.0

//! Calls shaped like the file's last one: the same destinations, lengths
//! and flags in the same order, from new memory. The module reuses the
//! last call's validation for them (its slots, devices and plan) and must
//! notice whatever changed in between.

use mdwrite::{
    uapi::{MdwEntry, MDW_ENTRY_BUF, MDW_ENTRY_RTP_TS},
    Device, Rtp,
};

use crate::{
    errors::{entry, raw_writev},
    fanout::{self, same},
    net,
    raw::expect_errno,
    send::{check_bytes, config, pattern, sender, start_receivers, RECEIVERS},
    topo::{self, Topology},
    TestResult,
};

/// Bytes per destination per call.
const LEN: usize = 3000;
/// The RTP header after UDP.
const RTP: usize = 12;
/// The largest RTP payload of a 1500-byte IPv4 packet.
const MAX_PAYLOAD: usize = 1500 - 20 - 8 - RTP;
/// Receiver 5's smaller packets, from the third call on.
const SMALL_PACKET: u16 = 1000;

/// Sets the MTU of the sender's link of `topo`.
fn set_mtu(topo: &Topology, mtu: &str) -> TestResult {
    topo::run(&[
        "ip",
        "-n",
        &topo.sender,
        "link",
        "set",
        topo.sender_dev,
        "mtu",
        mtu,
    ])
    .map(|_| ())
}

/// What each receiver of `calls` (per call, per receiver its data) gets
/// over all of them, and how many bytes that is.
fn joined(calls: &[Vec<Vec<u8>>]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let want: Vec<Vec<u8>> = (0..RECEIVERS)
        .map(|i| calls.iter().flat_map(|c| c[i].clone()).collect())
        .collect();
    let expect = want.iter().map(Vec::len).collect();
    (want, expect)
}

/// [`joined`] for calls whose first entry is a fan-out to receivers 0-3:
/// those get its data, the first receiver's.
pub(crate) fn fanout_joined(calls: &[Vec<Vec<u8>>]) -> (Vec<Vec<u8>>, Vec<usize>) {
    let want: Vec<Vec<u8>> = (0..RECEIVERS)
        .map(|i| {
            let from = if i < 4 { 0 } else { i };
            calls.iter().flat_map(|c| c[from].clone()).collect()
        })
        .collect();
    let expect = want.iter().map(Vec::len).collect();
    (want, expect)
}

/// A call of `entries` that sends them all (`what` names it in errors).
fn send_ok(dev: &Device, entries: &[MdwEntry], what: &str) -> TestResult {
    fanout::send(dev, entries)
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

/// A call of `entries` that fails with `errno` at entry `index`, sending
/// nothing.
fn fails_at(dev: &Device, entries: &[MdwEntry], errno: i32, index: u32, what: &str) -> TestResult {
    let (r, req) = raw_writev(dev, entries, |_| {});
    expect_errno(what, r, errno)?;
    if req.packets != 0 || req.error_index != index {
        return Err(format!(
            "{what}: {} packets sent, error at entry {}; want none, entry {index}",
            req.packets, req.error_index
        ));
    }
    Ok(())
}

/// Four good calls of one shape to 8 RTP receivers: a fan-out of one
/// payload to receivers 0-3, an entry of its own for each of 4-7 (receiver
/// 4's with `MDW_ENTRY_RTP_TS`), every call from new memory with new
/// timestamps. Between them, receiver 5's destination is deleted and added
/// again (the same handle, now with 1000-byte packets), a call of the
/// shape finds the sender's MTU below the destinations' packets
/// (`EMSGSIZE`, nothing sent) before it comes back, and two fail on their
/// memory (`EFAULT` at the entry, nothing sent: one when pinning, one when
/// checked). Every receiver gets every good call's bytes in order,
/// receiver 5 in packets of its new size, receiver 4 each call's
/// timestamp.
pub(crate) fn shape_reuse() -> TestResult {
    let topo = Topology::new(RECEIVERS)?;
    let rtp = |i: usize| Rtp::new(0x7000 + i as u32, 96).with_ts_increment(90);
    let (dev, mut ids) = sender(&topo, false, |i, c| c.rtp = Some(rtp(i)))?;
    let calls: Vec<Vec<Vec<u8>>> = (0..4)
        .map(|k| {
            (0..RECEIVERS)
                .map(|i| pattern(LEN, 100 * k + i as u32))
                .collect()
        })
        .collect();
    let (want, expect) = fanout_joined(&calls);
    let rx = start_receivers(&topo, false, &expect, RTP)?;

    let shape = |datas: &[Vec<u8>], ids: &[mdwrite::DestId], ts: u32| -> Vec<MdwEntry> {
        let mut v = vec![entry(ids[0], &datas[0])];
        v.extend(ids[1..4].iter().map(|&id| same(id)));
        v.extend((4..RECEIVERS).map(|i| entry(ids[i], &datas[i])));
        v[4].flags |= MDW_ENTRY_RTP_TS;
        v[4].rtp_timestamp = ts;
        v
    };
    let send = |entries: &[MdwEntry], what: &str| send_ok(&dev, entries, what);
    let fails = |entries: &[MdwEntry], errno: i32, index: u32, what: &str| {
        fails_at(&dev, entries, errno, index, what)
    };

    send(&shape(&calls[0], &ids, 1000), "call 1")?;
    send(&shape(&calls[1], &ids, 2000), "call 2")?;

    // Receiver 5's destination again, under the same handle, with smaller
    // packets: the last call's slot for it must not be reused as it was.
    dev.remove_destination(ids[5])
        .map_err(|e| format!("DEST_DEL 5: {e}"))?;
    let mut c = config(&topo, topo.sender_ifindex()?, 5, false);
    c.rtp = Some(rtp(5));
    c.packet_size = Some(SMALL_PACKET);
    let again = dev
        .add_destination(&c)
        .map_err(|e| format!("DEST_ADD 5 again: {e}"))?;
    if again.handle() != ids[5].handle() {
        return Err(format!(
            "DEST_ADD 5 again gave handle {}, not the freed {}: the call's shape would differ",
            again.handle(),
            ids[5].handle()
        ));
    }
    ids[5] = again;
    send(
        &shape(&calls[2], &ids, 3000),
        "call 3, receiver 5 added again",
    )?;

    // The device changes under the shape: its MTU below the packets.
    set_mtu(&topo, "1400")?;
    let emsgsize = fails(
        &shape(&calls[3], &ids, 4000),
        libc::EMSGSIZE,
        0,
        "a call of the shape with the MTU at 1400",
    );
    set_mtu(&topo, "1500")?;
    emsgsize?;

    // Its memory fails: unmapped (found when pinning, after a validation
    // that the next call of the shape reuses), then past the end of the
    // address space (found by that reuse).
    let mut e = shape(&calls[3], &ids, 4000);
    e[6].addr = 4096;
    fails(&e, libc::EFAULT, 6, "entry 6 unmapped")?;
    let mut e = shape(&calls[3], &ids, 4000);
    e[6].addr = u64::MAX - 10;
    fails(
        &e,
        libc::EFAULT,
        6,
        "entry 6 past the end of the address space",
    )?;

    send(&shape(&calls[3], &ids, 4000), "call 4")?;

    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        check_bytes(i, g, &want[i], RTP, MAX_PAYLOAD)?;
    }
    // Receiver 5's two calls since it was added again: 960-byte payloads.
    let small = usize::from(SMALL_PACKET) - 20 - 8 - RTP;
    let before = 2 * LEN.div_ceil(MAX_PAYLOAD);
    if let Some(d) = got[5].datagrams[before..]
        .iter()
        .find(|d| d.len() - RTP > small)
    {
        return Err(format!(
            "receiver 5: a datagram of {} bytes after it was added again with {SMALL_PACKET}-byte packets",
            d.len() - RTP
        ));
    }
    // Receiver 4: each call's first packet has the call's timestamp.
    let per_call = LEN.div_ceil(MAX_PAYLOAD);
    for (k, ts) in [1000u32, 2000, 3000, 4000].into_iter().enumerate() {
        let d = &got[4].datagrams[k * per_call];
        let got_ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        if got_ts != ts {
            return Err(format!(
                "receiver 4, call {}: RTP timestamp {got_ts}, want {ts}",
                k + 1
            ));
        }
    }
    Ok(())
}

/// Calls of one shape whose entries all send their own data (the live
/// sender's steady state, which the module revalidates in a loop of its
/// own): first every entry from user memory, then receivers 6 and 7 from
/// slices of a registered buffer. Each good call from new memory (new
/// offsets in the buffer), and between them calls of the shape that fail
/// on one entry, nothing sent: past the end of the address space
/// (`EFAULT`), `pace_offset` or `pace_gap` set without `MDW_ENTRY_PACE`
/// (`EINVAL`), past the end of the buffer (`EFAULT`). Every receiver gets
/// every good call's bytes, in order.
pub(crate) fn shape_plain_reuse() -> TestResult {
    const CALLS: usize = 6;
    const BUF: [usize; 2] = [6, 7];
    let topo = Topology::new(RECEIVERS)?;
    let (dev, ids) = sender(&topo, false, |_, _| {})?;
    let calls: Vec<Vec<Vec<u8>>> = (0..CALLS)
        .map(|k| {
            (0..RECEIVERS)
                .map(|i| pattern(LEN + 100 * i, 1000 + 37 * k as u32 + i as u32))
                .collect()
        })
        .collect();
    let (want, expect) = joined(&calls);
    let rx = start_receivers(&topo, false, &expect, 0)?;
    let mut buf = dev
        .register_buffer(1 << 20)
        .map_err(|e| format!("BUF_REGISTER: {e}"))?;
    let buf_id = buf.id().ok_or("the buffer was not registered")?;

    // Call `k`: from user memory, or (`registered`) receivers 6 and 7 from
    // the buffer, at offsets that move from call to call.
    let mut shape = |k: usize, registered: bool| -> Vec<MdwEntry> {
        (0..RECEIVERS)
            .map(|i| {
                let data = &calls[k][i];
                if !registered || !BUF.contains(&i) {
                    return entry(ids[i], data);
                }
                let off = 4096 * (8 * k + i) + 123 * k;
                buf[off..off + data.len()].copy_from_slice(data);
                MdwEntry {
                    dest: ids[i].handle(),
                    flags: MDW_ENTRY_BUF,
                    addr: off as u64,
                    len: data.len() as u64,
                    buf: buf_id,
                    ..Default::default()
                }
            })
            .collect()
    };
    let send = |entries: &[MdwEntry], what: &str| send_ok(&dev, entries, what);
    let fails = |entries: &[MdwEntry], errno: i32, index: u32, what: &str| {
        fails_at(&dev, entries, errno, index, what)
    };

    send(&shape(0, false), "call 1")?;
    send(&shape(1, false), "call 2")?;
    let mut e = shape(2, false);
    e[5].addr = u64::MAX - 10;
    fails(
        &e,
        libc::EFAULT,
        5,
        "entry 5 past the end of the address space",
    )?;
    let mut e = shape(2, false);
    e[3].pace_offset = 1;
    fails(&e, libc::EINVAL, 3, "entry 3 with pace_offset, unpaced")?;
    let mut e = shape(2, false);
    e[4].pace_gap = 1;
    fails(&e, libc::EINVAL, 4, "entry 4 with pace_gap, unpaced")?;
    send(&shape(2, false), "call 3")?;

    send(&shape(3, true), "call 4, two entries from the buffer")?;
    send(&shape(4, true), "call 5")?;
    let mut e = shape(5, true);
    e[7].addr = (1 << 20) - 10;
    fails(&e, libc::EFAULT, 7, "entry 7 past the end of the buffer")?;
    let mut e = shape(5, true);
    e[1].addr = u64::MAX - 10;
    fails(
        &e,
        libc::EFAULT,
        1,
        "entry 1 past the end of the address space",
    )?;
    send(&shape(5, true), "call 6")?;

    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        check_bytes(i, g, &want[i], 0, 1472)?;
    }
    Ok(())
}

/// Calls of one shape with one packet per destination, untimed (the live
/// sender at its lowest rate, which the module sends slot by slot without
/// a plan): 8 RTP receivers, the even ones full-size packets, the odd ones
/// shorter, receivers 1 and 2 from memory that straddles a page boundary,
/// receiver 3 with each call's `MDW_ENTRY_RTP_TS`. Between the good calls,
/// calls of the shape that fail, nothing sent: an unmapped entry (found
/// when pinning), `pace_gap` without `MDW_ENTRY_PACE`, the device's MTU
/// below the full-size packets (`EMSGSIZE`). Every receiver gets exactly
/// one datagram per good call, its bytes, in order, with consecutive RTP
/// sequence numbers; receiver 3 each call's timestamp.
pub(crate) fn shape_single_reuse() -> TestResult {
    const CALLS: usize = 5;
    const PAGE: usize = 4096;
    let topo = Topology::new(RECEIVERS)?;
    let rtp = |i: usize| Rtp::new(0x5100 + i as u32, 96).with_ts_increment(90);
    let (dev, ids) = sender(&topo, false, |i, c| c.rtp = Some(rtp(i)))?;
    let len = |i: usize| match i % 2 {
        0 => MAX_PAYLOAD,
        _ => 300 + 50 * i,
    };
    let calls: Vec<Vec<Vec<u8>>> = (0..CALLS)
        .map(|k| {
            (0..RECEIVERS)
                .map(|i| pattern(len(i), 5000 + 31 * k as u32 + i as u32))
                .collect()
        })
        .collect();
    let (want, expect) = joined(&calls);
    let rx = start_receivers(&topo, false, &expect, RTP)?;

    // Each call's data in memory of its own, two pages per receiver:
    // receivers 1 and 2 end 100 bytes into their second page.
    let mut mem = vec![0u8; (2 * RECEIVERS * CALLS + 1) * PAGE];
    let base = mem.as_ptr().align_offset(PAGE);
    let mut placed: Vec<Vec<(u64, u64)>> = Vec::new();
    for (k, call) in calls.iter().enumerate() {
        let mut at = Vec::new();
        for (i, data) in call.iter().enumerate() {
            let page = base + (2 * (k * RECEIVERS + i)) * PAGE;
            let off = match i {
                1 | 2 => page + PAGE - data.len() + 100,
                _ => page + 64 * k,
            };
            mem[off..off + data.len()].copy_from_slice(data);
            at.push((off as u64, data.len() as u64));
        }
        placed.push(at);
    }
    let start = mem.as_ptr() as u64;
    let shape = |k: usize| -> Vec<MdwEntry> {
        placed[k]
            .iter()
            .enumerate()
            .map(|(i, &(off, len))| {
                let mut e = MdwEntry {
                    dest: ids[i].handle(),
                    addr: start + off,
                    len,
                    ..Default::default()
                };
                if i == 3 {
                    e.flags = MDW_ENTRY_RTP_TS;
                    e.rtp_timestamp = 1000 * (k as u32 + 1);
                }
                e
            })
            .collect()
    };
    let send = |entries: &[MdwEntry], what: &str| send_ok(&dev, entries, what);
    let fails = |entries: &[MdwEntry], errno: i32, index: u32, what: &str| {
        fails_at(&dev, entries, errno, index, what)
    };

    send(&shape(0), "call 1")?;
    send(&shape(1), "call 2")?;
    let mut e = shape(2);
    e[6].addr = 4096;
    fails(&e, libc::EFAULT, 6, "entry 6 unmapped")?;
    let mut e = shape(2);
    e[5].pace_gap = 1;
    fails(&e, libc::EINVAL, 5, "entry 5 with pace_gap, unpaced")?;
    send(&shape(2), "call 3")?;
    set_mtu(&topo, "1400")?;
    let emsgsize = fails(
        &shape(3),
        libc::EMSGSIZE,
        0,
        "a call of the shape with the MTU at 1400",
    );
    set_mtu(&topo, "1500")?;
    emsgsize?;
    send(&shape(3), "call 4")?;
    send(&shape(4), "call 5")?;
    drop(mem);

    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        check_bytes(i, g, &want[i], RTP, MAX_PAYLOAD)?;
        if g.datagrams.len() != CALLS {
            return Err(format!(
                "receiver {i}: {} datagrams, want one per call ({CALLS})",
                g.datagrams.len()
            ));
        }
        let seq = |d: &Vec<u8>| u16::from_be_bytes([d[2], d[3]]);
        for (k, pair) in g.datagrams.windows(2).enumerate() {
            if seq(&pair[1]) != seq(&pair[0]).wrapping_add(1) {
                return Err(format!(
                    "receiver {i}: RTP sequence {} after {} (calls {} and {})",
                    seq(&pair[1]),
                    seq(&pair[0]),
                    k + 1,
                    k + 2
                ));
            }
        }
    }
    for (k, d) in got[3].datagrams.iter().enumerate() {
        let ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        if ts != 1000 * (k as u32 + 1) {
            return Err(format!(
                "receiver 3, call {}: RTP timestamp {ts}, want {}",
                k + 1,
                1000 * (k + 1)
            ));
        }
    }
    Ok(())
}
