// SPDX-License-Identifier: GPL-2.0

//! Receivers and a capture for the send tests.

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::topo::{self, Topology};

/// Receiver `i` of a test listens on UDP port `BASE_PORT + i`.
pub(crate) const BASE_PORT: u16 = 5000;

/// Receive buffer of every test socket: big enough to hold a whole test
/// call, so no packet is dropped while the test thread is not reading.
const RCVBUF: libc::c_int = 256 << 20;

fn set_rcvbuf(fd: libc::c_int) -> Result<(), String> {
    // SAFETY: `fd` is an open socket; the option value is a c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&RCVBUF as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r != 0 {
        return Err(format!("SO_RCVBUFFORCE: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// What one receiver got, datagram by datagram.
pub(crate) struct Received {
    /// Every datagram's payload, in arrival order.
    pub(crate) datagrams: Vec<Vec<u8>>,
}

impl Received {
    /// All payload bytes concatenated, after skipping `skip` header bytes
    /// (12 for RTP) of each datagram.
    pub(crate) fn bytes(&self, skip: usize) -> Vec<u8> {
        self.datagrams
            .iter()
            .flat_map(|d| d[skip.min(d.len())..].iter().copied())
            .collect()
    }
}

/// Starts a UDP receiver on `port` in namespace `ns` that reads until
/// `expect` payload bytes (after `skip` bytes of each datagram) arrived or
/// `timeout` passed. Returns once the socket is bound.
pub(crate) fn receiver(
    ns: &str,
    v6: bool,
    port: u16,
    expect: usize,
    skip: usize,
    timeout: Duration,
) -> Result<JoinHandle<Result<Received, String>>, String> {
    let (tx, rx) = mpsc::channel();
    let handle = topo::spawn_in(ns, move || {
        let any: IpAddr = if v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let sock = UdpSocket::bind(SocketAddr::new(any, port)).map_err(|e| format!("bind: {e}"))?;
        set_rcvbuf(sock.as_raw_fd())?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let _ = tx.send(());
        let deadline = Instant::now() + timeout;
        let mut got = Received {
            datagrams: Vec::new(),
        };
        let mut total = 0;
        let mut buf = vec![0u8; 65536];
        while total < expect && Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    total += n.saturating_sub(skip);
                    got.datagrams.push(buf[..n].to_vec());
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
        Ok(got)
    });
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| "receiver did not start".to_string())?;
    Ok(handle)
}

/// How one receiver of [`receivers`] listens.
pub(crate) struct Listen {
    /// On IPv6 (else IPv4).
    pub(crate) v6: bool,
    /// The payload bytes to wait for.
    pub(crate) expect: usize,
    /// Header bytes of each datagram not counted as payload (12 for RTP).
    pub(crate) skip: usize,
}

/// A receiver's thread.
pub(crate) type ReceiverHandle = JoinHandle<Result<Received, String>>;

/// Starts a [`receiver`] in the namespace of each of the first `n`
/// receivers of `topo`, receiver `i` on port `BASE_PORT + i` as `each(i)`
/// says, each waiting at most `timeout`.
pub(crate) fn receivers(
    topo: &Topology,
    n: usize,
    timeout: Duration,
    each: impl Fn(usize) -> Listen,
) -> Result<Vec<ReceiverHandle>, String> {
    (0..n)
        .map(|i| {
            let l = each(i);
            receiver(
                &topo.receivers[i].ns,
                l.v6,
                BASE_PORT + i as u16,
                l.expect,
                l.skip,
                timeout,
            )
        })
        .collect()
}

/// What each receiver got, in order.
pub(crate) fn join_all(handles: Vec<ReceiverHandle>) -> Result<Vec<Received>, String> {
    handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "receiver panicked".to_string())?)
        .collect()
}

/// A raw capture of every frame arriving on one device.
pub(crate) struct Capture {
    fd: OwnedFd,
}

impl Capture {
    /// Opens an `AF_PACKET` capture on `dev`; call in the device's netns.
    pub(crate) fn open(dev: &str) -> Result<Self, String> {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
        if fd < 0 {
            return Err(format!("AF_PACKET socket: {}", io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_rcvbuf(fd.as_raw_fd())?;
        let name = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
        // SAFETY: `name` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(format!("no device {dev}"));
        }
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the given size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(format!("bind AF_PACKET: {}", io::Error::last_os_error()));
        }
        Ok(Self { fd })
    }

    /// Every frame the device sent so far, with the protocol the tap
    /// reported for it (`sll_protocol`, i.e. `skb->protocol`, host order);
    /// frames it received are left out (non-blocking drain).
    pub(crate) fn drain_ll(&self) -> Vec<(u16, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: a zeroed sockaddr_ll is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `sll` are writable for their lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 {
                return frames;
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                frames.push((u16::from_be(sll.sll_protocol), buf[..n as usize].to_vec()));
            }
        }
    }

    /// Has the kernel time stamp every frame (`SO_TIMESTAMPNS`): a sent
    /// frame's stamp is the time the device was handed it.
    pub(crate) fn enable_timestamps(&self) -> Result<(), String> {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid int option value for its size.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if r != 0 {
            return Err(format!("SO_TIMESTAMPNS: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Every frame the device sent so far, with its time stamp
    /// (`CLOCK_REALTIME`, ns; see [`Capture::enable_timestamps`]); frames
    /// it received are left out (non-blocking drain).
    pub(crate) fn drain_stamped(&self) -> Vec<(Vec<u8>, u64)> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut control = [0u64; 16];
        loop {
            // SAFETY: a zeroed sockaddr_ll is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: a zeroed msghdr is valid; its pointers are set below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control);
            // SAFETY: every buffer `msg` points to is writable for its
            // length and outlives the call.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n <= 0 {
                return frames;
            }
            let mut stamp = 0;
            // SAFETY: walks the control messages the kernel wrote into
            // `control`, as `msg` describes them.
            let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !c.is_null() {
                // SAFETY: `c` points to a control message header.
                let h = unsafe { &*c };
                if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
                    // SAFETY: an SCM_TIMESTAMPNS message holds a timespec.
                    let ts = unsafe {
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>())
                    };
                    stamp = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
                // SAFETY: as above.
                c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                frames.push((buf[..n as usize].to_vec(), stamp));
            }
        }
    }

    /// Every frame captured so far (non-blocking drain).
    pub(crate) fn drain(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return frames;
            }
            frames.push(buf[..n as usize].to_vec());
        }
    }
}

/// The UDP destination port and IP payload length of an Ethernet frame
/// (no VLAN), or `None` when it is not IPv4/IPv6 UDP.
pub(crate) fn udp_info(frame: &[u8]) -> Option<(u16, usize)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (l4, ip_len) = match ethertype {
        0x0800 if *frame.get(23)? == 17 => {
            (14 + 20, u16::from_be_bytes([frame[16], frame[17]]) as usize)
        }
        0x86dd if *frame.get(20)? == 17 => (
            14 + 40,
            40 + u16::from_be_bytes([frame[18], frame[19]]) as usize,
        ),
        _ => return None,
    };
    Some((
        u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]),
        ip_len,
    ))
}
