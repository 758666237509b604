// SPDX-License-Identifier: GPL-2.0

//! A structure-aware fuzzer of `/dev/mdwrite`.
//!
//! `mdwrite-fuzz [--duration SECONDS] [--seed N] [--threads N] [--no-netns]`
//!
//! Runs in a network namespace of its own (unless `--no-netns`) with two
//! dummy devices: `fz0` stays, `fz1` is deleted and re-created while calls
//! run. Worker threads share some open files and have one each, and issue
//! valid, near-valid and hostile ioctls, `read` and `poll`; chaos threads
//! replace memory under calls in flight, close and reopen the shared files,
//! fork children and kill them mid-call, and churn `fz1`.
//!
//! At the end it prints calls, successes and an errno histogram per kind,
//! and exits non-zero when an errno outside the documented set of its call
//! appears (table `ALLOWED`, from Documentation/uapi.rst), when fewer than
//! half of the `WRITEV` calls sent something, or when pages stay pinned
//! (`nr_foll_pin_acquired` != `nr_foll_pin_released`) after everything is
//! closed.

use std::{
    collections::BTreeMap,
    process::{Command, ExitCode},
    sync::{
        atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use mdwrite_uapi::*;

// ---------------------------------------------------------------------------
// The documented errnos of each call (Documentation/uapi.rst). Update this
// table when the ABI documents a new errno.

/// Errnos every ioctl may return.
const COMMON: &[i32] = &[libc::ENOTTY, libc::EFAULT];

/// The call kinds and the errnos each may return besides `COMMON`.
const ALLOWED: &[(&str, &[i32])] = &[
    ("info", &[]),
    (
        "dest_add",
        &[
            libc::EPERM,
            libc::EINVAL,
            libc::ENODEV,
            libc::ENETDOWN,
            libc::EMSGSIZE,
            libc::EHOSTUNREACH,
            libc::ENOSPC,
            libc::E2BIG,
            libc::EBADF,
            libc::EOPNOTSUPP,
        ],
    ),
    ("dest_del", &[libc::EINVAL, libc::ENXIO]),
    (
        "group_set",
        &[
            libc::EINVAL,
            libc::E2BIG,
            libc::ENXIO,
            libc::ENOSPC,
            libc::ENOMEM,
            libc::EBADF,
            libc::EINTR,
        ],
    ),
    ("group_del", &[libc::EINVAL, libc::ENXIO]),
    ("writev_sync", WRITEV_ERRNOS),
    ("writev_async", WRITEV_ERRNOS),
    ("writev_repeat", REPEAT_ERRNOS),
    ("stats", &[]),
    (
        "buf_register",
        &[
            libc::EINVAL,
            libc::E2BIG,
            libc::EOPNOTSUPP,
            libc::ENOBUFS,
            libc::ENOSPC,
            libc::ENOMEM,
            libc::EBADF,
        ],
    ),
    ("buf_unregister", &[libc::EINVAL, libc::ENOENT]),
    ("set_eventfd", &[libc::EBADF, libc::EINVAL]),
    // read() is no ioctl: ENOTTY is not expected but harmless to allow.
    ("read", &[libc::EINVAL, libc::EAGAIN, libc::EINTR]),
    ("poll", &[]),
    ("write", &[libc::EINVAL]),
    // Unknown ioctl numbers and sizes.
    ("bad_ioctl", &[libc::E2BIG]),
];

/// `MDW_IOC_WRITEV` with `MDW_WRITE_REPEAT`: a call's errnos
/// ([`WRITEV_ERRNOS`]), then `ENODATA` for a `call_id` that does not name
/// the file's last call.
const REPEAT_ERRNOS: &[i32] = &[
    libc::EINVAL,
    libc::E2BIG,
    libc::ENXIO,
    libc::ENOENT,
    libc::EAGAIN,
    libc::ENOBUFS,
    libc::ENODEV,
    libc::ENETDOWN,
    libc::EMSGSIZE,
    libc::ENOMEM,
    libc::EINTR,
    libc::EBADF,
    libc::EOPNOTSUPP,
    libc::ERANGE,
    libc::ETIME,
    libc::ENODATA,
];

/// `MDW_IOC_WRITEV`: before sending, and while sending (nothing sent).
const WRITEV_ERRNOS: &[i32] = REPEAT_ERRNOS.split_at(REPEAT_ERRNOS.len() - 1).0;

/// The negative errnos `mdw_writev.error` may carry after a partial send.
const WRITEV_PARTIAL: &[i32] = &[
    libc::ENETDOWN,
    libc::ELOOP,
    libc::EINTR,
    libc::ENOBUFS,
    libc::ENOMEM,
];

/// Now on CLOCK_MONOTONIC, in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn allowed(kind: &str, e: i32) -> bool {
    COMMON.contains(&e)
        || ALLOWED
            .iter()
            .find(|(k, _)| *k == kind)
            .is_some_and(|(_, set)| set.contains(&e))
}

// ---------------------------------------------------------------------------
// PRNG (xorshift64*), seeded per thread.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Counting.

#[derive(Default)]
struct KindStats {
    calls: u64,
    ok: u64,
    errnos: BTreeMap<i32, u64>,
}

#[derive(Default)]
struct Stats {
    kinds: BTreeMap<&'static str, KindStats>,
    /// WRITEV calls that returned success with packets > 0.
    writev_sent: u64,
    packets: u64,
    completions: u64,
    violations: Vec<String>,
    chaos: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn record(&mut self, kind: &'static str, r: Result<i64, i32>, what: &dyn Fn() -> String) {
        let k = self.kinds.entry(kind).or_default();
        k.calls += 1;
        match r {
            Ok(_) => k.ok += 1,
            Err(e) => {
                *k.errnos.entry(e).or_default() += 1;
                if !allowed(kind, e) {
                    self.violation(format!(
                        "{kind}: undocumented errno {} ({e}) for {}",
                        errname(e),
                        what()
                    ));
                }
            }
        }
    }
    fn violation(&mut self, s: String) {
        if self.violations.len() < 50 {
            self.violations.push(s);
        } else if self.violations.len() == 50 {
            self.violations
                .push("... (more violations left out)".into());
        }
    }
    fn chaos(&mut self, what: &'static str) {
        *self.chaos.entry(what).or_default() += 1;
    }
    fn merge(&mut self, o: Stats) {
        for (k, v) in o.kinds {
            let m = self.kinds.entry(k).or_default();
            m.calls += v.calls;
            m.ok += v.ok;
            for (e, n) in v.errnos {
                *m.errnos.entry(e).or_default() += n;
            }
        }
        self.writev_sent += o.writev_sent;
        self.packets += o.packets;
        self.completions += o.completions;
        for v in o.violations {
            self.violation(v);
        }
        for (k, n) in o.chaos {
            *self.chaos.entry(k).or_default() += n;
        }
    }
}

fn errname(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EFAULT => "EFAULT",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        _ => "?",
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Shared state.

/// One open file of the device and what the fuzzer knows is registered on it.
struct Dev {
    fd: i32,
    dests: Mutex<Vec<u32>>,
    /// Destination groups (`MDW_IOC_GROUP_SET`).
    groups: Mutex<Vec<u32>>,
    bufs: Mutex<Vec<(u32, u64)>>,
    /// The `call_id` and entries of the file's last call (as this worker
    /// saw it: another worker's call may have come between).
    last: Mutex<(u64, Vec<MdwEntry>)>,
}

impl Dev {
    fn open(flags: i32) -> Option<Arc<Dev>> {
        // SAFETY: a constant NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/mdwrite".as_ptr(), libc::O_RDWR | flags) };
        (fd >= 0).then(|| {
            Arc::new(Dev {
                fd,
                dests: Mutex::new(Vec::new()),
                groups: Mutex::new(Vec::new()),
                bufs: Mutex::new(Vec::new()),
                last: Mutex::new((0, Vec::new())),
            })
        })
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: `fd` is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Data every thread reads from.
const STABLE_LEN: usize = 4 << 20;
/// Memory the chaos thread replaces under calls in flight.
const ARENA_PAGES: usize = 64;
const PAGE: usize = 4096;

struct Shared {
    stop: AtomicBool,
    /// Shared open files; the chaos thread replaces them.
    slots: Vec<Mutex<Arc<Dev>>>,
    /// Never unmapped.
    stable: usize,
    /// `ARENA_PAGES` pages, remapped under calls in flight.
    arena: usize,
    /// Regions handed to the chaos thread to `munmap` after a delay.
    unmap_queue: Mutex<Vec<(usize, usize, Instant)>>,
    ifindex_stable: i32,
    /// Ifindex of the churned device, 0 while it is gone.
    ifindex_churn: AtomicI32,
    cookie: AtomicU64,
}

fn mmap(len: usize) -> usize {
    // SAFETY: a fresh anonymous private mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap failed");
    // SAFETY: just mapped, `len` bytes writable.
    unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0x5a, len) };
    p as usize
}

fn ioctl(fd: i32, cmd: u32, arg: usize) -> Result<i64, i32> {
    // SAFETY: the kernel validates `arg` as a user pointer (an invalid one
    // is EFAULT); where it points to our memory, the buffer is at least
    // `_IOC_SIZE(cmd)` bytes.
    let r = unsafe { libc::ioctl(fd, cmd as libc::c_ulong, arg) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as i64)
    }
}

fn with_size(cmd: u32, size: usize) -> u32 {
    (cmd & !(0x3fff << 16)) | ((size as u32 & 0x3fff) << 16)
}

// ---------------------------------------------------------------------------
// Input generation.

const KERNEL_ADDR: u64 = 0xffff_ffff_8100_0000;

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x77, i]
}

