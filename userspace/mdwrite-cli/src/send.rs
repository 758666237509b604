// SPDX-License-Identifier: GPL-2.0

//! `mdwrite send`: stream files to many destinations in real time.

use std::{
    fs::File,
    io::{self, IsTerminal, Read, Seek, SeekFrom, Write},
    net::SocketAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use mdwrite::{
    interface_mtu, interface_name,
    media::{
        pcr::{estimate_bitrate, EstimateError},
        rtp::{destination_rtp, PT_DYNAMIC, PT_MP2T},
        source::{LoopReader, TailNote, TsReader},
        ts::{looks_like_ts, TsPacket, DEFAULT_PAYLOAD_SIZE, TS_PACKET_SIZE},
    },
    DestConfig, DestId, GroupOptions, MonotonicClock, Pace, Sender, StreamConfig, StreamGroup,
    StreamId, StreamStats,
};
use rustix::io::Errno;

// `super::` for the modules new to the helper, so that it also resolves
// where main.rs is compiled as a module of another program.
use super::endpoint::{parse_destination, Endpoint};
use crate::{
    error::{is_errno, is_privilege, Error},
    units::{human_bytes, human_rate, parse_bitrate, parse_duration, parse_seconds},
};

/// How much of a file the PCR bitrate estimate reads.
const ESTIMATE_LIMIT: u64 = 64 << 20;

/// How much of a pipe the PCR bitrate estimate reads (kept in memory, and
/// waited for before streaming starts).
const PIPE_ESTIMATE_LIMIT: u64 = 4 << 20;

/// A given bitrate this far from the PCR estimate (as a fraction of it)
/// gets a warning.
const BITRATE_WARN: f64 = 0.1;

/// Regions of each stream's registered buffer with the module: a tick
/// reuses its region once the call of the tick `RING_SLOTS` before has
/// completed.
const RING_SLOTS: usize = 4;

/// How long `send` retries a destination whose neighbour (ARP/NDP) is not
/// resolved yet.
const NEIGHBOUR_WAIT: Duration = Duration::from_secs(5);

/// Stream files to many UDP destinations in real time.
///
/// Each FILE is one stream, paced at its bitrate, sent to its destinations
/// with one vectored call per tick. With one FILE every --to gets it; with
/// several, each --to belongs to the nearest FILE before it on the command
/// line (`send a.ts --to X --to Y b.ts --to Z`).
///
/// On a terminal, progress is shown on stderr about once a second. At the
/// end a summary goes to stdout as key=value lines (see
/// Documentation/cli.rst).
#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// The files to stream: MPEG-TS, or any bytes with --bitrate; "-" is
    /// standard input (pipes work; --loop needs input that can seek).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A destination: IPv4 address, [IPv6] address or host name, and a UDP
    /// port (not 0); repeat for more.
    #[arg(long = "to", required = true, value_name = "ADDR:PORT",
          value_parser = parse_destination)]
    to: Vec<Endpoint>,
    /// Send RTP (RFC 3550): payload type 33 (MPEG-TS, RFC 2250) or 96
    /// (other data), 90 kHz timestamps, a random SSRC per destination.
    #[arg(long)]
    rtp: bool,
    /// Payload bitrate in bits per second, with an optional k, M or G
    /// suffix (2000000, 500k, 3.75M). Required for files that are not
    /// MPEG-TS or have no PCRs; otherwise estimated from the PCRs. With
    /// several files it belongs to the nearest FILE before it, like --to;
    /// one before every FILE is for the files without their own.
    #[arg(long, value_name = "RATE", value_parser = parse_bitrate)]
    bitrate: Vec<u64>,
    /// TTL / hop limit of the packets (default: 1 for multicast
    /// destinations, the system's 64 otherwise).
    #[arg(long, value_name = "HOPS", value_parser = clap::value_parser!(u8).range(1..))]
    ttl: Option<u8>,
    /// DSCP of the packets, 0 to 63 (46 is Expedited Forwarding).
    #[arg(long, value_name = "DSCP", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=63))]
    dscp: u8,
    /// Print the summary as one JSON object (and --stats-interval lines as
    /// JSON objects).
    #[arg(long)]
    json: bool,
    /// Print one line per destination on stdout every S seconds: its
    /// packets, bytes and rate so far.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    stats_interval: Option<Duration>,
    /// Start each file again when it ends (until --duration or Ctrl-C).
    #[arg(long = "loop")]
    looping: bool,
    /// Leave through this network interface (default: the routing table's
    /// choice for each destination).
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// Which sender implementation to use.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Payload bytes per UDP packet (after the RTP header); a multiple of
    /// 188 for MPEG-TS (default 1316: 7 TS packets).
    #[arg(long, visible_alias = "packet-size", value_name = "BYTES",
          default_value_t = DEFAULT_PAYLOAD_SIZE,
          value_parser = parse_payload_size)]
    payload_size: usize,
    /// How to read the files: detect MPEG-TS by its sync bytes, or force.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    format: Format,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// How each stream's packets are spread over the call interval: by the
    /// module (kernel), by fq from SO_TXTIME / packet departure times
    /// (txtime), by sleeping between small batches (user), or not at all
    /// (off: one burst per stream per tick). auto is kernel when the module
    /// has paced calls, else user.
    #[arg(long, value_enum, default_value_t = PaceChoice::Auto)]
    pace: PaceChoice,
    /// The latency budget: one call per this interval (paced; at most
    /// 500ms), or the longest tick (--pace off). 1ms to 1s, for example
    /// 20ms, 0.05s.
    #[arg(long, value_name = "DURATION", default_value = "20ms",
          value_parser = parse_latency)]
    latency: Duration,
}

