// SPDX-License-Identifier: GPL-2.0

//! The fallback backend end to end over loopback: bytes, packet sizes and
//! RTP fields as receivers see them, the module's errnos, counters, and a
//! StreamGroup driven through it. (The interleaving order is tested on the
//! fallback's plan, in `src/fallback.rs`: arrival order across sockets is
//! not observable.)

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use mdwrite::{
    AsyncEntry, Backend, DestConfig, DestId, Entry, FakeClock, GroupOptions, RegisteredBuffer, Rtp,
    Sender, StreamConfig, StreamGroup, WriteOptions,
};
use rustix::event::{eventfd, EventfdFlags};

/// A receiver on `ip`, with a hang guard (not a timing assertion).
fn receiver(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip.parse::<std::net::IpAddr>().unwrap(), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // As much as an unprivileged socket may have (net.core.rmem_max),
    // doubled by the kernel: room for a few hundred datagrams.
    rustix::net::sockopt::set_socket_recv_buffer_size(&s, 8 << 20).unwrap();
    s
}

/// Receives `n` datagrams.
fn recv_n(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    (0..n)
        .map(|i| {
            let len = s
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {n}: {e}"));
            buf[..len].to_vec()
        })
        .collect()
}

/// Nothing more is waiting.
fn assert_drained(s: &UdpSocket) {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let e = s.recv(&mut buf).expect_err("an extra datagram");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn dest_to(s: &UdpSocket, payload: usize, rtp: Option<Rtp>) -> DestConfig {
    let mut d = DestConfig::route(s.local_addr().unwrap(), None).unwrap();
    d.rtp = rtp;
    d.packet_size = Some(d.packet_size_for(payload));
    d
}

fn rtp(ssrc: u32, seq: u16, timestamp: u32, ts_increment: u32) -> Rtp {
    Rtp::new(ssrc, 33)
        .with_seq(seq)
        .with_timestamp(timestamp)
        .with_ts_increment(ts_increment)
}

/// The RTP header fields of a datagram: (marker, pt, seq, ts, ssrc).
fn rtp_fields(d: &[u8]) -> (bool, u8, u16, u32, u32) {
    assert_eq!(d[0], 0x80, "V=2, no padding, extension or CSRC");
    (
        d[1] & 0x80 != 0,
        d[1] & 0x7f,
        u16::from_be_bytes([d[2], d[3]]),
        u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
    )
}

fn send_rtp_to(ip: &str) {
    let mut sender = Sender::open_fallback().unwrap();
    assert_eq!(sender.backend(), Backend::Fallback);
    assert!(sender.info().unwrap().is_none());
    let rx: Vec<UdpSocket> = (0..3).map(|_| receiver(ip)).collect();
    let ids: Vec<DestId> = rx
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let r = rtp(0x1000 + i as u32, 65530 + i as u16, 1000 * i as u32, 90);
            sender.add_destination(&dest_to(s, 1316, Some(r))).unwrap()
        })
        .collect();
    for &id in &ids {
        assert_eq!(sender.max_payload(id), Some(1316));
    }
    // Dest 0: two entries, the second with its own timestamp; dest 1: a
    // single short entry; dest 2: 5 packets and a bit.
    let a = data(1316 * 3 + 100, 1);
    let b = data(1316 * 2, 2);
    let c = data(500, 3);
    let d = data(1316 * 5 + 1, 4);
    let entries = [
        Entry::new(ids[0], &a),
        Entry::new(ids[1], &c),
        Entry::new(ids[0], &b).with_rtp_timestamp(777_000),
        Entry::new(ids[2], &d),
    ];
    let report = sender
        .send_vectored(&entries, &WriteOptions::default())
        .unwrap();
    assert!(report.error.is_none());
    assert_eq!(report.packets, 4 + 2 + 1 + 6);
    assert_eq!(report.bytes, (a.len() + b.len() + c.len() + d.len()) as u64);

    // Dest 0: 4 packets of `a` (1316, 1316, 1316, 100), then 2 of `b`.
    let got = recv_n(&rx[0], 6);
    let lens: Vec<usize> = got.iter().map(|g| g.len() - 12).collect();
    assert_eq!(lens, [1316, 1316, 1316, 100, 1316, 1316]);
    let payload: Vec<u8> = got.iter().flat_map(|g| g[12..].to_vec()).collect();
    assert_eq!(payload, [a.clone(), b.clone()].concat());
    let fields: Vec<_> = got.iter().map(|g| rtp_fields(g)).collect();
    let seqs: Vec<u16> = fields.iter().map(|f| f.2).collect();
    assert_eq!(seqs, [65530, 65531, 65532, 65533, 65534, 65535]);
    let tss: Vec<u32> = fields.iter().map(|f| f.3).collect();
    assert_eq!(tss, [0, 90, 180, 270, 777_000, 777_090]);
    assert!(fields.iter().all(|f| !f.0 && f.1 == 33 && f.4 == 0x1000));
    assert_drained(&rx[0]);

    let got = recv_n(&rx[1], 1);
    assert_eq!(&got[0][12..], &c[..]);
    assert_eq!(rtp_fields(&got[0]), (false, 33, 65531, 1000, 0x1001));
    assert_drained(&rx[1]);

    let got = recv_n(&rx[2], 6);
    let payload: Vec<u8> = got.iter().flat_map(|g| g[12..].to_vec()).collect();
    assert_eq!(payload, d);
    let seqs: Vec<u16> = got.iter().map(|g| rtp_fields(g).2).collect();
    assert_eq!(seqs, [65532, 65533, 65534, 65535, 0, 1], "wraps");
    assert_drained(&rx[2]);

    // The next call continues the sequence numbers and timestamps.
    rx[1].set_nonblocking(false).unwrap();
    sender
        .send_vectored(&[Entry::new(ids[1], &c)], &WriteOptions::default())
        .unwrap();
    let got = recv_n(&rx[1], 1);
    assert_eq!(rtp_fields(&got[0]), (false, 33, 65532, 1090, 0x1001));

    let stats = sender.stats().unwrap();
    assert_eq!(stats.calls, 2);
    assert_eq!(stats.packets, 14);
    assert_eq!(stats.bytes_copied, report.bytes + c.len() as u64);
    assert_eq!(stats.bytes_zerocopy, 0);
}

