// SPDX-License-Identifier: GPL-2.0

//! `mdwrite relay` over loopback with the fallback backend: fan-out byte
//! for byte, per-destination RTP SSRC and sequence numbers, a chain of two
//! relays, destinations added and removed on SIGHUP, bad usage.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use common::{field, mdwrite, run, Receiver};

/// A running `mdwrite relay` and the address it listens on.
struct Relay {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Relay {
    fn start(args: &[&str]) -> Relay {
        let mut child = mdwrite()
            .args(["relay", "--listen", "127.0.0.1:0", "--backend", "fallback"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let addr = line
            .strip_prefix("mdwrite relay: listening on ")
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        Relay {
            child,
            addr,
            stderr: rx,
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for it to end; exit code, stdout, stderr.
    fn finish(self) -> (i32, String, String) {
        let out = self.child.wait_with_output().unwrap();
        let err: Vec<String> = self.stderr.iter().collect();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err.join("\n"),
        )
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i * 31 + i / 1316) as u8).collect()
}

/// Sends `file` to `to` at `rate` with RTP, through the fallback.
fn send(file: &std::path::Path, to: SocketAddr, rate: &str) {
    let out = run(&[
        "send",
        file.to_str().unwrap(),
        "--to",
        &to.to_string(),
        "--bitrate",
        rate,
        "--rtp",
        "--backend",
        "fallback",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn outputs(dir: &std::path::Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| dir.join(format!("o{i}")).to_str().unwrap().to_owned())
        .collect()
}

fn recv_args(outs: &[String]) -> Vec<&str> {
    let mut args = vec!["--rtp", "--idle-timeout", "4"];
    for o in outs {
        args.extend(["--output", o.as_str()]);
    }
    args
}

#[test]
fn fans_out_byte_for_byte_with_own_ssrc_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let clip = data(200_000);
    let file = dir.path().join("clip.bin");
    fs::write(&file, &clip).unwrap();
    let outs = outputs(dir.path(), 3);
    let rx = Receiver::start(3, &recv_args(&outs));
    let to: Vec<String> = rx.addrs.iter().map(|a| a.to_string()).collect();
    let relay = Relay::start(&[
        "--rtp",
        "--idle-timeout",
        "3",
        "--to",
        &to[0],
        "--to",
        &to[1],
        "--to",
        &to[2],
    ]);
    send(&file, relay.addr, "4M");
    let (code, text, err) = relay.finish();
    assert_eq!(code, 0, "{err}");
    let (rc, report, rerr) = rx.finish();
    assert_eq!(rc, 0, "{rerr}");
    let packets = clip.len().div_ceil(1316);
    let head = text.lines().next().unwrap();
    assert_eq!(field(head, "datagrams"), packets.to_string(), "{text}");
    assert_eq!(field(head, "not_rtp"), "0");
    assert_eq!(field(head, "end"), "idle");
    let mut ssrcs = Vec::new();
    for (i, line) in report.lines().enumerate() {
        assert_eq!(field(line, "packets"), packets.to_string(), "{line}");
        assert_eq!(field(line, "lost"), "0", "{line}");
        assert_eq!(field(line, "seq_errors"), "0", "{line}");
        ssrcs.push(field(line, "ssrc").to_owned());
        assert_eq!(fs::read(&outs[i]).unwrap(), clip, "receiver {i}");
    }
    ssrcs.sort();
    ssrcs.dedup();
    assert_eq!(ssrcs.len(), 3, "one SSRC per destination: {report}");
    for d in text.lines().filter(|l| l.starts_with("dest ")) {
        assert_eq!(field(d, "packets"), packets.to_string(), "{d}");
        assert_eq!(field(d, "bytes"), clip.len().to_string(), "{d}");
        assert!(ssrcs.contains(&field(d, "ssrc").to_owned()), "{d}");
    }
}

#[test]
fn a_chain_of_two_relays() {
    let dir = tempfile::tempdir().unwrap();
    let clip = data(100_000);
    let file = dir.path().join("clip.bin");
    fs::write(&file, &clip).unwrap();
    let outs = outputs(dir.path(), 2);
    let rx = Receiver::start(2, &recv_args(&outs));
    let second = Relay::start(&[
        "--rtp",
        "--idle-timeout",
        "4",
        "--to",
        &rx.addrs[0].to_string(),
        "--to",
        &rx.addrs[1].to_string(),
    ]);
    let first = Relay::start(&[
        "--rtp",
        "--idle-timeout",
        "3",
        "--to",
        &second.addr.to_string(),
    ]);
    send(&file, first.addr, "4M");
    for r in [first, second] {
        let (code, _, err) = r.finish();
        assert_eq!(code, 0, "{err}");
    }
    let (rc, report, rerr) = rx.finish();
    assert_eq!(rc, 0, "{rerr}\n{report}");
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(fs::read(o).unwrap(), clip, "receiver {i}");
    }
}

#[test]
fn sighup_adds_and_removes_destinations_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    // 2 s at 2 Mb/s.
    let clip = data(500_000);
    let file = dir.path().join("clip.bin");
    fs::write(&file, &clip).unwrap();
    let outs = outputs(dir.path(), 3);
    let rx = Receiver::start(3, &recv_args(&outs));
    let list = dir.path().join("dests");
    let line = |i: usize| format!("{}\n", rx.addrs[i]);
    // Receivers 0 and 1 at first; then 1 leaves and 2 joins.
    fs::write(&list, format!("# the destinations\n{}{}", line(0), line(1))).unwrap();
    let relay = Relay::start(&[
        "--rtp",
        "--idle-timeout",
        "3",
        "--to-file",
        list.to_str().unwrap(),
    ]);
    let sender = {
        let file = file.clone();
        let to = relay.addr;
        thread::spawn(move || send(&file, to, "2M"))
    };
    thread::sleep(Duration::from_millis(800));
    fs::write(&list, format!("{}\n{}", line(0), line(2))).unwrap();
    relay.signal(rustix::process::Signal::HUP);
    sender.join().unwrap();
    let (code, text, err) = relay.finish();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("removed {}", rx.addrs[1])), "{err}");
    assert!(err.contains(&format!("added {}", rx.addrs[2])), "{err}");
    // The destinations it started with are not reported as added.
    assert_eq!(err.matches("mdwrite relay: added ").count(), 1, "{err}");
    rx.finish();
    // Receiver 0 throughout: everything.
    assert_eq!(fs::read(&outs[0]).unwrap(), clip);
    // Receiver 1 until the signal: a beginning of whole packets.
    let got1 = fs::read(&outs[1]).unwrap();
    assert!(
        !got1.is_empty() && got1.len() < clip.len(),
        "{}",
        got1.len()
    );
    assert_eq!(got1, clip[..got1.len()]);
    assert_eq!(got1.len() % 1316, 0);
    // Receiver 2 from the signal: the end, from a packet boundary.
    let got2 = fs::read(&outs[2]).unwrap();
    assert!(
        !got2.is_empty() && got2.len() < clip.len(),
        "{}",
        got2.len()
    );
    assert_eq!(got2, clip[clip.len() - got2.len()..]);
    // Together, nothing missing at the switch.
    assert!(got1.len() + got2.len() >= clip.len(), "a gap");
    let dests: Vec<&str> = text.lines().filter(|l| l.starts_with("dest ")).collect();
    assert_eq!(dests.len(), 3, "{text}");
    assert!(dests.iter().any(|d| field(d, "active") == "false"));
}

