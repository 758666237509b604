// SPDX-License-Identifier: GPL-2.0

//! The state of one open `/dev/mdwrite` file and its ioctl dispatch.
//!
//! Locking: `dests` is held while a `MDW_IOC_WRITEV` call builds and
//! queues its packets, so calls on one file send one at a time (calls on
//! different files run in parallel) and destinations cannot change under
//! a call; the file's call arena (`arena::CallArena`, its working arrays
//! kept from call to call) lives behind the same lock. A synchronous call
//! waits for its completion after dropping it (and its device
//! references), so other ioctls on the file go on meanwhile. `bufs` is taken briefly, inside `dests` when a call looks its
//! buffers up (each call then holds its own references).
//!
//! Privilege belongs to the file, as for a socket: the opener's
//! `CAP_NET_RAW` (checked at open on its credentials) for `DEST_ADD`, and a
//! file opened for writing for `DEST_ADD`, `WRITEV` and `BUF_REGISTER`. Counters and completion records live in
//! [`FileShared`], which asynchronous calls and registered buffers share and
//! which may outlive the file.

use kernel::{
    alloc::KVVec,
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    uaccess::{UserPtr, UserSlice},
};

use crate::{
    abi::{
        self, MdwBufReg, MdwBufUnreg, MdwDest, MdwDestDel, MdwEntry, MdwEventfd, MdwGroup,
        MdwGroupDel, MdwInfo, MdwRepeat, MdwWritev, MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_FEAT_FANOUT,
        MDW_FEAT_GROUP, MDW_FEAT_IPV6, MDW_FEAT_KEEP_PINS, MDW_FEAT_PACE, MDW_FEAT_REPEAT,
        MDW_FEAT_RTP, MDW_FEAT_VLAN, MDW_FEAT_WRITEV, MDW_WRITE_ASYNC, MDW_WRITE_PACE,
        MDW_WRITE_QDISC, MDW_WRITE_REPEAT,
    },
    arena::{CallArena, Outcome},
    buffer::{BufTable, RegisteredBuffer},
    dest::{DestTable, Destination},
    errno,
    groups::{Group, GroupTable},
    ioctl::{read_array_into, Command, UserStruct},
    net::NetNs,
    pacer::Pacer,
    records::{FileShared, PollTable},
    writev,
};

/// Feature bits this build of the module implements.
const FEATURES: u64 = MDW_FEAT_WRITEV
    | MDW_FEAT_IPV6
    | MDW_FEAT_RTP
    | MDW_FEAT_VLAN
    | MDW_FEAT_BUF
    | MDW_FEAT_ASYNC
    | MDW_FEAT_FANOUT
    | MDW_FEAT_PACE
    | MDW_FEAT_REPEAT
    | MDW_FEAT_KEEP_PINS
    | MDW_FEAT_GROUP;

/// What the file's lock protects: its destinations and the arrays its
/// calls work in (kept between calls: no allocation per call once they
/// are large enough).
pub(crate) struct Dests {
    table: DestTable,
    /// The destination groups (`MDW_IOC_GROUP_SET`).
    groups: GroupTable,
    arena: CallArena,
    /// The entries of the current call, as copied in (or as repeated:
    /// the last call's with new data), kept for the next call to repeat.
    raw: KVVec<MdwEntry>,
    /// The id of the call whose entries `raw` holds in full, which a call
    /// may repeat (`MDW_WRITE_REPEAT`); 0 when it holds none.
    raw_id: u64,
    /// The last id given to a call's entries.
    last_id: u64,
    /// A repeated call's new data, as copied in.
    repeat: KVVec<MdwRepeat>,
    /// Releases the file's paced calls on the direct path; made on the
    /// first such call.
    pacer: Option<Pacer>,
}

impl Default for Dests {
    fn default() -> Self {
        Self {
            table: DestTable::default(),
            groups: GroupTable::default(),
            arena: CallArena::default(),
            raw: KVVec::new(),
            raw_id: 0,
            last_id: 0,
            repeat: KVVec::new(),
            pacer: None,
        }
    }
}

/// What the opener of a file may do with it, fixed at open.
#[derive(Clone, Copy)]
pub(crate) struct Access {
    /// Opened for writing (`FMODE_WRITE`): `DEST_ADD`, `WRITEV` and
    /// `BUF_REGISTER` need it (`EBADF`).
    pub(crate) write: bool,
    /// The opener had `CAP_NET_RAW` over the file's network namespace:
    /// `DEST_ADD` needs it (`EPERM`).
    pub(crate) net_raw: bool,
}

