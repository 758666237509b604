// SPDX-License-Identifier: GPL-2.0

//! End to end over loopback with the fallback backend: a generated
//! two-program MPEG-TS clip streamed over RTP to three `mdwrite recv`
//! receivers, checked by ffprobe, ffmpeg and tshark as real tools, and byte
//! for byte.
//!
//! Needs ffmpeg (ffmpeg, ffprobe) and, for the capture, tshark and root;
//! `scripts/install-deps.sh` installs them and CI runs as root. Without
//! them the tests say so on stderr and skip that part.

mod common;

use std::{collections::HashMap, fs, path::Path, process::Command};

use common::{field, gen_clip, have, mdwrite, root, tshark_read, Capture, Receiver};
use mdwrite::media::{pcr::estimate_bitrate, rtp::ts_increment};

fn ffmpeg_available() -> bool {
    if have("ffmpeg") && have("ffprobe") {
        return true;
    }
    eprintln!("SKIPPED: ffmpeg/ffprobe not installed (scripts/install-deps.sh installs them)");
    false
}

/// `ffprobe ARGS FILE`: status and stdout+stderr.
fn ffprobe(file: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("ffprobe")
        .args(args)
        .arg(file)
        .output()
        .expect("run ffprobe");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// ffprobe's overall bitrate of `file`.
fn ffprobe_bitrate(file: &Path) -> u64 {
    let (ok, out, err) = ffprobe(
        file,
        &[
            "-v",
            "error",
            "-show_entries",
            "format=bit_rate",
            "-of",
            "csv=p=0",
        ],
    );
    assert!(ok, "{err}");
    out.trim().parse().unwrap_or_else(|_| panic!("{out:?}"))
}

/// The programs and their streams as ffprobe sees them.
fn programs(file: &Path) -> String {
    let (ok, out, err) = ffprobe(
        file,
        &[
            "-v",
            "error",
            "-show_entries",
            "program=program_id,nb_streams:stream=index,codec_name,codec_type",
            "-of",
            "compact",
        ],
    );
    assert!(ok && err.is_empty(), "ffprobe {}: {err}", file.display());
    out
}

/// Checks that ffprobe reads `file` as the same MPEG-TS as `source`, with
/// no continuity error, and that ffmpeg decodes it without an error.
fn check_with_ffmpeg(file: &Path, source: &Path) {
    let want = programs(source);
    assert!(want.contains("program|program_id=1|nb_streams=2"), "{want}");
    assert!(want.contains("program|program_id=2|nb_streams=2"), "{want}");
    assert_eq!(programs(file), want, "{}", file.display());
    // Read every packet: the demuxer logs continuity errors at debug level.
    let (ok, _, log) = ffprobe(file, &["-v", "debug", "-count_packets", "-show_streams"]);
    assert!(ok, "{log}");
    let cc: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Continuity check failed"))
        .collect();
    assert!(cc.is_empty(), "{}: {cc:?}", file.display());
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg decoding {}: {err}",
        file.display()
    );
}

#[test]
fn pcr_bitrate_matches_ffprobe() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for muxrate in [1_500_000u64, 3_750_000] {
        let clip = dir.path().join(format!("clip-{muxrate}.ts"));
        gen_clip(&clip, 3.0, muxrate);
        let est = estimate_bitrate(fs::File::open(&clip).unwrap(), None).unwrap();
        let probe = ffprobe_bitrate(&clip);
        // ffprobe divides the file size by the duration (PTS range plus a
        // frame), the PCRs measure the mux rate itself: within 2 %.
        let diff = est.bitrate.abs_diff(probe) as f64 / probe as f64;
        assert!(diff < 0.02, "{muxrate}: PCR {est:?}, ffprobe {probe}");
        // ffmpeg's -muxrate is what the PCRs must say, within 0.1 %.
        let diff = est.bitrate.abs_diff(muxrate) as f64 / muxrate as f64;
        assert!(diff < 0.001, "{muxrate}: PCR {est:?}");
        assert!(est.pcrs > 10, "{est:?}");
    }
}

/// The RTP packets of a capture: per destination port, (ssrc, seq,
/// timestamp, pt, udp payload length), in capture order.
type Packets = HashMap<u16, Vec<(u32, u16, u32, u8, usize)>>;

fn rtp_packets(cap: &Path, ports: &[u16]) -> Packets {
    let text = tshark_read(
        cap,
        ports,
        &[
            "-Y",
            "rtp",
            "-T",
            "fields",
            "-e",
            "udp.dstport",
            "-e",
            "rtp.ssrc",
            "-e",
            "rtp.seq",
            "-e",
            "rtp.timestamp",
            "-e",
            "rtp.p_type",
            "-e",
            "udp.length",
            "-e",
            "rtp.version",
        ],
    );
    let mut out = Packets::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 7, "{line:?}");
        assert_eq!(f[6], "2", "RTP version: {line}");
        let ssrc = u32::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap();
        out.entry(f[0].parse().unwrap()).or_default().push((
            ssrc,
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
            f[5].parse::<usize>().unwrap() - 8,
        ));
    }
    out
}

