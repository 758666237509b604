// SPDX-License-Identifier: GPL-2.0

//! Multi-destination zero-copy UDP write.
//!
//! This crate is the userspace side of the `mdwrite` kernel module: it opens
//! `/dev/mdwrite` and wraps its ioctls in safe Rust. Errors are
//! [`std::io::Error`]s that keep the kernel's errno
//! ([`std::io::Error::raw_os_error`]).
//!
//! # Examples
//!
//! ```no_run
//! let dev = mdwrite::Device::open()?;
//! let info = dev.info()?;
//! println!("mdwrite ABI {}", info.abi_version);
//! # Ok::<(), std::io::Error>(())
//! ```

mod dest;
mod device;
mod sys;
mod write;

pub use dest::{DestConfig, DestId, Rtp};
pub use device::{Device, Features, Info};
pub use mdwrite_uapi as uapi;
pub use write::{Entry, Stats, WriteOptions, WriteReport};
