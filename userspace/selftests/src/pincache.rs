// SPDX-License-Identifier: GPL-2.0

//! The pin cache (`MDW_WRITE_KEEP_PINS`): pages a call pinned stay pinned
//! for the file's later calls from the same memory, and are never sent
//! once the memory maps something else: after munmap and a new mapping at
//! the same address, `MADV_DONTNEED`, `mprotect`, and from another process
//! sharing the file. Cached pins are counted in `pages_pinned`, charged to
//! `RLIMIT_MEMLOCK`, give way to any other charge of the file, and are
//! released when the file is closed.

use std::{
    io::{Read, Write},
    os::fd::{AsFd, FromRawFd},
    time::Duration,
};

use mdwrite::{
    uapi::{MdwEntry, MDW_FEAT_KEEP_PINS, MDW_WRITE_KEEP_PINS},
    Device,
};

use crate::{
    async_buf::{
        become_user, expect_pinned, fail, in_child, open_with, pins_balance, plain, register,
        require, spanned, stats, writev_fails, writev_ok, Mapping, PAGE, PAYLOAD, RX_TIMEOUT,
    },
    errors::foll_pins,
    net::{self, Listen},
    raw::expect_errno,
    send::{config, pattern},
    topo::{self, Topology},
    TestResult,
};

/// Fails unless the module has the pin cache (and what `require` wants).
fn require_keep(dev: &Device) -> TestResult {
    require(dev)?;
    let info = dev.info().map_err(|e| format!("INFO: {e}"))?;
    if info.features.bits() & MDW_FEAT_KEEP_PINS == 0 {
        return Err(format!(
            "the module lacks MDW_FEAT_KEEP_PINS: features {:#x}",
            info.features.bits()
        ));
    }
    Ok(())
}

/// In the sender's namespace: the device, with the pin cache, and
/// receiver 0 as its one destination.
fn one_destination(topo: &Topology) -> Result<(Device, u32), String> {
    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    require_keep(&dev)?;
    let d = dev
        .add_destination(&config(topo, ifindex, 0, false))
        .map_err(|e| format!("DEST_ADD: {e}"))?
        .handle();
    Ok((dev, d))
}

/// An entry of `len` bytes at user address `addr` for destination `dest`
/// (memory the test maps and remaps itself, not a slice it borrows).
fn at_address(dest: u32, addr: u64, len: usize) -> MdwEntry {
    MdwEntry {
        dest,
        addr,
        len: len as u64,
        ..Default::default()
    }
}

/// Every page the test pinned since `base` released again once its file
/// is closed.
fn pins_released(base: (u64, u64)) -> TestResult {
    pins_balance(
        base,
        Duration::from_secs(10),
        "the closed file's pins to go",
    )
}

/// Receiver 0, waiting for `bytes` payload bytes.
fn receiver(topo: &Topology, bytes: usize) -> Result<Vec<net::ReceiverHandle>, String> {
    net::receivers(topo, 1, RX_TIMEOUT, |_| Listen {
        v6: false,
        expect: bytes,
        skip: 0,
    })
}

/// Each receiver's bytes must be `want[i]`, in order.
fn expect_bytes(got: Vec<net::Received>, want: &[Vec<u8>]) -> TestResult {
    for (i, (got, want)) in got.into_iter().zip(want).enumerate() {
        let bytes = got.bytes(0);
        if bytes != *want {
            let at = bytes
                .iter()
                .zip(want)
                .position(|(x, y)| x != y)
                .unwrap_or(bytes.len().min(want.len()));
            return Err(format!(
                "receiver {i}: {} bytes in {} datagrams, want {}; first difference at byte {at}",
                bytes.len(),
                got.datagrams.len(),
                want.len()
            ));
        }
    }
    Ok(())
}