#[test]
fn rtp_over_ipv4_loopback() {
    send_rtp_to("127.0.0.1");
}

#[test]
fn rtp_over_ipv6_loopback() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    send_rtp_to("::1");
}

#[test]
fn plain_udp_default_packet_size_is_the_mtu() {
    let mut sender = Sender::open_fallback().unwrap();
    let rx = receiver("127.0.0.1");
    let d = DestConfig::route(rx.local_addr().unwrap(), None).unwrap();
    let id = sender.add_destination(&d).unwrap();
    // lo's MTU (65536) is above the largest IP packet: 65535 - 20 - 8.
    let mtu = mdwrite::interface_mtu(d.ifindex).unwrap();
    let max = (mtu.min(65535) - 28) as usize;
    assert_eq!(sender.max_payload(id), Some(max as u16));
    let a = data(max + 10, 9);
    sender
        .send_vectored(&[Entry::new(id, &a)], &WriteOptions::default())
        .unwrap();
    let got = recv_n(&rx, 2);
    assert_eq!(got[0].len(), max);
    assert_eq!(got[1].len(), 10);
    assert_eq!([got[0].clone(), got[1].clone()].concat(), a);
}

#[test]
fn destinations_sharing_a_source_share_a_socket() {
    let mut sender = Sender::open_fallback().unwrap();
    let rx: Vec<UdpSocket> = (0..4).map(|_| receiver("127.0.0.1")).collect();
    let mut port = 0;
    let ids: Vec<DestId> = rx
        .iter()
        .map(|s| {
            let mut d = dest_to(s, 1000, None);
            if port == 0 {
                port = d.src_port;
            }
            d.src_port = port;
            sender.add_destination(&d).unwrap()
        })
        .collect();
    let bufs: Vec<Vec<u8>> = (0..4).map(|i| data(1000 * 70 + 1 + i, i as u8)).collect();
    let entries: Vec<Entry<'_>> = ids
        .iter()
        .zip(&bufs)
        .map(|(&id, b)| Entry::new(id, b))
        .collect();
    let opts = WriteOptions::default().with_quantum(3);
    let r = sender.send_vectored(&entries, &opts).unwrap();
    assert_eq!(r.packets, 4 * 71);
    for (i, s) in rx.iter().enumerate() {
        let got = recv_n(s, 71);
        assert_eq!(got.concat(), bufs[i]);
        assert_drained(s);
    }
    // And a packet from the socket says which port it came from.
    let s = &rx[0];
    s.set_nonblocking(false).unwrap();
    sender
        .send_vectored(&[Entry::new(ids[0], b"x")], &opts)
        .unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!(from.port(), port);
    // Disconnecting one keeps the others' socket.
    sender.remove_destination(ids[0]).unwrap();
    sender
        .send_vectored(&[Entry::new(ids[1], b"y")], &opts)
        .unwrap();
    rx[1].set_nonblocking(false).unwrap();
    let (_, from) = rx[1].recv_from(&mut buf).unwrap();
    assert_eq!(from.port(), port);
}

