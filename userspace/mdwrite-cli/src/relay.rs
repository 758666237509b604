// SPDX-License-Identifier: GPL-2.0

//! `mdwrite relay`: receive one UDP or RTP stream and send every packet
//! on to many destinations, zero-copy through the module.

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;
use mdwrite::{
    media::rtp::RtpHeader,
    uapi::MDW_MAX_ENTRIES,
    udp::{recv_batch, wait_readable, Datagram, MAX_BATCH},
    AsyncEntry, Completion, DestConfig, DestId, RegisteredBuffer, Rtp, Sender, WriteOptions,
};
use rustix::io::Errno;

// `super::` for the helper's own modules, so that this also resolves where
// main.rs is compiled as a module of another program.
use super::{
    endpoint::{parse_destination, parse_listen, Endpoint},
    recv::{bind, ifindex_of},
    send::{connect, hop_limit, open_sender, BackendChoice},
};
use crate::{
    error::{is_errno, Error, EXIT_OK},
    units::parse_seconds,
};

/// Bytes of one receive slot: the largest datagram relayed whole (a bigger
/// one is dropped and counted as `truncated`).
const SLOT: usize = 2048;

/// Buffer pieces, each one batch of up to `MAX_BATCH` datagrams: at most
/// this many calls in flight.
const PIECES: usize = 16;

/// How often the relay looks at signals and its stop conditions while
/// nothing arrives.
const POLL: Duration = Duration::from_millis(100);

/// Receive a UDP or RTP stream (unicast or multicast) and send each packet
/// on to every destination.
///
/// Datagrams are received with recvmmsg into a registered buffer and each
/// batch (what arrived since the last one, up to 64 datagrams) is sent to
/// every destination in one asynchronous call whose entries all point at
/// the same received bytes: with the module nothing is copied. With --rtp
/// each destination gets its own SSRC and sequence numbers (the timestamps
/// and payloads are the source's). Destinations from --to-file are read
/// again on SIGHUP: new ones are added and missing ones removed between
/// two batches, without a gap for the others. SIGINT or SIGTERM stops it;
/// a summary goes to stdout (see Documentation/cli.rst).
#[derive(Args, Debug)]
pub(crate) struct RelayArgs {
    /// Address (unicast or multicast, or a host name) and UDP port to
    /// receive on; ":PORT" is every IPv4 address.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    listen: Endpoint,
    /// Receive only from this source: source-specific multicast for a
    /// group of its family (IPv4 or IPv6), a filter otherwise.
    #[arg(long, value_name = "ADDR")]
    source: Option<IpAddr>,
    /// Join the multicast group on this interface.
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// A destination (ADDR:PORT, [IPv6]:PORT or HOST:PORT); repeat for more.
    #[arg(long = "to", value_name = "ADDR:PORT", value_parser = parse_destination)]
    to: Vec<Endpoint>,
    /// More destinations, one ADDR:PORT per line ('#' starts a comment);
    /// read at the start and again on every SIGHUP.
    #[arg(long, value_name = "FILE")]
    to_file: Option<PathBuf>,
    /// The stream is RTP: each destination gets its own random SSRC and
    /// sequence numbers; payload type and timestamps are the source's.
    #[arg(long)]
    rtp: bool,
    /// TTL / hop limit (default: 1 to multicast destinations).
    #[arg(long, value_name = "HOPS", value_parser = clap::value_parser!(u8).range(1..))]
    ttl: Option<u8>,
    /// DSCP of the packets sent, 0 to 63.
    #[arg(long, value_name = "DSCP", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=63))]
    dscp: u8,
    /// Which sender implementation to use.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Stop when nothing arrived for S seconds (counted from the start
    /// until the first datagram).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    idle_timeout: Option<Duration>,
}

/// One destination of the relay.
struct RelayDest {
    to: SocketAddr,
    config: DestConfig,
    id: DestId,
    packets: u64,
    bytes: u64,
    /// Still a destination (false once removed; kept for the summary).
    active: bool,
}

/// What the relay counts.
#[derive(Default)]
struct Counts {
    datagrams: u64,
    bytes: u64,
    truncated: u64,
    empty: u64,
    not_rtp: u64,
    other_source: u64,
    calls: u64,
}

/// Reads `path`: one ADDR:PORT per line, blank lines and `#` comments
/// skipped.
fn read_to_file(path: &PathBuf) -> Result<Vec<Endpoint>, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::Unreadable {
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(parse_destination(line).map_err(|e| Error::Stream {
            path: path.clone(),
            message: format!("line {}: {e}", n + 1),
        })?);
    }
    Ok(out)
}

struct Relay {
    sender: Sender,
    args: RelayArgs,
    dests: Vec<RelayDest>,
    /// The one source port of every destination.
    src_port: Option<u16>,
    /// The RTP payload type, once the first RTP packet told it.
    payload_type: Option<u8>,
    /// Where the destinations should go (until the payload type is known
    /// with --rtp).
    wanted: Vec<SocketAddr>,
}

