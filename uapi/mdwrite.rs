// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note

//! Rust mirror of `uapi/mdwrite.h`, compiled by both the kernel module and the
//! userspace `mdwrite-uapi` crate.
//!
//! The including crate defines `abi_struct!`, which wraps each struct in the
//! derives it needs (`#[repr(C)]` always; `zerocopy` traits in userspace), so
//! one text serves both sides. A C probe test checks every size, offset and
//! ioctl number here against the header.

/// Version of this ABI; raised on incompatible changes only.
pub const MDW_ABI_VERSION: u32 = 1;

/// ioctl type byte of every mdwrite ioctl.
pub const MDW_IOC_MAGIC: u32 = 0xB9;

abi_struct! {
    /// What the loaded module implements (`MDW_IOC_INFO`).
    pub struct MdwInfo {
        /// `MDW_ABI_VERSION` of the module.
        pub abi_version: u32,
        /// `size_of::<MdwInfo>()` as the module knows it.
        pub info_size: u32,
        /// `MDW_FEAT_*` bits the module supports.
        pub features: u64,
    }
}

/// `MDW_FEAT_WRITEV`: destinations, multi-destination write and counters.
pub const MDW_FEAT_WRITEV: u64 = 1 << 0;
/// `MDW_FEAT_IPV6`: IPv6 destinations.
pub const MDW_FEAT_IPV6: u64 = 1 << 1;
/// `MDW_FEAT_RTP`: RTP headers.
pub const MDW_FEAT_RTP: u64 = 1 << 2;
/// `MDW_FEAT_VLAN`: 802.1Q tags.
pub const MDW_FEAT_VLAN: u64 = 1 << 3;
/// `MDW_FEAT_BUF`: registered buffers (`MDW_IOC_BUF_*`, `MDW_ENTRY_BUF`).
pub const MDW_FEAT_BUF: u64 = 1 << 4;
/// `MDW_FEAT_ASYNC`: `MDW_WRITE_ASYNC`, completions by `read()`/`poll()`,
/// `MDW_IOC_SET_EVENTFD`.
pub const MDW_FEAT_ASYNC: u64 = 1 << 5;
/// `MDW_FEAT_FANOUT`: fan-outs (`MDW_ENTRY_SAME`).
pub const MDW_FEAT_FANOUT: u64 = 1 << 6;
/// `MDW_FEAT_PACE`: paced calls (`MDW_WRITE_PACE`, `MDW_ENTRY_PACE`).
pub const MDW_FEAT_PACE: u64 = 1 << 7;
/// `MDW_FEAT_REPEAT`: `MDW_WRITE_REPEAT` and `MdwRepeat`.
pub const MDW_FEAT_REPEAT: u64 = 1 << 8;
/// `MDW_FEAT_KEEP_PINS`: `MDW_WRITE_KEEP_PINS`, the pin cache.
pub const MDW_FEAT_KEEP_PINS: u64 = 1 << 9;
/// `MDW_FEAT_GROUP`: destination groups (`MDW_IOC_GROUP_SET`,
/// `MDW_IOC_GROUP_DEL`, `MDW_ENTRY_GROUP`).
pub const MDW_FEAT_GROUP: u64 = 1 << 10;

/// `MDW_DEST_IPV6`: the addresses are IPv6.
pub const MDW_DEST_IPV6: u32 = 1 << 0;
/// `MDW_DEST_RTP`: add an RTP header.
pub const MDW_DEST_RTP: u32 = 1 << 1;
/// `MDW_DEST_VLAN`: add an 802.1Q tag.
pub const MDW_DEST_VLAN: u32 = 1 << 2;
/// `MDW_DEST_UDP_CSUM_ZERO`: IPv4 only, send UDP checksum 0.
pub const MDW_DEST_UDP_CSUM_ZERO: u32 = 1 << 3;

