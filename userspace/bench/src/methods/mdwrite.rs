// SPDX-License-Identifier: GPL-2.0

//! mdwrite: one `MDW_IOC_WRITEV` for every destination of the workload.

use std::{ffi::CString, io, net::SocketAddr};

use mdwrite::{DestConfig, DestId, Device, Entry, Rtp, WriteOptions};

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
}

impl Mdwrite {
    /// Opens `/dev/mdwrite`; destinations leave `ifname`.
    pub fn new(ifname: &str, csum_zero: bool) -> io::Result<Self> {
        Ok(Self {
            dev: Device::open()?,
            ifindex: ifindex(ifname)?,
            csum_zero,
            dests: Vec::new(),
            pinned_pages: 0,
        })
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
                c.rtp = Some(Rtp {
                    ssrc: 0x1000 + d as u32,
                    payload_type: RTP_PT_MP2T,
                    seq: 0,
                    timestamp: 0,
                    ts_increment: RTP_TS_INCREMENT,
                });
            }
            self.dests.push(self.dev.add_destination(&c)?);
        }
        self.pinned_pages = (0..wl.dests).map(|d| pages(pool.dest_data(wl, d))).sum();
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let entries: Vec<Entry<'_>> = self
            .dests
            .iter()
            .enumerate()
            .map(|(d, &id)| Entry::new(id, pool.dest_data(wl, d)))
            .collect();
        let report = self.dev.write_vectored(&entries, WriteOptions::default())?;
        let mut note = String::new();
        if let Some((e, i)) = report.error {
            note = format!("stopped at entry {i}: {e}");
        }
        // TODO(issue 6): a registered-buffer variant ("mdwrite-regbuf"):
        // register the pool once in `prepare` (MDW_IOC_BUF_REGISTER) and
        // send entries naming {buffer id, offset, length}, so the call pins
        // nothing. Add it to `METHODS` next to "mdwrite".
        Ok(Outcome {
            packets: report.packets,
            syscalls: 1,
            pinned_pages: Some(self.pinned_pages),
            elapsed_ns: None,
            note,
        })
    }

    /// Nothing may stay pinned after the call, and nothing may have been
    /// copied.
    fn after(&mut self) -> io::Result<String> {
        let s = self.dev.stats()?;
        let mut note = Vec::new();
        if s.pages_pinned != 0 {
            note.push(format!("{} pages still pinned", s.pages_pinned));
        }
        if s.bytes_copied != 0 {
            note.push(format!("{} bytes copied", s.bytes_copied));
        }
        Ok(note.join("; "))
    }
}
