// SPDX-License-Identifier: GPL-2.0

//! The `mdwrite::Sender` backends side by side: the module and the
//! userspace fallback put the same packets on the wire for the same input.

use std::{net::SocketAddr, time::Duration};

use mdwrite::{
    Backend, DestConfig, DestId, Entry, FakeClock, GroupOptions, Rtp, Sender, StreamConfig,
    StreamGroup, WriteOptions,
};

use crate::{
    net::{self, Capture, Listen, Received, BASE_PORT},
    send::pattern,
    topo::{self, Topology},
    TestResult,
};

const RECEIVERS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Receiver `i`'s destination without RTP, from port 4000 to
/// `BASE_PORT + i`: 0 and 1 IPv4 at the MTU, 2 IPv4 at packet size 1000,
/// 3 IPv6 at packet size 1200.
pub(crate) fn plain_config(topo: &Topology, ifindex: u32, i: usize) -> DestConfig {
    let v6 = i == 3;
    let mut c = DestConfig::new(
        ifindex,
        SocketAddr::new(topo.sender_addr(v6), 4000),
        SocketAddr::new(topo.addr(i, v6), BASE_PORT + i as u16),
    );
    c.dst_mac = Some(topo.receivers[i].mac);
    c.packet_size = match i {
        2 => Some(1000),
        3 => Some(1200),
        _ => None,
    };
    c
}

/// Receiver `i`'s destination: [`plain_config`] with RTP for all but
/// receiver 2 (0 and 1 IPv4 RTP at the MTU, 2 IPv4 plain UDP at packet
/// size 1000, 3 IPv6 RTP at packet size 1200).
fn config(topo: &Topology, ifindex: u32, i: usize) -> DestConfig {
    let mut c = plain_config(topo, ifindex, i);
    if i != 2 {
        c.rtp = Some(
            Rtp::new(0xab00 + i as u32, 33)
                .with_seq(65500 + i as u16)
                .with_timestamp(1_000_000 * i as u32)
                .with_ts_increment(90 + i as u32),
        );
    }
    c
}

/// Opens a `Sender` on `backend`.
pub(crate) fn open_backend(backend: Backend) -> Result<Sender, String> {
    match backend {
        Backend::Module => Sender::open_module(),
        Backend::Fallback => Sender::open_fallback(),
    }
    .map_err(|e| format!("open {backend}: {e}"))
}

/// Connects `c` through `sender` and adds to `group` a stream of `cfg` to
/// that destination alone, reading `src`.
pub(crate) fn add_stream_to(
    group: &mut StreamGroup<FakeClock>,
    sender: &mut Sender,
    c: &DestConfig,
    cfg: StreamConfig,
    src: Vec<u8>,
) -> TestResult {
    let id = sender
        .add_destination(c)
        .map_err(|e| format!("connect: {e}"))?;
    let cfg = {
        let mut v = cfg;
        v.dests = vec![id];
        v
    };
    group
        .add_stream(cfg, Box::new(std::io::Cursor::new(src)))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A UDP datagram seen on the wire: (IPv6, destination port, payload).
type WireDatagram = (bool, u16, Vec<u8>);

/// The length and first bytes of a datagram, for messages.
fn show(d: Option<&Vec<u8>>) -> Option<String> {
    d.map(|d| {
        let head: Vec<String> = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{} bytes [{}]", d.len(), head.join(" "))
    })
}

fn udp_datagram(frame: &[u8]) -> Option<WireDatagram> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (v6, l4, end) = match ethertype {
        0x0800 if *frame.get(23)? == 17 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            (
                false,
                14 + ihl,
                14 + usize::from(u16::from_be_bytes([frame[16], frame[17]])),
            )
        }
        0x86dd if *frame.get(20)? == 17 => (
            true,
            14 + 40,
            14 + 40 + usize::from(u16::from_be_bytes([frame[18], frame[19]])),
        ),
        _ => return None,
    };
    let port = u16::from_be_bytes([*frame.get(l4 + 2)?, *frame.get(l4 + 3)?]);
    Some((v6, port, frame.get(l4 + 8..end)?.to_vec()))
}

/// What one backend put on the wire and what the receivers got.
struct Outcome {
    wire: Vec<WireDatagram>,
    received: Vec<Received>,
    payloads: Vec<u16>,
    packets: u64,
    /// Messages the fallback sent as GSO runs (0 for the module).
    gso_messages: u64,
}

