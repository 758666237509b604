// SPDX-License-Identifier: GPL-2.0

//! Registered buffers and asynchronous completion (issue 6), at the
//! raw-ioctl level: `MDW_IOC_BUF_REGISTER`/`UNREGISTER`, `MDW_ENTRY_BUF`
//! entries, `MDW_WRITE_ASYNC` with completion records read from the file,
//! `poll`/`epoll`, `MDW_IOC_SET_EVENTFD`, back-pressure, `RLIMIT_MEMLOCK`
//! and the lifetime of calls in flight across unregister, close, exit and
//! module unload.
//!
//! Packets are held in flight with netem on the qdisc path
//! (`MDW_WRITE_QDISC`): the device releases them only after the delay.

use std::{
    collections::HashMap,
    io::Read,
    mem::size_of,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    process::Command,
    sync::{
        mpsc::{self, RecvTimeoutError},
        Mutex,
    },
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{
        ioc, MdwBufReg, MdwBufUnreg, MdwCompletion, MdwEntry, MdwEventfd, MdwStats, MdwWritev,
        MDW_ENTRY_BUF, MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_IOC_BUF_REGISTER, MDW_IOC_BUF_REGISTER_NR,
        MDW_IOC_BUF_UNREGISTER, MDW_IOC_BUF_UNREGISTER_NR, MDW_IOC_SET_EVENTFD, MDW_IOC_STATS,
        MDW_IOC_WRITEV, MDW_IOC_WRITEV_NR, MDW_MAX_ASYNC, MDW_MAX_BUFS, MDW_MAX_BUF_BYTES,
        MDW_WRITEV_SIZE_VER0, MDW_WRITE_ASYNC, MDW_WRITE_QDISC,
    },
    DestConfig, Device,
};

use crate::{
    errors::foll_pins,
    net::{self, Listen},
    raw::{errno_name, expect_errno, ioctl},
    send::{config, pattern},
    topo::{self, run, Topology},
    TestResult,
};

/// The page size these tests lay buffers out for (x86-64).
pub(crate) const PAGE: usize = 4096;
/// Size of one completion record.
const REC: usize = size_of::<MdwCompletion>();
/// Largest IPv4 UDP payload at MTU 1500.
pub(crate) const PAYLOAD: usize = 1472;
/// How long netem holds each packet when a test needs calls in flight.
const HOLD_MS: u64 = 2000;
/// Receivers wait this long for their bytes.
pub(crate) const RX_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Raw ioctls and file operations.

fn ptr<T>(v: &mut T) -> usize {
    v as *mut T as usize
}

pub(crate) fn fail(what: &str, e: i32) -> String {
    format!("{what}: {}", errno_name(e))
}

/// Fails unless the module reports registered buffers and asynchronous
/// writes, and pages are 4 KiB (the layouts below assume it).
pub(crate) fn require(dev: &Device) -> TestResult {
    let info = dev.info().map_err(|e| format!("INFO: {e}"))?;
    let want = MDW_FEAT_BUF | MDW_FEAT_ASYNC;
    if info.features.bits() & want != want {
        return Err(format!(
            "the module lacks MDW_FEAT_BUF | MDW_FEAT_ASYNC: features {:#x}",
            info.features.bits()
        ));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page != PAGE as libc::c_long {
        return Err(format!("page size {page}, these tests assume {PAGE}"));
    }
    Ok(())
}

/// `MDW_IOC_STATS`.
pub(crate) fn stats(fd: BorrowedFd<'_>) -> Result<MdwStats, String> {
    let mut s = MdwStats::default();
    ioctl(fd, MDW_IOC_STATS, ptr(&mut s)).map_err(|e| fail("STATS", e))?;
    Ok(s)
}

/// `pages_pinned` of `fd`'s file must be `want`.
pub(crate) fn expect_pinned(fd: BorrowedFd<'_>, want: u64, what: &str) -> TestResult {
    let s = stats(fd)?;
    if s.pages_pinned != want {
        return Err(format!(
            "{what}: pages_pinned {}, want {want}",
            s.pages_pinned
        ));
    }
    Ok(())
}

/// `MDW_IOC_BUF_REGISTER` of `len` bytes at `addr`: the id or the errno.
pub(crate) fn register(fd: BorrowedFd<'_>, addr: u64, len: u64) -> Result<u32, i32> {
    let mut r = MdwBufReg {
        addr,
        len,
        id: 0,
        flags: 0,
    };
    ioctl(fd, MDW_IOC_BUF_REGISTER, ptr(&mut r)).map(|_| r.id)
}

pub(crate) fn register_ok(
    fd: BorrowedFd<'_>,
    addr: u64,
    len: u64,
    what: &str,
) -> Result<u32, String> {
    let id = register(fd, addr, len).map_err(|e| fail(&format!("BUF_REGISTER {what}"), e))?;
    if id == 0 {
        return Err(format!("BUF_REGISTER {what}: id 0"));
    }
    Ok(id)
}

/// `MDW_IOC_BUF_UNREGISTER`.
fn unregister(fd: BorrowedFd<'_>, id: u32) -> Result<i32, i32> {
    let mut u = MdwBufUnreg { id, flags: 0 };
    ioctl(fd, MDW_IOC_BUF_UNREGISTER, ptr(&mut u))
}

/// `MDW_IOC_SET_EVENTFD`.
fn set_eventfd(fd: BorrowedFd<'_>, efd: i32, flags: u32) -> Result<i32, i32> {
    let mut e = MdwEventfd { fd: efd, flags };
    ioctl(fd, MDW_IOC_SET_EVENTFD, ptr(&mut e))
}

/// `MDW_IOC_WRITEV` with `flags` and `cookie`: the result and the struct as
/// the module left it.
pub(crate) fn writev(
    fd: BorrowedFd<'_>,
    entries: &[MdwEntry],
    flags: u32,
    cookie: u64,
) -> (Result<i32, i32>, MdwWritev) {
    let mut w = MdwWritev {
        entries: entries.as_ptr() as u64,
        count: entries.len() as u32,
        entry_size: size_of::<MdwEntry>() as u32,
        flags,
        cookie,
        ..Default::default()
    };
    let r = ioctl(fd, MDW_IOC_WRITEV, ptr(&mut w));
    (r, w)
}

/// A call that must send everything.
pub(crate) fn writev_ok(
    fd: BorrowedFd<'_>,
    entries: &[MdwEntry],
    flags: u32,
    cookie: u64,
    what: &str,
) -> Result<MdwWritev, String> {
    let (r, w) = writev(fd, entries, flags, cookie);
    r.map_err(|e| fail(what, e))?;
    if w.error != 0 {
        return Err(format!(
            "{what}: stopped early at entry {}: {}",
            w.error_index,
            errno_name(-w.error)
        ));
    }
    let bytes: u64 = entries.iter().map(|e| e.len).sum();
    if w.bytes != bytes {
        return Err(format!("{what}: {} bytes sent, want {bytes}", w.bytes));
    }
    Ok(w)
}

/// A call that must fail with `want` before sending anything, naming entry
/// `index`.
pub(crate) fn writev_fails(
    fd: BorrowedFd<'_>,
    entries: &[MdwEntry],
    flags: u32,
    want: i32,
    index: u32,
    what: &str,
) -> TestResult {
    let (r, w) = writev(fd, entries, flags, 0);
    expect_errno(what, r, want)?;
    if w.error != -want || w.error_index != index || w.packets != 0 || w.bytes != 0 {
        return Err(format!(
            "{what}: error {} error_index {} packets {} bytes {}, want {}, {index}, 0, 0",
            w.error, w.error_index, w.packets, w.bytes, -want
        ));
    }
    Ok(())
}

/// An entry for plain (unregistered) memory.
pub(crate) fn plain(dest: u32, data: &[u8]) -> MdwEntry {
    MdwEntry {
        dest,
        flags: 0,
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
        rtp_timestamp: 0,
        buf: 0,
        ..Default::default()
    }
}

/// An entry for `len` bytes at offset `off` of registered buffer `id`.
fn from_buf(dest: u32, id: u32, off: u64, len: u64) -> MdwEntry {
    MdwEntry {
        dest,
        flags: MDW_ENTRY_BUF,
        addr: off,
        len,
        rtp_timestamp: 0,
        buf: id,
        ..Default::default()
    }
}

/// `read(fd, buf)`: the byte count or the errno.
fn read_raw(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(n as usize)
    }
}

/// The records in `bytes`, which must be whole records.
fn parse(bytes: &[u8]) -> Result<Vec<MdwCompletion>, String> {
    if bytes.len() % REC != 0 {
        return Err(format!(
            "read returned {} bytes, not whole {REC}-byte records",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(REC)
        .map(|c| {
            // SAFETY: `c` holds REC bytes and MdwCompletion is plain data of
            // that size with no invalid bit patterns.
            unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<MdwCompletion>()) }
        })
        .collect())
}

/// `read_once` found bytes that are not whole records.
const PARTIAL: i32 = -1;

/// Names a `read_once` error.
fn read_fail(what: &str, e: i32) -> String {
    if e == PARTIAL {
        format!("{what}: read returned bytes that are not whole {REC}-byte records")
    } else {
        fail(what, e)
    }
}

/// One `read()` with room for `room` bytes, bounded by `limit` (a read
/// still blocked then fails with EINTR): the records it returned.
fn read_once(fd: BorrowedFd<'_>, room: usize, limit: Duration) -> Result<Vec<MdwCompletion>, i32> {
    let mut buf = vec![0u8; room];
    let n = bounded(limit, || read_raw(fd, &mut buf))?;
    parse(&buf[..n]).map_err(|_| PARTIAL)
}

/// Reads exactly `n` records with blocking reads (each call's completion
/// exactly once); a read returning 0 early, or `limit` passing, fails.
fn collect(fd: BorrowedFd<'_>, n: usize, limit: Duration) -> Result<Vec<MdwCompletion>, String> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        let room = (n - got.len()) * REC;
        let mut buf = vec![0u8; room];
        match bounded(left.max(Duration::from_millis(1)), || {
            read_raw(fd, &mut buf)
        }) {
            Ok(0) => {
                return Err(format!(
                    "read returned 0 (nothing in flight) after {} of {n} records",
                    got.len()
                ))
            }
            Ok(k) => got.extend(parse(&buf[..k])?),
            Err(libc::EINTR) => {
                return Err(format!(
                    "only {} of {n} completion records after {limit:?}",
                    got.len()
                ))
            }
            Err(e) => return Err(fail("read", e)),
        }
    }
    Ok(got)
}

