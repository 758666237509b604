// SPDX-License-Identifier: GPL-2.0

//! Fan-outs as destination groups: a run of entries with the same data
//! ([`WriteOptions::with_fanout`](crate::WriteOptions::with_fanout)) goes to
//! a module with `MDW_FEAT_GROUP` as one group entry (`MDW_ENTRY_GROUP`),
//! the group made once per set of destinations and kept for the next calls:
//! the module then checks one entry per fan-out, however many destinations
//! it has, and a repeated call copies one `MdwRepeat` for it.

use std::{
    collections::HashMap,
    io,
    os::fd::AsFd,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use mdwrite_uapi::{MdwEntry, MDW_ENTRY_GROUP, MDW_ENTRY_SAME};

use crate::{sys, write::groupable, Entry};

/// The most groups a device keeps for fan-outs; the least recently used
/// goes first.
const CACHED_GROUPS: usize = 64;

/// The groups made for fan-outs, by their destinations' handles, with the
/// call that last used each.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    by_dests: HashMap<Vec<u32>, (u32, u64)>,
    calls: u64,
    /// The last call's groups, in its order: a call with the same
    /// fan-outs (a sender's steady state) finds them here by comparing
    /// slices, without hashing.
    last: Vec<(Vec<u32>, u32)>,
}

/// The group cache of a device, behind a lock a call holds for reading
/// from the moment it names its groups until the module has read its
/// entries: a group is removed (a destination of it removed, or the
/// cache full) only under the lock held for writing, so no call names a
/// group whose handle may meanwhile name another group.
#[derive(Debug, Default)]
pub(crate) struct GroupCache(RwLock<Groups>);

impl GroupCache {
    fn read(&self) -> RwLockReadGuard<'_, Groups> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Groups> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `raw` (the ABI form of `entries`, fan-outs marked `MDW_ENTRY_SAME`)
    /// with each fan-out that can be one ([`groupable`]) as one group
    /// entry, the groups made on `fd` if need be; with, for each entry of
    /// the result, the index of its entry in `entries`. `None` when no
    /// fan-out became a group entry (`raw` is then as it was). The guard
    /// returned must be held until the call's entries have been read.
    pub(crate) fn collapse<'a>(
        &'a self,
        fd: impl AsFd,
        raw: &[MdwEntry],
        entries: &[Entry<'_>],
    ) -> Option<(Vec<MdwEntry>, Vec<usize>, RwLockReadGuard<'a, Groups>)> {
        let runs = group_runs(raw, entries);
        if runs.is_empty() {
            return None;
        }
        let handles = |r: &std::ops::Range<usize>| raw[r.clone()].iter().map(|e| e.dest);
        let same_as_last = |g: &Groups| {
            g.last.len() == runs.len()
                && g.last
                    .iter()
                    .zip(&runs)
                    .all(|((d, _), r)| d.iter().copied().eq(handles(r)))
        };
        let mut groups = self.read();
        if !same_as_last(&groups) {
            drop(groups);
            let dests: Vec<Vec<u32>> = runs.iter().map(|r| handles(r).collect()).collect();
            self.make(fd, dests);
            groups = self.read();
            // Another thread's call may have come between: its groups are
            // not this call's, which then goes as MDW_ENTRY_SAME fan-outs.
            if !same_as_last(&groups) {
                return None;
            }
        }
        let (mut out, mut index) = (Vec::with_capacity(raw.len()), Vec::with_capacity(raw.len()));
        let mut next = 0;
        for (run, (_, group)) in runs.iter().zip(&groups.last) {
            let group = *group;
            if group == 0 {
                // Not made (no memory, no room): left an MDW_ENTRY_SAME
                // fan-out.
                continue;
            }
            out.extend_from_slice(&raw[next..run.start]);
            index.extend(next..run.start);
            out.push(MdwEntry {
                dest: group,
                flags: raw[run.start].flags | MDW_ENTRY_GROUP,
                ..raw[run.start]
            });
            index.push(run.start);
            next = run.end;
        }
        if next == 0 {
            return None;
        }
        out.extend_from_slice(&raw[next..]);
        index.extend(next..raw.len());
        Some((out, index, groups))
    }