/// `--latency`: 1 ms to 1 s.
fn parse_latency(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(1) {
        return Err(format!("--latency {s:?} is out of range (1ms to 1s)"));
    }
    Ok(d)
}

/// `--pace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PaceChoice {
    /// kernel if the module has paced calls, else user.
    Auto,
    /// The module releases each packet at its time (MDW_FEAT_PACE).
    Kernel,
    /// Departure times for fq: SO_TXTIME with the fallback, skb times
    /// through the qdisc with the module.
    Txtime,
    /// Sleep between small batches in user space.
    User,
    /// No pacing: what each stream is due leaves at once every tick.
    Off,
}

impl PaceChoice {
    fn pace(self) -> Pace {
        match self {
            PaceChoice::Auto => Pace::Auto,
            PaceChoice::Kernel => Pace::Kernel,
            PaceChoice::Txtime => Pace::Txtime,
            PaceChoice::User => Pace::User,
            PaceChoice::Off => Pace::Off,
        }
    }
}

/// The name of a resolved pace mode, for the summary.
fn pace_name(p: Pace) -> &'static str {
    match p {
        Pace::Kernel => "kernel",
        Pace::Txtime => "txtime",
        Pace::User => "user",
        Pace::Off => "off",
        _ => "auto",
    }
}

/// `--payload-size`: 1 to 65000 bytes.
fn parse_payload_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=65000) => Ok(n),
        _ => Err(format!("{s:?} is not a payload size (1 to 65000 bytes)")),
    }
}

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendChoice {
    /// The module if /dev/mdwrite opens, else the fallback.
    Auto,
    /// The mdwrite kernel module (needs CAP_NET_RAW).
    Module,
    /// Userspace UDP sockets (sendmmsg), no privilege needed.
    Fallback,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// MPEG-TS if the file starts with TS sync bytes, else raw.
    Auto,
    /// MPEG-TS: whole 188-byte packets, checked; bitrate from PCRs.
    Ts,
    /// Opaque bytes at --bitrate.
    Raw,
}

/// One file being streamed.
struct Stream {
    path: PathBuf,
    /// The opened input, until the stream starts.
    input: Option<Input>,
    /// Where a dropped partial TS packet at the end is noted.
    tail: TailNote,
    ts: bool,
    bitrate: u64,
    bitrate_from_pcr: bool,
    dests: Vec<usize>,
    id: Option<StreamId>,
    stats: StreamStats,
    end: &'static str,
}

/// One destination.
struct Dest {
    to: SocketAddr,
    stream: usize,
    config: DestConfig,
    id: DestId,
    /// Packets and payload bytes handed to the sender for it.
    packets: u64,
    bytes: u64,
}

/// An input opened once: bytes read while probing it are served again
/// first (for a pipe), or the file was rewound (when it can seek).
struct Input {
    prefix: Vec<u8>,
    at: usize,
    file: File,
    seekable: bool,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.at);
            buf[..n].copy_from_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.file.read(buf)
    }
}

impl Seek for Input {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if !self.seekable {
            // A pipe: --loop is refused before it could get here.
            return Err(io::Error::from_raw_os_error(libc::ESPIPE));
        }
        self.file.seek(pos)
    }
}

