// SPDX-License-Identifier: GPL-2.0

//! [`RegisteredBuffer`]: page-aligned memory registered with the module
//! (`MDW_IOC_BUF_REGISTER`), and the table that turns slices of it into
//! `MDW_ENTRY_BUF` entries.

use std::{
    fmt, io,
    ops::{Deref, DerefMut},
    ptr::NonNull,
    sync::{Arc, Mutex, MutexGuard},
};

use mdwrite_uapi::MDW_MAX_BUF_BYTES;
use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use crate::{device::DeviceFile, sys};

/// Memory for packet data, registered with the module so that sending from
/// it pins nothing.
///
/// Get one from [`Sender::register_buffer`](crate::Sender::register_buffer)
/// or [`Device::register_buffer`](crate::Device::register_buffer), fill it
/// through `&mut [u8]` (it dereferences to a byte slice), and send slices of
/// it in [`Entry`](crate::Entry)s as any other data: the sender sees that a
/// slice lies in one of its registered buffers and sends it as
/// `{buffer id, offset, length}` (`MDW_ENTRY_BUF`), so the module neither
/// walks the page tables nor pins the pages again. A slice of a buffer
/// registered on another sender is sent as plain memory.
///
/// The memory is an anonymous private mapping, page-aligned, zeroed,
/// faulted in at once, rounded up to whole pages (only [`len`](RegisteredBuffer::len) bytes are
/// visible and registered). The module pins the pages long-term and
/// charges them to `RLIMIT_MEMLOCK` (`ENOBUFS` past it) until the buffer
/// is dropped and the device released every packet that refers to it.
///
/// With the fallback backend, or a module without `MDW_FEAT_BUF`, the buffer
/// is plain memory ([`id`](RegisteredBuffer::id) is `None`) and works the
/// same.
///
/// # Reusing memory
///
/// Packets are built from the buffer's pages when the device sends them.
/// A synchronous call ([`Sender::send_vectored`](crate::Sender::send_vectored))
/// has completed when it returns. An asynchronous call
/// ([`Sender::send_async`](crate::Sender::send_async)) takes the buffers it
/// sends from by value and hands them back in its
/// [`Completion`](crate::Completion), so the memory cannot be rewritten
/// while the device still reads it. To keep several regions of one buffer
/// in flight at once, split it into pieces
/// ([`split_off`](RegisteredBuffer::split_off),
/// [`into_chunks`](RegisteredBuffer::into_chunks)): each piece owns its
/// range and is sent, returned and rewritten on its own.
///
/// # Dropping
///
/// Dropping the last piece of a buffer unregisters it and unmaps the
/// memory; the module keeps the pages (and their contents) until packets in
/// flight from them have left. An error of the unregistration is ignored;
/// call [`unregister`](RegisteredBuffer::unregister) to see it.
///
/// # Examples
///
/// ```no_run
/// use mdwrite::{DestConfig, Entry, Sender, WriteOptions};
///
/// let mut sender = Sender::open()?;
/// let dest = sender.add_destination(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
/// let mut buf = sender.register_buffer(1 << 20)?;
/// buf[..4].copy_from_slice(b"data");
/// sender.send_vectored(&[Entry::new(dest, &buf[..4])], &WriteOptions::default())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RegisteredBuffer {
    /// The mapping this piece lies in, shared with the other pieces split
    /// from the same buffer.
    mem: Arc<Mapping>,
    /// This piece: `mem[start..start + len]`, owned by it alone.
    start: usize,
    len: usize,
}

/// One anonymous mapping and its registration; unmapped (and unregistered)
/// when its last piece is dropped.
struct Mapping {
    ptr: NonNull<u8>,
    /// The registered (usable) bytes.
    len: usize,
    map_len: usize,
    registration: Mutex<Option<Registration>>,
}

/// The module side of a registered buffer.
struct Registration {
    file: Arc<DeviceFile>,
    id: u32,
}

// SAFETY: the mapping is owned by its pieces, each of which reads and
// writes only its own disjoint range (like the halves of
// `slice::split_at_mut`); the registration is behind a mutex and holds an
// `Arc` of a `Send + Sync` file.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` gives access to no bytes by itself.
unsafe impl Sync for Mapping {}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

