// SPDX-License-Identifier: GPL-2.0

//! `mdwrite-bench pace`: how smooth a paced stream leaves, seen from the
//! receiving side of a veth pair (issue 14's pacing benchmark).
//!
//! Streams of mixed bitrates (`--min-mbps` to `--max-mbps`, spread evenly
//! over the destinations) of 1316-byte RTP payloads go out in one call per
//! window (`--window-ms`) for `--seconds`. Stream `d`'s ideal departures are
//! `t0 + phase_d + k * gap_d`, `gap_d` = payload bits / bitrate, `phase_d`
//! in `[0, gap_d)` (`phase`: independent streams are not in step): each call carries
//! every packet whose ideal time falls in its window, as one entry timed
//! with `MDW_ENTRY_PACE` (offset of its first packet, `gap_d`). Modes:
//!
//! - `paced`: asynchronous calls, two windows in flight, released by the
//!   module's own pacer (the direct path);
//! - `paced-fq`: the same through the qdisc (`MDW_WRITE_QDISC`), which must
//!   be `fq` (earliest departure time);
//! - `unpaced`: a synchronous call at each window's start, no times: what a
//!   sender that batches per interval without pacing sends.
//!
//! A `PACKET_RX_RING` (TPACKET_V2) on the peer device, in the receiving
//! network namespace, time-stamps every packet as it arrives (software
//! time stamps, `CLOCK_REALTIME`, mapped to `CLOCK_MONOTONIC` by one offset:
//! under `-icount` both clocks advance alike). The ring holds the whole run
//! and is read after it, so reading costs nothing during the run.
//!
//! Per stream, over its packets in arrival order: the departure error
//! `|arrival - ideal|`, the gap error `|gap - gap_d|`, and the largest
//! burst, the longest run of packets each less than a quarter of `gap_d`
//! after the one before. The whole guest's busy time over the run (what an
//! idle-priority spinner did not get, `Soaker`; under `-icount` a
//! nanosecond is an instruction) per packet gives the cost of the whole
//! path, sender, pacer and receiver alike.

use std::{
    fs, io, mem,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    ptr,
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use mdwrite::{
    uapi::{
        MdwEntry, MdwWritev, MDW_ENTRY_PACE, MDW_IOC_WRITEV, MDW_WRITE_ASYNC, MDW_WRITE_PACE,
        MDW_WRITE_QDISC,
    },
    DestConfig, DestId, Device, Rtp,
};

use crate::methods::{
    af_packet::{
        bind_packet, map_ring, Tpacket2Hdr, TpacketReq, PACKET_VERSION, SOL_PACKET, TPACKET_V2,
    },
    cvt,
    mdwrite::ifindex,
    setsockopt_int,
};
use crate::workload::{
    dest_addr, dest_mac, dest_sockaddr, RTP_PT_MP2T, RTP_TS_INCREMENT, SRC_ADDR, SRC_PORT,
};

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const TP_STATUS_USER: u32 = 1;
/// Enough of a frame for Ethernet, IPv4, UDP and RTP headers.
const FRAME_SIZE: usize = 128;
const BLOCK_SIZE: usize = 1 << 20;
/// RTP payload bytes per packet (seven TS packets).
pub const PAYLOAD: usize = 1316;
/// A gap shorter than this fraction (1/`BURST_DIV`) of the ideal one makes
/// two packets one burst.
pub const BURST_DIV: u64 = 4;

/// How the windows are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Paced by the module's own pacer (direct path).
    Paced,
    /// Paced through the qdisc (`fq`).
    PacedFq,
    /// No departure times: each window's packets sent at its start.
    Unpaced,
}

impl Mode {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Paced => "paced (module)",
            Mode::PacedFq => "paced (fq)",
            Mode::Unpaced => "unpaced",
        }
    }
}

