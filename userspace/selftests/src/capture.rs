// SPDX-License-Identifier: GPL-2.0

//! Recycled packets on the wire: the selftests' capture NIC
//! (`tests/capture/mdw_capture.c`, rtnl kind `mdw_capture`) has
//! scatter-gather and checksum offload, leaves the skbs it is given alone
//! as dummy does (so the module recycles them) and keeps a copy of every
//! frame, its partial checksum completed as hardware would. Dummy shows no
//! bytes and a packet tap turns recycling off, so this is where the bytes
//! of recycled skbs, rearmed headers and all, are checked.

use std::{cell::Cell, fs, io::Read};

use mdwrite::{
    uapi::{MdwEntry, MDW_ENTRY_RTP_TS, MDW_WRITE_QDISC},
    DestConfig, DestId, Device, Rtp,
};

use crate::{
    errors::entry,
    fanout,
    send::pattern,
    topo::{self, run, Topology},
    TestResult,
};

/// Destinations: the odd ones RTP.
const DESTS: usize = 8;
/// RTP header length.
const RTP: usize = 12;
/// UDP payload of a full-size packet at MTU 1500: plain, and with RTP.
const FULL: usize = 1472;
const FULL_RTP: usize = FULL - RTP;

/// A capture module parameter (`/sys/module/mdw_capture/parameters`).
fn param(name: &str) -> Result<u64, String> {
    let path = format!("/sys/module/mdw_capture/parameters/{name}");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{path}: {text:?}: {e}"))
}

/// Waits (up to 5 s) until the capture NIC holds no skb.
fn wait_released() -> TestResult {
    for _ in 0..100 {
        if param("held")? == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!(
        "the capture NIC still holds {} skbs after 5 s",
        param("held")?
    ))
}

/// Holds each skb `ms` milliseconds before the capture NIC frees it.
fn set_late(ms: u32) -> TestResult {
    let path = "/sys/module/mdw_capture/parameters/late_ms";
    fs::write(path, ms.to_string()).map_err(|e| format!("{path}: {e}"))
}

/// Every frame captured since the last drain, oldest first.
pub(crate) fn drain() -> Result<Vec<Vec<u8>>, String> {
    let mut f = fs::File::open("/dev/mdw_capture").map_err(|e| format!("/dev/mdw_capture: {e}"))?;
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 9216];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read /dev/mdw_capture: {e}"))?;
        if n == 0 {
            return Ok(frames);
        }
        frames.push(buf[..n].to_vec());
    }
}

