// SPDX-License-Identifier: GPL-2.0

//! mdwrite: one `MDW_IOC_WRITEV` for every destination of the workload,
//! from ordinary memory (pinned by each call) or from a registered buffer
//! (pinned once, outside the timed section). A fan-out workload (one
//! payload for every destination) is sent as a fan-out: one entry to a
//! destination group of all of them (`MDW_ENTRY_GROUP`, the group set up
//! untimed), or, on a module without `MDW_FEAT_GROUP` or with
//! `MDW_BENCH_FANOUT=same` in the environment, one entry with the payload
//! and then an `MDW_ENTRY_SAME` entry per further destination.
//!
//! The entries are written into an array the method keeps (as a sender
//! that calls once per interval would), not allocated per call. Every
//! call after the first sends the same destinations with the same flags,
//! so it repeats the one before (`MDW_WRITE_REPEAT`): 16 bytes of new
//! data per entry (`MdwRepeat`), as a sender whose destinations did not
//! change since its last interval would.
//!
//! `mdwrite-paced` makes the same call paced on the direct path
//! (`MDW_WRITE_PACE`) with the longest window there is
//! (`MDW_MAX_PACE_WINDOW`), ending `PACED_MARGIN_NS` after the call: each
//! destination's packets are spread over it from its start, so all of
//! them are due by the time they are built (for fewer than ten thousand
//! packets per destination), and the row costs what pacing adds
//! (departure times, the pacer's queue and timer) and none of the
//! waiting, which under `-icount` would count as time. (A window that
//! ends before the module reads it is refused with `ETIME`.)

use std::{
    ffi::CString,
    io,
    mem::size_of,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd},
};

use mdwrite::{
    uapi::{
        MdwEntry, MdwRepeat, MdwWritev, MDW_ENTRY_BUF, MDW_ENTRY_GROUP, MDW_ENTRY_SAME,
        MDW_FEAT_GROUP, MDW_FEAT_REPEAT, MDW_IOC_WRITEV, MDW_MAX_PACE_WINDOW, MDW_WRITE_KEEP_PINS,
        MDW_WRITE_PACE, MDW_WRITE_REPEAT,
    },
    DestConfig, DestId, Device, RegisteredBuffer, Rtp,
};

use super::{Method, Outcome};
use crate::workload::{
    dest_mac, dest_sockaddr, Pool, Workload, RTP_PT_MP2T, RTP_TS_INCREMENT, SRC_ADDR, SRC_PORT,
};

/// The mdwrite method; `csum_zero` sends UDP checksum 0
/// (`MDW_DEST_UDP_CSUM_ZERO`), so the payload is never read.
pub struct Mdwrite {
    dev: Device,
    ifindex: u32,
    csum_zero: bool,
    dests: Vec<DestId>,
    pinned_pages: u64,
    /// The variant that sends from a registered buffer: a copy of the
    /// pool, registered in `prepare` (`MDW_IOC_BUF_REGISTER`), whose slices
    /// go as `MDW_ENTRY_BUF` entries.
    registered: bool,
    regbuf: Option<RegisteredBuffer>,
    /// The call's entries, rewritten by each call.
    entries: Vec<MdwEntry>,
    /// A repeated call's new data, rewritten by each call.
    repeat: Vec<MdwRepeat>,
    /// The module's id of the last call's entries, which the next call
    /// repeats; 0 for none (or a module without `MDW_FEAT_REPEAT`).
    last_call: u64,
    /// The module implements `MDW_WRITE_REPEAT`.
    can_repeat: bool,
    /// Paced on the direct path (`mdwrite-paced`).
    paced: bool,
    /// The pool's pages kept pinned from call to call (`mdwrite-keep`,
    /// `MDW_WRITE_KEEP_PINS`).
    keep: bool,
    /// Pages of the pool (`mdwrite-keep`: at most these stay pinned).
    pool_pages: u64,
    /// The module implements destination groups (`MDW_FEAT_GROUP`) and
    /// the environment does not ask for `MDW_ENTRY_SAME` fan-outs.
    can_group: bool,
    /// A fan-out workload's group of every destination.
    group: Option<u32>,
}

/// How long after the call `mdwrite-paced`'s window ends: enough for the
/// module to read the call before it ends.
const PACED_MARGIN_NS: u64 = 10_000_000;