fn good_dest(sh: &Shared, rng: &mut Rng) -> MdwDest {
    let mut d = MdwDest {
        ifindex: sh.ifindex_stable,
        src_port: 5000,
        dst_port: 6000 + rng.below(64) as u16,
        dst_mac: mac(rng.below(200) as u8 + 1),
        ..Default::default()
    };
    if rng.pct(70) {
        d.src_addr[..4].copy_from_slice(&[10, 77, 0, 1]);
        d.dst_addr[..4].copy_from_slice(&[10, 77, 0, 2 + rng.below(200) as u8]);
        if rng.pct(20) {
            d.flags |= MDW_DEST_UDP_CSUM_ZERO;
        }
    } else {
        d.flags |= MDW_DEST_IPV6;
        d.src_addr = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        d.dst_addr = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    }
    if rng.pct(30) {
        d.flags |= MDW_DEST_RTP;
        d.rtp_payload_type = 33;
        d.rtp_ssrc = rng.next() as u32;
        d.rtp_ts_increment = 90;
    }
    if rng.pct(15) {
        d.flags |= MDW_DEST_VLAN;
        d.vlan_tci = 1 + rng.below(4094) as u16;
    }
    if rng.pct(40) {
        d.packet_size = 200 + rng.below(1300) as u16;
    }
    d.dscp = rng.below(64) as u8;
    d.hop_limit = rng.below(256) as u8;
    d
}

fn mutate_dest(sh: &Shared, rng: &mut Rng, d: &mut MdwDest) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(14) {
            0 => d.flags = rng.next() as u32,
            1 => d.src_port = 0,
            2 => d.dst_port = 0,
            3 => d.dscp = 64 + rng.below(192) as u8,
            4 => {
                d.flags |= MDW_DEST_VLAN;
                d.vlan_tci = rng.pick(&[0, 4095, 0xf000, 0xffff]);
            }
            5 => d.rtp_payload_type = 128 + rng.below(128) as u8,
            6 => d.pad0 = 1 + rng.below(255) as u8,
            7 => d.ifindex = rng.pick(&[0, -1, 1, 9999, i32::MAX]),
            8 => d.ifindex = sh.ifindex_churn.load(Ordering::Relaxed),
            9 => d.packet_size = rng.pick(&[1, 20, 28, 40, 48, 1501, 9000, 0xffff]),
            10 => d.dst_mac = [0; 6],
            11 => d.dst_addr[4 + rng.below(12) as usize] = 1,
            12 => d.flags |= MDW_DEST_IPV6 | MDW_DEST_UDP_CSUM_ZERO,
            _ => d.dst_mac = [0x01, 0, 0x5e, 0, 0, 1],
        }
    }
}

/// Entries that should send: stable memory, known destinations and buffers.
fn good_entries(sh: &Shared, rng: &mut Rng, dests: &[u32], bufs: &[(u32, u64)]) -> Vec<MdwEntry> {
    let n = 1 + rng.below(6) as usize;
    (0..n)
        .map(|_| {
            let dest = rng.pick(dests);
            if !bufs.is_empty() && rng.pct(30) {
                let (id, blen) = rng.pick(bufs);
                let off = rng.below(blen);
                let len = 1 + rng.below((blen - off).min(32 << 10));
                MdwEntry {
                    dest,
                    flags: MDW_ENTRY_BUF,
                    addr: off,
                    len,
                    buf: id,
                    ..Default::default()
                }
            } else {
                let len = 1 + rng.below(24 << 10);
                let off = rng.below((STABLE_LEN as u64) - len);
                MdwEntry {
                    dest,
                    addr: sh.stable as u64 + off,
                    len,
                    ..Default::default()
                }
            }
        })
        .collect()
}

