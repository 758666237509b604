// SPDX-License-Identifier: GPL-2.0

//! An open `/dev/mdwrite`.

use std::{
    fmt, io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use rustix::fs::{open, Mode, OFlags};

use mdwrite_uapi::{
    MdwCompletion, MdwEntry, MdwRepeat, MdwWritev, MDW_FEAT_GROUP, MDW_FEAT_REPEAT,
    MDW_WRITE_ASYNC, MDW_WRITE_REPEAT,
};
use zerocopy::IntoBytes;

use crate::{
    buffer::{self, BufferTable},
    completion::parse_records,
    fanout::GroupCache,
    sys, Completion, DestConfig, DestId, Entry, GroupId, RegisteredBuffer, Stats, WriteOptions,
    WriteReport,
};

/// An open handle on the mdwrite kernel module.
///
/// Registered buffers keep the open file alive (they unregister themselves
/// through it when dropped), so the file closes when the device and every
/// buffer registered on it are gone.
#[derive(Debug)]
pub struct Device {
    file: Arc<DeviceFile>,
}

/// The open file, shared with the buffers registered on it.
#[derive(Debug)]
pub(crate) struct DeviceFile {
    fd: OwnedFd,
    /// The registered buffers, by address.
    buffers: Mutex<BufferTable>,
    /// The module implements `MDW_WRITE_REPEAT`.
    can_repeat: bool,
    /// This file's last call, for the next to repeat.
    last: Mutex<LastCall>,
    /// Calls made as repeats (the module took them as such).
    repeated: AtomicU64,
    /// The module implements destination groups (`MDW_FEAT_GROUP`).
    can_group: bool,
    /// The groups made for fan-outs.
    groups: GroupCache,
}

/// The last call made through a [`Device`], which a call with the same
/// destinations, flags, buffers and timing repeats (`MDW_WRITE_REPEAT`):
/// it copies only each entry's new data (`MdwRepeat`, 16 bytes) into the
/// module, which checks only what may have changed.
///
/// The module names each call's entries (`call_id`) and repeats only its
/// last call's, so a call that came between (another thread's, or one
/// made on the file outside this library) makes a repeat fail with
/// `ENODATA`, and the call is then made in full.
#[derive(Debug, Default)]
struct LastCall {
    /// The module's id of its entries; 0 for none.
    id: u64,
    entries: Vec<MdwEntry>,
    /// The array a repeat is written into, kept between calls.
    repeat: Vec<MdwRepeat>,
}

impl LastCall {
    /// Whether `raw` is the last call's entries with new data only.
    fn repeated_by(&self, raw: &[MdwEntry]) -> bool {
        self.id != 0
            && self.entries.len() == raw.len()
            && self.entries.iter().zip(raw).all(|(a, b)| {
                a.dest == b.dest
                    && a.flags == b.flags
                    && a.buf == b.buf
                    && a.pace_offset == b.pace_offset
                    && a.pace_gap == b.pace_gap
                    && u32::try_from(b.len).is_ok()
            })
    }
}

/// Locks `m`, whose data stays consistent across a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The new data of `raw`, which repeats the last call's entries.
fn repeat_of(raw: &[MdwEntry], out: &mut Vec<MdwRepeat>) {
    out.clear();
    out.extend(raw.iter().map(|e| MdwRepeat {
        addr: e.addr,
        // Checked by `LastCall::repeated_by`.
        len: e.len as u32,
        rtp_timestamp: e.rtp_timestamp,
    }));
}

impl DeviceFile {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn buffers(&self) -> MutexGuard<'_, BufferTable> {
        buffer::lock(&self.buffers)
    }
}

/// Most records one `read()` takes.
const READ_BATCH: usize = 64;

/// What the loaded module implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The module's ABI version (`MDW_ABI_VERSION`).
    pub abi_version: u32,
    /// The size of `struct mdw_info` the module knows; larger than this
    /// library's when the module is newer.
    pub info_size: u32,
    /// Optional capabilities of the module.
    pub features: Features,
}

