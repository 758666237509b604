/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mdwrite: multi-destination zero-copy UDP write through /dev/mdwrite.
 *
 * This header is the one definition of the mdwrite ABI. The Rust mirror in
 * uapi/mdwrite.rs is checked against it field by field by a test that
 * compiles a C probe of this file (userspace/mdwrite-uapi/tests/abi_probe.rs).
 *
 * Conventions:
 *  - Only fixed-width types, explicit padding, user pointers as __u64.
 *  - Every ioctl argument is a struct whose size is encoded in the ioctl
 *    number (_IOC_SIZE). The module dispatches on type, number and
 *    direction only and treats _IOC_SIZE as the caller's struct size, so a
 *    struct can grow at its end without a new ioctl number:
 *      - output: the module writes min(caller size, module size) bytes;
 *      - input: bytes the module does not know must be zero (else E2BIG),
 *        fields the caller does not know read as zero.
 *    A size smaller than the first published version of the struct is
 *    rejected with ENOTTY, as is any unknown type, number or direction.
 *
 * See Documentation/uapi.rst for every ioctl, field and errno.
 */
#ifndef _UAPI_LINUX_MDWRITE_H
#define _UAPI_LINUX_MDWRITE_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this ABI; raised on incompatible changes only. */
#define MDW_ABI_VERSION 1

/* ioctl type byte (free in Documentation/userspace-api/ioctl/ioctl-number.rst). */
#define MDW_IOC_MAGIC 0xB9

/* Feature bits reported in mdw_info.features. */
#define MDW_FEAT_WRITEV		(1ULL << 0)	/* DEST_ADD/DEL, WRITEV, STATS */
#define MDW_FEAT_IPV6		(1ULL << 1)	/* MDW_DEST_IPV6 */
#define MDW_FEAT_RTP		(1ULL << 2)	/* MDW_DEST_RTP */
#define MDW_FEAT_VLAN		(1ULL << 3)	/* MDW_DEST_VLAN */
#define MDW_FEAT_BUF		(1ULL << 4)	/* BUF_REGISTER/UNREGISTER, MDW_ENTRY_BUF */
#define MDW_FEAT_ASYNC		(1ULL << 5)	/* MDW_WRITE_ASYNC, read()/poll(), SET_EVENTFD */
#define MDW_FEAT_FANOUT		(1ULL << 6)	/* MDW_ENTRY_SAME */
#define MDW_FEAT_PACE		(1ULL << 7)	/* MDW_WRITE_PACE, MDW_ENTRY_PACE */
#define MDW_FEAT_REPEAT		(1ULL << 8)	/* MDW_WRITE_REPEAT, struct mdw_repeat */
#define MDW_FEAT_KEEP_PINS	(1ULL << 9)	/* MDW_WRITE_KEEP_PINS */
#define MDW_FEAT_GROUP		(1ULL << 10)	/* GROUP_SET/DEL, MDW_ENTRY_GROUP */

/**
 * struct mdw_info - what the loaded module implements (MDW_IOC_INFO)
 * @abi_version: MDW_ABI_VERSION of the module
 * @info_size: sizeof(struct mdw_info) as the module knows it; a caller with
 *	a smaller struct learns that the module has more to say
 * @features: MDW_FEAT_* bits the module supports
 */
struct mdw_info {
	__u32 abi_version;
	__u32 info_size;
	__u64 features;
};

#define MDW_IOC_INFO _IOR(MDW_IOC_MAGIC, 0x00, struct mdw_info)

/* mdw_dest.flags */
#define MDW_DEST_IPV6		(1U << 0)	/* addresses are IPv6 */
#define MDW_DEST_RTP		(1U << 1)	/* add an RTP header (rtp_*) */
#define MDW_DEST_VLAN		(1U << 2)	/* add an 802.1Q tag (vlan_tci) */
#define MDW_DEST_UDP_CSUM_ZERO	(1U << 3)	/* IPv4: UDP checksum 0 */