fn errno_of<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().expect("an errno")
}

#[test]
fn connect_errors_are_the_modules() {
    let mut sender = Sender::open_fallback().unwrap();
    let rx = receiver("127.0.0.1");
    let good = dest_to(&rx, 1316, None);
    let with = |f: &dyn Fn(&mut DestConfig)| {
        let mut d = good.clone();
        f(&mut d);
        d
    };
    let cases: Vec<(DestConfig, i32)> = vec![
        (with(&|d| d.ifindex = 999_999), libc::ENODEV),
        (with(&|d| d.src_port = 0), libc::EINVAL),
        (
            with(&|d| d.to = SocketAddr::new(d.to.ip(), 0)),
            libc::EINVAL,
        ),
        (with(&|d| d.from = "::1".parse().unwrap()), libc::EINVAL),
        (with(&|d| d.dscp = 64), libc::EINVAL),
        (with(&|d| d.rtp = Some(Rtp::new(0, 128))), libc::EINVAL),
        (with(&|d| d.vlan_tci = Some(0)), libc::EINVAL),
        (with(&|d| d.packet_size = Some(28)), libc::EMSGSIZE),
        (with(&|d| d.vlan_tci = Some(5)), libc::EOPNOTSUPP),
    ];
    for (d, errno) in cases {
        assert_eq!(errno_of(sender.add_destination(&d)), errno, "{d:?}");
    }
    let id = sender.add_destination(&good).unwrap();
    sender.remove_destination(id).unwrap();
    assert_eq!(errno_of(sender.remove_destination(id)), libc::ENXIO);
}

#[test]
fn write_errors_are_the_modules() {
    let mut sender = Sender::open_fallback().unwrap();
    let rx = receiver("127.0.0.1");
    let id = sender.add_destination(&dest_to(&rx, 1316, None)).unwrap();
    let opts = WriteOptions::default();
    let one = [1u8; 10];
    assert_eq!(errno_of(sender.send_vectored(&[], &opts)), libc::EINVAL);
    assert_eq!(
        errno_of(sender.send_vectored(&[Entry::new(id, &[])], &opts)),
        libc::EINVAL
    );
    let unknown = Entry::new(DestId::from_handle(4242), &one);
    assert_eq!(
        errno_of(sender.send_vectored(&[Entry::new(id, &one), unknown], &opts)),
        libc::ENXIO
    );
    let ts = Entry::new(id, &one).with_rtp_timestamp(1);
    assert_eq!(errno_of(sender.send_vectored(&[ts], &opts)), libc::EINVAL);
    let many = vec![Entry::new(id, &one); 4097];
    assert_eq!(errno_of(sender.send_vectored(&many, &opts)), libc::E2BIG);
    // Nothing left on a refused call.
    assert_eq!(sender.stats().unwrap().packets, 0);
    assert_drained(&rx);
}