#[test]
fn rtp_to_three_receivers_over_loopback() {
    if !ffmpeg_available() {
        return;
    }
    let capture = have("tshark") && root();
    if !capture {
        eprintln!("SKIPPED the tshark part: tshark not installed or not root");
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.ts");
    let (bitrate, secs) = (1_500_000u64, 3.0);
    gen_clip(&clip, secs, bitrate);
    let source = fs::read(&clip).unwrap();
    let outs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("out{i}.ts")))
        .collect();
    // Each receiver ends at the last packet; the idle timeout only if some
    // are lost (it also covers tshark's start, which can take seconds).
    let packets = source.len().div_ceil(1316);
    let packets_arg = packets.to_string();
    let mut recv_args = vec![
        "--rtp",
        "--packets",
        &packets_arg,
        "--idle-timeout",
        "60",
        "--fail-on-loss",
    ];
    for o in &outs {
        recv_args.extend(["--output", o.to_str().unwrap()]);
    }
    let receiver = Receiver::start(3, &recv_args);
    let ports: Vec<u16> = receiver.addrs.iter().map(|a| a.port()).collect();
    let cap = capture.then(|| Capture::start(&dir.path().join("cap.pcapng"), &ports));

    let mut send = mdwrite();
    send.arg("send").arg(&clip);
    for a in &receiver.addrs {
        send.args(["--to", &a.to_string()]);
    }
    let out = send
        .args(["--rtp", "--backend", "fallback"])
        .output()
        .expect("run mdwrite send");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "send: {summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report, err) = receiver.finish();
    if let Some(c) = cap {
        c.stop();
    }
    assert_eq!(code, 0, "recv: {report}{err}");

    // The sender's summary.
    let stream = summary.lines().find(|l| l.starts_with("stream ")).unwrap();
    assert_eq!(field(stream, "bitrate"), bitrate.to_string());
    assert_eq!(field(stream, "bitrate_from"), "pcr");
    assert_eq!(field(stream, "bytes"), source.len().to_string());
    assert_eq!(field(stream, "packets"), packets.to_string());
    assert_eq!(field(stream, "end"), "eof");
    let total = summary.lines().find(|l| l.starts_with("total ")).unwrap();
    assert_eq!(field(total, "backend"), "fallback");
    assert_eq!(field(total, "packets"), (3 * packets).to_string());
    let ssrcs: HashMap<u16, u32> = summary
        .lines()
        .filter(|l| l.starts_with("dest "))
        .map(|l| {
            let to: std::net::SocketAddr = field(l, "to").parse().unwrap();
            let s = u32::from_str_radix(field(l, "ssrc").trim_start_matches("0x"), 16).unwrap();
            (to.port(), s)
        })
        .collect();
    assert_eq!(ssrcs.len(), 3);
    let mut distinct: Vec<u32> = ssrcs.values().copied().collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one SSRC per destination: {ssrcs:?}");

    // Each receiver's report: everything, in order, whole TS packets.
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 3, "{report}");
    for (line, &port) in lines.iter().zip(&ports) {
        assert_eq!(field(line, "ssrc"), format!("{:#010x}", ssrcs[&port]));
        assert_eq!(field(line, "pt"), "33");
        assert_eq!(field(line, "packets"), packets.to_string(), "{line}");
        assert_eq!(field(line, "bytes"), source.len().to_string(), "{line}");
        for zero in ["lost", "duplicates", "reordered", "seq_errors", "ts_errors"] {
            assert_eq!(field(line, zero), "0", "{zero}: {line}");
        }
    }

    // (c) the payload is the source, byte for byte; (a) real tools read it.
    for o in &outs {
        assert!(fs::read(o).unwrap() == source, "{} differs", o.display());
        check_with_ffmpeg(o, &clip);
    }

    // (b) Wireshark's RTP analysis, and the fields on the wire.
    if !capture {
        return;
    }
    let cap = dir.path().join("cap.pcapng");
    let streams = tshark_read(&cap, &ports, &["-q", "-z", "rtp,streams"]);
    for &port in &ports {
        let row = streams
            .lines()
            .find(|l| l.split_whitespace().nth(5) == Some(&port.to_string()))
            .unwrap_or_else(|| panic!("no RTP stream to port {port}:\n{streams}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        // Start End SrcIP SrcPort DstIP DstPort SSRC "MPEG-II" "streams" Pkts Lost (pct) ...
        assert_eq!(
            cols[6],
            format!("{:#010X}", ssrcs[&port]).replace("0X", "0x")
        );
        assert_eq!(cols[9], packets.to_string(), "{row}");
        assert_eq!(cols[10], "0", "lost: {row}");
        assert!(!row.trim_end().ends_with('X'), "problems: {row}");
    }
    let wire = rtp_packets(&cap, &ports);
    let inc = ts_increment(1316, bitrate, 90_000);
    for &port in &ports {
        let p = &wire[&port];
        assert_eq!(p.len(), packets);
        for (i, &(ssrc, seq, ts, pt, len)) in p.iter().enumerate() {
            assert_eq!((ssrc, pt), (ssrcs[&port], 33));
            assert_eq!(seq, p[0].1.wrapping_add(i as u16), "sequence");
            let want_len = if i + 1 < packets {
                1316
            } else {
                source.len() - 1316 * i
            };
            assert_eq!(len, 12 + want_len, "packet {i}: whole TS packets only");
            // 90 kHz timestamps from the pacing: packet i's is its first
            // byte's time at the bitrate, within one increment.
            let ideal = (i as u128 * 1316 * 8 * 90_000 / u128::from(bitrate)) as i64;
            let got = i64::from(ts.wrapping_sub(p[0].2));
            assert!(
                (got - ideal).abs() <= i64::from(inc),
                "packet {i}: timestamp +{got}, ideal +{ideal}"
            );
        }
    }
}

#[test]
fn opaque_file_plain_udp() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let file = dir.path().join("data.bin");
    fs::write(&file, &data).unwrap();
    let out_file = dir.path().join("out.bin");
    let receiver = Receiver::start(
        1,
        &[
            "--idle-timeout",
            "5",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    let out = mdwrite()
        .arg("send")
        .arg(&file)
        .args(["--to", &receiver.addrs[0].to_string()])
        .args([
            "--bitrate",
            "4M",
            "--payload-size",
            "1000",
            "--backend",
            "fallback",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, report, err) = receiver.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&report, "packets"), "100", "{report}");
    assert_eq!(field(&report, "bytes"), "100000");
    assert!(fs::read(&out_file).unwrap() == data);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("bitrate=4000000 bitrate_from=argument"),
        "{summary}"
    );
}

