// SPDX-License-Identifier: GPL-2.0

//! MPEG-TS through the stream group, on a fake clock: every packet a
//! destination gets is whole TS packets, 7 per packet (only the stream's
//! last may hold fewer), the bytes are the file's, and the RTP timestamps
//! follow the pacing at 90 kHz.

use std::{
    io::{self, Cursor, Read},
    time::Duration,
};

use mdwrite::{
    media::{rtp::CLOCK_90KHZ, source::TsReader, ts::TS_PACKET_SIZE},
    DestId, Entry, FakeClock, GroupOptions, StreamConfig, StreamGroup, Transmit, WriteOptions,
    WriteReport,
};

/// Records what would go on the wire: each entry cut into packets of the
/// destination's payload size, as the module and the fallback do.
struct Wire {
    payload: usize,
    /// Per destination handle: (packet bytes, RTP timestamp of its entry's
    /// first packet if this packet is one).
    packets: Vec<Vec<(Vec<u8>, Option<u32>)>>,
}

impl Transmit for Wire {
    fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        _: &WriteOptions,
    ) -> io::Result<WriteReport> {
        let mut packets = 0;
        for e in entries {
            for (i, p) in e.data.chunks(self.payload).enumerate() {
                let ts = if i == 0 { e.rtp_timestamp } else { None };
                self.packets[e.dest.handle() as usize].push((p.to_vec(), ts));
                packets += 1;
            }
        }
        Ok(WriteReport {
            bytes: entries.iter().map(|e| e.data.len() as u64).sum(),
            packets,
            error: None,
        })
    }

    fn max_payload(&self, _: DestId) -> Option<u16> {
        Some(self.payload as u16)
    }
}

/// A source that returns at most `max` bytes per read, whatever asked.
struct Dribble<R>(R, usize);

impl<R: Read> Read for Dribble<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.1);
        self.0.read(&mut buf[..n])
    }
}

/// `n` TS packets, each with a distinct counter pattern in its payload.
fn ts_file(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * TS_PACKET_SIZE);
    for i in 0..n {
        let mut p = [0u8; TS_PACKET_SIZE];
        p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10 | (i % 16) as u8]);
        for (j, b) in p[4..].iter_mut().enumerate() {
            *b = (i * 7 + j) as u8;
        }
        v.extend_from_slice(&p);
    }
    v
}

fn run(file: &[u8], source: Box<dyn Read + Send>, bitrate: u64) -> Wire {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    let mut wire = Wire {
        payload: 1316,
        packets: vec![Vec::new(); 3],
    };
    let cfg = StreamConfig::new(bitrate, 1316)
        .with_dests(vec![DestId::from_handle(1), DestId::from_handle(2)])
        .with_rtp_clock_hz(CLOCK_90KHZ);
    group.add_stream(cfg, source).unwrap();
    let mut ticks = 0;
    while !group.is_empty() {
        // A late tick now and then: the group catches up in one call.
        if ticks % 7 == 3 {
            clock.advance(Duration::from_millis(45));
        }
        group.tick_with(&mut wire).unwrap();
        ticks += 1;
        assert!(ticks < 100_000, "the stream never ended");
    }
    let want_packets = file.len().div_ceil(1316);
    for d in 1..=2 {
        assert_eq!(wire.packets[d].len(), want_packets, "destination {d}");
    }
    wire
}

fn check(file: &[u8], wire: &Wire, bitrate: u64) {
    for d in 1..=2 {
        let packets = &wire.packets[d];
        let mut all = Vec::new();
        for (i, (p, _)) in packets.iter().enumerate() {
            if i + 1 < packets.len() {
                assert_eq!(p.len(), 7 * TS_PACKET_SIZE, "packet {i}: 7 TS packets");
            }
            assert_eq!(p.len() % TS_PACKET_SIZE, 0, "packet {i}: whole TS packets");
            for ts in p.chunks(TS_PACKET_SIZE) {
                assert_eq!(
                    ts[0], 0x47,
                    "packet {i}: a TS packet starts at each 188 bytes"
                );
            }
            all.extend_from_slice(p);
        }
        assert!(all == file, "destination {d}: the bytes are the file's");
        // Each entry's first packet carries its first byte's ideal time.
        let mut offset = 0u128;
        for (p, ts) in packets {
            if let Some(ts) = ts {
                let ideal = offset * 8 * 90_000 / u128::from(bitrate);
                assert_eq!(u128::from(*ts), ideal % (1 << 32), "at byte {offset}");
            }
            offset += p.len() as u128;
        }
        assert!(packets[0].1.is_some());
    }
}

#[test]
fn whole_ts_packets_seven_per_packet() {
    let file = ts_file(7 * 500 + 3);
    let wire = run(
        &file,
        Box::new(TsReader::new(Cursor::new(file.clone()), false)),
        3_750_000,
    );
    check(&file, &wire, 3_750_000);
}

#[test]
fn alignment_does_not_depend_on_how_the_source_reads() {
    let file = ts_file(7 * 200);
    for max in [1, 100, 188, 1000, 5000] {
        let src = Dribble(TsReader::new(Cursor::new(file.clone()), false), max);
        let wire = run(&file, Box::new(src), 1_000_000);
        check(&file, &wire, 1_000_000);
    }
}