impl Outcome {
    /// The IPv4 datagrams on the wire, in order.
    fn ipv4(&self) -> Vec<WireDatagram> {
        self.wire.iter().filter(|d| !d.0).cloned().collect()
    }

    /// The payloads on the wire to destination port `port`, in order.
    fn to_port(&self, port: u16) -> Vec<Vec<u8>> {
        self.wire
            .iter()
            .filter(|d| d.1 == port)
            .map(|d| d.2.clone())
            .collect()
    }
}

/// Sends `datas` through `backend` (entry `k` of `datas` goes to receiver
/// `datas[k].0`, with RTP timestamp `datas[k].2`), captured where the
/// sender's link enters the switch.
fn run_backend(
    topo: &Topology,
    backend: Backend,
    datas: &[(usize, Vec<u8>, Option<u32>)],
    quantum: u32,
) -> Result<Outcome, String> {
    run_workload(topo, backend, Workload::Entries(datas.to_vec(), quantum))
}

/// Streams of a StreamGroup: (receivers, bitrate, source bytes).
type GroupStreams = Vec<(Vec<usize>, u64, Vec<u8>)>;

/// What a backend sends: one call of entries with a quantum, or the
/// ticks of a StreamGroup on a fake clock until its streams end.
enum Workload {
    Entries(Vec<(usize, Vec<u8>, Option<u32>)>, u32),
    Group(GroupStreams),
}

/// Sends `work` through `backend`, captured where the sender's link
/// enters the switch.
fn run_workload(topo: &Topology, backend: Backend, work: Workload) -> Result<Outcome, String> {
    let mut expect = [0usize; RECEIVERS];
    match &work {
        Workload::Entries(datas, _) => {
            for (r, d, _) in datas {
                expect[*r] += d.len();
            }
        }
        Workload::Group(streams) => {
            for (rs, _, src) in streams {
                for r in rs {
                    expect[*r] += src.len();
                }
            }
        }
    }
    let rx = net::receivers(topo, RECEIVERS, TIMEOUT, |i| Listen {
        v6: i == 3,
        expect: expect[i],
        skip: if i == 2 { 0 } else { 12 },
    })?;
    let sw = topo.switch.clone();
    let capture = std::thread::spawn(move || {
        topo::enter(&sw)?;
        Capture::open("p-snd")
    })
    .join()
    .map_err(|_| "capture thread panicked")??;

    // The sending half runs on a thread in the sender's namespace.
    let sender_ns = topo.sender.clone();
    let ifindex = topo.sender_ifindex()?;
    let configs: Vec<DestConfig> = (0..RECEIVERS).map(|i| config(topo, ifindex, i)).collect();
    let (packets, payloads, gso_messages) = topo::spawn_in(&sender_ns, move || {
        let mut sender = open_backend(backend)?;
        if sender.backend() != backend {
            return Err(format!("opened {} for {backend}", sender.backend()));
        }
        let ids: Vec<DestId> = configs
            .iter()
            .map(|c| sender.add_destination(c))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{backend}: connect: {e}"))?;
        let payloads = ids
            .iter()
            .map(|&id| sender.max_payload(id).unwrap_or(0))
            .collect();
        let packets = match work {
            Workload::Entries(datas, quantum) => {
                let entries: Vec<Entry<'_>> = datas
                    .iter()
                    .map(|(r, d, ts)| Entry {
                        rtp_timestamp: *ts,
                        ..Entry::new(ids[*r], d)
                    })
                    .collect();
                let opts = WriteOptions::default()
                    .with_quantum(quantum)
                    .with_qdisc(false);
                let report = sender
                    .send_vectored(&entries, &opts)
                    .map_err(|e| format!("{backend}: send: {e}"))?;
                if let Some((e, i)) = report.error {
                    return Err(format!("{backend}: stopped at entry {i}: {e}"));
                }
                report.packets
            }
            Workload::Group(streams) => {
                let mut group = StreamGroup::new(FakeClock::new(), GroupOptions::default());
                for (rs, bitrate, src) in streams {
                    let cfg = {
                        let mut v = StreamConfig::new(bitrate, 1316);
                        v.dests = rs.iter().map(|&r| ids[r]).collect();
                        v.rtp_clock_hz = Some(90_000);
                        v
                    };
                    group
                        .add_stream(cfg, Box::new(std::io::Cursor::new(src)))
                        .map_err(|e| e.to_string())?;
                }
                let mut packets = 0;
                while !group.is_empty() {
                    let r = group
                        .tick(&mut sender)
                        .map_err(|e| format!("{backend}: tick: {e}"))?;
                    if let Some(w) = r.write {
                        if let Some((e, i)) = w.error {
                            return Err(format!("{backend}: tick stopped at entry {i}: {e}"));
                        }
                        packets += w.packets;
                    }
                }
                packets
            }
        };
        let gso = sender.fallback_stats().map_or(0, |f| f.gso_messages);
        Ok((packets, payloads, gso))
    })
    .join()
    .map_err(|_| "sender thread panicked")??;
    let received = net::join_all(rx)?;
    let wire = capture
        .drain()
        .iter()
        .filter_map(|f| udp_datagram(f))
        .collect();
    Ok(Outcome {
        wire,
        received,
        payloads,
        packets,
        gso_messages,
    })
}