abi_struct! {
    /// A destination (`MDW_IOC_DEST_ADD`).
    pub struct MdwDest {
        /// Out: names the destination in entries and `MDW_IOC_DEST_DEL`.
        pub handle: u32,
        /// `MDW_DEST_*` bits.
        pub flags: u32,
        /// Egress Ethernet device, in the opener's network namespace.
        pub ifindex: i32,
        /// Largest IP packet; 0 means the device MTU (also the maximum).
        pub packet_size: u16,
        /// 802.1Q tag control with `MDW_DEST_VLAN`.
        pub vlan_tci: u16,
        /// Source address, network byte order (IPv4: first 4 bytes).
        pub src_addr: [u8; 16],
        /// Destination address, network byte order (IPv4: first 4 bytes).
        pub dst_addr: [u8; 16],
        /// UDP source port, host byte order.
        pub src_port: u16,
        /// UDP destination port, host byte order.
        pub dst_port: u16,
        /// Next hop's MAC; all zero: look it up in the neighbour table.
        pub dst_mac: [u8; 6],
        /// IPv4 TTL / IPv6 hop limit; 0 means 64.
        pub hop_limit: u8,
        /// Differentiated services code point, 0..63.
        pub dscp: u8,
        /// RTP synchronisation source.
        pub rtp_ssrc: u32,
        /// RTP payload type, 0..127.
        pub rtp_payload_type: u8,
        /// Must be 0.
        pub pad0: u8,
        /// RTP sequence number of the first packet.
        pub rtp_seq: u16,
        /// RTP timestamp of the first packet.
        pub rtp_timestamp: u32,
        /// Added to the RTP timestamp for each packet.
        pub rtp_ts_increment: u32,
    }
}

abi_struct! {
    /// Removes a destination (`MDW_IOC_DEST_DEL`).
    pub struct MdwDestDel {
        /// From `MDW_IOC_DEST_ADD`.
        pub handle: u32,
        /// Must be 0.
        pub flags: u32,
    }
}

abi_struct! {
    /// Registers a translation buffer (`MDW_IOC_BUF_REGISTER`).
    pub struct MdwBufReg {
        /// User address of the buffer.
        pub addr: u64,
        /// Bytes, `1..=MDW_MAX_BUF_BYTES`.
        pub len: u64,
        /// Out: the buffer's id, never 0.
        pub id: u32,
        /// Must be 0.
        pub flags: u32,
    }
}

abi_struct! {
    /// Unregisters a buffer (`MDW_IOC_BUF_UNREGISTER`).
    pub struct MdwBufUnreg {
        /// From `MDW_IOC_BUF_REGISTER`.
        pub id: u32,
        /// Must be 0.
        pub flags: u32,
    }
}

/// `MDW_ENTRY_RTP_TS`: `rtp_timestamp` starts this entry.
pub const MDW_ENTRY_RTP_TS: u32 = 1 << 0;
/// `MDW_ENTRY_BUF`: `addr` is an offset in registered buffer `buf`.
pub const MDW_ENTRY_BUF: u32 = 1 << 1;
/// `MDW_ENTRY_SAME`: the data of the entry before, to this entry's
/// destination (`addr`, `len` and `buf` 0): a fan-out (see `uapi/mdwrite.h`).
pub const MDW_ENTRY_SAME: u32 = 1 << 2;
/// `MDW_ENTRY_PACE`: `pace_offset` and `pace_gap` time this entry's packets.
pub const MDW_ENTRY_PACE: u32 = 1 << 3;
/// `MDW_ENTRY_GROUP`: `dest` is a destination group's handle; the entry is
/// a fan-out of its data to every destination of the group (see
/// `uapi/mdwrite.h`).
pub const MDW_ENTRY_GROUP: u32 = 1 << 4;

abi_struct! {
    /// One chunk of data for one destination.
    pub struct MdwEntry {
        /// Destination handle.
        pub dest: u32,
        /// `MDW_ENTRY_*` bits.
        pub flags: u32,
        /// User address of the data; with `MDW_ENTRY_BUF`, its offset in
        /// the registered buffer `buf`.
        pub addr: u64,
        /// Bytes, at least 1.
        pub len: u64,
        /// With `MDW_ENTRY_RTP_TS`, the RTP timestamp of the first packet.
        pub rtp_timestamp: u32,
        /// With `MDW_ENTRY_BUF`, a registered buffer's id; else 0.
        pub buf: u32,
        /// With `MDW_ENTRY_PACE`, when the first packet departs:
        /// nanoseconds after the call's window starts.
        pub pace_offset: u32,
        /// With `MDW_ENTRY_PACE`, nanoseconds between its packets; 0
        /// spreads them evenly to the window's end.
        pub pace_gap: u32,
    }
}

/// Size of the first published `struct mdw_entry` (without `pace_*`): the
/// smallest `entry_size` a call may give.
pub const MDW_ENTRY_SIZE_VER0: usize = 32;

