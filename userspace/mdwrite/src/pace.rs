// SPDX-License-Identifier: GPL-2.0

//! Paced calls: a window for the call, optional timing per entry, and the
//! departure times they give each packet (the module's own rules, from
//! `mdwrite-common`), for the paths that release packets in user space.

use std::{io, time::Duration};

use mdwrite_common::pace::{Departures, EntryPace as AbiEntryPace, PaceError, Window};
use mdwrite_uapi::{MDW_MAX_PACE_AHEAD, MDW_MAX_PACE_WINDOW};

use crate::{Clock, DestId, Entry};

/// The clock a [`PaceWindow`] is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PaceClock {
    /// `CLOCK_MONOTONIC`: the module's own release and `fq`.
    #[default]
    Monotonic,
    /// `CLOCK_TAI`: through the qdisc only, for `etf` (launch-time offload).
    Tai,
}

impl PaceClock {
    /// The clock id of the ABI (`pace_clock`).
    pub fn id(self) -> u32 {
        match self {
            PaceClock::Monotonic => libc::CLOCK_MONOTONIC as u32,
            PaceClock::Tai => libc::CLOCK_TAI as u32,
        }
    }

    /// The current time on this clock.
    pub fn now(self) -> Duration {
        use rustix::time::{clock_gettime, clock_gettime_dynamic, ClockId, DynamicClockId};
        let ts = match self {
            PaceClock::Monotonic => clock_gettime(ClockId::Monotonic),
            // CLOCK_TAI exists since Linux 3.10; on failure, no time.
            PaceClock::Tai => clock_gettime_dynamic(DynamicClockId::Tai).unwrap_or_default(),
        };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

/// The window of a paced call (`MDW_WRITE_PACE`): every packet of the call
/// departs in `[start, start + length)` on `clock`.
///
/// ```
/// use mdwrite::{PaceClock, PaceWindow};
/// use std::time::Duration;
/// let w = PaceWindow::new(Duration::from_secs(10), Duration::from_millis(20));
/// assert_eq!(w.clock, PaceClock::Monotonic);
/// assert_eq!(w.with_clock(PaceClock::Tai).clock, PaceClock::Tai);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaceWindow {
    /// The window's start, time since the clock's origin.
    pub start: Duration,
    /// Its length, at most 1 s (`MDW_MAX_PACE_WINDOW`).
    pub length: Duration,
    /// The clock of `start`.
    pub clock: PaceClock,
}

impl PaceWindow {
    /// `length` from `start` on `CLOCK_MONOTONIC`.
    pub fn new(start: Duration, length: Duration) -> Self {
        Self {
            start,
            length,
            clock: PaceClock::Monotonic,
        }
    }

    /// On `clock`.
    pub fn with_clock(mut self, clock: PaceClock) -> Self {
        self.clock = clock;
        self
    }

    /// The window in the ABI's terms: start and length in nanoseconds
    /// (`ERANGE` for a length that does not fit the ABI's 32 bits).
    pub(crate) fn abi(&self) -> io::Result<(u64, u32)> {
        let start = u64::try_from(self.start.as_nanos()).map_err(|_| errno(libc::ERANGE))?;
        let len = u32::try_from(self.length.as_nanos()).map_err(|_| errno(libc::ERANGE))?;
        Ok((start, len))
    }

    /// The window checked as the module checks it, at `now` on its clock.
    pub(crate) fn check(&self, now: Duration) -> io::Result<Window> {
        let (start, len) = self.abi()?;
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        Window::new(
            start,
            u64::from(len),
            now,
            u64::from(MDW_MAX_PACE_WINDOW),
            MDW_MAX_PACE_AHEAD,
        )
        .map_err(pace_errno)
    }
}

/// An entry's own timing inside its call's window (`MDW_ENTRY_PACE`): its
/// first packet departs `offset` after the window's start, the others
/// `gap` apart (a gap of zero spreads them evenly to the window's end).
/// Without it, a destination's packets are spread evenly over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryPace {
    /// From the window's start to the entry's first packet.
    pub offset: Duration,
    /// Between its packets; zero spreads them to the window's end.
    pub gap: Duration,
}

