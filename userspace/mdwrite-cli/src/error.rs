// SPDX-License-Identifier: GPL-2.0

//! The helper's errors: each says what failed and, where there is one,
//! what to do about it.

use std::{io, net::SocketAddr, path::PathBuf, process::ExitCode};

/// Exit status: success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit status: a runtime error (message on stderr).
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit status: bad usage (clap's own errors use it too).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status of `recv --fail-on-loss`: packets were lost (or none came).
pub(crate) const EXIT_LOSS: u8 = 3;

/// A failure, with enough context for a person to act on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Arguments that cannot work whatever the machine.
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    NotTs {
        path: PathBuf,
        source: mdwrite::media::ts::TsError,
    },
    #[error("{}: {source} with --bitrate", path.display())]
    NoPcr {
        path: PathBuf,
        source: mdwrite::media::pcr::EstimateError,
    },
    #[error(
        "{} is not MPEG-TS (no sync byte 0x47 at its start); give --bitrate to send it as \
         opaque bytes, or --format ts to see why it is not MPEG-TS",
        path.display()
    )]
    OpaqueNeedsBitrate { path: PathBuf },
    #[error("{0}")]
    UnknownInterface(io::Error),
    /// `source` names the destination.
    #[error("{source}")]
    NoRoute { source: io::Error },
    #[error(
        "{what}: {source}: the module backend needs CAP_NET_RAW (run as root, or install the \
     packages, which give the helper that capability)"
    )]
    Privilege { what: String, source: io::Error },
    #[error(
        "cannot open {}: {source}: the module is for root and members of the mdwrite \
         group (the packages' udev rule; see Documentation/install.rst), or use --backend fallback",
        mdwrite::Device::PATH
    )]
    DeviceDenied { source: io::Error },
    #[error(
        "the mdwrite module is not loaded ({}: {source}); load mdwrite.ko or use --backend fallback",
        mdwrite::Device::PATH
    )]
    NoModule { source: io::Error },
    #[error(
        "--pace {mode} needs the mdwrite module with paced calls: {reason}; use --pace auto or \
         user (see Documentation/cli.rst)"
    )]
    NoKernelPacing {
        mode: &'static str,
        reason: &'static str,
    },
    #[error("cannot resolve {host}: {message}")]
    Resolve { host: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("{}: {message}", path.display())]
    Stream { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl Error {
    /// The exit status for this error.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_ERROR,
        })
    }

    /// An error of `context`; a missing privilege is called so.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        let context = context.into();
        if is_privilege(&source) {
            Error::Privilege {
                what: context,
                source,
            }
        } else {
            Error::Io { context, source }
        }
    }
}

/// Whether `e` is `EPERM` or `EACCES`.
pub(crate) fn is_privilege(e: &io::Error) -> bool {
    matches!(
        mdwrite::errno(e),
        Some(n) if n == rustix::io::Errno::PERM.raw_os_error() || n == rustix::io::Errno::ACCESS.raw_os_error()
    )
}

/// Whether `e` is the errno `errno`.
pub(crate) fn is_errno(e: &io::Error, errno: rustix::io::Errno) -> bool {
    mdwrite::errno(e) == Some(errno.raw_os_error())
}
