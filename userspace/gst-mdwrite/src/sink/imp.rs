// SPDX-License-Identifier: GPL-2.0

//! `mdwritesink`'s implementation: properties, signals, and the send path.
//!
//! Buffers are mapped (read) as they arrive and kept, mapped, until the
//! interval they belong to is sent: one `send_vectored` call with, for each
//! buffer, one entry per client pointing at the buffer's mapped bytes. The
//! module sends straight from that memory (zero copy, pinned for the call,
//! which returns once the device released every packet); the fallback
//! hands the same slices to `sendmmsg`. The buffers are unmapped and
//! released after the call.
//!
//! Lock order: `state`, then `settings`.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    ops::Range,
    sync::{LazyLock, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use gst::{glib, prelude::*, subclass::prelude::*};
use gst_base::subclass::prelude::*;
use mdwrite::{
    media::rtp::RtpHeader, uapi::MDW_MAX_ENTRIES, Backend, Clock, DestConfig, DestId, Entry,
    MonotonicClock, PaceWindow, Rtp, Sender, WriteOptions,
};

use super::BackendChoice;
use crate::clients::{format_list, parse_list, Client};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mdwritesink",
        gst::DebugColorFlags::empty(),
        Some("mdwrite multi-destination UDP sink"),
    )
});

/// Default of `interval`: 10 ms of the stream per call.
const DEFAULT_INTERVAL: u64 = 10_000_000;
/// Largest `interval`: 1 s.
const MAX_INTERVAL: u64 = 1_000_000_000;
/// How long registering a client waits for the module to resolve its MAC
/// address.
const NEIGHBOUR_WAIT: Duration = Duration::from_secs(5);
/// Bytes one call gathers at most (of the stream, before fan-out).
const MAX_CALL_BYTES: usize = 64 << 20;

#[derive(Clone, Debug)]
struct Settings {
    ttl: u8,
    ttl_mc: u8,
    qos_dscp: i32,
    bind_address: Option<String>,
    bind_port: u16,
    backend: BackendChoice,
    interval: u64,
    pace: bool,
    rtp_rewrite: bool,
    /// Why the last `clients` string was refused, reported at start.
    clients_error: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ttl: 64,
            ttl_mc: 1,
            qos_dscp: -1,
            bind_address: None,
            bind_port: 0,
            backend: BackendChoice::Auto,
            interval: DEFAULT_INTERVAL,
            pace: false,
            rtp_rewrite: false,
            clients_error: None,
        }
    }
}

/// One client and what was sent to it.
#[derive(Debug)]
struct ClientState {
    client: Client,
    /// Its address and destination, once registered with the sender.
    addr: Option<SocketAddr>,
    dest: Option<DestId>,
    /// The destination's largest payload (a longer buffer goes out as
    /// several datagrams).
    max_payload: Option<u16>,
    packets: u64,
    bytes: u64,
    errors: u64,
    /// When it was added (real time, ns since the epoch).
    connect_time: u64,
}

impl ClientState {
    fn new(client: Client) -> Self {
        Self {
            client,
            addr: None,
            dest: None,
            max_payload: None,
            packets: 0,
            bytes: 0,
            errors: 0,
            connect_time: glib::real_time() as u64 * 1000,
        }
    }
}

/// One gathered buffer: mapped until it has been sent.
struct Pending {
    map: gst::MappedBuffer<gst::buffer::Readable>,
    /// What is sent of it: all of it, or with `rtp-rewrite` the RTP
    /// payload.
    range: Range<usize>,
    /// With `rtp-rewrite`, the RTP timestamp of the buffer.
    rtp_timestamp: Option<u32>,
}

#[derive(Default)]
struct State {
    clients: Vec<ClientState>,
    /// Open between start and stop.
    sender: Option<Sender>,
    /// The settings as they were at start.
    settings: Settings,
    /// The source port all destinations share.
    src_port: Option<u16>,
    /// With `rtp-rewrite`, the stream's payload type once known: the
    /// destinations are registered then.
    payload_type: Option<u8>,
    pending: Vec<Pending>,
    pending_bytes: usize,
    first_ts: Option<gst::ClockTime>,
    last_ts: Option<gst::ClockTime>,
    first_wall: Option<Instant>,
    /// Send errors reported as warnings so far.
    warned_errors: u64,
    warned_oversize: bool,
    calls: u64,
}

