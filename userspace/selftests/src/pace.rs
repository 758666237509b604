// SPDX-License-Identifier: GPL-2.0

//! Paced calls (`MDW_WRITE_PACE`): each packet leaves at its own departure
//! time through a time-based qdisc (fq), never before it; bad windows and
//! timings get their errnos; pending paced calls survive close, a device
//! going down and SIGKILL without leaks.

use std::{
    os::fd::AsFd,
    process::Command,
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{
        ioc, MdwEntry, MdwWritev, MDW_ENTRY_PACE, MDW_ENTRY_SAME, MDW_IOC_WRITEV_NR,
        MDW_MAX_PACE_AHEAD, MDW_MAX_PACE_WINDOW, MDW_WRITE_ASYNC, MDW_WRITE_PACE, MDW_WRITE_QDISC,
    },
    DestId, Device,
};

use crate::{
    errors::{entry, foll_pins, raw_writev},
    net::{udp_info, Capture},
    raw::{errno_name, expect_errno, ioctl},
    send::pattern,
    topo::{self, run, Topology},
    TestResult,
};

/// Payload bytes per packet on the dummy device (MTU 1500, IPv4, UDP).
const PAYLOAD: usize = 1472;
const MS: u64 = 1_000_000;
const CLOCK_MONOTONIC: u32 = 1;

/// Now on `CLOCK_MONOTONIC`, in nanoseconds (the module's `ktime_get_ns`).
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A dummy `d0` in a new sender namespace with `qdisc` as its root qdisc,
/// a tap on it, the device open and `n` destinations on it (ports 5000 +
/// k), this thread in the namespace.
fn setup(qdisc: &[&str], n: u16) -> Result<(Topology, Device, Capture, Vec<DestId>), String> {
    let topo = Topology::new(0)?;
    let ifindex = topo::add_dummy(&topo.sender, "d0", true)?;
    let mut tc = vec![
        "tc",
        "-n",
        &topo.sender,
        "qdisc",
        "replace",
        "dev",
        "d0",
        "root",
    ];
    tc.extend_from_slice(qdisc);
    run(&tc)?;
    topo::enter(&topo.sender)?;
    let cap = Capture::open("d0")?;
    cap.enable_timestamps()?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    let mut ids = Vec::new();
    for k in 0..n {
        let mut c = topo::dummy_config(ifindex);
        c.to.set_port(5000 + k);
        ids.push(
            dev.add_destination(&c)
                .map_err(|e| format!("DEST_ADD {k}: {e}"))?,
        );
    }
    Ok((topo, dev, cap, ids))
}

/// A frame seen on the tap: its destination, payload, and when the
/// device was handed it (`CLOCK_MONOTONIC`, from the tap's time stamp).
struct Seen {
    dest: usize,
    payload: Vec<u8>,
    sent: u64,
}

/// `CLOCK_REALTIME` minus `CLOCK_MONOTONIC`, in nanoseconds.
fn realtime_offset() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let before = now_ns();
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let after = now_ns();
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64).wrapping_sub(before / 2 + after / 2)
}

