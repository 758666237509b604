// SPDX-License-Identifier: GPL-2.0

//! StreamGroup with registered buffers and asynchronous calls
//! (`set_async_ring`), against a fake device that reads a call's memory
//! only when it completes the call, as a NIC does: any region rewritten
//! while its call is in flight shows up as wrong bytes.

use std::{
    collections::{HashMap, VecDeque},
    io::{self, Read},
    time::Duration,
};

use mdwrite::{
    Clock, Completion, DestId, Entry, FakeClock, GroupOptions, RegisteredBuffer, StreamConfig,
    StreamGroup, Transmit, WriteOptions, WriteReport,
};

/// The byte at offset `i` of a test stream.
fn pattern(seed: u8, i: u64) -> u8 {
    (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed
}

/// An endless source of `pattern`, read in pieces of at most `step` bytes.
struct Pattern {
    seed: u8,
    pos: u64,
    step: usize,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step);
        for b in &mut buf[..n] {
            *b = pattern(self.seed, self.pos);
            self.pos += 1;
        }
        Ok(n)
    }
}

/// A call the fake device has not sent yet: where its data is.
struct InFlight {
    cookie: u64,
    entries: Vec<(DestId, usize, usize)>,
}

/// A device that queues asynchronous calls, at most `limit` (then
/// `EAGAIN`), and sends one (reading its memory) at each wait.
struct LateDevice {
    limit: usize,
    queue: VecDeque<InFlight>,
    received: HashMap<DestId, Vec<u8>>,
    async_calls: u64,
    sync_calls: u64,
    eagain: u64,
    registered: usize,
    fail_register: bool,
    register_attempts: usize,
}

impl LateDevice {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            queue: VecDeque::new(),
            received: HashMap::new(),
            async_calls: 0,
            sync_calls: 0,
            eagain: 0,
            registered: 0,
            fail_register: false,
            register_attempts: 0,
        }
    }
}

