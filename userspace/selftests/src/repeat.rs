// SPDX-License-Identifier: GPL-2.0

//! Calls that repeat the file's last one (`MDW_WRITE_REPEAT`): its
//! entries, each with new data from a `struct mdw_repeat`, the call being
//! repeated named by its `call_id`.

use std::mem::size_of;

use mdwrite::{
    uapi::{MdwEntry, MdwRepeat, MdwWritev, MDW_ENTRY_RTP_TS, MDW_FEAT_REPEAT, MDW_WRITE_REPEAT},
    DestId, Device, Entry, Rtp, WriteOptions,
};

use crate::{
    errors::{entry, raw_writev},
    fanout::same,
    net,
    raw::{errno_name, expect_errno},
    send::{check_bytes, pattern, sender, start_receivers, RECEIVERS},
    shape::fanout_joined,
    topo::Topology,
    TestResult,
};

/// The RTP header after UDP.
const RTP: usize = 12;
/// The largest RTP payload of a 1500-byte IPv4 packet.
const MAX_RTP_PAYLOAD: usize = 1500 - 20 - 8 - RTP;
/// The largest UDP payload of a 1500-byte IPv4 packet.
const MAX_PAYLOAD: usize = 1500 - 20 - 8;

/// A repeat of call `id` with `new` (`tweak` may spoil it), raw.
pub(crate) fn raw_repeat(
    dev: &Device,
    id: u64,
    new: &[MdwRepeat],
    tweak: impl Fn(&mut MdwWritev),
) -> (Result<i32, i32>, MdwWritev) {
    raw_writev(dev, &[], |r| {
        r.entries = new.as_ptr() as u64;
        r.count = new.len() as u32;
        r.entry_size = size_of::<MdwRepeat>() as u32;
        r.flags = MDW_WRITE_REPEAT;
        r.call_id = id;
        tweak(r);
    })
}

/// The new data of `entries`.
pub(crate) fn repeat_of(entries: &[MdwEntry]) -> Vec<MdwRepeat> {
    entries
        .iter()
        .map(|e| MdwRepeat {
            addr: e.addr,
            len: e.len as u32,
            rtp_timestamp: e.rtp_timestamp,
        })
        .collect()
}

/// A call that sent everything and named its entries: its `call_id`.
fn sent(what: &str, (r, req): (Result<i32, i32>, MdwWritev), packets: u64) -> Result<u64, String> {
    r.map_err(|e| format!("{what}: {}", errno_name(e)))?;
    if req.error != 0 || req.packets != packets {
        return Err(format!(
            "{what}: {} packets, error {} at entry {}; want {packets}, none",
            req.packets, req.error, req.error_index
        ));
    }
    if req.call_id == 0 {
        return Err(format!("{what}: call_id 0"));
    }
    Ok(req.call_id)
}

/// A call that failed with `errno` (at entry `index`), sending nothing:
/// the `call_id` it came back with.
fn refused(
    what: &str,
    (r, req): (Result<i32, i32>, MdwWritev),
    errno: i32,
    index: u32,
) -> Result<u64, String> {
    expect_errno(what, r, errno)?;
    if req.packets != 0 || req.error_index != index {
        return Err(format!(
            "{what}: {} packets sent, error at entry {}; want none, entry {index}",
            req.packets, req.error_index
        ));
    }
    Ok(req.call_id)
}

