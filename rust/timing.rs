// SPDX-License-Identifier: GPL-2.0

//! A call's timing: unpaced, or paced (`MDW_WRITE_PACE`): the window the
//! caller gave and each packet's departure, as the send loops ask for it.

use kernel::prelude::*;

use crate::{
    abi::{MdwWritev, MDW_MAX_PACE_AHEAD, MDW_MAX_PACE_WINDOW, MDW_WRITE_PACE, MDW_WRITE_QDISC},
    common::pace::{Departures, EntryPace, PaceError, Window},
};

/// The clocks of a paced call's window (`pace_clock`): `CLOCK_MONOTONIC`
/// and `CLOCK_TAI` of `include/uapi/linux/time.h`.
const CLOCK_MONOTONIC: u32 = 1;
const CLOCK_TAI: u32 = 11;

/// A paced call's timing (`MDW_WRITE_PACE`).
#[derive(Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) window: Window,
    /// The window is on `CLOCK_TAI` (else `CLOCK_MONOTONIC`).
    pub(crate) tai: bool,
}

impl Pace {
    /// The timing `req` asks for, checked against the time now: `None`
    /// for an unpaced call.
    pub(crate) fn of(req: &MdwWritev) -> Result<Option<Self>> {
        if req.flags & MDW_WRITE_PACE == 0 {
            return Ok(None);
        }
        let qdisc = req.flags & MDW_WRITE_QDISC != 0;
        // The module's own release (direct path) runs on CLOCK_MONOTONIC;
        // CLOCK_TAI times are for etf, through the qdisc.
        let tai = match (req.pace_clock, qdisc) {
            (CLOCK_MONOTONIC, _) => false,
            (CLOCK_TAI, true) => true,
            _ => return Err(EINVAL),
        };
        let now = crate::net::clock_ns(tai);
        let window = Window::new(
            req.pace_start,
            u64::from(req.pace_window),
            now,
            u64::from(MDW_MAX_PACE_WINDOW),
            MDW_MAX_PACE_AHEAD,
        )
        .map_err(pace_errno)?;
        Ok(Some(Self { window, tai }))
    }
}

/// The errno of a [`PaceError`].
pub(crate) fn pace_errno(e: PaceError) -> Error {
    match e {
        PaceError::Empty => EINVAL,
        PaceError::OutOfRange => ERANGE,
        PaceError::Ended => crate::errno::etime(),
    }
}

/// How a call times its packets: not at all ([`Unpaced`]) or by a paced
/// call's window ([`Pace`]). The send loop is compiled once for each, so an
/// unpaced call carries no pacing code and a paced one tests nothing per
/// packet to know that it is paced.
pub(crate) trait Timing: Copy {
    /// Starts `d`, a slot's departures, at its first turn, when all of its
    /// `packets` are left.
    fn start(self, d: &mut Departures, packets: u64);
    /// Enters a slot's next entry, timed by itself with `own`.
    fn enter(self, d: &mut Departures, own: Option<EntryPace>);
    /// The departure of a slot's next packet, left for [`Timing::advance`].
    fn peek(self, d: &Departures) -> Option<Departure>;
    /// Moves past a slot's next packet.
    fn advance(self, d: &mut Departures);
    /// The departure of a slot's next packet, taken.
    #[inline(always)]
    fn take(self, d: &mut Departures) -> Option<Departure> {
        let t = self.peek(d);
        self.advance(d);
        t
    }
}

/// The timing of an unpaced call: none.
#[derive(Clone, Copy)]
pub(crate) struct Unpaced;

impl Timing for Unpaced {
    #[inline(always)]
    fn start(self, _: &mut Departures, _: u64) {}
    #[inline(always)]
    fn enter(self, _: &mut Departures, _: Option<EntryPace>) {}
    #[inline(always)]
    fn peek(self, _: &Departures) -> Option<Departure> {
        None
    }
    #[inline(always)]
    fn advance(self, _: &mut Departures) {}
}

impl Timing for &Pace {
    #[inline(always)]
    fn start(self, d: &mut Departures, packets: u64) {
        d.start_once(&self.window, packets);
    }
    #[inline(always)]
    fn enter(self, d: &mut Departures, own: Option<EntryPace>) {
        d.enter(&self.window, own);
    }
    #[inline(always)]
    fn peek(self, d: &Departures) -> Option<Departure> {
        Some(Departure {
            ns: d.peek(),
            tai: self.tai,
        })
    }
    #[inline(always)]
    fn advance(self, d: &mut Departures) {
        d.take();
    }
}

/// A packet's departure time, in a paced call.
#[derive(Clone, Copy)]
pub(crate) struct Departure {
    /// Nanoseconds on `CLOCK_TAI` with `tai`, else on `CLOCK_MONOTONIC`.
    pub(crate) ns: u64,
    pub(crate) tai: bool,
}