impl EntryPace {
    /// The first packet `offset` into the window, then one every `gap`.
    pub fn new(offset: Duration, gap: Duration) -> Self {
        Self { offset, gap }
    }

    /// In the ABI's 32-bit nanoseconds; a value that does not fit becomes
    /// `u32::MAX`, which every window refuses (`ERANGE`).
    pub(crate) fn abi(&self) -> (u32, u32) {
        let ns = |d: Duration| u32::try_from(d.as_nanos()).unwrap_or(u32::MAX);
        (ns(self.offset), ns(self.gap))
    }
}

/// How a [`StreamGroup`](crate::StreamGroup) spreads each stream's packets
/// over its call interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pace {
    /// [`Pace::Kernel`] when the sender can release paced calls itself
    /// (the module with `MDW_FEAT_PACE`), else [`Pace::User`].
    #[default]
    Auto,
    /// One asynchronous paced call per interval (`MDW_WRITE_PACE`); the
    /// module releases every packet at its time. Needs `MDW_FEAT_PACE`.
    Kernel,
    /// One paced call per interval through the qdisc: the module stamps
    /// each packet (`skb->tstamp`), the fallback sends it with
    /// `SCM_TXTIME` (`SO_TXTIME`, `CLOCK_MONOTONIC`); `fq` on the device
    /// holds it until then. Without a time-based qdisc the packets leave
    /// at once.
    Txtime,
    /// The group sleeps between small batches, each sent when its packets
    /// are due: any backend, at the cost of a system call per batch.
    User,
    /// No pacing: one call per tick with what every stream is due, sent as
    /// fast as the device takes it (the interval follows the slowest
    /// stream's packet time, see [`StreamGroup::interval`](crate::StreamGroup::interval)).
    Off,
}

/// One packet's slice of a call: the entry it belongs to, where in its
/// data, and when it departs (nanoseconds on the window's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Departure {
    pub(crate) at: u64,
    pub(crate) entry: usize,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

/// The departure time of every packet of a paced call, in departure order
/// (a destination's packets keep their order): the module's rules
/// (`rust/common/pace.rs`), each entry cut into packets of its
/// destination's largest payload (`payload`).
pub(crate) fn departures(
    entries: &[Entry<'_>],
    window: &Window,
    payload: &dyn Fn(DestId) -> Option<u16>,
) -> io::Result<Vec<Departure>> {
    let per = |d: DestId| usize::from(payload(d).unwrap_or(u16::MAX)).max(1);
    // Packets of each destination, in order of first appearance.
    let mut dests: Vec<(DestId, u64)> = Vec::new();
    for e in entries {
        let n = e.data.len().div_ceil(per(e.dest)) as u64;
        match dests.iter_mut().find(|(d, _)| *d == e.dest) {
            Some((_, p)) => *p += n,
            None => dests.push((e.dest, n)),
        }
    }
    let mut out = Vec::new();
    for &(dest, packets) in &dests {
        let mut times = Departures::new(window, packets);
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| e.dest == dest) {
            let size = per(dest);
            let n = e.data.len().div_ceil(size) as u64;
            let own = match e.pace {
                Some(p) => {
                    let (offset, gap) = p.abi();
                    window
                        .entry_gap(u64::from(offset), u64::from(gap), n)
                        .map_err(pace_errno)?;
                    Some(AbiEntryPace { offset, gap })
                }
                None => None,
            };
            times.enter(window, own);
            if let Some(AbiEntryPace { offset, gap: 0 }) = own {
                // Spread from the offset to the window's end: the module's
                // gap for it.
                let gap = window
                    .entry_gap(u64::from(offset), 0, n)
                    .map_err(pace_errno)?;
                let gap = u32::try_from(gap).unwrap_or(u32::MAX);
                times.enter(window, Some(AbiEntryPace { offset, gap }));
            }
            let mut at = 0;
            while at < e.data.len() {
                let len = size.min(e.data.len() - at);
                out.push(Departure {
                    at: times.take(),
                    entry: i,
                    offset: at,
                    len,
                });
                at += len;
            }
        }
    }
    out.sort_by_key(|d| d.at);
    Ok(out)
}

