// SPDX-License-Identifier: GPL-2.0

//! `mdwrite recv`: receive UDP (optionally RTP) on one or more addresses,
//! analyse it and report.

use std::{
    fs::File,
    io::{BufWriter, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use clap::Args;
use mdwrite::{
    media::{
        analysis::{RtpAnalyzer, RtpReport},
        rtp::{RtpHeader, PT_MP2T},
        ts::{SYNC_BYTE, TS_PACKET_SIZE},
    },
    udp::{enable_rx_timestamps, recv_batch, wait_readable, MAX_BATCH},
};

use super::endpoint::{parse_listen, Endpoint};
use crate::{
    error::{Error, EXIT_LOSS, EXIT_OK},
    units::parse_seconds,
};

/// The largest datagram kept whole (an IPv4 UDP payload can be 65507).
const SLOT: usize = 65536;

/// How often a listener looks at its stop conditions while idle.
const POLL: Duration = Duration::from_millis(100);

/// Receive datagrams, check RTP continuity, loss, reordering and jitter,
/// optionally save the payload, and print a report per listener.
///
/// Stops at the first of --duration, --packets, --idle-timeout, SIGINT or
/// SIGTERM (without any of the first three, only at a signal). The report
/// goes to stdout, one line of key=value fields per listener and RTP stream
/// (see Documentation/cli.rst); the bound address of each listener is
/// printed on stderr as "mdwrite recv: listening on ADDR:PORT" once all are
/// bound.
#[derive(Args, Debug)]
pub(crate) struct RecvArgs {
    /// Address (or host name) and UDP port to receive on; repeat for more
    /// listeners. ":PORT" is every IPv4 address; port 0 picks a free port
    /// (see the "listening on" line). A multicast address is joined, on
    /// --interface or the default one.
    #[arg(long, required = true, value_name = "ADDR:PORT", value_parser = parse_listen)]
    listen: Vec<Endpoint>,
    /// Join multicast groups on this interface.
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// Source-specific multicast: receive the groups only from this source
    /// address, IPv4 or IPv6 like the groups (MCAST_JOIN_SOURCE_GROUP).
    #[arg(long, value_name = "ADDR")]
    source: Option<IpAddr>,
    /// The datagrams are RTP: analyse the sequence numbers, timestamps and
    /// SSRCs, and strip the RTP header from the saved payload.
    #[arg(long)]
    rtp: bool,
    /// Write the received payload to FILE (created or truncated), in
    /// arrival order: the datagrams, or with --rtp their RTP payloads; give
    /// it once per --listen, in the same order.
    #[arg(long, value_name = "FILE")]
    output: Vec<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Stop a listener after it received this many datagrams.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    packets: Option<u64>,
    /// Stop a listener when nothing arrived for S seconds (counted from the
    /// start until the first datagram).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    idle_timeout: Option<Duration>,
    /// Exit with status 3 when an RTP stream lost packets or a listener
    /// received nothing.
    #[arg(long)]
    fail_on_loss: bool,
    /// The RTP timestamp clock for the jitter, Hz (90000 for MPEG-TS).
    #[arg(long, value_name = "HZ", default_value_t = 90_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    clock_rate: u32,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Inter-arrival gaps of the datagrams from one source to one listener.
#[derive(Default)]
struct Gaps {
    /// Arrival time of the last datagram (kernel receive time).
    last: Option<Duration>,
    /// Every gap, in nanoseconds (at most `u32::MAX`, about 4.3 s).
    gaps: Vec<u32>,
}

/// What [`Gaps`] say: percentiles in nanoseconds and the largest burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct GapReport {
    packets: u64,
    p50: u64,
    p99: u64,
    max: u64,
    /// The most packets in one burst: a run of datagrams each arriving less
    /// than a quarter of the mean gap (the source's average spacing: from
    /// its first to its last datagram, over the gaps) after the one before
    /// it; 1 when none arrives back to back.
    largest_burst: u64,
}

impl Gaps {
    fn push(&mut self, at: Duration) {
        if let Some(last) = self.last {
            let gap = at.saturating_sub(last).as_nanos();
            self.gaps.push(u32::try_from(gap).unwrap_or(u32::MAX));
        }
        self.last = Some(at);
    }

    fn report(&self) -> GapReport {
        let packets = self.gaps.len() as u64 + u64::from(self.last.is_some());
        if self.gaps.is_empty() {
            return GapReport {
                packets,
                largest_burst: packets,
                ..GapReport::default()
            };
        }
        let mut sorted = self.gaps.clone();
        sorted.sort_unstable();
        // Nearest rank.
        let rank = |q: usize| u64::from(sorted[(sorted.len() * q).div_ceil(100).max(1) - 1]);
        let p50 = rank(50);
        let total: u64 = self.gaps.iter().map(|&g| u64::from(g)).sum();
        let threshold = total / self.gaps.len() as u64 / 4;
        let (mut run, mut largest) = (1u64, 1u64);
        for &g in &self.gaps {
            if u64::from(g) < threshold {
                run += 1;
                largest = largest.max(run);
            } else {
                run = 1;
            }
        }
        GapReport {
            packets,
            p50,
            p99: rank(99),
            max: u64::from(sorted[sorted.len() - 1]),
            largest_burst: largest,
        }
    }
}

/// Why a listener stopped.
#[derive(Clone, Copy, Debug)]
enum End {
    Duration,
    Packets,
    Idle,
    Signal,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Duration => "duration",
            End::Packets => "packets",
            End::Idle => "idle",
            End::Signal => "signal",
        }
    }
}