/// `mdwrite-bench pace`'s arguments.
#[derive(clap::Args)]
pub struct PaceArgs {
    /// The sending device (one end of a veth pair).
    #[arg(long)]
    pub ifname: String,
    /// The receiving network namespace (`ip netns` name).
    #[arg(long)]
    pub rx_netns: String,
    /// The receiving device (the peer, in `--rx-netns`).
    #[arg(long)]
    pub rx_ifname: String,
    /// Streams (destinations).
    #[arg(long, default_value_t = 64)]
    pub dests: usize,
    /// Bitrate of the slowest stream, Mb/s.
    #[arg(long, default_value_t = 1)]
    pub min_mbps: u64,
    /// Bitrate of the fastest stream, Mb/s.
    #[arg(long, default_value_t = 20)]
    pub max_mbps: u64,
    /// One call per window of this many milliseconds.
    #[arg(long, default_value_t = 20)]
    pub window_ms: u64,
    /// Length of the run, seconds.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// How the windows are sent.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "paced,paced-fq,unpaced"
    )]
    pub modes: Vec<Mode>,
    /// Appends per-stream rows to this CSV.
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
}

/// One stream's figures over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Packets received.
    pub packets: usize,
    /// Departure error |arrival - ideal|, ns: p50, p99, max.
    pub dep: [u64; 3],
    /// Gap error |gap - ideal gap|, ns: p50, p99, max.
    pub gap: [u64; 3],
    /// The largest burst, packets.
    pub burst: usize,
}

/// The `p`-th percentile (0..=100) of sorted `v` (nearest rank); 0 if empty.
pub fn percentile(v: &[u64], p: u64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (p as usize * v.len()).div_ceil(100).max(1);
    v[rank.min(v.len()) - 1]
}

/// p50, p99 and max of `v`, which it sorts.
fn summary(v: &mut [u64]) -> [u64; 3] {
    v.sort_unstable();
    [
        percentile(v, 50),
        percentile(v, 99),
        v.last().copied().unwrap_or(0),
    ]
}

/// The figures of a stream whose packet `k` was due at `t0 + k * gap` and
/// arrived at `arrivals[k]` (the same clock).
pub fn stream_stats(arrivals: &[u64], t0: u64, gap: u64) -> StreamStats {
    let mut dep: Vec<u64> = arrivals
        .iter()
        .enumerate()
        .map(|(k, &a)| a.abs_diff(t0 + k as u64 * gap))
        .collect();
    let mut gaps: Vec<u64> = arrivals
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]).abs_diff(gap))
        .collect();
    let (mut burst, mut run) = (usize::from(!arrivals.is_empty()), 1);
    for w in arrivals.windows(2) {
        if w[1].saturating_sub(w[0]) < gap / BURST_DIV {
            run += 1;
            burst = burst.max(run);
        } else {
            run = 1;
        }
    }
    StreamStats {
        packets: arrivals.len(),
        dep: summary(&mut dep),
        gap: summary(&mut gaps),
        burst,
    }
}

/// Stream `d`'s bitrate in kb/s: `min` to `max` Mb/s, evenly spread.
pub fn bitrate_kbps(d: usize, dests: usize, min_mbps: u64, max_mbps: u64) -> u64 {
    let span = (max_mbps.saturating_sub(min_mbps)) * 1000;
    min_mbps * 1000 + span * d as u64 / (dests.max(2) - 1) as u64
}

/// Nanoseconds between packets of `payload` bytes at `kbps`.
pub fn ideal_gap(payload: usize, kbps: u64) -> u64 {
    payload as u64 * 8 * 1_000_000 / kbps.max(1)
}

/// Stream `d`'s phase: its first packet's time after the run's start.
/// Independent streams do not start in step; the phases are spread
/// evenly over each stream's gap (in an order unrelated to the bitrate),
/// so the streams' packets fall due at one instant only by chance, as
/// real streams' do, not all at once at the start of every common
/// period.
pub fn phase(d: usize, dests: usize, gap: u64) -> u64 {
    let dests = dests.max(1) as u64;
    gap * ((d as u64 * 37) % dests) / dests
}

