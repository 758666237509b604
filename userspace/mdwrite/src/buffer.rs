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
/// is dropped and the device released every packet queued from it.
///
/// With the fallback backend, or a module without `MDW_FEAT_BUF`, the buffer
/// is plain memory ([`id`](RegisteredBuffer::id) is `None`) and works the
/// same.
///
/// # Reusing memory
///
/// Packets are built from the buffer's pages when the device sends them.
/// Rewriting a region while an asynchronous call using it is in flight
/// changes what its packets carry: rewrite a region only after the
/// completion of every call that uses it. A synchronous call has completed
/// when it returns.
///
/// # Dropping
///
/// Dropping the buffer unregisters it and unmaps the memory; the module
/// keeps the pages (and their contents) until packets in flight from them
/// have left, so dropping never corrupts a call in flight. An error of the
/// unregistration is ignored; call [`unregister`](RegisteredBuffer::unregister)
/// to see it.
///
/// # Examples
///
/// ```no_run
/// use mdwrite::{DestConfig, Entry, Sender, WriteOptions};
///
/// let mut sender = Sender::open()?;
/// let dest = sender.connect(&DestConfig::route("192.0.2.1:5000".parse().unwrap(), None)?)?;
/// let mut buf = sender.register_buffer(1 << 20)?;
/// buf[..4].copy_from_slice(b"data");
/// sender.send_vectored(&[Entry::new(dest, &buf[..4])], &WriteOptions::default())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RegisteredBuffer {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    registration: Option<Registration>,
}

/// The module side of a registered buffer.
struct Registration {
    file: Arc<DeviceFile>,
    id: u32,
}

// SAFETY: the buffer owns its mapping exclusively, like a `Vec<u8>`; the
// registration is an `Arc` of a `Send + Sync` file.
unsafe impl Send for RegisteredBuffer {}
// SAFETY: shared references only read the bytes (`Deref`), as for `[u8]`.
unsafe impl Sync for RegisteredBuffer {}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
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
            ptr,
            len,
            map_len,
            registration: None,
        })
    }

    /// Maps `len` bytes and registers them on `file`.
    pub(crate) fn register(file: &Arc<DeviceFile>, len: usize) -> io::Result<Self> {
        let mut buf = Self::unregistered(len)?;
        let mut table = file.buffers();
        let id = sys::buf_register(file.fd(), buf.ptr.as_ptr() as u64, len as u64)?;
        table.insert(buf.ptr.as_ptr() as usize, len, id);
        drop(table);
        buf.registration = Some(Registration {
            file: Arc::clone(file),
            id,
        });
        Ok(buf)
    }

    /// The module's id of this buffer; `None` for plain memory (fallback
    /// backend, or a module without registered buffers).
    pub fn id(&self) -> Option<u32> {
        self.registration.as_ref().map(|r| r.id)
    }

    /// Whether the module has the buffer registered.
    pub fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// The usable bytes (as asked for, not rounded to pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: buffers have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Unregisters the buffer now (`MDW_IOC_BUF_UNREGISTER`) and frees the
    /// memory, returning the module's error if it fails; dropping does the
    /// same and ignores the error.
    pub fn unregister(mut self) -> io::Result<()> {
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        let Some(reg) = self.registration.take() else {
            return Ok(());
        };
        // Out of the table first, so that no later call turns a slice of
        // whatever is mapped here next into an entry of this id.
        reg.file.buffers().remove(reg.id);
        sys::buf_unregister(reg.file.fd(), reg.id)
    }
}

impl Drop for RegisteredBuffer {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the id is gone from the
        // table, and the module frees it with the file at the latest.
        let _ = self.release();
        // SAFETY: `ptr` and `map_len` are the mapping this buffer created
        // and owns; no reference to it outlives `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

impl Deref for RegisteredBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is readable, initialised (zero-filled) and
        // at least `len` bytes; `&self` keeps it alive.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for RegisteredBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and writable; `&mut self` makes the slice
        // the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
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
            .field("addr", &self.ptr)
            .field("len", &self.len)
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
