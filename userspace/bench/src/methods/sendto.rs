// SPDX-License-Identifier: GPL-2.0

//! One datagram per system call: a connected UDP socket per destination
//! (the route and neighbour are cached in the socket), packets interleaved
//! round-robin across destinations.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use super::{connect, cvt_size, iov, udp_socket, Method, Outcome};
use crate::workload::{dest_sockaddr, Pool, RtpState, Workload, RTP_HEADER};

/// The sendto method.
#[derive(Default)]
pub struct SendTo {
    socks: Vec<OwnedFd>,
    rtp: Vec<RtpState>,
}

impl Method for SendTo {
    fn prepare(&mut self, wl: &Workload, _pool: &Pool) -> io::Result<()> {
        for d in 0..wl.dests {
            let s = udp_socket()?;
            connect(&s, dest_sockaddr(d))?;
            self.socks.push(s);
            self.rtp.push(RtpState::new(d));
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let mut out = Outcome::default();
        let mut hdr = [0u8; RTP_HEADER];
        for k in 0..wl.packets_per_dest() {
            let off = k * wl.payload;
            let len = wl.packet_len(k);
            for (d, s) in self.socks.iter().enumerate() {
                let data = &pool.dest_data(wl, d)[off..off + len];
                let n = if wl.rtp {
                    self.rtp[d].next(&mut hdr);
                    let mut v = [iov(&hdr), iov(data)];
                    // SAFETY: a msghdr with no name and two iovecs over live
                    // buffers.
                    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
                    m.msg_iov = v.as_mut_ptr();
                    m.msg_iovlen = 2;
                    // SAFETY: `m` and what it points to are valid for the call.
                    cvt_size(unsafe { libc::sendmsg(s.as_raw_fd(), &m, 0) })?
                } else {
                    // SAFETY: `data` is a live buffer of the length passed.
                    cvt_size(unsafe {
                        libc::sendto(
                            s.as_raw_fd(),
                            data.as_ptr().cast(),
                            len,
                            0,
                            std::ptr::null(),
                            0,
                        )
                    })?
                };
                out.syscalls += 1;
                if n == len + wl.rtp_len() {
                    out.packets += 1;
                }
            }
        }
        Ok(out)
    }
}