/// Which bitrate each file gets. One --bitrate is every file's. With
/// several, a --bitrate after a FILE (and before the next) is that file's,
/// and one before every FILE is for the files without their own.
pub(crate) fn assign_bitrates(
    files: &[usize],
    bitrates: &[usize],
    values: &[u64],
) -> Result<Vec<Option<u64>>, String> {
    let mut own: Vec<Option<u64>> = vec![None; files.len()];
    let mut default = None;
    if values.len() <= 1 {
        return Ok(vec![values.first().copied(); files.len()]);
    }
    if files.len() == 1 {
        return Err("one file takes one --bitrate".into());
    }
    for (&at, &v) in bitrates.iter().zip(values) {
        let slot = match files.iter().rposition(|&f| f < at) {
            Some(i) => &mut own[i],
            None => &mut default,
        };
        if slot.replace(v).is_some() {
            return Err(match files.iter().rposition(|&f| f < at) {
                Some(i) => format!("file {} has two --bitrate", i + 1),
                None => "two --bitrate before the first FILE".into(),
            });
        }
    }
    Ok(own.into_iter().map(|b| b.or(default)).collect())
}

/// Which file each --to belongs to, from the positions of the arguments on
/// the command line.
pub(crate) fn assign_destinations(files: &[usize], to: &[usize]) -> Result<Vec<usize>, String> {
    if files.len() == 1 {
        return Ok(vec![0; to.len()]);
    }
    let mut owner = Vec::with_capacity(to.len());
    for &t in to {
        match files.iter().rposition(|&f| f < t) {
            Some(i) => owner.push(i),
            None => {
                return Err(
                    "with several files, give each --to after the FILE it is for \
                            (send a.ts --to ADDR:PORT b.ts --to ADDR:PORT)"
                        .into(),
                )
            }
        }
    }
    for i in 0..files.len() {
        if !owner.contains(&i) {
            return Err(format!("file {} has no --to after it", i + 1));
        }
    }
    Ok(owner)
}

fn unreadable(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Unreadable {
        path: path.to_owned(),
        source,
    }
}

/// What probing a file found.
struct Probed {
    ts: bool,
    bitrate: u64,
    from_pcr: bool,
    input: Input,
}

/// Opens `path` ("-": standard input) once; returns the file and whether
/// it can seek.
fn open_input(path: &Path) -> Result<(File, bool), Error> {
    let mut f = if path == Path::new("-") {
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(unreadable(path))?;
        File::from(fd)
    } else {
        File::open(path).map_err(unreadable(path))?
    };
    let seekable = f.stream_position().is_ok() && f.metadata().is_ok_and(|m| m.is_file());
    Ok((f, seekable))
}

