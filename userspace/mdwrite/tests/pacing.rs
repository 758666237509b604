// SPDX-License-Identifier: GPL-2.0

//! StreamGroup pacing, interval and chunking, on a fake clock with a fake
//! transmitter: no network, no real time.

use std::{
    collections::HashMap,
    io::{self, Cursor, ErrorKind, Read},
    time::Duration,
};

use mdwrite::{
    Clock, DestId, Entry, FakeClock, GroupOptions, StreamConfig, StreamGroup, StreamId, Transmit,
    WriteOptions, WriteReport,
};

/// One entry as the fake transmitter saw it.
#[derive(Clone, Debug)]
struct Seen {
    dest: DestId,
    ptr: usize,
    data: Vec<u8>,
    rtp_timestamp: Option<u32>,
}

/// Records calls; every destination's payload is `payload` unless listed
/// in `payloads`.
#[derive(Default)]
struct FakeTx {
    calls: Vec<Vec<Seen>>,
    keep_data: bool,
    payloads: HashMap<DestId, u16>,
    rtp_bases: HashMap<DestId, u32>,
    no_rtp: Vec<DestId>,
}

impl Transmit for FakeTx {
    fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        _: &WriteOptions,
    ) -> io::Result<WriteReport> {
        assert!(!entries.is_empty(), "an empty call");
        let bytes = entries.iter().map(|e| e.data.len() as u64).sum();
        self.calls.push(
            entries
                .iter()
                .map(|e| Seen {
                    dest: e.dest,
                    ptr: e.data.as_ptr() as usize,
                    data: if self.keep_data {
                        e.data.to_vec()
                    } else {
                        Vec::new()
                    },
                    rtp_timestamp: e.rtp_timestamp,
                })
                .collect(),
        );
        Ok(WriteReport {
            bytes,
            packets: 0,
            error: None,
        })
    }

    fn max_payload(&self, id: DestId) -> Option<u16> {
        self.payloads.get(&id).copied()
    }

    fn rtp_initial_timestamp(&self, id: DestId) -> Option<u32> {
        if self.no_rtp.contains(&id) {
            return None;
        }
        Some(self.rtp_bases.get(&id).copied().unwrap_or(0))
    }
}

/// An endless source that costs nothing: it leaves the buffer as it is.
struct Endless;

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
}

fn cfg(bitrate: u64, dests: &[u32]) -> StreamConfig {
    StreamConfig::new(bitrate, 1316)
        .with_dests(dests.iter().map(|&d| DestId::from_handle(d)).collect())
}

/// The ideal byte count of a stream at `bitrate` after `elapsed`.
fn ideal(bitrate: u64, elapsed: Duration) -> u64 {
    (u128::from(bitrate) * elapsed.as_nanos() / 8_000_000_000) as u64
}

