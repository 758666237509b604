// SPDX-License-Identifier: GPL-2.0

//! The completion records of a file (`MDW_WRITE_ASYNC`): the queue they
//! wait in, how a reader waits for them (`read`, `poll`, an eventfd), and
//! [`FileShared`], what a file shares with its asynchronous calls and
//! registered buffers. A call reserves a record slot
//! ([`Completions::reserve`]; a full queue is `EAGAIN`, never a lost
//! record) before it queues its packets; `completion` queues the record
//! when the device has released the call's last one.

use kernel::{
    alloc::KVec,
    bindings, new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
    types::Opaque,
    uaccess::UserSliceWriter,
};

use crate::{
    abi::{self, MdwCompletion, MdwStats, MDW_MAX_ASYNC},
    ffi,
    stats::Stats,
};
// `poll` event bits (include/uapi/linux/eventpoll.h; bindgen cannot see
// these `__force` casts).
const EPOLLIN: u32 = 0x0001;
const EPOLLOUT: u32 = 0x0004;
const EPOLLRDNORM: u32 = 0x0040;
const EPOLLWRNORM: u32 = 0x0100;

/// What a file shares with its asynchronous calls and registered buffers,
/// which may outlive it: counters and the completion queue.
#[pin_data]
pub(crate) struct FileShared {
    pub(crate) stats: Stats,
    #[pin]
    pub(crate) completions: Completions,
}

impl FileShared {
    /// State for a newly opened file.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self { stats: Stats::default(), completions <- Completions::new() }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// The file's counters for `MDW_IOC_STATS`.
    pub(crate) fn snapshot(&self) -> MdwStats {
        let mut stats = self.stats.snapshot();
        let ring = self.completions.ring.lock();
        stats.async_in_flight = ring.in_flight as u64;
        stats.completions_queued = ring.len as u64;
        stats
    }
}

/// The queue of completion records: a ring with one slot reserved per call
/// in flight, so a completion always has room.
struct Ring {
    /// `MDW_MAX_ASYNC` records once the file made its first async call.
    slots: KVec<MdwCompletion>,
    /// Oldest queued record.
    head: usize,
    /// Records queued.
    len: usize,
    /// Calls accepted whose record is not queued yet.
    in_flight: usize,
    /// A `read` is copying records out (without the lock); others wait.
    reader_busy: bool,
    /// Signalled once per record queued.
    eventfd: Option<EventFd>,
}

impl Ring {
    fn push(&mut self, record: MdwCompletion) {
        let cap = self.slots.len();
        if let Some(slot) = self.slots.get_mut((self.head + self.len) % cap.max(1)) {
            *slot = record;
            self.len += 1;
        }
    }
}

/// The completion records of one file and the tasks waiting for them.
#[pin_data]
pub(crate) struct Completions {
    #[pin]
    ring: Mutex<Ring>,
    /// Blocked `read`s.
    #[pin]
    readers: CondVar,
    /// `poll`/`epoll` waiters.
    #[pin]
    pollers: PollQueue,
}

