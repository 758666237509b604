// SPDX-License-Identifier: GPL-2.0

//! [`StreamGroup`]: many bitrate-paced streams sent with one vectored call
//! per tick.
//!
//! # Pacing
//!
//! A stream that started at time `s` on the group's clock is due, at time
//! `t`, the bytes `floor(bitrate × (t − s) / 8)` rounded down to whole
//! packets of `payload_size`, less what it already sent. The count comes
//! from the elapsed time at every tick, never from a sum of per-tick
//! amounts, so rounding errors do not add up: right after each tick a
//! stream is less than one packet behind its ideal byte count, however
//! long it runs, whatever the tick times. Late ticks send more, early
//! ticks less.
//!
//! # Interval
//!
//! [`StreamGroup::interval`] is the time the slowest stream takes to fill
//! one packet (`max(payload_size × 8 / bitrate)` over the streams), clamped
//! to `1 ms ..= latency` ([`GroupOptions::latency`], 20 ms by default):
//!
//! - **At least one packet of the slowest stream**: a shorter interval makes
//!   calls in which that stream has nothing to send, so every call carries
//!   fewer packets and costs more per packet; longer is not needed, since
//!   faster streams fill several packets per tick anyway.
//! - **At most the latency budget**: data waits up to one interval before
//!   it is sent, and a stream sends `bitrate × interval` in one burst, which
//!   a receiver must buffer. A stream slower than one packet per `latency`
//!   sends one packet every few ticks.
//! - **At least 1 ms**: below that, waking up and the call cost more than
//!   they save, and a loaded machine's scheduling delay is of that order
//!   anyway.
//!
//! The interval is recomputed when streams join or leave; it changes only
//! when the calls are made, not how much each stream sends.
//!
//! # Falling behind
//!
//! When a tick runs late (the process was not scheduled, the clock jumped),
//! the next tick sends everything due, up to [`GroupOptions::buffer`] worth
//! of each stream's bitrate (but never less than one interval's worth plus
//! one packet). Beyond that, the stream's schedule slips: the excess is
//! neither read nor sent, but postponed, and counted in
//! [`StreamStats::slipped`]; from then on the stream is paced from the later
//! start. Data is never dropped: a source is read in order, without gaps.
//!
//! # Paced groups
//!
//! With [`GroupOptions::pace`] other than [`Pace::Off`], the interval is
//! the latency budget and every packet gets a departure time: packet `j`
//! of a stream, due at `start + (j + 1) × packet time`, departs one
//! interval plus a lead (an eighth of the interval, at most
//! [`MAX_PACE_LEAD`]; none for [`Pace::User`]) later. Each tick's call has
//! the window `[now + lead, now + interval + lead + max(lead, 50 us))` and
//! each entry its [`EntryPace`] (offset of its first packet, the stream's
//! packet time as gap), so every stream is spaced at its own rate, across
//! calls too. [`Pace::Kernel`] and [`Pace::Txtime`] send that paced call
//! (asynchronously with a ring); [`Pace::User`] releases it from the
//! group, sleeping on its clock.
//!
//! # Registered buffers and asynchronous calls
//!
//! With [`StreamGroup::set_async_ring`], each stream reads into a ring of
//! regions of one [`RegisteredBuffer`], and each tick's call is sent
//! asynchronously: tick `n` uses region `n mod slots` of every stream and
//! its call carries cookie `n`; a region is read into again only after the
//! completion of every call of its previous tick.

use std::{
    io::{self, ErrorKind, Read},
    time::Duration,
};

use mdwrite_uapi::{MDW_MAX_CALL_BYTES, MDW_MAX_ENTRIES};

use crate::{
    pace::release_user, sender::USER_PACE_SLACK, Clock, Completion, DestId, Entry, EntryPace,
    MonotonicClock, Pace, PaceWindow, RegisteredBuffer, Sender, WriteOptions, WriteReport,
};

/// The shortest tick interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The longest interval of a paced group: its window (the interval plus
/// the lead) stays within the module's 1 s (`MDW_MAX_PACE_WINDOW`).
pub const MAX_PACED_INTERVAL: Duration = Duration::from_millis(500);

/// The most a paced call's window starts after its tick (the lead), so that
/// the call is queued before its first packet is due: an eighth of the
/// interval, at most this.
pub const MAX_PACE_LEAD: Duration = Duration::from_millis(1);

/// Added to a user-paced window's length beyond the interval, so that the
/// packets due exactly at its end fit.
const PACE_MARGIN: Duration = Duration::from_micros(50);

/// One stream of a [`StreamGroup`]: its bitrate, packet payload and
/// destinations.
///
/// Set each destination's packet size so that its largest payload is
/// `payload_size` ([`DestConfig::packet_size_for`]); then each tick's chunk
/// of a stream is one entry per destination, cut by the sender into packets
/// of exactly `payload_size`. Other destinations get one entry per packet.
///
/// [`DestConfig::packet_size_for`]: crate::DestConfig::packet_size_for
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Bits of payload per second, non-zero.
    pub bitrate: u64,
    /// Bytes of data per packet, for example 1316 (7 MPEG-TS packets);
    /// chunks are whole multiples of it, except a source's last bytes.
    pub payload_size: usize,
    /// Where the stream goes; each gets the same bytes.
    pub dests: Vec<DestId>,
    /// With `Some(hz)`, each entry to a destination with RTP carries the
    /// RTP timestamp of its first
    /// byte's ideal send time since the stream's start, at `hz` (90 000 for
    /// MPEG-TS, RFC 2250), counted from the destination's initial
    /// timestamp ([`Rtp::timestamp`](crate::Rtp::timestamp), random per
    /// RFC 3550); give the destinations
    /// [`StreamConfig::rtp_ts_increment`] as their per-packet increment.
    pub rtp_clock_hz: Option<u32>,
}

impl StreamConfig {
    /// A stream of `bitrate` bits per second in packets of
    /// `payload_size` bytes, to no destination yet and without RTP
    /// timestamps.
    pub fn new(bitrate: u64, payload_size: usize) -> Self {
        Self {
            bitrate,
            payload_size,
            dests: Vec::new(),
            rtp_clock_hz: None,
        }
    }

    /// With `dests` as its destinations.
    pub fn with_dests(mut self, dests: Vec<DestId>) -> Self {
        self.dests = dests;
        self
    }

    /// With RTP timestamps at `hz` (90 000 for MPEG-TS).
    pub fn with_rtp_clock_hz(mut self, hz: u32) -> Self {
        self.rtp_clock_hz = Some(hz);
        self
    }

    /// The RTP timestamp increment of one packet: its payload's duration at
    /// the bitrate, in `rtp_clock_hz` units, rounded to nearest. `None`
    /// without an RTP clock or with a zero bitrate.
    ///
    /// ```
    /// let cfg = mdwrite::StreamConfig::new(3_760_000, 1316).with_rtp_clock_hz(90_000);
    /// // 1316 bytes at 3.76 Mb/s last 2.8 ms: 252 ticks of 90 kHz.
    /// assert_eq!(cfg.rtp_ts_increment(), Some(252));
    /// ```
    pub fn rtp_ts_increment(&self) -> Option<u32> {
        let hz = u128::from(self.rtp_clock_hz?);
        if self.bitrate == 0 {
            return None;
        }
        let bits = self.payload_size as u128 * 8;
        let rate = u128::from(self.bitrate);
        u32::try_from((bits * hz + rate / 2) / rate).ok()
    }