/// The topology of the comparisons: static neighbours, and GSO packets cut
/// at the sender's device.
fn wire_topology() -> Result<Topology, String> {
    let topo = Topology::new(RECEIVERS)?;
    topo.static_neighbours()?;
    // A veth passes GSO packets on whole; make the kernel cut them at the
    // sender's device, as for a NIC without UDP segmentation offload, so
    // that the capture sees the packets a wire would carry.
    topo.sender_offload_off("tx-udp-segmentation")?;
    Ok(topo)
}

/// The same StreamGroup (on a fake clock, so the same ticks) through both
/// backends puts the same datagrams on the wire, RTP timestamps from the
/// pacing included, in the same order over the IPv4 destinations.
/// Receivers 0, 1 (IPv4 RTP at the MTU) and 3 (IPv6 RTP at 1200) have
/// other largest payloads than the stream's 1316 bytes, so the group sends
/// them one entry per packet; receiver 2 (plain UDP) is alone in some
/// ticks, where the fallback sends GSO runs.
pub(crate) fn sender_group_same_packets() -> TestResult {
    let topo = wire_topology()?;
    let streams: GroupStreams = vec![
        (vec![0, 1, 3], 3_000_000, pattern(1316 * 150 + 11, 20)),
        (vec![2], 8_000_000, pattern(1_000_000, 21)),
    ];
    let module = run_workload(&topo, Backend::Module, Workload::Group(streams.clone()))?;
    let fallback = run_workload(&topo, Backend::Fallback, Workload::Group(streams.clone()))?;
    if module.packets != fallback.packets || module.wire.len() as u64 != module.packets {
        return Err(format!(
            "packets: module {} ({} on the wire), fallback {}",
            module.packets,
            module.wire.len(),
            fallback.packets
        ));
    }
    let (m4, f4) = (module.ipv4(), fallback.ipv4());
    if let Some(k) = (0..m4.len().max(f4.len())).find(|&k| m4.get(k) != f4.get(k)) {
        return Err(format!(
            "IPv4 wire order differs at datagram {k}: module {:?} {:?}, fallback {:?} {:?}",
            m4.get(k).map(|d| d.1),
            show(m4.get(k).map(|d| &d.2)),
            f4.get(k).map(|d| d.1),
            show(f4.get(k).map(|d| &d.2)),
        ));
    }
    // Receiver i gets stream [0, 0, 1, 0][i].
    for (i, stream) in [(0, 0), (1, 0), (2, 1), (3, 0)] {
        let src = &streams[stream].2;
        let port = BASE_PORT + i as u16;
        let (mw, fw) = (module.to_port(port), fallback.to_port(port));
        if mw != fw {
            return Err(format!("receiver {i}: the backends' datagrams differ"));
        }
        let skip = if i == 2 { 0 } else { 12 };
        let got: Vec<u8> = mw.iter().flat_map(|d| d[skip..].to_vec()).collect();
        if &got != src {
            return Err(format!(
                "receiver {i}: {} bytes on the wire, want the source's {}",
                got.len(),
                src.len()
            ));
        }
    }
    if fallback.gso_messages == 0 {
        return Err("the fallback sent no GSO message".into());
    }
    Ok(())
}

