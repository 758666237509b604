// SPDX-License-Identifier: GPL-2.0

//! [`Sender`]: one socket-like API over the module and the userspace
//! fallback.

use std::{collections::HashMap, fmt, io};

use crate::{
    fallback::Fallback, route::interface_mtu, DestConfig, DestId, Device, Entry, Info, Stats,
    WriteOptions, WriteReport,
};

/// Which implementation carries a [`Sender`]'s packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The mdwrite kernel module (`/dev/mdwrite`): zero-copy, one call
    /// for the whole vector, straight onto the TX queue.
    Module,
    /// Plain UDP sockets and `sendmmsg`, on any Linux machine: the same
    /// packets, built by the kernel's UDP stack with one copy.
    Fallback,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Module => "module",
            Backend::Fallback => "fallback (sendmmsg)",
        })
    }
}

/// A multi-destination UDP sender, used like [`std::net::UdpSocket`]:
/// [`connect`](Sender::connect) registers destinations, and
/// [`send_vectored`](Sender::send_vectored) sends many chunks to many of
/// them in one call.
///
/// Both backends put the same packets on the wire for the same input: the
/// same payload per packet (the destination's packet size less the IP,
/// UDP and RTP headers), the same RTP fields, and, as far as sockets
/// allow, the same interleaving (see [`Sender::open_fallback`]).
///
/// # Examples
///
/// ```no_run
/// use mdwrite::{DestConfig, Entry, Sender, WriteOptions};
///
/// let mut sender = Sender::open()?;
/// println!("backend: {}", sender.backend());
/// let a = sender.connect(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
/// let b = sender.connect(&DestConfig::route("192.0.2.2:5000".parse().unwrap(), None)?)?;
/// let data = vec![0u8; 1 << 20];
/// let report = sender.send_vectored(
///     &[Entry::new(a, &data), Entry::new(b, &data)],
///     &WriteOptions::default(),
/// )?;
/// println!("{} packets", report.packets);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Sender {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Module {
        dev: Device,
        /// The largest payload of each destination registered here.
        payloads: HashMap<DestId, u16>,
    },
    Fallback(Fallback),
}

impl Sender {
    /// The module if [`Device::PATH`] opens, otherwise the fallback.
    pub fn open() -> io::Result<Sender> {
        match Self::open_module() {
            Ok(s) => Ok(s),
            Err(_) => Self::open_fallback(),
        }
    }

    /// The kernel module; fails as [`Device::open`] does (`ENOENT` when it
    /// is not loaded).
    pub fn open_module() -> io::Result<Sender> {
        Ok(Sender {
            inner: Inner::Module {
                dev: Device::open()?,
                payloads: HashMap::new(),
            },
        })
    }

    /// The userspace fallback; works on any Linux machine and needs no
    /// privilege.
    ///
    /// Destinations with the same source address and port share one UDP
    /// socket bound to that address and port (a port already in use falls
    /// back to an ephemeral one). A call's packets are put in the module's
    /// round-robin order and sent with `sendmmsg`, up to 64 at a time, each
    /// message an iovec of the RTP header and a slice of the caller's data.
    /// Packets of destinations that share a socket leave in exactly the
    /// module's order; across sockets each `sendmmsg` carries the longest run
    /// of that order on one socket. Not supported: VLAN tags (`EOPNOTSUPP`);
    /// `dst_mac` and `ifindex` are left to the kernel's routing.
    pub fn open_fallback() -> io::Result<Sender> {
        Ok(Sender {
            inner: Inner::Fallback(Fallback::new()),
        })
    }

    /// Which backend this sender uses.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Module { .. } => Backend::Module,
            Inner::Fallback(_) => Backend::Fallback,
        }
    }

    /// What the module implements; `None` for the fallback.
    pub fn info(&self) -> io::Result<Option<Info>> {
        match &self.inner {
            Inner::Module { dev, .. } => dev.info().map(Some),
            Inner::Fallback(_) => Ok(None),
        }
    }

    /// Counters: the module's for this open device, or the fallback's own
    /// (`calls`, `packets`, and `bytes_copied` for the payload bytes, since
    /// the UDP stack copies them).
    pub fn stats(&self) -> io::Result<Stats> {
        match &self.inner {
            Inner::Module { dev, .. } => dev.stats(),
            Inner::Fallback(fb) => Ok(fb.stats()),
        }
    }

    /// Registers a destination. Fails with the module's errno for the same
    /// mistake (`EINVAL`, `ENODEV`, `EMSGSIZE`, ...; see
    /// `Documentation/uapi.rst`).
    pub fn connect(&mut self, dest: &DestConfig) -> io::Result<DestId> {
        match &mut self.inner {
            Inner::Module { dev, payloads } => {
                let id = dev.add_destination(dest)?;
                // The module accepted it, so the template builds; the MTU
                // is the device's, read again as the module did.
                if let Some(t) = interface_mtu(dest.ifindex)
                    .ok()
                    .and_then(|mtu| dest.template(mtu).ok())
                {
                    payloads.insert(id, t.max_payload());
                }
                Ok(id)
            }
            Inner::Fallback(fb) => fb.connect(dest),
        }
    }

    /// Removes a destination; `ENXIO` when there is none with this id.
    pub fn disconnect(&mut self, id: DestId) -> io::Result<()> {
        match &mut self.inner {
            Inner::Module { dev, payloads } => {
                dev.remove_destination(id)?;
                payloads.remove(&id);
                Ok(())
            }
            Inner::Fallback(fb) => fb.disconnect(id),
        }
    }

    /// The largest payload of one packet to `id`: its packet size less the
    /// IP, UDP and RTP headers. `None` for an unknown id.
    pub fn max_payload(&self, id: DestId) -> Option<u16> {
        match &self.inner {
            Inner::Module { payloads, .. } => payloads.get(&id).copied(),
            Inner::Fallback(fb) => fb.max_payload(id),
        }
    }

    /// Sends every entry, each cut into packets and all interleaved round
    /// robin across destinations (in order of first appearance, `quantum`
    /// packets per destination per turn), in one call.
    ///
    /// Fails without sending anything on invalid input (`EINVAL`, `E2BIG`,
    /// `ENXIO`, ...); an error after some packets left is in
    /// [`WriteReport::error`].
    pub fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
    ) -> io::Result<WriteReport> {
        match &mut self.inner {
            Inner::Module { dev, .. } => dev.write_vectored(entries, *opts),
            Inner::Fallback(fb) => fb.send_vectored(entries, opts),
        }
    }
}
