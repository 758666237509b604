// SPDX-License-Identifier: GPL-2.0

//! Fault injection (debug kernel: `FAILSLAB`, `FAIL_PAGE_ALLOC`,
//! `FAULT_INJECTION_USERCOPY`), systematic as syzkaller does it: for each
//! operation (`DEST_ADD`, `WRITEV` synchronous, asynchronous, through the
//! qdisc and from a registered buffer, `BUF_REGISTER`) and each n = 1, 2,
//! ..., the n-th allocation or user copy of that one system call fails
//! (`/proc/thread-self/fail-nth`), until a run of the call gets past all
//! of them. Every run either succeeds or returns a documented errno (a
//! partial send a documented `error`); every accepted asynchronous call
//! completes; nothing stays pinned. The runner's dmesg and kmemleak checks
//! judge the rest (a WARN, a leak).
//!
//! Faults are armed for exactly one raw `ioctl` of this thread at a time:
//! with them on for longer, the test's own memory allocations (`brk`,
//! `mmap`) and writes fail and the test process dies silently, which is
//! what a probability-based first version of this test did.

use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{
        MdwBufReg, MdwBufUnreg, MdwCompletion, MdwDest, MdwDestDel, MdwEntry, MdwWritev,
        MDW_ENTRY_BUF, MDW_IOC_BUF_REGISTER, MDW_IOC_BUF_UNREGISTER, MDW_IOC_DEST_ADD,
        MDW_IOC_DEST_DEL, MDW_IOC_WRITEV, MDW_WRITE_ASYNC, MDW_WRITE_QDISC,
    },
    Device,
};

use crate::{
    async_buf::Mapping,
    errors::foll_pins,
    raw::{errno_name, ioctl},
    topo, TestResult,
};

const DEBUGFS: &str = "/sys/kernel/debug";
/// The fault-injection points: slab allocations, page allocations of any
/// order, user copies. Each may be failed when its turn comes.
const POINTS: [&str; 3] = ["failslab", "fail_page_alloc", "fail_usercopy"];
/// More fault points than any one call passes (a 64 KiB call to two
/// destinations passes about a hundred): a run that is still failing
/// there is reported rather than looped on.
const MAX_POINTS: u32 = 2000;

/// Errnos `Documentation/uapi.rst` allows when memory or a user copy
/// fails, besides success.
const DEST_ADD_OK: &[i32] = &[libc::ENOMEM, libc::EFAULT];
const WRITEV_OK: &[i32] = &[libc::ENOMEM, libc::EFAULT, libc::ENOBUFS];
const BUF_OK: &[i32] = &[libc::ENOMEM, libc::EFAULT, libc::ENOBUFS];