fn mutate_entry(sh: &Shared, rng: &mut Rng, e: &mut MdwEntry) {
    match rng.below(16) {
        0 => e.dest = rng.pick(&[0, 4097, u32::MAX, e.dest.wrapping_add(1)]),
        1 => e.flags = rng.next() as u32,
        2 => e.flags |= MDW_ENTRY_RTP_TS,
        3 => e.len = 0,
        4 => e.len = rng.pick(&[(1 << 30) + 1, u64::MAX, 1 << 40]),
        5 => e.addr = rng.pick(&[0, KERNEL_ADDR, u64::MAX - 10, 1]),
        6 => e.addr = u64::MAX - e.len / 2,
        7 => {
            // Memory the chaos thread remaps.
            e.addr = (sh.arena + rng.below((ARENA_PAGES * PAGE) as u64 - 8192) as usize) as u64;
            e.len = 1 + rng.below(8192);
        }
        8 => e.buf = rng.below(4) as u32,
        9 => {
            e.flags |= MDW_ENTRY_BUF;
            e.buf = rng.pick(&[0, 1, 2, 1023, 1024, u32::MAX]);
        }
        10 => {
            e.flags |= MDW_ENTRY_BUF;
            e.addr = rng.pick(&[u64::MAX, 1 << 31, 1 << 20]);
        }
        11 => e.len = 1 + rng.below(1 << 22),
        12 => e.addr = sh.stable as u64 + STABLE_LEN as u64 - rng.below(100),
        13 => e.rtp_timestamp = rng.next() as u32,
        _ => {
            // Memory about to be munmapped.
            let len = PAGE * (1 + rng.below(16) as usize);
            let p = mmap(len);
            let delay = Duration::from_micros(rng.below(3000));
            sh.unmap_queue
                .lock()
                .unwrap()
                .push((p, len, Instant::now() + delay));
            e.addr = p as u64 + rng.below(PAGE as u64);
            e.len = 1 + rng.below((len - PAGE) as u64 + 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Workers.

struct Worker<'a> {
    sh: &'a Shared,
    rng: Rng,
    st: Stats,
    own: Option<Arc<Dev>>,
}

impl Worker<'_> {
    fn dev(&mut self) -> Option<Arc<Dev>> {
        if self.rng.pct(30) {
            if self.own.is_none() || self.rng.pct(1) {
                // Close (by dropping) and reopen the thread's own file.
                self.own = Dev::open(0);
                self.st.chaos("own_reopen");
            }
            return self.own.clone();
        }
        let i = self.rng.below(self.sh.slots.len() as u64) as usize;
        Some(self.sh.slots[i].lock().unwrap().clone())
    }

    fn step(&mut self) {
        let Some(dev) = self.dev() else { return };
        let r = self.rng.below(100);
        match r {
            0..=44 => self.writev(&dev),
            45..=54 => self.writev_repeat(&dev),
            55..=61 => self.dest_add(&dev),
            62..=63 => self.group_set(&dev),
            64 => self.group_del(&dev),
            65..=67 => self.dest_del(&dev),
            68..=73 => self.buf_register(&dev),
            74..=76 => self.buf_unregister(&dev),
            77..=86 => self.read(&dev),
            87..=89 => self.poll(&dev),
            90..=91 => self.set_eventfd(&dev),
            92..=93 => self.stats(&dev),
            94 => self.info(&dev),
            95 => self.write(&dev),
            _ => self.bad_ioctl(&dev),
        }
    }

    fn ensure_dests(&mut self, dev: &Dev) -> Vec<u32> {
        let have = dev.dests.lock().unwrap().clone();
        if have.len() >= 2 {
            return have;
        }
        for _ in 0..4 {
            let mut d = good_dest(self.sh, &mut self.rng);
            d.flags &= !MDW_DEST_VLAN;
            let r = ioctl(dev.fd, MDW_IOC_DEST_ADD, &mut d as *mut _ as usize);
            self.st
                .record("dest_add", r, &|| "a valid destination".into());
            if r.is_ok() {
                dev.dests.lock().unwrap().push(d.handle);
            }
        }
        dev.dests.lock().unwrap().clone()
    }

    fn dest_add(&mut self, dev: &Dev) {
        let mut d = good_dest(self.sh, &mut self.rng);
        let hostile = self.rng.pct(40);
        if hostile {
            mutate_dest(self.sh, &mut self.rng, &mut d);
        }
        if self.rng.pct(10) {
            // Destinations on the device that comes and goes.
            d.ifindex = self.sh.ifindex_churn.load(Ordering::Relaxed);
        }
        let mut big = [0u8; 256];
        let (cmd, arg) = match self.rng.below(20) {
            0 => (
                MDW_IOC_DEST_ADD,
                self.rng.pick(&[0, KERNEL_ADDR as usize, 1]),
            ),
            1 => {
                // A larger struct, extra bytes zero or not.
                let n = std::mem::size_of::<MdwDest>();
                // SAFETY: `d` is plain old data of `n` bytes; `big` holds 256.
                unsafe {
                    std::ptr::copy_nonoverlapping(&d as *const _ as *const u8, big.as_mut_ptr(), n)
                };
                if self.rng.pct(50) {
                    big[n + self.rng.below(8) as usize] = 1;
                }
                (
                    with_size(MDW_IOC_DEST_ADD, n + 8),
                    big.as_mut_ptr() as usize,
                )
            }
            2 => (with_size(MDW_IOC_DEST_ADD, 8), &mut d as *mut _ as usize),
            _ => (MDW_IOC_DEST_ADD, &mut d as *mut _ as usize),
        };
        let r = ioctl(dev.fd, cmd, arg);
        self.st
            .record("dest_add", r, &|| format!("{d:?} cmd {cmd:#x}"));
        if r.is_ok() && arg == &mut d as *mut _ as usize && d.ifindex == self.sh.ifindex_stable {
            let mut v = dev.dests.lock().unwrap();
            if v.len() < 64 {
                v.push(d.handle);
            }
        }
    }

    fn dest_del(&mut self, dev: &Dev) {
        let known = dev.dests.lock().unwrap().clone();
        let mut del = MdwDestDel {
            handle: if !known.is_empty() && self.rng.pct(50) {
                self.rng.pick(&known)
            } else {
                self.rng.pick(&[0, 1, 2, 3, 100, 4096, u32::MAX])
            },
            flags: if self.rng.pct(15) {
                1 + self.rng.below(8) as u32
            } else {
                0
            },
        };
        let r = ioctl(dev.fd, MDW_IOC_DEST_DEL, &mut del as *mut _ as usize);
        self.st.record("dest_del", r, &|| format!("{del:?}"));
        if r.is_ok() {
            dev.dests.lock().unwrap().retain(|&h| h != del.handle);
        }
    }

    /// A group of known destinations (sometimes unknown ones, a bad
    /// count, flags, address), new or replacing a known group.
    fn group_set(&mut self, dev: &Dev) {
        let dests = self.ensure_dests(dev);
        if dests.is_empty() {
            return;
        }
        let n = 1 + self.rng.below(8) as usize;
        let mut handles: Vec<u32> = (0..n).map(|_| self.rng.pick(&dests)).collect();
        let known = dev.groups.lock().unwrap().clone();
        let mut g = MdwGroup {
            dests: 0,
            count: n as u32,
            handle: match (known.is_empty(), self.rng.pct(40)) {
                (false, true) => self.rng.pick(&known),
                _ => 0,
            },
            flags: 0,
            reserved: 0,
        };
        if self.rng.pct(15) {
            match self.rng.below(6) {
                0 => handles[0] = self.rng.pick(&[0, 4097, u32::MAX]),
                1 => g.count = self.rng.pick(&[0, MDW_MAX_GROUP_DESTS + 1, u32::MAX]),
                2 => g.flags = 1 + self.rng.below(8) as u32,
                3 => g.reserved = 1,
                4 => g.handle = self.rng.pick(&[77, 1024, u32::MAX]),
                _ => g.dests = self.rng.pick(&[1, KERNEL_ADDR, u64::MAX - 3]),
            }
        }
        if g.dests == 0 {
            g.dests = handles.as_ptr() as u64;
            g.count = g.count.min(n as u32);
        }
        let r = ioctl(dev.fd, MDW_IOC_GROUP_SET, &mut g as *mut _ as usize);
        self.st.record("group_set", r, &|| format!("{g:?}"));
        if r.is_ok() {
            let mut v = dev.groups.lock().unwrap();
            if !v.contains(&g.handle) && v.len() < 16 {
                v.push(g.handle);
            }
        }
    }

    fn group_del(&mut self, dev: &Dev) {
        let known = dev.groups.lock().unwrap().clone();
        let mut del = MdwGroupDel {
            handle: match (known.is_empty(), self.rng.pct(70)) {
                (false, true) => self.rng.pick(&known),
                _ => self.rng.pick(&[0, 1, 2, 1024, u32::MAX]),
            },
            flags: u32::from(self.rng.pct(10)),
        };
        let r = ioctl(dev.fd, MDW_IOC_GROUP_DEL, &mut del as *mut _ as usize);
        self.st.record("group_del", r, &|| format!("{del:?}"));
        if r.is_ok() {
            dev.groups.lock().unwrap().retain(|&h| h != del.handle);
        }
    }

    fn writev(&mut self, dev: &Dev) {
        let dests = self.ensure_dests(dev);
        if dests.is_empty() {
            return;
        }
        let bufs = dev.bufs.lock().unwrap().clone();
        let mut entries = good_entries(self.sh, &mut self.rng, &dests, &bufs);
        let groups = dev.groups.lock().unwrap().clone();
        if !groups.is_empty() && self.rng.pct(25) {
            // A group's fan-out (its destinations may be gone since).
            let i = self.rng.below(entries.len() as u64) as usize;
            entries[i].dest = self.rng.pick(&groups);
            entries[i].flags |= MDW_ENTRY_GROUP;
        }
        let hostile = self.rng.pct(25);
        let mut w = MdwWritev {
            count: entries.len() as u32,
            entry_size: std::mem::size_of::<MdwEntry>() as u32,
            quantum: if self.rng.pct(30) {
                self.rng.below(8) as u32
            } else {
                0
            },
            cookie: self.sh.cookie.fetch_add(1, Ordering::Relaxed),
            ..Default::default()
        };
        if self.rng.pct(35) {
            w.flags |= MDW_WRITE_ASYNC;
        }
        if self.rng.pct(15) {
            w.flags |= MDW_WRITE_QDISC;
        }
        if self.rng.pct(40) {
            // The pin cache, racing the chaos thread's munmap/madvise.
            w.flags |= MDW_WRITE_KEEP_PINS;
        }
        if self.rng.pct(10) {
            // Paced: a window around now, some entries timed by themselves.
            let now = monotonic_ns();
            w.flags |= MDW_WRITE_PACE | MDW_WRITE_QDISC;
            w.pace_clock = self.rng.pick(&[1, 1, 1, 11, 0, 7]);
            w.pace_window = self
                .rng
                .pick(&[0, 1, 1_000_000, 20_000_000, MDW_MAX_PACE_WINDOW + 1]);
            w.pace_start = self
                .rng
                .pick(&[now, now - 50_000_000, now + 2_000_000_000, 0]);
            for e in entries.iter_mut() {
                if self.rng.pct(30) {
                    e.flags |= MDW_ENTRY_PACE;
                    e.pace_offset = self.rng.pick(&[0, 1000, 5_000_000, u32::MAX]);
                    e.pace_gap = self.rng.pick(&[0, 1000, 100_000, u32::MAX]);
                }
            }
        }
        let mut raw: Vec<u8> = Vec::new();
        let mut cmd = MDW_IOC_WRITEV;
        let mut bad_ptr = None;
        if hostile {
            for _ in 0..1 + self.rng.below(2) {
                match self.rng.below(10) {
                    0..=3 => {
                        let i = self.rng.below(entries.len() as u64) as usize;
                        mutate_entry(self.sh, &mut self.rng, &mut entries[i]);
                    }
                    4 => w.count = self.rng.pick(&[0, 4097, u32::MAX, w.count.wrapping_add(1)]),
                    5 => {
                        w.entry_size =
                            self.rng
                                .pick(&[0, 1, 31, 33, 40, 64, 4096, 4097, 65536, u32::MAX])
                    }
                    6 => w.flags = self.rng.next() as u32,
                    7 => w.quantum = self.rng.pick(&[u32::MAX, 1 << 20, 65535]),
                    8 => {
                        cmd = with_size(
                            MDW_IOC_WRITEV,
                            self.rng.pick(&[MDW_WRITEV_SIZE_VER0, 40, 64]),
                        )
                    }
                    _ => bad_ptr = Some(self.rng.pick(&[0, 1, KERNEL_ADDR, self.sh.arena as u64])),
                }
            }
        }
        // Entries laid out at the caller's entry size (zero padded).
        let es = w.entry_size as usize;
        let mut ents_ptr = entries.as_ptr() as u64;
        let known = std::mem::size_of::<MdwEntry>();
        if es != known && (MDW_ENTRY_SIZE_VER0..=8192).contains(&es) {
            // Shorter (older callers: the new fields cut off) or longer.
            let copied = es.min(known);
            raw.resize(es * entries.len(), 0);
            for (i, e) in entries.iter().enumerate() {
                // SAFETY: `raw` holds `es >= copied` bytes per entry and
                // `e` at least `copied`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        e as *const _ as *const u8,
                        raw.as_mut_ptr().add(i * es),
                        copied,
                    )
                };
                if es > known && self.rng.pct(10) {
                    raw[i * es + known + self.rng.below((es - known) as u64) as usize] = 1;
                }
            }
            ents_ptr = raw.as_ptr() as u64;
        }
        w.entries = bad_ptr.unwrap_or(ents_ptr);
        let mut big = [0u8; 64];
        let arg =
            if with_size(cmd, 0) == with_size(MDW_IOC_WRITEV, 0) && ((cmd >> 16) & 0x3fff) == 64 {
                // SAFETY: `w` is 56 bytes of plain old data, `big` 64.
                unsafe {
                    std::ptr::copy_nonoverlapping(&w as *const _ as *const u8, big.as_mut_ptr(), 56)
                };
                if self.rng.pct(50) {
                    big[60] = 1;
                }
                big.as_mut_ptr() as usize
            } else {
                &mut w as *mut _ as usize
            };
        let kind = if w.flags & MDW_WRITE_ASYNC != 0 {
            "writev_async"
        } else {
            "writev_sync"
        };
        let r = ioctl(dev.fd, cmd, arg);
        if arg == big.as_mut_ptr() as usize {
            // SAFETY: as above, the other way round.
            unsafe { std::ptr::copy_nonoverlapping(big.as_ptr(), &mut w as *mut _ as *mut u8, 56) };
        }
        self.st.record(kind, r, &|| {
            format!("{w:?}, cmd {cmd:#x}, entries {entries:?}")
        });
        if w.call_id != 0 {
            *dev.last.lock().unwrap() = (w.call_id, entries.clone());
        }
        if r.is_ok() && w.packets > 0 {
            self.st.writev_sent += 1;
            self.st.packets += w.packets;
            if w.error != 0 && !WRITEV_PARTIAL.contains(&-w.error) {
                self.st.violation(format!(
                    "{kind}: partial send with undocumented error {}",
                    w.error
                ));
            }
        }
        if kind == "writev_async" && self.rng.pct(60) {
            self.read(dev);
        }
    }

    /// A repeat of the file's last call (`MDW_WRITE_REPEAT`): its entries'
    /// data again, or hostile (another id, count, size, data).
    fn writev_repeat(&mut self, dev: &Dev) {
        let (id, entries) = dev.last.lock().unwrap().clone();
        if entries.is_empty() {
            return self.writev(dev);
        }
        let mut items: Vec<MdwRepeat> = entries
            .iter()
            .map(|e| MdwRepeat {
                addr: e.addr,
                len: e.len as u32,
                rtp_timestamp: self.rng.next() as u32,
            })
            .collect();
        let mut w = MdwWritev {
            count: items.len() as u32,
            entry_size: std::mem::size_of::<MdwRepeat>() as u32,
            flags: MDW_WRITE_REPEAT,
            cookie: self.sh.cookie.fetch_add(1, Ordering::Relaxed),
            call_id: id,
            ..Default::default()
        };
        if self.rng.pct(35) {
            w.flags |= MDW_WRITE_ASYNC;
        }
        let mut long: Vec<u64> = Vec::new();
        if self.rng.pct(30) {
            match self.rng.below(6) {
                0 => {
                    w.call_id =
                        self.rng
                            .pick(&[0, id.wrapping_add(1), id.wrapping_sub(1), u64::MAX])
                }
                1 => {
                    w.count = self
                        .rng
                        .pick(&[0, w.count + 1, w.count.saturating_sub(1), 4097])
                }
                2 => w.entry_size = self.rng.pick(&[0, 8, 15, 17, 4097, u32::MAX]),
                3 => {
                    // 24-byte repeats, the tail sometimes set.
                    w.entry_size = 24;
                    long = items
                        .iter()
                        .flat_map(|r| {
                            [
                                r.addr,
                                u64::from(r.len) | u64::from(r.rtp_timestamp) << 32,
                                0,
                            ]
                        })
                        .collect();
                    if self.rng.pct(50) {
                        let i = self.rng.below(items.len() as u64) as usize;
                        long[3 * i + 2] = self.rng.next();
                    }
                }
                4 => {
                    let i = self.rng.below(items.len() as u64) as usize;
                    items[i].addr =
                        self.rng
                            .pick(&[0, 1, KERNEL_ADDR, u64::MAX - 10, self.sh.arena as u64]);
                }
                _ => {
                    let i = self.rng.below(items.len() as u64) as usize;
                    items[i].len = self.rng.pick(&[0, 1, u32::MAX, 1 << 30]);
                }
            }
        }
        w.entries = match long.is_empty() {
            true => items.as_ptr() as u64,
            false => long.as_ptr() as u64,
        };
        let r = ioctl(dev.fd, MDW_IOC_WRITEV, &mut w as *mut _ as usize);
        self.st
            .record("writev_repeat", r, &|| format!("{w:?}, repeats {items:?}"));
        if w.call_id != id && w.call_id != 0 {
            let mut now = entries;
            for (e, r) in now.iter_mut().zip(&items) {
                (e.addr, e.len) = (r.addr, u64::from(r.len));
            }
            *dev.last.lock().unwrap() = (w.call_id, now);
        }
        if r.is_ok() && w.packets > 0 {
            self.st.writev_sent += 1;
            self.st.packets += w.packets;
            if w.error != 0 && !WRITEV_PARTIAL.contains(&-w.error) {
                self.st.violation(format!(
                    "writev_repeat: partial send with undocumented error {}",
                    w.error
                ));
            }
        }
        if w.flags & MDW_WRITE_ASYNC != 0 && self.rng.pct(60) {
            self.read(dev);
        }
    }

    fn buf_register(&mut self, dev: &Dev) {
        let len = 1 + self.rng.below(256 << 10);
        let off = self.rng.below(STABLE_LEN as u64 - len);
        let mut b = MdwBufReg {
            addr: self.sh.stable as u64 + off,
            len,
            ..Default::default()
        };
        let hostile = self.rng.pct(35);
        if hostile {
            match self.rng.below(8) {
                0 => b.flags = 1 + self.rng.below(100) as u32,
                1 => b.len = 0,
                2 => b.len = (1 << 30) + 1,
                3 => b.addr = u64::MAX - 4096,
                4 => b.addr = KERNEL_ADDR,
                5 => b.addr = 0,
                6 => {
                    b.addr = self.sh.arena as u64;
                    b.len = (ARENA_PAGES * PAGE) as u64;
                }
                _ => b.id = 77,
            }
        }
        let r = ioctl(dev.fd, MDW_IOC_BUF_REGISTER, &mut b as *mut _ as usize);
        self.st.record("buf_register", r, &|| format!("{b:?}"));
        if r.is_ok() {
            let mut v = dev.bufs.lock().unwrap();
            if b.addr >= self.sh.stable as u64 && b.addr < (self.sh.stable + STABLE_LEN) as u64 {
                v.push((b.id, b.len));
            }
            // Keep the file's buffers few: unregister the oldest.
            if v.len() > 8 {
                let (id, _) = v.remove(0);
                drop(v);
                let mut u = MdwBufUnreg { id, flags: 0 };
                let r = ioctl(dev.fd, MDW_IOC_BUF_UNREGISTER, &mut u as *mut _ as usize);
                self.st.record("buf_unregister", r, &|| format!("{u:?}"));
            }
        }
    }

    fn buf_unregister(&mut self, dev: &Dev) {
        let known = dev.bufs.lock().unwrap().clone();
        let mut u = MdwBufUnreg {
            id: if !known.is_empty() && self.rng.pct(60) {
                self.rng.pick(&known).0
            } else {
                self.rng.pick(&[0, 1, 5, 1024, u32::MAX])
            },
            flags: if self.rng.pct(10) { 1 } else { 0 },
        };
        let r = ioctl(dev.fd, MDW_IOC_BUF_UNREGISTER, &mut u as *mut _ as usize);
        self.st.record("buf_unregister", r, &|| format!("{u:?}"));
        if r.is_ok() {
            dev.bufs.lock().unwrap().retain(|&(id, _)| id != u.id);
        }
    }

    fn read(&mut self, dev: &Dev) {
        let mut buf = [0u8; 32 * 16];
        let n = self.rng.pick(&[0usize, 16, 31, 32, 33, 64, 127, 512]);
        let ptr = if self.rng.pct(5) {
            KERNEL_ADDR as usize
        } else {
            buf.as_mut_ptr() as usize
        };
        // Never block: with O_NONBLOCK through a read of a dup'd nonblocking
        // file is not possible, so poll first unless hostile.
        let mut p = libc::pollfd {
            fd: dev.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut p, 1, 0) };
        if ready <= 0 {
            return;
        }
        // SAFETY: `ptr` is `buf` (512 bytes >= n) or a kernel address the
        // kernel rejects with EFAULT.
        let r = unsafe { libc::read(dev.fd, ptr as *mut libc::c_void, n) };
        let r = if r < 0 { Err(errno()) } else { Ok(r as i64) };
        self.st
            .record("read", r, &|| format!("read of {n} bytes at {ptr:#x}"));
        if let Ok(got) = r {
            if got % 32 != 0 || got as usize > n {
                self.st.violation(format!("read of {n} returned {got}"));
            }
            self.st.completions += got as u64 / 32;
        }
    }

    fn poll(&mut self, dev: &Dev) {
        let mut p = libc::pollfd {
            fd: dev.fd,
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, self.rng.below(2) as i32) };
        let r = if r < 0 { Err(errno()) } else { Ok(r as i64) };
        self.st.record("poll", r, &|| "poll".into());
    }

    fn set_eventfd(&mut self, dev: &Dev) {
        // SAFETY: plain syscalls on fds we own.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        let mut e = MdwEventfd {
            fd: match self.rng.below(6) {
                0 => -1,
                1 => 9999,
                2 => 0, // not an eventfd
                _ => efd,
            },
            flags: if self.rng.pct(10) { 2 } else { 0 },
        };
        let r = ioctl(dev.fd, MDW_IOC_SET_EVENTFD, &mut e as *mut _ as usize);
        self.st.record("set_eventfd", r, &|| format!("{e:?}"));
        // Closing our eventfd right away: the module must hold its own ref.
        // SAFETY: `efd` is ours.
        unsafe { libc::close(efd) };
    }

    fn stats(&mut self, dev: &Dev) {
        let mut s = MdwStats::default();
        let cmd = if self.rng.pct(20) {
            with_size(MDW_IOC_STATS, MDW_STATS_SIZE_VER0)
        } else {
            MDW_IOC_STATS
        };
        let r = ioctl(dev.fd, cmd, &mut s as *mut _ as usize);
        self.st.record("stats", r, &|| "stats".into());
    }

    fn info(&mut self, dev: &Dev) {
        let mut i = MdwInfo::default();
        let r = ioctl(dev.fd, MDW_IOC_INFO, &mut i as *mut _ as usize);
        self.st.record("info", r, &|| "info".into());
    }

    fn write(&mut self, dev: &Dev) {
        let b = [0u8; 64];
        // SAFETY: 64 readable bytes.
        let r = unsafe { libc::write(dev.fd, b.as_ptr().cast(), 64) };
        let r = if r < 0 { Err(errno()) } else { Ok(r as i64) };
        self.st.record("write", r, &|| "write".into());
    }

    fn bad_ioctl(&mut self, dev: &Dev) {
        let mut buf = [0u64; 64];
        // The numbers after the last known one (MDW_IOC_GROUP_DEL's).
        let known = MDW_IOC_GROUP_DEL_NR + 1;
        let nr = known + self.rng.below(u64::from(256 - known)) as u32;
        let cmd = match self.rng.below(4) {
            0 => ioc::encode(ioc::READ | ioc::WRITE, nr, self.rng.below(256) as usize),
            // Known numbers, wrong direction.
            1 => ioc::encode(ioc::NONE, self.rng.below(known.into()) as u32, 0),
            // Known numbers, tiny size.
            2 => ioc::encode(
                ioc::READ | ioc::WRITE,
                self.rng.below(known.into()) as u32,
                4,
            ),
            _ => (self.rng.next() as u32 & !0xff00) | (0x42 << 8),
        };
        let r = ioctl(dev.fd, cmd, buf.as_mut_ptr() as usize);
        self.st.record("bad_ioctl", r, &|| format!("cmd {cmd:#x}"));
    }
}