    /// Nanoseconds one packet of this stream lasts at its bitrate, exactly:
    /// `num / den`.
    fn packet_ns(&self) -> (u128, u128) {
        (
            self.payload_size as u128 * 8 * 1_000_000_000,
            u128::from(self.bitrate.max(1)),
        )
    }

    /// The time this stream takes to fill one packet.
    fn packet_time(&self) -> Duration {
        let ns = self.payload_size as u128 * 8 * 1_000_000_000 / u128::from(self.bitrate.max(1));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// Names a stream of a [`StreamGroup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u64);

/// How a [`StreamGroup`] paces and sends: [`GroupOptions::default`] and
/// the `with_*` methods.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct GroupOptions {
    /// The longest tick interval: how long data may wait before it is sent.
    pub latency: Duration,
    /// The most a stream sends in one tick after the group fell behind,
    /// in time of its bitrate; beyond it the stream's schedule slips.
    pub buffer: Duration,
    /// How each tick's call is sent.
    pub write: WriteOptions,
    /// How each stream's packets are spread over the interval;
    /// [`Pace::Off`] by default (one burst per stream per tick).
    pub pace: Pace,
}

impl GroupOptions {
    /// With `pace` as the way packets are spread over each interval.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// With `latency` as the longest tick interval.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// With `buffer` as the most a stream sends in one late tick.
    pub fn with_buffer(mut self, buffer: Duration) -> Self {
        self.buffer = buffer;
        self
    }

    /// With `write` for each tick's call.
    pub fn with_write(mut self, write: WriteOptions) -> Self {
        self.write = write;
        self
    }
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            buffer: Duration::from_millis(200),
            write: WriteOptions::default(),
            pace: Pace::Off,
        }
    }
}

/// A stream's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes read from the source and handed to the sender (counted once,
    /// whatever the number of destinations).
    pub bytes: u64,
    /// Packets handed to the sender, per destination.
    pub packets: u64,
    /// The source reached its end (or failed, see `error`).
    pub ended: bool,
    /// How far the stream's schedule was moved back because the group fell
    /// behind by more than [`GroupOptions::buffer`].
    pub slipped: Duration,
    /// Why the source failed, if it did.
    pub error: Option<String>,
}

/// What one [`StreamGroup::tick`] did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// The time of the tick on the group's clock.
    pub at: Duration,
    /// How late the tick ran after its scheduled time.
    pub late: Duration,
    /// Entries sent.
    pub entries: usize,
    /// Source bytes sent over all streams, each counted once.
    pub bytes: u64,
    /// What the sender did (summed over calls, if the entries did not fit
    /// in one); `None` when nothing was due.
    pub write: Option<WriteReport>,
    /// Streams whose source ended in this tick, with their final counters;
    /// they are removed from the group.
    pub ended: Vec<(StreamId, StreamStats)>,
    /// What each destination was handed in calls that did not stop early,
    /// in order of first appearance. A call that stopped early (see
    /// [`write`](TickReport::write)) counts for no destination: which of its
    /// packets left is not known per destination.
    pub delivered: Vec<DestCount>,
    /// The window of the tick's paced call ([`GroupOptions::pace`]
    /// [`Pace::Kernel`] or [`Pace::Txtime`]); `None` otherwise.
    pub window: Option<PaceWindow>,
    /// The paced call's window had ended when the module read it (`ETIME`:
    /// the tick ran later than its window, on a loaded machine): its
    /// packets were sent at once, after those of earlier calls, rather than
    /// lost.
    pub window_missed: bool,
}

/// Packets and payload bytes handed to the sender for one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestCount {
    /// The destination.
    pub dest: DestId,
    /// Packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
}

/// Where a [`StreamGroup`] sends its calls: a [`Sender`], or a fake in
/// tests.
pub trait Transmit {
    /// Sends the entries in one call, as [`Sender::send_vectored`].
    fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
    ) -> io::Result<WriteReport>;
    /// The largest payload of a packet to `id`, as [`Sender::max_payload`].
    fn max_payload(&self, id: DestId) -> Option<u16>;
    /// The RTP timestamp of the first packet to `id`, as
    /// [`Sender::rtp_initial_timestamp`]: a stream's entry timestamps start
    /// there, and a destination without RTP (`None`) gets none. The
    /// default is `Some(0)`.
    fn rtp_initial_timestamp(&self, id: DestId) -> Option<u32> {
        let _ = id;
        Some(0)
    }
    /// Memory for a stream's ring, as [`Sender::register_buffer`]. The
    /// default is plain memory.
    fn register_buffer(&mut self, len: usize) -> io::Result<RegisteredBuffer> {
        RegisteredBuffer::unregistered(len)
    }
    /// Sends the entries in one asynchronous call, as
    /// [`Sender::send_async`] does with owned buffers. The default sends
    /// synchronously and has no completion, which is what
    /// [`wait_completions`](Transmit::wait_completions) returning 0
    /// (nothing in flight) then says.
    ///
    /// # Safety
    ///
    /// The memory of the entries must stay mapped and unchanged until the
    /// call's completion has been read with
    /// [`wait_completions`](Transmit::wait_completions) (or until it
    /// returned 0, nothing in flight). [`StreamGroup`] keeps that rule: a
    /// ring region is read into again only after the completions of the
    /// calls that used it.
    unsafe fn send_async(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        let _ = cookie;
        self.send_vectored(entries, opts)
    }
    /// Whether paced calls are released by the kernel
    /// ([`Sender::kernel_pacing`]); the default is false.
    fn kernel_pacing(&self) -> bool {
        false
    }
    /// Waits for completions, as [`Sender::wait_completions`]; 0 means no
    /// call is in flight. The default has none.
    fn wait_completions(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let _ = (out, timeout);
        Ok(0)
    }
}

impl Transmit for Sender {
    fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
    ) -> io::Result<WriteReport> {
        Sender::send_vectored(self, entries, opts)
    }

    fn max_payload(&self, id: DestId) -> Option<u16> {
        Sender::max_payload(self, id)
    }

    fn rtp_initial_timestamp(&self, id: DestId) -> Option<u32> {
        Sender::rtp_initial_timestamp(self, id)
    }

    fn register_buffer(&mut self, len: usize) -> io::Result<RegisteredBuffer> {
        Sender::register_buffer(self, len)
    }

    unsafe fn send_async(
        &mut self,
        entries: &[Entry<'_>],
        opts: &WriteOptions,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        // SAFETY: the trait method's contract is the same.
        unsafe { Sender::send_async_borrowed(self, entries, opts, cookie) }
    }

    fn wait_completions(
        &mut self,
        out: &mut Vec<Completion>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        Sender::wait_completions(self, out, timeout)
    }

    fn kernel_pacing(&self) -> bool {
        Sender::kernel_pacing(self)
    }
}

/// Where a stream's chunks are read to.
enum Storage {
    /// One buffer, reused every tick (synchronous calls).
    Heap(Vec<u8>),
    /// A ring of `slots` regions of `region` bytes (asynchronous calls).
    Ring(RegisteredBuffer),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Heap(v) => v,
            Storage::Ring(b) => b,
        }
    }

    /// The storage, at least `len` bytes (a heap buffer grows).
    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        match self {
            Storage::Heap(v) => {
                if v.len() < len {
                    v.resize(len, 0);
                }
                v
            }
            Storage::Ring(b) => b,
        }
    }
}