impl Mdwrite {
    /// Opens `/dev/mdwrite`; destinations leave `ifname`. With `registered`
    /// the payload comes from a registered buffer.
    pub fn new(ifname: &str, csum_zero: bool, registered: bool) -> io::Result<Self> {
        let dev = Device::open()?;
        let features = dev.info()?.features.bits();
        let can_repeat = features & MDW_FEAT_REPEAT != 0;
        let can_group = features & MDW_FEAT_GROUP != 0
            && std::env::var("MDW_BENCH_FANOUT").as_deref() != Ok("same");
        Ok(Self {
            dev,
            ifindex: ifindex(ifname)?,
            csum_zero,
            dests: Vec::new(),
            pinned_pages: 0,
            registered,
            regbuf: None,
            entries: Vec::new(),
            repeat: Vec::new(),
            last_call: 0,
            can_repeat,
            paced: false,
            keep: false,
            pool_pages: 0,
            can_group,
            group: None,
        })
    }

    /// The variant whose calls keep their pages pinned for the next
    /// (`mdwrite-keep`).
    pub fn keep_pins(mut self) -> Self {
        self.keep = true;
        self
    }

    /// The paced variant (`mdwrite-paced`).
    pub fn paced(mut self) -> Self {
        self.paced = true;
        self
    }

    /// Where this call's payloads are: the pool, or the registered copy
    /// of it (its id looked up once per call, not per entry, as an
    /// application would).
    fn source(&self, pool: &Pool) -> Source {
        match &self.regbuf {
            // An unregistered buffer's id 0 fails the call, as it should.
            Some(buf) => Source::Buf(buf.id().unwrap_or(0)),
            None => Source::Pool(pool.as_slice().as_ptr() as u64),
        }
    }
}

/// Where a call's payloads are.
#[derive(Clone, Copy)]
enum Source {
    /// At this address in the pool.
    Pool(u64),
    /// At the same offset in this registered buffer.
    Buf(u32),
}

