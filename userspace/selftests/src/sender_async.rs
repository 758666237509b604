// SPDX-License-Identifier: GPL-2.0

//! The library's registered buffers and asynchronous sends
//! (`Sender::register_buffer`, `send_async`, completions, back-pressure,
//! eventfd, `StreamGroup::set_async_ring`) against the module, and through
//! the fallback for the same bytes.

use std::{
    collections::HashMap,
    io::Read,
    os::fd::{AsFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_MAX_ASYNC},
    AsyncEntry, Backend, Completion, DestConfig, FakeClock, GroupOptions, Rtp, Sender,
    StreamConfig, StreamGroup, WriteOptions, WriteReport,
};

use crate::{
    net::{self, Listen, Received},
    send::pattern,
    sender::{add_stream_to, open_backend, plain_config},
    topo::{self, Topology},
    TestResult,
};

const RECEIVERS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(120);
/// Asynchronous calls of `sender_registered_async_*`.
const CALLS: usize = 6;
/// Cookies of those calls start here.
const COOKIE: u64 = 0xC0DE_0000_0000;

/// Receiver `i`'s destination: `sender::plain_config` with RTP for
/// receiver 2 (0 and 1 IPv4 plain UDP at the MTU, 2 IPv4 RTP at packet size
/// 1000, 3 IPv6 plain UDP at packet size 1200).
fn config(topo: &Topology, ifindex: u32, i: usize) -> DestConfig {
    let mut c = plain_config(topo, ifindex, i);
    if i == 2 {
        c.rtp = Some(
            Rtp::new(0x5e0d, 33)
                .with_seq(1)
                .with_timestamp(0)
                .with_ts_increment(90),
        );
    }
    c
}

/// RTP header bytes in front of receiver `i`'s payloads.
fn header(i: usize) -> usize {
    if i == 2 {
        12
    } else {
        0
    }
}

/// Fails unless `sender` is the module with registered buffers and
/// asynchronous writes.
fn require_module(sender: &Sender) -> TestResult {
    if sender.backend() != Backend::Module {
        return Err(format!("backend {}", sender.backend()));
    }
    let info = sender
        .info()
        .map_err(|e| format!("info: {e}"))?
        .ok_or("no module info")?;
    let want = MDW_FEAT_BUF | MDW_FEAT_ASYNC;
    if info.features.bits() & want != want {
        return Err(format!(
            "the module lacks MDW_FEAT_BUF | MDW_FEAT_ASYNC: features {:#x}",
            info.features.bits()
        ));
    }
    Ok(())
}

/// Reads completions until `n` arrived; fails if none comes for 30 s.
fn collect(sender: &mut Sender, n: usize, done: &mut Vec<Completion>) -> TestResult {
    while done.len() < n {
        let got = sender
            .wait_completions(done, Some(Duration::from_secs(30)))
            .map_err(|e| format!("wait_completions: {e}"))?;
        if got == 0 {
            return Err(format!(
                "{} of {n} completions, then none for 30 s (in flight: {})",
                done.len(),
                sender.in_flight()
            ));
        }
    }
    Ok(())
}

/// Each cookie of `reports` completed exactly once, with its call's
/// bytes, packets and no error.
fn check_completions(done: &[Completion], reports: &HashMap<u64, WriteReport>) -> TestResult {
    let mut seen = HashMap::new();
    for c in done {
        *seen.entry(c.cookie).or_insert(0) += 1;
        let r = reports
            .get(&c.cookie)
            .ok_or(format!("a completion with unknown cookie {:#x}", c.cookie))?;
        if (c.bytes, c.packets) != (r.bytes, r.packets) || c.error.is_some() {
            return Err(format!(
                "completion {:#x}: {} bytes {} packets {:?}; the call reported {} bytes {} packets",
                c.cookie, c.bytes, c.packets, c.error, r.bytes, r.packets
            ));
        }
    }
    if let Some((cookie, n)) = seen.iter().find(|(_, &n)| n != 1) {
        return Err(format!("cookie {cookie:#x} completed {n} times"));
    }
    if seen.len() != reports.len() {
        return Err(format!(
            "{} calls completed, {} were sent",
            seen.len(),
            reports.len()
        ));
    }
    Ok(())
}

