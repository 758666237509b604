// SPDX-License-Identifier: GPL-2.0

//! The transmit path's safety rules (issue 12): packets shaped to the
//! device's features, packet taps that see every packet, bounded input,
//! killable synchronous calls, privilege tied to the file, qdisc
//! congestion, and a device whose MAC changed.

use std::{
    io::{BufRead, BufReader},
    os::fd::{AsFd, FromRawFd, OwnedFd},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{
        MdwBufReg, MdwEntry, MdwWritev, MDW_IOC_BUF_REGISTER, MDW_MAX_ENTRY_SIZE, MDW_WRITE_ASYNC,
        MDW_WRITE_PACE,
    },
    DestConfig, DestId, Device, Entry, WriteOptions,
};

use crate::{
    errors::{entry, foll_pins, raw_writev, set_cap_net_raw},
    net::Capture,
    raw::{errno_name, expect_errno, ioctl},
    send::pattern,
    topo::{self, run, Topology},
    TestResult,
};

/// UDP payload bytes per full-size packet on a 1500-byte MTU (IPv4).
const PAYLOAD: usize = 1472;

/// Runs `ip netns exec NS ARGS...`.
fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// A dummy device `d0` in a fresh sender namespace (entered), a tap on it
/// and the device open.
fn dummy_with_tap() -> Result<(Topology, Device, u32, Capture), String> {
    let topo = Topology::new(0)?;
    let ifindex = topo::add_dummy(&topo.sender, "d0", true)?;
    topo::enter(&topo.sender)?;
    let cap = Capture::open("d0")?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    Ok((topo, dev, ifindex, cap))
}

/// Destination `k` on dummy `ifindex`: 10.98.0.1:4000 to 10.98.0.2:(5000+k).
fn dest(ifindex: u32, k: u16) -> DestConfig {
    let mut c = topo::dummy_config(ifindex);
    c.to.set_port(5000 + k);
    c
}

/// The EtherType at the frame's IP header (past one 802.1Q tag if any),
/// the offset of its UDP header, and the UDP destination port.
fn udp_of(frame: &[u8]) -> Option<(usize, u16)> {
    let mut l3 = 14;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 = 18;
    }
    if ethertype != 0x0800 || *frame.get(l3 + 9)? != 17 {
        return None;
    }
    let l4 = l3 + 20;
    Some((
        l4,
        u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]),
    ))
}

/// Checks that the outgoing frames `frames` carry, per destination port
/// `5000 + k`, exactly `data[k]` cut into `PAYLOAD`-byte packets in order,
/// each with a valid UDP checksum when `csum` (the tap sees the checksum
/// only once software filled it in).
fn check_frames(frames: &[(u16, Vec<u8>)], data: &[Vec<u8>], what: &str) -> TestResult {
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); data.len()];
    let mut count = vec![0usize; data.len()];
    for (_, f) in frames {
        let Some((l4, port)) = udp_of(f) else {
            continue;
        };
        let k = usize::from(port.wrapping_sub(5000));
        if k >= data.len() {
            continue;
        }
        let payload = f.get(l4 + 8..).ok_or(format!("{what}: short frame"))?;
        got[k].extend_from_slice(payload);
        count[k] += 1;
    }
    for (k, want) in data.iter().enumerate() {
        let packets = want.len().div_ceil(PAYLOAD);
        if count[k] != packets {
            return Err(format!(
                "{what}: destination {k}: tap saw {} packets, want {packets}",
                count[k]
            ));
        }
        if &got[k] != want {
            return Err(format!("{what}: destination {k}: payload bytes differ"));
        }
    }
    Ok(())
}