/// `MDW_WRITE_QDISC`: send through the qdisc, not straight to the TX queue.
pub const MDW_WRITE_QDISC: u32 = 1 << 0;
/// `MDW_WRITE_ASYNC`: return once queued; the completion is read from the
/// file.
pub const MDW_WRITE_ASYNC: u32 = 1 << 1;
/// `MDW_WRITE_PACE`: each packet departs at its own time (`pace_*`).
pub const MDW_WRITE_PACE: u32 = 1 << 2;
/// `MDW_WRITE_REPEAT`: the entries of the file's last call, each with the
/// new data of an `MdwRepeat` (see `uapi/mdwrite.h`).
pub const MDW_WRITE_REPEAT: u32 = 1 << 3;
/// `MDW_WRITE_KEEP_PINS`: the call's user pages stay pinned for later
/// calls from the same memory (the pin cache; see `uapi/mdwrite.h`).
pub const MDW_WRITE_KEEP_PINS: u32 = 1 << 4;

abi_struct! {
    /// The new data of one entry of a repeated call (`MDW_WRITE_REPEAT`).
    pub struct MdwRepeat {
        /// As `MdwEntry::addr` of the repeated entry; 0 for
        /// `MDW_ENTRY_SAME`.
        pub addr: u64,
        /// As `MdwEntry::len`; 0 for `MDW_ENTRY_SAME`.
        pub len: u32,
        /// As `MdwEntry::rtp_timestamp` (with the entry's
        /// `MDW_ENTRY_RTP_TS`).
        pub rtp_timestamp: u32,
    }
}

/// Size of the first published `struct mdw_repeat`: the smallest
/// `entry_size` of a repeated call.
pub const MDW_REPEAT_SIZE_VER0: usize = 16;

abi_struct! {
    /// One multi-destination write (`MDW_IOC_WRITEV`).
    pub struct MdwWritev {
        /// User pointer to `count` entries of `entry_size` bytes.
        pub entries: u64,
        /// Number of entries, `1..=MDW_MAX_ENTRIES`.
        pub count: u32,
        /// `size_of::<MdwEntry>()` as the caller knows it.
        pub entry_size: u32,
        /// `MDW_WRITE_*` bits.
        pub flags: u32,
        /// Packets per destination per round; 0 means 1.
        pub quantum: u32,
        /// Out: payload bytes handed to the device.
        pub bytes: u64,
        /// Out: packets handed to the device.
        pub packets: u64,
        /// Out: 0, or the negative errno that stopped the call early.
        pub error: i32,
        /// Out: with `error`, the entry being sent when it happened.
        pub error_index: u32,
        /// With `MDW_WRITE_ASYNC`, returned in the call's completion record.
        pub cookie: u64,
        /// With `MDW_WRITE_PACE`, the window's start, nanoseconds on
        /// `pace_clock`.
        pub pace_start: u64,
        /// With `MDW_WRITE_PACE`, the window's length in nanoseconds,
        /// `1..=MDW_MAX_PACE_WINDOW`.
        pub pace_window: u32,
        /// With `MDW_WRITE_PACE`, `CLOCK_MONOTONIC` (1) or `CLOCK_TAI` (11).
        pub pace_clock: u32,
        /// Out: names this call's entries (never 0) for a later
        /// `MDW_WRITE_REPEAT`; in, with `MDW_WRITE_REPEAT`: the id of the
        /// (last) call whose entries are repeated.
        pub call_id: u64,
    }
}

/// Size of the first published `struct mdw_writev` (without `cookie`).
pub const MDW_WRITEV_SIZE_VER0: usize = 48;

abi_struct! {
    /// The completion of one asynchronous call, `read()` from the file.
    pub struct MdwCompletion {
        /// `MdwWritev::cookie` of the call.
        pub cookie: u64,
        /// Payload bytes the device was handed.
        pub bytes: u64,
        /// Packets the device was handed.
        pub packets: u64,
        /// 0, or the negative errno that stopped the call early.
        pub error: i32,
        /// With `error`, the entry being sent when it happened.
        pub error_index: u32,
    }
}

abi_struct! {
    /// Signals an eventfd per completion (`MDW_IOC_SET_EVENTFD`).
    pub struct MdwEventfd {
        /// An eventfd, or -1 to stop signalling.
        pub fd: i32,
        /// Must be 0.
        pub flags: u32,
    }
}

