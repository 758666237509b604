// SPDX-License-Identifier: GPL-2.0

//! io_uring `IORING_OP_SEND_ZC` from a registered (fixed) buffer, with UDP
//! GSO set on the socket (`UDP_SEGMENT` by setsockopt: SEND_ZC takes no
//! control messages); one SQE per destination per 64 KB, 64 SQEs per
//! io_uring_enter, completions and notifications reaped from the CQ.
//!
//! RTP rows need a header in front of every packet: SEND_ZC sends one
//! contiguous buffer, so they use `IORING_OP_SENDMSG_ZC` with an iovec per
//! header and payload instead (6.12 has no fixed buffers for it).

use std::{
    io, mem,
    os::fd::{AsRawFd, OwnedFd},
};

use io_uring::{cqueue, opcode, types, IoUring};

use super::{iov, setsockopt_int, sockaddr, udp_socket, Method, Outcome};
use crate::workload::{dest_sockaddr, Pool, RtpState, Workload, GSO_MAX_BYTES, RTP_HEADER};

/// SQEs per submission.
const BATCH: usize = 64;
const MAX_SEGS: usize = GSO_MAX_BYTES / 1000;

/// The io_uring SEND_ZC method.
#[derive(Default)]
pub struct IoUringZc {
    ring: Option<IoUring>,
    sock: Option<OwnedFd>,
    names: Vec<libc::sockaddr_in>,
    rtp: Vec<RtpState>,
    /// RTP: per request a msghdr, its iovecs and its headers, alive until
    /// the batch completed.
    msgs: Vec<libc::msghdr>,
    iovs: Vec<[libc::iovec; 2 * MAX_SEGS]>,
    hdrs: Vec<[[u8; RTP_HEADER]; MAX_SEGS]>,
}

/// One request's expected bytes, for checking results.
struct Pending {
    bytes: usize,
}

/// Submits the queued SQEs and reaps every result and notification.
fn flush(ring: &mut IoUring, pending: &[Pending], out: &mut Outcome) -> io::Result<()> {
    let mut results = 0usize;
    // Notifications announced (IORING_CQE_F_MORE on a result) and not yet
    // reaped; signed, in case one is reaped in the same pass before its
    // result.
    let mut notifs_due = 0i64;
    // Every request posts a result; a result with IORING_CQE_F_MORE is
    // followed by a notification once the kernel let go of the buffer.
    // Wait for no more than is known to come.
    let mut want = pending.len();
    loop {
        ring.submitter().submit_and_wait(want)?;
        out.syscalls += 1;
        for cqe in ring.completion() {
            if cqueue::notif(cqe.flags()) {
                notifs_due -= 1;
                continue;
            }
            let i = cqe.user_data() as usize;
            if cqe.result() < 0 {
                return Err(io::Error::from_raw_os_error(-cqe.result()));
            }
            if cqe.result() as usize != pending[i].bytes {
                return Err(io::Error::other(format!("short send {}", cqe.result())));
            }
            results += 1;
            if cqueue::more(cqe.flags()) {
                notifs_due += 1;
            }
        }
        if results == pending.len() && notifs_due <= 0 {
            return Ok(());
        }
        want = (pending.len() - results) + notifs_due.max(0) as usize;
    }
}

impl Method for IoUringZc {
    fn prepare(&mut self, wl: &Workload, pool: &Pool) -> io::Result<()> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(4 * BATCH as u32)
            .build(BATCH as u32)?;
        let buf = pool.as_slice();
        // SAFETY: the pool outlives the ring's use of it: it is only sent
        // from while `send` borrows it, and every request completes there.
        unsafe { ring.submitter().register_buffers(&[iov(buf)]) }?;
        self.ring = Some(ring);
        let s = udp_socket()?;
        setsockopt_int(&s, libc::SOL_UDP, libc::UDP_SEGMENT, wl.segment() as i32)?;
        self.sock = Some(s);
        for d in 0..wl.dests {
            self.names.push(sockaddr(dest_sockaddr(d)));
            self.rtp.push(RtpState::new(d));
        }
        if wl.rtp {
            // SAFETY: an all-zero msghdr is valid.
            let m: libc::msghdr = unsafe { mem::zeroed() };
            self.msgs = vec![m; BATCH];
            self.iovs = vec![[iov(&[]); 2 * MAX_SEGS]; BATCH];
            self.hdrs = vec![[[0u8; RTP_HEADER]; MAX_SEGS]; BATCH];
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let fd = types::Fd(self.sock.as_ref().expect("prepared").as_raw_fd());
        let mut out = Outcome::default();
        let segs = wl.gso_segments_zerocopy();
        let ppd = wl.packets_per_dest();
        let namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let (msgs, iovs, hdrs) = (&mut self.msgs, &mut self.iovs, &mut self.hdrs);
        let ring = self.ring.as_mut().expect("prepared");
        let mut pending: Vec<Pending> = Vec::with_capacity(BATCH);
        let mut k0 = 0;
        while k0 < ppd {
            let nseg = segs.min(ppd - k0);
            let off = k0 * wl.payload;
            let plen = (k0..k0 + nseg).map(|k| wl.packet_len(k)).sum::<usize>();
            for d in 0..wl.dests {
                let data = &pool.dest_data(wl, d)[off..off + plen];
                let i = pending.len();
                let name = (&self.names[d] as *const libc::sockaddr_in).cast();
                let sqe = if wl.rtp {
                    for (j, chunk) in data.chunks(wl.payload).enumerate() {
                        self.rtp[d].next(&mut hdrs[i][j]);
                        iovs[i][2 * j] = iov(&hdrs[i][j]);
                        iovs[i][2 * j + 1] = iov(chunk);
                    }
                    let m = &mut msgs[i];
                    m.msg_name = name as *mut libc::c_void;
                    m.msg_namelen = namelen;
                    m.msg_iov = iovs[i].as_mut_ptr();
                    m.msg_iovlen = 2 * nseg;
                    opcode::SendMsgZc::new(fd, m).build()
                } else {
                    opcode::SendZc::new(fd, data.as_ptr(), plen as u32)
                        .buf_index(Some(0))
                        .dest_addr(name)
                        .dest_addr_len(namelen)
                        .build()
                };
                pending.push(Pending {
                    bytes: plen + nseg * (wl.rtp_len()),
                });
                // SAFETY: buffer, name, msghdr, iovecs and headers stay
                // alive and unchanged until `flush` reaped the request.
                unsafe { ring.submission().push(&sqe.user_data(i as u64)) }
                    .map_err(|_| io::Error::other("submission queue full"))?;
                out.packets += nseg as u64;
                if pending.len() == BATCH {
                    flush(ring, &pending, &mut out)?;
                    pending.clear();
                }
            }
            k0 += nseg;
        }
        if !pending.is_empty() {
            flush(ring, &pending, &mut out)?;
        }
        Ok(out)
    }
}
