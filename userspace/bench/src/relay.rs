// SPDX-License-Identifier: GPL-2.0

//! `mdwrite-bench relay`: what relaying one stream to N destinations costs
//! per packet, `mdwrite relay` (the helper, module backend) next to a relay
//! written the usual way (`mdwrite-bench relay-stock`: `recvmmsg` into a
//! batch of buffers, then `sendmmsg`).
//!
//! A source in network namespace `--src-netns` sends an RTP stream
//! (1316-byte payloads behind a 12-byte RTP header) at `--rate` packets per
//! second, `--burst` packets at a time, over a veth pair to the relay's
//! address in `--relay-netns`; the relay sends every packet on to N
//! destinations on a `dummy` device of its namespace (`--out-ifname`, a
//! permanent neighbour entry per destination), which drops what it
//! transmits. Each row starts its relay, sends `--warmup` packets untimed,
//! then `--packets` timed ones, stops the relay (SIGTERM) and checks: the
//! relay received every datagram, the device transmitted exactly N per
//! datagram, and no send failed; otherwise the row failed.
//!
//! Cost: the whole guest's busy time over the timed packets (what an
//! idle-priority spinner did not get, [`Soaker`]; under `-icount` a
//! nanosecond is an instruction), minus the same figure of a baseline run
//! whose packets the relay's namespace drops at routing (sent to an
//! address it does not own, forwarding off): what is left is the relay,
//! its system calls and the kernel work they cause (UDP receive, the
//! wake-up, the sends, the device's transmit), per packet received and per
//! packet sent (received x N). The `sink` row (the stock relay with no
//! destination) is the receiving part alone.

use std::{
    fs,
    io::{self, BufRead, BufReader, Read},
    mem,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::methods::{connect, cvt, setsockopt_int, sockaddr, udp_socket};
use crate::pace::{clock_ns, sleep_until, Soaker};
use crate::workload::{dest_sockaddr, RTP_HEADER, RTP_PT_MP2T, RTP_TS_INCREMENT};

/// RTP payload bytes per packet (seven MPEG-TS packets).
pub const PAYLOAD: usize = 1316;
/// Bytes of one receive slot of the stock relay.
const SLOT: usize = 2048;
/// Datagrams per `recvmmsg` of the stock relay (as `mdwrite relay`).
const BATCH: usize = 64;
/// Most messages of one `sendmmsg` (`UIO_MAXIOV`).
const MAX_MMSG: usize = 1024;

/// The relays a row can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayKind {
    /// `mdwrite relay --backend module`.
    Mdwrite,
    /// recvmmsg, then one sendmmsg per destination on its connected socket.
    Stock,
    /// recvmmsg, then one sendmmsg carrying every destination's messages
    /// (one unconnected socket, a destination address per message).
    StockOneCall,
}

impl RelayKind {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Mdwrite => "mdwrite relay",
            RelayKind::Stock => "recvmmsg + sendmmsg per destination",
            RelayKind::StockOneCall => "recvmmsg + one sendmmsg for all",
        }
    }
}

/// How the stock relay sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SendWay {
    /// One connected socket per destination, one sendmmsg per destination
    /// with the whole batch.
    Connected,
    /// One unconnected socket, sendmmsg of every (packet, destination)
    /// message, each naming its destination.
    OneCall,
}

