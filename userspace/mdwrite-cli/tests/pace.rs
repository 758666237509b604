// SPDX-License-Identifier: GPL-2.0

//! `send --pace` and `--latency` on the fallback backend over loopback, as
//! the receiver sees it (`recv --json` gap statistics), and their argument
//! errors.

mod common;

use std::{fs, path::Path};

use common::{run, Receiver};

/// 8 Mb/s in 1316-byte packets: one every 1316 us.
const IDEAL_GAP_US: f64 = 1316.0;

/// Sends `clip` at 8 Mb/s to one listener and, as a second stream, its
/// first 10 packets at 80 kb/s to another (the mixed send: the
/// slow stream makes unpaced ticks long), with `args`; checks the first
/// listener got the clip byte for byte and returns its report.
fn send_and_measure(dir: &Path, clip: &Path, args: &[&str]) -> serde_json::Value {
    let out = dir.join("out");
    let out2 = dir.join("out2");
    let slow = dir.join("slow.bin");
    fs::write(&slow, &fs::read(clip).unwrap()[..1316 * 10]).unwrap();
    let rx = Receiver::start(
        2,
        &[
            "--idle-timeout",
            "2",
            "--json",
            "--output",
            out.to_str().unwrap(),
            "--output",
            out2.to_str().unwrap(),
        ],
    );
    let to = rx.addrs[0].to_string();
    let to2 = rx.addrs[1].to_string();
    let mut send = vec![
        "send",
        clip.to_str().unwrap(),
        "--to",
        &to,
        "--bitrate",
        "8M",
        slow.to_str().unwrap(),
        "--to",
        &to2,
        "--bitrate",
        "80k",
        "--backend",
        "fallback",
    ];
    send.extend_from_slice(args);
    let o = run(&send);
    assert!(
        o.status.success(),
        "send {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, stdout, stderr) = rx.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(clip).unwrap(),
        "payload not byte-exact with {args:?}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let listener = &report["listeners"][0];
    assert_eq!(listener["sources"], 1, "{report}");
    listener.clone()
}

#[test]
fn user_pacing_is_smooth_unpaced_bursts() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.bin");
    // 1.5 s at 8 Mb/s: 1140 packets.
    let data: Vec<u8> = (0..1316 * 1140).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&clip, &data).unwrap();

    let user = send_and_measure(dir.path(), &clip, &["--pace", "user", "--latency", "50ms"]);
    let p50 = user["gap_p50_us"].as_f64().unwrap();
    assert!(
        (p50 - IDEAL_GAP_US).abs() < 0.1 * IDEAL_GAP_US,
        "--pace user: median gap {p50} us, ideal {IDEAL_GAP_US}: {user}"
    );
    assert!(
        user["largest_burst"].as_u64().unwrap() <= 2,
        "--pace user: {user}"
    );

    // Unpaced with a 50 ms tick: each tick's ~38 packets back to back.
    let off = send_and_measure(dir.path(), &clip, &["--pace", "off", "--latency", "50ms"]);
    assert!(
        off["largest_burst"].as_u64().unwrap() >= 20,
        "--pace off: {off}"
    );
}

#[test]
fn pace_and_latency_argument_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.bin");
    fs::write(&clip, vec![0u8; 1316 * 4]).unwrap();
    let c = clip.to_str().unwrap();
    let fails = |args: &[&str], code: i32, message: &str| {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err:?} lacks {message:?}");
    };
    let base = ["send", c, "--to", "127.0.0.1:9", "--bitrate", "1M"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    fails(&with(&["--pace", "fast"]), 2, "invalid value 'fast'");
    fails(
        &with(&["--latency", "0.5ms"]),
        2,
        "out of range (1ms to 1s)",
    );
    fails(&with(&["--latency", "2s"]), 2, "out of range (1ms to 1s)");
    fails(&with(&["--latency", "soon"]), 2, "is not a duration");
    // Kernel pacing needs the module: a runtime error, exit 1.
    fails(
        &with(&["--pace", "kernel", "--backend", "fallback"]),
        1,
        "--pace kernel needs the mdwrite module with paced calls",
    );
}