bitflags::bitflags! {
    /// Optional capabilities of the module (`MDW_FEAT_*` bits). Bits this
    /// library does not know are kept ([`Features::bits`]).
    ///
    /// ```
    /// use mdwrite::Features;
    /// let f = Features::from_bits_retain(0x1f1 | 0x800);
    /// assert!(f.contains(Features::BUF | Features::ASYNC | Features::FANOUT | Features::PACE));
    /// assert!(f.contains(Features::REPEAT));
    /// assert!(!f.contains(Features::IPV6));
    /// assert_eq!(f.to_string(), "0x9f1");
    /// assert_eq!(f.names(), "writev,buf,async,fanout,pace,repeat,0x800");
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Features: u64 {
        /// `MDW_FEAT_WRITEV`: destinations, vectored writes, counters.
        const WRITEV = mdwrite_uapi::MDW_FEAT_WRITEV;
        /// `MDW_FEAT_IPV6`: IPv6 destinations.
        const IPV6 = mdwrite_uapi::MDW_FEAT_IPV6;
        /// `MDW_FEAT_RTP`: RTP headers.
        const RTP = mdwrite_uapi::MDW_FEAT_RTP;
        /// `MDW_FEAT_VLAN`: 802.1Q tags.
        const VLAN = mdwrite_uapi::MDW_FEAT_VLAN;
        /// `MDW_FEAT_BUF`: registered buffers.
        const BUF = mdwrite_uapi::MDW_FEAT_BUF;
        /// `MDW_FEAT_ASYNC`: asynchronous calls and completions.
        const ASYNC = mdwrite_uapi::MDW_FEAT_ASYNC;
        /// `MDW_FEAT_FANOUT`: fan-outs (`MDW_ENTRY_SAME`).
        const FANOUT = mdwrite_uapi::MDW_FEAT_FANOUT;
        /// `MDW_FEAT_PACE`: paced calls (`MDW_WRITE_PACE`, `MDW_ENTRY_PACE`).
        const PACE = mdwrite_uapi::MDW_FEAT_PACE;
        /// `MDW_FEAT_REPEAT`: calls that repeat the last one's entries
        /// with new data (`MDW_WRITE_REPEAT`).
        const REPEAT = mdwrite_uapi::MDW_FEAT_REPEAT;
        /// `MDW_FEAT_KEEP_PINS`: the pin cache (`MDW_WRITE_KEEP_PINS`).
        const KEEP_PINS = mdwrite_uapi::MDW_FEAT_KEEP_PINS;
        /// `MDW_FEAT_GROUP`: destination groups (`MDW_ENTRY_GROUP`).
        const GROUP = mdwrite_uapi::MDW_FEAT_GROUP;
        // A newer module's bits are kept as they are.
        const _ = !0;
    }
}

impl Features {
    /// The names of the known bits, comma-separated in bit order, then the
    /// unknown bits in hex (`"writev,buf,async,0xc0"`); empty for none.
    pub fn names(&self) -> String {
        let mut names: Vec<String> = self
            .iter_names()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        let unknown = self.bits() & !Features::all_known().bits();
        if unknown != 0 {
            names.push(format!("{unknown:#x}"));
        }
        names.join(",")
    }

    fn all_known() -> Features {
        Features::WRITEV
            | Features::IPV6
            | Features::RTP
            | Features::VLAN
            | Features::BUF
            | Features::ASYNC
            | Features::FANOUT
            | Features::PACE
            | Features::REPEAT
            | Features::KEEP_PINS
            | Features::GROUP
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.bits())
    }
}

impl Device {
    /// Where the module's device node lives.
    pub const PATH: &'static str = "/dev/mdwrite";

    /// Opens [`Device::PATH`].
    ///
    /// Fails with `ENOENT` when the module is not loaded and `EACCES` when
    /// the caller may not open the device.
    pub fn open() -> io::Result<Self> {
        Self::open_path(Self::PATH)
    }