/// Opens `path` once, decides whether it is MPEG-TS and finds its bitrate
/// (`bitrate` if given, warning when the PCRs say otherwise).
fn probe(args: &SendArgs, path: &Path, bitrate: Option<u64>) -> Result<Probed, Error> {
    let (mut f, seekable) = open_input(path)?;
    if args.looping && !seekable {
        return Err(Error::Usage(format!(
            "--loop needs input that can seek; {} is a pipe, a terminal or a device",
            path.display()
        )));
    }
    let start = if seekable {
        f.stream_position().map_err(unreadable(path))?
    } else {
        0
    };
    let mut head = vec![0u8; 3 * TS_PACKET_SIZE];
    let n = read_full(&mut f, &mut head).map_err(unreadable(path))?;
    head.truncate(n);
    let ts = match args.format {
        Format::Raw => false,
        Format::Ts => {
            for (i, p) in head.chunks(TS_PACKET_SIZE).enumerate() {
                TsPacket::parse(p, (i * TS_PACKET_SIZE) as u64).map_err(|source| Error::NotTs {
                    path: path.to_owned(),
                    source,
                })?;
            }
            if head.is_empty() {
                return Err(Error::Stream {
                    path: path.to_owned(),
                    message: "empty file".into(),
                });
            }
            true
        }
        Format::Auto => looks_like_ts(&head),
    };
    if ts && args.payload_size % TS_PACKET_SIZE != 0 {
        return Err(Error::Usage(format!(
            "--payload-size {} is not a multiple of 188, so it would split TS packets of {}",
            args.payload_size,
            path.display()
        )));
    }
    if !ts && bitrate.is_none() {
        return Err(Error::OpaqueNeedsBitrate {
            path: path.to_owned(),
        });
    }
    // The PCR estimate: needed without --bitrate, and checked against it
    // when the file can be read twice.
    let mut prefix = Vec::new();
    let estimate = if ts && (bitrate.is_none() || seekable) {
        if seekable {
            let input = io::Cursor::new(&head).chain(&mut f);
            Some(estimate_bitrate(
                io::BufReader::new(input),
                Some(ESTIMATE_LIMIT),
            ))
        } else {
            prefix = head;
            (&mut f)
                .take(PIPE_ESTIMATE_LIMIT - prefix.len() as u64)
                .read_to_end(&mut prefix)
                .map_err(unreadable(path))?;
            Some(estimate_bitrate(&prefix[..], Some(PIPE_ESTIMATE_LIMIT)))
        }
    } else {
        if !seekable {
            prefix = head;
        }
        None
    };
    if seekable {
        f.seek(SeekFrom::Start(start)).map_err(unreadable(path))?;
    }
    let input = Input {
        prefix,
        at: 0,
        file: f,
        seekable,
    };
    let (bitrate, from_pcr) = match (bitrate, estimate) {
        (Some(b), Some(Ok(e))) => {
            let off = (b as f64 - e.bitrate as f64).abs() / e.bitrate as f64;
            if off > BITRATE_WARN {
                eprintln!(
                    "mdwrite send: {}: --bitrate {b} is {:.0}% off the PCR estimate {} b/s",
                    path.display(),
                    off * 100.0,
                    e.bitrate
                );
            }
            (b, false)
        }
        (Some(b), _) => (b, false),
        (None, Some(Ok(e))) => (e.bitrate, true),
        (None, Some(Err(EstimateError::Io(source)))) => {
            return Err(Error::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
        (None, Some(Err(EstimateError::Ts(source)))) => {
            return Err(Error::NotTs {
                path: path.to_owned(),
                source,
            })
        }
        (None, Some(Err(source))) => {
            return Err(Error::NoPcr {
                path: path.to_owned(),
                source,
            })
        }
        (None, None) => {
            return Err(Error::OpaqueNeedsBitrate {
                path: path.to_owned(),
            })
        }
    };
    Ok(Probed {
        ts,
        bitrate,
        from_pcr,
        input,
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(crate) fn open_sender(choice: BackendChoice) -> Result<Sender, Error> {
    match choice {
        BackendChoice::Auto => Sender::open().map_err(|e| Error::io("open the sender", e)),
        BackendChoice::Fallback => {
            Sender::open_fallback().map_err(|e| Error::io("open the fallback sender", e))
        }
        BackendChoice::Module => Sender::open_module().map_err(|e| {
            if is_privilege(&e) {
                Error::DeviceDenied { source: e }
            } else {
                Error::NoModule { source: e }
            }
        }),
    }
}

/// The route and header fields of destination `to`.
fn dest_config(
    to: SocketAddr,
    args: &SendArgs,
    stream: &Stream,
    src_port: &mut Option<u16>,
) -> Result<DestConfig, Error> {
    let mut cfg = DestConfig::route(to, args.interface.as_deref()).map_err(|e| {
        if is_errno(&e, Errno::NODEV) {
            Error::UnknownInterface(e)
        } else {
            Error::NoRoute { source: e }
        }
    })?;
    // One source port for all: the fallback then sends every destination
    // through one socket, in the module's interleaved order.
    cfg.src_port = *src_port.get_or_insert(cfg.src_port);
    cfg.hop_limit = hop_limit(args.ttl, to);
    cfg.dscp = args.dscp;
    if args.rtp {
        let pt = if stream.ts { PT_MP2T } else { PT_DYNAMIC };
        cfg.rtp = Some(
            destination_rtp(pt, stream.bitrate, args.payload_size)
                .map_err(|e| Error::io("random RTP fields (getrandom)", e))?,
        );
    }
    let size = cfg.packet_size_for(args.payload_size);
    if let Ok(mtu) = interface_mtu(cfg.ifindex) {
        if u32::from(size) > mtu {
            let name = interface_name(cfg.ifindex).unwrap_or_else(|_| cfg.ifindex.to_string());
            return Err(Error::Usage(format!(
                "--payload-size {} to {to} needs {size}-byte IP packets, more than the MTU {mtu} \
                 of {name}",
                args.payload_size
            )));
        }
    }
    cfg.packet_size = Some(size);
    Ok(cfg)
}

/// The TTL / hop limit for `to`: `--ttl`, else 1 for a multicast group
/// (it stays on the local network, as IP_MULTICAST_TTL's default keeps it
/// with other tools), else the system's (`None`: 64).
pub(crate) fn hop_limit(ttl: Option<u8>, to: SocketAddr) -> Option<u8> {
    match ttl {
        Some(t) => Some(t),
        None if to.ip().is_multicast() => Some(1),
        None => None,
    }
}

/// Registers `cfg`, retrying while its neighbour is being resolved.
pub(crate) fn connect(
    sender: &mut Sender,
    to: SocketAddr,
    cfg: &DestConfig,
) -> Result<DestId, Error> {
    let deadline = Instant::now() + NEIGHBOUR_WAIT;
    loop {
        match sender.add_destination(cfg) {
            Ok(id) => return Ok(id),
            Err(e) if is_errno(&e, Errno::HOSTUNREACH) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) if is_errno(&e, Errno::HOSTUNREACH) => {
                return Err(Error::NoRoute {
                    source: io::Error::new(
                        e.kind(),
                        format!(
                            "no route to {to}: its MAC address did not resolve (ARP/NDP) within \
                             5 s: {e}"
                        ),
                    ),
                })
            }
            Err(e) => return Err(Error::io(format!("add destination {to}"), e)),
        }
    }
}

/// The progress display on a terminal.
struct Progress {
    lines: usize,
    last: Instant,
    last_bytes: Vec<u64>,
}

impl Progress {
    /// Draws the display; the rate is over the last refresh, or over the
    /// whole run when `average`.
    fn draw(
        &mut self,
        streams: &[Stream],
        dests: &[Dest],
        now: Instant,
        elapsed: Duration,
        average: bool,
    ) {
        if average {
            self.last_bytes.iter_mut().for_each(|b| *b = 0);
        }
        let since = if average {
            elapsed
        } else {
            now.duration_since(self.last)
        };
        let dt = since.as_secs_f64().max(1e-3);
        let mut out = String::new();
        if self.lines > 0 {
            out += &format!("\x1b[{}A", self.lines);
        }
        out += &format!("\x1b[2K{:>7.1} s\n", elapsed.as_secs_f64());
        for (i, s) in streams.iter().enumerate() {
            let rate = (s.stats.bytes - self.last_bytes[i]) as f64 * 8.0 / dt;
            self.last_bytes[i] = s.stats.bytes;
            for &d in &s.dests {
                out += &format!(
                    "\x1b[2K  {:<24} {:>12}  {:>10} packets  {:>10}  {}\n",
                    dests[d].to.to_string(),
                    human_rate(rate),
                    dests[d].packets,
                    human_bytes(dests[d].bytes),
                    s.path.display()
                );
            }
        }
        self.lines = 1 + dests.len();
        self.last = now;
        let _ = io::stderr().write_all(out.as_bytes());
    }
}

/// The summary at the end of a run.
struct Summary<'a> {
    streams: &'a [Stream],
    dests: &'a [Dest],
    backend: &'static str,
    pace: &'static str,
    latency: Duration,
    calls: u64,
    packets: u64,
    elapsed: Duration,
    write_errors: u64,
    late_windows: u64,
}

impl Stream {
    fn bitrate_from(&self) -> &'static str {
        if self.bitrate_from_pcr {
            "pcr"
        } else {
            "argument"
        }
    }
}

impl Dest {
    /// Its source address and port, `[addr]:port` for IPv6.
    fn from(&self) -> SocketAddr {
        SocketAddr::new(self.config.from, self.config.src_port)
    }
}

impl Summary<'_> {
    /// `key=value` lines, one per stream, destination, and the total.
    fn print(&self) {
        for s in self.streams {
            println!(
                "stream bitrate={} bitrate_from={} bytes={} packets={} slipped_ms={} end={} file={}",
                s.bitrate,
                s.bitrate_from(),
                s.stats.bytes,
                s.stats.packets,
                s.stats.slipped.as_millis(),
                s.end,
                s.path.display()
            );
        }
        for d in self.dests {
            let rtp = d
                .config
                .rtp
                .map(|r| {
                    format!(
                        " ssrc={:#010x} pt={} first_seq={}",
                        r.ssrc, r.payload_type, r.seq
                    )
                })
                .unwrap_or_default();
            println!(
                "dest to={} from={}{rtp} packets={} bytes={} file={}",
                d.to,
                d.from(),
                d.packets,
                d.bytes,
                self.streams[d.stream].path.display()
            );
        }
        println!(
            "total backend={} pace={} interval_ms={:.3} streams={} destinations={} calls={} \
             packets={} seconds={:.3} write_errors={} late_windows={}",
            self.backend,
            self.pace,
            self.latency.as_secs_f64() * 1e3,
            self.streams.len(),
            self.dests.len(),
            self.calls,
            self.packets,
            self.elapsed.as_secs_f64(),
            self.write_errors,
            self.late_windows
        );
    }

    /// The same as one JSON object.
    fn json(&self) -> serde_json::Value {
        use serde_json::json;
        let streams: Vec<_> = self
            .streams
            .iter()
            .map(|s| {
                json!({
                    "file": s.path.to_string_lossy(),
                    "bitrate": s.bitrate,
                    "bitrate_from": s.bitrate_from(),
                    "bytes": s.stats.bytes,
                    "packets": s.stats.packets,
                    "slipped_ms": s.stats.slipped.as_millis() as u64,
                    "end": s.end,
                })
            })
            .collect();
        let dests: Vec<_> = self
            .dests
            .iter()
            .map(|d| {
                let mut v = json!({
                    "to": d.to.to_string(),
                    "from": d.from().to_string(),
                    "packets": d.packets,
                    "bytes": d.bytes,
                    "file": self.streams[d.stream].path.to_string_lossy(),
                });
                if let Some(r) = d.config.rtp {
                    v["ssrc"] = json!(r.ssrc);
                    v["pt"] = json!(r.payload_type);
                    v["first_seq"] = json!(r.seq);
                }
                v
            })
            .collect();
        json!({
            "streams": streams,
            "destinations": dests,
            "total": {
                "backend": self.backend,
                "pace": self.pace,
                "interval_ms": self.latency.as_secs_f64() * 1e3,
                "streams": self.streams.len(),
                "destinations": self.dests.len(),
                "calls": self.calls,
                "packets": self.packets,
                "seconds": self.elapsed.as_secs_f64(),
                "write_errors": self.write_errors,
                "late_windows": self.late_windows,
            },
        })
    }
}

/// One `--stats-interval` line per destination: what it was handed so
/// far, and the average rate.
fn print_stats(dests: &[Dest], streams: &[Stream], elapsed: Duration, json: bool) {
    let secs = elapsed.as_secs_f64().max(1e-3);
    for d in dests {
        let rate = (d.bytes as f64 * 8.0 / secs) as u64;
        let file = streams[d.stream].path.display();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "stats": {
                        "seconds": elapsed.as_secs_f64(),
                        "to": d.to.to_string(),
                        "packets": d.packets,
                        "bytes": d.bytes,
                        "bitrate": rate,
                        "file": file.to_string(),
                    }
                })
            );
        } else {
            println!(
                "stats seconds={:.3} to={} packets={} bytes={} bitrate={rate} file={file}",
                elapsed.as_secs_f64(),
                d.to,
                d.packets,
                d.bytes,
            );
        }
    }
}