impl Relay {
    /// Adds the destinations of `wanted` that are missing and removes those
    /// that are no longer wanted.
    fn sync_destinations(&mut self) -> Result<(), Error> {
        if self.args.rtp && self.payload_type.is_none() {
            // Added once the first packet gives the payload type.
            return Ok(());
        }
        let wanted: BTreeSet<SocketAddr> = self.wanted.iter().copied().collect();
        // The first destinations are not news (with --rtp they come with
        // the first packet, all at once).
        let first = self.dests.is_empty();
        for d in self.dests.iter_mut().filter(|d| d.active) {
            if !wanted.contains(&d.to) {
                self.sender
                    .remove_destination(d.id)
                    .map_err(|e| Error::io(format!("remove destination {}", d.to), e))?;
                d.active = false;
                eprintln!("mdwrite relay: removed {}", d.to);
            }
        }
        for to in wanted {
            if self.dests.iter().any(|d| d.active && d.to == to) {
                continue;
            }
            let config = self.dest_config(to)?;
            let id = connect(&mut self.sender, to, &config)?;
            if !first {
                eprintln!("mdwrite relay: added {to}");
            }
            self.dests.push(RelayDest {
                to,
                config,
                id,
                packets: 0,
                bytes: 0,
                active: true,
            });
        }
        Ok(())
    }

    fn dest_config(&mut self, to: SocketAddr) -> Result<DestConfig, Error> {
        let mut cfg = DestConfig::route(to, None).map_err(|e| {
            if is_errno(&e, Errno::NODEV) {
                Error::UnknownInterface(e)
            } else {
                Error::NoRoute { source: e }
            }
        })?;
        cfg.src_port = *self.src_port.get_or_insert(cfg.src_port);
        cfg.hop_limit = hop_limit(self.args.ttl, to);
        cfg.dscp = self.args.dscp;
        if let Some(pt) = self.payload_type {
            cfg.rtp =
                Some(Rtp::random(pt).map_err(|e| Error::io("random RTP fields (getrandom)", e))?);
        }
        Ok(cfg)
    }

    fn reload(&mut self) -> Result<(), Error> {
        let mut wanted = Vec::new();
        for e in &self.args.to {
            wanted.push(e.resolve()?);
        }
        if let Some(path) = &self.args.to_file {
            for e in read_to_file(path)? {
                wanted.push(e.resolve()?);
            }
        }
        self.wanted = wanted;
        self.sync_destinations()
    }
}

/// Where a relayed payload lies in the piece, and with --rtp the payload
/// type and timestamp of its RTP header.
type Payload = (std::ops::Range<usize>, Option<(u8, u32)>);

/// The payload of datagram `d` to relay: all of it, or with --rtp what
/// follows the RTP header, with the header's timestamp. `None` to drop it.
fn payload(buf: &[u8], d: &Datagram, rtp: bool, counts: &mut Counts) -> Option<Payload> {
    let datagram = &buf[d.offset..d.offset + d.len];
    if !rtp {
        return Some((d.offset..d.offset + d.len, None));
    }
    match RtpHeader::parse(datagram) {
        Ok((h, p)) if !p.is_empty() => {
            let start = d.offset + (p.as_ptr() as usize - datagram.as_ptr() as usize);
            Some((start..start + p.len(), Some((h.payload_type, h.timestamp))))
        }
        _ => {
            counts.not_rtp += 1;
            None
        }
    }
}

