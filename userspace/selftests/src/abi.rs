// SPDX-License-Identifier: GPL-2.0

//! The device node, `MDW_IOC_INFO`, and the ABI's size and errno rules.

use std::os::{
    fd::AsFd,
    unix::fs::{FileTypeExt, PermissionsExt},
};

use mdwrite::{
    uapi::{ioc, MdwInfo, MDW_ABI_VERSION, MDW_IOC_INFO, MDW_IOC_INFO_NR},
    Device,
};

use crate::{
    raw::{errno_name, expect_errno, ioctl},
    TestResult,
};

fn open() -> Result<Device, String> {
    Device::open().map_err(|e| format!("open {}: {e}", Device::PATH))
}

/// `/dev/mdwrite` is a character device, readable and writable by root only.
pub(crate) fn dev_node() -> TestResult {
    let meta = std::fs::metadata(Device::PATH).map_err(|e| format!("{}: {e}", Device::PATH))?;
    if !meta.file_type().is_char_device() {
        return Err(format!("{} is not a character device", Device::PATH));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(format!("{} has mode {mode:o}, want 600", Device::PATH));
    }
    Ok(())
}

/// `MDW_IOC_INFO` reports this ABI version and the module's struct size.
pub(crate) fn info_abi_version() -> TestResult {
    let info = open()?.info().map_err(|e| format!("MDW_IOC_INFO: {e}"))?;
    if info.abi_version != MDW_ABI_VERSION {
        return Err(format!(
            "abi_version {}, want {MDW_ABI_VERSION}",
            info.abi_version
        ));
    }
    if info.info_size as usize != size_of::<MdwInfo>() {
        return Err(format!(
            "info_size {}, want {}",
            info.info_size,
            size_of::<MdwInfo>()
        ));
    }
    Ok(())
}

/// A caller with a larger (newer) struct gets the module's bytes and keeps
/// the rest of its buffer untouched.
pub(crate) fn info_larger_struct() -> TestResult {
    let dev = open()?;
    let mut buf = [0xa5u8; 64];
    let cmd = ioc::encode(ioc::READ, MDW_IOC_INFO_NR, buf.len());
    ioctl(dev.as_fd(), cmd, buf.as_mut_ptr() as usize)
        .map_err(|e| format!("INFO with 64-byte struct: {}", errno_name(e)))?;
    let version = u32::from_ne_bytes(buf[0..4].try_into().unwrap());
    if version != MDW_ABI_VERSION {
        return Err(format!("abi_version {version}, want {MDW_ABI_VERSION}"));
    }
    if buf[size_of::<MdwInfo>()..].iter().any(|&b| b != 0xa5) {
        return Err("module wrote past its own struct size".into());
    }
    Ok(())
}

/// A struct smaller than the first version of `mdw_info` is not a known
/// ioctl: ENOTTY.
pub(crate) fn info_short_struct_enotty() -> TestResult {
    let dev = open()?;
    let mut buf = [0u8; 8];
    let cmd = ioc::encode(ioc::READ, MDW_IOC_INFO_NR, buf.len());
    expect_errno(
        "INFO with 8-byte struct",
        ioctl(dev.as_fd(), cmd, buf.as_mut_ptr() as usize),
        libc::ENOTTY,
    )
}

/// Unknown numbers, foreign type bytes and wrong directions give ENOTTY.
pub(crate) fn unknown_ioctl_enotty() -> TestResult {
    let dev = open()?;
    let mut buf = [0u8; 64];
    let ptr = buf.as_mut_ptr() as usize;
    let cases = [
        ("unknown number 0x7f", ioc::encode(ioc::READ, 0x7f, 16)),
        ("foreign type byte", (MDW_IOC_INFO & !0xff00) | (0x54 << 8)),
        ("INFO as _IOW", ioc::encode(ioc::WRITE, MDW_IOC_INFO_NR, 16)),
        ("INFO as _IO", ioc::encode(ioc::NONE, MDW_IOC_INFO_NR, 0)),
        ("TCGETS on the device", libc::TCGETS as u32),
    ];
    for (what, cmd) in cases {
        expect_errno(what, ioctl(dev.as_fd(), cmd, ptr), libc::ENOTTY)?;
    }
    Ok(())
}

/// Pointers the caller may not write give EFAULT, never a crash.
pub(crate) fn bad_pointer_efault() -> TestResult {
    let dev = open()?;
    for (what, ptr) in [
        ("NULL", 0usize),
        ("address 1", 1),
        ("kernel address", 0xffff_8880_0000_0000),
        ("last user page", usize::MAX - 4095),
    ] {
        expect_errno(
            &format!("INFO to {what}"),
            ioctl(dev.as_fd(), MDW_IOC_INFO, ptr),
            libc::EFAULT,
        )?;
    }
    // A read-only mapping.
    // SAFETY: an anonymous private mapping with no address hint; unmapped
    // below.
    let ro = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ro == libc::MAP_FAILED {
        return Err("mmap failed".into());
    }
    let result = ioctl(dev.as_fd(), MDW_IOC_INFO, ro as usize);
    // SAFETY: `ro` is the 4096-byte mapping made above.
    unsafe { libc::munmap(ro, 4096) };
    expect_errno("INFO to read-only page", result, libc::EFAULT)
}

/// Many files open at once each get their own working state.
pub(crate) fn many_opens() -> TestResult {
    let devs = (0..256).map(|_| open()).collect::<Result<Vec<_>, _>>()?;
    for dev in &devs {
        dev.info().map_err(|e| format!("MDW_IOC_INFO: {e}"))?;
    }
    Ok(())
}