impl Completions {
    fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            ring <- new_mutex!(
                Ring {
                    slots: KVec::new(),
                    head: 0,
                    len: 0,
                    in_flight: 0,
                    reader_busy: false,
                    eventfd: None
                },
                "mdwrite:completions"
            ),
            readers <- new_condvar!("mdwrite:readers"),
            pollers <- PollQueue::new(),
        })
    }

    /// Reserves the record of a new asynchronous call; `EAGAIN` when
    /// `MDW_MAX_ASYNC` calls are in flight or unread.
    pub(crate) fn reserve(&self) -> Result<Reservation<'_>> {
        let mut ring = self.ring.lock();
        if ring.slots.is_empty() {
            ring.slots = KVec::from_elem(
                MdwCompletion::default(),
                MDW_MAX_ASYNC as usize,
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        if ring.len + ring.in_flight >= MDW_MAX_ASYNC as usize {
            return Err(EAGAIN);
        }
        ring.in_flight += 1;
        Ok(Reservation {
            completions: self,
            armed: true,
        })
    }

    /// Queues the record of a call in flight and wakes its readers.
    pub(crate) fn complete(&self, record: MdwCompletion) {
        {
            let mut ring = self.ring.lock();
            ring.in_flight -= 1;
            ring.push(record);
            if let Some(e) = &ring.eventfd {
                e.signal();
            }
        }
        self.wake();
    }

    fn wake(&self) {
        self.readers.notify_all();
        self.pollers.wake();
    }

    /// `read`: copies as many whole records as fit in `count` bytes,
    /// oldest first, to `out`. Waits while none is queued and calls are in
    /// flight (`EAGAIN` instead with `nonblock`); returns 0 when none is in
    /// flight. A record leaves the queue only once copied.
    ///
    /// Records are copied to user space without the ring's lock (a fault
    /// there must not hold up completions), a few at a time; one reader
    /// copies at a time, in order, and the others wait interruptibly.
    pub(crate) fn read(
        &self,
        out: &mut UserSliceWriter,
        count: usize,
        nonblock: bool,
    ) -> Result<usize> {
        const SIZE: usize = size_of::<MdwCompletion>();
        /// Records copied per round without the lock.
        const CHUNK: usize = 16;
        let want = count / SIZE;
        if want == 0 {
            return Err(EINVAL);
        }
        let mut ring = self.ring.lock();
        while ring.reader_busy || ring.len == 0 {
            if !ring.reader_busy && ring.in_flight == 0 {
                return Ok(0);
            }
            if nonblock {
                return Err(EAGAIN);
            }
            if self.readers.wait_interruptible(&mut ring) {
                return Err(ERESTARTSYS);
            }
        }
        ring.reader_busy = true;
        let mut copied = 0;
        let mut result = Ok(());
        while copied < want && ring.len > 0 {
            let cap = ring.slots.len().max(1);
            let n = (want - copied).min(ring.len).min(CHUNK);
            let mut chunk = [MdwCompletion::default(); CHUNK];
            for (i, record) in chunk.iter_mut().take(n).enumerate() {
                *record = ring
                    .slots
                    .get((ring.head + i) % cap)
                    .copied()
                    .unwrap_or_default();
            }
            drop(ring);
            let mut written = 0;
            for record in &chunk[..n] {
                if let Err(e) = out.write_slice(abi::bytes_of(record)) {
                    result = Err(e);
                    break;
                }
                written += 1;
            }
            ring = self.ring.lock();
            // Only this reader removes records: they are still the oldest.
            ring.head = (ring.head + written) % cap;
            ring.len -= written;
            copied += written;
            if written < n {
                break;
            }
        }
        ring.reader_busy = false;
        drop(ring);
        // Room for another call (EPOLLOUT), and the next reader's turn.
        self.wake();
        match result {
            Err(e) if copied == 0 => Err(e),
            _ => Ok(copied * SIZE),
        }
    }

    /// `poll`: registers `table` and returns the ready events.
    pub(crate) fn poll(&self, table: &PollTable) -> u32 {
        self.pollers.register(table);
        let ring = self.ring.lock();
        let mut mask = 0;
        if ring.len > 0 {
            mask |= EPOLLIN | EPOLLRDNORM;
        }
        if ring.len + ring.in_flight < MDW_MAX_ASYNC as usize {
            mask |= EPOLLOUT | EPOLLWRNORM;
        }
        mask
    }

    /// `MDW_IOC_SET_EVENTFD`: signal `fd` per record from now on; -1 stops.
    pub(crate) fn set_eventfd(&self, fd: i32) -> Result {
        let eventfd = if fd == -1 {
            None
        } else {
            Some(EventFd::get(fd)?)
        };
        let old = core::mem::replace(&mut self.ring.lock().eventfd, eventfd);
        drop(old);
        Ok(())
    }
}

/// A reserved record slot; released again on drop unless the call was
/// handed to the device ([`Reservation::commit`]).
pub(crate) struct Reservation<'a> {
    completions: &'a Completions,
    armed: bool,
}

impl Reservation<'_> {
    /// The call is in flight: its completion will fill the slot.
    pub(crate) fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.completions.ring.lock().in_flight -= 1;
            // A reader may wait for the last call in flight.
            self.completions.wake();
        }
    }
}

/// A wait queue for `poll`.
#[pin_data]
struct PollQueue {
    #[pin]
    head: Opaque<bindings::wait_queue_head>,
}

// SAFETY: a wait queue head is made to be used from any thread.
unsafe impl Send for PollQueue {}
// SAFETY: as above.
unsafe impl Sync for PollQueue {}

impl PollQueue {
    fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; the head is pinned.
            head <- Opaque::ffi_init(|slot| unsafe { ffi::mdw_waitqueue_init(slot) }),
        })
    }

    fn register(&self, table: &PollTable) {
        // SAFETY: `table` holds the `file` and `poll_table` of a running
        // `poll`; the head lives as long as the file (it is part of the
        // file's `FileShared`, which the file holds).
        unsafe { ffi::mdw_poll_wait(table.file, self.head.get(), table.table) };
    }

    fn wake(&self) {
        // SAFETY: the head is initialized.
        unsafe {
            bindings::__wake_up(
                self.head.get(),
                bindings::TASK_NORMAL,
                0,
                core::ptr::null_mut(),
            )
        };
    }
}

/// The arguments of one `poll` call.
pub(crate) struct PollTable {
    file: *mut bindings::file,
    table: *mut bindings::poll_table_struct,
}

impl PollTable {
    /// # Safety
    ///
    /// `file` and `table` are the arguments of a running `f_op->poll`, and
    /// the value does not outlive it.
    pub(crate) unsafe fn new(
        file: *mut bindings::file,
        table: *mut bindings::poll_table_struct,
    ) -> Self {
        Self { file, table }
    }
}

/// A referenced eventfd.
struct EventFd(*mut ffi::MdwEventfd);

// SAFETY: an eventfd context may be signalled and put from any thread.
unsafe impl Send for EventFd {}

impl EventFd {
    /// The eventfd `fd`; `EBADF` when it is no file, `EINVAL` when not an
    /// eventfd.
    fn get(fd: i32) -> Result<Self> {
        // SAFETY: looks `fd` up in the caller's file table.
        let ptr = unsafe { ffi::mdw_eventfd_get(fd) };
        Ok(Self(crate::errno::from_err_ptr(ptr)?))
    }

    fn signal(&self) {
        // SAFETY: `self.0` is referenced.
        unsafe { ffi::mdw_eventfd_signal(self.0) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `get`.
        unsafe { ffi::mdw_eventfd_put(self.0) };
    }
}
