// SPDX-License-Identifier: GPL-2.0

//! The userspace fallback backend: UDP sockets and `sendmmsg`.
//!
//! It reuses the module's own pure logic (`mdwrite-common`): the header
//! template validates a destination and gives its largest payload and RTP
//! header, the segmentation cuts entries into packets, and the round-robin
//! order says which destination sends next. The plan of a call
//! ([`Plan`]) is a pure iterator, tested on its own; sending it is a loop of
//! `sendmmsg` over runs of the plan that share a socket.

use std::{
    collections::{hash_map::Entry, HashMap},
    io::{self, IoSlice},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use mdwrite_common::{
    interleave::RoundRobin,
    pace::{Departures, EntryPace as AbiEntryPace},
    segment::{total_packets, SegmentCursor},
    template::{PacketState, Template, UdpCsum, MAX_HEADER_LEN},
};
use mdwrite_uapi::{MDW_MAX_CALL_BYTES, MDW_MAX_DESTS, MDW_MAX_ENTRIES};
use nix::sys::socket::{setsockopt, sockopt::UdpGsoSegment};
use rustix::net::{
    sendmmsg, sockopt, MMsgHdr, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    SocketAddrAny, TxTimeFlags,
};

use crate::{
    route::{interface_mtu, interface_up},
    DestConfig, DestId, Entry as WriteEntry, Stats, WriteOptions, WriteReport,
};

/// Messages per `sendmmsg`, as the module's transmit batches.
pub(crate) const BATCH: usize = 64;

/// The length of an RTP header without CSRCs or extension.
const RTP_LEN: usize = 12;

/// Most packets in one `UDP_SEGMENT` message (the kernel's
/// `UDP_MAX_SEGMENTS` is 64 or more).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one `UDP_SEGMENT` message: below the 64 KiB of an
/// IP datagram with its headers.
const GSO_MAX_BYTES: usize = 65_000;

/// The fallback's own counters, beyond [`Stats`](crate::Stats): how many
/// system calls and messages carried the packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FallbackStats {
    /// `sendmmsg` calls.
    pub sendmmsg_calls: u64,
    /// Messages sent: one per packet, or one per `UDP_SEGMENT` run.
    pub messages: u64,
    /// Messages of several packets, segmented by the kernel (GSO).
    pub gso_messages: u64,
}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

/// What makes two destinations able to share a socket: the address it is
/// bound to and the options set on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SocketKey {
    bind: SocketAddr,
    hop_limit: u8,
    dscp: u8,
    csum_zero: bool,
}

#[derive(Debug)]
struct FbSocket {
    socket: UdpSocket,
    users: usize,
    /// The socket's `UDP_SEGMENT` size; 0 when off.
    gso: u16,
    /// The clock of the socket's `SO_TXTIME`, once set.
    txtime: Option<u32>,
}

/// A destination of the fallback.
#[derive(Debug)]
struct FbDest {
    key: SocketKey,
    addr: SocketAddrAny,
    template: Template,
    state: PacketState,
    rtp: bool,
}

/// The fallback's state: destinations, their sockets and counters.
#[derive(Debug, Default)]
pub(crate) struct Fallback {
    dests: HashMap<u32, FbDest>,
    sockets: HashMap<SocketKey, FbSocket>,
    next_handle: u32,
    stats: Stats,
    counters: FallbackStats,
    /// `UDP_SEGMENT` turned off by the caller.
    no_gso: bool,
    /// `UDP_SEGMENT` refused by the kernel.
    gso_unsupported: bool,
}

impl Fallback {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn counters(&self) -> FallbackStats {
        self.counters
    }

    pub(crate) fn set_gso(&mut self, enabled: bool) {
        self.no_gso = !enabled;
    }

    /// The `UDP_SEGMENT` size for a call, if it can use GSO: GSO packets
    /// are cut by the kernel, so it is only used when every destination of
    /// the call has no RTP header, the same largest payload and a checksum.
    /// Sets or clears the option on the call's sockets.
    fn prepare_gso(&mut self, grouped: &Grouped) -> Option<u16> {
        let mut size = None;
        if !self.no_gso && !self.gso_unsupported {
            let mut sizes = grouped.dests.iter().map(|d| {
                let dest = &self.dests[&d.0];
                (!dest.rtp && !dest.key.csum_zero).then(|| dest.template.max_payload())
            });
            let first = sizes.next().flatten();
            if first.is_some() && sizes.all(|s| s == first) {
                size = first;
            }
        }
        let keys: Vec<SocketKey> = grouped.dests.iter().map(|d| self.dests[&d.0].key).collect();
        for key in &keys {
            let Some(s) = self.sockets.get_mut(key) else {
                continue;
            };
            let want = size.unwrap_or(0);
            if s.gso != want {
                match setsockopt(&s.socket, UdpGsoSegment, &i32::from(want)) {
                    Ok(()) => s.gso = want,
                    Err(_) if want != 0 => {
                        // An old kernel: no GSO from now on.
                        self.gso_unsupported = true;
                        return self.prepare_gso(grouped);
                    }
                    Err(_) => {}
                }
            }
        }
        size
    }

