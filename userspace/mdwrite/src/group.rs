// SPDX-License-Identifier: GPL-2.0

//! [`StreamGroup`]: many bitrate-paced streams sent with one vectored call
//! per tick.

use std::{io, time::Duration};

use crate::{Clock, DestId, MonotonicClock, Sender, WriteOptions, WriteReport};

/// One stream of a [`StreamGroup`]: its bitrate, packet payload and
/// destinations.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Bits of payload per second, non-zero.
    pub bitrate: u64,
    /// Bytes of data per packet, for example 1316 (7 MPEG-TS packets);
    /// chunks are whole multiples of it, except a source's last bytes.
    pub payload_size: usize,
    /// Where the stream goes; each gets the same bytes.
    pub dests: Vec<DestId>,
    /// With `Some(hz)`, entries carry an RTP timestamp from the pacing
    /// clock at `hz` (90 000 for video, RFC 3551).
    pub rtp_clock_hz: Option<u32>,
}

/// Names a stream of a [`StreamGroup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u64);

/// How a [`StreamGroup`] paces and sends.
#[derive(Clone, Copy, Debug)]
pub struct GroupOptions {
    /// The longest tick interval: how long data may wait before it is sent.
    pub latency: Duration,
    /// The most a stream sends in one tick after the group fell behind,
    /// in time of its bitrate; beyond it the stream's schedule slips.
    pub buffer: Duration,
    /// How each tick's call is sent.
    pub write: WriteOptions,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            buffer: Duration::from_millis(200),
            write: WriteOptions::default(),
        }
    }
}

/// A stream's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes of the source sent (once, whatever the number of destinations).
    pub bytes: u64,
    /// Packets of the source sent (per destination).
    pub packets: u64,
    /// The source reached its end (or failed, see `error`).
    pub ended: bool,
    /// Time the stream's schedule was moved back because the group fell
    /// behind by more than [`GroupOptions::buffer`].
    pub slipped: Duration,
    /// Why the source failed, if it did.
    pub error: Option<String>,
}

/// What one [`StreamGroup::tick`] did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// The time of the tick on the group's clock.
    pub at: Duration,
    /// How late the tick ran after its scheduled time.
    pub late: Duration,
    /// Entries sent.
    pub entries: usize,
    /// What the call(s) sent: payload bytes and packets over all
    /// destinations, and an error that stopped a call early.
    pub write: Option<WriteReport>,
    /// Streams whose source ended in this tick; they are removed.
    pub ended: Vec<(StreamId, StreamStats)>,
}

/// Many streams, each a source of bytes at a bitrate sent to some
/// destinations, paced on one clock; see the crate documentation.
pub struct StreamGroup<C: Clock = MonotonicClock> {
    clock: C,
    opts: GroupOptions,
}

impl<C: Clock> StreamGroup<C> {
    /// An empty group on `clock`.
    pub fn new(clock: C, opts: GroupOptions) -> Self {
        Self { clock, opts }
    }

    /// Adds a stream that starts now, reading from `source`.
    pub fn add_stream(
        &mut self,
        cfg: StreamConfig,
        source: Box<dyn io::Read + Send>,
    ) -> io::Result<StreamId> {
        let _ = (cfg, source, &self.clock, &self.opts);
        todo!()
    }

    /// Removes a stream; its counters, or `None` if there is no such stream.
    pub fn remove_stream(&mut self, id: StreamId) -> Option<StreamStats> {
        let _ = id;
        todo!()
    }

    /// The tick interval.
    pub fn interval(&self) -> Duration {
        todo!()
    }

    /// Waits for the next tick and sends every stream's due data in one
    /// vectored call.
    pub fn tick(&mut self, sender: &mut Sender) -> io::Result<TickReport> {
        let _ = sender;
        todo!()
    }

    /// A stream's counters.
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        let _ = id;
        todo!()
    }

    /// Whether no stream is left.
    pub fn is_empty(&self) -> bool {
        todo!()
    }
}
