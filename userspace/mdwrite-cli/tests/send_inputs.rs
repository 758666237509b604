// SPDX-License-Identifier: GPL-2.0

//! `mdwrite send` with the inputs and options people use: standard input
//! and pipes, a truncated last TS packet, a closed stdout, host names,
//! `--listen :PORT`, IPv6 sources, `--json`, `--stats-interval`,
//! per-destination counters and port 0. Over loopback, fallback backend.

mod common;

use std::{
    fs, io::Write, net::UdpSocket, os::unix::process::ExitStatusExt, process::Stdio, time::Duration,
};

use common::{field, mdwrite, run, Receiver};

/// `n` TS packets of PID 256 with a PCR every 10th, as if muxed at
/// `bitrate` b/s; payload bytes count up so that every byte is checked.
fn ts_clip(n: usize, bitrate: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 188);
    for i in 0..n {
        let mut p = [0u8; 188];
        p[0] = 0x47;
        p[1] = 0x01;
        p[2] = 0x00;
        let mut at = 4;
        if i % 10 == 0 {
            // Adaptation field with a PCR: the time of this packet's first
            // byte at `bitrate`, in 27 MHz ticks.
            p[3] = 0x30 | (i as u8 & 15);
            p[4] = 7; // adaptation_field_length
            p[5] = 0x10; // PCR_flag
            let pcr = (i as u64 * 188 * 8) * 27_000_000 / bitrate;
            let (base, ext) = (pcr / 300, pcr % 300);
            p[6] = (base >> 25) as u8;
            p[7] = (base >> 17) as u8;
            p[8] = (base >> 9) as u8;
            p[9] = (base >> 1) as u8;
            p[10] = ((base & 1) << 7) as u8 | 0x7e | (ext >> 8) as u8;
            p[11] = ext as u8;
            at = 12;
        } else {
            p[3] = 0x10 | (i as u8 & 15);
        }
        for (k, b) in p[at..].iter_mut().enumerate() {
            *b = (i + k) as u8;
        }
        out.extend_from_slice(&p);
    }
    out
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `mdwrite send ARGS` with `input` on its standard input (a pipe).
fn send_stdin(args: &[&str], input: Vec<u8>) -> std::process::Output {
    let mut child = mdwrite()
        .arg("send")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // Two writes, so that the pipe is read in pieces.
        let (a, b) = input.split_at(input.len() / 3);
        let _ = w.write_all(a);
        std::thread::sleep(Duration::from_millis(50));
        let _ = w.write_all(b);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// The saved payload of receiver `i` after it stopped.
fn saved(dir: &std::path::Path, i: usize) -> Vec<u8> {
    fs::read(dir.join(format!("o{i}"))).unwrap()
}

fn receivers(dir: &std::path::Path, n: usize, extra: &[&str]) -> Receiver {
    let outs: Vec<String> = (0..n)
        .map(|i| dir.join(format!("o{i}")).to_str().unwrap().to_owned())
        .collect();
    let mut args: Vec<&str> = vec!["--idle-timeout", "3"];
    for o in &outs {
        args.extend(["--output", o.as_str()]);
    }
    args.extend(extra);
    Receiver::start(n, &args)
}

#[test]
fn standard_input_with_and_without_bitrate() {
    let dir = tempfile::tempdir().unwrap();
    let clip = ts_clip(700, 2_000_000);
    // The bitrate from the PCRs of the pipe: every byte arrives, the first
    // ones included.
    let r = receivers(dir.path(), 1, &[]);
    let to = r.addrs[0].to_string();
    let out = send_stdin(&["-", "--to", &to, "--backend", "fallback"], clip.clone());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let stream = text.lines().find(|l| l.starts_with("stream ")).unwrap();
    assert_eq!(field(stream, "bitrate_from"), "pcr", "{text}");
    let rate: u64 = field(stream, "bitrate").parse().unwrap();
    assert!(rate.abs_diff(2_000_000) < 20_000, "{rate}");
    assert_eq!(field(stream, "bytes"), clip.len().to_string());
    let (code, _, err) = r.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(saved(dir.path(), 0), clip, "PCR bitrate from a pipe");

    // Opaque bytes with --bitrate: the first bytes are not lost.
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let r = receivers(dir.path(), 1, &[]);
    let to = r.addrs[0].to_string();
    let out = send_stdin(
        &["-", "--to", &to, "--bitrate", "4M", "--backend", "fallback"],
        data.clone(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    r.finish();
    assert_eq!(saved(dir.path(), 0), data, "opaque bytes from a pipe");

    // The same through /dev/stdin (`cat clip.ts | mdwrite send /dev/stdin`),
    // a TS clip with --bitrate: opened once, nothing lost.
    let r = receivers(dir.path(), 1, &[]);
    let to = r.addrs[0].to_string();
    let out = send_stdin(
        &[
            "/dev/stdin",
            "--to",
            &to,
            "--bitrate",
            "2M",
            "--backend",
            "fallback",
        ],
        clip.clone(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    r.finish();
    assert_eq!(
        saved(dir.path(), 0),
        clip,
        "TS from /dev/stdin with --bitrate"
    );
}

#[test]
fn loop_needs_input_that_seeks() {
    let out = send_stdin(
        &["-", "--to", "127.0.0.1:9", "--bitrate", "1M", "--loop"],
        vec![0u8; 1000],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--loop needs input that can seek"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn truncated_last_packet_sends_the_whole_ones_then_warns() {
    let dir = tempfile::tempdir().unwrap();
    let clip = ts_clip(700, 2_000_000);
    let mut cut = clip.clone();
    cut.extend_from_slice(&[0x47; 100]);
    let f = dir.path().join("cut.ts");
    fs::write(&f, &cut).unwrap();
    let r = receivers(dir.path(), 1, &[]);
    let to = r.addrs[0].to_string();
    let out = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &to,
        "--backend",
        "fallback",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the input ends 100 bytes into the TS packet at offset 131600")
            && err.contains("sent the whole packets before it"),
        "{err}"
    );
    r.finish();
    assert_eq!(saved(dir.path(), 0), clip);

    // 400 stray bytes that are not TS: every good packet before them is
    // sent, then the error (exit 1, the stream's end=error). (Without
    // --bitrate the PCR estimate reports the bad byte before sending.)
    let mut bad = clip.clone();
    bad.extend_from_slice(&[0; 400]);
    fs::write(&f, &bad).unwrap();
    let r = receivers(dir.path(), 1, &[]);
    let to = r.addrs[0].to_string();
    let out = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &to,
        "--bitrate",
        "2M",
        "--backend",
        "fallback",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("byte 0x00 at offset 131600"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let stream = text.lines().find(|l| l.starts_with("stream ")).unwrap();
    assert_eq!(field(stream, "end"), "error");
    r.finish();
    assert_eq!(saved(dir.path(), 0), clip);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.bin");
    fs::write(&f, vec![1u8; 20_000]).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let mut child = mdwrite()
        .args(["send", f.to_str().unwrap(), "--to", &to, "--bitrate", "2M"])
        .args(["--backend", "fallback", "--stats-interval", "0.01"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader goes away at once.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(
        out.status.signal() == Some(libc_sigpipe()) || out.status.success(),
        "{:?}: {err}",
        out.status
    );
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn host_names_listen_any_json_stats_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
    let f = dir.path().join("a.bin");
    fs::write(&f, &data).unwrap();
    // recv --listen :PORT (every IPv4 address), sent to by name.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let out_file = dir.path().join("o0");
    let listen = format!(":{port}");
    let mut r = mdwrite()
        .args(["recv", "--listen", &listen, "--idle-timeout", "3"])
        .args(["--output", out_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(r.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!("mdwrite recv: listening on 0.0.0.0:{port}")
    );
    let to = format!("localhost:{port}");
    let out = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &to,
        "--bitrate",
        "2M",
        "--backend",
        "fallback",
        "--json",
        "--stats-interval",
        "0.05",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    r.wait().unwrap();
    assert_eq!(fs::read(&out_file).unwrap(), data);
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let stats: Vec<_> = lines.iter().filter(|v| v.get("stats").is_some()).collect();
    assert!(stats.len() >= 2, "{text}");
    assert_eq!(stats[0]["stats"]["to"], format!("127.0.0.1:{port}"));
    let summary = lines.last().unwrap();
    let dest = &summary["destinations"][0];
    assert_eq!(dest["to"], format!("127.0.0.1:{port}"));
    assert_eq!(dest["bytes"], 30_000);
    assert_eq!(dest["packets"], 30_000u64.div_ceil(1316));
    assert_eq!(summary["streams"][0]["bytes"], 30_000);
    assert_eq!(summary["total"]["backend"], "fallback");
    assert_eq!(summary["total"]["write_errors"], 0);
}

#[test]
fn ipv6_sources_print_in_brackets() {
    let Ok(sink) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.bin");
    fs::write(&f, vec![5u8; 3000]).unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let out = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &to,
        "--bitrate",
        "1M",
        "--backend",
        "fallback",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let dest = text.lines().find(|l| l.starts_with("dest ")).unwrap();
    assert_eq!(field(dest, "to"), to);
    assert!(field(dest, "from").starts_with("[::1]:"), "{dest}");
    assert_eq!(field(dest, "bytes"), "3000");
    assert_eq!(field(dest, "packets"), "3");
}

#[test]
fn bad_destinations_are_bad_usage() {
    for (to, message) in [
        ("127.0.0.1:0", "port 0 is not a destination port"),
        (":5000", "has no address"),
        ("fd00::1:5000", "is not ADDR:PORT"),
    ] {
        let out = run(&["send", "x.bin", "--to", to, "--bitrate", "1M"]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{to}: {}", stderr(&out));
    }
    let out = run(&[
        "send",
        "x.bin",
        "--to",
        "no-such-host.invalid:5000",
        "--bitrate",
        "1M",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot resolve no-such-host.invalid"),
        "{}",
        stderr(&out)
    );
    for (args, message) in [
        (&["--ttl", "0"][..], "--ttl"),
        (&["--dscp", "64"], "--dscp"),
    ] {
        let out = run(&[&["send", "x.bin", "--to", "127.0.0.1:9"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

#[test]
fn a_given_bitrate_far_from_the_pcrs_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.ts");
    fs::write(&f, ts_clip(300, 2_000_000)).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let out = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &to,
        "--bitrate",
        "3M",
        "--backend",
        "fallback",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--bitrate 3000000 is 50% off the PCR estimate 2000000"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn recv_interface_and_source_errors() {
    let out = run(&[
        "recv",
        "--listen",
        "239.255.1.1:0",
        "--interface",
        "nosuchif0",
        "--duration",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown interface \"nosuchif0\""),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "recv",
        "--listen",
        "127.0.0.1:0",
        "--source",
        "10.0.0.1",
        "--duration",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--source needs a multicast --listen address"),
        "{}",
        stderr(&out)
    );
}