struct Stream {
    id: StreamId,
    cfg: StreamConfig,
    source: Box<dyn Read + Send>,
    /// When the stream started on the group's clock.
    start: Duration,
    /// Bytes of the schedule postponed after falling behind (whole packets).
    slip: u64,
    stats: StreamStats,
    /// This tick's chunk is `storage[at..at + chunk]`; read bytes not yet
    /// sent (less than a packet, after a short read) wait in
    /// `storage[carry_at..carry_at + carry]` until the next tick.
    storage: Storage,
    at: usize,
    chunk: usize,
    carry_at: usize,
    carry: usize,
    /// Registering this stream's ring failed: it stays in ordinary memory.
    ring_refused: bool,
}

impl Stream {
    /// The bytes this stream should have sent by `now`: whole packets.
    fn target(&self, now: Duration) -> u64 {
        let elapsed = now.saturating_sub(self.start).as_nanos();
        let ideal = u128::from(self.cfg.bitrate) * elapsed / 8_000_000_000;
        let p = self.cfg.payload_size as u128;
        let whole = u64::try_from(ideal / p * p).unwrap_or(u64::MAX);
        whole.saturating_sub(self.slip)
    }

    /// When packet `j` of the stream's schedule (0 first) became due:
    /// once its last byte's time since the start passed, in nanoseconds on
    /// the group's clock.
    fn due_at(&self, j: u64) -> u128 {
        let (num, den) = self.cfg.packet_ns();
        self.start.as_nanos() + ((u128::from(j) + 1) * num).div_ceil(den)
    }

    /// The most this stream sends in one tick.
    fn budget(&self, buffer: Duration, interval: Duration) -> u64 {
        let p = self.cfg.payload_size as u128;
        let rate = u128::from(self.cfg.bitrate);
        let packets = |d: Duration| rate * d.as_nanos() / 8_000_000_000 / p;
        let n = packets(buffer).max(packets(interval) + 2);
        u64::try_from(n * p).unwrap_or(u64::MAX)
    }

    /// The most bytes one tick's chunk can hold, carried bytes included,
    /// whatever the interval (which never exceeds the latency).
    fn region_len(&self, opts: &GroupOptions) -> usize {
        let most = self.budget(opts.buffer, opts.latency.max(MIN_INTERVAL));
        usize::try_from(most)
            .unwrap_or(usize::MAX)
            .saturating_add(self.cfg.payload_size)
    }

    /// Reads this tick's chunk of up to `due` bytes (after any carried
    /// bytes) into `storage[at..at + chunk]`, `at` being this tick's region.
    fn read_chunk(&mut self, at: usize, due: usize) {
        let p = self.cfg.payload_size;
        let buf = self.storage.bytes_mut(at + due);
        if self.carry > 0 && self.carry_at != at {
            buf.copy_within(self.carry_at..self.carry_at + self.carry, at);
        }
        let buf = &mut buf[at..at + due];
        let mut filled = self.carry;
        self.at = at;
        self.carry = 0;
        let mut short = false;
        while filled < due {
            match self.source.read(&mut buf[filled..due]) {
                Ok(0) => {
                    self.stats.ended = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    short = true;
                    break;
                }
                Err(e) => {
                    self.stats.ended = true;
                    self.stats.error = Some(e.to_string());
                    break;
                }
            }
        }
        // A short read that is not the end keeps its partial packet for
        // the next tick: packets are always whole until the source ends.
        self.chunk = if short { filled / p * p } else { filled };
        self.carry = filled - self.chunk;
        self.carry_at = at + self.chunk;
    }
}

/// The asynchronous mode of a group: which tick regions are in use.
struct Ring {
    /// Regions per stream.
    slots: usize,
    /// The next tick's number: its cookie, and its region `tick % slots`.
    tick: u64,
    /// Calls of each region's last tick whose completion is not in yet.
    busy: Vec<u32>,
    /// Why a stream's ring could not be registered, if it could not.
    error: Option<io::Error>,
}

impl Ring {
    fn slot(&self, cookie: u64) -> usize {
        (cookie % self.slots as u64) as usize
    }

    /// Waits for completions (at least one) and frees their regions.
    fn wait<T: Transmit + ?Sized>(&mut self, out: &mut T) -> io::Result<()> {
        let mut done = Vec::new();
        loop {
            match out.wait_completions(&mut done, None) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
                // Nothing in flight: every region is free.
                Ok(0) => {
                    self.busy.iter_mut().for_each(|b| *b = 0);
                    return Ok(());
                }
                Ok(_) => break,
            }
        }
        for c in done {
            let slot = self.slot(c.cookie);
            self.busy[slot] = self.busy[slot].saturating_sub(1);
        }
        Ok(())
    }
}

/// Many streams, each a source of bytes at a bitrate sent to some
/// destinations, paced on one clock: every [`tick`](StreamGroup::tick)
/// gathers what each stream is due into one vectored call.
///
/// # Pacing
///
/// A stream that started at time `s` on the group's clock is due, at time
/// `t`, the bytes `floor(bitrate × (t − s) / 8)` rounded down to whole
/// packets of `payload_size`, less what it already sent: computed from the
/// elapsed time at every tick, so rounding errors do not add up. Right
/// after each tick a stream is less than one packet behind its ideal byte
/// count, however long it runs.
///
/// # Interval
///
/// See [`StreamGroup::interval`].
///
/// # Falling behind
///
/// A late tick sends everything due, up to [`GroupOptions::buffer`] worth
/// of each stream's bitrate (never less than one interval plus two
/// packets). Beyond that the stream's schedule slips: the excess is
/// postponed, not dropped, and counted in [`StreamStats::slipped`].
///
/// Each tick reads one buffer per stream, and every destination of the
/// stream gets an entry pointing at those same bytes.
///
/// # Examples
///
/// ```
/// use mdwrite::{Clock, DestConfig, FakeClock, GroupOptions, Sender, StreamConfig, StreamGroup};
/// use std::{net::UdpSocket, time::Duration};
///
/// let receiver = UdpSocket::bind("127.0.0.1:0")?;
/// let mut sender = Sender::open_fallback()?;
/// let mut dest = DestConfig::route(receiver.local_addr()?, None)?;
/// dest.packet_size = Some(dest.packet_size_for(1316));
/// let dest = sender.add_destination(&dest)?;
///
/// let clock = FakeClock::new();
/// let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
/// let data = vec![0x47u8; 1316 * 10];
/// let cfg = StreamConfig::new(1_000_000, 1316).with_dests(vec![dest]);
/// let stream = group.add_stream(cfg, Box::new(std::io::Cursor::new(data)))?;
/// while !group.is_empty() {
///     group.tick(&mut sender)?; // the fake clock jumps to each tick
/// }
/// let mut buf = [0u8; 2048];
/// assert_eq!(receiver.recv(&mut buf)?, 1316);
/// assert!(clock.now() >= Duration::from_millis(105)); // 10 packets at 1 Mb/s
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StreamGroup<C: Clock = MonotonicClock> {
    clock: C,
    opts: GroupOptions,
    streams: Vec<Stream>,
    next_id: u64,
    next_tick: Duration,
    interval: Duration,
    ring: Option<Ring>,
}

