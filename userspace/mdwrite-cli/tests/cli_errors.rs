// SPDX-License-Identifier: GPL-2.0

//! The helper's argument and input errors: exit codes and messages.

mod common;

use std::{fs, net::UdpSocket, path::Path, time::Duration};

use common::{field, run, Receiver};
use mdwrite::media::rtp::RtpHeader;

/// Exit status and stderr of `mdwrite ARGS`.
fn fails(args: &[&str]) -> (i32, String) {
    let out = run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_fails(args: &[&str], code: i32, message: &str) {
    let (c, err) = fails(args);
    assert_eq!(c, code, "mdwrite {args:?}: {err}");
    assert!(
        err.contains(message),
        "mdwrite {args:?}: {err:?} lacks {message:?}"
    );
}

/// A TS packet of `pid`, no PCR.
fn ts_packet(pid: u16, cc: u8) -> [u8; 188] {
    let mut p = [0xffu8; 188];
    p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x10 | (cc & 15)]);
    p
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["send", "--help"],
        &["recv", "--help"],
        &["info", "--help"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: mdwrite"), "{args:?}: {text}");
    }
    let text = String::from_utf8_lossy(&run(&["--help"]).stdout).into_owned();
    assert!(text.contains("Exit status"), "{text}");
}

#[test]
fn usage_errors_exit_2() {
    assert_fails(&[], 2, "Usage: mdwrite");
    assert_fails(&["frobnicate"], 2, "unrecognized subcommand");
    assert_fails(&["send", "x.ts"], 2, "--to <ADDR:PORT>");
    assert_fails(&["send", "--to", "127.0.0.1:5000"], 2, "<FILE>");
    assert_fails(
        &["send", "x.ts", "--to", "localhost"],
        2,
        "invalid value 'localhost'",
    );
    assert_fails(
        &[
            "send",
            "x.ts",
            "--to",
            "127.0.0.1:5000",
            "--bitrate",
            "fast",
        ],
        2,
        "\"fast\" is not a bitrate",
    );
    assert_fails(
        &[
            "send",
            "x.ts",
            "--to",
            "127.0.0.1:5000",
            "--backend",
            "magic",
        ],
        2,
        "invalid value 'magic'",
    );
    assert_fails(
        &[
            "send",
            "x.ts",
            "--to",
            "127.0.0.1:5000",
            "--payload-size",
            "0",
        ],
        2,
        "not a payload size",
    );
    assert_fails(
        &[
            "send",
            "--to",
            "127.0.0.1:5000",
            "a.ts",
            "b.ts",
            "--to",
            "127.0.0.1:5002",
        ],
        2,
        "give each --to after the FILE",
    );
    assert_fails(&["recv"], 2, "--listen <ADDR:PORT>");
    assert_fails(
        &[
            "recv",
            "--listen",
            "127.0.0.1:0",
            "--output",
            "a",
            "--output",
            "b",
        ],
        2,
        "one --output per --listen",
    );
    assert_fails(
        &["recv", "--listen", "127.0.0.1:0", "--duration", "0"],
        2,
        "out of range",
    );
}

#[test]
fn input_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let to = ["--to", "127.0.0.1:9"];
    let missing = dir.path().join("missing.ts");
    let missing = missing.to_str().unwrap();
    assert_fails(&[&["send", missing][..], &to].concat(), 1, "cannot read");
    let text = write(
        dir.path(),
        "notes.txt",
        b"hello, this is not a transport stream\n",
    );
    assert_fails(
        &[&["send", &text][..], &to].concat(),
        1,
        "is not MPEG-TS (no sync byte 0x47 at its start); give --bitrate",
    );
    assert_fails(
        &[&["send", &text, "--format", "ts"][..], &to].concat(),
        1,
        "byte 0x68 at offset 0",
    );
    // A sync byte missing in the third packet.
    let mut ts: Vec<u8> = (0..3).flat_map(|i| ts_packet(100, i)).collect();
    ts[376] = 0x00;
    let bad = write(dir.path(), "bad.ts", &ts);
    assert_fails(
        &[&["send", &bad, "--format", "ts"][..], &to].concat(),
        1,
        "byte 0x00 at offset 376",
    );
    // MPEG-TS without a PCR: the bitrate must be given.
    let ts: Vec<u8> = (0..20).flat_map(|i| ts_packet(100, i)).collect();
    let nopcr = write(dir.path(), "nopcr.ts", &ts);
    assert_fails(
        &[&["send", &nopcr][..], &to].concat(),
        1,
        "no PCRs to estimate the bitrate from in 20 TS packets; give the bitrate with --bitrate",
    );
    assert_fails(
        &[
            &["send", &nopcr, "--bitrate", "1M", "--payload-size", "1000"][..],
            &to,
        ]
        .concat(),
        2,
        "--payload-size 1000 is not a multiple of 188",
    );
    assert_fails(
        &[
            &[
                "send",
                &nopcr,
                "--bitrate",
                "1M",
                "--interface",
                "nosuchif0",
            ][..],
            &to,
        ]
        .concat(),
        1,
        "unknown interface \"nosuchif0\"",
    );
    if !Path::new("/dev/mdwrite").exists() {
        assert_fails(
            &[
                &["send", &nopcr, "--bitrate", "1M", "--backend", "module"][..],
                &to,
            ]
            .concat(),
            1,
            "the mdwrite module is not loaded",
        );
    }
    // A port in use.
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    assert_fails(
        &["recv", "--listen", &addr],
        1,
        &format!("cannot listen on {addr}"),
    );
}

