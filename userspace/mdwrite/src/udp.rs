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
    // Only the `n` headers used are set up, and the address buffers are
    // left for the kernel to fill: zeroing all 64 of each (12 KiB) cost
    // more than receiving one datagram.
    let mut addrs: [MaybeUninit<libc::sockaddr_storage>; MAX_BATCH] =
        [const { MaybeUninit::uninit() }; MAX_BATCH];
    let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [MaybeUninit::uninit(); MAX_BATCH];
    let mut msgs: [MaybeUninit<libc::mmsghdr>; MAX_BATCH] =
        [const { MaybeUninit::uninit() }; MAX_BATCH];
    // Control buffers (aligned for cmsghdr), filled by the kernel.
    let mut control: [MaybeUninit<[u64; CONTROL / 8]>; MAX_BATCH] =
        [const { MaybeUninit::uninit() }; MAX_BATCH];
    let base = buf.as_mut_ptr();
    for i in 0..n {
        iovs[i].write(libc::iovec {
            // SAFETY: slot `i` lies within `buf` (`n * slot <= buf.len()`).
            iov_base: unsafe { base.add(i * slot) }.cast(),
            iov_len: slot,
        });
        // SAFETY: all-zero is a valid mmsghdr.
        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
        m.msg_hdr.msg_name = addrs[i].as_mut_ptr().cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iovs[i].as_mut_ptr();
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_control = control[i].as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = CONTROL as _;
        msgs[i].write(m);
    }
    let got = loop {
        // SAFETY: `msgs[..n]` point to `n` initialised iovecs naming
        // disjoint slots of `buf` and to address buffers of their stated
        // size, all alive for the call; `buf` is borrowed mutably.
        let r = unsafe {
            libc::recvmmsg(
                socket.as_fd().as_raw_fd(),
                msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
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
        // SAFETY: the first `n` headers were initialised above (`got <=
        // n`), and the kernel wrote `msg_namelen` bytes of each address.
        let (m, from) = unsafe {
            let m = m.assume_init_ref();
            (m, socket_addr(addrs[i].as_ptr(), m.msg_hdr.msg_namelen))
        };
        let len = m.msg_len as usize;
        out.push(Datagram {
            offset: i * slot,
            len: len.min(slot),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            from,
            received: rx_timestamp(&m.msg_hdr),
        });
    }
    Ok(got)
}

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

/// The address of `len` bytes at `s`, if it is IPv4 or IPv6.
///
/// # Safety
///
/// `s` points to a `sockaddr_storage` whose first `len` bytes are
/// initialised.
unsafe fn socket_addr(
    s: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    if len < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the family field is within the initialised bytes.
    let family = unsafe { std::ptr::addr_of!((*s).ss_family).read() };
    match i32::from(family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: an AF_INET address of its full length is a
            // sockaddr_in, all initialised.
            let a = unsafe { &*s.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { &*s.cast::<libc::sockaddr_in6>() };
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
