// SPDX-License-Identifier: GPL-2.0

//! Pacing clocks: the real monotonic clock and a fake one for tests.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use rustix::{
    thread::clock_nanosleep_absolute,
    time::{clock_gettime, ClockId, Timespec},
};

/// A monotonic clock that paces a [`StreamGroup`](crate::StreamGroup).
///
/// Times are durations since an arbitrary, fixed origin of the clock.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Duration;
    /// Returns once [`Clock::now`] is at least `t`; at once if it already is.
    fn sleep_until(&self, t: Duration);
}

/// The system's monotonic clock, `CLOCK_MONOTONIC` (time since boot, not
/// counting suspend); [`Clock::sleep_until`] is an absolute
/// `clock_nanosleep`, so sleeps do not add up errors.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        let ts = clock_gettime(ClockId::Monotonic);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    fn sleep_until(&self, t: Duration) {
        let request = Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        };
        // EINTR (a signal) wakes early: sleep again until the time.
        while clock_nanosleep_absolute(ClockId::Monotonic, &request).is_err() {
            if self.now() >= t {
                return;
            }
        }
    }
}

/// A clock that only moves when told to: by [`FakeClock::advance`],
/// [`FakeClock::set`], or by [`Clock::sleep_until`], which jumps straight to
/// the wake-up time instead of waiting.
///
/// Clones share the same time, so a test can keep one clone and hand the
/// other to a [`StreamGroup`](crate::StreamGroup).
///
/// ```
/// use mdwrite::{Clock, FakeClock};
/// use std::time::Duration;
///
/// let clock = FakeClock::new();
/// let group_clock = clock.clone();
/// group_clock.sleep_until(Duration::from_millis(5));
/// assert_eq!(clock.now(), Duration::from_millis(5));
/// clock.advance(Duration::from_millis(1));
/// assert_eq!(group_clock.now(), Duration::from_millis(6));
/// ```
#[derive(Clone, Debug, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A fake clock at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(nanos(d), Ordering::SeqCst);
    }

    /// Sets the time to `t`; a fake clock may be set backwards, a real one
    /// never goes backwards.
    pub fn set(&self, t: Duration) {
        self.nanos.store(nanos(t), Ordering::SeqCst);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, t: Duration) {
        self.nanos.fetch_max(nanos(t), Ordering::SeqCst);
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn sleep_until(&self, t: Duration) {
        (**self).sleep_until(t)
    }
}