abi_struct! {
    /// Makes or replaces a destination group (`MDW_IOC_GROUP_SET`).
    pub struct MdwGroup {
        /// User pointer to `count` destination handles (`u32` each).
        pub dests: u64,
        /// Destinations, `1..=MDW_MAX_GROUP_DESTS`.
        pub count: u32,
        /// In: 0 for a new group, or the group to replace; out: the
        /// group's handle, never 0.
        pub handle: u32,
        /// Must be 0.
        pub flags: u32,
        /// Must be 0.
        pub reserved: u32,
    }
}

abi_struct! {
    /// Removes a destination group (`MDW_IOC_GROUP_DEL`).
    pub struct MdwGroupDel {
        /// From `MDW_IOC_GROUP_SET`.
        pub handle: u32,
        /// Must be 0.
        pub flags: u32,
    }
}

/// Most entries in one call.
pub const MDW_MAX_ENTRIES: u32 = 4096;
/// Largest `entry_size`: bytes per entry, the caller's struct size.
pub const MDW_MAX_ENTRY_SIZE: u32 = 4096;
/// Most destinations on one open file.
pub const MDW_MAX_DESTS: u32 = 4096;
/// Most payload bytes in one call.
pub const MDW_MAX_CALL_BYTES: u64 = 1 << 30;
/// Most registered buffers on one open file.
pub const MDW_MAX_BUFS: u32 = 1024;
/// Most bytes in one registered buffer.
pub const MDW_MAX_BUF_BYTES: u64 = 1 << 30;
/// Most asynchronous calls in flight plus completions unread, per file.
pub const MDW_MAX_ASYNC: u32 = 256;
/// Longest window of a paced call, in nanoseconds (1 s).
pub const MDW_MAX_PACE_WINDOW: u32 = 1_000_000_000;
/// Furthest a paced call's window may start ahead, in nanoseconds (1 s).
pub const MDW_MAX_PACE_AHEAD: u64 = 1_000_000_000;
/// Most destination groups on one open file.
pub const MDW_MAX_GROUPS: u32 = 1024;
/// Most destinations in one group.
pub const MDW_MAX_GROUP_DESTS: u32 = 4096;
/// Most entries in one call, a group entry counted once per destination.
pub const MDW_MAX_CALL_DESTS: u32 = 65536;

abi_struct! {
    /// Counters of one open file (`MDW_IOC_STATS`).
    pub struct MdwStats {
        /// `MDW_IOC_WRITEV` calls that sent something.
        pub calls: u64,
        /// Packets handed to the device.
        pub packets: u64,
        /// Payload bytes sent by reference to pinned user pages.
        pub bytes_zerocopy: u64,
        /// Payload bytes copied.
        pub bytes_copied: u64,
        /// Calls whose every packet was released by the device.
        pub completions: u64,
        /// Pages currently pinned by this file.
        pub pages_pinned: u64,
        /// Asynchronous calls whose completion is not queued yet.
        pub async_in_flight: u64,
        /// Completion records waiting to be read.
        pub completions_queued: u64,
    }
}

/// Size of the first published `struct mdw_stats`.
pub const MDW_STATS_SIZE_VER0: usize = 48;

/// ioctl direction bits, as in `include/uapi/asm-generic/ioctl.h`.
pub mod ioc {
    /// No data transfer.
    pub const NONE: u32 = 0;
    /// Userspace writes, the kernel reads.
    pub const WRITE: u32 = 1;
    /// The kernel writes, userspace reads.
    pub const READ: u32 = 2;

    /// Encodes an ioctl number like the C `_IOC()` macro.
    pub const fn encode(dir: u32, nr: u32, size: usize) -> u32 {
        (dir << 30) | ((size as u32) << 16) | (super::MDW_IOC_MAGIC << 8) | nr
    }
    /// Direction bits of an ioctl number.
    pub const fn dir(cmd: u32) -> u32 {
        cmd >> 30
    }
    /// Type byte of an ioctl number.
    pub const fn kind(cmd: u32) -> u32 {
        (cmd >> 8) & 0xff
    }
    /// Sequence number of an ioctl number.
    pub const fn nr(cmd: u32) -> u32 {
        cmd & 0xff
    }
    /// Argument size encoded in an ioctl number.
    pub const fn size(cmd: u32) -> usize {
        ((cmd >> 16) & 0x3fff) as usize
    }
}

/// Sequence number of `MDW_IOC_INFO`.
pub const MDW_IOC_INFO_NR: u32 = 0x00;
/// `_IOR(MDW_IOC_MAGIC, 0x00, struct mdw_info)`.
pub const MDW_IOC_INFO: u32 =
    ioc::encode(ioc::READ, MDW_IOC_INFO_NR, core::mem::size_of::<MdwInfo>());