/// The element.
#[derive(Default)]
pub struct MdwriteSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for MdwriteSink {
    const NAME: &'static str = "GstMdwriteSink";
    type Type = super::MdwriteSink;
    type ParentType = gst_base::BaseSink;
}

fn io_context(what: impl std::fmt::Display, e: &io::Error) -> String {
    format!("{what}: {e}")
}

impl MdwriteSink {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The destination of `client` as the settings say, routed.
    fn dest_config(
        state: &mut State,
        addr: SocketAddr,
        payload_type: Option<u8>,
    ) -> io::Result<DestConfig> {
        let s = &state.settings;
        let mut cfg = DestConfig::route(addr, None)?;
        if let Some(bind) = &s.bind_address {
            let ip: IpAddr = bind.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bind-address {bind} is not an IP address"),
                )
            })?;
            if ip.is_ipv4() != addr.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bind-address {bind} is not of the family of {addr}"),
                ));
            }
            cfg.from = ip;
        }
        cfg.src_port = if s.bind_port != 0 {
            s.bind_port
        } else {
            *state.src_port.get_or_insert(cfg.src_port)
        };
        cfg.hop_limit = Some(if addr.ip().is_multicast() {
            s.ttl_mc
        } else {
            s.ttl
        })
        .filter(|&h| h != 0);
        cfg.dscp = s.qos_dscp.clamp(0, 63) as u8;
        if let Some(pt) = payload_type {
            cfg.rtp = Some(Rtp::random(pt)?);
        }
        Ok(cfg)
    }

    /// Registers client `i` with the sender (when started, and with
    /// `rtp-rewrite` once the payload type is known).
    fn register(state: &mut State, i: usize) -> io::Result<()> {
        if state.sender.is_none() || state.clients[i].dest.is_some() {
            return Ok(());
        }
        if state.settings.rtp_rewrite && state.payload_type.is_none() {
            // Resolve and route now, so that errors show at once;
            // registered with the first buffer.
            let addr = state.clients[i].client.resolve()?;
            Self::dest_config(state, addr, None)?;
            state.clients[i].addr = Some(addr);
            return Ok(());
        }
        let addr = state.clients[i].client.resolve()?;
        let cfg = Self::dest_config(state, addr, state.payload_type)?;
        let sender = state.sender.as_mut().expect("started");
        // The module answers EHOSTUNREACH while it resolves the client's
        // MAC address (ARP/NDP): retry for up to NEIGHBOUR_WAIT, as
        // `mdwrite send` does.
        let deadline = Instant::now() + NEIGHBOUR_WAIT;
        let id = loop {
            match sender.add_destination(&cfg) {
                Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("its MAC address did not resolve (ARP/NDP) within 5 s: {e}"),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                r => break r?,
            }
        };
        let c = &mut state.clients[i];
        c.addr = Some(addr);
        c.dest = Some(id);
        c.max_payload = sender.max_payload(id);
        Ok(())
    }

    /// Removes client `i`'s destination from the sender.
    fn unregister(state: &mut State, i: usize) {
        if let (Some(sender), Some(id)) = (state.sender.as_mut(), state.clients[i].dest.take()) {
            if let Err(e) = sender.remove_destination(id) {
                gst::warning!(CAT, "removing {}: {e}", state.clients[i].client);
            }
        }
    }

    /// Adds `client`; `Err` says why it could not be (it is not kept).
    fn add_client(&self, client: Client) -> Result<(), String> {
        let mut state = self.state();
        if state.clients.iter().any(|c| c.client == client) {
            gst::debug!(CAT, imp = self, "{client} is a client already");
            return Ok(());
        }
        state.clients.push(ClientState::new(client.clone()));
        let i = state.clients.len() - 1;
        if let Err(e) = Self::register(&mut state, i) {
            state.clients.pop();
            return Err(io_context(format!("client {client}"), &e));
        }
        drop(state);
        gst::info!(CAT, imp = self, "added {client}");
        Ok(())
    }

    fn remove_client(&self, client: &Client) -> bool {
        let mut state = self.state();
        let Some(i) = state.clients.iter().position(|c| &c.client == client) else {
            return false;
        };
        Self::unregister(&mut state, i);
        state.clients.remove(i);
        true
    }

    fn clear_clients(&self) {
        let mut state = self.state();
        for i in 0..state.clients.len() {
            Self::unregister(&mut state, i);
        }
        state.clients.clear();
    }

    /// Replaces the clients with `list`: the clients in both keep their
    /// destination (and statistics), so they see no gap.
    fn set_clients(&self, s: &str) {
        let list = match parse_list(s) {
            Ok(l) => l,
            Err(e) => {
                gst::warning!(CAT, imp = self, "clients: {e}");
                let started = self.state().sender.is_some();
                if started {
                    gst::element_imp_error!(self, gst::ResourceError::Settings, ["clients: {}", e]);
                } else {
                    self.settings().clients_error = Some(e.to_string());
                }
                return;
            }
        };
        self.settings().clients_error = None;
        let mut state = self.state();
        let mut i = 0;
        while i < state.clients.len() {
            if list.contains(&state.clients[i].client) {
                i += 1;
            } else {
                Self::unregister(&mut state, i);
                state.clients.remove(i);
            }
        }
        let mut failed = None;
        for client in list {
            if state.clients.iter().any(|c| c.client == client) {
                continue;
            }
            state.clients.push(ClientState::new(client.clone()));
            let i = state.clients.len() - 1;
            if let Err(e) = Self::register(&mut state, i) {
                state.clients.pop();
                failed.get_or_insert(io_context(format!("client {client}"), &e));
            }
        }
        drop(state);
        if let Some(e) = failed {
            gst::element_imp_error!(self, gst::ResourceError::OpenWrite, ["{}", e]);
        }
    }

    fn stats(&self, client: &Client) -> gst::Structure {
        let state = self.state();
        let mut s = gst::Structure::builder("mdwritesink-stats")
            .field("address", &client.host)
            .field("port", i32::from(client.port));
        if let Some(c) = state.clients.iter().find(|c| &c.client == client) {
            s = s
                .field("packets-sent", c.packets)
                .field("bytes-sent", c.bytes)
                .field("errors", c.errors)
                .field("connect-time", c.connect_time);
        }
        s.build()
    }

    /// Takes a buffer into the current interval; sends the interval when
    /// it is complete.
    fn gather(&self, state: &mut State, buffer: &gst::Buffer) -> Result<(), gst::FlowError> {
        let ts = buffer.pts().or(buffer.dts());
        let map = buffer.clone().into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ["cannot map a buffer"]);
            gst::FlowError::Error
        })?;
        if map.is_empty() {
            return Ok(());
        }
        let (range, rtp_timestamp) = if state.settings.rtp_rewrite {
            match RtpHeader::parse(&map) {
                Ok((h, payload)) if !payload.is_empty() => {
                    let start = payload.as_ptr() as usize - map.as_ptr() as usize;
                    if state.payload_type.is_none() {
                        state.payload_type = Some(h.payload_type);
                    }
                    (start..start + payload.len(), Some(h.timestamp))
                }
                Ok(_) => return Ok(()),
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["rtp-rewrite: the buffer is not RTP: {}", e]
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        } else {
            (0..map.len(), None)
        };
        if state.pending.is_empty() {
            state.first_ts = ts;
            state.first_wall = Some(Instant::now());
        }
        if ts.is_some() {
            state.last_ts = ts;
        }
        state.pending_bytes += range.len();
        state.pending.push(Pending {
            map,
            range,
            rtp_timestamp,
        });
        let interval = state.settings.interval;
        let span = match (state.first_ts, ts) {
            (Some(a), Some(b)) => b.saturating_sub(a).nseconds(),
            _ => 0,
        };
        let waited = state
            .first_wall
            .map_or(0, |w| w.elapsed().as_nanos() as u64);
        let nclients = state.clients.len().max(1);
        let full = (state.pending.len() + 1) * nclients > MDW_MAX_ENTRIES as usize
            || state.pending_bytes >= MAX_CALL_BYTES;
        if interval == 0 || span >= interval || waited >= interval || full {
            self.send(state);
        }
        Ok(())
    }

    /// Sends the gathered buffers to every client in one call, then
    /// releases them.
    fn send(&self, state: &mut State) {
        if state.pending.is_empty() {
            return;
        }
        if state.payload_type.is_some() {
            // With rtp-rewrite, the clients are registered now; one that
            // cannot be is dropped with a warning.
            let mut i = 0;
            while i < state.clients.len() {
                match Self::register(state, i) {
                    Ok(()) => i += 1,
                    Err(e) => {
                        gst::element_imp_warning!(
                            self,
                            gst::ResourceError::OpenWrite,
                            ["client {}: {}; removed", state.clients[i].client, e]
                        );
                        state.clients.remove(i);
                    }
                }
            }
        }
        // The stream time the gathered buffers cover.
        let span = match (state.first_ts, state.last_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a).nseconds(),
            _ => 0,
        };
        let pending = std::mem::take(&mut state.pending);
        state.pending_bytes = 0;
        state.first_ts = None;
        state.last_ts = None;
        state.first_wall = None;
        let Some(sender) = state.sender.as_mut() else {
            return;
        };
        let targets: Vec<(usize, DestId)> = state
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.dest.map(|d| (i, d)))
            .collect();
        if targets.is_empty() {
            return;
        }
        // At most MDW_MAX_ENTRIES entries per call.
        let per_call = (MDW_MAX_ENTRIES as usize / targets.len()).max(1);
        // With `pace`, the calls share the next interval, one after the
        // other.
        let ncalls = pending.len().div_ceil(per_call) as u32;
        // The window is the stream time the buffers cover, at least the
        // interval, at most 1 s.
        let pace = (state.settings.pace && state.settings.interval > 0).then(|| {
            let window = span.clamp(state.settings.interval, MAX_INTERVAL);
            (MonotonicClock.now(), Duration::from_nanos(window) / ncalls)
        });
        for (k, chunk) in pending.chunks(per_call).enumerate() {
            let mut entries = Vec::with_capacity(chunk.len() * targets.len());
            for p in chunk {
                let data = &p.map[p.range.clone()];
                for &(_, dest) in &targets {
                    entries.push(Entry {
                        rtp_timestamp: p.rtp_timestamp,
                        ..Entry::new(dest, data)
                    });
                }
            }
            // Each buffer's entries are one fan-out with the module.
            let mut opts = WriteOptions::default().with_fanout(true);
            if let Some((start, len)) = pace {
                opts = opts.with_pace(Some(PaceWindow::new(start + len * k as u32, len)));
            }
            let result = sender.send_vectored(&entries, &opts);
            state.calls += 1;
            let error = match result {
                Ok(r) => r.error.map(|(e, i)| format!("stopped at entry {i}: {e}")),
                Err(e) => Some(e.to_string()),
            };
            let bytes: u64 = chunk.iter().map(|p| p.range.len() as u64).sum();
            for &(i, _) in &targets {
                let c = &mut state.clients[i];
                if error.is_some() {
                    c.errors += 1;
                    continue;
                }
                let max = usize::from(c.max_payload.unwrap_or(u16::MAX)).max(1);
                let packets: u64 = chunk
                    .iter()
                    .map(|p| p.range.len().div_ceil(max) as u64)
                    .sum();
                if packets > chunk.len() as u64 && !state.warned_oversize {
                    state.warned_oversize = true;
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        [
                            "buffers larger than {} bytes, the largest payload to {}, go out as several datagrams",
                            max,
                            c.client
                        ]
                    );
                }
                c.packets += packets;
                c.bytes += bytes;
            }
            if let Some(e) = error {
                // The first error, then every 1000th.
                if state.warned_errors % 1000 == 0 {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        ["send to {} clients failed: {}", targets.len(), e]
                    );
                }
                state.warned_errors += 1;
            }
        }
    }

    fn open_sender(choice: BackendChoice) -> Result<Sender, gst::ErrorMessage> {
        match choice {
            BackendChoice::Auto => Sender::open(),
            BackendChoice::Module => Sender::open_module(),
            BackendChoice::Fallback => Sender::open_fallback(),
        }
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ["backend {:?}: cannot open: {}", choice, e]
            )
        })
    }
}

