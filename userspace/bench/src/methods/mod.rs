// SPDX-License-Identifier: GPL-2.0

//! The send methods under test, one module each, and the socket helpers they
//! share.

use std::{
    io, mem,
    net::SocketAddrV4,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::workload::{Pool, Workload};

pub mod af_packet;
pub mod gso;
pub mod io_uring_zc;
pub mod mdwrite;
pub mod pktgen;
pub mod sendmmsg;
pub mod sendto;

/// What one timed send section did, as the method itself saw it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Packets the method says it handed to the kernel (send results,
    /// mdwrite's report, pktgen's count).
    pub packets: u64,
    /// System calls made in the timed section.
    pub syscalls: u64,
    /// mdwrite: pages pinned by the call.
    pub pinned_pages: Option<u64>,
    /// The method measured its own time on the same clock (pktgen).
    pub elapsed_ns: Option<u64>,
    /// Anything worth knowing (copies instead of zero-copy, ...).
    pub note: String,
}

/// A send method.
pub trait Method {
    /// Everything that is not part of sending: sockets, destinations,
    /// registrations. Not timed.
    fn prepare(&mut self, wl: &Workload, pool: &Pool) -> io::Result<()>;

    /// Sends the whole workload once. Timed.
    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome>;

    /// Packets the device should count for `wl` (at least, with
    /// [`Method::packet_slack`]).
    fn expected_packets(&self, wl: &Workload) -> u64 {
        wl.packets()
    }

    /// How many more packets than [`Method::expected_packets`] a send may
    /// make by its own rules (pktgen's bursts); its figures are then per
    /// packet it sent.
    fn packet_slack(&self) -> u64 {
        0
    }

    /// Checks after the timed section; returns a note, empty if all is well.
    fn after(&mut self) -> io::Result<String> {
        Ok(String::new())
    }
}

/// The methods, by name, in table order.
pub const METHODS: &[&str] = &[
    "mdwrite",
    "mdwrite-regbuf",
    "mdwrite-keep",
    "mdwrite-csum0",
    "mdwrite-paced",
    "sendto",
    "sendmmsg",
    "gso",
    "gso-zerocopy",
    "io_uring-sendzc",
    "af_packet-ring",
    "pktgen",
    "pktgen-burst32",
];

/// A fresh method by name, sending from `ifname`.
pub fn make(name: &str, ifname: &str) -> io::Result<Box<dyn Method>> {
    Ok(match name {
        "mdwrite" => Box::new(mdwrite::Mdwrite::new(ifname, false, false)?),
        "mdwrite-regbuf" => Box::new(mdwrite::Mdwrite::new(ifname, false, true)?),
        "mdwrite-keep" => Box::new(mdwrite::Mdwrite::new(ifname, false, false)?.keep_pins()),
        "mdwrite-csum0" => Box::new(mdwrite::Mdwrite::new(ifname, true, false)?),
        "mdwrite-paced" => Box::new(mdwrite::Mdwrite::new(ifname, false, false)?.paced()),
        "sendto" => Box::new(sendto::SendTo::default()),
        "sendmmsg" => Box::new(sendmmsg::SendMmsg::default()),
        "gso" => Box::new(gso::Gso::new(false)),
        "gso-zerocopy" => Box::new(gso::Gso::new(true)),
        "io_uring-sendzc" => Box::new(io_uring_zc::IoUringZc::default()),
        "af_packet-ring" => Box::new(af_packet::PacketRing::new(ifname)?),
        "pktgen" => Box::new(pktgen::Pktgen::new(ifname, 1)),
        "pktgen-burst32" => Box::new(pktgen::Pktgen::new(ifname, 32)),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown method {name}"),
            ))
        }
    })
}

/// `-1` means `errno`.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `-1` means `errno` (ssize_t results).
pub(crate) fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A new UDP/IPv4 socket.
pub(crate) fn udp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is a new descriptor we own.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `sockaddr_in` of `a`.
pub(crate) fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// connect(2) to `a`.
pub(crate) fn connect(fd: &OwnedFd, a: SocketAddrV4) -> io::Result<()> {
    let sa = sockaddr(a);
    // SAFETY: `sa` is a valid sockaddr_in of the length passed.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// setsockopt(2) of an `int` option.
pub(crate) fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` is an int of the length passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// An iovec over `b` (the kernel only reads it).
#[inline]
pub(crate) fn iov(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}