/**
 * struct mdw_dest - a destination (MDW_IOC_DEST_ADD)
 * @handle: out: names the destination in entries and MDW_IOC_DEST_DEL
 * @flags: MDW_DEST_* bits
 * @ifindex: egress Ethernet device, in the network namespace of the opener
 * @packet_size: largest IP packet (IP + UDP [+ RTP] headers + payload);
 *	0 means the device MTU, which is also the maximum
 * @vlan_tci: 802.1Q tag control (PCP, DEI, VID 1..4094) with MDW_DEST_VLAN
 * @src_addr: source address, network byte order (IPv4: first 4 bytes)
 * @dst_addr: destination address, network byte order (IPv4: first 4 bytes)
 * @src_port: UDP source port, host byte order, non-zero
 * @dst_port: UDP destination port, host byte order, non-zero
 * @dst_mac: next hop's MAC; all zero: look it up in the neighbour table
 * @hop_limit: IPv4 TTL / IPv6 hop limit; 0 means 64
 * @dscp: differentiated services code point, 0..63
 * @rtp_ssrc: RTP synchronisation source, with MDW_DEST_RTP
 * @rtp_payload_type: RTP payload type, 0..127
 * @pad0: must be 0
 * @rtp_seq: RTP sequence number of the first packet
 * @rtp_timestamp: RTP timestamp of the first packet
 * @rtp_ts_increment: added to the RTP timestamp for each packet
 */
struct mdw_dest {
	__u32 handle;
	__u32 flags;
	__s32 ifindex;
	__u16 packet_size;
	__u16 vlan_tci;
	__u8 src_addr[16];
	__u8 dst_addr[16];
	__u16 src_port;
	__u16 dst_port;
	__u8 dst_mac[6];
	__u8 hop_limit;
	__u8 dscp;
	__u32 rtp_ssrc;
	__u8 rtp_payload_type;
	__u8 pad0;
	__u16 rtp_seq;
	__u32 rtp_timestamp;
	__u32 rtp_ts_increment;
};

/**
 * struct mdw_dest_del - remove a destination (MDW_IOC_DEST_DEL)
 * @handle: from MDW_IOC_DEST_ADD
 * @flags: must be 0
 */
struct mdw_dest_del {
	__u32 handle;
	__u32 flags;
};

/**
 * struct mdw_buf_reg - register a translation buffer (MDW_IOC_BUF_REGISTER)
 * @addr: user address of the buffer, any alignment
 * @len: bytes, 1..MDW_MAX_BUF_BYTES
 * @id: out: names the buffer in entries (MDW_ENTRY_BUF) and
 *	MDW_IOC_BUF_UNREGISTER; never 0
 * @flags: must be 0
 *
 * The pages are pinned long-term (FOLL_LONGTERM) and charged to the
 * caller's RLIMIT_MEMLOCK (unless it has CAP_IPC_LOCK) until the buffer is
 * unregistered, or the file closed, and its last packet has left.
 */
struct mdw_buf_reg {
	__u64 addr;
	__u64 len;
	__u32 id;
	__u32 flags;
};

/**
 * struct mdw_buf_unreg - unregister a buffer (MDW_IOC_BUF_UNREGISTER)
 * @id: from MDW_IOC_BUF_REGISTER
 * @flags: must be 0
 *
 * The id is free at once; the pages stay pinned until every packet already
 * queued from them has been released by the device.
 */
struct mdw_buf_unreg {
	__u32 id;
	__u32 flags;
};

/* mdw_entry.flags */
#define MDW_ENTRY_RTP_TS	(1U << 0)	/* rtp_timestamp starts this entry */
#define MDW_ENTRY_BUF		(1U << 1)	/* addr is an offset in registered buffer @buf */
#define MDW_ENTRY_SAME		(1U << 2)	/* the data of the entry before: a fan-out */
#define MDW_ENTRY_PACE		(1U << 3)	/* pace_offset, pace_gap time this entry */
#define MDW_ENTRY_GROUP		(1U << 4)	/* dest is a destination group: a fan-out */

