// SPDX-License-Identifier: GPL-2.0

//! Bad input gets its documented errno, nothing stays pinned, and the
//! privilege, device-lifetime, signal and concurrency rules hold.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::AsFd,
    process::Command,
    time::{Duration, Instant},
};

use mdwrite::{
    uapi::{
        ioc, MdwEntry, MdwWritev, MDW_ENTRY_RTP_TS, MDW_IOC_WRITEV, MDW_IOC_WRITEV_NR,
        MDW_MAX_ENTRIES,
    },
    DestConfig, DestId, Device, Entry, WriteOptions,
};

use crate::{
    raw::{errno_name, expect_errno, ioctl},
    send::{config, pattern},
    topo::{self, run, Topology},
    TestResult,
};

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn expect(what: &str, got: Option<i32>, want: i32) -> TestResult {
    match got {
        Some(e) if e == want => Ok(()),
        Some(e) => Err(format!(
            "{what}: got {}, want {}",
            errno_name(e),
            errno_name(want)
        )),
        None => Err(format!("{what}: succeeded, want {}", errno_name(want))),
    }
}

/// A topology with one receiver and a device opened in the sender's netns.
fn setup() -> Result<(Topology, Device, u32), String> {
    let topo = Topology::new(1)?;
    topo::enter(&topo.sender)?;
    let ifindex = topo.sender_ifindex()?;
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    Ok((topo, dev, ifindex))
}

/// Sends a raw `MDW_IOC_WRITEV`; returns the result and the struct as the
/// module left it.
pub(crate) fn raw_writev(
    dev: &Device,
    entries: &[MdwEntry],
    tweak: impl Fn(&mut MdwWritev),
) -> (Result<i32, i32>, MdwWritev) {
    let mut req = MdwWritev {
        entries: entries.as_ptr() as u64,
        count: entries.len() as u32,
        entry_size: size_of::<MdwEntry>() as u32,
        ..Default::default()
    };
    tweak(&mut req);
    let r = ioctl(
        dev.as_fd(),
        MDW_IOC_WRITEV,
        &mut req as *mut MdwWritev as usize,
    );
    (r, req)
}

pub(crate) fn entry(dest: DestId, data: &[u8]) -> MdwEntry {
    MdwEntry {
        dest: dest.handle(),
        flags: 0,
        addr: data.as_ptr() as u64,
        len: data.len() as u64,
        rtp_timestamp: 0,
        buf: 0,
        ..Default::default()
    }
}