/// Watches the tap (time stamps on) until `want` frames of destinations
/// `0..dests` were seen or `deadline` passed.
fn watch(cap: &Capture, dests: usize, want: usize, deadline: Instant) -> Vec<Seen> {
    let offset = realtime_offset();
    let mut seen = Vec::new();
    while seen.len() < want && Instant::now() < deadline {
        for (f, stamp) in cap.drain_stamped() {
            let Some((port, _)) = udp_info(&f) else {
                continue;
            };
            let dest = usize::from(port.wrapping_sub(5000));
            if dest < dests {
                seen.push(Seen {
                    dest,
                    payload: f.get(42..).unwrap_or(&[]).to_vec(),
                    sent: stamp.wrapping_sub(offset),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    seen
}

/// A paced call through fq (EDT): see [`pace_release`].
pub(crate) fn pace_release_fq() -> TestResult {
    pace_release(true)
}

/// A paced call on the direct path, released by the module's own timer:
/// see [`pace_release`].
pub(crate) fn pace_release_direct() -> TestResult {
    pace_release(false)
}

/// A paced call (through fq with `via_qdisc`, else the module's release
/// on the direct path): every destination's packets arrive complete and
/// in order, and none leaves before its departure time: evenly spread
/// over the window for plain entries, at its own offset and gap for an
/// entry timed by itself. The same call unpaced leaves at once.
fn pace_release(via_qdisc: bool) -> TestResult {
    const DESTS: usize = 4;
    const PACKETS: usize = 6;
    let qdisc = if via_qdisc { "fq" } else { "pfifo_fast" };
    let path = if via_qdisc { MDW_WRITE_QDISC } else { 0 };
    let (_topo, dev, cap, ids) = setup(&[qdisc], DESTS as u16)?;
    let data: Vec<Vec<u8>> = (0..DESTS)
        .map(|k| pattern(PACKETS * PAYLOAD, 40 + k as u32))
        .collect();
    let mut entries: Vec<MdwEntry> = ids.iter().zip(&data).map(|(&id, d)| entry(id, d)).collect();
    // The last destination times its entry itself: from 100 ms, 20 ms apart.
    let own = (100 * MS, 20 * MS);
    entries[DESTS - 1].flags |= MDW_ENTRY_PACE;
    entries[DESTS - 1].pace_offset = own.0 as u32;
    entries[DESTS - 1].pace_gap = own.1 as u32;
    let window = 300 * MS;

    // Unpaced through fq first: everything leaves at once.
    let plain: Vec<MdwEntry> = ids.iter().zip(&data).map(|(&id, d)| entry(id, d)).collect();
    let called = now_ns();
    let (r, w) = raw_writev(&dev, &plain, |w| w.flags = path);
    if r.is_err() || w.packets != (DESTS * PACKETS) as u64 {
        return Err(format!("unpaced call: {r:?}, {} packets", w.packets));
    }
    let seen = watch(
        &cap,
        DESTS,
        DESTS * PACKETS,
        Instant::now() + Duration::from_secs(5),
    );
    let spread = seen
        .iter()
        .map(|s| s.sent)
        .max()
        .unwrap_or(0)
        .saturating_sub(called);
    if seen.len() != DESTS * PACKETS || spread > window / 2 {
        return Err(format!(
            "unpaced call: {} frames within {} ms; want {} at once",
            seen.len(),
            spread / MS,
            DESTS * PACKETS
        ));
    }

    let start = now_ns() + 50 * MS;
    let (r, w) = raw_writev(&dev, &entries, |w| {
        w.flags = path | MDW_WRITE_PACE;
        w.pace_start = start;
        w.pace_window = window as u32;
        w.pace_clock = CLOCK_MONOTONIC;
    });
    let returned = now_ns();
    if r.is_err() || w.packets != (DESTS * PACKETS) as u64 || w.error != 0 {
        return Err(format!(
            "paced call: {r:?}, {} packets, error {}",
            w.packets,
            errno_name(-w.error)
        ));
    }
    // A synchronous call completes once its last packet has left.
    let last = start + own.0 + (PACKETS as u64 - 1) * own.1;
    let last = last.max(start + (PACKETS as u64 - 1) * (window / PACKETS as u64));
    if returned + MS < last {
        return Err(format!(
            "synchronous paced call returned {} ms before its last departure",
            (last - returned) / MS
        ));
    }
    let seen = watch(
        &cap,
        DESTS,
        DESTS * PACKETS,
        Instant::now() + Duration::from_secs(5),
    );
    if seen.len() != DESTS * PACKETS {
        return Err(format!(
            "paced call: tap saw {} frames, want {}",
            seen.len(),
            DESTS * PACKETS
        ));
    }
    for (k, want) in data.iter().enumerate() {
        let mine: Vec<&Seen> = seen.iter().filter(|s| s.dest == k).collect();
        let bytes: Vec<u8> = mine
            .iter()
            .flat_map(|s| s.payload.iter().copied())
            .collect();
        if &bytes != want {
            return Err(format!(
                "destination {k}: payload bytes differ or out of order"
            ));
        }
        for (j, s) in mine.iter().enumerate() {
            let j = j as u64;
            let due = match k {
                k if k == DESTS - 1 => start + own.0 + j * own.1,
                _ => start + j * (window / PACKETS as u64),
            };
            // Never early: the slack (10 us) and the clocks' offset
            // (measured to a few us) are far below 1 ms; an unpaced packet
            // would be tens of ms early.
            if s.sent + MS < due {
                return Err(format!(
                    "destination {k} packet {j}: sent {} us before its departure",
                    (due - s.sent) / 1000
                ));
            }
            // Nor held back to the window's end (a generous bound: the
            // VM's timers run late, never 100 ms late).
            if j == 0 && s.sent > due + window / 3 {
                return Err(format!(
                    "destination {k}: first packet sent {} ms after its departure",
                    (s.sent - due) / MS
                ));
            }
        }
    }
    Ok(())
}

/// `fail_mdwrite_pace`, the pacer's fault injection point (debugfs, debug
/// kernels), set for one test: 70% of releases find the device's queue
/// stopped halfway through their burst. Put back to never on
/// drop, whatever the test's outcome.
struct StoppedQueues {
    dir: String,
}

/// Remaining failures the point is armed with: it counts them down.
const STOP_TIMES: u64 = 1_000_000;

impl StoppedQueues {
    fn arm() -> Result<Self, String> {
        let dir = "/sys/kernel/debug/fail_mdwrite_pace".to_string();
        if !std::path::Path::new(&dir).exists() {
            return Err("skip: no fail_mdwrite_pace (a kernel without fault injection)".into());
        }
        let this = Self { dir };
        for (file, value) in [
            ("verbose", "0".to_string()),
            ("interval", "1".to_string()),
            ("times", STOP_TIMES.to_string()),
            ("probability", "70".to_string()),
        ] {
            this.write(file, &value)?;
        }
        Ok(this)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(format!("{}/{file}", self.dir), value)
            .map_err(|e| format!("{}/{file}: {e}", self.dir))
    }

    /// How many releases found the queue stopped.
    fn stops(&self) -> Result<u64, String> {
        let left = std::fs::read_to_string(format!("{}/times", self.dir))
            .map_err(|e| format!("{}/times: {e}", self.dir))?;
        let left: u64 = left.trim().parse().map_err(|e| format!("times: {e}"))?;
        Ok(STOP_TIMES.saturating_sub(left))
    }
}

impl Drop for StoppedQueues {
    fn drop(&mut self) {
        let _ = self.write("probability", "0");
    }
}

/// A paced release whose device's queue stops again and again halfway
/// through a burst (`fail_mdwrite_pace`): the packets it could not send
/// go out at the next try, before anything due later, so every
/// destination's packets still arrive complete and in order. The window
/// lies ahead: every packet is queued before the first leaves, each
/// round (one packet per destination, all due at once) leaves as one
/// burst, and a stop leaves the burst's second half with the later
/// rounds still queued behind it, where a putback at the queue's tail
/// (or at a later time) would reorder them.
pub(crate) fn pace_queue_stopped() -> TestResult {
    const DESTS: usize = 8;
    const PACKETS: usize = 16;
    let (_topo, dev, cap, ids) = setup(&["pfifo_fast"], DESTS as u16)?;
    let stopped = StoppedQueues::arm()?;
    let data: Vec<Vec<u8>> = (0..DESTS)
        .map(|k| pattern(PACKETS * PAYLOAD, 60 + k as u32))
        .collect();
    let entries: Vec<MdwEntry> = ids.iter().zip(&data).map(|(&id, d)| entry(id, d)).collect();
    let window = 300 * MS;
    let start = now_ns() + 100 * MS;
    let (r, w) = raw_writev(&dev, &entries, |w| {
        w.flags = MDW_WRITE_PACE;
        w.pace_start = start;
        w.pace_window = window as u32;
        w.pace_clock = CLOCK_MONOTONIC;
    });
    if r.is_err() || w.packets != (DESTS * PACKETS) as u64 || w.error != 0 {
        return Err(format!(
            "paced call: {r:?}, {} packets, error {}",
            w.packets,
            errno_name(-w.error)
        ));
    }
    let stops = stopped.stops()?;
    drop(stopped);
    let seen = watch(
        &cap,
        DESTS,
        DESTS * PACKETS,
        Instant::now() + Duration::from_secs(5),
    );
    if seen.len() != DESTS * PACKETS {
        return Err(format!(
            "tap saw {} frames, want {} ({stops} stopped releases)",
            seen.len(),
            DESTS * PACKETS
        ));
    }
    // The test means nothing unless the queue did stop (16 rounds and
    // their retries, each stopped with probability 0.7).
    if stops < 3 {
        return Err(format!("the queue stopped {stops} times; want at least 3"));
    }
    for (k, want) in data.iter().enumerate() {
        // Which of the destination's packets each frame carried.
        let order: Vec<Option<usize>> = seen
            .iter()
            .filter(|s| s.dest == k)
            .map(|s| want.chunks(PAYLOAD).position(|c| c == s.payload.as_slice()))
            .collect();
        if !order.iter().enumerate().all(|(j, &p)| p == Some(j)) {
            return Err(format!(
                "destination {k}: packets arrived as {order:?} ({stops} stopped releases)"
            ));
        }
    }
    println!("{stops} releases found the queue stopped");
    Ok(())
}

/// Paced calls' errnos (`Documentation/uapi.rst`); an older caller's
/// 32-byte entries still work.
pub(crate) fn pace_errors() -> TestResult {
    let (_topo, dev, _cap, ids) = setup(&["fq"], 2)?;
    let data = pattern(4 * PAYLOAD, 7);
    let one = [entry(ids[0], &data)];
    let paced = |start: u64, window: u32, clock: u32| {
        move |w: &mut MdwWritev| {
            w.flags = MDW_WRITE_QDISC | MDW_WRITE_PACE;
            w.pace_start = start;
            w.pace_window = window;
            w.pace_clock = clock;
        }
    };
    let now = now_ns();
    let ok = paced(now, 10 * MS as u32, CLOCK_MONOTONIC);
    let check = |what: &str, entries: &[MdwEntry], tweak: &dyn Fn(&mut MdwWritev), want: i32| {
        let (r, _) = raw_writev(&dev, entries, tweak);
        expect_errno(what, r, want)
    };
    check(
        "CLOCK_TAI on the direct path",
        &one,
        &|w| {
            ok(w);
            w.flags = MDW_WRITE_PACE;
            w.pace_clock = 11;
        },
        libc::EINVAL,
    )?;
    check(
        "clock CLOCK_REALTIME",
        &one,
        &paced(now, 10 * MS as u32, 0),
        libc::EINVAL,
    )?;
    check(
        "clock 7",
        &one,
        &paced(now, 10 * MS as u32, 7),
        libc::EINVAL,
    )?;
    check(
        "window 0",
        &one,
        &paced(now, 0, CLOCK_MONOTONIC),
        libc::EINVAL,
    )?;
    check(
        "window over MDW_MAX_PACE_WINDOW",
        &one,
        &paced(now, MDW_MAX_PACE_WINDOW + 1, CLOCK_MONOTONIC),
        libc::ERANGE,
    )?;
    check(
        "start beyond MDW_MAX_PACE_AHEAD",
        &one,
        &paced(
            now_ns() + MDW_MAX_PACE_AHEAD + 100 * MS,
            10 * MS as u32,
            CLOCK_MONOTONIC,
        ),
        libc::ERANGE,
    )?;
    check(
        "window ended",
        &one,
        &paced(now - 50 * MS, 20 * MS as u32, CLOCK_MONOTONIC),
        libc::ETIME,
    )?;
    check(
        "pace fields without MDW_WRITE_PACE",
        &one,
        &|w| w.pace_window = 10 * MS as u32,
        libc::EINVAL,
    )?;
    let timed = |offset: u32, gap: u32| {
        let mut e = entry(ids[0], &data);
        e.flags |= MDW_ENTRY_PACE;
        e.pace_offset = offset;
        e.pace_gap = gap;
        [e]
    };
    let far = paced(now_ns() + 100 * MS, 10 * MS as u32, CLOCK_MONOTONIC);
    check(
        "MDW_ENTRY_PACE in an unpaced call",
        &timed(0, 0),
        &|w| w.flags = MDW_WRITE_QDISC,
        libc::EINVAL,
    )?;
    let mut stray = entry(ids[0], &data);
    stray.pace_gap = 5;
    check(
        "pace_gap without MDW_ENTRY_PACE",
        &[stray],
        &far,
        libc::EINVAL,
    )?;
    check(
        "pace_offset at the window's end",
        &timed(10 * MS as u32, 0),
        &far,
        libc::ERANGE,
    )?;
    // Four packets 4 ms apart from 0: the last at 12 ms, past 10.
    check(
        "packets past the window's end",
        &timed(0, 4 * MS as u32),
        &far,
        libc::ERANGE,
    )?;
    let mut same = entry(ids[1], &[]);
    same.flags = MDW_ENTRY_SAME | MDW_ENTRY_PACE;
    check(
        "MDW_ENTRY_PACE on a fan-out's member",
        &[one[0], same],
        &far,
        libc::EINVAL,
    )?;

    // Nothing pinned by the refused calls; a good one goes.
    let (r, w) = raw_writev(&dev, &timed(0, 2 * MS as u32), far);
    if r.is_err() || w.packets != 4 {
        return Err(format!("good paced call: {r:?}, {} packets", w.packets));
    }
    // An older caller: 32-byte entries and a 56-byte mdw_writev.
    let old = ioc::encode(ioc::READ | ioc::WRITE, MDW_IOC_WRITEV_NR, 56);
    let mut raw = Vec::new();
    raw.extend_from_slice(&ids[0].handle().to_ne_bytes());
    raw.extend_from_slice(&0u32.to_ne_bytes());
    raw.extend_from_slice(&(data.as_ptr() as u64).to_ne_bytes());
    raw.extend_from_slice(&(data.len() as u64).to_ne_bytes());
    raw.extend_from_slice(&[0u8; 8]);
    let mut req = MdwWritev {
        entries: raw.as_ptr() as u64,
        count: 1,
        entry_size: 32,
        ..Default::default()
    };
    let r = ioctl(dev.as_fd(), old, &mut req as *mut MdwWritev as usize);
    if r.is_err() || req.packets != 4 {
        return Err(format!(
            "older caller's call: {r:?}, {} packets",
            req.packets
        ));
    }
    Ok(())
}

/// Paced calls still pending when their process exits, their device goes
/// down, or their synchronous caller is killed: each ends promptly, and
/// every page pinned is unpinned once the qdisc let go of the packets.
pub(crate) fn pace_pending_exit_down_kill() -> TestResult {
    let topo = Topology::new(0)?;
    topo::add_dummy(&topo.sender, "d0", true)?;
    run(&[
        "tc",
        "-n",
        &topo.sender,
        "qdisc",
        "replace",
        "dev",
        "d0",
        "root",
        "fq",
        // Three calls of 64 packets to one destination wait at once.
        "flow_limit",
        "1000",
    ])?;
    let (acq0, rel0) = foll_pins()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for (how, path) in ["exit", "down", "kill"]
        .into_iter()
        .flat_map(|how| [(how, "qdisc"), (how, "direct")])
    {
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.sender])
            .arg(&exe)
            .args(["paced-pending", "d0", how, path])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        if how == "down" || how == "kill" {
            // The helper says when its call is queued (or, synchronous,
            // about to be made): a slow start must not race the test.
            let mut line = String::new();
            let out = child.stdout.take().ok_or("no helper stdout")?;
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
                .map_err(|e| e.to_string())?;
            if line.trim() != "queued" {
                let _ = child.kill();
                let status = child.wait().map_err(|e| e.to_string())?;
                return Err(format!(
                    "{how}, {path}: helper said {line:?}, ended {status}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if how == "down" {
            run(&["ip", "-n", &topo.sender, "link", "set", "d0", "down"])?;
        }
        if how == "kill" {
            child.kill().map_err(|e| e.to_string())?;
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        match (how, status.code()) {
            ("kill", None) | (_, Some(0)) => {}
            _ => return Err(format!("{how}, {path}: helper ended {status}")),
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!("{how}, {path}: took {:?}", started.elapsed()));
        }
        if how == "down" {
            run(&["ip", "-n", &topo.sender, "link", "set", "d0", "up"])?;
        }
    }
    // The last window ends within 2 s of its call; let fq release it.
    std::thread::sleep(Duration::from_secs(3));
    let (acq, rel) = foll_pins()?;
    if acq - acq0 == 0 || acq - acq0 != rel - rel0 {
        return Err(format!(
            "pins acquired {} released {}",
            acq - acq0,
            rel - rel0
        ));
    }
    Ok(())
}

/// Tells the test (on stdout) that the helper's call is queued.
fn say_queued() -> TestResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "queued")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

/// The `paced-pending DEV HOW PATH` helper, in the device's namespace:
/// queues paced calls (`qdisc`: through the qdisc, `direct`: released by
/// the module) whose windows lie ahead, then (`exit`) exits at once,
/// (`down`) waits for the completion of an asynchronous one while the test
/// takes the device down, or (`kill`) waits in a synchronous one until
/// killed.
pub(crate) fn paced_pending(dev_name: &str, how: &str, path: &str) -> TestResult {
    let path = if path == "qdisc" { MDW_WRITE_QDISC } else { 0 };
    let name = std::ffi::CString::new(dev_name).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid C string; looked up in this thread's netns.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    let id = dev
        .add_destination(&topo::dummy_config(ifindex))
        .map_err(|e| format!("DEST_ADD: {e}"))?;
    let data = pattern(64 * PAYLOAD, 9);
    let e = [entry(id, &data)];
    let window = |ahead: u64, flags: u32| {
        move |w: &mut MdwWritev| {
            w.flags = path | MDW_WRITE_PACE | flags;
            w.pace_start = now_ns() + ahead;
            w.pace_window = MDW_MAX_PACE_WINDOW;
            w.pace_clock = CLOCK_MONOTONIC;
        }
    };
    match how {
        "exit" => {
            for _ in 0..3 {
                let (r, _) = raw_writev(&dev, &e, window(500 * MS, MDW_WRITE_ASYNC));
                r.map_err(|e| format!("async paced call: {}", errno_name(e)))?;
            }
            Ok(())
        }
        "down" => {
            let (r, _) = raw_writev(&dev, &e, window(300 * MS, MDW_WRITE_ASYNC));
            r.map_err(|e| format!("async paced call: {}", errno_name(e)))?;
            say_queued()?;
            let c = dev
                .read_completion()
                .map_err(|e| format!("read completion: {e}"))?;
            if c.is_none() {
                return Err("no completion after the device went down".into());
            }
            Ok(())
        }
        _ => {
            say_queued()?;
            let (r, _) = raw_writev(&dev, &e, window(500 * MS, 0));
            Err(format!("synchronous paced call was not killed: {r:?}"))
        }
    }
}