/// Repeated calls through the raw ABI, to 8 RTP receivers: a fan-out of
/// one payload to receivers 0-3, an entry of its own for each of 4-7
/// (receiver 4's with `MDW_ENTRY_RTP_TS`). A full call, then repeats with
/// new data (one with receiver 6's length changed), each naming the call
/// before by the `call_id` it returned, and between them repeats the
/// module must refuse, sending nothing: a stale or zero `call_id`
/// (`ENODATA`), another count or a short `entry_size` (`EINVAL`), unknown
/// bytes set in a longer one (`E2BIG`), a fan-out's further entry given
/// data (`EINVAL` at it), unmapped memory (`EFAULT` at it), a destination
/// deleted (`ENXIO` at it). A refusal after the entries were read names
/// them anew (its `call_id`), and a full call between makes the last
/// repeat's id stale. Every receiver gets every good call's bytes in
/// order; receiver 4 each call's timestamp.
pub(crate) fn repeat_raw() -> TestResult {
    const LEN: usize = 3000;
    const CALLS: usize = 5;
    let topo = Topology::new(RECEIVERS)?;
    let rtp = |i: usize| Rtp::new(0x7700 + i as u32, 96).with_ts_increment(90);
    let (dev, ids) = sender(&topo, false, |i, c| c.rtp = Some(rtp(i)))?;
    let info = dev.info().map_err(|e| format!("INFO: {e}"))?;
    if info.features.bits() & MDW_FEAT_REPEAT == 0 {
        return Err(format!(
            "the module lacks MDW_FEAT_REPEAT: features {:#x}",
            info.features.bits()
        ));
    }
    // Receiver 6 gets 1000 bytes in the third call.
    let len = |k: usize, i: usize| if k == 2 && i == 6 { 1000 } else { LEN };
    let calls: Vec<Vec<Vec<u8>>> = (0..CALLS)
        .map(|k| {
            (0..RECEIVERS)
                .map(|i| pattern(len(k, i), 7000 + 100 * k as u32 + i as u32))
                .collect()
        })
        .collect();
    let (want, expect) = fanout_joined(&calls);
    let rx = start_receivers(&topo, false, &expect, RTP)?;
    let ts = |k: usize| 1000 * (k as u32 + 1);
    let shape = |k: usize, ids: &[DestId]| -> Vec<MdwEntry> {
        let mut v = vec![entry(ids[0], &calls[k][0])];
        v.extend(ids[1..4].iter().map(|&id| same(id)));
        v.extend((4..RECEIVERS).map(|i| entry(ids[i], &calls[k][i])));
        v[4].flags |= MDW_ENTRY_RTP_TS;
        v[4].rtp_timestamp = ts(k);
        v
    };
    let packets = |k: usize| -> u64 {
        let own = |i: usize| len(k, i).div_ceil(MAX_RTP_PAYLOAD) as u64;
        4 * own(0) + (4..RECEIVERS).map(own).sum::<u64>()
    };
    let none = |_: &mut MdwWritev| {};

    let id1 = sent(
        "call 1",
        raw_writev(&dev, &shape(0, &ids), none),
        packets(0),
    )?;
    let new = repeat_of(&shape(1, &ids));
    let id2 = sent(
        "call 2, a repeat",
        raw_repeat(&dev, id1, &new, none),
        packets(1),
    )?;
    if id2 == id1 {
        return Err(format!("call 2 has call 1's call_id {id1}"));
    }
    let new = repeat_of(&shape(2, &ids));
    refused(
        "a repeat of call 1",
        raw_repeat(&dev, id1, &new, none),
        libc::ENODATA,
        0,
    )?;
    refused(
        "a repeat of call_id 0",
        raw_repeat(&dev, 0, &new, none),
        libc::ENODATA,
        0,
    )?;
    refused(
        "a repeat of 7 entries",
        raw_repeat(&dev, id2, &new[..7], none),
        libc::EINVAL,
        0,
    )?;
    refused(
        "a repeat with entry_size 12",
        raw_repeat(&dev, id2, &new, |r| r.entry_size = 12),
        libc::EINVAL,
        0,
    )?;
    // 24-byte repeats whose unknown tail is not zero.
    let mut long = vec![0u64; 3 * new.len()];
    for (i, r) in new.iter().enumerate() {
        long[3 * i] = r.addr;
        long[3 * i + 1] = u64::from(r.len) | u64::from(r.rtp_timestamp) << 32;
    }
    long[3 * 5 + 2] = 1;
    refused(
        "a repeat with a 24-byte entry_size and its tail set",
        raw_repeat(&dev, id2, &new, |r| {
            r.entry_size = 24;
            r.entries = long.as_ptr() as u64;
        }),
        libc::E2BIG,
        0,
    )?;
    // Read in full, then refused: the entries are named anew.
    let mut bad = new.clone();
    bad[2].addr = new[0].addr;
    bad[2].len = new[0].len;
    let id3 = refused(
        "a repeat with data for the fan-out's entry 2",
        raw_repeat(&dev, id2, &bad, none),
        libc::EINVAL,
        2,
    )?;
    if id3 == 0 || id3 == id2 {
        return Err(format!(
            "the refused repeat's call_id is {id3}, want a new one (after {id2})"
        ));
    }
    refused(
        "a repeat of call 2 after a refused one",
        raw_repeat(&dev, id2, &new, none),
        libc::ENODATA,
        0,
    )?;
    // Receiver 6's length changed: validated as a new call would be.
    let id4 = sent(
        "call 3, a repeat with receiver 6's length changed",
        raw_repeat(&dev, id3, &new, none),
        packets(2),
    )?;
    let mut bad = repeat_of(&shape(3, &ids));
    bad[5].addr = 4096;
    let id5 = refused(
        "a repeat with entry 5 unmapped",
        raw_repeat(&dev, id4, &bad, none),
        libc::EFAULT,
        5,
    )?;
    // A full call between: the repeat before it is stale.
    let id6 = sent(
        "call 4, in full",
        raw_writev(&dev, &shape(3, &ids), none),
        packets(3),
    )?;
    let new = repeat_of(&shape(4, &ids));
    refused(
        "a repeat of the call before call 4",
        raw_repeat(&dev, id5, &new, none),
        libc::ENODATA,
        0,
    )?;
    let id7 = sent(
        "call 5, a repeat of call 4",
        raw_repeat(&dev, id6, &new, none),
        packets(4),
    )?;
    dev.remove_destination(ids[7])
        .map_err(|e| format!("DEST_DEL 7: {e}"))?;
    refused(
        "a repeat after receiver 7's destination was deleted",
        raw_repeat(&dev, id7, &new, none),
        libc::ENXIO,
        7,
    )?;

    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        check_bytes(i, g, &want[i], RTP, MAX_RTP_PAYLOAD)?;
    }
    // Receiver 4: each call's first packet has the call's timestamp.
    let per_call = LEN.div_ceil(MAX_RTP_PAYLOAD);
    for k in 0..CALLS {
        let d = &got[4].datagrams[k * per_call];
        let got_ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        if got_ts != ts(k) {
            return Err(format!(
                "receiver 4, call {}: RTP timestamp {got_ts}, want {}",
                k + 1,
                ts(k)
            ));
        }
    }
    Ok(())
}

