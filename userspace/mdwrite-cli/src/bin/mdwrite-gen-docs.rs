// SPDX-License-Identifier: GPL-2.0

//! `mdwrite-gen-docs OUTDIR`: the man pages and shell completions of
//! `mdwrite`, generated from its clap definition.
//!
//! Writes `OUTDIR/man/mdwrite.1` and one page per subcommand
//! (`mdwrite-send.1`, ...), and `OUTDIR/completions/mdwrite.bash`,
//! `_mdwrite` (zsh) and `mdwrite.fish`. The Debian package installs them
//! (debian/rules); nothing else runs this program.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap_complete::Shell;

// The helper's own source, compiled a second time as a module of this
// program, so the pages describe exactly the options `mdwrite` parses. Its
// `main` and whatever only `main` uses are dead code here. Its modules name
// `crate::error` and `crate::units`, so those two are at this crate's root
// as well (a module of main.rs reached through `crate::` needs a line here).
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../main.rs"]
mod cli;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../error.rs"]
mod error;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../units.rs"]
mod units;

fn generate(out: &Path) -> io::Result<()> {
    // The package is mdwrite-cli; the command the pages name is `mdwrite`.
    let mut cmd = cli::command().name("mdwrite").bin_name("mdwrite");
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    // mdwrite.1, mdwrite-send.1, mdwrite-recv.1, ...
    clap_mangen::generate_to(cmd.clone(), &man)?;

    let comp = out.join("completions");
    fs::create_dir_all(&comp)?;
    for (shell, file) in [
        (Shell::Bash, "mdwrite.bash"),
        (Shell::Zsh, "_mdwrite"),
        (Shell::Fish, "mdwrite.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "mdwrite", &mut script);
        fs::File::create(comp.join(file))?.write_all(&script)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: mdwrite-gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdwrite-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}
