// SPDX-License-Identifier: GPL-2.0

//! The state of one open `/dev/mdwrite` file and its ioctl dispatch.
//!
//! Locking: `dests` is held for the whole of a `MDW_IOC_WRITEV` call, so
//! calls on one file run one at a time (calls on different files run in
//! parallel) and destinations cannot change under a call. `bufs` is taken
//! briefly, inside `dests` when a call looks its buffers up (each call then
//! holds its own references). Counters and completion records live in
//! [`FileShared`], which asynchronous calls and registered buffers share and
//! which may outlive the file.

use kernel::{
    alloc::KVec,
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    uaccess::{UserPtr, UserSlice},
};

use crate::{
    abi::{
        self, MdwBufReg, MdwBufUnreg, MdwDest, MdwDestDel, MdwEntry, MdwEventfd, MdwInfo,
        MdwWritev, MDW_FEAT_ASYNC, MDW_FEAT_BUF, MDW_FEAT_IPV6, MDW_FEAT_RTP, MDW_FEAT_VLAN,
        MDW_FEAT_WRITEV, MDW_MAX_DESTS,
    },
    buffer::{BufTable, RegisteredBuffer},
    completion::{FileShared, PollTable},
    dest::Destination,
    ioctl::{read_array, Command, UserStruct},
    net::NetNs,
    table::Table,
    writev,
};

/// Feature bits this build of the module implements.
const FEATURES: u64 =
    MDW_FEAT_WRITEV | MDW_FEAT_IPV6 | MDW_FEAT_RTP | MDW_FEAT_VLAN | MDW_FEAT_BUF | MDW_FEAT_ASYNC;

/// The destinations of one file, by handle.
pub(crate) type DestTable = Table<KBox<Destination>, { MDW_MAX_DESTS as usize }>;

/// One open `/dev/mdwrite` file.
#[pin_data]
pub(crate) struct Client {
    /// The opener's network namespace: devices are looked up in it.
    net: NetNs,
    #[pin]
    dests: Mutex<DestTable>,
    #[pin]
    bufs: Mutex<BufTable>,
    shared: Arc<FileShared>,
}

impl Client {
    /// Creates the state of a newly opened file.
    pub(crate) fn new() -> Result<Pin<KBox<Self>>> {
        let shared = FileShared::new()?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                net: NetNs::current(),
                dests <- new_mutex!(DestTable::default(), "mdwrite:dests"),
                bufs <- new_mutex!(BufTable::default(), "mdwrite:bufs"),
                shared,
            }),
            GFP_KERNEL,
        )
    }

    /// Runs one ioctl; returns the ioctl's non-negative result.
    pub(crate) fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<isize> {
        match Command::decode(cmd, arg)? {
            Command::Info(user) => user.write(&MdwInfo {
                abi_version: abi::MDW_ABI_VERSION,
                info_size: size_of::<MdwInfo>() as u32,
                features: FEATURES,
            })?,
            Command::DestAdd(user) => self.dest_add(&user)?,
            Command::DestDel(user) => {
                let req: MdwDestDel = user.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                self.dests.lock().remove(req.handle).ok_or(ENXIO)?;
            }
            Command::Writev(user) => self.writev(&user)?,
            Command::Stats(user) => user.write(&self.shared.snapshot())?,
            Command::BufRegister(user) => self.buf_register(&user)?,
            Command::BufUnregister(user) => {
                let req: MdwBufUnreg = user.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                let buffer = self.bufs.lock().remove(req.id).ok_or(ENOENT)?;
                // Unpinned here unless a call in flight still holds it.
                drop(buffer);
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
        // Pin outside the lock: calls may look buffers up meanwhile.
        let buffer = RegisteredBuffer::new(&self.shared, req.addr, req.len)?;
        let mut bufs = self.bufs.lock();
        req.id = bufs.add(Arc::new(buffer, GFP_KERNEL)?)?;
        if let Err(e) = user.write(&req) {
            // The caller cannot learn the id: do not keep the buffer.
            let _ = bufs.remove(req.id);
            return Err(e);
        }
        Ok(())
    }

    fn dest_add(&self, user: &UserStruct) -> Result {
        let mut req: MdwDest = user.read()?;
        let dest = KBox::new(Destination::new(&self.net, &req)?, GFP_KERNEL)?;
        let mut dests = self.dests.lock();
        req.handle = dests.add(dest)?;
        if let Err(e) = user.write(&req) {
            // The caller cannot learn the handle: do not keep it.
            let _ = dests.remove(req.handle);
            return Err(e);
        }
        Ok(())
    }

    fn writev(&self, user: &UserStruct) -> Result {
        let mut req: MdwWritev = user.read()?;
        let quantum = writev::check_header(&req)?;
        let raw: KVec<MdwEntry> =
            read_array(req.entries, req.count as usize, req.entry_size as usize)?;
        let result = {
            let mut dests = self.dests.lock();
            writev::writev(
                &self.net,
                &mut dests,
                &self.bufs,
                &self.shared,
                &req,
                &raw,
                quantum,
            )
        };
        let (ret, out) = match result {
            Ok(out) => (Ok(()), out),
            Err(e) => {
                let err = Err(e.error);
                (
                    err,
                    writev::Outcome {
                        bytes: 0,
                        packets: 0,
                        error: Some(e),
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
        user.write(&req)?;
        ret
    }
}