    /// Opens the mdwrite device node at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> io::Result<Self> {
        let fd = open(path.as_ref(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        // An older module (or not the module at all) repeats nothing.
        let features = sys::info(&fd).map_or(0, |i| i.features);
        let can_repeat = features & MDW_FEAT_REPEAT != 0;
        Ok(Self {
            file: Arc::new(DeviceFile {
                fd,
                buffers: Mutex::default(),
                can_repeat,
                last: Mutex::default(),
                repeated: AtomicU64::new(0),
                can_group: features & MDW_FEAT_GROUP != 0,
                groups: GroupCache::default(),
            }),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.fd()
    }

    /// Asks the module what it implements (`MDW_IOC_INFO`).
    pub fn info(&self) -> io::Result<Info> {
        let raw = sys::info(self.fd())?;
        Ok(Info {
            abi_version: raw.abi_version,
            info_size: raw.info_size,
            features: Features::from_bits_retain(raw.features),
        })
    }
}

impl Device {
    /// Registers a destination (`MDW_IOC_DEST_ADD`). Needs `CAP_NET_RAW`
    /// (`EPERM`); `EHOSTUNREACH` when the next hop's MAC is not known yet.
    pub fn add_destination(&self, config: &DestConfig) -> io::Result<DestId> {
        let mut d = config.to_abi();
        sys::dest_add(self.fd(), &mut d)?;
        Ok(DestId(d.handle))
    }

    /// Removes a destination (`MDW_IOC_DEST_DEL`), and the groups the
    /// device made for fan-outs to it.
    pub fn remove_destination(&self, id: DestId) -> io::Result<()> {
        self.file
            .groups
            .remove_dest(self.fd(), id.0, || sys::dest_del(self.fd(), id.0))
    }

    /// Makes a destination group of `dests`, in order (`MDW_IOC_GROUP_SET`;
    /// a module with `MDW_FEAT_GROUP`): an entry to it
    /// ([`Entry::to_group`](crate::Entry::to_group)) is a fan-out of its
    /// data to all of them. `ENXIO` when an id names no destination,
    /// `EINVAL` for none, `E2BIG` for more than `MDW_MAX_GROUP_DESTS`,
    /// `ENOSPC` past `MDW_MAX_GROUPS` groups.
    pub fn set_group(&self, dests: &[DestId]) -> io::Result<GroupId> {
        let handles: Vec<u32> = dests.iter().map(|d| d.0).collect();
        Ok(GroupId(sys::group_set(self.fd(), 0, &handles)?))
    }

    /// Gives `group` the destinations `dests`, for the calls that follow
    /// (`ENXIO` when there is no such group).
    pub fn replace_group(&self, group: GroupId, dests: &[DestId]) -> io::Result<()> {
        let handles: Vec<u32> = dests.iter().map(|d| d.0).collect();
        sys::group_set(self.fd(), group.0, &handles).map(|_| ())
    }

    /// Removes a group (`MDW_IOC_GROUP_DEL`); its destinations stay.
    pub fn remove_group(&self, group: GroupId) -> io::Result<()> {
        sys::group_del(self.fd(), group.0)
    }

    /// Sends every entry in one call (`MDW_IOC_WRITEV`), interleaved
    /// across destinations; returns once the device released every packet
    /// that refers to the entries' memory (copies the module made for a
    /// device without scatter-gather do not count).
    ///
    /// Entries whose data lies in a buffer registered on this device are
    /// sent as `MDW_ENTRY_BUF` entries (nothing pinned).
    ///
    /// Fails without sending anything on invalid input; an error after
    /// some packets left is in [`WriteReport::error`].
    pub fn write_vectored(
        &self,
        entries: &[Entry<'_>],
        options: WriteOptions,
    ) -> io::Result<WriteReport> {
        self.write(entries, &options, options.flags(), 0)
    }

    /// Sends every entry with `MDW_WRITE_ASYNC`: returns once every packet
    /// is queued, with what was queued. Exactly one completion with
    /// `cookie` follows (read it with
    /// [`read_completions`](Device::read_completions)), after the device
    /// released the last packet.
    ///
    /// This is the raw call; [`Sender::send_async`](crate::Sender::send_async)
    /// is the safe one (it takes the buffers by value until the completion).
    ///
    /// `EAGAIN` (nothing sent): `MDW_MAX_ASYNC` calls are in flight or
    /// completed and unread; read completions, then retry. `ENOBUFS`:
    /// pinning unregistered memory until the completion would exceed
    /// `RLIMIT_MEMLOCK` (send from [`RegisteredBuffer`]s).
    ///
    /// # Safety
    ///
    /// The module reads the entries' memory after this returns, until the
    /// call's completion is queued. Until the caller has read that
    /// completion (or knows the call failed: an `Err` sends nothing), the
    /// memory of every entry must not be written, and memory outside a
    /// buffer registered on this device must stay allocated and mapped
    /// (a dropped [`RegisteredBuffer`] is fine: the module keeps its pages).
    /// Otherwise the packets carry whatever the memory holds when the
    /// device reads it, other data of the program included.
    pub unsafe fn write_vectored_async(
        &self,
        entries: &[Entry<'_>],
        options: WriteOptions,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        self.write(entries, &options, options.flags() | MDW_WRITE_ASYNC, cookie)
    }

    fn write(
        &self,
        entries: &[Entry<'_>],
        options: &WriteOptions,
        flags: u32,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        let (pace_start, pace_window, pace_clock) = match options.pace {
            Some(w) => {
                let (start, len) = w.abi()?;
                (start, len, w.clock.id())
            }
            None => (0, 0, 0),
        };
        let mut raw: Vec<MdwEntry> = {
            let table = self.file.buffers();
            if table.is_empty() {
                entries.iter().map(|e| e.to_abi()).collect()
            } else {
                entries.iter().map(|e| e.to_abi_in(&table)).collect()
            }
        };
        // Where each entry of `raw` came from, when fan-outs became group
        // entries; and the lock that keeps their groups while the module
        // reads them.
        let mut from: Option<Vec<usize>> = None;
        let mut _groups = None;
        if options.fanout {
            crate::write::mark_fanouts(&mut raw, entries);
            if self.file.can_group {
                if let Some((grouped, index, guard)) =
                    self.file.groups.collapse(self.fd(), &raw, entries)
                {
                    raw = grouped;
                    from = Some(index);
                    _groups = Some(guard);
                }
            }
        }
        let count = u32::try_from(raw.len())
            .map_err(|_| io::Error::from_raw_os_error(rustix::io::Errno::TOOBIG.raw_os_error()))?;
        let req = MdwWritev {
            entries: raw.as_ptr() as u64,
            count,
            entry_size: size_of::<MdwEntry>() as u32,
            flags,
            quantum: options.quantum,
            cookie,
            pace_start,
            pace_window,
            pace_clock,
            ..Default::default()
        };
        // The last call's entries with new data: only the data goes in.
        let (repeat_id, mut repeat) = {
            let mut last = lock(&self.file.last);
            match self.file.can_repeat && last.repeated_by(&raw) {
                true => (last.id, std::mem::take(&mut last.repeat)),
                false => (0, Vec::new()),
            }
        };
        let mut done = None;
        if repeat_id != 0 {
            repeat_of(&raw, &mut repeat);
            let mut again = MdwWritev {
                entries: repeat.as_ptr() as u64,
                entry_size: size_of::<MdwRepeat>() as u32,
                flags: flags | MDW_WRITE_REPEAT,
                call_id: repeat_id,
                ..req
            };
            // SAFETY: `repeat` holds `count` entries of `entry_size`
            // bytes, the new data of `raw`'s entries (see below), which
            // the module applies to the entries of call `repeat_id`, equal
            // to `raw`'s but for that data (`LastCall::repeated_by`).
            match unsafe { sys::writev(self.fd(), &mut again) } {
                // Another call came between: made in full below.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODATA.raw_os_error()) => {}
                r => {
                    self.file.repeated.fetch_add(1, Ordering::Relaxed);
                    done = Some(r.map(|()| again));
                }
            }
        }
        let result = match done {
            Some(r) => r,
            None => {
                let mut req = req;
                // SAFETY: `raw` holds `count` entries of `entry_size` bytes
                // whose data borrow from `entries`, alive for the call, or
                // name buffers registered on this file.
                unsafe { sys::writev(self.fd(), &mut req) }.map(|()| req)
            }
        };
        {
            let mut last = lock(&self.file.last);
            match &result {
                // The module keeps the entries it read, named by `call_id`.
                Ok(req) => {
                    last.id = req.call_id;
                    last.entries = raw;
                }
                Err(_) => last.id = 0,
            }
            if repeat.capacity() > last.repeat.capacity() {
                last.repeat = repeat;
            }
        }
        let req = result?;
        Ok(WriteReport {
            bytes: req.bytes,
            packets: req.packets,
            error: (req.error != 0).then(|| {
                (
                    io::Error::from_raw_os_error(req.error.saturating_neg()),
                    from.as_ref()
                        .and_then(|f| f.get(req.error_index as usize).copied())
                        .unwrap_or(req.error_index as usize),
                )
            }),
        })
    }

    /// How many calls on this device were made as repeats of the one
    /// before (`MDW_WRITE_REPEAT`): a call with the same destinations,
    /// flags, registered buffers and entry timing as the last one copies
    /// only each entry's new data in (its address, length and RTP
    /// timestamp). Made automatically when the module implements it
    /// ([`Features::REPEAT`]); a diagnostic.
    pub fn repeated_calls(&self) -> u64 {
        self.file.repeated.load(Ordering::Relaxed)
    }

    /// How many destination groups the device made for fan-outs
    /// ([`WriteOptions::with_fanout`] on a module with
    /// [`Features::GROUP`]: each run of entries with the same data, all
    /// with the same RTP timestamp and none timed by itself, goes as one
    /// group entry) and still holds; a diagnostic.
    pub fn fanout_groups(&self) -> usize {
        self.file.groups.len()
    }

    /// The counters of this open device (`MDW_IOC_STATS`).
    pub fn stats(&self) -> io::Result<Stats> {
        sys::stats(self.fd())
    }

    /// Maps `len` bytes of page-aligned memory and registers them
    /// (`MDW_IOC_BUF_REGISTER`); see [`RegisteredBuffer`]. `ENOBUFS`
    /// beyond `RLIMIT_MEMLOCK` (unless `CAP_IPC_LOCK`), `ENOSPC` beyond
    /// 1024 buffers, `EINVAL`/`E2BIG` for 0 or more than 1 GiB, `ENOTTY`
    /// from a module without `MDW_FEAT_BUF`.
    pub fn register_buffer(&self, len: usize) -> io::Result<RegisteredBuffer> {
        RegisteredBuffer::register(&self.file, len)
    }

    /// Reads the queued completion records (`read()`), up to 64, and
    /// appends them to `out`; returns how many.
    ///
    /// With none queued it blocks while asynchronous calls are in flight
    /// (`EINTR` on a signal) and returns 0 when none is.
    pub fn read_completions(&self, out: &mut Vec<Completion>) -> io::Result<usize> {
        let mut records = [MdwCompletion::default(); READ_BATCH];
        let n = sys::read_records(self.fd(), records.as_mut_bytes())?;
        parse_records(&records.as_bytes()[..n], out)
    }

    /// Reads exactly one record, blocking as
    /// [`read_completions`](Device::read_completions); `None` when no call
    /// is in flight.
    pub fn read_completion(&self) -> io::Result<Option<Completion>> {
        let mut record = [MdwCompletion::default()];
        let n = sys::read_records(self.fd(), record.as_mut_bytes())?;
        let mut out = Vec::with_capacity(1);
        parse_records(&record.as_bytes()[..n], &mut out)?;
        Ok(out.pop())
    }

    /// Waits up to `timeout` (`None`: forever) until a completion record
    /// is queued (`poll()` for `POLLIN`); `false` on timeout. A signal
    /// does not end the wait early.
    pub fn poll_completions(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match sys::poll_readable(self.fd(), left) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// From now on the module adds 1 to `eventfd` for every completion it
    /// queues (`MDW_IOC_SET_EVENTFD`); `None` stops it. `EINVAL` if the
    /// descriptor is not an eventfd.
    pub fn set_eventfd(&self, eventfd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        sys::set_eventfd(self.fd(), eventfd.map_or(-1, |fd| fd.as_raw_fd()))
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdwrite_uapi::{MDW_ENTRY_BUF, MDW_ENTRY_PACE, MDW_ENTRY_RTP_TS, MDW_ENTRY_SAME};

    fn entries() -> Vec<MdwEntry> {
        vec![
            MdwEntry {
                dest: 1,
                addr: 0x1000,
                len: 1316,
                ..Default::default()
            },
            MdwEntry {
                dest: 2,
                flags: MDW_ENTRY_SAME | MDW_ENTRY_RTP_TS,
                rtp_timestamp: 90,
                ..Default::default()
            },
            MdwEntry {
                dest: 3,
                flags: MDW_ENTRY_BUF,
                addr: 64,
                len: 1472,
                buf: 7,
                ..Default::default()
            },
        ]
    }

    /// A call repeats the last one when only addresses, lengths and RTP
    /// timestamps changed, and its new data is exactly those.
    #[test]
    fn repeated_by_new_data_only() {
        let last = LastCall {
            id: 5,
            entries: entries(),
            repeat: Vec::new(),
        };
        let mut now = entries();
        now[0].addr = 0x9000;
        now[0].len = 100;
        now[1].rtp_timestamp = 180;
        now[2].addr = 4096;
        assert!(last.repeated_by(&now));
        let mut out = vec![MdwRepeat::default(); 9];
        repeat_of(&now, &mut out);
        let want = [(0x9000, 100, 0), (0, 0, 180), (4096, 1472, 0)];
        assert_eq!(out.len(), want.len());
        for (r, (addr, len, ts)) in out.iter().zip(want) {
            assert_eq!((r.addr, r.len, r.rtp_timestamp), (addr, len, ts));
        }
    }

    /// Anything else the module keeps from the last call makes a call in
    /// full.
    #[test]
    fn not_repeated() {
        let last = LastCall {
            id: 5,
            entries: entries(),
            repeat: Vec::new(),
        };
        let changes: [fn(&mut Vec<MdwEntry>); 7] = [
            |e| e[0].dest = 9,
            |e| e[0].flags |= MDW_ENTRY_RTP_TS,
            |e| e[2].buf = 8,
            |e| {
                e[0].flags |= MDW_ENTRY_PACE;
                e[0].pace_offset = 1;
            },
            |e| e[0].pace_gap = 1,
            |e| e[0].len = 1 << 32,
            |e| {
                e.pop();
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut now = entries();
            change(&mut now);
            assert!(!last.repeated_by(&now), "change {i}");
        }
        let none = LastCall {
            id: 0,
            entries: entries(),
            repeat: Vec::new(),
        };
        assert!(!none.repeated_by(&entries()));
    }
}