/// After everything completed and was read: `read()` returns 0 at once.
fn expect_drained(fd: BorrowedFd<'_>, what: &str) -> TestResult {
    match read_once(fd, 64 * REC, Duration::from_secs(10)) {
        Ok(r) if r.is_empty() => Ok(()),
        Ok(r) => Err(format!("{what}: {} extra records: {r:?}", r.len())),
        Err(libc::EINTR) => Err(format!(
            "{what}: read blocked with nothing in flight and nothing queued"
        )),
        Err(e) => Err(read_fail(&format!("{what}: read"), e)),
    }
}

/// Checks that `recs` hold each cookie of `calls` exactly once, with what
/// the ioctl returned.
fn match_records(recs: &[MdwCompletion], calls: &[(u64, MdwWritev)], what: &str) -> TestResult {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in recs {
        *seen.entry(r.cookie).or_default() += 1;
    }
    if let Some((c, n)) = seen.iter().find(|(_, &n)| n != 1) {
        return Err(format!("{what}: cookie {c:#x} read {n} times"));
    }
    let by_cookie: HashMap<u64, &MdwWritev> = calls.iter().map(|(c, w)| (*c, w)).collect();
    for r in recs {
        let Some(w) = by_cookie.get(&r.cookie) else {
            return Err(format!("{what}: record for unknown cookie {:#x}", r.cookie));
        };
        if (r.bytes, r.packets, r.error, r.error_index)
            != (w.bytes, w.packets, w.error, w.error_index)
        {
            return Err(format!(
                "{what}: record {r:?} differs from the ioctl's bytes {} packets {} error {} index {}",
                w.bytes, w.packets, w.error, w.error_index
            ));
        }
    }
    if recs.len() != calls.len() {
        return Err(format!(
            "{what}: {} records for {} calls",
            recs.len(),
            calls.len()
        ));
    }
    Ok(())
}

/// Polls `what` every 20 ms until it returns true or `limit` passes.
fn wait_for(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Result<bool, String>,
) -> TestResult {
    let end = Instant::now() + limit;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `poll()` readiness of `fd` now (timeout 0).
fn poll_now(fd: BorrowedFd<'_>) -> Result<i16, String> {
    poll_for(fd, libc::POLLIN | libc::POLLOUT, 0)
}

fn poll_for(fd: BorrowedFd<'_>, events: i16, ms: i32) -> Result<i16, String> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: events | libc::POLLRDNORM | libc::POLLWRNORM,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        return Err(format!("poll: {}", std::io::Error::last_os_error()));
    }
    Ok(p.revents)
}

/// Checks poll's readable/writable bits against what the spec says.
fn expect_poll(fd: BorrowedFd<'_>, readable: bool, writable: bool, what: &str) -> TestResult {
    let r = poll_now(fd)?;
    let rd = r & (libc::POLLIN | libc::POLLRDNORM);
    let wr = r & (libc::POLLOUT | libc::POLLWRNORM);
    let want_rd = if readable {
        libc::POLLIN | libc::POLLRDNORM
    } else {
        0
    };
    let want_wr = if writable {
        libc::POLLOUT | libc::POLLWRNORM
    } else {
        0
    };
    if rd != want_rd || wr != want_wr || r & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(format!(
            "{what}: poll revents {r:#x}, want {:#x}",
            want_rd | want_wr
        ));
    }
    Ok(())
}

/// A level-triggered epoll instance watching one file.
struct Epoll(OwnedFd);

impl Epoll {
    fn new(fd: BorrowedFd<'_>, events: u32) -> Result<Self, String> {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(format!(
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `ep` is a new fd we own.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event { events, u64: 1 };
        // SAFETY: valid epoll fd, watched fd and event.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) }
            != 0
        {
            return Err(format!("epoll_ctl: {}", std::io::Error::last_os_error()));
        }
        Ok(Self(ep))
    }

    /// The events reported within `ms` (0 when none).
    fn wait(&self, ms: i32) -> Result<u32, String> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: room for one event.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, ms) };
        match n {
            0 => Ok(0),
            1 => Ok(ev.events),
            _ => Err(format!("epoll_wait: {}", std::io::Error::last_os_error())),
        }
    }
}

/// A new non-blocking eventfd.
fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The eventfd's counter (0 when it reads EAGAIN), which reading resets.
fn eventfd_take(fd: BorrowedFd<'_>) -> Result<u64, String> {
    let mut v = [0u8; 8];
    match read_raw(fd, &mut v) {
        Ok(8) => Ok(u64::from_ne_bytes(v)),
        Err(libc::EAGAIN) => Ok(0),
        Ok(n) => Err(format!("eventfd read {n} bytes")),
        Err(e) => Err(fail("eventfd read", e)),
    }
}

/// Checks that the eventfd counted `want` (reading it resets it): waits up
/// to 5 s for the count to arrive, since the signal may trail the record.
fn eventfd_expect(fd: BorrowedFd<'_>, want: u64, what: &str) -> TestResult {
    let end = Instant::now() + Duration::from_secs(5);
    let mut n = eventfd_take(fd)?;
    while n < want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        n += eventfd_take(fd)?;
    }
    if n != want {
        return Err(format!("{what}: the eventfd counted {n}, want {want}"));
    }
    Ok(())
}

/// Sets or clears `O_NONBLOCK` on `fd`.
fn set_nonblock(fd: BorrowedFd<'_>, on: bool) -> TestResult {
    // SAFETY: fcntl on an open fd.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    let fl = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl) } != 0 {
        return Err(format!("fcntl: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

extern "C" fn wake(_: libc::c_int) {}

/// Runs `f` on this thread; if it has not returned after `limit`, SIGUSR1
/// (a no-op handler without `SA_RESTART`) interrupts whatever syscall it
/// blocks in, every 100 ms until it returns. A read that blocks when it
/// should not thus fails with EINTR instead of hanging the test.
fn bounded<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    // SAFETY: installs a handler that does nothing, for this process.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    // SAFETY: no preconditions.
    let me = unsafe { libc::pthread_self() };
    let (tx, rx) = mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        let mut wait = limit;
        while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(wait) {
            // SAFETY: `me` is alive: it joins this thread before returning.
            unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            wait = Duration::from_millis(100);
        }
    });
    let r = f();
    drop(tx);
    let _ = dog.join();
    r
}

/// Waits until every page pinned since `base` was released again.
pub(crate) fn pins_balance(base: (u64, u64), limit: Duration, what: &str) -> TestResult {
    let mut last = (0, 0);
    wait_for(what, limit, || {
        let (a, r) = foll_pins()?;
        last = (a - base.0, r - base.1);
        Ok(last.0 == last.1)
    })
    .map_err(|e| format!("{e}: pins acquired {} released {}", last.0, last.1))
}

// ---------------------------------------------------------------------------
// Memory, destinations, processes.

/// An anonymous, populated, page-aligned mapping filled with a pattern.
pub(crate) struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    pub(crate) fn new(pages: usize, seed: u32) -> Result<Self, String> {
        let len = pages * PAGE;
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the mapping is ours, `len` bytes, writable.
        unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) }
            .copy_from_slice(&pattern(len, seed));
        Ok(Self {
            addr: p as usize,
            len,
        })
    }

    /// Writes the pattern of `seed` over the whole mapping.
    pub(crate) fn refill(&mut self, seed: u32) {
        // SAFETY: the mapping is ours, `len` bytes, writable; `&mut self`
        // excludes any other view of it here.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
            .copy_from_slice(&pattern(self.len, seed));
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: mapped and readable while `self` lives.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    pub(crate) fn at(&self, off: usize) -> u64 {
        (self.addr + off) as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes page `page` of the mapping inaccessible (`PROT_NONE`).
    pub(crate) fn protect_none(&self, page: usize) -> Result<(), String> {
        if (page + 1) * PAGE > self.len {
            return Err(format!("page {page} is past the mapping"));
        }
        // SAFETY: a page inside our own mapping.
        let r = unsafe {
            libc::mprotect(
                (self.addr + page * PAGE) as *mut libc::c_void,
                PAGE,
                libc::PROT_NONE,
            )
        };
        if r != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Unmaps now (the module may still hold pins on the pages).
    fn unmap(mut self) {
        // SAFETY: our mapping; `len` 0 keeps Drop from unmapping it again.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        self.len = 0;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our mapping, unmapped once.
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        }
    }
}

/// The address of `len` bytes that are not mapped.
fn unmapped_addr(len: usize) -> u64 {
    // SAFETY: maps and unmaps an anonymous region: its address is then
    // known not to be mapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        libc::munmap(p, len);
        p as u64
    }
}

/// Pages spanned by `len` bytes at `addr`.
pub(crate) fn spanned(addr: u64, len: u64) -> u64 {
    (addr + len - 1) / PAGE as u64 - addr / PAGE as u64 + 1
}

/// Opens the device and registers destination `c` on it.
pub(crate) fn open_with(c: &DestConfig) -> Result<(Device, u32), String> {
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    require(&dev)?;
    let d = dev
        .add_destination(c)
        .map_err(|e| format!("DEST_ADD: {e}"))?
        .handle();
    Ok((dev, d))
}