/// Replaces the `len` bytes mapped at `addr` by a new private anonymous
/// mapping at the same address, filled with the pattern of `seed`.
fn remap(addr: u64, len: usize, seed: u32) -> TestResult {
    // SAFETY: `addr` and `len` are a whole mapping the caller owns (a
    // `Mapping`, which unmaps the same range on drop); nothing else
    // borrows it meanwhile.
    unsafe {
        if libc::munmap(addr as *mut libc::c_void, len) != 0 {
            return Err(format!("munmap: {}", std::io::Error::last_os_error()));
        }
        let p = libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
        if p == libc::MAP_FAILED || p as u64 != addr {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        std::slice::from_raw_parts_mut(addr as *mut u8, len).copy_from_slice(&pattern(len, seed));
    }
    Ok(())
}

/// Two receivers get byte-exact data from calls that keep their pins, the
/// data as it is at each call (written in place between calls), from the
/// pages pinned by the first call: `pages_pinned` counts them after each
/// call and does not grow. A call without the flag neither uses nor
/// changes them. Closing the file unpins them.
pub(crate) fn keep_pins_exact() -> TestResult {
    let topo = Topology::new(2)?;
    let base = foll_pins()?;
    let mut m = Mapping::new(8, 91)?;
    // One run of pages 0..=2: the entries follow each other.
    let pieces = [(100usize, 5000usize), (5100, 6000)];
    let run_pages = spanned(m.at(100), 11_000);
    let seeds = [91u32, 92, 92];
    let mut want = vec![Vec::new(); 2];
    for &seed in seeds.iter() {
        let data = pattern(m.len(), seed);
        for (d, &(off, len)) in pieces.iter().enumerate() {
            want[d].extend_from_slice(&data[off..off + len]);
        }
    }
    let rx = net::receivers(&topo, 2, RX_TIMEOUT, |i| Listen {
        v6: false,
        expect: want[i].len(),
        skip: 0,
    })?;

    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    require_keep(&dev)?;
    let dests: Vec<u32> = (0..2)
        .map(|i| {
            dev.add_destination(&config(&topo, ifindex, i, false))
                .map(|d| d.handle())
                .map_err(|e| format!("DEST_ADD {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let entries = |m: &Mapping| -> Vec<MdwEntry> {
        pieces
            .iter()
            .enumerate()
            .map(|(d, &(off, len))| plain(dests[d], &m.bytes()[off..off + len]))
            .collect()
    };
    let fd = dev.as_fd();
    writev_ok(fd, &entries(&m), MDW_WRITE_KEEP_PINS, 0, "first call")?;
    expect_pinned(fd, run_pages, "after the first call")?;
    m.refill(seeds[1]);
    writev_ok(fd, &entries(&m), MDW_WRITE_KEEP_PINS, 0, "second call")?;
    expect_pinned(fd, run_pages, "after the second call (the same pages)")?;
    writev_ok(fd, &entries(&m), 0, 0, "a call without the flag")?;
    expect_pinned(fd, run_pages, "after a call without the flag")?;
    let s = stats(fd)?;
    let total: u64 = (5000 + 6000) * 3;
    if s.bytes_zerocopy != total || s.bytes_copied != 0 {
        return Err(format!(
            "after three calls: {s:?}; want {total} zero-copy bytes"
        ));
    }
    expect_bytes(net::join_all(rx)?, &want)?;
    drop(dev);
    pins_released(base)
}

/// A call that keeps its pins never sends pages the memory no longer maps:
/// after munmap and a new mapping at the same address, after
/// `MADV_DONTNEED` and new data, the receiver gets the new data; with a
/// page made `PROT_NONE` the call fails with `EFAULT` (entry 0) and sends
/// nothing; with the protection back it sends again. `pages_pinned` holds
/// only the current memory's pages.
pub(crate) fn keep_pins_remap() -> TestResult {
    let topo = Topology::new(1)?;
    let base = foll_pins()?;
    let m = Mapping::new(4, 101)?;
    let (addr, len) = (m.at(0), m.len());
    let (off, n) = (300usize, 3 * PAGE);
    let pages = spanned(m.at(off), n as u64);
    let mut want = Vec::new();
    for seed in [101u32, 102, 103, 103] {
        want.extend_from_slice(&pattern(len, seed)[off..off + n]);
    }
    let rx = receiver(&topo, want.len())?;
    let (dev, d) = one_destination(&topo)?;
    let fd = dev.as_fd();
    let entry = [at_address(d, addr + off as u64, n)];

    writev_ok(
        fd,
        &entry,
        MDW_WRITE_KEEP_PINS,
        0,
        "call from the first mapping",
    )?;
    expect_pinned(fd, pages, "after the first call")?;

    remap(addr, len, 102)?;
    writev_ok(
        fd,
        &entry,
        MDW_WRITE_KEEP_PINS,
        0,
        "call from the new mapping",
    )?;
    expect_pinned(fd, pages, "after the call from the new mapping")?;

    // SAFETY: our mapping; its pages are zero-filled again on next touch.
    if unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) } != 0 {
        return Err(format!("madvise: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: our mapping, writable, not otherwise borrowed.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
        .copy_from_slice(&pattern(len, 103));
    writev_ok(
        fd,
        &entry,
        MDW_WRITE_KEEP_PINS,
        0,
        "call after MADV_DONTNEED",
    )?;
    expect_pinned(fd, pages, "after the call after MADV_DONTNEED")?;

    m.protect_none(1)?;
    let before = stats(fd)?;
    writev_fails(
        fd,
        &entry,
        MDW_WRITE_KEEP_PINS,
        libc::EFAULT,
        0,
        "call with page 1 PROT_NONE",
    )?;
    let after = stats(fd)?;
    if after.packets != before.packets || after.pages_pinned > pages {
        return Err(format!("the refused call changed {before:?} to {after:?}"));
    }
    // SAFETY: page 1 of our mapping.
    let r = unsafe {
        libc::mprotect(
            (addr + PAGE as u64) as *mut libc::c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if r != 0 {
        return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
    }
    writev_ok(fd, &entry, MDW_WRITE_KEEP_PINS, 0, "call with access back")?;
    expect_pinned(fd, pages, "after the call with access back")?;
    let got = net::join_all(rx)?;
    expect_bytes(got, &[want])?;
    drop(dev);
    drop(m);
    pins_released(base)
}

/// Another process that shares the file (a forked child) sends its own
/// memory, not the pages the parent's calls kept for the same addresses:
/// the parent's mapping is shared (fork leaves it alone), the child maps
/// new memory at the same address, and its call with the flag sends the
/// new data; the parent's next call sends the parent's.
pub(crate) fn keep_pins_other_process() -> TestResult {
    let topo = Topology::new(1)?;
    let len = 4 * PAGE;
    // SAFETY: a fresh shared anonymous mapping.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    let addr = addr as u64;
    // SAFETY: the mapping is ours and writable.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) }
        .copy_from_slice(&pattern(len, 111));
    let (off, n) = (10usize, 2 * PAGE + 5);
    let pages = spanned(addr + off as u64, n as u64);

    let (dev, d) = one_destination(&topo)?;
    let fd = dev.as_fd();
    let entry = [at_address(d, addr + off as u64, n)];
    // Before any receiver listens: this call only fills the cache.
    writev_ok(fd, &entry, MDW_WRITE_KEEP_PINS, 0, "parent's first call")?;
    expect_pinned(fd, pages, "after the parent's first call")?;

    // The child waits for the receiver (a thread, started after the fork).
    let mut go = [0i32; 2];
    let mut back = [0i32; 2];
    // SAFETY: pipe2 writes two fds into each array.
    let piped = unsafe {
        libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) == 0
            && libc::pipe2(back.as_mut_ptr(), libc::O_CLOEXEC) == 0
    };
    if !piped {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: this process has one thread here (no receiver yet); the
    // child only makes system calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let mut byte = [0u8; 1];
        // SAFETY: the child's ends of the pipes, used once each.
        let code = unsafe {
            let mut rd = std::fs::File::from_raw_fd(go[0]);
            let _ = rd.read(&mut byte);
            let ok = remap(addr, len, 112).is_ok()
                && writev_ok(fd, &entry, MDW_WRITE_KEEP_PINS, 0, "child").is_ok();
            let mut wr = std::fs::File::from_raw_fd(back[1]);
            let _ = wr.write_all(if ok { b"y" } else { b"n" });
            i32::from(!ok)
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the parent's ends, each owned once from here.
    let (mut go_wr, mut back_rd) = unsafe {
        libc::close(go[0]);
        libc::close(back[1]);
        (
            std::fs::File::from_raw_fd(go[1]),
            std::fs::File::from_raw_fd(back[0]),
        )
    };
    let mut want = pattern(len, 112)[off..off + n].to_vec();
    want.extend_from_slice(&pattern(len, 111)[off..off + n]);
    let rx = receiver(&topo, want.len())?;
    let _ = go_wr.write_all(b"g");
    let mut said = [0u8; 1];
    let _ = back_rd.read(&mut said);
    let mut status = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if &said != b"y" || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the child's call failed (status {status:#x})"));
    }
    writev_ok(
        fd,
        &entry,
        MDW_WRITE_KEEP_PINS,
        0,
        "parent's call after the child's",
    )?;
    expect_pinned(fd, pages, "after the parent's second call")?;
    let got = net::join_all(rx)?;
    expect_bytes(got, &[want])?;
    // SAFETY: the mapping made above, unmapped once.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    Ok(())
}

/// Cached pins are charged to `RLIMIT_MEMLOCK` (without `CAP_IPC_LOCK`)
/// once: a call from cached pages charges nothing more. (A charge of n
/// pages costs n + 2, as `MSG_ZEROCOPY`'s.) They give way to
/// any other charge of the file: a call that keeps other pages, a call
/// without the flag, a registration. A call whose own pins exceed the
/// limit still fails with `ENOBUFS`. The child's memory is shared
/// copy-on-write with the parent at first: pinning it makes it the
/// child's own, and the run is cached all the same.
pub(crate) fn keep_pins_memlock() -> TestResult {
    const LIMIT: u64 = 20;
    let (_topo, c) = topo::dummy_sender(None)?;
    let m = Mapping::new(100, 121)?;
    let bytes = |k: usize, n: usize| &m.bytes()[k * PAGE..(k + n) * PAGE];
    in_child(|| {
        let (dev, d) = open_with(&c)?;
        require_keep(&dev)?;
        let fd = dev.as_fd();
        become_user(61021, false, LIMIT * PAGE as u64)?;
        let a = [plain(d, bytes(0, 12))];
        let b = [plain(d, bytes(40, 12))];
        writev_ok(fd, &a, MDW_WRITE_KEEP_PINS, 0, "12 pages kept")?;
        expect_pinned(fd, 12, "12 pages kept")?;
        // Charged again, it would be 24 pages over a 20-page limit.
        writev_ok(fd, &a, MDW_WRITE_KEEP_PINS, 0, "the same 12 pages again")?;
        expect_pinned(fd, 12, "the same 12 pages again")?;
        writev_ok(fd, &b, MDW_WRITE_KEEP_PINS, 0, "12 other pages kept")?;
        expect_pinned(fd, 12, "the other 12 pages kept in their place")?;
        writev_ok(fd, &a, 0, 0, "12 pages without the flag")?;
        expect_pinned(fd, 0, "after the call without the flag")?;
        writev_ok(fd, &b, MDW_WRITE_KEEP_PINS, 0, "12 pages kept again")?;
        let id = register(fd, m.at(0), 12 * PAGE as u64)
            .map_err(|e| fail("BUF_REGISTER of 12 pages with 12 kept", e))?;
        if id == 0 {
            return Err("BUF_REGISTER: id 0".into());
        }
        expect_pinned(fd, 12, "the registered buffer only")?;
        writev_fails(
            fd,
            &[plain(d, bytes(60, 30))],
            MDW_WRITE_KEEP_PINS,
            libc::ENOBUFS,
            0,
            "30 pages over the limit",
        )?;
        expect_pinned(fd, 12, "after the refused call")?;
        expect_errno(
            "a second registration over the limit",
            register(fd, m.at(40 * PAGE), 12 * PAGE as u64).map(|id| id as i32),
            libc::ENOBUFS,
        )?;
        Ok(String::new())
    })?;
    Ok(())
}

/// The cache holds at most 16 runs, and a call does not evict the runs
/// it uses itself: a call of 40 separate runs (1,472 bytes from every
/// other page) that keeps its pins sends byte-exact data, keeps its first
/// 16 runs and pins the other 24 for itself; the next call from the same
/// memory finds the 16 and pins only the 24 (the `nr_foll_pin_acquired`
/// counter grows by 24 pages, not 40), and is byte-exact too.
pub(crate) fn keep_pins_many_runs() -> TestResult {
    const RUNS: usize = 40;
    const KEPT: u64 = 16;
    let topo = Topology::new(1)?;
    let m = Mapping::new(2 * RUNS, 131)?;
    let piece = |k: usize| &m.bytes()[2 * k * PAGE + 7..2 * k * PAGE + 7 + PAYLOAD];
    let once: Vec<u8> = (0..RUNS).flat_map(|k| piece(k).to_vec()).collect();
    let want = [once.clone(), once].concat();
    let rx = receiver(&topo, want.len())?;
    let (dev, d) = one_destination(&topo)?;
    let fd = dev.as_fd();
    let entries: Vec<MdwEntry> = (0..RUNS).map(|k| plain(d, piece(k))).collect();
    for round in 0..2 {
        let (acquired, _) = foll_pins()?;
        let w = writev_ok(
            fd,
            &entries,
            MDW_WRITE_KEEP_PINS,
            0,
            &format!("call {round}"),
        )?;
        let pinned = foll_pins()?.0 - acquired;
        if w.packets != RUNS as u64 {
            return Err(format!("call {round}: {} packets, want {RUNS}", w.packets));
        }
        expect_pinned(fd, KEPT, &format!("after call {round}"))?;
        if round == 1 && pinned != RUNS as u64 - KEPT {
            return Err(format!(
                "call {round} pinned {pinned} pages, want {} (its 16 first runs kept)",
                RUNS as u64 - KEPT
            ));
        }
    }
    expect_bytes(net::join_all(rx)?, &[want])
}

/// Through the library: a module `Sender` with
/// `WriteOptions::with_keep_pins(true)` sends a buffer twice, rewritten in
/// between, byte-exact; its pages stay pinned after the calls
/// (`Stats::pages_pinned`), and none without the option.
pub(crate) fn keep_pins_sender() -> TestResult {
    use mdwrite::{Entry, Sender, WriteOptions};
    let topo = Topology::new(1)?;
    let len = 3 * PAYLOAD + 100;
    let first = pattern(len, 141);
    let second = pattern(len, 142);
    let want = [first.clone(), second.clone(), second.clone()].concat();
    let rx = receiver(&topo, want.len())?;
    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let mut sender = Sender::open_module().map_err(|e| format!("open: {e}"))?;
    let dest = sender
        .add_destination(&config(&topo, ifindex, 0, false))
        .map_err(|e| format!("add_destination: {e}"))?;
    let mut buf = first;
    let keep = WriteOptions::default().with_keep_pins(true);
    let send = |sender: &mut Sender, buf: &[u8], opts: &WriteOptions, what: &str| {
        sender
            .send_vectored(&[Entry::new(dest, buf)], opts)
            .map_err(|e| format!("{what}: {e}"))
    };
    send(&mut sender, &buf, &keep, "first call")?;
    let pinned = |sender: &Sender| {
        sender
            .stats()
            .map(|s| s.pages_pinned)
            .map_err(|e| e.to_string())
    };
    let kept = spanned(buf.as_ptr() as u64, len as u64);
    if pinned(&sender)? != kept {
        return Err(format!(
            "after the first call: pages_pinned {}, want {kept}",
            pinned(&sender)?
        ));
    }
    buf.copy_from_slice(&second);
    send(&mut sender, &buf, &keep, "second call")?;
    if pinned(&sender)? != kept {
        return Err(format!(
            "after the second call: pages_pinned {}, want {kept}",
            pinned(&sender)?
        ));
    }
    drop(sender);
    // A new file, without the option: nothing stays pinned.
    let mut plain_sender = Sender::open_module().map_err(|e| format!("open: {e}"))?;
    let dest2 = plain_sender
        .add_destination(&config(&topo, ifindex, 0, false))
        .map_err(|e| format!("add_destination: {e}"))?;
    plain_sender
        .send_vectored(&[Entry::new(dest2, &buf)], &WriteOptions::default())
        .map_err(|e| format!("call without the option: {e}"))?;
    if pinned(&plain_sender)? != 0 {
        return Err(format!(
            "without the option: pages_pinned {}, want 0",
            pinned(&plain_sender)?
        ));
    }
    expect_bytes(net::join_all(rx)?, &[want])
}