impl ObjectImpl for MdwriteSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("clients")
                    .nick("Clients")
                    .blurb(
                        "Comma-separated host:port list of the clients ([ipv6]:port for IPv6); \
                         may change while playing: clients in both lists see no gap",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt::builder("ttl")
                    .nick("Unicast TTL")
                    .blurb("TTL / hop limit of packets to unicast clients (0: the system's)")
                    .minimum(0)
                    .maximum(255)
                    .default_value(64)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("ttl-mc")
                    .nick("Multicast TTL")
                    .blurb("TTL / hop limit of packets to multicast clients (0: the system's)")
                    .minimum(0)
                    .maximum(255)
                    .default_value(1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("qos-dscp")
                    .nick("QoS DSCP")
                    .blurb("DSCP of the packets sent (-1: 0, the default class)")
                    .minimum(-1)
                    .maximum(63)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("bind-address")
                    .nick("Bind address")
                    .blurb(
                        "Source IP address of the packets (default: the one the route to \
                         each client gives)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("bind-port")
                    .nick("Bind port")
                    .blurb(
                        "Source UDP port of the packets (0: one ephemeral port shared by \
                         every client)",
                    )
                    .minimum(0)
                    .maximum(65535)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", BackendChoice::Auto)
                    .nick("Backend")
                    .blurb(
                        "How packets are sent: module (/dev/mdwrite, zero copy), fallback \
                         (UDP sockets and sendmmsg), or auto (the module if it is loaded)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("interval")
                    .nick("Interval")
                    .blurb(
                        "Nanoseconds of the stream (by buffer timestamps, or of waiting) that \
                         one send call gathers for every client; 0: one call per buffer or \
                         buffer list. Adds up to this much latency",
                    )
                    .minimum(0)
                    .maximum(MAX_INTERVAL)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("pace")
                    .nick("Pace")
                    .blurb(
                        "Spread each call's packets over the stream time its buffers cover \
                         (their timestamps' span; at least interval, at most 1 s): released by \
                         the module's pacer (MDW_WRITE_PACE), or in user space by the fallback \
                         and a module without pacing; the call then takes that time",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("rtp-rewrite")
                    .nick("RTP rewrite")
                    .blurb(
                        "The input is RTP: give every client its own random SSRC and \
                         sequence numbers (payload type, timestamps and payload are the \
                         input's; the marker bit is cleared). Off: buffers go out as they are",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "clients" => {
                let s: Option<String> = value.get().expect("type checked upstream");
                self.set_clients(s.as_deref().unwrap_or(""));
            }
            name => {
                let mut s = self.settings();
                match name {
                    "ttl" => s.ttl = value.get::<i32>().expect("type checked") as u8,
                    "ttl-mc" => s.ttl_mc = value.get::<i32>().expect("type checked") as u8,
                    "qos-dscp" => s.qos_dscp = value.get().expect("type checked"),
                    "bind-address" => {
                        s.bind_address = value
                            .get::<Option<String>>()
                            .expect("type checked")
                            .filter(|a| !a.is_empty())
                    }
                    "bind-port" => s.bind_port = value.get::<i32>().expect("type checked") as u16,
                    "backend" => s.backend = value.get().expect("type checked"),
                    "interval" => s.interval = value.get().expect("type checked"),
                    "pace" => s.pace = value.get().expect("type checked"),
                    "rtp-rewrite" => s.rtp_rewrite = value.get().expect("type checked"),
                    _ => unimplemented!("property {name}"),
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "clients" {
            let state = self.state();
            let list: Vec<Client> = state.clients.iter().map(|c| c.client.clone()).collect();
            return format_list(&list).to_value();
        }
        let s = self.settings();
        match pspec.name() {
            "ttl" => i32::from(s.ttl).to_value(),
            "ttl-mc" => i32::from(s.ttl_mc).to_value(),
            "qos-dscp" => s.qos_dscp.to_value(),
            "bind-address" => s.bind_address.to_value(),
            "bind-port" => i32::from(s.bind_port).to_value(),
            "backend" => s.backend.to_value(),
            "interval" => s.interval.to_value(),
            "pace" => s.pace.to_value(),
            "rtp-rewrite" => s.rtp_rewrite.to_value(),
            name => unimplemented!("property {name}"),
        }
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        fn client_of(args: &[glib::Value]) -> Option<Client> {
            let host: String = args[1].get().ok()?;
            let port: i32 = args[2].get().ok()?;
            let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
            Some(Client { host, port })
        }
        fn imp_of(args: &[glib::Value]) -> super::MdwriteSink {
            args[0]
                .get::<super::MdwriteSink>()
                .expect("signal emitted on the element")
        }
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("add")
                    .param_types([String::static_type(), i32::static_type()])
                    .action()
                    .class_handler(|args| {
                        let elem = imp_of(args);
                        let imp = elem.imp();
                        match client_of(args) {
                            Some(c) => {
                                if let Err(e) = imp.add_client(c.clone()) {
                                    gst::element_imp_warning!(
                                        imp,
                                        gst::ResourceError::OpenWrite,
                                        ["add: {}", e]
                                    );
                                } else {
                                    elem.emit_by_name::<()>(
                                        "client-added",
                                        &[&c.host, &i32::from(c.port)],
                                    );
                                }
                            }
                            None => gst::element_imp_warning!(
                                imp,
                                gst::ResourceError::Settings,
                                ["add: bad port"]
                            ),
                        }
                        None
                    })
                    .build(),
                glib::subclass::Signal::builder("remove")
                    .param_types([String::static_type(), i32::static_type()])
                    .action()
                    .class_handler(|args| {
                        let elem = imp_of(args);
                        if let Some(c) = client_of(args) {
                            if elem.imp().remove_client(&c) {
                                elem.emit_by_name::<()>(
                                    "client-removed",
                                    &[&c.host, &i32::from(c.port)],
                                );
                            }
                        }
                        None
                    })
                    .build(),
                glib::subclass::Signal::builder("clear")
                    .action()
                    .class_handler(|args| {
                        imp_of(args).imp().clear_clients();
                        None
                    })
                    .build(),
                glib::subclass::Signal::builder("get-stats")
                    .param_types([String::static_type(), i32::static_type()])
                    .return_type::<gst::Structure>()
                    .action()
                    .class_handler(|args| {
                        let elem = imp_of(args);
                        let host: String = args[1].get().unwrap_or_default();
                        let port: i32 = args[2].get().unwrap_or_default();
                        let client = Client {
                            host,
                            port: u16::try_from(port).unwrap_or(0),
                        };
                        Some(elem.imp().stats(&client).to_value())
                    })
                    .build(),
                glib::subclass::Signal::builder("client-added")
                    .param_types([String::static_type(), i32::static_type()])
                    .build(),
                glib::subclass::Signal::builder("client-removed")
                    .param_types([String::static_type(), i32::static_type()])
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }
}

impl GstObjectImpl for MdwriteSink {}

impl ElementImpl for MdwriteSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "mdwrite multi-destination UDP sink",
                "Sink/Network",
                "Sends every buffer to every client (like multiudpsink), one call per \
                 interval for all clients, zero copy through the mdwrite kernel module \
                 or with sendmmsg",
                "mdwrite developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &gst::Caps::new_any(),
            )
            .expect("sink pad template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for MdwriteSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings().clone();
        if let Some(e) = &settings.clients_error {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["clients: {}", e]
            ));
        }
        let sender = Self::open_sender(settings.backend)?;
        gst::info!(CAT, imp = self, "backend {}", sender.backend());
        let mut state = self.state();
        state.sender = Some(sender);
        state.settings = settings;
        state.src_port = None;
        state.payload_type = None;
        state.calls = 0;
        state.warned_errors = 0;
        state.warned_oversize = false;
        for i in 0..state.clients.len() {
            if let Err(e) = Self::register(&mut state, i) {
                let client = state.clients[i].client.to_string();
                for j in 0..state.clients.len() {
                    Self::unregister(&mut state, j);
                }
                state.sender = None;
                return Err(gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    ["client {}: {}", client, e]
                ));
            }
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let mut state = self.state();
        state.pending.clear();
        state.pending_bytes = 0;
        for i in 0..state.clients.len() {
            Self::unregister(&mut state, i);
        }
        if let Some(sender) = state.sender.take() {
            gst::info!(
                CAT,
                imp = self,
                "{} calls through {}",
                state.calls,
                match sender.backend() {
                    Backend::Module => "the module",
                    Backend::Fallback => "the fallback",
                }
            );
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = self.state();
        self.gather(&mut state, buffer)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn render_list(&self, list: &gst::BufferList) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = self.state();
        let interval = state.settings.interval;
        if interval == 0 {
            // One call for the whole list.
            state.settings.interval = u64::MAX;
            let r = list
                .iter_owned()
                .try_for_each(|b| self.gather(&mut state, &b));
            state.settings.interval = interval;
            r?;
            self.send(&mut state);
        } else {
            for b in list.iter_owned() {
                self.gather(&mut state, &b)?;
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => {
                let mut state = self.state();
                self.send(&mut state);
            }
            gst::EventView::FlushStart(_) => {
                let mut state = self.state();
                state.pending.clear();
                state.pending_bytes = 0;
                state.first_ts = None;
                state.last_ts = None;
            }
            _ => {}
        }
        self.parent_event(event)
    }
}