/// Runs `f` in a forked child. Returns what it returned and how long the
/// child took to be reaped after it had sent its result (the time its
/// exit, with every file it had open, took). Call only while this process
/// has a single thread.
pub(crate) fn in_child(
    f: impl FnOnce() -> Result<String, String>,
) -> Result<(String, Duration), String> {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 writes two fds into `p`.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the test process has one thread here (the callers fork
    // before starting any); the child runs `f` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the child's copy of the read end.
        unsafe { libc::close(p[0]) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err("child panicked".into()));
        let (code, msg) = match r {
            Ok(m) => (0, format!("ok:{m}")),
            Err(e) => (1, format!("err:{e}")),
        };
        let mut off = 0;
        while off < msg.len() {
            // SAFETY: writes the rest of `msg` to the pipe.
            let n = unsafe { libc::write(p[1], msg[off..].as_ptr().cast(), msg.len() - off) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: our copy of the write end, closed once; the read end is ours.
    let mut rd = unsafe {
        libc::close(p[1]);
        std::fs::File::from_raw_fd(p[0])
    };
    let mut first = [0u8; 4096];
    let n = rd.read(&mut first).unwrap_or(0);
    let sent = Instant::now();
    let mut msg = first[..n].to_vec();
    let _ = rd.read_to_end(&mut msg);
    let mut status = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let reaped = sent.elapsed();
    let msg = String::from_utf8_lossy(&msg).into_owned();
    match msg.split_once(':') {
        Some(("ok", m)) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => {
            Ok((m.to_string(), reaped))
        }
        Some(("err", m)) => Err(format!("child: {m}")),
        _ => Err(format!("child died: status {status:#x}, said {msg:?}")),
    }
}

/// In a forked child: becomes user `uid` keeping every capability but,
/// unless `ipc_lock`, `CAP_IPC_LOCK`; sets `RLIMIT_MEMLOCK` to `limit`
/// bytes. A fresh uid starts with nothing charged to its `locked_vm`.
pub(crate) fn become_user(uid: u32, ipc_lock: bool, limit: u64) -> TestResult {
    use rustix::{
        process::{setrlimit, Resource, Rlimit},
        thread::{capabilities, set_capabilities, CapabilitySet},
    };
    setrlimit(
        Resource::Memlock,
        Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .map_err(|e| format!("setrlimit: {e}"))?;
    // SAFETY: prctl and setresuid with integer arguments, in a child with
    // one thread.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(format!(
                "PR_SET_KEEPCAPS: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(format!("setresuid: {}", std::io::Error::last_os_error()));
        }
    }
    let mut caps = capabilities(None).map_err(|e| format!("capget: {e}"))?;
    if !ipc_lock {
        caps.permitted.remove(CapabilitySet::IPC_LOCK);
        caps.inheritable.remove(CapabilitySet::IPC_LOCK);
    }
    caps.effective = caps.permitted;
    set_capabilities(None, caps).map_err(|e| format!("capset: {e}"))?;
    let now = capabilities(None).map_err(|e| format!("capget: {e}"))?;
    if now.effective.contains(CapabilitySet::IPC_LOCK) != ipc_lock {
        return Err(format!("capabilities after capset: {now:?}"));
    }
    Ok(())
}

/// Drops `CAP_IPC_LOCK` from this thread's effective set.
fn drop_ipc_lock() -> TestResult {
    use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
    let mut caps = capabilities(None).map_err(|e| format!("capget: {e}"))?;
    caps.effective.remove(CapabilitySet::IPC_LOCK);
    set_capabilities(None, caps).map_err(|e| format!("capset: {e}"))
}

// ---------------------------------------------------------------------------
// Tests.

/// Where a piece of a call's data lives.
#[derive(Clone, Copy)]
enum Src {
    /// Registered buffer A, at an offset.
    A,
    /// Registered buffer B, at an offset.
    B,
    /// Plain heap memory, at an offset.
    Plain,
}

/// Registered buffers deliver byte-exact, synchronously and
/// asynchronously, to several receivers: an unaligned buffer start, entries
/// straddling 1 and 3 page boundaries, several entries of one buffer, and
/// registered and plain memory in one call. `pages_pinned` counts the
/// buffers' pages while they are registered and drops at UNREGISTER.
pub(crate) fn buf_send_exact() -> TestResult {
    let topo = Topology::new(3)?;
    let ma = Mapping::new(16, 61)?;
    let mb = Mapping::new(6, 62)?;
    let heap = pattern(20_000, 63);
    let (a_off, a_len) = (1234usize, 10 * PAGE + 777);
    let (b_off, b_len) = (3usize, 3 * PAGE);
    let a = &ma.bytes()[a_off..a_off + a_len];
    let b = &mb.bytes()[b_off..b_off + b_len];
    use Src::{Plain, A, B};
    let pieces: [Vec<(Src, usize, usize)>; 3] = [
        vec![
            (A, 0, 1),                                 // the unaligned first byte
            (A, PAGE - a_off - 100, 200),              // straddles 1 boundary
            (A, 3 * PAGE - a_off - 1, 2 * PAGE + 2),   // straddles 3
            (Plain, 5, 3000),                          // plain memory
            (A, 5 * PAGE - a_off - 700, 3 * PAGE + 9), // several packets
        ],
        vec![
            (Plain, 4090, 5000),
            (B, 0, b_len),
            (A, a_len - 1, 1), // the buffer's last byte
            (Plain, 11, 1),
        ],
        vec![
            (A, 0, a_len), // the whole buffer
            (B, PAGE - b_off - 2, 4),
            (B, b_len - 1500, 1500),
        ],
    ];
    let slice = |s: Src, off: usize, len: usize| match s {
        A => &a[off..off + len],
        B => &b[off..off + len],
        Plain => &heap[off..off + len],
    };
    let want: Vec<Vec<u8>> = pieces
        .iter()
        .map(|p| {
            p.iter()
                .flat_map(|&(s, o, l)| slice(s, o, l).to_vec())
                .collect()
        })
        .collect();
    let want_packets: Vec<usize> = pieces
        .iter()
        .map(|p| p.iter().map(|&(_, _, l)| l.div_ceil(PAYLOAD)).sum())
        .collect();
    // Each receiver gets its data twice: a synchronous and an asynchronous
    // call with the same entries.
    let rx = net::receivers(&topo, 3, RX_TIMEOUT, |i| Listen {
        v6: false,
        expect: 2 * want[i].len(),
        skip: 0,
    })?;

    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    require(&dev)?;
    let fd = dev.as_fd();
    let dests: Vec<u32> = (0..3)
        .map(|i| {
            dev.add_destination(&config(&topo, ifindex, i, false))
                .map(|d| d.handle())
                .map_err(|e| format!("DEST_ADD {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;

    let (a_addr, b_addr) = (a.as_ptr() as u64, b.as_ptr() as u64);
    let id_a = register_ok(fd, a_addr, a_len as u64, "A")?;
    let id_b = register_ok(fd, b_addr, b_len as u64, "B")?;
    if (id_a, id_b) != (1, 2) {
        return Err(format!("ids {id_a} and {id_b} on a new file, want 1 and 2"));
    }
    let pages_a = spanned(a_addr, a_len as u64);
    let pages_b = spanned(b_addr, b_len as u64);
    let s = stats(fd)?;
    if s.pages_pinned != pages_a + pages_b {
        return Err(format!(
            "registered: pages_pinned {}, want {pages_a} + {pages_b}",
            s.pages_pinned
        ));
    }

    // The destinations' entries interleaved in the vector.
    let mut entries = Vec::new();
    let most = pieces.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..most {
        for (d, p) in pieces.iter().enumerate() {
            if let Some(&(s, off, len)) = p.get(k) {
                entries.push(match s {
                    A => from_buf(dests[d], id_a, off as u64, len as u64),
                    B => from_buf(dests[d], id_b, off as u64, len as u64),
                    Plain => plain(dests[d], slice(s, off, len)),
                });
            }
        }
    }
    let total: u64 = entries.iter().map(|e| e.len).sum();
    let packets: u64 = want_packets.iter().sum::<usize>() as u64;

    let w = writev_ok(fd, &entries, 0, 0, "synchronous call")?;
    if w.packets != packets {
        return Err(format!(
            "synchronous call: {} packets, want {packets}",
            w.packets
        ));
    }
    let s = stats(fd)?;
    if s.pages_pinned != pages_a + pages_b || s.bytes_zerocopy != total || s.bytes_copied != 0 {
        return Err(format!(
            "after the synchronous call: {s:?}; want {} pages pinned, {total} zero-copy bytes",
            pages_a + pages_b
        ));
    }

    let cookie = 0xb0f0_0000_0000_0001;
    let w = writev_ok(fd, &entries, MDW_WRITE_ASYNC, cookie, "asynchronous call")?;
    if w.packets != packets {
        return Err(format!(
            "asynchronous call: {} packets, want {packets}",
            w.packets
        ));
    }
    let recs = collect(fd, 1, Duration::from_secs(60))?;
    match_records(&recs, &[(cookie, w)], "asynchronous call")?;
    expect_drained(fd, "after the asynchronous call")?;
    // The call's own (plain) pins go with its completion.
    wait_for(
        "the asynchronous call's pins to go",
        Duration::from_secs(5),
        || Ok(stats(fd)?.pages_pinned == pages_a + pages_b),
    )?;
    let s = stats(fd)?;
    if s.pages_pinned != pages_a + pages_b
        || s.calls != 2
        || s.completions != 2
        || s.async_in_flight != 0
        || s.completions_queued != 0
        || s.bytes_zerocopy != 2 * total
        || s.bytes_copied != 0
    {
        return Err(format!(
            "after both calls: {s:?}; want {} pages pinned, 2 calls and completions, {} zero-copy bytes",
            pages_a + pages_b,
            2 * total
        ));
    }

    unregister(fd, id_a).map_err(|e| fail("UNREGISTER A", e))?;
    let s = stats(fd)?;
    if s.pages_pinned != pages_b {
        return Err(format!(
            "after UNREGISTER A: pages_pinned {}, want {pages_b}",
            s.pages_pinned
        ));
    }
    unregister(fd, id_b).map_err(|e| fail("UNREGISTER B", e))?;
    let s = stats(fd)?;
    if s.pages_pinned != 0 {
        return Err(format!(
            "after UNREGISTER B: pages_pinned {}, want 0",
            s.pages_pinned
        ));
    }

    for (i, got) in net::join_all(rx)?.into_iter().enumerate() {
        let twice = [want[i].as_slice(), want[i].as_slice()].concat();
        let bytes = got.bytes(0);
        if bytes != twice {
            let at = bytes
                .iter()
                .zip(&twice)
                .position(|(x, y)| x != y)
                .unwrap_or(bytes.len().min(twice.len()));
            return Err(format!(
                "receiver {i}: {} bytes in {} datagrams, want {}; first difference at {at}",
                bytes.len(),
                got.datagrams.len(),
                twice.len()
            ));
        }
        if got.datagrams.len() != 2 * want_packets[i] {
            return Err(format!(
                "receiver {i}: {} datagrams, want {} (no packet spans two entries)",
                got.datagrams.len(),
                2 * want_packets[i]
            ));
        }
    }
    Ok(())
}

/// Every documented errno of BUF_REGISTER, BUF_UNREGISTER and
/// `MDW_ENTRY_BUF` entries, with `error_index`; ids per file and their
/// reuse; `MDW_MAX_BUFS`; nothing sent or left pinned by a failure.
pub(crate) fn buf_errors() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let (dev, d) = open_with(&c)?;
    let fd = dev.as_fd();
    let m = Mapping::new(8, 71)?;
    let base = m.at(7);
    let len = 5 * PAGE as u64 + 10;

    // --- BUF_REGISTER.
    let reg = |mut r: MdwBufReg| ioctl(fd, MDW_IOC_BUF_REGISTER, ptr(&mut r));
    let good = MdwBufReg {
        addr: base,
        len,
        id: 0,
        flags: 0,
    };
    // A readable range just over MDW_MAX_BUF_BYTES (never touched), so only
    // the length is wrong.
    let big_len = MDW_MAX_BUF_BYTES as usize + 2 * PAGE;
    // SAFETY: a fresh anonymous reservation, unmapped at the end.
    let big = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            big_len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if big == libc::MAP_FAILED {
        return Err(format!("mmap 1 GiB: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: two fresh pages without access.
    let none = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    // Two pages whose second is unmapped.
    let half = Mapping::new(2, 72)?;
    // SAFETY: unmaps the second page of `half` (its Drop unmapping it again
    // is harmless: munmap of an unmapped range succeeds).
    unsafe { libc::munmap((half.addr + PAGE) as *mut libc::c_void, PAGE) };
    let cases: Vec<(&str, MdwBufReg, i32)> = vec![
        ("flags 1", MdwBufReg { flags: 1, ..good }, libc::EINVAL),
        (
            "flags 1 << 31",
            MdwBufReg {
                flags: 1 << 31,
                ..good
            },
            libc::EINVAL,
        ),
        ("len 0", MdwBufReg { len: 0, ..good }, libc::EINVAL),
        (
            "len MDW_MAX_BUF_BYTES + 1",
            MdwBufReg {
                addr: big as u64,
                len: MDW_MAX_BUF_BYTES + 1,
                ..good
            },
            libc::E2BIG,
        ),
        (
            "addr + len wraps",
            MdwBufReg {
                addr: u64::MAX - 4095,
                len: 2 * PAGE as u64,
                ..good
            },
            libc::EFAULT,
        ),
        (
            "unmapped range",
            MdwBufReg {
                addr: unmapped_addr(1 << 20),
                len: 100_000,
                ..good
            },
            libc::EFAULT,
        ),
        (
            "PROT_NONE range",
            MdwBufReg {
                addr: none as u64,
                len: 2 * PAGE as u64,
                ..good
            },
            libc::EFAULT,
        ),
        (
            "second page unmapped",
            MdwBufReg {
                addr: half.at(100),
                len: PAGE as u64,
                ..good
            },
            libc::EFAULT,
        ),
        (
            "kernel address",
            MdwBufReg {
                addr: 0xffff_8880_0000_0000,
                len: PAGE as u64,
                ..good
            },
            libc::EFAULT,
        ),
    ];
    for (what, r, want) in cases {
        expect_errno(&format!("BUF_REGISTER {what}"), reg(r), want)?;
        let s = stats(fd)?;
        if s.pages_pinned != 0 {
            return Err(format!(
                "after BUF_REGISTER {what}: {} pages left pinned",
                s.pages_pinned
            ));
        }
    }
    // SAFETY: our two mappings above, unmapped once.
    unsafe {
        libc::munmap(big, big_len);
        libc::munmap(none, 2 * PAGE);
    }
    expect_errno(
        "BUF_REGISTER with a bad pointer",
        ioctl(fd, MDW_IOC_BUF_REGISTER, 8),
        libc::EFAULT,
    )?;
    // The growing-struct rule: a 32-byte struct from a newer caller.
    let mut wide = [0u64; 4];
    wide[0] = base;
    wide[1] = 100;
    let wide_cmd = ioc::encode(ioc::READ | ioc::WRITE, MDW_IOC_BUF_REGISTER_NR, 32);
    wide[3] = 1;
    expect_errno(
        "32-byte BUF_REGISTER with a non-zero tail",
        ioctl(fd, wide_cmd, ptr(&mut wide)),
        libc::E2BIG,
    )?;
    wide[3] = 0;
    ioctl(fd, wide_cmd, ptr(&mut wide))
        .map_err(|e| fail("32-byte BUF_REGISTER with a zero tail", e))?;
    let wide_id = wide[2] as u32;
    if wide_id == 0 || wide[3] != 0 {
        return Err(format!(
            "32-byte BUF_REGISTER: id {wide_id}, tail {:#x} (must stay 0)",
            wide[3]
        ));
    }
    unregister(fd, wide_id).map_err(|e| fail("UNREGISTER of the 32-byte registration", e))?;
    expect_errno(
        "16-byte BUF_REGISTER",
        ioctl(
            fd,
            ioc::encode(ioc::READ | ioc::WRITE, MDW_IOC_BUF_REGISTER_NR, 16),
            ptr(&mut wide),
        ),
        libc::ENOTTY,
    )?;

    let id1 = register_ok(fd, base, len, "buffer 1")?;
    let id2 = register_ok(fd, m.at(6 * PAGE + 5), 100, "buffer 2")?;
    if id1 == id2 {
        return Err(format!("two buffers got id {id1}"));
    }
    let pages = spanned(base, len) + 1;
    let s = stats(fd)?;
    if s.pages_pinned != pages {
        return Err(format!(
            "two buffers: pages_pinned {}, want {pages}",
            s.pages_pinned
        ));
    }

    // --- BUF_UNREGISTER.
    let mut u = MdwBufUnreg { id: id1, flags: 1 };
    expect_errno(
        "UNREGISTER flags 1",
        ioctl(fd, MDW_IOC_BUF_UNREGISTER, ptr(&mut u)),
        libc::EINVAL,
    )?;
    expect_errno("UNREGISTER id 0", unregister(fd, 0), libc::ENOENT)?;
    expect_errno("UNREGISTER id 999", unregister(fd, 999), libc::ENOENT)?;
    expect_errno(
        "UNREGISTER with a bad pointer",
        ioctl(fd, MDW_IOC_BUF_UNREGISTER, 8),
        libc::EFAULT,
    )?;
    expect_errno(
        "4-byte UNREGISTER",
        ioctl(
            fd,
            ioc::encode(ioc::WRITE, MDW_IOC_BUF_UNREGISTER_NR, 4),
            ptr(&mut u),
        ),
        libc::ENOTTY,
    )?;
    // The refused UNREGISTER left buffer 1 registered.
    let s = stats(fd)?;
    if s.pages_pinned != pages {
        return Err(format!(
            "after refused UNREGISTERs: pages_pinned {}, want {pages}",
            s.pages_pinned
        ));
    }
    let ok_buf = from_buf(d, id1, 0, 1000);
    let w = writev_ok(fd, &[ok_buf], 0, 0, "buffer 1 after a refused UNREGISTER")?;
    let mut sent_calls = 1u64;
    let mut sent_packets = w.packets;

    // --- MDW_ENTRY_BUF entries.
    // Buffers of another file are not this file's: ids count per file.
    let (dev2, _) = open_with(&c)?;
    let other: Vec<u32> = (0..3)
        .map(|k| register_ok(dev2.as_fd(), m.at(k * PAGE), 10, "on another file"))
        .collect::<Result<_, _>>()?;
    if other != [1, 2, 3] {
        return Err(format!(
            "ids on a second file {other:?}, want [1, 2, 3] (ids are per file)"
        ));
    }
    let data = pattern(10_000, 73);
    let ok_plain = plain(d, &data);
    let foreign = (1..=3).find(|i| ![id1, id2].contains(i)).unwrap_or(3);
    let entry_cases: Vec<(&str, MdwEntry, i32)> = vec![
        ("unknown buffer id", from_buf(d, 77, 0, 10), libc::ENOENT),
        ("buffer id 0", from_buf(d, 0, 0, 10), libc::ENOENT),
        (
            "another file's buffer",
            from_buf(d, foreign, 0, 5),
            libc::ENOENT,
        ),
        (
            "past the buffer's end",
            from_buf(d, id1, len - 10, 11),
            libc::EFAULT,
        ),
        ("offset at the end", from_buf(d, id1, len, 1), libc::EFAULT),
        (
            "offset + len wraps",
            from_buf(d, id1, u64::MAX - 5, 10),
            libc::EFAULT,
        ),
        ("offset 1 << 40", from_buf(d, id1, 1 << 40, 1), libc::EFAULT),
        ("len 0", from_buf(d, id1, 0, 0), libc::EINVAL),
        (
            "buf set without MDW_ENTRY_BUF",
            MdwEntry {
                buf: id1,
                ..ok_plain
            },
            libc::EINVAL,
        ),
        (
            "unknown entry flag",
            MdwEntry {
                flags: MDW_ENTRY_BUF | 1 << 9,
                ..ok_buf
            },
            libc::EINVAL,
        ),
    ];
    for (what, bad, want) in &entry_cases {
        // The bad entry comes third, after a plain and a buffer entry.
        writev_fails(fd, &[ok_plain, ok_buf, *bad], 0, *want, 2, what)?;
    }
    // The same checks come first for asynchronous calls, which then raise
    // no completion.
    for (what, bad, want) in &entry_cases[..5] {
        writev_fails(
            fd,
            &[ok_buf, ok_plain, *bad],
            MDW_WRITE_ASYNC,
            *want,
            2,
            &format!("asynchronous: {what}"),
        )?;
    }
    expect_drained(fd, "after refused asynchronous calls")?;
    let s = stats(fd)?;
    if s.calls != sent_calls || s.packets != sent_packets || s.pages_pinned != pages {
        return Err(format!(
            "after the refused calls: {s:?}; want {sent_calls} calls, {sent_packets} packets, {pages} pages pinned"
        ));
    }

    // --- Id reuse after UNREGISTER.
    unregister(fd, id2).map_err(|e| fail("UNREGISTER buffer 2", e))?;
    expect_errno("UNREGISTER twice", unregister(fd, id2), libc::ENOENT)?;
    writev_fails(
        fd,
        &[ok_plain, from_buf(d, id2, 0, 10)],
        0,
        libc::ENOENT,
        1,
        "entry naming an unregistered buffer",
    )?;
    let s = stats(fd)?;
    if s.pages_pinned != spanned(base, len) {
        return Err(format!(
            "after UNREGISTER of buffer 2: pages_pinned {}, want {}",
            s.pages_pinned,
            spanned(base, len)
        ));
    }
    // A new 50-byte buffer: whatever its id (possibly buffer 2's), the id
    // names the new buffer: 50 bytes fit, 51 do not.
    let id3 = register_ok(fd, m.at(7 * PAGE), 50, "buffer 3")?;
    if id3 == id1 {
        return Err(format!("buffer 3 got buffer 1's id {id1}"));
    }
    let w = writev_ok(fd, &[from_buf(d, id3, 0, 50)], 0, 0, "50 bytes of buffer 3")?;
    sent_calls += 1;
    sent_packets += w.packets;
    writev_fails(
        fd,
        &[from_buf(d, id3, 0, 51)],
        0,
        libc::EFAULT,
        0,
        "51 bytes of the 50-byte buffer 3",
    )?;
    if id3 != id2 {
        writev_fails(
            fd,
            &[from_buf(d, id2, 0, 10)],
            0,
            libc::ENOENT,
            0,
            "the old id after another registration",
        )?;
    }
    let s = stats(fd)?;
    if s.calls != sent_calls || s.packets != sent_packets {
        return Err(format!(
            "at the end: {s:?}; want {sent_calls} calls, {sent_packets} packets"
        ));
    }
    drop(dev2);

    // --- MDW_MAX_BUFS per file, on a file of its own.
    let base_pins = foll_pins()?;
    {
        let (dev3, _) = open_with(&c)?;
        let fd3 = dev3.as_fd();
        let n = MDW_MAX_BUFS as usize;
        let many = Mapping::new(n + 1, 74)?;
        let mut ids = Vec::with_capacity(n);
        for k in 0..n {
            ids.push(register_ok(
                fd3,
                many.at(k * PAGE),
                PAGE as u64,
                "MAX_BUFS",
            )?);
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != n || sorted[0] == 0 {
            return Err(format!("{n} registrations: {} distinct ids", sorted.len()));
        }
        expect_errno(
            "registration past MDW_MAX_BUFS",
            register(fd3, many.at(n * PAGE), PAGE as u64).map(|id| id as i32),
            libc::ENOSPC,
        )?;
        let s = stats(fd3)?;
        if s.pages_pinned != n as u64 {
            return Err(format!(
                "{n} one-page buffers: pages_pinned {}",
                s.pages_pinned
            ));
        }
        unregister(fd3, ids[n / 2]).map_err(|e| fail("UNREGISTER at MAX_BUFS", e))?;
        register_ok(
            fd3,
            many.at(n * PAGE),
            PAGE as u64,
            "after an UNREGISTER at MAX_BUFS",
        )?;
        // Closing the file releases every buffer.
    }
    pins_balance(
        base_pins,
        Duration::from_secs(30),
        "the pins of 1024 buffers after close",
    )
}

/// The `RLIMIT_MEMLOCK` budget of the no-`CAP_IPC_LOCK` children, in pages.
const LIMIT_PAGES: u64 = 64;

/// Registered pages and pages pinned by asynchronous calls are charged to
/// `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK` (ENOBUFS over it), UNREGISTER
/// and completion return the charge, synchronous calls and entries in
/// registered buffers are not charged, and with `CAP_IPC_LOCK` the limit
/// does not apply (nor is anything charged).
pub(crate) fn buf_memlock_limit() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let base_pins = foll_pins()?;
    let limit = LIMIT_PAGES * PAGE as u64;
    let m = Mapping::new(400, 81)?;
    let pg = |k: usize| m.at(k * PAGE);
    let bytes = |k: usize, n: usize| &m.bytes()[k * PAGE..(k + n) * PAGE];

    in_child(|| {
        let (dev, d) = open_with(&c)?;
        let fd = dev.as_fd();
        become_user(61001, false, limit)?;
        let pinned = |want: u64, what: &str| expect_pinned(fd, want, what);
        // 64 pages cost 66 > 64.
        expect_errno(
            "BUF_REGISTER of 64 pages over a 64-page limit",
            register(fd, pg(0), 64 * PAGE as u64).map(|id| id as i32),
            libc::ENOBUFS,
        )?;
        pinned(0, "after the refused registration")?;
        let a = register_ok(fd, pg(0), 40 * PAGE as u64, "40 pages within the limit")?;
        pinned(40, "40 pages registered")?;
        expect_errno(
            "a second 40-page BUF_REGISTER (charges add up)",
            register(fd, pg(100), 40 * PAGE as u64).map(|id| id as i32),
            libc::ENOBUFS,
        )?;
        unregister(fd, a).map_err(|e| fail("UNREGISTER", e))?;
        pinned(0, "after UNREGISTER")?;
        // The whole charge came back: 60 pages (62 with the slack) fit.
        let b = register_ok(fd, pg(100), 60 * PAGE as u64, "60 pages after UNREGISTER")?;

        // Entries in a registered buffer are not charged again...
        let w = writev_ok(
            fd,
            &[from_buf(d, b, 0, 60 * PAGE as u64)],
            MDW_WRITE_ASYNC,
            1,
            "asynchronous call from the 60-page buffer at the limit",
        )?;
        match_records(
            &collect(fd, 1, Duration::from_secs(60))?,
            &[(1, w)],
            "buffer call",
        )?;
        // ...but pages an asynchronous call pins itself are.
        let before = stats(fd)?;
        writev_fails(
            fd,
            &[plain(d, bytes(200, 4))],
            MDW_WRITE_ASYNC,
            libc::ENOBUFS,
            0,
            "asynchronous call of 4 plain pages over the limit",
        )?;
        let after = stats(fd)?;
        if after.packets != before.packets
            || after.calls != before.calls
            || after.async_in_flight != 0
            || after.completions_queued != 0
        {
            return Err(format!("the refused call changed {before:?} to {after:?}"));
        }
        expect_drained(fd, "after the refused asynchronous call")?;
        // Synchronous calls are charged too (a killed caller's pages stay
        // pinned until its packets leave).
        writev_fails(
            fd,
            &[plain(d, bytes(200, 4))],
            0,
            libc::ENOBUFS,
            0,
            "synchronous call of 4 plain pages over the limit",
        )?;
        unregister(fd, b).map_err(|e| fail("UNREGISTER", e))?;

        writev_fails(
            fd,
            &[plain(d, bytes(200, 64))],
            MDW_WRITE_ASYNC,
            libc::ENOBUFS,
            0,
            "asynchronous call of 64 plain pages",
        )?;
        let w = writev_ok(
            fd,
            &[plain(d, bytes(200, 40))],
            MDW_WRITE_ASYNC,
            2,
            "asynchronous call of 40 plain pages",
        )?;
        match_records(
            &collect(fd, 1, Duration::from_secs(60))?,
            &[(2, w)],
            "plain call",
        )?;
        // Its completion returned the charge and the pins.
        let mut last = Err(0);
        wait_for(
            "the charge of a completed call",
            Duration::from_secs(5),
            || {
                last = register(fd, pg(100), 60 * PAGE as u64);
                Ok(last.is_ok())
            },
        )
        .map_err(|e| format!("{e}: {}", errno_name(last.err().unwrap_or(0))))?;
        pinned(60, "60 pages registered after the completion")?;
        Ok(String::new())
    })?;

    // With CAP_IPC_LOCK the limit does not apply, and nothing is charged:
    // once the capability is dropped, the budget is still whole.
    in_child(|| {
        let (dev, d) = open_with(&c)?;
        let fd = dev.as_fd();
        become_user(61002, true, limit)?;
        let big = register_ok(fd, pg(0), 256 * PAGE as u64, "256 pages with CAP_IPC_LOCK")?;
        let w = writev_ok(
            fd,
            &[plain(d, bytes(256, 128))],
            MDW_WRITE_ASYNC,
            3,
            "asynchronous call of 128 plain pages with CAP_IPC_LOCK",
        )?;
        match_records(
            &collect(fd, 1, Duration::from_secs(60))?,
            &[(3, w)],
            "CAP call",
        )?;
        drop_ipc_lock()?;
        expect_errno(
            "64 pages after dropping CAP_IPC_LOCK",
            register(fd, pg(300), 64 * PAGE as u64).map(|id| id as i32),
            libc::ENOBUFS,
        )?;
        register_ok(
            fd,
            pg(300),
            60 * PAGE as u64,
            "60 pages after dropping CAP_IPC_LOCK (nothing charged before)",
        )?;
        unregister(fd, big).map_err(|e| fail("UNREGISTER", e))?;
        Ok(String::new())
    })?;
    pins_balance(base_pins, Duration::from_secs(30), "pins of the children")
}

/// Many asynchronous calls, from threads sharing a file and from files of
/// their own: every cookie is read exactly once with the ioctl's counts,
/// nothing more, the eventfd counts every completion, poll and epoll say
/// readable exactly while records are queued, and the receivers get every
/// datagram.
pub(crate) fn async_one_event_per_call() -> TestResult {
    const SHARED_THREADS: usize = 4;
    const OWN_FILES: usize = 2;
    const CALLS: usize = 12;
    let topo = Topology::new(2)?;
    let n_calls = (SHARED_THREADS + OWN_FILES) * CALLS;
    let datas: Vec<Vec<u8>> = (0..n_calls)
        .map(|k| pattern(2000 + 397 * k, 1000 + k as u32))
        .collect();
    let total: usize = datas.iter().map(Vec::len).sum();
    let rx = net::receivers(&topo, 2, RX_TIMEOUT, |_| Listen {
        v6: false,
        expect: total,
        skip: 0,
    })?;
    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let open = || -> Result<(Device, [u32; 2]), String> {
        let dev = Device::open().map_err(|e| format!("open: {e}"))?;
        require(&dev)?;
        let mut ids = [0; 2];
        for (i, id) in ids.iter_mut().enumerate() {
            *id = dev
                .add_destination(&config(&topo, ifindex, i, false))
                .map_err(|e| format!("DEST_ADD: {e}"))?
                .handle();
        }
        Ok((dev, ids))
    };
    let call = |fd: BorrowedFd<'_>, ids: [u32; 2], k: usize| {
        let entries = [plain(ids[0], &datas[k]), plain(ids[1], &datas[k])];
        let cookie = 0xa5a5_0000_0000_0000 | k as u64;
        let w = writev_ok(fd, &entries, MDW_WRITE_ASYNC, cookie, &format!("call {k}"))?;
        let packets = 2 * datas[k].len().div_ceil(PAYLOAD) as u64;
        if w.packets != packets {
            return Err(format!("call {k}: {} packets, want {packets}", w.packets));
        }
        Ok((cookie, w))
    };

    let (shared, sids) = open()?;
    let sfd = shared.as_fd();
    let efd = eventfd()?;
    set_eventfd(sfd, efd.as_raw_fd(), 0).map_err(|e| fail("SET_EVENTFD", e))?;
    expect_poll(sfd, false, true, "new file")?;
    expect_drained(sfd, "new file")?;

    let issued = Mutex::new(Vec::new());
    let shared_recs = std::thread::scope(|s| -> Result<Vec<MdwCompletion>, String> {
        let mut handles = Vec::new();
        for t in 0..SHARED_THREADS {
            let (issued, call) = (&issued, &call);
            handles.push(s.spawn(move || -> TestResult {
                for k in t * CALLS..(t + 1) * CALLS {
                    let c = call(sfd, sids, k)?;
                    issued.lock().map_err(|_| "lock")?.push(c);
                }
                Ok(())
            }));
        }
        for o in 0..OWN_FILES {
            let (call, open) = (&call, &open);
            handles.push(s.spawn(move || -> TestResult {
                let (dev, ids) = open()?;
                let fd = dev.as_fd();
                let efd = eventfd()?;
                set_eventfd(fd, efd.as_raw_fd(), 0).map_err(|e| fail("SET_EVENTFD", e))?;
                let ep = Epoll::new(fd, libc::EPOLLIN as u32)?;
                let first = (SHARED_THREADS + o) * CALLS;
                let calls: Vec<_> = (first..first + CALLS)
                    .map(|k| call(fd, ids, k))
                    .collect::<Result<_, _>>()?;
                let what = format!("own file {o}");
                // epoll wakes up for the first completion...
                let ev = ep.wait(30_000)?;
                if ev & libc::EPOLLIN as u32 == 0 {
                    return Err(format!("{what}: epoll_wait gave {ev:#x}, want EPOLLIN"));
                }
                wait_for("the completions", Duration::from_secs(60), || {
                    Ok(stats(fd)?.async_in_flight == 0)
                })?;
                let s = stats(fd)?;
                if s.completions_queued != CALLS as u64 {
                    return Err(format!("{what}: {s:?}, want {CALLS} completions queued"));
                }
                expect_poll(fd, true, true, &format!("{what}, {CALLS} records queued"))?;
                // ...and reports it as long as records are queued.
                let one = read_once(fd, 2 * REC - 1, Duration::from_secs(10))
                    .map_err(|e| read_fail("read of one record", e))?;
                if one.len() != 1 {
                    return Err(format!(
                        "{what}: a {}-byte read gave {} records",
                        2 * REC - 1,
                        one.len()
                    ));
                }
                if ep.wait(0)? & libc::EPOLLIN as u32 == 0 {
                    return Err(format!("{what}: no EPOLLIN with records left"));
                }
                let mut recs = one;
                recs.extend(collect(fd, CALLS - 1, Duration::from_secs(60))?);
                match_records(&recs, &calls, &what)?;
                expect_poll(fd, false, true, &format!("{what}, all read"))?;
                if ep.wait(0)? != 0 {
                    return Err(format!("{what}: epoll reports events with nothing queued"));
                }
                expect_drained(fd, &what)?;
                eventfd_expect(efd.as_fd(), CALLS as u64, &what)?;
                let s = stats(fd)?;
                if s.calls != CALLS as u64 || s.completions != CALLS as u64 || s.pages_pinned != 0 {
                    return Err(format!("{what}: {s:?}"));
                }
                Ok(())
            }));
        }
        // This thread reads the shared file's records while they come.
        let want = SHARED_THREADS * CALLS;
        let end = Instant::now() + Duration::from_secs(120);
        let mut recs = Vec::new();
        while recs.len() < want && Instant::now() < end {
            match read_once(sfd, 5 * REC + 7, Duration::from_secs(60)) {
                Ok(r) if r.is_empty() => std::thread::sleep(Duration::from_millis(10)),
                Ok(r) if r.len() > 5 => {
                    return Err(format!("{} records in {} bytes", r.len(), 5 * REC + 7))
                }
                Ok(r) => recs.extend(r),
                Err(libc::EINTR) => break,
                Err(e) => return Err(read_fail("read of the shared file", e)),
            }
        }
        for h in handles {
            h.join().map_err(|_| "thread panicked".to_string())??;
        }
        Ok(recs)
    })?;
    let issued = issued.into_inner().map_err(|_| "lock")?;
    match_records(&shared_recs, &issued, "shared file")?;
    expect_drained(sfd, "shared file")?;
    eventfd_expect(efd.as_fd(), issued.len() as u64, "shared file")?;
    let s = stats(sfd)?;
    let packets: u64 = issued.iter().map(|(_, w)| w.packets).sum();
    if s.calls != issued.len() as u64
        || s.completions != issued.len() as u64
        || s.packets != packets
        || s.async_in_flight != 0
        || s.completions_queued != 0
        || s.pages_pinned != 0
    {
        return Err(format!("shared file: {s:?}"));
    }

    // Every datagram of every call reached both receivers, once.
    let mut want: Vec<&[u8]> = datas.iter().flat_map(|d| d.chunks(PAYLOAD)).collect();
    want.sort_unstable();
    for (i, got) in net::join_all(rx)?.into_iter().enumerate() {
        let mut have: Vec<&[u8]> = got.datagrams.iter().map(Vec::as_slice).collect();
        have.sort_unstable();
        if have != want {
            return Err(format!(
                "receiver {i}: {} datagrams, {} bytes; want {} datagrams, {total} bytes",
                have.len(),
                got.bytes(0).len(),
                want.len()
            ));
        }
    }
    Ok(())
}

/// `MDW_IOC_SET_EVENTFD`: its errors, one count per completion, replacing
/// and stopping; a closed eventfd is harmless. The 48-byte WRITEV struct of
/// the first ABI still works asynchronously, with cookie 0.
pub(crate) fn async_eventfd() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let (dev, d) = open_with(&c)?;
    let fd = dev.as_fd();
    let data = pattern(5000, 91);
    let entries = [plain(d, &data)];
    let e1 = eventfd()?;
    let e2 = eventfd()?;
    let mut p = [0i32; 2];
    // SAFETY: pipe2 writes two fds into `p`; closed below.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err("pipe2".into());
    }
    // SAFETY: the pipe's ends are ours.
    let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    expect_errno(
        "SET_EVENTFD of a closed fd",
        set_eventfd(fd, 9999, 0),
        libc::EBADF,
    )?;
    expect_errno("SET_EVENTFD of fd -2", set_eventfd(fd, -2, 0), libc::EBADF)?;
    expect_errno(
        "SET_EVENTFD of a pipe",
        set_eventfd(fd, pr.as_raw_fd(), 0),
        libc::EINVAL,
    )?;
    expect_errno(
        "SET_EVENTFD of the mdwrite file itself",
        set_eventfd(fd, fd.as_raw_fd(), 0),
        libc::EINVAL,
    )?;
    expect_errno(
        "SET_EVENTFD with flags 1",
        set_eventfd(fd, e1.as_raw_fd(), 1),
        libc::EINVAL,
    )?;
    drop((pr, pw));

    let mut calls = Vec::new();
    let mut next = 1u64;
    let mut batch = |n: usize, calls: &mut Vec<(u64, MdwWritev)>| -> TestResult {
        for _ in 0..n {
            let w = writev_ok(fd, &entries, MDW_WRITE_ASYNC, next, "asynchronous call")?;
            calls.push((next, w));
            next += 1;
        }
        wait_for("completions", Duration::from_secs(60), || {
            Ok(stats(fd)?.async_in_flight == 0)
        })
    };
    // The refused settings left none: nothing counted.
    batch(2, &mut calls)?;
    let counts = (eventfd_take(e1.as_fd())?, eventfd_take(e2.as_fd())?);
    if counts != (0, 0) {
        return Err(format!("eventfds counted {counts:?} before any was set"));
    }
    set_eventfd(fd, e1.as_raw_fd(), 0).map_err(|e| fail("SET_EVENTFD e1", e))?;
    batch(5, &mut calls)?;
    eventfd_expect(e1.as_fd(), 5, "e1 after 5 calls")?;
    eventfd_expect(e2.as_fd(), 0, "e2 (not set) after 5 calls")?;
    set_eventfd(fd, e2.as_raw_fd(), 0).map_err(|e| fail("SET_EVENTFD e2", e))?;
    batch(3, &mut calls)?;
    eventfd_expect(e2.as_fd(), 3, "e2 after replacing e1 and 3 calls")?;
    eventfd_expect(e1.as_fd(), 0, "e1 after it was replaced")?;
    set_eventfd(fd, -1, 0).map_err(|e| fail("SET_EVENTFD -1", e))?;
    batch(2, &mut calls)?;
    std::thread::sleep(Duration::from_millis(200));
    eventfd_expect(e1.as_fd(), 0, "e1 after SET_EVENTFD -1")?;
    eventfd_expect(e2.as_fd(), 0, "e2 after SET_EVENTFD -1")?;
    // The module keeps its own reference: closing ours is harmless.
    let e3 = eventfd()?;
    set_eventfd(fd, e3.as_raw_fd(), 0).map_err(|e| fail("SET_EVENTFD e3", e))?;
    drop(e3);
    batch(2, &mut calls)?;
    let recs = collect(fd, calls.len(), Duration::from_secs(60))?;
    match_records(&recs, &calls, "eventfd calls")?;
    expect_drained(fd, "eventfd calls")?;

    // The first ABI's 48-byte struct: its cookie reads as 0.
    let mut w = MdwWritev {
        entries: entries.as_ptr() as u64,
        count: 1,
        entry_size: size_of::<MdwEntry>() as u32,
        flags: MDW_WRITE_ASYNC,
        cookie: 0xdead_beef,
        ..Default::default()
    };
    let old = ioc::encode(
        ioc::READ | ioc::WRITE,
        MDW_IOC_WRITEV_NR,
        MDW_WRITEV_SIZE_VER0,
    );
    ioctl(fd, old, ptr(&mut w)).map_err(|e| fail("48-byte asynchronous WRITEV", e))?;
    if w.packets == 0 || w.cookie != 0xdead_beef {
        return Err(format!(
            "48-byte WRITEV: packets {}, cookie field now {:#x} (beyond the caller's struct)",
            w.packets, w.cookie
        ));
    }
    let recs = collect(fd, 1, Duration::from_secs(60))?;
    if recs[0].cookie != 0 || recs[0].packets != w.packets {
        return Err(format!(
            "completion of a 48-byte WRITEV: {:?}, want cookie 0",
            recs[0]
        ));
    }
    expect_drained(fd, "after the 48-byte call")
}

/// Back-pressure and `read()`: at most `MDW_MAX_ASYNC` calls in flight plus
/// completions unread; the next asynchronous call fails with EAGAIN and
/// sends nothing, EPOLLOUT is clear until records are read; every call's
/// record comes exactly once. `read()`: EINVAL below 32 bytes, EAGAIN with
/// O_NONBLOCK while in flight, blocking until the completion, whole records
/// only, EFAULT without losing a record, 0 with nothing in flight; `write()`
/// gives EINVAL.
pub(crate) fn async_backpressure() -> TestResult {
    let (_topo, c) = topo::dummy_sender(Some(HOLD_MS))?;
    let (dev, d) = open_with(&c)?;
    let fd = dev.as_fd();
    let data = pattern(1000, 101);
    let one = [plain(d, &data)];
    let held = MDW_WRITE_ASYNC | MDW_WRITE_QDISC;
    let hold = Duration::from_millis(HOLD_MS);

    // --- read() and write() on one call in flight.
    let mut small = [0u8; REC - 1];
    expect_errno(
        "read of 31 bytes, nothing in flight",
        read_raw(fd, &mut small).map(|n| n as i32),
        libc::EINVAL,
    )?;
    expect_drained(fd, "new file")?;
    // SAFETY: writes 32 bytes from a valid buffer.
    let wr = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), REC) };
    let wr_errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    expect_errno(
        "write()",
        if wr < 0 { Err(wr_errno) } else { Ok(wr as i32) },
        libc::EINVAL,
    )?;
    let t0 = Instant::now();
    let w = writev_ok(fd, &one, held, 1, "one held call")?;
    let queued_in = t0.elapsed();
    if queued_in >= hold / 2 {
        return Err(format!(
            "an asynchronous call took {queued_in:?} to return with netem holding packets {hold:?}"
        ));
    }
    let s = stats(fd)?;
    if s.async_in_flight != 1 || s.completions_queued != 0 || s.pages_pinned == 0 {
        return Err(format!(
            "one held call: {s:?}, want 1 in flight, pages pinned"
        ));
    }
    expect_poll(fd, false, true, "one call in flight")?;
    expect_errno(
        "read of 31 bytes, a call in flight",
        read_raw(fd, &mut small).map(|n| n as i32),
        libc::EINVAL,
    )?;
    set_nonblock(fd, true)?;
    let mut buf = [0u8; 4 * REC];
    let r = read_raw(fd, &mut buf).map(|n| n as i32);
    set_nonblock(fd, false)?;
    expect_errno("O_NONBLOCK read with a call in flight", r, libc::EAGAIN)?;
    let recs = read_once(fd, 4 * REC, hold * 30).map_err(|e| read_fail("blocking read", e))?;
    let waited = t0.elapsed();
    match_records(&recs, &[(1, w)], "one held call")?;
    if waited < hold * 9 / 10 {
        return Err(format!(
            "the completion came {waited:?} after the call, before netem released the packet ({hold:?})"
        ));
    }
    expect_drained(fd, "after one held call")?;
    let s = stats(fd)?;
    if s.pages_pinned != 0 || s.async_in_flight != 0 {
        return Err(format!("after one held call: {s:?}"));
    }

    // --- MDW_MAX_ASYNC calls.
    let max = MDW_MAX_ASYNC as u64;
    let epin = Epoll::new(fd, libc::EPOLLIN as u32)?;
    let epout = Epoll::new(fd, libc::EPOLLOUT as u32)?;
    if epout.wait(0)? & libc::EPOLLOUT as u32 == 0 {
        return Err("no EPOLLOUT on an idle file".into());
    }
    let mut calls = Vec::new();
    for k in 0..max {
        let cookie = 1000 + k;
        let w = writev_ok(fd, &one, held, cookie, &format!("held call {k}"))?;
        calls.push((cookie, w));
    }
    let before = stats(fd)?;
    if before.async_in_flight + before.completions_queued != max {
        return Err(format!("{max} calls: {before:?}"));
    }
    let (r, w) = writev(fd, &one, held, 0xeeee);
    expect_errno(
        &format!("asynchronous call past {max} in flight"),
        r,
        libc::EAGAIN,
    )?;
    if w.packets != 0 || w.bytes != 0 || w.error != -libc::EAGAIN {
        return Err(format!("the refused call reports {w:?}"));
    }
    let after = stats(fd)?;
    if after.calls != before.calls || after.packets != before.packets {
        return Err(format!(
            "the refused call sent something: {before:?} then {after:?}"
        ));
    }
    let r = poll_now(fd)?;
    if r & (libc::POLLOUT | libc::POLLWRNORM) != 0 {
        return Err(format!(
            "poll revents {r:#x} with {max} calls in flight: POLLOUT set"
        ));
    }
    if epout.wait(0)? != 0 {
        return Err("EPOLLOUT while full".into());
    }
    // Woken up by the completions, which fill the file as unread records.
    let ev = epin.wait(30_000)?;
    if ev & libc::EPOLLIN as u32 == 0 {
        return Err(format!("epoll_wait for EPOLLIN gave {ev:#x}"));
    }
    wait_for("every held call's completion", hold * 30, || {
        Ok(stats(fd)?.async_in_flight == 0)
    })?;
    let s = stats(fd)?;
    if s.completions_queued != max {
        return Err(format!("all completed: {s:?}, want {max} queued"));
    }
    expect_poll(fd, true, false, "full of unread completions")?;
    let (r, _) = writev(fd, &one, held, 0xeeef);
    expect_errno(
        "asynchronous call with MDW_MAX_ASYNC completions unread",
        r,
        libc::EAGAIN,
    )?;
    // Synchronous calls are not limited.
    writev_ok(fd, &one, 0, 0, "synchronous call while full")?;
    // A read with room for 3.97 records takes 3.
    let mut recs = read_once(fd, 4 * REC - 1, Duration::from_secs(10))
        .map_err(|e| read_fail("read of 127 bytes", e))?;
    if recs.len() != 3 {
        return Err(format!(
            "a {}-byte read gave {} records",
            4 * REC - 1,
            recs.len()
        ));
    }
    expect_poll(fd, true, true, "3 records read")?;
    if epout.wait(0)? & libc::EPOLLOUT as u32 == 0 {
        return Err("no EPOLLOUT after reading 3 records".into());
    }
    // EFAULT loses nothing.
    // SAFETY: a read into an address that is not mapped; the kernel fails
    // it with EFAULT.
    let r = unsafe { libc::read(fd.as_raw_fd(), 8 as *mut libc::c_void, 4 * REC) };
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    expect_errno(
        "read into a bad pointer",
        if r < 0 { Err(e) } else { Ok(r as i32) },
        libc::EFAULT,
    )?;
    let s = stats(fd)?;
    if s.completions_queued != max - 3 {
        return Err(format!(
            "after an EFAULT read: {} records queued, want {}",
            s.completions_queued,
            max - 3
        ));
    }
    recs.extend(collect(fd, (max - 3) as usize, Duration::from_secs(60))?);
    match_records(&recs, &calls, "held calls")?;
    expect_drained(fd, "after all held calls")?;
    let s = stats(fd)?;
    if s.async_in_flight != 0 || s.completions_queued != 0 || s.pages_pinned != 0 {
        return Err(format!("at the end: {s:?}"));
    }
    Ok(())
}

/// UNREGISTER with calls from the buffer in flight: it succeeds and the id
/// is gone at once, but the pages stay pinned (and the data intact after
/// the user's munmap) until the last completion; the receiver gets the
/// buffer byte-exact.
pub(crate) fn buf_unregister_in_flight() -> TestResult {
    let topo = Topology::new(1)?;
    topo::netem(&topo.sender, "s0", HOLD_MS)?;
    let m = Mapping::new(9, 111)?;
    let (off, len) = (100usize, 7 * PAGE + 50);
    let want = m.bytes()[off..off + len].to_vec();
    let rx = net::receiver(
        &topo.receivers[0].ns,
        false,
        net::BASE_PORT,
        len,
        0,
        RX_TIMEOUT,
    )?;
    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let (dev, d) = open_with(&config(&topo, ifindex, 0, false))?;
    let fd = dev.as_fd();
    let base_pins = foll_pins()?;
    let id = register_ok(fd, m.at(off), len as u64, "buffer")?;
    let pages = spanned(m.at(off), len as u64);
    let held = MDW_WRITE_ASYNC | MDW_WRITE_QDISC;
    let parts: [&[MdwEntry]; 3] = [
        &[from_buf(d, id, 0, 10_000)],
        &[from_buf(d, id, 10_000, 8000), from_buf(d, id, 18_000, 3000)],
        &[from_buf(d, id, 21_000, len as u64 - 21_000)],
    ];
    let calls: Vec<(u64, MdwWritev)> = parts
        .iter()
        .enumerate()
        .map(|(k, e)| {
            Ok((
                k as u64 + 1,
                writev_ok(fd, e, held, k as u64 + 1, "held call")?,
            ))
        })
        .collect::<Result<_, String>>()?;
    unregister(fd, id).map_err(|e| fail("UNREGISTER with calls in flight", e))?;
    let s = stats(fd)?;
    if s.async_in_flight != 3 {
        return Err(format!(
            "right after UNREGISTER: {s:?}; netem ({HOLD_MS} ms) should still hold all 3 calls"
        ));
    }
    if s.pages_pinned != pages {
        return Err(format!(
            "unregistered with calls in flight: pages_pinned {}, want {pages}",
            s.pages_pinned
        ));
    }
    writev_fails(
        fd,
        &[from_buf(d, id, 0, 10)],
        0,
        libc::ENOENT,
        0,
        "entry naming the unregistered buffer",
    )?;
    expect_errno("UNREGISTER again", unregister(fd, id), libc::ENOENT)?;
    // The user's mapping goes away; the module's pins keep the pages.
    m.unmap();
    let s = stats(fd)?;
    if s.pages_pinned != pages && s.async_in_flight > 0 {
        return Err(format!(
            "after munmap, calls in flight: pages_pinned {}, want {pages}",
            s.pages_pinned
        ));
    }
    let recs = collect(fd, 3, Duration::from_millis(HOLD_MS) * 30)?;
    match_records(&recs, &calls, "calls from the unregistered buffer")?;
    wait_for(
        "the unpin after the last completion",
        Duration::from_secs(5),
        || Ok(stats(fd)?.pages_pinned == 0),
    )?;
    expect_drained(fd, "after the completions")?;
    let got = rx.join().map_err(|_| "receiver panicked")??;
    let bytes = got.bytes(0);
    if bytes != want {
        let at = bytes
            .iter()
            .zip(&want)
            .position(|(x, y)| x != y)
            .unwrap_or(bytes.len().min(want.len()));
        return Err(format!(
            "receiver: {} bytes, want {}; first difference at {at}",
            bytes.len(),
            want.len()
        ));
    }
    drop(dev);
    pins_balance(base_pins, Duration::from_secs(30), "pins after close")
}

/// Netem delay of the close and unload tests.
const LONG_HOLD_MS: u64 = 3000;

/// Closing the file or exiting with calls in flight returns at once; the
/// pins and the memlock charge are released when the device lets go of
/// the packets (the charge is the uid's: another process of that uid gets
/// the whole budget back).
pub(crate) fn async_close_in_flight() -> TestResult {
    let (_topo, c) = topo::dummy_sender(Some(LONG_HOLD_MS))?;
    let hold = Duration::from_millis(LONG_HOLD_MS);
    let limit = LIMIT_PAGES * PAGE as u64;
    let m = Mapping::new(60, 121)?;
    let held = MDW_WRITE_ASYNC | MDW_WRITE_QDISC;
    let base_pins = foll_pins()?;

    // A process exits without reading or unregistering.
    let started = Instant::now();
    let (_, reaped) = in_child(|| {
        let (dev, d) = open_with(&c)?;
        let fd = dev.as_fd();
        become_user(61011, false, limit)?;
        let id = register_ok(fd, m.at(0), 30 * PAGE as u64, "30 pages")?;
        for k in 0..4 {
            writev_ok(
                fd,
                &[from_buf(d, id, (k * 7 * PAGE) as u64, 7 * PAGE as u64)],
                held,
                k as u64,
                "held call from the buffer",
            )?;
        }
        let plain_pages = &m.bytes()[30 * PAGE..50 * PAGE];
        writev_ok(
            fd,
            &[plain(d, plain_pages)],
            held,
            9,
            "held call of 20 plain pages",
        )?;
        let s = stats(fd)?;
        if s.async_in_flight != 5 || s.pages_pinned != 50 {
            return Err(format!(
                "before exit: {s:?}, want 5 in flight, 50 pages pinned"
            ));
        }
        Ok(String::new())
    })?;
    let exited = started.elapsed();
    if reaped > hold / 2 {
        return Err(format!(
            "exit with calls in flight took {reaped:?} (netem holds them {hold:?}): it waited"
        ));
    }
    // The charge (30 + 2 and 20 + 2 pages) is still held while netem holds
    // the packets, then comes back whole.
    let (report, _) = in_child(|| {
        let (dev, _) = open_with(&c)?;
        let fd = dev.as_fd();
        become_user(61011, false, limit)?;
        let first = register(fd, m.at(0), 60 * PAGE as u64);
        let t = Instant::now();
        let mut last = first;
        wait_for(
            "the exited process's memlock charge",
            Duration::from_secs(60),
            || {
                if last.is_err() {
                    last = register(fd, m.at(0), 60 * PAGE as u64);
                }
                Ok(last.is_ok())
            },
        )
        .map_err(|e| format!("{e}: {}", errno_name(last.err().unwrap_or(0))))?;
        Ok(format!(
            "{}:{}",
            first.err().unwrap_or(0),
            t.elapsed().as_millis()
        ))
    })?;
    let (first, _) = report.split_once(':').unwrap_or(("0", "0"));
    let first: i32 = first.parse().unwrap_or(0);
    if exited < hold / 2 && first != libc::ENOBUFS {
        return Err(format!(
            "{:?} after the calls, with netem holding them, the exited process's charge was already gone ({}); it must last until the device releases the pages",
            exited,
            if first == 0 { "registration succeeded".to_string() } else { errno_name(first) }
        ));
    }
    pins_balance(
        base_pins,
        Duration::from_secs(60),
        "pins of the exited process",
    )?;

    // close() with calls in flight.
    let base_pins = foll_pins()?;
    let (dev, d) = open_with(&c)?;
    for k in 0..3 {
        let data = &m.bytes()[k * 10 * PAGE..(k + 1) * 10 * PAGE];
        writev_ok(dev.as_fd(), &[plain(d, data)], held, k as u64, "held call")?;
    }
    let s = stats(dev.as_fd())?;
    if s.async_in_flight != 3 || s.pages_pinned != 30 {
        return Err(format!(
            "before close: {s:?}, want 3 in flight, 30 pages pinned"
        ));
    }
    let t = Instant::now();
    drop(dev);
    let closing = t.elapsed();
    if closing > hold / 2 {
        return Err(format!(
            "close with calls in flight took {closing:?} (netem holds them {hold:?}): it waited"
        ));
    }
    pins_balance(
        base_pins,
        Duration::from_secs(60),
        "pins of the closed file",
    )
}

/// Module unload with calls of an exited process still in flight: rmmod
/// waits for them and succeeds, and the module loads again.
pub(crate) fn async_unload_in_flight() -> TestResult {
    let moddir = std::env::var("MDW_MODDIR").map_err(|_| "MDW_MODDIR is not set")?;
    let (_topo, c) = topo::dummy_sender(Some(LONG_HOLD_MS))?;
    let hold = Duration::from_millis(LONG_HOLD_MS);
    let m = Mapping::new(16, 131)?;
    let held = MDW_WRITE_ASYNC | MDW_WRITE_QDISC;
    let base_pins = foll_pins()?;
    let queued = Instant::now();
    in_child(|| {
        let (dev, d) = open_with(&c)?;
        let fd = dev.as_fd();
        let id = register_ok(fd, m.at(10), 8 * PAGE as u64, "buffer")?;
        for k in 0..4u64 {
            writev_ok(
                fd,
                &[from_buf(d, id, k * 2 * PAGE as u64, 2 * PAGE as u64)],
                held,
                k,
                "held buffer call",
            )?;
            writev_ok(
                fd,
                &[plain(d, &m.bytes()[8 * PAGE..16 * PAGE])],
                held,
                10 + k,
                "held plain call",
            )?;
        }
        let s = stats(fd)?;
        if s.async_in_flight != 8 {
            return Err(format!("before exit: {s:?}, want 8 in flight"));
        }
        Ok(String::new())
    })?;
    let since = queued.elapsed();
    let t = Instant::now();
    let out = Command::new("rmmod")
        .arg("mdwrite")
        .output()
        .map_err(|e| format!("rmmod: {e}"))?;
    let took = t.elapsed();
    let mut result: TestResult = Ok(());
    if !out.status.success() {
        result = Err(format!(
            "rmmod with an exited process's calls in flight ({since:?} into a {hold:?} hold) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        // Unload anyway once they are done, so later tests get a fresh module.
        let _ = wait_for("rmmod", Duration::from_secs(60), || {
            Ok(Command::new("rmmod")
                .arg("mdwrite")
                .status()
                .is_ok_and(|s| s.success()))
        });
    } else if since + took + Duration::from_millis(300) < hold {
        result = Err(format!(
            "rmmod returned {:?} after the calls were queued, before netem released their packets ({hold:?}): it did not wait",
            since + took
        ));
    }
    if std::path::Path::new("/dev/mdwrite").exists() && result.is_ok() {
        result = Err("/dev/mdwrite still exists after rmmod".into());
    }
    // Any late release would hit the unloaded module now.
    std::thread::sleep(hold.saturating_sub(queued.elapsed()) + Duration::from_secs(1));
    run(&["insmod", &format!("{moddir}/mdwrite.ko")])?;
    wait_for("/dev/mdwrite", Duration::from_secs(10), || {
        Ok(std::path::Path::new("/dev/mdwrite").exists())
    })?;
    Device::open()
        .and_then(|d| d.info())
        .map_err(|e| format!("the reloaded module: {e}"))?;
    result?;
    pins_balance(base_pins, Duration::from_secs(30), "pins after unload")
}
