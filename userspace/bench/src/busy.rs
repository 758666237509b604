// SPDX-License-Identifier: GPL-2.0

//! `mdwrite-bench busy -- CMD [ARGS...]`: the whole guest's busy time
//! while a command runs, under `-icount` its instructions (user and
//! kernel, the command's and whatever it makes the kernel do: timers,
//! softirqs, transmits). Measured as the time an idle-priority spinner
//! ([`Soaker`]) did not get, calibrated first. The command's output passes
//! through; the last line is `busy_ns=N seconds=S`. Used for a whole
//! program's cost per packet (`mdwrite send`, `scripts/bench.sh --sender`).

use std::{io, process::Command};

use crate::pace::Soaker;

/// Runs `cmd` and prints the guest's busy nanoseconds over it; whether
/// it succeeded.
pub(crate) fn busy(cmd: &[String]) -> io::Result<bool> {
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "busy: no command"))?;
    let mut soaker = Soaker::start(20_000_000)?;
    soaker.calibrate_min(20, 20_000_000)?;
    let a = soaker.sample();
    let status = Command::new(prog).args(args).status()?;
    let b = soaker.sample();
    println!(
        "busy_ns={} seconds={:.3}",
        soaker.busy(a, b),
        (b.0 - a.0) as f64 / 1e9
    );
    Ok(status.success())
}