/// Destination `d`'s entry (handle `dest`): its payload at its offset in
/// the pool or in the registered copy (`pool_size`: the pool's used
/// bytes); with `same`, the payload of the entry before; with `group`,
/// `dest` is a group's.
fn entry(
    wl: &Workload,
    dest: u32,
    src: Source,
    pool_size: usize,
    d: usize,
    (same, group): (bool, bool),
) -> MdwEntry {
    if same {
        return MdwEntry {
            dest,
            flags: MDW_ENTRY_SAME,
            ..Default::default()
        };
    }
    let offset = ((d * wl.bytes) % pool_size) as u64;
    let (flags, addr, buf) = match src {
        Source::Pool(base) => (0, base + offset, 0),
        Source::Buf(id) => (MDW_ENTRY_BUF, offset, id),
    };
    MdwEntry {
        dest,
        flags: flags | if group { MDW_ENTRY_GROUP } else { 0 },
        addr,
        len: wl.bytes as u64,
        buf,
        ..Default::default()
    }
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// if_nametoindex(3).
pub(crate) fn ifindex(ifname: &str) -> io::Result<u32> {
    let c = CString::new(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// Pages spanned by `data` (what the module pins for it).
fn pages(data: &[u8]) -> u64 {
    let start = data.as_ptr() as usize;
    let end = start + data.len();
    (end.div_ceil(4096) - start / 4096) as u64
}

impl Method for Mdwrite {
    fn prepare(&mut self, wl: &Workload, pool: &Pool) -> io::Result<()> {
        for d in 0..wl.dests {
            let mut c = DestConfig::new(
                self.ifindex,
                SocketAddr::new(SRC_ADDR.into(), SRC_PORT),
                dest_sockaddr(d).into(),
            );
            c.dst_mac = Some(dest_mac(d));
            c.packet_size = Some(wl.ip_size() as u16);
            c.udp_csum_zero = self.csum_zero;
            if wl.rtp {
                c.rtp = Some(
                    Rtp::new(0x1000 + d as u32, RTP_PT_MP2T).with_ts_increment(RTP_TS_INCREMENT),
                );
            }
            self.dests.push(self.dev.add_destination(&c)?);
        }
        // A fan-out to a group: set up once, untimed, as a relay would.
        self.group = match wl.fanout && self.can_group {
            true => Some(self.dev.set_group(&self.dests)?.handle()),
            false => None,
        };
        if self.registered {
            // Registered once, untimed: the calls pin nothing.
            let mut buf = self.dev.register_buffer(pool.as_slice().len())?;
            if buf.id().is_none() {
                return Err(io::Error::other("the buffer was not registered"));
            }
            buf.copy_from_slice(pool.as_slice());
            self.regbuf = Some(buf);
            self.pinned_pages = 0;
        } else if self.keep {
            // Pinned by the first call, kept for the next ones: in the
            // steady state the calls pin nothing.
            self.pinned_pages = 0;
            self.pool_pages = pages(pool.as_slice());
        } else {
            // A fan-out's payload is pinned once.
            let pinned = if wl.fanout { 1 } else { wl.dests };
            self.pinned_pages = (0..pinned).map(|d| pages(pool.dest_data(wl, d))).sum();
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let mut entries = std::mem::take(&mut self.entries);
        let mut repeat = std::mem::take(&mut self.repeat);
        let (src, pool_size) = (self.source(pool), wl.pool_size());
        // One entry for a group; else one per destination.
        let (count, group) = match self.group {
            Some(group) => (1, Some(group)),
            None => (self.dests.len(), None),
        };
        let mut req = if self.last_call != 0 {
            repeat.clear();
            repeat.extend((0..count).map(|d| {
                let e = entry(wl, 0, src, pool_size, d, (wl.fanout && d > 0, false));
                MdwRepeat {
                    addr: e.addr,
                    len: e.len as u32,
                    rtp_timestamp: 0,
                }
            }));
            MdwWritev {
                entries: repeat.as_ptr() as u64,
                count: repeat.len() as u32,
                entry_size: size_of::<MdwRepeat>() as u32,
                flags: MDW_WRITE_REPEAT,
                call_id: self.last_call,
                ..Default::default()
            }
        } else {
            entries.clear();
            entries.extend(self.dests.iter().take(count).enumerate().map(|(d, id)| {
                let dest = group.unwrap_or(id.handle());
                entry(
                    wl,
                    dest,
                    src,
                    pool_size,
                    d,
                    (wl.fanout && d > 0, group.is_some()),
                )
            }));
            MdwWritev {
                entries: entries.as_ptr() as u64,
                count: entries.len() as u32,
                entry_size: size_of::<MdwEntry>() as u32,
                ..Default::default()
            }
        };
        if self.keep {
            req.flags |= MDW_WRITE_KEEP_PINS;
        }
        if self.paced {
            req.flags |= MDW_WRITE_PACE;
            req.pace_start = monotonic_ns() + PACED_MARGIN_NS - MDW_MAX_PACE_WINDOW as u64;
            req.pace_window = MDW_MAX_PACE_WINDOW;
            req.pace_clock = libc::CLOCK_MONOTONIC as u32;
        }
        // SAFETY: `req` names `count` entries of `entry_size` bytes in
        // `entries`, whose data (the pool or the registered buffer) stays
        // mapped; the call is synchronous, so nothing is read after it.
        let r = unsafe {
            libc::ioctl(
                self.dev.as_fd().as_raw_fd(),
                MDW_IOC_WRITEV as libc::c_ulong,
                &mut req as *mut MdwWritev,
            )
        };
        self.entries = entries;
        self.repeat = repeat;
        // Repeated from now on; a failed call starts over.
        self.last_call = match r >= 0 && self.can_repeat {
            true => req.call_id,
            false => 0,
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut note = String::new();
        if req.error != 0 {
            note = format!(
                "stopped at entry {}: {}",
                req.error_index,
                io::Error::from_raw_os_error(-req.error)
            );
        }
        Ok(Outcome {
            packets: req.packets,
            syscalls: 1,
            pinned_pages: Some(self.pinned_pages),
            elapsed_ns: None,
            note,
        })
    }

    /// Nothing but the registered buffer (or, for `mdwrite-keep`, the
    /// pool's pages the calls kept) may stay pinned after the call, and
    /// nothing may have been copied.
    fn after(&mut self) -> io::Result<String> {
        let s = self.dev.stats()?;
        let registered = self.regbuf.as_deref().map_or(0, pages);
        let mut note = Vec::new();
        if self.keep {
            if s.pages_pinned == 0 || s.pages_pinned > self.pool_pages {
                note.push(format!(
                    "{} pages pinned after the calls, expected 1 to the pool's {}",
                    s.pages_pinned, self.pool_pages
                ));
            }
        } else if s.pages_pinned != registered {
            note.push(format!(
                "{} pages pinned after the call, expected {registered}",
                s.pages_pinned
            ));
        }
        if s.bytes_copied != 0 {
            note.push(format!("{} bytes copied", s.bytes_copied));
        }
        Ok(note.join("; "))
    }
}