/**
 * struct mdw_entry - one chunk of data for one destination
 * @dest: destination handle
 * @flags: MDW_ENTRY_* bits
 * @addr: user address of the data, any alignment; with MDW_ENTRY_BUF, the
 *	offset of the data in registered buffer @buf
 * @len: bytes, at least 1
 * @rtp_timestamp: with MDW_ENTRY_RTP_TS, the RTP timestamp of the entry's
 *	first packet (the per-packet increment continues from it)
 * @buf: with MDW_ENTRY_BUF, the id of a registered buffer; else 0
 * @pace_offset: with MDW_ENTRY_PACE, when the entry's first packet
 *	departs: nanoseconds after the call's window starts
 * @pace_gap: with MDW_ENTRY_PACE, nanoseconds between the entry's
 *	packets; 0 spreads them evenly from @pace_offset to the window's end
 *
 * In a paced call (MDW_WRITE_PACE) every packet has a departure time
 * inside the call's window. An entry with MDW_ENTRY_PACE sets its own
 * (every packet of it inside the window, else ERANGE); the packets of the
 * other entries of a destination (or fan-out) are spread evenly over the
 * window, window / P apart (P: the destination's packets in the call),
 * the first at the window's start, each entry continuing where the one
 * before it left off. A destination's departure times never go back.
 * Without MDW_WRITE_PACE both fields are 0.
 *
 * MDW_ENTRY_SAME: the entry sends the data of the entry before it to its
 * own destination; @addr, @len and @buf are 0 and MDW_ENTRY_BUF is clear
 * (MDW_ENTRY_RTP_TS may be set). An entry without it followed by entries
 * with it is a fan-out: the data is checked and pinned once, cut into
 * packets of the smallest payload any of its destinations allows, and each
 * packet goes to every destination of the fan-out, in entry order, before
 * the next (the fan-out takes turns with the call's other destinations as
 * one). Each packet carries its destination's own headers, IPv4 id and RTP
 * sequence number and timestamp.
 *
 * MDW_ENTRY_GROUP: @dest is the handle of a destination group
 * (MDW_IOC_GROUP_SET), and the entry is a fan-out of its data to every
 * destination of the group, in the group's order: as the entry to the
 * group's first destination followed by an MDW_ENTRY_SAME entry (with
 * this entry's MDW_ENTRY_RTP_TS and @rtp_timestamp) for each further one,
 * described once. MDW_ENTRY_SAME is not allowed with it, nor on the entry
 * after it (EINVAL). Every other field is as for any entry. Errors about
 * a group's destinations name the group entry's index.
 */
struct mdw_entry {
	__u32 dest;
	__u32 flags;
	__u64 addr;
	__u64 len;
	__u32 rtp_timestamp;
	__u32 buf;
	__u32 pace_offset;
	__u32 pace_gap;
};

/* mdw_writev.flags */
#define MDW_WRITE_QDISC		(1U << 0)	/* through the qdisc, not straight to the TX queue */
#define MDW_WRITE_ASYNC		(1U << 1)	/* return once queued; complete through read() */
#define MDW_WRITE_PACE		(1U << 2)	/* each packet departs at its own time (pace_*) */
#define MDW_WRITE_REPEAT	(1U << 3)	/* the last call's entries, new data: struct mdw_repeat */
#define MDW_WRITE_KEEP_PINS	(1U << 4)	/* keep user pages pinned for later calls (pin cache) */

/**
 * struct mdw_repeat - the new data of one entry of a repeated call
 *	(MDW_WRITE_REPEAT)
 * @addr: as mdw_entry.addr of the repeated entry (with its MDW_ENTRY_BUF,
 *	the offset in its buffer); 0 for an MDW_ENTRY_SAME entry
 * @len: as mdw_entry.len; 0 for an MDW_ENTRY_SAME entry
 * @rtp_timestamp: as mdw_entry.rtp_timestamp (used with the repeated
 *	entry's MDW_ENTRY_RTP_TS)
 *
 * A call with MDW_WRITE_REPEAT sends the entries of the file's last
 * MDW_IOC_WRITEV call (repeated or not, whatever it returned, as long as
 * its entries were read in full), named by its mdw_writev.call_id: entry
 * i is that call's entry i (its destination, flags, buffer and paced
 * timing) with the @addr, @len and @rtp_timestamp of the i-th struct
 * mdw_repeat. It fails with ENODATA when call_id does not name the file's
 * last call (another call came between, or that call's entries were not
 * read in full) and with EINVAL when @count is not that call's. The
 * entries are then checked as any call's. A sender calling once per interval with the
 * same destinations copies in 16 bytes per entry instead of 40, and the
 * module checks only what may have changed.
 */
struct mdw_repeat {
	__u64 addr;
	__u32 len;
	__u32 rtp_timestamp;
};