/// The library repeats calls by itself (`Device::write_vectored`): calls
/// with the same destinations and flags go as repeats, new lengths
/// included; a call made on the file outside the library between two of
/// them makes the module refuse the repeat, and the library then makes
/// the call in full; a call with another entry count goes in full and
/// starts a new run of repeats. Every receiver gets every call's bytes in
/// order, receiver 7 the outside call's in its place.
pub(crate) fn repeat_library() -> TestResult {
    let topo = Topology::new(RECEIVERS)?;
    let (dev, ids) = sender(&topo, false, |_, _| {})?;
    // Per call, per receiver its data; receiver 3 is left out of calls 6
    // and 7, and call 5 has other lengths.
    let len = |k: usize, i: usize| match k {
        4 => 500 + 100 * i,
        _ => 2000 + 10 * i,
    };
    let calls: Vec<Vec<Option<Vec<u8>>>> = (0..7)
        .map(|k| {
            (0..RECEIVERS)
                .map(|i| {
                    (k < 5 || i != 3).then(|| pattern(len(k, i), 9000 + 100 * k as u32 + i as u32))
                })
                .collect()
        })
        .collect();
    let outside = pattern(777, 4242);
    // The outside call goes after call 2.
    let want: Vec<Vec<u8>> = (0..RECEIVERS)
        .map(|i| {
            let mut w = Vec::new();
            for (k, c) in calls.iter().enumerate() {
                if let Some(d) = &c[i] {
                    w.extend_from_slice(d);
                }
                if k == 1 && i == 7 {
                    w.extend_from_slice(&outside);
                }
            }
            w
        })
        .collect();
    let expect: Vec<usize> = want.iter().map(Vec::len).collect();
    let rx = start_receivers(&topo, false, &expect, 0)?;

    let call = |k: usize| -> TestResult {
        let entries: Vec<Entry<'_>> = calls[k]
            .iter()
            .zip(&ids)
            .filter_map(|(d, &id)| d.as_deref().map(|d| Entry::new(id, d)))
            .collect();
        let r = dev
            .write_vectored(&entries, WriteOptions::default())
            .map_err(|e| format!("call {}: {e}", k + 1))?;
        match r.error {
            Some((e, at)) => Err(format!("call {}: stopped at entry {at}: {e}", k + 1)),
            None => Ok(()),
        }
    };
    let repeated = |after: usize, want: u64| -> TestResult {
        match dev.repeated_calls() {
            n if n == want => Ok(()),
            n => Err(format!(
                "after call {after}: {n} calls repeated, want {want}"
            )),
        }
    };
    call(0)?;
    repeated(1, 0)?;
    call(1)?;
    repeated(2, 1)?;
    // Outside the library: one entry to receiver 7.
    let (r, _) = raw_writev(&dev, &[entry(ids[7], &outside)], |_| {});
    r.map_err(|e| format!("the outside call: {}", errno_name(e)))?;
    // Refused as a repeat (not counted), made in full.
    call(2)?;
    repeated(3, 1)?;
    call(3)?;
    repeated(4, 2)?;
    call(4)?;
    repeated(5, 3)?;
    call(5)?;
    repeated(6, 3)?;
    call(6)?;
    repeated(7, 4)?;

    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        check_bytes(i, g, &want[i], 0, MAX_PAYLOAD)?;
    }
    Ok(())
}