impl<C: Clock> StreamGroup<C> {
    /// An empty group on `clock`; its first tick is one interval from now.
    pub fn new(clock: C, opts: GroupOptions) -> Self {
        let mut group = Self {
            next_tick: clock.now(),
            clock,
            opts,
            streams: Vec::new(),
            next_id: 0,
            interval: Duration::ZERO,
            ring: None,
        };
        group.update_interval();
        group.next_tick += group.interval;
        group
    }

    /// Adds a stream that starts now, reading from `source`.
    ///
    /// The source is read during the ticks, so a read that blocks delays
    /// every stream of the group: give files, memory, or non-blocking
    /// sources (`WouldBlock` means no data yet; the stream catches up when
    /// data comes, within [`GroupOptions::buffer`]).
    ///
    /// Fails with `EINVAL` for a zero bitrate or payload size or no
    /// destination.
    pub fn add_stream(
        &mut self,
        cfg: StreamConfig,
        source: Box<dyn Read + Send>,
    ) -> io::Result<StreamId> {
        if cfg.bitrate == 0 || cfg.payload_size == 0 || cfg.dests.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.next_id += 1;
        let id = StreamId(self.next_id);
        self.streams.push(Stream {
            id,
            cfg,
            source,
            start: self.clock.now(),
            slip: 0,
            stats: StreamStats::default(),
            storage: Storage::Heap(Vec::new()),
            at: 0,
            chunk: 0,
            carry_at: 0,
            carry: 0,
            ring_refused: false,
        });
        self.update_interval();
        // A faster stream does not wait for a tick planned for slower ones.
        self.next_tick = self.next_tick.min(self.clock.now() + self.interval);
        Ok(id)
    }

    /// Removes a stream; its counters, or `None` if there is no such stream.
    pub fn remove_stream(&mut self, id: StreamId) -> Option<StreamStats> {
        let index = self.streams.iter().position(|s| s.id == id)?;
        let stream = self.streams.remove(index);
        self.update_interval();
        Some(stream.stats)
    }

    /// The tick interval. Paced ([`GroupOptions::pace`] other than
    /// [`Pace::Off`]): the latency budget, [`GroupOptions::latency`]
    /// clamped to `1 ms ..= 500 ms` ([`MAX_PACED_INTERVAL`]), each stream's
    /// packets timed over it. Unpaced: the time the slowest stream takes
    /// to fill one packet (`max(payload_size × 8 / bitrate)`), clamped to
    /// `1 ms ..= latency` (with no streams, the latency), as below.
    ///
    /// - At least one packet of the slowest stream: a shorter interval
    ///   makes calls in which that stream has nothing to send, so each call
    ///   carries fewer packets; faster streams fill several per tick anyway.
    /// - At most the latency budget: data waits up to one interval, and a
    ///   stream sends `bitrate × interval` in one burst that receivers must
    ///   buffer. A stream slower than one packet per `latency` sends one
    ///   packet every few ticks.
    /// - At least [`MIN_INTERVAL`] (1 ms): below that, waking up and the
    ///   call cost more than they save.
    ///
    /// It is recomputed when streams join or leave; it changes when calls
    /// are made, not how much each stream sends.
    ///
    /// ```
    /// use mdwrite::{FakeClock, GroupOptions, StreamConfig, StreamGroup, DestId};
    /// use std::time::Duration;
    ///
    /// let mut group = StreamGroup::new(FakeClock::new(), GroupOptions::default());
    /// let cfg = |bitrate| StreamConfig::new(bitrate, 1250).with_dests(vec![DestId::from_handle(1)]);
    /// group.add_stream(cfg(2_000_000), Box::new(std::io::empty()))?;
    /// assert_eq!(group.interval(), Duration::from_millis(5)); // 10 000 bits at 2 Mb/s
    /// group.add_stream(cfg(100_000), Box::new(std::io::empty()))?;
    /// assert_eq!(group.interval(), Duration::from_millis(20)); // 100 ms, capped by latency
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The pacing the group's ticks use with `out`: [`GroupOptions::pace`],
    /// [`Pace::Auto`] resolved to [`Pace::Kernel`] when `out` releases paced
    /// calls itself ([`Transmit::kernel_pacing`]), else [`Pace::User`].
    /// [`Pace::Kernel`] without it is `EOPNOTSUPP`.
    pub fn pace_mode<T: Transmit + ?Sized>(&self, out: &T) -> io::Result<Pace> {
        match self.opts.pace {
            Pace::Auto if out.kernel_pacing() => Ok(Pace::Kernel),
            Pace::Auto => Ok(Pace::User),
            Pace::Kernel if !out.kernel_pacing() => {
                Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
            }
            mode => Ok(mode),
        }
    }

    fn update_interval(&mut self) {
        let latency = self.opts.latency.max(MIN_INTERVAL);
        if self.opts.pace != Pace::Off {
            // Paced: one call per latency budget, each stream spread over it.
            self.interval = latency.min(MAX_PACED_INTERVAL);
            return;
        }
        self.interval = self
            .streams
            .iter()
            .map(|s| s.cfg.packet_time())
            .max()
            .unwrap_or(latency)
            .clamp(MIN_INTERVAL, latency);
    }

    /// Sends from registered buffers, asynchronously: each stream gets a
    /// [`RegisteredBuffer`] ([`Transmit::register_buffer`]) of `slots`
    /// regions, each large enough for one tick's chunk, when it first has
    /// data; tick `n` reads into region `n mod slots` of every stream and
    /// sends with [`Transmit::send_async`] and cookie `n`. Before a region
    /// is read into again, the tick waits for the completions of the calls
    /// that used it, so data in flight is never overwritten. `slots` 0
    /// turns it off (synchronous calls from ordinary memory, the default).
    ///
    /// A region holds [`GroupOptions::buffer`] of the stream's bitrate (or
    /// one latency plus two packets, if more) and one packet: with the
    /// defaults, 4 regions of a 40 Mb/s stream take 4 MB, which the module
    /// charges to `RLIMIT_MEMLOCK`. A stream whose buffer cannot be
    /// registered reads into ordinary memory, and the ticks it sends in are
    /// synchronous; [`async_ring_error`](StreamGroup::async_ring_error)
    /// says why.
    ///
    /// While the group has calls in flight, do not send other asynchronous
    /// calls through the same sender: the group reads every completion.
    /// Fails with `EBUSY` once streams were added.
    pub fn set_async_ring(&mut self, slots: usize) -> io::Result<()> {
        if !self.streams.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        self.ring = (slots > 0).then(|| Ring {
            slots,
            tick: 0,
            busy: vec![0; slots],
            error: None,
        });
        Ok(())
    }

    /// Why a stream could not get a registered ring
    /// ([`set_async_ring`](StreamGroup::set_async_ring)), if one could not.
    pub fn async_ring_error(&self) -> Option<&io::Error> {
        self.ring.as_ref().and_then(|r| r.error.as_ref())
    }

    /// Waits until every asynchronous call of the group has completed (at
    /// once without [`set_async_ring`](StreamGroup::set_async_ring)).
    pub fn flush(&mut self, sender: &mut Sender) -> io::Result<()> {
        self.flush_with(sender)
    }

    /// [`flush`](StreamGroup::flush) with any [`Transmit`].
    pub fn flush_with<T: Transmit + ?Sized>(&mut self, out: &mut T) -> io::Result<()> {
        if let Some(ring) = &mut self.ring {
            while ring.busy.iter().any(|&b| b > 0) {
                ring.wait(out)?;
            }
        }
        Ok(())
    }

