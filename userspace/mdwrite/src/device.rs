// SPDX-License-Identifier: GPL-2.0

//! An open `/dev/mdwrite`.

use std::{
    fmt, io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::Path,
};

use rustix::fs::{open, Mode, OFlags};

use crate::sys;

/// An open handle on the mdwrite kernel module.
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
}

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

/// Optional capabilities of the module (`MDW_FEAT_*` bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features(pub u64);

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
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
        Ok(Self { fd })
    }

    /// Asks the module what it implements (`MDW_IOC_INFO`).
    pub fn info(&self) -> io::Result<Info> {
        let raw = sys::info(&self.fd)?;
        Ok(Info {
            abi_version: raw.abi_version,
            info_size: raw.info_size,
            features: Features(raw.features),
        })
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