/// A small deterministic pseudo-random sequence (an LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn one_hour_every_stream_within_one_packet() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx::default();
    // (id, bitrate, start, removed at)
    let mut streams: Vec<(StreamId, u64, Duration, Option<Duration>)> = Vec::new();
    for bitrate in [64_000, 3_750_000, 40_000_000] {
        let id = group
            .add_stream(cfg(bitrate, &[1, 2]), Box::new(Endless))
            .unwrap();
        streams.push((id, bitrate, clock.now(), None));
    }
    let leaving = group
        .add_stream(cfg(10_000_000, &[3]), Box::new(Endless))
        .unwrap();
    streams.push((
        leaving,
        10_000_000,
        clock.now(),
        Some(Duration::from_secs(1800)),
    ));
    let mut late_joined = false;
    let mut rng = Lcg(7);
    let hour = Duration::from_secs(3600);
    let p = 1316;
    let mut ticks = 0u64;
    while clock.now() < hour {
        // Ticks run up to 3 ms late, as on a loaded machine.
        clock.advance(Duration::from_micros(rng.next(3000)));
        let report = group.tick_with(&mut tx).unwrap();
        ticks += 1;
        let now = report.at;
        for (id, bitrate, start, removed) in &mut streams {
            if removed.is_some_and(|r| now >= r) {
                let stats = group.remove_stream(*id).expect("stream still there");
                let ideal = ideal(*bitrate, now - *start);
                // Its last tick was at `now` too: within a packet then.
                assert!(
                    stats.bytes <= ideal && ideal - stats.bytes < p,
                    "removed stream off"
                );
                *removed = Some(Duration::MAX);
                continue;
            }
            let Some(stats) = group.stream_stats(*id) else {
                continue;
            };
            let ideal = ideal(*bitrate, now - *start);
            assert!(
                stats.bytes <= ideal && ideal - stats.bytes < p,
                "{bitrate} b/s at {now:?}: sent {} ideal {ideal}",
                stats.bytes
            );
            assert_eq!(stats.slipped, Duration::ZERO);
        }
        if !late_joined && now >= Duration::from_secs(600) {
            late_joined = true;
            let id = group
                .add_stream(cfg(1_500_000, &[4]), Box::new(Endless))
                .unwrap();
            streams.push((id, 1_500_000, clock.now(), None));
        }
    }
    assert!(group.stream_stats(leaving).is_none());
    assert_eq!(group.len(), 4);
    // Every tick with something due is one call; the 40 Mb/s stream is due
    // something at every tick (the interval is the 64 kb/s stream's packet
    // time, capped at 20 ms).
    assert_eq!(group.interval(), Duration::from_millis(20));
    assert_eq!(tx.calls.len() as u64, ticks);
    // About one tick per interval (late ticks are fewer than the grid).
    assert!(ticks > 170_000 && ticks <= 180_001, "{ticks} ticks");
}

#[test]
fn interval_follows_the_slowest_stream_within_bounds() {
    let mut group = StreamGroup::new(FakeClock::new(), GroupOptions::default());
    // No stream: the latency budget.
    assert_eq!(group.interval(), Duration::from_millis(20));
    // 40 Mb/s fills 1316 bytes in 263 us: raised to the 1 ms floor.
    let fast = group
        .add_stream(cfg(40_000_000, &[1]), Box::new(Endless))
        .unwrap();
    assert_eq!(group.interval(), Duration::from_millis(1));
    // 3.75 Mb/s: 10 528 bits take 2.807 ms; the slowest stream decides.
    let mid = group
        .add_stream(cfg(3_750_000, &[1]), Box::new(Endless))
        .unwrap();
    assert_eq!(group.interval(), Duration::from_nanos(2_807_466));
    // 64 kb/s: 164.5 ms, capped by the 20 ms latency budget.
    let slow = group
        .add_stream(cfg(64_000, &[1]), Box::new(Endless))
        .unwrap();
    assert_eq!(group.interval(), Duration::from_millis(20));
    group.remove_stream(slow).unwrap();
    assert_eq!(group.interval(), Duration::from_nanos(2_807_466));
    group.remove_stream(mid).unwrap();
    assert_eq!(group.interval(), Duration::from_millis(1));
    group.remove_stream(fast).unwrap();
    assert_eq!(group.interval(), Duration::from_millis(20));

    // A larger budget lets the slow stream fill its packet.
    let opts = GroupOptions::default().with_latency(Duration::from_millis(500));
    let mut group = StreamGroup::new(FakeClock::new(), opts);
    group
        .add_stream(cfg(64_000, &[1]), Box::new(Endless))
        .unwrap();
    assert_eq!(group.interval(), Duration::from_micros(164_500));
}