    /// Turns `UDP_SEGMENT` off on the call's sockets.
    fn clear_gso(&mut self, grouped: &Grouped) {
        for d in &grouped.dests {
            let key = self.dests[&d.0].key;
            if let Some(s) = self.sockets.get_mut(&key) {
                if s.gso != 0 && setsockopt(&s.socket, UdpGsoSegment, &0).is_ok() {
                    s.gso = 0;
                }
            }
        }
    }

    /// Checks a paced call's window as the module does, turns `SO_TXTIME`
    /// on (on its clock) on the call's sockets, and gives each queue its
    /// departure times.
    fn prepare_txtime(
        &mut self,
        grouped: &Grouped,
        payloads: &[u16],
        window: &crate::PaceWindow,
    ) -> io::Result<(mdwrite_common::pace::Window, Vec<Departures>)> {
        let checked = window.check(window.clock.now())?;
        let clock = match window.clock {
            crate::PaceClock::Tai => rustix::time::ClockId::Tai,
            _ => rustix::time::ClockId::Monotonic,
        };
        for d in &grouped.dests {
            let key = self.dests[&d.0].key;
            if let Some(s) = self.sockets.get_mut(&key) {
                if s.txtime != Some(window.clock.id()) {
                    sockopt::set_txtime(&s.socket, clock, TxTimeFlags::empty())?;
                    s.txtime = Some(window.clock.id());
                }
            }
        }
        let mut deps = Vec::with_capacity(grouped.dests.len());
        for (lens, &max) in grouped.lens.iter().zip(payloads) {
            let n = total_packets(lens.as_slice(), max).map_err(|_| errno(libc::EINVAL))?;
            deps.push(Departures::new(&checked, n));
        }
        Ok((checked, deps))
    }

    pub(crate) fn connect(&mut self, dest: &DestConfig) -> io::Result<DestId> {
        let mtu = interface_mtu(dest.ifindex).map_err(|_| errno(libc::ENODEV))?;
        let template = dest.template(mtu)?;
        if dest.vlan_tci.is_some() {
            return Err(errno(libc::EOPNOTSUPP));
        }
        if !interface_up(dest.ifindex).map_err(|_| errno(libc::ENODEV))? {
            return Err(errno(libc::ENETDOWN));
        }
        if self.dests.len() >= MDW_MAX_DESTS as usize {
            return Err(errno(libc::ENOSPC));
        }
        let key = SocketKey {
            bind: SocketAddr::new(dest.from, dest.src_port),
            hop_limit: match dest.hop_limit {
                None | Some(0) => 64,
                Some(n) => n,
            },
            dscp: dest.dscp,
            csum_zero: dest.udp_csum_zero,
        };
        match self.sockets.entry(key) {
            Entry::Occupied(mut s) => s.get_mut().users += 1,
            Entry::Vacant(v) => {
                v.insert(FbSocket {
                    socket: open_socket(&key)?,
                    users: 1,
                    gso: 0,
                    txtime: None,
                });
            }
        }
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        while self.dests.contains_key(&self.next_handle) {
            self.next_handle = self.next_handle.wrapping_add(1).max(1);
        }
        let handle = self.next_handle;
        self.dests.insert(
            handle,
            FbDest {
                key,
                addr: dest.to.into(),
                state: template.initial_state(),
                template,
                rtp: dest.rtp.is_some(),
            },
        );
        Ok(DestId(handle))
    }

    pub(crate) fn disconnect(&mut self, id: DestId) -> io::Result<()> {
        let dest = self.dests.remove(&id.0).ok_or_else(|| errno(libc::ENXIO))?;
        if let Some(s) = self.sockets.get_mut(&dest.key) {
            s.users -= 1;
            if s.users == 0 {
                self.sockets.remove(&dest.key);
            }
        }
        Ok(())
    }

