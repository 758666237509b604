// SPDX-License-Identifier: GPL-2.0

//! Byte sources for a stream: an MPEG-TS file checked packet by packet, and
//! any file, both optionally looped.

use std::{
    io::{self, Read, Seek, SeekFrom},
    sync::{Arc, Mutex},
};

use super::{
    pcr::read_full,
    ts::{set_discontinuity, TsError, TsPacket, TS_PACKET_SIZE},
};

const PIDS: usize = 8192;

/// An MPEG-TS source: yields the input's bytes unchanged, in whole 188-byte
/// TS packets, and checks each packet's sync byte as it goes.
///
/// # Resynchronisation
///
/// There is none: a byte that should be a sync byte and is not, or an input
/// that ends inside a packet, is an error ([`io::ErrorKind::InvalidData`]
/// wrapping a [`TsError`] that names the offset). The bytes are forwarded
/// verbatim, so skipping garbage would silently send something other than
/// the file; a file that needs repair should be repaired (remuxed) first.
///
/// # A truncated last packet
///
/// An input that ends inside a packet yields every whole packet before the
/// partial one first; the next read is the error. With
/// [`with_tail_note`](TsReader::with_tail_note) the partial packet is
/// dropped instead: the input ends there (or starts again, when looping)
/// and the note records the [`TsError::Truncated`] for the caller to warn
/// about.
///
/// # Looping
///
/// With `looping`, the input starts again from its beginning when it ends
/// (it must then be seekable and at least one packet long). Continuity
/// counters are left as they are, so at each wrap every PID's counter
/// jumps and the PCRs jump back: a receiver sees a discontinuity. To tell
/// it so, the first packet of each PID after a wrap gets the adaptation
/// field's discontinuity_indicator if it has an adaptation field, and the
/// first packet carrying a PCR of each PCR PID gets it too (ISO/IEC
/// 13818-1 2.4.3.5: a new time base). Packets without an adaptation field
/// are never changed (adding one would move the payload), so a decoder may
/// still report a continuity error for those PIDs once per wrap. The first
/// pass is always byte-exact.
#[derive(Debug)]
pub struct TsReader<R> {
    inner: R,
    looping: bool,
    /// Offset in the input of the next packet.
    offset: u64,
    /// One packet for reads shorter than a packet, and its next byte.
    pending: [u8; TS_PACKET_SIZE],
    pending_pos: usize,
    wraps: u64,
    seen: Vec<PidState>,
    /// A truncated last packet found: bytes of it read, and the error due
    /// at the next read (without a note).
    tail: usize,
    error: Option<TsError>,
    /// Where a dropped partial packet is recorded, if the caller wants it
    /// dropped.
    note: Option<TailNote>,
}

/// Where a [`TsReader`] records the partial packet it dropped at the end of
/// its input (see [`TsReader::with_tail_note`]).
pub type TailNote = Arc<Mutex<Option<TsError>>>;

#[derive(Clone, Copy, Debug, Default)]
struct PidState {
    seen: bool,
    has_pcr: bool,
    /// The next packet is this PID's first after a wrap.
    first_after_wrap: bool,
    /// This PID's next PCR is its first after a wrap.
    pcr_after_wrap: bool,
}

impl<R: Read> TsReader<R> {
    /// A source reading `inner` from its current position, which counts as
    /// offset 0; with `looping` it starts again at offset 0 when it ends.
    pub fn new(inner: R, looping: bool) -> Self {
        Self {
            inner,
            looping,
            offset: 0,
            pending: [0; TS_PACKET_SIZE],
            pending_pos: TS_PACKET_SIZE,
            wraps: 0,
            seen: vec![PidState::default(); PIDS],
            tail: 0,
            error: None,
            note: None,
        }
    }

    /// Drops a truncated last packet instead of failing on it: the input
    /// ends after its whole packets (or starts again, when looping), and
    /// `note` gets the [`TsError::Truncated`] that names it.
    pub fn with_tail_note(mut self, note: TailNote) -> Self {
        self.note = Some(note);
        self
    }

    /// How many times the input started again.
    pub fn wraps(&self) -> u64 {
        self.wraps
    }

    /// Checks and, after a wrap, marks the whole packets in `buf`, which
    /// start at `self.offset`. On a bad packet, the packets before it are
    /// processed; returns their bytes, and the error for the next read.
    fn process_good(&mut self, buf: &mut [u8]) -> usize {
        let start = self.offset;
        if let Err(e) = self.process(buf) {
            self.error = Some(e);
        }
        (self.offset - start) as usize
    }

    /// [`process_good`](TsReader::process_good) as a read: the good bytes,
    /// or the error when the first packet is bad (never 0 for a bad one,
    /// which would read as the end).
    fn good_packets(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let good = self.process_good(buf);
        if good == 0 && !buf.is_empty() {
            if let Some(e) = self.error.take() {
                return Err(e.into());
            }
        }
        Ok(good)
    }