/// Runs the command; `files_at`, `to_at` and `bitrate_at` are the
/// command-line positions of the FILE, --to and --bitrate arguments.
pub(crate) fn run(
    args: SendArgs,
    files_at: &[usize],
    to_at: &[usize],
    bitrate_at: &[usize],
) -> Result<u8, Error> {
    let owners = assign_destinations(files_at, to_at).map_err(Error::Usage)?;
    let bitrates = assign_bitrates(files_at, bitrate_at, &args.bitrate).map_err(Error::Usage)?;
    if args.files.iter().filter(|p| *p == Path::new("-")).count() > 1 {
        return Err(Error::Usage(
            "standard input (\"-\") can be one FILE only".into(),
        ));
    }
    let mut to = Vec::new();
    for e in &args.to {
        to.push(e.resolve()?);
    }
    let mut streams = Vec::new();
    for (i, path) in args.files.iter().enumerate() {
        let p = probe(&args, path, bitrates[i])?;
        streams.push(Stream {
            path: path.clone(),
            input: Some(p.input),
            tail: TailNote::default(),
            ts: p.ts,
            bitrate: p.bitrate,
            bitrate_from_pcr: p.from_pcr,
            dests: (0..owners.len()).filter(|&d| owners[d] == i).collect(),
            id: None,
            stats: StreamStats::default(),
            end: "eof",
        });
    }

    let mut sender = open_sender(args.backend)?;
    let mut src_port = None;
    let mut dests = Vec::new();
    for (&to, &owner) in to.iter().zip(&owners) {
        let config = dest_config(to, &args, &streams[owner], &mut src_port)?;
        let id = connect(&mut sender, to, &config)?;
        dests.push(Dest {
            to,
            stream: owner,
            config,
            id,
            packets: 0,
            bytes: 0,
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("signal handler", e))?;
    }

    let opts = GroupOptions::default()
        .with_latency(args.latency)
        .with_pace(args.pace.pace());
    let mut group = StreamGroup::new(MonotonicClock, opts);
    let pace = group
        .pace_mode(&sender)
        .map_err(|_| Error::NoKernelPacing {
            mode: "kernel",
            reason: match sender.backend() {
                mdwrite::Backend::Module => "the loaded module has no paced calls (MDW_FEAT_PACE)",
                mdwrite::Backend::Fallback => "the fallback backend cannot release paced calls",
            },
        })?;
    if pace == Pace::Txtime
        && sender.backend() == mdwrite::Backend::Module
        && !sender.kernel_pacing()
    {
        return Err(Error::NoKernelPacing {
            mode: "txtime",
            reason: "the loaded module cannot stamp departure times (no MDW_FEAT_PACE)",
        });
    }
    if sender.backend() == mdwrite::Backend::Module {
        // Files are read into registered buffers and each tick's call is
        // asynchronous: nothing is pinned per call, and the next tick's
        // reading overlaps this one's transmission.
        group
            .set_async_ring(RING_SLOTS)
            .map_err(|e| Error::io("registered buffers", e))?;
    }
    let mut ring_note = false;
    for s in &mut streams {
        let Some(f) = s.input.take() else { continue };
        let source: Box<dyn Read + Send> = if s.ts {
            // A truncated last packet: the whole packets before it are
            // sent, then a warning.
            Box::new(TsReader::new(f, args.looping).with_tail_note(s.tail.clone()))
        } else {
            Box::new(LoopReader::new(f, args.looping))
        };
        let mut cfg = StreamConfig::new(s.bitrate, args.payload_size)
            .with_dests(s.dests.iter().map(|&d| dests[d].id).collect());
        if args.rtp {
            cfg = cfg.with_rtp_clock_hz(mdwrite::media::rtp::CLOCK_90KHZ);
        }
        s.id = Some(
            group
                .add_stream(cfg, source)
                .map_err(|e| Error::io("add stream", e))?,
        );
    }

    let start = Instant::now();
    let mut progress = io::stderr().is_terminal().then(|| Progress {
        lines: 0,
        last: start,
        last_bytes: vec![0; streams.len()],
    });
    let mut write_errors = 0u64;
    let mut late_windows = 0u64;
    let mut stopped = false;
    let mut next_stats = args.stats_interval.map(|i| start + i);
    while !group.is_empty() {
        if stop.load(Ordering::Relaxed) || args.duration.is_some_and(|d| start.elapsed() >= d) {
            stopped = true;
            break;
        }
        let report = group.tick(&mut sender).map_err(|e| Error::io("send", e))?;
        if let (Some(e), false) = (group.async_ring_error(), ring_note) {
            eprintln!(
                "mdwrite send: cannot register buffers ({e}); sending from ordinary memory, \
                 one synchronous call per tick"
            );
            ring_note = true;
        }
        if report.window_missed {
            if late_windows == 0 {
                eprintln!(
                    "mdwrite send: a tick ran later than its paced window (--latency {:.3}ms); \
                     its packets left at once",
                    group.interval().as_secs_f64() * 1e3
                );
            }
            late_windows += 1;
        }
        if let Some((e, index)) = report.write.and_then(|w| w.error) {
            if write_errors == 0 {
                eprintln!("mdwrite send: a call stopped early at entry {index}: {e}");
            }
            write_errors += 1;
        }
        for c in &report.delivered {
            if let Some(d) = dests.iter_mut().find(|d| d.id == c.dest) {
                d.packets += c.packets;
                d.bytes += c.bytes;
            }
        }
        if let (Some(at), Some(every)) = (next_stats, args.stats_interval) {
            let now = Instant::now();
            if now >= at {
                print_stats(&dests, &streams, now.duration_since(start), args.json);
                next_stats =
                    Some(at + every * ((now - at).as_nanos() / every.as_nanos() + 1) as u32);
            }
        }
        for (id, stats) in report.ended {
            if let Some(s) = streams.iter_mut().find(|s| s.id == Some(id)) {
                s.end = if stats.error.is_some() {
                    "error"
                } else {
                    "eof"
                };
                s.stats = stats;
                s.id = None;
            }
        }
        if let Some(p) = &mut progress {
            let now = Instant::now();
            if now.duration_since(p.last) >= Duration::from_secs(1) {
                for s in &mut streams {
                    if let Some(st) = s.id.and_then(|id| group.stream_stats(id)) {
                        s.stats = st;
                    }
                }
                p.draw(&streams, &dests, now, now.duration_since(start), false);
            }
        }
    }
    if stopped {
        for s in &mut streams {
            if let Some(st) = s.id.and_then(|id| group.remove_stream(id)) {
                s.stats = st;
                s.end = "stopped";
            }
        }
    }
    // The last calls leave before the summary.
    group.flush(&mut sender).map_err(|e| Error::io("send", e))?;
    let elapsed = start.elapsed();
    if let Some(p) = &mut progress {
        p.draw(&streams, &dests, Instant::now(), elapsed, true);
    }
    let totals = sender.stats().ok();

    let (calls, packets) = totals.map_or((0, 0), |t| (t.calls, t.packets));
    let backend = match sender.backend() {
        mdwrite::Backend::Module => "module",
        mdwrite::Backend::Fallback => "fallback",
    };
    let summary = Summary {
        streams: &streams,
        dests: &dests,
        backend,
        pace: pace_name(pace),
        latency: group.interval(),
        calls,
        packets,
        elapsed,
        write_errors,
        late_windows,
    };
    if args.json {
        println!("{}", summary.json());
    } else {
        summary.print();
    }
    for s in &streams {
        if let Some(e) = s.tail.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            eprintln!(
                "mdwrite send: {}: {e}; sent the whole packets before it",
                s.path.display()
            );
        }
    }
    for s in &streams {
        if let Some(e) = &s.stats.error {
            return Err(Error::Stream {
                path: s.path.clone(),
                message: e.clone(),
            });
        }
    }
    Ok(crate::error::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_follow_their_file() {
        // One: every file's, wherever it is.
        assert_eq!(
            assign_bitrates(&[1, 4], &[6], &[7]),
            Ok(vec![Some(7), Some(7)])
        );
        assert_eq!(assign_bitrates(&[1], &[], &[]), Ok(vec![None]));
        // send --bitrate 5 a --to X b --to Y --bitrate 9 c --to Z
        assert_eq!(
            assign_bitrates(&[3, 6, 11], &[2, 9], &[5, 9]),
            Ok(vec![Some(5), Some(9), Some(5)])
        );
        // send a --bitrate 1 b --bitrate 2: each its own, none for others.
        assert_eq!(
            assign_bitrates(&[1, 4, 8], &[2, 5], &[1, 2]),
            Ok(vec![Some(1), Some(2), None])
        );
        assert!(assign_bitrates(&[1, 4], &[2, 3], &[1, 2])
            .unwrap_err()
            .contains("file 1 has two --bitrate"));
        assert!(assign_bitrates(&[1], &[2, 3], &[1, 2])
            .unwrap_err()
            .contains("one file takes one --bitrate"));
    }

    #[test]
    fn multicast_gets_ttl_1_unless_told() {
        let group: SocketAddr = "239.1.2.3:5000".parse().unwrap();
        let group6: SocketAddr = "[ff15::1]:5000".parse().unwrap();
        let unicast: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(hop_limit(None, group), Some(1));
        assert_eq!(hop_limit(None, group6), Some(1));
        assert_eq!(hop_limit(None, unicast), None);
        assert_eq!(hop_limit(Some(16), group), Some(16));
        assert_eq!(hop_limit(Some(3), unicast), Some(3));
    }

    #[test]
    fn destinations_follow_their_file() {
        // send a --to X --to Y b --to Z
        assert_eq!(assign_destinations(&[1, 6], &[3, 5, 8]), Ok(vec![0, 0, 1]));
        // One file: every --to, wherever it is.
        assert_eq!(assign_destinations(&[5], &[2, 7]), Ok(vec![0, 0]));
        // --to before the first of several files.
        assert!(assign_destinations(&[3, 6], &[1, 8])
            .unwrap_err()
            .contains("after the FILE"));
        // A file without destination.
        assert!(assign_destinations(&[1, 2], &[4])
            .unwrap_err()
            .contains("file 1 has no --to"));
    }
}
