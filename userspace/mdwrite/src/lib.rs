// SPDX-License-Identifier: GPL-2.0

//! Multi-destination zero-copy UDP write.
//!
//! This crate is the userspace side of the `mdwrite` kernel module.
//!
//! - [`Sender`] is a socket-like sender over two backends: the module
//!   (`/dev/mdwrite`) when it is loaded, a `sendmmsg` fallback otherwise
//!   ([`Backend`]); both put the same packets on the wire.
//! - [`StreamGroup`] paces many streams, each a source of bytes at a
//!   bitrate, and sends what all of them are due with one call per tick;
//!   with [`GroupOptions::pace`] one call per latency budget, every
//!   stream's packets timed at its own rate ([`Pace`]).
//! - Paced calls ([`WriteOptions::pace`], [`PaceWindow`], [`EntryPace`])
//!   give every packet a departure time: released by the module
//!   (`MDW_FEAT_PACE`), by `fq` (`SO_TXTIME`), or in user space.
//! - [`RegisteredBuffer`]s are memory registered with the module once, so
//!   that sending from them pins nothing; [`Sender::send_async`] takes the
//!   buffers it sends from by value, returns once the call is queued, and
//!   its [`Completion`] hands them back when the device is done with them.
//!   Both work on either backend. [`Sender`] is [`AsFd`](std::os::fd::AsFd)
//!   for event loops (see the `tokio_async` example).
//! - [`udp::recv_batch`] receives datagrams with `recvmmsg` into a buffer,
//!   for relaying them without a copy.
//! - [`Device`] is the raw module: its ioctls in safe Rust.
//!
//! Errors are [`std::io::Error`]s that keep the kernel's errno
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

mod buffer;
mod clock;
mod completion;
mod dest;
mod device;
mod fallback;
mod fanout;
mod group;
pub mod media;
mod pace;
mod route;
mod sender;
mod sys;
pub mod udp;
mod write;

pub use buffer::RegisteredBuffer;
pub use clock::{Clock, FakeClock, MonotonicClock};
pub use completion::{Completion, COMPLETION_SIZE};
pub use dest::{DestConfig, DestId, GroupId, Rtp};
pub use device::{Device, Features, Info};
pub use fallback::FallbackStats;
pub use group::{
    DestCount, GroupOptions, StreamConfig, StreamGroup, StreamId, StreamStats, TickReport,
    Transmit, MAX_PACED_INTERVAL, MAX_PACE_LEAD, MIN_INTERVAL,
};
pub use mdwrite_uapi as uapi;
pub use pace::{EntryPace, Pace, PaceClock, PaceWindow};
pub use route::{errno, interface_index, interface_mtu, interface_name, OsContext};
pub use sender::{AsyncEntry, Backend, SendError, Sender};
pub use write::{Entry, Stats, WriteOptions, WriteReport};
