// SPDX-License-Identifier: GPL-2.0

//! Three paced streams to five local receivers, through the fallback
//! backend, for a few seconds of real time:
//!
//! ```text
//! cargo run --release -p mdwrite --example stream_group [SECONDS]
//! ```
//!
//! Each stream is a source of bytes at its own bitrate; every tick of the
//! group sends what all of them are due in one vectored call. The
//! receivers are UDP sockets on 127.0.0.1 in this process; at the end the
//! program prints what each stream sent against its ideal byte count and
//! what each receiver got.

use std::{
    io::{self, Read},
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use mdwrite::{
    Clock, DestConfig, GroupOptions, MonotonicClock, Rtp, Sender, StreamConfig, StreamGroup,
};

/// Payload bytes per packet: 7 MPEG-TS packets.
const PAYLOAD: usize = 1316;

/// An endless source of MPEG-TS-looking bytes (0x47 every 188 bytes).
struct TsLike(u64);

impl Read for TsLike {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            *b = if self.0 % 188 == 0 {
                0x47
            } else {
                self.0 as u8
            };
            self.0 += 1;
        }
        Ok(buf.len())
    }
}

/// A receiver thread that counts datagrams and bytes until `stop`.
fn receiver(stop: Arc<AtomicBool>) -> io::Result<(UdpSocket, Arc<AtomicU64>, Arc<AtomicU64>)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let (datagrams, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (s, d, b) = (socket.try_clone()?, datagrams.clone(), bytes.clone());
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = s.recv(&mut buf) {
                d.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    Ok((socket, datagrams, bytes))
}

fn main() -> io::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS: a whole number"))
        .unwrap_or(3);

    // The fallback runs on any machine; `Sender::open()` would take the
    // module when it is loaded (it does not send over loopback).
    let mut sender = Sender::open_fallback()?;
    println!("backend: {}", sender.backend());

    let stop = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = (0..5)
        .map(|_| receiver(stop.clone()))
        .collect::<io::Result<_>>()?;

    // Stream bitrates and the receivers each goes to.
    let plan: [(u64, &[usize]); 3] = [(256_000, &[0]), (3_750_000, &[1, 2]), (12_000_000, &[3, 4])];
    let clock = MonotonicClock;
    let mut group = StreamGroup::new(clock, GroupOptions::default());
    let mut streams = Vec::new();
    for (k, (bitrate, to)) in plan.iter().enumerate() {
        let mut cfg = StreamConfig::new(*bitrate, PAYLOAD).with_rtp_clock_hz(90_000);
        for &r in *to {
            let mut dest = DestConfig::route(receivers[r].0.local_addr()?, None)?;
            dest.rtp = Some(
                Rtp::new(0x5eed_0000 + r as u32, 33)
                    .with_ts_increment(cfg.rtp_ts_increment().unwrap_or(0)),
            );
            dest.packet_size = Some(dest.packet_size_for(PAYLOAD));
            cfg.dests.push(sender.add_destination(&dest)?);
        }
        let start = clock.now();
        streams.push((
            group.add_stream(cfg, Box::new(TsLike(k as u64)))?,
            *bitrate,
            start,
        ));
    }
    println!("tick interval: {:?}", group.interval());

    let end = clock.now() + Duration::from_secs(seconds);
    let mut ticks = 0u64;
    let mut now = clock.now();
    while now < end {
        let report = group.tick(&mut sender)?;
        if let Some((e, i)) = report.write.and_then(|w| w.error) {
            eprintln!("call stopped at entry {i}: {e}");
        }
        ticks += 1;
        now = report.at;
    }

    println!("{ticks} ticks in {seconds} s");
    println!(
        "{:>12} {:>12} {:>12} {:>8}",
        "bitrate", "sent", "ideal", "packets"
    );
    for (id, bitrate, start) in &streams {
        let s = group.stream_stats(*id).expect("stream running");
        let ideal = u128::from(*bitrate) * (now - *start).as_nanos() / 8_000_000_000;
        println!(
            "{:>12} {:>12} {:>12} {:>8}",
            bitrate, s.bytes, ideal, s.packets
        );
    }
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    println!("{:>9} {:>10} {:>12}", "receiver", "datagrams", "bytes");
    for (i, (_, d, b)) in receivers.iter().enumerate() {
        println!(
            "{:>9} {:>10} {:>12}",
            i,
            d.load(Ordering::Relaxed),
            b.load(Ordering::Relaxed)
        );
    }
    let stats = sender.stats()?;
    println!(
        "sender: {} calls, {} packets, {} bytes",
        stats.calls, stats.packets, stats.bytes_copied
    );
    Ok(())
}
