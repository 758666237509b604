// SPDX-License-Identifier: GPL-2.0

//! The devices of a call: each looked up once per call and held until the
//! call's packets are queued (never across its completion wait), with a
//! stamp of its state, so that a destination checks that what it worked
//! out for its device still holds with one comparison. The rooms the
//! devices were held in are kept for the next call's (no allocation per
//! call).

use kernel::{alloc::KVec, prelude::*};

use crate::{
    ffi::MdwDevInfo,
    net::{DevEvents, DevRoom, NetDevice, NetNs},
    vec,
};

/// Most device states a file remembers; past it, it forgets them all (its
/// destinations then work out their devices' needs again, once).
const SEEN_MAX: usize = 64;

/// Most rooms for held devices a file keeps between calls.
const ROOMS_MAX: usize = 16;

/// A device state a file has seen.
struct Seen {
    info: MdwDevInfo,
    stamp: u64,
    /// The device event count when `info` was read.
    events: u64,
}

/// A file's calls' devices. Kept with the file's other call arrays.
pub(crate) struct CallDevs {
    /// The devices of the current call.
    devs: KVec<NetDevice>,
    /// The stamp of each device's state, for `devs`.
    stamps: KVec<u64>,
    /// Rooms of devices let go of, for the next devices held.
    rooms: KVec<DevRoom>,
    /// The last state of every device the file's calls used, its stamp
    /// and the device event count ([`DevEvents`]) it was read at. A state
    /// gets a new stamp, never used before in this file, whenever it
    /// differs in anything from the one seen before; while the count does
    /// not move, it is not read again (but for the carrier).
    seen: KVec<Seen>,
    /// The last stamp given.
    last: u64,
}

impl Default for CallDevs {
    fn default() -> Self {
        Self {
            devs: KVec::new(),
            stamps: KVec::new(),
            rooms: KVec::new(),
            seen: KVec::new(),
            last: 0,
        }
    }
}

impl CallDevs {
    /// The device `ifindex` of `net` in this call, looked up (and held)
    /// on the call's first use of it: its index in [`CallDevs::devices`]
    /// and the stamp of its state.
    #[inline(always)]
    pub(crate) fn get(&mut self, net: &NetNs, ifindex: i32) -> Result<(u32, u64)> {
        for (i, (d, &stamp)) in self.devs.iter().zip(self.stamps.iter()).enumerate() {
            if d.info().ifindex as i32 == ifindex {
                return Ok((i as u32, stamp));
            }
        }
        self.look_up(net, ifindex)
    }

    #[inline(never)]
    fn look_up(&mut self, net: &NetNs, ifindex: i32) -> Result<(u32, u64)> {
        self.devs.reserve(1, GFP_KERNEL_ACCOUNT)?;
        self.stamps.reserve(1, GFP_KERNEL_ACCOUNT)?;
        // Read before the device's state, so that an event while it is
        // read makes the next call read it again.
        let events = DevEvents::now();
        let seen = self
            .seen
            .iter()
            .position(|s| s.info.ifindex as i32 == ifindex);
        let known = seen
            .and_then(|i| self.seen.get(i))
            .filter(|s| s.events == events);
        let known_stamp = known.map(|s| s.stamp);
        let known = known.map(|s| &s.info);
        let dev = match vec::pop(&mut self.rooms) {
            Some(room) => room.hold(net, ifindex, known).map_err(|(e, room)| {
                // Cannot fail: it came from there.
                let _ = vec::push_reserved(&mut self.rooms, room);
                e
            })?,
            None => net.device(ifindex, known)?,
        };
        let stamp = match known_stamp {
            // Its state as seen (`state_of` found it up, else read it).
            Some(stamp) if dev.info().up => stamp,
            _ => self.stamp(seen, dev.info(), events)?,
        };
        // Neither can fail: room was reserved.
        vec::push_reserved(&mut self.devs, dev)?;
        vec::push_reserved(&mut self.stamps, stamp)?;
        Ok(((self.devs.len() - 1) as u32, stamp))
    }

    /// The stamp of a device in state `info`, read at device event count
    /// `events`; `at`: where the device's last state is in `seen`.
    fn stamp(&mut self, at: Option<usize>, info: &MdwDevInfo, events: u64) -> Result<u64> {
        if let Some(seen) = at.and_then(|i| self.seen.get_mut(i)) {
            if seen.info != *info {
                self.last += 1;
                seen.info = *info;
                seen.stamp = self.last;
            }
            seen.events = events;
            return Ok(seen.stamp);
        }
        if self.seen.len() >= SEEN_MAX {
            vec::clear(&mut self.seen);
        }
        self.last += 1;
        self.seen.push(
            Seen {
                info: *info,
                stamp: self.last,
                events,
            },
            GFP_KERNEL_ACCOUNT,
        )?;
        Ok(self.last)
    }

    /// The index of each device of the current call and the stamp of its
    /// state, in the order the call first used them.
    pub(crate) fn states(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.devs
            .iter()
            .zip(self.stamps.iter())
            .map(|(d, &stamp)| (d.info().ifindex as i32, stamp))
    }

    /// The devices of the current call.
    pub(crate) fn devices(&self) -> &[NetDevice] {
        &self.devs
    }

    /// Lets go of the current call's devices, keeping their rooms.
    pub(crate) fn clear(&mut self) {
        while let Some(dev) = vec::pop(&mut self.devs) {
            let room = dev.into_room();
            if self.rooms.len() < ROOMS_MAX {
                // A failed reservation frees the room (`room` dropped).
                if self.rooms.reserve(1, GFP_KERNEL_ACCOUNT).is_ok() {
                    let _ = vec::push_reserved(&mut self.rooms, room);
                }
            }
        }
        vec::clear(&mut self.stamps);
    }
}
