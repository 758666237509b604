// SPDX-License-Identifier: GPL-2.0

//! [`Sender`]: one socket-like API over the module and the userspace
//! fallback.

use std::{
    collections::{HashMap, VecDeque},
    fmt, io,
    ops::Range,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    time::Duration,
};

use mdwrite_uapi::{
    MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_FEAT_FANOUT, MDW_FEAT_KEEP_PINS, MDW_FEAT_PACE, MDW_MAX_ASYNC,
};

use crate::{
    fallback::{Fallback, FallbackStats},
    pace::release_user,
    route::interface_mtu,
    Completion, DestConfig, DestId, Device, Entry, EntryPace, Info, MonotonicClock, PaceClock,
    RegisteredBuffer, Stats, WriteOptions, WriteReport,
};

/// How far ahead of its time a packet of a paced call released in user
/// space may leave, to send the packets due together in one system call.
pub(crate) const USER_PACE_SLACK: Duration = Duration::from_micros(20);

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
/// [`add_destination`](Sender::add_destination) registers destinations, and
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
/// let a = sender.add_destination(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
/// let b = sender.add_destination(&DestConfig::route("192.0.2.2:5000".parse().unwrap(), None)?)?;
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
    /// The module releases paced calls itself (`MDW_FEAT_PACE`).
    module_pace: bool,
    /// The module has `MDW_FEAT_FANOUT` (else [`WriteOptions::fanout`] is
    /// ignored).
    fanout: bool,
    /// The module has `MDW_FEAT_KEEP_PINS` (else
    /// [`WriteOptions::keep_pins`] is ignored).
    keep_pins: bool,
}

/// One entry of an asynchronous call ([`Sender::send_async`]): bytes
/// `range` of the call's buffer number `buffer`, for `dest`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AsyncEntry {
    /// Where it goes.
    pub dest: DestId,
    /// Index of the buffer in the call's `buffers`.
    pub buffer: usize,
    /// The bytes of that buffer to send.
    pub range: Range<usize>,
    /// RTP timestamp of the entry's first packet (RTP destinations only).
    pub rtp_timestamp: Option<u32>,
    /// Its own timing in a paced call, as [`Entry::pace`].
    pub pace: Option<EntryPace>,
}

impl AsyncEntry {
    /// Bytes `range` of the call's buffer number `buffer`, for `dest`.
    pub fn new(dest: DestId, buffer: usize, range: Range<usize>) -> Self {
        Self {
            dest,
            buffer,
            range,
            rtp_timestamp: None,
            pace: None,
        }
    }

    /// With its own timing in a paced call, as [`Entry::with_pace`].
    pub fn with_pace(mut self, pace: EntryPace) -> Self {
        self.pace = Some(pace);
        self
    }

    /// With `ts` as the RTP timestamp of the entry's first packet.
    pub fn with_rtp_timestamp(mut self, ts: u32) -> Self {
        self.rtp_timestamp = Some(ts);
        self
    }
}

/// An asynchronous call that sent nothing: why, and the buffers it was
/// given, back to the caller.
///
/// Converts into its [`io::Error`] (dropping the buffers), so `?` works in
/// functions returning [`io::Result`].
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// Why nothing was sent (`EAGAIN` for back-pressure).
    pub error: io::Error,
    /// The buffers, as they were given.
    pub buffers: Vec<RegisteredBuffer>,
}

impl SendError {
    /// The errno of [`error`](SendError::error).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.error.raw_os_error()
    }
}

impl From<SendError> for io::Error {
    fn from(e: SendError) -> Self {
        e.error
    }
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
    /// Readable while synthetic completions wait: what [`AsFd`] gives
    /// when completions are not the module's.
    ready: Option<OwnedFd>,
    /// The module cookie of the next asynchronous call: the sender numbers
    /// the calls itself, so that a completion finds its buffers whatever
    /// cookies the caller chose.
    next_token: u64,
    /// Module calls in flight by token: the caller's cookie and the
    /// buffers the call holds until its completion.
    pending: HashMap<u64, (u64, Vec<RegisteredBuffer>)>,
}