    /// A stream's counters, or `None` if there is no such stream (it was
    /// removed, or ended in an earlier tick).
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        self.streams
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.stats.clone())
    }

    /// Whether no stream is left (all ended or removed).
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The number of streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// The clock the group paces on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// When the next tick is due, on the group's clock.
    pub fn next_tick(&self) -> Duration {
        self.next_tick
    }

    /// With an asynchronous ring: waits until the calls that last used this
    /// tick's slot have completed and registers the ring of each stream
    /// that has none yet (its carried bytes moved in); the slot.
    fn ready_rings<T: Transmit + ?Sized>(&mut self, out: &mut T) -> io::Result<Option<usize>> {
        let Some(ring) = &mut self.ring else {
            return Ok(None);
        };
        let slot = ring.slot(ring.tick);
        while ring.busy[slot] > 0 {
            ring.wait(out)?;
        }
        for s in &mut self.streams {
            let Storage::Heap(old) = &s.storage else {
                continue;
            };
            if s.ring_refused {
                continue;
            }
            // A region holds any chunk (the budget at the longest
            // interval), so a due chunk is never cut below.
            let len = s.region_len(&self.opts).saturating_mul(ring.slots);
            match out.register_buffer(len) {
                Ok(mut buf) => {
                    let c = s.carry;
                    buf[..c].copy_from_slice(&old[s.carry_at..s.carry_at + c]);
                    s.carry_at = 0;
                    s.storage = Storage::Ring(buf);
                }
                Err(e) => {
                    s.ring_refused = true;
                    ring.error = Some(e);
                }
            }
        }
        Ok(Some(slot))
    }

    /// Waits for the next tick on the clock, then sends what every stream
    /// is due in one [`Sender::send_vectored`] call (more only if the
    /// entries exceed the module's per-call limits).
    ///
    /// Streams whose source ended send their last bytes (a last partial
    /// packet too) and are removed, listed in [`TickReport::ended`]. An
    /// error of the call is returned; the data of that tick is lost, and
    /// pacing goes on at the next tick.
    pub fn tick(&mut self, sender: &mut Sender) -> io::Result<TickReport> {
        self.tick_with(sender)
    }

    /// [`tick`](StreamGroup::tick) with any [`Transmit`].
    pub fn tick_with<T: Transmit + ?Sized>(&mut self, out: &mut T) -> io::Result<TickReport> {
        let mode = self.pace_mode(out)?;
        self.clock.sleep_until(self.next_tick);
        // This tick's region of every ring, once the calls that used it
        // last have completed, and the rings of new streams. Both before
        // the tick's time is read: they can take long (a paced call
        // completes at its window's end; registering pins a ring's pages),
        // and a paced window starts a short lead after that time.
        let slot = self.ready_rings(out)?;
        let now = self.clock.now();
        let mut report = TickReport {
            at: now,
            late: now.saturating_sub(self.next_tick),
            ..Default::default()
        };
        // The next tick: the first one of the grid after now.
        let step = self.interval.as_nanos().max(1);
        let behind = now.saturating_sub(self.next_tick).as_nanos();
        let ahead = (behind / step + 1) * step;
        self.next_tick += Duration::from_nanos(u64::try_from(ahead).unwrap_or(u64::MAX));

        // Read each stream's due chunk.
        for s in &mut self.streams {
            // Whole packets: the target, the bytes sent and the budget all
            // are, so the slip is too. Carried bytes (less than a packet)
            // are already in the buffer.
            let mut due = s.target(now).saturating_sub(s.stats.bytes);
            let budget = s.budget(self.opts.buffer, self.interval);
            if due > budget {
                let excess = due - budget;
                s.slip += excess;
                let ns = u128::from(excess) * 8_000_000_000 / u128::from(s.cfg.bitrate);
                s.stats.slipped += Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX));
                due = budget;
            }
            let mut due = usize::try_from(due).unwrap_or(usize::MAX);
            s.chunk = 0;
            if due <= s.carry {
                continue;
            }
            let at = match (slot, &s.storage) {
                (Some(slot), Storage::Ring(_)) => {
                    let region = s.region_len(&self.opts);
                    due = due.min(region);
                    slot * region
                }
                _ => 0,
            };
            s.read_chunk(at, due);
        }

        // One entry per destination (or per packet, when a destination's
        // payload differs), all pointing into the stream's one buffer.
        let mut entries: Vec<Entry<'_>> = Vec::new();
        // Paced: the window starts `lead` after now and each packet departs
        // one interval plus the lead after it became due, so a stream's
        // packets keep their spacing from one window to the next.
        let lead = match mode {
            Pace::User | Pace::Off => Duration::ZERO,
            _ => (self.interval / 8).min(MAX_PACE_LEAD),
        };
        let window = PaceWindow::new(now + lead, self.interval + lead.max(PACE_MARGIN));
        let delay = (self.interval + lead).as_nanos();
        let w0 = window.start.as_nanos();
        let w_len = u64::try_from(window.length.as_nanos()).unwrap_or(u64::MAX);
        for s in &self.streams {
            let chunk = &s.storage.bytes()[s.at..s.at + s.chunk];
            if chunk.is_empty() {
                continue;
            }
            let p = s.cfg.payload_size;
            // The stream's first packet of this chunk in its schedule.
            let j0 = (s.stats.bytes + s.slip) / p as u64;
            let (num, den) = s.cfg.packet_ns();
            let gap = u64::try_from(num / den).unwrap_or(u64::MAX);
            let pace = |i: usize, packets: usize| {
                (mode != Pace::Off).then(|| {
                    let first = s.due_at(j0 + i as u64) + delay;
                    chunk_pace(first, gap, packets as u64, w0, w_len)
                })
            };
            let rtp_ts = |offset: usize| {
                s.cfg.rtp_clock_hz.map(|hz| {
                    let byte = u128::from(s.stats.bytes + s.slip) + offset as u128;
                    let ticks = byte * 8 * u128::from(hz) / u128::from(s.cfg.bitrate);
                    ticks as u32
                })
            };
            for &dest in &s.cfg.dests {
                // Only destinations with RTP take a timestamp.
                let base = out.rtp_initial_timestamp(dest);
                let rtp_ts = |offset: usize| Some(rtp_ts(offset)?.wrapping_add(base?));
                if out.max_payload(dest).is_none_or(|m| usize::from(m) == p) {
                    entries.push(Entry {
                        rtp_timestamp: rtp_ts(0),
                        pace: pace(0, chunk.len().div_ceil(p)),
                        ..Entry::new(dest, chunk)
                    });
                } else {
                    for (i, packet) in chunk.chunks(p).enumerate() {
                        entries.push(Entry {
                            rtp_timestamp: rtp_ts(i * p),
                            pace: pace(i, 1),
                            ..Entry::new(dest, packet)
                        });
                    }
                }
            }
        }
        report.entries = entries.len();
        // Asynchronous only if every chunk is in a ring: ordinary memory
        // is reused at the next tick.
        let in_rings = self
            .streams
            .iter()
            .all(|s| s.chunk == 0 || matches!(s.storage, Storage::Ring(_)));
        let mut ok_entries = 0;
        let write = match mode {
            Pace::Off | Pace::User => self.opts.write,
            _ => self
                .opts
                .write
                .with_qdisc(self.opts.write.qdisc || mode == Pace::Txtime)
                .with_pace(Some(window)),
        };
        if !entries.is_empty() {
            report.window = write.pace;
        }
        let clock = &self.clock;
        let now = || clock.now();
        let missed = &mut report.window_missed;
        let result = match (slot, &mut self.ring) {
            _ if entries.is_empty() => Ok(None),
            _ if mode == Pace::User => {
                send_user_paced(out, &entries, &write, &window, clock, &mut ok_entries)
            }
            (Some(_), Some(ring)) if in_rings => {
                send_all_async(out, &entries, &write, &now, ring, &mut ok_entries, missed)
            }
            _ => send_all(out, &entries, &write, &now, &mut ok_entries, missed),
        };
        for e in &entries[..ok_entries] {
            let per = out
                .max_payload(e.dest)
                .map_or(usize::MAX, usize::from)
                .max(1);
            let packets = e.data.len().div_ceil(per) as u64;
            match report.delivered.iter_mut().find(|c| c.dest == e.dest) {
                Some(c) => {
                    c.packets += packets;
                    c.bytes += e.data.len() as u64;
                }
                None => report.delivered.push(DestCount {
                    dest: e.dest,
                    packets,
                    bytes: e.data.len() as u64,
                }),
            }
        }
        if let Some(ring) = &mut self.ring {
            ring.tick = ring.tick.wrapping_add(1);
        }
        drop(entries);

        for s in &mut self.streams {
            let n = s.chunk as u64;
            s.stats.bytes += n;
            s.stats.packets += n.div_ceil(s.cfg.payload_size as u64);
            report.bytes += n;
            // The carried bytes move to the next tick's region when it is
            // read.
            s.chunk = 0;
        }
        let mut i = 0;
        while i < self.streams.len() {
            if self.streams[i].stats.ended && self.streams[i].carry == 0 {
                let s = self.streams.remove(i);
                report.ended.push((s.id, s.stats));
            } else {
                i += 1;
            }
        }
        if !report.ended.is_empty() {
            self.update_interval();
        }
        report.write = result?;
        Ok(report)
    }
}

