// SPDX-License-Identifier: GPL-2.0

//! UDP GSO (`UDP_SEGMENT`): one sendmsg(2) per destination per 64 KB of
//! packets, from one unconnected socket, round-robin across destinations;
//! optionally with `MSG_ZEROCOPY`, completions drained from the error queue.

use std::{
    io, mem,
    os::fd::{AsRawFd, OwnedFd},
};

use super::{cvt_size, iov, setsockopt_int, sockaddr, udp_socket, Method, Outcome};
use crate::workload::{dest_sockaddr, Pool, RtpState, Workload, GSO_MAX_BYTES, RTP_HEADER};

/// Most packets per send (RTP: two iovecs each).
const MAX_SEGS: usize = GSO_MAX_BYTES / 1000;
/// Zero-copy sends between two drains of the error queue.
const DRAIN_EVERY: u64 = 64;
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// The UDP GSO method.
pub struct Gso {
    zerocopy: bool,
    sock: Option<OwnedFd>,
    names: Vec<libc::sockaddr_in>,
    rtp: Vec<RtpState>,
    /// Zero-copy sends made and completions drained.
    sent_zc: u64,
    completed: u64,
    copied: u64,
}

impl Gso {
    /// UDP GSO, with `MSG_ZEROCOPY` if `zerocopy`.
    pub fn new(zerocopy: bool) -> Self {
        Self {
            zerocopy,
            sock: None,
            names: Vec::new(),
            rtp: Vec::new(),
            sent_zc: 0,
            completed: 0,
            copied: 0,
        }
    }

    /// Reads every pending zero-copy completion; returns the syscalls made.
    fn drain(&mut self, fd: i32) -> io::Result<u64> {
        let mut calls = 0;
        loop {
            let mut control = [0u64; 16];
            // SAFETY: an all-zero msghdr is valid; the control buffer is set.
            let mut m: libc::msghdr = unsafe { mem::zeroed() };
            m.msg_control = control.as_mut_ptr().cast();
            m.msg_controllen = mem::size_of_val(&control);
            // SAFETY: `m` points to a live control buffer of its length.
            let r = unsafe { libc::recvmsg(fd, &mut m, libc::MSG_ERRQUEUE) };
            calls += 1;
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(calls);
                }
                return Err(e);
            }
            // SAFETY: `m` was filled by recvmsg; CMSG_FIRSTHDR stays within
            // the control buffer.
            let cm = unsafe { libc::CMSG_FIRSTHDR(&m) };
            if cm.is_null() {
                continue;
            }
            // SAFETY: a non-null cmsg header inside the control buffer.
            let (level, ty) = unsafe { ((*cm).cmsg_level, (*cm).cmsg_type) };
            if level != libc::SOL_IP || ty != libc::IP_RECVERR {
                continue;
            }
            // SAFETY: IP_RECVERR data is a sock_extended_err; read unaligned.
            let ee: libc::sock_extended_err =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast()) };
            if ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY {
                return Err(io::Error::other(format!(
                    "unexpected error queue entry {}",
                    ee.ee_errno
                )));
            }
            let n = u64::from(ee.ee_data.wrapping_sub(ee.ee_info)) + 1;
            self.completed += n;
            if ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0 {
                self.copied += n;
            }
        }
    }
}

impl Method for Gso {
    fn prepare(&mut self, wl: &Workload, _pool: &Pool) -> io::Result<()> {
        let s = udp_socket()?;
        setsockopt_int(&s, libc::SOL_UDP, libc::UDP_SEGMENT, wl.segment() as i32)?;
        if self.zerocopy {
            setsockopt_int(&s, libc::SOL_SOCKET, libc::SO_ZEROCOPY, 1)?;
        }
        self.sock = Some(s);
        for d in 0..wl.dests {
            self.names.push(sockaddr(dest_sockaddr(d)));
            self.rtp.push(RtpState::new(d));
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let fd = self.sock.as_ref().expect("prepared").as_raw_fd();
        let mut out = Outcome::default();
        let segs = if self.zerocopy {
            wl.gso_segments_zerocopy()
        } else {
            wl.gso_segments()
        };
        let flags = if self.zerocopy { libc::MSG_ZEROCOPY } else { 0 };
        let mut iovs = [iov(&[]); 2 * MAX_SEGS];
        let mut hdrs = [[0u8; RTP_HEADER]; MAX_SEGS];
        let (sent0, copied0) = (self.sent_zc, self.copied);
        let ppd = wl.packets_per_dest();
        let mut k0 = 0;
        while k0 < ppd {
            let nseg = segs.min(ppd - k0);
            let off = k0 * wl.payload;
            let plen = (k0..k0 + nseg).map(|k| wl.packet_len(k)).sum::<usize>();
            for d in 0..wl.dests {
                let data = &pool.dest_data(wl, d)[off..off + plen];
                let niov = if wl.rtp {
                    for (j, chunk) in data.chunks(wl.payload).enumerate() {
                        self.rtp[d].next(&mut hdrs[j]);
                        iovs[2 * j] = iov(&hdrs[j]);
                        iovs[2 * j + 1] = iov(chunk);
                    }
                    2 * nseg
                } else {
                    iovs[0] = iov(data);
                    1
                };
                // SAFETY: an all-zero msghdr is valid; name and iovecs set.
                let mut m: libc::msghdr = unsafe { mem::zeroed() };
                m.msg_name = (&mut self.names[d] as *mut libc::sockaddr_in).cast();
                m.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                m.msg_iov = iovs.as_mut_ptr();
                m.msg_iovlen = niov;
                loop {
                    // SAFETY: `m` points to live name, iovecs and buffers.
                    let r = unsafe { libc::sendmsg(fd, &m, flags) };
                    out.syscalls += 1;
                    if r >= 0 {
                        let n = cvt_size(r)?;
                        if n != plen + nseg * (wl.rtp_len()) {
                            return Err(io::Error::other(format!("short send {n}")));
                        }
                        break;
                    }
                    let e = io::Error::last_os_error();
                    // Out of option memory for notifications: drain, retry.
                    if self.zerocopy && e.raw_os_error() == Some(libc::ENOBUFS) {
                        out.syscalls += self.drain(fd)?;
                        continue;
                    }
                    return Err(e);
                }
                out.packets += nseg as u64;
                if self.zerocopy {
                    self.sent_zc += 1;
                    if self.sent_zc % DRAIN_EVERY == 0 {
                        out.syscalls += self.drain(fd)?;
                    }
                }
            }
            k0 += nseg;
        }
        if self.zerocopy {
            let mut waits = 0;
            while self.completed < self.sent_zc {
                out.syscalls += self.drain(fd)?;
                if self.completed < self.sent_zc {
                    // Not expected on dummy0 (it frees each skb at once);
                    // a sleep here would add idle time to the figure.
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLERR,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 1000) };
                    out.syscalls += 1;
                    waits += 1;
                    if waits > 10 {
                        return Err(io::Error::other("zero-copy completions missing"));
                    }
                }
            }
            if waits > 0 {
                out.note = format!("waited {waits}x for completions");
            }
            let copied = self.copied - copied0;
            if copied > 0 {
                out.note = format!(
                    "{copied} of {} sends copied (no zero-copy)",
                    self.sent_zc - sent0
                );
            }
        }
        Ok(out)
    }
}
