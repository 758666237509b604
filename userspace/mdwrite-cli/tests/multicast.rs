// SPDX-License-Identifier: GPL-2.0

//! Multicast as the helper sends and receives it, fallback backend, on the
//! machine's own network: a receiver on the same machine gets what is sent
//! to a group (IP_MULTICAST_LOOP). Source-specific multicast (`recv
//! --source`) for IPv4 and IPv6, `recv --interface`, and the TTL / hop
//! limit and DSCP on the wire: 1 by default to a group, `--ttl`, `--dscp`.
//! Skipped, with a message, where the machine routes the group through no
//! interface that can multicast.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use common::{field, mdwrite, run, Receiver};

/// The interface the routing table sends `group` through, and the source
/// address it gives; `None` (after saying why) when it cannot multicast.
fn multicast_route(group: IpAddr) -> Option<(String, u32, IpAddr)> {
    let cfg = match mdwrite::DestConfig::route(SocketAddr::new(group, 9), None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: no route to {group}: {e}");
            return None;
        }
    };
    let name = mdwrite::interface_name(cfg.ifindex).ok()?;
    let flags = fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    if flags & libc::IFF_MULTICAST as u32 == 0 {
        eprintln!("skipped: {group} is routed through {name}, which cannot multicast");
        return None;
    }
    Some((name, cfg.ifindex, cfg.from))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `recv --source`: a listener joined for the sender's address gets every
/// byte, one joined for another address gets nothing.
fn source_specific(group: IpAddr, other: IpAddr) {
    let Some((ifname, _, from)) = multicast_route(group) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 13) as u8).collect();
    let f = dir.path().join("a.bin");
    fs::write(&f, &data).unwrap();
    let listen = SocketAddr::new(group, 0).to_string();
    let out = dir.path().join("right");
    let (from_s, other_s) = (from.to_string(), other.to_string());
    let common = ["--interface", ifname.as_str(), "--idle-timeout", "2"];
    let right = Receiver::start_on(
        &[listen.as_str()],
        &[
            &common[..],
            &["--source", &from_s, "--output", out.to_str().unwrap()],
        ]
        .concat(),
    );
    let wrong = Receiver::start_on(
        &[listen.as_str()],
        &[&common[..], &["--source", &other_s]].concat(),
    );
    let (to_right, to_wrong) = (right.addrs[0].to_string(), wrong.addrs[0].to_string());
    let sent = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &to_right,
        "--to",
        &to_wrong,
        "--interface",
        &ifname,
        "--bitrate",
        "2M",
        "--backend",
        "fallback",
    ]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let (code, text, err) = right.finish();
    assert_eq!(code, 0, "{err}");
    let line = text.lines().next().unwrap_or_default();
    assert_eq!(field(line, "packets"), "16", "{text}");
    assert_eq!(
        field(line, "from").rsplit_once(':').unwrap().0,
        SocketAddr::new(from, 1)
            .to_string()
            .rsplit_once(':')
            .unwrap()
            .0
    );
    assert_eq!(fs::read(&out).unwrap(), data);
    let (code, text, err) = wrong.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        field(text.lines().next().unwrap_or_default(), "packets"),
        "0",
        "{text}"
    );
}

#[test]
fn source_specific_multicast_ipv4() {
    source_specific(
        "239.255.77.1".parse().unwrap(),
        "192.0.2.254".parse().unwrap(),
    );
}

#[test]
fn source_specific_multicast_ipv6() {
    source_specific(
        "ff3e::7701".parse().unwrap(),
        "2001:db8::fe".parse().unwrap(),
    );
}

#[test]
fn source_of_another_family_is_bad_usage() {
    let out = run(&[
        "recv",
        "--listen",
        "[ff3e::7702]:0",
        "--source",
        "10.0.0.1",
        "--duration",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--source 10.0.0.1 needs a multicast --listen address of its family"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn relay_joins_an_ipv6_group_for_one_source() {
    let group: IpAddr = "ff3e::7703".parse().unwrap();
    let Some((ifname, _, from)) = multicast_route(group) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 1) as u8).collect();
    let f = dir.path().join("a.bin");
    fs::write(&f, &data).unwrap();
    let out = dir.path().join("o");
    let rx = Receiver::start(
        1,
        &["--idle-timeout", "3", "--output", out.to_str().unwrap()],
    );
    let mut relay = mdwrite()
        .args(["relay", "--listen", &SocketAddr::new(group, 0).to_string()])
        .args(["--source", &from.to_string(), "--interface", &ifname])
        .args(["--to", &rx.addrs[0].to_string(), "--backend", "fallback"])
        .args(["--idle-timeout", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(relay.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let bound = line
        .trim()
        .strip_prefix("mdwrite relay: listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let sent = run(&[
        "send",
        f.to_str().unwrap(),
        "--to",
        &bound,
        "--interface",
        &ifname,
        "--bitrate",
        "2M",
        "--backend",
        "fallback",
    ]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    let done = relay.wait_with_output().unwrap();
    assert!(done.status.success(), "{line}");
    let text = String::from_utf8_lossy(&done.stdout);
    let summary = text.lines().next().unwrap_or_default();
    assert_eq!(field(summary, "datagrams"), "16", "{text}");
    assert_eq!(field(summary, "other_source"), "0", "{text}");
    let (code, _, err) = rx.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(&out).unwrap(), data);
}