// ---------------------------------------------------------------------------
// Chaos threads.

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ifindex(name: &str) -> i32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) as i32 }
}

fn dummy_up(name: &str) -> i32 {
    if let Ok(o) = Command::new("ip")
        .args(["link", "add", name, "type", "dummy"])
        .output()
    {
        if !o.status.success() && ifindex(name) == 0 {
            eprintln!(
                "ip link add {name} type dummy: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    ip(&["link", "set", name, "up"]);
    ifindex(name)
}

/// Set once every thread has stopped.
static JOINED: AtomicBool = AtomicBool::new(false);

/// Ends the process if the threads have not stopped `grace` after the
/// run's end: a call that never returns is a failure, and the kernel stacks
/// of the threads say where they are.
fn watchdog(end: Instant, grace: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep((end + grace).saturating_duration_since(Instant::now()));
        if JOINED.load(Ordering::SeqCst) {
            return;
        }
        println!("FAIL: threads still running {grace:?} after the end; kernel stacks:");
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for t in dir.flatten() {
                let stack = std::fs::read_to_string(t.path().join("stack")).unwrap_or_default();
                println!("task {}:\n{stack}", t.file_name().to_string_lossy());
            }
        }
        println!("mdwrite-fuzz: FAIL");
        std::process::exit(1);
    });
}