/// Runs the command.
pub(crate) fn run(args: RelayArgs) -> Result<u8, Error> {
    if args.to.is_empty() && args.to_file.is_none() {
        return Err(Error::Usage(
            "give the destinations with --to ADDR:PORT or --to-file FILE".into(),
        ));
    }
    let listen = args.listen.resolve()?;
    let ifindex = ifindex_of(args.interface.as_deref())?;
    let ssm = args
        .source
        .filter(|s| listen.ip().is_multicast() && s.is_ipv4() == listen.is_ipv4());
    if let (Some(s), true, None) = (args.source, listen.ip().is_multicast(), ssm) {
        return Err(Error::Usage(format!(
            "--source {s} needs a multicast --listen address of its family, not {listen}"
        )));
    }
    let filter = args.source.filter(|_| ssm.is_none());
    let sock = bind(listen, ifindex, ssm)?;
    let bound = sock.local_addr().map_err(|e| Error::io("getsockname", e))?;

    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Error::io("signal handler", e))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .map_err(|e| Error::io("signal handler", e))?;

    let sender = open_sender(args.backend)?;
    let mut relay = Relay {
        sender,
        args,
        dests: Vec::new(),
        src_port: None,
        payload_type: None,
        wanted: Vec::new(),
    };
    relay.reload()?;

    // One buffer, registered once, in pieces of one batch: each piece goes
    // into one call and comes back with its completion.
    let piece = MAX_BATCH * SLOT;
    let buf = relay
        .sender
        .register_buffer(PIECES * piece)
        .map_err(|e| Error::io("registered buffer", e))?;
    let registered = buf.is_registered();
    let mut free: Vec<RegisteredBuffer> = buf.into_chunks(piece);
    eprintln!("mdwrite relay: listening on {bound}");

    let mut counts = Counts::default();
    let mut done: Vec<Completion> = Vec::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<AsyncEntry> = Vec::new();
    let mut cookie = 0u64;
    let mut write_errors = 0u64;
    let start = Instant::now();
    let mut last = start;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break "signal";
        }
        let now = Instant::now();
        if relay.args.duration.is_some_and(|d| now >= start + d) {
            break "duration";
        }
        if relay.args.idle_timeout.is_some_and(|d| now >= last + d) {
            break "idle";
        }
        if hup.swap(false, Ordering::Relaxed) {
            if let Err(e) = relay.reload() {
                // A bad file keeps the destinations as they are.
                eprintln!("mdwrite relay: SIGHUP: {e}; destinations unchanged");
            }
        }
        // Pieces back from completed calls.
        if free.is_empty() {
            relay
                .sender
                .wait_completions(&mut done, None)
                .map_err(|e| Error::io("completions", e))?;
        } else {
            relay
                .sender
                .try_completions(&mut done)
                .map_err(|e| Error::io("completions", e))?;
        }
        for c in done.drain(..) {
            if c.error.is_some() {
                write_errors += 1;
            }
            free.extend(c.buffers);
        }
        let Some(mut piece_buf) = free.pop() else {
            continue;
        };
        if !wait_readable(&sock, Some(POLL)).map_err(|e| Error::io("poll", e))? {
            free.push(piece_buf);
            continue;
        }
        // As many datagrams as the entry limit allows for every
        // destination.
        let ndest = relay.dests.iter().filter(|d| d.active).count().max(1);
        let most = (MDW_MAX_ENTRIES as usize / ndest).clamp(1, MAX_BATCH);
        batch.clear();
        recv_batch(&sock, &mut piece_buf[..most * SLOT], SLOT, &mut batch)
            .map_err(|e| Error::io(format!("receive on {bound}"), e))?;
        if batch.is_empty() {
            free.push(piece_buf);
            continue;
        }
        last = Instant::now();
        entries.clear();
        let mut kept = Vec::with_capacity(batch.len());
        for d in &batch {
            counts.datagrams += 1;
            counts.bytes += d.len as u64;
            if d.truncated {
                counts.truncated += 1;
                continue;
            }
            if d.len == 0 {
                // Nothing to send (the module refuses empty entries).
                counts.empty += 1;
                continue;
            }
            if let (Some(src), Some(from)) = (filter, d.from) {
                // An IPv4 source reaches a dual-stack socket as ::ffff:a.b.c.d.
                if from.ip().to_canonical() != src.to_canonical() {
                    counts.other_source += 1;
                    continue;
                }
            }
            if let Some(p) = payload(&piece_buf, d, relay.args.rtp, &mut counts) {
                kept.push(p);
            }
        }
        if relay.args.rtp && relay.payload_type.is_none() {
            if let Some((_, Some((pt, _)))) = kept.first() {
                relay.payload_type = Some(*pt);
                relay.sync_destinations()?;
            }
        }
        for d in relay.dests.iter_mut().filter(|d| d.active) {
            for (range, rtp) in &kept {
                let mut e = AsyncEntry::new(d.id, 0, range.clone());
                if let Some((_, ts)) = rtp {
                    e = e.with_rtp_timestamp(*ts);
                }
                entries.push(e);
                d.packets += 1;
                d.bytes += range.len() as u64;
            }
        }
        if entries.is_empty() {
            free.push(piece_buf);
            continue;
        }
        match relay.sender.send_async_waiting(
            vec![piece_buf],
            &entries,
            &WriteOptions::default(),
            cookie,
            &mut done,
        ) {
            Ok(r) => {
                counts.calls += 1;
                if let Some((e, i)) = r.error {
                    if write_errors == 0 {
                        eprintln!("mdwrite relay: a call stopped early at entry {i}: {e}");
                    }
                    write_errors += 1;
                }
            }
            Err(e) => {
                free.extend(e.buffers);
                return Err(Error::io("send", e.error));
            }
        }
        cookie = cookie.wrapping_add(1);
    };
    // The last calls leave before the summary.
    while relay.sender.in_flight() > 0 {
        relay
            .sender
            .wait_completions(&mut done, None)
            .map_err(|e| Error::io("completions", e))?;
    }
    let elapsed = start.elapsed();
    println!(
        "relay listen={bound} backend={} registered={registered} datagrams={} bytes={} \
         truncated={} empty={} not_rtp={} other_source={} calls={} seconds={:.3} \
         write_errors={write_errors} end={end}",
        match relay.sender.backend() {
            mdwrite::Backend::Module => "module",
            mdwrite::Backend::Fallback => "fallback",
        },
        counts.datagrams,
        counts.bytes,
        counts.truncated,
        counts.empty,
        counts.not_rtp,
        counts.other_source,
        counts.calls,
        elapsed.as_secs_f64(),
    );
    for d in &relay.dests {
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
            "dest to={} from={}{rtp} packets={} bytes={} active={}",
            d.to,
            SocketAddr::new(d.config.from, d.config.src_port),
            d.packets,
            d.bytes,
            d.active
        );
    }
    Ok(EXIT_OK)
}