/// The packets `k` of a stream with `gap` and `phase` whose ideal time
/// `phase + k * gap` lies in `[from, to)` (times from the run's start):
/// the first and how many.
pub fn packets_in(from: u64, to: u64, gap: u64, phase: u64) -> (u64, u64) {
    let first = from.saturating_sub(phase).div_ceil(gap);
    let end = to.saturating_sub(phase).div_ceil(gap);
    (first, end.saturating_sub(first))
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `t` on CLOCK_MONOTONIC.
fn sleep_until(t: u64) {
    let ts = libc::timespec {
        tv_sec: (t / 1_000_000_000) as libc::time_t,
        tv_nsec: (t % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: an absolute sleep on a valid timespec; EINTR just returns.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            ptr::null_mut(),
        )
    };
}

/// The guest's busy time, measured as what an idle-priority spinner did
/// not get. Under `-icount` an iteration of the spinner's loop costs a
/// fixed number of instructions (nanoseconds), calibrated while nothing
/// else runs; every instruction the rest of the guest executes (the
/// sender, the module's timers and softirqs, the qdisc, the receive path)
/// is time the spinner did not spin. Tick-sampled `/proc/stat` misses
/// exactly this work: it runs in timer interrupts taken from the idle
/// task.
struct Soaker {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Nanoseconds per iteration with nothing else to run (the tick's
    /// own share included, so it is not counted as busy).
    ns_per_iter: f64,
}

impl Soaker {
    /// Starts the spinner (`SCHED_IDLE`) and calibrates it over `ns`.
    fn start(ns: u64) -> io::Result<Self> {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("soaker".into())
            .spawn(move || {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: sets this thread's policy; `param` is valid.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                while !s.load(Ordering::Relaxed) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        let mut soaker = Self {
            count,
            stop,
            thread: Some(thread),
            ns_per_iter: 0.0,
        };
        let a = soaker.sample();
        sleep_until(a.0 + ns);
        let b = soaker.sample();
        if b.1 <= a.1 {
            return Err(io::Error::other("the idle spinner did not run"));
        }
        soaker.ns_per_iter = (b.0 - a.0) as f64 / (b.1 - a.1) as f64;
        Ok(soaker)
    }

    /// Now (`CLOCK_MONOTONIC`) and the spinner's iterations.
    fn sample(&self) -> (u64, u64) {
        (
            clock_ns(libc::CLOCK_MONOTONIC),
            self.count.load(Ordering::Relaxed),
        )
    }

    /// Busy nanoseconds (instructions) between two samples.
    fn busy(&self, a: (u64, u64), b: (u64, u64)) -> u64 {
        let spun = (b.1 - a.1) as f64 * self.ns_per_iter;
        (b.0 - a.0).saturating_sub(spun as u64)
    }
}

impl Drop for Soaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A receive ring on a device of another network namespace.
struct Capture {
    sock: OwnedFd,
    ring: *mut u8,
    frames: usize,
}

impl Capture {
    /// A TPACKET_V2 receive ring of at least `frames` frames on `ifname`
    /// of network namespace `netns`.
    fn open(netns: &str, ifname: &str, frames: usize) -> io::Result<Self> {
        let own = fs::File::open("/proc/thread-self/ns/net")?;
        let other = fs::File::open(format!("/run/netns/{netns}"))?;
        // SAFETY: setns(2) on a namespace descriptor: this thread only.
        cvt(unsafe { libc::setns(other.as_raw_fd(), libc::CLONE_NEWNET) })?;
        let r = Self::open_here(ifname, frames);
        // SAFETY: back to this thread's own namespace.
        let back = cvt(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) });
        let c = r?;
        back?;
        Ok(c)
    }

    fn open_here(ifname: &str, frames: usize) -> io::Result<Self> {
        let ifindex = ifindex(ifname)?;
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2).
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        })?;
        // SAFETY: a new descriptor owned by no one else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        setsockopt_int(&sock, SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        let per_block = BLOCK_SIZE / FRAME_SIZE;
        let blocks = frames.div_ceil(per_block);
        let req = TpacketReq {
            block_size: BLOCK_SIZE as u32,
            block_nr: blocks as u32,
            frame_size: FRAME_SIZE as u32,
            frame_nr: (blocks * per_block) as u32,
        };
        let ring = map_ring(&sock, PACKET_RX_RING, &req)?;
        bind_packet(&sock, proto, ifindex)?;
        Ok(Self {
            sock,
            ring,
            frames: blocks * per_block,
        })
    }

    /// Packets the kernel could not put in the ring.
    fn drops(&self) -> io::Result<u32> {
        let mut st = [0u32; 2];
        let mut len = mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is a tpacket_stats of `len` bytes.
        cvt(unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        })?;
        Ok(st[1])
    }

    /// Every frame the kernel filled, in arrival order: its time stamp
    /// (ns, CLOCK_REALTIME) and bytes from the MAC header; then frees them.
    fn drain(&mut self, mut f: impl FnMut(u64, &[u8])) {
        for i in 0..self.frames {
            // SAFETY: frame `i` lies in the mapped ring.
            let frame = unsafe { self.ring.add(i * FRAME_SIZE) };
            let h = frame.cast::<Tpacket2Hdr>();
            // SAFETY: the status word is shared with the kernel.
            let status = unsafe { ptr::read_volatile(ptr::addr_of!((*h).tp_status)) };
            if status & TP_STATUS_USER == 0 {
                break;
            }
            fence(Ordering::Acquire);
            // SAFETY: the frame is ours (TP_STATUS_USER); the kernel wrote
            // `tp_snaplen` bytes at `tp_mac`, inside the frame.
            unsafe {
                let t = u64::from((*h).tp_sec) * 1_000_000_000 + u64::from((*h).tp_nsec);
                let off = usize::from((*h).tp_mac);
                let len = ((*h).tp_snaplen as usize).min(FRAME_SIZE.saturating_sub(off));
                f(t, std::slice::from_raw_parts(frame.add(off), len));
                fence(Ordering::Release);
                ptr::write_volatile(ptr::addr_of_mut!((*h).tp_status), 0);
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: unmaps the ring mapped in `open_here`.
        unsafe { libc::munmap(self.ring.cast(), self.frames * FRAME_SIZE) };
    }
}

/// The stream a captured frame belongs to, if it is one of the run's.
fn stream_of(frame: &[u8], dests: usize) -> Option<usize> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame[14] & 0xf) * 4;
    if frame[23] != libc::IPPROTO_UDP as u8 || frame.len() < 14 + ihl + 8 {
        return None;
    }
    let dst = u32::from_be_bytes([frame[30], frame[31], frame[32], frame[33]]);
    let d = dst.checked_sub(u32::from(dest_addr(0)))? as usize;
    (d < dests).then_some(d)
}