/// One RTP stream seen by a listener.
struct Stream {
    analyzer: RtpAnalyzer,
    /// MPEG-TS payloads (PT 33) that are not whole sync-aligned TS packets.
    ts_errors: u64,
    /// The address its first packet came from.
    from: Option<SocketAddr>,
    /// Its inter-arrival gaps.
    gaps: Gaps,
}

/// What one listener saw.
struct Report {
    addr: SocketAddr,
    datagrams: u64,
    bytes: u64,
    not_rtp: u64,
    streams: Vec<Stream>,
    /// Inter-arrival gaps of every datagram to the listener.
    gaps: Gaps,
    /// Source addresses seen (up to 64 kept).
    sources: Vec<SocketAddr>,
    end: End,
}

/// Whether an MPEG-TS payload is whole TS packets, each with its sync byte.
fn ts_aligned(payload: &[u8]) -> bool {
    payload.len() % TS_PACKET_SIZE == 0 && payload.chunks(TS_PACKET_SIZE).all(|p| p[0] == SYNC_BYTE)
}

/// Binds `addr` and joins it if it is a multicast group: on `ifindex`
/// (0: the default interface), from `source` only if given.
pub(crate) fn bind(
    addr: SocketAddr,
    ifindex: u32,
    source: Option<IpAddr>,
) -> Result<UdpSocket, Error> {
    use rustix::net::sockopt;
    let listen_err = |source| Error::Listen { addr, source };
    if let Some(src) = source {
        if !addr.ip().is_multicast() {
            return Err(Error::Usage(format!(
                "--source needs a multicast --listen address, not {addr}"
            )));
        }
        if src.is_ipv4() != addr.is_ipv4() {
            return Err(Error::Usage(format!(
                "--source {src} needs a multicast --listen address of its family, not {addr}"
            )));
        }
    }
    let sock = UdpSocket::bind(addr).map_err(listen_err)?;
    match (addr.ip(), source) {
        (IpAddr::V4(g), Some(IpAddr::V4(src))) => {
            let local = if ifindex == 0 {
                Ipv4Addr::UNSPECIFIED
            } else {
                interface_v4(ifindex).map_err(listen_err)?
            };
            sockopt::set_ip_add_source_membership(&sock, &g, &local, &src)
                .map_err(|e| listen_err(e.into()))?
        }
        (IpAddr::V6(g), Some(IpAddr::V6(src))) => {
            join_source_v6(&sock, g, src, ifindex).map_err(listen_err)?
        }
        (IpAddr::V4(g), _) if g.is_multicast() => {
            sockopt::set_ip_add_membership_with_ifindex(&sock, &g, &Ipv4Addr::UNSPECIFIED, ifindex)
                .map_err(|e| listen_err(e.into()))?
        }
        (IpAddr::V6(g), _) if g.is_multicast() => {
            sock.join_multicast_v6(&g, ifindex).map_err(listen_err)?
        }
        _ => {}
    }
    // Room for bursts; the kernel caps it at net.core.rmem_max.
    let _ = sockopt::set_socket_recv_buffer_size(&sock, 8 << 20);
    // Arrival times for the gap statistics; without them the time each
    // batch was read is used.
    let _ = enable_rx_timestamps(&sock);
    Ok(sock)
}