/**
 * struct mdw_writev - one multi-destination write (MDW_IOC_WRITEV)
 * @entries: user pointer to @count entries of @entry_size bytes (with
 *	MDW_WRITE_REPEAT, struct mdw_repeat)
 * @count: number of entries, 1..MDW_MAX_ENTRIES
 * @entry_size: sizeof(struct mdw_entry) as the caller knows it; with
 *	MDW_WRITE_REPEAT, sizeof(struct mdw_repeat)
 * @flags: MDW_WRITE_* bits
 * @quantum: packets per destination per round; 0 means 1
 * @bytes: out: payload bytes handed to the device
 * @packets: out: packets handed to the device
 * @error: out: 0, or the negative errno that stopped the call early
 * @error_index: out: with @error, the entry being sent when it happened
 * @cookie: with MDW_WRITE_ASYNC, returned in the call's completion record
 * @pace_start: with MDW_WRITE_PACE, when the call's window starts, in
 *	nanoseconds on @pace_clock; at most MDW_MAX_PACE_AHEAD ahead (else
 *	ERANGE); a window that has already ended fails with ETIME
 * @pace_window: with MDW_WRITE_PACE, the window's length in nanoseconds,
 *	1..MDW_MAX_PACE_WINDOW (else ERANGE; 0 is EINVAL)
 * @pace_clock: with MDW_WRITE_PACE, the clock of @pace_start:
 *	CLOCK_MONOTONIC (1, for the fq qdisc) or CLOCK_TAI (11, for etf);
 *	any other is EINVAL
 * @call_id: out: names this call's entries (never 0) for a later
 *	MDW_WRITE_REPEAT, once they were read in full; in, with
 *	MDW_WRITE_REPEAT: the id of the call whose entries are repeated,
 *	which must be the file's last (ENODATA); ignored otherwise
 *
 * MDW_WRITE_PACE gives each packet a departure time (see struct
 * mdw_entry) and sets it on the skb (skb->tstamp, with its clock), so a
 * time-based qdisc releases it then: fq for CLOCK_MONOTONIC, etf with
 * skip_sock_check for CLOCK_TAI. It needs MDW_WRITE_QDISC (else
 * EOPNOTSUPP); the device needs such a qdisc, or the packets leave at
 * once. The call completes once the last packet has left, so a
 * synchronous paced call takes its window; a paced sender makes its calls
 * asynchronous and queues the next window while this one goes out.
 *
 * With MDW_WRITE_ASYNC the ioctl returns once every packet is queued (the
 * out fields say what was queued); exactly one struct mdw_completion for
 * the call is read() from the file after the device released its last
 * packet that refers to the caller's memory (an unpaced call's linear
 * copies, counted in bytes_copied, do not hold it). An asynchronous call
 * that queued nothing fails and raises no completion.
 *
 * With MDW_WRITE_KEEP_PINS the pages the call pins for its plain entries
 * stay pinned after it, in the file's pin cache (at most 16 runs, 1 GiB),
 * and the call takes its plain entries' pages from the cache when they
 * are there. A cached run is used only while its memory maps the same
 * pages, and only by the process whose memory it is: any change to the
 * mapping (munmap, a new mapping, mprotect, MADV_DONTNEED, fork, exit)
 * makes the next call pin again. Cached pages are pinned long-term,
 * counted in pages_pinned and charged to RLIMIT_MEMLOCK; the cache lets
 * go of them when another charge of the file would go over the limit.
 * Closing the file unpins them.
 */
struct mdw_writev {
	__u64 entries;
	__u32 count;
	__u32 entry_size;
	__u32 flags;
	__u32 quantum;
	__u64 bytes;
	__u64 packets;
	__s32 error;
	__u32 error_index;
	__u64 cookie;
	__u64 pace_start;
	__u32 pace_window;
	__u32 pace_clock;
	__u64 call_id;
};

/**
 * struct mdw_completion - the completion of one asynchronous call, read()
 * from the file
 * @cookie: mdw_writev.cookie of the call
 * @bytes: payload bytes the device was handed (as the ioctl reported)
 * @packets: packets the device was handed
 * @error: 0, or the negative errno that stopped the call early
 * @error_index: with @error, the entry being sent when it happened
 */
struct mdw_completion {
	__u64 cookie;
	__u64 bytes;
	__u64 packets;
	__s32 error;
	__u32 error_index;
};

/**
 * struct mdw_eventfd - signal an eventfd per completion (MDW_IOC_SET_EVENTFD)
 * @fd: an eventfd, incremented by one for each completion queued; -1 stops
 * @flags: must be 0
 */
struct mdw_eventfd {
	__s32 fd;
	__u32 flags;
};