    fn process(&mut self, buf: &mut [u8]) -> Result<(), TsError> {
        for p in buf.chunks_exact_mut(TS_PACKET_SIZE) {
            let packet = TsPacket::parse(p, self.offset)?;
            let (pid, pcr) = (usize::from(packet.pid()), packet.pcr().is_some());
            let p: &mut [u8; TS_PACKET_SIZE] = p.try_into().expect("chunks_exact");
            let state = &mut self.seen[pid];
            if self.wraps == 0 {
                state.seen = true;
                state.has_pcr |= pcr;
            } else {
                let mut flag = false;
                if state.first_after_wrap {
                    state.first_after_wrap = false;
                    flag = true;
                }
                if state.pcr_after_wrap && pcr {
                    state.pcr_after_wrap = false;
                    flag = true;
                }
                if flag {
                    set_discontinuity(p);
                }
            }
            self.offset += TS_PACKET_SIZE as u64;
        }
        Ok(())
    }
}

impl<R: Read + Seek> TsReader<R> {
    /// Reads whole packets into `buf` (a multiple of the packet size),
    /// wrapping when looping; 0 only at the end.
    fn read_packets(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.error.take() {
            return Err(e.into());
        }
        loop {
            let mut n = if self.tail > 0 {
                0
            } else {
                read_full(&mut self.inner, buf)?
            };
            let whole = n - n % TS_PACKET_SIZE;
            if whole < n {
                let e = TsError::Truncated {
                    offset: self.offset + whole as u64,
                    len: n - whole,
                };
                self.tail = n - whole;
                match &self.note {
                    Some(note) => {
                        *note.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                    None => self.error = Some(e),
                }
                n = whole;
                if n == 0 {
                    if let Some(e) = self.error.take() {
                        return Err(e.into());
                    }
                }
                if n > 0 || self.note.is_none() {
                    // The whole packets first; the end (or the error) at
                    // the next read.
                    return self.good_packets(&mut buf[..n]);
                }
            }
            if n > 0 || !self.looping || self.offset + self.tail as u64 == 0 {
                return self.good_packets(&mut buf[..n]);
            }
            let back = self.offset + self.tail as u64;
            self.inner.seek(SeekFrom::Current(-(back as i64)))?;
            self.tail = 0;
            self.offset = 0;
            self.wraps += 1;
            for s in self.seen.iter_mut().filter(|s| s.seen) {
                s.first_after_wrap = true;
                s.pcr_after_wrap = s.has_pcr;
            }
        }
    }
}

impl<R: Read + Seek> Read for TsReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending_pos == TS_PACKET_SIZE && buf.len() >= TS_PACKET_SIZE {
            let whole = buf.len() - buf.len() % TS_PACKET_SIZE;
            return self.read_packets(&mut buf[..whole]);
        }
        if self.pending_pos == TS_PACKET_SIZE {
            let mut p = [0u8; TS_PACKET_SIZE];
            if self.read_packets(&mut p)? == 0 {
                return Ok(0);
            }
            self.pending = p;
            self.pending_pos = 0;
        }
        let n = buf.len().min(TS_PACKET_SIZE - self.pending_pos);
        buf[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
        self.pending_pos += n;
        Ok(n)
    }
}

/// Any input, started again from its beginning when it ends if `looping`.
#[derive(Debug)]
pub struct LoopReader<R> {
    inner: R,
    looping: bool,
    offset: u64,
    wraps: u64,
}

impl<R> LoopReader<R> {
    /// Reads `inner` from its current position, which counts as its start.
    pub fn new(inner: R, looping: bool) -> Self {
        Self {
            inner,
            looping,
            offset: 0,
            wraps: 0,
        }
    }

    /// How many times the input started again.
    pub fn wraps(&self) -> u64 {
        self.wraps
    }
}

