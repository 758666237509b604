// SPDX-License-Identifier: GPL-2.0

//! An open `/dev/mdwrite`.

use std::{
    fmt, io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::Path,
};

use rustix::fs::{open, Mode, OFlags};

use mdwrite_uapi::{MdwEntry, MdwWritev};

use crate::{sys, DestConfig, DestId, Entry, Stats, WriteOptions, WriteReport};

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

impl Device {
    /// Registers a destination (`MDW_IOC_DEST_ADD`). Needs `CAP_NET_RAW`
    /// (`EPERM`); `EHOSTUNREACH` when the next hop's MAC is not known yet.
    pub fn add_destination(&self, config: &DestConfig) -> io::Result<DestId> {
        let mut d = config.to_abi();
        sys::dest_add(&self.fd, &mut d)?;
        Ok(DestId(d.handle))
    }

    /// Removes a destination (`MDW_IOC_DEST_DEL`).
    pub fn remove_destination(&self, id: DestId) -> io::Result<()> {
        sys::dest_del(&self.fd, id.0)
    }

    /// Sends every entry in one call (`MDW_IOC_WRITEV`), interleaved
    /// across destinations; returns once the device released every packet.
    ///
    /// Fails without sending anything on invalid input; an error after
    /// some packets left is in [`WriteReport::error`].
    pub fn write_vectored(
        &self,
        entries: &[Entry<'_>],
        options: WriteOptions,
    ) -> io::Result<WriteReport> {
        let raw: Vec<MdwEntry> = entries.iter().map(|e| e.to_abi()).collect();
        let mut req = MdwWritev {
            entries: raw.as_ptr() as u64,
            count: u32::try_from(raw.len()).map_err(|_| {
                io::Error::from_raw_os_error(rustix::io::Errno::TOOBIG.raw_os_error())
            })?,
            entry_size: size_of::<MdwEntry>() as u32,
            flags: options.flags(),
            quantum: options.quantum,
            ..Default::default()
        };
        // SAFETY: `raw` holds `count` entries of `entry_size` bytes whose
        // data borrow from `entries`, alive for the call.
        unsafe { sys::writev(&self.fd, &mut req) }?;
        Ok(WriteReport {
            bytes: req.bytes,
            packets: req.packets,
            error: (req.error != 0).then(|| {
                (
                    io::Error::from_raw_os_error(-req.error),
                    req.error_index as usize,
                )
            }),
        })
    }

    /// The counters of this open device (`MDW_IOC_STATS`).
    pub fn stats(&self) -> io::Result<Stats> {
        sys::stats(&self.fd)
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
