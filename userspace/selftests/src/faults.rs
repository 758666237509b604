// SPDX-License-Identifier: GPL-2.0

//! Fault injection (debug kernel: `FAILSLAB`, `FAIL_PAGE_ALLOC`,
//! `FAULT_INJECTION_USERCOPY`): with allocations and user copies failing at
//! random in the test thread only, every `DEST_ADD`, `WRITEV` (synchronous,
//! asynchronous, from a registered buffer) and `BUF_REGISTER` either
//! succeeds or returns a documented errno; every asynchronous call that
//! was accepted completes; nothing stays pinned. The runner's dmesg and
//! kmemleak checks judge the rest (a WARN, a leak).

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{
        MdwBufReg, MdwBufUnreg, MdwCompletion, MdwEntry, MdwWritev, MDW_ENTRY_BUF,
        MDW_IOC_BUF_REGISTER, MDW_IOC_BUF_UNREGISTER, MDW_IOC_WRITEV, MDW_WRITE_ASYNC,
    },
    Device,
};

use crate::{
    errors::foll_pins,
    raw::{errno_name, ioctl},
    send::pattern,
    topo, TestResult,
};

const DEBUGFS: &str = "/sys/kernel/debug";
/// The fault-injection points used, with the failure probability (%).
const POINTS: [(&str, &str); 3] = [
    ("failslab", "20"),
    ("fail_page_alloc", "20"),
    ("fail_usercopy", "10"),
];
/// Rounds of calls with faults injected.
const ROUNDS: usize = 150;

/// Errnos `Documentation/uapi.rst` allows when memory or a user copy
/// fails, per operation (besides success).
const DEST_ADD_OK: &[i32] = &[libc::ENOMEM, libc::EFAULT];
const WRITEV_OK: &[i32] = &[libc::ENOMEM, libc::EFAULT, libc::ENOBUFS];
const BUF_OK: &[i32] = &[libc::ENOMEM, libc::EFAULT, libc::ENOBUFS];