/// Every field of `MDW_IOC_DEST_ADD` is checked.
pub(crate) fn dest_add_errors() -> TestResult {
    let (topo, dev, ifindex) = setup()?;
    let good = config(&topo, ifindex, 0, false);
    let cases: Vec<(&str, DestConfig, i32)> = vec![
        (
            "unknown ifindex",
            {
                let mut v = good.clone();
                v.ifindex = 9999;
                v
            },
            libc::ENODEV,
        ),
        (
            "loopback (not Ethernet)",
            {
                let mut v = good.clone();
                v.ifindex = 1;
                v
            },
            libc::EINVAL,
        ),
        (
            "packet size above MTU",
            {
                let mut v = good.clone();
                v.packet_size = Some(1501);
                v
            },
            libc::EMSGSIZE,
        ),
        (
            "packet size below headers",
            {
                let mut v = good.clone();
                v.packet_size = Some(28);
                v
            },
            libc::EMSGSIZE,
        ),
        (
            "DSCP 64",
            {
                let mut v = good.clone();
                v.dscp = 64;
                v
            },
            libc::EINVAL,
        ),
        (
            "VLAN id 0",
            {
                let mut v = good.clone();
                v.vlan_tci = Some(0);
                v
            },
            libc::EINVAL,
        ),
        (
            "VLAN id 4095",
            {
                let mut v = good.clone();
                v.vlan_tci = Some(4095);
                v
            },
            libc::EINVAL,
        ),
        (
            "destination port 0",
            {
                let mut v = good.clone();
                v.to = SocketAddr::new(good.to.ip(), 0);
                v
            },
            libc::EINVAL,
        ),
        (
            "source port 0",
            {
                let mut v = good.clone();
                v.src_port = 0;
                v
            },
            libc::EINVAL,
        ),
        (
            "unresolved neighbour",
            {
                let mut v = good.clone();
                v.dst_mac = None;
                v.to = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 200)), 5000);
                v
            },
            libc::EHOSTUNREACH,
        ),
    ];
    for (what, c, want) in cases {
        expect(what, errno_of(dev.add_destination(&c)), want)?;
    }
    let mut v6 = config(&topo, ifindex, 0, true);
    v6.udp_csum_zero = true;
    expect(
        "zero UDP checksum on IPv6",
        errno_of(dev.add_destination(&v6)),
        libc::EINVAL,
    )?;

    // A known neighbour resolves.
    let r = &topo.receivers[0];
    topo.permanent_neighbour(r.v4.into(), r.mac)?;
    dev.add_destination(&{
        let mut v = good.clone();
        v.dst_mac = None;
        v
    })
    .map_err(|e| format!("resolved neighbour: {e}"))?;

    // A device that is down.
    let d0 = topo::add_dummy(&topo.sender, "d0", false)?;
    expect(
        "device down",
        errno_of(dev.add_destination(&{
            let mut v = good.clone();
            v.ifindex = d0;
            v
        })),
        libc::ENETDOWN,
    )?;

    // DEST_DEL.
    expect(
        "DEST_DEL of unknown handle",
        errno_of(dev.remove_destination(DestId::from_handle(77))),
        libc::ENXIO,
    )?;
    let id = dev.add_destination(&good).map_err(|e| e.to_string())?;
    dev.remove_destination(id).map_err(|e| e.to_string())?;
    expect(
        "DEST_DEL twice",
        errno_of(dev.remove_destination(id)),
        libc::ENXIO,
    )
}