#[test]
fn ticks_follow_the_interval_grid() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    group
        .add_stream(cfg(3_750_000, &[1]), Box::new(Endless))
        .unwrap();
    let step = group.interval();
    let first = group.next_tick();
    let mut tx = FakeTx::default();
    for k in 0..10u32 {
        let r = group.tick_with(&mut tx).unwrap();
        assert_eq!(r.at, first + step * k);
        assert_eq!(r.late, Duration::ZERO);
    }
    // A late tick runs at once and the next one is back on the grid: the
    // clock is at tick 9, moved to 12.5, so tick 10 runs 2.5 steps late.
    clock.advance(step * 3 + step / 2);
    let r = group.tick_with(&mut tx).unwrap();
    assert_eq!(r.late, step * 2 + step / 2);
    assert_eq!(group.next_tick(), first + step * 13);
}

#[test]
fn source_end_sends_the_last_partial_packet_and_ends_the_stream() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx {
        keep_data: true,
        ..Default::default()
    };
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = group
        .add_stream(cfg(1_000_000, &[1, 2]), Box::new(Cursor::new(data.clone())))
        .unwrap();
    let mut ended = None;
    while !group.is_empty() {
        let r = group.tick_with(&mut tx).unwrap();
        for (sid, stats) in r.ended {
            ended = Some((sid, stats, r.at));
        }
    }
    let (sid, stats, at) = ended.expect("the stream ended");
    assert_eq!(sid, id);
    assert!(stats.ended && stats.error.is_none());
    assert_eq!(stats.bytes, 10_000);
    assert_eq!(stats.packets, 8); // 7 full packets of 1316, one of 788
                                  // Paced: the 8th packet's 1316 bytes were due at 84.2 ms.
    assert!(at >= Duration::from_micros(84_224), "{at:?}");
    for dest in [1, 2] {
        let got: Vec<u8> = tx
            .calls
            .iter()
            .flatten()
            .filter(|s| s.dest == DestId::from_handle(dest))
            .flat_map(|s| s.data.clone())
            .collect();
        assert_eq!(got, data, "destination {dest}");
    }
    // Every chunk but the last is whole packets.
    let lens: Vec<usize> = tx.calls.iter().map(|c| c[0].data.len()).collect();
    for len in &lens[..lens.len() - 1] {
        assert_eq!(len % 1316, 0);
    }
    assert_eq!(lens.last().unwrap() % 1316, 10_000 % 1316);
}

#[test]
fn one_buffer_per_stream_shared_by_its_destinations() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx::default();
    group
        .add_stream(cfg(8_000_000, &[1, 2, 3]), Box::new(Endless))
        .unwrap();
    group
        .add_stream(cfg(2_000_000, &[4, 5]), Box::new(Endless))
        .unwrap();
    for _ in 0..50 {
        group.tick_with(&mut tx).unwrap();
    }
    assert!(!tx.calls.is_empty());
    for call in &tx.calls {
        // One call holds both streams: entries in stream order, then
        // destination order, each stream's entries at one address.
        let dests: Vec<u32> = call.iter().map(|s| s.dest.handle()).collect();
        assert!(dests == [1, 2, 3, 4, 5] || dests == [1, 2, 3], "{dests:?}");
        assert!(call[..3].iter().all(|s| s.ptr == call[0].ptr));
        if call.len() == 5 {
            assert_eq!(call[3].ptr, call[4].ptr);
            assert_ne!(call[0].ptr, call[3].ptr);
        }
    }
}

#[test]
fn other_payload_sizes_get_one_entry_per_packet() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx {
        keep_data: true,
        ..Default::default()
    };
    tx.payloads.insert(DestId::from_handle(1), 1316);
    tx.payloads.insert(DestId::from_handle(2), 1472);
    group
        .add_stream(cfg(20_000_000, &[1, 2]), Box::new(Endless))
        .unwrap();
    for _ in 0..20 {
        group.tick_with(&mut tx).unwrap();
    }
    for call in &tx.calls {
        let whole: Vec<&Seen> = call.iter().filter(|s| s.dest.handle() == 1).collect();
        let split: Vec<&Seen> = call.iter().filter(|s| s.dest.handle() == 2).collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(split.len(), whole[0].data.len() / 1316);
        assert!(split.iter().all(|s| s.data.len() == 1316));
        assert_eq!(split[0].ptr, whole[0].ptr);
    }
}

