// SPDX-License-Identifier: GPL-2.0

//! [`Sender`]: one socket-like API over the module and the userspace
//! fallback.

use std::{collections::HashMap, fmt, io};

use crate::{
    fallback::{Fallback, FallbackStats},
    route::interface_mtu,
    DestConfig, DestId, Device, Entry, Info, Stats, WriteOptions, WriteReport,
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
    /// What this sender knows of each destination it registered.
    dests: HashMap<DestId, DestMeta>,
}

#[derive(Debug)]
enum Inner {
    Module(Device),
    Fallback(Fallback),
}

/// A registered destination's largest payload and initial RTP timestamp.
#[derive(Clone, Copy, Debug)]
struct DestMeta {
    max_payload: Option<u16>,
    rtp_timestamp: Option<u32>,
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
            inner: Inner::Module(Device::open()?),
            dests: HashMap::new(),
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
            dests: HashMap::new(),
        })
    }

    /// Which backend this sender uses.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Module(_) => Backend::Module,
            Inner::Fallback(_) => Backend::Fallback,
        }
    }

    /// What the module implements; `None` for the fallback.
    pub fn info(&self) -> io::Result<Option<Info>> {
        match &self.inner {
            Inner::Module(dev) => dev.info().map(Some),
            Inner::Fallback(_) => Ok(None),
        }
    }

    /// Counters: the module's for this open device, or the fallback's own
    /// (`calls`, `packets`, and `bytes_copied` for the payload bytes, since
    /// the UDP stack copies them).
    pub fn stats(&self) -> io::Result<Stats> {
        match &self.inner {
            Inner::Module(dev) => dev.stats(),
            Inner::Fallback(fb) => Ok(fb.stats()),
        }
    }

    /// Registers a destination. Fails with the module's errno for the same
    /// mistake (`EINVAL`, `ENODEV`, `EMSGSIZE`, ...; see
    /// `Documentation/uapi.rst`).
    pub fn connect(&mut self, dest: &DestConfig) -> io::Result<DestId> {
        let id = match &mut self.inner {
            Inner::Module(dev) => dev.add_destination(dest)?,
            Inner::Fallback(fb) => fb.connect(dest)?,
        };
        // Accepted, so the template builds; the MTU is the device's, read
        // again as the backend did.
        let max_payload = interface_mtu(dest.ifindex)
            .ok()
            .and_then(|mtu| dest.template(mtu).ok())
            .map(|t| t.max_payload());
        let meta = DestMeta {
            max_payload,
            rtp_timestamp: dest.rtp.map(|r| r.timestamp),
        };
        self.dests.insert(id, meta);
        Ok(id)
    }

    /// Removes a destination; `ENXIO` when there is none with this id.
    pub fn disconnect(&mut self, id: DestId) -> io::Result<()> {
        match &mut self.inner {
            Inner::Module(dev) => dev.remove_destination(id)?,
            Inner::Fallback(fb) => fb.disconnect(id)?,
        }
        self.dests.remove(&id);
        Ok(())
    }

    /// The largest payload of one packet to `id`: its packet size less the
    /// IP, UDP and RTP headers. `None` for an unknown id.
    pub fn max_payload(&self, id: DestId) -> Option<u16> {
        self.dests.get(&id).and_then(|d| d.max_payload)
    }

    /// The RTP timestamp of the first packet to `id`
    /// ([`Rtp::timestamp`](crate::Rtp::timestamp)); `None` for an unknown
    /// id or a destination without RTP.
    pub fn rtp_initial_timestamp(&self, id: DestId) -> Option<u32> {
        self.dests.get(&id).and_then(|d| d.rtp_timestamp)
    }

    /// The fallback's own counters (system calls, messages, GSO messages);
    /// `None` for the module.
    pub fn fallback_stats(&self) -> Option<FallbackStats> {
        match &self.inner {
            Inner::Module(_) => None,
            Inner::Fallback(fb) => Some(fb.counters()),
        }
    }

    /// Lets the fallback use `UDP_SEGMENT` (GSO), on by default: when every
    /// destination of a call is plain UDP (no RTP header, a checksum) with
    /// the same largest payload, consecutive packets of one entry to one
    /// destination go as one message that the kernel cuts into the same
    /// packets. No effect on the module.
    pub fn set_gso(&mut self, enabled: bool) {
        if let Inner::Fallback(fb) = &mut self.inner {
            fb.set_gso(enabled);
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
            Inner::Module(dev) => dev.write_vectored(entries, *opts),
            Inner::Fallback(fb) => fb.send_vectored(entries, opts),
        }
    }
}
