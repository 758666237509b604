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
//! - `ioctl`: decoding of ioctl numbers and copying of argument structs;
//! - `dest`: destinations and their header templates;
//! - `writev`: the multi-destination write, stage by stage;
//! - `buffer`: registered translation buffers;
//! - `completion`: asynchronous calls and their completion records;
//! - `pin`: pinned user pages and their `RLIMIT_MEMLOCK` charge;
//! - `skb`: packets, the call's completion and batched transmit;
//! - `net`: network namespaces and devices;
//! - `stats`: per-file counters;
//! - `table`: objects named by small integers (destinations, buffers);
//! - `ffi`, `errno`: the C helpers' declarations, missing errnos;
//! - `common`: the pure logic shared with the host crate
//!   `userspace/mdwrite-common` (checksums, templates, segmentation,
//!   interleaving, skb recycling order), unit- and property-tested there.

use kernel::prelude::*;

mod abi;
mod arena;
mod buffer;
mod calldevs;
mod callpages;
mod client;
mod completion;
mod dest;
mod errno;
mod ffi;
mod file;
mod groups;
mod ioctl;
mod miscdev;
mod net;
mod pacer;
mod pin;
mod pincache;
mod records;
mod send;
mod skb;
mod stats;
mod table;
mod timing;
mod validate;
mod vec;
mod writev;

/// Pure logic shared with the host crate `mdwrite-common`.
#[allow(unreachable_pub, dead_code)]
mod common {
    #[path = "../common/checksum.rs"]
    pub mod checksum;
    #[path = "../common/group.rs"]
    pub mod group;
    #[path = "../common/interleave.rs"]
    pub mod interleave;
    #[path = "../common/pace.rs"]
    pub mod pace;
    #[path = "../common/recycle.rs"]
    pub mod recycle;
    #[path = "../common/runcache.rs"]
    pub mod runcache;
    #[path = "../common/runs.rs"]
    pub mod runs;
    #[path = "../common/segment.rs"]
    pub mod segment;
    #[path = "../common/template.rs"]
    pub mod template;
}

module! {
    type: MdwModule,
    name: "mdwrite",
    author: "mdwrite developers",
    description: "Multi-destination zero-copy UDP write",
    license: "GPL",
}

struct MdwModule {
    // Dropped in this order: no new files, then wait for the asynchronous
    // calls of closed files, then the fault injection point.
    _misc: miscdev::Registration,
    _async: completion::Runtime,
    _faults: pacer::PaceFaults,
    _events: net::DevEvents,
}

impl kernel::Module for MdwModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        ffi::check_layouts()?;
        let faults = pacer::PaceFaults::new();
        let runtime = completion::Runtime::new()?;
        let events = net::DevEvents::new()?;
        // Registration makes the device visible, so it comes last.
        let misc = miscdev::Registration::new()?;
        pr_info!("ABI version {} ready\n", abi::MDW_ABI_VERSION);
        Ok(Self {
            _misc: misc,
            _async: runtime,
            _faults: faults,
            _events: events,
        })
    }
}