/// Sequence number of `MDW_IOC_DEST_ADD`.
pub const MDW_IOC_DEST_ADD_NR: u32 = 0x01;
/// `_IOWR(MDW_IOC_MAGIC, 0x01, struct mdw_dest)`.
pub const MDW_IOC_DEST_ADD: u32 = ioc::encode(
    ioc::READ | ioc::WRITE,
    MDW_IOC_DEST_ADD_NR,
    core::mem::size_of::<MdwDest>(),
);
/// Sequence number of `MDW_IOC_DEST_DEL`.
pub const MDW_IOC_DEST_DEL_NR: u32 = 0x02;
/// `_IOW(MDW_IOC_MAGIC, 0x02, struct mdw_dest_del)`.
pub const MDW_IOC_DEST_DEL: u32 = ioc::encode(
    ioc::WRITE,
    MDW_IOC_DEST_DEL_NR,
    core::mem::size_of::<MdwDestDel>(),
);
/// Sequence number of `MDW_IOC_WRITEV`.
pub const MDW_IOC_WRITEV_NR: u32 = 0x03;
/// `_IOWR(MDW_IOC_MAGIC, 0x03, struct mdw_writev)`.
pub const MDW_IOC_WRITEV: u32 = ioc::encode(
    ioc::READ | ioc::WRITE,
    MDW_IOC_WRITEV_NR,
    core::mem::size_of::<MdwWritev>(),
);
/// Sequence number of `MDW_IOC_STATS`.
pub const MDW_IOC_STATS_NR: u32 = 0x04;
/// `_IOR(MDW_IOC_MAGIC, 0x04, struct mdw_stats)`.
pub const MDW_IOC_STATS: u32 = ioc::encode(
    ioc::READ,
    MDW_IOC_STATS_NR,
    core::mem::size_of::<MdwStats>(),
);
/// Sequence number of `MDW_IOC_BUF_REGISTER`.
pub const MDW_IOC_BUF_REGISTER_NR: u32 = 0x05;
/// `_IOWR(MDW_IOC_MAGIC, 0x05, struct mdw_buf_reg)`.
pub const MDW_IOC_BUF_REGISTER: u32 = ioc::encode(
    ioc::READ | ioc::WRITE,
    MDW_IOC_BUF_REGISTER_NR,
    core::mem::size_of::<MdwBufReg>(),
);
/// Sequence number of `MDW_IOC_BUF_UNREGISTER`.
pub const MDW_IOC_BUF_UNREGISTER_NR: u32 = 0x06;
/// `_IOW(MDW_IOC_MAGIC, 0x06, struct mdw_buf_unreg)`.
pub const MDW_IOC_BUF_UNREGISTER: u32 = ioc::encode(
    ioc::WRITE,
    MDW_IOC_BUF_UNREGISTER_NR,
    core::mem::size_of::<MdwBufUnreg>(),
);
/// Sequence number of `MDW_IOC_SET_EVENTFD`.
pub const MDW_IOC_SET_EVENTFD_NR: u32 = 0x07;
/// `_IOW(MDW_IOC_MAGIC, 0x07, struct mdw_eventfd)`.
pub const MDW_IOC_SET_EVENTFD: u32 = ioc::encode(
    ioc::WRITE,
    MDW_IOC_SET_EVENTFD_NR,
    core::mem::size_of::<MdwEventfd>(),
);
/// Sequence number of `MDW_IOC_GROUP_SET`.
pub const MDW_IOC_GROUP_SET_NR: u32 = 0x08;
/// `_IOWR(MDW_IOC_MAGIC, 0x08, struct mdw_group)`.
pub const MDW_IOC_GROUP_SET: u32 = ioc::encode(
    ioc::READ | ioc::WRITE,
    MDW_IOC_GROUP_SET_NR,
    core::mem::size_of::<MdwGroup>(),
);
/// Sequence number of `MDW_IOC_GROUP_DEL`.
pub const MDW_IOC_GROUP_DEL_NR: u32 = 0x09;
/// `_IOW(MDW_IOC_MAGIC, 0x09, struct mdw_group_del)`.
pub const MDW_IOC_GROUP_DEL: u32 = ioc::encode(
    ioc::WRITE,
    MDW_IOC_GROUP_DEL_NR,
    core::mem::size_of::<MdwGroupDel>(),
);
