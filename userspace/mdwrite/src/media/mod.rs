// SPDX-License-Identifier: GPL-2.0

//! Media on top of the sender: MPEG-TS sources, bitrates from PCRs, RTP
//! parameters for MPEG-TS (RFC 2250), and receive-side RTP analysis.
//!
//! An MPEG-TS stream is sent in whole 188-byte TS packets,
//! [`ts::DEFAULT_TS_PER_PACKET`] (7) per UDP payload by default: a stream's
//! payload size is a multiple of 188, its source ([`source::TsReader`])
//! yields whole packets, and the sender cuts each chunk into payloads of
//! exactly that size, so no TS packet is ever split across two datagrams.
//! Over RTP the payload type is [`rtp::PT_MP2T`] (33) and timestamps count
//! at 90 kHz.
//!
//! # Examples
//!
//! ```
//! use mdwrite::media::{pcr::estimate_bitrate, ts::TS_PACKET_SIZE};
//!
//! // No PCR in a stream of null packets: the bitrate must be given.
//! let mut null = [0xffu8; TS_PACKET_SIZE];
//! null[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
//! assert!(estimate_bitrate(&null[..], None).is_err());
//! ```

pub mod analysis;
pub mod pcr;
pub mod rtp;
pub mod source;
pub mod ts;