#[test]
fn stream_group_through_the_fallback() {
    let mut sender = Sender::open_fallback().unwrap();
    let rx: Vec<UdpSocket> = (0..4).map(|_| receiver("127.0.0.1")).collect();
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let sources = [data(1316 * 40 + 99, 1), data(1316 * 9, 2)];
    let bitrates = [3_000_000u64, 500_000];
    let mut cfgs = Vec::new();
    // Stream 0 to receivers 0 and 1 over RTP and to receiver 3 as plain
    // UDP (its entries carry no timestamp), stream 1 to receiver 2.
    for (i, dests) in [vec![0usize, 1, 3], vec![2]].into_iter().enumerate() {
        let mut cfg = StreamConfig::new(bitrates[i], 1316);
        if i == 0 {
            cfg = cfg.with_rtp_clock_hz(90_000);
        }
        for r in dests {
            let rtp = cfg
                .rtp_ts_increment()
                .filter(|_| r != 3)
                .map(|inc| rtp(r as u32, 0, 1_000_000 * r as u32, inc));
            cfg.dests
                .push(sender.add_destination(&dest_to(&rx[r], 1316, rtp)).unwrap());
        }
        cfgs.push(cfg.clone());
        group
            .add_stream(cfg, Box::new(io::Cursor::new(sources[i].clone())))
            .unwrap();
    }
    let mut ticks = 0;
    let mut delivered: std::collections::HashMap<DestId, (u64, u64)> = Default::default();
    while !group.is_empty() {
        let r = group.tick(&mut sender).unwrap();
        assert!(r.write.as_ref().is_none_or(|w| w.error.is_none()));
        for c in &r.delivered {
            let d = delivered.entry(c.dest).or_default();
            d.0 += c.packets;
            d.1 += c.bytes;
        }
        ticks += 1;
    }
    assert!(ticks > 5);
    // Per destination: each got its stream's packets and bytes.
    for cfg in &cfgs {
        let stream = if cfg.bitrate == bitrates[0] { 0 } else { 1 };
        let len = sources[stream].len() as u64;
        for d in &cfg.dests {
            assert_eq!(delivered[d], (len.div_ceil(1316), len), "destination {d:?}");
        }
    }
    for (r, stream, skip) in [(0, 0, 12), (1, 0, 12), (2, 1, 0), (3, 0, 0)] {
        let n = sources[stream].len().div_ceil(1316);
        let got = recv_n(&rx[r], n);
        let payload: Vec<u8> = got.iter().flat_map(|g| g[skip..].to_vec()).collect();
        assert_eq!(payload, sources[stream], "receiver {r}");
        if skip == 12 {
            // Timestamps advance by one packet's time (280.7 us at 3 Mb/s:
            // 351 or 352 at 90 kHz, from the pacing clock or the increment).
            // Each destination counts from its own initial timestamp.
            let tss: Vec<u32> = got.iter().map(|g| rtp_fields(g).3).collect();
            for (k, ts) in tss.iter().enumerate() {
                let ideal =
                    1_000_000 * r as u32 + (k as u64 * 1316 * 8 * 90_000 / bitrates[0]) as u32;
                assert!(
                    ts.abs_diff(ideal) <= k as u32 / 2 + 1,
                    "packet {k}: {ts} vs {ideal}"
                );
            }
            let seqs: Vec<u16> = got.iter().map(|g| rtp_fields(g).2).collect();
            assert_eq!(seqs, (0..n as u16).collect::<Vec<_>>());
        }
        assert_drained(&rx[r]);
    }
}