fn chaos_mem(sh: &Shared, seed: u64) -> Stats {
    let mut rng = Rng::new(seed);
    let mut st = Stats::default();
    while !sh.stop.load(Ordering::Relaxed) {
        // Due munmaps of regions handed over by the workers.
        let now = Instant::now();
        let due: Vec<_> = {
            let mut q = sh.unmap_queue.lock().unwrap();
            let (due, keep) = q.drain(..).partition(|&(_, _, t)| t <= now);
            *q = keep;
            due
        };
        for (p, len, _) in due {
            // SAFETY: the region was mapped by mmap() for this purpose and
            // nobody but the kernel (through calls) uses it any more.
            unsafe { libc::munmap(p as *mut libc::c_void, len) };
            st.chaos("munmap");
        }
        // Replace or drop pages of the arena (MAP_FIXED keeps the address
        // range ours, so no other allocation can land there).
        let pages = 1 + rng.below(8) as usize;
        let at = sh.arena + PAGE * rng.below((ARENA_PAGES - pages) as u64) as usize;
        let len = pages * PAGE;
        let prot = match rng.below(4) {
            0 => libc::PROT_NONE,
            1 => libc::PROT_READ,
            _ => libc::PROT_READ | libc::PROT_WRITE,
        };
        // SAFETY: `at..at+len` lies inside the arena, which only the kernel
        // reads (through calls); MAP_FIXED replaces it in place.
        unsafe {
            if rng.pct(30) {
                libc::madvise(at as *mut libc::c_void, len, libc::MADV_DONTNEED);
            } else {
                libc::mmap(
                    at as *mut libc::c_void,
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
            }
        }
        st.chaos("remap");
        std::thread::sleep(Duration::from_micros(200 + rng.below(2000)));
    }
    // Whatever is still queued.
    for (p, len, _) in sh.unmap_queue.lock().unwrap().drain(..) {
        // SAFETY: as above.
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
    }
    st
}

fn chaos_files(sh: &Shared, seed: u64) -> Stats {
    let mut rng = Rng::new(seed);
    let mut st = Stats::default();
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        match rng.below(10) {
            0..=5 => {
                let i = rng.below(sh.slots.len() as u64) as usize;
                let flags = if rng.pct(50) { libc::O_NONBLOCK } else { 0 };
                if let Some(d) = Dev::open(flags) {
                    // The old file closes when the last call using it ends.
                    *sh.slots[i].lock().unwrap() = d;
                    st.chaos("shared_reopen");
                }
            }
            _ => {
                fork_and_kill(sh, &mut rng);
                st.chaos("fork_kill");
            }
        }
    }
    st
}