/// Every field of `MDW_IOC_WRITEV` and its entries is checked before
/// anything is sent, the failing entry is named, and nothing stays pinned.
pub(crate) fn writev_errors() -> TestResult {
    let (topo, dev, ifindex) = setup()?;
    let id = dev
        .add_destination(&config(&topo, ifindex, 0, false))
        .map_err(|e| e.to_string())?;
    let data = pattern(10_000, 9);
    let ok = entry(id, &data);

    type Case = (&'static str, fn(&mut MdwWritev), i32);
    let header_cases: [Case; 5] = [
        ("unknown flag", |r| r.flags = 1 << 7, libc::EINVAL),
        ("zero entries", |r| r.count = 0, libc::EINVAL),
        (
            "too many entries",
            |r| r.count = MDW_MAX_ENTRIES + 1,
            libc::E2BIG,
        ),
        ("entry size too small", |r| r.entry_size = 16, libc::EINVAL),
        ("bad entries pointer", |r| r.entries = 8, libc::EFAULT),
    ];
    for (what, tweak, want) in header_cases {
        expect_errno(what, raw_writev(&dev, &[ok], tweak).0, want)?;
    }

    let unmapped = {
        // SAFETY: an anonymous mapping, unmapped at once: its address is
        // then known not to be mapped.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            libc::munmap(p, 1 << 20);
            p as u64
        }
    };
    let entry_cases: Vec<(&str, MdwEntry, i32)> = vec![
        ("unknown handle", MdwEntry { dest: 99, ..ok }, libc::ENXIO),
        ("zero length", MdwEntry { len: 0, ..ok }, libc::EINVAL),
        (
            "unknown entry flag",
            MdwEntry {
                flags: 1 << 9,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "buf set without MDW_ENTRY_BUF",
            MdwEntry { buf: 1, ..ok },
            libc::EINVAL,
        ),
        (
            "RTP timestamp without RTP",
            MdwEntry {
                flags: MDW_ENTRY_RTP_TS,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "address + length wraps",
            MdwEntry {
                addr: u64::MAX - 10,
                len: 100,
                ..ok
            },
            libc::EFAULT,
        ),
        (
            "unmapped memory",
            MdwEntry {
                addr: unmapped,
                len: 100_000,
                ..ok
            },
            libc::EFAULT,
        ),
        (
            "more than the call limit",
            MdwEntry {
                len: (1 << 30) + 1,
                ..ok
            },
            libc::E2BIG,
        ),
    ];
    for (what, bad, want) in entry_cases {
        // The bad entry comes third, after two good ones.
        let (r, out) = raw_writev(&dev, &[ok, ok, bad], |_| {});
        expect_errno(what, r, want)?;
        if out.error_index != 2 || out.error != -want || out.packets != 0 {
            return Err(format!(
                "{what}: error_index {} error {} packets {}, want 2, {}, 0",
                out.error_index, out.error, out.packets, -want
            ));
        }
    }
    // Larger entries from a newer caller: unknown bytes must be zero.
    const ENTRY: usize = std::mem::size_of::<MdwEntry>();
    let mut wide = [0u8; ENTRY + 8];
    // SAFETY: `MdwEntry` is plain data of `ENTRY` bytes.
    wide[..ENTRY].copy_from_slice(unsafe {
        std::slice::from_raw_parts((&ok as *const MdwEntry).cast::<u8>(), ENTRY)
    });
    let wide_req = |tail: u8| {
        let mut w = wide;
        w[ENTRY + 7] = tail;
        let mut req = MdwWritev {
            entries: w.as_ptr() as u64,
            count: 1,
            entry_size: (ENTRY + 8) as u32,
            ..Default::default()
        };
        ioctl(
            dev.as_fd(),
            MDW_IOC_WRITEV,
            &mut req as *mut MdwWritev as usize,
        )
    };
    expect_errno("wider entry with non-zero tail", wide_req(1), libc::E2BIG)?;
    wide_req(0).map_err(|e| format!("wider entry with zero tail: {}", errno_name(e)))?;
    // A WRITEV struct smaller than the first version.
    expect_errno(
        "short WRITEV struct",
        ioctl(
            dev.as_fd(),
            ioc::encode(ioc::READ | ioc::WRITE, MDW_IOC_WRITEV_NR, 16),
            data.as_ptr() as usize,
        ),
        libc::ENOTTY,
    )?;

    let s = dev.stats().map_err(|e| e.to_string())?;
    if s.pages_pinned != 0 || s.bytes_copied != 0 {
        return Err(format!("after the errors: {s:?}"));
    }
    Ok(())
}

/// `CAP_NET_RAW` (linux/capability.h).
const CAP_NET_RAW: u32 = 13;

/// Drops `CAP_NET_RAW` from this thread's effective set.
/// Sets or clears `CAP_NET_RAW` in the calling thread's effective set (it
/// stays permitted, so it can be set again).
pub(crate) fn set_cap_net_raw(on: bool) -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) != 0 {
            return Err(format!("capget: {}", std::io::Error::last_os_error()));
        }
        if on {
            data[0].effective |= 1 << CAP_NET_RAW;
        } else {
            data[0].effective &= !(1 << CAP_NET_RAW);
        }
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) != 0 {
            return Err(format!("capset: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// A file opened without `CAP_NET_RAW` over the device's network namespace
/// cannot register destinations (EPERM); one opened with it can.
pub(crate) fn no_cap_net_raw() -> TestResult {
    let (topo, dev, ifindex) = setup()?;
    let c = config(&topo, ifindex, 0, false);
    std::thread::scope(|s| {
        s.spawn(|| {
            set_cap_net_raw(false)?;
            let without = Device::open().map_err(|e| format!("open: {e}"))?;
            expect(
                "DEST_ADD on a file opened without CAP_NET_RAW",
                errno_of(without.add_destination(&c)),
                libc::EPERM,
            )
        })
        .join()
        .map_err(|_| "thread panicked".to_string())?
    })?;
    // Opened with it, the same works.
    dev.add_destination(&c)
        .map(|_| ())
        .map_err(|e| format!("DEST_ADD with CAP_NET_RAW: {e}"))
}

/// A device deleted while destinations name it: writes fail with ENODEV,
/// the destination can be removed, nothing leaks (dmesg_clean and
/// kmemleak_clean judge the rest).
pub(crate) fn device_deleted() -> TestResult {
    let (topo, dev, _) = setup()?;
    let c = topo::dummy_config(topo::add_dummy(&topo.sender, "d0", true)?);
    let id = dev.add_destination(&c).map_err(|e| e.to_string())?;
    let data = pattern(100_000, 4);
    dev.write_vectored(&[Entry::new(id, &data)], WriteOptions::default())
        .map_err(|e| format!("before delete: {e}"))?;
    run(&["ip", "-n", &topo.sender, "link", "del", "d0"])?;
    expect(
        "WRITEV to a deleted device",
        errno_of(dev.write_vectored(&[Entry::new(id, &data)], WriteOptions::default())),
        libc::ENODEV,
    )?;
    dev.remove_destination(id)
        .map_err(|e| format!("DEST_DEL after delete: {e}"))
}

/// A process killed in the middle of a large call: the call stops, the
/// process exits, and every page it pinned is unpinned.
pub(crate) fn killed_mid_call() -> TestResult {
    let topo = Topology::new(0)?;
    topo::add_dummy(&topo.sender, "d0", true)?;
    let (acq0, rel0) = foll_pins()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &topo.sender])
        .arg(exe)
        .args(["flood", "d0", "600"])
        .spawn()
        .map_err(|e| e.to_string())?;
    // Let it get well into its calls, then kill it.
    std::thread::sleep(Duration::from_secs(3));
    if child.try_wait().map_err(|e| e.to_string())?.is_some() {
        return Err("flood ended before it could be killed".into());
    }
    let start = Instant::now();
    child.kill().map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.code().is_some() {
        return Err(format!("flood was not killed: {status}"));
    }
    if start.elapsed() > Duration::from_secs(60) {
        return Err(format!("killed process took {:?} to exit", start.elapsed()));
    }
    let (acq, rel) = foll_pins()?;
    if acq - acq0 == 0 || acq - acq0 != rel - rel0 {
        return Err(format!(
            "pins acquired {} released {}",
            acq - acq0,
            rel - rel0
        ));
    }
    Ok(())
}

/// `nr_foll_pin_acquired` and `nr_foll_pin_released` from /proc/vmstat.
pub(crate) fn foll_pins() -> Result<(u64, u64), String> {
    // Fold the per-CPU counter deltas first.
    std::fs::write("/proc/sys/vm/stat_refresh", "1").map_err(|e| format!("stat_refresh: {e}"))?;
    let text = std::fs::read_to_string("/proc/vmstat").map_err(|e| e.to_string())?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
            .ok_or(format!("{k} missing in /proc/vmstat"))
    };
    Ok((get("nr_foll_pin_acquired ")?, get("nr_foll_pin_released ")?))
}