impl Mapping {
    fn registration(&self) -> MutexGuard<'_, Option<Registration>> {
        self.registration.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self) -> io::Result<()> {
        let Some(reg) = self.registration().take() else {
            return Ok(());
        };
        // Out of the table first, so that no later call turns a slice of
        // whatever is mapped here next into an entry of this id.
        reg.file.buffers().remove(reg.id);
        sys::buf_unregister(reg.file.fd(), reg.id)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the id is gone from the
        // table, and the module frees it with the file at the latest.
        let _ = self.release();
        // SAFETY: `ptr` and `map_len` are the mapping this value created
        // and owns; every piece that could reach it is gone (this is the
        // last `Arc`).
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

impl RegisteredBuffer {
    /// `len` bytes of zeroed, page-aligned memory, not registered with any
    /// module (what the fallback uses). `EINVAL` for 0 bytes, `E2BIG` above
    /// `MDW_MAX_BUF_BYTES` (1 GiB), as the module would say.
    pub fn unregistered(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(errno(libc::EINVAL));
        }
        if len as u64 > MDW_MAX_BUF_BYTES {
            return Err(errno(libc::E2BIG));
        }
        let page = rustix::param::page_size();
        let map_len = len.div_ceil(page) * page;
        // Populated (write-faulted) now, so that the module pins the pages
        // the caller will fill, never the shared zero page (which a
        // read-only long-term pin unshares only on kernels since 5.19), and
        // the pages are charged at once rather than faulted one by one.
        // SAFETY: a new anonymous mapping at an address of the kernel's
        // choice; it aliases nothing.
        let addr = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::POPULATE,
            )
        }?;
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| errno(libc::ENOMEM))?;
        Ok(Self {
            mem: Arc::new(Mapping {
                ptr,
                len,
                map_len,
                registration: Mutex::new(None),
            }),
            start: 0,
            len,
        })
    }

    /// Maps `len` bytes and registers them on `file`.
    pub(crate) fn register(file: &Arc<DeviceFile>, len: usize) -> io::Result<Self> {
        let buf = Self::unregistered(len)?;
        let mut table = file.buffers();
        let base = buf.mem.ptr.as_ptr() as u64;
        let id = sys::buf_register(file.fd(), base, len as u64)?;
        table.insert(base as usize, len, id);
        drop(table);
        *buf.mem.registration() = Some(Registration {
            file: Arc::clone(file),
            id,
        });
        Ok(buf)
    }

    /// The module's id of this buffer; `None` for plain memory (fallback
    /// backend, or a module without registered buffers), and once it was
    /// unregistered.
    pub fn id(&self) -> Option<u32> {
        self.mem.registration().as_ref().map(|r| r.id)
    }

    /// Whether the module has the buffer registered.
    pub fn is_registered(&self) -> bool {
        self.id().is_some()
    }

    /// The usable bytes of this piece (as asked for, not rounded to
    /// pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether this piece is empty (a split at its start or end).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Splits the piece in two at `at`: `self` keeps `[0, at)` and the
    /// returned piece owns `[at, len)`. Both stay in the same registered
    /// buffer, and each can be written, sent and handed to
    /// [`Sender::send_async`](crate::Sender::send_async) on its own: the
    /// way to keep several regions of one buffer in flight at once.
    ///
    /// # Panics
    ///
    /// If `at > len`.
    pub fn split_off(&mut self, at: usize) -> RegisteredBuffer {
        assert!(at <= self.len, "split_off at {at} beyond {}", self.len);
        let tail = RegisteredBuffer {
            mem: Arc::clone(&self.mem),
            start: self.start + at,
            len: self.len - at,
        };
        self.len = at;
        tail
    }

    /// Cuts the piece into pieces of `size` bytes (the last may be
    /// shorter), in order; see [`split_off`](RegisteredBuffer::split_off).
    ///
    /// # Panics
    ///
    /// If `size` is 0.
    pub fn into_chunks(mut self, size: usize) -> Vec<RegisteredBuffer> {
        assert!(size > 0, "into_chunks of 0 bytes");
        let mut out = Vec::with_capacity(self.len.div_ceil(size));
        while self.len > size {
            let tail = self.split_off(size);
            out.push(std::mem::replace(&mut self, tail));
        }
        out.push(self);
        out
    }

    /// Unregisters the buffer now (`MDW_IOC_BUF_UNREGISTER`), returning
    /// the module's error if it fails; the memory is freed with the last
    /// piece. Dropping the last piece unregisters too, and ignores the
    /// error. Pieces split from it are sent as plain memory from then on.
    pub fn unregister(self) -> io::Result<()> {
        self.mem.release()
    }
}

impl Deref for RegisteredBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is readable, initialised (zero-filled) and
        // holds `start + len <= mem.len` bytes; `&self` keeps it alive, and
        // no other piece reaches this range.
        unsafe { std::slice::from_raw_parts(self.mem.ptr.as_ptr().add(self.start), self.len) }
    }
}