impl Transmit for LateDevice {
    fn send_vectored(
        &mut self,
        entries: &[Entry<'_>],
        _: &WriteOptions,
    ) -> io::Result<WriteReport> {
        self.sync_calls += 1;
        for e in entries {
            self.received
                .entry(e.dest)
                .or_default()
                .extend_from_slice(e.data);
        }
        Ok(WriteReport {
            bytes: entries.iter().map(|e| e.data.len() as u64).sum(),
            packets: entries.len() as u64,
            error: None,
        })
    }

    fn max_payload(&self, _: DestId) -> Option<u16> {
        None
    }

    fn register_buffer(&mut self, len: usize) -> io::Result<RegisteredBuffer> {
        self.register_attempts += 1;
        if self.fail_register {
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        }
        self.registered += 1;
        RegisteredBuffer::unregistered(len)
    }

    unsafe fn send_async(
        &mut self,
        entries: &[Entry<'_>],
        _: &WriteOptions,
        cookie: u64,
    ) -> io::Result<WriteReport> {
        if self.queue.len() >= self.limit {
            self.eagain += 1;
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        self.async_calls += 1;
        self.queue.push_back(InFlight {
            cookie,
            entries: entries
                .iter()
                .map(|e| (e.dest, e.data.as_ptr() as usize, e.data.len()))
                .collect(),
        });
        Ok(WriteReport {
            bytes: entries.iter().map(|e| e.data.len() as u64).sum(),
            packets: entries.len() as u64,
            error: None,
        })
    }

    fn wait_completions(
        &mut self,
        out: &mut Vec<Completion>,
        _: Option<Duration>,
    ) -> io::Result<usize> {
        let Some(call) = self.queue.pop_front() else {
            return Ok(0);
        };
        let mut bytes = 0;
        for (dest, ptr, len) in call.entries {
            // SAFETY: the group keeps every stream's ring alive while it
            // has calls in flight (the sources never end, and the test
            // flushes before dropping the group), and never writes to a
            // region whose call has not completed — which is what this
            // test checks.
            let data = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
            self.received
                .entry(dest)
                .or_default()
                .extend_from_slice(data);
            bytes += len as u64;
        }
        out.push(Completion {
            cookie: call.cookie,
            bytes,
            packets: 0,
            error: None,
            buffers: Vec::new(),
        });
        Ok(1)
    }
}

fn stream(bitrate: u64, dests: &[u32]) -> StreamConfig {
    StreamConfig::new(bitrate, 1316)
        .with_dests(dests.iter().map(|&d| DestId::from_handle(d)).collect())
}

/// Runs two streams for `ticks` ticks, some of them late, then flushes;
/// returns the group's per-stream byte counts.
fn run(dev: &mut LateDevice, slots: usize, ticks: usize) -> Vec<u64> {
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    group.set_async_ring(slots).unwrap();
    let a = group
        .add_stream(
            stream(3_000_000, &[1, 2]),
            Box::new(Pattern {
                seed: 1,
                pos: 0,
                step: 5000,
            }),
        )
        .unwrap();
    let b = group
        .add_stream(
            stream(12_000_000, &[3]),
            Box::new(Pattern {
                seed: 2,
                pos: 0,
                step: 777,
            }),
        )
        .unwrap();
    for i in 0..ticks {
        if i % 17 == 5 {
            // Late: the next tick sends more.
            clock.advance(Duration::from_millis(37));
        }
        group.tick_with(dev).unwrap();
    }
    group.flush_with(dev).unwrap();
    assert!(dev.queue.is_empty());
    let sa = group.stream_stats(a).unwrap();
    let sb = group.stream_stats(b).unwrap();
    assert!(group.async_ring_error().is_none() || dev.fail_register);
    vec![sa.bytes, sb.bytes]
}

fn check(dev: &LateDevice, bytes: &[u64]) {
    for (dest, seed, n) in [(1, 1, bytes[0]), (2, 1, bytes[0]), (3, 2, bytes[1])] {
        let got = &dev.received[&DestId::from_handle(dest)];
        assert_eq!(got.len() as u64, n, "destination {dest}: byte count");
        if let Some(i) = (0..n).find(|&i| got[i as usize] != pattern(seed, i)) {
            panic!("destination {dest}: byte {i} was rewritten before its call completed");
        }
    }
}

#[test]
fn regions_are_rewritten_only_after_their_completion() {
    for slots in [1, 2, 4] {
        let mut dev = LateDevice::new(usize::MAX);
        let bytes = run(&mut dev, slots, 300);
        check(&dev, &bytes);
        assert_eq!(dev.sync_calls, 0, "{slots} slots: every tick asynchronous");
        assert!(dev.async_calls >= 290, "{slots} slots: {}", dev.async_calls);
        assert_eq!(dev.registered, 2, "one ring per stream");
        assert!(bytes[1] > 12_000_000 / 8, "{bytes:?}");
    }
}

#[test]
fn back_pressure_waits_for_completions_and_retries() {
    // Fewer calls may be in flight than there are regions: EAGAIN.
    let mut dev = LateDevice::new(1);
    let bytes = run(&mut dev, 4, 200);
    check(&dev, &bytes);
    assert!(dev.eagain > 100, "EAGAIN {} times", dev.eagain);
    assert_eq!(dev.sync_calls, 0);
}

#[test]
fn without_registered_memory_ticks_are_synchronous() {
    let mut dev = LateDevice::new(usize::MAX);
    dev.fail_register = true;
    let clock = FakeClock::new();
    let mut group = StreamGroup::new(clock.clone(), GroupOptions::default());
    group.set_async_ring(2).unwrap();
    let s = group
        .add_stream(
            stream(3_000_000, &[1]),
            Box::new(Pattern {
                seed: 1,
                pos: 0,
                step: 100,
            }),
        )
        .unwrap();
    for _ in 0..50 {
        group.tick_with(&mut dev).unwrap();
    }
    let e = group.async_ring_error().expect("the registration error");
    assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS));
    assert_eq!(dev.register_attempts, 1, "tried once, not at every tick");
    assert_eq!(dev.async_calls, 0);
    assert!(dev.sync_calls > 40);
    let n = group.stream_stats(s).unwrap().bytes;
    let got = &dev.received[&DestId::from_handle(1)];
    assert_eq!(got.len() as u64, n);
    assert!((0..n).all(|i| got[i as usize] == pattern(1, i)));
    assert!(clock.now() > Duration::ZERO);
}

#[test]
fn the_ring_is_set_before_streams() {
    let mut group = StreamGroup::new(FakeClock::new(), GroupOptions::default());
    group
        .add_stream(stream(1_000_000, &[1]), Box::new(io::empty()))
        .unwrap();
    let e = group.set_async_ring(4).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
}