/**
 * struct mdw_group - make or replace a destination group (MDW_IOC_GROUP_SET)
 * @dests: user pointer to @count destination handles (__u32 each)
 * @count: destinations, 1..MDW_MAX_GROUP_DESTS
 * @handle: in: 0 for a new group, or the handle of the group to replace;
 *	out: the group's handle, never 0
 * @flags: must be 0
 * @reserved: must be 0
 *
 * A group names destinations of the file, in order, so that one entry
 * (MDW_ENTRY_GROUP) sends its data to all of them. Every handle must
 * name a destination when the group is set (ENXIO); the same one may be
 * named more than once (it then gets each packet that many times). A group
 * holds handles, not destinations: a call whose group names a destination
 * removed since fails with ENXIO; a handle reused by MDW_IOC_DEST_ADD
 * names the new destination. Replacing a group changes it for later
 * calls; a call in progress keeps the destinations it started with.
 * Groups are per file, at most MDW_MAX_GROUPS (ENOSPC).
 */
struct mdw_group {
	__u64 dests;
	__u32 count;
	__u32 handle;
	__u32 flags;
	__u32 reserved;
};

/**
 * struct mdw_group_del - remove a destination group (MDW_IOC_GROUP_DEL)
 * @handle: from MDW_IOC_GROUP_SET
 * @flags: must be 0
 *
 * The group's destinations stay; its handle may be given to a new group.
 */
struct mdw_group_del {
	__u32 handle;
	__u32 flags;
};

/* Limits. */
#define MDW_MAX_ENTRIES		4096
#define MDW_MAX_ENTRY_SIZE	4096		/* bytes per entry (entry_size) */
#define MDW_MAX_DESTS		4096
#define MDW_MAX_CALL_BYTES	(1ULL << 30)
#define MDW_MAX_BUFS		1024		/* registered buffers per file */
#define MDW_MAX_BUF_BYTES	(1ULL << 30)	/* bytes per registered buffer */
#define MDW_MAX_ASYNC		256		/* async calls in flight + unread, per file */
#define MDW_MAX_PACE_WINDOW	1000000000	/* ns: a paced call's window, at most 1 s */
#define MDW_MAX_PACE_AHEAD	1000000000	/* ns: its start at most 1 s ahead */
#define MDW_MAX_GROUPS		1024		/* destination groups per file */
#define MDW_MAX_GROUP_DESTS	4096		/* destinations per group */
#define MDW_MAX_CALL_DESTS	65536		/* a call's entries, a group's once per destination */

/**
 * struct mdw_stats - counters of one open file (MDW_IOC_STATS)
 * @calls: MDW_IOC_WRITEV calls that sent something
 * @packets: packets handed to the device
 * @bytes_zerocopy: payload bytes sent by reference to pinned user pages
 * @bytes_copied: payload bytes copied (0 on the zero-copy path)
 * @completions: calls completed (every packet that held the call was
 *	released by the device)
 * @pages_pinned: pages currently pinned by this file (calls in progress,
 *	asynchronous calls in flight, registered buffers, the pin cache)
 * @async_in_flight: asynchronous calls whose completion is not queued yet
 * @completions_queued: completion records waiting to be read
 */
struct mdw_stats {
	__u64 calls;
	__u64 packets;
	__u64 bytes_zerocopy;
	__u64 bytes_copied;
	__u64 completions;
	__u64 pages_pinned;
	__u64 async_in_flight;
	__u64 completions_queued;
};

#define MDW_IOC_DEST_ADD _IOWR(MDW_IOC_MAGIC, 0x01, struct mdw_dest)
#define MDW_IOC_DEST_DEL _IOW(MDW_IOC_MAGIC, 0x02, struct mdw_dest_del)
#define MDW_IOC_WRITEV _IOWR(MDW_IOC_MAGIC, 0x03, struct mdw_writev)
#define MDW_IOC_STATS _IOR(MDW_IOC_MAGIC, 0x04, struct mdw_stats)
#define MDW_IOC_BUF_REGISTER _IOWR(MDW_IOC_MAGIC, 0x05, struct mdw_buf_reg)
#define MDW_IOC_BUF_UNREGISTER _IOW(MDW_IOC_MAGIC, 0x06, struct mdw_buf_unreg)
#define MDW_IOC_SET_EVENTFD _IOW(MDW_IOC_MAGIC, 0x07, struct mdw_eventfd)
#define MDW_IOC_GROUP_SET _IOWR(MDW_IOC_MAGIC, 0x08, struct mdw_group)
#define MDW_IOC_GROUP_DEL _IOW(MDW_IOC_MAGIC, 0x09, struct mdw_group_del)

#endif /* _UAPI_LINUX_MDWRITE_H */
