// SPDX-License-Identifier: GPL-2.0

//! sendmmsg(2): one unconnected UDP socket, 64 datagrams per call,
//! interleaved round-robin across destinations (each message names its
//! destination).

use std::{
    io, mem,
    os::fd::{AsRawFd, OwnedFd},
};

use super::{cvt, iov, sockaddr, udp_socket, Method, Outcome};
use crate::workload::{dest_sockaddr, Pool, RtpState, Workload, RTP_HEADER};

/// Datagrams per sendmmsg call.
const BATCH: usize = 64;

/// The sendmmsg method.
#[derive(Default)]
pub struct SendMmsg {
    sock: Option<OwnedFd>,
    names: Vec<libc::sockaddr_in>,
    rtp: Vec<RtpState>,
}

impl Method for SendMmsg {
    fn prepare(&mut self, wl: &Workload, _pool: &Pool) -> io::Result<()> {
        self.sock = Some(udp_socket()?);
        for d in 0..wl.dests {
            self.names.push(sockaddr(dest_sockaddr(d)));
            self.rtp.push(RtpState::new(d));
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let fd = self.sock.as_ref().expect("prepared").as_raw_fd();
        let mut out = Outcome::default();
        // SAFETY: all-zero mmsghdr and iovec are valid (null pointers, 0
        // lengths); every used one is filled below.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let mut iovs = [[iov(&[]); 2]; BATCH];
        let mut hdrs = [[0u8; RTP_HEADER]; BATCH];
        let total = wl.packets() as usize;
        let mut g = 0;
        while g < total {
            let n = BATCH.min(total - g);
            for i in 0..n {
                let (k, d) = ((g + i) / wl.dests, (g + i) % wl.dests);
                let off = k * wl.payload;
                let data = &pool.dest_data(wl, d)[off..off + wl.packet_len(k)];
                let m = &mut msgs[i].msg_hdr;
                m.msg_name = (&mut self.names[d] as *mut libc::sockaddr_in).cast();
                m.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                if wl.rtp {
                    self.rtp[d].next(&mut hdrs[i]);
                    iovs[i] = [iov(&hdrs[i]), iov(data)];
                    m.msg_iovlen = 2;
                } else {
                    iovs[i][0] = iov(data);
                    m.msg_iovlen = 1;
                }
                m.msg_iov = iovs[i].as_mut_ptr();
            }
            let mut sent = 0;
            while sent < n {
                // SAFETY: messages `sent..n` point to live names, iovecs and
                // buffers.
                let r = cvt(unsafe {
                    libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (n - sent) as u32, 0)
                })?;
                out.syscalls += 1;
                if r == 0 {
                    return Err(io::Error::other("sendmmsg sent nothing"));
                }
                sent += r as usize;
            }
            out.packets += n as u64;
            g += n;
        }
        Ok(out)
    }
}
