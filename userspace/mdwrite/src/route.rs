// SPDX-License-Identifier: GPL-2.0

//! Route lookup: which interface and source address reach a destination,
//! and what an interface's MTU is.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
};

use nix::{
    ifaddrs::getifaddrs,
    net::if_::{if_indextoname, if_nametoindex},
};

use crate::DestConfig;

/// An errno with a message saying what it concerns, the inner error of some
/// [`io::Error`]s of this crate (see [`errno`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}: {}", io::Error::from_raw_os_error(*errno))]
pub struct OsContext {
    errno: i32,
    message: String,
}

impl OsContext {
    /// An [`io::Error`] of `errno`'s kind whose message is `message` and
    /// the errno's description.
    pub(crate) fn error(errno: i32, message: impl Into<String>) -> io::Error {
        let kind = io::Error::from_raw_os_error(errno).kind();
        io::Error::new(
            kind,
            OsContext {
                errno,
                message: message.into(),
            },
        )
    }

    /// The errno.
    pub fn errno(&self) -> i32 {
        self.errno
    }
}

/// The errno of an error of this crate: its
/// [`raw_os_error`](io::Error::raw_os_error), or the errno of an
/// [`OsContext`] inside it.
///
/// ```
/// let err = mdwrite::DestConfig::route("127.0.0.1:5000".parse().unwrap(), Some("no-such-if0"))
///     .unwrap_err();
/// assert_eq!(mdwrite::errno(&err), Some(19)); // ENODEV
/// assert!(err.to_string().contains("no-such-if0"));
/// ```
pub fn errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error().or_else(|| {
        err.get_ref()
            .and_then(|e| e.downcast_ref::<OsContext>())
            .map(OsContext::errno)
    })
}

/// The index of interface `name`; `ENODEV` naming it when there is none.
pub fn interface_index(name: &str) -> io::Result<u32> {
    if_nametoindex(name).map_err(|_| {
        OsContext::error(
            nix::errno::Errno::ENODEV as i32,
            format!("unknown interface {name:?}"),
        )
    })
}

/// The name of interface `ifindex`; `ENODEV` when there is none.
pub fn interface_name(ifindex: u32) -> io::Result<String> {
    let name = if_indextoname(ifindex).map_err(|_| {
        OsContext::error(
            nix::errno::Errno::ENODEV as i32,
            format!("no interface with index {ifindex}"),
        )
    })?;
    Ok(name.to_string_lossy().into_owned())
}

