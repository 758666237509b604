// SPDX-License-Identifier: GPL-2.0

//! Helpers of the helper's integration tests: run `mdwrite`, start
//! receivers, generate media, capture with tshark.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

/// The `mdwrite` binary under test.
pub fn mdwrite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mdwrite"))
}

/// Runs `mdwrite ARGS`.
pub fn run(args: &[&str]) -> Output {
    mdwrite().args(args).output().expect("run mdwrite")
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `tool` runs (`tool -version` or `tool --version`).
pub fn have(tool: &str) -> bool {
    ["-version", "--version"].iter().any(|v| {
        Command::new(tool)
            .arg(v)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether the tests run as root (a tshark capture needs it).
pub fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Generates a two-program MPEG-TS clip with tests/media/gen-clip.sh.
pub fn gen_clip(out: &Path, secs: f64, muxrate: u64) {
    let status = Command::new("bash")
        .arg(repo().join("tests/media/gen-clip.sh"))
        .arg(out)
        .arg(secs.to_string())
        .arg(muxrate.to_string())
        .status()
        .expect("run gen-clip.sh");
    assert!(status.success(), "gen-clip.sh failed");
}

/// A running `mdwrite recv`, with the addresses it bound.
pub struct Receiver {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    stderr: mpsc::Receiver<String>,
}

impl Receiver {
    /// Starts `mdwrite recv` with `n` listeners on 127.0.0.1 port 0 and
    /// `extra` arguments; returns once all are bound.
    pub fn start(n: usize, extra: &[&str]) -> Receiver {
        Receiver::start_on(&vec!["127.0.0.1:0"; n], extra)
    }

    /// Starts `mdwrite recv` with a listener on each of `listen` and
    /// `extra` arguments; returns once all are bound.
    pub fn start_on(listen: &[&str], extra: &[&str]) -> Receiver {
        let n = listen.len();
        let mut cmd = mdwrite();
        cmd.arg("recv");
        for l in listen {
            cmd.args(["--listen", l]);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mdwrite recv");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut addrs = Vec::new();
        while addrs.len() < n {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("mdwrite recv did not start");
            match line.strip_prefix("mdwrite recv: listening on ") {
                Some(a) => addrs.push(a.parse().unwrap()),
                None => panic!("unexpected from mdwrite recv: {line}"),
            }
        }
        Receiver {
            child,
            addrs,
            stderr: rx,
        }
    }

    /// Waits for it to end; its exit code, stdout and stderr.
    pub fn finish(self) -> (i32, String, String) {
        let out = self
            .child
            .wait_with_output()
            .expect("wait for mdwrite recv");
        // All of stderr: the reader thread ends at its end of file.
        let err: Vec<String> = self.stderr.iter().collect();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err.join("\n"),
        )
    }
}

/// The value of `key` in a line of `key=value` fields.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// A tshark capture on the loopback device.
pub struct Capture {
    child: Child,
    pub file: PathBuf,
}

impl Capture {
    /// Starts capturing UDP to `ports` on `lo` into `file`; returns once
    /// tshark captures.
    pub fn start(file: &Path, ports: &[u16]) -> Capture {
        let filter = ports
            .iter()
            .map(|p| format!("udp dst port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-f", &filter, "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("tshark did not start capturing");
            if line.contains("Capturing on") {
                break;
            }
        }
        // dumpcap reports before its first read; give it a moment.
        thread::sleep(Duration::from_millis(500));
        Capture {
            child,
            file: file.to_owned(),
        }
    }

    /// Stops the capture (SIGINT, so the file is complete).
    pub fn stop(mut self) {
        thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait for tshark");
        assert!(self.file.exists(), "tshark wrote nothing ({status})");
    }
}

/// `tshark -r FILE` with RTP decoding on `ports`, and `args`.
pub fn tshark_read(file: &Path, ports: &[u16], args: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file);
    for p in ports {
        cmd.args(["-d", &format!("udp.port=={p},rtp")]);
    }
    let out = cmd.args(args).output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
