// SPDX-License-Identifier: GPL-2.0

//! [`Sender`]: one socket-like API over the module and the userspace
//! fallback.

use std::{
    collections::{HashMap, VecDeque},
    fmt, io,
    os::fd::{BorrowedFd, OwnedFd},
    time::Duration,
};

use mdwrite_uapi::{MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_MAX_ASYNC};

use crate::{
    fallback::{Fallback, FallbackStats},
    route::interface_mtu,
    Completion, DestConfig, DestId, Device, Entry, Info, RegisteredBuffer, Stats, WriteOptions,
    WriteReport,
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
    /// Asynchronous calls: the module's, or completions made up here.
    async_state: AsyncState,
}

/// What a sender knows of its asynchronous calls.
#[derive(Debug, Default)]
struct AsyncState {
    /// The module's `MDW_FEAT_BUF` and `MDW_FEAT_ASYNC`; both false for the
    /// fallback.
    module_buf: bool,
    module_async: bool,
    /// Calls the module accepted whose completion was not read yet.
    module_in_flight: u64,
    /// Completions of calls sent synchronously in place of asynchronous
    /// ones (fallback, or a module without `MDW_FEAT_ASYNC`), not read yet.
    synthetic: VecDeque<Completion>,
    /// Signalled for each of them.
    eventfd: Option<OwnedFd>,
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
        let dev = Device::open()?;
        let features = dev.info()?.features.0;
        Ok(Sender {
            inner: Inner::Module(dev),
            dests: HashMap::new(),
            async_state: AsyncState {
                module_buf: features & MDW_FEAT_BUF != 0,
                module_async: features & MDW_FEAT_ASYNC != 0,
                ..AsyncState::default()
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
            dests: HashMap::new(),
            async_state: AsyncState::default(),
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

    /// `len` bytes of page-aligned, zeroed memory to send from, registered
    /// with the module (`MDW_IOC_BUF_REGISTER`) so that calls pin nothing;
    /// see [`RegisteredBuffer`] and its rule for reusing memory.
    ///
    /// The fallback, and a module without `MDW_FEAT_BUF`, give plain memory
    /// ([`RegisteredBuffer::id`] is `None`), used the same way. Errors:
    /// `EINVAL` for 0 bytes, `E2BIG` above 1 GiB, and from the module
    /// `ENOBUFS` past `RLIMIT_MEMLOCK` (without `CAP_IPC_LOCK`) and
    /// `ENOSPC` past 1024 buffers.
    pub fn register_buffer(&mut self, len: usize) -> io::Result<RegisteredBuffer> {
        match &self.inner {
            Inner::Module(dev) if self.async_state.module_buf => dev.register_buffer(len),
            _ => RegisteredBuffer::unregistered(len),
        }
    }

    /// Sends like [`send_vectored`](Sender::send_vectored), but returns as
    /// soon as every packet is queued, with what was queued. Exactly one
    /// [`Completion`] carrying `cookie` follows when the call's last packet
    /// has left ([`try_completions`](Sender::try_completions),
    /// [`wait_completions`](Sender::wait_completions)); a call that fails
    /// has none.
    ///
    /// The memory of the entries must not be rewritten before the
    /// completion: send from [`RegisteredBuffer`]s, whose pages the module
    /// holds anyway; plain memory is pinned until the completion and
    /// charged to `RLIMIT_MEMLOCK` (`ENOBUFS`).
    ///
    /// Back-pressure: with 256 (`MDW_MAX_ASYNC`) calls in flight or
    /// completed and unread, the call fails with `EAGAIN`
    /// ([`io::ErrorKind::WouldBlock`]) before sending anything: read
    /// completions, then retry, or use
    /// [`send_async_waiting`](Sender::send_async_waiting).
    ///
    /// The fallback, and a module without `MDW_FEAT_ASYNC`, send at once
    /// and queue the completion themselves, with the same limit.
    pub fn send_async(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        let st = &mut self.async_state;
        if let Inner::Module(dev) = &self.inner {
            if st.module_async {
                let report = dev.write_vectored_async(entries, *opts, cookie)?;
                st.module_in_flight += 1;
                return Ok(report);
            }
        }
        if st.synthetic.len() >= MDW_MAX_ASYNC as usize {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let report = self.send_vectored(entries, opts)?;
        let st = &mut self.async_state;
        st.synthetic.push_back(Completion::of(cookie, &report));
        if let Some(efd) = &st.eventfd {
            // As the module: the eventfd counts completions. A full
            // counter (2^64 - 2) cannot happen with 256 unread.
            let _ = rustix::io::write(efd, &1u64.to_ne_bytes());
        }
        Ok(report)
    }

    /// [`send_async`](Sender::send_async), waiting out back-pressure: on
    /// `EAGAIN` it waits for completions, appends them to `done`, and
    /// retries.
    pub fn send_async_waiting(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
        cookie: u64,
        done: &mut Vec<Completion>,
    ) -> io::Result<WriteReport> {
        loop {
            match self.send_async(entries, opts, cookie) {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    if self.wait_completions(done, None)? == 0 {
                        // Nothing was in flight after all: the limit is
                        // someone else's (another user of the file).
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }

    /// Asynchronous calls whose completion was not read yet.
    pub fn in_flight(&self) -> u64 {
        self.async_state.module_in_flight + self.async_state.synthetic.len() as u64
    }

    /// Appends the completions that are ready to `out`, without blocking;
    /// returns how many.
    pub fn try_completions(&mut self, out: &mut Vec<Completion>) -> io::Result<usize> {
        let mut n = self.take_synthetic(out);
        if let Inner::Module(dev) = &self.inner {
            if self.async_state.module_in_flight > 0
                && dev.poll_completions(Some(Duration::ZERO))?
            {
                n += self.read_module(out)?;
            }
        }
        Ok(n)
    }

    /// Appends completions to `out`, waiting up to `timeout` (`None`: for
    /// as long as it takes) for at least one; returns how many. Returns 0
    /// at once when no call is in flight, and on timeout.
    pub fn wait_completions(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let n = self.take_synthetic(out);
        if n > 0 || self.async_state.module_in_flight == 0 {
            return Ok(n);
        }
        if let Inner::Module(dev) = &self.inner {
            if timeout.is_some() && !dev.poll_completions(timeout)? {
                return Ok(0);
            }
        }
        self.read_module(out)
    }

    /// The next completion, waiting up to `timeout` (`None`: for as long
    /// as it takes); `None` when no call is in flight, or on timeout.
    pub fn wait_completion(&mut self, timeout: Option<Duration>) -> io::Result<Option<Completion>> {
        if let Some(c) = self.async_state.synthetic.pop_front() {
            return Ok(Some(c));
        }
        let Inner::Module(dev) = &self.inner else {
            return Ok(None);
        };
        if self.async_state.module_in_flight == 0
            || (timeout.is_some() && !dev.poll_completions(timeout)?)
        {
            return Ok(None);
        }
        loop {
            match dev.read_completion() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(c) => {
                    let st = &mut self.async_state;
                    st.module_in_flight = match c {
                        Some(_) => st.module_in_flight.saturating_sub(1),
                        None => 0,
                    };
                    return Ok(c);
                }
            }
        }
    }

    /// From now on `eventfd` counts completions: 1 is added for each
    /// (`MDW_IOC_SET_EVENTFD`; the fallback writes it itself). Poll it in
    /// an event loop, then call [`try_completions`](Sender::try_completions).
    /// `None` stops it.
    pub fn set_eventfd(&mut self, eventfd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let st = &mut self.async_state;
        match &self.inner {
            Inner::Module(dev) if st.module_async => dev.set_eventfd(eventfd),
            _ => {
                st.eventfd = eventfd.map(|fd| fd.try_clone_to_owned()).transpose()?;
                Ok(())
            }
        }
    }

    fn take_synthetic(&mut self, out: &mut Vec<Completion>) -> usize {
        let n = self.async_state.synthetic.len();
        out.extend(self.async_state.synthetic.drain(..));
        n
    }

    /// Reads the module's records, blocking while calls are in flight and
    /// none is queued; a signal does not end the wait.
    fn read_module(&mut self, out: &mut Vec<Completion>) -> io::Result<usize> {
        let Inner::Module(dev) = &self.inner else {
            return Ok(0);
        };
        loop {
            match dev.read_completions(out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    let st = &mut self.async_state;
                    st.module_in_flight = if n == 0 {
                        // The module has nothing in flight: trust it.
                        0
                    } else {
                        st.module_in_flight.saturating_sub(n as u64)
                    };
                    return Ok(n);
                }
            }
        }
    }
}