/// Joins the IPv6 group `group` on `ifindex` (0: the routing table's
/// choice) for datagrams from `source` only: `MCAST_JOIN_SOURCE_GROUP`
/// (RFC 3678; MLDv2), which rustix does not wrap.
fn join_source_v6(
    sock: &UdpSocket,
    group: Ipv6Addr,
    source: Ipv6Addr,
    ifindex: u32,
) -> std::io::Result<()> {
    let storage = |ip: Ipv6Addr| {
        // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: ip.octets(),
            },
            sin6_scope_id: 0,
        };
        // SAFETY: sockaddr_storage is larger than sockaddr_in6 and aligned
        // for it (that is its purpose); the write stays inside `ss`.
        unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
        ss
    };
    let req = libc::group_source_req {
        gsr_interface: ifindex,
        gsr_group: storage(group),
        gsr_source: storage(source),
    };
    // SAFETY: MCAST_JOIN_SOURCE_GROUP reads a group_source_req, whose
    // address and size are passed; `req` lives for the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::MCAST_JOIN_SOURCE_GROUP,
            (&raw const req).cast(),
            size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An IPv4 address of interface `ifindex` (for IP_ADD_SOURCE_MEMBERSHIP,
/// which names the interface by address).
fn interface_v4(ifindex: u32) -> std::io::Result<Ipv4Addr> {
    let name = mdwrite::interface_name(ifindex)?;
    nix::ifaddrs::getifaddrs()?
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("interface {name} has no IPv4 address"),
            )
        })
}

/// The index of `--interface`, 0 without it.
pub(crate) fn ifindex_of(interface: Option<&str>) -> Result<u32, Error> {
    match interface {
        None => Ok(0),
        Some(name) => mdwrite::interface_index(name).map_err(Error::UnknownInterface),
    }
}

struct Limits {
    duration: Option<Duration>,
    packets: Option<u64>,
    idle: Option<Duration>,
    rtp: bool,
    clock_rate: u32,
}