/// The `flood DEV SECONDS` helper: sends 64 MiB calls to a dummy device
/// until killed or out of time. Runs in the netns it is started in.
pub(crate) fn flood(dev_name: &str, seconds: u64) -> TestResult {
    let name = std::ffi::CString::new(dev_name).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid C string; looked up in this thread's netns.
    let c = topo::dummy_config(unsafe { libc::if_nametoindex(name.as_ptr()) });
    let dev = Device::open().map_err(|e| e.to_string())?;
    let ids: Vec<DestId> = (0..8)
        .map(|_| dev.add_destination(&c))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let data = pattern(8 << 20, 5);
    let entries: Vec<Entry<'_>> = ids.iter().map(|&id| Entry::new(id, &data)).collect();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        dev.write_vectored(&entries, WriteOptions::default())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Several threads on one file and several files at once: every call
/// succeeds and every packet is counted once.
pub(crate) fn concurrent_calls() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let data = pattern(1 << 20, 6);
    let per_call: u64 = 4 * (data.len().div_ceil(1472) as u64);
    let calls = 5;
    let shared = Device::open().map_err(|e| e.to_string())?;
    let shared_ids: Vec<DestId> = (0..4)
        .map(|_| shared.add_destination(&c))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..3 {
            handles.push(s.spawn(|| -> TestResult {
                let entries: Vec<Entry<'_>> =
                    shared_ids.iter().map(|&id| Entry::new(id, &data)).collect();
                for _ in 0..calls {
                    let r = shared
                        .write_vectored(&entries, WriteOptions::default())
                        .map_err(|e| e.to_string())?;
                    if r.packets != per_call {
                        return Err(format!("shared fd: {} packets, want {per_call}", r.packets));
                    }
                }
                Ok(())
            }));
        }
        for _ in 0..3 {
            handles.push(s.spawn(|| -> TestResult {
                let own = Device::open().map_err(|e| e.to_string())?;
                let ids: Vec<DestId> = (0..4)
                    .map(|_| own.add_destination(&c))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let entries: Vec<Entry<'_>> = ids.iter().map(|&id| Entry::new(id, &data)).collect();
                for _ in 0..calls {
                    own.write_vectored(&entries, WriteOptions::default())
                        .map_err(|e| e.to_string())?;
                }
                let st = own.stats().map_err(|e| e.to_string())?;
                if st.packets != per_call * calls || st.completions != calls {
                    return Err(format!("own fd stats {st:?}"));
                }
                Ok(())
            }));
        }
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "thread panicked".to_string())?)
    })?;
    let st = shared.stats().map_err(|e| e.to_string())?;
    if st.packets != 3 * calls * per_call || st.calls != 3 * calls || st.pages_pinned != 0 {
        return Err(format!("shared fd stats {st:?}"));
    }
    Ok(())
}