/// `mdwrite-bench relay`'s arguments.
#[derive(clap::Args)]
pub struct RelayBenchArgs {
    /// The source's network namespace (one end of the veth pair).
    #[arg(long, default_value = "rsrc")]
    pub src_netns: String,
    /// The relay's network namespace.
    #[arg(long, default_value = "relay")]
    pub relay_netns: String,
    /// The relay's outgoing device (a `dummy`, in `--relay-netns`).
    #[arg(long, default_value = "fan0")]
    pub out_ifname: String,
    /// The address and port the relay listens on (in `--relay-netns`).
    #[arg(long, default_value = "192.168.77.2:5000")]
    pub listen: SocketAddrV4,
    /// An address the relay's namespace does not own and drops at routing
    /// (the baseline's destination).
    #[arg(long, default_value = "192.168.77.3")]
    pub drop_addr: Ipv4Addr,
    /// Destination counts.
    #[arg(long, value_delimiter = ',', default_value = "8,64")]
    pub dests: Vec<usize>,
    /// The relays, in row order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mdwrite,stock,stock-one-call"
    )]
    pub relays: Vec<RelayKind>,
    /// Relay modes: `udp` relays each datagram as it is; `rtp` gives each
    /// destination its own SSRC and sequence numbers (`--rtp`).
    #[arg(long, value_delimiter = ',', default_value = "udp,rtp")]
    pub modes: Vec<String>,
    /// The source's packets per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Packets the source sends at once (the same rate).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub bursts: Vec<usize>,
    /// Timed packets per row.
    #[arg(long, default_value_t = 2000)]
    pub packets: u64,
    /// Untimed packets before them.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
    /// Writes the rows to this CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// `mdwrite-bench relay-stock`'s arguments.
#[derive(clap::Args)]
pub struct StockArgs {
    /// The address and port to receive on.
    #[arg(long)]
    pub listen: SocketAddrV4,
    /// A destination; repeat for more (none: receive only).
    #[arg(long = "to")]
    pub to: Vec<SocketAddrV4>,
    /// Give each destination its own SSRC and sequence numbers.
    #[arg(long)]
    pub rtp: bool,
    /// How to send.
    #[arg(long, value_enum, default_value = "connected")]
    pub send: SendWay,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM set [`STOP`], interrupting a blocked system call.
fn catch_stop() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: all-zero is a valid sigaction; the handler only stores
        // to an atomic (async-signal-safe); no SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = mem::zeroed();
            sa.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
        }
    }
    Ok(())
}