impl AsyncState {
    /// Resets the readiness eventfd once every synthetic completion is
    /// taken (a non-blocking read; nothing to read is fine).
    fn reset_ready(&self) {
        if let Some(fd) = &self.ready {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(fd, &mut count);
        }
    }

    /// Gives each completion read from the module (the tail of `out` from
    /// `from`) its caller's cookie and buffers back.
    fn resolve(&mut self, out: &mut [Completion]) {
        for c in out {
            if let Some((cookie, buffers)) = self.pending.remove(&c.cookie) {
                c.cookie = cookie;
                c.buffers = buffers;
            }
        }
    }
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
        let features = dev.info()?.features.bits();
        let module_async = features & MDW_FEAT_ASYNC != 0;
        Ok(Sender {
            inner: Inner::Module(dev),
            module_pace: features & MDW_FEAT_PACE != 0,
            fanout: features & MDW_FEAT_FANOUT != 0,
            keep_pins: features & MDW_FEAT_KEEP_PINS != 0,
            dests: HashMap::new(),
            async_state: AsyncState {
                module_buf: features & MDW_FEAT_BUF != 0,
                module_async,
                ready: if module_async {
                    None
                } else {
                    Some(ready_fd()?)
                },
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
            module_pace: false,
            fanout: false,
            keep_pins: false,
            dests: HashMap::new(),
            async_state: AsyncState {
                ready: Some(ready_fd()?),
                ..AsyncState::default()
            },
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
    /// `Documentation/uapi.rst`). The same name as
    /// [`Device::add_destination`].
    pub fn add_destination(&mut self, dest: &DestConfig) -> io::Result<DestId> {
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

    /// The old name of [`add_destination`](Sender::add_destination).
    #[deprecated(note = "renamed add_destination, as on Device")]
    pub fn connect(&mut self, dest: &DestConfig) -> io::Result<DestId> {
        self.add_destination(dest)
    }

    /// The old name of [`remove_destination`](Sender::remove_destination).
    #[deprecated(note = "renamed remove_destination, as on Device")]
    pub fn disconnect(&mut self, id: DestId) -> io::Result<()> {
        self.remove_destination(id)
    }

    /// Removes a destination; `ENXIO` when there is none with this id.
    pub fn remove_destination(&mut self, id: DestId) -> io::Result<()> {
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
    ///
    /// A paced call ([`WriteOptions::pace`]) returns once its last packet
    /// left, and is released:
    ///
    /// - by the module (`MDW_FEAT_PACE`): its own timer on the direct path,
    ///   or, with [`WriteOptions::qdisc`], a departure time on each packet
    ///   for `fq` or `etf`;
    /// - by the fallback with [`WriteOptions::qdisc`]: each message carries
    ///   its departure time (`SO_TXTIME`/`SCM_TXTIME`, `CLOCK_MONOTONIC`);
    /// - otherwise in user space: the sender sleeps until each packet is
    ///   due and sends the packets due within 20 us in one unpaced call
    ///   (`CLOCK_MONOTONIC` only, `EINVAL` for TAI).
    ///
    /// A module without `MDW_FEAT_PACE` cannot stamp packets for the qdisc
    /// (`EOPNOTSUPP`). The window and entry timings are checked as the
    /// module checks them (`EINVAL`, `ERANGE`, `ETIME`).
    pub fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
    ) -> io::Result<WriteReport> {
        let opts = &self.supported(opts);
        // Only the module sends to groups, and only in one call.
        let module_call = match self.inner {
            Inner::Module(_) => opts.pace.is_none() || self.module_pace,
            Inner::Fallback(_) => false,
        };
        if !module_call && entries.iter().any(|e| e.group.is_some()) {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let Some(window) = opts.pace else {
            return match &mut self.inner {
                Inner::Module(dev) => dev.write_vectored(entries, *opts),
                Inner::Fallback(fb) => fb.send_vectored(entries, opts),
            };
        };
        match &mut self.inner {
            Inner::Module(dev) if self.module_pace => return dev.write_vectored(entries, *opts),
            Inner::Fallback(fb) if opts.qdisc => return fb.send_vectored(entries, opts),
            Inner::Module(_) if opts.qdisc => {
                return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
            }
            _ => {}
        }
        if window.clock != PaceClock::Monotonic {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let checked = window.check(window.clock.now())?;
        let payloads: HashMap<DestId, Option<u16>> = self
            .dests
            .iter()
            .map(|(&id, m)| (id, m.max_payload))
            .collect();
        let unpaced = WriteOptions {
            pace: None,
            ..*opts
        };
        release_user(
            entries,
            &checked,
            &|d| payloads.get(&d).copied().flatten(),
            &MonotonicClock,
            USER_PACE_SLACK,
            &mut |call| self.send_vectored(call, &unpaced),
        )
    }

    /// `opts` without what this backend cannot do: fan-outs need
    /// `MDW_FEAT_FANOUT` (the fallback sends such entries as they are),
    /// kept pins `MDW_FEAT_KEEP_PINS` (without it every call pins).
    fn supported(&self, opts: &WriteOptions) -> WriteOptions {
        WriteOptions {
            fanout: opts.fanout && self.fanout,
            keep_pins: opts.keep_pins && self.keep_pins,
            ..*opts
        }
    }

    /// Whether the module releases paced calls itself (`MDW_FEAT_PACE`);
    /// false for the fallback and older modules, which pace in user space
    /// (or, through the qdisc, with `SO_TXTIME`: the fallback only).
    pub fn kernel_pacing(&self) -> bool {
        self.module_pace
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
    /// soon as every packet is queued, with what was queued. The call takes
    /// `buffers` by value; each entry names one of them by index and a
    /// range of its bytes. Exactly one [`Completion`] carrying `cookie`
    /// follows when the call's last packet has left
    /// ([`try_completions`](Sender::try_completions),
    /// [`wait_completions`](Sender::wait_completions)), and hands the
    /// buffers back in [`Completion::buffers`]: until then nothing can
    /// rewrite or free the memory the device reads. A call that fails sends
    /// nothing, has no completion, and returns the buffers in the
    /// [`SendError`].
    ///
    /// Send from [`RegisteredBuffer`]s registered on this sender
    /// ([`register_buffer`](Sender::register_buffer)), whose pages the
    /// module holds anyway; an unregistered one is pinned by the module until
    /// the completion and charged to `RLIMIT_MEMLOCK` (`ENOBUFS`). To keep
    /// several regions of one buffer in flight, split it
    /// ([`RegisteredBuffer::into_chunks`]). An entry naming no buffer of
    /// the call, or a range outside its buffer, is `EINVAL`.
    ///
    /// Back-pressure: with 256 (`MDW_MAX_ASYNC`) calls in flight or
    /// completed and unread, the call fails with `EAGAIN`
    /// ([`io::ErrorKind::WouldBlock`]) before sending anything: read
    /// completions, then retry, or use
    /// [`send_async_waiting`](Sender::send_async_waiting).
    ///
    /// The fallback, and a module without `MDW_FEAT_ASYNC`, send at once
    /// and queue the completion themselves, with the same limit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mdwrite::{AsyncEntry, DestConfig, Sender, WriteOptions};
    ///
    /// let mut sender = Sender::open()?;
    /// let dest = sender.add_destination(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
    /// let mut buf = sender.register_buffer(1 << 20)?;
    /// buf[..4].copy_from_slice(b"data");
    /// sender.send_async(vec![buf], &[AsyncEntry::new(dest, 0, 0..4)], &WriteOptions::default(), 7)?;
    /// let done = sender.wait_completion(None)?.expect("one call in flight");
    /// assert_eq!(done.cookie, 7);
    /// let mut buf = done.buffers.into_iter().next().unwrap(); // ours again
    /// buf[..4].copy_from_slice(b"more");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// The buffer is the call's until its completion: rewriting it after
    /// handing it over does not compile.
    ///
    /// ```compile_fail,E0382
    /// use mdwrite::{AsyncEntry, DestConfig, Sender, WriteOptions};
    ///
    /// let mut sender = Sender::open()?;
    /// let dest = sender.add_destination(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
    /// let mut buf = sender.register_buffer(4096)?;
    /// sender.send_async(vec![buf], &[AsyncEntry::new(dest, 0, 0..4096)], &WriteOptions::default(), 1)?;
    /// buf[0] = 1; // the device may still be reading it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Nor does sending borrowed memory asynchronously, which the caller
    /// could free or rewrite as soon as the call returns.
    ///
    /// ```compile_fail,E0308
    /// use mdwrite::{DestConfig, Entry, Sender, WriteOptions};
    ///
    /// let mut sender = Sender::open()?;
    /// let dest = sender.add_destination(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
    /// let data = vec![0u8; 4096];
    /// sender.send_async(&[Entry::new(dest, &data)], &WriteOptions::default(), 1)?;
    /// drop(data);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_async(
        &mut self,
        buffers: Vec<RegisteredBuffer>,
        entries: &[AsyncEntry],
        opts: &WriteOptions,
        cookie: u64,
    ) -> Result<WriteReport, SendError> {
        let mut borrowed = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(data) = buffers.get(e.buffer).and_then(|b| b.get(e.range.clone())) else {
                return Err(SendError {
                    error: io::Error::from_raw_os_error(libc::EINVAL),
                    buffers,
                });
            };
            borrowed.push(Entry {
                dest: e.dest,
                data,
                rtp_timestamp: e.rtp_timestamp,
                pace: e.pace,
                group: None,
            });
        }
        // SAFETY: every entry borrows from `buffers`, which the call keeps
        // (in `pending`, or in the synthetic completion) until its
        // completion is read, so nothing rewrites or unmaps that memory
        // before: the pieces own their ranges, and a mapping lives as long
        // as any piece of it.
        let result = unsafe { self.submit_async(&borrowed, opts, cookie) };
        drop(borrowed);
        match result {
            Ok((report, Submitted::Module(token))) => {
                self.async_state.pending.insert(token, (cookie, buffers));
                Ok(report)
            }
            Ok((report, Submitted::Synthetic)) => {
                if let Some(c) = self.async_state.synthetic.back_mut() {
                    c.buffers = buffers;
                }
                Ok(report)
            }
            Err(error) => Err(SendError { error, buffers }),
        }
    }

    /// An asynchronous call of borrowed entries; the completion carries
    /// `cookie` and no buffers.
    ///
    /// # Safety
    ///
    /// The memory of every entry must stay mapped and unchanged until the
    /// call's completion has been read from this sender (a synchronous
    /// fallback call has completed when this returns).
    pub(crate) unsafe fn send_async_borrowed(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        // SAFETY: the caller's contract is this function's.
        let (report, submitted) = unsafe { self.submit_async(entries, opts, cookie) }?;
        if let Submitted::Module(token) = submitted {
            self.async_state.pending.insert(token, (cookie, Vec::new()));
        }
        Ok(report)
    }

    /// Sends `entries` asynchronously: with the module's `MDW_WRITE_ASYNC`
    /// under a token of the sender's, or synchronously with a synthetic
    /// completion of `cookie` queued.
    ///
    /// # Safety
    ///
    /// As [`send_async_borrowed`](Sender::send_async_borrowed).
    unsafe fn submit_async(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
        cookie: u64,
    ) -> io::Result<(WriteReport, Submitted)> {
        let fanned = self.supported(opts);
        let st = &mut self.async_state;
        if let Inner::Module(dev) = &self.inner {
            if st.module_async && (opts.pace.is_none() || self.module_pace) {
                let token = st.next_token;
                // SAFETY: the entries stay mapped and unchanged until the
                // completion of `token` is read (the caller's contract).
                let report = unsafe { dev.write_vectored_async(entries, fanned, token) }?;
                st.next_token = token.wrapping_add(1);
                st.module_in_flight += 1;
                return Ok((report, Submitted::Module(token)));
            }
        }
        if st.synthetic.len() >= MDW_MAX_ASYNC as usize {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let report = self.send_vectored(entries, opts)?;
        let st = &mut self.async_state;
        st.synthetic.push_back(Completion::of(cookie, &report));
        // As the module: the eventfd counts completions. A full counter
        // (2^64 - 2) cannot happen with 256 unread.
        for fd in [&st.eventfd, &st.ready].into_iter().flatten() {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
        Ok((report, Submitted::Synthetic))
    }

    /// [`send_async`](Sender::send_async), waiting out back-pressure: on
    /// `EAGAIN` it waits for completions, appends them to `done`, and
    /// retries.
    pub fn send_async_waiting(
        &mut self,
        buffers: Vec<RegisteredBuffer>,
        entries: &[AsyncEntry],
        opts: &WriteOptions,
        cookie: u64,
        done: &mut Vec<Completion>,
    ) -> Result<WriteReport, SendError> {
        let mut buffers = buffers;
        loop {
            match self.send_async(buffers, entries, opts, cookie) {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    match self.wait_completions(done, None) {
                        // Nothing was in flight after all: the limit is
                        // someone else's (another user of the file).
                        Ok(0) => return Err(e),
                        Ok(_) => buffers = e.buffers,
                        Err(error) => {
                            return Err(SendError {
                                error,
                                buffers: e.buffers,
                            })
                        }
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
            if self.async_state.synthetic.is_empty() {
                self.async_state.reset_ready();
            }
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
                Ok(mut c) => {
                    let st = &mut self.async_state;
                    st.module_in_flight = match c {
                        Some(_) => st.module_in_flight.saturating_sub(1),
                        None => 0,
                    };
                    st.resolve(c.as_mut_slice());
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
        let st = &mut self.async_state;
        let n = st.synthetic.len();
        if n > 0 {
            st.reset_ready();
        }
        out.extend(st.synthetic.drain(..));
        n
    }

    /// Reads the module's records, blocking while calls are in flight and
    /// none is queued; a signal does not end the wait.
    fn read_module(&mut self, out: &mut Vec<Completion>) -> io::Result<usize> {
        let Inner::Module(dev) = &self.inner else {
            return Ok(0);
        };
        let from = out.len();
        loop {
            match dev.read_completions(out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    let st = &mut self.async_state;
                    st.resolve(&mut out[from..]);
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

/// How an asynchronous call went out.
enum Submitted {
    /// As the module's asynchronous call with this token as its cookie.
    Module(u64),
    /// Sent synchronously; its completion is queued in the sender.
    Synthetic,
}

/// A non-blocking eventfd that is readable while synthetic completions
/// wait.
fn ready_fd() -> io::Result<OwnedFd> {
    use rustix::event::{eventfd, EventfdFlags};
    Ok(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

/// The descriptor to wait on for completions: readable (`POLLIN`) when
/// [`Sender::try_completions`] has something to return. It is the module's
/// device file when the module runs the asynchronous calls, otherwise an
/// eventfd of the sender's that it signals for each completion it queues
/// (fallback, or a module without `MDW_FEAT_ASYNC`) and resets when they
/// are read. It is the same open descriptor for the sender's whole life.
/// Register it with epoll, or with tokio's `AsyncFd` (see the
/// `tokio_async` example); after a wake-up call
/// [`try_completions`](Sender::try_completions) until it returns 0.
impl AsFd for Sender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match (&self.inner, &self.async_state.ready) {
            (_, Some(fd)) => fd.as_fd(),
            (Inner::Module(dev), None) => dev.as_fd(),
            (Inner::Fallback(_), None) => unreachable!("a fallback sender has its eventfd"),
        }
    }
}

impl AsRawFd for Sender {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
