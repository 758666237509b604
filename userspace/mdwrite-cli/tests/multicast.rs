// SPDX-License-Identifier: GPL-2.0

//! Multicast as the helper sends and receives it, fallback backend, on the
//! machine's own network: a receiver on the same machine gets what is sent
//! to a group (IP_MULTICAST_LOOP). Source-specific multicast (`recv
//! --source`) for IPv4 and IPv6, `recv --interface`, and the TTL / hop
//! limit and DSCP on the wire: 1 by default to a group, 64 to unicast,
//! `--ttl`, `--dscp`.
//! Skipped, with a message, where the machine routes the group through no
//! interface that can multicast.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    process::Stdio,
    time::Duration,
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

/// Sets the int socket option `name` of `level` to 1.
fn enable(sock: &UdpSocket, level: libc::c_int, name: libc::c_int) {
    let one: libc::c_int = 1;
    // SAFETY: the option takes an int; `one` lives for the call and its
    // size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// A socket bound to `addr` (joined to it on `ifindex` if it is a group)
/// that reports each datagram's TTL / hop limit and TOS / traffic class.
fn wire_socket(addr: SocketAddr, ifindex: u32, from: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    match (addr.ip(), from) {
        (IpAddr::V4(g), IpAddr::V4(local)) if g.is_multicast() => {
            s.join_multicast_v4(&g, &local).unwrap()
        }
        (IpAddr::V6(g), _) if g.is_multicast() => s.join_multicast_v6(&g, ifindex).unwrap(),
        _ => {}
    }
    if addr.is_ipv4() {
        enable(&s, libc::IPPROTO_IP, libc::IP_RECVTTL);
        enable(&s, libc::IPPROTO_IP, libc::IP_RECVTOS);
    } else {
        enable(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT);
        enable(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS);
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Receives one datagram on `s`: its TTL / hop limit and DSCP.
fn wire_fields(s: &UdpSocket) -> (u8, u8) {
    let mut data = [0u8; 2048];
    let mut control = [0u64; 32];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is valid (no name).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: `msg` points at `iov` and `control`, which outlive the call,
    // with their sizes.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &raw mut msg, 0) };
    assert!(
        n > 0,
        "nothing arrived: {}",
        std::io::Error::last_os_error()
    );
    let (mut hops, mut tos) = (None, None);
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk the
    // control bytes it reported, and each value is read unaligned from
    // inside its header's data.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            let p = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_TTL) | (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    hops = Some(p.cast::<libc::c_int>().read_unaligned() as u8)
                }
                (libc::IPPROTO_IP, libc::IP_TOS) => tos = Some(p.read()),
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                    tos = Some(p.cast::<libc::c_int>().read_unaligned() as u8)
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    (hops.expect("no TTL"), tos.expect("no TOS") >> 2)
}

/// Sends one datagram to `to` with `mdwrite send ARGS`; the TTL / hop
/// limit and DSCP it arrived with.
fn sent_with(to: SocketAddr, ifindex: u32, from: IpAddr, args: &[&str]) -> (u8, u8) {
    let s = wire_socket(to, ifindex, from);
    let to = SocketAddr::new(to.ip(), s.local_addr().unwrap().port()).to_string();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.bin");
    fs::write(&f, [7u8; 500]).unwrap();
    let base = ["send", f.to_str().unwrap(), "--to", &to, "--bitrate", "1M"];
    let out = run(&[&base[..], &["--backend", "fallback"], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    wire_fields(&s)
}

#[test]
fn ttl_and_dscp_on_the_wire() {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let local = lo.ip();
    assert_eq!(sent_with(lo, 0, local, &[]), (64, 0), "unicast default");
    assert_eq!(
        sent_with(lo, 0, local, &["--ttl", "7", "--dscp", "46"]),
        (7, 46)
    );
    for group in ["239.255.77.4", "ff3e::7704"] {
        let group: IpAddr = group.parse().unwrap();
        let Some((ifname, ifindex, from)) = multicast_route(group) else {
            continue;
        };
        let to = SocketAddr::new(group, 0);
        let iface = ["--interface", ifname.as_str()];
        assert_eq!(sent_with(to, ifindex, from, &iface), (1, 0), "{group}");
        let more = [&iface[..], &["--ttl", "5", "--dscp", "10"]].concat();
        assert_eq!(sent_with(to, ifindex, from, &more), (5, 10), "{group}");
    }
}