/// The one's complement sum of `data` as big-endian 16-bit words.
fn sum16(data: &[u8], mut sum: u32) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// One UDP datagram of a captured frame, its headers checked: an untagged
/// IPv4 frame to 02:00:00:00:00:01 with a valid header checksum and total
/// length, a UDP length matching, a non-zero UDP checksum that verifies.
/// Returns the destination port and the UDP payload.
pub(crate) fn datagram(frame: &[u8]) -> Result<(u16, &[u8]), String> {
    let bad = |why: &str| format!("a frame of {} bytes: {why}", frame.len());
    if frame.len() < 42 || frame[..6] != [2, 0, 0, 0, 0, 1] || frame[12..14] != [8, 0] {
        return Err(bad("not an IPv4 frame to 02:00:00:00:00:01"));
    }
    let ip = &frame[14..];
    if ip[0] != 0x45 || ip[9] != 17 {
        return Err(bad("not IPv4 without options carrying UDP"));
    }
    if sum16(&ip[..20], 0) != 0xffff {
        return Err(bad("bad IPv4 header checksum"));
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total != ip.len() {
        return Err(bad(&format!(
            "IPv4 total length {total}, frame has {}",
            ip.len()
        )));
    }
    let udp = &ip[20..];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len != udp.len() {
        return Err(bad(&format!(
            "UDP length {udp_len}, datagram has {}",
            udp.len()
        )));
    }
    if udp[6..8] == [0, 0] {
        return Err(bad("UDP checksum 0 (the destinations ask for one)"));
    }
    // Pseudo-header: addresses, protocol, UDP length.
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    if sum16(udp, sum16(&pseudo, 0)) != 0xffff {
        return Err(bad("bad UDP checksum"));
    }
    Ok((u16::from_be_bytes([udp[2], udp[3]]), &udp[8..]))
}

/// What the destinations got so far, per destination: payload bytes,
/// datagrams, the last RTP sequence number.
struct Streams {
    bytes: Vec<Vec<u8>>,
    datagrams: Vec<usize>,
    seq: Vec<Option<u16>>,
    /// RTP timestamps of the datagrams of destination 1.
    ts1: Vec<u32>,
    /// RTP timestamps of the datagrams of destination 3.
    ts3: Vec<u32>,
}

impl Streams {
    fn new() -> Self {
        Self {
            bytes: vec![Vec::new(); DESTS],
            datagrams: vec![0; DESTS],
            seq: vec![None; DESTS],
            ts1: Vec::new(),
            ts3: Vec::new(),
        }
    }

    /// Takes in the frames of a phase; RTP sequence numbers must go on by
    /// one per datagram across phases.
    fn add(&mut self, frames: &[Vec<u8>], what: &str) -> TestResult {
        for f in frames {
            let (port, payload) = datagram(f).map_err(|e| format!("{what}: {e}"))?;
            let k = usize::from(port.wrapping_sub(5000));
            if k >= DESTS {
                return Err(format!("{what}: a datagram to port {port}"));
            }
            let mut data = payload;
            if k % 2 == 1 {
                let rtp = payload
                    .get(..RTP)
                    .ok_or(format!("{what}: short RTP datagram"))?;
                let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
                if let Some(before) = self.seq[k] {
                    if seq != before.wrapping_add(1) {
                        return Err(format!(
                            "{what}: destination {k}: RTP sequence {seq} after {before}"
                        ));
                    }
                }
                self.seq[k] = Some(seq);
                let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
                match k {
                    1 => self.ts1.push(ts),
                    3 => self.ts3.push(ts),
                    _ => {}
                }
                data = &payload[RTP..];
            }
            self.bytes[k].extend_from_slice(data);
            self.datagrams[k] += 1;
        }
        Ok(())
    }
}

/// Destination `k` on the capture NIC `ifindex`: 10.98.0.1:4000 to
/// 10.98.0.2:(5000+k), RTP when `k` is odd.
pub(crate) fn dest(ifindex: u32, k: usize) -> DestConfig {
    let mut c = topo::dummy_config(ifindex);
    c.to.set_port(5000 + k as u16);
    if k % 2 == 1 {
        c.rtp = Some(Rtp::new(0x6000 + k as u32, 96).with_ts_increment(90));
    }
    c
}

/// The capture module, loaded for a test and unloaded after it.
pub(crate) struct Module;

impl Module {
    pub(crate) fn load() -> Result<Self, String> {
        let dir = std::env::var("MDW_MODDIR").map_err(|_| "MDW_MODDIR is not set")?;
        run(&["insmod", &format!("{dir}/capture/mdw_capture.ko")])?;
        Ok(Self)
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let _ = run(&["rmmod", "mdw_capture"]);
    }
}

/// The capture NIC `c0` up in a sender namespace, entered, with nothing
/// but the test's packets on it (no IPv6: router solicitations came in the
/// middle of a phase); the device opened there with destinations 0 to
/// `DESTS - 1` on it ([`dest`]), nothing captured yet. The capture module
/// must be loaded.
pub(crate) fn capture_dests() -> Result<(Topology, Device, Vec<DestId>), String> {
    let topo = Topology::new(0)?;
    let ifindex = topo::add_link(&topo.sender, "c0", "mdw_capture", false)?;
    for cmd in [
        &["sysctl", "-qw", "net.ipv6.conf.c0.disable_ipv6=1"][..],
        &["ip", "link", "set", "c0", "up"][..],
    ] {
        run(&[&["ip", "netns", "exec", &topo.sender][..], cmd].concat())?;
    }
    topo::enter(&topo.sender)?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    let ids: Vec<DestId> = (0..DESTS)
        .map(|k| dev.add_destination(&dest(ifindex, k)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    drain()?;
    Ok((topo, dev, ids))
}

/// Recycled skbs carry the right bytes to a NIC with offloads. Calls of 8
/// destinations (the odd ones RTP) on the capture NIC, each phase's data
/// from new memory: one full-size packet per destination (four calls: from
/// the second on every packet goes in a recycled skb, rearmed and its
/// header patched), three packets each with an entry straddling pages and
/// a short last packet, each destination's packets from one payload
/// (`MDW_ENTRY_SAME`), then the same with checksum offload turned off
/// (the destinations' kept skbs must go: their checksum mode is the
/// device's no longer) and on again, with scatter-gather off (linear
/// copies, kept and reused, the NIC also completing late; a call returns
/// while the NIC still holds its copies; then with a software checksum,
/// computed as the payload is copied), and with the
/// NIC completing its TX 20 ms late (kept skbs still busy at the next
/// call). Every frame has
/// valid IPv4 and UDP checksums and lengths; every destination gets its
/// bytes in order, one datagram per packet, RTP sequence numbers one
/// apart, destination 1 each call's `MDW_ENTRY_RTP_TS` and destination 3
/// each fan-out's (set on its `MDW_ENTRY_SAME` entry); the NIC saw
/// recycled (shared) skbs and no skb its features do not cover.
pub(crate) fn capture_recycled_bytes() -> TestResult {
    let module = Module::load()?;
    let (topo, dev, ids) = capture_dests()?;
    let shared0 = param("shared")?;
    let mut got = Streams::new();
    let mut want: Vec<Vec<u8>> = vec![Vec::new(); DESTS];
    let mut want_ts1 = Vec::new();
    // Per datagram of destination 3: the timestamp a fan-out's
    // `MDW_ENTRY_SAME` entry set, else `None` (90 after the one before).
    let mut want_ts3: Vec<Option<u32>> = Vec::new();
    let mut seed = 0u32;
    let mut ts = 1000u32;
    // The calls' flags: `MDW_WRITE_QDISC` or none.
    let flags = Cell::new(0u32);

    // One call: destination k gets `len(k)` bytes, destination 1 a new
    // timestamp; with `fan`, the even destinations get destination 0's
    // data and the odd ones destination 1's (two fan-outs,
    // `MDW_ENTRY_SAME`), destination 1's timestamps going on. Returns after
    // the NIC released every packet.
    let mut call = |len: &dyn Fn(usize) -> usize, fan: bool, what: &str| -> TestResult {
        seed += 1;
        ts += 5000;
        let datas: Vec<Vec<u8>> = (0..DESTS)
            .map(|k| match (fan, k) {
                (true, 2..) => Vec::new(),
                _ => pattern(len(k), seed * 16 + k as u32),
            })
            .collect();
        let entries: Vec<MdwEntry> = match fan {
            false => {
                let mut e: Vec<MdwEntry> = ids
                    .iter()
                    .zip(&datas)
                    .map(|(&id, d)| entry(id, d))
                    .collect();
                e[1].flags |= MDW_ENTRY_RTP_TS;
                e[1].rtp_timestamp = ts;
                e
            }
            true => [0, 1]
                .iter()
                .flat_map(|&first| {
                    let head = entry(ids[first], &datas[first]);
                    std::iter::once(head)
                        .chain((first + 2..DESTS).step_by(2).map(|k| fanout::same(ids[k])))
                })
                .collect::<Vec<_>>(),
        };
        let mut entries = entries;
        if fan {
            // Destination 3's entry, a member of the odd fan-out: its own
            // timestamp.
            let e = &mut entries[DESTS / 2 + 1];
            e.flags |= MDW_ENTRY_RTP_TS;
            e.rtp_timestamp = ts.wrapping_add(7);
        }
        let (_, bytes) =
            fanout::send_flags(&dev, &entries, flags.get()).map_err(|e| format!("{what}: {e}"))?;
        let from = |k: usize| if fan { k % 2 } else { k };
        let total: usize = (0..DESTS).map(|k| datas[from(k)].len()).sum();
        if bytes != total as u64 {
            return Err(format!("{what}: sent {bytes} of {total} bytes"));
        }
        let packets = len(1).div_ceil(FULL_RTP);
        let first_ts = match fan {
            false => ts,
            true => want_ts1.last().map_or(0, |&t: &u32| t.wrapping_add(90)),
        };
        for p in 0..packets {
            want_ts1.push(first_ts.wrapping_add(90 * p as u32));
        }
        let packets3 = datas[from(3)].len().div_ceil(FULL_RTP);
        for p in 0..packets3 {
            want_ts3.push((fan && p == 0).then_some(ts.wrapping_add(7)));
        }
        for (k, w) in want.iter_mut().enumerate() {
            w.extend_from_slice(&datas[from(k)]);
        }
        Ok(())
    };
    let full = |k: usize| if k % 2 == 1 { FULL_RTP } else { FULL };
    let three = |k: usize| 2 * full(k) + 100 + 37 * k;

    let phase = |name: &str, got: &mut Streams| -> TestResult { got.add(&drain()?, name) };
    for c in 0..4 {
        call(&full, false, &format!("one packet each, call {}", c + 1))?;
    }
    phase("one packet each", &mut got)?;
    let recycled = param("shared")? - shared0;
    if recycled < 3 * DESTS as u64 {
        return Err(format!(
            "the NIC got {recycled} recycled skbs in four calls of one packet per destination, want at least {} (calls 2 to 4)",
            3 * DESTS
        ));
    }
    for c in 0..3 {
        call(
            &three,
            false,
            &format!("three packets each, call {}", c + 1),
        )?;
    }
    phase("three packets each", &mut got)?;
    for c in 0..3 {
        call(&full, true, &format!("fan-out, call {}", c + 1))?;
    }
    call(&three, true, "fan-out, three packets")?;
    phase("fan-out", &mut got)?;

    // `ethtool -K c0 FEATURE on|off` in the sender's namespace.
    let ethtool = |feature: &str, on: &str| {
        run(&[
            "ip",
            "netns",
            "exec",
            &topo.sender,
            "ethtool",
            "-K",
            "c0",
            feature,
            on,
        ])
        .map(|_| ())
    };
    let offload = |on: &str| ethtool("tx", on);
    offload("off")?;
    for c in 0..3 {
        call(
            &full,
            false,
            &format!("checksum offload off, call {}", c + 1),
        )?;
    }
    call(&three, false, "checksum offload off, three packets")?;
    phase("checksum offload off", &mut got)?;
    offload("on")?;
    for c in 0..3 {
        call(
            &full,
            false,
            &format!("checksum offload on again, call {}", c + 1),
        )?;
    }
    phase("checksum offload on again", &mut got)?;

    // Through the qdisc, the rings holding kept skbs from the calls
    // before: the stack may change what it is given, so every packet is
    // a fresh skb, none shared with a ring.
    let shared = param("shared")?;
    flags.set(MDW_WRITE_QDISC);
    for c in 0..2 {
        call(&full, false, &format!("through the qdisc, call {}", c + 1))?;
    }
    call(&three, false, "through the qdisc, three packets")?;
    flags.set(0);
    phase("through the qdisc", &mut got)?;
    let shared = param("shared")? - shared;
    if shared != 0 {
        return Err(format!(
            "the NIC got {shared} shared skbs from calls through the qdisc, want 0"
        ));
    }

    // The NIC completing late, with zero-copy packets: at the end of the
    // call the NIC still holds the skbs the rings keep, which name the
    // call's pages, so the call must wait for them (each is tied to the
    // call before its ring lets go of it). Then the rings start again.
    let late = (|| {
        set_late(1500)?;
        call(&full, false, "zero-copy, NIC holding its packets")?;
        let held = param("held")?;
        if held != 0 {
            return Err(format!(
                "zero-copy: the call returned when the NIC still held {held} of its {DESTS} packets"
            ));
        }
        set_late(0)?;
        for c in 0..2 {
            call(
                &full,
                false,
                &format!("zero-copy after the late NIC, call {}", c + 1),
            )?;
        }
        call(&three, true, "zero-copy after the late NIC, fan-out")?;
        Ok::<_, String>(())
    })();
    set_late(0)?;
    late?;
    phase("zero-copy, late TX completion", &mut got)?;

    // Scatter-gather off: each packet a linear copy, which refers to no
    // page of the call; the destinations' rings keep those and copy the
    // next payloads into them once the NIC has let go, header in place
    // (the kept skbs of the zero-copy layout must go first). Then with the
    // NIC completing 20 ms late: the kept copies are still busy at the
    // next call and must not be written.
    let sg = |on: &str| ethtool("sg", on);
    sg("off")?;
    let (shared_sg, stats_sg) = (param("shared")?, dev.stats().map_err(|e| e.to_string())?);
    let copies = (|| {
        for c in 0..3 {
            call(&full, false, &format!("scatter-gather off, call {}", c + 1))?;
        }
        call(&three, false, "scatter-gather off, three packets")?;
        call(&full, true, "scatter-gather off, fan-out")?;
        set_late(20)?;
        for c in 0..2 {
            call(
                &full,
                false,
                &format!("scatter-gather off, late TX completion, call {}", c + 1),
            )?;
        }
        // The copies hold no call: with the NIC holding each skb 1.5 s, a
        // call returns while the NIC still holds its packets.
        set_late(1500)?;
        call(&full, false, "scatter-gather off, NIC holding its packets")?;
        let held = param("held")?;
        if held < DESTS as u64 {
            return Err(format!(
                "scatter-gather off: the call returned when the NIC held {held} of its {DESTS} copies: it waited for them"
            ));
        }
        set_late(0)?;
        wait_released()?;
        // With a checksum computed in software too: summed as copied.
        offload("off")?;
        for c in 0..3 {
            call(
                &full,
                false,
                &format!("scatter-gather and checksum offload off, call {}", c + 1),
            )?;
        }
        call(
            &three,
            false,
            "scatter-gather and checksum offload off, three packets",
        )?;
        offload("on")?;
        Ok::<_, String>(())
    })();
    set_late(0)?;
    sg("on")?;
    offload("on")?;
    copies?;
    phase("scatter-gather off", &mut got)?;
    let copied = dev.stats().map_err(|e| e.to_string())?.bytes_copied - stats_sg.bytes_copied;
    // Nine calls of one packet each, two of three, one fan-out.
    let want_copied: usize = (0..DESTS)
        .map(|k| 9 * full(k) + 2 * three(k) + full(k % 2))
        .sum();
    if copied != want_copied as u64 {
        return Err(format!(
            "scatter-gather off: bytes_copied +{copied}, want +{want_copied} (every byte copied)"
        ));
    }
    // Every copy of the calls to one destination each is kept by its ring
    // (handed over shared); the fan-out's too.
    let kept = param("shared")? - shared_sg;
    if kept < 6 * DESTS as u64 {
        return Err(format!(
            "scatter-gather off: the NIC got {kept} kept (shared) copies, want at least {}",
            6 * DESTS
        ));
    }

    set_late(20)?;
    let late = (|| {
        for c in 0..3 {
            call(&full, false, &format!("late TX completion, call {}", c + 1))?;
        }
        call(&three, false, "late TX completion, three packets")
    })();
    set_late(0)?;
    late?;
    phase("late TX completion", &mut got)?;

    for (k, (got, want)) in got.bytes.iter().zip(&want).enumerate() {
        if got != want {
            let at = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            return Err(format!(
                "destination {k}: got {} bytes, want {}; first difference at {at}",
                got.len(),
                want.len()
            ));
        }
    }
    // 31 calls of one packet, 10 of three, per destination.
    let datagrams = 31 + 10 * 3;
    if let Some(k) = (0..DESTS).find(|&k| got.datagrams[k] != datagrams) {
        return Err(format!(
            "destination {k}: {} datagrams, want {datagrams}",
            got.datagrams[k]
        ));
    }
    if got.ts1 != want_ts1 {
        return Err(format!(
            "destination 1: RTP timestamps {:?}, want {:?}",
            got.ts1, want_ts1
        ));
    }
    if got.ts3.len() != want_ts3.len() {
        return Err(format!(
            "destination 3: {} timestamps, want {}",
            got.ts3.len(),
            want_ts3.len()
        ));
    }
    for (i, (&t, want)) in got.ts3.iter().zip(&want_ts3).enumerate() {
        let want = match (want, i) {
            (Some(w), _) => *w,
            (None, 0) => continue,
            (None, _) => got.ts3[i - 1].wrapping_add(90),
        };
        if t != want {
            return Err(format!(
                "destination 3, datagram {i}: RTP timestamp {t}, want {want}"
            ));
        }
    }
    for name in ["violations", "dropped"] {
        let n = param(name)?;
        if n != 0 {
            return Err(format!("the capture NIC counted {n} {name}"));
        }
    }
    drop(dev);
    drop(topo);
    drop(module);
    Ok(())
}