/// Forks a child that sends big calls on a file of its own (some of them
/// asynchronous) and SIGKILLs it mid-call.
fn fork_and_kill(sh: &Shared, rng: &mut Rng) {
    let d = MdwDest {
        ifindex: if rng.pct(50) {
            sh.ifindex_stable
        } else {
            sh.ifindex_churn.load(Ordering::Relaxed)
        },
        src_addr: [10, 77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst_addr: [10, 77, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        src_port: 1,
        dst_port: 2,
        dst_mac: mac(9),
        ..Default::default()
    };
    let mut dest = Box::new(d);
    let mut entries: Box<[MdwEntry; 4]> = Box::new([MdwEntry::default(); 4]);
    for (i, e) in entries.iter_mut().enumerate() {
        e.addr = sh.stable as u64 + (i as u64) * (STABLE_LEN as u64 / 4);
        e.len = STABLE_LEN as u64 / 4;
    }
    let mut w = Box::new(MdwWritev {
        entries: entries.as_ptr() as u64,
        count: 4,
        entry_size: 32,
        flags: if rng.pct(50) { MDW_WRITE_ASYNC } else { 0 },
        ..Default::default()
    });
    let delay = Duration::from_micros(500 + rng.below(100_000));
    // SAFETY: the child only makes raw syscalls on memory prepared above
    // (no allocation, no locks) and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            let fd = libc::open(c"/dev/mdwrite".as_ptr(), libc::O_RDWR);
            if fd < 0
                || libc::ioctl(
                    fd,
                    MDW_IOC_DEST_ADD as libc::c_ulong,
                    &mut *dest as *mut MdwDest,
                ) < 0
            {
                libc::_exit(0);
            }
            for e in entries.iter_mut() {
                e.dest = dest.handle;
            }
            for _ in 0..1000 {
                libc::ioctl(
                    fd,
                    MDW_IOC_WRITEV as libc::c_ulong,
                    &mut *w as *mut MdwWritev,
                );
            }
            libc::_exit(0);
        }
    }
    if pid > 0 {
        std::thread::sleep(delay);
        // SAFETY: our child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

fn chaos_netdev(sh: &Shared, seed: u64) -> Stats {
    let mut rng = Rng::new(seed);
    let mut st = Stats::default();
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50 + rng.below(500)));
        match rng.below(4) {
            0 => {
                ip(&["link", "set", "fz1", "down"]);
                st.chaos("link_down");
            }
            1 => {
                ip(&["link", "set", "fz1", "up"]);
                st.chaos("link_up");
            }
            2 => {
                let mtu = rng.pick(&["600", "1000", "1500", "9000"]);
                ip(&["link", "set", "fz1", "mtu", mtu]);
                st.chaos("mtu");
            }
            _ => {
                ip(&["link", "del", "fz1"]);
                sh.ifindex_churn.store(dummy_up("fz1"), Ordering::Relaxed);
                st.chaos("link_del");
            }
        }
    }
    st
}