/// The RTP header the stock relay sends to destination `d`: the received
/// one (version, payload type, timestamp, marker) with `d`'s SSRC and
/// sequence number.
pub fn rewrite_rtp(received: &[u8], ssrc: u32, seq: u16) -> [u8; RTP_HEADER] {
    let mut h = [0u8; RTP_HEADER];
    h.copy_from_slice(&received[..RTP_HEADER]);
    // No CSRCs or extension relayed: the 12-byte header only.
    h[0] &= 0xc0;
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// The stock relay: receives with recvmmsg (a batch of up to 64, blocking
/// for the first) and sends each batch to every destination with
/// sendmmsg; prints a summary line when SIGTERM or SIGINT stops it.
pub fn stock(a: &StockArgs) -> io::Result<bool> {
    catch_stop()?;
    let sock = udp_socket()?;
    // As `mdwrite relay`: room for bursts.
    setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20)?;
    let sa = sockaddr(a.listen);
    // SAFETY: `sa` is a valid sockaddr_in of the length passed.
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    // A stop signal that lands just before the blocking call is seen
    // within 100 ms.
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: `tv` is a timeval of the length passed.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    let n_dest = a.to.len();
    let (out, conn): (Option<OwnedFd>, Vec<OwnedFd>) = match a.send {
        SendWay::Connected => (
            None,
            a.to.iter()
                .map(|&to| {
                    let s = udp_socket()?;
                    connect(&s, to)?;
                    Ok(s)
                })
                .collect::<io::Result<_>>()?,
        ),
        SendWay::OneCall => (Some(udp_socket()?), Vec::new()),
    };
    let addrs: Vec<libc::sockaddr_in> = a.to.iter().map(|&t| sockaddr(t)).collect();
    let ssrcs: Vec<u32> = (0..n_dest).map(|d| 0x5000_0000 + d as u32).collect();
    let mut seqs: Vec<u16> = vec![0; n_dest];

    let mut buf = vec![0u8; BATCH * SLOT];
    let base = buf.as_mut_ptr();
    let mut rx_iov: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            // SAFETY: slot `i` lies within `buf`.
            iov_base: unsafe { base.add(i * SLOT) }.cast(),
            iov_len: SLOT,
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut rx: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect();
    for (m, v) in rx.iter_mut().zip(rx_iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // Send side: per message one iovec (udp) or two (rtp: the header, then
    // the received payload after the source's header).
    let per = if a.rtp { 2 } else { 1 };
    let most = match a.send {
        SendWay::Connected => BATCH,
        SendWay::OneCall => BATCH * n_dest.max(1),
    };
    let mut hdrs: Vec<[u8; RTP_HEADER]> = vec![[0; RTP_HEADER]; most];
    let mut tx_iov: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        };
        most * per
    ];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut tx: Vec<libc::mmsghdr> = (0..most).map(|_| unsafe { mem::zeroed() }).collect();

    eprintln!("relay-stock: listening on {}", a.listen);
    let (mut datagrams, mut sent, mut errors, mut syscalls, mut skipped) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    // Batches relayed (receive calls that returned datagrams to send).
    let mut batches = 0u64;
    // Offset and length of each datagram to relay.
    let mut kept = [(0usize, 0usize); BATCH];
    while !STOP.load(Ordering::Relaxed) {
        for m in rx.iter_mut() {
            m.msg_len = 0;
        }
        // SAFETY: `rx` holds BATCH mmsghdrs whose iovecs point into `buf`.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                rx.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        syscalls += 1;
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN) => continue,
                _ => return Err(e),
            }
        }
        // Only the datagrams worth relaying: whole ones, with an RTP
        // header in rtp mode.
        let mut n = 0;
        for (i, m) in rx.iter().enumerate().take(r as usize) {
            datagrams += 1;
            let len = m.msg_len as usize;
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0
                || len == 0
                || (a.rtp && len <= RTP_HEADER)
            {
                skipped += 1;
                continue;
            }
            kept[n] = (i * SLOT, len);
            n += 1;
        }
        if n == 0 {
            continue;
        }
        batches += 1;
        if n_dest == 0 {
            continue;
        }
        let slot = |k: usize| -> (*mut u8, usize) {
            // SAFETY: the offset is a slot start within `buf`.
            (unsafe { base.add(kept[k].0) }, kept[k].1)
        };
        match a.send {
            SendWay::Connected => {
                // The messages are the same for every destination but for
                // their RTP headers.
                for k in 0..n {
                    let (p, len) = slot(k);
                    if a.rtp {
                        tx_iov[2 * k] = libc::iovec {
                            iov_base: hdrs[k].as_mut_ptr().cast(),
                            iov_len: RTP_HEADER,
                        };
                        tx_iov[2 * k + 1] = libc::iovec {
                            // SAFETY: within the datagram.
                            iov_base: unsafe { p.add(RTP_HEADER) }.cast(),
                            iov_len: len - RTP_HEADER,
                        };
                    } else {
                        tx_iov[k] = libc::iovec {
                            iov_base: p.cast(),
                            iov_len: len,
                        };
                    }
                    tx[k].msg_hdr.msg_iov = &mut tx_iov[per * k];
                    tx[k].msg_hdr.msg_iovlen = per;
                }
                for (d, s) in conn.iter().enumerate() {
                    if a.rtp {
                        for (k, h) in hdrs.iter_mut().enumerate().take(n) {
                            let (p, _) = slot(k);
                            // SAFETY: the datagram holds more than a header.
                            let rcv = unsafe { std::slice::from_raw_parts(p, RTP_HEADER) };
                            *h = rewrite_rtp(rcv, ssrcs[d], seqs[d]);
                            seqs[d] = seqs[d].wrapping_add(1);
                        }
                    }
                    let (ok, calls) = send_all(s, &mut tx[..n]);
                    sent += ok as u64;
                    errors += (n - ok) as u64;
                    syscalls += calls;
                }
            }
            SendWay::OneCall => {
                // Packet by packet, every destination: each packet leaves
                // for all as soon as it can.
                let mut m = 0;
                for k in 0..n {
                    let (p, len) = slot(k);
                    for d in 0..n_dest {
                        if a.rtp {
                            // SAFETY: the datagram holds more than a header.
                            let rcv = unsafe { std::slice::from_raw_parts(p, RTP_HEADER) };
                            hdrs[m] = rewrite_rtp(rcv, ssrcs[d], seqs[d]);
                            seqs[d] = seqs[d].wrapping_add(1);
                            tx_iov[2 * m] = libc::iovec {
                                iov_base: hdrs[m].as_mut_ptr().cast(),
                                iov_len: RTP_HEADER,
                            };
                            tx_iov[2 * m + 1] = libc::iovec {
                                // SAFETY: within the datagram.
                                iov_base: unsafe { p.add(RTP_HEADER) }.cast(),
                                iov_len: len - RTP_HEADER,
                            };
                        } else {
                            tx_iov[m] = libc::iovec {
                                iov_base: p.cast(),
                                iov_len: len,
                            };
                        }
                        let h = &mut tx[m].msg_hdr;
                        h.msg_iov = &mut tx_iov[per * m];
                        h.msg_iovlen = per;
                        h.msg_name = (&addrs[d] as *const libc::sockaddr_in).cast_mut().cast();
                        h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                        m += 1;
                    }
                }
                let s = out.as_ref().expect("one-call socket");
                for chunk in tx[..m].chunks_mut(MAX_MMSG) {
                    let (ok, calls) = send_all(s, chunk);
                    sent += ok as u64;
                    errors += (chunk.len() - ok) as u64;
                    syscalls += calls;
                }
            }
        }
    }
    println!(
        "relay-stock listen={} dests={n_dest} send={:?} rtp={} datagrams={datagrams} batches={batches} skipped={skipped} sent={sent} send_errors={errors} syscalls={syscalls}",
        a.listen, a.send, a.rtp
    );
    Ok(errors == 0)
}

