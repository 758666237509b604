// SPDX-License-Identifier: GPL-2.0

//! Completions of asynchronous calls: the records `read()` from the module,
//! parsed.

use std::io;

use mdwrite_uapi::MdwCompletion;
use zerocopy::FromBytes;

use crate::{RegisteredBuffer, WriteReport};

/// Size of one completion record (`struct mdw_completion`).
pub const COMPLETION_SIZE: usize = size_of::<MdwCompletion>();

/// The completion of one asynchronous call
/// ([`Sender::send_async`](crate::Sender::send_async)): the device released
/// its last packet that refers to the call's memory (an unpaced call's
/// copies for a device without scatter-gather do not count), and the
/// buffers the call took come back in
/// [`buffers`](Completion::buffers), free to be rewritten.
#[derive(Debug)]
pub struct Completion {
    /// The cookie the call was submitted with.
    pub cookie: u64,
    /// Payload bytes the call handed to the device (as its report said).
    pub bytes: u64,
    /// Packets the call handed to the device.
    pub packets: u64,
    /// Why the call stopped early, and the index of the entry being sent.
    pub error: Option<(io::Error, usize)>,
    /// The buffers the call took, in the order it was given them.
    pub buffers: Vec<RegisteredBuffer>,
}

impl Completion {
    /// The completion of a call that reported `report`, as the module
    /// would raise it.
    pub(crate) fn of(cookie: u64, report: &WriteReport) -> Self {
        Self {
            cookie,
            bytes: report.bytes,
            packets: report.packets,
            error: report.error.as_ref().map(|(e, i)| {
                let e = match e.raw_os_error() {
                    Some(n) => io::Error::from_raw_os_error(n),
                    None => io::Error::new(e.kind(), e.to_string()),
                };
                (e, *i)
            }),
            buffers: Vec::new(),
        }
    }
}

impl From<MdwCompletion> for Completion {
    fn from(c: MdwCompletion) -> Self {
        Self {
            cookie: c.cookie,
            bytes: c.bytes,
            packets: c.packets,
            error: (c.error != 0).then(|| {
                (
                    io::Error::from_raw_os_error(c.error.saturating_neg()),
                    c.error_index as usize,
                )
            }),
            buffers: Vec::new(),
        }
    }
}

/// Appends the records in `bytes` (what `read()` returned) to `out` and
/// returns how many there were. The module returns whole records only;
/// anything else is `EIO`, after the whole records.
pub(crate) fn parse_records(bytes: &[u8], out: &mut Vec<Completion>) -> io::Result<usize> {
    let mut records = bytes.chunks_exact(COMPLETION_SIZE);
    let mut n = 0;
    for r in &mut records {
        let c = MdwCompletion::read_from_bytes(r).map_err(|_| errno_io())?;
        out.push(c.into());
        n += 1;
    }
    if records.remainder().is_empty() {
        Ok(n)
    } else {
        Err(errno_io())
    }
}

fn errno_io() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

#[cfg(test)]
mod tests {
    use zerocopy::IntoBytes;

    use super::*;

    #[test]
    fn records_parse_in_order() {
        let recs = [
            MdwCompletion {
                cookie: 7,
                bytes: 4000,
                packets: 3,
                error: 0,
                error_index: 0,
            },
            MdwCompletion {
                cookie: u64::MAX,
                bytes: 1,
                packets: 1,
                error: -libc::ENETDOWN,
                error_index: 5,
            },
        ];
        let mut bytes = Vec::new();
        for r in &recs {
            bytes.extend_from_slice(r.as_bytes());
        }
        assert_eq!(COMPLETION_SIZE, 32);
        let mut out = Vec::new();
        assert_eq!(parse_records(&bytes, &mut out).unwrap(), 2);
        assert_eq!((out[0].cookie, out[0].bytes, out[0].packets), (7, 4000, 3));
        assert!(out[0].error.is_none());
        assert_eq!(out[1].cookie, u64::MAX);
        let (e, i) = out[1].error.as_ref().unwrap();
        assert_eq!((e.raw_os_error(), *i), (Some(libc::ENETDOWN), 5));
        // Nothing read, nothing parsed.
        assert_eq!(parse_records(&[], &mut out).unwrap(), 0);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_partial_record_is_an_error_after_the_whole_ones() {
        let r = MdwCompletion {
            cookie: 1,
            ..Default::default()
        };
        let mut bytes = r.as_bytes().to_vec();
        bytes.extend_from_slice(&[0; 5]);
        let mut out = Vec::new();
        let e = parse_records(&bytes, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_completion_mirrors_its_report() {
        let report = WriteReport {
            bytes: 10,
            packets: 2,
            error: Some((io::Error::from_raw_os_error(libc::EINTR), 1)),
        };
        let c = Completion::of(9, &report);
        assert_eq!((c.cookie, c.bytes, c.packets), (9, 10, 2));
        let (e, i) = c.error.unwrap();
        assert_eq!((e.raw_os_error(), i), (Some(libc::EINTR), 1));
    }
}