impl DerefMut for RegisteredBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and writable; `&mut self` makes the slice
        // the only reference to this piece's range, which no other piece
        // overlaps.
        unsafe { std::slice::from_raw_parts_mut(self.mem.ptr.as_ptr().add(self.start), self.len) }
    }
}

impl AsRef<[u8]> for RegisteredBuffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for RegisteredBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl fmt::Debug for RegisteredBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredBuffer")
            .field("addr", &self.as_ptr())
            .field("len", &self.len)
            .field("mapping_len", &self.mem.len)
            .field("id", &self.id())
            .finish()
    }
}

/// Where one registered buffer lies in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
    id: u32,
}

/// The registered buffers of one open device, by address: turns a slice
/// into `(id, offset)` when it lies wholly in one of them.
#[derive(Debug, Default)]
pub(crate) struct BufferTable {
    /// Sorted by `start`; buffers never overlap (each is its own mapping).
    spans: Vec<Span>,
}

impl BufferTable {
    pub(crate) fn insert(&mut self, start: usize, len: usize, id: u32) {
        let at = self.spans.partition_point(|s| s.start < start);
        self.spans.insert(at, Span { start, len, id });
    }

    pub(crate) fn remove(&mut self, id: u32) {
        self.spans.retain(|s| s.id != id);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The buffer id and offset of `data`, if it lies wholly inside one
    /// registered buffer.
    pub(crate) fn lookup(&self, data: &[u8]) -> Option<(u32, u64)> {
        let start = data.as_ptr() as usize;
        let at = self.spans.partition_point(|s| s.start <= start);
        let span = self.spans.get(at.checked_sub(1)?)?;
        let offset = start - span.start;
        (offset <= span.len && data.len() <= span.len - offset).then_some((span.id, offset as u64))
    }
}

/// Locks a table, whatever a panicking holder left behind (the table is
/// consistent after every single operation).
pub(crate) fn lock(m: &Mutex<BufferTable>) -> MutexGuard<'_, BufferTable> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unregistered_buffers_are_zeroed_page_aligned_and_writable() {
        let mut b = RegisteredBuffer::unregistered(5000).unwrap();
        assert_eq!(b.len(), 5000);
        assert_eq!(b.id(), None);
        assert_eq!(b.as_ptr() as usize % rustix::param::page_size(), 0);
        assert!(b.iter().all(|&x| x == 0));
        b[4999] = 7;
        assert_eq!(b[4999], 7);
    }

    #[test]
    fn buffer_sizes_are_the_modules() {
        let e = RegisteredBuffer::unregistered(0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = RegisteredBuffer::unregistered((MDW_MAX_BUF_BYTES + 1) as usize).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::E2BIG));
    }

    #[test]
    fn table_finds_slices_wholly_inside_a_buffer() {
        let a = [0u8; 100];
        let b = [0u8; 50];
        let other = [0u8; 10];
        let mut t = BufferTable::default();
        t.insert(b.as_ptr() as usize, b.len(), 2);
        t.insert(a.as_ptr() as usize, a.len(), 1);
        assert_eq!(t.lookup(&a), Some((1, 0)));
        assert_eq!(t.lookup(&a[10..20]), Some((1, 10)));
        assert_eq!(t.lookup(&a[99..]), Some((1, 99)));
        assert_eq!(t.lookup(&b[49..]), Some((2, 49)));
        assert_eq!(t.lookup(&other), None);
        // Adjacent buffers: a slice across both is in neither.
        let mem = [0u8; 150];
        let mut t = BufferTable::default();
        t.insert(mem.as_ptr() as usize, 100, 1);
        t.insert(mem[100..].as_ptr() as usize, 50, 2);
        assert_eq!(t.lookup(&mem[90..100]), Some((1, 90)));
        assert_eq!(t.lookup(&mem[100..110]), Some((2, 0)));
        assert_eq!(t.lookup(&mem[90..110]), None);
        // Registered as shorter than the memory: the tail is not inside.
        let mut t = BufferTable::default();
        t.insert(a.as_ptr() as usize, 60, 3);
        assert_eq!(t.lookup(&a[..60]), Some((3, 0)));
        assert_eq!(t.lookup(&a[..61]), None);
        assert_eq!(t.lookup(&a[59..61]), None);
        t.remove(3);
        assert!(t.is_empty());
        assert_eq!(t.lookup(&a[..1]), None);
    }
}