impl<R: Read + Seek> Read for LoopReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() || !self.looping || self.offset == 0 {
                self.offset += n as u64;
                return Ok(n);
            }
            self.inner.seek(SeekFrom::Current(-(self.offset as i64)))?;
            self.offset = 0;
            self.wraps += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::media::ts::tests::packet;

    fn file() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..10u8 {
            v.extend_from_slice(&packet(256, i, (i % 4 == 1).then_some(u64::from(i) * 1000)));
            v.extend_from_slice(&packet(300, i, None));
        }
        v
    }

    fn read_all(r: &mut impl Read, chunk: usize, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        while out.len() < limit {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }

    #[test]
    fn byte_exact_in_whole_packets() {
        let f = file();
        for chunk in [1, 100, 188, 1316, 1400, 10_000] {
            let mut r = TsReader::new(Cursor::new(&f), false);
            let mut buf = vec![0u8; chunk];
            let mut out = Vec::new();
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                if chunk >= TS_PACKET_SIZE {
                    assert_eq!(n % TS_PACKET_SIZE, 0, "chunk {chunk}: {n}");
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, f, "chunk {chunk}");
        }
    }

    #[test]
    fn looping_marks_discontinuities_and_keeps_counters() {
        let f = file();
        let mut r = TsReader::new(Cursor::new(&f), true);
        let out = read_all(&mut r, 1316, 3 * f.len()).unwrap();
        assert_eq!(out.len(), 3 * f.len());
        assert_eq!(r.wraps(), 2);
        assert_eq!(&out[..f.len()], &f[..], "the first pass is untouched");
        for pass in 1..3 {
            let o = &out[pass * f.len()..(pass + 1) * f.len()];
            for (i, (a, b)) in o
                .chunks(TS_PACKET_SIZE)
                .zip(f.chunks(TS_PACKET_SIZE))
                .enumerate()
            {
                let (pa, pb) = (
                    TsPacket::parse(a, 0).unwrap(),
                    TsPacket::parse(b, 0).unwrap(),
                );
                assert_eq!(pa.continuity_counter(), pb.continuity_counter());
                assert_eq!(pa.pcr(), pb.pcr());
                // Packet 0 is PID 256's first (no PCR, but an adaptation
                // field? no: payload only) and packet 2 its first PCR.
                let expect = i == 2;
                assert_eq!(pa.discontinuity(), expect, "pass {pass} packet {i}");
                if !expect {
                    assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn errors() {
        let mut f = file();
        f[188 * 5] = 0x46;
        let mut r = TsReader::new(Cursor::new(&f), false);
        let e = read_all(&mut r, 1316, usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("offset 940"), "{e}");
        // The good packets before the bad one come first.
        let mut r = TsReader::new(Cursor::new(&f), false);
        let mut buf = vec![0u8; 1316];
        assert_eq!(r.read(&mut buf).unwrap(), 940);
        assert_eq!(&buf[..940], &f[..940]);
        assert!(r.read(&mut buf).is_err());
        // A bad packet just before a noted partial one is still an error.
        let mut g = file()[..188 * 4].to_vec();
        g.extend_from_slice(&[0u8; 188 + 50]);
        let note = TailNote::default();
        let mut r = TsReader::new(Cursor::new(&g), false).with_tail_note(note);
        let e = read_all(&mut r, 188 * 100, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("offset 752"), "{e}");
        let f = file();
        let mut r = TsReader::new(Cursor::new(&f[..188 * 3 + 7]), false);
        let e = read_all(&mut r, 1316, usize::MAX).unwrap_err();
        assert!(
            e.to_string()
                .contains("7 bytes into the TS packet at offset 564"),
            "{e}"
        );
        // Also when looping, and when read a byte at a time.
        let mut r = TsReader::new(Cursor::new(&f[..188 * 3 + 7]), true);
        assert!(read_all(&mut r, 1, usize::MAX).is_err());
        // The whole packets before a partial last one come first.
        let mut r = TsReader::new(Cursor::new(&f[..188 * 3 + 7]), false);
        let mut buf = vec![0u8; 1316];
        assert_eq!(r.read(&mut buf).unwrap(), 188 * 3);
        assert_eq!(&buf[..188 * 3], &f[..188 * 3]);
        let e = r.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("offset 564"), "{e}");
        // An empty input ends, looping or not.
        let mut r = TsReader::new(Cursor::new(&[][..]), true);
        assert_eq!(read_all(&mut r, 1316, 10).unwrap(), b"");
    }

    #[test]
    fn a_noted_partial_packet_is_dropped() {
        let f = file();
        let cut = &f[..188 * 7 + 100];
        for chunk in [1, 188, 1316, 10_000] {
            let note = TailNote::default();
            let mut r = TsReader::new(Cursor::new(cut), false).with_tail_note(note.clone());
            let out = read_all(&mut r, chunk, usize::MAX).unwrap();
            assert_eq!(out, &f[..188 * 7], "chunk {chunk}");
            assert_eq!(
                *note.lock().unwrap(),
                Some(TsError::Truncated {
                    offset: 188 * 7,
                    len: 100
                })
            );
        }
        // Looping: each pass is the whole packets, the partial one dropped.
        let note = TailNote::default();
        let mut r = TsReader::new(Cursor::new(cut), true).with_tail_note(note.clone());
        let out = read_all(&mut r, 1316, 188 * 7 * 3).unwrap();
        assert_eq!(out.len(), 188 * 7 * 3);
        assert_eq!(r.wraps(), 2);
        // Past the first PCR of the second pass (marked discontinuous).
        assert_eq!(&out[188 * 10..188 * 14], &f[188 * 3..188 * 7]);
        assert!(note.lock().unwrap().is_some());
        // Nothing but a partial packet: nothing, and the note.
        let note = TailNote::default();
        let mut r = TsReader::new(Cursor::new(&f[..50]), false).with_tail_note(note.clone());
        assert_eq!(read_all(&mut r, 1316, usize::MAX).unwrap(), b"");
        assert!(note.lock().unwrap().is_some());
    }

    #[test]
    fn loop_reader() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut r = LoopReader::new(Cursor::new(&data), true);
        let out = read_all(&mut r, 100, 1000).unwrap();
        assert!(out.len() >= 1000);
        assert!(out.iter().enumerate().all(|(i, &b)| b == i as u8));
        assert!(r.wraps() >= 3);
        let mut r = LoopReader::new(Cursor::new(&data), false);
        assert_eq!(read_all(&mut r, 100, 1000).unwrap(), data);
    }
}