    /// Checks a call as the module does, with its errnos, before anything
    /// is sent.
    fn validate(&self, entries: &[WriteEntry<'_>]) -> io::Result<()> {
        if entries.is_empty() {
            return Err(errno(libc::EINVAL));
        }
        if entries.len() > MDW_MAX_ENTRIES as usize {
            return Err(errno(libc::E2BIG));
        }
        let mut total = 0u64;
        for e in entries {
            if e.data.is_empty() {
                return Err(errno(libc::EINVAL));
            }
            let dest = self
                .dests
                .get(&e.dest.0)
                .ok_or_else(|| errno(libc::ENXIO))?;
            if e.rtp_timestamp.is_some() && !dest.rtp {
                return Err(errno(libc::EINVAL));
            }
            total = total.saturating_add(e.data.len() as u64);
        }
        if total > MDW_MAX_CALL_BYTES {
            return Err(errno(libc::E2BIG));
        }
        Ok(())
    }

    pub(crate) fn send_vectored(
        &mut self,
        entries: &[WriteEntry<'_>],
        opts: &WriteOptions,
    ) -> io::Result<WriteReport> {
        self.validate(entries)?;
        let lens: Vec<(DestId, u64)> = entries
            .iter()
            .map(|e| (e.dest, e.data.len() as u64))
            .collect();
        let grouped = Grouped::new(&lens);
        let payloads: Vec<u16> = grouped
            .dests
            .iter()
            .map(|d| self.dests[&d.0].template.max_payload())
            .collect();
        let mut remaining = Vec::new();
        let mut active = Vec::new();
        let plan = Plan::new(
            &grouped,
            &payloads,
            opts.quantum,
            &mut remaining,
            &mut active,
        )
        .map_err(|_| errno(libc::EINVAL))?;
        // A paced call: each packet carries its departure time
        // (`SCM_TXTIME`), so none is merged into a GSO message.
        let mut times = match opts.pace {
            Some(w) => Some(self.prepare_txtime(&grouped, &payloads, &w)?),
            None => None,
        };
        if let Some((window, _)) = &times {
            // Entries' own timings, checked as the module checks them.
            for (slot, idxs) in grouped.entries.iter().enumerate() {
                let per = usize::from(payloads[slot]).max(1);
                for &i in idxs {
                    if let Some(p) = entries[i].pace {
                        let (offset, gap) = p.abi();
                        let n = entries[i].data.len().div_ceil(per) as u64;
                        window
                            .entry_gap(u64::from(offset), u64::from(gap), n)
                            .map_err(|_| errno(libc::ERANGE))?;
                    }
                }
            }
        }
        let gso = if times.is_some() {
            self.clear_gso(&grouped);
            None
        } else {
            self.prepare_gso(&grouped)
        };

        let mut out = WriteReport {
            bytes: 0,
            packets: 0,
            error: None,
        };
        let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
        for p in plan {
            let handle = grouped.dests[p.slot].0;
            let dest = self
                .dests
                .get_mut(&handle)
                .ok_or_else(|| errno(libc::ENXIO))?;
            // With GSO, a packet that continues the last message's bytes
            // of the same entry, after full packets, joins that message.
            if let (Some(g), Some(last)) = (gso, batch.last_mut()) {
                let g = usize::from(g);
                if last.packet.slot == p.slot
                    && last.packet.entry == p.entry
                    && last.packet.offset + last.len as u64 == p.offset
                    && last.len == last.segs * g
                    && last.segs < GSO_MAX_SEGMENTS
                    && last.len + usize::from(p.len) <= GSO_MAX_BYTES
                {
                    let mut header = [0u8; MAX_HEADER_LEN];
                    dest.template
                        .write_header(&mut header, &mut dest.state, p.len, UdpCsum::Partial)
                        .map_err(|_| errno(libc::EINVAL))?;
                    last.len += usize::from(p.len);
                    last.segs += 1;
                    continue;
                }
            }
            if batch.len() == BATCH || batch.first().is_some_and(|b| b.key != dest.key) {
                if let Err(e) = self.flush(entries, &grouped, &mut batch, &mut out) {
                    out.error = Some(e);
                    break;
                }
            }
            let Some(dest) = self.dests.get_mut(&handle) else {
                return Err(errno(libc::ENXIO));
            };
            let before = dest.state;
            if p.offset == 0 {
                if let Some(ts) = entries[p.entry].rtp_timestamp {
                    dest.state.rtp_ts = ts;
                }
            }
            let txtime = match &mut times {
                Some((window, deps)) => {
                    let d = &mut deps[p.slot];
                    if p.offset == 0 {
                        let own = entries[p.entry].pace.map(|e| {
                            let (offset, gap) = e.abi();
                            AbiEntryPace { offset, gap }
                        });
                        // A gap of 0: spread from the offset to the end.
                        let own = own.map(|o| match o.gap {
                            0 => {
                                let n = entries[p.entry]
                                    .data
                                    .len()
                                    .div_ceil(usize::from(payloads[p.slot]).max(1));
                                let gap = window
                                    .entry_gap(u64::from(o.offset), 0, n as u64)
                                    .unwrap_or(0);
                                AbiEntryPace {
                                    offset: o.offset,
                                    gap: u32::try_from(gap).unwrap_or(u32::MAX),
                                }
                            }
                            _ => o,
                        });
                        d.enter(window, own);
                    }
                    Some(d.take())
                }
                None => None,
            };
            let mut header = [0u8; MAX_HEADER_LEN];
            dest.template
                .write_header(&mut header, &mut dest.state, p.len, UdpCsum::Partial)
                .map_err(|_| errno(libc::EINVAL))?;
            let mut rtp = [0u8; RTP_LEN];
            if dest.rtp {
                let end = dest.template.header_len();
                rtp.copy_from_slice(&header[end - RTP_LEN..end]);
            }
            batch.push(Pending {
                key: dest.key,
                packet: p,
                len: usize::from(p.len),
                segs: 1,
                rtp: dest.rtp.then_some(rtp),
                before,
                txtime,
            });
        }
        if out.error.is_none() {
            if let Err(e) = self.flush(entries, &grouped, &mut batch, &mut out) {
                out.error = Some(e);
            }
        }
        self.stats.completions += 1;
        if out.packets > 0 {
            self.stats.calls += 1;
        }
        self.stats.packets += out.packets;
        self.stats.bytes_copied += out.bytes;
        match out.error {
            Some((e, _)) if out.packets == 0 => Err(e),
            _ => Ok(out),
        }
    }

    /// Sends the batched messages, all on one socket. On an error, the
    /// destinations of the messages not sent get their state back, and the
    /// error comes with the entry of the first message not sent.
    fn flush(
        &mut self,
        entries: &[WriteEntry<'_>],
        grouped: &Grouped,
        batch: &mut Vec<Pending>,
        out: &mut WriteReport,
    ) -> Result<(), (io::Error, usize)> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let socket = &self.sockets[&first.key].socket;
        let addrs: Vec<&SocketAddrAny> = batch
            .iter()
            .map(|m| &self.dests[&grouped.dests[m.packet.slot].0].addr)
            .collect();
        let iovs: Vec<[IoSlice<'_>; 2]> = batch
            .iter()
            .map(|m| {
                let p = m.packet;
                let start = p.offset as usize;
                let payload = &entries[p.entry].data[start..start + m.len];
                match &m.rtp {
                    Some(h) => [IoSlice::new(h), IoSlice::new(payload)],
                    None => [IoSlice::new(payload), IoSlice::new(&[])],
                }
            })
            .collect();
        let mut spaces: Vec<[std::mem::MaybeUninit<u8>; rustix::cmsg_space!(TxTime(1))]> = batch
            .iter()
            .map(|_| [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(TxTime(1))])
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = batch
            .iter()
            .zip(spaces.iter_mut())
            .map(|(m, space)| match m.txtime {
                Some(t) => {
                    let mut c = SendAncillaryBuffer::new(space);
                    c.push(SendAncillaryMessage::TxTime(t));
                    c
                }
                None => SendAncillaryBuffer::default(),
            })
            .collect();
        let mut msgs: Vec<MMsgHdr<'_>> = iovs
            .iter()
            .zip(addrs.iter())
            .zip(controls.iter_mut())
            .zip(batch.iter())
            .map(|(((iov, addr), control), m)| {
                let n = if m.rtp.is_some() { 2 } else { 1 };
                MMsgHdr::new_with_addr(addr, &iov[..n], control)
            })
            .collect();
        let mut done = 0;
        let mut error = None;
        while done < msgs.len() {
            self.counters.sendmmsg_calls += 1;
            match sendmmsg(socket, &mut msgs[done..], SendFlags::empty()) {
                Ok(0) => {
                    error = Some(errno(libc::EIO));
                    break;
                }
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    error = Some(e.into());
                    break;
                }
            }
        }
        drop(msgs);
        for m in &batch[..done] {
            out.packets += m.segs as u64;
            out.bytes += m.len as u64;
            self.counters.messages += 1;
            self.counters.gso_messages += u64::from(m.segs > 1);
        }
        let result = match error {
            None => Ok(()),
            Some(e) => {
                let index = batch[done].packet.entry;
                // Undo the headers of the packets that did not leave: each
                // destination's state goes back to before its first one.
                let mut seen = Vec::new();
                for m in &batch[done..] {
                    let handle = grouped.dests[m.packet.slot].0;
                    if !seen.contains(&handle) {
                        seen.push(handle);
                        if let Some(d) = self.dests.get_mut(&handle) {
                            d.state = m.before;
                        }
                    }
                }
                Err((e, index))
            }
        };
        batch.clear();
        result
    }
}

/// A packet waiting in a batch.
struct Pending {
    key: SocketKey,
    /// The message's first packet.
    packet: Planned,
    /// The payload bytes of the message, from the first packet's offset.
    len: usize,
    /// The packets in it: more than 1 with GSO.
    segs: usize,
    rtp: Option<[u8; RTP_LEN]>,
    before: PacketState,
    /// Its departure time (`SCM_TXTIME`), in a paced call.
    txtime: Option<u64>,
}

/// Opens the socket of `key`: bound to its address and port if possible,
/// with its TTL / hop limit, DSCP and checksum options.
fn open_socket(key: &SocketKey) -> io::Result<UdpSocket> {
    let unspecified = match key.bind {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    // The module may send from any address and port; a socket only from
    // its own. Fall back to any port, then any address.
    let socket = UdpSocket::bind(key.bind)
        .or_else(|_| UdpSocket::bind((key.bind.ip(), 0)))
        .or_else(|_| UdpSocket::bind((unspecified, key.bind.port())))
        .or_else(|_| UdpSocket::bind((unspecified, 0)))?;
    let hops = u32::from(key.hop_limit);
    let tos = key.dscp << 2;
    if key.bind.is_ipv4() {
        sockopt::set_ip_ttl(&socket, hops)?;
        sockopt::set_ip_multicast_ttl(&socket, hops)?;
        sockopt::set_ip_tos(&socket, tos)?;
        if key.csum_zero {
            let one: libc::c_int = 1;
            // SAFETY: SO_NO_CHECK takes an int; `one` lives for the call
            // and its size is passed.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_NO_CHECK,
                    (&one as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    } else {
        sockopt::set_ipv6_unicast_hops(&socket, Some(key.hop_limit))?;
        sockopt::set_ipv6_multicast_hops(&socket, hops)?;
        sockopt::set_ipv6_tclass(&socket, u32::from(tos))?;
    }
    Ok(socket)
}

/// A call's entries grouped by destination, in order of first appearance
/// (the module's queues).
#[derive(Debug)]
pub(crate) struct Grouped {
    /// The destination of each queue.
    pub(crate) dests: Vec<DestId>,
    /// The call's entry indexes of each queue, in call order.
    pub(crate) entries: Vec<Vec<usize>>,
    /// Their lengths.
    pub(crate) lens: Vec<Vec<u64>>,
}

impl Grouped {
    /// Groups entries given as (destination, length).
    pub(crate) fn new(entries: &[(DestId, u64)]) -> Self {
        let mut g = Grouped {
            dests: Vec::new(),
            entries: Vec::new(),
            lens: Vec::new(),
        };
        let mut slot_of: HashMap<DestId, usize> = HashMap::new();
        for (i, &(dest, len)) in entries.iter().enumerate() {
            let slot = *slot_of.entry(dest).or_insert_with(|| {
                g.dests.push(dest);
                g.entries.push(Vec::new());
                g.lens.push(Vec::new());
                g.dests.len() - 1
            });
            g.entries[slot].push(i);
            g.lens[slot].push(len);
        }
        g
    }
}

/// One packet of a call's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    /// The queue (destination) of the packet.
    pub(crate) slot: usize,
    /// The call's entry that holds its payload.
    pub(crate) entry: usize,
    /// Where the payload starts in the entry.
    pub(crate) offset: u64,
    /// The payload length.
    pub(crate) len: u16,
}

/// The packets of a call in the module's transmit order: the
/// segmentation and round robin of `mdwrite-common`.
pub(crate) struct Plan<'a> {
    turns: RoundRobin<'a>,
    cursors: Vec<SegmentCursor>,
    grouped: &'a Grouped,
}

impl<'a> Plan<'a> {
    /// The plan of `grouped` with `payloads[slot]` the largest payload of
    /// each queue; `remaining` and `active` are scratch space.
    pub(crate) fn new(
        grouped: &'a Grouped,
        payloads: &[u16],
        quantum: u32,
        remaining: &'a mut Vec<u64>,
        active: &'a mut Vec<u32>,
    ) -> Result<Self, ()> {
        remaining.clear();
        for (lens, &max) in grouped.lens.iter().zip(payloads) {
            remaining.push(total_packets(lens.as_slice(), max).map_err(|_| ())?);
        }
        active.clear();
        active.resize(grouped.dests.len(), 0);
        let cursors = payloads
            .iter()
            .map(|&m| SegmentCursor::new(m))
            .collect::<Result<_, _>>()
            .map_err(|_| ())?;
        let turns = RoundRobin::new(remaining, active, quantum.max(1)).map_err(|_| ())?;
        Ok(Self {
            turns,
            cursors,
            grouped,
        })
    }
}

impl Iterator for Plan<'_> {
    type Item = Planned;

    fn next(&mut self) -> Option<Planned> {
        let turn = self.turns.next()?;
        let slot = turn.queue;
        let lens = self.grouped.lens.get(slot)?;
        let pkt = self.cursors.get_mut(slot)?.next_packet(lens.as_slice())?;
        Some(Planned {
            slot,
            entry: *self.grouped.entries.get(slot)?.get(pkt.entry)?,
            offset: pkt.offset,
            len: pkt.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_all(
        entries: &[(u32, u64)],
        payload: impl Fn(u32) -> u16,
        quantum: u32,
    ) -> Vec<Planned> {
        let e: Vec<(DestId, u64)> = entries.iter().map(|&(d, l)| (DestId(d), l)).collect();
        let g = Grouped::new(&e);
        let payloads: Vec<u16> = g.dests.iter().map(|d| payload(d.0)).collect();
        let (mut r, mut a) = (Vec::new(), Vec::new());
        Plan::new(&g, &payloads, quantum, &mut r, &mut a)
            .unwrap()
            .collect()
    }

    fn p(slot: usize, entry: usize, offset: u64, len: u16) -> Planned {
        Planned {
            slot,
            entry,
            offset,
            len,
        }
    }

    #[test]
    fn round_robin_in_order_of_first_appearance() {
        // Destination 7 appears first, then 3; 7 has two entries.
        let plan = plan_all(&[(7, 250), (3, 100), (7, 50)], |_| 100, 1);
        assert_eq!(
            plan,
            [
                p(0, 0, 0, 100),
                p(1, 1, 0, 100),
                p(0, 0, 100, 100),
                p(0, 0, 200, 50),
                p(0, 2, 0, 50),
            ]
        );
    }

    #[test]
    fn quantum_sends_packets_in_a_row() {
        let plan = plan_all(&[(1, 500), (2, 300)], |_| 100, 2);
        let order: Vec<usize> = plan.iter().map(|p| p.slot).collect();
        assert_eq!(order, [0, 0, 1, 1, 0, 0, 1, 0]);
        // Quantum 0 is the default of 1.
        let plan = plan_all(&[(1, 200), (2, 200)], |_| 100, 0);
        let order: Vec<usize> = plan.iter().map(|p| p.slot).collect();
        assert_eq!(order, [0, 1, 0, 1]);
    }

    #[test]
    fn each_destination_uses_its_own_payload_size() {
        let plan = plan_all(
            &[(1, 1000), (2, 1000)],
            |d| if d == 1 { 1000 } else { 300 },
            1,
        );
        assert_eq!(
            plan,
            [
                p(0, 0, 0, 1000),
                p(1, 1, 0, 300),
                p(1, 1, 300, 300),
                p(1, 1, 600, 300),
                p(1, 1, 900, 100),
            ]
        );
    }

    #[test]
    fn plan_covers_every_byte_once() {
        let entries = [(1, 1316 * 5 + 7), (2, 1), (3, 4096), (1, 188), (2, 9999)];
        let plan = plan_all(&entries, |d| 1316 + d as u16, 1);
        for (i, &(_, len)) in entries.iter().enumerate() {
            let mut covered = 0;
            for q in plan.iter().filter(|q| q.entry == i) {
                assert_eq!(q.offset, covered);
                covered += u64::from(q.len);
            }
            assert_eq!(covered, len);
        }
    }
}