#[test]
fn info_without_module() {
    if Path::new("/dev/mdwrite").exists() {
        eprintln!("skipped: /dev/mdwrite exists (the VM test t_cli_info covers the module)");
        return;
    }
    let out = run(&["info"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backend: fallback (sendmmsg)\n"), "{text}");
    assert!(text.contains("module: not loaded"), "{text}");
}

/// Sends RTP packets with sequence numbers `seqs` to `to`.
fn send_rtp(to: std::net::SocketAddr, ssrc: u32, seqs: &[u16]) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for &seq in seqs {
        let h = RtpHeader {
            marker: false,
            payload_type: 33,
            seq,
            timestamp: u32::from(seq) * 100,
            ssrc,
        };
        let mut d = h.to_bytes().to_vec();
        let mut ts = [0xffu8; 188];
        ts[0] = 0x47;
        d.extend_from_slice(&ts);
        sock.send_to(&d, to).unwrap();
        // Keep the order on loopback without relying on timing for it.
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn recv_reports_loss_reorder_duplicates() {
    let r = Receiver::start(2, &["--rtp", "--idle-timeout", "2", "--fail-on-loss"]);
    send_rtp(r.addrs[0], 0xabcd, &[65534, 65535, 0, 2, 1, 1, 5]);
    send_rtp(r.addrs[1], 0x1234, &[10, 11, 12, 13]);
    let (code, out, err) = r.finish();
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("packets were lost"), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let a = lines[0];
    assert_eq!(field(a, "ssrc"), "0x0000abcd");
    assert_eq!(field(a, "pt"), "33");
    assert_eq!(field(a, "packets"), "7");
    assert_eq!(field(a, "bytes"), &(7 * 188).to_string());
    assert_eq!(field(a, "expected"), "8"); // 65534 ..= 5
    assert_eq!(field(a, "lost"), "2"); // 3 and 4
    assert_eq!(field(a, "duplicates"), "1");
    assert_eq!(field(a, "reordered"), "1");
    assert_eq!(field(a, "seq_errors"), "4"); // 2, 1, 1, 5
    assert_eq!(field(a, "ts_errors"), "0");
    assert_eq!(field(a, "end"), "idle");
    let b = lines[1];
    assert_eq!(
        (
            field(b, "packets"),
            field(b, "lost"),
            field(b, "seq_errors")
        ),
        ("4", "0", "0")
    );
}

#[test]
fn recv_without_loss_exits_0_and_nothing_is_loss() {
    let r = Receiver::start(1, &["--rtp", "--packets", "3", "--fail-on-loss"]);
    send_rtp(r.addrs[0], 1, &[1, 2, 3]);
    let (code, out, err) = r.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(field(&out, "end"), "packets");

    let r = Receiver::start(1, &["--rtp", "--idle-timeout", "0.3", "--fail-on-loss"]);
    let (code, out, _) = r.finish();
    assert_eq!(code, 3, "{out}");
    assert_eq!(field(&out, "packets"), "0");

    let r = Receiver::start(1, &["--duration", "0.3"]);
    let (code, out, _) = r.finish();
    assert_eq!(code, 0, "without --fail-on-loss: {out}");
    assert_eq!(field(&out, "end"), "duration");
}
