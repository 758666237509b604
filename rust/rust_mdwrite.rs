// SPDX-License-Identifier: GPL-2.0

//! mdwrite: multi-destination zero-copy UDP write.
//!
//! An application opens `/dev/mdwrite` and, through ioctls, hands the module
//! large chunks of data for many destinations in one call. See
//! `Documentation/design.rst` for the send path and `Documentation/uapi.rst`
//! for the ABI.
//!
//! The crate root only declares modules; each file has one job:
//!
//! - `abi`: the uapi structures, shared text with userspace;
//! - `miscdev`: registration of `/dev/mdwrite` (thin FFI layer);
//! - `file`: the `file_operations` entry points (thin FFI layer);
//! - `client`: the state of one open file and its ioctl dispatch;
//! - `ioctl`: decoding of ioctl numbers and copying of argument structs.

use kernel::prelude::*;

mod abi;
mod client;
mod file;
mod ioctl;
mod miscdev;

module! {
    type: MdwModule,
    name: "mdwrite",
    author: "mdwrite developers",
    description: "Multi-destination zero-copy UDP write",
    license: "GPL",
}

struct MdwModule {
    _misc: miscdev::Registration,
}

impl kernel::Module for MdwModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // Registration makes the device visible, so it comes last.
        let misc = miscdev::Registration::new()?;
        pr_info!("mdwrite: ABI version {} ready\n", abi::MDW_ABI_VERSION);
        Ok(Self { _misc: misc })
    }
}