/// The same entries sent through `Sender::open_module()` and
/// `Sender::open_fallback()` give identical datagrams, headers included
/// (RTP sequence numbers, timestamps, SSRC, payload type), of the same
/// sizes, in the same order on the wire for the destinations that share a
/// source address and port (all the IPv4 ones), and identical receptions.
pub(crate) fn sender_backends_same_packets() -> TestResult {
    let topo = wire_topology()?;
    let datas: Vec<(usize, Vec<u8>, Option<u32>)> = vec![
        (0, pattern(100_000 + 7, 1), None),
        (1, pattern(1316 * 20, 2), None),
        (2, pattern(30_001, 3), None),
        (3, pattern(50_000, 4), None),
        (0, pattern(5_000, 5), Some(123_456)),
        (2, pattern(1, 6), None),
        (1, pattern(2_000, 7), Some(7)),
    ];
    // Plain UDP to one destination: the fallback sends GSO runs.
    let plain: Vec<(usize, Vec<u8>, Option<u32>)> = vec![
        (2, pattern(200_000 + 3, 8), None),
        (2, pattern(977, 9), None),
    ];
    for (datas, quantum) in [(&datas, 1), (&datas, 4), (&plain, 1)] {
        let module = run_backend(&topo, Backend::Module, datas, quantum)?;
        let fallback = run_backend(&topo, Backend::Fallback, datas, quantum)?;
        let want_gso = datas.iter().all(|d| d.0 == 2);
        if (fallback.gso_messages > 0) != want_gso {
            return Err(format!(
                "quantum {quantum}: the fallback sent {} GSO messages",
                fallback.gso_messages
            ));
        }
        if module.payloads != fallback.payloads {
            return Err(format!(
                "max payloads differ: module {:?}, fallback {:?}",
                module.payloads, fallback.payloads
            ));
        }
        if module.packets != fallback.packets {
            return Err(format!(
                "packets: module {}, fallback {}",
                module.packets, fallback.packets
            ));
        }
        // Every datagram expected is on the wire, once.
        if module.wire.len() as u64 != module.packets {
            return Err(format!(
                "module: {} datagrams on the wire, {} sent",
                module.wire.len(),
                module.packets
            ));
        }
        let (m4, f4) = (module.ipv4(), fallback.ipv4());
        if let Some(k) = (0..m4.len().max(f4.len())).find(|&k| m4.get(k) != f4.get(k)) {
            return Err(format!(
                "quantum {quantum}: IPv4 wire order differs at datagram {k} of {}/{}: module port {:?} len {:?}, fallback port {:?} len {:?}",
                m4.len(),
                f4.len(),
                m4.get(k).map(|d| d.1),
                m4.get(k).map(|d| d.2.len()),
                f4.get(k).map(|d| d.1),
                f4.get(k).map(|d| d.2.len()),
            ));
        }
        for i in 0..RECEIVERS {
            let port = BASE_PORT + i as u16;
            let (mw, fw) = (module.to_port(port), fallback.to_port(port));
            if mw != fw {
                let k = (0..mw.len().max(fw.len()))
                    .find(|&k| mw.get(k) != fw.get(k))
                    .unwrap_or(0);
                return Err(format!(
                    "quantum {quantum}: receiver {i}'s datagrams on the wire differ at {k}: module {:?}, fallback {:?}",
                    show(mw.get(k)),
                    show(fw.get(k)),
                ));
            }
            let want: Vec<u8> = datas
                .iter()
                .filter(|d| d.0 == i)
                .flat_map(|d| d.1.clone())
                .collect();
            let skip = if i == 2 { 0 } else { 12 };
            let got: Vec<u8> = mw.iter().flat_map(|d| d[skip..].to_vec()).collect();
            if got != want {
                return Err(format!(
                    "quantum {quantum}: receiver {i}'s payloads differ from the data"
                ));
            }
            // Every datagram arrived, with either backend. (The arrival
            // order is only reported: between namespaces the kernel may
            // reorder.)
            let sorted = |mut v: Vec<Vec<u8>>| {
                v.sort();
                v
            };
            for (name, o) in [("module", &module), ("fallback", &fallback)] {
                let r = &o.received[i].datagrams;
                if sorted(r.clone()) != sorted(mw.clone()) {
                    return Err(format!(
                        "quantum {quantum}: {name}: receiver {i} got {} datagrams, {} on the wire",
                        r.len(),
                        mw.len()
                    ));
                }
                let reordered = r.iter().zip(&mw).filter(|(a, b)| a != b).count();
                if reordered > 0 {
                    println!("# quantum {quantum}: {name}: receiver {i}: {reordered} of {} datagrams arrived out of order", r.len());
                }
            }
        }
    }
    Ok(())
}