/// sendmmsg of every message of `msgs` (again after a partial send; a
/// message that fails is skipped): how many were sent, and the calls made.
fn send_all(s: &OwnedFd, msgs: &mut [libc::mmsghdr]) -> (usize, u64) {
    let (mut done, mut ok, mut calls) = (0, 0, 0);
    while done < msgs.len() {
        let rest = &mut msgs[done..];
        // SAFETY: `rest` are valid mmsghdrs whose iovecs and names point
        // at live memory.
        let r = unsafe {
            libc::sendmmsg(
                s.as_raw_fd(),
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                0,
            )
        };
        calls += 1;
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The first message failed: skip it.
            done += 1;
        } else {
            done += r as usize;
            ok += r as usize;
        }
    }
    (ok, calls)
}

/// Runs `f` on a thread in network namespace `netns` (sockets it opens
/// stay in that namespace).
fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = fs::File::open(format!("/run/netns/{netns}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a namespace descriptor: this thread only.
        cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// CPU time (ns; instructions under `-icount`) of process `pid`, all its
/// threads: its CPU-time clock (`clock_getcpuclockid`), which reads the
/// scheduler's run time to the nanosecond, not tick samples.
fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut clk: libc::clockid_t = 0;
    // SAFETY: `clk` is a valid clockid_t to fill.
    let r = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clk) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    cvt(unsafe { libc::clock_gettime(clk, &mut ts) })?;
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The kernel's worker threads, where deferred work runs: `kworker/*`
/// (workqueues) and `ksoftirqd/*` (softirqs the interrupted context
/// left).
fn kthread_pids() -> io::Result<Vec<u32>> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc")? {
        let Some(pid) = e?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("kworker") || comm.starts_with("ksoftirqd") {
            v.push(pid);
        }
    }
    Ok(v)
}

/// CPU time (ns) of the kernel's worker threads: those of `pids` that
/// still exist, and any started since.
fn kthreads_ns(pids: &mut Vec<u32>) -> io::Result<u64> {
    for p in kthread_pids()? {
        if !pids.contains(&p) {
            pids.push(p);
        }
    }
    Ok(pids.iter().filter_map(|&p| cpu_ns(p).ok()).sum())
}