#[test]
fn relay_usage_errors() {
    let out = run(&["relay", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--to ADDR:PORT or --to-file"));
    let out = run(&["relay", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--source",
        "10.0.0.1",
        "--to",
        "127.0.0.1:9",
        "--duration",
        "0.1",
    ]);
    // A unicast listener with --source only filters: it runs.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn empty_and_oversized_datagrams_are_dropped_and_counted() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let relay = Relay::start(&[
        "--idle-timeout",
        "1",
        "--to",
        &rx.local_addr().unwrap().to_string(),
    ]);
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&[], relay.addr).unwrap();
    tx.send_to(&[9u8; 3000], relay.addr).unwrap();
    tx.send_to(&[7u8; 100], relay.addr).unwrap();
    let mut buf = [0u8; 4096];
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[7u8; 100][..]);
    let (code, text, err) = relay.finish();
    assert_eq!(code, 0, "{err}");
    let head = text.lines().next().unwrap();
    assert_eq!(field(head, "datagrams"), "3", "{head}");
    assert_eq!(field(head, "empty"), "1", "{head}");
    assert_eq!(field(head, "truncated"), "1", "{head}");
    rx.set_nonblocking(true).unwrap();
    assert!(rx.recv(&mut buf).is_err(), "only one datagram relayed");
}
