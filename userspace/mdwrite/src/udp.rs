// SPDX-License-Identifier: GPL-2.0

//! Receiving UDP datagrams in batches: `recvmmsg` into the slots of one
//! buffer (a [`RegisteredBuffer`](crate::RegisteredBuffer) piece, so that
//! what arrives can be sent on without a copy), and waiting for them.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

/// One datagram received by [`recv_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Where it starts in the buffer (a multiple of the slot size).
    pub offset: usize,
    /// Its length (at most the slot size).
    pub len: usize,
    /// Longer than the slot: the rest was dropped (`MSG_TRUNC`).
    pub truncated: bool,
    /// The sender's address.
    pub from: Option<SocketAddr>,
    /// When the kernel received it (`CLOCK_REALTIME`, time since the
    /// epoch), on a socket with [`enable_rx_timestamps`].
    pub received: Option<Duration>,
}

/// Space for one `SCM_TIMESTAMPNS` control message (a `timespec`), with
/// room to spare.
const CONTROL: usize = 64;

/// Turns on kernel receive timestamps (`SO_TIMESTAMPNS`) on `socket`:
/// [`recv_batch`] then fills [`Datagram::received`] with the time each
/// datagram arrived, not the time it was read.
pub fn enable_rx_timestamps(socket: impl AsFd) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
    setsockopt(&socket.as_fd(), ReceiveTimestampns, &true)?;
    Ok(())
}

/// Most datagrams one call takes.
pub const MAX_BATCH: usize = 64;

/// Receives the datagrams waiting on `socket`, without blocking, into
/// consecutive `slot`-byte slots of `buf` (at most [`MAX_BATCH`], and as
/// many as fit), with one `recvmmsg`; appends them to `out` and returns
/// how many. 0 when none is waiting.
///
/// # Examples
///
/// ```
/// use std::net::UdpSocket;
/// let rx = UdpSocket::bind("127.0.0.1:0")?;
/// let tx = UdpSocket::bind("127.0.0.1:0")?;
/// tx.send_to(b"one", rx.local_addr()?)?;
/// tx.send_to(b"two", rx.local_addr()?)?;
/// assert!(mdwrite::udp::wait_readable(&rx, Some(std::time::Duration::from_secs(5)))?);
/// let mut buf = vec![0u8; 4 * 2048];
/// let mut got = Vec::new();
/// let mut n = 0;
/// while n < 2 {
///     n += mdwrite::udp::recv_batch(&rx, &mut buf[n * 2048..], 2048, &mut got)?;
/// }
/// assert_eq!(&buf[..3], b"one");
/// assert_eq!((got[1].len, got[1].from), (3, Some(tx.local_addr()?)));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn recv_batch(
    socket: impl AsFd,
    buf: &mut [u8],
    slot: usize,
    out: &mut Vec<Datagram>,
) -> io::Result<usize> {
    if slot == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let n = (buf.len() / slot).min(MAX_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut addrs: [libc::sockaddr_storage; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [MaybeUninit::uninit(); MAX_BATCH];
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // Control buffers, aligned for cmsghdr.
    let mut control = [[0u64; CONTROL / 8]; MAX_BATCH];
    let base = buf.as_mut_ptr();
    for i in 0..n {
        iovs[i].write(libc::iovec {
            // SAFETY: slot `i` lies within `buf` (`n * slot <= buf.len()`).
            iov_base: unsafe { base.add(i * slot) }.cast(),
            iov_len: slot,
        });
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        h.msg_control = control[i].as_mut_ptr().cast();
        h.msg_controllen = CONTROL as _;
    }
    let got = loop {
        // SAFETY: `msgs[..n]` point to `n` initialised iovecs naming
        // disjoint slots of `buf` and to address buffers of their stated
        // size, all alive for the call; `buf` is borrowed mutably.
        let r = unsafe {
            libc::recvmmsg(
                socket.as_fd().as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    };
    for (i, m) in msgs[..got].iter().enumerate() {
        let len = m.msg_len as usize;
        out.push(Datagram {
            offset: i * slot,
            len: len.min(slot),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            from: socket_addr(&addrs[i]),
            received: rx_timestamp(&m.msg_hdr),
        });
    }
    Ok(got)
}

/// The address in `s`, if it is IPv4 or IPv6.
/// The `SCM_TIMESTAMPNS` time of a received message, if it has one.
fn rx_timestamp(h: &libc::msghdr) -> Option<Duration> {
    // SAFETY: `h` was filled by recvmmsg: its control buffer holds
    // `msg_controllen` bytes of well-formed control messages, which the
    // CMSG_* macros walk without leaving it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::timespec>() as u32) as usize
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: an AF_INET sockaddr_storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 sockaddr_storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Waits up to `timeout` (`None`: forever) until `socket` is readable;
/// `false` on timeout or when a signal interrupted the wait.
pub fn wait_readable(socket: impl AsFd, timeout: Option<Duration>) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let fd = socket.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: t.subsec_nanos().into(),
    });
    match poll(&mut fds, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