fn listen(
    sock: UdpSocket,
    mut out: Option<(PathBuf, BufWriter<File>)>,
    limits: &Limits,
    stop: &AtomicBool,
    start: Instant,
) -> Result<Report, Error> {
    let addr = sock.local_addr().map_err(|e| Error::io("getsockname", e))?;
    let mut r = Report {
        addr,
        datagrams: 0,
        bytes: 0,
        not_rtp: 0,
        streams: Vec::new(),
        gaps: Gaps::default(),
        sources: Vec::new(),
        end: End::Signal,
    };
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut buf = vec![0u8; SLOT * MAX_BATCH];
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last = start;
    let end = loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break End::Signal;
        }
        let mut wait = POLL;
        if let Some(d) = limits.duration {
            match (start + d).checked_duration_since(now) {
                Some(left) if !left.is_zero() => wait = wait.min(left),
                _ => break End::Duration,
            }
        }
        if let Some(d) = limits.idle {
            match (last + d).checked_duration_since(now) {
                Some(left) if !left.is_zero() => wait = wait.min(left),
                _ => break End::Idle,
            }
        }
        if !wait_readable(&sock, Some(wait)).map_err(|e| Error::io("poll", e))? {
            continue;
        }
        batch.clear();
        // Take no more than --packets allows.
        let room = limits.packets.map_or(MAX_BATCH as u64, |max| {
            (max - r.datagrams).min(MAX_BATCH as u64)
        });
        recv_batch(&sock, &mut buf[..SLOT * room as usize], SLOT, &mut batch)
            .map_err(|e| Error::io(format!("receive on {addr}"), e))?;
        if batch.is_empty() {
            continue;
        }
        last = Instant::now();
        let arrival = last - start;
        for d in &batch {
            // The kernel's receive time; without it, when it was read.
            let at = d.received.unwrap_or(epoch + arrival);
            r.gaps.push(at);
            if let Some(from) = d.from {
                if r.sources.len() < 64 && !r.sources.contains(&from) {
                    r.sources.push(from);
                }
            }
            r.datagrams += 1;
            r.bytes += d.len as u64;
            let datagram = &buf[d.offset..d.offset + d.len];
            let payload = if limits.rtp {
                match RtpHeader::parse(datagram) {
                    Ok((h, payload)) => {
                        let ts_bad = h.payload_type == PT_MP2T && !ts_aligned(payload);
                        let i = match r.streams.iter().position(|s| s.analyzer.ssrc() == h.ssrc) {
                            Some(i) => {
                                r.streams[i].analyzer.push(&h, payload.len(), arrival);
                                i
                            }
                            None => {
                                let analyzer =
                                    RtpAnalyzer::new(limits.clock_rate, &h, payload.len(), arrival);
                                r.streams.push(Stream {
                                    analyzer,
                                    ts_errors: 0,
                                    from: d.from,
                                    gaps: Gaps::default(),
                                });
                                r.streams.len() - 1
                            }
                        };
                        r.streams[i].gaps.push(at);
                        r.streams[i].ts_errors += u64::from(ts_bad);
                        Some(payload)
                    }
                    Err(_) => {
                        r.not_rtp += 1;
                        None
                    }
                }
            } else {
                Some(datagram)
            };
            if let (Some((path, w)), Some(p)) = (&mut out, payload) {
                w.write_all(p).map_err(|source| Error::Output {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        if limits.packets.is_some_and(|max| r.datagrams >= max) {
            break End::Packets;
        }
    };
    if let Some((path, mut w)) = out {
        w.flush().map_err(|source| Error::Output { path, source })?;
    }
    r.end = end;
    Ok(r)
}

fn stream_line(addr: SocketAddr, s: &Stream, end: End, not_rtp: u64) -> String {
    let r: RtpReport = s.analyzer.report();
    format!(
        "listen={addr} ssrc={:#010x} pt={} packets={} bytes={} expected={} lost={} \
         duplicates={} reordered={} seq_errors={} first_seq={} last_seq={} jitter={:.2} \
         jitter_ms={:.3} ts_errors={} not_rtp={not_rtp} {} end={}",
        r.ssrc,
        r.payload_type,
        r.packets,
        r.payload_bytes,
        r.expected,
        r.lost,
        r.duplicates,
        r.reordered,
        r.seq_errors,
        r.first_seq,
        r.last_seq,
        r.jitter,
        r.jitter_ms(),
        s.ts_errors,
        gap_fields(s.from, &s.gaps.report()),
        end.name()
    )
}

/// Microseconds with three decimals, from nanoseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

/// The source and gap fields of a report line: `from=ADDR gap_p50_us=..
/// gap_p99_us=.. gap_max_us=.. largest_burst=N`.
fn gap_fields(from: Option<SocketAddr>, g: &GapReport) -> String {
    let from = from.map_or_else(|| "-".to_owned(), |a| a.to_string());
    format!(
        "from={from} gap_p50_us={:.3} gap_p99_us={:.3} gap_max_us={:.3} largest_burst={}",
        us(g.p50),
        us(g.p99),
        us(g.max),
        g.largest_burst
    )
}

/// The gap fields as JSON members of `v`.
fn gap_json(v: &mut serde_json::Value, from: Option<SocketAddr>, g: &GapReport) {
    use serde_json::json;
    v["from"] = json!(from.map(|a| a.to_string()));
    v["gap_p50_us"] = json!(us(g.p50));
    v["gap_p99_us"] = json!(us(g.p99));
    v["gap_max_us"] = json!(us(g.max));
    v["largest_burst"] = json!(g.largest_burst);
}

/// One listener's report as JSON.
fn listener_json(r: &Report, rtp: bool) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({
        "listen": r.addr.to_string(),
        "packets": r.datagrams,
        "bytes": r.bytes,
        "end": r.end.name(),
        "sources": r.sources.len(),
    });
    gap_json(&mut v, r.sources.first().copied(), &r.gaps.report());
    if rtp {
        let streams: Vec<_> = r
            .streams
            .iter()
            .map(|s| {
                let a = s.analyzer.report();
                let mut v = json!({
                    "ssrc": a.ssrc,
                    "pt": a.payload_type,
                    "packets": a.packets,
                    "bytes": a.payload_bytes,
                    "expected": a.expected,
                    "lost": a.lost,
                    "duplicates": a.duplicates,
                    "reordered": a.reordered,
                    "seq_errors": a.seq_errors,
                    "jitter_ms": a.jitter_ms(),
                    "ts_errors": s.ts_errors,
                });
                gap_json(&mut v, s.from, &s.gaps.report());
                v
            })
            .collect();
        v["streams"] = json!(streams);
        v["not_rtp"] = json!(r.not_rtp);
    }
    v
}

/// Runs the command; returns the exit status.
pub(crate) fn run(args: RecvArgs) -> Result<u8, Error> {
    if !args.output.is_empty() && args.output.len() != args.listen.len() {
        return Err(Error::Usage(format!(
            "{} --output for {} --listen: give one --output per --listen, in the same order",
            args.output.len(),
            args.listen.len()
        )));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("signal handler", e))?;
    }
    let ifindex = ifindex_of(args.interface.as_deref())?;
    let mut socks = Vec::new();
    for l in &args.listen {
        socks.push(bind(l.resolve()?, ifindex, args.source)?);
    }
    let mut outs = Vec::new();
    for path in &args.output {
        let f = File::create(path).map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
        outs.push(Some((path.clone(), BufWriter::with_capacity(1 << 20, f))));
    }
    outs.resize_with(socks.len(), || None);
    for s in &socks {
        let a = s.local_addr().map_err(|e| Error::io("getsockname", e))?;
        eprintln!("mdwrite recv: listening on {a}");
    }
    let limits = Limits {
        duration: args.duration,
        packets: args.packets,
        idle: args.idle_timeout,
        rtp: args.rtp,
        clock_rate: args.clock_rate,
    };
    let start = Instant::now();
    let reports: Vec<Result<Report, Error>> = thread::scope(|scope| {
        let handles: Vec<_> = socks
            .into_iter()
            .zip(outs)
            .map(|(sock, out)| {
                let (limits, stop) = (&limits, &*stop);
                scope.spawn(move || listen(sock, out, limits, stop, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("listener thread panicked"))
            .collect()
    });
    let mut failed = false;
    let mut first_err = None;
    let mut json = Vec::new();
    for r in reports {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        if args.json {
            failed |= r.datagrams == 0
                || (args.rtp
                    && (r.streams.is_empty()
                        || r.streams.iter().any(|s| s.analyzer.report().lost > 0)));
            json.push(listener_json(&r, args.rtp));
            continue;
        }
        if !args.rtp {
            println!(
                "listen={} packets={} bytes={} sources={} {} end={}",
                r.addr,
                r.datagrams,
                r.bytes,
                r.sources.len(),
                gap_fields(r.sources.first().copied(), &r.gaps.report()),
                r.end.name()
            );
            failed |= r.datagrams == 0;
        } else {
            if r.streams.is_empty() {
                println!(
                    "listen={} packets=0 not_rtp={} end={}",
                    r.addr,
                    r.not_rtp,
                    r.end.name()
                );
                failed = true;
            }
            for s in &r.streams {
                println!("{}", stream_line(r.addr, s, r.end, r.not_rtp));
                failed |= s.analyzer.report().lost > 0;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "listeners": json }));
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if failed && args.fail_on_loss {
        eprintln!("mdwrite recv: packets were lost (or a listener received nothing)");
        return Ok(EXIT_LOSS);
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_percentiles_and_bursts() {
        let ms = Duration::from_millis;
        let mut g = Gaps::default();
        // 1 ms apart, then 4 back to back (10 us), then 1 ms apart again.
        let mut t = ms(1000);
        let mut times = Vec::new();
        for k in 0..100u64 {
            t += if (50..53).contains(&k) {
                Duration::from_micros(10)
            } else {
                ms(1)
            };
            times.push(t);
        }
        for &at in &times {
            g.push(at);
        }
        let r = g.report();
        assert_eq!(r.packets, 100);
        assert_eq!(r.p50, 1_000_000);
        assert_eq!(r.max, 1_000_000);
        assert_eq!(r.largest_burst, 4);
        // Evenly spaced: no burst.
        let mut even = Gaps::default();
        for k in 0..10u64 {
            even.push(Duration::from_micros(500 * k));
        }
        let r = even.report();
        assert_eq!(
            (r.p50, r.p99, r.max, r.largest_burst),
            (500_000, 500_000, 500_000, 1)
        );
        // One packet: no gap.
        let mut one = Gaps::default();
        one.push(ms(1));
        assert_eq!(one.report().largest_burst, 1);
    }

    #[test]
    fn alignment() {
        let mut p = vec![0u8; 1316];
        for c in p.chunks_mut(188) {
            c[0] = SYNC_BYTE;
        }
        assert!(ts_aligned(&p));
        assert!(!ts_aligned(&p[..1315]));
        assert!(!ts_aligned(&p[94..94 + 188]));
        assert!(ts_aligned(&[]));
    }
}