fn write(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

/// The fault points set up for `fail-nth` (any gfp, any order, silent);
/// their defaults come back on drop.
struct Points;

impl Points {
    fn set_up() -> Result<Self, String> {
        let p = Points;
        for point in POINTS {
            let dir = format!("{DEBUGFS}/{point}");
            // No random failures anywhere: only the n-th point of the
            // armed call fails.
            write(&format!("{dir}/probability"), "0")?;
            // Reports of the injected faults would look like bugs in the
            // kernel log (a stack dump) to the dmesg check.
            write(&format!("{dir}/verbose"), "0")?;
            for knob in ["ignore-gfp-wait", "ignore-gfp-highmem"] {
                let path = format!("{dir}/{knob}");
                if Path::new(&path).exists() {
                    write(&path, "N")?;
                }
            }
            let min_order = format!("{dir}/min-order");
            if Path::new(&min_order).exists() {
                write(&min_order, "0")?;
            }
        }
        Ok(p)
    }
}

impl Drop for Points {
    fn drop(&mut self) {
        for point in POINTS {
            let dir = format!("{DEBUGFS}/{point}");
            let _ = write(&format!("{dir}/verbose"), "2");
            for knob in ["ignore-gfp-wait", "ignore-gfp-highmem"] {
                let _ = write(&format!("{dir}/{knob}"), "Y");
            }
            let _ = write(&format!("{dir}/min-order"), "1");
        }
    }
}

/// This thread's `fail-nth`: arms the n-th fault point of its next system
/// call; says afterwards whether the call reached it.
struct FailNth {
    file: File,
}

impl FailNth {
    fn open() -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .map_err(|e| format!("/proc/thread-self/fail-nth: {e}"))?;
        Ok(Self { file })
    }

    fn pwrite(&self, text: &[u8]) -> Result<(), String> {
        // SAFETY: `text` is readable for its length.
        let n = unsafe { libc::pwrite(self.file.as_raw_fd(), text.as_ptr().cast(), text.len(), 0) };
        if n < 0 {
            return Err(format!("fail-nth: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Fails the `n`-th fault point of this thread's next system call.
    /// The caller makes that call at once, allocating nothing before it.
    fn arm(&self, n: u32) -> Result<(), String> {
        let mut buf = [0u8; 16];
        let text = format_u32(n, &mut buf);
        self.pwrite(text)
    }

    /// Whether the armed fault was injected; disarms it either way.
    fn injected(&self) -> Result<bool, String> {
        let mut buf = [0u8; 16];
        // SAFETY: `buf` is writable for its length.
        let n =
            unsafe { libc::pread(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        // The read copies out after sampling: it may itself consume the
        // still armed fault (EFAULT), which means the call did not.
        let left = match n {
            n if n > 0 => std::str::from_utf8(&buf[..n as usize])
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or("fail-nth: unreadable value")?,
            _ => 1,
        };
        // Disarming copies from user space too: while the fault is still
        // armed, that copy may be the point that fails (EFAULT). After
        // it, nothing is armed and the next try goes through.
        let mut disarmed = self.pwrite(b"0");
        for _ in 0..3 {
            if disarmed.is_ok() {
                break;
            }
            disarmed = self.pwrite(b"0");
        }
        disarmed?;
        Ok(left == 0)
    }
}

/// `n` in decimal, without allocating.
fn format_u32(mut n: u32, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Reads the completion records queued now; the first bad one's error.
fn drain(fd: BorrowedFd<'_>) -> Result<Option<i32>, String> {
    let mut buf = [MdwCompletion::default(); 16];
    loop {
        // SAFETY: `buf` is writable for its size.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                std::mem::size_of_val(&buf),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(None);
            }
            return Err(format!("read completions: {e}"));
        }
        if n == 0 {
            return Ok(None);
        }
        for c in &buf[..n as usize / size_of::<MdwCompletion>()] {
            if c.error != 0 && !WRITEV_OK.contains(&-c.error) {
                return Ok(Some(-c.error));
            }
        }
    }
}

/// What one operation did over all its runs.
#[derive(Default)]
struct Tally {
    /// Fault points the call passed (the runs that had one injected).
    points: u32,
    failed: u32,
    partial: u32,
}

/// One operation under test: issues its ioctl (arming nothing itself),
/// then undoes what a successful run set up, with faults off.
trait Op {
    const NAME: &'static str;
    const ALLOWED: &'static [i32];
    /// The raw ioctl; `Ok(partial error)` on success.
    fn call(&mut self, fd: BorrowedFd<'_>) -> Result<Option<i32>, i32>;
    /// Undoes a successful run (faults off).
    fn undo(&mut self, dev: &Device) -> Result<(), String>;
}

/// Runs `op` once per fault point, with that point failed, then once more
/// past all of them.
fn systematic<O: Op>(dev: &Device, fail: &FailNth, op: &mut O) -> Result<Tally, String> {
    let fd = dev.as_fd();
    let mut t = Tally::default();
    for n in 1..=MAX_POINTS {
        fail.arm(n)?;
        let r = op.call(fd);
        let injected = fail.injected()?;
        match r {
            Ok(partial) => {
                if let Some(e) = partial {
                    t.partial += 1;
                    if !O::ALLOWED.contains(&e) {
                        return Err(format!(
                            "{} with fault point {n} failed: partial send with error {}, \
                             not a documented errno",
                            O::NAME,
                            errno_name(e)
                        ));
                    }
                }
                op.undo(dev)?;
            }
            Err(e) if !injected => {
                return Err(format!(
                    "{} failed with {} with no fault injected",
                    O::NAME,
                    errno_name(e)
                ));
            }
            Err(e) if !O::ALLOWED.contains(&e) => {
                return Err(format!(
                    "{} with fault point {n} failed: {}, not a documented errno",
                    O::NAME,
                    errno_name(e)
                ));
            }
            Err(_) => t.failed += 1,
        }
        // Asynchronous calls: every completion documented, none left.
        settle(dev, O::NAME, n)?;
        if !injected {
            t.points = n - 1;
            return Ok(t);
        }
    }
    Err(format!(
        "{} still reached a fault point after {MAX_POINTS} runs",
        O::NAME
    ))
}

/// Waits until the file has no asynchronous call in flight and no
/// completion unread; checks each record's error.
fn settle(dev: &Device, name: &str, n: u32) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = drain(dev.as_fd())? {
            return Err(format!(
                "{name} with fault point {n}: completion with error {}, not a documented errno",
                errno_name(e)
            ));
        }
        let s = dev.stats().map_err(|e| e.to_string())?;
        if s.async_in_flight == 0 && s.completions_queued == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} with fault point {n}: asynchronous calls still pending after 30 s: {s:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct DestAdd {
    req: MdwDest,
    added: Option<u32>,
}

impl Op for DestAdd {
    const NAME: &'static str = "DEST_ADD";
    const ALLOWED: &'static [i32] = DEST_ADD_OK;
    fn call(&mut self, fd: BorrowedFd<'_>) -> Result<Option<i32>, i32> {
        let mut req = self.req;
        ioctl(fd, MDW_IOC_DEST_ADD, &mut req as *mut MdwDest as usize)?;
        self.added = Some(req.handle);
        Ok(None)
    }
    fn undo(&mut self, dev: &Device) -> Result<(), String> {
        if let Some(handle) = self.added.take() {
            let mut del = MdwDestDel { handle, flags: 0 };
            ioctl(
                dev.as_fd(),
                MDW_IOC_DEST_DEL,
                &mut del as *mut MdwDestDel as usize,
            )
            .map_err(|e| format!("DEST_DEL: {}", errno_name(e)))?;
        }
        Ok(())
    }
}

struct Writev<'a> {
    name: &'static str,
    entries: &'a [MdwEntry],
    flags: u32,
}

impl Op for Writev<'_> {
    const NAME: &'static str = "WRITEV";
    const ALLOWED: &'static [i32] = WRITEV_OK;
    fn call(&mut self, fd: BorrowedFd<'_>) -> Result<Option<i32>, i32> {
        let mut req = MdwWritev {
            entries: self.entries.as_ptr() as u64,
            count: self.entries.len() as u32,
            entry_size: size_of::<MdwEntry>() as u32,
            flags: self.flags,
            ..Default::default()
        };
        ioctl(fd, MDW_IOC_WRITEV, &mut req as *mut MdwWritev as usize)?;
        Ok((req.error != 0).then_some(-req.error))
    }
    fn undo(&mut self, _: &Device) -> Result<(), String> {
        Ok(())
    }
}

struct BufRegister<'a> {
    region: &'a Mapping,
    id: Option<u32>,
}

impl Op for BufRegister<'_> {
    const NAME: &'static str = "BUF_REGISTER";
    const ALLOWED: &'static [i32] = BUF_OK;
    fn call(&mut self, fd: BorrowedFd<'_>) -> Result<Option<i32>, i32> {
        let mut reg = MdwBufReg {
            addr: self.region.at(0),
            len: self.region.len() as u64,
            ..Default::default()
        };
        ioctl(
            fd,
            MDW_IOC_BUF_REGISTER,
            &mut reg as *mut MdwBufReg as usize,
        )?;
        self.id = Some(reg.id);
        Ok(None)
    }
    fn undo(&mut self, dev: &Device) -> Result<(), String> {
        if let Some(id) = self.id.take() {
            unregister(dev, id)?;
        }
        Ok(())
    }
}

fn unregister(dev: &Device, id: u32) -> Result<(), String> {
    let mut un = MdwBufUnreg { id, flags: 0 };
    ioctl(
        dev.as_fd(),
        MDW_IOC_BUF_UNREGISTER,
        &mut un as *mut MdwBufUnreg as usize,
    )
    .map(|_| ())
    .map_err(|e| format!("BUF_UNREGISTER: {}", errno_name(e)))
}

/// Every operation with each of its fault points failed in turn:
/// documented errnos only, accepted asynchronous calls complete, pins
/// balance.
pub(crate) fn faults_injected() -> TestResult {
    if !Path::new(&format!("{DEBUGFS}/failslab")).exists()
        || !Path::new("/proc/thread-self/fail-nth").exists()
    {
        return Err("skip: no fault injection in this kernel (debug flavour only)".into());
    }
    let (_topo, c) = topo::dummy_sender(None)?;
    let (acq0, rel0) = foll_pins()?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    // SAFETY: F_SETFL on our own fd: completions are drained without
    // blocking.
    unsafe { libc::fcntl(dev.as_fd().as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let a = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let mut c2 = c.clone();
    c2.to.set_port(5001);
    let b = dev.add_destination(&c2).map_err(|e| e.to_string())?;
    // Populated beforehand: the calls under faults take no page fault of
    // their own.
    let data = Mapping::new(32, 21)?;
    let region = Mapping::new(64, 22)?;
    let buf_id = {
        let mut reg = BufRegister {
            region: &region,
            id: None,
        };
        reg.call(dev.as_fd())
            .map_err(|e| format!("BUF_REGISTER: {}", errno_name(e)))?;
        reg.id.take().ok_or("BUF_REGISTER gave no id")?
    };
    // Two destinations: a 64 KiB chunk and one straddling two pages.
    let plain = [
        MdwEntry {
            dest: a.handle(),
            addr: data.at(0),
            len: 64 * 1024,
            ..Default::default()
        },
        MdwEntry {
            dest: b.handle(),
            addr: data.at(0) + 4096 - 700,
            len: 3000,
            ..Default::default()
        },
    ];
    let from_buf = [
        MdwEntry {
            dest: a.handle(),
            flags: MDW_ENTRY_BUF,
            addr: 4096 + 100,
            len: 100_000,
            buf: buf_id,
            ..Default::default()
        },
        MdwEntry {
            dest: b.handle(),
            flags: MDW_ENTRY_BUF,
            addr: 0,
            len: 1472,
            buf: buf_id,
            ..Default::default()
        },
    ];

    let points = Points::set_up()?;
    let fail = FailNth::open()?;
    let mut report = Vec::new();
    let mut dest_add = DestAdd {
        req: dest_abi(&c2, &dev)?,
        added: None,
    };
    let t = systematic(&dev, &fail, &mut dest_add)?;
    report.push(("DEST_ADD", t));
    for (name, entries, flags) in [
        ("WRITEV", &plain, 0),
        ("WRITEV async", &plain, MDW_WRITE_ASYNC),
        ("WRITEV qdisc", &plain, MDW_WRITE_QDISC),
        ("WRITEV buffer", &from_buf, 0),
        ("WRITEV buffer async", &from_buf, MDW_WRITE_ASYNC),
    ] {
        let mut op = Writev {
            name,
            entries,
            flags,
        };
        let t = systematic(&dev, &fail, &mut op).map_err(|e| format!("{}: {e}", op.name))?;
        report.push((name, t));
    }
    let mut reg = BufRegister {
        region: &region,
        id: None,
    };
    let t = systematic(&dev, &fail, &mut reg)?;
    report.push(("BUF_REGISTER", t));
    drop(fail);
    drop(points);

    // Every operation must have met faults and failed on some of them.
    for (name, t) in &report {
        if t.points == 0 || t.failed + t.partial == 0 {
            return Err(format!(
                "{name}: {} fault points, {} runs failed, {} partial: faults were not injected",
                t.points, t.failed, t.partial
            ));
        }
    }
    unregister(&dev, buf_id)?;
    let stats = dev.stats().map_err(|e| e.to_string())?;
    drop(dev);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (acq, rel) = foll_pins()?;
        if acq - acq0 == rel - rel0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pins acquired {} released {} after every file closed (stats before close: {stats:?})",
                acq - acq0,
                rel - rel0
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The `DEST_ADD` struct for `c`, as the library would send it, checked
/// against the library by adding it once without faults.
fn dest_abi(c: &mdwrite::DestConfig, dev: &Device) -> Result<MdwDest, String> {
    let ip = |a: std::net::IpAddr| -> [u8; 16] {
        let mut out = [0u8; 16];
        match a {
            std::net::IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
            std::net::IpAddr::V6(v6) => out = v6.octets(),
        }
        out
    };
    let req = MdwDest {
        ifindex: c.ifindex as i32,
        src_addr: ip(c.from),
        dst_addr: ip(c.to.ip()),
        src_port: c.src_port,
        dst_port: c.to.port(),
        dst_mac: c.dst_mac.unwrap_or_default(),
        ..Default::default()
    };
    let mut probe = DestAdd { req, added: None };
    probe
        .call(dev.as_fd())
        .map_err(|e| format!("DEST_ADD without faults: {}", errno_name(e)))?;
    probe.undo(dev)?;
    Ok(req)
}