#[test]
fn rtp_timestamps_come_from_the_pacing_clock() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx {
        keep_data: true,
        ..Default::default()
    };
    // Destination 2 starts at its own (random) initial timestamp, near the
    // wrap; destination 3 has no RTP header, so no timestamp.
    let base2 = 0xffff_ff00u32;
    tx.rtp_bases.insert(DestId::from_handle(2), base2);
    tx.no_rtp.push(DestId::from_handle(3));
    let bitrate = 3_760_000;
    let mut c = cfg(bitrate, &[1, 2, 3]);
    c.rtp_clock_hz = Some(90_000);
    assert_eq!(c.rtp_ts_increment(), Some(252));
    group.add_stream(c, Box::new(Endless)).unwrap();
    while clock.now() < Duration::from_secs(120) {
        group.tick_with(&mut tx).unwrap();
    }
    let mut offset = 0u64;
    for call in &tx.calls {
        assert_eq!(call.len(), 3);
        assert_eq!(call[2].rtp_timestamp, None);
        // The ideal send time of the chunk's first byte, at 90 kHz.
        let t = (u128::from(offset) * 8 * 90_000 / u128::from(bitrate)) as u32;
        assert_eq!(call[0].rtp_timestamp, Some(t));
        assert_eq!(call[1].rtp_timestamp, Some(base2.wrapping_add(t)));
        offset += call[0].data.len() as u64;
    }
    assert!(tx.calls.len() > 40_000);
    // The last chunk started less than one interval (2.8 ms: 252 ticks)
    // plus one packet (252) before 120 s.
    let last = tx.calls.last().unwrap()[0].rtp_timestamp.unwrap();
    assert!(
        (120 * 90_000 - 2 * 252..120 * 90_000).contains(&last),
        "{last}"
    );
}

#[test]
fn a_jump_catches_up_within_the_buffer_then_slips() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx::default();
    let bitrate = 1_000_000;
    let p = 1316u64;
    let id = group
        .add_stream(cfg(bitrate, &[1]), Box::new(Endless))
        .unwrap();
    while clock.now() < Duration::from_secs(1) {
        group.tick_with(&mut tx).unwrap();
    }
    // A short stall (100 ms, within the 200 ms buffer) is caught up fully.
    clock.advance(Duration::from_millis(100));
    let r = group.tick_with(&mut tx).unwrap();
    let stats = group.stream_stats(id).unwrap();
    let i = ideal(bitrate, r.at);
    assert!(stats.bytes <= i && i - stats.bytes < p);
    assert_eq!(stats.slipped, Duration::ZERO);

    // A 10 s stall sends the 200 ms buffer (25 000 bytes at 1 Mb/s: 18
    // whole packets) and slips the rest.
    let before = stats.bytes;
    clock.advance(Duration::from_secs(10));
    let r = group.tick_with(&mut tx).unwrap();
    let stats = group.stream_stats(id).unwrap();
    assert_eq!(stats.bytes - before, 18 * p);
    let whole = ideal(bitrate, r.at) / p * p;
    let slipped_bytes = whole - stats.bytes;
    let slipped_ns = u128::from(slipped_bytes) * 8_000_000_000 / u128::from(bitrate);
    assert!(
        stats.slipped.as_nanos().abs_diff(slipped_ns) < 1000,
        "{:?}",
        stats.slipped
    );
    assert!(stats.slipped > Duration::from_millis(9700));

    // From then on the stream is paced from its later start.
    while clock.now() < Duration::from_secs(60) {
        let r = group.tick_with(&mut tx).unwrap();
        let stats = group.stream_stats(id).unwrap();
        let i = ideal(bitrate, r.at) - slipped_bytes;
        assert!(stats.bytes <= i && i - stats.bytes < p, "at {:?}", r.at);
    }
}