/// One open `/dev/mdwrite` file.
#[pin_data]
pub(crate) struct Client {
    /// The opener's network namespace: devices are looked up in it.
    net: NetNs,
    access: Access,
    /// Picks the file's TX queue on each device: one queue per file and
    /// device, so a file's packets never overtake each other.
    flow: u32,
    #[pin]
    dests: Mutex<Dests>,
    #[pin]
    bufs: Mutex<BufTable>,
    shared: Arc<FileShared>,
}

impl Client {
    /// Creates the state of a newly opened file.
    pub(crate) fn new(net: NetNs, access: Access) -> Result<Pin<KBox<Self>>> {
        let shared = FileShared::new()?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                net,
                access,
                flow: crate::net::random_u32(),
                dests <- new_mutex!(Dests::default(), "mdwrite:dests"),
                bufs <- new_mutex!(BufTable::default(), "mdwrite:bufs"),
                shared,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// `EBADF` unless the file was opened for writing.
    fn writable(&self) -> Result {
        if self.access.write {
            Ok(())
        } else {
            Err(EBADF)
        }
    }

    /// Runs one ioctl; returns the ioctl's non-negative result.
    pub(crate) fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<isize> {
        match Command::decode(cmd, arg)? {
            Command::Info(user) => user.write(&MdwInfo {
                abi_version: abi::MDW_ABI_VERSION,
                info_size: size_of::<MdwInfo>() as u32,
                features: FEATURES,
            })?,
            Command::DestAdd(user) => {
                self.writable()?;
                self.dest_add(&user)?
            }
            Command::DestDel(user) => {
                let req: MdwDestDel = user.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                self.dests.lock().table.remove(req.handle).ok_or(ENXIO)?;
            }
            Command::Writev(user) => {
                self.writable()?;
                self.writev(&user)?
            }
            Command::Stats(user) => user.write(&self.shared.snapshot())?,
            Command::BufRegister(user) => {
                self.writable()?;
                self.buf_register(&user)?
            }
            Command::BufUnregister(user) => {
                let req: MdwBufUnreg = user.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                let buffer = self.bufs.lock().remove(req.id).ok_or(ENOENT)?;
                // Unpinned here unless a call in flight still holds it.
                drop(buffer);
            }
            Command::GroupSet(user) => {
                self.writable()?;
                self.group_set(&user)?
            }
            Command::GroupDel(user) => {
                let req: MdwGroupDel = user.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                let group = self.dests.lock().groups.remove(req.handle).ok_or(ENXIO)?;
                drop(group);
            }
            Command::SetEventfd(user) => {
                let req: MdwEventfd = user.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                self.shared.completions.set_eventfd(req.fd)?;
            }
        }
        Ok(0)
    }

    /// `read`: completion records of asynchronous calls.
    pub(crate) fn read(&self, buf: UserPtr, count: usize, nonblock: bool) -> Result<usize> {
        let mut out = UserSlice::new(buf, count).writer();
        self.shared.completions.read(&mut out, count, nonblock)
    }

    /// `poll`: readable when completion records are queued, writable while
    /// another asynchronous call would be accepted.
    pub(crate) fn poll(&self, table: &PollTable) -> u32 {
        self.shared.completions.poll(table)
    }

    fn buf_register(&self, user: &UserStruct) -> Result {
        let mut req: MdwBufReg = user.read()?;
        if req.flags != 0 {
            return Err(EINVAL);
        }
        // Pin outside the lock: calls may look buffers up meanwhile. Over
        // `RLIMIT_MEMLOCK`, the pin cache gives way and the pin is tried
        // once more.
        let buffer = match RegisteredBuffer::new(&self.shared, req.addr, req.len) {
            Err(e) if e == errno::enobufs() && self.dests.lock().arena.clear_pins() => {
                RegisteredBuffer::new(&self.shared, req.addr, req.len)?
            }
            buffer => buffer?,
        };
        let mut bufs = self.bufs.lock();
        req.id = bufs.add(Arc::new(buffer, GFP_KERNEL_ACCOUNT)?)?;
        if let Err(e) = user.write(&req) {
            // The caller cannot learn the id: do not keep the buffer.
            let _ = bufs.remove(req.id);
            return Err(e);
        }
        Ok(())
    }

    fn dest_add(&self, user: &UserStruct) -> Result {
        let mut req: MdwDest = user.read()?;
        let dest = KBox::new(
            Destination::new(&self.net, &req, self.access.net_raw)?,
            GFP_KERNEL_ACCOUNT,
        )?;
        let mut dests = self.dests.lock();
        req.handle = dests.table.add(dest)?;
        if let Err(e) = user.write(&req) {
            // The caller cannot learn the handle: do not keep it.
            let _ = dests.table.remove(req.handle);
            return Err(e);
        }
        Ok(())
    }

    fn group_set(&self, user: &UserStruct) -> Result {
        let mut req: MdwGroup = user.read()?;
        // The handles are read before the lock is taken.
        let group = Group::read(&req)?;
        let mut dests = self.dests.lock();
        group.check(&dests.table)?;
        match req.handle {
            0 => {
                req.handle = dests.groups.add(group)?;
                if let Err(e) = user.write(&req) {
                    // The caller cannot learn the handle: do not keep it.
                    let _ = dests.groups.remove(req.handle);
                    return Err(e);
                }
            }
            handle => {
                dests.groups.replace(handle, group).ok_or(ENXIO)?;
            }
        }
        Ok(())
    }

    fn writev(&self, user: &UserStruct) -> Result {
        let mut req: MdwWritev = user.read()?;
        let quantum = writev::check_header(&req)?;
        let is_async = req.flags & MDW_WRITE_ASYNC != 0;
        if is_async {
            // Fail on unwritable out-fields before anything is queued: once
            // an asynchronous call is in flight, its completion record is
            // its result, and the ioctl must not fail.
            user.write(&req)?;
        }
        let result = {
            let mut guard = self.dests.lock();
            let Dests {
                table,
                groups,
                arena,
                raw,
                raw_id,
                last_id,
                repeat,
                pacer,
            } = &mut *guard;
            if req.flags & (MDW_WRITE_PACE | MDW_WRITE_QDISC) == MDW_WRITE_PACE && pacer.is_none() {
                *pacer = Some(Pacer::new(self.flow)?);
            }
            // Copy-in: the entries, into the file's array for them; or
            // the new data of a repeated call, into the last call's.
            let (count, size) = (req.count as usize, req.entry_size as usize);
            let mut repeats = 0;
            if req.flags & MDW_WRITE_REPEAT != 0 {
                if req.call_id == 0 || req.call_id != *raw_id {
                    return Err(crate::errno::enodata());
                }
                read_array_into(repeat, req.entries, count, size)?;
                writev::repeat(raw, repeat)?;
                repeats = *raw_id;
            } else {
                *raw_id = 0;
                read_array_into(raw, req.entries, count, size)?;
            }
            *last_id = last_id.wrapping_add(1).max(1);
            *raw_id = *last_id;
            req.call_id = *raw_id;
            let result = writev::writev(
                &self.net,
                table,
                groups,
                arena,
                &self.bufs,
                &self.shared,
                &req,
                raw,
                repeats,
                quantum,
                self.flow,
                pacer.as_ref(),
            );
            // The call's device references go before any wait.
            arena.clear();
            result
        };
        let (ret, out) = match result {
            Ok((out, wait)) => {
                // A synchronous call: its packets are queued, the file's
                // lock and device references dropped; wait for them to
                // leave. A fatal signal ends the wait (and the process).
                if let Some(wait) = wait {
                    let spare = wait.wait()?;
                    self.dests.lock().arena.keep_spare(spare);
                }
                (Ok(()), out)
            }
            Err(e) => {
                let err = Err(e.error);
                (
                    err,
                    Outcome {
                        bytes: 0,
                        copied: 0,
                        packets: 0,
                        error: Some(e),
                        held: false,
                    },
                )
            }
        };
        req.bytes = out.bytes;
        req.packets = out.packets;
        (req.error, req.error_index) = match out.error {
            Some(e) => (e.error.to_errno(), e.index),
            None => (0, 0),
        };
        match user.write(&req) {
            // Checked writable before the call; unmapped since: the
            // completion record has the result.
            Err(_) if is_async && ret.is_ok() => ret,
            written => written.and(ret),
        }
    }
}