/// `ifname`'s transmitted packets in network namespace `netns`.
fn tx_packets_in(netns: &str, ifname: &str) -> io::Result<u64> {
    let ifname = ifname.to_owned();
    in_netns(netns, move || {
        let text = fs::read_to_string("/proc/thread-self/net/dev")?;
        parse_net_dev_tx(&text, &ifname)
            .ok_or_else(|| io::Error::other(format!("no {ifname} in /proc/net/dev")))
    })
}

/// tx_packets of `ifname` in the text of `/proc/net/dev`.
pub fn parse_net_dev_tx(text: &str, ifname: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        (name.trim() == ifname).then(|| rest.split_whitespace().nth(9)?.parse().ok())?
    })
}

/// The value of `key=` in a summary line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The source: a connected UDP socket in the source namespace sending RTP
/// packets (`PAYLOAD` bytes of 0x47 behind the header) at a steady rate.
struct Source {
    sock: OwnedFd,
    seq: u16,
    /// A burst's packets.
    packets: Vec<Vec<u8>>,
}

impl Source {
    fn open(netns: &str, to: SocketAddrV4) -> io::Result<Self> {
        let sock = in_netns(netns, move || {
            let s = udp_socket()?;
            connect(&s, to)?;
            Ok(s)
        })?;
        let mut packet = vec![0x47u8; RTP_HEADER + PAYLOAD];
        packet[0] = 0x80;
        packet[1] = RTP_PT_MP2T;
        packet[8..12].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
        Ok(Self {
            sock,
            seq: 0,
            packets: vec![packet],
        })
    }

    /// Sends `count` packets, `burst` at a time (one `sendmmsg`), at
    /// `rate` per second; returns how many the socket took.
    fn send(&mut self, count: u64, rate: u64, burst: usize) -> io::Result<u64> {
        let burst = burst.max(1);
        let period = burst as u64 * 1_000_000_000 / rate.max(1);
        if self.packets.len() < burst {
            self.packets = vec![self.packets[0].clone(); burst];
        }
        let t0 = clock_ns(libc::CLOCK_MONOTONIC);
        let mut sent = 0;
        let mut j = 0;
        while sent < count {
            sleep_until(t0 + j * period);
            j += 1;
            let n = burst.min((count - sent) as usize);
            let mut iovs = Vec::with_capacity(n);
            for p in &mut self.packets[..n] {
                let seq = self.seq;
                self.seq = self.seq.wrapping_add(1);
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                let ts = u32::from(seq).wrapping_mul(RTP_TS_INCREMENT);
                p[4..8].copy_from_slice(&ts.to_be_bytes());
                iovs.push(libc::iovec {
                    iov_base: p.as_mut_ptr().cast(),
                    iov_len: p.len(),
                });
            }
            // SAFETY: all-zero is a valid mmsghdr.
            let mut msgs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
            for (m, v) in msgs.iter_mut().zip(iovs.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            let (ok, _) = send_all(&self.sock, &mut msgs);
            if ok != n {
                return Err(io::Error::other(format!("the source sent {ok} of {n}")));
            }
            sent += n as u64;
        }
        Ok(sent)
    }
}

/// The calling thread at real-time priority (`SCHED_FIFO` 1) while it
/// lives; back to `SCHED_OTHER` when dropped.
struct Fifo;

impl Fifo {
    fn enter() -> io::Result<Self> {
        let p = libc::sched_param { sched_priority: 1 };
        // SAFETY: sets this thread's policy; `p` is valid.
        cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) })?;
        Ok(Self)
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let p = libc::sched_param { sched_priority: 0 };
        // SAFETY: as in `enter`.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &p) };
    }
}