#[test]
fn gso_sends_the_same_packets_in_fewer_messages() {
    for gso in [true, false] {
        let mut sender = Sender::open_fallback().unwrap();
        sender.set_gso(gso);
        let rx: Vec<UdpSocket> = (0..2).map(|_| receiver("127.0.0.1")).collect();
        let ids: Vec<DestId> = rx
            .iter()
            .map(|s| sender.add_destination(&dest_to(s, 1000, None)).unwrap())
            .collect();
        // One destination: 150 full packets and a partial one, in runs of
        // at most 64 packets per message.
        let a = data(1000 * 150 + 123, 1);
        let r = sender
            .send_vectored(&[Entry::new(ids[0], &a)], &WriteOptions::default())
            .unwrap();
        assert_eq!((r.packets, r.bytes), (151, a.len() as u64));
        let got = recv_n(&rx[0], 151);
        assert!(got[..150].iter().all(|d| d.len() == 1000));
        assert_eq!(got[150].len(), 123);
        assert_eq!(got.concat(), a);
        assert_drained(&rx[0]);
        let fs = sender.fallback_stats().unwrap();
        if gso {
            // 64 + 64 + 23 packets.
            assert_eq!((fs.messages, fs.gso_messages), (3, 3));
        } else {
            assert_eq!((fs.messages, fs.gso_messages), (151, 0));
        }

        // Two destinations, quantum 4: runs of 4 packets per message, in
        // the round-robin order; two entries for one destination are never
        // merged.
        let b = data(1000 * 10, 2);
        let c = data(1000 * 7, 3);
        let d = data(1000 * 2, 4);
        let entries = [
            Entry::new(ids[0], &b),
            Entry::new(ids[1], &c),
            Entry::new(ids[0], &d),
        ];
        let opts = WriteOptions::default().with_quantum(4);
        let r = sender.send_vectored(&entries, &opts).unwrap();
        assert_eq!(r.packets, 19);
        assert_eq!(recv_n(&rx[0], 12).concat(), [b.clone(), d.clone()].concat());
        assert_eq!(recv_n(&rx[1], 7).concat(), c);
        let after = sender.fallback_stats().unwrap();
        // Order: 0 0 0 0 | 1 1 1 1 | 0 0 0 0 | 1 1 1 | 0 0 (b ends) 0 0 (d).
        let messages = after.messages - fs.messages;
        assert_eq!(messages, if gso { 6 } else { 19 });
    }
}

#[test]
fn no_gso_with_rtp_or_mixed_payloads() {
    let mut sender = Sender::open_fallback().unwrap();
    let rx: Vec<UdpSocket> = (0..3).map(|_| receiver("127.0.0.1")).collect();
    let rtp_dest = sender
        .add_destination(&dest_to(&rx[0], 1000, Some(rtp(1, 0, 0, 10))))
        .unwrap();
    let plain = sender
        .add_destination(&dest_to(&rx[1], 1000, None))
        .unwrap();
    let other = sender.add_destination(&dest_to(&rx[2], 800, None)).unwrap();
    let a = data(1000 * 20, 5);
    for (id, s, n) in [(rtp_dest, 0, 20), (plain, 1, 20), (other, 2, 25)] {
        let before = sender.fallback_stats().unwrap();
        // Alone, the plain destinations use GSO; the RTP one never does.
        sender
            .send_vectored(&[Entry::new(id, &a)], &WriteOptions::default())
            .unwrap();
        let skip = if s == 0 { 12 } else { 0 };
        let got = recv_n(&rx[s], n);
        let payload: Vec<u8> = got.iter().flat_map(|g| g[skip..].to_vec()).collect();
        assert_eq!(payload, a);
        let gso = sender.fallback_stats().unwrap().gso_messages - before.gso_messages;
        assert_eq!(gso, u64::from(s != 0), "destination {s}");
    }
    // Together (different payload sizes), nothing is merged.
    let before = sender.fallback_stats().unwrap();
    let opts = WriteOptions::default().with_quantum(8);
    sender
        .send_vectored(&[Entry::new(plain, &a), Entry::new(other, &a)], &opts)
        .unwrap();
    assert_eq!(recv_n(&rx[1], 20).concat(), a);
    assert_eq!(recv_n(&rx[2], 25).concat(), a);
    let after = sender.fallback_stats().unwrap();
    assert_eq!(after.messages - before.messages, 45);
    assert_eq!(after.gso_messages, before.gso_messages);
}