/// One mode's result.
pub struct ModeResult {
    pub streams: Vec<(u64, StreamStats)>,
    /// Every stream's departure errors pooled: p50, p99, max.
    pub dep: [u64; 3],
    pub gap: [u64; 3],
    pub burst: usize,
    pub packets: u64,
    pub calls: u64,
    /// Whole-guest busy instructions per packet.
    pub busy_per_packet: u64,
    /// Why the run does not count, if it does not.
    pub note: String,
}

/// Runs `mode` once.
fn run_mode(a: &PaceArgs, mode: Mode, dev: &Device, dests: &[DestId]) -> io::Result<ModeResult> {
    let window = a.window_ms * 1_000_000;
    let calls = a.seconds * 1000 / a.window_ms.max(1);
    let gaps: Vec<u64> = (0..a.dests)
        .map(|d| ideal_gap(PAYLOAD, bitrate_kbps(d, a.dests, a.min_mbps, a.max_mbps)))
        .collect();
    let phases: Vec<u64> = gaps
        .iter()
        .enumerate()
        .map(|(d, &g)| phase(d, a.dests, g))
        .collect();
    let total: u64 = gaps
        .iter()
        .zip(&phases)
        .map(|(&g, &p)| packets_in(0, calls * window, g, p).1)
        .sum();
    let most = gaps
        .iter()
        .map(|&g| packets_in(0, window, g, 0).1 + 1)
        .max()
        .unwrap_or(1) as usize;
    let data = vec![0x47u8; most * PAYLOAD];
    let mut cap = Capture::open(&a.rx_netns, &a.rx_ifname, total as usize + 4096)?;
    let mut entries: Vec<MdwEntry> = Vec::with_capacity(a.dests);
    let paced = mode != Mode::Unpaced;
    let flags = match mode {
        Mode::Paced => MDW_WRITE_PACE | MDW_WRITE_ASYNC,
        Mode::PacedFq => MDW_WRITE_PACE | MDW_WRITE_ASYNC | MDW_WRITE_QDISC,
        Mode::Unpaced => 0,
    };
    let soaker = Soaker::start(200_000_000)?;
    let busy0 = soaker.sample();
    let t0 = clock_ns(libc::CLOCK_MONOTONIC) + window;
    let mut in_flight = 0u32;
    let mut sent = 0u64;
    let mut submit = |c: u64, in_flight: &mut u32| -> io::Result<()> {
        let start = c * window;
        entries.clear();
        for (d, (&g, &p)) in gaps.iter().zip(&phases).enumerate() {
            let (first, n) = packets_in(start, start + window, g, p);
            if n == 0 {
                continue;
            }
            entries.push(MdwEntry {
                dest: dests[d].handle(),
                flags: if paced { MDW_ENTRY_PACE } else { 0 },
                addr: data.as_ptr() as u64,
                len: n * PAYLOAD as u64,
                pace_offset: if paced {
                    (p + first * g - start) as u32
                } else {
                    0
                },
                pace_gap: if paced { g as u32 } else { 0 },
                ..Default::default()
            });
        }
        let mut req = MdwWritev {
            entries: entries.as_ptr() as u64,
            count: entries.len() as u32,
            entry_size: mem::size_of::<MdwEntry>() as u32,
            flags,
            cookie: c,
            ..Default::default()
        };
        if paced {
            req.pace_start = t0 + start;
            req.pace_window = window as u32;
            req.pace_clock = libc::CLOCK_MONOTONIC as u32;
        } else {
            sleep_until(t0 + start);
        }
        // SAFETY: `req` names `count` entries of `entry_size` bytes; their
        // memory (`data`) outlives every call: the asynchronous ones are
        // all completed before it is dropped.
        let r = unsafe {
            libc::ioctl(
                dev.as_fd().as_raw_fd(),
                MDW_IOC_WRITEV as libc::c_ulong,
                &mut req as *mut MdwWritev,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if req.error != 0 {
            return Err(io::Error::from_raw_os_error(-req.error));
        }
        if flags & MDW_WRITE_ASYNC != 0 {
            *in_flight += 1;
        }
        sent += req.packets;
        Ok(())
    };
    let mut completed = 0u64;
    let mut complete = |in_flight: &mut u32| -> io::Result<()> {
        let c = dev
            .read_completion()?
            .ok_or_else(|| io::Error::other("no completion"))?;
        if let Some((e, i)) = c.error {
            return Err(io::Error::other(format!(
                "call {}: entry {i}: {e}",
                c.cookie
            )));
        }
        completed += c.packets;
        *in_flight -= 1;
        Ok(())
    };
    let result = (|| -> io::Result<()> {
        for c in 0..calls {
            if in_flight >= 2 {
                complete(&mut in_flight)?;
            }
            submit(c, &mut in_flight)?;
        }
        Ok(())
    })();
    // Every asynchronous call ends before `data` goes, failed run or not.
    while in_flight > 0 {
        complete(&mut in_flight)?;
    }
    result?;
    // The last packets' way to the ring.
    sleep_until(clock_ns(libc::CLOCK_MONOTONIC) + 5_000_000);
    let busy_ns = soaker.busy(busy0, soaker.sample()) as f64;
    drop(soaker);
    let offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    let mut arrivals: Vec<Vec<u64>> = vec![Vec::new(); a.dests];
    cap.drain(|t, frame| {
        if let Some(d) = stream_of(frame, a.dests) {
            arrivals[d].push(t.saturating_sub(offset));
        }
    });
    let mut note = Vec::new();
    let drops = cap.drops()?;
    if drops != 0 {
        note.push(format!("capture dropped {drops}"));
    }
    let received: u64 = arrivals.iter().map(|v| v.len() as u64).sum();
    if received != total || sent != total || (paced && completed != total) {
        note.push(format!(
            "{total} packets due, {sent} sent, {received} received"
        ));
    }
    let streams: Vec<(u64, StreamStats)> = arrivals
        .iter()
        .zip(gaps.iter().zip(&phases))
        .enumerate()
        .map(|(d, (v, (&g, &p)))| {
            (
                bitrate_kbps(d, a.dests, a.min_mbps, a.max_mbps),
                stream_stats(v, t0 + p, g),
            )
        })
        .collect();
    let mut dep: Vec<u64> = Vec::new();
    let mut gap: Vec<u64> = Vec::new();
    for (v, (&g, &p)) in arrivals.iter().zip(gaps.iter().zip(&phases)) {
        dep.extend(
            v.iter()
                .enumerate()
                .map(|(k, &t)| t.abs_diff(t0 + p + k as u64 * g)),
        );
        gap.extend(v.windows(2).map(|w| w[1].saturating_sub(w[0]).abs_diff(g)));
    }
    Ok(ModeResult {
        dep: summary(&mut dep),
        gap: summary(&mut gap),
        burst: streams.iter().map(|s| s.1.burst).max().unwrap_or(0),
        streams,
        packets: received,
        calls,
        busy_per_packet: (busy_ns / received.max(1) as f64) as u64,
        note: note.join("; "),
    })
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// Runs every mode and prints the report; false if a row failed or a
/// target was missed.
pub fn pace(a: &PaceArgs) -> io::Result<bool> {
    let dev = Device::open()?;
    let ifindex = ifindex(&a.ifname)?;
    let mut dests = Vec::with_capacity(a.dests);
    for d in 0..a.dests {
        let mut c = DestConfig::new(
            ifindex,
            SocketAddr::new(SRC_ADDR.into(), SRC_PORT),
            dest_sockaddr(d).into(),
        );
        c.dst_mac = Some(dest_mac(d));
        c.rtp = Some(Rtp::new(0x1000 + d as u32, RTP_PT_MP2T).with_ts_increment(RTP_TS_INCREMENT));
        // One PAYLOAD per packet: the streams' packet times assume it.
        c.packet_size = Some(c.packet_size_for(PAYLOAD));
        dests.push(dev.add_destination(&c)?);
    }
    println!(
        "pacing: {} streams of {}-byte RTP payloads at {} to {} Mb/s, one call per {} ms window, {} s; veth {} -> {} (netns {})",
        a.dests, PAYLOAD, a.min_mbps, a.max_mbps, a.window_ms, a.seconds, a.ifname, a.rx_ifname, a.rx_netns
    );
    println!();
    println!("| mode | packets | calls | departure error p50 / p99 / max (us) | gap error p50 / p99 / max (us) | largest burst | worst stream's p99 departure error (us) | busy guest instr/packet | note |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let mut ok = true;
    let mut csv = String::new();
    for &mode in &a.modes {
        let r = match run_mode(a, mode, &dev, &dests) {
            Ok(r) => r,
            Err(e) => {
                println!("| {} | | | | | | | | failed: {e} |", mode.name());
                ok = false;
                continue;
            }
        };
        let worst = r.streams.iter().map(|s| s.1.dep[1]).max().unwrap_or(0);
        println!(
            "| {} | {} | {} | {} / {} / {} | {} / {} / {} | {} | {} | {} | {} |",
            mode.name(),
            r.packets,
            r.calls,
            us(r.dep[0]),
            us(r.dep[1]),
            us(r.dep[2]),
            us(r.gap[0]),
            us(r.gap[1]),
            us(r.gap[2]),
            r.burst,
            us(worst),
            r.busy_per_packet,
            r.note
        );
        if !r.note.is_empty() {
            ok = false;
        }
        for (kbps, s) in &r.streams {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                mode.name(),
                kbps,
                s.packets,
                s.dep[0],
                s.dep[1],
                s.dep[2],
                s.gap[0],
                s.gap[1],
                s.gap[2],
                s.burst
            ));
        }
        if mode == Mode::Paced {
            let dep_ok = worst <= 50_000;
            let burst_ok = r.burst <= 2;
            println!(
                "target: paced release p99 |actual - ideal| <= 50 us for every stream: {} (worst {} us); largest burst <= 2: {} ({})",
                if dep_ok { "met" } else { "missed" },
                us(worst),
                if burst_ok { "met" } else { "missed" },
                r.burst
            );
        }
    }
    if let Some(path) = &a.csv {
        let mut text = String::from(
            "mode,kbps,packets,dep_p50_ns,dep_p99_ns,dep_max_ns,gap_p50_ns,gap_p99_ns,gap_max_ns,burst\n",
        );
        text.push_str(&csv);
        fs::write(path, text)?;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&v, 100), 100);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 99), 0);
    }

    #[test]
    fn perfect_stream() {
        let a: Vec<u64> = (0..10).map(|k| 1000 + k * 500).collect();
        let s = stream_stats(&a, 1000, 500);
        assert_eq!(s.dep, [0, 0, 0]);
        assert_eq!(s.gap, [0, 0, 0]);
        assert_eq!(s.burst, 1);
    }

    #[test]
    fn bursts_counted() {
        // Two windows of four packets each sent back to back (gap 10 ns)
        // instead of 1000 apart.
        let a = [0, 10, 20, 30, 4000, 4010, 4020, 4030];
        let s = stream_stats(&a, 0, 1000);
        assert_eq!(s.burst, 4);
        assert_eq!(s.dep[2], 7000 - 4030);
        assert_eq!(s.gap[2], 4000 - 30 - 1000);
    }

    #[test]
    fn windows_partition_the_stream() {
        // Every packet falls in exactly one window, in order.
        for gap in [1, 7, 531_000, 10_528_000, 20_000_001] {
            for phase in [0, gap / 3, gap - 1] {
                let mut next = 0;
                for c in 0..200u64 {
                    let (first, n) = packets_in(c * 20_000_000, (c + 1) * 20_000_000, gap, phase);
                    assert_eq!(first, next, "gap {gap} phase {phase} window {c}");
                    if n > 0 {
                        assert!(phase + first * gap >= c * 20_000_000);
                        assert!(phase + (first + n - 1) * gap < (c + 1) * 20_000_000);
                    }
                    next = first + n;
                }
            }
        }
    }

    #[test]
    fn phases_spread_over_the_gap() {
        let gap = 1_000_000;
        let mut p: Vec<u64> = (0..64).map(|d| phase(d, 64, gap)).collect();
        assert!(p.iter().all(|&x| x < gap));
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), 64, "every stream its own phase");
    }

    #[test]
    fn bitrates_span_the_range() {
        assert_eq!(bitrate_kbps(0, 64, 1, 20), 1000);
        assert_eq!(bitrate_kbps(63, 64, 1, 20), 20000);
        assert_eq!(ideal_gap(1316, 1000), 10_528_000);
    }

    #[test]
    fn frames_mapped_to_streams() {
        let mut f = [0u8; 54];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 17;
        f[30..34].copy_from_slice(&dest_addr(5).octets());
        assert_eq!(stream_of(&f, 64), Some(5));
        assert_eq!(stream_of(&f, 5), None);
        f[23] = 6;
        assert_eq!(stream_of(&f, 64), None);
    }
}