/// A relay process in the relay's namespace, its output collected.
struct RelayProc {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl RelayProc {
    fn start(
        a: &RelayBenchArgs,
        kind: Option<RelayKind>,
        dests: usize,
        rtp: bool,
    ) -> io::Result<Self> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &a.relay_netns]);
        let listen = a.listen.to_string();
        match kind {
            Some(RelayKind::Mdwrite) => {
                cmd.args([
                    "mdwrite",
                    "relay",
                    "--backend",
                    "module",
                    "--listen",
                    &listen,
                ]);
            }
            Some(k) => {
                cmd.arg(std::env::current_exe()?).args([
                    "relay-stock",
                    "--listen",
                    &listen,
                    "--send",
                    if k == RelayKind::Stock {
                        "connected"
                    } else {
                        "one-call"
                    },
                ]);
            }
            None => {
                // The sink: the stock relay without destinations.
                cmd.arg(std::env::current_exe()?)
                    .args(["relay-stock", "--listen", &listen]);
            }
        }
        if rtp {
            cmd.arg("--rtp");
        }
        for d in 0..dests {
            cmd.args(["--to", &dest_sockaddr(d).to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let ready = Arc::new(Mutex::new(None::<bool>));
        let r = ready.clone();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    *r.lock().unwrap() = Some(true);
                }
                text.push_str(&line);
                text.push('\n');
            }
            r.lock().unwrap().get_or_insert(false);
            text
        });
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let mut p = Self {
            child,
            stdout,
            stderr,
        };
        for _ in 0..6000 {
            match *ready.lock().unwrap() {
                Some(true) => return Ok(p),
                Some(false) => break,
                None => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
        let err = p.stderr.join().unwrap_or_default();
        Err(io::Error::other(format!(
            "the relay did not start: {}",
            err.trim()
        )))
    }

    /// Stops it (SIGTERM): its exit status, standard output and error.
    fn stop(mut self) -> io::Result<(bool, String, String)> {
        // SAFETY: signals our own child (`ip netns exec` executed the
        // relay in its place, same pid).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let st = self.child.wait()?;
        let out = self.stdout.join().unwrap_or_default();
        let err = self.stderr.join().unwrap_or_default();
        Ok((st.success(), out, err))
    }
}

/// One row's figures.
#[derive(Default)]
struct RowResult {
    /// Datagrams per relayed batch (per call of `mdwrite relay`, per
    /// receive of the stock relay), over the whole row.
    per_batch: Option<f64>,
    received: u64,
    sent: u64,
    busy_per_rx: f64,
    /// The relay process's own CPU time (its CPU-time clock) per
    /// received packet: its code and system calls, and the softirq work
    /// that ran in its context.
    proc_per_rx: Option<f64>,
    /// CPU time of the kernel's worker threads (`kworker/*`,
    /// `ksoftirqd/*`) per received packet.
    kthreads_per_rx: f64,
    note: String,
}