// ---------------------------------------------------------------------------

fn foll_pins() -> Result<(u64, u64), String> {
    std::fs::write("/proc/sys/vm/stat_refresh", "1").map_err(|e| format!("stat_refresh: {e}"))?;
    let text = std::fs::read_to_string("/proc/vmstat").map_err(|e| e.to_string())?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
            .ok_or(format!("{k} missing in /proc/vmstat"))
    };
    Ok((get("nr_foll_pin_acquired ")?, get("nr_foll_pin_released ")?))
}

struct Args {
    duration: u64,
    seed: u64,
    threads: usize,
    netns: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        duration: 60,
        seed: 1,
        threads: 4,
        netns: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--duration" => a.duration = val("--duration")?,
            "--seed" => a.seed = val("--seed")?,
            "--threads" => a.threads = val("--threads")?.clamp(1, 64) as usize,
            "--no-netns" => a.netns = false,
            _ => return Err(
                "usage: mdwrite-fuzz [--duration SECONDS] [--seed N] [--threads N] [--no-netns]"
                    .into(),
            ),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.netns {
        // SAFETY: still single-threaded; a network namespace of our own.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            return ExitCode::from(2);
        }
    }
    let stable_idx = dummy_up("fz0");
    let churn_idx = dummy_up("fz1");
    if stable_idx == 0 || churn_idx == 0 {
        eprintln!("could not create dummy devices fz0/fz1");
        return ExitCode::from(2);
    }
    let (acq0, rel0) = match foll_pins() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let slots: Vec<_> = (0..3)
        .filter_map(|_| Dev::open(0))
        .map(Mutex::new)
        .collect();
    if slots.len() != 3 {
        eprintln!(
            "cannot open /dev/mdwrite: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(2);
    }
    let sh = Shared {
        stop: AtomicBool::new(false),
        slots,
        stable: mmap(STABLE_LEN),
        arena: mmap(ARENA_PAGES * PAGE),
        unmap_queue: Mutex::new(Vec::new()),
        ifindex_stable: stable_idx,
        ifindex_churn: AtomicI32::new(churn_idx),
        cookie: AtomicU64::new(1),
    };
    println!(
        "mdwrite-fuzz: seed {} duration {} s threads {}",
        args.seed, args.duration, args.threads
    );
    let end = Instant::now() + Duration::from_secs(args.duration);
    watchdog(end, Duration::from_secs(120));
    let mut total = Stats::default();
    std::thread::scope(|s| {
        let sh = &sh;
        let mut hs = Vec::new();
        for t in 0..args.threads {
            let seed = args.seed.wrapping_mul(1000).wrapping_add(t as u64);
            hs.push(s.spawn(move || {
                let mut w = Worker {
                    sh,
                    rng: Rng::new(seed),
                    st: Stats::default(),
                    own: None,
                };
                while !sh.stop.load(Ordering::Relaxed) {
                    w.step();
                }
                w.st
            }));
        }
        let seed = args.seed.wrapping_mul(1000);
        hs.push(s.spawn(move || chaos_mem(sh, seed + 500)));
        hs.push(s.spawn(move || chaos_files(sh, seed + 501)));
        hs.push(s.spawn(move || chaos_netdev(sh, seed + 502)));
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        sh.stop.store(true, Ordering::Relaxed);
        for h in hs {
            match h.join() {
                Ok(st) => total.merge(st),
                Err(_) => total.violation("a fuzzer thread panicked".into()),
            }
        }
    });
    JOINED.store(true, Ordering::SeqCst);
    // Close everything.
    drop(sh);
    ip(&["link", "del", "fz1"]);
    ip(&["link", "del", "fz0"]);

    // Print the report.
    println!("{:<16} {:>9} {:>9}  errnos", "call", "calls", "ok");
    let mut writev_calls = 0;
    for (k, v) in &total.kinds {
        let errs: Vec<String> = v
            .errnos
            .iter()
            .map(|(e, n)| format!("{}:{n}", errname(*e).replace('?', &e.to_string())))
            .collect();
        println!("{:<16} {:>9} {:>9}  {}", k, v.calls, v.ok, errs.join(" "));
        if k.starts_with("writev") {
            writev_calls += v.calls;
        }
    }
    let chaos: Vec<String> = total
        .chaos
        .iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    println!("chaos: {}", chaos.join(" "));
    let pct = if writev_calls == 0 {
        0.0
    } else {
        100.0 * total.writev_sent as f64 / writev_calls as f64
    };
    println!(
        "writev reached the send path: {} of {} ({pct:.1}%), {} packets; completions read: {}",
        total.writev_sent, writev_calls, total.packets, total.completions
    );
    let mut fail = false;
    for v in &total.violations {
        println!("VIOLATION: {v}");
        fail = true;
    }
    if pct < 50.0 {
        println!("FAIL: fewer than 50% of WRITEV calls reached the send path");
        fail = true;
    }
    // Pins: asynchronous completions and closed files may take a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match foll_pins() {
            Ok((acq, rel)) => {
                let (a, r) = (acq - acq0, rel - rel0);
                if a == r {
                    println!("pins: acquired {a} released {r} (balanced; absolute {acq}/{rel})");
                    break;
                }
                if Instant::now() > deadline {
                    println!("FAIL: pages stay pinned: acquired {a} released {r} after 60 s");
                    fail = true;
                    break;
                }
            }
            Err(e) => {
                println!("FAIL: {e}");
                fail = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("mdwrite-fuzz: {}", if fail { "FAIL" } else { "PASS" });
    if fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The syzkaller description's constants match the ABI.
    #[test]
    fn syzkaller_consts() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/syzkaller/mdwrite.txt.const"
        ))
        .unwrap();
        let want: &[(&str, u64)] = &[
            ("MDW_IOC_INFO", MDW_IOC_INFO.into()),
            ("MDW_IOC_DEST_ADD", MDW_IOC_DEST_ADD.into()),
            ("MDW_IOC_DEST_DEL", MDW_IOC_DEST_DEL.into()),
            ("MDW_IOC_WRITEV", MDW_IOC_WRITEV.into()),
            ("MDW_IOC_STATS", MDW_IOC_STATS.into()),
            ("MDW_IOC_BUF_REGISTER", MDW_IOC_BUF_REGISTER.into()),
            ("MDW_IOC_BUF_UNREGISTER", MDW_IOC_BUF_UNREGISTER.into()),
            ("MDW_IOC_SET_EVENTFD", MDW_IOC_SET_EVENTFD.into()),
            ("MDW_IOC_GROUP_SET", MDW_IOC_GROUP_SET.into()),
            ("MDW_IOC_GROUP_DEL", MDW_IOC_GROUP_DEL.into()),
            ("MDW_ENTRY_GROUP", MDW_ENTRY_GROUP.into()),
            ("MDW_DEST_IPV6", MDW_DEST_IPV6.into()),
            ("MDW_DEST_RTP", MDW_DEST_RTP.into()),
            ("MDW_DEST_VLAN", MDW_DEST_VLAN.into()),
            ("MDW_DEST_UDP_CSUM_ZERO", MDW_DEST_UDP_CSUM_ZERO.into()),
            ("MDW_ENTRY_RTP_TS", MDW_ENTRY_RTP_TS.into()),
            ("MDW_ENTRY_BUF", MDW_ENTRY_BUF.into()),
            ("MDW_WRITE_QDISC", MDW_WRITE_QDISC.into()),
            ("MDW_WRITE_ASYNC", MDW_WRITE_ASYNC.into()),
            ("MDW_ENTRY_PACE", MDW_ENTRY_PACE.into()),
            ("MDW_WRITE_PACE", MDW_WRITE_PACE.into()),
            ("MDW_WRITE_REPEAT", MDW_WRITE_REPEAT.into()),
            ("O_RDWR", libc::O_RDWR as u64),
            ("O_NONBLOCK", libc::O_NONBLOCK as u64),
            ("O_CLOEXEC", libc::O_CLOEXEC as u64),
        ];
        for (name, value) in want {
            let got = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(got.trim().parse::<u64>().unwrap(), *value, "{name}");
        }
        // The sizes the description's structs assume.
        assert_eq!(std::mem::size_of::<MdwDest>(), 76);
        assert_eq!(std::mem::size_of::<MdwEntry>(), 40);
        assert_eq!(std::mem::size_of::<MdwWritev>(), 80);
        assert_eq!(std::mem::size_of::<MdwRepeat>(), 16);
        assert_eq!(std::mem::size_of::<MdwGroup>(), 24);
    }

    /// Every kind the workers record has a row in `ALLOWED`.
    #[test]
    fn allowed_table() {
        for k in [
            "info",
            "dest_add",
            "dest_del",
            "writev_sync",
            "writev_async",
            "writev_repeat",
            "stats",
            "buf_register",
            "buf_unregister",
            "set_eventfd",
            "read",
            "poll",
            "write",
            "bad_ioctl",
        ] {
            assert!(ALLOWED.iter().any(|(a, _)| *a == k), "{k}");
        }
        assert!(allowed("writev_sync", libc::ENXIO));
        assert!(!allowed("dest_del", libc::ENOENT));
    }
}