/// `Sender::open()` picks the module when it is loaded and reports it;
/// a StreamGroup sends through it (fake clock: no timing involved) and
/// every receiver gets its stream's bytes.
pub(crate) fn sender_stream_group_module() -> TestResult {
    let topo = Topology::new(2)?;
    topo.static_neighbours()?;
    let ifindex = topo.sender_ifindex()?;
    let sources = [pattern(1316 * 100 + 17, 10), pattern(1316 * 30, 11)];
    let rx = net::receivers(&topo, 2, TIMEOUT, |i| Listen {
        v6: false,
        expect: sources[i].len(),
        skip: 12,
    })?;
    let configs: Vec<DestConfig> = (0..2).map(|i| config(&topo, ifindex, i)).collect();
    let srcs = sources.clone();
    topo::spawn_in(&topo.sender, move || {
        let mut sender = Sender::open().map_err(|e| format!("open: {e}"))?;
        if sender.backend() != Backend::Module {
            return Err(format!("Sender::open chose {}", sender.backend()));
        }
        let info = sender.info().map_err(|e| e.to_string())?;
        if info.map(|i| i.abi_version) != Some(mdwrite::uapi::MDW_ABI_VERSION) {
            return Err(format!("info: {info:?}"));
        }
        let clock = FakeClock::new();
        let mut group = StreamGroup::new(clock, GroupOptions::default());
        for (i, (mut c, src)) in configs.into_iter().zip(srcs).enumerate() {
            let cfg = {
                let mut v = StreamConfig::new([2_000_000, 500_000][i], 1316);
                v.dests = Vec::new();
                v.rtp_clock_hz = Some(90_000);
                v
            };
            c.packet_size = Some(c.packet_size_for(1316));
            if let Some(r) = c.rtp.as_mut() {
                r.ts_increment = cfg.rtp_ts_increment().unwrap_or(0);
            }
            add_stream_to(&mut group, &mut sender, &c, cfg, src)?;
        }
        while !group.is_empty() {
            let r = group.tick(&mut sender).map_err(|e| format!("tick: {e}"))?;
            if let Some((e, i)) = r.write.and_then(|w| w.error) {
                return Err(format!("tick stopped at entry {i}: {e}"));
            }
        }
        let s = sender.stats().map_err(|e| e.to_string())?;
        if s.bytes_zerocopy == 0 {
            return Err(format!("no zero-copy bytes: {s:?}"));
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sender thread panicked")??;
    for (i, got) in net::join_all(rx)?.into_iter().enumerate() {
        if got.bytes(12) != sources[i] {
            return Err(format!(
                "receiver {i}: {} bytes in {} datagrams, want {}",
                got.bytes(12).len(),
                got.datagrams.len(),
                sources[i].len()
            ));
        }
        if let Some(d) = got.datagrams.iter().find(|d| d.len() - 12 > 1316) {
            return Err(format!("receiver {i}: a payload of {}", d.len() - 12));
        }
    }
    Ok(())
}

/// The errno of a failed call, or what it returned instead.
fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> Result<i32, String> {
    match r {
        Ok(v) => Err(format!("succeeded ({v:?})")),
        Err(e) => mdwrite::errno(&e).ok_or(format!("no errno in {e}")),
    }
}

/// The same mistakes give the same errno through both backends, for
/// destinations and for writes; and route lookups name what is missing.
pub(crate) fn sender_backends_same_errors() -> TestResult {
    let topo = Topology::new(3)?;
    // A device that is down.
    let down = topo::add_dummy(&topo.sender, "d0", false)?;
    let ifindex = topo.sender_ifindex()?;
    // Receiver 2's destination (plain IPv4 UDP), at the MTU.
    let good = {
        let mut v = config(&topo, ifindex, 2);
        v.packet_size = None;
        v
    };
    let with = |f: &dyn Fn(&mut DestConfig)| {
        let mut d = good.clone();
        f(&mut d);
        d
    };
    let cases: Vec<(&str, DestConfig, i32)> = vec![
        ("no device", with(&|d| d.ifindex = 999_999), libc::ENODEV),
        ("device down", with(&|d| d.ifindex = down), libc::ENETDOWN),
        (
            "packet size above the MTU",
            with(&|d| d.packet_size = Some(1501)),
            libc::EMSGSIZE,
        ),
        (
            "packet size below the headers",
            with(&|d| d.packet_size = Some(28)),
            libc::EMSGSIZE,
        ),
        ("source port 0", with(&|d| d.src_port = 0), libc::EINVAL),
        (
            "destination port 0",
            with(&|d| d.to.set_port(0)),
            libc::EINVAL,
        ),
        ("DSCP 64", with(&|d| d.dscp = 64), libc::EINVAL),
        ("VLAN id 0", with(&|d| d.vlan_tci = Some(0)), libc::EINVAL),
        (
            "VLAN id 4095",
            with(&|d| d.vlan_tci = Some(4095)),
            libc::EINVAL,
        ),
        (
            "payload type 128",
            with(&|d| {
                d.rtp = Some({
                    let mut v = Rtp::default();
                    v.payload_type = 128;
                    v
                })
            }),
            libc::EINVAL,
        ),
        (
            "mixed families",
            with(&|d| d.from = topo.sender_addr(true)),
            libc::EINVAL,
        ),
        (
            "zero checksum on IPv6",
            with(&|d| {
                d.from = topo.sender_addr(true);
                d.to = SocketAddr::new(topo.addr(2, true), BASE_PORT);
                d.udp_csum_zero = true;
            }),
            libc::EINVAL,
        ),
    ];
    let sender_ns = topo.sender.clone();
    topo::spawn_in(&sender_ns, move || {
        for backend in [Backend::Module, Backend::Fallback] {
            let mut sender = open_backend(backend)?;
            for (what, d, want) in &cases {
                let got = errno_of(sender.add_destination(d))
                    .map_err(|e| format!("{backend}: {what}: {e}"))?;
                if got != *want {
                    return Err(format!("{backend}: {what}: errno {got}, want {want}"));
                }
            }
            let id = sender
                .add_destination(&good)
                .map_err(|e| format!("{backend}: connect: {e}"))?;
            let one = [1u8; 10];
            let opts = WriteOptions::default();
            let unknown = DestId::from_handle(0xdead);
            let many = vec![Entry::new(id, &one); 4097];
            let writes: Vec<(&str, Vec<Entry<'_>>, i32)> = vec![
                ("no entries", vec![], libc::EINVAL),
                ("an empty entry", vec![Entry::new(id, &[])], libc::EINVAL),
                (
                    "an unknown destination",
                    vec![Entry::new(id, &one), Entry::new(unknown, &one)],
                    libc::ENXIO,
                ),
                (
                    "a timestamp without RTP",
                    vec![Entry::new(id, &one).with_rtp_timestamp(1)],
                    libc::EINVAL,
                ),
                ("4097 entries", many, libc::E2BIG),
            ];
            for (what, entries, want) in writes {
                let got = errno_of(sender.send_vectored(&entries, &opts))
                    .map_err(|e| format!("{backend}: {what}: {e}"))?;
                if got != want {
                    return Err(format!(
                        "{backend}: write with {what}: errno {got}, want {want}"
                    ));
                }
            }
            sender
                .remove_destination(id)
                .map_err(|e| format!("{backend}: disconnect: {e}"))?;
            let got = errno_of(sender.remove_destination(id))
                .map_err(|e| format!("{backend}: disconnect twice: {e}"))?;
            if got != libc::ENXIO {
                return Err(format!("{backend}: disconnect twice: errno {got}"));
            }
        }
        // Route lookups in the sender's namespace: only 10.99.0.0/24 and
        // fd00:99::/64 are reachable.
        let e = DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)
            .err()
            .ok_or("a route to 192.0.2.1")?;
        if mdwrite::errno(&e) != Some(libc::ENETUNREACH) || !e.to_string().contains("192.0.2.1") {
            return Err(format!("route to 192.0.2.1: {e}"));
        }
        let e = DestConfig::route("10.99.0.10:5000".parse().unwrap(), Some("nope0"))
            .err()
            .ok_or("a route through nope0")?;
        if mdwrite::errno(&e) != Some(libc::ENODEV) || !e.to_string().contains("nope0") {
            return Err(format!("route through nope0: {e}"));
        }
        let d = DestConfig::route("10.99.0.10:5000".parse().unwrap(), None)
            .map_err(|e| format!("route to 10.99.0.10: {e}"))?;
        if d.ifindex != ifindex || d.from != topo::SENDER_V4 {
            return Err(format!("route to 10.99.0.10: {d:?}"));
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sender thread panicked")?
}