#[test]
fn looped_clip_keeps_alignment_and_marks_the_wrap() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("short.ts");
    gen_clip(&clip, 1.0, 2_000_000);
    let source = fs::read(&clip).unwrap();
    let out_file = dir.path().join("out.ts");
    let receiver = Receiver::start(
        1,
        &[
            "--rtp",
            "--idle-timeout",
            "5",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    let out = mdwrite()
        .arg("send")
        .arg(&clip)
        .args(["--to", &receiver.addrs[0].to_string()])
        .args([
            "--rtp",
            "--loop",
            "--duration",
            "2.5",
            "--backend",
            "fallback",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(field(&summary, "end"), "stopped", "{summary}");
    let (code, report, err) = receiver.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&report, "lost"), "0", "{report}");
    assert_eq!(field(&report, "ts_errors"), "0", "{report}");
    let got = fs::read(&out_file).unwrap();
    assert!(got.len() > 2 * source.len(), "{} bytes", got.len());
    assert!(
        got[..source.len()] == source[..],
        "the first pass is the file"
    );
    // Later passes: the same packets, but some carry the discontinuity
    // indicator (only that bit differs).
    let second = &got[source.len()..2 * source.len()];
    let mut flagged = 0;
    for (i, (a, b)) in second.chunks(188).zip(source.chunks(188)).enumerate() {
        if a != b {
            assert!(
                b[3] & 0x20 != 0 && b[4] > 0,
                "packet {i} has an adaptation field"
            );
            let mut fixed = a.to_vec();
            fixed[5] &= !0x80;
            assert_eq!(fixed, b, "packet {i}: only the discontinuity bit differs");
            assert!(a[5] & 0x80 != 0);
            flagged += 1;
        }
    }
    assert!(flagged >= 1, "the wrap is marked");
}

#[test]
fn two_files_each_to_its_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let a: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8 ^ 0x5a).collect();
    let (fa, fb) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
    fs::write(&fa, &a).unwrap();
    fs::write(&fb, &b).unwrap();
    let outs: Vec<_> = (0..3).map(|i| dir.path().join(format!("o{i}"))).collect();
    let mut args = vec!["--rtp", "--idle-timeout", "10"];
    for o in &outs {
        args.extend(["--output", o.to_str().unwrap()]);
    }
    let r = Receiver::start(3, &args);
    // a.bin to receivers 0 and 2, b.bin to receiver 1.
    let out = mdwrite()
        .arg("send")
        .arg(&fa)
        .args([
            "--to",
            &r.addrs[0].to_string(),
            "--to",
            &r.addrs[2].to_string(),
        ])
        .arg(&fb)
        .args(["--to", &r.addrs[1].to_string()])
        .args(["--bitrate", "2M", "--rtp", "--backend", "fallback"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("stream ")).count(),
        2
    );
    // Not MPEG-TS: the dynamic payload type.
    assert!(summary.contains(" pt=96 "), "{summary}");
    let (code, report, err) = r.finish();
    assert_eq!(code, 0, "{err}");
    assert!(fs::read(&outs[0]).unwrap() == a);
    assert!(fs::read(&outs[1]).unwrap() == b);
    assert!(fs::read(&outs[2]).unwrap() == a);
    for line in report.lines() {
        assert_eq!(field(line, "lost"), "0", "{line}");
        assert_eq!(field(line, "pt"), "96", "{line}");
    }
}
