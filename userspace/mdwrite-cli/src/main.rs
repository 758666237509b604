// SPDX-License-Identifier: GPL-2.0

//! `mdwrite`: the command-line helper of the mdwrite kernel module.
//!
//! Exit codes: 0 success, 1 runtime error (message on stderr), 2 bad usage.

use std::{io, process::ExitCode};

use clap::{Parser, Subcommand};
use mdwrite::Device;

/// Multi-destination zero-copy UDP write.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the backend, the module's ABI version and its features.
    Info,
}

/// A failure, with enough context for a person to act on it.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot open {path}: {source} (is the mdwrite module loaded?)")]
    Open {
        path: &'static str,
        source: io::Error,
    },
    #[error("cannot open {path}: {source} (mdwrite needs root)")]
    Denied {
        path: &'static str,
        source: io::Error,
    },
    #[error("MDW_IOC_INFO failed: {0}")]
    Info(io::Error),
}

fn open_device() -> Result<Device, Error> {
    let path = Device::PATH;
    Device::open().map_err(|source| match source.kind() {
        io::ErrorKind::PermissionDenied => Error::Denied { path, source },
        _ => Error::Open { path, source },
    })
}

fn info() -> Result<(), Error> {
    let dev = open_device()?;
    let info = dev.info().map_err(Error::Info)?;
    println!("backend: kernel module ({})", Device::PATH);
    println!("abi_version: {}", info.abi_version);
    println!("library_abi_version: {}", mdwrite::uapi::MDW_ABI_VERSION);
    println!("features: {}", info.features);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdwrite: {e}");
            ExitCode::FAILURE
        }
    }
}