#[test]
fn open_without_the_module_is_the_fallback() {
    if std::path::Path::new(mdwrite::Device::PATH).exists() {
        eprintln!("skipped: the module is loaded here");
        return;
    }
    let sender = Sender::open().unwrap();
    assert_eq!(sender.backend(), Backend::Fallback);
    assert_eq!(sender.backend().to_string(), "fallback (sendmmsg)");
    assert_eq!(Backend::Module.to_string(), "module");
    let e = Sender::open_module().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn registered_buffer_and_async_send_through_the_fallback() {
    let (r1, r2) = (receiver("127.0.0.1"), receiver("127.0.0.1"));
    let mut sender = Sender::open_fallback().unwrap();
    let d1 = sender.add_destination(&dest_to(&r1, 1000, None)).unwrap();
    let d2 = sender.add_destination(&dest_to(&r2, 500, None)).unwrap();
    let mut buf = sender.register_buffer(10_000).unwrap();
    assert_eq!(buf.id(), None, "plain memory on the fallback");
    assert_eq!(buf.len(), 10_000);
    let payload = data(2500, 9);
    buf[100..2600].copy_from_slice(&payload);
    // Nothing in flight: no wait, no completion.
    assert_eq!(sender.in_flight(), 0);
    let mut done = Vec::new();
    assert_eq!(
        sender
            .wait_completions(&mut done, Some(Duration::from_secs(60)))
            .unwrap(),
        0
    );
    assert!(sender.wait_completion(None).unwrap().is_none());

    let addr = buf.as_ptr();
    let entries = [
        AsyncEntry::new(d1, 0, 100..2600),
        AsyncEntry::new(d2, 0, 100..1100),
    ];
    let report = sender
        .send_async(vec![buf], &entries, &WriteOptions::default(), 0xfeed)
        .unwrap();
    assert_eq!((report.bytes, report.packets), (3500, 5));
    assert_eq!(sender.in_flight(), 1);
    assert_eq!(sender.try_completions(&mut done).unwrap(), 1);
    assert_eq!(sender.in_flight(), 0);
    let c = &mut done[0];
    assert_eq!((c.cookie, c.bytes, c.packets), (0xfeed, 3500, 5));
    assert!(c.error.is_none());
    // The buffer comes back with the completion, the same memory.
    assert_eq!(c.buffers.len(), 1);
    let buf = c.buffers.pop().unwrap();
    assert_eq!((buf.as_ptr(), buf.len()), (addr, 10_000));
    assert_eq!(recv_n(&r1, 3).concat(), payload);
    assert_eq!(recv_n(&r2, 2).concat(), &payload[..1000]);
    assert_drained(&r1);
    assert_drained(&r2);

    // A call that fails has no completion, and hands the buffers back.
    let e = sender
        .send_async(
            vec![buf],
            &[AsyncEntry::new(d1, 0, 5..5)],
            &WriteOptions::default(),
            1,
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(e.buffers.len(), 1);
    assert_eq!(e.buffers[0].as_ptr(), addr);
    assert_eq!(sender.in_flight(), 0);
    assert_eq!(sender.try_completions(&mut done).unwrap(), 0);
    // An entry outside its buffer, or naming no buffer of the call, is
    // EINVAL before anything is sent.
    let buf = e.buffers.into_iter().next().unwrap();
    let e = sender
        .send_async(
            vec![buf],
            &[AsyncEntry::new(d1, 0, 9_000..10_001)],
            &WriteOptions::default(),
            2,
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    let e = sender
        .send_async(
            e.buffers,
            &[AsyncEntry::new(d1, 1, 0..10)],
            &WriteOptions::default(),
            3,
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    let io_error: io::Error = e.into();
    assert_eq!(io_error.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(sender.in_flight(), 0);
    assert_drained(&r1);
}

#[test]
fn split_pieces_go_in_flight_independently() {
    let r = receiver("127.0.0.1");
    let mut sender = Sender::open_fallback().unwrap();
    let d = sender.add_destination(&dest_to(&r, 1000, None)).unwrap();
    let mut buf = sender.register_buffer(3000).unwrap();
    let base = buf.as_ptr() as usize;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i / 1000) as u8 + 1;
    }
    let mut pieces = buf.into_chunks(1000);
    assert_eq!(pieces.len(), 3);
    for (i, p) in pieces.iter().enumerate() {
        assert_eq!((p.as_ptr() as usize - base, p.len()), (i * 1000, 1000));
        assert!(p.iter().all(|&b| b == i as u8 + 1));
    }
    let last = pieces.pop().unwrap();
    let middle = pieces.pop().unwrap();
    let mut first = pieces.pop().unwrap();
    let opts = WriteOptions::default();
    sender
        .send_async(vec![middle], &[AsyncEntry::new(d, 0, 0..1000)], &opts, 20)
        .unwrap();
    sender
        .send_async(
            vec![last],
            &[AsyncEntry::new(d, 0, 0..10).with_rtp_timestamp(5)],
            &opts,
            30,
        )
        .unwrap_err(); // a timestamp for a destination without RTP
                       // The other pieces are still ours to rewrite.
    first.fill(9);
    let mut tail = first.split_off(600);
    assert_eq!((first.len(), tail.len()), (600, 400));
    tail.fill(8);
    assert!(first.iter().all(|&b| b == 9));
    let mut done = Vec::new();
    sender.try_completions(&mut done).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].cookie, 20);
    assert_eq!(done[0].buffers[0].as_ptr() as usize - base, 1000);
    assert_eq!(recv_n(&r, 1).concat(), vec![2u8; 1000]);
}

#[test]
fn sender_fd_is_readable_while_completions_wait() {
    use std::os::fd::AsFd;
    let r = receiver("127.0.0.1");
    let mut sender = Sender::open_fallback().unwrap();
    let d = sender.add_destination(&dest_to(&r, 1000, None)).unwrap();
    let readable = |s: &Sender| {
        let fd = s.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())).unwrap() == 1
    };
    assert!(!readable(&sender));
    for cookie in 0..2 {
        let buf = sender.register_buffer(10).unwrap();
        sender
            .send_async(
                vec![buf],
                &[AsyncEntry::new(d, 0, 0..10)],
                &WriteOptions::default(),
                cookie,
            )
            .unwrap();
    }
    assert!(readable(&sender));
    assert!(sender.wait_completion(None).unwrap().is_some());
    assert!(readable(&sender), "one completion still waits");
    let mut done = Vec::new();
    assert_eq!(sender.try_completions(&mut done).unwrap(), 1);
    assert!(!readable(&sender));
    recv_n(&r, 2);
}