/// Where each call's chunk for each destination lies in the buffer.
struct Layout {
    /// `(offset, len)` of call `k`, destination `i`, at `[k][i]`.
    chunks: Vec<Vec<(usize, usize)>>,
    len: usize,
}

impl Layout {
    fn new() -> Self {
        let mut at = 5;
        let chunks = (0..CALLS)
            .map(|k| {
                (0..RECEIVERS)
                    .map(|i| {
                        let len = 200_000 + 4099 * k + 777 * i + 1;
                        let chunk = (at, len);
                        at += len + 3;
                        chunk
                    })
                    .collect()
            })
            .collect();
        Self { chunks, len: at }
    }

    /// What receiver `i` gets: its chunks in call order, then `extra`.
    fn expected(&self, data: &[u8], i: usize, extra: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = self
            .chunks
            .iter()
            .flat_map(|call| {
                let (off, len) = call[i];
                data[off..off + len].iter().copied()
            })
            .collect();
        v.extend_from_slice(extra);
        v
    }
}

/// Sends `CALLS` asynchronous calls, each with one chunk of a registered
/// buffer per destination (the last call also a chunk of ordinary memory
/// for receiver 0), through `backend`; checks the completions and, for
/// the module, the counters. Returns what each receiver got.
fn registered_async(backend: Backend) -> Result<Vec<Received>, String> {
    let topo = Topology::new(RECEIVERS)?;
    topo.static_neighbours()?;
    let ifindex = topo.sender_ifindex()?;
    let layout = Layout::new();
    let data = pattern(layout.len, 61);
    let extra = pattern(10_001, 62);
    let rx = net::receivers(&topo, RECEIVERS, TIMEOUT, |i| Listen {
        v6: i == 3,
        expect: layout
            .expected(&data, i, if i == 0 { &extra } else { &[] })
            .len(),
        skip: header(i),
    })?;
    let configs: Vec<DestConfig> = (0..RECEIVERS).map(|i| config(&topo, ifindex, i)).collect();
    let (d, x) = (data.clone(), extra.clone());
    let chunks = layout.chunks.clone();
    topo::spawn_in(&topo.sender, move || {
        let mut sender = open_backend(backend)?;
        if backend == Backend::Module {
            require_module(&sender)?;
        }
        let ids = configs
            .iter()
            .map(|c| sender.add_destination(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("connect: {e}"))?;
        let mut buf = sender
            .register_buffer(d.len())
            .map_err(|e| format!("register_buffer: {e}"))?;
        if buf.is_registered() != (backend == Backend::Module) {
            return Err(format!("{backend} gave buffer {buf:?}"));
        }
        buf.copy_from_slice(&d);
        let buf_len = buf.len();
        // One piece of the buffer per call (the chunks of call k lie in
        // order between the first chunk of k and that of k + 1): each call
        // owns its piece until its completion.
        let mut pieces = Vec::new();
        let mut rest = buf;
        for k in (1..chunks.len()).rev() {
            pieces.push((chunks[k][0].0, rest.split_off(chunks[k][0].0)));
        }
        pieces.push((0, rest));
        pieces.reverse();
        let mut reports = HashMap::new();
        for (k, (call, (base, piece))) in chunks.iter().zip(pieces).enumerate() {
            let mut entries: Vec<AsyncEntry> = call
                .iter()
                .zip(&ids)
                .map(|(&(off, len), &id)| AsyncEntry::new(id, 0, off - base..off - base + len))
                .collect();
            let mut buffers = vec![piece];
            if k == CALLS - 1 {
                // Ordinary memory: not registered, pinned for the call.
                let mut plain = mdwrite::RegisteredBuffer::unregistered(x.len())
                    .map_err(|e| format!("plain memory: {e}"))?;
                plain.copy_from_slice(&x);
                buffers.push(plain);
                entries.push(AsyncEntry::new(ids[0], 1, 0..x.len()));
            }
            let cookie = COOKIE + k as u64;
            let r = sender
                .send_async(buffers, &entries, &WriteOptions::default(), cookie)
                .map_err(|e| format!("send_async {k}: {e}"))?;
            if let Some((e, i)) = &r.error {
                return Err(format!("call {k} stopped at entry {i}: {e}"));
            }
            let bytes: usize = entries.iter().map(|e| e.range.len()).sum();
            if r.bytes != bytes as u64 {
                return Err(format!("call {k} queued {} of {bytes} bytes", r.bytes));
            }
            reports.insert(cookie, r);
        }
        let mut done = Vec::new();
        collect(&mut sender, CALLS, &mut done)?;
        check_completions(&done, &reports)?;
        if sender.in_flight() != 0 {
            return Err(format!(
                "{} in flight after every completion",
                sender.in_flight()
            ));
        }
        let mut more = Vec::new();
        if sender
            .try_completions(&mut more)
            .map_err(|e| e.to_string())?
            != 0
            || sender
                .wait_completion(Some(Duration::from_millis(10)))
                .map_err(|e| e.to_string())?
                .is_some()
        {
            return Err(format!("a completion too many: {more:?}"));
        }
        if backend == Backend::Module {
            let s = sender.stats().map_err(|e| e.to_string())?;
            let total: u64 = reports.values().map(|r| r.bytes).sum();
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            let pages = buf_len.div_ceil(page) as u64;
            if s.calls != CALLS as u64
                || s.completions != CALLS as u64
                || s.bytes_zerocopy != total
                || s.bytes_copied != 0
                || s.async_in_flight != 0
                || s.completions_queued != 0
                || s.pages_pinned != pages
            {
                return Err(format!(
                    "stats {s:?}: want {CALLS} calls and completions, {total} zero-copy bytes, \
                     nothing in flight or queued, {pages} pages pinned (the buffer's)"
                ));
            }
            // The pieces came back with the completions.
            let buf = done
                .iter_mut()
                .find_map(|c| c.buffers.drain(..).next())
                .ok_or("no buffer came back with the completions")?;
            buf.unregister().map_err(|e| format!("unregister: {e}"))?;
            let s = sender.stats().map_err(|e| e.to_string())?;
            if s.pages_pinned != 0 {
                return Err(format!("{} pages pinned after unregister", s.pages_pinned));
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sender thread panicked")??;
    let got = net::join_all(rx)?;
    for (i, g) in got.iter().enumerate() {
        let want = layout.expected(&data, i, if i == 0 { &extra } else { &[] });
        let bytes = g.bytes(header(i));
        if bytes != want {
            let at = bytes.iter().zip(&want).position(|(a, b)| a != b);
            return Err(format!(
                "{backend}: receiver {i} got {} bytes in {} datagrams, want {} (first difference at {at:?})",
                bytes.len(),
                g.datagrams.len(),
                want.len()
            ));
        }
    }
    Ok(got)
}

/// The library sends from a registered buffer to four receivers (IPv4,
/// IPv6, RTP) with asynchronous calls: every byte arrives, each call has
/// exactly one completion with its cookie and counts, nothing is copied,
/// only the buffer stays pinned, and nothing once it is unregistered. The
/// fallback delivers the same datagrams from the same calls.
pub(crate) fn sender_registered_async_module() -> TestResult {
    let module = registered_async(Backend::Module)?;
    let fallback = registered_async(Backend::Fallback)?;
    for (i, (m, f)) in module.iter().zip(&fallback).enumerate() {
        if m.datagrams != f.datagrams {
            return Err(format!(
                "receiver {i}: the module's {} datagrams differ from the fallback's {}",
                m.datagrams.len(),
                f.datagrams.len()
            ));
        }
    }
    Ok(())
}

/// With netem holding packets, `MDW_MAX_ASYNC` calls are accepted and the
/// next one is `EAGAIN` (`WouldBlock`); a timed wait returns nothing while
/// they are held; `send_async_waiting` reads completions and gets the call
/// through; every call completes once, and the eventfd counted them all.
pub(crate) fn sender_async_backpressure_module() -> TestResult {
    const HOLD_MS: u64 = 3000;
    let (_topo, c) = topo::dummy_sender(Some(HOLD_MS))?;
    let mut sender = Sender::open_module().map_err(|e| format!("open: {e}"))?;
    require_module(&sender)?;
    let dest = sender
        .add_destination(&c)
        .map_err(|e| format!("connect: {e}"))?;
    // SAFETY: plain eventfd(2); no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by eventfd(2) and is owned by no one
    // else.
    let efd = unsafe { OwnedFd::from_raw_fd(fd) };
    sender
        .set_eventfd(Some(efd.as_fd()))
        .map_err(|e| format!("set_eventfd: {e}"))?;
    let mut buf = sender
        .register_buffer(1 << 16)
        .map_err(|e| format!("register_buffer: {e}"))?;
    buf.copy_from_slice(&pattern(1 << 16, 5));
    let opts = WriteOptions::default().with_qdisc(true);
    let limit = u64::from(MDW_MAX_ASYNC);
    let mut reports = HashMap::new();
    let first = Instant::now();
    // One piece of 100 bytes per call, each owned by its call.
    let mut pieces = buf.into_chunks(100).into_iter();
    let mut next_piece = || pieces.next().ok_or("out of buffer pieces".to_string());
    let entry = [AsyncEntry::new(dest, 0, 0..100)];
    for k in 0..limit {
        let r = sender
            .send_async(vec![next_piece()?], &entry, &opts, k)
            .map_err(|e| format!("send_async {k} of {limit}: {e}"))?;
        reports.insert(k, r);
    }
    let sent = first.elapsed();
    if sender.in_flight() != limit {
        return Err(format!(
            "in_flight {} after {limit} calls",
            sender.in_flight()
        ));
    }
    let s = sender.stats().map_err(|e| e.to_string())?;
    if s.async_in_flight + s.completions_queued != limit {
        return Err(format!("stats {s:?} with {limit} calls unread"));
    }
    let again = match sender.send_async(vec![next_piece()?], &entry, &opts, limit) {
        Err(e) if e.error.kind() == std::io::ErrorKind::WouldBlock => e.buffers,
        other => {
            return Err(format!(
                "call {limit} past the limit: {other:?}, want EAGAIN"
            ))
        }
    };
    // Only meaningful while netem surely holds the first packet.
    let mut done = Vec::new();
    if sent < Duration::from_millis(HOLD_MS / 2) {
        let n = sender
            .wait_completions(&mut done, Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        if n != 0 && first.elapsed() < Duration::from_millis(HOLD_MS) {
            return Err(format!("{n} completions while netem holds every packet"));
        }
    }
    let r = sender
        .send_async_waiting(again, &entry, &opts, limit, &mut done)
        .map_err(|e| format!("send_async_waiting: {e}"))?;
    if first.elapsed() < Duration::from_millis(HOLD_MS) {
        return Err(format!(
            "send_async_waiting got through after {:?}, before netem released anything",
            first.elapsed()
        ));
    }
    reports.insert(limit, r);
    collect(&mut sender, reports.len(), &mut done)?;
    check_completions(&done, &reports)?;
    let mut count = [0u8; 8];
    std::fs::File::from(efd)
        .read_exact(&mut count)
        .map_err(|e| format!("read eventfd: {e}"))?;
    if u64::from_ne_bytes(count) != limit + 1 {
        return Err(format!(
            "the eventfd counted {} completions, want {}",
            u64::from_ne_bytes(count),
            limit + 1
        ));
    }
    Ok(())
}

/// A StreamGroup with `set_async_ring` through the module: two streams
/// (RTP and plain) read into registered rings and sent asynchronously
/// arrive byte for byte; the ring pages are pinned while the group lives
/// and released after it; nothing is left in flight after `flush`.
pub(crate) fn sender_group_async_module() -> TestResult {
    let topo = Topology::new(2)?;
    let ifindex = topo.sender_ifindex()?;
    let sources = [pattern(1316 * 400 + 17, 70), pattern(1316 * 90, 71)];
    // Receiver 0 plain UDP, receiver 1 RTP.
    let skip = [0, 12];
    let rx = net::receivers(&topo, 2, TIMEOUT, |i| Listen {
        v6: false,
        expect: sources[i].len(),
        skip: skip[i],
    })?;
    let configs: Vec<DestConfig> = (0..2)
        .map(|i| {
            let mut c = config(&topo, ifindex, i);
            c.packet_size = Some(c.packet_size_for(1316));
            c
        })
        .collect();
    let srcs = sources.clone();
    topo::spawn_in(&topo.sender, move || {
        let mut sender = Sender::open_module().map_err(|e| format!("open: {e}"))?;
        require_module(&sender)?;
        let clock = FakeClock::new();
        let mut group = StreamGroup::new(clock, GroupOptions::default());
        group
            .set_async_ring(3)
            .map_err(|e| format!("set_async_ring: {e}"))?;
        for (i, (mut c, src)) in configs.into_iter().zip(srcs).enumerate() {
            let cfg = {
                let mut v = StreamConfig::new([8_000_000, 1_500_000][i], 1316);
                v.dests = Vec::new();
                v.rtp_clock_hz = (i == 1).then_some(90_000);
                v
            };
            if i == 1 {
                c.rtp = Some(
                    Rtp::new(0x6a, 33)
                        .with_seq(7)
                        .with_timestamp(0)
                        .with_ts_increment(cfg.rtp_ts_increment().unwrap_or(0)),
                );
            }
            add_stream_to(&mut group, &mut sender, &c, cfg, src)?;
        }
        let mut pinned_while_running = 0;
        while !group.is_empty() {
            let r = group.tick(&mut sender).map_err(|e| format!("tick: {e}"))?;
            if let Some((e, i)) = r.write.and_then(|w| w.error) {
                return Err(format!("tick stopped at entry {i}: {e}"));
            }
            if let Some(e) = group.async_ring_error() {
                return Err(format!("no registered ring: {e}"));
            }
            let s = sender.stats().map_err(|e| e.to_string())?;
            pinned_while_running = pinned_while_running.max(s.pages_pinned);
        }
        group
            .flush(&mut sender)
            .map_err(|e| format!("flush: {e}"))?;
        drop(group);
        let s = sender.stats().map_err(|e| e.to_string())?;
        if sender.in_flight() != 0 || s.async_in_flight != 0 || s.completions_queued != 0 {
            return Err(format!(
                "after flush: {} in flight, stats {s:?}",
                sender.in_flight()
            ));
        }
        if pinned_while_running == 0 || s.pages_pinned != 0 {
            return Err(format!(
                "pages pinned: {pinned_while_running} at most while streaming (the rings), \
                 {} after (want 0)",
                s.pages_pinned
            ));
        }
        if s.calls == 0 || s.completions != s.calls || s.bytes_copied != 0 {
            return Err(format!("stats {s:?}"));
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sender thread panicked")??;
    for (i, got) in net::join_all(rx)?.into_iter().enumerate() {
        if got.bytes(skip[i]) != sources[i] {
            return Err(format!(
                "receiver {i}: {} bytes in {} datagrams, want {}",
                got.bytes(skip[i]).len(),
                got.datagrams.len(),
                sources[i].len()
            ));
        }
    }
    Ok(())
}
