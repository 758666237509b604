// SPDX-License-Identifier: GPL-2.0

//! `mdwrite`: the command-line helper of the mdwrite kernel module.
//!
//! Exit codes: 0 success, 1 runtime error (message on stderr), 2 bad usage,
//! 3 packets lost (`recv --fail-on-loss`). Documentation/cli.rst has every
//! command, option and output format.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod endpoint;
mod error;
mod info;
mod recv;
mod relay;
mod send;
mod units;

/// Multi-destination zero-copy UDP streaming through the mdwrite kernel
/// module (or a userspace fallback).
///
/// Exit status: 0 success, 1 error, 2 bad usage, 3 packets lost (recv
/// --fail-on-loss).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the backend, the module's ABI version, features and counters.
    Info,
    /// Stream files to many UDP/RTP destinations in real time.
    Send(send::SendArgs),
    /// Receive and analyse UDP/RTP streams, optionally saving the payload.
    Recv(recv::RecvArgs),
    /// Receive one UDP/RTP stream and send it on to many destinations.
    Relay(relay::RelayArgs),
}

fn main() -> ExitCode {
    // A closed stdout (`mdwrite ... | head`) ends the program quietly, as
    // it does other Unix tools, instead of a panic in println!.
    // SAFETY: restores the default disposition of SIGPIPE before any
    // thread starts; no handler of ours is replaced.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Info => info::run().map(|()| error::EXIT_OK),
        Command::Send(args) => {
            let m = matches.subcommand_matches("send").expect("send matches");
            let at = |id| m.indices_of(id).map(Iterator::collect).unwrap_or_default();
            let (files_at, to_at, bitrate_at): (Vec<usize>, Vec<usize>, Vec<usize>) =
                (at("files"), at("to"), at("bitrate"));
            send::run(args, &files_at, &to_at, &bitrate_at)
        }
        Command::Recv(args) => recv::run(args),
        Command::Relay(args) => relay::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mdwrite: {e}");
            e.exit_code()
        }
    }
}

/// The command-line definition, for the man pages and shell completions
/// (`src/bin/mdwrite-gen-docs.rs`).
#[allow(dead_code)]
pub(crate) fn command() -> clap::Command {
    Cli::command()
}