/// Runs one row: `kind` None is the sink (receive only) when `relay` is
/// true, the baseline (no relay, packets dropped at routing) when false.
fn run_row(
    a: &RelayBenchArgs,
    soaker: &Soaker,
    kind: Option<RelayKind>,
    relay: bool,
    dests: usize,
    rtp: bool,
    burst: usize,
) -> io::Result<RowResult> {
    let to = if relay {
        a.listen
    } else {
        SocketAddrV4::new(a.drop_addr, a.listen.port())
    };
    let mut src = Source::open(&a.src_netns, to)?;
    let proc = if relay {
        Some(RelayProc::start(a, kind, dests, rtp)?)
    } else {
        None
    };
    let tx0 = tx_packets_in(&a.relay_netns, &a.out_ifname)?;
    let pid = proc.as_ref().map(|p| p.child.id());
    let mut run = || -> io::Result<(u64, f64, u64, u64)> {
        // The source outranks the relay: a burst is queued whole before
        // the relay runs, as when a NIC's interrupt hands the stack several
        // packets at once (otherwise the woken relay preempts the source
        // between two packets of a burst, and how many a batch holds
        // depends on scheduling).
        let _fifo = Fifo::enter()?;
        src.send(a.warmup, a.rate, burst)?;
        sleep_until(clock_ns(libc::CLOCK_MONOTONIC) + 20_000_000);
        // Read outside the spinner's window (reading costs instructions).
        let p0 = pid.map_or(Ok(0), cpu_ns)?;
        let mut kpids = Vec::new();
        let k0 = kthreads_ns(&mut kpids)?;
        let s0 = soaker.sample();
        let n = src.send(a.packets, a.rate, burst)?;
        // The last packets' way through the relay.
        sleep_until(clock_ns(libc::CLOCK_MONOTONIC) + 20_000_000);
        let busy = soaker.busy(s0, soaker.sample()) as f64;
        let p1 = pid.map_or(Ok(0), cpu_ns)?;
        // A worker started during the window counts from 0.
        let k1 = kthreads_ns(&mut kpids)?;
        Ok((n, busy, p1 - p0, k1.saturating_sub(k0)))
    };
    let r = run();
    let stopped = proc.map(RelayProc::stop).transpose()?;
    let (timed, busy, proc_ns, kthread_ns) = r?;
    let tx1 = tx_packets_in(&a.relay_netns, &a.out_ifname)?;
    let total = a.warmup + timed;
    let mut notes = Vec::new();
    let mut res = RowResult {
        received: timed,
        sent: timed * dests as u64,
        busy_per_rx: busy / timed.max(1) as f64,
        proc_per_rx: pid.map(|_| proc_ns as f64 / timed.max(1) as f64),
        kthreads_per_rx: kthread_ns as f64 / timed.max(1) as f64,
        ..Default::default()
    };
    let want_tx = if relay { total * dests as u64 } else { 0 };
    if tx1 - tx0 != want_tx {
        notes.push(format!(
            "{} sent on {} ({} expected)",
            tx1 - tx0,
            a.out_ifname,
            want_tx
        ));
    }
    if let Some((ok, out, err)) = stopped {
        let head = out.lines().next().unwrap_or("");
        let datagrams: Option<u64> = field(head, "datagrams").and_then(|v| v.parse().ok());
        if datagrams != Some(total) {
            notes.push(format!(
                "relay received {} of {total}",
                datagrams.map_or("?".into(), |d| d.to_string())
            ));
        }
        let batches = field(head, "calls").or(field(head, "batches"));
        res.per_batch = batches
            .and_then(|b| b.parse::<f64>().ok())
            .filter(|&b| b > 0.0)
            .map(|b| total as f64 / b);
        match kind {
            Some(RelayKind::Mdwrite) => {
                if field(head, "backend") != Some("module") {
                    notes.push(format!("backend {:?}", field(head, "backend")));
                }
                if field(head, "write_errors") != Some("0") {
                    notes.push(format!("write_errors {:?}", field(head, "write_errors")));
                }
            }
            _ => {
                if field(head, "send_errors") != Some("0") {
                    notes.push(format!("send_errors {:?}", field(head, "send_errors")));
                }
            }
        }
        if !ok {
            notes.push(format!("relay failed: {}", err.trim()));
        }
    }
    res.note = notes.join("; ");
    Ok(res)
}