/// The timing of a chunk of `packets` packets in a paced call whose
/// window starts at `w0` and lasts `len` (nanoseconds on the group's
/// clock): the first departs at `first`, the others `gap` apart. A chunk
/// due before the window starts at its start; one that would not end
/// inside the window is spread evenly from its first packet to the
/// window's end (gap 0).
pub(crate) fn chunk_pace(first: u128, gap: u64, packets: u64, w0: u128, len: u64) -> EntryPace {
    let offset = u64::try_from(first.saturating_sub(w0))
        .unwrap_or(u64::MAX)
        .min(len.saturating_sub(1));
    let fits = gap
        .checked_mul(packets.saturating_sub(1))
        .and_then(|span| span.checked_add(offset))
        .is_some_and(|last| last < len);
    EntryPace::new(
        Duration::from_nanos(offset),
        Duration::from_nanos(if fits { gap } else { 0 }),
    )
}

/// Releases one tick's paced entries from user space: sleeps on `clock`
/// until packets are due and sends them in small unpaced calls.
fn send_user_paced<T: Transmit + ?Sized, C: Clock>(
    out: &mut T,
    entries: &[Entry<'_>],
    write: &WriteOptions,
    window: &PaceWindow,
    clock: &C,
    ok_entries: &mut usize,
) -> io::Result<Option<WriteReport>> {
    let checked = window.check(clock.now())?;
    let mut payloads: Vec<(DestId, Option<u16>)> = Vec::new();
    for e in entries {
        if !payloads.iter().any(|(d, _)| *d == e.dest) {
            payloads.push((e.dest, out.max_payload(e.dest)));
        }
    }
    let payload = |d: DestId| payloads.iter().find(|(x, _)| *x == d).and_then(|p| p.1);
    let unpaced = write.with_pace(None);
    let r = release_user(
        entries,
        &checked,
        &payload,
        clock,
        USER_PACE_SLACK,
        &mut |call: &[Entry<'_>]| {
            let mut ok = 0;
            let r = send_chunked(call, &mut |c| out.send_vectored(c, &unpaced), &mut ok)?;
            Ok(r.unwrap_or(WriteReport {
                bytes: 0,
                packets: 0,
                error: None,
            }))
        },
    )?;
    if r.error.is_none() {
        *ok_entries = entries.len();
    }
    Ok(Some(r))
}

/// Sends `entries` in as few calls as the module's limits allow.
fn send_all<T: Transmit + ?Sized>(
    out: &mut T,
    entries: &[Entry<'_>],
    opts: &WriteOptions,
    now: &dyn Fn() -> Duration,
    ok_entries: &mut usize,
    missed: &mut bool,
) -> io::Result<Option<WriteReport>> {
    send_chunked(
        entries,
        &mut |call: &[Entry<'_>]| {
            at_once_if_late(call, opts, now, missed, &mut |c, o| out.send_vectored(c, o))
        },
        ok_entries,
    )
}

/// How long the window of a late call's retry lasts: its packets all
/// depart at its start, the length only has to outlast the system call.
const LATE_WINDOW: Duration = Duration::from_millis(100);

/// Sends one call of `call` with `send` and `opts`. A paced call whose
/// window ended before the module read it (`ETIME`: the tick ran later
/// than the window, a loaded or slow machine) is sent again at once, late
/// but complete and in order: paced in a window from `now()` (after every
/// packet of the earlier calls, which may still wait in the pacer), each
/// entry's packets 1 ns apart from its start; if that window is over too,
/// unpaced. `missed` records it.
fn at_once_if_late(
    call: &[Entry<'_>],
    opts: &WriteOptions,
    now: &dyn Fn() -> Duration,
    missed: &mut bool,
    send: &mut dyn FnMut(&[Entry<'_>], &WriteOptions) -> io::Result<WriteReport>,
) -> io::Result<WriteReport> {
    let is_etime =
        |r: &io::Result<WriteReport>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::ETIME));
    let r = send(call, opts);
    let Some(window) = opts.pace.filter(|_| is_etime(&r)) else {
        return r;
    };
    *missed = true;
    let at_once = EntryPace::new(Duration::ZERO, Duration::from_nanos(1));
    let mut retry: Vec<Entry<'_>> = call
        .iter()
        .map(|e| Entry {
            pace: Some(at_once),
            ..*e
        })
        .collect();
    let late = PaceWindow {
        start: now(),
        length: LATE_WINDOW,
        ..window
    };
    let r = send(&retry, &opts.with_pace(Some(late)));
    if !is_etime(&r) {
        return r;
    }
    for e in &mut retry {
        e.pace = None;
    }
    send(&retry, &opts.with_pace(None))
}

/// Cuts `entries` into calls within the module's limits and sends each
/// with `send`, summing the reports; stops at the first call that stopped
/// early. `ok_entries` gets the number of entries in calls that did not.
fn send_chunked(
    entries: &[Entry<'_>],
    send: &mut dyn FnMut(&[Entry<'_>]) -> io::Result<WriteReport>,
    ok_entries: &mut usize,
) -> io::Result<Option<WriteReport>> {
    let mut total: Option<WriteReport> = None;
    let mut rest = entries;
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0u64;
        while n < rest.len() && n < MDW_MAX_ENTRIES as usize {
            let len = rest[n].data.len() as u64;
            if n > 0 && bytes + len > MDW_MAX_CALL_BYTES {
                break;
            }
            bytes += len;
            n += 1;
        }
        let (call, tail) = rest.split_at(n);
        rest = tail;
        let r = send(call)?;
        let t = total.get_or_insert(WriteReport {
            bytes: 0,
            packets: 0,
            error: None,
        });
        t.bytes += r.bytes;
        t.packets += r.packets;
        if let Some((e, index)) = r.error {
            let done = entries.len() - rest.len() - n;
            t.error = Some((e, done + index));
            break;
        }
        *ok_entries = entries.len() - rest.len();
    }
    Ok(total)
}

/// Sends `entries` as [`send_all`] does, each call asynchronous with the
/// ring's tick as cookie; counts the calls that will complete in the busy
/// count of the tick's slot, and waits out back-pressure (`EAGAIN`) by
/// reading completions.
fn send_all_async<T: Transmit + ?Sized>(
    out: &mut T,
    entries: &[Entry<'_>],
    opts: &WriteOptions,
    now: &dyn Fn() -> Duration,
    ring: &mut Ring,
    ok_entries: &mut usize,
    missed: &mut bool,
) -> io::Result<Option<WriteReport>> {
    let cookie = ring.tick;
    let slot = ring.slot(cookie);
    send_chunked(
        entries,
        &mut |call: &[Entry<'_>]| {
            at_once_if_late(call, opts, now, missed, &mut |c, o| {
                send_async_waiting(out, c, o, cookie, slot, ring)
            })
        },
        ok_entries,
    )
}

/// One asynchronous call of [`send_all_async`].
fn send_async_waiting<T: Transmit + ?Sized>(
    out: &mut T,
    call: &[Entry<'_>],
    opts: &WriteOptions,
    cookie: u64,
    slot: usize,
    ring: &mut Ring,
) -> io::Result<WriteReport> {
    loop {
        // SAFETY: the entries lie in ring regions of `slot` (the caller
        // sends asynchronously only then), counted busy below; a region is
        // read into again only once `ring.wait` has read the completions of
        // every call that used it. A stream removed meanwhile drops its
        // ring, and the module keeps the pages of a registered buffer; an
        // unregistered one (module without registered buffers) stays
        // pinned, so its pages are not reused either.
        match unsafe { out.send_async(call, opts, cookie) } {
            Ok(r) => {
                ring.busy[slot] += 1;
                return Ok(r);
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => ring.wait(&mut *out)?,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pace::departures, FakeClock};

    const P: usize = 1316;

    /// Records every call: the clock's time, its window and its entries'
    /// destinations, lengths and timings.
    struct Recorder {
        clock: FakeClock,
        kernel: bool,
        calls: Vec<Call>,
        /// How late each call reaches the module: a paced call whose
        /// window ended by then is refused (`ETIME`), as on a machine too
        /// slow for its latency budget.
        late: Duration,
        /// The time registering a buffer takes on the clock.
        register_takes: Duration,
    }

    struct Call {
        at: Duration,
        window: Option<PaceWindow>,
        entries: Vec<(DestId, usize, Option<EntryPace>)>,
    }

    impl Recorder {
        /// A recorder on `clock` whose calls are on time and registering
        /// takes no time; `kernel`: it releases paced calls itself.
        fn new(clock: FakeClock, kernel: bool) -> Self {
            Self {
                clock,
                kernel,
                calls: Vec::new(),
                late: Duration::ZERO,
                register_takes: Duration::ZERO,
            }
        }
    }

    impl Transmit for Recorder {
        fn send_vectored(
            &mut self,
            entries: &[Entry<'_>],
            opts: &WriteOptions,
        ) -> io::Result<WriteReport> {
            if opts
                .pace
                .is_some_and(|w| w.start + w.length <= self.clock.now() + self.late)
            {
                return Err(io::Error::from_raw_os_error(libc::ETIME));
            }
            // As the module: an entry's own timing only in a paced call.
            if opts.pace.is_none() && entries.iter().any(|e| e.pace.is_some()) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.calls.push(Call {
                at: self.clock.now(),
                window: opts.pace,
                entries: entries
                    .iter()
                    .map(|e| (e.dest, e.data.len(), e.pace))
                    .collect(),
            });
            let packets: usize = entries.iter().map(|e| e.data.len().div_ceil(P)).sum();
            let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
            Ok(WriteReport {
                bytes: bytes as u64,
                packets: packets as u64,
                error: None,
            })
        }

        fn max_payload(&self, _: DestId) -> Option<u16> {
            Some(P as u16)
        }

        fn kernel_pacing(&self) -> bool {
            self.kernel
        }

        fn register_buffer(&mut self, len: usize) -> io::Result<RegisteredBuffer> {
            self.clock.advance(self.register_takes);
            RegisteredBuffer::unregistered(len)
        }
    }

    /// A 22 Mb/s video and an 80 kb/s audio stream (destinations 1 and 2)
    /// for `secs`, paced with `pace`; the recorder's calls.
    fn run(pace: Pace, kernel: bool, secs: u64) -> Vec<Call> {
        run_ring(pace, kernel, secs, 0)
    }

    /// As [`run`], with an asynchronous ring of `slots` regions.
    fn run_ring(pace: Pace, kernel: bool, secs: u64, slots: usize) -> Vec<Call> {
        let clock = FakeClock::new();
        clock.set(Duration::from_secs(100));
        let opts = GroupOptions::default().with_pace(pace);
        let mut group = StreamGroup::new(clock.clone(), opts);
        group.set_async_ring(slots).unwrap();
        let mut out = Recorder::new(clock.clone(), kernel);
        for (rate, dest) in [(22_000_000, 1), (80_000, 2)] {
            let cfg = StreamConfig::new(rate, P).with_dests(vec![DestId::from_handle(dest)]);
            group.add_stream(cfg, Box::new(io::repeat(0x47))).unwrap();
        }
        let end = clock.now() + Duration::from_secs(secs);
        while clock.now() < end {
            group.tick_with(&mut out).unwrap();
        }
        out.calls
    }

    /// Each destination's departure times over all calls, in nanoseconds.
    fn kernel_departures(calls: &[Call]) -> [Vec<u64>; 2] {
        let data = vec![0u8; 1 << 20];
        let mut per: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for c in calls {
            let w = c.window.expect("a paced call has a window");
            let entries: Vec<Entry<'_>> = c
                .entries
                .iter()
                .map(|&(d, len, pace)| Entry {
                    pace,
                    ..Entry::new(d, &data[..len])
                })
                .collect();
            // Checked as the module checks it, when the call was made.
            let window = w.check(c.at).unwrap();
            for d in departures(&entries, &window, &|_| Some(P as u16)).unwrap() {
                let dest = entries[d.entry].dest.handle() as usize;
                per[dest - 1].push(d.at);
            }
        }
        per
    }

    fn ideal_gap(rate: u64) -> u64 {
        (P as u64 * 8 * 1_000_000_000) / rate
    }

    #[test]
    fn kernel_pacing_spaces_each_stream_at_its_own_rate() {
        let calls = run(Pace::Auto, true, 2);
        // One call per 20 ms latency budget, each with its window.
        assert!((95..=101).contains(&calls.len()), "{} calls", calls.len());
        for c in &calls {
            let w = c.window.unwrap();
            assert!(w.start > c.at && w.start <= c.at + MAX_PACE_LEAD);
            assert!(w.length >= Duration::from_millis(20));
        }
        // The video stream has >= 8 packets in every call after the first.
        for c in &calls[1..] {
            let video: usize = c
                .entries
                .iter()
                .filter(|e| e.0.handle() == 1)
                .map(|e| e.1.div_ceil(P))
                .sum();
            assert!(video >= 8, "a call with {video} video packets");
        }
        let [video, audio] = kernel_departures(&calls);
        for (times, rate) in [(video, 22_000_000), (audio, 80_000)] {
            assert!(times.len() > 10);
            let ideal = ideal_gap(rate);
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                // Evenly spaced at the stream's rate, across windows too
                // (integer nanoseconds: within a microsecond).
                assert!(
                    gap.abs_diff(ideal) <= 1_000,
                    "gap {gap} ns, ideal {ideal} ns"
                );
            }
        }
    }

    #[test]
    fn asynchronous_ring_calls_are_paced_alike() {
        let calls = run_ring(Pace::Kernel, true, 1, 4);
        assert!(calls.len() >= 48);
        let [video, _] = kernel_departures(&calls);
        let ideal = ideal_gap(22_000_000);
        assert!(video
            .windows(2)
            .all(|w| (w[1] - w[0]).abs_diff(ideal) <= 1_000));
    }

    #[test]
    fn user_pacing_sends_each_packet_near_its_time() {
        let calls = run(Pace::Auto, false, 1);
        assert!(calls.iter().all(|c| c.window.is_none()));
        let mut video = Vec::new();
        let mut audio = Vec::new();
        for c in &calls {
            for e in &c.entries {
                let at = u64::try_from(c.at.as_nanos()).unwrap();
                // One packet per entry.
                assert!(e.1 <= P);
                match e.0.handle() {
                    1 => video.push(at),
                    _ => audio.push(at),
                }
            }
        }
        for (times, rate) in [(video, 22_000_000u64), (audio, 80_000)] {
            let ideal = ideal_gap(rate);
            assert!(times.len() > 5);
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                // Sent at its time or up to the slack before it.
                let slack = USER_PACE_SLACK.as_nanos() as u64 + 1_000;
                assert!(
                    gap.abs_diff(ideal) <= slack,
                    "gap {gap} ns, ideal {ideal} ns"
                );
            }
        }
    }

    #[test]
    fn unpaced_ticks_burst_and_kernel_needs_the_feature() {
        let calls = run(Pace::Off, false, 1);
        // The slow audio stream sets a 20 ms tick: the video leaves as one
        // entry of ~41 packets per tick.
        assert!(calls.iter().all(|c| c.window.is_none()));
        let most = calls
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| e.0.handle() == 1)
            .map(|e| e.1 / P)
            .max()
            .unwrap();
        assert!(most >= 40, "{most}");
        let mut group = StreamGroup::new(
            FakeClock::new(),
            GroupOptions::default().with_pace(Pace::Kernel),
        );
        let mut out = Recorder::new(FakeClock::new(), false);
        let e = group.tick_with(&mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    }

    #[test]
    fn late_chunks_start_at_the_window_and_never_leave_it() {
        let ms = 1_000_000u128;
        // Due before the window: starts at its start, spacing kept.
        let p = chunk_pace(5 * ms, 100_000, 10, 10 * ms, 20_000_000);
        assert_eq!(
            p,
            EntryPace::new(Duration::ZERO, Duration::from_micros(100))
        );
        // Inside: offset from the window's start.
        let p = chunk_pace(12 * ms, 100_000, 10, 10 * ms, 20_000_000);
        assert_eq!(p.offset, Duration::from_millis(2));
        // Would end after the window: spread to its end instead.
        let p = chunk_pace(25 * ms, 1_000_000, 10, 10 * ms, 20_000_000);
        assert_eq!(p, EntryPace::new(Duration::from_millis(15), Duration::ZERO));
    }

    #[test]
    fn a_call_whose_window_ended_is_sent_at_once_not_lost() {
        // 50 ms late: each call's window (21 ms from a 1 ms lead) is over,
        // the retry's (100 ms from now) is not. 200 ms late: both are.
        for (late, retry_paced) in [(50, true), (200, false)] {
            for slots in [0, 4] {
                let clock = FakeClock::new();
                clock.set(Duration::from_secs(100));
                let opts = GroupOptions::default().with_pace(Pace::Kernel);
                let mut group = StreamGroup::new(clock.clone(), opts);
                group.set_async_ring(slots).unwrap();
                let mut out = Recorder {
                    late: Duration::from_millis(late),
                    ..Recorder::new(clock.clone(), true)
                };
                let rate = 2_000_000;
                let cfg = StreamConfig::new(rate, P).with_dests(vec![DestId::from_handle(1)]);
                group.add_stream(cfg, Box::new(io::repeat(0x47))).unwrap();
                let (mut sent, mut ticks) = (0u64, 0);
                while clock.now() < Duration::from_secs(101) {
                    let r = group.tick_with(&mut out).unwrap();
                    if let Some(w) = r.write {
                        assert!(r.window_missed);
                        assert_eq!(r.delivered.len(), 1);
                        sent += w.bytes;
                        ticks += 1;
                    }
                }
                // Every call went out at once, with all of its bytes: a
                // second at 2 Mb/s, in whole packets. Paced in a window
                // from the time of the retry (after every earlier packet),
                // 1 ns apart; else unpaced.
                assert!(ticks >= 45, "{ticks} ticks");
                assert_eq!(out.calls.len(), ticks);
                for c in &out.calls {
                    match c.window {
                        Some(w) => {
                            assert!(retry_paced);
                            assert_eq!(w.start, c.at);
                            let at_once = EntryPace::new(Duration::ZERO, Duration::from_nanos(1));
                            assert!(c.entries.iter().all(|e| e.2 == Some(at_once)));
                        }
                        None => {
                            assert!(!retry_paced);
                            assert!(c.entries.iter().all(|e| e.2.is_none()));
                        }
                    }
                }
                assert!(sent >= rate / 8 - 2 * P as u64 && sent <= rate / 8 + 2 * P as u64);
                assert_eq!(sent % P as u64, 0);
            }
        }
    }

    #[test]
    fn rings_are_registered_before_the_tick_reads_its_time() {
        // Registering takes longer than a window: were it done between
        // reading the time and the call, the first call's window would be
        // over (or its packets all due at once) when the module reads it.
        let clock = FakeClock::new();
        clock.set(Duration::from_secs(100));
        let opts = GroupOptions::default().with_pace(Pace::Kernel);
        let mut group = StreamGroup::new(clock.clone(), opts);
        group.set_async_ring(4).unwrap();
        let mut out = Recorder {
            register_takes: Duration::from_millis(30),
            ..Recorder::new(clock.clone(), true)
        };
        for (rate, dest) in [(8_000_000, 1), (80_000, 2)] {
            let cfg = StreamConfig::new(rate, P).with_dests(vec![DestId::from_handle(dest)]);
            group.add_stream(cfg, Box::new(io::repeat(0x47))).unwrap();
        }
        while clock.now() < Duration::from_millis(100_300) {
            group.tick_with(&mut out).unwrap();
        }
        assert!(out.calls.len() >= 10, "{} calls", out.calls.len());
        for c in &out.calls {
            let w = c.window.unwrap();
            assert!(
                c.at < w.start,
                "a call at {:?}, its window from {:?}",
                c.at,
                w.start
            );
        }
    }
}