#[test]
fn fallback_back_pressure_is_the_modules() {
    let r = receiver("127.0.0.1");
    let mut sender = Sender::open_fallback().unwrap();
    let d = sender.add_destination(&dest_to(&r, 1000, None)).unwrap();
    let one = || {
        let mut b = RegisteredBuffer::unregistered(10).unwrap();
        b.fill(7);
        vec![b]
    };
    let entry = [AsyncEntry::new(d, 0, 0..10)];
    let opts = WriteOptions::default();
    let limit = mdwrite::uapi::MDW_MAX_ASYNC as u64;
    for cookie in 0..limit {
        sender.send_async(one(), &entry, &opts, cookie).unwrap();
    }
    assert_eq!(sender.in_flight(), limit);
    let e = sender.send_async(one(), &entry, &opts, limit).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
    assert_eq!(e.error.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(e.buffers.len(), 1);
    // Waiting variant: reads the completions, then sends.
    let mut done = Vec::new();
    sender
        .send_async_waiting(e.buffers, &entry, &opts, limit, &mut done)
        .unwrap();
    let cookies: Vec<u64> = done.iter().map(|c| c.cookie).collect();
    assert_eq!(cookies, (0..limit).collect::<Vec<_>>(), "oldest first");
    let last = sender.wait_completion(None).unwrap().unwrap();
    assert_eq!(last.cookie, limit);
    assert_eq!(sender.in_flight(), 0);
    assert_eq!(recv_n(&r, limit as usize + 1).len(), limit as usize + 1);
}

#[test]
fn fallback_signals_the_eventfd() {
    let r = receiver("127.0.0.1");
    let mut sender = Sender::open_fallback().unwrap();
    let d = sender.add_destination(&dest_to(&r, 1000, None)).unwrap();
    let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap();
    sender
        .set_eventfd(Some(std::os::fd::AsFd::as_fd(&efd)))
        .unwrap();
    let x = || {
        let mut b = RegisteredBuffer::unregistered(1).unwrap();
        b[0] = b'x';
        vec![b]
    };
    let entry = [AsyncEntry::new(d, 0, 0..1)];
    for cookie in 0..3 {
        sender
            .send_async(x(), &entry, &WriteOptions::default(), cookie)
            .unwrap();
    }
    let mut count = [0u8; 8];
    rustix::io::read(&efd, &mut count).unwrap();
    assert_eq!(u64::from_ne_bytes(count), 3);
    sender.set_eventfd(None).unwrap();
    sender
        .send_async(x(), &entry, &WriteOptions::default(), 3)
        .unwrap();
    let e = rustix::io::read(&efd, &mut count).unwrap_err();
    assert_eq!(e, rustix::io::Errno::AGAIN);
    recv_n(&r, 4);
}

/// Paced calls on the fallback: released in user space (each packet at its
/// time) or with `SCM_TXTIME` through the qdisc (loopback has none, so
/// they leave at once); the bytes arrive whole either way, and windows and
/// entry timings get the module's errnos.
#[test]
fn paced_calls_release_at_their_times_and_check_like_the_module() {
    use mdwrite::{EntryPace, PaceClock, PaceWindow};
    let rx = receiver("127.0.0.1");
    let mut sender = Sender::open_fallback().unwrap();
    let id = sender.add_destination(&dest_to(&rx, 1000, None)).unwrap();
    let payload = data(5000, 3);
    let ms = Duration::from_millis;
    let now = PaceClock::Monotonic.now();

    // User-space release: 5 packets spread over 100 ms, 20 ms apart.
    let opts = WriteOptions::default().with_pace(Some(PaceWindow::new(now + ms(10), ms(100))));
    let start = std::time::Instant::now();
    let r = sender
        .send_vectored(&[Entry::new(id, &payload)], &opts)
        .unwrap();
    let took = start.elapsed();
    assert_eq!((r.packets, r.bytes), (5, 5000));
    // The last packet leaves 10 + 80 ms from the call.
    assert!(took >= ms(89), "returned after {took:?}");
    assert_eq!(recv_n(&rx, 5).concat(), payload);

    // Through the qdisc: SCM_TXTIME on each message, sent at once.
    let now = PaceClock::Monotonic.now();
    let opts = WriteOptions::default()
        .with_qdisc(true)
        .with_pace(Some(PaceWindow::new(now + ms(1), ms(20))));
    let r = sender
        .send_vectored(&[Entry::new(id, &payload)], &opts)
        .unwrap();
    assert_eq!(r.packets, 5);
    assert_eq!(recv_n(&rx, 5).concat(), payload);
    assert_drained(&rx);

    // The module's errnos, on both paths.
    for qdisc in [false, true] {
        let now = PaceClock::Monotonic.now();
        let w = |start: Duration, len: Duration| PaceWindow::new(start, len);
        let e = Entry::new(id, &payload);
        let send = |s: &mut Sender, w: PaceWindow, e: Entry<'_>| {
            let opts = WriteOptions::default().with_qdisc(qdisc).with_pace(Some(w));
            errno_of(s.send_vectored(&[e], &opts))
        };
        assert_eq!(send(&mut sender, w(now, Duration::ZERO), e), libc::EINVAL);
        assert_eq!(send(&mut sender, w(now, ms(1001)), e), libc::ERANGE);
        assert_eq!(
            send(&mut sender, w(now + ms(1500), ms(10)), e),
            libc::ERANGE
        );
        assert_eq!(send(&mut sender, w(now - ms(20), ms(10)), e), libc::ETIME);
        // 5 packets 5 ms apart from 1 ms: the last at 21 ms, after a 20 ms
        // window.
        let late = e.with_pace(EntryPace::new(ms(1), ms(5)));
        assert_eq!(
            send(&mut sender, w(now + ms(1), ms(20)), late),
            libc::ERANGE
        );
    }
    assert_drained(&rx);
}