/// A source that hands out data in odd pieces and sometimes has none yet.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    n: u64,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.n += 1;
        if self.n % 3 == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        let len = buf.len().min(500).min(self.data.len() - self.pos);
        buf[..len].copy_from_slice(&self.data[self.pos..self.pos + len]);
        self.pos += len;
        Ok(len)
    }
}

#[test]
fn short_reads_keep_packets_whole() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx {
        keep_data: true,
        ..Default::default()
    };
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let source = Trickle {
        data: data.clone(),
        pos: 0,
        n: 0,
    };
    group
        .add_stream(cfg(4_000_000, &[1]), Box::new(source))
        .unwrap();
    while !group.is_empty() {
        group.tick_with(&mut tx).unwrap();
        assert!(clock.now() < Duration::from_secs(60), "never ended");
    }
    let chunks: Vec<&Seen> = tx.calls.iter().flatten().collect();
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c.data.len() % 1316, 0);
    }
    let got: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(got, data);
}

#[test]
fn bad_streams_are_refused() {
    let mut group = StreamGroup::new(FakeClock::new(), GroupOptions::default());
    for bad in [cfg(0, &[1]), cfg(1000, &[]), {
        let mut c = cfg(1000, &[1]);
        c.payload_size = 0;
        c
    }] {
        let e = group.add_stream(bad, Box::new(Endless)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(22));
    }
    assert!(group.is_empty());
}

/// A source that flows, except that when told it hands out 500 bytes and
/// then has no data for one read.
struct Gate {
    data: Vec<u8>,
    pos: usize,
    hiccup: std::sync::Arc<std::sync::atomic::AtomicBool>,
    blocked: bool,
}

impl Read for Gate {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.blocked) {
            return Err(ErrorKind::WouldBlock.into());
        }
        let mut len = buf.len().min(self.data.len() - self.pos);
        if self.hiccup.swap(false, std::sync::atomic::Ordering::SeqCst) {
            len = len.min(500);
            self.blocked = true;
        }
        buf[..len].copy_from_slice(&self.data[self.pos..self.pos + len]);
        self.pos += len;
        Ok(len)
    }
}

#[test]
fn a_stall_with_a_partial_packet_carried_keeps_packets_whole() {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut tx = FakeTx {
        keep_data: true,
        ..Default::default()
    };
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let hiccup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source = Gate {
        data: data.clone(),
        pos: 0,
        hiccup: hiccup.clone(),
        blocked: false,
    };
    let id = group
        .add_stream(cfg(4_000_000, &[1]), Box::new(source))
        .unwrap();
    let mut stalls = 0;
    while !group.is_empty() {
        group.tick_with(&mut tx).unwrap();
        if stalls < 3 && clock.now() > Duration::from_secs(1 + stalls) {
            stalls += 1;
            // 500 bytes arrive, then nothing: a partial packet is carried.
            hiccup.store(true, std::sync::atomic::Ordering::SeqCst);
            group.tick_with(&mut tx).unwrap();
            // Then a stall: the stream catches up a buffer's worth, whole
            // packets only, and slips the rest.
            let before = group.stream_stats(id).unwrap().slipped;
            clock.advance(Duration::from_secs(5));
            group.tick_with(&mut tx).unwrap();
            let stats = group.stream_stats(id).unwrap();
            assert!(stats.slipped > before + Duration::from_secs(4), "{stats:?}");
        }
        assert!(clock.now() < Duration::from_secs(600), "never ended");
    }
    assert_eq!(stalls, 3);
    let chunks: Vec<&Seen> = tx.calls.iter().flatten().collect();
    for (k, c) in chunks[..chunks.len() - 1].iter().enumerate() {
        assert_eq!(c.data.len() % 1316, 0, "chunk {k} of {}", chunks.len());
    }
    let got: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(got, data);
}
