// SPDX-License-Identifier: GPL-2.0

//! Route lookup: which interface and source address reach a destination.

use std::{io, net::SocketAddr};

use crate::DestConfig;

impl DestConfig {
    /// The destination `to` as the kernel would route it: the egress
    /// interface and source address of a UDP socket connected to `to`, and
    /// that socket's port as the source port. Every other field is at its
    /// default.
    ///
    /// `interface` (a name such as `eth0`) overrides the interface. Fails
    /// with `ENODEV` for an unknown interface and `ENETUNREACH` when there
    /// is no route, with a message naming them.
    ///
    /// # Examples
    ///
    /// ```
    /// let dest = mdwrite::DestConfig::route("127.0.0.1:5000".parse().unwrap(), None)?;
    /// assert_eq!(dest.from, std::net::Ipv4Addr::LOCALHOST);
    /// assert_ne!(dest.ifindex, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn route(to: SocketAddr, interface: Option<&str>) -> io::Result<DestConfig> {
        let _ = (to, interface);
        todo!()
    }
}