fn write(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

/// Arms fault injection for the calling thread; disarms it (and the
/// debugfs points) on drop, also when the test fails.
struct Faults {
    tid: i32,
}

impl Faults {
    fn arm() -> Result<Self, String> {
        for (point, probability) in POINTS {
            let dir = format!("{DEBUGFS}/{point}");
            write(&format!("{dir}/task-filter"), "Y")?;
            write(&format!("{dir}/probability"), probability)?;
            write(&format!("{dir}/interval"), "1")?;
            write(&format!("{dir}/times"), "-1")?;
            write(&format!("{dir}/space"), "0")?;
            write(&format!("{dir}/verbose"), "0")?;
            if Path::new(&format!("{dir}/ignore-gfp-wait")).exists() {
                write(&format!("{dir}/ignore-gfp-wait"), "N")?;
            }
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let f = Self { tid };
        f.set(true)?;
        Ok(f)
    }

    /// Turns the thread's faults on or off; retried, since with faults
    /// on the open and the copy of this very write may fail.
    fn set(&self, on: bool) -> Result<(), String> {
        let path = format!("/proc/self/task/{}/make-it-fail", self.tid);
        let mut last = Ok(());
        for _ in 0..1000 {
            last = write(&path, if on { "1" } else { "0" });
            if last.is_ok() {
                break;
            }
        }
        last
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        let _ = self.set(false);
        for (point, _) in POINTS {
            let _ = write(&format!("{DEBUGFS}/{point}/probability"), "0");
            let _ = write(&format!("{DEBUGFS}/{point}/times"), "1");
        }
    }
}

/// What the calls under injected faults did.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    failed: usize,
    async_accepted: usize,
    /// The first errno outside the documented set, and where.
    bad: Option<(&'static str, i32)>,
}

impl Tally {
    fn note(&mut self, what: &'static str, r: Result<i32, i32>, allowed: &[i32]) -> bool {
        match r {
            Ok(_) => {
                self.ok += 1;
                true
            }
            Err(e) => {
                self.failed += 1;
                if !allowed.contains(&e) && self.bad.is_none() {
                    self.bad = Some((what, e));
                }
                false
            }
        }
    }
}

fn writev(fd: BorrowedFd<'_>, entries: &[MdwEntry], flags: u32, cookie: u64) -> Result<i32, i32> {
    let mut req = MdwWritev {
        entries: entries.as_ptr() as u64,
        count: entries.len() as u32,
        entry_size: size_of::<MdwEntry>() as u32,
        flags,
        cookie,
        ..Default::default()
    };
    ioctl(fd, MDW_IOC_WRITEV, &mut req as *mut MdwWritev as usize)
}

/// Reads every completion record that arrives within `wait`.
fn drain(fd: BorrowedFd<'_>, want: usize, wait: Duration) -> Result<usize, String> {
    let mut got = 0;
    let end = Instant::now() + wait;
    let mut buf = [MdwCompletion::default(); 16];
    while got < want && Instant::now() < end {
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
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            return Err(format!("read completions: {e}"));
        }
        if n == 0 {
            break;
        }
        got += n as usize / size_of::<MdwCompletion>();
    }
    Ok(got)
}

/// DEST_ADD, WRITEV (sync, async, registered buffer) and BUF_REGISTER /
/// UNREGISTER with faults injected: documented errnos only, accepted
/// asynchronous calls complete, pins balance.
pub(crate) fn faults_injected() -> TestResult {
    if !Path::new(&format!("{DEBUGFS}/failslab")).exists() {
        return Err("skip: no fault injection in this kernel (debug flavour only)".into());
    }
    let (_topo, c) = topo::dummy_sender(None)?;
    let (acq0, rel0) = foll_pins()?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    let fd = dev.as_fd();
    // A non-blocking view of the same file for draining completions.
    // SAFETY: F_SETFL on our own fd.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let base = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let data = pattern(64 * 1024, 21);
    let region = pattern(256 * 1024, 22);
    let mut dreq = c.clone();
    dreq.to.set_port(5001);

    let tally = std::thread::scope(|s| {
        s.spawn(|| -> Result<Tally, String> {
            let mut t = Tally::default();
            let faults = Faults::arm()?;
            for round in 0..ROUNDS {
                let add = dev.add_destination(&dreq);
                let add_r = add
                    .as_ref()
                    .map(|_| 0)
                    .map_err(|e| e.raw_os_error().unwrap_or(0));
                t.note("DEST_ADD", add_r, DEST_ADD_OK);
                let dest = match &add {
                    Ok(id) => id.handle(),
                    Err(_) => base.handle(),
                };
                let plain = MdwEntry {
                    dest,
                    addr: data.as_ptr() as u64,
                    len: data.len() as u64,
                    ..Default::default()
                };
                t.note("WRITEV", writev(fd, &[plain], 0, 0), WRITEV_OK);
                if t.note(
                    "WRITEV async",
                    writev(fd, &[plain], MDW_WRITE_ASYNC, round as u64),
                    WRITEV_OK,
                ) {
                    t.async_accepted += 1;
                }
                let mut reg = MdwBufReg {
                    addr: region.as_ptr() as u64,
                    len: region.len() as u64,
                    ..Default::default()
                };
                let r = ioctl(
                    fd,
                    MDW_IOC_BUF_REGISTER,
                    &mut reg as *mut MdwBufReg as usize,
                );
                if t.note("BUF_REGISTER", r, BUF_OK) {
                    let from_buf = MdwEntry {
                        dest,
                        flags: MDW_ENTRY_BUF,
                        addr: 4096 + 100,
                        len: 100_000,
                        buf: reg.id,
                        ..Default::default()
                    };
                    t.note("WRITEV buffer", writev(fd, &[from_buf], 0, 0), WRITEV_OK);
                    if t.note(
                        "WRITEV buffer async",
                        writev(fd, &[from_buf], MDW_WRITE_ASYNC, 1 << 32 | round as u64),
                        WRITEV_OK,
                    ) {
                        t.async_accepted += 1;
                    }
                    let mut un = MdwBufUnreg {
                        id: reg.id,
                        flags: 0,
                    };
                    // Unregistering allocates nothing: only the copy of
                    // its argument may fail.
                    let r = ioctl(
                        fd,
                        MDW_IOC_BUF_UNREGISTER,
                        &mut un as *mut MdwBufUnreg as usize,
                    );
                    t.note("BUF_UNREGISTER", r, &[libc::EFAULT]);
                }
                if let Ok(id) = add {
                    // Nor does deleting.
                    let r = dev
                        .remove_destination(id)
                        .map(|_| 0)
                        .map_err(|e| e.raw_os_error().unwrap_or(0));
                    t.note("DEST_DEL", r, &[libc::EFAULT]);
                }
                // Completions are read with faults off (a failed copy
                // loses no record, but the count is the point here).
                if round % 16 == 15 {
                    faults.set(false)?;
                    let _ = drain(fd, usize::MAX, Duration::from_millis(0));
                    faults.set(true)?;
                }
            }
            drop(faults);
            Ok(t)
        })
        .join()
        .map_err(|_| "thread panicked".to_string())?
    })?;
    if let Some((what, e)) = tally.bad {
        return Err(format!(
            "{what} under injected faults: {}, not a documented errno ({tally:?})",
            errno_name(e)
        ));
    }
    if tally.failed == 0 || tally.ok == 0 {
        return Err(format!(
            "faults were not injected or nothing succeeded: {tally:?}"
        ));
    }
    // Every accepted asynchronous call completes (some were read above):
    // the stats say how many are still in flight or unread.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = drain(fd, usize::MAX, Duration::from_millis(0));
        let s = dev.stats().map_err(|e| e.to_string())?;
        if s.async_in_flight == 0 && s.completions_queued == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "asynchronous calls still pending: {s:?} ({tally:?})"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(dev);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (acq, rel) = foll_pins()?;
        if acq - acq0 == rel - rel0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pins acquired {} released {} ({tally:?})",
                acq - acq0,
                rel - rel0
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