/// A device without scatter-gather gets linear packets: the payload is
/// copied (`bytes_copied`), never handed over as page fragments, and the
/// wire carries exactly the data. Without the fix the module handed such
/// a device non-linear skbs and counted nothing as copied.
pub(crate) fn tx_nosg_linear() -> TestResult {
    let (topo, dev, ifindex, cap) = dummy_with_tap()?;
    in_ns(&topo.sender, &["ethtool", "-K", "d0", "sg", "off"])?;
    let ids: Vec<DestId> = (0..3)
        .map(|k| dev.add_destination(&dest(ifindex, k)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    let data: Vec<Vec<u8>> = (0..3)
        .map(|k| pattern(20_000 + k * 777, 40 + k as u32))
        .collect();
    let before = dev.stats().map_err(|e| e.to_string())?;
    let entries: Vec<Entry<'_>> = ids
        .iter()
        .zip(&data)
        .map(|(&id, d)| Entry::new(id, d))
        .collect();
    let r = dev
        .write_vectored(&entries, WriteOptions::default())
        .map_err(|e| format!("WRITEV: {e}"))?;
    let total: u64 = data.iter().map(|d| d.len() as u64).sum();
    if r.bytes != total || r.error.is_some() {
        return Err(format!(
            "WRITEV sent {} of {total} bytes, error {:?}",
            r.bytes, r.error
        ));
    }
    let after = dev.stats().map_err(|e| e.to_string())?;
    let copied = after.bytes_copied - before.bytes_copied;
    let zerocopy = after.bytes_zerocopy - before.bytes_zerocopy;
    if copied != total || zerocopy != 0 {
        return Err(format!(
            "without SG: bytes_copied +{copied}, bytes_zerocopy +{zerocopy}; want +{total}, +0"
        ));
    }
    check_frames(&cap.drain_ll(), &data, "sg off")?;
    paced_copies_hold(&dev, &ids, &data, &cap)?;
    let after = dev.stats().map_err(|e| e.to_string())?;
    // With scatter-gather back, zero-copy again.
    in_ns(&topo.sender, &["ethtool", "-K", "d0", "sg", "on"])?;
    dev.write_vectored(&entries, WriteOptions::default())
        .map_err(|e| format!("WRITEV with SG: {e}"))?;
    let last = dev.stats().map_err(|e| e.to_string())?;
    if last.bytes_copied != after.bytes_copied
        || last.bytes_zerocopy - after.bytes_zerocopy != total
    {
        return Err(format!("with SG again: {after:?} -> {last:?}"));
    }
    check_frames(&cap.drain_ll(), &data, "sg on")
}

/// A paced call's copies hold it until they have left (an unpaced call's
/// do not): an asynchronous paced call on the direct path (the module's
/// pacer), its window starting 300 ms ahead, is still in flight 100 ms
/// after it returned, and its one completion comes once its packets have
/// left, which carry the data.
fn paced_copies_hold(dev: &Device, ids: &[DestId], data: &[Vec<u8>], cap: &Capture) -> TestResult {
    const MS: u64 = 1_000_000;
    let entries: Vec<MdwEntry> = ids.iter().zip(data).map(|(&id, d)| entry(id, d)).collect();
    let (r, req) = raw_writev(dev, &entries, |w| {
        w.flags = MDW_WRITE_PACE | MDW_WRITE_ASYNC;
        w.pace_start = crate::pace::now_ns() + 300 * MS;
        w.pace_window = (50 * MS) as u32;
        w.pace_clock = 1; // CLOCK_MONOTONIC
    });
    r.map_err(|e| format!("paced WRITEV without SG: {}", errno_name(e)))?;
    let total: u64 = data.iter().map(|d| d.len() as u64).sum();
    if req.bytes != total {
        return Err(format!(
            "paced WRITEV without SG queued {} of {total} bytes",
            req.bytes
        ));
    }
    std::thread::sleep(Duration::from_millis(100));
    let stats = dev.stats().map_err(|e| e.to_string())?;
    if stats.async_in_flight != 1 {
        return Err(format!(
            "paced call without SG: {} calls in flight 100 ms after it, before its window: its copies did not hold it",
            stats.async_in_flight
        ));
    }
    let c = dev
        .read_completion()
        .map_err(|e| format!("read completion: {e}"))?
        .ok_or("no completion for the paced call")?;
    if c.bytes != total || c.error.is_some() {
        return Err(format!(
            "paced call without SG completed with {} of {total} bytes, error {:?}",
            c.bytes, c.error
        ));
    }
    check_frames(&cap.drain_ll(), data, "sg off, paced")
}

/// 802.1Q frames look like the stack's: the tap sees `skb->protocol`
/// `ETH_P_8021Q` (as `sll_protocol`), and a device whose `vlan_features`
/// lack scatter-gather (dummy) gets them linear. Without the fix the tap
/// saw `ETH_P_IP` for tagged frames.
pub(crate) fn tx_vlan_like_stack() -> TestResult {
    let (_topo, dev, ifindex, cap) = dummy_with_tap()?;
    let mut c = dest(ifindex, 0);
    c.vlan_tci = Some(100);
    let id = dev
        .add_destination(&c)
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    let plain = dev
        .add_destination(&dest(ifindex, 1))
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    let data = vec![pattern(9000, 7), pattern(5000, 8)];
    dev.write_vectored(
        &[Entry::new(id, &data[0]), Entry::new(plain, &data[1])],
        WriteOptions::default(),
    )
    .map_err(|e| format!("WRITEV: {e}"))?;
    let frames = cap.drain_ll();
    for (proto, f) in &frames {
        let tagged = f.get(12..14) == Some(&[0x81, 0x00][..]);
        let want = if tagged { 0x8100 } else { 0x0800 };
        if *proto != want {
            return Err(format!(
                "{} frame reached the tap with protocol {proto:#06x}, want {want:#06x}",
                if tagged { "an 802.1Q" } else { "an untagged" }
            ));
        }
    }
    check_frames(&frames, &data, "vlan")
}

/// A packet tap on a device whose skbs are recycled (dummy) sees every
/// packet each call reports, byte for byte, over calls long enough to
/// recycle. Without the fix the tap missed the recycled (shared) ones.
pub(crate) fn tap_sees_recycled() -> TestResult {
    let (_topo, dev, ifindex, cap) = dummy_with_tap()?;
    let ids: Vec<DestId> = (0..4)
        .map(|k| dev.add_destination(&dest(ifindex, k)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    let data: Vec<Vec<u8>> = (0..4).map(|k| pattern(150 * PAYLOAD, 60 + k)).collect();
    let entries: Vec<Entry<'_>> = ids
        .iter()
        .zip(&data)
        .map(|(&id, d)| Entry::new(id, d))
        .collect();
    for call in 0..4 {
        let r = dev
            .write_vectored(&entries, WriteOptions::default())
            .map_err(|e| format!("WRITEV {call}: {e}"))?;
        if r.packets != 600 {
            return Err(format!(
                "call {call} reported {} packets, want 600",
                r.packets
            ));
        }
        check_frames(&cap.drain_ll(), &data, &format!("call {call}"))?;
    }
    Ok(())
}

/// `entry_size` is bounded (`MDW_MAX_ENTRY_SIZE`, else `E2BIG` at once),
/// and an entry's bytes past the known struct must be zero. Without the
/// fix a huge `entry_size` over zero memory was accepted (and a hostile
/// one made one call scan terabytes).
pub(crate) fn entry_size_bounded() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    let id = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let data = pattern(3000, 9);
    let big = 2 * MDW_MAX_ENTRY_SIZE as usize;
    // Entries of `big` bytes each: the known part, then zeros.
    let mut buf = vec![0u8; big * 2];
    let e = MdwEntry {
        dest: id.handle(),
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
        ..Default::default()
    };
    for k in 0..2 {
        // SAFETY: `buf` has room for an MdwEntry at k * big; unaligned write.
        unsafe { std::ptr::write_unaligned(buf.as_mut_ptr().add(k * big).cast::<MdwEntry>(), e) };
    }
    let start = Instant::now();
    let (r, _) = raw_writev(&dev, &[], |w: &mut MdwWritev| {
        w.entries = buf.as_ptr() as u64;
        w.count = 2;
        w.entry_size = big as u32;
    });
    expect_errno("entry_size 2 x MDW_MAX_ENTRY_SIZE", r, libc::E2BIG)?;
    let (r, _) = raw_writev(&dev, &[], |w: &mut MdwWritev| {
        w.entries = buf.as_ptr() as u64;
        w.count = 4096;
        w.entry_size = u32::MAX;
    });
    expect_errno("entry_size 0xffffffff", r, libc::E2BIG)?;
    if start.elapsed() > Duration::from_secs(2) {
        return Err(format!("refusing took {:?}", start.elapsed()));
    }
    // At the bound: accepted while the tail is zero...
    let max = MDW_MAX_ENTRY_SIZE as usize;
    let mut buf = vec![0u8; max * 2];
    for k in 0..2 {
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(buf.as_mut_ptr().add(k * max).cast::<MdwEntry>(), e) };
    }
    let (r, w) = raw_writev(&dev, &[], |w: &mut MdwWritev| {
        w.entries = buf.as_ptr() as u64;
        w.count = 2;
        w.entry_size = max as u32;
    });
    if r.is_err() || w.bytes != 6000 {
        return Err(format!(
            "entry_size MDW_MAX_ENTRY_SIZE with zero tails: {:?}, {} bytes",
            r.map_err(errno_name),
            w.bytes
        ));
    }
    // ...and E2BIG for a byte set in the second entry's tail.
    buf[max + max - 1] = 1;
    let (r, w) = raw_writev(&dev, &[], |w: &mut MdwWritev| {
        w.entries = buf.as_ptr() as u64;
        w.count = 2;
        w.entry_size = max as u32;
    });
    expect_errno("a non-zero byte in an entry's tail", r, libc::E2BIG)?;
    if w.packets != 0 {
        return Err(format!("the refused call sent {} packets", w.packets));
    }
    Ok(())
}

/// The `stuck DEV` helper of `sync_call_killable`: one thread blocks in a
/// synchronous call whose packets netem holds for 100 s; meanwhile
/// another thread adds a destination on the same file and prints how long
/// that took ("dest_add_ms N"), then the process waits to be killed.
pub(crate) fn stuck(dev_name: &str) -> TestResult {
    let name = std::ffi::CString::new(dev_name).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid C string; looked up in this thread's netns.
    let c = topo::dummy_config(unsafe { libc::if_nametoindex(name.as_ptr()) });
    let dev = Device::open().map_err(|e| e.to_string())?;
    let id = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let data = pattern(64 * PAYLOAD, 11);
    std::thread::scope(|s| {
        s.spawn(|| {
            let opts = WriteOptions::default().with_qdisc(true);
            let r = dev.write_vectored(&[Entry::new(id, &data)], opts);
            println!("sync call returned: {r:?}");
        });
        // Let the call queue its packets and start waiting.
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        let r = dev.add_destination(&c);
        println!(
            "dest_add_ms {} {}",
            start.elapsed().as_millis(),
            if r.is_ok() { "ok" } else { "failed" }
        );
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    })
}

/// A synchronous call stuck behind `netem delay 100s`: another thread's
/// DEST_ADD on the same file is not blocked meanwhile, SIGKILL ends the
/// process within a second, and the call's pages are unpinned once the
/// packets are dropped. Without the fix DEST_ADD blocked on the file's lock
/// and the process could not be killed.
pub(crate) fn sync_call_killable() -> TestResult {
    let topo = Topology::new(0)?;
    topo::add_dummy(&topo.sender, "d0", true)?;
    topo::netem(&topo.sender, "d0", 100_000)?;
    let (acq0, rel0) = foll_pins()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &topo.sender])
        .arg(exe)
        .args(["stuck", "d0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // On failure: let the packets go (so even an unkillable call ends),
    // then make sure the helper is gone.
    let give_up = |child: &mut std::process::Child, why: String| -> TestResult {
        let _ = in_ns(&topo.sender, &["tc", "qdisc", "del", "dev", "d0", "root"]);
        let _ = child.kill();
        let _ = child.wait();
        Err(why)
    };
    // The helper prints nothing else first (a sync call that returned
    // early would say so).
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("dest_add_ms ") => l,
        Ok(l) => return give_up(&mut child, format!("helper said: {l}")),
        Err(_) => {
            return give_up(
                &mut child,
                "DEST_ADD on the file blocked while a synchronous call waited".into(),
            )
        }
    };
    let mut words = line.split_whitespace().skip(1);
    let ms: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(u64::MAX);
    if ms > 1000 || words.next() != Some("ok") {
        return give_up(
            &mut child,
            format!("DEST_ADD during a synchronous call: {line}"),
        );
    }
    let start = Instant::now();
    child.kill().map_err(|e| e.to_string())?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > Duration::from_secs(1) {
            return give_up(
                &mut child,
                "SIGKILL did not end the process within a second".into(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.code().is_some() {
        return Err(format!("the helper was not killed: {status}"));
    }
    // Still pinned while netem holds the packets; dropping them releases
    // the pages through the deferred release.
    in_ns(&topo.sender, &["tc", "qdisc", "del", "dev", "d0", "root"])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (acq, rel) = foll_pins()?;
        if acq - acq0 >= 20 && acq - acq0 == rel - rel0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after the packets were dropped: pins acquired {} released {}",
                acq - acq0,
                rel - rel0
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Privilege belongs to the file: a read-only file cannot add, write or
/// register (`EBADF`); the opener's `CAP_NET_RAW` counts, not the
/// caller's. Without the fix the caller's capability was checked and
/// read-only files could send.
pub(crate) fn privilege_of_opener() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    // A read-only file: INFO and STATS only.
    let path = std::ffi::CString::new(Device::PATH).map_err(|e| e.to_string())?;
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "open O_RDONLY: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is a new fd we own.
    let ro = unsafe { OwnedFd::from_raw_fd(fd) };
    let rw = Device::open().map_err(|e| e.to_string())?;
    let id = rw.add_destination(&c).map_err(|e| e.to_string())?;
    let data = pattern(2000, 3);
    let entry = MdwEntry {
        dest: id.handle(),
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
        ..Default::default()
    };
    let mut req = MdwWritev {
        entries: &entry as *const MdwEntry as u64,
        count: 1,
        entry_size: size_of::<MdwEntry>() as u32,
        ..Default::default()
    };
    expect_errno(
        "WRITEV on a read-only file",
        ioctl(
            ro.as_fd(),
            mdwrite::uapi::MDW_IOC_WRITEV,
            &mut req as *mut _ as usize,
        ),
        libc::EBADF,
    )?;
    // Any struct: the file's mode is checked first.
    let mut dreq = mdwrite::uapi::MdwDest::default();
    expect_errno(
        "DEST_ADD on a read-only file",
        ioctl(
            ro.as_fd(),
            mdwrite::uapi::MDW_IOC_DEST_ADD,
            &mut dreq as *mut _ as usize,
        ),
        libc::EBADF,
    )?;
    let mut breq = MdwBufReg {
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
        ..Default::default()
    };
    expect_errno(
        "BUF_REGISTER on a read-only file",
        ioctl(
            ro.as_fd(),
            MDW_IOC_BUF_REGISTER,
            &mut breq as *mut _ as usize,
        ),
        libc::EBADF,
    )?;
    let mut s = mdwrite::uapi::MdwStats::default();
    ioctl(
        ro.as_fd(),
        mdwrite::uapi::MDW_IOC_STATS,
        &mut s as *mut _ as usize,
    )
    .map_err(|e| format!("STATS on a read-only file: {}", errno_name(e)))?;
    drop(ro);

    std::thread::scope(|s| {
        s.spawn(|| -> TestResult {
            // Opened with CAP_NET_RAW, used without: allowed.
            let with = Device::open().map_err(|e| e.to_string())?;
            set_cap_net_raw(false)?;
            with.add_destination(&c)
                .map_err(|e| format!("DEST_ADD on a file opened with CAP_NET_RAW: {e}"))?;
            // Opened without it, used with it: refused.
            let without = Device::open().map_err(|e| e.to_string())?;
            set_cap_net_raw(true)?;
            match without.add_destination(&c) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
                Err(e) => Err(format!(
                    "DEST_ADD on a file opened without CAP_NET_RAW: {e}"
                )),
                Ok(_) => Err("DEST_ADD on a file opened without CAP_NET_RAW succeeded".into()),
            }
        })
        .join()
        .map_err(|_| "thread panicked".to_string())?
    })
}

/// A qdisc that answers `NET_XMIT_CN` (fq_codel over its limit, under tbf)
/// queued the packet: the call counts it as sent and does not fail. Without
/// the fix the call stopped with `ENOBUFS`.
pub(crate) fn qdisc_congestion_queued() -> TestResult {
    let (topo, c) = topo::dummy_sender(None)?;
    let tc = |args: &[&str]| {
        let mut all = vec!["tc"];
        all.extend_from_slice(args);
        in_ns(&topo.sender, &all)
    };
    tc(&[
        "qdisc", "add", "dev", "d0", "root", "handle", "1:", "tbf", "rate", "10mbit", "burst",
        "3000", "latency", "5s",
    ])?;
    tc(&[
        "qdisc", "add", "dev", "d0", "parent", "1:1", "handle", "10:", "fq_codel", "limit", "8",
    ])?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    let id = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let data = pattern(64 * PAYLOAD, 12);
    let opts = WriteOptions::default().with_qdisc(true);
    let r = dev
        .write_vectored(&[Entry::new(id, &data)], opts)
        .map_err(|e| format!("WRITEV: {e}"))?;
    if r.packets != 64 || r.error.is_some() {
        return Err(format!(
            "through fq_codel at its limit: {} packets, error {:?}; want 64, none",
            r.packets, r.error
        ));
    }
    let stats = tc(&["-s", "qdisc", "show", "dev", "d0"])?;
    if !stats.contains("fq_codel") || !stats.contains("dropped") {
        return Err(format!("unexpected qdisc stats: {stats}"));
    }
    Ok(())
}

/// A device whose MAC address changed: the next call's packets carry the
/// new source MAC (the template takes it; kept skbs with the old header go).
/// Without the fix they kept the address of DEST_ADD's time.
pub(crate) fn dev_mac_changed() -> TestResult {
    let (topo, dev, ifindex, cap) = dummy_with_tap()?;
    let id = dev
        .add_destination(&dest(ifindex, 0))
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    let data = vec![pattern(20 * PAYLOAD, 13)];
    let send = |what: &str| -> Result<Vec<(u16, Vec<u8>)>, String> {
        dev.write_vectored(&[Entry::new(id, &data[0])], WriteOptions::default())
            .map_err(|e| format!("{what}: {e}"))?;
        let frames = cap.drain_ll();
        check_frames(&frames, &data, what)?;
        Ok(frames)
    };
    send("before")?;
    run(&[
        "ip",
        "-n",
        &topo.sender,
        "link",
        "set",
        "d0",
        "address",
        "02:11:22:33:44:55",
    ])?;
    for call in ["after", "after, again"] {
        for (_, f) in send(call)? {
            if f.get(6..12) != Some(&[2, 0x11, 0x22, 0x33, 0x44, 0x55][..]) {
                return Err(format!(
                    "{call} the MAC change: source MAC {:02x?}",
                    &f[6..12]
                ));
            }
        }
    }
    Ok(())
}

/// Entries whose pages join one pinning run (the second starts inside the
/// first's page) and whose second reaches an unreadable page: `EFAULT`,
/// naming the second entry as a call pinning entry by entry would, and
/// nothing left pinned.
pub(crate) fn pin_fault_names_entry() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    let a = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let map = crate::async_buf::Mapping::new(3, 8)?;
    map.protect_none(2)?;
    let base = map.at(0);
    let entry = |addr: u64, len: u64| MdwEntry {
        dest: a.handle(),
        addr,
        len,
        ..Default::default()
    };
    let entries = [
        entry(base + 100, 3000),
        entry(base + 2000, 2 * 4096 + 100),
        entry(base + 50, 1000),
    ];
    let (acq0, rel0) = foll_pins()?;
    let (r, req) = raw_writev(&dev, &entries, |_| {});
    let (acq1, rel1) = foll_pins()?;
    drop(map);
    expect_errno("WRITEV reaching a PROT_NONE page", r, libc::EFAULT)?;
    if req.error_index != 1 || req.packets != 0 {
        return Err(format!(
            "error_index {} packets {}, want entry 1 and nothing sent",
            req.error_index, req.packets
        ));
    }
    if acq1 - acq0 != rel1 - rel0 {
        return Err(format!(
            "pins acquired {} released {} by a failed call",
            acq1 - acq0,
            rel1 - rel0
        ));
    }
    Ok(())
}

/// Memory at the top of the address space, whose page-rounded end wraps
/// (GUP's `EOVERFLOW`): `EFAULT`, the documented errno, for
/// `BUF_REGISTER` and for a `WRITEV` entry (found by the fuzzer on the
/// KCSAN kernel).
pub(crate) fn top_of_address_space_efault() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    let a = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let top = u64::MAX - 4096;
    let mut reg = MdwBufReg {
        addr: top,
        len: 36,
        ..Default::default()
    };
    let r = ioctl(
        dev.as_fd(),
        MDW_IOC_BUF_REGISTER,
        &mut reg as *mut MdwBufReg as usize,
    );
    expect_errno(
        "BUF_REGISTER at the top of the address space",
        r,
        libc::EFAULT,
    )?;
    let entries = [MdwEntry {
        dest: a.handle(),
        addr: top,
        len: 36,
        ..Default::default()
    }];
    let (r, req) = raw_writev(&dev, &entries, |_| {});
    expect_errno("WRITEV at the top of the address space", r, libc::EFAULT)?;
    if req.error_index != 0 {
        return Err(format!("error_index {}, want 0", req.error_index));
    }
    Ok(())
}