/// Releases a paced call from user space: sleeps on `clock` until the
/// next packet is due, then sends, with one unpaced call of `send`, every
/// destination's next packet if it is due by then plus `slack`. Each
/// packet is its own entry (the first packet of an entry keeps its RTP
/// timestamp; the others continue from it, as in one call).
///
/// A packet late (the process was not scheduled in time) leaves at least
/// half its planned gap after its destination's previous one, so a
/// destination catches up at twice its rate rather than in a burst.
/// Returns the summed report; stops at the first call that failed or
/// stopped early.
pub(crate) fn release_user<C: Clock + ?Sized>(
    entries: &[Entry<'_>],
    window: &Window,
    payload: &dyn Fn(DestId) -> Option<u16>,
    clock: &C,
    slack: Duration,
    send: &mut dyn FnMut(&[Entry<'_>]) -> io::Result<crate::WriteReport>,
) -> io::Result<crate::WriteReport> {
    let plan = departures(entries, window, payload)?;
    let mut total = crate::WriteReport {
        bytes: 0,
        packets: 0,
        error: None,
    };
    let slack = u64::try_from(slack.as_nanos()).unwrap_or(u64::MAX);
    // Each destination's packets in order, with the least gap after the
    // one before (half the planned gap).
    let mut dests: Vec<DestId> = Vec::new();
    let mut queues: Vec<std::collections::VecDeque<(usize, u64)>> = Vec::new();
    let mut last_at: Vec<Option<u64>> = Vec::new();
    for (i, d) in plan.iter().enumerate() {
        let dest = entries[d.entry].dest;
        let slot = match dests.iter().position(|&x| x == dest) {
            Some(s) => s,
            None => {
                dests.push(dest);
                queues.push(Default::default());
                last_at.push(None);
                dests.len() - 1
            }
        };
        let least = last_at[slot].map_or(0, |prev| d.at.saturating_sub(prev) / 2);
        last_at[slot] = Some(d.at);
        queues[slot].push_back((i, least));
    }
    let mut sent_at: Vec<Option<u64>> = vec![None; dests.len()];
    let eligible = |slot: usize, sent_at: &[Option<u64>], q: &(usize, u64)| {
        let at = plan[q.0].at;
        sent_at[slot].map_or(at, |s| at.max(s.saturating_add(q.1)))
    };
    let mut batch: Vec<Entry<'_>> = Vec::new();
    let mut indexes = Vec::new();
    loop {
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(slot, q)| q.front().map(|h| eligible(slot, &sent_at, h)))
            .min();
        let Some(next) = next else { break };
        clock.sleep_until(Duration::from_nanos(next));
        let now = u64::try_from(clock.now().as_nanos()).unwrap_or(u64::MAX);
        let due = now.saturating_add(slack);
        batch.clear();
        indexes.clear();
        for slot in 0..queues.len() {
            let Some(&head) = queues[slot].front() else {
                continue;
            };
            if eligible(slot, &sent_at, &head) > due {
                continue;
            }
            queues[slot].pop_front();
            sent_at[slot] = Some(now);
            let d = plan[head.0];
            let e = &entries[d.entry];
            batch.push(Entry {
                dest: e.dest,
                data: &e.data[d.offset..d.offset + d.len],
                rtp_timestamp: if d.offset == 0 { e.rtp_timestamp } else { None },
                pace: None,
                group: None,
            });
            indexes.push(d.entry);
        }
        if batch.is_empty() {
            continue;
        }
        match send(&batch) {
            Ok(r) => {
                total.bytes += r.bytes;
                total.packets += r.packets;
                if let Some((e, index)) = r.error {
                    total.error = Some((e, indexes[index.min(indexes.len() - 1)]));
                    return Ok(total);
                }
            }
            Err(e) if total.packets == 0 => return Err(e),
            Err(e) => {
                total.error = Some((e, indexes[0]));
                return Ok(total);
            }
        }
    }
    Ok(total)
}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

/// The module's errno for a refused window or entry timing.
fn pace_errno(e: PaceError) -> io::Error {
    errno(match e {
        PaceError::Empty => libc::EINVAL,
        PaceError::OutOfRange => libc::ERANGE,
        PaceError::Ended => libc::ETIME,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeClock;

    const MS: u64 = 1_000_000;

    fn window(start: u64, len: u64) -> Window {
        Window::new(start, len, start, 1_000 * MS, 1_000 * MS).unwrap()
    }

    #[test]
    fn plain_entries_spread_over_the_window_own_timing_kept() {
        let data = vec![0u8; 1000];
        let a = DestId::from_handle(1);
        let b = DestId::from_handle(2);
        let entries = [
            Entry::new(a, &data), // 10 packets of 100
            Entry::new(b, &data[..300]).with_pace(EntryPace::new(
                Duration::from_millis(2),
                Duration::from_millis(1),
            )),
        ];
        let d = departures(&entries, &window(100 * MS, 10 * MS), &|_| Some(100)).unwrap();
        let at = |e: usize| -> Vec<u64> {
            d.iter()
                .filter(|x| x.entry == e)
                .map(|x| x.at - 100 * MS)
                .collect()
        };
        assert_eq!(at(0), (0..10).map(|k| k * MS).collect::<Vec<_>>());
        assert_eq!(at(1), [2 * MS, 3 * MS, 4 * MS]);
        assert!(d.windows(2).all(|w| w[0].at <= w[1].at));
        // An entry whose last packet would leave after the window: ERANGE.
        let late = [Entry::new(b, &data).with_pace(EntryPace::new(
            Duration::from_millis(5),
            Duration::from_millis(1),
        ))];
        let e = departures(&late, &window(0, 10 * MS), &|_| Some(100)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ERANGE));
    }

    #[test]
    fn user_release_sends_each_packet_at_its_time() {
        let data = vec![7u8; 450];
        let a = DestId::from_handle(1);
        let clock = FakeClock::new();
        clock.set(Duration::from_millis(50));
        let entries = [Entry::new(a, &data).with_rtp_timestamp(9)];
        let mut sent = Vec::new();
        let r = release_user(
            &entries,
            &window(50 * MS, 20 * MS),
            &|_| Some(100),
            &clock,
            Duration::from_micros(10),
            &mut |call: &[Entry<'_>]| {
                sent.push((clock.now(), call.len(), call[0].rtp_timestamp));
                let bytes: usize = call.iter().map(|e| e.data.len()).sum();
                Ok(crate::WriteReport {
                    bytes: bytes as u64,
                    packets: call.len() as u64,
                    error: None,
                })
            },
        )
        .unwrap();
        assert_eq!((r.packets, r.bytes), (5, 450));
        let times: Vec<Duration> = sent.iter().map(|s| s.0).collect();
        let ms = Duration::from_millis;
        assert_eq!(times, [ms(50), ms(54), ms(58), ms(62), ms(66)]);
        assert_eq!(sent[0].2, Some(9));
        assert!(sent[1..].iter().all(|s| s.1 == 1 && s.2.is_none()));
    }

    #[test]
    fn late_packets_catch_up_at_twice_the_rate_not_in_a_burst() {
        let data = vec![7u8; 1000];
        let a = DestId::from_handle(1);
        let clock = FakeClock::new();
        // 10 packets 2 ms apart from 100 ms; the release starts 5 ms late.
        clock.set(Duration::from_millis(105));
        let entries = [Entry::new(a, &data)];
        let mut sent = Vec::new();
        release_user(
            &entries,
            &window(100 * MS, 20 * MS),
            &|_| Some(100),
            &clock,
            Duration::from_micros(10),
            &mut |call: &[Entry<'_>]| {
                sent.push(clock.now());
                Ok(crate::WriteReport {
                    bytes: 100,
                    packets: call.len() as u64,
                    error: None,
                })
            },
        )
        .unwrap();
        let ms = |n: u64| Duration::from_micros(n * 1000);
        // 100, 102 and 104 were due: one now, then 1 ms apart (half the
        // gap) until back on time at 110.
        let want: Vec<Duration> = [105, 106, 107, 108, 109, 110, 112, 114, 116, 118]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(sent, want);
    }
}