/// The buffer of a call in flight is unmapped by another thread: the call
/// either failed before pinning (EFAULT, nothing sent) or sends the pinned
/// pages to the end; the pins balance and nothing breaks (dmesg_clean,
/// kmemleak_clean).
pub(crate) fn munmap_mid_call() -> TestResult {
    let (_topo, c) = topo::dummy_sender(None)?;
    let dev = Device::open().map_err(|e| e.to_string())?;
    let ids: Vec<DestId> = (0..4)
        .map(|_| dev.add_destination(&c))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    const LEN: usize = 4 << 20;
    let (acq0, rel0) = foll_pins()?;
    let mut full = 0;
    for round in 0..4u64 {
        // SAFETY: a fresh anonymous mapping owned by this loop iteration.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err("mmap failed".into());
        }
        let addr = p as usize;
        let unmapper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10 * round));
            // SAFETY: unmaps the mapping made above; the sending thread
            // only passes its address to the kernel, never touches it.
            unsafe { libc::munmap(addr as *mut libc::c_void, LEN) }
        });
        // SAFETY: the slice is only handed to the kernel as an address; the
        // kernel pins what is still mapped and fails with EFAULT otherwise.
        let data = unsafe { std::slice::from_raw_parts(addr as *const u8, LEN) };
        let entries: Vec<Entry<'_>> = ids.iter().map(|&id| Entry::new(id, data)).collect();
        match dev.write_vectored(&entries, WriteOptions::default()) {
            Ok(r) if r.error.is_none() && r.packets == 4 * LEN.div_ceil(1472) as u64 => full += 1,
            Ok(r) => return Err(format!("round {round}: partial call {r:?}")),
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {}
            Err(e) => return Err(format!("round {round}: {e}")),
        }
        unmapper.join().map_err(|_| "unmapper panicked")?;
    }
    let (acq, rel) = foll_pins()?;
    if acq - acq0 != rel - rel0 {
        return Err(format!(
            "pins acquired {} released {}",
            acq - acq0,
            rel - rel0
        ));
    }
    if full == 0 {
        return Err("no round got its call in before the unmap".into());
    }
    Ok(())
}
