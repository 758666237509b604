// SPDX-License-Identifier: GPL-2.0

//! mdwrite: one `MDW_IOC_WRITEV` for every destination of the workload,
//! from ordinary memory (pinned by each call) or from a registered buffer
//! (pinned once, outside the timed section).

use std::{ffi::CString, io, net::SocketAddr};

use mdwrite::{DestConfig, DestId, Device, Entry, RegisteredBuffer, Rtp, WriteOptions};

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
}

impl Mdwrite {
    /// Opens `/dev/mdwrite`; destinations leave `ifname`. With `registered`
    /// the payload comes from a registered buffer.
    pub fn new(ifname: &str, csum_zero: bool, registered: bool) -> io::Result<Self> {
        Ok(Self {
            dev: Device::open()?,
            ifindex: ifindex(ifname)?,
            csum_zero,
            dests: Vec::new(),
            pinned_pages: 0,
            registered,
            regbuf: None,
        })
    }

    /// Destination `d`'s payload: in the pool, or at the same offset in
    /// the registered copy.
    fn data<'a>(&'a self, wl: &Workload, pool: &'a Pool, d: usize) -> &'a [u8] {
        match &self.regbuf {
            Some(buf) => &buf[wl.offset(d)..wl.offset(d) + wl.bytes],
            _ => pool.dest_data(wl, d),
        }
    }
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
        if self.registered {
            // Registered once, untimed: the calls pin nothing.
            let mut buf = self.dev.register_buffer(pool.as_slice().len())?;
            if buf.id().is_none() {
                return Err(io::Error::other("the buffer was not registered"));
            }
            buf.copy_from_slice(pool.as_slice());
            self.regbuf = Some(buf);
            self.pinned_pages = 0;
        } else {
            self.pinned_pages = (0..wl.dests).map(|d| pages(pool.dest_data(wl, d))).sum();
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let entries: Vec<Entry<'_>> = self
            .dests
            .iter()
            .enumerate()
            .map(|(d, &id)| Entry::new(id, self.data(wl, pool, d)))
            .collect();
        let report = self.dev.write_vectored(&entries, WriteOptions::default())?;
        let mut note = String::new();
        if let Some((e, i)) = report.error {
            note = format!("stopped at entry {i}: {e}");
        }
        Ok(Outcome {
            packets: report.packets,
            syscalls: 1,
            pinned_pages: Some(self.pinned_pages),
            elapsed_ns: None,
            note,
        })
    }

    /// Nothing but the registered buffer may stay pinned after the call,
    /// and nothing may have been copied.
    fn after(&mut self) -> io::Result<String> {
        let s = self.dev.stats()?;
        let registered = self.regbuf.as_deref().map_or(0, pages);
        let mut note = Vec::new();
        if s.pages_pinned != registered {
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