/// Runs the `SIOCGIF*` ioctl `request` on interface `ifindex`. Unlike
/// `/sys/class/net`, which shows the namespace sysfs was mounted in, this
/// sees the calling thread's network namespace.
fn ifreq_ioctl(ifindex: u32, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let name = interface_name(ifindex)?;
    // SAFETY: `ifreq` is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    let socket = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: SIOCGIFMTU and SIOCGIFFLAGS read and write a `struct ifreq`,
    // which `req` is, alive for the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request as _, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The MTU of interface `ifindex` (`SIOCGIFMTU`); `ENODEV` when there is
/// none.
pub fn interface_mtu(ifindex: u32) -> io::Result<u32> {
    let req = ifreq_ioctl(ifindex, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled in the `ifru_mtu` member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// Whether interface `ifindex` is administratively up (`SIOCGIFFLAGS`).
pub(crate) fn interface_up(ifindex: u32) -> io::Result<bool> {
    let req = ifreq_ioctl(ifindex, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled in the `ifru_flags` member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// The local addresses of each interface, as (name, address) pairs.
fn local_addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let addrs = getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .filter_map(|a| {
            let addr = a.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                return None;
            };
            Some((a.interface_name, ip))
        })
        .collect())
}

impl DestConfig {
    /// The destination `to` as the kernel would route it: the egress
    /// interface and source address of a UDP socket connected to `to`, and
    /// that socket's (ephemeral) port as the source port. Every other field
    /// is at its default.
    ///
    /// `interface` (a name such as `eth0`) overrides the interface; the
    /// source address is then the routed one if it belongs to that
    /// interface, else the interface's first address of `to`'s family.
    /// Fails with `ENODEV` for an unknown interface, `ENETUNREACH` when
    /// there is no route and `EADDRNOTAVAIL` when the interface has no
    /// address of the family; the message names them ([`errno`] gives the
    /// errno).
    ///
    /// # Examples
    ///
    /// ```
    /// let dest = mdwrite::DestConfig::route("127.0.0.1:5000".parse().unwrap(), None)?;
    /// assert_eq!(dest.from, std::net::Ipv4Addr::LOCALHOST);
    /// assert_eq!(mdwrite::interface_name(dest.ifindex)?, "lo");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// [`errno`]: crate::errno
    pub fn route(to: SocketAddr, interface: Option<&str>) -> io::Result<DestConfig> {
        let forced = interface.map(interface_index).transpose()?;
        let any: SocketAddr = if to.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let routed = UdpSocket::bind(any)
            .and_then(|s| {
                s.connect(to)?;
                s.local_addr()
            })
            .map_err(|e| {
                let errno = e
                    .raw_os_error()
                    .unwrap_or(nix::errno::Errno::ENETUNREACH as i32);
                OsContext::error(errno, format!("no route to {to}"))
            });
        let addrs = local_addresses()?;
        let owner = |ip: IpAddr| addrs.iter().find(|(_, a)| *a == ip).map(|(n, _)| n);
        let (from, ifindex) = match (forced, routed) {
            (None, Err(e)) => return Err(e),
            (None, Ok(local)) => {
                let name = owner(local.ip()).ok_or_else(|| {
                    OsContext::error(
                        nix::errno::Errno::ENETUNREACH as i32,
                        format!("no interface owns {}, the source for {to}", local.ip()),
                    )
                })?;
                (local, interface_index(name)?)
            }
            (Some(ifindex), routed) => {
                let name = interface_name(ifindex)?;
                let on_if = |ip: &IpAddr| owner(*ip) == Some(&name);
                let port = routed.as_ref().map_or(0, SocketAddr::port);
                let ip = match routed {
                    Ok(local) if on_if(&local.ip()) => local.ip(),
                    _ => addrs
                        .iter()
                        .filter(|(n, a)| *n == name && a.is_ipv4() == to.is_ipv4())
                        .map(|(_, a)| *a)
                        .min_by_key(|a| match a {
                            // Prefer global IPv6 addresses to link-local ones.
                            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
                            IpAddr::V4(_) => false,
                        })
                        .ok_or_else(|| {
                            OsContext::error(
                                nix::errno::Errno::EADDRNOTAVAIL as i32,
                                format!("interface {name:?} has no address to reach {to}"),
                            )
                        })?,
                };
                let port = if port == 0 { ephemeral_port(ip)? } else { port };
                ((ip, port).into(), ifindex)
            }
        };
        Ok(DestConfig::new(ifindex, from, to))
    }
}

/// A free UDP port on `ip`, as the kernel picks one.
fn ephemeral_port(ip: IpAddr) -> io::Result<u16> {
    Ok(UdpSocket::bind((ip, 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_routes_through_lo() {
        let d = DestConfig::route("127.0.0.1:9".parse().unwrap(), None).unwrap();
        assert_eq!(d.from, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(d.src_port, 0);
        assert_eq!(interface_name(d.ifindex).unwrap(), "lo");
        assert_eq!(d.to, "127.0.0.1:9".parse().unwrap());
    }

    #[test]
    fn forced_interface_picks_its_address() {
        let d = DestConfig::route("127.0.0.1:9".parse().unwrap(), Some("lo")).unwrap();
        assert_eq!(d.ifindex, interface_index("lo").unwrap());
        assert_eq!(d.from, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn unknown_interface_is_enodev_with_its_name() {
        let e = DestConfig::route("127.0.0.1:9".parse().unwrap(), Some("nope0")).unwrap_err();
        assert_eq!(errno(&e), Some(nix::errno::Errno::ENODEV as i32));
        assert!(e.to_string().contains("nope0"), "{e}");
    }

    #[test]
    fn mtu_of_lo() {
        let lo = interface_index("lo").unwrap();
        assert!(interface_mtu(lo).unwrap() >= 1280);
        assert!(interface_up(lo).unwrap());
    }
}