    /// Makes the groups of `dests` the cache lacks and marks them used,
    /// dropping the least recently used others beyond [`CACHED_GROUPS`];
    /// they become the last call's groups (handle 0 for one the module
    /// refused, which stays unmade).
    fn make(&self, fd: impl AsFd, dests: Vec<Vec<u32>>) {
        let mut g = self.write();
        g.calls += 1;
        let now = g.calls;
        let mut last = Vec::with_capacity(dests.len());
        for d in dests {
            let handle = match g.by_dests.get_mut(&d) {
                Some((handle, used)) => {
                    *used = now;
                    *handle
                }
                None => match sys::group_set(&fd, 0, &d) {
                    Ok(handle) => {
                        g.by_dests.insert(d.clone(), (handle, now));
                        handle
                    }
                    Err(_) => 0,
                },
            };
            last.push((d, handle));
        }
        g.last = last;
        while g.by_dests.len() > CACHED_GROUPS {
            let Some(oldest) = g
                .by_dests
                .iter()
                .filter(|(_, &(_, used))| used != now)
                .min_by_key(|(_, &(_, used))| used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((handle, _)) = g.by_dests.remove(&oldest) {
                g.last.retain(|&(_, h)| h != handle);
                let _ = sys::group_del(&fd, handle);
            }
        }
    }

    /// Removes destination `dest` with `remove` (`MDW_IOC_DEST_DEL`), first
    /// removing the groups that name it: its handle, given to a new
    /// destination, must not be sent a fan-out meant for the old one.
    pub(crate) fn remove_dest(
        &self,
        fd: impl AsFd,
        dest: u32,
        remove: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut g = self.write();
        g.last.clear();
        g.by_dests.retain(|d, &mut (handle, _)| {
            let keep = !d.contains(&dest);
            if !keep {
                let _ = sys::group_del(&fd, handle);
            }
            keep
        });
        remove()
    }

    /// How many groups the cache holds.
    pub(crate) fn len(&self) -> usize {
        self.read().by_dests.len()
    }
}

/// The fan-outs of `raw` (entries already marked `MDW_ENTRY_SAME` by
/// `mark_fanouts`: an entry without the flag and the ones with it after
/// it) of two or more destinations that can go as one group entry
/// ([`groupable`]), as index ranges.
fn group_runs(raw: &[MdwEntry], entries: &[Entry<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=raw.len() {
        if raw.get(i).is_some_and(|r| r.flags & MDW_ENTRY_SAME != 0) {
            continue;
        }
        if i - start >= 2 && entries.get(start..i).is_some_and(groupable) {
            runs.push(start..i);
        }
        start = i;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{write::mark_fanouts, DestId, GroupId};

    #[test]
    fn group_runs_are_groupable_fanouts() {
        let a = vec![1u8; 100];
        let b = vec![2u8; 100];
        let d = DestId::from_handle;
        let entries = [
            Entry::new(d(1), &a),
            Entry::new(d(2), &a),
            Entry::new(d(3), &a),
            // A destination twice: a new run, of one.
            Entry::new(d(3), &a),
            Entry::new(d(1), &b),
            // Timestamps differ: not one group entry.
            Entry::new(d(2), &b).with_rtp_timestamp(5),
            Entry::to_group(GroupId::from_handle(9), &b),
            Entry::new(d(4), &b),
            Entry::new(d(5), &b),
        ];
        let mut raw: Vec<MdwEntry> = entries.iter().map(|e| e.to_abi()).collect();
        mark_fanouts(&mut raw, &entries);
        assert_eq!(group_runs(&raw, &entries), [0..3, 7..9]);
    }
}
