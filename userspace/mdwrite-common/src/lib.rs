// SPDX-License-Identifier: GPL-2.0

//! The mdwrite kernel module's pure send-path logic, built for the host.
//!
//! The modules are the files of `rust/common/`, compiled unchanged into the
//! kernel module: `core` only, no allocation, no unsafe code, no panics.
//! The lints below hold them to that; the tests are in `tests/`.

#![no_std]
#![forbid(unsafe_code)]
#![deny(
    missing_docs,
    clippy::missing_docs_in_private_items,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::float_arithmetic
)]

#[path = "../../../rust/common/checksum.rs"]
pub mod checksum;

#[path = "../../../rust/common/group.rs"]
pub mod group;

#[path = "../../../rust/common/interleave.rs"]
pub mod interleave;

#[path = "../../../rust/common/pace.rs"]
pub mod pace;

#[path = "../../../rust/common/recycle.rs"]
pub mod recycle;

#[path = "../../../rust/common/runcache.rs"]
pub mod runcache;

#[path = "../../../rust/common/runs.rs"]
pub mod runs;

#[path = "../../../rust/common/segment.rs"]
pub mod segment;

#[path = "../../../rust/common/template.rs"]
pub mod template;