/// Runs every row and prints the table; false if a row failed.
pub fn relay_bench(a: &RelayBenchArgs) -> io::Result<bool> {
    println!(
        "relay: a {} packet/s RTP stream ({PAYLOAD}-byte payloads), veth {} -> {} ({}), relayed to N destinations on {} (dummy); {} packets timed after {} untimed per row",
        a.rate, a.src_netns, a.relay_netns, a.listen, a.out_ifname, a.packets, a.warmup
    );
    let mut soaker = Soaker::start(20_000_000)?;
    let (lo, hi) = soaker.calibrate_min(20, 20_000_000)?;
    println!(
        "idle spinner: {lo:.4} ns per iteration (the cheapest of 20 windows of 20 ms; the dearest {hi:.4})"
    );
    println!();
    println!("| mode | relay | N | burst | datagrams / batch | packets received | packets sent | busy guest instr / received packet | relay instr / received packet | relay instr / packet sent | relay process CPU / received packet | kworker + ksoftirqd CPU / received packet | note |");
    println!(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let mut ok = true;
    let mut csv = String::from(
        "mode,relay,dests,burst,per_batch,received,sent,busy_per_rx,relay_per_rx,relay_per_sent,process_per_rx,kthreads_per_rx,status,note\n",
    );
    let mut row = |mode: &str,
                   name: &str,
                   dests: usize,
                   burst: usize,
                   r: &io::Result<RowResult>,
                   base: f64| {
        match r {
            Ok(r) => {
                let relay = r.busy_per_rx - base;
                let per_sent = if r.sent > 0 {
                    format!("{:.0}", relay * r.received as f64 / r.sent as f64)
                } else {
                    String::new()
                };
                let per_rx = if base > 0.0 {
                    format!("{relay:.0}")
                } else {
                    String::new()
                };
                let status = if r.note.is_empty() { "ok" } else { "failed" };
                let per_batch = r.per_batch.map_or(String::new(), |b| format!("{b:.1}"));
                let process = r.proc_per_rx.map_or(String::new(), |p| format!("{p:.0}"));
                let kthreads = format!("{:.0}", r.kthreads_per_rx);
                ok &= r.note.is_empty();
                println!(
                    "| {mode} | {name} | {dests} | {burst} | {per_batch} | {} | {} | {:.0} | {per_rx} | {per_sent} | {process} | {kthreads} | {} |",
                    r.received, r.sent, r.busy_per_rx, r.note
                );
                csv.push_str(&format!(
                    "{mode},{name},{dests},{burst},{per_batch},{},{},{:.0},{per_rx},{per_sent},{process},{kthreads},{status},\"{}\"\n",
                    r.received, r.sent, r.busy_per_rx, r.note
                ));
            }
            Err(e) => {
                ok = false;
                println!("| {mode} | {name} | {dests} | {burst} | | | | | | | | | failed: {e} |");
                csv.push_str(&format!(
                    "{mode},{name},{dests},{burst},,,,,,,,,failed,\"{e}\"\n"
                ));
            }
        }
    };
    for &burst in &a.bursts {
        let base = run_row(a, &soaker, None, false, 0, false, burst);
        let b = base.as_ref().map(|r| r.busy_per_rx).unwrap_or(0.0);
        row(
            "-",
            "none (baseline: dropped at routing)",
            0,
            burst,
            &base,
            0.0,
        );
        let sink = run_row(a, &soaker, None, true, 0, false, burst);
        row("-", "sink (recvmmsg only)", 0, burst, &sink, b);
        for mode in &a.modes {
            let rtp = match mode.as_str() {
                "udp" => false,
                "rtp" => true,
                m => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("unknown mode '{m}'"),
                    ))
                }
            };
            for &n in &a.dests {
                for &k in &a.relays {
                    let r = run_row(a, &soaker, Some(k), true, n, rtp, burst);
                    row(mode, k.name(), n, burst, &r, b);
                }
            }
        }
    }
    drop(soaker);
    if let Some(path) = &a.csv {
        fs::write(path, csv)?;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_rewritten() {
        let mut rcv = [0u8; 20];
        rcv[0] = 0x90; // version 2, extension bit
        rcv[1] = 0x80 | 33; // marker, MP2T
        rcv[2..4].copy_from_slice(&7u16.to_be_bytes());
        rcv[4..8].copy_from_slice(&90_000u32.to_be_bytes());
        rcv[8..12].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        let h = rewrite_rtp(&rcv, 0x1234_5678, 41);
        assert_eq!(h[0], 0x80);
        assert_eq!(h[1], 0x80 | 33);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 41);
        assert_eq!(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), 90_000);
        assert_eq!(u32::from_be_bytes([h[8], h[9], h[10], h[11]]), 0x1234_5678);
    }

    #[test]
    fn net_dev_parsed() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n  \
             fan0:       0       0    0    0    0     0          0         0  1328000    1000    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev_tx(text, "fan0"), Some(1000));
        assert_eq!(parse_net_dev_tx(text, "lo"), Some(0));
        assert_eq!(parse_net_dev_tx(text, "fan"), None);
    }

    #[test]
    fn summary_fields() {
        let l = "relay listen=1.2.3.4:5 backend=module datagrams=2200 write_errors=0 end=signal";
        assert_eq!(field(l, "datagrams"), Some("2200"));
        assert_eq!(field(l, "backend"), Some("module"));
        assert_eq!(field(l, "data"), None);
    }
}
